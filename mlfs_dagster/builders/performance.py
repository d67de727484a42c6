"""Realised-performance assets: each partition's predictions scored against their labels once those are final."""

import datetime as dt
import math
from collections import Counter

import pyarrow as pa
import pyarrow.compute as pc
from dagster import (
    AssetDep,
    AssetExecutionContext,
    AssetsDefinition,
    BackfillPolicy,
    DefaultScheduleStatus,
    Failure,
    MaterializeResult,
    MetadataValue,
    RunRequest,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    TimeWindowPartitionMapping,
    asset,
    schedule,
)

from mlfs_dagster.builders.common import (
    asset_key,
    group_name,
    history_start,
    partition_key,
    partition_range,
    partitions,
    period_ranges,
    retried_while_stores_are_unavailable,
    table_pool,
)
from mlfs_dagster.builders.inference import MODEL_VERSION
from mlfs_dagster.builders.models import EXAMPLES_UNTIL_TAG
from mlfs_dagster.builders.training import labels_known_until
from mlfs_dagster.core import feature_view
from mlfs_dagster.core.engine import query
from mlfs_dagster.core.offline_store import TimeRange
from mlfs_dagster.core.specs import ModelSpec, System
from mlfs_dagster.core.training import metrics_of, with_labels
from mlfs_dagster.resources import ModelRegistryResource, OfflineStoreResource


def performance_asset_name(model: ModelSpec) -> str:
    return f"{model.name}_performance"


def performance_asset(system: System, model: ModelSpec) -> AssetsDefinition:
    view, name = model.feature_view, model.registered_name
    label = view.label
    matured = TimeWindowPartitionMapping(start_offset=0, end_offset=math.ceil(label.maturity / system.step),
                                         allow_nonexistent_upstream_partitions=True)
    table = model.performance_table

    @asset(
        key=asset_key(system, performance_asset_name(model)),
        group_name=group_name(system, "monitoring"),
        description=(
            f"Per partition, `{name}`'s predictions scored against their labels once those are final ({label.maturity} "
            "after the examples), beside the validation metrics of the model version that served them: the "
            "performance the model really had. Days inside the serving version's training set are marked, not "
            f"scored. Per-metric rows go to `{table}`."
        ),
        partitions_def=partitions(system),
        backfill_policy=BackfillPolicy.single_run(),
        deps=[AssetDep(asset_key(system, f"{model.name}_predictions")),
              AssetDep(asset_key(system, view.label_source.asset_name), partition_mapping=matured)],
        kinds={"scikit-learn", "iceberg"},
        owners=[model.owner],
        metadata={"dagster/table_name": table},
        pool=table_pool(table),
    )
    @retried_while_stores_are_unavailable
    def performance(context: AssetExecutionContext, offline_store: OfflineStoreResource,
                    model_registry: ModelRegistryResource):
        store, registry, time_range = offline_store.open(), model_registry.open(), partition_range(context)
        known = labels_known_until(context.instance, system, view)
        if known is None or known - label.maturity < time_range.end:
            final_on = time_range.end + label.maturity
            raise Failure(f"labels of the examples up to {time_range.end:%Y-%m-%d %H:%M} are final only once "
                          f"{view.label_source.name} has been delivered up to {final_on:%Y-%m-%d %H:%M}: "
                          "materialize these partitions then")
        pool = model.performance_pool_partitions
        scored = _scored_examples(store, view, model, TimeRange(time_range.start - (pool - 1) * system.step,
                                                                time_range.end), known)
        rows = []
        for period in period_ranges(time_range, system.step):
            day = period.rows_of(scored, view.spine_time)
            if day.num_rows == 0:
                continue
            version = Counter(day[MODEL_VERSION].to_pylist()).most_common(1)[0][0]
            served = registry.get_version(name, version)
            key = partition_key(system, period.start)
            seen_until = served.tags.get(EXAMPLES_UNTIL_TAG)
            if seen_until and period.start <= dt.datetime.fromisoformat(seen_until):
                context.add_asset_metadata({"model_version": version, "out_of_sample": False, "note": (
                    f"v{version} was trained and validated on examples up to {seen_until}: scoring these days "
                    "would measure memory, not performance")}, partition_key=key)
                continue
            realised = _realised(day, model)
            # One day holds few positives: its metric is noise. What the sensor acts on is pooled over `pool` days.
            window = TimeRange(period.end - pool * system.step, period.end).rows_of(scored, view.spine_time)
            window = window.filter(pc.equal(window[MODEL_VERSION], version))
            pooled = _realised(window, model) if _days(window, view.spine_time, system) == pool else {}
            validation = served.metrics
            context.add_asset_metadata({**_figures(realised, validation, version), **_pooled_figures(pooled, validation, pool),
                                        "out_of_sample": True}, partition_key=key)
            rows += [{"day": period.start, "model_version": version, "metric": metric, "realised": value,
                      "validation": validation.get(metric)} for metric, value in realised.items()]
        snapshot_id = store.replace_range(table, pa.Table.from_pylist(rows, schema=_SCHEMA), "day", time_range)
        return MaterializeResult(metadata={"iceberg/snapshot_id": str(snapshot_id), "commit_retries": store.commit_retries})

    return performance


