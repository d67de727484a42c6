"""A system declared in YAML loads into the same spec objects as the same system declared in Python, and
every mistake in the YAML is a SpecError naming the file and the spec and field."""

import datetime as dt
import sys
import textwrap

import pyarrow as pa
import pytest

from mlfs_dagster.core.specs import (
    Column,
    FeatureGroupSpec,
    FeatureInput,
    FeatureSelection,
    FeatureViewSpec,
    Gate,
    Label,
    ModelSpec,
    SourceSpec,
    SpecError,
    Split,
    System,
    resolve_callable,
)
from mlfs_dagster.core.yaml_spec import load_system, parse_arrow_type, parse_duration

PACKAGE = "mlfs_yaml_example"  # the system folder's name: its functions.py is `mlfs_yaml_example.functions`
TIMESTAMP = pa.timestamp("us", tz="UTC")

ACTIVITY_SQL = """\
SELECT customer_id, event_time, order_id,
    count(*) OVER (PARTITION BY customer_id ORDER BY event_time
                   RANGE BETWEEN INTERVAL 36 HOURS PRECEDING AND CURRENT ROW EXCLUDE CURRENT ROW) AS orders_36h
FROM orders
"""

FUNCTIONS = '''\
import pyarrow as pa
import pyarrow.compute as pc


def hourly_volume(inputs, start, end):
    orders = inputs["orders"]
    return pa.table({"hour_start": [start], "orders_last_hour": [orders.num_rows], "created_at": [start]})


def per_order(vectors):
    return vectors.append_column("amount_per_order", pc.divide(vectors["amount"], 1))


def build_pipeline(seed):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(random_state=seed)
'''

SOURCES_YAML = """\
sources:
  - name: orders
    description: Orders, one row per order.
    owner: team:shop-data
    keys: [order_id]
    time_column: event_time
    delivery: event
    must_arrive: true
    time_from_landing: false
    required: [customer_id]
    max_drop: 0.3
    columns:
      - {name: order_id, type: string, description: Order id.}
      - {name: customer_id, type: string, description: Who ordered., tags: [pii]}
      - {name: event_time, type: timestamp, description: When.}
      - {name: amount, type: 'decimal(18, 2)', description: Total.}
      - {name: quantity, type: int32}
      - {name: weight, type: float32}
      - {name: channel, type: string}
      - {name: gift, type: bool}
      - {name: delivery_date, type: date}
  - name: refunds
    description: Refunds, days after the order.
    owner: team:shop-data
    keys: [refund_id]
    time_column: refunded_at
    required: [order_id]
    columns:
      - {name: refund_id, type: string}
      - {name: order_id, type: string}
      - {name: refunded_at, type: timestamp}
      - {name: refund_amount, type: float64}
      - {name: units, type: int64}
  - name: exchange_rates
    description: Exchange rates, now and then.
    owner: team:finance
    keys: [currency, event_time]
    delivery: reference
    time_from_landing: true
    max_drop: 1
    columns:
      - {name: currency, type: string}
      - {name: event_time, type: timestamp}
      - {name: rate, type: float64}
"""

