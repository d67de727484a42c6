"""The embedded instance's event log (`mlfs_dagster.event_log`): Dagster's SQLite files, the index's
connections kept, its files readable by Dagster's own storage afterwards."""

from __future__ import annotations

import shutil
import subprocess
import sys

from dagster import (
    AssetKey,
    BackfillPolicy,
    DagsterInstance,
    DailyPartitionsDefinition,
    PartitionKeyRange,
    asset,
    materialize,
)
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage

from mlfs_dagster.builders.common import range_tags
from mlfs_dagster.event_log import PooledIndexSqliteEventLogStorage
from mlfs_dagster.settings import PROJECT_ROOT

DAYS = DailyPartitionsDefinition("2026-01-01")
RANGE = ("2026-01-01", "2026-01-30")

# One single-run backfill of two assets over 30 days, in a process of its own (its exit closes the index).
RANGE_RUN = f"""
from dagster import BackfillPolicy, DagsterInstance, DailyPartitionsDefinition, asset, materialize
from mlfs_dagster.builders.common import range_tags
DAYS = DailyPartitionsDefinition("2026-01-01")
@asset(partitions_def=DAYS, backfill_policy=BackfillPolicy.single_run())
def first(context) -> None: pass
@asset(partitions_def=DAYS, backfill_policy=BackfillPolicy.single_run(), deps=[first])
def second(context) -> None: pass
instance = DagsterInstance.get()
assert materialize([first, second], instance=instance, tags=range_tags(*{RANGE!r})).success
"""


def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    shutil.copyfile(PROJECT_ROOT / "dagster.yaml", tmp_path / "dagster.yaml")
    return tmp_path


def test_a_range_run_records_every_partition_in_the_index_and_run_database(tmp_path, monkeypatch):
    @asset(partitions_def=DAYS, backfill_policy=BackfillPolicy.single_run())
    def daily(context) -> None:
        pass

    with DagsterInstance.from_config(str(_home(tmp_path, monkeypatch))) as instance:
        assert isinstance(instance.event_log_storage, PooledIndexSqliteEventLogStorage)
        result = materialize([daily], instance=instance, tags=range_tags(*RANGE))
        assert result.success
        materialized = instance.get_materialized_partitions(AssetKey("daily"))
        assert materialized == set(DAYS.get_partition_keys_in_range(PartitionKeyRange(*RANGE)))
        events = instance.all_logs(result.run_id)  # the run's own database
        assert sum(e.dagster_event_type.value == "ASSET_MATERIALIZATION" for e in events if e.dagster_event) == 30


def test_a_finished_process_leaves_files_that_dagsters_own_storage_reads(tmp_path, monkeypatch):
    home = _home(tmp_path, monkeypatch)
    subprocess.run([sys.executable, "-c", RANGE_RUN], check=True, cwd=PROJECT_ROOT)
    runs = home / "history" / "runs"
    # A WAL file left behind would need a writable folder to be read: a read-only home could not be.
    assert not list(runs.glob("*.db-wal")), "the process's exit checkpoints and closes the index"
    storage = SqliteEventLogStorage(str(runs))
    for key in ("first", "second"):
        assert len(storage.get_materialized_partitions(AssetKey(key))) == 30
