"""Monitoring assets and sensors: a drift report per period for each model, and retraining on drift."""

import datetime as dt
import tempfile
from collections import Counter
from pathlib import Path

import pyarrow as pa
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
    chunks,
    follow_upstream,
    group_name,
    partition_key,
    partition_range,
    partitions,
    period_ranges,
    retried_while_stores_are_unavailable,
    table_pool,
)
from mlfs_dagster.builders.models import EXAMPLES_UNTIL_TAG
from mlfs_dagster.builders.performance import performance_asset_name
from mlfs_dagster.builders.training import labels_known_until
from mlfs_dagster.core.drift import (
    STATIC_FOLDER,
    add_header,
    drift_rows,
    drifted_periods,
    feature_drift,
    risen_columns,
    severity,
    with_static_at,
)
from mlfs_dagster.core.offline_store import OfflineStore, TimeRange
from mlfs_dagster.core.registry import ModelRegistry
from mlfs_dagster.core.retraining import PartitionSignal, decide, episodes, seen_by_drift
from mlfs_dagster.core.specs import ModelSpec, System
from mlfs_dagster.core.training import monitoring_reference, validation_outputs_of
from mlfs_dagster.resources import ModelRegistryResource, OfflineStoreResource, ReportStoreResource

DAY = dt.timedelta(days=1)
RETRAIN_TRIGGER_TAG = "mlfs/trigger"
DRIFTED_PARTITIONS_TAG = "mlfs/drifted_partitions"
EPISODE_TAG = "mlfs/drift_episode"
REASON_TAG = "mlfs/decision"
MIN_BASELINE_PARTITIONS = 3  # a column's rise is judged against at least this many earlier partitions


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
            "of the model version that served them (its latest training window outside the drift episodes seen "
            "when it was trained; the same hour of day for sub-daily periods): normed "
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
        pool=table_pool(model.drift_table),
        **follow_upstream(system),
    )
    @retried_while_stores_are_unavailable
    def drift_report(context: AssetExecutionContext, offline_store: OfflineStoreResource,
                     model_registry: ModelRegistryResource, report_store: ReportStoreResource):
        store, registry, time_range = offline_store.open(), model_registry.open(), partition_range(context)
        time, output = view.spine_time, model.output_column
        references, rows, days = {}, [], []
        history = _recent_severities(store, model, time_range, system)
        for period, current in _served_by_period(store, model, time_range, system.step):
            numerical, categorical = monitored_features(model, current.schema)
            key = partition_key(system, period.start)
            if current.num_rows == 0:
                raise ValueError(f"no predictions in partition {key} to monitor: materialize "
                                 f"{model.name}_predictions for it")
            version = Counter(current["model_version"].to_pylist()).most_common(1)[0][0]
            if version not in references:
                references[version] = _monitoring_reference(store, registry, model, version, system.step)
            served_by, reference = references[version]
            outputs_drift = feature_drift(reference["validation_outputs"], current.select([output]).to_pandas(),
                                          [output], []).columns[0]
            result = feature_drift(
                _same_time_of_day(reference["training_rows"], time, period.start, system),
                current.select([*numerical, *categorical]).to_pandas(), numerical, categorical,
                share_threshold=model.drift_share_to_retrain,
                html_path=report_store.path(system.name, drift_asset_name(model), f"{key}.html"),
                static_dir=report_store.path(STATIC_FOLDER),  # Evidently's scripts, once for every report
            )
            earlier = [scores for start, (scored_by, scores) in history.items() if scored_by == version
                       and period.start - model.drift_baseline_partitions * system.step <= start < period.start]
            risen = risen_columns(result.columns, earlier, model.drift_rise_to_retrain) \
                if len(earlier) >= MIN_BASELINE_PARTITIONS else ()
            history[period.start] = (version, {c.column: c.severity for c in result.columns})
            drifted = result.dataset_drift or bool(risen)
            rows += drift_rows(result, outputs_drift, risen, drifted, period.start, version)
            decision = _decision(result, risen, model, len(earlier))
            reference_text = _reference_text(served_by, model, period, system)
            if result.html_path:
                add_header(result.html_path, {
                    "partition": key, "model": f"{model.registered_name} v{version}", "reference": reference_text,
                    "drift share": f"{result.drift_share:.2f} of {len(result.columns)} columns "
                                   f"(threshold {model.drift_share_to_retrain})",
                    "prediction drift": f"{outputs_drift.score:.3f} ({outputs_drift.method}, threshold "
                                        f"{outputs_drift.threshold})", "decision": decision})
            days.append((period.start, version, result, outputs_drift))
            context.add_asset_metadata(
                {"drift_share": result.drift_share, "drifted_column_count": len(result.drifted_columns),
                 "dataset_drift": result.dataset_drift, "drifted": drifted, "decision": decision,
                 "risen_columns": MetadataValue.json(list(risen)), "reference": reference_text,
                 "columns": _column_table(result, risen), "model_version": version,
                 "drifted_columns": MetadataValue.json(list(result.drifted_columns)),
                 "prediction_drift": outputs_drift.score, "prediction_drifted": outputs_drift.drifted,
                 "prediction_drift_test": f"{outputs_drift.method} against the version's validation {output}s, "
                                          f"threshold {outputs_drift.threshold}",
                 "report": MetadataValue.url(report_store.url(result.html_path)),
                 "report_file": MetadataValue.path(str(result.html_path)), "dagster/row_count": result.current_rows},
                partition_key=key,
            )
        snapshot_id = store.replace_range(model.drift_table, pa.Table.from_pylist(rows), "day", time_range)
        run_id = _log_monitoring_run(context, registry, report_store, model, days)
        return MaterializeResult(metadata={"iceberg/snapshot_id": str(snapshot_id), "mlflow_run_id": run_id,
                                           "commit_retries": store.commit_retries})

    return drift_report


