"""Drift report benchmark: seconds and bytes of one daily `feature_drift` report at 20,000 rows.

Reports go where the monitoring asset puts them, `<reports root>/<system>/<asset>/<day>.html`, each day a
new current sample of 20,000 rows (10 numerical and 5 categorical columns) against one reference of 20,000
rows. Every column is tested, and Evidently charts the drifted ones (the 5 most drifted when more drift), so
the time depends on how many drift: a typical day (2 of 15 columns drifting) and the worst day (all 15) are
timed apart. Evidently's import is timed on its own; the first report then pays for
Evidently's lazy set-up and for copying its JS bundle to the shared folder, the next ones are warm.
`cpu s` is the process's CPU time: on a busy machine it moves less than the wall time.

    .venv/bin/python benchmarks/drift_report.py              # 1 cold + 10 warm reports
    .venv/bin/python benchmarks/drift_report.py --days 30 --keep /tmp/reports
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from mlfs_dagster.core.drift import STATIC_FOLDER, feature_drift

ROWS = 20_000
NUMERICAL = [f"num_{i}" for i in range(10)]
CATEGORICAL = [f"cat_{i}" for i in range(5)]
TYPICAL = {"num_0": 0.5, "num_1": 0.2}  # mean shift, in standard deviations
EVERY_COLUMN = {**{column: 0.5 for column in NUMERICAL}, **{column: 1.0 for column in CATEGORICAL}}
YEAR = 365
FIRST_DAY = dt.date(2026, 1, 1)


def features(seed: int, shift: dict[str, float]) -> pd.DataFrame:
    """Numbers shifted by `shift` standard deviations; a category with a shift has half its rows on 'v0'."""
    rng = np.random.default_rng(seed)
    numbers = {column: rng.lognormal(1.0, 0.5 + i / 10, ROWS) for i, column in enumerate(NUMERICAL)}
    for column in NUMERICAL:
        numbers[column] += shift.get(column, 0) * numbers[column].std()
    categories = {
        column: rng.choice([f"v{k}" for k in range(3 + 2 * i)], ROWS) for i, column in enumerate(CATEGORICAL)
    }
    for column in CATEGORICAL:
        categories[column][: int(ROWS * shift.get(column, 0) / 2)] = "v0"
    return pd.DataFrame({**numbers, **categories})


def timed_report(reference: pd.DataFrame, day: int, folder: Path, drifting: dict) -> tuple[float, float, int]:
    current = features(seed=day + 1, shift=drifting)
    html_path = folder / f"{FIRST_DAY + dt.timedelta(days=day)}.html"
    wall, cpu = time.perf_counter(), time.process_time()
    result = feature_drift(reference, current, NUMERICAL, CATEGORICAL, html_path=html_path)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    assert set(result.drifted_columns) == set(drifting), result.drifted_columns
    return wall, cpu, result.html_path.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--days", type=int, default=10, help="warm reports after the first one")
    parser.add_argument("--keep", type=Path, help="reports root to keep, instead of a temporary folder")
    args = parser.parse_args()

    started = time.perf_counter()
    import evidently  # noqa: F401  (timed on its own, as feature_drift imports it lazily)

    print(f"import evidently: {time.perf_counter() - started:.2f} s")
    with tempfile.TemporaryDirectory(prefix="drift_reports_") as scratch:
        benchmark(args.keep or Path(scratch), args.days)


def benchmark(root: Path, days: int) -> None:
    folder = root / "card_fraud" / "fraud_model_feature_drift"
    reference = features(seed=0, shift={})
    print(f"{ROWS:,} reference and {ROWS:,} current rows, "
          f"{len(NUMERICAL)} numerical + {len(CATEGORICAL)} categorical columns")
    for scenario, drifting in (("typical day", TYPICAL), ("every column drifting", EVERY_COLUMN)):
        print(f"\n{scenario}: {len(drifting)} of {len(NUMERICAL) + len(CATEGORICAL)} columns drift")
        print(f"{'report':<8} {'s':>6} {'cpu s':>6} {'bytes':>9}")
        runs = []
        for day in range(days + 1):
            wall, cpu, size = timed_report(reference, day, folder, drifting)
            runs.append((wall, cpu, size))
            print(f"{'first' if day == 0 else f'warm {day}':<8} {wall:6.2f} {cpu:6.2f} {size:9,}")
        walls, cpus, sizes = zip(*(runs[1:] or runs))
        per_report = statistics.mean(sizes)
        static = sum(path.stat().st_size for path in (folder / STATIC_FOLDER).iterdir())
        print(f"warm reports: median {statistics.median(walls):.2f} s "
              f"(min {min(walls):.2f}, max {max(walls):.2f}), median cpu {statistics.median(cpus):.2f} s")
        print(f"report: {per_report / 1e3:,.0f} kB; "
              f"shared {STATIC_FOLDER}/ (JS bundle and icon font, once): {static / 1e6:.2f} MB")
        print(f"{YEAR} reports: {(YEAR * per_report + static) / 1e6:,.0f} MB")


if __name__ == "__main__":
    main()
