"""The offline store on a real Iceberg catalog (SQLite) under tmp_path: periods, overwrites, and the
write-audit-publish primitives (stage on a branch, publish only onto the base it was staged on)."""

import datetime as dt

import pyarrow as pa
import pytest
from pyiceberg.expressions import AlwaysTrue

from mlfs_dagster.core.offline_store import OfflineStore, PublishConflictError, TimeRange, between_bounds

UTC_US = pa.timestamp("us", tz="UTC")
SCHEMA = pa.schema([("id", pa.string()), ("event_time", UTC_US)])
DAY = dt.date(2026, 1, 5)
NEXT = DAY + dt.timedelta(days=1)
ONE_DAY = TimeRange.of_days(DAY, DAY)
NEXT_DAY = TimeRange.of_days(NEXT, NEXT)


def at(hour: int, day: dt.date = DAY) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, hour, tzinfo=dt.UTC)


def rows(*pairs: tuple[str, dt.datetime]) -> pa.Table:
    return pa.table({"id": [p[0] for p in pairs], "event_time": pa.array([p[1] for p in pairs], UTC_US)})


def ids(table: pa.Table) -> list[str]:
    return sorted(table["id"].to_pylist())


@pytest.fixture
def store(tmp_path) -> OfflineStore:
    return OfflineStore(f"sqlite:///{tmp_path}/c.db", f"file://{tmp_path}/wh")


# --- periods ---------------------------------------------------------------------------------------------


def test_periods_are_the_starts_of_every_step_in_the_range():
    two_days = TimeRange.of_days(DAY, NEXT)
    assert two_days.periods(dt.timedelta(days=1)) == [at(0), at(0, NEXT)]
    assert len(two_days.periods(dt.timedelta(hours=1))) == 48
    assert two_days.periods(dt.timedelta(hours=1))[25] == at(1, NEXT)


def test_periods_refuse_a_range_that_is_not_whole_periods():
    with pytest.raises(ValueError, match="not a whole number"):
        TimeRange(at(0), at(5)).periods(dt.timedelta(days=1))


# --- replace_range, used by every layer ------------------------------------------------------------------


def test_replacing_a_day_keeps_the_other_days(store):
    store.replace_range("raw.t", rows(("a", at(9)), ("b", at(10))), "event_time", ONE_DAY)
    store.replace_range("raw.t", rows(("n", at(8, NEXT))), "event_time", NEXT_DAY)
    store.replace_range("raw.t", rows(("a", at(9))), "event_time", ONE_DAY)
    assert ids(store.read("raw.t")) == ["a", "n"]


def test_replace_range_refuses_rows_outside_the_range(store):
    outside = rows(("a", at(9)), ("b", at(1, NEXT)))
    with pytest.raises(ValueError, match="fall outside the range being replaced"):
        store.replace_range("raw.t", outside, "event_time", ONE_DAY)
    assert not store.exists("raw.t")  # refused before anything was written


# --- write-audit-publish ---------------------------------------------------------------------------------


def test_a_new_table_gets_an_empty_base_snapshot_to_branch_from(store):
    base = store.base_snapshot("raw.t", SCHEMA, "event_time")
    assert store.snapshot_id("raw.t") == base
    assert store.read("raw.t").num_rows == 0
    assert store.base_snapshot("raw.t", SCHEMA, "event_time") == base  # only once


def test_staged_rows_are_invisible_until_published(store):
    store.replace_range("raw.t", rows(("old", at(9))), "event_time", ONE_DAY)
    base = store.base_snapshot("raw.t", SCHEMA, "event_time")

    staged = store.stage_ranges("raw.t", rows(("new", at(10))), "event_time", [ONE_DAY], "wap-1", base)
    assert ids(store.read("raw.t")) == ["old"]
    assert ids(store.read("raw.t", snapshot_id=staged)) == ["new"]

    assert store.publish("raw.t", "wap-1") == staged
    assert store.snapshot_id("raw.t") == staged
    assert ids(store.read("raw.t")) == ["new"]
    assert "wap-1" not in store.table("raw.t").refs()


