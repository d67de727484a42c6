"""`mlfs demo`: the reference card-fraud system end to end, through real Dagster runs.

Simulates the upstream systems up to yesterday (with drift injected late in the period), backfills every
partition in single runs over the whole range, trains and promotes a model, scores and monitors every day,
evaluates the drift sensor and launches what it requests, then prints a summary read back from the stores.
The demo's days are the system's partitions, so the UI shows none missing; from the next day on the
system's daily automation takes over. Every run is recorded against the workspace's code location: the UI
re-executes them like its own.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import dataclass
from pathlib import Path

from card_fraud.simulator import DriftSpec, SimulationConfig, recorded_config, simulate
from mlfs_dagster.settings import Settings

QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
# One process per run, as `dagster.materialize` does: a subprocess per step would import the libraries again.
IN_PROCESS = {"execution": {"config": {"in_process": {}}}}
PROGRESS_DAYS = 15  # the slowest stage (drift reports) runs in chunks, so the terminal shows progress


@dataclass(frozen=True)
class DemoConfig:
    # Merchant rates need 29 days of history and labels 30 days to be final: 31 days of training examples.
    days: int = 90
    drift_day: int = 75
    cards: int = 2_000
    transactions_per_day: int = 4_000
    seed: int = 7

    def simulation(self, start: dt.date, days: int | None = None) -> SimulationConfig:
        drift_start = start + dt.timedelta(days=self.drift_day - 1)
        return SimulationConfig(
            start_date=start, days=days or self.days, cards=self.cards, transactions_per_day=self.transactions_per_day,
            seed=self.seed,
            drifts=(DriftSpec(drift_start, "mean_shift", ("amount",)),
                    DriftSpec(drift_start, "category_mix", ("channel", "country"))),
        )


class Stage:
    """Prints a numbered step and how long it took."""

    def __init__(self, total: int):
        self.total, self.number = total, 0

    def __call__(self, title: str):
        self.number += 1
        print(f"[{self.number}/{self.total}] {title} ...", flush=True)
        return _Timer()


class _Timer:
    def __enter__(self):
        self.start = time.perf_counter()

    def __exit__(self, *exc):
        if exc[0] is None:
            print(f"      done in {time.perf_counter() - self.start:.1f} s", flush=True)


def groups(*layers: str):
    from dagster import AssetSelection

    from card_fraud.system import SYSTEM
    from mlfs_dagster.builders.common import group_name

    return AssetSelection.groups(*(group_name(SYSTEM, layer) for layer in layers))


def performance():
    from dagster import AssetSelection

    from card_fraud.system import FRAUD_MODEL, SYSTEM
    from mlfs_dagster.builders.common import asset_key
    from mlfs_dagster.builders.performance import performance_asset_name

    return AssetSelection.assets(asset_key(SYSTEM, performance_asset_name(FRAUD_MODEL)))


def demo_period(config: DemoConfig, landing: Path, today: dt.date) -> tuple[dt.date, dt.date]:
    """The demo's days: the history already under MLFS_HOME, else `config.days` days, both up to yesterday.

    The partitions start on the simulator's first day, so a demo run on a later day extends the same history
    (the simulator is deterministic: earlier days come out identical) instead of starting a shifted one.
    """
    recorded = recorded_config(landing)
    last = today - dt.timedelta(days=1)
    first = recorded.start_date if recorded else last - dt.timedelta(days=config.days - 1)
    return first, max(last, first)


def run_demo(config: DemoConfig, today: dt.date | None = None) -> dict:
    from dagster import DagsterInstance, build_sensor_context

    _quiet_libraries()
    settings = Settings.from_env()
    landing = Path(settings.landing)
    first, last = demo_period(config, landing, today or dt.datetime.now(dt.UTC).date())
    days = (last - first).days + 1
    stage = Stage(total=8)
    with stage(f"Simulating {days} days of card traffic, {first}..{last}, into {landing}"):
        simulated = simulate(config.simulation(first, days), landing)
        print(f"      {simulated.rows}")

    # Imported once the landing zone holds the simulation: the system's partitions start on its first day.
    from card_fraud.system import FRAUD_MODEL, SYSTEM
    from mlfs_dagster.builders.monitoring import REASON_TAG, sensor_name
    from mlfs_dagster.status import collect_status

    instance = DagsterInstance.get()
    run = Runner(instance)
    sensor = run.definitions.resolve_sensor_def(sensor_name(SYSTEM, FRAUD_MODEL))
    with stage(f"Backfilling raw sources, feature groups and the online store {first}..{last} in one run"):
        run(groups("raw", "features", "serving"), (first, last))
    with stage("Building the training set, training, gating and promoting the model"):
        run(groups("training", "models"))
    matured = last - FRAUD_MODEL.feature_view.label.maturity
    with stage(f"Scoring and monitoring drift for {first}..{last}, in runs of {PROGRESS_DAYS} days"):
        for start in range(0, days, PROGRESS_DAYS):
            chunk = (first + dt.timedelta(days=start), min(last, first + dt.timedelta(days=start + PROGRESS_DAYS - 1)))
            run(groups("inference", "monitoring") - performance(), chunk)
            print(f"      {(chunk[1] - first).days + 1}/{days} days scored and monitored", flush=True)
    with stage(f"Realised performance for {first}..{matured}, the days whose labels are final"):
        if matured >= first:
            run(performance(), (first, matured))
    with stage("Evaluating the drift sensor and launching what it requests"):
        with build_sensor_context(instance=instance, definitions=run.definitions) as context:
            result = sensor(context)
        if result.skip_reason:
            print(f"      {result.skip_reason.skip_message}")
        for request in result.run_requests or []:
            if _already_requested(instance, sensor.name, request.run_key):  # as the daemon dedupes run keys
                print(f"      {request.run_key}: already run for this drift episode")
                continue
            tags = {**request.tags, "dagster/run_key": request.run_key, "dagster/sensor_name": sensor.name}
            print(f"      {request.tags[REASON_TAG]}")
            outcome = _model_outcome(run(groups("training", "models"), tags=tags))
            print(f"      retraining run {request.run_key}: {outcome}")
    with stage("Maintaining the offline store (compaction, snapshot expiry, orphan files)"):
        run(groups("maintenance"))
    with stage("Reading the stores back"):
        status = collect_status(settings, [SYSTEM], instance)
    summary = _summary(status, landing)
    _print_summary(summary, status)
    return summary


class StageFailed(RuntimeError):
    """A demo run failed: the message lists the failed steps and checks."""


class Runner:
    """Runs the demo's stages in the workspace's code location, so the UI can re-execute every one of them."""

    def __init__(self, instance):
        from card_fraud.definitions import defs
        from mlfs_dagster.runs import CodeLocation

        self.instance, self.definitions = instance, defs
        self.location = CodeLocation("card_fraud", "card_fraud.definitions")

    def __call__(self, selection, days: tuple[dt.date, dt.date] | None = None, tags=None):
        from mlfs_dagster.builders.common import range_tags

        result = self.location.run(
            self.instance, selection, run_config={**QUIET, **IN_PROCESS},
            tags={**(range_tags(*(d.isoformat() for d in days)) if days else {}), **(tags or {})},
        )
        if not result.success:
            failed_checks = [f"{e.asset_key.to_user_string()}:{e.check_name} {e.metadata}"
                             for e in result.get_asset_check_evaluations() if not e.passed]
            failed_steps = [f"{e.step_key}: {e.step_failure_data.error.message.strip()}"
                            for e in result.get_step_failure_events()]
            raise StageFailed("\n".join(["run " + result.run_id + " failed", *failed_checks, *failed_steps]))
        return result


def _already_requested(instance, sensor_name: str, run_key: str) -> bool:
    from dagster import RunsFilter

    tags = {"dagster/sensor_name": sensor_name, "dagster/run_key": run_key}
    return bool(instance.get_runs(filters=RunsFilter(tags=tags), limit=1))


def _model_outcome(result) -> str:
    """What a training run decided: a new candidate and its version, or why there was none."""
    from dagster import AssetKey

    from card_fraud.system import FRAUD_MODEL, SYSTEM

    events = [e for e in result.get_asset_materialization_events()
              if e.asset_key == AssetKey([SYSTEM.name, FRAUD_MODEL.name])]
    metadata = events[0].materialization.metadata
    if metadata["new_candidate"].value:
        return f"new candidate v{metadata['model_version'].value}"
    return f"no new candidate ({metadata['reason'].value})"


def _quiet_libraries() -> None:
    """The demo prints its own progress; library chatter (pickle-format notices, progress bars) hides it."""
    import logging
    import os
    import warnings

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "ERROR")  # mlflow resets its logger's level on import
    logging.getLogger("dagster").setLevel(logging.WARNING)  # the sensor's decisions are printed by the demo
    warnings.filterwarnings("ignore", module="mlflow")


def _summary(status: dict, landing: Path) -> dict:
    from card_fraud.system import FRAUD_MODEL

    truth = json.loads((landing / "_ground_truth" / "drift.json").read_text())
    injected = min(d["start"] for d in truth["drifts"]) if truth["drifts"] else None
    drift = status["drift"][FRAUD_MODEL.registered_name]
    flagged = sorted(day for day, d in drift.items() if d["drifted"])
    first_flag = flagged[0] if flagged else None
    delay = (dt.date.fromisoformat(first_flag) - dt.date.fromisoformat(injected)).days if injected and first_flag else None
    return {
        "drift_injected_from": injected,
        "drift_flagged_on": flagged,
        "detection_delay_days": delay,
        "false_alarms_before_injection": [d for d in flagged if injected and d < injected],
        "detected_within_3_days": delay is not None and 0 <= delay <= 3,
    }


def _print_summary(summary: dict, status: dict) -> None:
    from card_fraud.system import FRAUD_MODEL

    print("\n=== mlfs demo summary ===")
    print(f"catalog {status['catalog']['uri']}  warehouse {status['catalog']['warehouse']}")
    for table in status["tables"]:
        print(f"  {table['table']:<36} {table['rows']:>9} rows  snapshot {table['snapshot_id']}")
    for model in status["models"]:
        print(f"model {model['name']}: {len(model['versions'])} versions, aliases {model['aliases']}")
        for version in model["versions"][-3:]:
            metrics = {k: round(v, 3) for k, v in version.get("metrics", {}).items() if k in ("pr_auc", "roc_auc")}
            print(f"  v{version['version']}  {metrics}  aliases {version['aliases']}")
    realised = status["performance"].get(FRAUD_MODEL.registered_name, {})
    print("realised performance: " + (", ".join(
        f"{metric} {figures['realised']:.3f} (validation {figures['validation']:.3f}, {figures['days']} days)"
        for metric, figures in realised.items() if metric in ("pr_auc", "roc_auc") and figures["validation"])
        or "no day after the model's training data has final labels yet"))
    print(f"drift injected from {summary['drift_injected_from']}; flagged on {summary['drift_flagged_on']}")
    print(f"  detection delay {summary['detection_delay_days']} days; "
          f"false alarms before injection: {summary['false_alarms_before_injection'] or 'none'}")
    print(f"sensor requests: {[r['tags'].get('mlfs/drifted_partitions', '')[:60] for r in status['sensor_requests']]}")
    print("\nOpen the UI:  make dev   (or: DAGSTER_HOME=.mlfs/dagster .venv/bin/dagster dev -w workspace.yaml)")
