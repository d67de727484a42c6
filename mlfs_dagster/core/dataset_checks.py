"""The checks ML teams ask of every training-set version, which generic data checks miss.

Each compares the new version with itself (train against validation) or with the previous version, and
returns its figures, so a reader sees why it passed or failed. Label balance is the one that blocks: a model
trained on a version whose label share moved that much would learn the shift, not the task.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from mlfs_dagster.core.training import SPLIT

LABEL_SHARE_CHANGE = 0.5  # relative change of the positive share (binary) or of the mean (regression)
NULL_RATE_RISE = 0.2
SHIFT = 0.5  # standardized mean difference between train and validation
CORRELATION_CHANGE = 0.2


@dataclass(frozen=True)
class Finding:
    name: str
    passed: bool
    figures: dict


def training_set_findings(current: pd.DataFrame, previous: pd.DataFrame | None, label: str, kind: str,
                          features: list[str]) -> list[Finding]:
    numeric = [c for c in features if pd.api.types.is_numeric_dtype(current[c]) and not pd.api.types.is_bool_dtype(current[c])]
    return [label_balance(current, previous, label, kind), null_rates(current, previous, features),
            train_validation_shift(current, numeric), correlation_stability(current, previous, label, numeric)]


def label_balance(current: pd.DataFrame, previous: pd.DataFrame | None, label: str, kind: str) -> Finding:
    """Both splits hold every class (binary), and the label's level moved little since the last version."""
    level = _level(current[label], kind)
    figures = {"level": level, "measure": "positive share" if kind == "binary" else "mean"}
    problems = []
    if kind == "binary":
        for split, rows in current.groupby(SPLIT, observed=True):
            if rows[label].nunique() < 2:
                problems.append(f"the {split} split holds a single class")
    if previous is not None and label in previous:
        before = _level(previous[label], kind)
        change = abs(level - before) / abs(before) if before else float(level != before)
        figures |= {"previous_level": before, "relative_change": change}
        if change > LABEL_SHARE_CHANGE:
            problems.append(f"the {figures['measure']} moved from {before:.4f} to {level:.4f}")
    return Finding("label_balance", not problems, {**figures, "problems": problems})


def null_rates(current: pd.DataFrame, previous: pd.DataFrame | None, features: list[str]) -> Finding:
    """No feature is mostly missing, and none became much more often missing than in the last version."""
    rates = current[features].isna().mean()
    before = previous[[c for c in features if c in previous]].isna().mean() if previous is not None else pd.Series()
    worse = {c: float(rates[c]) for c in features
             if rates[c] > 0.5 or (c in before and rates[c] - before[c] > NULL_RATE_RISE)}
    return Finding("feature_null_rates", not worse, {"null_rates": {c: round(float(r), 4) for c, r in rates.items()},
                                                     "too_often_missing": worse})


def train_validation_shift(current: pd.DataFrame, numeric: list[str]) -> Finding:
    """Validation rows look like training rows: a large shift makes validation metrics a poor guide."""
    # The numeric columns only: copying every column of a year's rows costs gigabytes.
    train = current.loc[current[SPLIT] == "train", numeric]
    validation = current.loc[current[SPLIT] == "validation", numeric]
    shifts = {}
    for column in numeric:
        spread = train[column].std()
        if spread and not np.isnan(spread):
            shifts[column] = round(float(abs(validation[column].mean() - train[column].mean()) / spread), 4)
    shifted = {c: s for c, s in shifts.items() if s > SHIFT}
    return Finding("train_validation_shift", not shifted, {"standardized_mean_difference": shifts, "shifted": shifted})


def correlation_stability(current: pd.DataFrame, previous: pd.DataFrame | None, label: str,
                          numeric: list[str]) -> Finding:
    """Each feature relates to the label as it did in the last version (a changed relation is a new task)."""
    now = _correlations(current, label, numeric)
    if previous is None or label not in previous:
        return Finding("correlation_stability", True, {"correlation_with_label": now, "previous": None})
    before = _correlations(previous, label, [c for c in numeric if c in previous])
    moved = {c: {"now": now[c], "before": before[c]} for c in now
             if c in before and abs(now[c] - before[c]) > CORRELATION_CHANGE}
    return Finding("correlation_stability", not moved, {"correlation_with_label": now, "moved": moved})


def _level(values: pd.Series, kind: str) -> float:
    return float(values.astype(float).mean()) if len(values) else 0.0


def _correlations(frame: pd.DataFrame, label: str, numeric: list[str]) -> dict[str, float]:
    target = frame[label].astype(float)
    result = {}
    for column in numeric:
        values = frame[column].astype(float)
        if values.notna().sum() > 2 and values.std() and target.std():
            result[column] = round(float(values.corr(target)), 4)
    return result
