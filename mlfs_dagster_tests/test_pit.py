"""Point-in-time join semantics on small tables whose right answers are known by hand."""

import datetime as dt
import itertools
import re

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from mlfs_dagster.core import pit
from mlfs_dagster.core.pit import FeatureJoin, point_in_time_join

UTC = dt.UTC
MICROS_UTC = pa.timestamp("us", tz="UTC")


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
    assert all(
        row["cards_event_time"] is None or row["cards_event_time"] <= row["event_time"] for row in result
    )


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


# --- Times of any unit and zone, global features, column names, ties ---


def with_time_type(table: pa.Table, time_type: pa.DataType, column: str = "event_time") -> pa.Table:
    """The same instants in another unit or zone (a naive type holds them as UTC wall times)."""
    return table.set_column(table.schema.get_field_index(column), column, table[column].cast(time_type))


def test_pandas_nanosecond_times_with_a_ttl():
    times = ["2026-01-01 11:30:00", "2026-01-01 12:00:00", "2026-01-01 12:00:00.000001"]
    frame = pd.DataFrame({"card_id": ["A"] * 3, "event_time": pd.to_datetime(times, format="ISO8601")})
    labels = pa.Table.from_pandas(frame, preserve_index=False)
    assert labels.schema.field("event_time").type == pa.timestamp("ns")
    in_ns = with_time_type(features([("A", at(11), 2.0)]), pa.timestamp("ns"))
    an_hour = join(in_ns, ttl=pd.Timedelta(hours=1))
    result = point_in_time_join(labels, "event_time", [an_hour])
    assert result["spend"].to_pylist() == [2.0, 2.0, None]
    assert result.select(labels.column_names).equals(labels)


def test_zones_and_units_mix_and_the_spine_comes_back_as_passed():
    labels = spine([("A", at(12)), ("B", at(10)), ("B", at(9, 59))])
    in_paris = with_time_type(labels, pa.timestamp("ns", "Europe/Paris"))
    assert in_paris["event_time"][0].as_py().hour == 13  # 12:00 UTC is 13:00 in Paris in January
    naive_ms = with_time_type(features([("B", at(10), 10.0)]), pa.timestamp("ms"))
    naive = FeatureJoin("naive", naive_ms, ("card_id",), ("spend",), prefix="n_")
    result = point_in_time_join(in_paris, "event_time", [join(FEATURES), naive])
    assert result.select(["spend", "n_spend"]).to_pylist() == [
        {"spend": 2.0, "n_spend": None},
        {"spend": 10.0, "n_spend": 10.0},
        {"spend": None, "n_spend": None},
    ]
    assert result.select(in_paris.column_names).equals(in_paris)
    assert result.schema.field("cards_event_time").type == MICROS_UTC


def test_date_spine_times_are_midnight_utc():
    labels = pa.table({"card_id": ["A"], "day": pa.array([dt.date(2026, 1, 2)])})
    daily = features([("A", at(13), 3.0), ("A", at(0, day=2), 4.0), ("A", at(0, 1, day=2), 5.0)])
    assert point_in_time_join(labels, "day", [join(daily)])["spend"].to_pylist() == [4.0]


def test_nanoseconds_are_floored_to_the_microsecond():
    late_in_a_microsecond = pa.array(pd.to_datetime(["2026-01-01 11:00:00.000001999"], utc=True))
    table = features([("A", at(11), 2.0)]).set_column(1, "event_time", late_in_a_microsecond)
    matched = point_in_time_join(spine([("A", at(12))]), "event_time", [join(table)])["cards_event_time"]
    assert matched.to_pylist() == [at(11) + dt.timedelta(microseconds=1)]


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
def test_agrees_with_pandas_merge_asof_in_every_unit_with_a_ttl(unit):
    rng, start, ttl = np.random.default_rng(7), pd.Timestamp("2026-01-01"), pd.Timedelta(minutes=10)

    def frame(seconds: np.ndarray) -> pd.DataFrame:
        cards = rng.choice(["A", "B", "C"], len(seconds))
        return pd.DataFrame({"card_id": cards, "event_time": start + pd.to_timedelta(seconds, unit="s")})

    def table(frame: pd.DataFrame, time_type: pa.DataType) -> pa.Table:
        return with_time_type(pa.Table.from_pandas(frame, preserve_index=False), time_type)

    feature_frame = frame(rng.choice(3600, 60, replace=False)).assign(spend=rng.normal(size=60))
    label_frame = frame(rng.integers(0, 3600, 100))
    labels = table(label_frame, pa.timestamp(unit, "UTC"))
    ours = spend_of(labels, join(table(feature_frame, pa.timestamp(unit)), ttl=ttl))  # features naive
    expected = pd.merge_asof(
        label_frame.assign(row=range(len(label_frame))).sort_values("event_time", kind="stable"),
        feature_frame.sort_values("event_time"),
        on="event_time",
        by="card_id",
        tolerance=ttl,
    ).sort_values("row")["spend"]
    assert ours == [None if pd.isna(value) else value for value in expected]


