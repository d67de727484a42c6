"""Training-set assets: one per feature view, a versioned point-in-time join of final labels and features."""

import datetime as dt

import pyarrow as pa
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetRecordsFilter,
    AssetsDefinition,
    AutomationCondition,
    Config,
    FreshnessPolicy,
    MaterializeResult,
    MetadataValue,
    asset,
)
from pydantic import Field

from mlfs_dagster.builders.common import (
    asset_key,
    group_name,
    history_start,
    partitions,
    retried_while_stores_are_unavailable,
    table_metadata,
    table_pool,
)
from mlfs_dagster.builders.raw import DELIVERY
from mlfs_dagster.core import audit
from mlfs_dagster.core.dataset_checks import Profile, profile, training_set_findings
from mlfs_dagster.core.ingest import PUBLISHED
from mlfs_dagster.core.specs import Column, FeatureViewSpec, System
from mlfs_dagster.core.training import SPLIT, TrainingSet, build_training_set
from mlfs_dagster.resources import OfflineStoreResource

NO_FUTURE_FEATURES = "no_future_features"
PROFILE = "mlfs.dataset-profile"  # snapshot summary property: the version's `dataset_checks.Profile`


class TrainingSetConfig(Config):
    as_of: str | None = Field(
        default=None,
        description="Build the set as of this instant (ISO date or time, exclusive). Default: the end of the "
        "latest materialized partition of the label source.",
    )


def training_set_asset(system: System, view: FeatureViewSpec) -> AssetsDefinition:
    key = asset_key(system, view.asset_name)
    label = view.label
    label_from = f"`{label.source.name}` matched on ({', '.join(label.on)})" if label.source else "the spine"
    docs = {**view.column_docs(), label.column: Column(label.column, None, f"Label ({label.kind}) from {label_from}.")}

    @asset(
        key=key,
        group_name=group_name(system, "training"),
        description=(
            f"{view.description}\n\nTraining set of feature view `{view.name}`: rows of `{view.spine.name}` whose "
            f"label is final ({label.maturity} after the row), labelled from {label_from}, joined point-in-time "
            f"to {', '.join(f'`{s.name}`' for s in view.selections)}, with on-demand features and a time-based "
            "split. Each materialization is a version: an Iceberg tag on the snapshot it writes, and the "
            "snapshot of every input in its metadata, so it can be rebuilt exactly."
        ),
        deps=list(dict.fromkeys(asset_key(system, t.asset_name)
                                for t in (view.spine, view.label_source, *(s.group for s in view.selections)))),
        kinds={"iceberg", "duckdb"},
        owners=[view.owner],
        metadata={"dagster/table_name": view.table},
        pool=table_pool(view.table),
        check_specs=[AssetCheckSpec(NO_FUTURE_FEATURES, asset=key, blocking=True,
                                    description="No row is joined to a feature row newer than the row's own time."),
                     *(AssetCheckSpec(name, asset=key, blocking=name == "label_balance", description=text)
                       for name, text in DATASET_CHECKS.items())],
        # Its own policy: rebuilt on a schedule (and by the retraining sensor); unchanged data makes no version.
        automation_condition=AutomationCondition.on_cron(system.rebuild_training_cron, "UTC"),
        freshness_policy=FreshnessPolicy.time_window(fail_window=dt.timedelta(days=8)),
    )
    @retried_while_stores_are_unavailable
    def training_set(context: AssetExecutionContext, config: TrainingSetConfig, offline_store: OfflineStoreResource):
        store = offline_store.open()
        built = build_training_set(store, view, _as_of(context, system, view, config),
                                   history_start(system) + view.training_start_offset)
        features = _features(view, built.data)
        now = profile(built.data, label.column, features)
        version, snapshot_id, changed = _stored_version(store, view, built.data, {PROFILE: now.to_json()})
        # The version's rows are checked as built (equal to what is stored): read back, a year's would be held twice.
        inputs, written = _inputs_metadata(built), built.data
        del built
        leaks = audit.rows_with_future_features(written, view.spine_time,
                                                tuple(view.matched_time_column(s) for s in view.selections))
        labels = written.group_by([SPLIT, label.column]).aggregate([([], "count_all")]).to_pylist()
        findings = training_set_findings(written, now, _previous_profile(store, view, version, features),
                                         label.column, label.kind, features)
        return MaterializeResult(
            metadata={
                **table_metadata(view.table, written.schema, docs),
                "dagster/row_count": written.num_rows,
                "version": version,
                "new_version": changed,
                "iceberg/snapshot_id": str(snapshot_id),
                "commit_retries": store.commit_retries,
                **inputs,
                "rows_by_split_and_label": MetadataValue.json(labels if label.kind == "binary" else
                                                              _rows_by_split(written)),
            },
            check_results=[AssetCheckResult(check_name=NO_FUTURE_FEATURES, passed=leaks == 0,
                                            metadata={"rows_with_future_features": leaks}),
                           *(AssetCheckResult(check_name=f.name, passed=f.passed,
                                              severity=AssetCheckSeverity.ERROR if f.name == "label_balance"
                                              else AssetCheckSeverity.WARN,
                                              metadata={k: MetadataValue.json(v) if isinstance(v, (dict, list))
                                                        else v for k, v in f.figures.items()})
                             for f in findings)],
        )

    return training_set


