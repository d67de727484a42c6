"""Training sets, training and gating for declared feature views and models.

A training set is the feature view's spine rows whose labels are final (older than the label's maturity
as of the set's as-of time), labelled, joined point-in-time through the view, split by time. It records
the Iceberg snapshot of every input, so passing those snapshots rebuilds it exactly. Metrics come from
probabilities (binary) or predictions (regression), on the later validation split only.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from mlfs_dagster.core import feature_view
from mlfs_dagster.core.engine import query
from mlfs_dagster.core.offline_store import OfflineStore, TimeRange
from mlfs_dagster.core.specs import FeatureViewSpec, Gate, ModelSpec

SPLIT = "split"
REFERENCE_ROWS = 20_000  # what a drift report compares at most: more rows only add time
HIGHER_IS_BETTER = {"pr_auc", "roc_auc", "r2", "recall", "precision"}


@dataclass(frozen=True)
class TrainingSet:
    data: pa.Table
    as_of: dt.datetime
    first_time: dt.datetime
    label_cutoff: dt.datetime
    input_snapshots: dict[str, int | None]


def input_tables(view: FeatureViewSpec) -> tuple[str, ...]:
    return tuple(dict.fromkeys((view.spine.table, view.label_source.table, *(s.group.table for s in view.selections))))


def build_training_set(
    store: OfflineStore,
    view: FeatureViewSpec,
    as_of: dt.datetime,
    first_time: dt.datetime,
    snapshots: Mapping[str, int | None] | None = None,
) -> TrainingSet:
    """Spine rows from `first_time` until their labels are final as of `as_of`, with their features."""
    snapshots = dict(snapshots or {t: store.snapshot_id(t) if store.exists(t) else None for t in input_tables(view)})
    cutoff = as_of - view.label.maturity
    if cutoff <= first_time:
        raise ValueError(
            f"feature view {view.name}: no example has a final label yet: labels mature "
            f"{view.label.maturity} after the example, so data as of {as_of:%Y-%m-%d %H:%M} only labels examples "
            f"before {cutoff:%Y-%m-%d %H:%M}, and features are complete from {first_time:%Y-%m-%d %H:%M}"
        )
    label_on_spine = () if view.label.source is not None else (view.label.column,)
    spine = feature_view.read_spine(view, store, TimeRange(first_time, cutoff), snapshots[view.spine.table],
                                    extra=label_on_spine)
    labelled = with_labels(view, store, spine, as_of, snapshots)
    del spine  # a copy is labelled: a year's spine is gigabytes
    examples, split = _ordered_and_split(view, labelled)
    del labelled
    # The join keeps the spine's order: the vectors come out ordered and split, never copied to be.
    data = feature_view.vectors(view, store, examples, snapshots).append_column(SPLIT, split)
    return TrainingSet(data, as_of, first_time, cutoff, snapshots)


def _ordered_and_split(view: FeatureViewSpec, spine: pa.Table) -> tuple[pa.Table, pa.Array]:
    """The spine's rows in a fixed order, those in the gap dropped, in one copy; and each one's split.

    A fixed order: learners' own validation splits depend on it, so the same version and seed must always see
    the rows the same way, however the raw files happen to be laid out.
    """
    order = pc.sort_indices(spine, [(view.spine_time, "ascending"), *((k, "ascending") for k in view.spine_keys)])
    split = time_split(spine[view.spine_time].take(order), view.split.validation_fraction, view.split.gap)
    kept = pc.is_valid(split)
    return spine.take(order.filter(kept)), split.filter(kept)


def with_labels(view: FeatureViewSpec, store: OfflineStore, spine: pa.Table, as_of: dt.datetime,
                snapshots: Mapping[str, int | None] | None = None) -> pa.Table:
    """The spine rows with their label as known at `as_of` (a label source read up to it; by default its
    current snapshot). A label on the spine itself is already there."""
    snapshots = snapshots or {}
    label = view.label
    if label.source is None:
        return spine
    source = label.source
    # Every column: the label's value may aggregate any of them (a refund amount, a group's feature).
    received = store.read(source.table, None, TimeRange(dt.datetime.min.replace(tzinfo=dt.UTC), as_of)
                          .filter(source.time_column), snapshots.get(source.table)) \
        if store.exists(source.table) else source.schema.empty_table()
    on = ", ".join(f'"{k}"' for k in label.on)
    return query(
        f"""SELECT s.*, coalesce(l.__label, {label.missing}) AS "{label.column}"
            FROM spine s LEFT JOIN (SELECT {on}, {label.value} AS __label FROM received GROUP BY {on}) l
            USING ({on})""",
        {"spine": spine, "received": received},
    )


def time_split(times: pa.ChunkedArray, validation_fraction: float, gap: dt.timedelta = dt.timedelta(0)) -> pa.Array:
    """'train' for the earlier rows, 'validation' for the latest `validation_fraction` of days, null for
    rows within `gap` before validation (dropped, so no training row is too close to a validation row).

    Splitting by whole days, never at random, keeps validation strictly after training, as the model will
    meet the data in production.
    """
    days = pc.floor_temporal(times, unit="day")
    distinct = sorted(pc.unique(days).to_pylist())  # a few hundred days, not a Python object per row
    if len(distinct) < 2:
        raise ValueError(f"need at least two days of labelled data to split by time, got {len(distinct)}")
    validation_days = min(len(distinct) - 1, max(1, round(len(distinct) * validation_fraction)))
    first_validation = distinct[-validation_days]
    is_validation = pc.greater_equal(days, pa.scalar(first_validation, days.type))
    is_train = pc.less(times, pa.scalar(first_validation - gap, times.type))
    split = pc.if_else(is_validation, "validation", pc.if_else(is_train, "train", pa.scalar(None, pa.string())))
    return split.combine_chunks() if isinstance(split, pa.ChunkedArray) else split


def outputs(model, kind: str, features: pd.DataFrame) -> np.ndarray:
    """Probabilities of the positive class (binary) or predicted values (regression), one per row."""
    return model.predict_proba(features)[:, 1] if kind == "binary" else model.predict(features)


def predict(fitted, model: ModelSpec, vectors: pa.Table) -> np.ndarray:
    """A model's outputs for feature vectors, one per row: batch inference and online serving alike."""
    if vectors.num_rows == 0:
        return np.array([])
    # A request's few rows convert faster on this thread than through Arrow's pool.
    features = vectors.select(list(model.features)).to_pandas(use_threads=vectors.num_rows > 10_000)
    return outputs(fitted, model.feature_view.label.kind, features)


