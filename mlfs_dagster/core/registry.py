"""The model registry: MLflow runs, registered model versions and aliases, without Dagster.

One `ModelRegistry` talks to one MLflow store: embedded (a `sqlite:///` tracking URI and a local
artifact folder) or a tracking server (`http://...`), with the same code. Every call goes through an
`MlflowClient` bound to that store's URI, so two registries in one process never see each other.
Two steps cannot be bound that way: `mlflow.sklearn.log_model` only knows the fluent API, and the SQL
registry resolves a new version's `models:/m-...` source through the global tracking URI. Both run with
the process-global URI pointed at this store and restored right after (see `_fluent_tracking_uri`).

Models are saved with cloudpickle rather than skops, MLflow 3's default. skops refuses tree models unless
their types are named as trusted, and MLflow stores that list in the model's own MLmodel file, so it
guards nothing that cloudpickle does not (MLflow gates both behind MLFLOW_ALLOW_PICKLE_DESERIALIZATION);
meanwhile importing skops adds about 3 s to the first model logged in a process, its files are 6x larger,
and it cannot hold arbitrary functions (on-demand transformations in a FunctionTransformer).

mlflow is imported inside the methods: importing it costs about 2 s, and this module is imported by
every Dagster code-location load.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from importlib.metadata import version as installed_version
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd
    from mlflow import MlflowClient
    from mlflow.entities import DatasetInput
    from mlflow.entities.model_registry import ModelVersion, RegisteredModel
    from mlflow.models.model import ModelInfo

MODEL_ARTIFACT_NAME = "model"
FRAMES_PATH = "frames"
DATASET_SOURCE_TYPE = "iceberg"
# Pinned from the running environment: inferring requirements costs MLflow about 5 s per model.
PINNED_PACKAGES = ("scikit-learn", "pandas", "numpy", "cloudpickle")  # and those defining the model's steps

# Guards the process-global tracking URI while log_model runs (see _fluent_tracking_uri).
_FLUENT_LOCK = threading.Lock()


@dataclass(frozen=True)
class RegisteredVersion:
    name: str
    version: str
    run_id: str
    model_uri: str  # "models:/<name>/<version>"
    metrics: dict[str, float]
    tags: dict[str, str]


@dataclass(frozen=True)
class ModelSummary:
    name: str
    versions: list[dict]  # each: version, run_id, aliases, created_at (ISO, UTC), metrics
    aliases: dict[str, str]  # alias -> version


class ModelRegistry:
    """Log, register, alias and load scikit-learn pipelines in one MLflow store."""

    def __init__(self, tracking_uri: str, artifact_location: str, experiment: str = "mlfs"):
        self.tracking_uri = tracking_uri
        self.artifact_location = _as_uri(artifact_location)
        self.experiment = experiment

    @cached_property
    def client(self) -> MlflowClient:
        from mlflow import MlflowClient

        _create_sqlite_folder(self.tracking_uri)
        # The registry is the tracking store: an MLFLOW_REGISTRY_URI in the environment must not
        # send registrations elsewhere.
        return MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)

    # -- writing ---------------------------------------------------------------------------------

    def log_and_register(
        self,
        model,
        name: str,
        metrics: dict[str, float],
        params: dict[str, str | int | float],
        tags: dict[str, str],
        input_example: pd.DataFrame | None = None,
        datasets: list[dict] | None = None,
        frames: dict[str, pd.DataFrame] | None = None,
    ) -> RegisteredVersion:
        """Log a fitted pipeline with its metrics, params, tags, datasets and `frames` (parquet artifacts
        under `frames/`, read back by `run_frame`) in one run, and register it as a new version of
        `name` (created if absent), tagged with `tags`."""
        import mlflow

        run_id = self.client.create_run(self._experiment_id(), tags=tags, run_name=name).info.run_id
        with _fluent_tracking_uri(self.tracking_uri):
            with mlflow.start_run(run_id=run_id):  # log_model attaches the model to the active run
                self._log_run_data(run_id, metrics, params, datasets or [])
                self.log_frames(run_id, frames or {})
                logged_model = _log_sklearn_model(model, input_example)
            # Still under the fluent URI: the SQL registry resolves a models:/m-... source through the
            # global tracking URI, not the client's (a TODO in mlflow's sqlalchemy_store).
            model_version = self._register(name, logged_model, run_id, tags)
        return _registered_version(model_version, metrics={k: float(v) for k, v in metrics.items()})

    def log_frames(self, run_id: str, frames: dict[str, pd.DataFrame]) -> None:
        """Each frame as `frames/<key>.parquet` in the run's artifacts."""
        with tempfile.TemporaryDirectory(prefix="mlfs-frames-") as folder:
            for key, frame in frames.items():
                frame.to_parquet(Path(folder, f"{key}.parquet"), index=False)
            if frames:
                self.client.log_artifacts(run_id, folder, FRAMES_PATH)

    def log_monitoring_run(self, run_name: str, tags: dict[str, str],
                           series: dict[str, list[tuple[dt.datetime, float]]], files: list[Path],
                           artifact_path: str) -> str:
        """A finished run with each metric of `series` logged once per period (step = the period's index,
        timestamp = its start, so MLflow plots them over time) and `files` under `artifact_path`; its id."""
        from mlflow.entities import Metric

        run_id = self.client.create_run(self._experiment_id(), tags=tags, run_name=run_name).info.run_id
        points = [Metric(key, float(value), int(at.timestamp() * 1000), step)
                  for key, values in series.items() for step, (at, value) in enumerate(values)]
        for start in range(0, len(points), 1000):  # MLflow takes at most 1,000 metrics per batch
            self.client.log_batch(run_id, metrics=points[start:start + 1000])
        for path in files:
            self.client.log_artifact(run_id, str(path), artifact_path)
        self.client.set_terminated(run_id)
        return run_id

    def set_alias(self, name: str, alias: str, version: str) -> None:
        self.client.set_registered_model_alias(name, alias, str(version))

    def delete_alias(self, name: str, alias: str) -> None:
        self.client.delete_registered_model_alias(name, alias)

    def _experiment_id(self) -> str:
        from mlflow.exceptions import MlflowException

        if experiment := self.client.get_experiment_by_name(self.experiment):
            return experiment.experiment_id
        try:
            return self.client.create_experiment(self.experiment, artifact_location=self.artifact_location)
        except MlflowException as error:
            if error.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            return self.client.get_experiment_by_name(self.experiment).experiment_id  # created meanwhile

    def _log_run_data(
        self, run_id: str, metrics: dict[str, float], params: dict[str, Any], datasets: list[dict]
    ) -> None:
        from mlflow.entities import Metric, Param

        now_ms = _now_ms()
        self.client.log_batch(
            run_id,
            metrics=[Metric(key, float(value), now_ms, 0) for key, value in metrics.items()],
            params=[Param(key, str(value)) for key, value in params.items()],
        )
        if datasets:
            self.client.log_inputs(run_id, datasets=[_dataset_input(dataset) for dataset in datasets])

    def _register(
        self, name: str, logged_model: ModelInfo, run_id: str, tags: dict[str, str]
    ) -> ModelVersion:
        from mlflow.exceptions import MlflowException

        try:
            self.client.create_registered_model(name)
        except MlflowException as error:
            if error.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        # A tracking server refuses a models:/m-... source without the model id that contains it.
        return self.client.create_model_version(
            name, source=logged_model.model_uri, run_id=run_id, tags=tags, model_id=logged_model.model_id
        )

    # -- reading ---------------------------------------------------------------------------------

    def version_by_alias(self, name: str, alias: str) -> RegisteredVersion | None:
        """The version `alias` points to; None if the alias is unset or the model does not exist."""
        model_version = self._model_version_by_alias(name, alias)
        return self._with_metrics(model_version) if model_version else None

    def get_version(self, name: str, version: str) -> RegisteredVersion:
        """One version with its metrics and tags; LookupError if there is no such version."""
        from mlflow.exceptions import MlflowException

        try:
            return self._with_metrics(self.client.get_model_version(name, str(version)))
        except MlflowException as error:
            if error.error_code == "RESOURCE_DOES_NOT_EXIST":
                raise LookupError(f"Model {name!r} has no version {version!r}") from error
            raise

    def latest_version(self, name: str) -> RegisteredVersion | None:
        """The highest version number of `name`; None if the model has no versions."""
        latest = self.client.search_model_versions(
            _name_filter(name), max_results=1, order_by=["version_number DESC"]
        )
        return self._with_metrics(latest[0]) if latest else None

    def load_by_alias(self, name: str, alias: str):
        """The pipeline `alias` points to; LookupError if the alias is unset or the model missing."""
        model_version = self._model_version_by_alias(name, alias)
        if model_version is None:
            raise LookupError(f"Model {name!r} has no version with alias {alias!r}")
        return self.load_version(name, model_version.version)

    def load_version(self, name: str, version: str):
        """The pipeline registered as `version` of `name`; LookupError if there is no such version."""
        import mlflow

        # A models:/ URI would be resolved against the process-global registry URI (mlflow ignores
        # the one passed in), so resolve it here with this store's client and download from there.
        artifact_uri = self._download_uri(name, str(version))
        with tempfile.TemporaryDirectory(prefix="mlfs-model-") as folder:
            local_path = mlflow.artifacts.download_artifacts(
                artifact_uri=artifact_uri, dst_path=folder, tracking_uri=self.tracking_uri
            )
            return mlflow.sklearn.load_model(local_path)

    def run_frame(self, run_id: str, key: str) -> pd.DataFrame | None:
        """A frame logged with a run (`frames`, `log_frames`); None if the run has none under `key`."""
        import mlflow
        import pandas as pd
        from mlflow.exceptions import MlflowException

        with tempfile.TemporaryDirectory(prefix="mlfs-frame-") as folder:
            try:
                path = mlflow.artifacts.download_artifacts(
                    run_id=run_id, artifact_path=f"{FRAMES_PATH}/{key}.parquet", dst_path=folder,
                    tracking_uri=self.tracking_uri)
            except (MlflowException, OSError):
                return None
            return pd.read_parquet(path)

    def models(self) -> list[ModelSummary]:
        """Every registered model with all its versions and aliases, read from the store."""
        return [self._summary(model.name, model.aliases) for model in self._registered_models()]

    def aliased_version(self, name: str, alias: str) -> str | None:
        """The version number `alias` names, in one query: what a server polls for (None if unset)."""
        # Read the alias map rather than catching get_model_version_by_alias's errors: the SQL store
        # reports an unset alias as INVALID_PARAMETER_VALUE, a code that also means a malformed request.
        from mlflow.exceptions import MlflowException

        try:
            aliases = self.client.get_registered_model(name).aliases
        except MlflowException as error:
            if error.error_code == "RESOURCE_DOES_NOT_EXIST":
                return None
            raise
        return str(aliases[alias]) if alias in aliases else None

    def _model_version_by_alias(self, name: str, alias: str) -> ModelVersion | None:
        version = self.aliased_version(name, alias)
        return None if version is None else self.client.get_model_version(name, version)

    def _download_uri(self, name: str, version: str) -> str:
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_model_version_download_uri(name, version)
        except MlflowException as error:
            if error.error_code == "RESOURCE_DOES_NOT_EXIST":
                raise LookupError(f"Model {name!r} has no version {version!r}") from error
            raise

    def _registered_models(self) -> list[RegisteredModel]:
        models, page_token = [], None
        while True:
            page = self.client.search_registered_models(max_results=100, page_token=page_token)
            models.extend(page)
            page_token = page.token
            if not page_token:
                return models

    def _summary(self, name: str, aliases: dict[str, str]) -> ModelSummary:
        model_versions = self.client.search_model_versions(
            _name_filter(name), order_by=["version_number ASC"]
        )
        aliases_by_version: dict[str, list[str]] = {}
        for alias, version in aliases.items():
            aliases_by_version.setdefault(str(version), []).append(alias)
        versions = [
            {
                "version": str(mv.version),
                "run_id": mv.run_id,
                "aliases": sorted(aliases_by_version.get(str(mv.version), [])),
                "created_at": _iso(mv.creation_timestamp),
                "metrics": self._run_metrics(mv.run_id),
            }
            for mv in model_versions
        ]
        return ModelSummary(name=name, versions=versions, aliases={a: str(v) for a, v in aliases.items()})

    def _with_metrics(self, model_version: ModelVersion) -> RegisteredVersion:
        return _registered_version(model_version, metrics=self._run_metrics(model_version.run_id))

    def _run_metrics(self, run_id: str | None) -> dict[str, float]:
        return dict(self.client.get_run(run_id).data.metrics) if run_id else {}


