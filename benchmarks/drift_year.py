"""A year of the card-fraud system with drift episodes, scored against the simulator's ground truth.

Simulates a year of card traffic with several drift episodes (14 days each) separated by quiet weeks, then
operates the reference system through its real Dagster assets and its real retraining sensor:

  1. raw sources and feature groups are backfilled over the history up to the first training day, and the
     first model is trained, gated and promoted (the system goes live);
  2. from then on, in chunks of CHUNK_DAYS days (instead of one run per day, to fit the time budget): the
     chunk's raw partitions and features are ingested (no run ever sees a later day), its transactions scored
     and monitored for drift, realised performance scored for the days whose labels became final, and the
     retraining sensor evaluated; the runs it requests (training set, model, champion) are launched at once.

The training set is rebuilt only by the first training and by the sensor's retraining runs: the weekly
rebuild schedule of daily operation is left out, so every retrain is one the sensor asked for.

Monitoring is scored against `_ground_truth/drift.json`:
  - per episode: first partition flagged as drifted (features at the drift share, or a column risen above its recent level), delay in partitions, missed or not, the first run
    of flags long enough for the sensor, the peak drift share, the first partition where one of the
    episode's own columns drifted, realised PR-AUC before/during;
  - false alarms: sustained drift (a run of flagged partitions as long as the sensor needs, which is what
    raises an alarm) starting in a quiet period, outside every episode and GRACE_DAYS after its end; single
    flagged quiet partitions are listed apart (a partition's verdict, shown in the UI, no alarm);
  - retrain requests: what triggered them, whether the trigger lies in a quiet period, whether the new
    version did better than the previous champion on the same later days with final labels;
  - the time and size of one daily drift report, and `feature_drift` on 20,000 vs 20,000 rows.

    .venv/bin/python benchmarks/drift_year.py                   # 365 days, 1,000 cards, 2,000 txns/day
    .venv/bin/python benchmarks/drift_year.py --quick           # smoke run: 130 days, 800 cards, 1,600 txns/day
    .venv/bin/python benchmarks/drift_year.py --home /tmp/year  # keep the stores to look at afterwards
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import statistics
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# Nothing imported here reads the environment; card_fraud.system does (its partitions start on the simulated
# first day), so it is imported only once `use_home` has pointed the environment at the benchmark's folder.
from card_fraud.demo import Runner, _already_requested, _quiet_libraries, groups, performance
from card_fraud.simulator import DriftSpec, SimulationConfig, simulate
from mlfs_dagster.cli import init_dagster_home
from mlfs_dagster.settings import Settings, use_home

CHUNK_DAYS = 7
# After an episode's end, flags are neither detections nor false alarms for as long as the longest window of the
# features it moves (7 days: a 7-day sum still holds the episode, and drifts back when it leaves the window).
GRACE_DAYS = 7
BASELINE_DAYS = 14  # realised PR-AUC of an episode is compared with this many days before it
REPORT_REPEATS = 3
DIRECT_ROWS = 20_000  # the daily volume the drift report should handle


@dataclass(frozen=True)
class PlannedDrift:
    """Drift injected from day `day` (1-based) for `length` days; several drifts on one day form one episode."""

    day: int
    kind: str
    columns: tuple[str, ...]
    strength: float
    length: int = 14


@dataclass(frozen=True)
class Plan:
    days: int
    cards: int
    transactions_per_day: int
    first_training_day: int  # labels mature in 30 days, training rows start 29 days in: train after ~day 90
    drifts: tuple[PlannedDrift, ...]
    seed: int = 7


def year_drifts(first: int = 115, every: int = 29) -> tuple[PlannedDrift, ...]:
    """Eight 14-day episodes, one every `every` days: a quiet fortnight between two of them.

    The first is the demo's combined drift (amount, channel and country at once), a positive control that
    should reach the sensor; the others change one thing each, by growing strengths.
    """
    single = [("mean_shift", ("amount",), 0.1), ("category_mix", ("channel",), 0.5),
              ("mean_shift", ("amount",), 0.3), ("category_mix", ("country",), 1.0),
              ("mean_shift", ("amount",), 1.0), ("category_mix", ("channel",), 1.0),
              ("concept_change", (), 1.0)]
    control = (PlannedDrift(first, "mean_shift", ("amount",), 1.0),
               PlannedDrift(first, "category_mix", ("channel", "country"), 1.0))
    return control + tuple(PlannedDrift(first + every * (i + 1), kind, columns, strength)
                           for i, (kind, columns, strength) in enumerate(single))


FULL = Plan(days=365, cards=1_000, transactions_per_day=2_000, first_training_day=90, drifts=year_drifts())
# Long enough for one retrain: the sensor needs 7 days of final labels from the onset, 37 days after it.
QUICK = Plan(days=130, cards=800, transactions_per_day=1_600, first_training_day=90,
             drifts=(PlannedDrift(92, "mean_shift", ("amount",), 1.0),
                     PlannedDrift(92, "category_mix", ("channel", "country"), 1.0),
                     PlannedDrift(110, "mean_shift", ("amount",), 0.3)))
GO_LIVE_ATTEMPTS = 4  # a first model that fails its gates is retried with another chunk of labelled days


# --- Setting up -----------------------------------------------------------------------------------------------



def nth_day(start: dt.date, number: int) -> dt.date:
    """The date of day `number`, day 1 being `start`."""
    return start + dt.timedelta(days=number - 1)


def simulation(plan: Plan, start: dt.date) -> SimulationConfig:
    drifts = tuple(DriftSpec(nth_day(start, d.day), d.kind, d.columns, d.strength,
                             end=nth_day(start, d.day + d.length)) for d in plan.drifts)
    return SimulationConfig(start_date=start, days=plan.days, cards=plan.cards,
                            transactions_per_day=plan.transactions_per_day, seed=plan.seed, drifts=drifts)


# --- Ground truth -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Episode:
    """Drifts injected over the same days, as the simulator recorded them; `end` is exclusive."""

    number: int
    start: dt.date
    end: dt.date
    drifts: tuple[dict, ...]

    @property
    def kind(self) -> str:
        return "+".join(dict.fromkeys(d["kind"] for d in self.drifts))

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(c for d in self.drifts for c in d["columns"]))

    @property
    def strength(self) -> str:
        return "/".join(dict.fromkeys(f"{d['strength']:g}" for d in self.drifts))

    def covers(self, day: dt.date, grace: int = 0) -> bool:
        return self.start <= day < self.end + dt.timedelta(days=grace)


def ground_truth(landing: Path) -> list[Episode]:
    recorded = json.loads((landing / "_ground_truth" / "drift.json").read_text())["drifts"]
    by_days: dict[tuple[str, str], list[dict]] = {}
    for drift in recorded:
        by_days.setdefault((drift["start"], drift["end"]), []).append(drift)
    return [Episode(number, dt.date.fromisoformat(start), dt.date.fromisoformat(end), tuple(drifts))
            for number, ((start, end), drifts) in enumerate(sorted(by_days.items()), start=1)]


def episode_of(day: dt.date, episodes: list[Episode], grace: int = GRACE_DAYS) -> Episode | None:
    return next((e for e in episodes if e.covers(day, grace)), None)


# --- Operating the system -------------------------------------------------------------------------------------


@dataclass
class RetrainRequest:
    requested_on: dt.date
    run_key: str
    trigger: str  # feature_drift or realised_performance
    onset: dt.date  # the first flagged partition of the episode that asked for it
    flagged_days: int
    outcome: dict  # the model and champion assets' metadata of the run


@dataclass
class Operation:
    """What happened while the system ran: the sensor's requests and its latest skip reason."""

    requests: list[RetrainRequest] = field(default_factory=list)
    last_tick: str = ""  # what the sensor's latest evaluation decided
    serving_from: dt.date | None = None
    scored_until: dt.date | None = None  # realised performance materialized up to this day


