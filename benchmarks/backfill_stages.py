"""Backfill benchmark: the demo's asset graph timed stage by stage, plus two engine comparisons.

Simulates card traffic (the demo's drift included) into a throwaway MLFS_HOME, then backfills the graph
the way `mlfs demo` does, in real in-process Dagster runs over the whole partition range, but one stage
per run so each stage is timed on its own. Row counts are read back from the Iceberg tables.

Then, in the same process:
  a. the point-in-time join (`core.pit`) against pandas `merge_asof`, on synthetic tables;
  b. the card_txn_windows SQL (DuckDB windows) against pandas groupby-rolling, on the simulated transactions.
Both pairs are checked to produce the same values before their times are compared.

    .venv/bin/python benchmarks/backfill_stages.py            # 90 days, 2,000 cards, 4,000 txns/day
    .venv/bin/python benchmarks/backfill_stages.py --quick    # smoke run
    .venv/bin/python benchmarks/backfill_stages.py --year     # 365 days, 10,000 cards, 20,000 txns/day

Each stage's peak memory is the process's resident set, sampled while the stage runs (every run is
in-process, so the stages share one process). `--per-partition N` then re-runs the last N partitions of
the stages in PER_PARTITION_STAGES once as one run over the N and once as N runs of one partition each.
"""

from __future__ import annotations

import argparse
import ctypes
import datetime as dt
import gc
import os
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from card_fraud.demo import QUIET, DemoConfig
from card_fraud.features import CARD_TXN_WINDOWS
from card_fraud.simulator import simulate
from card_fraud.system import FRAUD_MODEL, FRAUD_VIEW, SYSTEM

# None of these modules reads the environment when imported; card_fraud.definitions does, so it is
# imported only after `use_home` has pointed the environment at the benchmark's folder.
from mlfs_dagster.cli import init_dagster_home
from mlfs_dagster.core.features import compute_feature_group
from mlfs_dagster.core.offline_store import OfflineStore, TimeRange
from mlfs_dagster.core.pit import FeatureJoin, point_in_time_join
from mlfs_dagster.settings import use_home

# Training needs 30 days of label maturity after a 29-day warm-up, so a quick run still spans 75 days.
# 500 cards and 1,000 transactions a day left 6 frauds to validate on: the model failed its PR-AUC gate.
QUICK = {"days": 75, "cards": 1_000, "transactions_per_day": 2_000, "pit_labels": 200_000}
YEAR = {"days": 365, "cards": 10_000, "transactions_per_day": 20_000}
MEMORY_SAMPLE_SECONDS = 0.02
PIT_FEATURE_ROWS_PER_LABEL = 2
PIT_ENTITIES_PER_LABEL = 0.1
PIT_TTL = dt.timedelta(days=7)
# Amount sums: DuckDB sums exact decimals, pandas sums floats; they agree to far better than a cent.
SUM_TOLERANCE = 1e-6
COMPARISON_REPEATS = 3


@dataclass(frozen=True)
class Stage:
    """One run of the backfill: what it materializes and which tables its rows are counted in."""

    name: str
    assets: tuple[str, ...]
    partitioned: bool
    reads: tuple[str, ...]  # tables whose rows are the stage's main input ("landing" for the landing files)
    writes: tuple[str, ...]
    rate_of: str  # "out" or "in": which row count rows/s divides


TRANSACTIONS = SYSTEM.source("transactions").table
STAGES = (
    Stage("raw ingestion", tuple(s.asset_name for s in SYSTEM.sources), True, ("landing",),
          tuple(s.table for s in SYSTEM.sources), "out"),
    Stage("card_txn_windows", ("card_txn_windows",), True, (TRANSACTIONS,),
          (SYSTEM.feature_group("card_txn_windows").table,), "out"),
    Stage("card_details", ("card_details",), True, (SYSTEM.source("card_profiles").table,),
          (SYSTEM.feature_group("card_details").table,), "out"),
    Stage("merchant_risk", ("merchant_risk",), True, (TRANSACTIONS,),
          (SYSTEM.feature_group("merchant_risk").table,), "in"),
    Stage("training set", (FRAUD_VIEW.asset_name,), False, (TRANSACTIONS,), (FRAUD_VIEW.table,), "out"),
    Stage("model (train, gate, champion)", (FRAUD_MODEL.name, f"{FRAUD_MODEL.name}_champion"), False,
          (FRAUD_VIEW.table,), (), "in"),
    Stage("batch inference", (f"{FRAUD_MODEL.name}_predictions",), True, (TRANSACTIONS,),
          (FRAUD_MODEL.predictions_table,), "out"),
    Stage("drift reports", (f"{FRAUD_MODEL.name}_feature_drift",), True, (FRAUD_MODEL.predictions_table,),
          (FRAUD_MODEL.drift_table,), "in"),
)