def _inputs_metadata(built: TrainingSet) -> dict:
    return {"input_snapshots": MetadataValue.json({k: str(v) for k, v in built.input_snapshots.items()}),
            "as_of": built.as_of.isoformat(), "first_event": built.first_time.isoformat(),
            "label_cutoff": built.label_cutoff.isoformat()}


def _stored_version(store, view: FeatureViewSpec, data, properties: dict[str, str]) -> tuple[str, int, bool]:
    """The version holding `data`: the latest one if it has the same rows, else a new one written (with
    `properties` in its snapshot's summary) and tagged. Returns its tag, snapshot id, and whether it is new."""
    previous = _latest_version(store, view)
    if previous and _same_rows(store, view.table, previous[1], data):
        return previous[0], previous[1], False  # nothing new to learn from
    snapshot_id = store.replace_all(view.table, data, properties)
    version = f"{view.asset_name}_v{len(store.tags(view.table)) + 1}"
    store.tag(view.table, snapshot_id, version)
    return version, snapshot_id, True


def _as_of(context: AssetExecutionContext, system: System, view: FeatureViewSpec,
           config: TrainingSetConfig) -> dt.datetime:
    if config.as_of:
        as_of = dt.datetime.fromisoformat(config.as_of)
        return as_of if as_of.tzinfo else as_of.replace(tzinfo=dt.UTC)
    as_of = labels_known_until(context.instance, system, view)
    if as_of is None:
        raise ValueError(f"no partition of {view.label_source.name} has been delivered: nothing is labelled")
    return as_of


def labels_known_until(instance, system: System, view: FeatureViewSpec) -> dt.datetime | None:
    """The end of the latest label-source partition that held a delivery: labels received before it are
    known, so examples older than it by the label's maturity have final labels."""
    source_key = asset_key(system, view.label_source.asset_name)
    for partition in sorted(instance.get_materialized_partitions(source_key), reverse=True):
        if _delivered(instance, source_key, partition):
            return partitions(system).time_window_for_partition_key(partition).end
    return None


def _delivered(instance, key: AssetKey, partition: str) -> bool:
    """Whether the partition's latest materialization holds a delivery: a period whose file has not arrived
    yet says nothing about its labels, so it cannot make older labels final."""
    latest = instance.fetch_materializations(AssetRecordsFilter(asset_key=key, asset_partitions=[partition]),
                                             limit=1).records
    delivery = latest[0].asset_materialization.metadata.get(DELIVERY) if latest else None
    return delivery is None or delivery.value == PUBLISHED  # groups have no delivery status


DATASET_CHECKS = {
    "label_balance": "Both splits hold every class, and the label's level (positive share or mean) moved less "
    "than 50% since the previous version; blocks the model from training otherwise.",
    "feature_null_rates": "No feature is mostly missing or much more often missing than in the previous version.",
    "train_validation_shift": "Validation rows look like training rows (standardized mean difference under 0.5).",
    "correlation_stability": "Each feature correlates with the label as in the previous version (within 0.2).",
}


def _features(view: FeatureViewSpec, data: pa.Table) -> list[str]:
    """The columns the dataset checks look at: all but keys, times, the label and the split."""
    not_features = {*view.spine_keys, view.spine_time, view.label.column, SPLIT,
                    *(view.matched_time_column(s) for s in view.selections)}
    return [c for c in data.column_names if c not in not_features]


def _previous_profile(store, view: FeatureViewSpec, version: str, features: list[str]) -> Profile | None:
    """The profile of the version before `version`: kept in its snapshot's summary, or (versions written
    before profiles were kept) computed from its rows, streamed."""
    number = int(version.rsplit("_v", 1)[1])
    previous_id = store.tags(view.table).get(f"{view.asset_name}_v{number - 1}")
    if previous_id is None:
        return None
    kept = store.summary_at(view.table, previous_id).get(PROFILE)
    if kept is not None:
        return Profile.from_json(kept)
    held = set(store.schema_at(view.table, previous_id).names)
    columns = tuple(c for c in (*features, view.label.column) if c in held)
    return profile(store.read_batches(view.table, columns, snapshot_id=previous_id), view.label.column, features)


def _latest_version(store, view: FeatureViewSpec) -> tuple[str, int] | None:
    if not store.exists(view.table):
        return None
    tags = store.tags(view.table)
    return max(tags.items(), key=lambda tag: int(tag[0].rsplit("_v", 1)[1])) if tags else None


def _rows_by_split(written) -> list[dict]:
    return written.group_by([SPLIT]).aggregate([([], "count_all")]).to_pylist()


def _same_rows(store, table: str, snapshot_id: int, data: pa.Table) -> bool:
    """Whether a stored version holds exactly `data`: the same count and columns, then the values, a column at
    a time as they stream (reading every column at once would hold a file's rows of all of them)."""
    if store.rows_at(table, snapshot_id) != data.num_rows:
        return False
    if store.schema_at(table, snapshot_id).names != data.schema.names:
        return False
    for name in data.column_names:
        offset = 0
        for batch in store.read_batches(table, (name,), snapshot_id=snapshot_id):
            stored = pa.chunked_array([batch.column(0)])
            if not stored.equals(data[name].slice(offset, len(stored)).cast(stored.type)):
                return False
            offset += len(stored)
    return True