def test_global_features_have_no_keys_and_reach_every_row():
    rates = pa.table({"event_time": pa.array([at(9), at(11)], MICROS_UTC), "rate": [0.5, 0.7]})
    labels = spine([("A", at(8)), ("B", at(9)), (None, at(12)), ("A", at(10)), ("A", at(10, 1))])
    result = point_in_time_join(
        labels,
        "event_time",
        [
            join(FEATURES),
            FeatureJoin("market", rates, keys=(), columns=("rate",)),
            FeatureJoin("fresh", rates, (), ("rate",), ttl=dt.timedelta(hours=1), prefix="fresh_"),
        ],
    )
    assert result["rate"].to_pylist() == [None, 0.5, 0.7, 0.5, 0.5]
    assert result["fresh_rate"].to_pylist() == [None, 0.5, 0.7, 0.5, None]
    assert result["spend"].to_pylist() == [None, None, None, 1.0, 1.0]


def test_a_prefix_renames_the_feature_columns_and_the_matched_time():
    merchant_features = features([("A", at(10), 7.0)])
    merchants = FeatureJoin("merchants", merchant_features, ("card_id",), ("spend",), prefix="m_")
    result = point_in_time_join(spine([("A", at(12))]), "event_time", [join(FEATURES), merchants])
    assert result.column_names == [
        "label_id",
        "card_id",
        "event_time",
        "spend",
        "cards_event_time",
        "m_spend",
        "m_merchants_event_time",
    ]
    assert result.select(["spend", "m_spend"]).to_pylist() == [{"spend": 2.0, "m_spend": 7.0}]


@pytest.mark.parametrize(
    ("second", "message"),
    [
        (
            FeatureJoin("merchants", FEATURES, ("card_id",), ("spend",)),
            "'spend' would come from both feature group 'cards' and feature group 'merchants'",
        ),
        (
            FeatureJoin("merchants", FEATURES, ("card_id",), ("spend",), prefix="label_"),
            "'label_spend' would come from both the spine and feature group 'merchants'",
        ),
        (
            FeatureJoin("cards", FEATURES, ("card_id",), ("spend",)),
            "'spend' would come from both feature group 'cards' and feature group 'cards'",
        ),
    ],
    ids=["two groups", "spine and group", "one group twice"],
)
def test_a_name_given_twice_is_an_error_naming_the_column_and_both_sources(second, message):
    labels = spine([("A", at(12))]).append_column("label_spend", pa.array([1.0]))
    with pytest.raises(ValueError, match=re.escape(message)):
        point_in_time_join(labels, "event_time", [join(FEATURES), second])


TIED_ROWS = [  # (spend, count, created), all for card A at 09:00
    (3.0, 1, at(9, 1)),
    (3.0, 2, at(9, 1)),
    (None, 9, at(9, 1)),
    (9.0, 5, at(9, 0)),
    (1.0, 4, None),
]


def tied(rows: tuple[tuple[float | None, int, dt.datetime | None], ...]) -> pa.Table:
    return pa.table(
        {
            "card_id": ["A"] * len(rows),
            "event_time": pa.array([at(9)] * len(rows), MICROS_UTC),
            "spend": [spend for spend, _, _ in rows],
            "count": [count for _, count, _ in rows],
            "created": pa.array([created for _, _, created in rows], MICROS_UTC),
        }
    )