def test_staging_several_ranges_replaces_only_those(store):
    third = NEXT + dt.timedelta(days=1)
    for day, name in ((DAY, "a"), (NEXT, "b"), (third, "c")):
        store.replace_range("raw.t", rows((name, at(9, day))), "event_time", TimeRange.of_days(day, day))
    base = store.base_snapshot("raw.t", SCHEMA, "event_time")
    store.stage_ranges("raw.t", rows(("a2", at(9)), ("c2", at(9, third))), "event_time",
                       [ONE_DAY, TimeRange.of_days(third, third)], "wap-1", base)
    store.publish("raw.t", "wap-1")
    assert ids(store.read("raw.t")) == ["a2", "b", "c2"]


def test_discarding_a_branch_leaves_main_as_it_was(store):
    store.replace_range("raw.t", rows(("old", at(9))), "event_time", ONE_DAY)
    base = store.base_snapshot("raw.t", SCHEMA, "event_time")
    store.stage_ranges("raw.t", rows(), "event_time", [ONE_DAY], "wap-1", base)
    store.discard("raw.t", "wap-1")
    store.discard("raw.t", "wap-1")  # gone already: nothing to do
    assert store.snapshot_id("raw.t") == base
    assert ids(store.read("raw.t")) == ["old"]
    assert "wap-1" not in store.table("raw.t").refs()


def test_publish_conflict_when_main_moved_after_staging(store):
    store.replace_range("raw.t", rows(("old", at(9))), "event_time", ONE_DAY)
    base = store.base_snapshot("raw.t", SCHEMA, "event_time")
    store.stage_ranges("raw.t", rows(("staged", at(9))), "event_time", [ONE_DAY], "wap-1", base)
    moved = store.replace_range("raw.t", rows(("concurrent", at(9, NEXT))), "event_time", NEXT_DAY)

    with pytest.raises(PublishConflictError, match="Re-run") as raised:
        store.publish("raw.t", "wap-1")
    assert str(moved) in str(raised.value) and str(base) in str(raised.value)
    assert store.snapshot_id("raw.t") == moved  # the concurrent write is not dropped
    assert ids(store.read("raw.t")) == ["concurrent", "old"]


def test_publish_conflict_is_also_caught_in_the_commit_itself(store, monkeypatch):
    """Main moving between our check and the commit: the commit's own assertion on main refuses it."""
    from mlfs_dagster.core import offline_store

    store.replace_range("raw.t", rows(("old", at(9))), "event_time", ONE_DAY)
    base = store.base_snapshot("raw.t", SCHEMA, "event_time")
    store.stage_ranges("raw.t", rows(("staged", at(9))), "event_time", [ONE_DAY], "wap-1", base)
    check = offline_store._require_head

    def check_then_let_another_writer_in(*args):
        check(*args)
        OfflineStore(store.catalog_uri, store.warehouse).replace_range(
            "raw.t", rows(("racer", at(9, NEXT))), "event_time", NEXT_DAY)

    monkeypatch.setattr(offline_store, "_require_head", check_then_let_another_writer_in)
    with pytest.raises(PublishConflictError, match="Re-run"):  # refused by the commit, named by the check redone
        store.publish("raw.t", "wap-1")
    assert store.commit_retries == 1
    assert ids(store.read("raw.t")) == ["old", "racer"]


def test_unpublish_moves_main_back_to_the_base(store):
    store.replace_range("raw.t", rows(("old", at(9))), "event_time", ONE_DAY)
    base = store.base_snapshot("raw.t", SCHEMA, "event_time")
    store.stage_ranges("raw.t", rows(("new", at(9))), "event_time", [ONE_DAY], "wap-1", base)
    published = store.publish("raw.t", "wap-1")
    assert store.unpublish("raw.t", published) == base
    assert ids(store.read("raw.t")) == ["old"]


