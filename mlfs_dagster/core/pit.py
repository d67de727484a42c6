"""Point-in-time correct joins of a label spine with feature groups (DuckDB ASOF joins).

For each spine row and each group: the latest feature row with the same entity keys and
`event_time <= spine time`. Every spine row comes back exactly once and in its order, duplicates included;
equal timestamps count; a null key matches nothing; with a TTL, rows older than `spine time - ttl` are
ignored; where nothing matches the group's columns are null. A feature row from after the spine time can
never be returned: the ASOF inequality is the only way rows are matched.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from mlfs_dagster.core.engine import query

ROW_ID = "__spine_row"


@dataclass(frozen=True)
class FeatureJoin:
    """One feature group's part of a point-in-time join."""

    name: str
    features: pa.Table
    keys: tuple[str, ...]
    columns: tuple[str, ...]
    time_column: str = "event_time"
    ttl: dt.timedelta | None = None
    created_column: str | None = None

    @property
    def matched_time_column(self) -> str:
        """The spine gets this column: the event time of the feature row it was joined to."""
        return f"{self.name}_event_time"


def point_in_time_join(spine: pa.Table, spine_time: str, joins: Sequence[FeatureJoin]) -> pa.Table:
    numbered = _utc(spine, spine_time).append_column(ROW_ID, pa.array(np.arange(spine.num_rows)))
    tables, groups, selected, from_clause = {"spine": numbered}, [], ["s.*"], "spine s"
    for i, join in enumerate(joins):
        alias = f"g{i}"
        tables[f"{alias}_input"] = _utc(join.features, join.time_column)
        groups.append(f"{alias} AS ({_latest_per_instant(join, f'{alias}_input')})")
        on = " AND ".join([f's."{k}" = {alias}."{k}"' for k in join.keys])
        from_clause += f' ASOF LEFT JOIN {alias} ON {on} AND s."{spine_time}" >= {alias}."{join.time_column}"'
        selected += _selected_columns(join, alias, spine_time)
    with_clause = f"WITH {', '.join(groups)} " if groups else ""
    sql = f"{with_clause}SELECT {', '.join(selected)} FROM {from_clause} ORDER BY s.{ROW_ID}"
    return query(sql, tables).drop_columns([ROW_ID])


def _latest_per_instant(join: FeatureJoin, source: str) -> str:
    """One feature row per key and instant: ties on event time go to the latest created timestamp."""
    if join.created_column is None:
        return f"SELECT * FROM {source}"
    partition = ", ".join(f'"{k}"' for k in (*join.keys, join.time_column))
    return (
        f"SELECT * FROM {source} QUALIFY row_number() OVER "
        f'(PARTITION BY {partition} ORDER BY "{join.created_column}" DESC NULLS LAST) = 1'
    )


def _selected_columns(join: FeatureJoin, alias: str, spine_time: str) -> list[str]:
    matched = f'{alias}."{join.time_column}"'
    fresh = "TRUE" if join.ttl is None else f's."{spine_time}" - {matched} <= INTERVAL {_micros(join.ttl)} MICROSECONDS'
    return [
        f'CASE WHEN {fresh} THEN {alias}."{column}" END AS "{column}"' for column in join.columns
    ] + [f'CASE WHEN {fresh} THEN {matched} END AS "{join.matched_time_column}"']


def _micros(delta: dt.timedelta) -> int:
    return delta // dt.timedelta(microseconds=1)


def _utc(table: pa.Table, time_column: str) -> pa.Table:
    """Naive timestamps are UTC: give them the zone so comparisons are between instants."""
    field = table.schema.field(time_column)
    if pa.types.is_timestamp(field.type) and field.type.tz is None:
        index = table.schema.get_field_index(time_column)
        return table.set_column(index, time_column, table[time_column].cast(pa.timestamp(field.type.unit, "UTC")))
    return table
