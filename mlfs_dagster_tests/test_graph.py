"""The asset graph in real in-process Dagster runs over the session's simulated world."""

import datetime as dt

import pyarrow.compute as pc
import pytest
from dagster import AssetKey, AssetSelection, build_sensor_context

from card_fraud.demo import performance
from card_fraud.system import FRAUD_MODEL, FRAUD_VIEW, SYSTEM
from mlfs_dagster_tests.conftest import DAYS, day, groups

TRAINING_SET = FRAUD_VIEW.table


def key(name: str) -> AssetKey:
    return AssetKey([SYSTEM.name, name])


def _rows(store, table, column, first, last):
    from mlfs_dagster.core.offline_store import TimeRange

    data = store.read_range(table, column, TimeRange.of_days(first, last))
    return sorted(map(str, data.to_pylist()))


def test_partitions_materialized_twice_have_the_same_rows(world):
    store = world.store()
    tables = [("card_fraud.raw_transactions", "event_time"), ("card_fraud.raw_fraud_reports", "reported_at"),
              ("card_fraud.card_txn_windows_v1", "event_time"), ("card_fraud.merchant_risk_v1", "event_time")]
    before = {t: _rows(store, t, c, day(20), day(21)) for t, c in tables}
    totals = {t: store.status(t).rows for t, _ in tables}
    assert world.materialize(groups("raw", "features"), (day(20), day(21))).success
    assert {t: _rows(store, t, c, day(20), day(21)) for t, c in tables} == before
    assert {t: store.status(t).rows for t, _ in tables} == totals
    assert all(before.values())


def test_every_check_of_the_backfill_passed(world):
    result = world.materialize(groups("raw", "features"), (day(1), day(2)))
    evaluations = result.get_asset_check_evaluations()
    assert evaluations and all(e.passed for e in evaluations), [e for e in evaluations if not e.passed]


def test_training_set_version_has_no_future_features_and_mature_labels_only(world):
    store = world.store()
    data = store.read(TRAINING_SET)
    assert data.num_rows > 0 and pc.sum(data["is_fraud"]).as_py() > 0
    latest_final = day(DAYS + 1 - 30)  # labels are final 30 days after the transaction
    assert pc.max(data["event_time"]).as_py().date() < latest_final
    for group in ("card_txn_windows", "card_details", "merchant_risk"):
        matched = data[f"{group}_event_time"]
        assert pc.sum(pc.greater(matched, data["event_time"])).as_py() in (0, None)
    assert any(name.startswith("fraud_training_set_v") for name in store.tags(TRAINING_SET))


def test_each_training_set_version_keeps_the_profile_the_next_one_is_checked_against(world):
    from mlfs_dagster.builders.training import PROFILE
    from mlfs_dagster.core.dataset_checks import Profile

    store = world.store()
    for snapshot_id in store.tags(TRAINING_SET).values():
        kept = Profile.from_json(store.summary_at(TRAINING_SET, snapshot_id)[PROFILE])
        data = store.read(TRAINING_SET, ("is_fraud", "amount_to_mean_7d"), snapshot_id=snapshot_id)
        assert kept.level == pytest.approx(pc.mean(data["is_fraud"].cast("double")).as_py())
        assert kept.null_rates["amount_to_mean_7d"] == round(data["amount_to_mean_7d"].null_count / data.num_rows, 4)


def test_training_set_version_rebuilds_exactly_from_its_input_snapshots(world):
    from mlfs_dagster.builders.common import history_start
    from mlfs_dagster.core.training import build_training_set

    metadata = world.instance.get_latest_materialization_event(
        key("fraud_training_set")).asset_materialization.metadata
    snapshots = {table: int(snapshot) for table, snapshot in metadata["input_snapshots"].value.items()}
    store = world.store()
    stored = store.read(TRAINING_SET, snapshot_id=int(metadata["iceberg/snapshot_id"].value))
    rebuilt = build_training_set(store, FRAUD_VIEW, dt.datetime.fromisoformat(metadata["as_of"].value),
                                 history_start(SYSTEM) + FRAUD_VIEW.training_start_offset, snapshots=snapshots).data
    assert rebuilt.equals(stored.cast(rebuilt.schema))


