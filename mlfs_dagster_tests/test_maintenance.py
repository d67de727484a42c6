"""Offline-store maintenance on real Iceberg tables (SQLite catalog under tmp_path): expiry keeps what training
sets need, compaction keeps every row, orphan removal spares referenced and young files, and a concurrent
commit makes compaction skip the partition rather than lose data."""

import datetime as dt
import os
import time
from pathlib import Path

import pyarrow as pa
import pytest

from mlfs_dagster.core import maintenance
from mlfs_dagster.core.maintenance import MaintenancePolicy
from mlfs_dagster.core.offline_store import OfflineStore, TimeRange

UTC_US = pa.timestamp("us", tz="UTC")
DAY = dt.date(2026, 1, 5)
TABLE = "shop.orders"
EVERYTHING_OLD = MaintenancePolicy(snapshot_max_age=dt.timedelta(0), orphan_grace=dt.timedelta(0))


def hour(number: int, day: dt.date = DAY) -> TimeRange:
    start = dt.datetime(day.year, day.month, day.day, number, tzinfo=dt.UTC)
    return TimeRange(start, start + dt.timedelta(hours=1))


def orders(time_range: TimeRange, count: int = 3, prefix: str = "o") -> pa.Table:
    return pa.table({"id": [f"{prefix}{time_range.start:%d%H}-{i}" for i in range(count)],
                     "event_time": pa.array([time_range.start] * count, UTC_US)})


def write_hours(store: OfflineStore, hours: range, day: dt.date = DAY, prefix: str = "o") -> None:
    """One commit per hour: each adds one small file to the day's partition."""
    for number in hours:
        store.replace_range(TABLE, orders(hour(number, day), prefix=prefix), "event_time", hour(number, day))


def ids(table: pa.Table) -> list[str]:
    return sorted(table["id"].to_pylist())


def data_files(store: OfflineStore) -> list[str]:
    return [task.file.file_path for task in store.table(TABLE).scan().plan_files()]


def table_folder(store: OfflineStore) -> Path:
    return Path(store.table(TABLE).location().removeprefix("file://"))


def age_every_file(folder: Path, days: int) -> None:
    then = time.time() - days * 86400
    for path in folder.rglob("*"):
        if path.is_file():
            os.utime(path, (then, then))


@pytest.fixture
def store(tmp_path) -> OfflineStore:
    return OfflineStore(f"sqlite:///{tmp_path}/c.db", f"file://{tmp_path}/wh")


def test_expiry_keeps_tagged_snapshots_and_time_travel_to_a_tag_reads_the_same_rows(store):
    write_hours(store, range(2))
    tagged = store.snapshot_id(TABLE)
    store.tag(TABLE, tagged, "training_set_v1")
    rows_at_tag = store.read(TABLE, snapshot_id=tagged)
    write_hours(store, range(2, 4))
    untagged = [s.snapshot_id for s in store.table(TABLE).metadata.snapshots if s.snapshot_id != tagged]

    result = maintenance.maintain_table(store, TABLE, EVERYTHING_OLD)

    kept = {s.snapshot_id for s in store.table(TABLE).metadata.snapshots}
    assert tagged in kept and store.snapshot_id(TABLE) in kept
    assert result.snapshots_expired == len(untagged)  # main's head is now compaction's commit
    assert store.read(TABLE, snapshot_id=store.tags(TABLE)["training_set_v1"]).equals(rows_at_tag)
    assert len(ids(store.read(TABLE))) == 12


def test_expiry_keeps_snapshots_younger_than_the_age_and_staging_branch_heads(store):
    write_hours(store, range(2))
    base = store.base_snapshot(TABLE, orders(hour(0)).schema, "event_time")
    staged = store.stage_ranges(TABLE, orders(hour(5)), "event_time", [hour(5)], "wap-test", base)
    before = len(store.table(TABLE).metadata.snapshots)

    assert maintenance.expire_snapshots(store.table(TABLE), dt.datetime.now(dt.UTC) - dt.timedelta(days=1)) == 0
    assert len(store.table(TABLE).metadata.snapshots) == before
    maintenance.expire_snapshots(store.table(TABLE), dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1))
    assert staged in {s.snapshot_id for s in store.table(TABLE).metadata.snapshots}
    assert store.publish(TABLE, "wap-test") == staged


def test_expiry_is_skipped_when_main_moves_meanwhile(store):
    write_hours(store, range(3))
    stale = store.table(TABLE)
    write_hours(store, range(3, 4))  # another writer commits after the snapshots were chosen
    snapshots = len(store.table(TABLE).metadata.snapshots)

    assert maintenance.expire_snapshots(stale, dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)) is None
    assert len(store.table(TABLE).metadata.snapshots) == snapshots


def test_compaction_leaves_rows_identical_and_fewer_files(store):
    write_hours(store, range(6))
    write_hours(store, range(3), day=DAY + dt.timedelta(days=1))
    rows_before, files_before = store.read(TABLE), data_files(store)

    partitions, files, skipped = maintenance.compact(store.table(TABLE), MaintenancePolicy())

    assert (partitions, files, skipped) == (2, 9, 0)
    assert len(data_files(store)) == 2 < len(files_before)
    assert store.read(TABLE).sort_by("id").equals(rows_before.sort_by("id"))
    assert maintenance.compact(store.table(TABLE), MaintenancePolicy()) == (0, 0, 0)  # nothing small left twice


def test_compaction_spares_partitions_of_large_files(store):
    write_hours(store, range(3))
    assert maintenance.compact(store.table(TABLE), MaintenancePolicy(small_file_bytes=100)) == (0, 0, 0)
    assert len(data_files(store)) == 3


