"""The asset graph in real in-process Dagster runs over the session's simulated world."""

import datetime as dt

import pyarrow.compute as pc
from dagster import AssetKey, AssetSelection, build_sensor_context

from mlfs_dagster_tests.conftest import DAYS, day


def _rows(store, table, column, first, last):
    from mlfs_dagster.core.offline_store import TimeRange

    data = store.read_range(table, column, TimeRange.of_days(first, last))
    return sorted(map(str, data.to_pylist()))


def test_partitions_materialized_twice_have_the_same_rows(world):
    store = world.store()
    tables = [("raw.transactions", "event_time"), ("raw.fraud_reports", "reported_at"),
              ("features.card_txn_windows", "event_time"), ("features.merchant_risk", "event_time")]
    before = {t: _rows(store, t, c, day(20), day(21)) for t, c in tables}
    totals = {t: store.status(t).rows for t, _ in tables}
    assert world.materialize(AssetSelection.groups("raw", "features"), (day(20), day(21))).success
    assert {t: _rows(store, t, c, day(20), day(21)) for t, c in tables} == before
    assert {t: store.status(t).rows for t, _ in tables} == totals
    assert all(before.values())


def test_every_check_of_the_backfill_passed(world):
    result = world.materialize(AssetSelection.groups("raw", "features"), (day(1), day(2)))
    evaluations = result.get_asset_check_evaluations()
    assert evaluations and all(e.passed for e in evaluations), [e for e in evaluations if not e.passed]


def test_training_set_version_has_no_future_features_and_mature_labels_only(world):
    from mlfs_dagster.fraud.training import TABLE

    store = world.store()
    data = store.read(TABLE)
    assert data.num_rows > 0 and pc.sum(data["is_fraud"]).as_py() > 0
    latest_final = day(DAYS + 1 - 30)  # labels are final 30 days after the transaction
    assert pc.max(data["event_time"]).as_py().date() < latest_final
    for group in ("card_txn_windows", "card_details", "merchant_risk"):
        matched = data[f"{group}_event_time"]
        assert pc.sum(pc.greater(matched, data["event_time"])).as_py() in (0, None)
    assert any(name.startswith("fraud_training_set_v") for name in store.tags(TABLE))


def test_training_set_version_rebuilds_exactly_from_its_input_snapshots(world):
    from mlfs_dagster.fraud.model import FRAUD_VIEW
    from mlfs_dagster.fraud.training import TABLE, build_training_set
    from mlfs_dagster.partitions import DAILY

    metadata = world.instance.get_latest_materialization_event(
        AssetKey("fraud_training_set")).asset_materialization.metadata
    snapshots = {table: int(snapshot) for table, snapshot in metadata["input_snapshots"].value.items()}
    store = world.store()
    stored = store.read(TABLE, snapshot_id=int(metadata["iceberg/snapshot_id"].value))
    rebuilt = build_training_set(store, dt.datetime.fromisoformat(metadata["as_of"].value),
                                 DAILY.start + FRAUD_VIEW.warm_up, snapshots=snapshots).data
    assert rebuilt.equals(stored.cast(rebuilt.schema))


def test_rewritten_raw_files_give_the_same_training_set_rows_in_the_same_order(world):
    # The learner's own validation split (early stopping) depends on row order, so a training set
    # rebuilt from the same data must come back identical, order included, for the same model to follow.
    from mlfs_dagster.fraud.training import TABLE

    store = world.store()
    before = store.read(TABLE)
    for rewritten in (day(12), day(9)):  # later day first: the scan now meets day 12's files before day 9's
        assert world.materialize(AssetSelection.groups("raw", "features"), (rewritten, rewritten)).success
    assert world.materialize(AssetSelection.assets("fraud_training_set")).success
    assert store.read(TABLE).equals(before)