SYSTEM_YAML = f"""\
name: yaml_example
description: Refund risk, declared in YAML.
start: 2026-01-01
cadence: hourly
end: 2026-06-30
owners: [team:shop-data, team:shop-ml]
include: [sources.yaml]

feature_groups:
  - name: customer_activity
    description: Per order, the customer's orders in the 36 hours before.
    owner: team:shop-data
    entity_keys: [customer_id]
    identifiers: [order_id]
    inputs:
      - {{source: orders, lookback: 1d12h}}
    sql_file: activity.sql
    columns:
      - {{name: customer_id, type: string, tags: [pii]}}
      - {{name: event_time, type: timestamp}}
      - {{name: order_id, type: string}}
      - {{name: orders_36h, type: int64, description: Orders in the 36 hours before.}}
  - name: hourly_volume
    description: Orders of the previous hour, for everyone.
    owner: team:shop-data
    entity_keys: []
    time_column: hour_start
    created_column: created_at
    version: 2
    inputs:
      - {{source: orders, lookback: 90m, lag: 1h}}
      - {{source: exchange_rates, lookback: none}}
    function: {PACKAGE}.functions:hourly_volume
    columns:
      - {{name: hour_start, type: timestamp}}
      - {{name: orders_last_hour, type: int64}}
      - {{name: created_at, type: timestamp}}
  - name: rates
    description: Exchange rates as history.
    owner: team:finance
    entity_keys: [currency]
    inputs:
      - {{source: exchange_rates, lookback: none}}
    sql: SELECT currency, event_time, rate FROM exchange_rates
    columns:
      - {{name: currency, type: string}}
      - {{name: event_time, type: timestamp}}
      - {{name: rate, type: float64}}

feature_views:
  - name: refund_risk
    description: Orders with activity and volume, labelled by refunds.
    owner: team:shop-ml
    spine: orders
    spine_keys: [order_id]
    spine_columns: [order_id, customer_id, event_time, amount, channel]
    label:
      column: refunded
      kind: binary
      source: refunds
      on: [order_id]
      value: count(*) > 0
      missing: 'false'
      maturity: 30d
    selections:
      - {{group: customer_activity, features: [orders_36h], prefix: c_, ttl: 2d}}
      - {{group: hourly_volume, features: [orders_last_hour], ttl: none}}
    on_demand: {PACKAGE}.functions:per_order
    on_demand_columns: [amount_per_order]
    split: {{validation_fraction: 0.25, gap: 1d}}
    warm_up: 36h

models:
  - name: refund_model
    description: Refund classifier.
    owner: team:shop-ml
    feature_view: refund_risk
    features: [amount, channel, c_orders_36h, orders_last_hour, amount_per_order]
    pipeline: {PACKAGE}.functions:build_pipeline
    gates:
      - {{metric: roc_auc, minimum: 0.7, champion_tolerance: 0.02}}
      - {{metric: pr_auc, maximum: 1.0}}
    alert_threshold: 0.4
    seed: 11
    drift_share_to_retrain: 0.3
"""

