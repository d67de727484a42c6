"""Computing a feature group for a time range: load its inputs with their lookback, run its SQL or function.

The same function serves single-period runs and backfills of any length: a range is computed at once,
and each input is read over the range widened by its lookback, so windows at the start of the range see
the history they need. `range_differences` proves it: it recomputes periods one at a time, each with only
its own lookback, and compares them with the range result.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

import pyarrow as pa

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


@dataclass(frozen=True)
class RangeDifference:
    """Where a period computed on its own differs from the same period inside a range run."""

    group: str
    period: dt.datetime
    column: str
    row: dict

    def __str__(self) -> str:
        return (f"feature group {self.group}, period {self.period.isoformat()}: column '{self.column}' differs "
                f"between a run of this period alone and the range run, at row {self.row}")


def range_differences(
    store: OfflineStore,
    spec: FeatureGroupSpec,
    range_result: pa.Table,
    periods: list[TimeRange],
    history_start: dt.datetime,
) -> list[RangeDifference]:
    """Recompute each period alone (with only its own lookback) and compare with the range's rows.

    A group whose SQL reads beyond its declared lookback, or lets a row see later rows of the range
    (a daily aggregate stamped inside its own day), computes different rows alone: that is a leak.
    """
    differences = []
    for period in periods:
        alone = compute_feature_group(spec, load_inputs(store, spec, period, history_start), period)
        in_range = query(
            f'SELECT * FROM r WHERE "{spec.time_column}" >= $start AND "{spec.time_column}" < $end',
            {"r": range_result}, {"start": period.start, "end": period.end},
        )
        difference = first_difference(spec, alone, in_range)
        if difference:
            differences.append(RangeDifference(spec.name, period.start, *difference))
    return differences


def first_difference(spec: FeatureGroupSpec, alone: pa.Table, in_range: pa.Table) -> tuple[str, dict] | None:
    """The first column and row where two computations of one period disagree, or None if equal."""
    row_key = (*spec.entity_keys, spec.time_column, *spec.identifiers)
    time = spec.time_column
    compared = [c for c in spec.schema.names if c not in row_key]
    on = " AND ".join(f'a."{k}" IS NOT DISTINCT FROM r."{k}"' for k in row_key)
    which_column = " ".join(f"""WHEN a."{c}" IS DISTINCT FROM r."{c}" THEN '{c}'""" for c in compared)
    found = query(
        f"""SELECT {", ".join(f'coalesce(a."{k}", r."{k}") AS "{k}"' for k in row_key)},
                CASE WHEN r."{time}" IS NULL THEN 'row only in the period run'
                     WHEN a."{time}" IS NULL THEN 'row only in the range run'
                     {which_column} END AS _column
            FROM alone a FULL OUTER JOIN in_range r ON {on}
            WHERE _column IS NOT NULL
            ORDER BY ALL LIMIT 1""",
        {"alone": alone, "in_range": in_range},
    ).to_pylist()
    if not found:
        return None
    row = found[0]
    return row.pop("_column"), row
