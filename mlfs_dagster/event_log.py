"""The embedded instance's event log: Dagster's SQLite storage with one kept connection pool for its index.

Dagster's `SqliteEventLogStorage` creates an engine, opens a connection and closes it for every write, and
closing the last connection to a WAL database checkpoints it. An asset event is written twice, to its run's
database and to the cross-run index, and a range run writes one per asset and partition (a year of raw
ingestion: about 3,000), which made the event log half of such a run's time. The index's connections are
kept here, synced at checkpoints rather than at each commit: its writes cost a fraction of what they did.
The run databases keep Dagster's way: the UI follows a running run by watching its database file, which a
kept connection would only change at a checkpoint. The files are Dagster's own, so a home written either
way reads the other way.
"""

from __future__ import annotations

import atexit
import os
import weakref
from collections.abc import Iterator
from contextlib import contextmanager

from dagster import StringSource
from dagster._core.storage.event_log.sqlite.sqlite_event_log import (
    INDEX_SHARD_NAME,
    SQLITE_BUSY_TIMEOUT_SECONDS,
    SqliteEventLogStorage,
)
from sqlalchemy import Connection, Engine, create_engine, event


class PooledIndexSqliteEventLogStorage(SqliteEventLogStorage):
    """`SqliteEventLogStorage` under `<dagster_home>/history/runs`, its index database's connections kept."""

    def __init__(self, dagster_home: str, inst_data=None):
        self._index_engine: Engine | None = None
        super().__init__(os.path.join(dagster_home, "history", "runs"), inst_data=inst_data)
        _OPEN.add(self)

    @classmethod
    def config_type(cls):
        return {"dagster_home": StringSource}

    @classmethod
    def from_config_value(cls, inst_data, config_value):
        return cls(inst_data=inst_data, **config_value)

    @contextmanager
    def _connect(self, shard: str) -> Iterator[Connection]:
        if shard != INDEX_SHARD_NAME:
            with super()._connect(shard) as connection:
                yield connection
            return
        with self._db_lock, self._index().connect() as connection, connection.begin():
            yield connection

    def _index(self) -> Engine:
        if self._index_engine is None:
            engine = create_engine(self.conn_string_for_shard(INDEX_SHARD_NAME),
                                   connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS})
            event.listen(engine, "connect", _sync_at_checkpoints)
            self._initdb(engine)
            self._initialized_dbs.add(INDEX_SHARD_NAME)
            self._index_engine = engine
        return self._index_engine

    def close_index(self, *, in_forked_child: bool = False) -> None:
        """Closing the last connection checkpoints the index: no WAL file is left for a read-only reader."""
        if self._index_engine is not None:
            self._index_engine.dispose(close=not in_forked_child)
            self._index_engine = None

    def dispose(self) -> None:
        self.close_index()
        super().dispose()


def _sync_at_checkpoints(connection, _record) -> None:
    """SQLite's advice for WAL databases: a commit is not synced on its own, a checkpoint is. The database
    cannot be corrupted; a power cut may lose the last events of the index, which the run databases keep."""
    connection.execute("PRAGMA synchronous=NORMAL")


_OPEN: weakref.WeakSet[PooledIndexSqliteEventLogStorage] = weakref.WeakSet()
# A forked child must not use its parent's SQLite connections; a process leaving closes its own.
os.register_at_fork(after_in_child=lambda: [s.close_index(in_forked_child=True) for s in list(_OPEN)])
atexit.register(lambda: [s.close_index() for s in list(_OPEN)])
