"""Feature vectors of a declared feature view: the one way both training and inference fetch features.

The training-set builder and batch inference both call `vectors`, so a model is trained on exactly the
code path that serves it: the same point-in-time join, then the same on-demand transformations (features
that need request-time data, such as the amount being authorised).
"""

from __future__ import annotations

from collections.abc import Mapping

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.expressions import And, GreaterThanOrEqual, LessThanOrEqual

from mlfs_dagster.core.offline_store import OfflineStore, TimeRange
from mlfs_dagster.core.pit import FeatureJoin, point_in_time_join
from mlfs_dagster.core.specs import FeatureSelection, FeatureViewSpec, empty_table, resolve_callable


def spine_columns(view: FeatureViewSpec, *extra: str) -> tuple[str, ...]:
    """The spine columns an example carries, its keys and time first, without repeats."""
    wanted = (*view.spine_keys, view.spine_time, *view.spine_output_columns, *extra)
    return tuple(dict.fromkeys(wanted))


def read_spine(
    view: FeatureViewSpec, store: OfflineStore, time_range: TimeRange, snapshot_id: int | None = None,
    extra: tuple[str, ...] = (),
) -> pa.Table:
    """The examples of a time range: spine rows with the columns the view takes from them."""
    columns = spine_columns(view, *extra)
    if not store.exists(view.spine.table):
        return empty_table(view.spine.schema, columns)
    return store.read(view.spine.table, columns, time_range.filter(view.spine_time), snapshot_id)


def vectors(
    view: FeatureViewSpec, store: OfflineStore, spine: pa.Table, snapshots: Mapping[str, int | None] | None = None
) -> pa.Table:
    """The spine with every selected feature as of each row's time, then the on-demand features.

    `snapshots` pins each group's table to an Iceberg snapshot, so a training set can be rebuilt exactly;
    by default the current snapshots are read.
    """
    snapshots = snapshots or {}
    joins = [
        FeatureJoin(
            name=s.name,
            features=_read_group(store, s, spine[view.spine_time], snapshots.get(s.group.table)),
            keys=s.group.entity_keys,
            columns=s.columns,
            time_column=s.group.time_column,
            ttl=s.ttl,
            created_column=s.group.created_column,
            prefix=s.prefix,
        )
        for s in view.selections
    ]
    return on_demand(view, point_in_time_join(spine, view.spine_time, joins))


def on_demand(view: FeatureViewSpec, joined: pa.Table) -> pa.Table:
    """Apply the view's on-demand transformation; it must add exactly its declared columns."""
    function = resolve_callable(view.on_demand)
    if function is None:
        return joined
    result = function(joined)
    missing = set(view.on_demand_columns) - set(result.column_names)
    if missing or result.num_rows != joined.num_rows:
        raise ValueError(
            f"feature view {view.name}: on-demand function must keep every row and add {view.on_demand_columns}; "
            f"it returned {result.num_rows} of {joined.num_rows} rows, missing {sorted(missing)}"
        )
    return result


def _read_group(
    store: OfflineStore, selection: FeatureSelection, spine_times: pa.ChunkedArray, snapshot_id: int | None
) -> pa.Table:
    """Only the rows the join can use: no later than the last spine row, and within TTL of the first."""
    group = selection.group
    wanted = tuple(dict.fromkeys(
        (*group.entity_keys, group.time_column, *([group.created_column] if group.created_column else []),
         *selection.columns)
    ))
    if len(spine_times) == 0:
        return empty_table(group.schema, wanted)
    if not store.exists(group.table):  # reading it as empty would give every example null features
        raise LookupError(f"feature group {group.name} has no table {group.table} yet: materialize it first")
    bounds = LessThanOrEqual(group.time_column, pc.max(spine_times).as_py().isoformat())
    if selection.ttl is not None:
        oldest = pc.min(spine_times).as_py() - selection.ttl
        bounds = And(bounds, GreaterThanOrEqual(group.time_column, oldest.isoformat()))
    return store.read(group.table, wanted, bounds, snapshot_id)