class System:
    """The reference system's runs and sensor, in the benchmark's MLFS_HOME."""

    def __init__(self):
        from dagster import DagsterInstance

        from card_fraud.system import FRAUD_MODEL, SYSTEM
        from mlfs_dagster.builders.monitoring import sensor_name

        self.instance = DagsterInstance.get()
        self.run = Runner(self.instance)
        self.sensor = self.run.definitions.resolve_sensor_def(sensor_name(SYSTEM, FRAUD_MODEL))
        self.maturity = FRAUD_MODEL.feature_view.label.maturity
        self.operation = Operation()

    def ingest(self, first: dt.date, last: dt.date) -> None:
        self.run(groups("raw", "features"), (first, last))

    def train(self, tags=None) -> dict:
        """A training run (training set, model, champion). A candidate failing its gates, or a training set
        failing its checks, is an outcome of the run, not an error of the benchmark."""
        from card_fraud.demo import IN_PROCESS, QUIET

        # The demo's runner, minus its raising on failure: its run config, recorded against the code location.
        result = self.run.location.run(self.instance, groups("training", "models"), tags=tags or {},
                                       run_config={**QUIET, **IN_PROCESS})
        outcome = run_outcome(result)
        if not result.success:
            outcome["failed"] = run_failures(result)
        return outcome

    def has_champion(self) -> bool:
        from card_fraud.system import FRAUD_MODEL
        from mlfs_dagster.core.registry import ModelRegistry

        settings = Settings.from_env()
        registry = ModelRegistry(settings.mlflow_tracking_uri, settings.mlflow_artifacts)
        return registry.version_by_alias(FRAUD_MODEL.registered_name, "champion") is not None

    def serve_and_monitor(self, first: dt.date, last: dt.date) -> None:
        self.run(groups("inference", "monitoring") - performance(), (first, last))
        self.operation.serving_from = self.operation.serving_from or first

    def score_matured(self, today: dt.date) -> None:
        """Realised performance of the served days whose labels became final by `today`."""
        op = self.operation
        matured = today - self.maturity
        first = op.serving_from
        if op.scored_until:
            first = max(first, op.scored_until + dt.timedelta(days=1))
        if first <= matured:
            self.run(performance(), (first, matured))
            op.scored_until = matured

    def evaluate_sensor(self, today: dt.date) -> list[RetrainRequest]:
        """One sensor tick, and the retraining runs it requests (each run key once, as the daemon does)."""
        from dagster import build_sensor_context

        with build_sensor_context(instance=self.instance, definitions=self.run.definitions) as context:
            result = self.sensor(context)
        launched, repeated = [], 0
        for request in result.run_requests or []:
            if _already_requested(self.instance, self.sensor.name, request.run_key):
                repeated += 1
                continue
            tags = {**request.tags, "dagster/run_key": request.run_key, "dagster/sensor_name": self.sensor.name}
            launched.append(retrain_request(today, request, self.train(tags=tags)))
        self.operation.requests += launched
        self.operation.last_tick = (result.skip_reason.skip_message if result.skip_reason else
                                    f"{len(launched)} new run requests, {repeated} already run")
        return launched


