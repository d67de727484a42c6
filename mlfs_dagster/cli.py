"""The `mlfs` command: simulate upstream data, run the demo, show what the system holds."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

from mlfs_dagster.settings import PROJECT_ROOT, Settings


def init_dagster_home(settings: Settings) -> Path:
    """Point Dagster at MLFS_HOME and give it the project's embedded-defaults dagster.yaml."""
    settings.dagster_home.mkdir(parents=True, exist_ok=True)
    os.environ["DAGSTER_HOME"] = str(settings.dagster_home)
    target = settings.dagster_home / "dagster.yaml"
    source = PROJECT_ROOT / "dagster.yaml"
    if source.exists() and not target.exists():
        shutil.copyfile(source, target)
    return settings.dagster_home


def _simulate(args: argparse.Namespace) -> None:
    from mlfs_dagster.fraud.simulator import config_from_args, simulate

    landing = Path(args.landing or Settings.from_env().landing)
    result = simulate(config_from_args(args), landing)
    print(json.dumps({"landing": str(landing), "rows": result.rows,
                      "fraud_transactions": result.fraud_transactions}, indent=2))


def _status(args: argparse.Namespace) -> None:
    from mlfs_dagster.status import collect_status

    status = collect_status(Settings.from_env())
    if args.json:
        print(json.dumps(status, indent=2, default=str))
        return
    for table in status["tables"]:
        print(f"{table['table']:<36} {table['rows']:>10} rows  snapshot {table['snapshot_id']}")
    for model in status["models"]:
        print(f"model {model['name']}: versions {[v['version'] for v in model['versions']]}, aliases {model['aliases']}")
    drifted = [day for day, d in status["drift"].items() if d["dataset_drift"]]
    print(f"drift reports: {len(status['drift'])} days, drifted on {drifted}")
    print(f"sensor requests: {len(status['sensor_requests'])}")


def _demo(args: argparse.Namespace) -> None:
    from mlfs_dagster.demo import DemoConfig, StageFailed, run_demo

    try:
        summary = run_demo(DemoConfig(days=args.days, drift_day=args.drift_day, cards=args.cards,
                                      transactions_per_day=args.transactions_per_day))
    except StageFailed as failure:
        sys.exit(f"demo stopped: {failure}")
    if not summary["detected_within_3_days"] or summary["false_alarms_before_injection"]:
        sys.exit("drift detection missed its target: see the summary above")


def main(argv: list[str] | None = None) -> None:
    from mlfs_dagster.fraud.simulator import add_arguments

    parser = argparse.ArgumentParser(prog="mlfs", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    simulate = commands.add_parser("simulate", help="write daily upstream files to the landing zone")
    add_arguments(simulate)
    simulate.add_argument("--landing", help="landing zone folder (default: $MLFS_HOME/landing)")
    simulate.set_defaults(run=_simulate)

    status = commands.add_parser("status", help="what the stores hold now")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(run=_status)

    demo = commands.add_parser("demo", help="run the card-fraud system end to end on embedded defaults")
    demo.add_argument("--days", type=int, default=60)
    demo.add_argument("--drift-day", type=int, default=45, help="day number drift starts on (1-based)")
    demo.add_argument("--cards", type=int, default=2_000)
    demo.add_argument("--transactions-per-day", type=int, default=4_000)
    demo.set_defaults(run=_demo)

    init = commands.add_parser("init", help="prepare $MLFS_HOME/dagster for `dagster dev`")
    init.set_defaults(run=lambda _: print(init_dagster_home(Settings.from_env())))

    args = parser.parse_args(argv)
    init_dagster_home(Settings.from_env())
    args.run(args)
