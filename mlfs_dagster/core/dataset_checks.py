"""The checks ML teams ask of every training-set version, which generic data checks miss.

Each compares the new version with itself (train against validation) or with the previous version, and
returns its figures, so a reader sees why it passed or failed. Label balance is the one that blocks: a model
trained on a version whose label share moved that much would learn the shift, not the task.

The figures are aggregates, computed by DuckDB over the Arrow rows: the previous version streams through one
query, and neither version becomes a DataFrame (a year's training set is gigabytes as one). Floating-point NaN
counts as missing, as pandas counts it.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass

import pyarrow as pa

from mlfs_dagster.core.engine import query
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


@dataclass(frozen=True)
class Profile:
    """What the checks compare of one version's rows, from one pass over them; kept with the version (JSON),
    so the next one is checked against it without reading it again."""

    level: float | None  # the label's mean: the positive share of a binary label; None without the label
    null_rates: dict[str, float]
    correlations: dict[str, float]  # of each numeric feature with the label, where both vary

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Profile:
        return cls(**json.loads(text))


@dataclass(frozen=True)
class SplitProfile:
    """The current version's figures per split (train, validation)."""

    classes: dict[str, int]  # distinct label values
    means: dict[str, dict[str, float | None]]  # split -> feature -> mean
    spreads: dict[str, dict[str, float | None]]  # split -> feature -> sample standard deviation


def training_set_findings(current: pa.Table, now: Profile, before: Profile | None, label: str, kind: str,
                          features: Sequence[str]) -> list[Finding]:
    """Every check of `current` (with its split column), whose profile is `now`, against the previous
    version's where there is one."""
    numeric = numeric_columns(current.schema, features)
    splits = split_profile(current, label, numeric)
    return [label_balance(now, before, splits, kind), null_rates(now, before),
            train_validation_shift(splits, numeric), correlation_stability(now, before)]


def numeric_columns(schema: pa.Schema, features: Sequence[str]) -> list[str]:
    """Features whose values are numbers (booleans are categories here)."""
    return [f for f in features if _is_number(schema.field(f).type)]


def profile(data: pa.Table | pa.RecordBatchReader, label: str, features: Sequence[str]) -> Profile:
    """A version's profile, from its rows (a table, or batches streamed once); columns it lacks are left out."""
    types = {f.name: f.type for f in data.schema}
    features = [f for f in features if f in types]
    numeric = numeric_columns(data.schema, features)
    label = label if label in types else None
    target = f"CAST({_q(label)} AS DOUBLE)" if label else "NULL::DOUBLE"
    aggregates = [
        "count(*) AS n", f"avg({target}) AS level", f"stddev_samp({target}) AS spread",
        *(f"count({_value(f, types[f])}) AS n{i}" for i, f in enumerate(features)),
        *(f"corr({_number(f)}, {target}) AS c{i}, stddev_samp({_number(f)}) AS s{i}, count({_number(f)}) AS k{i}"
          for i, f in enumerate(numeric)),
    ]
    figures = query(f"SELECT {', '.join(aggregates)} FROM data", {"data": data}).to_pylist()[0]
    rows = figures["n"]
    correlations = {f: round(figures[f"c{i}"], 4) for i, f in enumerate(numeric)
                    if figures[f"k{i}"] > 2 and figures[f"s{i}"] and figures["spread"] and figures[f"c{i}"] is not None}
    return Profile(figures["level"] if rows else None,
                   {f: round(1 - figures[f"n{i}"] / rows, 4) if rows else 0.0 for i, f in enumerate(features)},
                   correlations)


def split_profile(data: pa.Table, label: str, numeric: Sequence[str]) -> SplitProfile:
    aggregates = [f"{_q(SPLIT)} AS split", f"count(DISTINCT {_q(label)}) AS classes",
                  *(f"avg({_number(f)}) AS m{i}, stddev_samp({_number(f)}) AS s{i}" for i, f in enumerate(numeric))]
    rows = query(f"SELECT {', '.join(aggregates)} FROM data WHERE {_q(SPLIT)} IS NOT NULL GROUP BY ALL",
                 {"data": data}).to_pylist()
    return SplitProfile({r["split"]: r["classes"] for r in rows},
                        {r["split"]: {f: r[f"m{i}"] for i, f in enumerate(numeric)} for r in rows},
                        {r["split"]: {f: r[f"s{i}"] for i, f in enumerate(numeric)} for r in rows})


def label_balance(now: Profile, before: Profile | None, splits: SplitProfile, kind: str) -> Finding:
    """Both splits hold every class (binary), and the label's level moved little since the last version."""
    level = now.level or 0.0
    figures = {"level": level, "measure": "positive share" if kind == "binary" else "mean"}
    problems = []
    if kind == "binary":
        problems += [f"the {split} split holds a single class" for split, n in splits.classes.items() if n < 2]
    if before is not None and before.level is not None:
        change = abs(level - before.level) / abs(before.level) if before.level else float(level != before.level)
        figures |= {"previous_level": before.level, "relative_change": change}
        if change > LABEL_SHARE_CHANGE:
            problems.append(f"the {figures['measure']} moved from {before.level:.4f} to {level:.4f}")
    return Finding("label_balance", not problems, {**figures, "problems": problems})


def null_rates(now: Profile, before: Profile | None) -> Finding:
    """No feature is mostly missing, and none became much more often missing than in the last version."""
    earlier = before.null_rates if before is not None else {}
    worse = {c: rate for c, rate in now.null_rates.items()
             if rate > 0.5 or (c in earlier and rate - earlier[c] > NULL_RATE_RISE)}
    return Finding("feature_null_rates", not worse, {"null_rates": now.null_rates, "too_often_missing": worse})


def train_validation_shift(splits: SplitProfile, numeric: Sequence[str]) -> Finding:
    """Validation rows look like training rows: a large shift makes validation metrics a poor guide."""
    train, validation = splits.means.get("train", {}), splits.means.get("validation", {})
    spread = splits.spreads.get("train", {})
    shifts = {c: round(abs(validation[c] - train[c]) / spread[c], 4) for c in numeric
              if spread.get(c) and validation.get(c) is not None}
    shifted = {c: s for c, s in shifts.items() if s > SHIFT}
    return Finding("train_validation_shift", not shifted, {"standardized_mean_difference": shifts, "shifted": shifted})


def correlation_stability(now: Profile, before: Profile | None) -> Finding:
    """Each feature relates to the label as it did in the last version (a changed relation is a new task)."""
    if before is None or before.level is None:
        return Finding("correlation_stability", True, {"correlation_with_label": now.correlations, "previous": None})
    moved = {c: {"now": now.correlations[c], "before": before.correlations[c]} for c in now.correlations
             if c in before.correlations and abs(now.correlations[c] - before.correlations[c]) > CORRELATION_CHANGE}
    return Finding("correlation_stability", not moved, {"correlation_with_label": now.correlations, "moved": moved})


def _is_number(kind: pa.DataType) -> bool:
    return pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind)


def _value(column: str, kind: pa.DataType) -> str:
    """The column with NaN as missing."""
    return f"nullif({_q(column)}, 'NaN'::DOUBLE)" if pa.types.is_floating(kind) else _q(column)


def _number(column: str) -> str:
    """The column as a double, NaN as missing."""
    return f"nullif(CAST({_q(column)} AS DOUBLE), 'NaN'::DOUBLE)"


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