# -- helpers ---------------------------------------------------------------------------------------


@contextmanager
def _fluent_tracking_uri(tracking_uri: str) -> Iterator[None]:
    """Point mlflow's process-global tracking URI at `tracking_uri` for the block, then restore it.

    `mlflow.sklearn.log_model` has no tracking URI parameter: it creates the logged model through the
    fluent API, which reads the global URI. `set_tracking_uri` also writes MLFLOW_TRACKING_URI into the
    environment, so both are put back. The lock keeps two threads from swapping the URI under each other.
    """
    import mlflow

    with _FLUENT_LOCK:
        previous_env = os.environ.get("MLFLOW_TRACKING_URI")
        previous_global = mlflow.get_tracking_uri() if mlflow.is_tracking_uri_set() else None
        mlflow.set_tracking_uri(tracking_uri)
        try:
            yield
        finally:
            # A URI that only came from the environment is restored as the environment, not as a global.
            mlflow.set_tracking_uri(None if previous_global == previous_env else previous_global)
            if previous_env is not None:
                os.environ["MLFLOW_TRACKING_URI"] = previous_env


def _log_sklearn_model(model, input_example: pd.DataFrame | None) -> ModelInfo:
    """Log `model` to the active run as an MLflow logged model (models:/m-...)."""
    import mlflow.sklearn
    import pandas as pd

    if input_example is not None:  # integer features may be missing when served: declare them as doubles
        input_example = input_example.astype(
            {c: "float64" for c in input_example.columns if pd.api.types.is_integer_dtype(input_example[c])})
    with warnings.catch_warnings():  # what is left is the integer class labels predicted, never missing
        warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer")
        return mlflow.sklearn.log_model(
            sk_model=model,
            name=MODEL_ARTIFACT_NAME,
            serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_CLOUDPICKLE,
            pip_requirements=[f"{package}=={installed_version(package)}" for package in _model_packages(model)],
            input_example=input_example,
        )