# The same system in Python. Specs refer to each other by object or by name alike; functions by the same
# `module:function` strings the YAML holds (a function object would compare by identity, a string by value).
ORDERS = SourceSpec(
    name="orders", description="Orders, one row per order.", owner="team:shop-data", keys=("order_id",),
    time_column="event_time", delivery="event", must_arrive=True, time_from_landing=False,
    required=("customer_id",), max_drop=0.3,
    columns=(
        Column("order_id", pa.string(), "Order id."),
        Column("customer_id", pa.string(), "Who ordered.", ("pii",)),
        Column("event_time", TIMESTAMP, "When."),
        Column("amount", pa.decimal128(18, 2), "Total."),
        Column("quantity", pa.int32()),
        Column("weight", pa.float32()),
        Column("channel", pa.string()),
        Column("gift", pa.bool_()),
        Column("delivery_date", pa.date32()),
    ),
)
REFUNDS = SourceSpec(
    name="refunds", description="Refunds, days after the order.", owner="team:shop-data", keys=("refund_id",),
    time_column="refunded_at", required=("order_id",),
    columns=(Column("refund_id", pa.string()), Column("order_id", pa.string()), Column("refunded_at", TIMESTAMP),
             Column("refund_amount", pa.float64()), Column("units", pa.int64())),
)
EXCHANGE_RATES = SourceSpec(
    name="exchange_rates", description="Exchange rates, now and then.", owner="team:finance",
    keys=("currency", "event_time"), delivery="reference", time_from_landing=True, max_drop=1.0,
    columns=(Column("currency", pa.string()), Column("event_time", TIMESTAMP), Column("rate", pa.float64())),
)
CUSTOMER_ACTIVITY = FeatureGroupSpec(
    name="customer_activity", description="Per order, the customer's orders in the 36 hours before.",
    owner="team:shop-data", entity_keys=("customer_id",), identifiers=("order_id",),
    inputs=(FeatureInput(ORDERS, lookback=dt.timedelta(days=1, hours=12)),),
    sql=ACTIVITY_SQL,
    columns=(Column("customer_id", pa.string(), tags=("pii",)), Column("event_time", TIMESTAMP),
             Column("order_id", pa.string()),
             Column("orders_36h", pa.int64(), "Orders in the 36 hours before.")),
)
HOURLY_VOLUME = FeatureGroupSpec(
    name="hourly_volume", description="Orders of the previous hour, for everyone.", owner="team:shop-data",
    entity_keys=(), time_column="hour_start", created_column="created_at", version=2,
    inputs=(FeatureInput("orders", lookback=dt.timedelta(minutes=90), lag=dt.timedelta(hours=1)),
            FeatureInput(EXCHANGE_RATES, lookback=None)),
    function=f"{PACKAGE}.functions:hourly_volume",
    columns=(Column("hour_start", TIMESTAMP), Column("orders_last_hour", pa.int64()),
             Column("created_at", TIMESTAMP)),
)
RATES = FeatureGroupSpec(
    name="rates", description="Exchange rates as history.", owner="team:finance", entity_keys=("currency",),
    inputs=(FeatureInput("exchange_rates", lookback=None),),
    sql="SELECT currency, event_time, rate FROM exchange_rates",
    columns=(Column("currency", pa.string()), Column("event_time", TIMESTAMP), Column("rate", pa.float64())),
)
REFUND_RISK = FeatureViewSpec(
    name="refund_risk", description="Orders with activity and volume, labelled by refunds.", owner="team:shop-ml",
    spine=ORDERS, spine_keys=("order_id",),
    spine_columns=("order_id", "customer_id", "event_time", "amount", "channel"),
    label=Label("refunded", kind="binary", source=REFUNDS, on=("order_id",), value="count(*) > 0",
                missing="false", maturity=dt.timedelta(days=30)),
    selections=(
        FeatureSelection(CUSTOMER_ACTIVITY, features=("orders_36h",), prefix="c_", ttl=dt.timedelta(days=2)),
        FeatureSelection("hourly_volume", features=("orders_last_hour",)),
    ),
    on_demand=f"{PACKAGE}.functions:per_order", on_demand_columns=("amount_per_order",),
    split=Split(validation_fraction=0.25, gap=dt.timedelta(days=1)), warm_up=dt.timedelta(hours=36),
)
REFUND_MODEL = ModelSpec(
    name="refund_model", description="Refund classifier.", owner="team:shop-ml", feature_view=REFUND_RISK,
    features=("amount", "channel", "c_orders_36h", "orders_last_hour", "amount_per_order"),
    pipeline=f"{PACKAGE}.functions:build_pipeline",
    gates=(Gate("roc_auc", minimum=0.7, champion_tolerance=0.02), Gate("pr_auc", maximum=1.0)),
    alert_threshold=0.4, seed=11, drift_share_to_retrain=0.3,
)


def python_system() -> System:
    return System(
        name="yaml_example", description="Refund risk, declared in YAML.", start=dt.date(2026, 1, 1),
        cadence="hourly", end=dt.date(2026, 6, 30), owners=("team:shop-data", "team:shop-ml"),
        sources=(ORDERS, REFUNDS, EXCHANGE_RATES),
        feature_groups=(CUSTOMER_ACTIVITY, HOURLY_VOLUME, RATES),
        feature_views=(REFUND_RISK,),
        models=(REFUND_MODEL,),
    )


