"""Point-in-time join benchmark: `core.pit` against Feast's DuckDB offline store and pandas `merge_asof`.

Each engine runs in its own process on the same parquet inputs, best of N, and its result is checked equal
to ours, row by row, before any time is printed:
  1. 1 M labels against 2 M feature rows of one group (TTL 30 days): ours, Feast 0.67, pandas.
  2. 10 M labels against 20 M feature rows in three groups (10 M card, 6 M merchant, 4 M device rows):
     ours and pandas.
  --stress adds 10 M labels against three groups of 20 M rows each (60 M feature rows).

Feast never enters the project's environment: it lives in its own venv, `benchmarks/.venv-feast`, created
on first use (pip, about a minute), and runs in a subprocess of that venv. This file is also that
subprocess's entry point (`--feast-worker`), so it imports no project module at top level.

    .venv/bin/python benchmarks/pit_join.py             # both runs, about 8 minutes
    .venv/bin/python benchmarks/pit_join.py --quick     # smoke run: 100 k labels, then 1 M labels x 3 groups
    .venv/bin/python benchmarks/pit_join.py --no-feast  # without Feast (no venv, no subprocess)
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

FEAST_VENV = Path(__file__).parent / ".venv-feast"
FEAST_REQUIREMENT = "feast[duckdb]==0.67.*"
TTL = dt.timedelta(days=30)
DAY_US = 86_400_000_000
FEATURE_SPAN_DAYS = 60
# Labels start 10 days before the first feature row and end 40 days after the last one, so some labels
# match nothing yet and some only rows older than the TTL.
LABEL_SPAN_DAYS = (-10, 100)
START_US = int(dt.datetime(2026, 1, 1, tzinfo=dt.UTC).timestamp() * 1_000_000)
EXACT_SHARE = 0.1  # labels that fall exactly on a feature row of their entity: equal timestamps match
NULL_KEY_SHARE = 0.01  # labels with a null key match nothing


@dataclass(frozen=True)
class Group:
    """One synthetic feature group: its entity key column in the spine and its feature rows."""

    name: str
    key: str
    rows: int
    entities: int


@dataclass(frozen=True)
class Run:
    labels: int
    groups: tuple[Group, ...]
    feast: bool
    repeats: int  # best of this many, ours and Feast
    pandas_repeats: int  # 0: pandas is not run


def full_runs() -> list[Run]:
    """The 1 M run has the size of the issue's measurement; the 10 M run splits 20 M feature rows over three
    groups of realistic shapes (many cards, fewer merchants, devices keyed by integers)."""
    one_group = (Group("cards", "card_id", 2_000_000, 100_000),)
    three = (
        Group("cards", "card_id", 10_000_000, 1_000_000),
        Group("merchants", "merchant_id", 6_000_000, 50_000),
        Group("devices", "device_id", 4_000_000, 500_000),
    )
    return [Run(1_000_000, one_group, True, repeats=5, pandas_repeats=3), Run(10_000_000, three, False, 3, 1)]


def quick_runs() -> list[Run]:
    three = (
        Group("cards", "card_id", 1_000_000, 100_000),
        Group("merchants", "merchant_id", 600_000, 5_000),
        Group("devices", "device_id", 400_000, 50_000),
    )
    return [
        Run(100_000, (Group("cards", "card_id", 200_000, 10_000),), feast=True, repeats=2, pandas_repeats=1),
        Run(1_000_000, three, feast=False, repeats=2, pandas_repeats=1),
    ]


def stress_runs() -> list[Run]:
    """Three groups of 20 M rows each, 60 M feature rows in all: ours only (pandas would take many minutes)."""
    three = tuple(
        Group(name, key, 20_000_000, 1_000_000)
        for name, key in [("cards", "card_id"), ("merchants", "merchant_id"), ("devices", "device_id")]
    )
    return [Run(10_000_000, three, feast=False, repeats=2, pandas_repeats=0)]


# --- Synthetic tables ---


def synthetic_tables(run: Run, seed: int = 0) -> tuple[pa.Table, dict[str, pa.Table]]:
    """A spine (`label_id`, one key column per group, `event_time`) and one feature table per group.

    Feature times are distinct within a group and rows come in random order, so every match is unambiguous
    (Feast breaks ties by nothing but the created timestamp) and no engine is handed pre-sorted input.
    Keys are strings, as entity ids usually are, except `device_id`, an integer.
    """
    rng = np.random.default_rng(seed)
    label_times = START_US + rng.integers(
        LABEL_SPAN_DAYS[0] * DAY_US, LABEL_SPAN_DAYS[1] * DAY_US, run.labels
    )
    spine = {"label_id": pa.array(np.arange(run.labels))}
    features = {}
    for group in run.groups:
        feature_times, feature_keys = _feature_rows(rng, group.rows, group.entities)
        label_keys = rng.integers(0, group.entities, run.labels)
        exact = np.flatnonzero(rng.random(run.labels) < EXACT_SHARE)
        picked = rng.integers(0, group.rows, len(exact))
        label_keys[exact] = feature_keys[picked]
        if group is run.groups[0]:  # one exact time per label, taken from the first group
            label_times[exact] = feature_times[picked]
        spine[group.key] = _keys(group, label_keys, null_share=NULL_KEY_SHARE, rng=rng)
        features[group.name] = pa.table(
            {
                group.key: _keys(group, feature_keys),
                "event_time": pa.array(feature_times, pa.timestamp("us", "UTC")),
                f"{group.name}_value": rng.normal(size=group.rows),
                f"{group.name}_count": rng.integers(0, 1_000, group.rows),
            }
        )
    spine["event_time"] = pa.array(label_times, pa.timestamp("us", "UTC"))
    return pa.table(spine), features


def _feature_rows(rng: np.random.Generator, rows: int, entities: int) -> tuple[np.ndarray, np.ndarray]:
    """Distinct times spread evenly over the span, in random order, with random entities."""
    step = FEATURE_SPAN_DAYS * DAY_US // rows
    times = START_US + np.arange(rows) * step + rng.integers(0, step, rows)
    return rng.permutation(times), rng.integers(0, entities, rows)


def _keys(group: Group, ids: np.ndarray, null_share: float = 0.0, rng=None) -> pa.Array:
    mask = rng.random(len(ids)) < null_share if null_share else None
    ints = pa.array(ids, mask=mask)
    return ints if group.key == "device_id" else pc.cast(ints, pa.string())


# --- Feast, in its own venv ---


def feast_python() -> Path:
    """The Feast venv's interpreter, the venv created on first use (a minute or two)."""
    python = FEAST_VENV / "bin" / "python"
    if not python.exists():
        print(f"creating {FEAST_VENV} with {FEAST_REQUIREMENT} ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(FEAST_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "uv>=0.5,<1"], check=True)
        subprocess.run(
            [
                str(FEAST_VENV / "bin" / "uv"),
                "pip",
                "install",
                "--quiet",
                "--python",
                str(python),
                FEAST_REQUIREMENT,
            ],
            check=True,
        )
    return python


def feast_worker(folder: Path, name: str, key: str, repeats: int) -> None:
    """Inside the Feast venv: a FeatureView (TTL 30 days) over the group's parquet, DuckDB offline store."""
    from feast import Entity, FeatureStore, FeatureView, Field, FileSource, RepoConfig
    from feast.infra.offline_stores.duckdb import DuckDBOfflineStoreConfig
    from feast.infra.online_stores.sqlite import SqliteOnlineStoreConfig
    from feast.types import Float64, Int64

    repo = folder / "feast_repo"
    repo.mkdir(exist_ok=True)
    config = RepoConfig(
        project="pit_benchmark",
        provider="local",
        registry=str(repo / "registry.db"),
        offline_store=DuckDBOfflineStoreConfig(),
        online_store=SqliteOnlineStoreConfig(path=str(repo / "online.db")),
        entity_key_serialization_version=3,
        repo_path=repo,
    )
    store = FeatureStore(config=config)
    entity = Entity(name=key, join_keys=[key])
    source = FileSource(path=str(folder / f"{name}.parquet"), timestamp_field="event_time")
    view = FeatureView(
        name=name,
        entities=[entity],
        ttl=TTL,
        source=source,
        schema=[Field(name=f"{name}_value", dtype=Float64), Field(name=f"{name}_count", dtype=Int64)],
    )
    store.apply([entity, view])
    # Feast takes the label time from a column named event_timestamp (the one datetime column otherwise).
    entity_df = pq.read_table(folder / "spine.parquet", columns=["label_id", key, "event_time"]).to_pandas()
    entity_df = entity_df.rename(columns={"event_time": "event_timestamp"})
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        result = store.get_historical_features(
            entity_df=entity_df, features=[f"{name}:{name}_value"]
        ).to_arrow()
        best = min(best, time.perf_counter() - start)
    pq.write_table(result.select(["label_id", f"{name}_value"]), folder / "feast_result.parquet")
    print(json.dumps({"seconds": best, "peak": peak_memory()}))


# --- Engines, each timed in its own process on the same parquet inputs ---


def engine_worker(engine: str, folder: Path, run: Run) -> None:
    """Read the inputs, join best-of-N, write the result in spine order and report time and peak memory."""
    spine = pq.read_table(folder / "spine.parquet")
    features = {group.name: pq.read_table(folder / f"{group.name}.parquet") for group in run.groups}
    inputs_memory = current_memory()
    join = ours if engine == "ours" else pandas_join
    best = float("inf")
    for _ in range(run.repeats if engine == "ours" else run.pandas_repeats):
        start = time.perf_counter()
        result = join(spine, features, run)
        best = min(best, time.perf_counter() - start)
    pq.write_table(result, folder / f"{engine}_result.parquet")
    print(json.dumps({"seconds": best, "peak": peak_memory(), "inputs": inputs_memory}))


def ours(spine: pa.Table, features: dict[str, pa.Table], run: Run) -> pa.Table:
    from mlfs_dagster.core.pit import FeatureJoin, point_in_time_join

    joins = [
        FeatureJoin(group.name, features[group.name], (group.key,), value_columns(group), ttl=TTL)
        for group in run.groups
    ]
    joined = point_in_time_join(spine, "event_time", joins)
    return joined.drop_columns(spine.column_names)


def pandas_join(spine: pa.Table, features: dict[str, pa.Table], run: Run) -> pa.Table:
    """merge_asof per group; both sides sorted by time first, the result put back in spine order."""
    joined = spine.to_pandas().assign(row=np.arange(spine.num_rows)).sort_values("event_time", kind="stable")
    for group in run.groups:
        right = features[group.name].to_pandas()
        right[f"{group.name}_event_time"] = right["event_time"]
        # An integer key with nulls in the spine comes to pandas as floats; merge_asof wants one dtype.
        right[group.key] = right[group.key].astype(joined[group.key].dtype)
        right = right.sort_values("event_time", kind="stable")
        joined = pd.merge_asof(joined, right, on="event_time", by=group.key, tolerance=pd.Timedelta(TTL))
    columns = [c for group in run.groups for c in (*value_columns(group), f"{group.name}_event_time")]
    return pa.Table.from_pandas(joined.sort_values("row")[columns], preserve_index=False)


def value_columns(group: Group) -> tuple[str, str]:
    return f"{group.name}_value", f"{group.name}_count"


def current_memory() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_memory() -> int:
    """This process's peak resident memory in bytes (Linux reports kilobytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@dataclass
class Timing:
    seconds: float
    peak: int
    inputs: int = 0


def run_engine(engine: str, folder: Path, run: Run, memory_limit: int | None = None) -> Timing | str:
    """One engine in a child process; a string says why it gave no result (out of memory, say)."""
    command = [sys.executable, __file__, "--engine", engine, str(folder), json.dumps(run_to_json(run))]

    def limit() -> None:  # in the child: fail with MemoryError rather than take the machine down
        if memory_limit:
            resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))

    out = subprocess.run(command, check=False, capture_output=True, text=True, preexec_fn=limit)
    if out.returncode:
        last = (out.stderr.strip().splitlines() or ["?"])[-1]
        return f"failed: {last[:120]}"
    report = json.loads(out.stdout.strip().splitlines()[-1])
    return Timing(report["seconds"], report["peak"], report["inputs"])


def run_to_json(run: Run) -> dict:
    return {
        "labels": run.labels,
        "repeats": run.repeats,
        "pandas_repeats": run.pandas_repeats,
        "feast": run.feast,
        "groups": [[g.name, g.key, g.rows, g.entities] for g in run.groups],
    }


def run_from_json(data: dict) -> Run:
    groups = tuple(Group(*g) for g in data["groups"])
    return Run(data["labels"], groups, data["feast"], data["repeats"], data["pandas_repeats"])


# --- Checks ---


def equal_rows(ours_result: pa.Table, other: pa.Table, columns: list[str]) -> int:
    """The number of rows (all of them, or it raises) where every column holds the same value or null."""
    for column in columns:
        mine, theirs = ours_result[column], other[column]
        if pa.types.is_timestamp(mine.type):
            mine, theirs = mine.cast(pa.int64()), theirs.cast(mine.type).cast(pa.int64())
        a, b = _floats(mine), _floats(theirs)
        same = (a == b) | (np.isnan(a) & np.isnan(b))
        if not same.all():
            first = int(np.flatnonzero(~same)[0])
            raise AssertionError(
                f"{column}: {int((~same).sum())} rows differ, first at row {first}: {a[first]} != {b[first]}"
            )
    return ours_result.num_rows


def _floats(column: pa.ChunkedArray) -> np.ndarray:
    return pc.fill_null(column.cast(pa.float64()), float("nan")).to_numpy()


# --- The runs and the table ---


@dataclass
class Row:
    run: Run
    ours: Timing
    feast: Timing | str | None
    pandas: Timing | str
    checked: str


def measure(run: Run, with_feast: bool, pandas_memory: int) -> Row:
    with tempfile.TemporaryDirectory(prefix="pit_benchmark_") as name:
        folder = Path(name)
        spine, features = synthetic_tables(run)
        pq.write_table(spine, folder / "spine.parquet")
        for group_name, table in features.items():
            pq.write_table(table, folder / f"{group_name}.parquet")
        del spine, features
        print(f"  {describe(run)}: ours ...", flush=True)
        ours_timing = run_engine("ours", folder, run)
        if not isinstance(ours_timing, Timing):
            raise SystemExit(f"ours {ours_timing}")
        ours_result = pq.read_table(folder / "ours_result.parquet")
        checks = []
        pandas_timing = "not run"
        if run.pandas_repeats:
            print("  pandas ...", flush=True)
            pandas_timing = run_engine("pandas", folder, run, memory_limit=pandas_memory)
        if isinstance(pandas_timing, Timing):
            columns = [c for g in run.groups for c in (*value_columns(g), f"{g.name}_event_time")]
            rows = equal_rows(ours_result, pq.read_table(folder / "pandas_result.parquet"), columns)
            checks.append(f"{rows:,} rows equal to pandas")
        feast_timing = None
        if run.feast and with_feast:
            print("  Feast ...", flush=True)
            group = run.groups[0]
            feast_timing = run_feast(folder, group, run.repeats)
            if isinstance(feast_timing, Timing):
                feast_result = pq.read_table(folder / "feast_result.parquet").sort_by("label_id")
                rows = equal_rows(ours_result, feast_result, [f"{group.name}_value"])
                checks.append(f"{rows:,} rows equal to Feast ({group.name}_value)")
        matched = int(ours_result[f"{run.groups[0].name}_value"].is_valid().to_numpy().sum())
        checks.append(f"{matched:,} of them matched in {run.groups[0].name}")
        return Row(run, ours_timing, feast_timing, pandas_timing, "; ".join(checks))


def run_feast(folder: Path, group: Group, repeats: int) -> Timing | str:
    command = [
        str(feast_python()),
        __file__,
        "--feast-worker",
        str(folder),
        group.name,
        group.key,
        str(repeats),
    ]
    out = subprocess.run(command, check=False, capture_output=True, text=True)
    if out.returncode:
        return f"failed: {(out.stderr.strip().splitlines() or ['?'])[-1][:120]}"
    report = json.loads(out.stdout.strip().splitlines()[-1])
    return Timing(report["seconds"], report["peak"])


def describe(run: Run) -> str:
    rows = " + ".join(_count(g.rows) for g in run.groups)
    return f"{_count(run.labels)} labels x {rows} feature rows"


def _count(number: int) -> str:
    return f"{number / 1e6:g} M" if number >= 1_000_000 else f"{number / 1e3:g} k"


def table(rows: list[Row]) -> str:
    def seconds(timing) -> str:
        return f"{timing.seconds:.2f}" if isinstance(timing, Timing) else "–"

    def ratio(timing, ours_timing: Timing) -> str:
        return f"{timing.seconds / ours_timing.seconds:.1f}x" if isinstance(timing, Timing) else "–"

    def gigabytes(timing) -> str:
        return f"{timing.peak / 1e9:.1f}" if isinstance(timing, Timing) else "–"

    lines = [
        "| run | ours s | Feast s | pandas s | Feast / ours | pandas / ours | ours labels/s"
        + " | peak GB ours / Feast / pandas | checked |",
        "|---|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for row in rows:
        rate = row.run.labels / row.ours.seconds
        lines.append(
            f"| {describe(row.run)} | {seconds(row.ours)} | {seconds(row.feast)} | {seconds(row.pandas)} "
            f"| {ratio(row.feast, row.ours)} | {ratio(row.pandas, row.ours)} | {rate / 1e6:.2f} M "
            f"| {gigabytes(row.ours)} / {gigabytes(row.feast)} / {gigabytes(row.pandas)} | {row.checked} |"
        )
    notes = [
        f"{engine}: {timing}"
        for row in rows
        for engine, timing in (("Feast", row.feast), ("pandas", row.pandas))
        if isinstance(timing, str)
    ]
    return "\n".join(lines + notes)


def machine() -> str:
    with open("/proc/cpuinfo") as cpuinfo:
        cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "?")
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    return f"{os.cpu_count()} CPUs ({cpu}), load average {load}, {dt.date.today()}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 100 k labels, then 1 M labels x 3 groups"
    )
    parser.add_argument(
        "--stress", action="store_true", help="also 10 M labels x 3 groups x 20 M rows (ours only)"
    )
    parser.add_argument("--no-feast", action="store_true", help="skip Feast (no venv, no subprocess)")
    parser.add_argument(
        "--pandas-memory-gb",
        type=float,
        default=14,
        help="address-space limit of the pandas process; past it pandas is reported as skipped",
    )
    args = parser.parse_args()
    print(f"machine: {machine()}", flush=True)
    rows = [
        measure(run, not args.no_feast, int(args.pandas_memory_gb * 1e9))
        for run in (quick_runs() if args.quick else full_runs()) + (stress_runs() if args.stress else [])
    ]
    print(f"\n{table(rows)}\n\nafter the runs: {machine()}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--feast-worker":
        feast_worker(Path(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5]))
    elif len(sys.argv) > 1 and sys.argv[1] == "--engine":
        engine_worker(sys.argv[2], Path(sys.argv[3]), run_from_json(json.loads(sys.argv[4])))
    else:
        main()