def retrain_request(today: dt.date, request, outcome: dict) -> RetrainRequest:
    from mlfs_dagster.builders.monitoring import DRIFTED_PARTITIONS_TAG, RETRAIN_TRIGGER_TAG

    flagged = [p for p in request.tags.get(DRIFTED_PARTITIONS_TAG, "").split(",") if p]
    return RetrainRequest(today, request.run_key, request.tags.get(RETRAIN_TRIGGER_TAG, "?"),
                          dt.date.fromisoformat(flagged[0][:10]), len(flagged), outcome)


def run_failures(result) -> str:
    """Failed checks (with what failed) and failed steps, in one line."""
    checks = [f"{e.check_name}: {e.metadata['failures'].value if 'failures' in e.metadata else e.metadata}"
              for e in result.get_asset_check_evaluations() if not e.passed]
    steps = [e.step_key for e in result.get_step_failure_events()]
    return "; ".join([*checks, f"failed steps {steps}"])


def run_outcome(result) -> dict:
    """The candidate's and the champion's metadata in a training run: new version, promoted, previous champion."""
    outcome = {}
    for event in result.get_asset_materialization_events():
        name = event.asset_key.path[-1]
        outcome[name] = {k: v.value for k, v in event.materialization.metadata.items()
                         if k in ("new_candidate", "model_version", "reason", "promoted", "champion_version",
                                  "previous_champion", "pr_auc", "roc_auc")}
    return outcome


def go_live(system: System, start: dt.date, plan: Plan, started: float) -> int:
    """History up to the first training day in one run, then a first champion; returns the last day ingested.

    A first model that fails its gates leaves the system without a champion: another chunk of days brings more
    labelled examples, and training is tried again.
    """
    print(f"history: raw and features for days 1..{plan.first_training_day} in one run, then first training",
          flush=True)
    last = plan.first_training_day
    system.ingest(start, nth_day(start, last))
    for _ in range(GO_LIVE_ATTEMPTS):
        outcome = system.train()
        elapsed = time.perf_counter() - started
        print(f"  after day {last}: {describe_outcome(outcome)}  ({elapsed:.0f} s)", flush=True)
        if system.has_champion():
            return last
        system.ingest(nth_day(start, last + 1), nth_day(start, last + CHUNK_DAYS))
        last += CHUNK_DAYS
    raise SystemExit(f"no model passed its gates after {GO_LIVE_ATTEMPTS} attempts: nothing to serve")


