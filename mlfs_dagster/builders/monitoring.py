"""Monitoring assets and sensors: a drift report per period for each model, and retraining on drift."""

import datetime as dt
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
    TableColumn,
    TableRecord,
    TableSchema,
    asset,
    sensor,
)

from mlfs_dagster.builders.common import (
    asset_key,
    follow_upstream,
    group_name,
    partition_key,
    partition_range,
    partitions,
    period_ranges,
)
from mlfs_dagster.builders.inference import predict, prediction_column
from mlfs_dagster.builders.performance import performance_asset_name
from mlfs_dagster.builders.training import labels_known_until
from mlfs_dagster.core.offline_store import OfflineStore
from mlfs_dagster.core.registry import ModelRegistry
from mlfs_dagster.core.retraining import PartitionSignal, decide, episodes
from mlfs_dagster.core.specs import ModelSpec, System
from mlfs_dagster.core.training import SPLIT
from mlfs_dagster.resources import ModelRegistryResource, OfflineStoreResource, ReportStoreResource

DAY = dt.timedelta(days=1)
RETRAIN_TRIGGER_TAG = "mlfs/trigger"
DRIFTED_PARTITIONS_TAG = "mlfs/drifted_partitions"
EPISODE_TAG = "mlfs/drift_episode"
REASON_TAG = "mlfs/decision"


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
            "of the model version that served them (the same hour of day for sub-daily periods): normed "
            "Wasserstein for numbers and Jensen-Shannon for categories from 1,000 rows, Kolmogorov-Smirnov and "
            "chi-square below; `pii` columns excluded. Drift share, drifted columns, each column's test and a link "
            f"to the HTML report are on each partition; per-column results go to `{model.drift_table}`."
        ),
        partitions_def=partitions(system),
        backfill_policy=BackfillPolicy.single_run(),
        deps=[asset_key(system, f"{model.name}_predictions"), asset_key(system, view.asset_name)],
        kinds={"evidently", "iceberg"},
        owners=[model.owner],
        metadata={"dagster/table_name": model.drift_table},
        **follow_upstream(system),
    )
    def drift_report(context: AssetExecutionContext, offline_store: OfflineStoreResource,
                     model_registry: ModelRegistryResource, report_store: ReportStoreResource):
        from mlfs_dagster.core.drift import add_header, drift_rows, feature_drift

        store, registry, time_range = offline_store.open(), model_registry.open(), partition_range(context)
        time = view.spine_time
        served = store.read_range(model.predictions_table, time, time_range)
        numerical, categorical = monitored_features(model, served.schema)
        references, validation_outputs, rows = {}, {}, []
        for period in period_ranges(time_range, system.step):
            key = partition_key(system, period.start)
            current = served.filter(pc.and_(pc.greater_equal(served[time], period.start), pc.less(served[time], period.end)))
            if current.num_rows == 0:
                raise ValueError(f"no predictions in partition {key} to monitor: materialize "
                                 f"{model.name}_predictions for it")
            version = Counter(current["model_version"].to_pylist()).most_common(1)[0][0]
            if version not in references:
                references[version] = _reference(store, registry, model, version).to_pandas()
                validation_outputs[version] = _validation_outputs(store, registry, model, version)
            output = prediction_column(model)
            prediction = feature_drift(validation_outputs[version], current.select([output]).to_pandas(), [output], [])
            outputs_drift = prediction.columns[0]
            result = feature_drift(
                _same_time_of_day(references[version], time, period.start, system),
                current.select([*numerical, *categorical]).to_pandas(), numerical, categorical,
                share_threshold=model.drift_share_to_retrain,
                html_path=report_store.path(system.name, drift_asset_name(model), f"{key}.html"),
                static_dir=report_store.path("_static"),  # Evidently's scripts, once for every report
            )
            rows += drift_rows(result, period.start, version)
            served_by = registry.get_version(name, version)
            reference = (f"{served_by.tags.get('training_set_version', 'unknown training set')}, train split, examples "
                         f"up to {served_by.tags.get('examples_until', 'unknown')}"
                         + (f", the same hour of day ({period.start:%H}:00)" if system.step < DAY else ""))
            decision = "drifted" if result.dataset_drift else "no drift"
            if result.html_path:
                add_header(result.html_path, {
                    "partition": key, "model": f"{name} v{version}", "reference": reference,
                    "drift share": f"{result.drift_share:.2f} of {len(result.columns)} columns "
                                   f"(threshold {model.drift_share_to_retrain})", "decision": decision})
            context.add_asset_metadata(
                {"drift_share": result.drift_share, "drifted_column_count": len(result.drifted_columns),
                 "dataset_drift": result.dataset_drift, "decision": decision, "reference": reference,
                 "columns": _column_table(result), "model_version": version,
                 "drifted_columns": MetadataValue.json(list(result.drifted_columns)),
                 "prediction_drift": outputs_drift.score, "prediction_drifted": outputs_drift.drifted,
                 "prediction_drift_test": f"{outputs_drift.method} against the version's validation {output}s, "
                                          f"threshold {outputs_drift.threshold}",
                 "report": MetadataValue.url(report_store.url(result.html_path)),
                 "report_file": MetadataValue.path(str(result.html_path)), "dagster/row_count": result.current_rows},
                partition_key=key,
            )
        snapshot_id = store.replace_range(model.drift_table, pa.Table.from_pylist(rows), "day", time_range)
        return MaterializeResult(metadata={"iceberg/snapshot_id": str(snapshot_id)})

    return drift_report