PER_PARTITION_STAGES = ("raw ingestion", "card_txn_windows", "batch inference")


@dataclass(frozen=True)
class Timing:
    name: str
    seconds: float
    step_seconds: float | None = None
    rows_in: int | None = None
    rows_out: int | None = None
    rate_of: str = ""
    peak_bytes: int | None = None
    cpu_seconds: float | None = None  # the process's CPU time: less inflated than wall time on a busy machine

    @property
    def rows_per_second(self) -> float | None:
        rows = self.rows_out if self.rate_of == "out" else self.rows_in
        return rows / self.seconds if rows is not None and self.seconds > 0 else None


@dataclass(frozen=True)
class Comparison:
    name: str
    rows: str
    ours: float
    pandas: float
    checked: str


def timed(work: Callable[[], object]) -> tuple[object, float]:
    start = time.perf_counter()
    result = work()
    return result, time.perf_counter() - start


def best_of(work: Callable[[], object], repeats: int = COMPARISON_REPEATS) -> tuple[object, float]:
    """The fastest of a few runs: the comparisons are short enough for scheduling noise to matter."""
    runs = [timed(work) for _ in range(repeats)]
    return runs[0][0], min(seconds for _, seconds in runs)


class PeakMemory:
    """The process's resident set, sampled by a thread: its highest value since the last `reset`.

    ru_maxrss only ever grows over a process, so it cannot tell one in-process stage from the one before."""

    def __init__(self):
        self.peak = 0
        self._page = os.sysconf("SC_PAGE_SIZE")
        threading.Thread(target=self._sample, daemon=True).start()

    def resident(self) -> int:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * self._page

    def reset(self) -> None:
        """Start a new high-water mark, after handing back what earlier stages freed but allocators kept."""
        gc.collect()
        pa.default_memory_pool().release_unused()
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        self.peak = self.resident()

    def _sample(self) -> None:
        while True:
            self.peak = max(self.peak, self.resident())
            time.sleep(MEMORY_SAMPLE_SECONDS)


# --- Environment ---


def quiet_libraries() -> None:
    """The benchmark prints its own progress; Dagster's beta notices and MLflow's chatter would bury it."""
    from dagster import BetaWarning, PreviewWarning

    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    os.environ["MLFLOW_LOGGING_LEVEL"] = "ERROR"  # mlflow resets its logger's level when imported
    warnings.filterwarnings("ignore", category=BetaWarning)
    warnings.filterwarnings("ignore", category=PreviewWarning)
    warnings.filterwarnings("ignore", module="mlflow")


def import_heavy_libraries() -> Timing:
    """Paid once per process by whichever stage comes first; timed apart so stages measure their work."""

    def load():
        import evidently  # noqa: F401
        import mlflow  # noqa: F401
        import sklearn.ensemble  # noqa: F401

    return Timing("imports (evidently, mlflow, scikit-learn)", timed(load)[1])


# --- Backfill stages ---