def operate(system: System, start: dt.date, plan: Plan, started: float) -> None:
    """The history and a first champion, then the live year in chunks."""
    live_from = go_live(system, start, plan, started) + 1
    for first_number in range(live_from, plan.days + 1, CHUNK_DAYS):
        last_number = min(plan.days, first_number + CHUNK_DAYS - 1)
        first, last = nth_day(start, first_number), nth_day(start, last_number)
        system.ingest(first, last)
        system.serve_and_monitor(first, last)
        system.score_matured(last)
        launched = system.evaluate_sensor(last)
        print(f"  days {first_number:>3}..{last_number:<3} ({first}..{last}) served and monitored"
              f"  ({time.perf_counter() - started:.0f} s)", flush=True)
        for request in launched:
            print(f"    retraining {request.run_key} ({request.trigger}): {describe_outcome(request.outcome)}",
                  flush=True)
    print(f"  the sensor's last tick: {system.operation.last_tick[:300]}")


def describe_outcome(outcome: dict) -> str:
    model, champion = outcome.get("fraud_model", {}), outcome.get("fraud_model_champion", {})
    if not model:
        return f"no candidate: {outcome.get('failed')}"
    if not model.get("new_candidate"):
        return f"no new candidate ({model.get('reason')})"
    if champion.get("promoted"):
        return f"v{model.get('model_version')} promoted (pr_auc {fmt(model.get('pr_auc'))})"
    return f"v{model.get('model_version')} not promoted ({champion.get('reason') or outcome.get('failed')})"


# --- Reading the stores back ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Report:
    day: dt.date
    drift_share: float
    drifted: bool  # what the sensor counts: features at the drift share, or a column risen above its recent level
    risen_columns: tuple[str, ...]
    drifted_columns: tuple[str, ...]
    model_version: str


def drift_reports(instance) -> dict[dt.date, Report]:
    """Each partition's latest drift report, from the drift asset's materializations."""
    from dagster import AssetKey, AssetRecordsFilter

    key = AssetKey(["card_fraud", "fraud_model_feature_drift"])
    records = instance.fetch_materializations(AssetRecordsFilter(asset_key=key), limit=10_000).records
    reports = {}
    for record in records:  # newest first
        day = dt.date.fromisoformat(record.partition_key)
        if day in reports:
            continue
        metadata = {k: v.value for k, v in record.asset_materialization.metadata.items()}
        reports[day] = Report(day, float(metadata["drift_share"]), bool(metadata["drifted"]),
                              tuple(metadata.get("risen_columns") or ()), tuple(metadata.get("drifted_columns") or ()), str(metadata.get("model_version")))
    return dict(sorted(reports.items()))


class Labelled:
    """Served predictions with their final labels, to score any version on exactly the same transactions."""

    def __init__(self, settings: Settings, last_final: dt.date):
        from card_fraud.system import FRAUD_MODEL, SYSTEM
        from mlfs_dagster.core.registry import ModelRegistry

        self.model = FRAUD_MODEL
        self.store = settings.offline_store()
        self.registry = ModelRegistry(settings.mlflow_tracking_uri, settings.mlflow_artifacts)
        self.last_final = last_final
        reports = self.store.read(SYSTEM.source("fraud_reports").table, ("transaction_id",))
        self.frauds = pc.unique(reports["transaction_id"])

    def served(self, first: dt.date, last: dt.date, features: bool = False) -> pa.Table:
        """Predictions of first..last (cut at the last day with final labels), with `is_fraud`."""
        from mlfs_dagster.core.offline_store import TimeRange

        last = min(last, self.last_final)
        if last < first:
            return pa.table({})
        columns = ("transaction_id", "event_time", "score", "model_version",
                   *(self.model.features if features else ()))
        table = self.store.read_range(self.model.predictions_table, "event_time", TimeRange.of_days(first, last),
                                      columns)
        return table.append_column("is_fraud", pc.is_in(table["transaction_id"], value_set=self.frauds))

    def pr_auc(self, table: pa.Table, scores=None) -> float | None:
        from mlfs_dagster.core.training import metrics_of

        if table.num_rows == 0:
            return None
        truth = table["is_fraud"].to_numpy(zero_copy_only=False)
        scores = table["score"].to_numpy() if scores is None else scores
        return metrics_of(truth, scores, "binary").get("pr_auc")

    def rescored(self, table: pa.Table, version: str) -> np.ndarray:
        """`version`'s scores on the feature vectors another version was served with."""
        from mlfs_dagster.core.training import predict

        return predict(self.registry.load_version(self.model.registered_name, version), self.model, table)

    def validation(self, version: str) -> dict:
        return self.registry.get_version(self.model.registered_name, version).metrics