def test_a_concurrent_commit_during_compaction_makes_it_skip_the_partition_and_lose_nothing(store):
    write_hours(store, range(4))
    stale = store.table(TABLE)  # compaction plans its groups on this view of main
    store.replace_range(TABLE, orders(hour(1), prefix="late"), "event_time", hour(1))  # a re-run of hour 1 meanwhile
    expected = store.read(TABLE)
    folder_files = {p for p in table_folder(store).rglob("*.parquet")}

    assert maintenance.compact(stale, MaintenancePolicy()) == (0, 0, 1)

    assert ids(store.read(TABLE)) == ids(expected) and any(i.startswith("late") for i in ids(expected))
    assert set(table_folder(store).rglob("*.parquet")) == folder_files  # the failed rewrite's file is gone
    assert maintenance.compact(store.table(TABLE), MaintenancePolicy()) == (1, 4, 0)  # the next run retries
    assert ids(store.read(TABLE)) == ids(expected)


def test_orphans_older_than_the_grace_period_are_removed_fresh_and_referenced_files_never(store):
    write_hours(store, range(3))
    folder = table_folder(store)
    killed_run = folder / "data" / "event_time_day=2026-01-05" / "00000-0-killed.parquet"
    killed_run.write_bytes(b"x" * 1000)
    age_every_file(folder, days=3)  # every referenced file is old too: age alone never condemns a file
    in_flight = folder / "data" / "event_time_day=2026-01-05" / "00000-0-in-flight.parquet"
    in_flight.write_bytes(b"y" * 10)
    rows = store.read(TABLE)

    removed = maintenance.remove_orphans(store.table(TABLE), store.s3, dt.datetime.now(dt.UTC) - dt.timedelta(days=1))

    assert removed == {str(killed_run): 1000}
    assert in_flight.exists() and not killed_run.exists()
    assert store.read(TABLE).equals(rows)
    for snapshot in store.table(TABLE).metadata.snapshots:  # every snapshot still reads
        store.read(TABLE, snapshot_id=snapshot.snapshot_id)


def test_a_maintenance_pass_reports_files_and_bytes_and_bounds_the_table(store):
    write_hours(store, range(6))
    first = maintenance.maintain_table(store, TABLE, EVERYTHING_OLD)
    assert first.files_after < first.files_before and first.bytes_after < first.bytes_before
    assert first.files_compacted == 6 and first.orphans_removed > 0
    after = []
    for _ in range(4):  # the same day re-run, then maintained, again and again
        write_hours(store, range(6))
        after.append(maintenance.maintain_table(store, TABLE, EVERYTHING_OLD))
    assert [r.files_after for r in after[-2:]] == [after[-1].files_after] * 2  # a steady state: no growth
    assert after[-2].bytes_after == pytest.approx(after[-1].bytes_after, rel=0.05)
    metadata_files = list((table_folder(store) / "metadata").glob("*.metadata.json"))
    assert len(metadata_files) <= MaintenancePolicy().metadata_versions_kept + 1
    assert after[-1].files_after == maintenance.usage(store.table(TABLE), store.s3).files


def test_the_meters_systems_maintenance_asset_runs_in_dagster_and_reports_files_and_bytes(tmp_path, monkeypatch):
    """Raw readings ingested hour by hour (one small file per hour in the day's partition), then maintained."""
    from dagster import AssetKey, AssetSelection, DagsterInstance, materialize

    from mlfs_dagster.builders import build_definitions
    from mlfs_dagster.builders.common import group_name
    from mlfs_dagster.settings import LOCATION_VARIABLES, Settings
    from mlfs_dagster_tests.meters import generator
    from mlfs_dagster_tests.meters.system import SYSTEM as METERS

    for name in LOCATION_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLFS_HOME", str(tmp_path))
    settings = Settings.from_env()
    generator.generate(Path(settings.landing), METERS.start, hours=4)
    defs = build_definitions(METERS)
    instance, quiet = DagsterInstance.ephemeral(), {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}

    def run(selection, **kwargs):
        return materialize(defs.assets, selection=selection, resources=defs.resources, instance=instance,
                           run_config=quiet | kwargs.pop("run_config", {}), **kwargs)

    for number in range(4):
        assert run(AssetSelection.groups(group_name(METERS, "raw")),
                   partition_key=generator.hour_key(METERS.start, number)).success
    store = settings.offline_store()
    readings = store.read(METERS.source("readings").table)
    key = AssetKey([METERS.name, "offline_store_maintenance"])
    config = {"ops": {"meters__offline_store_maintenance": {"config": {"snapshot_max_age_days": 0,
                                                                        "orphan_grace_hours": 0}}}}

    result = run(AssetSelection.assets(key), run_config=config)

    assert result.success
    metadata = result.asset_materializations_for_node("meters__offline_store_maintenance")[0].metadata
    assert metadata["tables"].value == len([t for t in store.list_tables() if t.startswith("meters.")])
    assert metadata["files_after"].value < metadata["files_before"].value
    assert metadata["bytes_after"].value < metadata["bytes_before"].value
    assert metadata["files_compacted"].value >= 4 and metadata["snapshots_expired"].value > 0
    assert "meters.raw_readings" in metadata["per_table"].value
    order = [(c, "ascending") for c in METERS.source("readings").keys]
    assert store.read(METERS.source("readings").table).sort_by(order).equals(readings.sort_by(order))
    assert defs.resolve_schedule_def("meters__offline_store_maintenance").cron_schedule == "0 3 * * *"
