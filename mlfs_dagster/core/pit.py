"""Point-in-time correct joins of a label spine with feature groups: a sort-merge over int64 keys (numpy),
with a DuckDB ASOF join for the groups it cannot take.

For each spine row and each group: the latest feature row with the same entity keys and
`event_time <= spine time`. Every spine row comes back exactly once and in its order, duplicates included;
equal timestamps count; a null key matches nothing; with a TTL, rows older than `spine time - ttl` are
ignored (both ends inclusive); where nothing matches the group's columns are null. A feature row from after
the spine time can never be returned: a row is only matched as the predecessor of the spine row's own
(entity, time) key. A group without entity keys (`keys=()`) holds global features: every spine row gets the
latest row as of its time.

Times: spine and feature times may be dates (midnight UTC) or timestamps of any unit, naive (meaning UTC)
or in any zone. Comparisons run on instants, every time floored to UTC microseconds first (DuckDB cannot
subtract nanosecond instants): nanosecond inputs lose their sub-microsecond digits, so two times within
the same microsecond compare as equal, and the TTL is counted in whole microseconds. A null time matches
nothing.

Ties: several feature rows with the same keys and event time resolve the same way whatever their input
order: the latest `created_column` wins (nulls last), then the greatest values of the group's `columns`,
compared in the order they are listed (nulls last).

Result: the spine's columns exactly as passed (types, zones and values untouched), then for each group its
`columns`, renamed `prefix + column`, and `<name>_event_time`, the UTC microsecond event time of the
matched row. Feature columns have the types DuckDB returns (a zoned timestamp comes back in UTC). An
output name that would appear twice raises ValueError before anything is computed.

How: each group's entity keys become dense integer codes shared by both sides (small-range integers by offset,
other values by hashing, strings of up to 8 bytes hashed as integers), then one int64 sort key per row, entity
code then time. Feature and spine keys are sorted, each side on its own core (by value, the row numbers packed
into the low bits), and merged with `searchsorted`, so each spine row finds its predecessor; the entity and
TTL checks are one comparison on the matched key. Only feature rows tied on (keys, time) go through DuckDB, to
pick their winner. Groups are joined in parallel threads. A group whose key types differ between spine and
features or cannot be hashed exactly (floats, nested types), whose columns DuckDB would return in a type Arrow
cannot cast to, or whose codes times time span overflow int64, is joined by a DuckDB ASOF join under the same
rules instead.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mlfs_dagster.core.engine import query

# Internal columns of the DuckDB inputs; the spine's own columns never go through DuckDB.
ROW_ID = "__pit_row"
INSTANT = "__pit_time"
SORT_KEY = "__pit_key"
INSTANT_TYPE = pa.timestamp("us", "UTC")
INT64_MAX = np.iinfo(np.int64).max
# Codes of several key columns are folded into one; past this count they are made dense again.
DENSE_CODES = 2**31
# BYTE_MASKS[n] keeps the first n bytes of a little-endian uint64: the bytes of a string n bytes long.
BYTE_MASKS = np.array([(1 << 8 * n) - 1 for n in range(9)], np.uint64)


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
    """The spine with each group's features as of each row's time, by the rules above."""
    _check_output_names(spine, joins)
    if not joins:
        return spine
    spine_times = _instants(spine, spine_time)
    # Groups are independent and most of their work runs outside the GIL (numpy sorts, Arrow kernels).
    with ThreadPoolExecutor(min(len(joins), os.cpu_count() or 1)) as pool:
        merged = list(pool.map(lambda join: _sort_merge_join(spine, spine_times, join), joins))
    left = [join for join, columns in zip(joins, merged, strict=True) if columns is None]
    by_duckdb = _duckdb_join(spine, spine_times, left) if left else None
    columns, names = [], []
    for join, group_columns in zip(joins, merged, strict=True):
        group_names = [*join.output_columns, join.matched_time_column]
        columns += [by_duckdb[name] for name in group_names] if group_columns is None else group_columns
        names += group_names
    # One result row per spine row, in spine order: the spine's own arrays are reused as they are.
    return pa.Table.from_arrays([*spine.columns, *columns], names=[*spine.column_names, *names])


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


# --- The sort-merge join ---


def _sort_merge_join(spine: pa.Table, spine_times: pa.ChunkedArray, join: FeatureJoin) -> list | None:
    """The group's result columns, or None where the sort-merge cannot give DuckDB's answer."""
    types = _duckdb_types(join)
    if types is None or not _hashable_keys(spine, join):
        return None
    feature_times = _instants(join.features, join.time_column)
    rows = _matched_rows(spine, spine_times, join, feature_times)
    if rows is None:
        return None
    found, anywhere = pa.array(rows >= 0), pa.array(np.maximum(rows, 0))
    columns = [*join.features.select(list(join.columns)).columns, feature_times]
    # Arrow's take releases the GIL: the columns are gathered on both cores.
    taken = _in_parallel(lambda column: _taken(column, anywhere, found), *columns)
    matched = pa.Table.from_arrays(taken[:-1], names=list(join.columns)).cast(types)
    return [*matched.columns, taken[-1]]


def _taken(column: pa.ChunkedArray, anywhere: pa.Array, found: pa.Array) -> pa.ChunkedArray:
    """The column's rows at `anywhere`, null where not `found`. Arrow takes several times faster without
    null indices, so an unmatched row takes row 0 and is nulled after."""
    if len(column) == 0:
        return pa.chunked_array([pa.nulls(len(found), column.type)])
    return pc.if_else(found, column.take(anywhere), pa.scalar(None, column.type))


def _duckdb_types(join: FeatureJoin) -> pa.Schema | None:
    """The types DuckDB returns the group's columns in, if Arrow can cast them so (it cannot, say, turn a
    duration into DuckDB's interval)."""
    empty = join.features.select(list(join.columns)).slice(0, 0)
    if not join.columns:
        return empty.schema
    types = query("SELECT * FROM empty", {"empty": empty}).schema
    try:
        empty.cast(types)
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid):
        return None
    return types


