"""DuckDB, the engine the core computes with."""

from collections.abc import Mapping

import duckdb
import pyarrow as pa


def query(sql: str, tables: Mapping[str, pa.Table], params: Mapping | None = None) -> pa.Table:
    """One query over named Arrow tables, on its own connection, closed afterwards.

    Timestamps are read and truncated in UTC whatever the host's zone.
    """
    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'UTC'")
        for name, table in tables.items():
            con.register(name, table)
        return con.sql(sql, params=dict(params or {})).to_arrow_table()