def test_rewritten_raw_files_give_the_same_training_set_rows_in_the_same_order(world):
    # The learner's own validation split (early stopping) depends on row order, so a training set
    # rebuilt from the same data must come back identical, order included, for the same model to follow.
    store = world.store()
    before = store.read(TRAINING_SET)
    for rewritten in (day(12), day(9)):  # later day first: the scan now meets day 12's files before day 9's
        assert world.materialize(groups("raw", "features"), (rewritten, rewritten)).success
    assert world.materialize(AssetSelection.assets(key("fraud_training_set"))).success
    assert store.read(TRAINING_SET).equals(before)


def test_failing_blocking_gate_stops_the_champion_promotion(world):
    import dataclasses

    from mlfs_dagster.builders import system_definitions
    from mlfs_dagster.core.registry import ModelRegistry
    from mlfs_dagster.core.specs import Gate, System

    registry = ModelRegistry(world.settings.mlflow_tracking_uri, world.settings.mlflow_artifacts)
    name = FRAUD_MODEL.registered_name
    champion_before = registry.version_by_alias(name, "champion")
    impossible = dataclasses.replace(FRAUD_MODEL, gates=(Gate("pr_auc", minimum=1.01),), seed=99)
    strict = System(**{**{f.name: getattr(SYSTEM, f.name) for f in dataclasses.fields(System)}, "models": (impossible,)})
    defs = system_definitions(strict)
    result = world.materialize_with(defs, groups("models"))
    gate = [e for e in result.get_asset_check_evaluations() if e.check_name == "gates"]
    assert gate and not gate[0].passed and "pr_auc" in str(gate[0].metadata["failures"].value)
    materialized = {e.asset_key for e in result.get_asset_materialization_events()}
    assert key("fraud_model") in materialized
    assert key("fraud_model_champion") not in materialized
    assert registry.version_by_alias(name, "champion").version == champion_before.version
    assert registry.version_by_alias(name, "challenger").version == registry.latest_version(name).version
    assert registry.latest_version(name).version != champion_before.version


def test_same_training_set_and_seed_is_not_a_new_candidate(world):
    from mlfs_dagster.core.registry import ModelRegistry

    registry = ModelRegistry(world.settings.mlflow_tracking_uri, world.settings.mlflow_artifacts)
    before = registry.latest_version(FRAUD_MODEL.registered_name).version
    result = world.materialize(groups("training", "models"))
    assert result.success
    model = [e for e in result.get_asset_materialization_events() if e.asset_key == key("fraud_model")]
    assert model[0].materialization.metadata["new_candidate"].value is False
    training = [e for e in result.get_asset_materialization_events() if e.asset_key == key("fraud_training_set")]
    assert training[0].materialization.metadata["new_version"].value is False
    assert registry.latest_version(FRAUD_MODEL.registered_name).version == before


