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
from mlfs_dagster_tests.meters import generator
from mlfs_dagster_tests.meters.system import SYSTEM as METERS

UTC_US = pa.timestamp("us", tz="UTC")
DAY = dt.date(2026, 1, 5)
TABLE = "shop.orders"
READINGS = METERS.source("readings")  # bound to its system: `table` names the system's namespace
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
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



class MetersHome:
    """The meters system alone in its own MLFS_HOME: hours landed, runs in process on an ephemeral instance."""

    def __init__(self, home: Path, monkeypatch, hours: int):
        from dagster import DagsterInstance

        from mlfs_dagster.builders import build_definitions
        from mlfs_dagster.settings import LOCATION_VARIABLES, Settings

        for name in LOCATION_VARIABLES:
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("MLFS_HOME", str(home))
        self.home, self.settings = home, Settings.from_env()
        generator.generate(Path(self.settings.landing), METERS.start, hours=hours)
        self.defs, self.instance = build_definitions(METERS), DagsterInstance.ephemeral()
        self.store = self.settings.offline_store()

    def run(self, selection, first: int | None = None, last: int | None = None, run_config: dict | None = None):
        from dagster import materialize

        from mlfs_dagster.builders.common import range_tags

        tags = range_tags(generator.hour_key(METERS.start, first), generator.hour_key(METERS.start, last)) \
            if first is not None else {}
        return materialize(self.defs.assets, selection=selection, resources=self.defs.resources,
                           instance=self.instance, tags=tags, run_config=QUIET | (run_config or {}))

    def raw(self, first: int, last: int):
        from dagster import AssetSelection

        from mlfs_dagster.builders.common import group_name

        assert self.run(AssetSelection.groups(group_name(METERS, "raw")), first, last).success


def test_the_meters_systems_maintenance_asset_runs_in_dagster_and_reports_files_and_bytes(tmp_path, monkeypatch):
    """Raw readings ingested hour by hour (one small file per hour in the day's partition), then maintained."""
    from dagster import AssetKey, AssetSelection

    meters = MetersHome(tmp_path, monkeypatch, hours=4)
    for number in range(4):
        meters.raw(number, number)
    store = meters.store
    readings = store.read(READINGS.table)
    config = {"ops": {"meters__offline_store_maintenance": {"config": {"snapshot_max_age_days": 0,
                                                                        "orphan_grace_hours": 0}}}}

    result = meters.run(AssetSelection.assets(AssetKey([METERS.name, "offline_store_maintenance"])),
                        run_config=config)

    assert result.success
    metadata = result.asset_materializations_for_node("meters__offline_store_maintenance")[0].metadata
    assert metadata["tables"].value == len([t for t in store.list_tables() if t.startswith("meters.")])
    assert metadata["files_after"].value < metadata["files_before"].value
    assert metadata["bytes_after"].value < metadata["bytes_before"].value
    assert metadata["files_compacted"].value >= 4 and metadata["snapshots_expired"].value > 0
    assert "meters.raw_readings" in metadata["per_table"].value
    order = [(c, "ascending") for c in READINGS.keys]
    assert store.read(READINGS.table).sort_by(order).equals(readings.sort_by(order))
    assert meters.defs.resolve_schedule_def("meters__offline_store_maintenance").cron_schedule == "0 3 * * *"


def test_a_data_file_deleted_by_hand_is_named_on_read_and_mlfs_offers_the_way_back(tmp_path, monkeypatch, capsys):

    from mlfs_dagster.cli import main
    from mlfs_dagster.core.offline_store import MissingDataFileError

    meters = MetersHome(tmp_path, monkeypatch, hours=24)
    store, table = meters.store, READINGS.table
    meters.raw(0, 11)
    first_half, first_files = store.read(table), data_files_of(store, table)
    meters.raw(12, 23)  # a second file in the day's partition
    head = store.snapshot_id(table)
    (lost,) = data_files_of(store, table) - first_files
    Path(lost.removeprefix("file://")).unlink()

    with pytest.raises(MissingDataFileError) as error:
        store.read(table)
    message = str(error.value)
    assert table in message and str(head) in message and lost in message and "event_time_day=2025-06-01" in message
    with pytest.raises(Exception, match="no longer exist"):  # streamed into DuckDB, the same message
        import duckdb

        batches = store.read_batches(table, ("meter_id",))  # noqa: F841 (DuckDB reads the local by its name)
        duckdb.sql("select count(*) from batches").fetchall()

    workspace = tmp_path / "workspace.yaml"
    (tmp_path / "meters_definitions.py").write_text(
        "from mlfs_dagster.builders import build_definitions\n"
        "from mlfs_dagster_tests.meters.system import SYSTEM\n\ndefs = build_definitions(SYSTEM)\n")
    workspace.write_text("load_from:\n  - python_file: meters_definitions.py\n")
    main(["--workspace", str(workspace), "repair", table])
    command = capsys.readouterr().out.strip()
    assert command == (f"dagster asset materialize -f {tmp_path / 'meters_definitions.py'} --select meters/raw_readings "
                       "--partition-range 2025-06-01-00:00...2025-06-01-23:00")

    main(["snapshots", table])
    assert str(error.value.rollback_to) in capsys.readouterr().out
    main(["rollback", table, "--to", str(error.value.rollback_to)])
    assert store.read(table).num_rows == first_half.num_rows  # readable again, as it was before the lost write

    meters.raw(0, 23)  # what the printed command runs: the whole day, whose overwrite drops the lost file unread
    assert store.read(table).num_rows == 24 * first_half.num_rows // 12


def data_files_of(store: OfflineStore, table: str, snapshot_id: int | None = None) -> set[str]:
    return {t.file.file_path for t in store.table(table).scan(snapshot_id=snapshot_id).plan_files()}
