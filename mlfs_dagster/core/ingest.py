"""Ingestion of one day of a source: contract validation, then good rows and quarantined rows.

File-level problems (missing file, unreadable file, missing column, a column of the wrong type) stop the
day with a message naming the file and the column. Row-level problems (null key, time or required value,
time outside the day, duplicate key) send the row to quarantine with its reason; the good rows still land.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from mlfs_dagster.core.engine import query
from mlfs_dagster.core.landing import LandingZone
from mlfs_dagster.core.offline_store import TimeRange
from mlfs_dagster.core.specs import SourceSpec

REASON = "_reason"
LANDING_DATE = "_landing_date"


class ContractError(ValueError):
    """A landing file breaks its source's schema contract."""


@dataclass(frozen=True)
class IngestedDay:
    day: dt.date
    paths: list[str]
    good: pa.Table
    quarantined: pa.Table


def ingest_day(landing: LandingZone, spec: SourceSpec, day: dt.date) -> IngestedDay:
    files = landing.read_day(spec.name, day)
    # Each file meets the contract on its own, so one bad file is named and never padded with nulls.
    typed = pa.concat_tables([conform_to_contract(data, spec, path) for path, data in files.items()])
    good, quarantined = split_by_row_rules(typed, spec, day)
    return IngestedDay(day, list(files), good, quarantined)


def conform_to_contract(data: pa.Table, spec: SourceSpec, origin: str) -> pa.Table:
    """Select the contract's columns in order, cast to their types; extra columns are ignored."""
    missing = [c.name for c in spec.columns if c.name not in data.column_names]
    if missing:
        raise ContractError(
            f"{origin}: missing column(s) {missing} required by source '{spec.name}' "
            f"(found {data.column_names})"
        )
    arrays = [_cast_column(data[c.name], c.name, c.type, origin) for c in spec.columns]
    return pa.Table.from_arrays(arrays, schema=spec.schema)


def _cast_column(values: pa.ChunkedArray, name: str, to_type: pa.DataType, origin: str) -> pa.ChunkedArray:
    if values.type == to_type:
        return values
    # Naive timestamps are UTC by convention; anything else must cast without loss.
    try:
        return values.cast(to_type, safe=True)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
        raise ContractError(
            f"{origin}: column '{name}' has type {values.type}, expected {to_type}: {error}"
        ) from error


def split_by_row_rules(data: pa.Table, spec: SourceSpec, day: dt.date) -> tuple[pa.Table, pa.Table]:
    """Good rows, and quarantined rows with a `_reason` and the `_landing_date` they came in."""
    day_range = TimeRange.of_days(day, day)
    time = spec.time_column
    keys = ", ".join(f'"{k}"' for k in spec.keys)
    null_key_rules = " ".join(f"""WHEN "{k}" IS NULL THEN 'null key {k}'""" for k in spec.keys)
    null_required_rules = " ".join(f"""WHEN "{c}" IS NULL THEN 'null {c}'""" for c in spec.required)
    judged = query(
        f"""
        SELECT *, CASE
            {null_key_rules}
            WHEN "{time}" IS NULL THEN 'null {time}'
            {null_required_rules}
            WHEN "{time}" < $start OR "{time}" >= $end THEN '{time} outside the landing day {day}'
            WHEN row_number() OVER (PARTITION BY {keys} ORDER BY "{time}") > 1
                THEN 'duplicate key ({", ".join(spec.keys)})'
        END AS {REASON}
        FROM data
        ORDER BY "{time}" NULLS LAST, {keys}
        """,
        {"data": data},
        {"start": day_range.start, "end": day_range.end},
    )
    is_good = judged[REASON].is_null()
    good = judged.filter(is_good).drop_columns([REASON]).cast(spec.schema)
    quarantined = judged.filter(pc.invert(is_good))
    landing_dates = pa.array([day_range.start] * quarantined.num_rows, pa.timestamp("us", tz="UTC"))
    return good, quarantined.append_column(LANDING_DATE, landing_dates)
