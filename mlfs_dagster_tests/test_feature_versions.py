"""Feature groups that cannot leak, and versions that cannot silently break readers.

A range run is compared with single-period runs of its periods (each with only its own lookback); a spec
change that breaks readers is refused until the version is bumped, and an added column evolves in place.
Small hand-made tables in a real Iceberg store under tmp_path.
"""

import dataclasses
import datetime as dt

import pyarrow as pa
import pytest

from mlfs_dagster.core.features import compute_feature_group, leaks, load_inputs
from mlfs_dagster.core.offline_store import OfflineStore, TimeRange
from mlfs_dagster.core.schema_evolution import SchemaChangeError, evolve_table
from mlfs_dagster.core.specs import Column, FeatureGroupSpec, FeatureInput, SourceSpec, System

UTC_US = pa.timestamp("us", tz="UTC")
START = dt.date(2026, 3, 1)
FIRST = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)

SALES = SourceSpec(
    name="sales", description="Sales.", owner="team:test", keys=("sale_id",),
    columns=(Column("sale_id", pa.string()), Column("shop", pa.string()), Column("event_time", UTC_US),
             Column("amount", pa.float64())),
)
TOTALS_COLUMNS = (Column("shop", pa.string()), Column("event_time", UTC_US), Column("total", pa.float64()))
# Yesterday's total, stamped at the start of today, but read without declaring the one-day lookback it needs:
# a daily run sees no yesterday, a backfill does. This is the leak the range check exists for.
LEAKY = FeatureGroupSpec(
    name="shop_totals", description="Yesterday's sales per shop.", owner="team:test", entity_keys=("shop",),
    columns=TOTALS_COLUMNS, inputs=(FeatureInput("sales"),),
    sql="SELECT shop, date_trunc('day', event_time) + INTERVAL 1 DAY AS event_time, sum(amount) AS total "
        "FROM sales GROUP BY ALL",
)
# The same feature written correctly: the lookback is declared, so every run sees yesterday.
SOUND = dataclasses.replace(LEAKY, inputs=(FeatureInput("sales", lookback=dt.timedelta(days=1)),))


def system(*groups: FeatureGroupSpec) -> System:
    return System(name="shops", description="Test shops.", start=START, owners=("team:test",), sources=(SALES,),
                  feature_groups=groups)


@pytest.fixture
def store(tmp_path) -> OfflineStore:
    store = OfflineStore(f"sqlite:///{tmp_path}/catalog.db", f"file://{tmp_path}/warehouse")
    days = [FIRST + dt.timedelta(days=d, hours=12) for d in range(4)]
    sales = pa.table({"sale_id": [f"s{i}" for i in range(4)], "shop": ["a"] * 4, "event_time": pa.array(days, UTC_US),
                      "amount": [1.0, 2.0, 4.0, 8.0]})
    store.replace_range(system().source("sales").table, sales, "event_time", TimeRange(FIRST, FIRST + dt.timedelta(days=4)))
    return store


def days(first: int, count: int) -> TimeRange:
    return TimeRange(FIRST + dt.timedelta(days=first), FIRST + dt.timedelta(days=first + count))


def range_check(store: OfflineStore, group: FeatureGroupSpec):
    whole = days(0, 4)
    result = compute_feature_group(group, load_inputs(store, group, whole, FIRST), whole)
    return result, leaks(store, group, result, [days(d, 1) for d in (1, 2, 3)], FIRST, in_range=True)


def test_a_group_reading_beyond_its_declared_lookback_is_caught_with_group_day_column_and_row(store):
    leaky = system(LEAKY).feature_group("shop_totals")
    result, differences = range_check(store, leaky)
    assert result.num_rows == 3  # the backfill saw yesterday for days 2 to 4
    alone = [d for d in differences if "alone differs from the range run" in d.test]
    assert len(alone) == 3  # every sampled period; the cut catches them too, since the rows need hidden data
    first = alone[0]
    assert (first.group, first.period, first.column) == ("shop_totals", FIRST + dt.timedelta(days=1),
                                                         "row only in the range run computation")
    assert first.row == {"shop": "a", "event_time": FIRST + dt.timedelta(days=1)}
    assert "shop_totals" in str(first) and "2026-03-02" in str(first)


def test_the_same_feature_with_its_lookback_declared_passes(store):
    _, differences = range_check(store, system(SOUND).feature_group("shop_totals"))
    assert differences == []


def test_a_value_that_differs_names_its_column(store):
    # A running total over every row the run happened to read: a range reads more history than a day alone.
    greedy = dataclasses.replace(SOUND, sql="SELECT shop, date_trunc('day', event_time) AS event_time, "
                                            "sum(amount) OVER (PARTITION BY shop ORDER BY event_time) AS total FROM sales")
    _, differences = range_check(store, system(greedy).feature_group("shop_totals"))
    assert "total" in {d.column for d in differences}