def materialize_stage(defs, instance, stage: Stage, days: tuple[dt.date, dt.date]) -> tuple[float, float]:
    """One in-process run, as the demo's `_materialize` does it; returns (run seconds, step seconds)."""
    from dagster import AssetKey, AssetSelection, materialize

    from mlfs_dagster.builders.common import range_tags

    tags = range_tags(*(d.isoformat() for d in days)) if stage.partitioned else {}
    keys = [AssetKey([SYSTEM.name, name]) for name in stage.assets]
    result, seconds = timed(lambda: materialize(
        [*defs.assets, *defs.asset_checks], selection=AssetSelection.assets(*keys),
        resources=defs.resources, instance=instance, tags=tags, run_config=QUIET, raise_on_error=False,
    ))
    if not result.success:
        failures = [f"{e.step_key}: {e.step_failure_data.error.message.strip()}"
                    for e in result.get_step_failure_events()]
        failures += [f"check {e.check_name} failed: {e.metadata}"
                     for e in result.get_asset_check_evaluations() if not e.passed]
        raise SystemExit(f"stage '{stage.name}' failed, so its time means nothing:\n" + "\n".join(failures))
    steps = instance.get_run_step_stats(result.run_id)
    return seconds, sum(s.end_time - s.start_time for s in steps if s.start_time and s.end_time)


def table_rows(store: OfflineStore, tables: tuple[str, ...]) -> int:
    return sum(store.status(table).rows for table in tables)


def run_stages(store: OfflineStore, landing_rows: int, days: tuple[dt.date, dt.date],
               memory: PeakMemory) -> list[Timing]:
    from dagster import DagsterInstance

    from card_fraud.definitions import defs

    instance = DagsterInstance.get()
    timings = []
    for stage in STAGES:
        rows_in = landing_rows if stage.reads == ("landing",) else table_rows(store, stage.reads)
        memory.reset()
        cpu = time.process_time()
        seconds, step_seconds = materialize_stage(defs, instance, stage, days)
        cpu = time.process_time() - cpu
        rows_out = table_rows(store, stage.writes) if stage.writes else None
        timings.append(Timing(stage.name, seconds, step_seconds, rows_in, rows_out, stage.rate_of, memory.peak, cpu))
        print_progress(timings[-1])
    return timings


@dataclass(frozen=True)
class PerPartition:
    stage: str
    partitions: int
    single_run: float  # one run over the partitions
    runs: float  # one run per partition, all of them
    range_days: int
    range_run: float  # the backfill's one run over the whole range

    @property
    def extrapolated(self) -> float:
        """One run per partition over the whole range, at the measured seconds per run."""
        return self.runs / self.partitions * self.range_days


def compare_per_partition(count: int, days: tuple[dt.date, dt.date], timings: list[Timing]) -> list[PerPartition]:
    """The last `count` partitions of each stage again, as one run and as one run per partition (the way a
    backfill without a single-run policy, or a daily schedule catching up, launches them)."""
    from dagster import DagsterInstance

    from card_fraud.definitions import defs

    instance = DagsterInstance.get()
    first = days[1] - dt.timedelta(days=count - 1)
    partitions = [first + dt.timedelta(days=i) for i in range(count)]
    compared = []
    for stage in (s for s in STAGES if s.name in PER_PARTITION_STAGES):
        single = materialize_stage(defs, instance, stage, (first, days[1]))[0]
        runs = sum(materialize_stage(defs, instance, stage, (day, day))[0] for day in partitions)
        range_run = next(t.seconds for t in timings if t.name == stage.name)
        compared.append(PerPartition(stage.name, count, single, runs, (days[1] - days[0]).days + 1, range_run))
        print(f"  {stage.name:<42} {single:7.1f} s in one run, {runs:7.1f} s in {count} runs", flush=True)
    return compared


# --- a. Point-in-time join: core.pit (ours) against pandas merge_asof ---


def synthetic_pit_tables(labels: int, seed: int) -> tuple[pa.Table, pa.Table]:
    """A shuffled label spine and a feature table over 60 days, with some equal timestamps and stale rows.

    Feature times are distinct, so every match is unambiguous and both joins must agree exactly.
    """
    rng = np.random.default_rng(seed)
    feature_rows, entities = labels * PIT_FEATURE_ROWS_PER_LABEL, int(labels * PIT_ENTITIES_PER_LABEL)
    span = 60 * 86_400 * 1_000_000
    step = span // feature_rows
    feature_time = np.arange(feature_rows) * step + rng.integers(0, step, feature_rows)
    feature_entity = rng.integers(0, entities, feature_rows)
    label_time = rng.integers(0, span, labels)
    label_entity = rng.integers(0, entities, labels)
    # A tenth of the labels fall exactly on a feature row of their entity: equal timestamps must match.
    exact = np.flatnonzero(rng.random(labels) < 0.1)
    picked = rng.integers(0, feature_rows, len(exact))
    label_time[exact], label_entity[exact] = feature_time[picked], feature_entity[picked]
    start = int(dt.datetime(2026, 1, 1, tzinfo=dt.UTC).timestamp() * 1_000_000)

    def table(entity: np.ndarray, micros: np.ndarray, **columns) -> pa.Table:
        return pa.table({"entity_id": pc.cast(pa.array(entity), pa.string()),
                         "event_time": pa.array(start + micros, pa.timestamp("us", "UTC")), **columns})

    features = table(feature_entity, feature_time, value=rng.normal(size=feature_rows))
    return table(label_entity, label_time), features


