"""Monitoring assets and sensors: a drift report per period for each model, and retraining on drift."""

from collections import Counter

import pyarrow as pa
import pyarrow.compute as pc
from dagster import (
    AssetExecutionContext,
    AssetRecordsFilter,
    AssetsDefinition,
    BackfillPolicy,
    DefaultSensorStatus,
    MaterializeResult,
    MetadataValue,
    RunRequest,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    asset,
    sensor,
)

from mlfs_dagster.builders.common import (
    asset_key,
    group_name,
    partition_key,
    partition_range,
    partitions,
    period_ranges,
)
from mlfs_dagster.core.offline_store import OfflineStore
from mlfs_dagster.core.registry import ModelRegistry
from mlfs_dagster.core.specs import ModelSpec, System
from mlfs_dagster.core.training import SPLIT
from mlfs_dagster.resources import ModelRegistryResource, OfflineStoreResource, ReportStoreResource

RETRAIN_TRIGGER_TAG = "mlfs/trigger"
DRIFTED_PARTITIONS_TAG = "mlfs/drifted_partitions"


def drift_asset_name(model: ModelSpec) -> str:
    return f"{model.name}_feature_drift"


def sensor_name(system: System, model: ModelSpec) -> str:
    return f"{system.name}__{model.name}_drift_retraining"


def monitored_features(model: ModelSpec, schema: pa.Schema) -> tuple[list[str], list[str]]:
    """Numerical and categorical features to compare; columns tagged `pii` never appear in a report."""
    docs = model.feature_view.column_docs()
    kept = [c for c in model.features if not (c in docs and docs[c].pii)]
    numerical = [c for c in kept if pa.types.is_integer(schema.field(c).type) or pa.types.is_floating(schema.field(c).type)]
    return numerical, [c for c in kept if c not in numerical]


def drift_report_asset(system: System, model: ModelSpec) -> AssetsDefinition:
    view, name = model.feature_view, model.registered_name

    @asset(
        key=asset_key(system, drift_asset_name(model)),
        group_name=group_name(system, "monitoring"),
        description=(
            f"Per period, an Evidently data-drift report of the features `{name}` served against the training rows "
            "of the model version that served them (normed Wasserstein for numbers, Jensen-Shannon for "
            "categories; `pii` columns excluded). Drift share, drifted columns and the HTML report are on each "
            f"partition; per-column results go to `{model.drift_table}`."
        ),
        partitions_def=partitions(system),
        backfill_policy=BackfillPolicy.single_run(),
        deps=[asset_key(system, f"{model.name}_predictions"), asset_key(system, view.asset_name)],
        kinds={"evidently", "iceberg"},
        owners=[model.owner],
        metadata={"dagster/table_name": model.drift_table},
    )
    def drift_report(context: AssetExecutionContext, offline_store: OfflineStoreResource,
                     model_registry: ModelRegistryResource, report_store: ReportStoreResource):
        from mlfs_dagster.core.drift import drift_rows, feature_drift

        store, registry, time_range = offline_store.open(), model_registry.open(), partition_range(context)
        time = view.spine_time
        served = store.read_range(model.predictions_table, time, time_range)
        numerical, categorical = monitored_features(model, served.schema)
        references, rows = {}, []
        for period in period_ranges(time_range, system.step):
            key = partition_key(system, period.start)
            current = served.filter(pc.and_(pc.greater_equal(served[time], period.start), pc.less(served[time], period.end)))
            if current.num_rows == 0:
                raise ValueError(f"no predictions in partition {key} to monitor: materialize "
                                 f"{model.name}_predictions for it")
            version = Counter(current["model_version"].to_pylist()).most_common(1)[0][0]
            if version not in references:
                references[version] = _reference(store, registry, model, version).to_pandas()
            result = feature_drift(
                references[version], current.select([*numerical, *categorical]).to_pandas(), numerical, categorical,
                share_threshold=model.drift_share_to_retrain,
                html_path=report_store.path(system.name, drift_asset_name(model), f"{key}.html"),
            )
            rows += drift_rows(result, period.start, version)
            context.add_asset_metadata(
                {"drift_share": result.drift_share, "dataset_drift": result.dataset_drift,
                 "drifted_columns": MetadataValue.json(list(result.drifted_columns)),
                 "report": MetadataValue.path(str(result.html_path)), "model_version": version,
                 "dagster/row_count": result.current_rows},
                partition_key=key,
            )
        snapshot_id = store.replace_range(model.drift_table, pa.Table.from_pylist(rows), "day", time_range)
        return MaterializeResult(metadata={"iceberg/snapshot_id": str(snapshot_id)})

    return drift_report


def _reference(store: OfflineStore, registry: ModelRegistry, model: ModelSpec, version: str) -> pa.Table:
    """The training rows of the set the serving model was trained on, read at its exact snapshot."""
    snapshot_id = int(registry.get_version(model.registered_name, version).tags["training_set_snapshot"])
    reference = store.read(model.feature_view.table, (*model.features, SPLIT), snapshot_id=snapshot_id)
    return reference.filter(pc.equal(reference[SPLIT], "train")).select(list(model.features))


def retraining_sensor(system: System, model: ModelSpec, targets: list[AssetsDefinition]) -> SensorDefinition:
    """One retraining run per batch of new drifted partitions; the cursor and run key make each count once."""
    watched = asset_key(system, drift_asset_name(model))

    @sensor(
        name=sensor_name(system, model),
        description=(
            f"Reads new {drift_asset_name(model)} materializations; when a partition's drift share reaches "
            f"{model.drift_share_to_retrain} it requests one retraining run (training set, model, champion) for "
            "those drift events. The cursor and run key make each event count once."
        ),
        target=targets,
        default_status=DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=60,
    )
    def drift_retraining(context: SensorEvaluationContext):
        after = int(context.cursor) if context.cursor else None
        records = context.instance.fetch_materializations(
            AssetRecordsFilter(asset_key=watched, after_storage_id=after), limit=10_000, ascending=True,
        ).records
        if not records:
            return SensorResult(skip_reason="no new drift reports", cursor=context.cursor)
        threshold = model.drift_share_to_retrain
        drifted = [r for r in records if _drift_share(r) >= threshold]
        cursor = str(records[-1].storage_id)
        if not drifted:
            return SensorResult(skip_reason=f"{len(records)} new drift reports, none at drift share >= {threshold}",
                                cursor=cursor)
        request = RunRequest(
            run_key=f"feature-drift-{drifted[-1].storage_id}",
            tags={RETRAIN_TRIGGER_TAG: "feature_drift",
                  DRIFTED_PARTITIONS_TAG: ",".join(sorted({r.partition_key for r in drifted}))[:1000]},
        )
        return SensorResult(run_requests=[request], cursor=cursor)

    return drift_retraining


def _drift_share(record) -> float:
    share = record.asset_materialization.metadata.get("drift_share")
    return share.value if share is not None else 0.0