def performance_schedule(system: System, model: ModelSpec) -> ScheduleDefinition:
    """Each period, once the label source's newest partition is ingested, scores the partition whose labels
    have just become final: the one that ended a label maturity ago."""
    key = asset_key(system, performance_asset_name(model))
    maturity = model.feature_view.label.maturity

    @schedule(
        name=f"{system.name}__{performance_asset_name(model)}",
        cron_schedule="20 * * * *" if system.cadence == "hourly" else "0 1 * * *",  # after ingestion
        execution_timezone="UTC",
        target=[key],
        default_status=DefaultScheduleStatus.RUNNING if system.automation_on else DefaultScheduleStatus.STOPPED,
        description=f"Scores `{model.registered_name}`'s predictions of the partition whose labels became final "
        f"({maturity} after its end), each period.",
    )
    def realised_performance(context: ScheduleEvaluationContext):
        within = context.scheduled_execution_time - maturity - system.step  # inside the partition just matured
        if within < history_start(system):
            return None
        matured = partitions(system).get_partition_key_for_timestamp(within.timestamp())
        return RunRequest(run_key=matured, partition_key=matured)

    return realised_performance


_SCHEMA = pa.schema([("day", pa.timestamp("us", tz="UTC")), ("model_version", pa.string()),
                     ("metric", pa.string()), ("realised", pa.float64()), ("validation", pa.float64())])


def _scored_examples(store, view, model: ModelSpec, time_range, known) -> pa.Table:
    """The predictions of the range, each with its final label."""
    label = view.label
    on_spine = () if label.source is not None else (label.column,)
    examples = with_labels(view, store, feature_view.read_spine(view, store, time_range, extra=on_spine), known)
    predictions = store.read_range(model.predictions_table, view.spine_time, time_range,
                                   (*view.spine_keys, model.output_column, MODEL_VERSION))
    keys = ", ".join(f'"{k}"' for k in view.spine_keys)
    from_examples = ", ".join(f'e."{c}"' for c in (label.column, view.spine_time) if c not in view.spine_keys)
    return query(f"SELECT p.*, {from_examples} FROM predictions p JOIN examples e USING ({keys})",
                 {"predictions": predictions, "examples": examples})


def _days(table: pa.Table, time: str, system: System) -> int:
    """How many partitions the rows of `table` come from (partitions start at multiples of the step)."""
    return len(pc.unique(pc.floor_temporal(table[time], int(system.step.total_seconds()), "second")))


def _realised(rows: pa.Table, model: ModelSpec) -> dict:
    label = model.feature_view.label
    return metrics_of(rows[label.column].to_numpy(zero_copy_only=False),
                      rows[model.output_column].to_numpy(zero_copy_only=False), label.kind,
                      model.alert_threshold if label.kind == "binary" else None)


def _against_validation(realised: dict, validation: dict, prefix: str = "") -> dict:
    """Each realised metric and its gap to the serving version's validation figure, named with `prefix`."""
    metrics = {metric: value for metric, value in realised.items() if metric != "rows"}
    return {f"{prefix}{metric}": MetadataValue.float(value) for metric, value in metrics.items()} | {
        f"{prefix}{metric}_vs_validation": MetadataValue.float(value - validation[metric])
        for metric, value in metrics.items() if metric in validation}


def _pooled_figures(pooled: dict, validation: dict, pool: int) -> dict:
    """The metrics over the last `pool` partitions served by the same version (what retraining watches)."""
    return _against_validation(pooled, validation, "pooled_") | {"pooled_partitions": pool} if pooled else {}


def _figures(realised: dict, validation: dict, version: str) -> dict:
    """Realised metrics, the serving version's validation metrics, and the gap: numbers the UI plots per day."""
    figures = {"model_version": version, "dagster/row_count": int(realised["rows"]),
               **_against_validation(realised, validation),
               **{f"validation_{metric}": MetadataValue.float(validation[metric])
                  for metric in realised if metric in validation and metric != "rows"}}
    if "pr_auc" not in realised and "positive_rate" in realised:
        figures["note"] = "one class only in this partition: no ranking metric"
    return figures