def ours_pit(spine: pa.Table, features: pa.Table) -> pd.DataFrame:
    join = FeatureJoin("feature", features, ("entity_id",), ("value",), ttl=PIT_TTL)
    joined = point_in_time_join(spine, "event_time", [join])
    return joined.select(["value", join.matched_time_column]).to_pandas()


def pandas_pit(spine: pd.DataFrame, features: pd.DataFrame) -> pd.DataFrame:
    """merge_asof needs both sides sorted by time; the result is put back in spine order like ours."""
    left = spine.assign(row=np.arange(len(spine))).sort_values("event_time", kind="stable")
    right = features.assign(feature_event_time=features["event_time"])
    right = right.sort_values("event_time", kind="stable")
    joined = pd.merge_asof(left, right, on="event_time", by="entity_id", direction="backward",
                           allow_exact_matches=True, tolerance=pd.Timedelta(PIT_TTL))
    return joined.sort_values("row")[["value", "feature_event_time"]].reset_index(drop=True)


def compare_pit(labels: int, seed: int) -> Comparison:
    spine, features = synthetic_pit_tables(labels, seed)
    spine_frame, feature_frame = spine.to_pandas(), features.to_pandas()
    ours, ours_seconds = best_of(lambda: ours_pit(spine, features))
    theirs, pandas_seconds = best_of(lambda: pandas_pit(spine_frame, feature_frame))
    pd.testing.assert_frame_equal(ours, theirs, check_names=False, check_dtype=False)
    matched = int(ours["value"].notna().sum())
    return Comparison("point-in-time join (TTL 7 d)",
                      f"{spine.num_rows:,} labels x {features.num_rows:,} feature rows",
                      ours_seconds, pandas_seconds,
                      f"all {spine.num_rows:,} rows equal ({matched:,} matched)")


# --- b. Window features: card_txn_windows SQL (ours) against pandas groupby-rolling ---


WINDOWS = {"1h": "1h", "24h": "24h", "7d": "7D"}
WINDOW_COLUMNS = [f"{kind}_{label}" for label in WINDOWS for kind in ("txn_count", "amount_sum")]


def ours_windows(transactions: pa.Table) -> pd.DataFrame:
    times = transactions["event_time"]
    first, last = pc.min(times).as_py(), pc.max(times).as_py()
    everything = TimeRange(first, last + dt.timedelta(microseconds=1))
    computed = compute_feature_group(CARD_TXN_WINDOWS, {"transactions": transactions}, everything)
    return computed.to_pandas()


def pandas_windows(transactions: pd.DataFrame) -> pd.DataFrame:
    """Per card, counts and sums over the window before each transaction, and the gap to the previous one."""
    ordered = transactions.sort_values(["card_id", "event_time", "transaction_id"], kind="stable")
    result = ordered[["card_id", "event_time", "transaction_id"]].reset_index(drop=True)
    amounts = ordered.set_index("event_time").groupby("card_id", sort=False)["amount"]
    for label, span in WINDOWS.items():
        rolled = amounts.rolling(span, closed="left").agg(["count", "sum"]).fillna(0)  # empty window: NaN
        result[f"txn_count_{label}"] = rolled["count"].to_numpy().astype("int64")
        result[f"amount_sum_{label}"] = rolled["sum"].to_numpy()
    gap = ordered.groupby("card_id", sort=False)["event_time"].diff()
    result["seconds_since_previous"] = gap.dt.total_seconds().where(gap <= pd.Timedelta(days=7)).to_numpy()
    return result


