"""Warehouse growth: the same backfill repeated into one MLFS_HOME, without and with offline-store maintenance.

Each round re-materializes the reference system's raw sources and feature groups over the whole simulated range
in one run (what a repeated `make demo` or a re-run backfill does: same rows, new files and snapshots), then,
in the "with" series, runs the maintenance every system gets (`core.maintenance`). Since rounds follow each
other within minutes, the maintenance runs with no age limit and no grace period (sequential, so nothing is in
flight); the scheduled asset keeps 7 days of snapshots and a 1-day grace, so its steady state is a week of
history instead. Each series runs in its own process: the reference system reads its start from MLFS_HOME.

    .venv/bin/python benchmarks/warehouse_growth.py                # 45 days, 1,000 cards, 2,000 txns/day, 4 rounds
    .venv/bin/python benchmarks/warehouse_growth.py --rounds 2 --days 20
"""

from __future__ import annotations

import argparse
import datetime as dt
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from card_fraud.demo import QUIET
from card_fraud.simulator import SimulationConfig, simulate
from mlfs_dagster.settings import use_home

FIRST_DAY = dt.date(2026, 1, 1)


def folder_usage(folder: Path) -> tuple[int, int]:
    files = [p for p in folder.rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


def series(home: Path, maintain: bool, args: argparse.Namespace) -> None:
    settings = use_home(home)
    simulate(SimulationConfig(start_date=FIRST_DAY, days=args.days, cards=args.cards,
                              transactions_per_day=args.transactions_per_day, seed=7), Path(settings.landing))
    # Imported once the landing zone holds the simulation: the system's partitions start on its first day.
    from dagster import AssetSelection, DagsterInstance, materialize

    from card_fraud.system import SYSTEM
    from mlfs_dagster.builders import build_definitions
    from mlfs_dagster.builders.common import group_name, range_tags
    from mlfs_dagster.core.maintenance import MaintenancePolicy, maintain_store, totals

    defs, instance = build_definitions(SYSTEM), DagsterInstance.ephemeral()
    last = FIRST_DAY + dt.timedelta(days=args.days - 1)
    selection = AssetSelection.groups(group_name(SYSTEM, "raw"), group_name(SYSTEM, "features"))
    warehouse = Path(settings.warehouse.removeprefix("file://"))
    label = "with maintenance" if maintain else "without maintenance"
    for round_number in range(1, args.rounds + 1):
        started = time.perf_counter()
        result = materialize(defs.assets, selection=selection, resources=defs.resources, instance=instance,
                             tags=range_tags(FIRST_DAY.isoformat(), last.isoformat()), run_config=QUIET)
        assert result.success, result.run_id
        backfill = time.perf_counter() - started
        files, size = folder_usage(warehouse)
        line = f"{label:<20} round {round_number}: backfill {backfill:5.1f} s, {size / 1e6:7.2f} MB {files:6} files"
        if maintain:
            started = time.perf_counter()
            done = totals(maintain_store(settings.offline_store(), SYSTEM.name,
                                         MaintenancePolicy(snapshot_max_age=dt.timedelta(0), orphan_grace=dt.timedelta(0))))
            files, size = folder_usage(warehouse)
            line += (f"  -> maintained in {time.perf_counter() - started:4.1f} s: {size / 1e6:7.2f} MB {files:6} files "
                     f"(expired {done['snapshots_expired']}, compacted {done['files_compacted']}, "
                     f"orphans {done['orphans_removed']})")
        print(line, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--days", type=int, default=45)
    parser.add_argument("--cards", type=int, default=1_000)
    parser.add_argument("--transactions-per-day", type=int, default=2_000)
    parser.add_argument("--series", choices=("without", "with"), help="run one series in this process")
    args = parser.parse_args()
    if args.series:
        series(Path(tempfile.mkdtemp(prefix=f"mlfs_growth_{args.series}_")), args.series == "with", args)
        return
    for name in ("without", "with"):
        subprocess.run([sys.executable, __file__, *sys.argv[1:], "--series", name], check=True)


if __name__ == "__main__":
    main()
