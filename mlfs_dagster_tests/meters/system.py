"""The meters system declared in Python: the same objects `system.yaml` loads into (functions by reference,
as YAML names them, so the two forms compare equal)."""

import datetime as dt
from pathlib import Path

import pyarrow as pa

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
    Split,
    System,
)

FUNCTIONS = "mlfs_dagster_tests.meters.functions"

HERE = Path(__file__).parent
UTC = pa.timestamp("us", tz="UTC")
OWNER = "team:energy"
START = dt.date(2025, 6, 1)  # years before the reference system's start: each system has its own

READINGS = SourceSpec(
    name="readings", description="Hourly meter readings exported by the metering platform (CSV).", owner=OWNER,
    keys=("site_id", "meter_id", "event_time"),
    columns=(Column("site_id", pa.string(), "Site."), Column("meter_id", pa.string(), "Meter within the site."),
             Column("event_time", UTC, "When the reading was taken."),
             Column("kwh", pa.float64(), "Consumption over the past hour."),
             Column("temperature", pa.float64(), "Outside temperature at the site.")),
    must_arrive=True, required=("kwh",),
)
SITES = SourceSpec(
    name="sites", description="The site registry, delivered once (JSON Lines, no time column).", owner=OWNER,
    keys=("site_id",), delivery="reference", time_from_landing=True,
    columns=(Column("site_id", pa.string(), "Site."), Column("event_time", UTC, "Landing time of the delivery."),
             Column("climate", pa.string(), "cold or warm."), Column("capacity_kw", pa.float64(), "Connection size.")),
)
METER_HISTORY = FeatureGroupSpec(
    name="meter_history", description="Each meter's consumption over the 24 hours before each reading.",
    owner=OWNER, entity_keys=("site_id", "meter_id"),
    columns=(Column("site_id", pa.string(), "Site (entity key)."), Column("meter_id", pa.string(), "Meter (entity key)."),
             Column("event_time", UTC, "Time of the reading the row describes."),
             Column("kwh_mean_24h", pa.float64(), "Mean consumption over the previous 24 hours."),
             Column("previous_kwh", pa.float64(), "The previous reading, if within 24 hours.")),
    inputs=(FeatureInput("readings", lookback=dt.timedelta(hours=24)),),
    sql=(HERE / "meter_history.sql").read_text(),
)
SITE_PROFILE = FeatureGroupSpec(
    name="site_profile", description="Site attributes from the latest registry delivery.", owner=OWNER,
    entity_keys=("site_id",),
    columns=(Column("site_id", pa.string(), "Site (entity key)."), Column("event_time", UTC, "Delivery time."),
             Column("climate", pa.string(), "cold or warm."), Column("capacity_kw", pa.float64(), "Connection size.")),
    inputs=(FeatureInput("sites", lookback=None),),
    sql="SELECT site_id, event_time, climate, capacity_kw FROM sites",
)
DEMAND = FeatureViewSpec(
    name="demand", description="Next-hour consumption per meter.", owner=OWNER,
    spine="readings", spine_keys=("site_id", "meter_id", "event_time"),
    spine_columns=("site_id", "meter_id", "event_time", "temperature"),
    label=Label("kwh", kind="regression"),
    selections=(FeatureSelection("meter_history", ttl=dt.timedelta(hours=24)), FeatureSelection("site_profile")),
    on_demand=f"{FUNCTIONS}:hour_of_day", on_demand_columns=("hour_of_day",),
    split=Split(validation_fraction=0.34), warm_up=dt.timedelta(hours=24),
)
DEMAND_MODEL = ModelSpec(
    name="demand_model", description="Gradient-boosted regression of hourly consumption.", owner=OWNER,
    feature_view="demand",
    features=("temperature", "kwh_mean_24h", "previous_kwh", "capacity_kw", "hour_of_day", "climate"),
    pipeline=f"{FUNCTIONS}:demand_pipeline", gates=(Gate("r2", minimum=0.5), Gate("mae", champion_tolerance=1.0)),
)
SYSTEM = System(
    name="meters", description="Electricity demand per meter: the second, differently shaped test system.",
    start=START, cadence="hourly", owners=(OWNER,), sources=(READINGS, SITES),
    feature_groups=(METER_HISTORY, SITE_PROFILE), feature_views=(DEMAND,), models=(DEMAND_MODEL,),
)
DEMAND, DEMAND_MODEL = SYSTEM.feature_view("demand"), SYSTEM.model("demand_model")
