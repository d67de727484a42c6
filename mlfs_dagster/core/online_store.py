"""The online store: each entity's latest feature row of a feature group, read in a millisecond to serve.

Rows are written after the offline table commits them, keyed by the group's table and entity key. A write
keeps, per entity, the row with the latest event time (ties broken by the group's created column) and
replaces a stored value only with a later one (or a re-computed one of the same time that differs), so
writes are idempotent and may arrive in any order: a late backfill of last month never overwrites today's
value, and writing the same rows again writes nothing. A value carries the event time it came from;
the reader judges its age (a feature view's TTL), not the store.

Two kinds, chosen by URL: `sqlite:///…` or `postgresql://…` (a table per feature group table), and
`redis://…` (a hash per entity: event time and the packed row).
"""

from __future__ import annotations

import datetime as dt
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import pyarrow as pa

from mlfs_dagster.core import engine

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
KEY_SEPARATOR = "\x1f"  # the ASCII unit separator: never part of an entity key
WRITE_BATCH = 5_000
_ENCODE = msgspec.msgpack.Encoder().encode  # decimals as text, read back at their declared type
_DECODE = msgspec.msgpack.Decoder().decode


@dataclass(frozen=True)
class OnlineRow:
    """An entity's stored features and the event time of the row they came from (µs since the epoch, UTC)."""

    micros: int
    values: dict[str, Any]

    @property
    def event_time(self) -> dt.datetime:
        return EPOCH + dt.timedelta(microseconds=self.micros)


@dataclass(frozen=True)
class OnlineWrite:
    """What a write did: rows offered, entities among them, entities whose stored value it replaced."""

    rows: int
    entities: int
    written: int

    @property
    def kept_newer(self) -> int:
        """Entities whose stored value was newer than the offered one, so left as it was."""
        return self.entities - self.written


def entity_key(values: Iterable[Any]) -> str:
    return KEY_SEPARATOR.join(str(v) for v in values)


def latest_per_entity(rows: pa.Table, keys: Sequence[str], time_column: str,
                      created_column: str | None = None) -> pa.Table:
    """Each entity's last row by event time, then created time; rows with a null key are never served."""
    order = ", ".join(f'"{c}" DESC' for c in (time_column, *([created_column] if created_column else [])))
    partition = ", ".join(f'"{k}"' for k in keys)
    not_null = " AND ".join(f'"{k}" IS NOT NULL' for k in keys)
    return engine.query(
        f"SELECT * FROM rows WHERE {not_null} QUALIFY row_number() OVER (PARTITION BY {partition} ORDER BY {order}) = 1",
        {"rows": rows},
    )


def _micros(instant: dt.datetime) -> int:
    return (instant - EPOCH) // dt.timedelta(microseconds=1)


class OnlineStore(ABC):
    """Latest feature rows per entity, one namespace per feature group table."""

    def write(self, table: str, rows: pa.Table, keys: Sequence[str], time_column: str,
              created_column: str | None = None) -> OnlineWrite:
        """Store each entity's latest row of `rows` unless the store holds a newer one."""
        latest = latest_per_entity(rows, keys, time_column, created_column)
        features = [c for c in latest.column_names if c not in (*keys, time_column)]
        key_columns = [latest[k].to_pylist() for k in keys]
        times = latest[time_column].to_pylist()
        values = latest.select(features).to_pylist()
        entries = [(entity_key(key), _micros(time), _ENCODE(row))
                   for key, time, row in zip(zip(*key_columns), times, values)]
        written = sum(self._put(table, entries[i:i + WRITE_BATCH]) for i in range(0, len(entries), WRITE_BATCH))
        return OnlineWrite(rows=rows.num_rows, entities=len(entries), written=written)

    def read(self, table: str, entities: Sequence[Sequence[Any]]) -> list[OnlineRow | None]:
        """The stored row of each entity (its key values in the group's key order), None where there is none."""
        found = self._get(table, [entity_key(e) for e in entities])
        return [None if item is None else OnlineRow(item[0], _DECODE(item[1])) for item in found]

    @abstractmethod
    def _put(self, table: str, entries: list[tuple[str, int, bytes]]) -> int:
        """Store (key, event time in µs, packed values) where `_replaces` says so; count those stored."""

    @abstractmethod
    def _get(self, table: str, keys: list[str]) -> list[tuple[int, bytes] | None]:
        """(event time in µs, packed values) per key, in the keys' order."""

    @abstractmethod
    def drop(self, table: str) -> None:
        """Forget every entity of a table (a feature group's rows rebuilt from scratch)."""

    def close(self) -> None:
        """Release connections."""