@pytest.fixture
def folder(tmp_path, monkeypatch):
    """The YAML system's folder; sys.path is restored after the test (the loader extends it)."""
    monkeypatch.setattr(sys, "path", [*sys.path])
    root = tmp_path / PACKAGE
    root.mkdir()
    for name, text in {"system.yaml": SYSTEM_YAML, "sources.yaml": SOURCES_YAML, "activity.sql": ACTIVITY_SQL,
                       "functions.py": FUNCTIONS}.items():
        (root / name).write_text(text)
    return root


def test_yaml_and_python_declarations_load_into_equal_systems(folder):
    assert load_system(folder) == python_system()


def test_the_folder_and_its_system_yaml_load_the_same_system(folder):
    assert load_system(folder / "system.yaml") == load_system(folder)


def test_functions_next_to_the_yaml_are_imported_by_folder_name(folder):
    system = load_system(folder)
    assert resolve_callable(system.model("refund_model").pipeline)(3).random_state == 3
    assert resolve_callable(system.feature_view("refund_risk").on_demand).__module__ == f"{PACKAGE}.functions"


@pytest.mark.parametrize("text, expected", [
    ("30d", dt.timedelta(days=30)), ("24h", dt.timedelta(hours=24)), ("15m", dt.timedelta(minutes=15)),
    ("45s", dt.timedelta(seconds=45)), ("1d12h", dt.timedelta(days=1, hours=12)), ("0d", dt.timedelta(0)),
])
def test_durations_are_a_number_and_a_unit(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text, message", [
    (7, "no unit"), (1.5, "no unit"), ("7", "not a duration"), ("7x", "not a duration"), ("", "not a duration"),
    ("12h1d", "not a duration"), ("d", "not a duration"),
])
def test_durations_without_a_known_unit_are_refused(text, message):
    with pytest.raises(SpecError, match=message):
        parse_duration(text)


@pytest.mark.parametrize("text, expected", [
    ("string", pa.string()), ("int64", pa.int64()), ("int32", pa.int32()), ("float64", pa.float64()),
    ("float32", pa.float32()), ("bool", pa.bool_()), ("date", pa.date32()), ("timestamp", TIMESTAMP),
    ("decimal(18,2)", pa.decimal128(18, 2)), ("decimal( 50 , 4 )", pa.decimal256(50, 4)),
])
def test_type_names_map_to_arrow_types(text, expected):
    assert parse_arrow_type(text) == expected