@pytest.mark.parametrize(
    ("created", "winner"),
    [
        (None, {"spend": 9.0, "count": 5}),  # the greatest values, column by column, nulls last
        ("created", {"spend": 3.0, "count": 2}),  # the latest created first, then the same rule
    ],
)
def test_ties_resolve_the_same_whatever_the_input_order(created, winner):
    def winner_of(rows: tuple) -> tuple:
        group = FeatureJoin("cards", tied(rows), ("card_id",), ("spend", "count"), created_column=created)
        result = point_in_time_join(spine([("A", at(10))]), "event_time", [group])
        return tuple(result.select(["spend", "count"]).to_pylist()[0].items())

    assert {winner_of(rows) for rows in itertools.permutations(TIED_ROWS)} == {tuple(winner.items())}


# --- The sort-merge join and its DuckDB fallback give the same answers ---


@pytest.fixture
def duckdb_only(monkeypatch):
    """Every group joined by the DuckDB ASOF fallback, as if the sort-merge could take none."""
    monkeypatch.setattr(pit, "_sort_merge_join", lambda spine, spine_times, join: None)


def both_ways(monkeypatch, spine_table: pa.Table, *joins: FeatureJoin) -> pa.Table:
    """The join by the sort-merge, checked equal (values and types) to the DuckDB fallback's."""
    merged = point_in_time_join(spine_table, "event_time", joins)
    with monkeypatch.context() as patch:
        patch.setattr(pit, "_sort_merge_join", lambda spine, spine_times, join: None)
        by_duckdb = point_in_time_join(spine_table, "event_time", joins)
    assert merged.schema == by_duckdb.schema
    assert merged.equals(by_duckdb)
    return merged


def test_the_fallback_alone_passes_the_hand_made_cases(duckdb_only):
    labels = spine([("A", at(12)), ("A", at(10)), ("B", at(12)), ("A", at(8)), (None, at(12))])
    assert spend_of(labels, join(FEATURES)) == [2.0, 1.0, 10.0, None, None]


def test_multi_column_keys_match_on_every_column(monkeypatch):
    labels = pa.table(
        {
            "card_id": ["A", "A", "B", None, "A"],
            "merchant_id": [1, 2, 1, 1, None],
            "event_time": pa.array([at(12)] * 5, MICROS_UTC),
        }
    )
    pairs = pa.table(
        {
            "card_id": ["A", "A", "B", "B", None],
            "merchant_id": [1, 2, 2, 1, 1],
            "event_time": pa.array([at(9), at(10), at(11), at(13), at(9)], MICROS_UTC),
            "spend": [1.0, 2.0, 3.0, 4.0, 99.0],
        }
    )
    group = FeatureJoin("pairs", pairs, ("card_id", "merchant_id"), ("spend",))
    assert both_ways(monkeypatch, labels, group)["spend"].to_pylist() == [1.0, 2.0, None, None, None]


@pytest.mark.parametrize(
    "ids",
    [[5, 6, 7], [-(2**62), 0, 2**62], [10**12, 10**12 + 1, 3]],
    ids=["small range", "sparse range", "mixed"],
)
def test_integer_keys_by_offset_or_by_hashing(monkeypatch, ids):
    a, b, c = ids
    labels = pa.table({"id": [a, b, c, None, 42], "event_time": pa.array([at(12)] * 5, MICROS_UTC)})
    rows = pa.table(
        {
            "id": [a, b, b, 43],
            "event_time": pa.array([at(9), at(10), at(11), at(9)], MICROS_UTC),
            "spend": [1.0, 2.0, 3.0, 4.0],
        }
    )
    group = FeatureJoin("ids", rows, ("id",), ("spend",))
    assert both_ways(monkeypatch, labels, group)["spend"].to_pylist() == [1.0, 3.0, None, None, None]