def _column_table(result) -> MetadataValue:
    """Each column's test, score, threshold and outcome, as a table in the partition's metadata."""
    schema = TableSchema(columns=[TableColumn("column", "string"), TableColumn("test", "string"),
                                  TableColumn("score", "float"), TableColumn("threshold", "float"),
                                  TableColumn("drifted", "bool")])
    return MetadataValue.table(
        [TableRecord({"column": c.column, "test": c.method, "score": round(c.score, 4), "threshold": c.threshold,
                      "drifted": c.drifted}) for c in result.columns], schema=schema)


def _validation_outputs(store: OfflineStore, registry: ModelRegistry, model: ModelSpec, version: str):
    """What the serving version predicted on its own validation rows: the reference for prediction drift."""
    import pandas as pd

    snapshot_id = int(registry.get_version(model.registered_name, version).tags["training_set_snapshot"])
    rows = store.read(model.feature_view.table, (*model.features, SPLIT), snapshot_id=snapshot_id)
    validation = rows.filter(pc.equal(rows[SPLIT], "validation"))
    outputs = predict(registry.load_version(model.registered_name, version), model, validation)
    return pd.DataFrame({prediction_column(model): outputs})


def _reference(store: OfflineStore, registry: ModelRegistry, model: ModelSpec, version: str) -> pa.Table:
    """The training rows of the set the serving model was trained on, read at its exact snapshot."""
    snapshot_id = int(registry.get_version(model.registered_name, version).tags["training_set_snapshot"])
    time = model.feature_view.spine_time
    reference = store.read(model.feature_view.table, (*model.features, time, SPLIT), snapshot_id=snapshot_id)
    return reference.filter(pc.equal(reference[SPLIT], "train")).select([*model.features, time])


def _same_time_of_day(reference, time: str, period_start, system: System):
    """For periods shorter than a day, the reference rows of the same hour of day: an hour of readings is
    compared with that hour's usual values, not with the whole day's (time-of-day features would always drift)."""
    if system.step >= DAY:
        return reference
    return reference[reference[time].dt.hour == period_start.hour]