def test_unpublish_refuses_once_main_moved_on(store):
    base = store.base_snapshot("raw.t", SCHEMA, "event_time")
    store.stage_ranges("raw.t", rows(("new", at(9))), "event_time", [ONE_DAY], "wap-1", base)
    published = store.publish("raw.t", "wap-1")
    later = store.replace_range("raw.t", rows(("later", at(9, NEXT))), "event_time", NEXT_DAY)
    with pytest.raises(PublishConflictError):
        store.unpublish("raw.t", published)
    assert store.snapshot_id("raw.t") == later


def test_stage_refuses_rows_outside_its_ranges(store):
    base = store.base_snapshot("raw.t", SCHEMA, "event_time")
    with pytest.raises(ValueError, match="fall outside"):
        store.stage_ranges("raw.t", rows(("a", at(9, NEXT))), "event_time", [ONE_DAY], "wap-1", base)
    assert "wap-1" not in store.table("raw.t").refs()


def test_a_new_column_in_written_data_evolves_the_table_and_is_kept(tmp_path):
    store = OfflineStore(f"sqlite:///{tmp_path}/catalog.db", f"file://{tmp_path}/warehouse")
    whole = TimeRange.of_days(dt.date(2026, 1, 1), dt.date(2026, 1, 1))
    at = pa.array([whole.start], pa.timestamp("us", tz="UTC"))
    store.replace_range("t.events", pa.table({"event_time": at, "a": [1]}), "event_time", whole)
    store.replace_range("t.events", pa.table({"event_time": at, "a": [1], "b": ["new"]}), "event_time", whole)
    assert store.read("t.events").to_pylist() == [{"event_time": whole.start, "a": 1, "b": "new"}]


def test_a_whole_table_version_without_a_column_writes_nulls_and_older_versions_keep_their_values(tmp_path):
    store = OfflineStore(f"sqlite:///{tmp_path}/catalog.db", f"file://{tmp_path}/warehouse")
    first = store.replace_all("t.training", pa.table({"x": [1.0], "dropped": [2.0]}))
    store.replace_all("t.training", pa.table({"x": [3.0]}))
    assert store.read("t.training").to_pylist() == [{"x": 3.0, "dropped": None}]
    assert store.read("t.training", snapshot_id=first).to_pylist() == [{"x": 1.0, "dropped": 2.0}]


def _create_a_table(folder: str, name: str) -> None:
    store = OfflineStore(f"sqlite:///{folder}/catalog.db", f"file://{folder}/warehouse")
    store.ensure_table(f"shop.{name}", pa.schema([("id", pa.string())]), None)


def test_parallel_steps_creating_tables_in_a_new_catalog_all_succeed(tmp_path):
    import multiprocessing

    fork = multiprocessing.get_context("fork")
    for attempt in range(10):  # catalog tables and namespace: each race was lost often without its guard
        folder = tmp_path / str(attempt)
        processes = [fork.Process(target=_create_a_table, args=(str(folder), f"t{n}")) for n in range(4)]
        for process in processes:
            process.start()
        for process in processes:
            process.join()
        assert [p.exitcode for p in processes] == [0, 0, 0, 0]


def test_a_scan_between_the_bounds_of_some_keys_returns_every_row_holding_one_of_them(store):
    store.replace_range("db.t", rows(("a1", at(1)), ("m5", at(2)), ("z9", at(3))), "event_time", ONE_DAY)
    store.replace_range("db.t", rows(("b2", at(1, NEXT)), ("q7", at(2, NEXT))), "event_time", NEXT_DAY)
    wanted = pa.chunked_array([["q7", None, "b2"]])
    assert ids(store.read("db.t", where=between_bounds("id", wanted))) == ["b2", "m5", "q7"]
    times = pa.chunked_array([pa.array([at(2), at(1, NEXT)], UTC_US)])
    assert ids(store.read("db.t", where=between_bounds("event_time", times))) == ["b2", "m5", "z9"]
    assert store.read("db.t", where=between_bounds("id", pa.chunked_array([pa.nulls(2, pa.string())]))).num_rows == 0
    assert between_bounds("score", pa.chunked_array([[0.5]])) == AlwaysTrue()  # floats are not bounded