def test_failing_blocking_gate_stops_the_champion_promotion(world):
    from mlfs_dagster.core.registry import ModelRegistry
    from mlfs_dagster.defs.models import ModelGateResource

    registry = ModelRegistry(world.settings.mlflow_tracking_uri, world.settings.mlflow_artifacts)
    champion_before = registry.version_by_alias("fraud_model", "champion")
    result = world.materialize(AssetSelection.groups("models"),
                               resources={"model_gate": ModelGateResource(min_pr_auc=1.01)})
    gate = [e for e in result.get_asset_check_evaluations() if e.check_name == "performance_gate"]
    assert gate and not gate[0].passed
    materialized = {e.asset_key for e in result.get_asset_materialization_events()}
    assert AssetKey("fraud_model") in materialized
    assert AssetKey("fraud_model_champion") not in materialized
    assert registry.version_by_alias("fraud_model", "champion").version == champion_before.version
    assert registry.latest_version("fraud_model").version != champion_before.version


def test_predictions_score_every_transaction_with_the_champion_and_drift_is_reported(world):
    from mlfs_dagster.core.offline_store import TimeRange
    from mlfs_dagster.core.registry import ModelRegistry

    result = world.materialize(AssetSelection.groups("inference", "monitoring"), (day(DAYS - 1), day(DAYS)))
    assert result.success
    store, days = world.store(), TimeRange.of_days(day(DAYS - 1), day(DAYS))
    predictions = store.read_range("inference.fraud_predictions", "event_time", days)
    transactions = store.read_range("raw.transactions", "event_time", days, ("transaction_id",))
    assert sorted(predictions["transaction_id"].to_pylist()) == sorted(transactions["transaction_id"].to_pylist())
    champion = ModelRegistry(world.settings.mlflow_tracking_uri, world.settings.mlflow_artifacts) \
        .version_by_alias("fraud_model", "champion")
    assert set(predictions["model_version"].to_pylist()) == {champion.version}
    reports = [e for e in result.get_asset_materialization_events()
               if e.asset_key == AssetKey("feature_drift_report")]
    assert {e.partition for e in reports} == {day(DAYS - 1).isoformat(), day(DAYS).isoformat()}
    for event in reports:
        metadata = event.materialization.metadata
        assert 0 <= metadata["drift_share"].value <= 1
        assert (world.home / "reports" / "feature_drift" / f"{event.partition}.html").stat().st_size > 0


def test_drift_sensor_requests_one_run_per_drift_event(world):
    from dagster import Config, DagsterInstance, MaterializeResult, asset, materialize

    from mlfs_dagster.defs.monitoring import drift_retraining_sensor
    from mlfs_dagster.partitions import DAILY

    class Report(Config):
        drift_share: float

    @asset(name="feature_drift_report", partitions_def=DAILY)
    def drift_report_with_known_share(config: Report):
        return MaterializeResult(metadata={"drift_share": config.drift_share})

    instance = DagsterInstance.ephemeral()

    def report(partition, share):
        run_config = {"ops": {"feature_drift_report": {"config": {"drift_share": share}}}}
        materialize([drift_report_with_known_share], partition_key=partition, instance=instance,
                    run_config=run_config)

    def tick(cursor):
        with build_sensor_context(instance=instance, definitions=world.defs, cursor=cursor) as context:
            return drift_retraining_sensor(context)

    report("2026-01-10", 0.1)
    report("2026-01-11", 0.8)
    report("2026-01-12", 0.9)
    first = tick(None)
    assert len(first.run_requests) == 1
    assert "2026-01-11,2026-01-12" in first.run_requests[0].tags["mlfs/drifted_partitions"]
    assert "2026-01-10" not in first.run_requests[0].tags["mlfs/drifted_partitions"]

    assert not tick(first.cursor).run_requests  # the same events request nothing again
    report("2026-01-13", 0.2)
    calm = tick(first.cursor)
    assert not calm.run_requests
    report("2026-01-14", 0.7)
    second = tick(calm.cursor)
    assert len(second.run_requests) == 1 and second.run_requests[0].run_key != first.run_requests[0].run_key
