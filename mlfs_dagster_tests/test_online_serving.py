"""Online features of the reference system: the online assets after a backfill, and the online vectors equal
to the training-set builder's for the same rows (the serving half of the one vector-building path)."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pyarrow.compute as pc
from dagster import AssetKey, AssetSelection

from card_fraud.system import FRAUD_VIEW, SYSTEM
from mlfs_dagster.core import feature_view, serving
from mlfs_dagster.core.offline_store import TimeRange
from mlfs_dagster.core.online_store import latest_per_entity
from mlfs_dagster_tests.conftest import DAYS, day, groups

CARD_TXN_WINDOWS, MERCHANT_RISK = SYSTEM.feature_group("card_txn_windows"), SYSTEM.feature_group("merchant_risk")
END = dt.datetime.combine(day(DAYS), dt.time(), dt.UTC) + dt.timedelta(days=1)


def online_metadata(world, group):
    event = world.instance.get_latest_materialization_event(AssetKey([SYSTEM.name, group.online_asset_name]))
    return {k: v.value for k, v in event.asset_materialization.metadata.items()}


def recent_transactions(world, rows: int = 300) -> pa.Table:
    spine = feature_view.read_spine(FRAUD_VIEW, world.store(), TimeRange(END - dt.timedelta(days=1), END))
    return spine.sort_by([(FRAUD_VIEW.spine_time, "descending")]).slice(0, rows)


def test_a_backfill_writes_each_entity_once_and_again_writes_nothing(world):
    assert world.materialize(groups("serving"), (day(1), day(DAYS))).success
    windows = world.store().read(CARD_TXN_WINDOWS.table)
    first = online_metadata(world, CARD_TXN_WINDOWS)
    cards = pc.count_distinct(windows["card_id"]).as_py()
    assert first["entities"] == cards and first["written"] + first["kept_newer"] == cards

    assert world.materialize(groups("serving"), (day(DAYS - 1), day(DAYS))).success
    assert online_metadata(world, CARD_TXN_WINDOWS)["written"] == 0  # the same rows: nothing to write
    assert world.materialize(groups("serving"), (day(1), day(10))).success
    older = online_metadata(world, CARD_TXN_WINDOWS)
    assert older["written"] == 0 and older["kept_newer"] == older["entities"]  # a late backfill overwrites nothing

    latest = latest_per_entity(windows, ("card_id",), "event_time").sort_by("card_id").slice(0, 20)
    stored = world.online_store().read(CARD_TXN_WINDOWS.table, [(c,) for c in latest["card_id"].to_pylist()])
    assert [r.event_time for r in stored] == latest["event_time"].to_pylist()
    assert [r.values["amount_sum_7d"] for r in stored] == latest["amount_sum_7d"].to_pylist()


def test_online_vectors_equal_the_training_set_builders_for_recent_transactions(world):
    assert world.materialize(groups("serving"), (day(DAYS - 2), day(DAYS))).success
    report = serving.skew(FRAUD_VIEW, world.store(), world.online_store(), recent_transactions(world))
    assert report.compared > 100, report
    assert report.differences == []
    assert "amount_to_mean_7d" in report.columns and "merchant_fraud_rate_28d" in report.columns


def test_features_past_their_ttl_and_unknown_entities_read_as_missing_and_say_why(world):
    assert world.materialize(groups("serving"), (day(DAYS - 2), day(DAYS))).success
    known = recent_transactions(world, rows=1).drop_columns([FRAUD_VIEW.spine_time])
    unknown = known.set_column(known.column_names.index("card_id"), "card_id", pa.array(["no-such-card"]))
    requests = pa.concat_tables([known, unknown])
    later = END + dt.timedelta(days=3)  # past merchant_risk's 2-day TTL, within card_txn_windows' 7 days
    served = serving.online_vectors(FRAUD_VIEW, world.online_store(), requests, later)
    assert served.statuses[0] == {"card_txn_windows": "ok", "card_details": "ok", "merchant_risk": "expired"}
    assert served.statuses[1]["card_txn_windows"] == "missing" and served.statuses[1]["merchant_risk"] == "expired"
    vectors = served.vectors.to_pylist()
    assert vectors[0]["txn_count_7d"] is not None and vectors[1]["txn_count_7d"] is None
    assert all(v[c] is None for v in vectors for c in MERCHANT_RISK.feature_columns)


def test_the_skew_check_passes_on_the_pipeline_and_names_the_column_an_online_value_differs_in(world):
    view_key = AssetKey([SYSTEM.name, f"{FRAUD_VIEW.name}_online"])
    result = world.materialize(groups("serving"), (day(1), day(DAYS)))  # every entity's history online
    assert result.success, [e.metadata for e in result.get_asset_check_evaluations() if not e.passed]
    [check] = [e for e in result.get_asset_check_evaluations() if e.asset_key == view_key]
    assert check.passed and check.metadata["rows_compared"].value > 100

    card = recent_transactions(world, rows=1)["card_id"][0].as_py()
    online = world.online_store()
    [stored] = online.read(CARD_TXN_WINDOWS.table, [(card,)])
    tampered = {**stored.values, "amount_sum_7d": (stored.values["amount_sum_7d"] or 0) + 1.0}
    online.write(CARD_TXN_WINDOWS.table, pa.Table.from_pylist(
        [{"card_id": card, "event_time": stored.event_time, **tampered}]), ("card_id",), "event_time")
    failed = world.materialize(AssetSelection.assets(view_key), (day(DAYS), day(DAYS)))
    [check] = [e for e in failed.get_asset_check_evaluations() if e.asset_key == view_key]
    assert not check.passed
    assert all(d.startswith("column amount_") for d in check.metadata["differences"].value)
    assert any(card in d for d in check.metadata["differences"].value)

    assert world.materialize(groups("serving"), (day(DAYS), day(DAYS))).success  # the table's row written again