def _served_by_period(store: OfflineStore, model: ModelSpec, time_range: TimeRange, step: dt.timedelta):
    """Each period of the range with its predictions, read a chunk of periods at a time: a year's predictions are
    never in memory at once."""
    time = model.feature_view.spine_time
    for chunk in chunks(time_range, step):
        served = store.read_range(model.predictions_table, time, chunk)
        for period in period_ranges(chunk, step):
            yield period, period.rows_of(served, time)


def _decision(result, risen: tuple[str, ...], model: ModelSpec, baseline: int) -> str:
    """What the period counts as for retraining, and why."""
    causes = ([f"{len(result.drifted_columns)} of {len(result.columns)} features"] if result.dataset_drift else []) + (
        [f"{', '.join(risen)} rose {model.drift_rise_to_retrain} or more above the last {baseline} partitions"]
        if risen else [])
    if causes:
        return f"drifted: {'; '.join(causes)}"
    if baseline < MIN_BASELINE_PARTITIONS:
        return (f"no drift (share below {model.drift_share_to_retrain}; a rise of single columns is judged from "
                f"{MIN_BASELINE_PARTITIONS} partitions served by this version on)")
    return "no drift"


def _recent_severities(store: OfflineStore, model: ModelSpec, time_range, system: System) -> dict:
    """Per period before `time_range`, within the baseline: the serving version and each column's severity."""
    if not store.exists(model.drift_table):
        return {}
    before = TimeRange(time_range.start - model.drift_baseline_partitions * system.step, time_range.start)
    rows = store.read_range(model.drift_table, "day", before, ("day", "column", "method", "score", "model_version"))
    history = {}
    for row in rows.to_pylist():
        history.setdefault(row["day"], (row["model_version"], {}))[1][row["column"]] = severity(row["method"], row["score"])
    return history


def _reference_text(served_by, model: ModelSpec, period, system: System) -> str:
    window = (f"its latest {model.drift_reference_window.days} days outside drifted periods, up to "
              if model.drift_reference_window else "examples up to ")
    return (f"{served_by.tags.get('training_set_version', 'unknown training set')}, train split, {window}"
            f"{served_by.tags.get(EXAMPLES_UNTIL_TAG, 'unknown')}"
            + (f", the same hour of day ({period.start:%H}:00)" if system.step < DAY else ""))