MISTAKES = {
    # mistake: (file, text replaced, replacement, what the message must name)
    "missing field": ("sources.yaml", "    owner: team:finance\n", "",
                      ["source 'exchange_rates'", "missing field", "owner"]),
    "unknown field": ("sources.yaml", "must_arrive: true", "must_arive: true",
                      ["source 'orders'", "unknown field 'must_arive'", "did you mean 'must_arrive'"]),
    "unknown type": ("sources.yaml", "{name: weight, type: float32}", "{name: weight, type: flaot32}",
                     ["source 'orders'", "column 'weight'", "type", "unknown type 'flaot32'"]),
    "bare number duration": ("system.yaml", "lookback: 1d12h", "lookback: 36",
                             ["feature group 'customer_activity'", "input 'orders'", "lookback", "no unit"]),
    "bad duration": ("system.yaml", "maturity: 30d", "maturity: 30 days",
                     ["feature view 'refund_risk'", "label 'refunded'", "maturity", "not a duration"]),
    "missing sql_file": ("system.yaml", "sql_file: activity.sql", "sql_file: actvity.sql",
                         ["feature group 'customer_activity'", "sql_file", "actvity.sql"]),
    "sql and sql_file": ("system.yaml", "sql_file: activity.sql", "sql_file: activity.sql\n    sql: SELECT 1",
                         ["feature group 'customer_activity'", "not both"]),
    "unimportable function": ("system.yaml", "functions:build_pipeline", "functions:build_pipe",
                              ["model 'refund_model'", "pipeline", "cannot import"]),
    "malformed function": ("system.yaml", f"{PACKAGE}.functions:per_order", f"{PACKAGE}.functions.per_order",
                           ["feature view 'refund_risk'", "on_demand", "package.module:function"]),
    "key given twice": ("system.yaml", "    seed: 11\n", "    seed: 11\n    seed: 12\n", ["'seed' given twice", "seed: 12"]),
    "null for a field without a null default": ("system.yaml", "lookback: 90m", "lookback: null",
                                                ["input 'orders'", "lookback", "null"]),
    "boolean where SQL text is expected": ("system.yaml", "missing: 'false'", "missing: false",
                                           ["label 'refunded'", "missing", "quote it"]),
    "yes is not a boolean": ("sources.yaml", "must_arrive: true", "must_arrive: yes",
                             ["source 'orders'", "must_arrive", "expected true or false, found 'yes'"]),
    "not one of the choices": ("system.yaml", "cadence: hourly", "cadence: weekly", ["system > cadence", "weekly"]),
    "bad date": ("system.yaml", "start: 2026-01-01", "start: 2026-01-01 10:00", ["system > start", "a date"]),
    "number expected": ("system.yaml", "alert_threshold: 0.4", "alert_threshold: high",
                        ["model 'refund_model'", "alert_threshold", "a number"]),
    "list expected": ("system.yaml", "spine_keys: [order_id]", "spine_keys: order_id",
                      ["feature view 'refund_risk'", "spine_keys", "a list"]),
    "undeclared reference": ("system.yaml", "spine: orders", "spine: ordrs",
                             ["feature view refund_risk", "'ordrs'", "sources.yaml"]),
    "missing include": ("system.yaml", "include: [sources.yaml]", "include: [source.yaml]",
                        ["include", "source.yaml", "does not exist"]),
    "system field in an included file": ("sources.yaml", "sources:", "cadence: daily\nsources:",
                                         ["sources.yaml", "included file holds only", "cadence"]),
    "invalid YAML": ("system.yaml", "name: yaml_example", "name: [yaml_example", ["not valid YAML"]),
}


@pytest.mark.parametrize("mistake", MISTAKES)
def test_every_mistake_names_the_file_and_the_spec(folder, mistake):
    file, old, new, expected = MISTAKES[mistake]
    text = (folder / file).read_text()
    assert old in text, "the example no longer holds the text this case changes"
    (folder / file).write_text(text.replace(old, new, 1))
    with pytest.raises(SpecError) as raised:
        load_system(folder)
    message = str(raised.value)
    assert str(folder / file) in message or str(folder / "system.yaml") in message
    for fragment in expected:
        assert fragment in message


def test_a_missing_system_file_is_named(tmp_path):
    with pytest.raises(SpecError, match="system.yaml: no such file"):
        load_system(tmp_path)


def test_a_minimal_system_takes_the_defaults(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "path", [*sys.path])
    (tmp_path / "system.yaml").write_text(textwrap.dedent("""\
        name: empty
        description: Nothing yet.
        start: '2026-02-01'
        owners: []
    """))
    assert load_system(tmp_path) == System("empty", "Nothing yet.", dt.date(2026, 2, 1), owners=())


def test_the_documented_example_loads(tmp_path, monkeypatch):
    from mlfs_dagster.core import yaml_spec

    monkeypatch.setattr(sys, "path", [*sys.path])
    example = textwrap.dedent(yaml_spec.__doc__.split("A complete example, `shop/system.yaml`:\n")[1])
    shop = tmp_path / "shop"
    shop.mkdir()
    (shop / "system.yaml").write_text(example)
    (shop / "features.sql").write_text("SELECT customer_id, event_time, order_id, 0 AS orders_7d FROM orders")
    (shop / "functions.py").write_text("def on_demand_features(vectors):\n    return vectors\n\n\n"
                                       "def build_pipeline(seed):\n    return None\n")
    system = load_system(shop)
    assert [m.name for m in system.models] == ["return_model"]
    assert system.feature_view("returns").selections[0].ttl == dt.timedelta(days=7)