def _hashable_keys(spine: pa.Table, join: FeatureJoin) -> bool:
    """Keys of one type on both sides whose equal values are equal in DuckDB too (not floats: NaN, -0.0)."""
    exact = (
        pa.types.is_integer,
        pa.types.is_string,
        pa.types.is_large_string,
        pa.types.is_binary,
        pa.types.is_large_binary,
        pa.types.is_date,
        pa.types.is_timestamp,
        pa.types.is_boolean,
    )
    for key in join.keys:
        key_type = join.features.schema.field(key).type
        if spine.schema.field(key).type != key_type or not any(is_type(key_type) for is_type in exact):
            return False
    return True


def _matched_rows(
    spine: pa.Table, spine_times: pa.ChunkedArray, join: FeatureJoin, feature_times: pa.ChunkedArray
) -> np.ndarray | None:
    """For each spine row, the number of its feature row, -1 if none; None if the sort keys overflow int64.

    Sort key: `(code + 1) * span + offset`, where a time's offset counts from one before the first feature
    time (0 stands for any time before it) and `span` holds every offset; a code of -1 (no entity) puts a
    spine row below every feature key. A spine row's match is the predecessor of its key among the sorted
    feature keys, if that lies at or above its entity's first key and, with a TTL, its time minus the TTL.
    """
    feature_codes, spine_codes, code_count = _entity_codes(spine, join)
    feature_micros, spine_micros = _micros(feature_times, feature_codes), _micros(spine_times, spine_codes)
    rows = None if feature_codes.min(initial=0) >= 0 else np.flatnonzero(feature_codes >= 0)
    if rows is not None:
        feature_codes, feature_micros = feature_codes[rows], feature_micros[rows]
    if len(feature_codes) == 0:
        return np.full(spine.num_rows, -1)
    before_first = int(feature_micros.min()) - 1
    span = max(int(feature_micros.max()), int(spine_micros.max(initial=0))) - before_first + 1
    if (code_count + 1) * span > INT64_MAX:
        return None
    spine_keys = (spine_codes + 1) * span + np.maximum(spine_micros - before_first, 0)
    feature_keys = (feature_codes + 1) * span + (feature_micros - before_first)
    (spine_order, upper), (order, keys) = _in_parallel(_sorted_keys, spine_keys, feature_keys)
    rows, keys = _without_tie_losers(join, order if rows is None else rows[order], keys)
    lower = upper // span * span  # the entity's first key
    if join.ttl is not None:
        np.maximum(lower, upper - _as_micros(join.ttl), out=lower)
    at = np.searchsorted(keys, upper, side="right") - 1
    found = (at >= 0) & (keys[at] >= lower)
    matched = np.empty(spine.num_rows, np.int64)
    matched[spine_order] = np.where(found, rows[at], -1)
    return matched


