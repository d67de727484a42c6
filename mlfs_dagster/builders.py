"""Builders that turn specs into Dagster assets with their checks and UI metadata.

A new source or feature group is a spec (and, for a group, a query); these functions give it a
partitioned asset, blocking checks, a column schema and per-partition row counts in the UI.
"""


import pyarrow as pa
from dagster import (
    AssetCheckResult,
    AssetCheckSpec,
    AssetDep,
    AssetExecutionContext,
    AssetsDefinition,
    BackfillPolicy,
    MaterializeResult,
    MetadataValue,
    TableColumn,
    TableSchema,
    TimeWindowPartitionMapping,
    asset,
)

from mlfs_dagster.core import audit
from mlfs_dagster.core.features import compute_feature_group, load_inputs
from mlfs_dagster.core.ingest import LANDING_DATE, ingest_day
from mlfs_dagster.core.specs import Column, FeatureGroupSpec, FeatureInput, SourceSpec
from mlfs_dagster.partitions import DAILY, partition_range
from mlfs_dagster.resources import LandingZoneResource, OfflineStoreResource


def column_schema(columns: tuple[Column, ...] | pa.Schema) -> TableSchema:
    if isinstance(columns, pa.Schema):
        return TableSchema(columns=[TableColumn(f.name, str(f.type)) for f in columns])
    return TableSchema(
        columns=[TableColumn(c.name, str(c.type), c.description, tags={t: "" for t in c.tags}) for c in columns]
    )


def table_metadata(table: str, columns: tuple[Column, ...] | pa.Schema) -> dict:
    return {"dagster/table_name": table, "dagster/column_schema": column_schema(columns)}


def add_rows_per_partition(context: AssetExecutionContext, rows: dict, **extra_per_day: dict) -> None:
    """Row counts (and any other per-day figures) on each partition's materialization."""
    for day, count in rows.items():
        figures = {name: values[day] for name, values in extra_per_day.items() if day in values}
        context.add_asset_metadata({"dagster/row_count": count, **figures}, partition_key=day.isoformat())


def source_asset(spec: SourceSpec) -> AssetsDefinition:
    """Ingests each day's landing files into `raw.<source>`, replacing the days it covers."""
    checks = [
        AssetCheckSpec("unique_keys", asset=spec.asset_name, blocking=True,
                       description=f"No two rows share the key ({', '.join(spec.keys)})."),
    ]
    if spec.rows_every_day:
        checks.append(AssetCheckSpec("not_empty", asset=spec.asset_name, blocking=True,
                                     description="Every ingested day has rows."))

    @asset(
        name=spec.asset_name,
        group_name="raw",
        description=f"{spec.description}\n\nIngested from the landing zone's `{spec.name}/date=YYYY-MM-DD/` "
        f"folders into the Iceberg table `{spec.table}`; rows breaking the contract go to "
        f"`{spec.quarantine_table}` with the reason.",
        partitions_def=DAILY,
        backfill_policy=BackfillPolicy.single_run(),
        kinds={"iceberg", "parquet"},
        owners=[spec.owner],
        metadata=table_metadata(spec.table, spec.columns),
        check_specs=checks,
    )
    def ingest(context: AssetExecutionContext, offline_store: OfflineStoreResource,
               landing_zone: LandingZoneResource):
        store, landing, time_range = offline_store.open(), landing_zone.open(), partition_range(context)
        days = [ingest_day(landing, spec, day) for day in time_range.days()]
        good = pa.concat_tables([d.good for d in days])
        quarantined = pa.concat_tables([d.quarantined for d in days])
        snapshot_id = store.replace_range(spec.table, good, spec.time_column, time_range)
        store.replace_range(spec.quarantine_table, quarantined, LANDING_DATE, time_range)

        written = store.read_range(spec.table, spec.time_column, time_range, (*spec.keys, spec.time_column))
        rows = audit.rows_per_day(written, spec.time_column, time_range.days())
        add_rows_per_partition(
            context, rows,
            quarantined_rows={d.day: d.quarantined.num_rows for d in days},
            landing_files={d.day: MetadataValue.json(d.paths) for d in days},
        )
        duplicates = audit.duplicate_keys(written, spec.keys)
        results = [AssetCheckResult(check_name="unique_keys", passed=duplicates == 0,
                                    metadata={"duplicate_rows": duplicates})]
        if spec.rows_every_day:
            empty = [day.isoformat() for day, count in rows.items() if count == 0]
            results.append(AssetCheckResult(check_name="not_empty", passed=not empty,
                                            metadata={"empty_days": MetadataValue.json(empty)}))
        return MaterializeResult(
            metadata={"iceberg/snapshot_id": str(snapshot_id), "rows_written": good.num_rows,
                      "quarantined_rows": quarantined.num_rows},
            check_results=results,
        )

    return ingest


def _partition_mapping(feature_input: FeatureInput) -> TimeWindowPartitionMapping | None:
    if feature_input.lookback_days is None:  # reference data: read all history, tracked per day
        return None
    return TimeWindowPartitionMapping(
        start_offset=-feature_input.lookback_days,
        end_offset=-feature_input.lag_days,
        allow_nonexistent_upstream_partitions=True,
    )


def feature_group_asset(spec: FeatureGroupSpec) -> AssetsDefinition:
    """Computes a feature group for the days of the run from its inputs' lookback, replacing those days."""

    @asset(
        name=spec.asset_name,
        group_name="features",
        description=f"{spec.description}\n\nFeature group `{spec.table}` (version {spec.version}), "
        f"entity ({', '.join(spec.entity_keys)}), time `{spec.time_column}`, "
        f"lookback {spec.lookback_days} days.",
        partitions_def=DAILY,
        backfill_policy=BackfillPolicy.single_run(),
        deps=[AssetDep(i.source.asset_name, partition_mapping=_partition_mapping(i)) for i in spec.inputs],
        kinds={"iceberg", "duckdb"},
        owners=[spec.owner],
        metadata={**table_metadata(spec.table, spec.columns), "feature_group_version": spec.version},
        check_specs=[AssetCheckSpec("no_null_entity_keys", asset=spec.asset_name, blocking=True,
                                    description=f"Every row has its entity keys ({', '.join(spec.entity_keys)}).")],
    )
    def compute(context: AssetExecutionContext, offline_store: OfflineStoreResource):
        store, time_range = offline_store.open(), partition_range(context)
        inputs = load_inputs(store, spec, time_range, history_start=DAILY.start)
        features = compute_feature_group(spec, inputs, time_range)
        snapshot_id = store.replace_range(spec.table, features, spec.time_column, time_range)

        written = store.read_range(spec.table, spec.time_column, time_range, (*spec.entity_keys, spec.time_column))
        add_rows_per_partition(context, audit.rows_per_day(written, spec.time_column, time_range.days()))
        nulls = audit.null_keys(written, spec.entity_keys)
        return MaterializeResult(
            metadata={"iceberg/snapshot_id": str(snapshot_id), "rows_written": features.num_rows,
                      "input_rows": MetadataValue.json({k: v.num_rows for k, v in inputs.items()})},
            check_results=[AssetCheckResult(check_name="no_null_entity_keys", passed=nulls == 0,
                                            metadata={"null_key_rows": nulls})],
        )

    return compute
