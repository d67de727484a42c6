"""The offline store's maintenance, one asset per system, run nightly by a schedule (or from the UI, or
`mlfs maintain`): compaction, snapshot expiry and orphan removal over every table of the system's namespace
(`core.maintenance`), with files and bytes before and after in the materialization's metadata.

One per system, not per table: a system's tables are its own namespace, so one run covers them all (older
feature-group versions included) and selecting one system never touches another's tables.

It does not race the pipeline, yet takes none of the `iceberg/<table>` pools (a step holds one pool, and it
writes every table): each of its commits is checked by Iceberg against main as it stands at commit time
(a compaction whose files changed meanwhile is skipped and retried the next night; an expiry finding main
moved is skipped), and orphan removal spares files younger than the grace period, which covers every write
still in flight. Its own pool keeps two maintenance runs of one system from overlapping where pools are
limited (production: `default_limit: 1`).
"""

import datetime as dt

from dagster import (
    AssetExecutionContext,
    AssetsDefinition,
    Config,
    DefaultScheduleStatus,
    MaterializeResult,
    MetadataValue,
    ScheduleDefinition,
    asset,
)
from pydantic import Field

from mlfs_dagster.builders.common import asset_key, group_name
from mlfs_dagster.core.maintenance import MaintenancePolicy, TableMaintenance, maintain_store, totals
from mlfs_dagster.core.specs import System
from mlfs_dagster.resources import OfflineStoreResource

ASSET_NAME = "offline_store_maintenance"
DEFAULT = MaintenancePolicy()


class MaintenanceConfig(Config):
    snapshot_max_age_days: float = Field(default=DEFAULT.snapshot_max_age / dt.timedelta(days=1),
                                         description="Untagged snapshots older than this are expired.")
    orphan_grace_hours: float = Field(default=DEFAULT.orphan_grace / dt.timedelta(hours=1),
                                      description="Unreferenced files younger than this are kept (writes in flight).")
    small_file_mb: float = Field(default=DEFAULT.small_file_bytes / 2**20,
                                 description="Data files below this size are compacted, per partition.")

    def policy(self) -> MaintenancePolicy:
        return MaintenancePolicy(snapshot_max_age=dt.timedelta(days=self.snapshot_max_age_days),
                                 orphan_grace=dt.timedelta(hours=self.orphan_grace_hours),
                                 small_file_bytes=int(self.small_file_mb * 2**20))


def maintenance_pool(system: System) -> str:
    return f"maintenance/{system.name}"


def maintenance_asset(system: System) -> AssetsDefinition:
    @asset(
        key=asset_key(system, ASSET_NAME),
        group_name=group_name(system, "maintenance"),
        description=f"Keeps `{system.name}`'s Iceberg tables bounded: compacts each partition's small files, expires "
        "untagged snapshots past an age (tags, so training-set versions, and branch heads are kept), and removes "
        "files no kept snapshot references once older than a grace period (expired snapshots' files, files of "
        "killed runs, metadata files past the log).",
        kinds={"iceberg"},
        pool=maintenance_pool(system),
    )
    def offline_store_maintenance(context: AssetExecutionContext, config: MaintenanceConfig,
                                  offline_store: OfflineStoreResource) -> MaterializeResult:
        results = maintain_store(offline_store.open(), system.name, config.policy())
        context.log.info("; ".join(_line(r) for r in results) or "no table yet")
        return MaterializeResult(metadata=maintenance_metadata(results))

    return offline_store_maintenance


def maintenance_schedule(system: System) -> ScheduleDefinition:
    return ScheduleDefinition(
        name=f"{system.name}__{ASSET_NAME}",
        cron_schedule="0 3 * * *",  # after the night's ingestion and automation have settled
        execution_timezone="UTC",
        target=[asset_key(system, ASSET_NAME)],
        default_status=DefaultScheduleStatus.RUNNING if system.automation_on else DefaultScheduleStatus.STOPPED,
        description=f"Maintains `{system.name}`'s offline-store tables each night.",
    )


def maintenance_metadata(results: list[TableMaintenance]) -> dict:
    rows = ["| table | files before | MB before | files after | MB after | compacted | expired | orphans |",
            "|---|---:|---:|---:|---:|---:|---:|---:|"]
    rows += [f"| {r.table} | {r.files_before} | {r.bytes_before / 1e6:.2f} | {r.files_after} | "
             f"{r.bytes_after / 1e6:.2f} | {r.files_compacted} | {r.snapshots_expired} | {r.orphans_removed} |"
             for r in results]
    return {**totals(results), "tables": len(results), "per_table": MetadataValue.md("\n".join(rows))}


def _line(result: TableMaintenance) -> str:
    return (f"{result.table}: {result.files_before} -> {result.files_after} files, "
            f"{result.bytes_before / 1e6:.1f} -> {result.bytes_after / 1e6:.1f} MB")