def assert_same_windows(ours: pd.DataFrame, theirs: pd.DataFrame) -> None:
    ours = ours.sort_values("transaction_id").reset_index(drop=True)
    theirs = theirs.sort_values("transaction_id").reset_index(drop=True)
    exact = ["transaction_id", "card_id", *(c for c in WINDOW_COLUMNS if c.startswith("txn_count"))]
    pd.testing.assert_frame_equal(ours[exact], theirs[exact], check_dtype=False)
    for column in (*(c for c in WINDOW_COLUMNS if c.startswith("amount_sum")), "seconds_since_previous"):
        np.testing.assert_allclose(ours[column], theirs[column], rtol=0, atol=SUM_TOLERANCE, err_msg=column)


def compare_windows(store: OfflineStore) -> Comparison:
    transactions = store.read(TRANSACTIONS, ("transaction_id", "card_id", "event_time", "amount"))
    frame = transactions.to_pandas()
    ours, ours_seconds = best_of(lambda: ours_windows(transactions))
    theirs, pandas_seconds = best_of(lambda: pandas_windows(frame))
    assert_same_windows(ours, theirs)
    return Comparison("card_txn_windows (1 h, 24 h, 7 d)", f"{transactions.num_rows:,} transactions",
                      ours_seconds, pandas_seconds, "counts equal, sums and gaps within 1e-6")


# --- Report ---


def print_progress(timing: Timing) -> None:
    rows = f"{timing.rows_out:>10,} rows out" if timing.rows_out is not None else ""
    peak = f"{gigabytes(timing.peak_bytes):6.2f} GB peak" if timing.peak_bytes else ""
    print(f"  {timing.name:<42} {timing.seconds:7.1f} s {peak} {rows} ({load_average()})".rstrip(), flush=True)


def gigabytes(size: int) -> float:
    return size / 1e9


def load_average() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} (1 min), {five:.1f} (5 min)"


def optional(value, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def stage_table(timings: list[Timing]) -> str:
    lines = ["| stage | run s | step s | cpu s | peak GB | rows in | rows out | rows/s | rows/s of |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    lines += [
        f"| {t.name} | {t.seconds:.1f} | {optional(t.step_seconds, '.1f')} | {optional(t.cpu_seconds, '.1f')} "
        f"| {optional(t.peak_bytes and gigabytes(t.peak_bytes), '.2f')} | {optional(t.rows_in, ',')} "
        f"| {optional(t.rows_out, ',')} | {optional(t.rows_per_second, ',.0f')} | {t.rate_of or '–'} |"
        for t in timings
    ]
    total = sum(t.seconds for t in timings)
    lines.append(f"| **total** | **{total:.1f}** | | | | | | | |")
    return "\n".join(lines)


def per_partition_table(compared: list[PerPartition]) -> str:
    if not compared:
        return ""
    count, days = compared[0].partitions, compared[0].range_days
    lines = [f"| stage | 1 run of {count} partitions s | {count} runs of 1 partition s | runs / single run "
             f"| 1 run of all {days} s (measured) | {days} runs s (extrapolated) |", "|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {c.stage} | {c.single_run:.1f} | {c.runs:.1f} | {c.runs / c.single_run:.1f}x | {c.range_run:.1f} "
              f"| {c.extrapolated:.0f} |" for c in compared]
    return "\n".join(lines)


def comparison_table(comparisons: list[Comparison]) -> str:
    lines = ["| comparison | rows | ours s | pandas s | pandas / ours | checked |",
             "|---|---|---:|---:|---:|---|"]
    lines += [
        f"| {c.name} | {c.rows} | {c.ours:.2f} | {c.pandas:.2f} | {c.pandas / c.ours:.1f}x | {c.checked} |"
        for c in comparisons
    ]
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    defaults = DemoConfig()
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=defaults.days)
    parser.add_argument("--cards", type=int, default=defaults.cards)
    parser.add_argument("--transactions-per-day", type=int, default=defaults.transactions_per_day)
    parser.add_argument("--pit-labels", type=int, default=1_000_000,
                        help="label rows of the synthetic join comparison (feature rows: twice as many)")
    parser.add_argument("--quick", action="store_true", help=f"smoke run: {QUICK}")
    parser.add_argument("--year", action="store_true", help=f"a year at scale: {YEAR}")
    parser.add_argument("--per-partition", type=int, default=0, metavar="N",
                        help=f"re-run the last N partitions of {', '.join(PER_PARTITION_STAGES)} as one run and "
                        "as N runs, extrapolating the N runs to the whole range")
    parser.add_argument("--no-comparisons", action="store_true", help="skip the engine comparisons")
    parser.add_argument("--home", type=Path,
                        help="empty folder to use as MLFS_HOME, kept afterwards (default: a temporary one)")
    args = parser.parse_args()
    if args.quick or args.year:
        parser.set_defaults(**(QUICK if args.quick else YEAR))
        args = parser.parse_args()
    return args


