"""Batch-inference assets: each period's spine rows scored by the champion, through the training path."""

import pyarrow as pa
import pyarrow.compute as pc
from dagster import (
    AssetExecutionContext,
    AssetsDefinition,
    BackfillPolicy,
    Failure,
    MaterializeResult,
    asset,
)

from mlfs_dagster.builders.common import (
    add_partition_metadata,
    asset_key,
    chunks,
    follow_upstream,
    group_name,
    partition_range,
    partitions,
    period_ranges,
    retried_while_stores_are_unavailable,
    table_metadata,
    table_pool,
)
from mlfs_dagster.builders.models import CHAMPION
from mlfs_dagster.core import feature_view
from mlfs_dagster.core.offline_store import OfflineStore, TimeRange
from mlfs_dagster.core.specs import Column, ModelSpec, System
from mlfs_dagster.core.training import predict
from mlfs_dagster.resources import ModelRegistryResource, OfflineStoreResource

MODEL_VERSION = "model_version"


def predictions_asset(system: System, model: ModelSpec) -> AssetsDefinition:
    view, name = model.feature_view, model.registered_name
    output = model.output_column
    docs = {**view.column_docs(),
            output: Column(output, None, "Probability of the positive class." if output == "score" else "Predicted value."),
            MODEL_VERSION: Column(MODEL_VERSION, None, f"Version of `{name}` that scored the row.")}

    @asset(
        key=asset_key(system, f"{model.name}_predictions"),
        group_name=group_name(system, "inference"),
        description=(
            f"Each period's `{view.spine.name}` rows scored by the `{CHAMPION}` version of `{name}`. Feature vectors "
            f"come from feature view `{view.name}`, the same join and on-demand code as the training set, and "
            "are stored with the prediction and the model version, so monitoring sees exactly what the model saw."
        ),
        partitions_def=partitions(system),
        backfill_policy=BackfillPolicy.single_run(),
        deps=[asset_key(system, view.spine.asset_name), *(asset_key(system, s.group.asset_name) for s in view.selections),
              asset_key(system, f"{model.name}_champion")],
        kinds={"iceberg", "mlflow"},
        owners=[model.owner],
        metadata={"dagster/table_name": model.predictions_table},
        pool=table_pool(model.predictions_table),
        **follow_upstream(system),
    )
    @retried_while_stores_are_unavailable
    def predictions(context: AssetExecutionContext, offline_store: OfflineStoreResource,
                    model_registry: ModelRegistryResource):
        store, registry, time_range = offline_store.open(), model_registry.open(), partition_range(context)
        champion = registry.version_by_alias(name, CHAMPION)
        if champion is None:
            raise Failure(f"{name} has no '{CHAMPION}' version yet: materialize {model.name}_champion first")
        fitted = registry.load_version(name, champion.version)
        for chunk in chunks(time_range, system.step):  # each its own commit of whole periods
            scored = _scored(model, store, fitted, champion.version, chunk)
            snapshot_id = store.replace_range(model.predictions_table, scored, view.spine_time, chunk)
            outputs = scored.select([view.spine_time, model.output_column])  # all a period's figures need
            add_partition_metadata(context, system, {
                period.start: _figures(period.rows_of(outputs, view.spine_time), model)
                for period in period_ranges(chunk, system.step)
            })
        return MaterializeResult(metadata={**table_metadata(model.predictions_table, scored.schema, docs),
                                           MODEL_VERSION: champion.version, "iceberg/snapshot_id": str(snapshot_id),
                                           "commit_retries": store.commit_retries})

    return predictions


def _scored(model: ModelSpec, store: OfflineStore, fitted, version: str, time_range: TimeRange) -> pa.Table:
    """The spine rows of `time_range` with their features, the model's output and the version that scored them."""
    view = model.feature_view
    vectors = feature_view.vectors(view, store, feature_view.read_spine(view, store, time_range))
    kept = vectors.select(list(dict.fromkeys((*feature_view.spine_columns(view), *model.features))))
    return kept.append_column(model.output_column, pa.array(predict(fitted, model, vectors), pa.float64())).append_column(
        MODEL_VERSION, pa.array([version] * vectors.num_rows, pa.string()))


def _figures(period_rows: pa.Table, model: ModelSpec) -> dict:
    figures = {"dagster/row_count": period_rows.num_rows}
    if model.feature_view.label.kind == "binary":
        alerts = pc.sum(pc.greater_equal(period_rows[model.output_column], model.alert_threshold)).as_py() or 0
        figures["alerts"] = alerts
    return figures
