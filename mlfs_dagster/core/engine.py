"""DuckDB, the engine the core computes with."""

import duckdb


def connect() -> duckdb.DuckDBPyConnection:
    """A fresh in-memory connection that reads and truncates timestamps in UTC, whatever the host's zone."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    return con