def _sorted_keys(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The order that sorts non-negative keys (equal keys in row order), and the sorted keys.

    numpy sorts int64 values several times faster than it argsorts them (SIMD sorting networks), so the
    row numbers ride in the low bits of the values sorted, under as many of the keys' top bits as fit.
    Keys that differ only in the bits left out can come out of order; a stable argsort puts them right,
    cheaply, since timsort takes the nearly sorted keys in long runs.
    """
    if _ascending(keys):  # feature tables are often written sorted by entity and time
        return np.arange(len(keys)), keys
    row_bits = (len(keys) - 1).bit_length()
    dropped = max(int(keys.max()).bit_length() + row_bits - 63, 0)
    packed = np.sort((keys >> dropped << row_bits) | np.arange(len(keys)))
    order = packed & ((1 << row_bits) - 1)
    keys = keys[order]
    if not _ascending(keys):
        again = np.argsort(keys, kind="stable")
        order, keys = order[again], keys[again]
    return order, keys


def _ascending(keys: np.ndarray) -> bool:
    return bool((keys[1:] >= keys[:-1]).all())


def _entity_codes(spine: pa.Table, join: FeatureJoin) -> tuple[np.ndarray, np.ndarray, int]:
    """Each row's entity as one int code shared by both sides, -1 for a null key (on the spine also for an
    entity without feature rows), and the number of codes. No keys: one entity."""
    if not join.keys:
        return np.zeros(join.features.num_rows, np.int64), np.zeros(spine.num_rows, np.int64), 1
    feature_codes, spine_codes, count = _column_codes(join.features[join.keys[0]], spine[join.keys[0]])
    for key in join.keys[1:]:
        features, labels, values = _column_codes(join.features[key], spine[key])
        feature_codes = np.where((feature_codes < 0) | (features < 0), -1, feature_codes * values + features)
        spine_codes = np.where((spine_codes < 0) | (labels < 0), -1, spine_codes * values + labels)
        count *= values
        if count > DENSE_CODES:
            feature_codes, spine_codes, count = _column_codes(
                _nullable(feature_codes), _nullable(spine_codes)
            )
    return feature_codes, spine_codes, count


def _column_codes(features: pa.ChunkedArray, spine: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray, int]:
    """One key column as codes 0..count-1 on both sides, -1 for a null or a value no feature row has."""
    if pa.types.is_integer(features.type) and not pa.types.is_uint64(features.type):
        small = _integer_codes(features, spine)
        if small is not None:
            return small
    # Both sides packed, then hashed, at once, one per core; then each distinct spine value is looked up.
    packed = _in_parallel(_packed_strings, features, spine)
    if None not in packed:
        features, spine = packed
    (feature_codes, dictionary), (spine_codes, spine_values) = _in_parallel(_encoded, features, spine)
    spine_value_codes = _filled(pc.index_in(spine_values, value_set=dictionary))
    # A null spine row's -1 picks the -1 appended.
    return feature_codes, np.append(spine_value_codes, -1)[spine_codes], len(dictionary)


def _encoded(column: pa.ChunkedArray) -> tuple[np.ndarray, pa.Array]:
    """Each row's index in the column's distinct values (-1 for a null), and those values."""
    encoded = pc.dictionary_encode(column)  # every chunk gets the same, whole dictionary
    dictionary = encoded.chunk(0).dictionary if encoded.num_chunks else pa.array([], column.type)
    return _filled(pa.chunked_array([chunk.indices for chunk in encoded.chunks], pa.int32())), dictionary


def _packed_strings(column: pa.ChunkedArray) -> pa.ChunkedArray | None:
    """Strings of at most 8 bytes as the uint64 of their bytes, zero-padded, which Arrow hashes several times
    as fast as strings. None for other types, a longer string, or a NUL byte (as "a" and "a\0" pack alike)."""
    if not (pa.types.is_string(column.type) or pa.types.is_binary(column.type)):
        return None
    chunks = [_packed_chunk(chunk) for chunk in column.chunks]
    return None if None in chunks else pa.chunked_array(chunks, pa.uint64())


def _packed_chunk(chunk: pa.Array) -> pa.Array | None:
    if len(chunk) == 0:  # its buffers may be missing
        return pa.array([], pa.uint64())
    offsets = np.frombuffer(chunk.buffers()[1], np.int32, len(chunk) + 1, chunk.offset * 4)
    lengths = np.diff(offsets)
    data = np.frombuffer(chunk.buffers()[2] or b"", np.uint8)[offsets[0] : offsets[-1]]
    if lengths.max(initial=0) > 8 or not data.all():
        return None
    # Each string's first 8 bytes in one read: a uint64 view of the (padded) bytes at every byte position.
    padded = np.zeros(len(data) + 8, np.uint8)
    padded[: len(data)] = data
    windows = np.ndarray(len(data) + 1, "<u8", padded, strides=(1,))
    values = windows[offsets[:-1] - offsets[0]] & BYTE_MASKS[lengths]
    return pa.array(values, mask=np.asarray(chunk.is_null()) if chunk.null_count else None)


def _integer_codes(features: pa.ChunkedArray, spine: pa.ChunkedArray) -> tuple | None:
    """Integers in a range not much wider than the rows need no hashing: the code is the value - minimum."""
    low, high = (value.as_py() for value in pc.min_max(features).values())
    if low is None or high - low > 4 * len(features):
        return None

    def codes(column: pa.ChunkedArray) -> np.ndarray:
        values = pc.fill_null(column, low).cast(pa.int64()).to_numpy()
        known = (values >= low) & (values <= high) & ~np.asarray(column.is_null())
        return np.where(known, values - low, -1)

    return codes(features), codes(spine), high - low + 1


def _filled(codes: pa.ChunkedArray) -> np.ndarray:
    return pc.fill_null(codes, -1).to_numpy().astype(np.int64)


def _nullable(codes: np.ndarray) -> pa.ChunkedArray:
    return pa.chunked_array([pa.array(codes, mask=codes < 0)])


def _micros(times: pa.ChunkedArray, codes: np.ndarray) -> np.ndarray:
    """Instants as int64 microseconds; a row whose time is null gets code -1, so it matches nothing."""
    if times.null_count:
        codes[np.asarray(times.is_null())] = -1
    return pc.fill_null(times, 0).cast(pa.int64()).to_numpy()


def _without_tie_losers(
    join: FeatureJoin, rows: np.ndarray, keys: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Of feature rows sharing a sort key (entity and instant), only the one the tie rules pick, by DuckDB."""
    same = keys[1:] == keys[:-1]
    if not same.any():
        return rows, keys
    tied = np.zeros(len(keys), bool)
    tied[1:] |= same
    tied[:-1] |= same
    breakers = join.features.select(list(_tie_breakers(join))).take(rows[tied])
    candidates = pa.Table.from_arrays(
        [*breakers.columns, pa.array(keys[tied]), pa.array(rows[tied])],
        names=[*breakers.column_names, SORT_KEY, ROW_ID],
    )
    winners = query(
        f"SELECT {ROW_ID} FROM ({_latest_per_instant(join, 'tied', [SORT_KEY])})", {"tied": candidates}
    )
    keep = ~tied
    keep[tied] = np.isin(rows[tied], winners[ROW_ID].to_numpy())
    return rows[keep], keys[keep]


