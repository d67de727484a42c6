"""Training and evaluation helpers: label maturity, time-based splits, metrics from probabilities."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

SPLIT = "split"


def label_cutoff(as_of: dt.datetime, maturity_days: int) -> dt.datetime:
    """Transactions before this instant have final labels as of `as_of`."""
    return as_of - dt.timedelta(days=maturity_days)


def time_split(times: pa.ChunkedArray, validation_fraction: float) -> pa.ChunkedArray:
    """'train' for the earlier rows, 'validation' for the latest `validation_fraction` of days.

    Splitting by whole days, never at random, keeps validation strictly after training, as the model
    will meet the data in production.
    """
    days = pc.floor_temporal(times, unit="day")
    distinct = sorted(set(days.to_pylist()))
    if len(distinct) < 2:
        raise ValueError(f"need at least two days of labelled data to split by time, got {len(distinct)}")
    validation_days = min(len(distinct) - 1, max(1, round(len(distinct) * validation_fraction)))
    first_validation_day = distinct[-validation_days]
    return pc.if_else(pc.greater_equal(days, pa.scalar(first_validation_day, days.type)), "validation", "train")


def evaluate(model, frame: pd.DataFrame, features: list[str], label: str) -> dict[str, float]:
    """PR-AUC and ROC-AUC from predicted probabilities (never from hard 0/1 predictions)."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    truth = frame[label].astype(int).to_numpy()
    if truth.min() == truth.max():
        raise ValueError(f"cannot evaluate on {len(truth)} rows with a single class in '{label}'")
    scores = model.predict_proba(frame[features])[:, 1]
    return {
        "pr_auc": float(average_precision_score(truth, scores)),
        "roc_auc": float(roc_auc_score(truth, scores)),
        "positive_rate": float(truth.mean()),
        "rows": float(len(truth)),
    }


def fit_and_evaluate(pipeline, frame: pd.DataFrame, features: list[str], label: str):
    """Fit on the 'train' split, evaluate on the 'validation' split; returns the model and its metrics."""
    train, validation = frame[frame[SPLIT] == "train"], frame[frame[SPLIT] == "validation"]
    model = pipeline.fit(train[features], train[label].astype(int))
    return model, {**evaluate(model, validation, features, label), "train_rows": float(len(train))}


def gate_failures(metrics: dict[str, float], minimums: dict[str, float]) -> list[str]:
    """Why a model may not be promoted: each metric below its minimum, or missing."""
    return [
        f"{name} {metrics[name]:.3f} < {minimum}" if name in metrics else f"{name} missing"
        for name, minimum in minimums.items()
        if name not in metrics or metrics[name] < minimum
    ]
