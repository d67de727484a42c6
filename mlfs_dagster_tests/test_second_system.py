"""A second system, different in shape, built by the same builders beside the reference system.

Meters: hourly partitions starting months before the reference system, a composite entity key, a
regression label known immediately (no maturity delay), a reference source delivered once without a time
column, CSV and JSON Lines landing files. Both systems are registered in one code location and share the
stores; running one never touches the other.
"""

import datetime as dt
from pathlib import Path

import pyarrow.compute as pc
import pytest
from dagster import AssetKey, AssetSelection

from mlfs_dagster.builders import build_definitions
from mlfs_dagster.builders.common import group_name, range_tags
from mlfs_dagster.core.yaml_spec import load_system
from mlfs_dagster_tests.meters import generator
from mlfs_dagster_tests.meters.system import DEMAND, DEMAND_MODEL
from mlfs_dagster_tests.meters.system import SYSTEM as METERS

METERS_YAML = Path(__file__).parent / "meters"

HOURS = 72
FIRST = dt.datetime.combine(METERS.start, dt.time(), tzinfo=dt.UTC)


def hour(number: int) -> str:
    """Partition key of hour `number` (0-based) of the meters' world."""
    return generator.hour_key(METERS.start, number)


def layers(*names: str) -> AssetSelection:
    return AssetSelection.groups(*(group_name(METERS, n) for n in names))


@pytest.fixture(scope="module")
def both(world):
    """Both systems in one code location, the meters' world generated and run raw to models."""
    from card_fraud.system import SYSTEM as CARD_FRAUD

    generator.generate(Path(world.settings.landing), METERS.start, HOURS, shift_from_hour=HOURS - 6)
    defs = build_definitions(CARD_FRAUD, load_system(METERS_YAML))
    store = world.store()
    fraud_tables = {t: store.status(t) for t in store.list_tables() if t.startswith("card_fraud.")}
    backfill = world.materialize_with(defs, layers("raw", "features"), tags=range_tags(hour(0), hour(HOURS - 1)))
    # Trained on the first 60 hours: the last hours are out of sample, so their realised performance means something.
    as_of = {"ops": {"meters__demand_training_set": {"config": {"as_of": (FIRST + dt.timedelta(hours=60)).isoformat()}}}}
    trained = world.materialize_with(defs, layers("training", "models"), run_config=as_of)
    return defs, fraud_tables, backfill, trained


def test_the_yaml_and_python_declarations_are_the_same_system():
    assert load_system(METERS_YAML) == METERS


def test_the_meters_backfill_and_training_pass_every_check(both):
    _, _, backfill, trained = both
    for result in (backfill, trained):
        assert result.success
        failed = [e for e in result.get_asset_check_evaluations() if not e.passed and e.severity.value == "ERROR"]
        assert not failed, failed
    # The validation split is the last half-day (training stops at hour 60): hour_of_day shifts, and says so.
    shift = [e for e in trained.get_asset_check_evaluations() if e.check_name == "train_validation_shift"]
    assert "hour_of_day" in shift[0].metadata["shifted"].value


def test_groups_keys_and_tables_are_the_meters_own(both, world):
    defs, fraud_tables, backfill, _ = both
    keys = {e.asset_key for e in backfill.get_asset_materialization_events()}
    assert keys == {AssetKey(["meters", n]) for n in ("raw_readings", "quarantine_readings", "raw_sites",
                                                      "quarantine_sites", "meter_history", "site_profile")}
    store = world.store()
    assert {t: store.status(t) for t in store.list_tables() if t.startswith("card_fraud.")} == fraud_tables
    selected = layers("raw").resolve(defs.resolve_asset_graph())
    assert selected == {AssetKey(["meters", n]) for n in ("raw_readings", "quarantine_readings", "raw_sites",
                                                          "quarantine_sites")}