# --- The DuckDB ASOF join, for the groups the sort-merge cannot take ---


def _duckdb_join(spine: pa.Table, spine_times: pa.ChunkedArray, joins: Sequence[FeatureJoin]) -> pa.Table:
    """The groups' result columns from one query: ASOF joins on the keys and the instant, in spine order."""
    tables = {"spine": _spine_input(spine, spine_times, joins)}
    groups, selected, from_clause = [], [], "spine s"
    for i, join in enumerate(joins):
        alias = f"g{i}"
        tables[f"{alias}_input"] = _feature_input(join)
        partition = [*join.keys, INSTANT]
        groups.append(f"{alias} AS ({_latest_per_instant(join, f'{alias}_input', partition)})")
        on = [*(f"s.{_q(k)} = {alias}.{_q(k)}" for k in join.keys), f"s.{INSTANT} >= {alias}.{INSTANT}"]
        from_clause += f" ASOF LEFT JOIN {alias} ON {' AND '.join(on)}"
        selected += _selected_columns(join, alias)
    sql = f"WITH {', '.join(groups)} SELECT {', '.join(selected)} FROM {from_clause} ORDER BY s.{ROW_ID}"
    return query(sql, tables)


def _spine_input(spine: pa.Table, spine_times: pa.ChunkedArray, joins: Sequence[FeatureJoin]) -> pa.Table:
    """Only what the join reads: the keys, the time as an instant, and the row number to restore order."""
    keys = list(dict.fromkeys(k for join in joins for k in join.keys))
    return (
        spine.select(keys)
        .append_column(INSTANT, spine_times)
        .append_column(ROW_ID, pa.array(np.arange(spine.num_rows)))
    )


