"""Point-in-time correct joins of a label spine with feature groups (DuckDB ASOF joins).

For each spine row and each group: the latest feature row with the same entity keys and
`event_time <= spine time`. Every spine row comes back exactly once and in its order, duplicates included;
equal timestamps count; a null key matches nothing; with a TTL, rows older than `spine time - ttl` are
ignored (both ends inclusive); where nothing matches the group's columns are null. A feature row from after
the spine time can never be returned: the ASOF inequality is the only way rows are matched. A group without
entity keys (`keys=()`) holds global features: every spine row gets the latest row as of its time.

Times: spine and feature times may be dates (midnight UTC) or timestamps of any unit, naive (meaning UTC)
or in any zone. Comparisons run on instants, every time floored to UTC microseconds first (DuckDB cannot
subtract nanosecond instants): nanosecond inputs lose their sub-microsecond digits, so two times within
the same microsecond compare as equal, and the TTL is counted in whole microseconds.

Ties: several feature rows with the same keys and event time resolve the same way whatever their input
order: the latest `created_column` wins (nulls last), then the greatest values of the group's `columns`,
compared in the order they are listed (nulls last).

Result: the spine's columns exactly as passed (types, zones and values untouched), then for each group its
`columns`, renamed `prefix + column`, and `<name>_event_time`, the UTC microsecond event time of the
matched row. Feature columns have the types DuckDB returns (a zoned timestamp comes back in UTC). An
output name that would appear twice raises ValueError before anything is computed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mlfs_dagster.core.engine import query

# Internal columns of the query's inputs; the spine's own columns never go through DuckDB.
ROW_ID = "__pit_row"
INSTANT = "__pit_time"
INSTANT_TYPE = pa.timestamp("us", "UTC")


@dataclass(frozen=True)
class FeatureJoin:
    """One feature group's part of a point-in-time join. `keys=()` joins global (entity-less) features."""

    name: str
    features: pa.Table
    keys: tuple[str, ...]
    columns: tuple[str, ...]
    time_column: str = "event_time"
    ttl: dt.timedelta | None = None
    created_column: str | None = None
    prefix: str = ""

    @property
    def matched_time_column(self) -> str:
        """The spine gets this column: the event time of the feature row it was joined to (prefixed too, so
        one group joined twice under two prefixes gives two matched times)."""
        return f"{self.prefix}{self.name}_event_time"

    @property
    def output_columns(self) -> tuple[str, ...]:
        """The names `columns` take in the result."""
        return tuple(f"{self.prefix}{column}" for column in self.columns)


def point_in_time_join(spine: pa.Table, spine_time: str, joins: Sequence[FeatureJoin]) -> pa.Table:
    """The spine with each group's features as of each row's time, by the rules above, in one query."""
    _check_output_names(spine, joins)
    if not joins:
        return spine
    tables = {"spine": _spine_input(spine, spine_time, joins)}
    groups, selected, from_clause = [], [], "spine s"
    for i, join in enumerate(joins):
        alias = f"g{i}"
        tables[f"{alias}_input"] = _feature_input(join)
        groups.append(f"{alias} AS ({_latest_per_instant(join, f'{alias}_input')})")
        on = [*(f"s.{_q(k)} = {alias}.{_q(k)}" for k in join.keys), f"s.{INSTANT} >= {alias}.{INSTANT}"]
        from_clause += f" ASOF LEFT JOIN {alias} ON {' AND '.join(on)}"
        selected += _selected_columns(join, alias)
    sql = f"WITH {', '.join(groups)} SELECT {', '.join(selected)} FROM {from_clause} ORDER BY s.{ROW_ID}"
    features = query(sql, tables)
    # One result row per spine row, in spine order: the spine's own arrays are reused as they are.
    return pa.Table.from_arrays(
        [*spine.columns, *features.columns], names=[*spine.column_names, *features.column_names]
    )


