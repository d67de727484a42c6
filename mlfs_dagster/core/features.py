"""Computing a feature group for a time range: load its inputs with their lookback, run its SQL.

The same function serves daily runs and backfills of any length: a range of days is computed at once,
and each input is read over the range widened by its lookback, so windows at the start of the range see
the history they need.
"""

from __future__ import annotations

import datetime as dt

import pyarrow as pa

from mlfs_dagster.core.engine import query
from mlfs_dagster.core.offline_store import OfflineStore, TimeRange
from mlfs_dagster.core.specs import FeatureGroupSpec, FeatureInput


def input_range(feature_input: FeatureInput, time_range: TimeRange, history_start: dt.datetime) -> TimeRange:
    """The instants of an input a range of the group reads: widened by lookback, cut by lag."""
    start = (
        history_start
        if feature_input.lookback_days is None
        else time_range.shifted(start_days=-feature_input.lookback_days).start
    )
    return TimeRange(start, time_range.shifted(end_days=-feature_input.lag_days).end)


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
    """Run the group's SQL over its inputs and keep the rows whose time falls in `time_range`."""
    computed = query(
        f'SELECT * FROM ({spec.sql}) WHERE "{spec.time_column}" >= $start AND "{spec.time_column}" < $end '
        f'ORDER BY "{spec.time_column}", {", ".join(spec.entity_keys)}',
        inputs,
        {"start": time_range.start, "end": time_range.end},
    )
    missing = set(spec.schema.names) - set(computed.column_names)
    if missing:
        raise ValueError(f"feature group {spec.name}: its SQL does not produce columns {sorted(missing)}")
    return computed.select(spec.schema.names).cast(spec.schema)