def _feature_input(join: FeatureJoin) -> pa.Table:
    wanted = list(dict.fromkeys((*join.keys, *_tie_breakers(join))))
    return join.features.select(wanted).append_column(INSTANT, _instants(join.features, join.time_column))


def _latest_per_instant(join: FeatureJoin, source: str, partition: Sequence[str]) -> str:
    """One row per `partition` (keys and instant), chosen by values only, so input order never matters."""
    order = ", ".join(f"{_q(c)} DESC NULLS LAST" for c in _tie_breakers(join))
    order_by = f" ORDER BY {order}" if order else ""
    over = f"PARTITION BY {', '.join(map(_q, partition))}{order_by}"
    return f"SELECT * FROM {source} QUALIFY row_number() OVER ({over}) = 1"


def _tie_breakers(join: FeatureJoin) -> tuple[str, ...]:
    """Columns that rank rows with the same key and instant, greatest first: created, then the features."""
    created = (join.created_column,) if join.created_column else ()
    return tuple(dict.fromkeys((*created, *join.columns)))


def _selected_columns(join: FeatureJoin, alias: str) -> list[str]:
    matched = f"{alias}.{INSTANT}"
    fresh = "TRUE"
    if join.ttl is not None:
        fresh = f"s.{INSTANT} - {matched} <= INTERVAL {_as_micros(join.ttl)} MICROSECONDS"
    return [
        f"CASE WHEN {fresh} THEN {alias}.{_q(column)} END AS {_q(output)}"
        for column, output in zip(join.columns, join.output_columns, strict=True)
    ] + [f"CASE WHEN {fresh} THEN {matched} END AS {_q(join.matched_time_column)}"]


# --- Shared ---


def _in_parallel(function, *arguments) -> list:
    """`function` of each argument, in threads: numpy sorts and Arrow kernels release the GIL, so the
    spine's side and the features' run on two cores."""
    with ThreadPoolExecutor(len(arguments)) as pool:
        return list(pool.map(function, arguments))


def _as_micros(delta: dt.timedelta) -> int:
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