# --- Scoring ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EpisodeScore:
    episode: Episode
    first_flag: dt.date | None
    first_sustained: dt.date | None  # the onset of the first run of flags long enough for the sensor
    peak_share: float
    first_column_drift: dt.date | None
    pr_auc_before: float | None
    pr_auc_during: float | None

    @property
    def delay(self) -> int | None:
        return (self.first_flag - self.episode.start).days if self.first_flag else None


def score_episode(episode: Episode, reports: dict[dt.date, Report], labelled: Labelled) -> EpisodeScore:
    inside = [r for day, r in reports.items() if episode.covers(day)]
    own = set(episode.columns)
    first_flag = next((r.day for r in inside if r.drifted), None)
    first_sustained = next((r.day for r in inside if sustained_from(r.day, reports)), None)
    # concept_change names no column: some column drifts every quiet day, so none can count as its sign
    first_column = next((r.day for r in inside if own & set(r.drifted_columns)), None)
    day_before = episode.start - dt.timedelta(days=1)
    before = labelled.served(episode.start - dt.timedelta(days=BASELINE_DAYS), day_before)
    during = labelled.served(episode.start, episode.end - dt.timedelta(days=1))
    return EpisodeScore(episode, first_flag, first_sustained, max((r.drift_share for r in inside), default=0.0), first_column,
                        labelled.pr_auc(before), labelled.pr_auc(during))


def sustained_from(day: dt.date, reports: dict[dt.date, Report]) -> bool:
    """Whether `day` starts a run of flagged partitions of one model version as long as the sensor needs."""
    from card_fraud.system import FRAUD_MODEL

    run = [reports.get(day + dt.timedelta(days=i)) for i in range(FRAUD_MODEL.drifted_partitions_to_retrain)]
    return all(r and r.drifted and r.model_version == run[0].model_version for r in run)


def quiet_flags(reports: dict[dt.date, Report], episodes: list[Episode]) -> list[Report]:
    """Partitions flagged as drifted in quiet periods."""
    return [r for r in reports.values() if r.drifted and episode_of(r.day, episodes) is None]


def false_alarms(reports: dict[dt.date, Report], episodes: list[Episode]) -> list[Report]:
    """Quiet partitions that start sustained drift: what the sensor raises an alarm on."""
    return [r for r in quiet_flags(reports, episodes) if sustained_from(r.day, reports)]


def quiet_column_drift(reports: dict[dt.date, Report], episodes: list[Episode]) -> tuple[int, int, Counter]:
    """Quiet partitions, how many had any drifted column, and which columns drifted how often."""
    quiet = [r for r in reports.values() if episode_of(r.day, episodes) is None]
    columns = Counter(c for r in quiet for c in r.drifted_columns)
    return len(quiet), sum(bool(r.drifted_columns) for r in quiet), columns


@dataclass(frozen=True)
class RetrainScore:
    request: RetrainRequest
    trigger_episode: Episode | None
    requested_in: Episode | None
    new_version: str | None
    previous: str | None
    promoted: bool
    days: int  # later days with final labels served by the new version
    new_pr_auc: float | None
    old_pr_auc: float | None
    validation_note: str

    @property
    def improved(self) -> str:
        if not self.new_version:
            return "no new version"
        if not self.promoted:
            return "not promoted"
        if self.new_pr_auc is None or self.old_pr_auc is None:
            return "no labelled days"
        return "yes" if self.new_pr_auc > self.old_pr_auc else "no"


def score_retrain(request: RetrainRequest, episodes: list[Episode], labelled: Labelled,
                  reports: dict[dt.date, Report]) -> RetrainScore:
    model, champion = request.outcome.get("fraud_model", {}), request.outcome.get("fraud_model_champion", {})
    new = str(model["model_version"]) if model.get("new_candidate") else None
    previous = str(champion.get("previous_champion")) if champion.get("promoted") else None
    days, new_auc, old_auc = 0, None, None
    if new and previous:
        served_by_new = [d for d, r in reports.items() if r.model_version == new and d <= labelled.last_final]
        if served_by_new:
            table = labelled.served(min(served_by_new), max(served_by_new), features=True)
            table = table.filter(pc.equal(table["model_version"], new))
            days = len(served_by_new)
            new_auc, old_auc = labelled.pr_auc(table), labelled.pr_auc(table, labelled.rescored(table, previous))
    return RetrainScore(request, episode_of(request.onset, episodes), episode_of(request.requested_on, episodes),
                        new, previous,
                        bool(champion.get("promoted")), days, new_auc, old_auc,
                        validation_note(labelled, new) if new else "")


