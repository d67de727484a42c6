"""Online features: after a feature group's partitions are published, each entity's latest row among them is
written to the online store, for `mlfs serve`; per feature view whose groups are all online, an asset
proving the online vectors equal the training-set builder's.

One asset per group declared `online: true`, partitioned like it and materialized as soon as it is. A range
run (a backfill) reads its range a chunk at a time, keeps each chunk's latest row per entity, and writes
each entity once: the store is written once per entity, not once per day. The store keeps a newer value
it already holds, so backfilling an old range after today's run changes nothing.
"""

import pyarrow as pa
import pyarrow.compute as pc
from dagster import (
    AssetCheckResult,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetsDefinition,
    BackfillPolicy,
    MaterializeResult,
    MetadataValue,
    asset,
)

from mlfs_dagster.builders.common import (
    asset_key,
    chunks,
    follow_upstream,
    group_name,
    partition_range,
    partitions,
    retried_while_stores_are_unavailable,
)
from mlfs_dagster.core.feature_view import read_spine
from mlfs_dagster.core.offline_store import OfflineStore, TimeRange
from mlfs_dagster.core.online_store import latest_per_entity
from mlfs_dagster.core.serving import skew
from mlfs_dagster.core.specs import FeatureGroupSpec, FeatureViewSpec, System
from mlfs_dagster.resources import OfflineStoreResource, OnlineStoreResource


def online_features_asset(system: System, group: FeatureGroupSpec) -> AssetsDefinition:
    @asset(
        key=asset_key(system, group.online_asset_name),
        group_name=group_name(system, "serving"),
        description=f"Each {', '.join(group.entity_keys)}'s latest row of feature group `{group.name}` "
        f"(`{group.table}`) in the online store, with the event time it came from, for `mlfs serve`. Written "
        "after each materialized partition; a newer stored value is never overwritten by an older one.",
        partitions_def=partitions(system),
        backfill_policy=BackfillPolicy.single_run(),
        deps=[asset_key(system, group.asset_name)],
        kinds={"iceberg", "python"},
        owners=[group.owner],
        metadata={"feature_group": group.table, "entity_keys": MetadataValue.json(list(group.entity_keys))},
        **follow_upstream(system),
    )
    @retried_while_stores_are_unavailable
    def online_features(context: AssetExecutionContext, offline_store: OfflineStoreResource,
                        online_store: OnlineStoreResource) -> MaterializeResult:
        rows = latest_rows(group, offline_store.open(), partition_range(context), system)
        online = online_store.open()
        try:
            written = online.write(group.table, rows, group.entity_keys, group.time_column, group.created_column)
        finally:
            online.close()
        newest = pc.max(rows[group.time_column]).as_py() if rows.num_rows else None
        return MaterializeResult(metadata={
            "entities": written.entities, "written": written.written, "kept_newer": written.kept_newer,
            "newest_event_time": MetadataValue.timestamp(newest) if newest else MetadataValue.text("none"),
        })

    return online_features


def latest_rows(group: FeatureGroupSpec, store: OfflineStore, time_range: TimeRange, system: System) -> pa.Table:
    """Each entity's latest row of the range, read a chunk at a time: memory follows a chunk and the entities."""
    columns = list(dict.fromkeys((*group.entity_keys, group.time_column,
                                  *([group.created_column] if group.created_column else []), *group.feature_columns)))
    latest = [latest_per_entity(store.read(group.table, columns, chunk.filter(group.time_column)),
                                group.entity_keys, group.time_column, group.created_column)
              for chunk in chunks(time_range, system.step)]
    return pa.concat_tables(latest)


SKEW_CHECK = "online_matches_offline"
SKEW_SAMPLE_ROWS = 500


def online_view_asset(system: System, view: FeatureViewSpec) -> AssetsDefinition:
    key = asset_key(system, f"{view.name}_online")
    groups = ", ".join(f"`{s.name}`" + (f" (TTL {s.ttl})" if s.ttl else "") for s in view.selections)

    @asset(
        key=key,
        group_name=group_name(system, "serving"),
        description=f"Feature view `{view.name}` served online (`mlfs serve`): each request's features from the "
        f"online store of {groups}, then the view's on-demand function, as the training-set builder does. Each run "
        f"rebuilds the vectors of the latest {SKEW_SAMPLE_ROWS} spine rows of its last period both ways and compares "
        "them.",
        partitions_def=partitions(system),
        backfill_policy=BackfillPolicy.single_run(),
        deps=[asset_key(system, s.group.online_asset_name) for s in view.selections],
        kinds={"python"},
        owners=[view.owner],
        check_specs=[AssetCheckSpec(
            SKEW_CHECK, asset=key, blocking=True,
            description="The online path's vector of recent spine rows equals the training-set builder's for the "
            "same entity and time, column for column; a difference fails and names the column and row.")],
        **follow_upstream(system),
    )
    @retried_while_stores_are_unavailable
    def online_view(context: AssetExecutionContext, offline_store: OfflineStoreResource,
                    online_store: OnlineStoreResource) -> MaterializeResult:
        store, online = offline_store.open(), online_store.open()
        end = partition_range(context).end
        spine = read_spine(view, store, TimeRange(end - system.step, end))
        sample = spine.sort_by([(view.spine_time, "descending")]).slice(0, SKEW_SAMPLE_ROWS)
        try:
            report = skew(view, store, online, sample)
        finally:
            online.close()
        check = AssetCheckResult(check_name=SKEW_CHECK, passed=not report.differences, metadata={
            "rows_compared": report.compared, "rows_skipped_newer_online": report.newer,
            "columns_compared": len(report.columns),
            "differences": MetadataValue.json([str(d) for d in report.differences[:20]]),
        })
        return MaterializeResult(metadata={"rows_compared": report.compared}, check_results=[check])

    return online_view