def _check_output_names(spine: pa.Table, joins: Sequence[FeatureJoin]) -> None:
    """A name given twice would make the result ambiguous: say which sources clash instead."""
    named = [(column, "the spine") for column in spine.column_names]
    for join in joins:
        named += [(column, f"feature group {join.name!r}") for column in join.output_columns]
        named.append((join.matched_time_column, f"feature group {join.name!r} (its matched event time)"))
    sources: dict[str, str] = {}
    for column, source in named:
        if column in sources:
            raise ValueError(
                f"output column {column!r} would come from both {sources[column]} and {source}: "
                "give one FeatureJoin a prefix (or another name)"
            )
        sources[column] = source


def _spine_input(spine: pa.Table, spine_time: str, joins: Sequence[FeatureJoin]) -> pa.Table:
    """Only what the join reads: the keys, the time as an instant, and the row number to restore order."""
    keys = list(dict.fromkeys(k for join in joins for k in join.keys))
    return (
        spine.select(keys)
        .append_column(INSTANT, _instants(spine, spine_time))
        .append_column(ROW_ID, pa.array(np.arange(spine.num_rows)))
    )


def _feature_input(join: FeatureJoin) -> pa.Table:
    wanted = list(dict.fromkeys((*join.keys, *_tie_breakers(join))))
    return join.features.select(wanted).append_column(INSTANT, _instants(join.features, join.time_column))


def _latest_per_instant(join: FeatureJoin, source: str) -> str:
    """One feature row per key and instant, chosen by values only, so input order never matters."""
    partition = ", ".join([*map(_q, join.keys), INSTANT])
    order = ", ".join(f"{_q(c)} DESC NULLS LAST" for c in _tie_breakers(join))
    order_by = f" ORDER BY {order}" if order else ""
    return f"SELECT * FROM {source} QUALIFY row_number() OVER (PARTITION BY {partition}{order_by}) = 1"


def _tie_breakers(join: FeatureJoin) -> tuple[str, ...]:
    """Columns that rank rows with the same key and instant, greatest first: created, then the features."""
    created = (join.created_column,) if join.created_column else ()
    return tuple(dict.fromkeys((*created, *join.columns)))


def _selected_columns(join: FeatureJoin, alias: str) -> list[str]:
    matched = f"{alias}.{INSTANT}"
    fresh = "TRUE"
    if join.ttl is not None:
        fresh = f"s.{INSTANT} - {matched} <= INTERVAL {_micros(join.ttl)} MICROSECONDS"
    return [
        f"CASE WHEN {fresh} THEN {alias}.{_q(column)} END AS {_q(output)}"
        for column, output in zip(join.columns, join.output_columns, strict=True)
    ] + [f"CASE WHEN {fresh} THEN {matched} END AS {_q(join.matched_time_column)}"]


def _micros(delta: dt.timedelta) -> int:
    return delta // dt.timedelta(microseconds=1)


def _instants(table: pa.Table, time_column: str) -> pa.ChunkedArray:
    """A time column as UTC microseconds, the one type every comparison runs on."""
    times = table[time_column]
    if pa.types.is_date(times.type):
        times = times.cast(pa.timestamp("us"))  # midnight, naive, so UTC below
    if not pa.types.is_timestamp(times.type):
        raise TypeError(f"time column {time_column!r} must be a timestamp or a date, not {times.type}")
    # Casting to UTC only relabels: naive values are UTC wall times, zoned ones are already UTC instants.
    if times.type.unit == "ns":
        # Floor in UTC, never in a local zone where a DST change makes some wall times ambiguous.
        times = pc.floor_temporal(times.cast(pa.timestamp("ns", "UTC")), unit="microsecond")
    return times.cast(INSTANT_TYPE)


def _q(name: str) -> str:
    """A quoted SQL identifier, whatever characters the column name holds."""
    return '"' + name.replace('"', '""') + '"'
