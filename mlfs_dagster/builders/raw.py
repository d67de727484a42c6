"""Raw assets: each source's landing files, written, audited, then published into its Iceberg table."""

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetsDefinition,
    BackfillPolicy,
    Config,
    MaterializeResult,
    MetadataValue,
    asset,
)
from pydantic import Field

from mlfs_dagster.builders.common import (
    add_partition_metadata,
    check_per_partition,
    asset_key,
    group_name,
    ingest_on_schedule,
    partition_range,
    partitions,
    table_metadata,
)
from mlfs_dagster.core import audit
from mlfs_dagster.core.ingest import ingest
from mlfs_dagster.core.retraining import QUARANTINE_SHARE_INCIDENT
from mlfs_dagster.core.specs import SourceSpec, System
from mlfs_dagster.resources import LandingZoneResource, OfflineStoreResource


DELIVERY = "delivery"  # each partition's metadata: what its landing folder held


class IngestConfig(Config):
    allow_drop: bool = Field(
        default=False,
        description="Publish even when a delivery is empty or shrinks a period beyond the source's tolerance.",
    )


def source_asset(system: System, spec: SourceSpec) -> AssetsDefinition:
    key = asset_key(system, spec.asset_name)
    checks = [AssetCheckSpec("unique_keys", asset=key, blocking=True,
                             description=f"No two rows of the whole table share ({', '.join(spec.unique_on)}).")]
    checks.append(AssetCheckSpec("quarantine_rate", asset=key, partitions_def=partitions(system), description=(
        f"At most {QUARANTINE_SHARE_INCIDENT:.0%} of each period's rows are quarantined; more is a data-quality incident "
        f"upstream (the rows and their reasons are in `{spec.quarantine_table}`).")))
    if spec.must_arrive:
        checks.append(AssetCheckSpec("not_empty", asset=key, blocking=True, partitions_def=partitions(system),
                                     description="Every ingested period has rows."))
    delivery = "delivered once or now and then" if spec.delivery == "reference" else f"delivered per {system.cadence} period"
    layout = "date=YYYY-MM-DD/hour=HH" if system.cadence == "hourly" else "date=YYYY-MM-DD"

    @asset(
        key=key,
        group_name=group_name(system, "raw"),
        description=f"{spec.description}\n\nSource `{spec.name}`, {delivery}: the landing zone's "
        f"`{spec.name}/{layout}/` files (Parquet, CSV or JSON Lines) are checked against the contract, "
        f"written to a branch, audited, and only then published into `{spec.table}`; rows breaking the "
        f"contract go to `{spec.quarantine_table}` with the reason.",
        partitions_def=partitions(system),
        backfill_policy=BackfillPolicy.single_run(),
        kinds={"iceberg"},
        owners=[spec.owner],
        metadata=table_metadata(spec.table, spec.columns),
        check_specs=checks,
        **ingest_on_schedule(system),
    )
    def ingest_source(context: AssetExecutionContext, config: IngestConfig, offline_store: OfflineStoreResource,
                      landing_zone: LandingZoneResource):
        store = offline_store.open()
        result = ingest(store, landing_zone.open(), spec, partition_range(context), system.step,
                        allow_drop=config.allow_drop)
        add_partition_metadata(context, system, {
            p.start: {"dagster/row_count": p.rows, "quarantined_rows": p.quarantined, DELIVERY: p.status,
                      "landing_files": MetadataValue.json(p.paths)}
            for p in result.periods
        })
        results = [_unique_keys(store, spec), check_per_partition(
            context, system, key, "quarantine_rate", {p.start: _quarantine_rate(p) for p in result.periods},
            AssetCheckSeverity.WARN)]
        if spec.must_arrive:
            results.append(check_per_partition(context, system, key, "not_empty", {
                p.start: (p.rows > 0, {"rows": p.rows}) for p in result.periods}))
        return MaterializeResult(metadata={"iceberg/snapshot_id": str(store.snapshot_id(spec.table))},
                                 check_results=results)

    return ingest_source


def _quarantine_rate(period) -> tuple[bool, dict]:
    rate = period.quarantined / (period.quarantined + period.rows) if period.quarantined else 0.0
    return rate <= QUARANTINE_SHARE_INCIDENT, {"quarantine_rate": rate, "quarantined_rows": period.quarantined}


def _unique_keys(store, spec: SourceSpec) -> AssetCheckResult:
    """Re-checked on the published table, streamed: the audit ran before publishing, this sees what others
    may have published since."""
    unique = spec.unique_on
    duplicates = audit.duplicate_keys(store.read_batches(spec.table, unique), unique) if store.exists(spec.table) else 0
    return AssetCheckResult(check_name="unique_keys", passed=duplicates == 0,
                            metadata={"duplicate_rows": duplicates, "unique_on": ", ".join(unique)})
