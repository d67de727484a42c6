"""Declarations: mistakes are refused with a message naming the spec, and labels aggregate what they need.

Small systems declared here; the label test builds a training set from hand-made tables in a real Iceberg
store under tmp_path.
"""

import dataclasses
import datetime as dt

import pyarrow as pa
import pytest

from mlfs_dagster.core.offline_store import OfflineStore, TimeRange
from mlfs_dagster.core.specs import (
    Column,
    FeatureGroupSpec,
    FeatureInput,
    FeatureSelection,
    FeatureViewSpec,
    Label,
    ModelSpec,
    SourceSpec,
    SpecError,
    Split,
    System,
)
from mlfs_dagster.core.training import build_training_set

UTC_US = pa.timestamp("us", tz="UTC")
START = dt.date(2026, 5, 1)
FIRST = dt.datetime(2026, 5, 1, tzinfo=dt.UTC)
ORDERS = SourceSpec(name="orders", description="Orders.", owner="team:t", keys=("order_id",),
                    columns=(Column("order_id", pa.string()), Column("customer_id", pa.string()),
                             Column("event_time", UTC_US), Column("amount", pa.float64())))
REFUNDS = SourceSpec(name="refunds", description="Refunds.", owner="team:t", keys=("refund_id",),
                     columns=(Column("refund_id", pa.string()), Column("order_id", pa.string()),
                              Column("event_time", UTC_US), Column("refund", pa.float64())))
SPEND = FeatureGroupSpec(name="spend", description="Spend.", owner="team:t", entity_keys=("customer_id",),
                         columns=(Column("customer_id", pa.string()), Column("event_time", UTC_US),
                                  Column("spend_7d", pa.float64())),
                         inputs=(FeatureInput("orders", lookback=dt.timedelta(days=7)),),
                         sql="SELECT customer_id, event_time, sum(amount) OVER w AS spend_7d FROM orders "
                             "WINDOW w AS (PARTITION BY customer_id ORDER BY event_time "
                             "RANGE BETWEEN INTERVAL 7 DAYS PRECEDING AND CURRENT ROW EXCLUDE CURRENT ROW)")
VIEW = FeatureViewSpec(name="big_refunds", description="Orders refunded over 10.", owner="team:t", spine="orders",
                       spine_keys=("order_id",), selections=(FeatureSelection("spend"),),
                       label=Label("big_refund", source="refunds", on=("order_id",), value="max(refund) > 10",
                                   missing="false", maturity=dt.timedelta(days=2)),
                       split=Split(validation_fraction=0.5))
MODEL = ModelSpec(name="m", description="A model.", owner="team:t", feature_view="big_refunds",
                  features=("amount", "spend_7d"), pipeline="sklearn.dummy:DummyClassifier")


def declare(**changes) -> System:
    fields = dict(name="shop", description="Shop.", start=START, owners=("team:t",), sources=(ORDERS, REFUNDS),
                  feature_groups=(SPEND,), feature_views=(VIEW,), models=(MODEL,))
    return System(**{**fields, **changes})


@pytest.mark.parametrize("change, message", [
    (dict(feature_views=(dataclasses.replace(VIEW, selections=(FeatureSelection("orders"),)),)),
     "'orders' is a source; a view selects features from feature groups"),
    (dict(models=(dataclasses.replace(MODEL, features=("amount", "spend_30d")),)),
     "model m: features ['spend_30d'] are not columns of feature view big_refunds"),
    (dict(sources=(dataclasses.replace(ORDERS, columns=(*ORDERS.columns[:2], Column("event_time", pa.date32()),
                                                         ORDERS.columns[3])), REFUNDS)),
     "source orders: time column 'event_time' is date32"),
    (dict(feature_groups=(dataclasses.replace(SPEND, inputs=(FeatureInput("returns"),)),)),
     "feature group inputs ['returns'] are not declared sources or groups"),
    (dict(name="Shop"), "system name 'Shop' must be lower-case"),
])
def test_a_declaration_mistake_is_refused_naming_the_spec(change, message):
    with pytest.raises(SpecError, match=message.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(")):
        declare(**change)


def test_one_group_selected_twice_under_two_prefixes_gives_two_matched_times():
    twice = dataclasses.replace(VIEW, selections=(FeatureSelection("spend", prefix="a_"),
                                                  FeatureSelection("spend", prefix="b_", ttl=dt.timedelta(days=1))))
    view = declare(feature_views=(twice,), models=()).feature_view("big_refunds")
    assert {"a_spend_7d", "b_spend_7d", "a_spend_event_time", "b_spend_event_time"} <= set(view.output_columns)


def test_a_label_aggregates_any_column_of_its_source_and_only_mature_examples_are_labelled(tmp_path):
    system = declare()
    view = system.feature_view("big_refunds")
    store = OfflineStore(f"sqlite:///{tmp_path}/catalog.db", f"file://{tmp_path}/warehouse")
    days = TimeRange(FIRST, FIRST + dt.timedelta(days=6))
    at = [FIRST + dt.timedelta(days=d, hours=9) for d in range(6)]
    store.replace_range(system.source("orders").table, pa.table({
        "order_id": [f"o{d}" for d in range(6)], "customer_id": ["c"] * 6, "event_time": pa.array(at, UTC_US),
        "amount": [5.0, 50.0, 20.0, 30.0, 40.0, 60.0]}), "event_time", days)
    store.replace_range(system.source("refunds").table, pa.table({
        "refund_id": ["r1", "r2", "r3"], "order_id": ["o1", "o2", "o2"],
        "event_time": pa.array([at[2], at[3], at[3]], UTC_US), "refund": [25.0, 4.0, 5.0]}), "event_time", days)
    store.replace_range(system.feature_group("spend").table, pa.table({
        "customer_id": ["c"] * 6, "event_time": pa.array(at, UTC_US), "spend_7d": [0.0, 5.0, 55, 75, 105, 145]}),
        "event_time", days)
    built = build_training_set(store, view, as_of=FIRST + dt.timedelta(days=6), first_time=FIRST)
    labels = dict(zip(built.data["order_id"].to_pylist(), built.data["big_refund"].to_pylist(), strict=True))
    # o1: a 25 refund; o2: refunds of 4 and 5, none over 10; o4 and o5 are younger than the 2-day maturity.
    assert labels == {"o0": False, "o1": True, "o2": False, "o3": False}