def validation_note(labelled: Labelled, version: str) -> str:
    """The new version's validation PR-AUC against the champion's, both scored on the new validation rows."""
    metrics = labelled.validation(version)
    if "pr_auc" not in metrics:
        return ""
    old = metrics.get("champion_pr_auc")
    new = f"val {metrics['pr_auc']:.3f}"
    return f"{new} vs champion {old:.3f}" if old is not None else new


# --- Report timing ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReportCost:
    day: dt.date
    seconds: list[float]
    report_bytes: int
    static_bytes: int
    direct_rows: tuple[int, int]
    direct_seconds: list[float]
    direct_bytes: int


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.exists() else 0


def time_daily_report(system: System, settings: Settings, day: dt.date) -> tuple[list[float], int]:
    """Single-partition runs of the drift asset: what one day of monitoring costs in daily operation."""
    from dagster import AssetKey, AssetSelection

    selection = AssetSelection.assets(AssetKey(["card_fraud", "fraud_model_feature_drift"]))
    seconds = []
    for _ in range(REPORT_REPEATS):
        began = time.perf_counter()
        system.run(selection, (day, day))
        seconds.append(time.perf_counter() - began)
    html = settings.reports / "card_fraud" / "fraud_model_feature_drift" / f"{day}.html"
    return seconds, html.stat().st_size


