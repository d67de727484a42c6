"""`mlfs status`: what the system holds now, read from the real stores (catalog, registry, Dagster)."""

from __future__ import annotations

from mlfs_dagster.core.offline_store import OfflineStore
from mlfs_dagster.core.registry import ModelRegistry
from mlfs_dagster.defs.monitoring import DRIFT_TABLE, RETRAIN_TRIGGER_TAG
from mlfs_dagster.settings import Settings


def collect_status(settings: Settings, instance=None) -> dict:
    store = OfflineStore(settings.catalog_uri, settings.warehouse)
    registry = ModelRegistry(settings.mlflow_tracking_uri, settings.mlflow_artifacts)
    return {
        "catalog": {"uri": settings.catalog_uri, "warehouse": settings.warehouse},
        "tables": [
            {"table": s.identifier, "rows": s.rows, "snapshot_id": str(s.snapshot_id), "location": s.location}
            for s in map(store.status, store.list_tables())
        ],
        "models": [
            {"name": m.name, "aliases": m.aliases, "versions": m.versions} for m in registry.models()
        ],
        "drift": _latest_drift(store),
        "sensor_requests": _sensor_requests(instance),
    }


def _latest_drift(store: OfflineStore) -> dict[str, dict]:
    """Per day: the share of drifted features, whether the day counts as drifted, and which columns."""
    if not store.exists(DRIFT_TABLE):
        return {}
    days: dict[str, dict] = {}
    for row in store.read(DRIFT_TABLE).to_pylist():
        day = days.setdefault(
            row["day"].date().isoformat(),
            {"drift_share": row["drift_share"], "dataset_drift": row["dataset_drift"],
             "model_version": row["model_version"], "drifted_columns": []},
        )
        if row["drifted"]:
            day["drifted_columns"].append(row["column"])
    return dict(sorted(days.items()))


def _sensor_requests(instance) -> list[dict]:
    """Runs the drift sensor requested, newest first."""
    from dagster import DagsterInstance, RunsFilter

    instance = instance or DagsterInstance.get()
    runs = instance.get_runs(filters=RunsFilter(tags={RETRAIN_TRIGGER_TAG: "feature_drift"}), limit=20)
    return [
        {"run_id": run.run_id, "status": run.status.value, "run_key": run.tags.get("dagster/run_key"),
         "tags": {k: v for k, v in run.tags.items() if k.startswith("mlfs/")}}
        for run in runs
    ]
