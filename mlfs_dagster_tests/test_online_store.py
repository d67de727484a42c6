"""The online store on SQLite (embedded), Redis and PostgreSQL (the machine's servers): each entity's latest
row, written idempotently and in event-time order whatever order the writes come in."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from mlfs_dagster.core.online_store import RedisOnlineStore, SqlOnlineStore, latest_per_entity
from mlfs_dagster_tests.servers import REDIS

TABLE = "shop.card_spend_v1"
T0 = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)


def rows(*items) -> pa.Table:
    """(card, store, minutes after T0, created minutes, spend) rows; a key of two columns."""
    card, store, minutes, created, spend = zip(*items)
    return pa.table({
        "card": pa.array(card, pa.string()), "store": pa.array(store, pa.int64()),
        "event_time": pa.array([T0 + dt.timedelta(minutes=m) for m in minutes], pa.timestamp("us", "UTC")),
        "created": pa.array([T0 + dt.timedelta(minutes=m) for m in created], pa.timestamp("us", "UTC")),
        "spend": pa.array(spend, pa.float64()),
    })


@pytest.fixture(params=["sqlite", "redis", "postgresql"])
def store(request, tmp_path):
    if request.param == "sqlite":
        opened = SqlOnlineStore(f"sqlite:///{tmp_path}/online.db")
    elif request.param == "redis":
        opened = RedisOnlineStore(REDIS, prefix=request.getfixturevalue("redis_prefix"))
    else:
        opened = SqlOnlineStore(request.getfixturevalue("postgres_databases")("online"))
    yield opened
    opened.close()


def write(store, table: pa.Table):
    return store.write(TABLE, table, ("card", "store"), "event_time", "created")


def spend_of(store, *entities):
    return [None if row is None else (row.event_time, row.values["spend"]) for row in store.read(TABLE, entities)]


def test_latest_per_entity_takes_the_last_event_then_the_last_created_and_drops_null_keys():
    latest = latest_per_entity(rows(("a", 1, 5, 5, 1.0), ("a", 1, 9, 9, 2.0), ("a", 1, 9, 10, 3.0),
                                    ("a", 2, 1, 1, 4.0), (None, 1, 20, 20, 5.0)),
                               ("card", "store"), "event_time", "created")
    assert sorted(zip(latest["card"].to_pylist(), latest["store"].to_pylist(), latest["spend"].to_pylist())) == [
        ("a", 1, 3.0), ("a", 2, 4.0)]


def test_the_latest_row_per_entity_is_served_with_its_event_time(store):
    done = write(store, rows(("a", 1, 5, 5, 1.0), ("a", 1, 9, 9, 2.0), ("b", 1, 3, 3, 7.5)))
    assert (done.rows, done.entities, done.written) == (3, 2, 2)
    assert spend_of(store, ("a", 1), ("b", 1), ("c", 1)) == [
        (T0 + dt.timedelta(minutes=9), 2.0), (T0 + dt.timedelta(minutes=3), 7.5), None]
    assert store.read(TABLE, [("a", 1)])[0].values == {"created": T0 + dt.timedelta(minutes=9), "spend": 2.0}


def test_an_older_row_arriving_late_never_overwrites_a_newer_one(store):
    write(store, rows(("a", 1, 60, 60, 2.0)))
    late = write(store, rows(("a", 1, 30, 30, 1.0), ("b", 1, 30, 30, 4.0)))
    assert (late.entities, late.written, late.kept_newer) == (2, 1, 1)
    assert spend_of(store, ("a", 1), ("b", 1)) == [(T0 + dt.timedelta(minutes=60), 2.0),
                                                    (T0 + dt.timedelta(minutes=30), 4.0)]


def test_writing_the_same_rows_again_changes_nothing_and_a_correction_at_the_same_time_replaces(store):
    first = rows(("a", 1, 10, 10, 1.0), ("b", 2, 20, 20, 2.0))
    write(store, first)
    assert write(store, first).written == 0
    assert spend_of(store, ("a", 1), ("b", 2)) == [(T0 + dt.timedelta(minutes=10), 1.0),
                                                    (T0 + dt.timedelta(minutes=20), 2.0)]
    write(store, rows(("a", 1, 10, 11, 1.5)))  # the same event re-computed: the re-run's value is served
    assert spend_of(store, ("a", 1)) == [(T0 + dt.timedelta(minutes=10), 1.5)]


def test_a_table_never_written_reads_as_unknown_entities_and_drop_forgets_a_table(store):
    assert store.read("shop.nothing_v1", [("a", 1)]) == [None]
    write(store, rows(("a", 1, 10, 10, 1.0)))
    store.drop(TABLE)
    assert spend_of(store, ("a", 1)) == [None]