@pytest.mark.parametrize(
    ("key_type", "a", "b"),
    [
        (pa.large_string(), "A", "B"),
        (pa.binary(), b"A", b"B"),
        (pa.bool_(), True, False),
        (pa.date32(), dt.date(2026, 1, 1), dt.date(2026, 1, 2)),
        (pa.timestamp("ms", "UTC"), at(1), at(2)),
        (pa.uint64(), 2**64 - 1, 0),
    ],
    ids=str,
)
def test_keys_of_every_hashable_type(monkeypatch, key_type, a, b):
    labels = pa.table(
        {"k": pa.array([a, b, None], key_type), "event_time": pa.array([at(12)] * 3, MICROS_UTC)}
    )
    rows = pa.table(
        {
            "k": pa.array([a, a, b], key_type),
            "event_time": pa.array([at(9), at(11), at(13)], MICROS_UTC),
            "spend": [1.0, 2.0, 3.0],
        }
    )
    group = FeatureJoin("keyed", rows, ("k",), ("spend",))
    assert pit._sort_merge_join(labels, pit._instants(labels, "event_time"), group) is not None
    assert both_ways(monkeypatch, labels, group)["spend"].to_pylist() == [2.0, None, None]


def test_integer_keys_far_outside_the_feature_range_match_nothing(monkeypatch):
    top = 2**63 - 1
    labels = pa.table({"id": [-(2**63), top, top - 2], "event_time": pa.array([at(12)] * 3, MICROS_UTC)})
    rows = pa.table(
        {"id": [top - 1, top], "event_time": pa.array([at(9)] * 2, MICROS_UTC), "spend": [1.0, 2.0]}
    )
    group = FeatureJoin("ids", rows, ("id",), ("spend",))
    assert both_ways(monkeypatch, labels, group)["spend"].to_pylist() == [None, 2.0, None]


def test_null_times_match_nothing(monkeypatch):
    labels = spine([("A", at(12)), ("A", at(12))])
    labels = labels.set_column(2, "event_time", pa.array([at(12), None], MICROS_UTC))
    with_null_time = FEATURES.set_column(1, "event_time", pa.array([at(9), None, at(13), at(10)], MICROS_UTC))
    assert both_ways(monkeypatch, labels, join(with_null_time))["spend"].to_pylist() == [1.0, None]


def test_a_group_without_columns_gives_its_matched_time(monkeypatch):
    tied = features([("A", at(9), 1.0), ("A", at(9), 2.0), ("A", at(11), 3.0)])
    group = FeatureJoin("seen", tied, ("card_id",), ())
    result = both_ways(monkeypatch, spine([("A", at(10)), ("B", at(10))]), group)
    assert result["seen_event_time"].to_pylist() == [at(9), None]


def test_empty_feature_table_and_empty_spine(monkeypatch):
    nothing = FEATURES.slice(0, 0)
    assert both_ways(monkeypatch, spine([("A", at(12))]), join(nothing))["spend"].to_pylist() == [None]
    assert both_ways(monkeypatch, spine([]), join(FEATURES)).num_rows == 0


def test_feature_columns_come_back_in_the_types_duckdb_returns(monkeypatch):
    plus_two = pa.timestamp("us", "+02:00")
    typed = pa.table(
        {
            "card_id": ["A", "A"],
            "event_time": pa.array([at(9), at(11)], MICROS_UTC),
            "large": pa.array(["x", "y"], pa.large_string()),
            "category": pa.array(["x", "y"]).dictionary_encode(),
            "zoned": pa.array([at(1), at(2)], plus_two),
            "seconds": pa.array([at(1), at(2)], pa.timestamp("s", "UTC")),
            "day": pa.array([dt.date(2026, 1, 1), None], pa.date64()),
            "small": pa.array([1, None], pa.int8()),
            "flag": [True, False],
            "tags": [["a"], []],
        }
    )
    columns = tuple(name for name in typed.column_names if name not in ("card_id", "event_time"))
    group = FeatureJoin("typed", typed, ("card_id",), columns)
    result = both_ways(monkeypatch, spine([("A", at(10)), ("A", at(12)), ("B", at(12))]), group)
    assert result.schema.field("large").type == pa.string()
    assert result.schema.field("zoned").type == pa.timestamp("us", "UTC")
    assert result["large"].to_pylist() == ["x", "y", None]