def test_a_daily_total_stamped_at_the_start_of_its_own_day_is_caught_by_the_cut(store):
    # Daily and range runs agree (both see the whole day), yet each row knows the day's later sales.
    same_day = dataclasses.replace(SOUND, inputs=(FeatureInput("sales"),),
                                   sql="SELECT shop, date_trunc('day', event_time) AS event_time, sum(amount) AS total "
                                       "FROM sales GROUP BY ALL")
    group = system(same_day).feature_group("shop_totals")
    whole = days(0, 4)
    result = compute_feature_group(group, load_inputs(store, group, whole, FIRST), whole)
    found = leaks(store, group, result, [days(1, 1)], FIRST, in_range=True)
    assert [leak.column for leak in found] == ["row only in the run computation"]
    assert "use data from after their own time" in str(found[0])


def test_float_windows_summed_in_another_order_are_not_a_leak(tmp_path):
    store = OfflineStore(f"sqlite:///{tmp_path}/catalog.db", f"file://{tmp_path}/warehouse")
    rng = __import__("random").Random(1)
    times = [FIRST + dt.timedelta(minutes=7 * i) for i in range(4 * 24 * 8)]
    sales = pa.table({"sale_id": [f"s{i}" for i in range(len(times))], "shop": ["a"] * len(times),
                      "event_time": pa.array(times, UTC_US), "amount": [rng.uniform(0, 1e6) for _ in times]})
    store.replace_range(system().source("sales").table, sales, "event_time", days(0, 4))
    rolling = dataclasses.replace(
        SOUND, inputs=(FeatureInput("sales", lookback=dt.timedelta(days=2)),),
        sql="SELECT shop, event_time, avg(amount) OVER (PARTITION BY shop ORDER BY event_time "
            "RANGE BETWEEN INTERVAL 2 DAYS PRECEDING AND CURRENT ROW EXCLUDE CURRENT ROW) AS total FROM sales")
    group = system(rolling).feature_group("shop_totals")
    whole = days(0, 4)
    result = compute_feature_group(group, load_inputs(store, group, whole, FIRST), whole)
    assert leaks(store, group, result, [days(d, 1) for d in (1, 2, 3)], FIRST, in_range=True) == []


# --- versions ------------------------------------------------------------------------------------------


def evolve(store, group: FeatureGroupSpec):
    bound = system(group).feature_group(group.name)
    evolve_table(store, bound.table, bound.schema, bound.time_column, bound.entity_keys)
    return bound


def test_an_added_column_evolves_the_table_in_place_and_old_rows_read_null(store):
    v1 = evolve(store, SOUND)
    store.replace_range(v1.table, pa.table({"shop": ["a"], "event_time": pa.array([FIRST], UTC_US), "total": [1.0]}),
                        "event_time", days(0, 1))
    wider = dataclasses.replace(SOUND, columns=(*TOTALS_COLUMNS, Column("sales", pa.int64(), "Number of sales.")))
    v1_wider = evolve(store, wider)
    assert v1_wider.table == v1.table
    row = store.read(v1.table).to_pylist()[0]
    assert row["sales"] is None and row["total"] == 1.0
    store.replace_range(v1.table, pa.table({"shop": ["a"], "event_time": pa.array([FIRST], UTC_US), "total": [1.0],
                                            "sales": pa.array([1], pa.int64())}), "event_time", days(0, 1))
    assert store.read(v1.table).to_pylist()[0]["sales"] == 1  # a new column is written, not dropped


@pytest.mark.parametrize("change, message", [
    (dict(columns=TOTALS_COLUMNS[:2]), "column 'total' removed or renamed"),
    (dict(columns=(*TOTALS_COLUMNS[:2], Column("total", pa.int64()))), "column 'total' retyped from double to int64"),
    (dict(columns=(*TOTALS_COLUMNS[:2], Column("sum", pa.float64()))), "column 'total' removed or renamed"),
    (dict(entity_keys=("event_time",)), "entity keys changed from (shop) to (event_time)"),
])
def test_a_breaking_change_is_refused_naming_it_until_the_version_is_bumped(store, change, message):
    evolve(store, SOUND)
    with pytest.raises(SchemaChangeError, match=message.replace("(", r"\(").replace(")", r"\)")):
        evolve(store, dataclasses.replace(SOUND, **change))
    bumped = evolve(store, dataclasses.replace(SOUND, version=2, **change))
    assert bumped.table == "shops.shop_totals_v2" and store.exists("shops.shop_totals_v1")


def test_narrow_declared_types_that_iceberg_widens_are_not_a_change(store):
    narrow = dataclasses.replace(SOUND, columns=(*TOTALS_COLUMNS[:2], Column("total", pa.int16())))
    evolve(store, narrow)
    evolve(store, narrow)  # the same declaration again: int16 reads back as int32, which is no retype
