"""Data audits run on what was just written: the numbers asset checks are made of."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa

from mlfs_dagster.core.engine import query


def _count(data: pa.Table, sql: str) -> int:
    return query(sql, {"data": data}).column(0)[0].as_py()


def rows_per_day(data: pa.Table, time_column: str, days: list[dt.date]) -> dict[dt.date, int]:
    counts = query(f'SELECT CAST("{time_column}" AS DATE) AS day, count(*) AS n FROM data GROUP BY 1', {"data": data})
    by_day = dict(zip(counts["day"].to_pylist(), counts["n"].to_pylist(), strict=True))
    return {day: by_day.get(day, 0) for day in days}


def duplicate_keys(data: pa.Table, keys: tuple[str, ...]) -> int:
    """Rows beyond the first for each key."""
    columns = ", ".join(f'"{k}"' for k in keys)
    return _count(data, f"SELECT count(*) - count(DISTINCT ({columns})) FROM data")


def null_keys(data: pa.Table, keys: tuple[str, ...]) -> int:
    condition = " OR ".join(f'"{k}" IS NULL' for k in keys)
    return _count(data, f"SELECT count(*) FROM data WHERE {condition}")


def rows_with_future_features(data: pa.Table, time_column: str, matched_time_columns: tuple[str, ...]) -> int:
    """Rows joined to a feature row newer than the row itself: leakage, which must be zero."""
    condition = " OR ".join(f'"{c}" > "{time_column}"' for c in matched_time_columns)
    return _count(data, f"SELECT count(*) FROM data WHERE {condition}")