def test_groups_the_sort_merge_cannot_take_fall_back_to_duckdb(monkeypatch):
    labels = pa.table({"id": pa.array([1, 2], pa.int32()), "event_time": pa.array([at(12)] * 2, MICROS_UTC)})
    rows = pa.table({"id": [1, 2], "event_time": pa.array([at(9), at(10)], MICROS_UTC), "spend": [1.0, 2.0]})
    floats = (
        pa.table({"id": [1.0, 2.0]})
        .append_column("event_time", rows["event_time"])
        .append_column("rate", pa.array([0.1, 0.2]))
    )
    merged = []
    monkeypatch.setattr(pit, "_matched_rows", _recording(pit._matched_rows, merged))
    result = point_in_time_join(
        labels,
        "event_time",
        [
            FeatureJoin("int64s", rows, ("id",), ("spend",)),  # int32 on the spine: types differ
            FeatureJoin("floats", floats, ("id",), ("rate",)),  # float keys: NaN and -0.0 rules differ
        ],
    )
    assert merged == []
    # DuckDB compares keys of different types after casting them to one type.
    assert result.select(["spend", "rate"]).to_pylist() == [
        {"spend": 1.0, "rate": 0.1},
        {"spend": 2.0, "rate": 0.2},
    ]


def test_keys_times_span_beyond_int64_fall_back_to_duckdb(monkeypatch):
    ids = np.arange(10_000)
    far_apart = pa.array(
        [dt.datetime(1, 1, 1, tzinfo=UTC), dt.datetime(9999, 1, 1, tzinfo=UTC)] * 5_000, MICROS_UTC
    )
    rows = pa.table({"id": ids, "event_time": far_apart, "spend": ids.astype(float)})
    labels = pa.table({"id": [0, 1], "event_time": pa.array([at(12)] * 2, MICROS_UTC)})
    group = FeatureJoin("far", rows, ("id",), ("spend",))
    assert pit._matched_rows(labels, pit._instants(labels, "event_time"), group, rows["event_time"]) is None
    assert both_ways(monkeypatch, labels, group)["spend"].to_pylist() == [0.0, None]


def _recording(function, calls: list):
    def recorded(*args):
        calls.append(args[2].name)
        return function(*args)

    return recorded


@pytest.mark.parametrize("seed", range(6))
def test_random_tables_with_ties_nulls_and_two_keys_agree_with_the_fallback(monkeypatch, seed):
    rng = np.random.default_rng(seed)

    def table(rows: int, **columns) -> pa.Table:
        cards = pa.array(rng.choice(["A", "B", "C", "D"], rows), mask=rng.random(rows) < 0.05)
        shops = pa.array(rng.integers(0, 3, rows), mask=rng.random(rows) < 0.05)
        minutes = rng.integers(0, 240, rows)  # few distinct times: many ties and equal timestamps
        times = pa.array(
            (np.datetime64("2026-01-01") + minutes.astype("timedelta64[m]")).astype("datetime64[us]")
        )
        return pa.table({"card_id": cards, "shop": shops, "event_time": times, **columns})

    features = table(
        400,
        spend=pa.array(rng.integers(0, 5, 400).astype(float), mask=rng.random(400) < 0.1),
        created=pa.array(rng.integers(0, 3, 400).astype("datetime64[s]"), mask=rng.random(400) < 0.2),
    )
    labels = table(300).append_column("label", pa.array(np.arange(300)))
    groups = [
        FeatureJoin("pairs", features, ("card_id", "shop"), ("spend",), ttl=dt.timedelta(minutes=30)),
        FeatureJoin(
            "cards", features, ("card_id",), ("spend", "created"), created_column="created", prefix="c_"
        ),
        FeatureJoin("global", features, (), ("spend",), ttl=dt.timedelta(minutes=5), prefix="g_"),
    ]
    result = both_ways(monkeypatch, labels, *groups)
    assert result.select(labels.column_names).equals(labels)
    assert 0 < result["spend"].null_count < result.num_rows


# --- Sorting the int64 keys ---


@pytest.mark.parametrize(
    "keys",
    [
        [],
        [7],
        [1, 2, 2, 5, 9],  # already sorted: kept as it is
        [5, 1, 9, 1, 0, 5],  # small keys: the row numbers fit beside every bit
        [2**62 + 3, 2**62 + 1, 2**62 + 2, 2**62, 2**62 + 1],  # differ only in bits left out of the first sort
        [2**62, 5, 2**61 + 1, 2**61, 2**62 - 1, 5],  # some differ in bits kept, some only in bits left out
    ],
    ids=["empty", "one", "sorted", "small", "low bits only", "mixed"],
)
def test_sorted_keys_give_the_stable_order(keys):
    keys = np.array(keys, np.int64)
    order, ordered = pit._sorted_keys(keys)
    assert order.tolist() == np.argsort(keys, kind="stable").tolist()
    assert ordered.tolist() == sorted(keys.tolist())


