"""Raw assets: each source's landing files, written, audited, then published into its Iceberg table."""

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetsDefinition,
    AssetSpec,
    BackfillPolicy,
    Config,
    MaterializeResult,
    MetadataValue,
    multi_asset,
)
from pydantic import Field

from mlfs_dagster.builders.common import (
    add_partition_metadata,
    asset_key,
    check_per_partition,
    chunks,
    group_name,
    ingest_on_schedule,
    partition_range,
    partitions,
    retried_while_stores_are_unavailable,
    table_metadata,
    table_pool,
)
from mlfs_dagster.core import audit
from mlfs_dagster.core.ingest import IngestionResult, ingest, quarantine_schema
from mlfs_dagster.core.retraining import QUARANTINE_SHARE_INCIDENT
from mlfs_dagster.core.specs import SourceSpec, System
from mlfs_dagster.resources import LandingZoneResource, OfflineStoreResource

DELIVERY = "delivery"  # each partition's metadata: what its landing folder held


class IngestConfig(Config):
    allow_drop: bool = Field(
        default=False,
        description="Publish even when a delivery is empty or shrinks a period beyond the source's tolerance.",
    )


def quarantine_asset_name(spec: SourceSpec) -> str:
    return f"quarantine_{spec.name}"


def source_asset(system: System, spec: SourceSpec) -> AssetsDefinition:
    """The source's raw table and its quarantine table: two assets written by one ingestion, in one commit."""
    key, quarantine_key = asset_key(system, spec.asset_name), asset_key(system, quarantine_asset_name(spec))
    checks = [AssetCheckSpec("unique_keys", asset=key, blocking=True,
                             description=f"No two rows of the whole table share ({', '.join(spec.unique_on)}).")]
    checks.append(AssetCheckSpec("quarantine_rate", asset=quarantine_key, partitions_def=partitions(system),
                                 description=f"At most {QUARANTINE_SHARE_INCIDENT:.0%} of each period's rows are "
                                 "quarantined; more is a data-quality incident upstream."))
    if spec.must_arrive:
        checks.append(AssetCheckSpec("not_empty", asset=key, blocking=True, partitions_def=partitions(system),
                                     description="Every ingested period has rows."))
    delivery = "delivered once or now and then" if spec.delivery == "reference" else f"delivered per {system.cadence} period"
    layout = "date=YYYY-MM-DD/hour=HH" if system.cadence == "hourly" else "date=YYYY-MM-DD"
    shared = {"group_name": group_name(system, "raw"), "partitions_def": partitions(system), "kinds": {"iceberg"},
              "owners": [spec.owner], **ingest_on_schedule(system)}
    raw = AssetSpec(
        key, description=f"{spec.description}\n\nSource `{spec.name}`, {delivery}: the landing zone's "
        f"`{spec.name}/{layout}/` files (Parquet, CSV or JSON Lines) are checked against the contract, "
        f"written to a branch, audited, and only then published into `{spec.table}`; rows breaking the "
        f"contract go to `{spec.quarantine_table}` with the reason.",
        metadata=table_metadata(spec.table, spec.columns), **shared)
    quarantine = AssetSpec(
        quarantine_key, description=f"Rows of source `{spec.name}` refused by its contract (wrong types, null or "
        "duplicate keys, times outside their landing period, unparseable lines), each with the reason and the "
        f"landing period, published in the same commit as `{spec.table}`: nothing delivered is lost.",
        metadata=table_metadata(spec.quarantine_table, quarantine_schema(spec)), **shared)

    # Subsettable so that either asset can be selected alone; one ingestion writes both tables either way.
    @multi_asset(
        name=f"{system.name}__{spec.asset_name}",
        specs=[raw, quarantine],
        check_specs=checks,
        can_subset=True,
        backfill_policy=BackfillPolicy.single_run(),
        pool=table_pool(spec.table),
    )
    @retried_while_stores_are_unavailable
    def ingest_source(context: AssetExecutionContext, config: IngestConfig, offline_store: OfflineStoreResource,
                      landing_zone: LandingZoneResource):
        store, landing = offline_store.open(), landing_zone.open()
        # A chunk of periods at a time, each its own write-audit-publish: memory follows a chunk, not the range.
        # The snapshots reported are those of the last chunk delivered: the tables' heads after the run.
        results = [ingest(store, landing, spec, chunk, system.step, allow_drop=config.allow_drop)
                   for chunk in chunks(partition_range(context), system.step)]
        last = next((r for r in reversed(results) if r.snapshot_id is not None), results[-1])
        result = IngestionResult(last.snapshot_id, last.quarantine_snapshot_id,
                                 [period for r in results for period in r.periods])
        if key in context.selected_asset_keys:
            add_partition_metadata(context, system, {
                p.start: {"dagster/row_count": p.rows, "quarantined_rows": p.quarantined, DELIVERY: p.status,
                          "landing_files": MetadataValue.json(p.paths)}
                for p in result.periods
            }, key)
            raw_checks = [_unique_keys(store, spec, key)]
            if spec.must_arrive:
                raw_checks.append(check_per_partition(context, system, key, "not_empty", {
                    p.start: (p.rows > 0, {"rows": p.rows}) for p in result.periods}))
            yield MaterializeResult(asset_key=key, check_results=raw_checks,
                                    metadata={"iceberg/snapshot_id": str(store.snapshot_id(spec.table)),
                                              "commit_retries": store.commit_retries})
        if quarantine_key in context.selected_asset_keys:
            add_partition_metadata(context, system, {p.start: {"dagster/row_count": p.quarantined}
                                                     for p in result.periods}, quarantine_key)
            yield MaterializeResult(asset_key=quarantine_key, check_results=[check_per_partition(
                context, system, quarantine_key, "quarantine_rate",
                {p.start: _quarantine_rate(p) for p in result.periods}, AssetCheckSeverity.WARN)],
                metadata={"iceberg/snapshot_id": str(result.quarantine_snapshot_id),
                          "commit_retries": store.commit_retries})

    return ingest_source


def _quarantine_rate(period) -> tuple[bool, dict]:
    rate = period.quarantined / (period.quarantined + period.rows) if period.quarantined else 0.0
    return rate <= QUARANTINE_SHARE_INCIDENT, {"quarantine_rate": rate, "quarantined_rows": period.quarantined}


def _unique_keys(store, spec: SourceSpec, key) -> AssetCheckResult:
    """Re-checked on the published table, streamed: the audit ran before publishing, this sees what others
    may have published since."""
    unique = spec.unique_on
    duplicates = audit.duplicate_keys(store.read_batches(spec.table, unique), unique) if store.exists(spec.table) else 0
    return AssetCheckResult(asset_key=key, check_name="unique_keys", passed=duplicates == 0,
                            metadata={"duplicate_rows": duplicates, "unique_on": ", ".join(unique)})
