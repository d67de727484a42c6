"""The fraud training set: a versioned, point-in-time correct join of mature labels and features."""

import datetime as dt

from dagster import (
    AssetCheckResult,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    Config,
    Definitions,
    MaterializeResult,
    MetadataValue,
    asset,
)
from pydantic import Field

from mlfs_dagster.builders import table_metadata
from mlfs_dagster.core import audit
from mlfs_dagster.core.training import SPLIT
from mlfs_dagster.fraud import training
from mlfs_dagster.fraud.features import LABEL_MATURITY_DAYS
from mlfs_dagster.fraud.model import FRAUD_VIEW, LABEL
from mlfs_dagster.fraud.sources import FRAUD_REPORTS, OWNER, TRANSACTIONS
from mlfs_dagster.partitions import DAILY
from mlfs_dagster.resources import OfflineStoreResource

NO_FUTURE_FEATURES = "no_future_features"


class TrainingSetConfig(Config):
    as_of: str | None = Field(
        default=None,
        description="Build the set as of this date (YYYY-MM-DD, exclusive). Default: the day after the "
        "latest ingested fraud-report partition.",
    )
    validation_fraction: float = Field(default=0.2, description="Share of the latest days held out.")


def _as_of(context: AssetExecutionContext, config: TrainingSetConfig) -> dt.datetime:
    if config.as_of:
        day = dt.date.fromisoformat(config.as_of)
    else:
        ingested = context.instance.get_materialized_partitions(AssetKey(FRAUD_REPORTS.asset_name))
        if not ingested:
            raise ValueError(f"no partition of {FRAUD_REPORTS.asset_name} is materialized: nothing is labelled")
        day = dt.date.fromisoformat(max(ingested)) + dt.timedelta(days=1)
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)


@asset(
    group_name="training",
    description=(
        f"Labelled transactions old enough for their labels to be final ({LABEL_MATURITY_DAYS} days), "
        f"each joined point-in-time (DuckDB ASOF) to the feature groups of the `{FRAUD_VIEW.name}` feature "
        "view, with on-demand features and a time-based train/validation split. Each materialization is a "
        "version: an Iceberg tag on the snapshot it writes, and the snapshot of every input table in its "
        "metadata, so it can be rebuilt exactly."
    ),
    deps=[TRANSACTIONS.asset_name, FRAUD_REPORTS.asset_name, *(s.group.asset_name for s in FRAUD_VIEW.selections)],
    kinds={"iceberg", "duckdb"},
    owners=[OWNER],
    metadata={"dagster/table_name": training.TABLE},
    check_specs=[
        AssetCheckSpec(NO_FUTURE_FEATURES, asset="fraud_training_set", blocking=True,
                       description="No row is joined to a feature row newer than the row's own timestamp."),
    ],
)
def fraud_training_set(
    context: AssetExecutionContext, config: TrainingSetConfig, offline_store: OfflineStoreResource
):
    store = offline_store.open()
    built = training.build_training_set(store, _as_of(context, config), DAILY.start + FRAUD_VIEW.warm_up,
                                        config.validation_fraction)
    snapshot_id = store.replace_all(training.TABLE, built.data)
    version = f"v{len(store.tags(training.TABLE)) + 1}"
    store.tag(training.TABLE, snapshot_id, f"fraud_training_set_{version}")

    written = store.read(training.TABLE, snapshot_id=snapshot_id)
    leaks = audit.rows_with_future_features(
        written, "event_time", tuple(f"{s.group.name}_event_time" for s in FRAUD_VIEW.selections)
    )
    labels = written.group_by([SPLIT, LABEL]).aggregate([([], "count_all")]).to_pylist()
    return MaterializeResult(
        metadata={
            **table_metadata(training.TABLE, written.schema),
            "dagster/row_count": written.num_rows,
            "version": version,
            "iceberg/snapshot_id": str(snapshot_id),
            "iceberg/tag": f"fraud_training_set_{version}",
            "input_snapshots": MetadataValue.json({k: str(v) for k, v in built.input_snapshots.items()}),
            "as_of": built.as_of.isoformat(),
            "first_event": built.first_event.isoformat(),
            "label_cutoff": built.label_cutoff.isoformat(),
            "rows_by_split_and_label": MetadataValue.json(labels),
        },
        check_results=[AssetCheckResult(check_name=NO_FUTURE_FEATURES, passed=leaks == 0,
                                        metadata={"rows_with_future_features": leaks})],
    )


defs = Definitions(assets=[fraud_training_set])