def test_sorted_keys_of_many_random_rows_with_ties():
    keys = np.random.default_rng(0).integers(2**62 - 2**20, 2**62, 100_000)  # many ties, only low bits differ
    order, ordered = pit._sorted_keys(keys)
    assert np.array_equal(order, np.argsort(keys, kind="stable"))
    assert np.array_equal(ordered, np.sort(keys))


def test_features_already_in_key_order_join_as_shuffled_ones_do(monkeypatch):
    ordered = FEATURES.sort_by([("card_id", "ascending"), ("event_time", "ascending")])
    labels = spine([("A", at(12)), ("B", at(12)), ("A", at(9)), ("A", at(8))])
    expected = [2.0, 10.0, 1.0, None]
    assert both_ways(monkeypatch, labels, join(ordered))["spend"].to_pylist() == expected
    assert both_ways(monkeypatch, labels, join(FEATURES.take([3, 2, 0, 1])))["spend"].to_pylist() == expected


# --- String keys packed into integers ---


@pytest.mark.parametrize(
    ("key_type", "keys", "packed"),
    [
        (pa.string(), ["", "a", "ab", "12345678", None], True),  # empty, short, exactly 8 bytes, null
        (pa.binary(), [b"a", b"a\0", b"\0a", b"", None], False),  # a NUL byte: would pack like b"a"
        (pa.string(), ["a", "123456789", "12345678", "", None], False),  # one 9 bytes long
        (pa.large_string(), ["a", "b", "", "c", None], False),
    ],
    ids=["short", "nul byte", "long", "large string"],
)
def test_string_keys_match_exactly_packed_or_not(monkeypatch, key_type, keys, packed):
    assert (pit._packed_strings(pa.chunked_array([pa.array(keys, key_type)])) is not None) == packed
    distinct = [key for key in keys if key is not None]
    rows = pa.table(
        {
            "k": pa.array(distinct * 2, key_type),
            "event_time": pa.array([at(9)] * len(distinct) + [at(11)] * len(distinct), MICROS_UTC),
            "spend": [float(i) for i in range(2 * len(distinct))],
        }
    )
    # Two chunks on the spine, the second a slice, so offsets do not start at zero.
    labels = pa.table(
        {
            "k": pa.chunked_array([pa.array(keys[:2], key_type), pa.array(keys, key_type).slice(2)]),
            "event_time": pa.array([at(10)] * len(keys), MICROS_UTC),
        }
    )
    group = FeatureJoin("keyed", rows, ("k",), ("spend",))
    expected = [None if key is None else float(distinct.index(key)) for key in keys]
    assert both_ways(monkeypatch, labels, group)["spend"].to_pylist() == expected


def test_packed_strings_are_their_bytes_and_empty_chunks_pack_to_nothing():
    column = pa.chunked_array([pa.array([], pa.string()), pa.array(["a", None, "ab", ""])])
    assert pit._packed_strings(column).to_pylist() == [0x61, None, 0x6261, 0]


def test_keys_wider_than_the_bits_beside_the_row_numbers_agree_with_the_fallback(monkeypatch):
    # Times over 800 years in microseconds need 55 bits: the packed sort drops low bits and puts them right.
    rng = np.random.default_rng(1)
    start = np.datetime64("1500-01-01", "us")

    def times(rows: int) -> pa.Array:
        years = rng.integers(0, 800 * 365 * 86_400_000_000, rows)
        nearby = rng.random(rows) < 0.5  # half within a millisecond of one another: only low bits differ
        return pa.array(start + np.where(nearby, years % 1000 + 10**15, years), MICROS_UTC)

    cards = rng.choice(["A", "B", "C"], 5_000)
    rows = pa.table({"card_id": cards, "event_time": times(5_000), "spend": rng.random(5_000)})
    labels = pa.table({"card_id": rng.choice(["A", "B", "C", "D"], 3_000), "event_time": times(3_000)})
    result = both_ways(monkeypatch, labels, FeatureJoin("cards", rows, ("card_id",), ("spend",)))
    assert 0 < result["spend"].null_count < result.num_rows
