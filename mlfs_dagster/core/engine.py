"""DuckDB, the engine the core computes with."""

from collections.abc import Mapping
from functools import cache

import duckdb
import pyarrow as pa


@cache
def _database() -> duckdb.DuckDBPyConnection:
    # One in-memory database per process: opening one costs ~30 ms, a cursor on it next to nothing.
    return duckdb.connect()


def query(sql: str, tables: Mapping[str, pa.Table], params: Mapping | None = None) -> pa.Table:
    """One query over named Arrow tables, on its own cursor (tables registered there stay private to it).

    Timestamps are read and truncated in UTC whatever the host's zone.
    """
    with _database().cursor() as con:
        con.execute("SET TimeZone = 'UTC'")
        for name, table in tables.items():
            con.register(name, table)
        return con.sql(sql, params=dict(params or {})).to_arrow_table()