def retraining_sensor(system: System, model: ModelSpec, targets: list[AssetsDefinition]) -> SensorDefinition:
    """Turns sustained drift, or a sustained fall of realised performance, into retraining once per episode, when
    final labels can teach the model something.

    Every tick re-reads the latest report of each partition and decides each episode again: deferred episodes
    are requested once their labels are final, and an episode already requested keeps its run key, so the
    daemon never repeats it (after a restart, or when reports are re-materialized).
    """
    watched = asset_key(system, drift_asset_name(model))
    realised = asset_key(system, performance_asset_name(model))
    view = model.feature_view

    @sensor(
        name=sensor_name(system, model),
        description=(
            f"Retrains `{model.registered_name}` (training set, model, champion) when {model.drifted_partitions_to_retrain} "
            f"consecutive partitions of {drift_asset_name(model)} reach a drift share of {model.drift_share_to_retrain}, "
            f"once {model.new_labelled_partitions_to_retrain} partitions from the drift onset have final labels "
            f"({view.label.maturity} after each example); or when {model.degraded_partitions_to_retrain} consecutive "
            f"partitions of realised {model.watched_metric} lie {model.performance_drop_to_retrain} or more below "
            "validation. Drift on partitions with quarantined rows is an alert, not a retrain. One run per episode "
            "(cause, model version and onset), whatever the reruns."
        ),
        target=targets,
        default_status=DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=60,
    )
    def drift_retraining(context: SensorEvaluationContext):
        found = episodes(_latest_signals(context.instance, system, watched, _drift_share), system.step,
                         model.drift_share_to_retrain, model.drifted_partitions_to_retrain)
        if model.watched_metric:
            found += episodes(_latest_signals(context.instance, system, realised, _performance_drop(model)),
                              system.step, model.performance_drop_to_retrain, model.degraded_partitions_to_retrain,
                              cause="performance")
        if not found:
            return SensorResult(skip_reason="no sustained drift or fall of realised performance")
        known = labels_known_until(context.instance, system, view)
        decisions = [decide(e, known, view.label.maturity, system.step, model.new_labelled_partitions_to_retrain,
                            _quarantine_shares(context.instance, system, view.spine, e.partitions)) for e in found]
        requests = [_retraining_request(model, d) for d in decisions if d.action == "retrain"]
        if requests:
            return SensorResult(run_requests=requests)
        return SensorResult(skip_reason="; ".join(d.reason for d in decisions))

    return drift_retraining


def retraining_run_key(model: ModelSpec, episode) -> str:
    return f"{model.name}-retrain-{episode.key}"


def _retraining_request(model: ModelSpec, decision) -> RunRequest:
    episode = decision.episode
    return RunRequest(
        run_key=retraining_run_key(model, episode),
        tags={RETRAIN_TRIGGER_TAG: "feature_drift" if episode.cause == "drift" else "realised_performance",
              EPISODE_TAG: episode.key, REASON_TAG: decision.reason[:1000],
              DRIFTED_PARTITIONS_TAG: ",".join(f"{p:%Y-%m-%dT%H:%M}" for p in episode.partitions)[:1000]},
    )


def _drift_share(metadata) -> float | None:
    return metadata["drift_share"].value if "drift_share" in metadata else None


def _performance_drop(model: ModelSpec):
    """How far the realised watched metric fell below validation; None where the day is not scored."""
    gap = f"{model.watched_metric}_vs_validation"

    def drop(metadata) -> float | None:
        return -metadata[gap].value if gap in metadata else None

    return drop


def _latest_signals(instance, system: System, key, signal) -> list[PartitionSignal]:
    """Each partition's figure from its latest materialization (a re-materialized report replaces the older)."""
    records = instance.fetch_materializations(AssetRecordsFilter(asset_key=key), limit=10_000).records
    latest = {}
    for record in records:  # newest first
        if record.partition_key not in latest:
            metadata = record.asset_materialization.metadata
            latest[record.partition_key] = (
                partitions(system).time_window_for_partition_key(record.partition_key).start, signal(metadata),
                str(metadata["model_version"].value) if "model_version" in metadata else "unknown")
    return [PartitionSignal(*figures) for figures in latest.values() if figures[1] is not None]


def _quarantine_shares(instance, system: System, source, starts) -> dict:
    """Share of the spine source's rows quarantined in each partition: a data-quality incident if high."""
    key = asset_key(system, source.asset_name)
    shares = {}
    for start in starts:
        records = instance.fetch_materializations(
            AssetRecordsFilter(asset_key=key, asset_partitions=[partition_key(system, start)]), limit=1).records
        metadata = records[0].asset_materialization.metadata if records else {}
        quarantined = metadata["quarantined_rows"].value if "quarantined_rows" in metadata else 0
        rows = metadata["dagster/row_count"].value if "dagster/row_count" in metadata else 0
        shares[start] = quarantined / (quarantined + rows) if quarantined else 0.0
    return shares
