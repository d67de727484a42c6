"""Feature views: which features of which groups a model uses, and the one way to fetch them.

Training-set building and batch inference both call `FeatureView.vectors`, so a model is trained on
exactly the code path that serves it: the same point-in-time join, then the same on-demand
transformations (features that need request-time data, such as the amount being authorised).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.expressions import And, GreaterThanOrEqual, LessThanOrEqual

from mlfs_dagster.core.offline_store import OfflineStore
from mlfs_dagster.core.pit import FeatureJoin, point_in_time_join
from mlfs_dagster.core.specs import FeatureGroupSpec


@dataclass(frozen=True)
class GroupSelection:
    group: FeatureGroupSpec
    ttl: dt.timedelta | None = None

    @property
    def columns(self) -> tuple[str, ...]:
        return self.group.feature_columns


@dataclass(frozen=True)
class FeatureView:
    name: str
    description: str
    selections: tuple[GroupSelection, ...]
    on_demand: Callable[[pa.Table], pa.Table]
    on_demand_columns: tuple[str, ...]
    # Rows this soon after the first partition have incomplete windows: training sets start after it.
    warm_up: dt.timedelta = dt.timedelta(0)

    @property
    def tables(self) -> tuple[str, ...]:
        return tuple(s.group.table for s in self.selections)

    def vectors(
        self,
        store: OfflineStore,
        spine: pa.Table,
        spine_time: str = "event_time",
        snapshots: Mapping[str, int] | None = None,
    ) -> pa.Table:
        """The spine with every selected feature as of each row's time, then the on-demand features.

        `snapshots` pins each group's table to an Iceberg snapshot, so a training set can be rebuilt
        exactly; by default the current snapshots are read.
        """
        snapshots = snapshots or {}
        joins = [
            FeatureJoin(
                name=s.group.name,
                features=self._read_group(store, s, spine[spine_time], snapshots.get(s.group.table)),
                keys=s.group.entity_keys,
                columns=s.columns,
                time_column=s.group.time_column,
                ttl=s.ttl,
            )
            for s in self.selections
        ]
        return self.on_demand(point_in_time_join(spine, spine_time, joins))

    @staticmethod
    def _read_group(
        store: OfflineStore, selection: GroupSelection, spine_times: pa.ChunkedArray, snapshot_id: int | None
    ) -> pa.Table:
        """Only the rows the join can use: no later than the last spine row, and within TTL of the first."""
        group = selection.group
        wanted = (*group.entity_keys, group.time_column, *selection.columns)
        if not store.exists(group.table) or len(spine_times) == 0:
            return group.schema.select(wanted).empty_table()
        bounds = LessThanOrEqual(group.time_column, pc.max(spine_times).as_py().isoformat())
        if selection.ttl is not None:
            oldest = pc.min(spine_times).as_py() - selection.ttl
            bounds = And(bounds, GreaterThanOrEqual(group.time_column, oldest.isoformat()))
        return store.read(group.table, wanted, bounds, snapshot_id)