def evaluate(model, frame: pd.DataFrame, features: list[str], label: str, kind: str) -> dict[str, float]:
    """Binary: PR-AUC and ROC-AUC from probabilities (never hard 0/1 predictions); regression: MAE, RMSE, R2."""
    return metrics_on(frame[label], outputs(model, kind, frame[features]), kind)


def metrics_on(truth: pd.Series, predicted: np.ndarray, kind: str) -> dict[str, float]:
    """`evaluate`'s metrics of outputs already predicted."""
    if kind == "regression":
        return metrics_of(truth.to_numpy(), predicted, kind)
    classes = truth.to_numpy().astype(int)
    if classes.min() == classes.max():
        raise ValueError(f"cannot evaluate on {len(classes)} rows with a single class in '{truth.name}'")
    return metrics_of(classes, predicted, kind)


def metrics_of(truth, predicted, kind: str, alert_threshold: float | None = None) -> dict[str, float]:
    """The metrics of a label kind from the truth and the model's output (probabilities for binary models).

    With an `alert_threshold`, binary metrics add recall and precision of the alerts it raises. Ranking
    metrics need both classes: with one class only, they are left out.
    """
    from sklearn import metrics

    if kind == "regression":
        return {"mae": float(metrics.mean_absolute_error(truth, predicted)),
                "rmse": float(metrics.root_mean_squared_error(truth, predicted)),
                "r2": float(metrics.r2_score(truth, predicted)), "rows": float(len(truth))}
    truth = truth.astype(int)
    result = {"positive_rate": float(truth.mean()), "rows": float(len(truth))}
    if truth.min() != truth.max():
        result |= {"pr_auc": float(metrics.average_precision_score(truth, predicted)),
                   "roc_auc": float(metrics.roc_auc_score(truth, predicted))}
    if alert_threshold is not None:
        alerts = predicted >= alert_threshold
        result |= {"recall_at_threshold": float(metrics.recall_score(truth, alerts, zero_division=0)),
                   "precision_at_threshold": float(metrics.precision_score(truth, alerts, zero_division=0))}
    return result


def fit_and_evaluate(model_spec: ModelSpec, frame: pd.DataFrame, seed: int | None = None):
    """Fit the model's pipeline on the 'train' split, evaluate on 'validation'; returns the model, its metrics and
    its outputs on the validation rows (monitoring's reference: predicted once, for both)."""
    label = model_spec.feature_view.label
    features = list(model_spec.features)
    train = frame[SPLIT] == "train"
    target = frame.loc[train, label.column]
    # Rows and columns in one selection: one copy of a year's train rows, not two.
    model = model_spec.build_pipeline(seed).fit(frame.loc[train, features],
                                                target.astype(int) if label.kind == "binary" else target)
    predicted = validation_outputs_of(model_spec, frame, model)
    metrics = metrics_on(frame.loc[frame[SPLIT] == "validation", label.column], predicted, label.kind)
    return model, {**metrics, "train_rows": float(train.sum())}, predicted


