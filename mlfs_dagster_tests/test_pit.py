"""Point-in-time join semantics on small tables whose right answers are known by hand."""

import datetime as dt

import pyarrow as pa
import pytest

from mlfs_dagster.core.pit import FeatureJoin, point_in_time_join

UTC = dt.UTC


def at(hour: int, minute: int = 0, day: int = 1, tz=UTC) -> dt.datetime:
    return dt.datetime(2026, 1, day, hour, minute, tzinfo=tz)


def spine(rows: list[tuple[str | None, dt.datetime]]) -> pa.Table:
    return pa.table(
        {
            "label_id": [f"l{i}" for i in range(len(rows))],
            "card_id": [card for card, _ in rows],
            "event_time": pa.array([time for _, time in rows], pa.timestamp("us", tz="UTC")),
        }
    )


def features(rows: list[tuple[str, dt.datetime, float]], **extra) -> pa.Table:
    columns = {
        "card_id": [card for card, _, _ in rows],
        "event_time": pa.array([time for _, time, _ in rows], pa.timestamp("us", tz="UTC")),
        "spend": [value for _, _, value in rows],
    }
    return pa.table({**columns, **extra})


def join(table: pa.Table, **options) -> FeatureJoin:
    return FeatureJoin("cards", table, keys=("card_id",), columns=("spend",), **options)


def spend_of(spine_table: pa.Table, *joins: FeatureJoin) -> list[float | None]:
    return point_in_time_join(spine_table, "event_time", joins)["spend"].to_pylist()


FEATURES = features([("A", at(9), 1.0), ("A", at(11), 2.0), ("A", at(13), 3.0), ("B", at(10), 10.0)])


def test_latest_row_at_or_before_the_label_and_never_a_future_one():
    labels = spine([("A", at(12)), ("A", at(10)), ("B", at(12)), ("A", at(8))])
    assert spend_of(labels, join(FEATURES)) == [2.0, 1.0, 10.0, None]


def test_equal_timestamps_count():
    assert spend_of(spine([("A", at(11)), ("B", at(10))]), join(FEATURES)) == [2.0, 10.0]


def test_every_label_row_once_in_order_with_duplicates():
    labels = spine([("B", at(12)), ("A", at(12)), ("A", at(12)), ("C", at(12))])
    result = point_in_time_join(labels, "event_time", [join(FEATURES)])
    assert result["label_id"].to_pylist() == ["l0", "l1", "l2", "l3"]
    assert result["spend"].to_pylist() == [10.0, 2.0, 2.0, None]


def test_null_key_matches_nothing():
    labels = spine([(None, at(12)), ("A", at(12))])
    with_null_feature_key = features([(None, at(9), 99.0), ("A", at(9), 1.0)])
    assert spend_of(labels, join(with_null_feature_key)) == [None, 1.0]


def test_matched_feature_time_is_never_after_the_label():
    labels = spine([("A", at(h, m)) for h in range(7, 15) for m in (0, 30)])
    result = point_in_time_join(labels, "event_time", [join(FEATURES)]).to_pylist()
    assert all(row["cards_event_time"] is None or row["cards_event_time"] <= row["event_time"] for row in result)


def test_ttl_bounds_are_inclusive():
    labels = spine([("A", at(11)), ("A", at(12)), ("A", at(12, 1))])
    ttl = join(features([("A", at(11), 2.0)]), ttl=dt.timedelta(hours=1))
    assert spend_of(labels, ttl) == [2.0, 2.0, None]


def test_ties_go_to_the_latest_created_row():
    tied = features(
        [("A", at(9), 1.0), ("A", at(9), 2.0)],
        created=pa.array([at(9, 5), at(9, 1)], pa.timestamp("us", tz="UTC")),
    )
    assert spend_of(spine([("A", at(10))]), join(tied, created_column="created")) == [1.0]


def test_naive_timestamps_are_utc_and_other_zones_compare_as_instants():
    naive_labels = spine([("A", at(11))]).set_column(
        2, "event_time", pa.array([dt.datetime(2026, 1, 1, 11)], pa.timestamp("us"))
    )
    assert spend_of(naive_labels, join(FEATURES)) == [2.0]
    plus_two = dt.timezone(dt.timedelta(hours=2))
    zoned = spine([("A", at(13, tz=plus_two))])  # 11:00 UTC
    zoned = zoned.set_column(2, "event_time", zoned["event_time"].cast(pa.timestamp("us", tz="+02:00")))
    assert spend_of(zoned, join(FEATURES)) == [2.0]


def test_several_groups_with_different_entities_in_one_call():
    labels = spine([("A", at(12))]).append_column("merchant_id", pa.array(["m1"]))
    merchants = pa.table(
        {
            "merchant_id": ["m1", "m1"],
            "event_time": pa.array([at(10), at(12, 30)], pa.timestamp("us", tz="UTC")),
            "risk": [0.1, 0.9],
        }
    )
    result = point_in_time_join(
        labels,
        "event_time",
        [join(FEATURES), FeatureJoin("merchants", merchants, keys=("merchant_id",), columns=("risk",))],
    )
    assert result.select(["spend", "risk"]).to_pylist() == [{"spend": 2.0, "risk": 0.1}]


@pytest.mark.parametrize("label_hour", [8, 9, 10, 12, 14])
def test_agrees_with_pandas_merge_asof(label_hour):
    import pandas as pd

    labels = spine([("A", at(label_hour)), ("B", at(label_hour))])
    ours = spend_of(labels, join(FEATURES))
    expected = pd.merge_asof(
        labels.to_pandas().sort_values("event_time"),
        FEATURES.to_pandas().sort_values("event_time"),
        on="event_time",
        by="card_id",
        direction="backward",
    ).set_index("label_id")["spend"]
    assert ours == [None if pd.isna(expected[i]) else expected[i] for i in ("l0", "l1")]
