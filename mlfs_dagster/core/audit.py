"""Data audits run on what was just written: the numbers asset checks are made of."""

from __future__ import annotations

import pyarrow as pa

from mlfs_dagster.core.engine import query


def _count(data: pa.Table | pa.RecordBatchReader, sql: str) -> int:
    return query(sql, {"data": data}).column(0)[0].as_py()


def duplicate_keys(data: pa.Table | pa.RecordBatchReader, keys: tuple[str, ...]) -> int:
    """Rows beyond the first for each key; a batch reader streams, so a whole table never sits in memory."""
    columns = ", ".join(f'"{k}"' for k in keys)
    return _count(data, f"SELECT count(*) - count(DISTINCT ({columns})) FROM data")


def null_keys(data: pa.Table, keys: tuple[str, ...]) -> int:
    condition = " OR ".join(f'"{k}" IS NULL' for k in keys)
    return _count(data, f"SELECT count(*) FROM data WHERE {condition}")


def rows_with_future_features(data: pa.Table, time_column: str, matched_time_columns: tuple[str, ...]) -> int:
    """Rows joined to a feature row newer than the row itself: leakage, which must be zero."""
    condition = " OR ".join(f'"{c}" > "{time_column}"' for c in matched_time_columns)
    return _count(data, f"SELECT count(*) FROM data WHERE {condition}")
