"""Monitoring: a daily Evidently drift report of served features, and retraining when drift appears."""

import os
from collections import Counter

import pyarrow as pa
import pyarrow.compute as pc
from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetRecordsFilter,
    BackfillPolicy,
    Config,
    DefaultSensorStatus,
    Definitions,
    MaterializeResult,
    MetadataValue,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    asset,
    sensor,
)
from pydantic import Field

from mlfs_dagster.core.offline_store import OfflineStore
from mlfs_dagster.core.registry import ModelRegistry
from mlfs_dagster.core.training import SPLIT
from mlfs_dagster.defs.inference import PREDICTIONS_TABLE
from mlfs_dagster.defs.models import ML_OWNER, fraud_model, fraud_model_champion
from mlfs_dagster.defs.training import fraud_training_set
from mlfs_dagster.fraud import training
from mlfs_dagster.fraud.model import CATEGORICAL_FEATURES, FEATURES, MODEL_NAME, NUMERICAL_FEATURES
from mlfs_dagster.partitions import DAILY, partition_range
from mlfs_dagster.resources import ModelRegistryResource, OfflineStoreResource, ReportStoreResource

DRIFT_TABLE = "monitoring.feature_drift"
RETRAIN_TRIGGER_TAG = "mlfs/trigger"


class DriftConfig(Config):
    share_threshold: float = Field(
        default=0.5, description="A day has drifted when at least this share of features drifted."
    )


def _reference(store: OfflineStore, registry: ModelRegistry, model_version: str) -> pa.Table:
    """The training rows of the set the serving model was trained on, read at its exact snapshot."""
    snapshot_id = int(registry.get_version(MODEL_NAME, model_version).tags["training_set_snapshot"])
    reference = store.read(training.TABLE, (*FEATURES, SPLIT), snapshot_id=snapshot_id)
    return reference.filter(pc.equal(reference[SPLIT], "train")).select(FEATURES)


@asset(
    group_name="monitoring",
    description=(
        "Per day, an Evidently data-drift report of the feature vectors the model served against the "
        "training rows of the model version that served them (normed Wasserstein for numbers, "
        "Jensen-Shannon for categories). Drift share, drifted columns and the HTML report are on each "
        f"partition; per-column results go to `{DRIFT_TABLE}`."
    ),
    partitions_def=DAILY,
    backfill_policy=BackfillPolicy.single_run(),
    deps=["fraud_predictions", "fraud_training_set"],
    kinds={"evidently", "iceberg"},
    owners=[ML_OWNER],
    metadata={"dagster/table_name": DRIFT_TABLE},
)
def feature_drift_report(
    context: AssetExecutionContext,
    config: DriftConfig,
    offline_store: OfflineStoreResource,
    model_registry: ModelRegistryResource,
    report_store: ReportStoreResource,
):
    from mlfs_dagster.core.drift import drift_rows, feature_drift

    store, registry, time_range = offline_store.open(), model_registry.open(), partition_range(context)
    served = store.read_range(PREDICTIONS_TABLE, "event_time", time_range, ("event_time", "model_version", *FEATURES))
    references, rows = {}, []
    for day in time_range.days():
        current = served.filter(pc.equal(pc.cast(served["event_time"], pa.date32()), day))
        if current.num_rows == 0:
            raise ValueError(f"no predictions on {day} to monitor: materialize fraud_predictions for that day")
        version = Counter(current["model_version"].to_pylist()).most_common(1)[0][0]
        if version not in references:
            references[version] = _reference(store, registry, version).to_pandas()
        result = feature_drift(
            references[version], current.select(FEATURES).to_pandas(), NUMERICAL_FEATURES, CATEGORICAL_FEATURES,
            share_threshold=config.share_threshold, html_path=report_store.path("feature_drift", f"{day}.html"),
        )
        rows += drift_rows(result, day, version)
        context.add_asset_metadata(
            {
                "drift_share": result.drift_share,
                "dataset_drift": result.dataset_drift,
                "drifted_columns": MetadataValue.json(list(result.drifted_columns)),
                "report": MetadataValue.path(str(result.html_path)),
                "model_version": version,
                "dagster/row_count": result.current_rows,
            },
            partition_key=day.isoformat(),
        )
    snapshot_id = store.replace_range(DRIFT_TABLE, pa.Table.from_pylist(rows), "day", time_range)
    return MaterializeResult(metadata={"iceberg/snapshot_id": str(snapshot_id)})


def retrain_share_threshold() -> float:
    return float(os.environ.get("MLFS_RETRAIN_DRIFT_SHARE", "0.5"))


def _drift_share(record) -> float:
    share = record.asset_materialization.metadata.get("drift_share")
    return share.value if share is not None else 0.0


@sensor(
    description=(
        "Reads new feature_drift_report materializations; when a day's drift share reaches "
        "MLFS_RETRAIN_DRIFT_SHARE (default 0.5) it requests one retraining run (training set, model, "
        "champion) for those drift events. The cursor and run key make each event count once."
    ),
    target=[fraud_training_set, fraud_model, fraud_model_champion],
    default_status=DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=60,
)
def drift_retraining_sensor(context: SensorEvaluationContext):
    after = int(context.cursor) if context.cursor else None
    records = context.instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey("feature_drift_report"), after_storage_id=after),
        limit=10_000,
        ascending=True,
    ).records
    if not records:
        return SensorResult(skip_reason="no new drift reports", cursor=context.cursor)
    threshold = retrain_share_threshold()
    drifted = [r for r in records if _drift_share(r) >= threshold]
    cursor = str(records[-1].storage_id)
    if not drifted:
        return SensorResult(skip_reason=f"{len(records)} new drift reports, none at drift share >= {threshold}",
                            cursor=cursor)
    partitions = sorted({r.partition_key for r in drifted})
    request = RunRequest(
        run_key=f"feature-drift-{drifted[-1].storage_id}",
        tags={RETRAIN_TRIGGER_TAG: "feature_drift", "mlfs/drifted_partitions": ",".join(partitions)[:1000]},
    )
    return SensorResult(run_requests=[request], cursor=cursor)


defs = Definitions(assets=[feature_drift_report], sensors=[drift_retraining_sensor])