def monitoring_reference(model_spec: ModelSpec, frame: pd.DataFrame, validation_outputs: np.ndarray,
                         drifted: Sequence[TimeRange] = ()) -> dict[str, pd.DataFrame]:
    """What monitoring compares a version's service with, fixed when it is trained.

    `training_rows`: the train split's latest `drift_reference_window` of time outside the `drifted` periods
    monitoring flagged (see `latest_window`), at most REFERENCE_ROWS rows sampled with a fixed seed, features and
    event time. `validation_outputs`: the version's outputs on its validation split, the reference for prediction
    drift.
    """
    time = model_spec.feature_view.spine_time
    # Rows chosen on their times, by position (whatever the frame's index), then copied: not a year's first.
    is_train = (frame[SPLIT] == "train").to_numpy()
    train = frame.loc[is_train, [time]].set_axis(np.flatnonzero(is_train))
    if model_spec.drift_reference_window is not None and not train.empty:
        train = latest_window(train, time, model_spec.drift_reference_window, drifted)
    if len(train) > REFERENCE_ROWS:
        train = train.sample(REFERENCE_ROWS, random_state=0).sort_values(time)
    return {"training_rows": frame.iloc[train.index][[*model_spec.features, time]].reset_index(drop=True),
            "validation_outputs": pd.DataFrame({model_spec.output_column: validation_outputs})}


def as_frame(table: pa.Table) -> pd.DataFrame:
    """A table read to train on, as pandas, its Arrow memory handed back as it converts: a year's training set
    would otherwise be held twice, and Arrow's allocator keeps what it frees for itself."""
    frame = table.to_pandas(self_destruct=True)  # the table is unusable afterwards: its buffers are freed
    pa.default_memory_pool().release_unused()
    return frame


def validation_outputs_of(model_spec: ModelSpec, frame: pd.DataFrame, fitted) -> np.ndarray:
    """A fitted version's outputs on the validation split of its training set."""
    validation = frame.loc[frame[SPLIT] == "validation", list(model_spec.features)]
    return outputs(fitted, model_spec.feature_view.label.kind, validation)


def latest_window(rows: pd.DataFrame, time: str, window: dt.timedelta, drifted: Sequence[TimeRange]) -> pd.DataFrame:
    """The rows of the latest `window` of time outside the `drifted` periods, reaching further back by as much
    time as those periods take inside it: a shift that came and went is no reference for the days after it.
    When the rows end inside drifted periods the shift is still there, the new normal, and stays in (earlier
    episodes stay out).
    """
    latest = rows[time].max()
    if (ongoing := _ongoing_since(latest, drifted)) is not None:
        drifted = [period for period in drifted if period.end < ongoing]
    cutoff = latest - window
    while True:  # each step reaches back over the drifted time the last one took in; it stops at a gap
        reach = latest - window - sum((min(p.end, latest) - max(p.start, cutoff) for p in drifted
                                       if p.start < latest and p.end > cutoff), dt.timedelta())
        if reach == cutoff:
            break
        cutoff = reach
    kept = rows[time] >= cutoff
    for period in drifted:
        kept &= ~rows[time].between(period.start, period.end, inclusive="left")
    return rows[kept]


def _ongoing_since(instant, periods: Sequence[TimeRange]):
    """The start of the back-to-back drifted periods that hold `instant`; None when it is in none."""
    since = None
    for period in sorted(periods, key=lambda p: p.start, reverse=True):
        if period.start <= instant < period.end or (since is not None and period.end == since):
            since = period.start
        elif since is not None:
            break
    return since


def gate_failures(gates: tuple[Gate, ...], metrics: Mapping[str, float],
                  champion: Mapping[str, float] | None = None) -> list[str]:
    """Why a candidate may not be promoted: a floor or ceiling missed, or worse than the champion (scored on
    the same validation rows) beyond the gate's tolerance. Empty when every gate passes."""
    failures = []
    for gate in gates:
        value = metrics.get(gate.metric)
        if value is None:
            failures.append(f"{gate.metric} missing")
            continue
        if gate.minimum is not None and value < gate.minimum:
            failures.append(f"{gate.metric} {value:.4f} < minimum {gate.minimum}")
        if gate.maximum is not None and value > gate.maximum:
            failures.append(f"{gate.metric} {value:.4f} > maximum {gate.maximum}")
        if gate.champion_tolerance is not None and champion and gate.metric in champion:
            worse_by = champion[gate.metric] - value if gate.metric in HIGHER_IS_BETTER else value - champion[gate.metric]
            if worse_by > gate.champion_tolerance:
                failures.append(f"{gate.metric} {value:.4f} is {worse_by:.4f} worse than the champion's "
                                f"{champion[gate.metric]:.4f} (tolerance {gate.champion_tolerance})")
    return failures