def _model_packages(model) -> list[str]:
    """PINNED_PACKAGES and the installed distributions defining the model's steps (a LightGBM classifier
    inside a scikit-learn pipeline: lightgbm), so the logged environment loads the model."""
    from importlib.metadata import packages_distributions

    steps = [model, *(v for v in model.get_params(deep=True).values() if hasattr(v, "get_params"))]
    owners = packages_distributions()
    ours = owners.get(__name__.partition(".")[0], ())  # this project (and its reference system) is no requirement
    found = (d for step in steps for d in owners.get(type(step).__module__.partition(".")[0], ()) if d not in ours)
    return list(dict.fromkeys((*PINNED_PACKAGES, *found)))


def _dataset_input(dataset: dict) -> DatasetInput:
    """An Iceberg table snapshot as an MLflow dataset input.

    MLflow has no Iceberg dataset source, so the table is the dataset's name, the snapshot id its
    digest (both shown side by side in the UI), and `iceberg://<table>@<snapshot>` its source.
    """
    from mlflow.entities import Dataset, DatasetInput, InputTag
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    table, snapshot_id = dataset["table"], str(dataset["snapshot_id"])
    entity = Dataset(
        name=table,
        digest=snapshot_id,
        source_type=DATASET_SOURCE_TYPE,
        source=json.dumps({"uri": f"iceberg://{table}@{snapshot_id}"}),
        profile=json.dumps({"num_rows": int(dataset["rows"])}),
    )
    tags = {
        MLFLOW_DATASET_CONTEXT: dataset.get("role", "training"),
        "iceberg.table": table,
        "iceberg.snapshot_id": snapshot_id,
        "rows": str(dataset["rows"]),
    }
    return DatasetInput(entity, tags=[InputTag(key, value) for key, value in tags.items()])


def _registered_version(model_version: ModelVersion, metrics: dict[str, float]) -> RegisteredVersion:
    return RegisteredVersion(
        name=model_version.name,
        version=str(model_version.version),
        run_id=model_version.run_id,
        model_uri=f"models:/{model_version.name}/{model_version.version}",
        metrics=metrics,
        tags=dict(model_version.tags),
    )


def _name_filter(name: str) -> str:
    escaped = name.replace("'", "\\'")
    return f"name = '{escaped}'"


def _as_uri(location: str) -> str:
    """A local path as a file URI; URIs (file://, s3://, mlflow-artifacts:/) unchanged."""
    if "://" in location or location.startswith("mlflow-artifacts:"):
        return location
    return Path(location).resolve().as_uri()


def _create_sqlite_folder(tracking_uri: str) -> None:
    """SQLite creates the database file but not its folder."""
    if tracking_uri.startswith("sqlite:///"):
        Path(tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)


def _iso(timestamp_ms: int) -> str:
    return dt.datetime.fromtimestamp(timestamp_ms / 1000, tz=dt.UTC).isoformat()


def _now_ms() -> int:
    return int(dt.datetime.now(tz=dt.UTC).timestamp() * 1000)
