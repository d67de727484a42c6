"""The reference system's `mlfs` commands: `mlfs simulate` and `mlfs demo` (an `mlfs.commands` entry point)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mlfs_dagster.settings import Settings


def add_commands(commands) -> None:
    from card_fraud.simulator import add_arguments

    simulate = commands.add_parser("simulate", help="write the card-fraud simulator's files to the landing zone")
    add_arguments(simulate)
    simulate.add_argument("--landing", help="landing zone folder (default: $MLFS_HOME/landing)")
    simulate.set_defaults(run=_simulate)

    demo = commands.add_parser("demo", help="run the card-fraud reference system end to end on embedded defaults")
    demo.add_argument("--days", type=int, default=90,
                      help="days of history up to yesterday, on a fresh MLFS_HOME (later demos extend it)")
    demo.add_argument("--drift-day", type=int, default=75, help="day number drift starts on (1-based)")
    demo.add_argument("--cards", type=int, default=2_000)
    demo.add_argument("--transactions-per-day", type=int, default=4_000)
    demo.set_defaults(run=_demo)


def _simulate(args: argparse.Namespace) -> None:
    from card_fraud.simulator import config_from_args, simulate

    landing = Path(args.landing or Settings.from_env().landing)
    result = simulate(config_from_args(args), landing)
    print(json.dumps({"landing": str(landing), "rows": result.rows,
                      "fraud_transactions": result.fraud_transactions}, indent=2))


def _demo(args: argparse.Namespace) -> None:
    from card_fraud.demo import DemoConfig, StageFailed, run_demo

    try:
        summary = run_demo(DemoConfig(days=args.days, drift_day=args.drift_day, cards=args.cards,
                                      transactions_per_day=args.transactions_per_day))
    except StageFailed as failure:
        sys.exit(f"demo stopped: {failure}")
    if not summary["detected_within_3_days"] or summary["false_alarms_before_injection"]:
        sys.exit("drift detection missed its target: see the summary above")