def _log_monitoring_run(context: AssetExecutionContext, registry: ModelRegistry, report_store: ReportStoreResource,
                        model: ModelSpec, days: list) -> str:
    """The materialization as an MLflow run of the model's experiment: drift figures per period, and each report
    loading Evidently's scripts from the report server (MLflow's viewer cannot follow relative links)."""
    static_dir = report_store.path(STATIC_FOLDER)
    series = {"drift_share": [(start, r.drift_share) for start, _, r, _ in days],
              "drifted_column_count": [(start, len(r.drifted_columns)) for start, _, r, _ in days],
              "prediction_drift": [(start, o.score) for start, _, _, o in days]}
    keys = context.partition_keys
    with tempfile.TemporaryDirectory(prefix="mlfs-reports-") as folder:
        copies = []
        for _, _, result, _ in days:
            if result.html_path:
                copy = Path(folder, result.html_path.name)
                copy.write_text(with_static_at(result.html_path, static_dir, report_store.url(static_dir)),
                                encoding="utf-8")
                copies.append(copy)
        return registry.log_monitoring_run(
            f"{model.name} monitoring {keys[0]}" + (f"..{keys[-1]}" if len(keys) > 1 else ""),
            tags={"mlfs/model": model.registered_name, "mlfs/asset": context.asset_key.to_user_string(),
                  "mlfs/partitions": f"{keys[0]}..{keys[-1]}", "dagster/run_id": context.run_id,
                  "mlfs/model_versions": ",".join(sorted({version for _, version, _, _ in days}))},
            series=series, files=copies, artifact_path="drift_reports")


def _column_table(result, risen: tuple[str, ...]) -> MetadataValue:
    """Each column's test, score, threshold, outcome and whether it rose above its recent level, as a table in the
    partition's metadata."""
    schema = TableSchema(columns=[TableColumn("column", "string"), TableColumn("test", "string"),
                                  TableColumn("score", "float"), TableColumn("threshold", "float"),
                                  TableColumn("drifted", "bool"), TableColumn("risen", "bool")])
    return MetadataValue.table(
        [TableRecord({"column": c.column, "test": c.method, "score": round(c.score, 4), "threshold": c.threshold,
                      "drifted": c.drifted, "risen": c.column in risen}) for c in result.columns], schema=schema)


def _monitoring_reference(store: OfflineStore, registry: ModelRegistry, model: ModelSpec, version: str,
                          step: dt.timedelta):
    """The serving version, and its monitoring reference, logged with it at training. A version trained before
    references were logged gets its reference built from its training-set snapshot, and logged then, once."""
    served_by = registry.get_version(model.registered_name, version)
    frames = {key: registry.run_frame(served_by.run_id, key) for key in ("training_rows", "validation_outputs")}
    if any(frame is None for frame in frames.values()):
        training_set = store.read(model.feature_view.table,
                                  snapshot_id=int(served_by.tags["training_set_snapshot"])).to_pandas()
        fitted = registry.load_version(model.registered_name, version)
        frames = monitoring_reference(model, training_set, validation_outputs_of(model, training_set, fitted),
                                      drifted_periods(store, model.drift_table, step))
        registry.log_frames(served_by.run_id, frames)
    return served_by, frames


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
            f"consecutive partitions of {drift_asset_name(model)} drift (a drift share of {model.drift_share_to_retrain}, "
            f"or a column whose score rose {model.drift_rise_to_retrain} above its last {model.drift_baseline_partitions} "
            "partitions), "
            f"once {model.new_labelled_partitions_to_retrain} partitions from the drift onset have final labels "
            f"({view.label.maturity} after each example); or when {model.watched_metric}, realised over the last "
            f"{model.performance_pool_partitions} partitions, lies {model.performance_drop_to_retrain} or more below "
            f"validation on {model.degraded_partitions_to_retrain} consecutive partitions. Drift on partitions with "
            "quarantined rows is an alert, not a retrain. One run per episode (cause, model version and onset), "
            "whatever the reruns."
        ),
        target=targets,
        default_status=DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=60,
    )
    def drift_retraining(context: SensorEvaluationContext):
        found = episodes(_latest_signals(context.instance, system, watched, _drifted), system.step,
                         model.drifted_partitions_to_retrain, cooldown=model.drift_baseline_partitions)
        if model.watched_metric:
            fallen = episodes(_latest_signals(context.instance, system, realised, _degraded(model)),
                              system.step, model.degraded_partitions_to_retrain, cause="performance")
            found += seen_by_drift(fallen, found, system.step, model.drift_baseline_partitions)
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


def _drifted(metadata) -> bool | None:
    return metadata["drifted"].value if "drifted" in metadata else None


def _degraded(model: ModelSpec):
    """Whether the watched metric, realised over the last `performance_pool_partitions` partitions, fell the
    model's tolerance below validation; None where not scored."""
    gap = f"pooled_{model.watched_metric}_vs_validation"

    def degraded(metadata) -> bool | None:
        return -metadata[gap].value >= model.performance_drop_to_retrain if gap in metadata else None

    return degraded


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
