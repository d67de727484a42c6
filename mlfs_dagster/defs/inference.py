"""Batch inference: each day's transactions scored by the champion model, through the training path."""

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from dagster import (
    AssetDep,
    AssetExecutionContext,
    BackfillPolicy,
    Definitions,
    Failure,
    MaterializeResult,
    asset,
)

from mlfs_dagster.builders import add_rows_per_partition, table_metadata
from mlfs_dagster.core import audit
from mlfs_dagster.defs.models import CHAMPION, ML_OWNER
from mlfs_dagster.fraud.model import FEATURES, FRAUD_VIEW, MODEL_NAME, TRANSACTION_COLUMNS
from mlfs_dagster.fraud.sources import TRANSACTIONS
from mlfs_dagster.partitions import DAILY, partition_range
from mlfs_dagster.resources import ModelRegistryResource, OfflineStoreResource

PREDICTIONS_TABLE = "inference.fraud_predictions"
ALERT_SCORE = 0.5


@asset(
    group_name="inference",
    description=(
        f"Each day's transactions scored by the `{CHAMPION}` version of `{MODEL_NAME}`. Feature vectors come "
        "from the same feature view and on-demand code as the training set, and are stored with the score "
        "and the model version, so monitoring and audits see exactly what the model saw."
    ),
    partitions_def=DAILY,
    backfill_policy=BackfillPolicy.single_run(),
    deps=[TRANSACTIONS.asset_name, *(AssetDep(s.group.asset_name) for s in FRAUD_VIEW.selections),
          "fraud_model_champion"],
    kinds={"iceberg", "mlflow"},
    owners=[ML_OWNER],
    metadata={"dagster/table_name": PREDICTIONS_TABLE},
)
def fraud_predictions(
    context: AssetExecutionContext, offline_store: OfflineStoreResource, model_registry: ModelRegistryResource
):
    store, registry, time_range = offline_store.open(), model_registry.open(), partition_range(context)
    champion = registry.version_by_alias(MODEL_NAME, CHAMPION)
    if champion is None:
        raise Failure(f"{MODEL_NAME} has no '{CHAMPION}' version yet: materialize fraud_model_champion first")
    model = registry.load_version(MODEL_NAME, champion.version)
    spine = store.read_range(TRANSACTIONS.table, TRANSACTIONS.time_column, time_range, TRANSACTION_COLUMNS)
    vectors = FRAUD_VIEW.vectors(store, spine)
    scores = model.predict_proba(vectors.select(FEATURES).to_pandas())[:, 1] if vectors.num_rows else np.array([])
    scored = vectors.append_column("fraud_score", pa.array(scores, pa.float64())).append_column(
        "model_version", pa.array([champion.version] * vectors.num_rows, pa.string())
    )
    snapshot_id = store.replace_range(PREDICTIONS_TABLE, scored, "event_time", time_range)

    days = time_range.days()
    alerts = scored.filter(pc.greater_equal(scored["fraud_score"], ALERT_SCORE))
    add_rows_per_partition(
        context, audit.rows_per_day(scored, "event_time", days),
        alerts=audit.rows_per_day(alerts, "event_time", days),
    )
    return MaterializeResult(
        metadata={**table_metadata(PREDICTIONS_TABLE, scored.schema), "model_version": champion.version,
                  "iceberg/snapshot_id": str(snapshot_id), "rows_written": scored.num_rows}
    )


defs = Definitions(assets=[fraud_predictions])