def test_predictions_score_every_transaction_with_the_champion_and_drift_is_reported(world):
    from mlfs_dagster.core.offline_store import TimeRange
    from mlfs_dagster.core.registry import ModelRegistry

    result = world.materialize(groups("inference", "monitoring") - performance(), (day(DAYS - 1), day(DAYS)))
    assert result.success
    store, days = world.store(), TimeRange.of_days(day(DAYS - 1), day(DAYS))
    predictions = store.read_range(FRAUD_MODEL.predictions_table, "event_time", days)
    transactions = store.read_range("card_fraud.raw_transactions", "event_time", days, ("transaction_id",))
    assert sorted(predictions["transaction_id"].to_pylist()) == sorted(transactions["transaction_id"].to_pylist())
    registry = ModelRegistry(world.settings.mlflow_tracking_uri, world.settings.mlflow_artifacts)
    champion = registry.version_by_alias(FRAUD_MODEL.registered_name, "champion")
    assert set(predictions["model_version"].to_pylist()) == {champion.version}
    reports = [e for e in result.get_asset_materialization_events() if e.asset_key == key("fraud_model_feature_drift")]
    assert {e.partition for e in reports} == {day(DAYS - 1).isoformat(), day(DAYS).isoformat()}
    for event in reports:
        metadata = event.materialization.metadata
        assert 0 <= metadata["drift_share"].value <= 1
        assert metadata["drifted_column_count"].value == len(metadata["drifted_columns"].value)
        tested = {r.data["column"]: r.data for r in metadata["columns"].value.records}
        assert "card_id" not in tested and tested["amount"]["test"] == "K-S p_value"  # 500 rows a day: a test
        assert "fraud_training_set_v" in metadata["reference"].value
        assert metadata["prediction_drift"].value >= 0 and "validation scores" in metadata["prediction_drift_test"].value
        report = world.home / "reports" / "card_fraud" / "fraud_model_feature_drift" / f"{event.partition}.html"
        assert metadata["report"].value == f"http://localhost:3001/card_fraud/fraud_model_feature_drift/{event.partition}.html"
        text = report.read_text()
        assert text.index(f"<td>{event.partition}</td>") < text.index("</body>") and "decision" in text  # header
        assert metadata["drifted"].value == (metadata["dataset_drift"].value or metadata["prediction_drifted"].value)
        assert "latest 28 days outside drifted periods, up to" in metadata["reference"].value
    # The same reports in MLflow, as artifacts of one monitoring run with the day's figures over time.
    run_id = reports[0].materialization.metadata["mlflow_run_id"].value
    logged = registry.client.list_artifacts(run_id, "drift_reports")
    assert [a.path for a in logged] == [f"drift_reports/{d.isoformat()}.html" for d in (day(DAYS - 1), day(DAYS))]
    assert len(registry.client.get_metric_history(run_id, "drift_share")) == 2


def test_drift_sensor_defers_until_labels_are_final_then_requests_one_run_per_episode(world):
    from dagster import Config, DagsterInstance, MaterializeResult, asset, materialize

    from mlfs_dagster.builders.common import partitions
    from mlfs_dagster.builders.monitoring import sensor_name

    class Report(Config):
        drift_share: float
        model_version: str = "1"

    @asset(key=key("fraud_model_feature_drift"), partitions_def=partitions(SYSTEM))
    def drift_report_with_known_share(config: Report):
        return MaterializeResult(metadata={"drift_share": config.drift_share, "drifted": config.drift_share >= 0.5,
                                           "model_version": config.model_version})

    @asset(key=key("raw_fraud_reports"), partitions_def=partitions(SYSTEM))
    def delivered_reports():
        return MaterializeResult(metadata={"delivery": "published"})

    instance = DagsterInstance.ephemeral()
    sensor = world.defs.resolve_sensor_def(sensor_name(SYSTEM, FRAUD_MODEL))

    def report(partition, share, version="1"):
        config = {"drift_share": share, "model_version": version}
        materialize([drift_report_with_known_share], partition_key=partition, instance=instance,
                    run_config={"ops": {"card_fraud__fraud_model_feature_drift": {"config": config}}})

    def labels_delivered_until(partition):
        materialize([delivered_reports], partition_key=partition, instance=instance)

    def tick():
        with build_sensor_context(instance=instance, definitions=world.defs) as context:
            return sensor(context)

    report("2026-01-10", 0.1)
    report("2026-01-11", 0.8)
    assert not tick().run_requests  # one drifted day is not sustained drift
    report("2026-01-12", 0.9)
    deferred = tick()
    assert not deferred.run_requests and "deferred until labels up to 2026-01-18" in deferred.skip_reason.skip_message
    labels_delivered_until("2026-02-15")  # labels of examples before 2026-01-18 are final from 2026-02-17 00:00
    assert not tick().run_requests
    labels_delivered_until("2026-02-16")  # reports received through 2026-02-16: known until 2026-02-17 00:00
    first = tick()
    assert [r.run_key for r in first.run_requests] == ["fraud_model-retrain-v1-from-2026-01-11T0000"]
    assert "labels are final up to 2026-01-18" in first.run_requests[0].tags["mlfs/decision"]
    report("2026-01-12", 0.95)  # the same report re-materialized: the same episode, the same key
    report("2026-01-13", 0.9)
    assert [r.run_key for r in tick().run_requests] == [first.run_requests[0].run_key]
    report("2026-01-14", 0.9, version="2")  # drift goes on under a retrained model: a new episode
    report("2026-01-15", 0.9, version="2")
    assert [r.run_key for r in tick().run_requests] == [first.run_requests[0].run_key]  # v2's waits for labels
    labels_delivered_until("2026-02-19")
    assert "fraud_model-retrain-v2-from-2026-01-14T0000" in [r.run_key for r in tick().run_requests]