def test_the_reference_source_delivered_once_takes_its_landing_time_and_joins_every_later_reading(world, both):
    store = world.store()
    sites = store.read(METERS.source("sites").table)
    assert sites.num_rows == 3 and set(sites["event_time"].to_pylist()) == {FIRST}
    training = store.read(DEMAND.table)
    assert training.num_rows > 0 and pc.all(pc.is_valid(training["capacity_kw"])).as_py()


def test_the_regression_label_needs_no_maturity_and_features_are_never_from_the_future(world, both):
    training = world.store().read(DEMAND.table)
    assert pc.all(pc.is_valid(training["kwh"])).as_py()
    latest = pc.max(training["event_time"]).as_py()
    assert latest >= FIRST + dt.timedelta(hours=59)  # labels known at once: the hour before as-of trains too
    for group in ("meter_history", "site_profile"):
        assert pc.sum(pc.greater(training[f"{group}_event_time"], training["event_time"])).as_py() in (0, None)
    assert pc.min(training["event_time"]).as_py() >= FIRST + DEMAND.warm_up


def test_the_model_is_gated_on_regression_metrics_and_promoted(world, both):
    from mlfs_dagster.core.registry import ModelRegistry

    registry = ModelRegistry(world.settings.mlflow_tracking_uri, world.settings.mlflow_artifacts)
    champion = registry.version_by_alias(DEMAND_MODEL.registered_name, "champion")
    assert champion is not None and champion.metrics["r2"] >= 0.5 and "mae" in champion.metrics


def test_hourly_inference_and_drift_reports_run_per_hour(world, both):
    defs = both[0]
    last_hours = (hour(HOURS - 5), hour(HOURS - 1))
    result = world.materialize_with(defs, layers("inference", "monitoring"), tags=range_tags(*last_hours))
    assert result.success
    reports = [e for e in result.get_asset_materialization_events()
               if e.asset_key == AssetKey(["meters", "demand_model_feature_drift"])]
    assert sorted(e.partition for e in reports) == [hour(HOURS - n) for n in range(5, 0, -1)]
    assert all(0 <= e.materialization.metadata["drift_share"].value <= 1 for e in reports)
    for event in reports:  # six readings an hour, against the same hour of earlier days, by tests of significance
        metadata = event.materialization.metadata
        assert "the same hour of day" in metadata["reference"].value
        tests = {r.data["column"]: r.data for r in metadata["columns"].value.records}
        assert tests["kwh_mean_24h"]["test"] == "K-S p_value" and not tests["hour_of_day"]["drifted"]
    predictions = world.store().read(DEMAND_MODEL.predictions_table)
    assert predictions.num_rows == 5 * 6 and pc.all(pc.is_valid(predictions["prediction"])).as_py()
    performance = [e for e in result.get_asset_materialization_events()
                   if e.asset_key == AssetKey(["meters", "demand_model_performance"])]
    assert len(performance) == 5  # a label known at once is final at once
    assert all({"mae", "r2", "validation_mae"} <= set(e.materialization.metadata) for e in performance)
    assert all(e.materialization.metadata["out_of_sample"].value for e in performance)
    # What retraining watches is pooled over 5 hours (DEMAND_MODEL.performance_pool_partitions): only the
    # fifth has them all, and with 6 readings an hour its pooled MAE is the mean of the hours' MAEs.
    by_hour = {e.partition: e.materialization.metadata for e in performance}
    pooled = [h for h, metadata in by_hour.items() if "pooled_mae" in metadata]
    assert pooled == [hour(HOURS - 1)] and by_hour[hour(HOURS - 1)]["pooled_partitions"].value == 5
    assert by_hour[hour(HOURS - 1)]["pooled_mae"].value == pytest.approx(
        sum(metadata["mae"].value for metadata in by_hour.values()) / 5)
    assert by_hour[hour(HOURS - 1)]["pooled_mae_vs_validation"].value == pytest.approx(
        by_hour[hour(HOURS - 1)]["pooled_mae"].value - by_hour[hour(HOURS - 1)]["validation_mae"].value)