def demo_config(args: argparse.Namespace) -> DemoConfig:
    """The demo's configuration at the requested size, its drift starting as late in the period."""
    defaults = DemoConfig()
    drift_day = max(1, round(args.days * defaults.drift_day / defaults.days))
    return DemoConfig(days=args.days, drift_day=drift_day, cards=args.cards,
                      transactions_per_day=args.transactions_per_day)


def run(args: argparse.Namespace, home: Path) -> None:
    settings = use_home(home)
    init_dagster_home(settings)
    quiet_libraries()
    config = demo_config(args)
    days = (SYSTEM.start, SYSTEM.start + dt.timedelta(days=config.days - 1))
    print(f"MLFS_HOME {home}: {config.days} days, {config.cards:,} cards, "
          f"{config.transactions_per_day:,} transactions/day, drift from day {config.drift_day}; "
          f"{os.cpu_count()} CPUs, {load_average()}", flush=True)

    memory = PeakMemory()
    simulated, seconds = timed(lambda: simulate(config.simulation(days[0]), Path(settings.landing)))
    landing_rows = sum(simulated.rows.values())
    timings = [Timing("simulate (landing files)", seconds, rows_out=landing_rows, rate_of="out",
                      peak_bytes=memory.peak)]
    print_progress(timings[0])
    memory.reset()
    timings.append(import_heavy_libraries())
    print_progress(timings[1])
    store = settings.offline_store()
    timings += run_stages(store, landing_rows, days, memory)
    compared = compare_per_partition(args.per_partition, days, timings) if args.per_partition else []

    comparisons = []
    if not args.no_comparisons:
        print(f"  comparing engines (best of {COMPARISON_REPEATS} runs each) ...", flush=True)
        comparisons = [compare_pit(args.pit_labels, config.seed), compare_windows(store)]

    print("\nBackfill stages, each one in-process Dagster run over the whole range. 'step s' is spent in the "
          "run's steps (asset bodies, checks, per-partition events); the rest of 'run s' is run set-up. "
          "'cpu s' is the process's CPU time (all its threads); 'peak GB' its highest resident set during the stage. "
          "Rows are read back from the Iceberg tables.\n")
    print(stage_table(timings))
    if compared:
        print(f"\nThe last {args.per_partition} partitions again: one run over them, then one run per partition "
              f"(measured); the last column scales the per-partition runs to all {compared[0].range_days} "
              "partitions (extrapolated).\n")
        print(per_partition_table(compared))
    if comparisons:
        print("\nSame work, same process, same inputs; both sides checked equal before timing is reported.\n")
        print(comparison_table(comparisons))
    print(f"\nMachine {load_average()} at the end: figures are only comparable at similar load.")


def main() -> None:
    args = parse_args()
    started = time.perf_counter()
    if args.home:
        args.home.mkdir(parents=True, exist_ok=True)
        if any(args.home.iterdir()):
            raise SystemExit(f"--home {args.home} is not empty: the benchmark needs a fresh folder")
        run(args, args.home.resolve())
    else:
        with tempfile.TemporaryDirectory(prefix="mlfs-benchmark-") as home:
            run(args, Path(home))
    print(f"\nTotal runtime {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
