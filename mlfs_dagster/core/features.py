"""Computing a feature group for a time range: load its inputs with their lookback, run its SQL or function.

The same function serves single-period runs and backfills of any length: a range is computed at once,
and each input is read over the range widened by its lookback, so windows at the start of the range see
the history they need. `leaks` proves it on sampled periods: recomputed alone with only their own lookback,
and with their inputs cut in the middle of the period, they must give the same rows.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from mlfs_dagster.core.engine import query
from mlfs_dagster.core.offline_store import OfflineStore, TimeRange
from mlfs_dagster.core.specs import FeatureGroupSpec, FeatureInput, resolve_callable


def input_range(feature_input: FeatureInput, time_range: TimeRange, history_start: dt.datetime) -> TimeRange:
    """The instants of an input a range of the group reads: widened by lookback, cut by lag."""
    start = history_start if feature_input.lookback is None else time_range.start - feature_input.lookback
    return TimeRange(start, time_range.end - feature_input.lag)


def load_inputs(
    store: OfflineStore, spec: FeatureGroupSpec, time_range: TimeRange, history_start: dt.datetime
) -> dict[str, pa.Table]:
    """Each input's rows over its range, as Arrow; missing input tables read as empty."""
    inputs = {}
    for feature_input in spec.inputs:
        source = feature_input.source
        read_range = input_range(feature_input, time_range, history_start)
        inputs[feature_input.name] = (
            store.read_range(source.table, source.time_column, read_range)
            if store.exists(source.table) and read_range.start < read_range.end
            else source.schema.empty_table()
        )
    return inputs


def compute_feature_group(spec: FeatureGroupSpec, inputs: dict[str, pa.Table], time_range: TimeRange) -> pa.Table:
    """Run the group's SQL (or function) over its inputs; keep the rows whose time falls in `time_range`."""
    computed = _computed(spec, inputs, time_range)
    missing = set(spec.schema.names) - set(computed.column_names)
    if missing:
        raise ValueError(f"feature group {spec.name}: its computation does not produce columns {sorted(missing)}")
    keys = ", ".join(f'"{k}"' for k in (*spec.entity_keys, *spec.identifiers))
    ordered = query(
        f'SELECT * FROM computed WHERE "{spec.time_column}" >= $start AND "{spec.time_column}" < $end '
        f'ORDER BY "{spec.time_column}"{", " + keys if keys else ""}',
        {"computed": computed.select(spec.schema.names)},
        {"start": time_range.start, "end": time_range.end},
    )
    return ordered.cast(spec.schema)


def _computed(spec: FeatureGroupSpec, inputs: dict[str, pa.Table], time_range: TimeRange) -> pa.Table:
    if spec.sql:
        bounds = {"start": time_range.start, "end": time_range.end}
        # DuckDB refuses parameters a statement does not use; a mention in a comment is not a use.
        code = re.sub(r"--[^\n]*|/\*.*?\*/", "", spec.sql, flags=re.DOTALL)
        return query(spec.sql, inputs, {k: v for k, v in bounds.items() if re.search(rf"\${k}\b", code)})
    return resolve_callable(spec.function)(inputs, time_range.start, time_range.end)


# Floats may differ in the last bits between two evaluation orders of one window: not a leak.
RELATIVE_TOLERANCE = 1e-9


@dataclass(frozen=True)
class Leak:
    """A row a feature group computes differently when it may not see what it saw: a leak, located."""

    group: str
    period: dt.datetime
    column: str
    row: dict
    test: str  # how it was found

    def __str__(self) -> str:
        return (f"feature group {self.group}, period {self.period.isoformat()}: {self.test}; column "
                f"'{self.column}' differs at row {self.row}")


def leaks(
    store: OfflineStore,
    spec: FeatureGroupSpec,
    computed: pa.Table,
    periods: list[TimeRange],
    history_start: dt.datetime,
    in_range: bool,
) -> list[Leak]:
    """Recompute sampled periods of `computed` under two constraints; any difference is a leak.

    - Alone: the period with only its own lookback, as a daily run computes it (`in_range`: when the
      period was computed inside a longer range). A group reading beyond its declared lookback or lag
      computes different rows alone.
    - Cut: the inputs cut at the middle of the period. A row stamped before the cut may only use data from
      before it, so a daily total stamped at the start of its own day changes when the day's later rows
      are hidden.
    """
    found = []
    for period in periods:
        inputs = load_inputs(store, spec, period, history_start)
        expected = period.rows_of(computed, spec.time_column)
        if in_range:
            alone = compute_feature_group(spec, inputs, period)
            found += _located(spec, period, first_difference(spec, alone, expected, ("period alone", "range run")),
                              "a run of this period alone differs from the range run")
        cut = period.start + (period.end - period.start) / 2
        before_cut = TimeRange(period.start, cut)
        hidden = compute_feature_group(spec, _before(spec, inputs, cut), period)
        found += _located(spec, period, first_difference(spec, before_cut.rows_of(hidden, spec.time_column),
                                                         before_cut.rows_of(expected, spec.time_column), ("cut inputs", "run")),
                          f"rows before {cut.isoformat()} change when the inputs after it are hidden: they use "
                          "data from after their own time")
    return found


def _located(spec: FeatureGroupSpec, period: TimeRange, difference, test: str) -> list[Leak]:
    return [Leak(spec.name, period.start, difference[0], difference[1], test)] if difference else []


def _before(spec: FeatureGroupSpec, inputs: dict[str, pa.Table], cut: dt.datetime) -> dict[str, pa.Table]:
    times = {i.name: i.source.time_column for i in spec.inputs}
    return {name: rows.filter(pc.less(rows[times[name]], cut)) for name, rows in inputs.items()}


def first_difference(spec: FeatureGroupSpec, left: pa.Table, right: pa.Table,
                     names: tuple[str, str] = ("left", "right")) -> tuple[str, dict] | None:
    """The first column and row where two computations of one period disagree, or None if equal.

    Floats count as equal within a relative 1e-9: summing a window in another order moves the last bits.
    """
    row_key = (*spec.entity_keys, spec.time_column, *spec.identifiers)
    time = spec.time_column
    compared = [c for c in spec.schema.names if c not in row_key]
    floats = {f.name for f in spec.schema if pa.types.is_floating(f.type)}
    on = " AND ".join(f'a."{k}" IS NOT DISTINCT FROM r."{k}"' for k in row_key)
    which_column = " ".join(f"WHEN {_differ(c, c in floats)} THEN '{c}'" for c in compared)
    found = query(
        f"""SELECT {", ".join(f'coalesce(a."{k}", r."{k}") AS "{k}"' for k in row_key)},
                CASE WHEN r."{time}" IS NULL THEN 'row only in the {names[0]} computation'
                     WHEN a."{time}" IS NULL THEN 'row only in the {names[1]} computation'
                     {which_column} END AS _column
            FROM a FULL OUTER JOIN r ON {on}
            WHERE _column IS NOT NULL
            ORDER BY ALL LIMIT 1""",
        {"a": left, "r": right},
    ).to_pylist()
    if not found:
        return None
    row = found[0]
    return row.pop("_column"), row


def _differ(column: str, is_float: bool) -> str:
    a, r = f'a."{column}"', f'r."{column}"'
    if not is_float:
        return f"{a} IS DISTINCT FROM {r}"
    return (f"(({a} IS NULL) <> ({r} IS NULL) OR abs({a} - {r}) > "
            f"{RELATIVE_TOLERANCE} * greatest(abs({a}), abs({r}), 1.0))")