def test_column_descriptions_and_pii_tags_flow_into_training_set_and_predictions_schemas(world):
    assert world.materialize(AssetSelection.assets(key("fraud_model_predictions")), (day(DAYS), day(DAYS))).success
    for name in ("fraud_training_set", "fraud_model_predictions"):
        event = world.instance.get_latest_materialization_event(key(name))
        assert event is not None, name
        columns = {c.name: c for c in event.asset_materialization.metadata["dagster/column_schema"].value.columns}
        assert columns["txn_count_1h"].description == "Card's transactions in the hour before."
        assert "pii" in columns["card_id"].tags
        assert columns["amount"].description.startswith("Amount charged")


def test_realised_performance_never_scores_days_the_model_learnt_from_and_refuses_immature_ones(world):
    matured = (day(10), day(11))  # reports arrived through day 75: labels are final for days before day 46
    assert world.materialize(AssetSelection.assets(key("fraud_model_predictions")), matured).success
    result = world.materialize(performance(), matured)
    assert result.success
    events = [e for e in result.get_asset_materialization_events() if e.asset_key == key("fraud_model_performance")]
    assert sorted(e.partition for e in events) == [d.isoformat() for d in matured]
    for event in events:  # the champion was trained on days 30 to 45: these days would measure memory
        metadata = event.materialization.metadata
        assert metadata["out_of_sample"].value is False and "roc_auc" not in metadata
    immature = world.materialize(performance(), (day(50), day(50)))
    assert not immature.success
    failure = immature.get_step_failure_events()[0].step_failure_data.error.message
    assert "final only once fraud_reports has been delivered up to 2026-03-22" in failure


def test_each_new_day_is_ingested_on_schedule_and_followed_downstream_by_dagster_itself(world):
    from dagster import DagsterInstance, evaluate_automation_conditions

    instance = DagsterInstance.ephemeral()
    before = evaluate_automation_conditions(world.defs, instance, evaluation_time=dt.datetime(2026, 3, 2, 0, 10,
                                                                                              tzinfo=dt.UTC))
    after = evaluate_automation_conditions(world.defs, instance, cursor=before.cursor,
                                           evaluation_time=dt.datetime(2026, 3, 2, 0, 40, tzinfo=dt.UTC))
    raw = [key(f"raw_{name}") for name in ("transactions", "card_profiles", "merchants", "fraud_reports")]
    assert not before.total_requested
    for asset in raw:  # yesterday, once the ingest time has passed
        assert after.get_requested_partitions(asset) == {"2026-03-01"}
    assert not after.get_requested_partitions(key("card_txn_windows"))  # features wait for their inputs


def test_a_failed_run_is_reported_on_the_run_the_asset_and_the_log(world):
    from dagster import build_run_status_sensor_context

    from mlfs_dagster.builders.alerts import FAILURE_TAG, failure_sensor_name

    failed = world.materialize(performance(), (day(60), day(60)))  # labels not final yet: the run fails
    assert not failed.success
    run = world.instance.get_run_by_id(failed.run_id)
    sensor = world.defs.resolve_sensor_def(failure_sensor_name(SYSTEM))
    context = build_run_status_sensor_context(sensor.name, failed.get_run_failure_event(), world.instance, run) \
        .for_run_failure()
    sensor(context)
    cause = world.instance.get_run_by_id(failed.run_id).tags[FAILURE_TAG]
    assert cause.startswith("card_fraud__fraud_model_performance: labels of the examples up to 2026-03-02")
    observation = world.instance.fetch_observations(key("fraud_model_performance"), limit=1).records[0]
    assert observation.asset_observation.metadata["failed_run"].value == failed.run_id


