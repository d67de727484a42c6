"""`mlfs status`: what the stores hold now, read from the real stores (catalog, registry, Dagster)."""

from __future__ import annotations

from collections.abc import Sequence

from mlfs_dagster.builders.monitoring import RETRAIN_TRIGGER_TAG
from mlfs_dagster.core.engine import query
from mlfs_dagster.core.offline_store import OfflineStore
from mlfs_dagster.core.registry import ModelRegistry
from mlfs_dagster.core.specs import System
from mlfs_dagster.settings import Settings


def collect_status(settings: Settings, systems: Sequence[System], instance=None) -> dict:
    """Read only: a read-only MLFS_HOME shows everything but what Dagster's SQLite storage holds (it opens only
    read-write), and says so under `unavailable`."""
    from sqlalchemy import make_url
    from sqlalchemy.exc import OperationalError

    store = settings.offline_store()
    registry = ModelRegistry(settings.mlflow_tracking_uri, settings.mlflow_artifacts)
    unavailable = {}
    try:
        sensor_requests = _sensor_requests(instance)
    except OperationalError as error:
        sensor_requests = []
        unavailable["sensor_requests"] = (f"Dagster's storage under {settings.dagster_home} could not be opened: "
                                          f"{str(error.orig).strip().splitlines()[0]}")
    return {
        "catalog": {"uri": make_url(settings.catalog_uri).render_as_string(hide_password=True),
                    "warehouse": settings.warehouse},
        "tables": [
            {"table": s.identifier, "rows": s.rows, "snapshot_id": str(s.snapshot_id), "location": s.location,
             "metadata_location": s.metadata_location}
            for s in map(store.status, store.list_tables())
        ],
        "models": [
            {"name": m.name, "aliases": m.aliases, "versions": m.versions} for m in registry.models()
        ],
        "drift": {m.registered_name: _latest_drift(store, m.drift_table) for s in systems for m in s.models},
        "performance": {m.registered_name: _realised(store, m.performance_table)
                        for s in systems for m in s.models},
        "sensor_requests": sensor_requests,
        "unavailable": unavailable,
    }


def _latest_drift(store: OfflineStore, table: str) -> dict[str, dict]:
    """Per period: the share of drifted features, whether the period counts as drifted, which columns."""
    if not store.exists(table):
        return {}
    periods: dict[str, dict] = {}
    for row in store.read(table).to_pylist():
        period = periods.setdefault(
            row["day"].date().isoformat() if row["day"].hour == 0 else row["day"].isoformat(),
            {"drift_share": row["drift_share"], "dataset_drift": row["dataset_drift"],
             "drifted": row.get("period_drifted", row["dataset_drift"]), "model_version": row["model_version"],
             "drifted_columns": []},
        )
        if row["drifted"]:
            period["drifted_columns"].append(row["column"])
    return dict(sorted(periods.items()))


def _realised(store: OfflineStore, table: str) -> dict:
    """Per metric: days scored, mean realised value and mean validation value of the serving versions."""
    if not store.exists(table):
        return {}
    summary = query("SELECT metric, count(*) AS days, avg(realised) AS realised, avg(validation) AS validation "
                    "FROM t GROUP BY metric ORDER BY metric", {"t": store.read(table)})
    return {row.pop("metric"): row for row in summary.to_pylist()}


def _sensor_requests(instance) -> list[dict]:
    """Runs the drift sensors requested, newest first."""
    from dagster import DagsterInstance, RunsFilter

    instance = instance or DagsterInstance.get()
    runs = instance.get_runs(filters=RunsFilter(tags={RETRAIN_TRIGGER_TAG: "feature_drift"}), limit=20)
    return [
        {"run_id": run.run_id, "status": run.status.value, "run_key": run.tags.get("dagster/run_key"),
         "tags": {k: v for k, v in run.tags.items() if k.startswith("mlfs/")}}
        for run in runs
    ]