def time_direct_report(settings: Settings, labelled: Labelled, last_day: dt.date,
                       rows_per_day: int) -> tuple[tuple[int, int], list[float], int]:
    """`feature_drift` alone on DIRECT_ROWS served rows against DIRECT_ROWS training rows of the champion."""
    from mlfs_dagster.builders.monitoring import monitored_features
    from mlfs_dagster.core.drift import STATIC_FOLDER, feature_drift
    from mlfs_dagster.core.offline_store import TimeRange
    from mlfs_dagster.core.training import SPLIT

    model, store = labelled.model, labelled.store
    champion = labelled.registry.version_by_alias(model.registered_name, "champion")
    training = store.read(model.feature_view.table, (*model.features, SPLIT),
                          snapshot_id=int(champion.tags["training_set_snapshot"]))
    reference = training.filter(pc.equal(training[SPLIT], "train")).select(list(model.features))
    days = -(-DIRECT_ROWS // rows_per_day) + 1  # the last days' served rows, a few more than needed
    last_days = TimeRange.of_days(last_day - dt.timedelta(days=days - 1), last_day)
    current = store.read_range(model.predictions_table, "event_time", last_days, tuple(model.features))
    reference = reference.slice(max(0, reference.num_rows - DIRECT_ROWS))
    current = current.slice(max(0, current.num_rows - DIRECT_ROWS))
    numerical, categorical = monitored_features(model, current.schema)
    reference, current = reference.to_pandas(), current.to_pandas()
    html = settings.reports / "_benchmark" / "direct.html"
    seconds = []
    for _ in range(REPORT_REPEATS):
        began = time.perf_counter()
        feature_drift(reference, current, numerical, categorical, html_path=html,
                      static_dir=settings.reports / STATIC_FOLDER)
        seconds.append(time.perf_counter() - began)
    return (len(reference), len(current)), seconds, html.stat().st_size


def measure_report_cost(system: System, settings: Settings, labelled: Labelled, day: dt.date,
                        rows_per_day: int) -> ReportCost:
    from mlfs_dagster.core.drift import STATIC_FOLDER

    seconds, report_bytes = time_daily_report(system, settings, day)
    rows, direct_seconds, direct_bytes = time_direct_report(settings, labelled, day, rows_per_day)
    static = settings.reports / STATIC_FOLDER
    if not static.exists():  # older layouts kept the shared folder beside the reports
        static = settings.reports / "card_fraud" / "fraud_model_feature_drift" / STATIC_FOLDER
    return ReportCost(day, seconds, report_bytes, folder_bytes(static), rows, direct_seconds, direct_bytes)


# --- Printing ---------------------------------------------------------------------------------------------------


def fmt(value, pattern: str = "{:.3f}", empty: str = "–") -> str:
    return empty if value is None else pattern.format(value)


def day_label(day: dt.date | None, start: dt.date) -> str:
    return "–" if day is None else f"{day} (d{(day - start).days + 1})"


def print_episodes(scores: list[EpisodeScore], start: dt.date) -> None:
    print(f"\n{'#':>2} {'kind':<24} {'columns':<22} {'str':<7} {'start..end (excl.)':<23} {'first flagged':<18} "
          f"{'delay':>5} {'missed':<6} {'sustained from':<18} {'peak':>5} {'first own-column drift':<22} {'PR-AUC before→during':<20}")
    for s in scores:
        e = s.episode
        print(f"{e.number:>2} {e.kind:<24} {','.join(e.columns) or '()':<22} {e.strength:<7} "
              f"{str(e.start) + '..' + str(e.end):<23} {day_label(s.first_flag, start):<18} "
              f"{fmt(s.delay, '{:d}'):>5} {'MISSED' if s.first_flag is None else 'no':<6} "
              f"{day_label(s.first_sustained, start):<18} {s.peak_share:>5.2f} "
              f"{day_label(s.first_column_drift, start) if e.columns else 'n/a (no column)':<22} "
              f"{fmt(s.pr_auc_before)} → {fmt(s.pr_auc_during)}")


def print_false_alarms(alarms: list[Report], reports: dict, episodes: list[Episode], start: dt.date) -> None:
    quiet, with_columns, columns = quiet_column_drift(reports, episodes)
    flagged = quiet_flags(reports, episodes)
    print(f"\nfalse alarms (sustained drift starting in a quiet partition, {GRACE_DAYS}-day grace after each "
          f"episode): {len(alarms)} of {quiet} quiet partitions")
    print(f"quiet partitions flagged as drifted: {len(flagged)} of {quiet}")
    for r in flagged:
        after = max((e for e in episodes if e.end <= r.day), key=lambda e: e.end, default=None)
        since = f", {(r.day - after.end).days + 1} days after episode {after.number} ended" if after else ""
        print(f"  {day_label(r.day, start)}: share {r.drift_share:.2f}, risen {list(r.risen_columns)}, v{r.model_version}, "
              f"{list(r.drifted_columns)}{since}")
    print(f"quiet partitions with at least one drifted column: {with_columns} of {quiet}; "
          f"columns: {dict(columns.most_common(6)) or 'none'}")


def print_retrains(scores: list[RetrainScore], start: dt.date) -> None:
    print(f"\nretrain requests by the retraining sensor: {len(scores)}")
    if not scores:
        return
    print(f"  {'requested on':<18} {'trigger':<21} {'onset (flagged days)':<26} {'onset in':<10} "
          f"{'requested in':<12} {'new':<4} {'promoted':<8} {'realised PR-AUC new vs old (days)':<34} "
          f"{'improved':<16} validation")
    for s in scores:
        r = s.request
        onset_in = f"episode {s.trigger_episode.number}" if s.trigger_episode else "QUIET"
        requested_in = f"episode {s.requested_in.number}" if s.requested_in else "quiet"
        realised = (f"{fmt(s.new_pr_auc)} vs {fmt(s.old_pr_auc)} ({s.days})" if s.days else "–")
        print(f"  {day_label(r.requested_on, start):<18} {r.trigger:<21} "
              f"{day_label(r.onset, start) + f' ({r.flagged_days})':<26} {onset_in:<10} {requested_in:<12} "
              f"{'v' + s.new_version if s.new_version else '–':<4} {'yes' if s.promoted else 'no':<8} "
              f"{realised:<34} {s.improved:<16} {s.validation_note}")
    failures = [s for s in scores if s.trigger_episode is None]
    print(f"  retrains triggered from a quiet period (failures): {len(failures)}; "
          f"improved on later labelled days: {sum(s.improved == 'yes' for s in scores)} of {len(scores)}")


def print_report_cost(cost: ReportCost, transactions_per_day: int) -> None:
    seconds, direct = statistics.median(cost.seconds), statistics.median(cost.direct_seconds)
    print(f"\ndaily drift report ({cost.day}, {transactions_per_day:,} rows, single-partition run of "
          f"fraud_model_feature_drift, median of {REPORT_REPEATS}): {seconds:.2f} s "
          f"(runs {', '.join(f'{s:.2f}' for s in cost.seconds)}); {cost.report_bytes:,} bytes per report, "
          f"plus {cost.static_bytes:,} bytes of shared static files once")
    print(f"feature_drift alone, {cost.direct_rows[1]:,} served vs {cost.direct_rows[0]:,} training rows: "
          f"{direct:.2f} s (runs {', '.join(f'{s:.2f}' for s in cost.direct_seconds)}); "
          f"{cost.direct_bytes:,} bytes")


def detection_limits(scores: list[EpisodeScore], detected) -> str:
    """Per kind and columns: the strengths missed and detected, and the size below which drift went unseen."""
    by_target: dict[str, list[EpisodeScore]] = {}
    for s in scores:
        by_target.setdefault(f"{s.episode.kind} {','.join(s.episode.columns) or '()'}", []).append(s)
    parts = []
    for target, group in by_target.items():
        group.sort(key=lambda s: float(s.episode.strength.split("/")[0]))
        outcomes = ", ".join(f"{s.episode.strength} {'detected' if detected(s) else 'undetected'}" for s in group)
        parts.append(f"{target}: {outcomes} ({detection_bound(group, detected)})")
    return "; ".join(parts)


def detection_bound(group: list[EpisodeScore], detected) -> str:
    """In words: the strength below which every episode of the group went unseen (sorted by strength)."""
    missed = [not detected(s) for s in group]
    if all(missed):
        return f"undetected up to {group[-1].episode.strength}"
    if not any(missed):
        return f"detected from {group[0].episode.strength}"
    first_seen = missed.index(False)
    if any(missed[first_seen:]):
        return "not monotonic in strength"
    return f"undetected below {group[first_seen].episode.strength}"


def print_settings(plan: Plan, start: dt.date, home: Path) -> None:
    print(f"drift year: {plan.days} days from {start}, {plan.cards:,} cards, {plan.transactions_per_day:,} "
          f"transactions/day, {len({d.day for d in plan.drifts})} episodes, seed {plan.seed}; MLFS_HOME {home}")
    print(f"  first training after day {plan.first_training_day}; then runs of {CHUNK_DAYS} days (ingest + "
          "features, inference + drift, realised performance of matured days, one sensor tick) instead of a run "
          "a day, to fit the time budget; no weekly training-set rebuild: only the sensor retrains")
    for d in plan.drifts:
        print(f"  drift days {d.day}..{d.day + d.length - 1}: {d.kind} {','.join(d.columns) or '()'} "
              f"strength {d.strength:g}")


# --- Main -----------------------------------------------------------------------------------------------------


def score_and_print(system: System, settings: Settings, plan: Plan, start: dt.date) -> None:
    episodes = ground_truth(Path(settings.landing))
    reports = drift_reports(system.instance)
    last_day = start + dt.timedelta(days=plan.days - 1)
    labelled = Labelled(settings, last_final=last_day - system.maturity)
    scores = [score_episode(e, reports, labelled) for e in episodes]
    retrains = [score_retrain(r, episodes, labelled, reports) for r in system.operation.requests]
    cost = measure_report_cost(system, settings, labelled, last_day, plan.transactions_per_day)

    print(f"\n=== drift year: {len(reports)} drift reports, {min(reports)}..{max(reports)}; realised PR-AUC "
          f"pooled over each window's transactions with final labels (up to {labelled.last_final}) ===")
    print_episodes(scores, start)
    print_false_alarms(false_alarms(reports, episodes), reports, episodes, start)
    print_retrains(retrains, start)
    print_report_cost(cost, plan.transactions_per_day)
    print("\nundetected as sustained drift (what the sensor acts on): "
          + detection_limits(scores, lambda s: s.first_sustained is not None))
    print("undetected as drift on any one day: "
          + detection_limits(scores, lambda s: s.first_flag is not None))
    print("undetected even per column (the episode's own columns): "
          + detection_limits(scores, lambda s: s.first_column_drift is not None))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run: 130 days, 800 cards, 1,600 txns/day")
    parser.add_argument("--home", type=Path,
                        help="MLFS_HOME to keep (must be empty or new), instead of a temporary one")
    args = parser.parse_args()
    started = time.perf_counter()
    plan = QUICK if args.quick else FULL
    if args.home and args.home.exists() and any(args.home.iterdir()):
        raise SystemExit(f"--home {args.home} is not empty: the benchmark needs fresh stores")
    home = (args.home or Path(tempfile.mkdtemp(prefix="drift_year_"))).resolve()
    settings = use_home(home)
    init_dagster_home(settings)
    _quiet_libraries()
    start = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=plan.days)  # partitions exist up to yesterday
    print_settings(plan, start, home)
    simulated = simulate(simulation(plan, start), Path(settings.landing))
    print(f"simulated {simulated.rows['transactions']:,} transactions ({simulated.fraud_transactions:,} fraud) "
          f"in {time.perf_counter() - started:.0f} s", flush=True)
    try:
        system = System()  # imports card_fraud.system, now that the landing zone holds the simulation
        operate(system, start, plan, started)
        score_and_print(system, settings, plan, start)
    finally:
        if not args.home:
            shutil.rmtree(home, ignore_errors=True)
    print(f"\ntotal wall time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
