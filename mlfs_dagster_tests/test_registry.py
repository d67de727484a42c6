"""The model registry against real MLflow stores (SQLite and local artifact folders under tmp paths)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

from mlfs_dagster.core.registry import ModelRegistry

MODEL = "fraud_model"
TABLE = "training.fraud_training_set"
SNAPSHOT = "4211972870310557251"
TRAINING_SET = {"table": TABLE, "snapshot_id": SNAPSHOT, "rows": 400, "role": "training"}


def transactions(rows: int = 400, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    features = pd.DataFrame(
        {
            "amount": rng.gamma(2.0, 30.0, rows),
            "txn_count_1d": rng.poisson(3, rows).astype(float),
            "channel": rng.choice(["online", "pos", "atm"], rows),
            "country": rng.choice(["US", "DE", "FR", None], rows),
        }
    )
    features.loc[rng.random(rows) < 0.1, "amount"] = np.nan
    suspicious = (features["channel"] == "online") & (features["amount"] > 60)
    is_fraud = suspicious.to_numpy() | (rng.random(rows) < 0.05)
    return features, is_fraud.astype(int)


def fraud_pipeline(max_iter: int) -> Pipeline:
    categorical = Pipeline(
        [
            ("impute", SimpleImputer(strategy="most_frequent")),
            ("encode", OneHotEncoder(handle_unknown="ignore")),
        ]
    )
    preprocess = ColumnTransformer(
        [
            ("numeric", SimpleImputer(strategy="median"), ["amount", "txn_count_1d"]),
            ("categorical", categorical, ["channel", "country"]),
        ]
    )
    classifier = HistGradientBoostingClassifier(max_iter=max_iter, random_state=0)
    return Pipeline([("preprocess", preprocess), ("classify", classifier)])


def new_registry(folder: Path) -> ModelRegistry:
    return ModelRegistry(f"sqlite:///{folder}/mlflow/mlflow.db", str(folder / "mlflow" / "artifacts"))


def log(registry: ModelRegistry, pipeline: Pipeline, sample: pd.DataFrame, pr_auc: float, seed: int):
    return registry.log_and_register(
        pipeline,
        MODEL,
        metrics={"pr_auc": pr_auc},
        params={"max_iter": pipeline[-1].max_iter},
        tags={"training_set": TABLE, "snapshot_id": SNAPSHOT, "seed": str(seed)},
        input_example=sample.head(5),
        datasets=[TRAINING_SET],
    )


def assert_same_probabilities(loaded: Pipeline, original: Pipeline, features: pd.DataFrame) -> None:
    np.testing.assert_array_equal(loaded.predict_proba(features), original.predict_proba(features))


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, np.ndarray]:
    return transactions()


@pytest.fixture(scope="module")
def pipelines(data) -> list[Pipeline]:
    features, labels = data
    return [fraud_pipeline(max_iter).fit(features, labels) for max_iter in (5, 40)]


@pytest.fixture(scope="module")
def store(tmp_path_factory, data, pipelines):
    """One store holding versions 1 and 2 of MODEL; tests that read aliases set them first."""
    folder = tmp_path_factory.mktemp("store")
    registry = new_registry(folder)
    first = log(registry, pipelines[0], data[0], pr_auc=0.4, seed=1)
    second = log(registry, pipelines[1], data[0], pr_auc=0.6, seed=2)
    return registry, (first, second), folder


def test_log_and_register_creates_consecutive_versions(store):
    registry, (first, second), _ = store
    assert (first.version, second.version) == ("1", "2")
    assert second.model_uri == f"models:/{MODEL}/2"
    assert second.metrics == {"pr_auc": 0.6}
    assert second.tags == {"training_set": TABLE, "snapshot_id": SNAPSHOT, "seed": "2"}
    assert registry.latest_version(MODEL) == second
    run = registry.client.get_run(second.run_id)
    assert run.data.params == {"max_iter": "40"}
    assert run.info.status == "FINISHED"


def test_experiment_stores_artifacts_in_the_artifact_folder(store):
    registry, (first, _), folder = store
    artifacts_uri = (folder / "mlflow" / "artifacts").resolve().as_uri()
    assert registry.client.get_experiment_by_name("mlfs").artifact_location == artifacts_uri
    assert registry.client.get_model_version_download_uri(MODEL, first.version).startswith(artifacts_uri)


def test_alias_moves_and_loads_the_aliased_pipeline(store, data, pipelines):
    registry, (first, second), _ = store
    features = data[0]
    assert not np.allclose(pipelines[0].predict_proba(features), pipelines[1].predict_proba(features))

    registry.set_alias(MODEL, "champion", first.version)
    assert registry.version_by_alias(MODEL, "champion") == first
    assert_same_probabilities(registry.load_by_alias(MODEL, "champion"), pipelines[0], features)

    registry.set_alias(MODEL, "champion", second.version)
    assert registry.version_by_alias(MODEL, "champion") == second
    assert registry.aliased_version(MODEL, "champion") == second.version
    assert_same_probabilities(registry.load_by_alias(MODEL, "champion"), pipelines[1], features)
    assert_same_probabilities(registry.load_version(MODEL, first.version), pipelines[0], features)


def test_missing_alias_model_or_version(store):
    registry, _, _ = store
    assert registry.version_by_alias(MODEL, "never_set") is None
    assert registry.version_by_alias("no_such_model", "champion") is None
    assert registry.aliased_version(MODEL, "never_set") is None and registry.aliased_version("nope", "champion") is None
    assert registry.latest_version("no_such_model") is None
    with pytest.raises(LookupError, match="'fraud_model' has no version with alias 'never_set'"):
        registry.load_by_alias(MODEL, "never_set")
    with pytest.raises(LookupError, match="'no_such_model' has no version with alias 'champion'"):
        registry.load_by_alias("no_such_model", "champion")
    with pytest.raises(LookupError, match="'fraud_model' has no version '99'"):
        registry.load_version(MODEL, "99")


def test_models_lists_versions_and_aliases(store):
    registry, (first, second), _ = store
    registry.set_alias(MODEL, "champion", second.version)
    registry.set_alias(MODEL, "challenger", first.version)

    (summary,) = registry.models()
    assert summary.name == MODEL
    assert summary.aliases == {"champion": "2", "challenger": "1"}
    assert [(v["version"], v["run_id"], v["aliases"]) for v in summary.versions] == [
        ("1", first.run_id, ["challenger"]),
        ("2", second.run_id, ["champion"]),
    ]
    assert [v["metrics"] for v in summary.versions] == [{"pr_auc": 0.4}, {"pr_auc": 0.6}]
    assert all(dt.datetime.fromisoformat(v["created_at"]).tzinfo for v in summary.versions)


def test_training_set_is_recorded_as_a_dataset_input(store):
    registry, (first, _), _ = store
    (dataset_input,) = registry.client.get_run(first.run_id).inputs.dataset_inputs
    dataset = dataset_input.dataset
    assert (dataset.name, dataset.digest, dataset.source_type) == (TABLE, SNAPSHOT, "iceberg")
    assert json.loads(dataset.source) == {"uri": f"iceberg://{TABLE}@{SNAPSHOT}"}
    assert json.loads(dataset.profile) == {"num_rows": 400}
    tags = {tag.key: tag.value for tag in dataset_input.tags}
    assert tags["mlflow.data.context"] == "training"
    assert tags["iceberg.snapshot_id"] == SNAPSHOT


def test_two_registries_in_one_process_do_not_see_each_other(store, tmp_path, data, pipelines, monkeypatch):
    import mlflow

    first_registry, _, _ = store
    outside_uri = f"sqlite:///{tmp_path}/outside.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", outside_uri)
    other = new_registry(tmp_path)
    assert other.models() == []
    assert other.version_by_alias(MODEL, "champion") is None

    registered = log(other, pipelines[0], data[0], pr_auc=0.5, seed=3)

    assert registered.version == "1"
    assert [v["version"] for v in other.models()[0].versions] == ["1"]
    assert [v["version"] for v in first_registry.models()[0].versions] == ["1", "2"]
    assert mlflow.get_tracking_uri() == outside_uri, "log_and_register must restore the global tracking URI"
    assert not (tmp_path / "outside.db").exists()


def test_frames_logged_with_a_version_read_back_and_a_missing_one_is_none(store, data):
    registry, (first, second), _ = store
    frame = data[0].head(20).reset_index(drop=True)
    registry.log_frames(first.run_id, {"training_rows": frame})
    pd.testing.assert_frame_equal(registry.run_frame(first.run_id, "training_rows"), frame)
    assert registry.run_frame(second.run_id, "training_rows") is None


def test_a_monitoring_run_holds_one_point_per_period_and_its_files(store, tmp_path):
    registry, _, _ = store
    report = tmp_path / "2026-02-01.html"
    report.write_text("<html>report</html>")
    days = [dt.datetime(2026, 2, d, tzinfo=dt.UTC) for d in (1, 2, 3)]
    run_id = registry.log_monitoring_run("fraud_model monitoring", {"mlfs/model": MODEL},
                                         {"drift_share": list(zip(days, (0.1, 0.6, 0.7), strict=True))},
                                         [report], "drift_reports")
    history = registry.client.get_metric_history(run_id, "drift_share")
    assert [(m.step, m.value, m.timestamp) for m in history] == [
        (i, share, int(day.timestamp() * 1000)) for i, (day, share) in enumerate(zip(days, (0.1, 0.6, 0.7)))]
    assert [a.path for a in registry.client.list_artifacts(run_id, "drift_reports")] == ["drift_reports/2026-02-01.html"]
    assert registry.client.get_run(run_id).info.status == "FINISHED"