def test_realised_performance_is_scheduled_on_the_partition_whose_labels_just_became_final(world):
    from dagster import build_schedule_context

    schedule = world.defs.resolve_schedule_def("card_fraud__fraud_model_performance")
    with build_schedule_context(instance=world.instance, repository_def=world.defs.get_repository_def(),
                                scheduled_execution_time=dt.datetime(2026, 3, 2, 1, tzinfo=dt.UTC)) as context:
        requests = list(schedule.evaluate_tick(context).run_requests)
    # Reports delivered through 2026-03-01 make final the labels of examples before 2026-01-31.
    assert [(r.partition_key, r.run_key) for r in requests] == [("2026-01-30", "2026-01-30")]
    with build_schedule_context(instance=world.instance, repository_def=world.defs.get_repository_def(),
                                scheduled_execution_time=dt.datetime(2026, 1, 20, 1, tzinfo=dt.UTC)) as context:
        assert not schedule.evaluate_tick(context).run_requests  # nothing has matured yet


def test_a_sustained_fall_of_realised_performance_requests_one_retraining(world):
    from dagster import Config, DagsterInstance, MaterializeResult, asset, materialize

    from mlfs_dagster.builders.common import partitions
    from mlfs_dagster.builders.monitoring import sensor_name

    class Realised(Config):
        gap: float | None  # pr_auc pooled over the last 5 partitions minus validation; None before 5 are scored

    @asset(key=key("fraud_model_performance"), partitions_def=partitions(SYSTEM))
    def performance_with_known_gap(config: Realised):
        pooled = {} if config.gap is None else {"pooled_pr_auc_vs_validation": config.gap}
        return MaterializeResult(metadata={**pooled, "model_version": "1"})

    instance = DagsterInstance.ephemeral()
    sensor = world.defs.resolve_sensor_def(sensor_name(SYSTEM, FRAUD_MODEL))

    def realised(partition, gap):
        materialize([performance_with_known_gap], partition_key=partition, instance=instance,
                    run_config={"ops": {"card_fraud__fraud_model_performance": {"config": {"gap": gap}}}})

    def tick():
        with build_sensor_context(instance=instance, definitions=world.defs) as context:
            return sensor(context)

    for number, gap in enumerate([None, None, None, None, -0.05, -0.2, -0.3]):
        realised(f"2026-02-0{number + 1}", gap)
    assert not tick().run_requests  # two degraded pools: noise, until a third confirms it
    realised("2026-02-08", -0.2)
    requests = tick().run_requests
    assert [r.run_key for r in requests] == ["fraud_model-retrain-v1-performance-from-2026-02-06T0000"]
    assert requests[0].tags["mlfs/trigger"] == "realised_performance"
    realised("2026-02-09", -0.4)  # the same episode goes on: the same key, which the daemon runs once
    assert [r.run_key for r in tick().run_requests] == [requests[0].run_key]


def test_checks_of_a_range_run_give_one_result_per_partition(world):
    from dagster import AssetCheckKey

    history = world.instance.event_log_storage.get_asset_check_execution_history(
        AssetCheckKey(key("quarantine_transactions"), "quarantine_rate"), limit=1_000)
    by_partition = {record.partition: record for record in history if record.partition}
    assert set(by_partition) >= {day(n).isoformat() for n in range(1, DAYS + 1)}  # the backfill's every day
    evaluation = by_partition[day(3).isoformat()].event.dagster_event.event_specific_data
    assert evaluation.passed and evaluation.metadata["quarantined_rows"].value == 0


def test_the_simulated_upstream_lands_every_missing_day_up_to_yesterday(tmp_path, monkeypatch):
    from dagster import DagsterInstance

    from card_fraud.definitions import defs
    from card_fraud.simulator import SimulationConfig, simulate

    yesterday = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
    monkeypatch.setenv("MLFS_LANDING", str(tmp_path))
    simulate(SimulationConfig(start_date=yesterday - dt.timedelta(days=3), days=2, cards=50, merchants=10,
                              transactions_per_day=40), tmp_path)
    nightly = defs.resolve_job_def("simulate_upstream")
    for _ in range(2):  # the second night finds nothing new
        assert nightly.execute_in_process(instance=DagsterInstance.ephemeral()).success
        days = sorted(p.name for p in (tmp_path / "transactions").iterdir())
        assert days == [f"date={yesterday - dt.timedelta(days=n)}" for n in (3, 2, 1, 0)]