class SqlOnlineStore(OnlineStore):
    """A table per feature group table in SQLite (embedded, under MLFS_HOME) or PostgreSQL."""

    def __init__(self, url: str):
        import sqlalchemy as sa

        self.url = url
        if url.startswith("sqlite:///"):  # the embedded store's folder, made on first use
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        self._engine = sa.create_engine(url, **({"connect_args": {"timeout": 30}} if url.startswith("sqlite") else {}))
        if self._engine.dialect.name == "sqlite":
            sa.event.listen(self._engine, "connect", _sqlite_wal)
        self._metadata = sa.MetaData()
        self._existing: set[str] = set()

    def _table(self, table: str, create: bool):
        import sqlalchemy as sa

        name = "online__" + table.replace(".", "__")
        if name not in self._metadata.tables:
            sa.Table(name, self._metadata, sa.Column("entity", sa.Text, primary_key=True),
                     sa.Column("event_time", sa.BigInteger, nullable=False), sa.Column("features", sa.LargeBinary))
        found = self._metadata.tables[name]
        if create:
            found.create(self._engine, checkfirst=True)
        return found

    def _put(self, table, entries):
        from sqlalchemy.dialects import postgresql, sqlite

        stored = self._table(table, create=True)
        insert = (sqlite.insert if self._engine.dialect.name == "sqlite" else postgresql.insert)(stored)
        upsert = insert.on_conflict_do_update(
            index_elements=[stored.c.entity],
            set_={"event_time": insert.excluded.event_time, "features": insert.excluded.features},
            where=insert.excluded.event_time >= stored.c.event_time,
        )
        with self._engine.begin() as connection:
            known = {entity: (time, features) for entity, time, features in connection.execute(
                stored.select().where(stored.c.entity.in_([e[0] for e in entries])))}
            newer = [{"entity": k, "event_time": t, "features": v} for k, t, v in entries
                     if _replaces((t, v), known.get(k))]
            if newer:
                connection.execute(upsert, newer)
        return len(newer)

    def _get(self, table, keys):
        import sqlalchemy as sa

        stored = self._table(table, create=False)
        if stored.name not in self._existing:
            if not sa.inspect(self._engine).has_table(stored.name):  # nothing written yet: every entity unknown
                return [None] * len(keys)
            self._existing.add(stored.name)
        # The driver's own cursor: SQLAlchemy's statement machinery cost several times the read itself.
        marks = ", ".join(["?" if self._engine.dialect.paramstyle == "qmark" else "%s"] * len(keys))
        connection = self._engine.raw_connection()  # from the pool, returned by close()
        try:
            cursor = connection.cursor()
            cursor.execute(f'SELECT entity, event_time, features FROM "{stored.name}" WHERE entity IN ({marks})', keys)
            found = {e: (t, f) for e, t, f in cursor.fetchall()}
        finally:
            connection.close()
        return [found.get(k) for k in keys]

    def drop(self, table):
        stored = self._table(table, create=False)
        stored.drop(self._engine, checkfirst=True)
        self._existing.discard(stored.name)

    def close(self):
        self._engine.dispose()


def _replaces(offered: tuple[int, bytes], stored: tuple[int, bytes] | None) -> bool:
    """A later row replaces the stored one, and so does a re-computed row of the same time that differs."""
    return stored is None or offered[0] > stored[0] or (offered[0] == stored[0] and offered[1] != bytes(stored[1]))


def _sqlite_wal(connection, _record) -> None:
    """Readers never wait for the writer, and a commit is synced at checkpoints (SQLite's advice for WAL)."""
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")


# KEYS: entity hashes; ARGV: event time and packed features per key. The rule of `_replaces`, in Redis.
_PUT_NOT_OLDER = """
local written = 0
for i, key in ipairs(KEYS) do
  local time = tonumber(ARGV[2 * i - 1])
  local stored = redis.call('HMGET', key, 't', 'f')
  if (not stored[1]) or tonumber(stored[1]) < time or (tonumber(stored[1]) == time and stored[2] ~= ARGV[2 * i]) then
    redis.call('HSET', key, 't', ARGV[2 * i - 1], 'f', ARGV[2 * i])
    written = written + 1
  end
end
return written
"""


class RedisOnlineStore(OnlineStore):
    """A Redis hash per entity, `<prefix><table>:<entity>`, holding the event time and the packed features."""

    def __init__(self, url: str, prefix: str = "mlfs:"):
        import redis

        self.url, self.prefix = url, prefix
        self._redis = redis.Redis.from_url(url)
        self._put_not_older = self._redis.register_script(_PUT_NOT_OLDER)

    def _key(self, table: str, entity: str) -> str:
        return f"{self.prefix}{table}:{entity}"

    def _put(self, table, entries):
        keys = [self._key(table, entity) for entity, _, _ in entries]
        arguments = [argument for _, time, features in entries for argument in (time, features)]
        return int(self._put_not_older(keys=keys, args=arguments))

    def _get(self, table, keys):
        pipeline = self._redis.pipeline(transaction=False)
        for entity in keys:
            pipeline.hmget(self._key(table, entity), "t", "f")
        return [None if time is None else (int(time), features) for time, features in pipeline.execute()]

    def drop(self, table):
        stale = list(self._redis.scan_iter(match=self._key(table, "*"), count=10_000))
        for i in range(0, len(stale), WRITE_BATCH):
            self._redis.delete(*stale[i:i + WRITE_BATCH])

    def close(self):
        self._redis.close()


def open_online_store(url: str) -> OnlineStore:
    """The store a URL names: redis://, rediss:// or a SQLAlchemy URL (sqlite:///, postgresql://)."""
    return RedisOnlineStore(url) if url.startswith(("redis://", "rediss://", "unix://")) else SqlOnlineStore(url)
