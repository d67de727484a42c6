"""Declarations a system is built from: sources, feature groups, feature views, models, and the system.

A spec says what a table holds (columns with types, descriptions and tags), how it is keyed and timed,
and what it is computed from. Specs refer to each other by object or by name; `System` resolves the
names and binds every spec to the system's namespace, so two systems never share a table, an asset or a
sensor. Builders turn a `System` into Dagster definitions; the core computes from specs. Nothing here
imports Dagster.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import pyarrow as pa

CADENCES = {"daily": dt.timedelta(days=1), "hourly": dt.timedelta(hours=1)}
NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class SpecError(ValueError):
    """A declaration is incomplete or inconsistent; the message names the spec and the field."""


@dataclass(frozen=True)
class Column:
    name: str
    type: pa.DataType
    description: str = ""
    tags: tuple[str, ...] = ()

    @property
    def pii(self) -> bool:
        return "pii" in self.tags


def arrow_schema(columns: tuple[Column, ...]) -> pa.Schema:
    return pa.schema([pa.field(c.name, c.type) for c in columns])


def empty_table(schema: pa.Schema, columns) -> pa.Table:
    """No rows, with `columns` typed as in `schema`: what a table not written yet reads as."""
    return pa.schema([schema.field(c) for c in columns]).empty_table()


def _require_timestamp(context: str, schema: pa.Schema, column: str) -> None:
    """Partitions, ranges and point-in-time joins compare instants: the time column must hold them."""
    if not pa.types.is_timestamp(schema.field(column).type):
        raise SpecError(f"{context}: time column '{column}' is {schema.field(column).type}; declare it as a "
                        "timestamp (`timestamp` in YAML: microseconds, UTC)")


def resolve_callable(target: Callable | str | None) -> Callable | None:
    """A function, or a `package.module:function` reference to one (the YAML form)."""
    if target is None or callable(target):
        return target
    module, _, name = target.partition(":")
    if not name:
        raise SpecError(f"function reference {target!r} must look like 'package.module:function'")
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class SourceSpec:
    """An upstream system's files in the landing zone, ingested into the system's `raw_<name>` table.

    `delivery="event"`: files arrive per partition (a missing one is an error only with `must_arrive`); an
    event happens once, so `keys` are unique across the whole table. `"reference"`: delivered once or now
    and then, each delivery a new version of its rows (SCD type 2), so a row is a duplicate only with the
    same keys at the same time, and joins see the latest version as of their time.
    `time_from_landing`: the files have no time column; each row takes its landing period's start.
    `max_drop`: a delivery with fewer rows than (1 - max_drop) x the partition's previous version or, for a
    source that declares `must_arrive`, x its average at the same time of day on the last published days,
    is refused unless the run allows it.
    """

    name: str
    description: str
    columns: tuple[Column, ...]
    keys: tuple[str, ...]
    owner: str
    time_column: str = "event_time"
    delivery: Literal["event", "reference"] = "event"
    must_arrive: bool = False
    time_from_landing: bool = False
    required: tuple[str, ...] = ()  # non-key columns a row is useless without
    max_drop: float = 0.5
    system: str = ""

    @property
    def schema(self) -> pa.Schema:
        return arrow_schema(self.columns)

    @property
    def asset_name(self) -> str:
        return f"raw_{self.name}"

    @property
    def table(self) -> str:
        return f"{self.system}.raw_{self.name}"

    @property
    def quarantine_table(self) -> str:
        return f"{self.system}.quarantine_{self.name}"

    @property
    def unique_on(self) -> tuple[str, ...]:
        """What no two published rows share: the key; for reference data, each delivery of a key is a new
        version (SCD type 2), so the key and the time."""
        if self.delivery == "reference":
            return tuple(dict.fromkeys((*self.keys, self.time_column)))
        return self.keys

    def validate(self) -> None:
        names = [c.name for c in self.columns]
        for wanted in (*self.keys, self.time_column, *self.required):
            if wanted not in names:
                raise SpecError(f"source {self.name}: '{wanted}' is not one of its columns {names}")
        _require_timestamp(f"source {self.name}", self.schema, self.time_column)
        if self.delivery not in ("event", "reference"):
            raise SpecError(f"source {self.name}: delivery must be 'event' or 'reference', not {self.delivery!r}")


@dataclass(frozen=True)
class FeatureInput:
    """A table a feature group reads, over [start - lookback, end - lag) of the range being computed.

    `lookback=None` reads all history up to the end: reference data such as merchants.
    """

    source: SourceSpec | FeatureGroupSpec | str
    lookback: dt.timedelta | None = dt.timedelta(0)
    lag: dt.timedelta = dt.timedelta(0)

    @property
    def name(self) -> str:
        return self.source if isinstance(self.source, str) else self.source.name


@dataclass(frozen=True)
class FeatureGroupSpec:
    """A versioned table of model-independent features for one entity (no keys: global features).

    Computed by `sql` (DuckDB over views named after the inputs; `$start` and `$end` bind the range being
    computed) or by `function(inputs: dict[str, pa.Table], start, end) -> pa.Table`. Rows outside the
    range are dropped, so lookback rows only feed windows. A daily run and a backfill must give the same
    rows: the builder checks it after every range run.
    """

    name: str
    description: str
    entity_keys: tuple[str, ...]
    columns: tuple[Column, ...]
    inputs: tuple[FeatureInput, ...]
    owner: str
    sql: str = ""
    function: Callable | str | None = None
    version: int = 1
    time_column: str = "event_time"
    identifiers: tuple[str, ...] = ()  # identify a row beyond entity and time; never served as features
    created_column: str | None = None  # breaks ties between rows of one key and time
    warm_up: dt.timedelta | None = None  # history before every window is full; default: the longest lookback
    online: bool = False  # each entity's latest row also kept in the online store, for serving
    system: str = ""

    @property
    def schema(self) -> pa.Schema:
        return arrow_schema(self.columns)

    @property
    def asset_name(self) -> str:
        return self.name

    @property
    def online_asset_name(self) -> str:
        return f"{self.name}_online"

    @property
    def table(self) -> str:
        return f"{self.system}.{self.name}_v{self.version}"

    @property
    def feature_columns(self) -> tuple[str, ...]:
        not_features = (*self.entity_keys, self.time_column, *self.identifiers, self.created_column)
        return tuple(c.name for c in self.columns if c.name not in not_features)

    @property
    def lookback(self) -> dt.timedelta:
        """The longest history any input is read over."""
        return max((i.lookback or dt.timedelta(0) for i in self.inputs), default=dt.timedelta(0))

    @property
    def history_needed(self) -> dt.timedelta:
        """History after the system's start before the group's values are complete (every window full)."""
        return self.warm_up if self.warm_up is not None else self.lookback

    def validate(self) -> None:
        names = [c.name for c in self.columns]
        for wanted in (*self.entity_keys, self.time_column, *self.identifiers):
            if wanted not in names:
                raise SpecError(f"feature group {self.name}: '{wanted}' is not one of its columns {names}")
        if bool(self.sql) == bool(self.function):
            raise SpecError(f"feature group {self.name}: declare exactly one of `sql` and `function`")
        if self.online and not self.entity_keys:
            raise SpecError(f"feature group {self.name}: `online` serves rows by entity; it has no entity keys")
        _require_timestamp(f"feature group {self.name}", self.schema, self.time_column)


@dataclass(frozen=True)
class FeatureSelection:
    """Features a view takes from one group: all its features by default, optionally renamed by a prefix.

    `ttl`: a feature row older than this at the spine row's time reads as missing.
    """

    group: FeatureGroupSpec | str
    features: tuple[str, ...] | None = None
    prefix: str = ""
    ttl: dt.timedelta | None = None

    @property
    def name(self) -> str:
        return self.group if isinstance(self.group, str) else self.group.name

    @property
    def columns(self) -> tuple[str, ...]:
        return self.features if self.features is not None else self.group.feature_columns

    @property
    def output_columns(self) -> tuple[str, ...]:
        return tuple(f"{self.prefix}{c}" for c in self.columns)


@dataclass(frozen=True)
class Label:
    """What a training row learns: a column of the spine, or a value found in a label source.

    With `source`, the label is `value`, a DuckDB SQL aggregate over the source rows with the spine row's
    `on` keys received before the training set's as-of time, or `missing` where there is none (for example
    `true` if a report names the transaction, else `false`). Labels are final `maturity` after the spine
    row's time: training rows are only those older than that.
    """

    column: str
    kind: Literal["binary", "regression"] = "binary"
    source: SourceSpec | FeatureGroupSpec | str | None = None
    on: tuple[str, ...] = ()
    value: str = "true"
    missing: str = "false"
    maturity: dt.timedelta = dt.timedelta(0)


@dataclass(frozen=True)
class Split:
    """Time-based split: the latest `validation_fraction` of days validate, `gap` apart from training."""

    validation_fraction: float = 0.2
    gap: dt.timedelta = dt.timedelta(0)


@dataclass(frozen=True)
class FeatureViewSpec:
    """A training dataset: a label spine joined point-in-time to feature groups, plus on-demand features.

    The spine is a source or group whose rows are the examples (`spine_keys` identify one); its
    `spine_columns` are what the examples carry (entity keys, request-time values). `on_demand` is one
    function (Arrow table -> Arrow table with `on_demand_columns` added), called by the training-set
    builder and by inference alike. Training rows start once every selected group's windows are full
    (`training_start_offset`), or `warm_up` after the system's first partition if that is later: a feature
    still filling its window would teach the model values it never sees in service, and show as drift.
    """

    name: str
    description: str
    spine: SourceSpec | FeatureGroupSpec | str
    spine_keys: tuple[str, ...]
    label: Label
    selections: tuple[FeatureSelection, ...]
    owner: str
    spine_columns: tuple[str, ...] | None = None
    on_demand: Callable | str | None = None
    on_demand_columns: tuple[str, ...] = ()
    split: Split = Split()
    warm_up: dt.timedelta = dt.timedelta(0)
    system: str = ""

    @property
    def asset_name(self) -> str:
        return f"{self.name}_training_set"

    @property
    def training_start_offset(self) -> dt.timedelta:
        return max([self.warm_up, *(s.group.history_needed for s in self.selections)])

    @property
    def table(self) -> str:
        return f"{self.system}.{self.name}_training_set"

    @property
    def spine_time(self) -> str:
        return self.spine.time_column

    @property
    def spine_output_columns(self) -> tuple[str, ...]:
        return self.spine_columns if self.spine_columns is not None else tuple(self.spine.schema.names)

    @property
    def label_source(self) -> SourceSpec | FeatureGroupSpec:
        return self.label.source if self.label.source is not None else self.spine

    def matched_time_column(self, selection: FeatureSelection) -> str:
        return f"{selection.prefix}{selection.name}_event_time"

    @property
    def output_columns(self) -> tuple[str, ...]:
        """Every column the view's vectors carry: spine, selected features, matched times, on-demand."""
        selected = [c for s in self.selections for c in (*s.output_columns, self.matched_time_column(s))]
        return tuple(dict.fromkeys((*self.spine_output_columns, *selected, *self.on_demand_columns)))

    def column_docs(self) -> dict[str, Column]:
        """Description and tags of every column the view's vectors carry that a spec documents."""
        docs = {c.name: c for c in self.spine.columns}
        for selection in self.selections:
            by_name = {c.name: c for c in selection.group.columns}
            for column, output in zip(selection.columns, selection.output_columns, strict=True):
                docs[output] = dataclasses.replace(by_name[column], name=output)
        return docs

    def validate(self) -> None:
        spine_names = self.spine.schema.names
        for wanted in (*self.spine_keys, *self.spine_output_columns):
            if wanted not in spine_names:
                raise SpecError(f"feature view {self.name}: '{wanted}' is not a column of spine {self.spine.name}")
        for selection in self.selections:
            missing = set(selection.columns) - set(selection.group.feature_columns)
            if missing:
                raise SpecError(f"feature view {self.name}: group {selection.name} has no features {sorted(missing)}")
            keys = set(selection.group.entity_keys) - set(self.spine_output_columns)
            if keys:
                raise SpecError(
                    f"feature view {self.name}: the spine's columns lack {sorted(keys)}, the entity keys of "
                    f"group {selection.name}"
                )
        if self.label.source is not None and set(self.label.on) - set(self.spine_output_columns):
            raise SpecError(f"feature view {self.name}: label keys {self.label.on} must be spine columns")


@dataclass(frozen=True)
class Gate:
    """A condition a candidate model must meet to become champion.

    `minimum`/`maximum`: an absolute floor or ceiling on the metric. `champion_tolerance`: the candidate may
    be at most this much worse than the current champion, both scored on the candidate's validation rows.
    """

    metric: str
    minimum: float | None = None
    maximum: float | None = None
    champion_tolerance: float | None = None


@dataclass(frozen=True)
class ModelSpec:
    """A model: its feature view, the columns it uses, a pipeline factory and the gates it must pass.

    `pipeline(seed)` returns an unfitted scikit-learn compatible pipeline with its model-dependent
    transformations (imputing, encoding) inside, so training and serving run the same code.
    `alert_threshold` (binary models): scores at or above it are alerts. Retraining follows sustained drift
    (`drifted_partitions_to_retrain` consecutive partitions with a drift share of `drift_share_to_retrain`
    or more), and waits until `new_labelled_partitions_to_retrain` partitions from the drift onset have final
    labels: before that, a new model could not learn anything the champion did not. A sustained fall of
    realised performance retrains too: the `watched_metric` (the first gate's metric), realised over the last
    `performance_pool_partitions` partitions served by one version, pooled, lying `performance_drop_to_retrain`
    or more below its validation figure on `degraded_partitions_to_retrain` consecutive partitions. One day
    holds few positives, so its metric is noise; the pooled partitions are what makes it a signal.
    Drift is measured against the latest `drift_reference_window` of the train split (None: all of it). A
    partition counts as drifted when its drift share reaches `drift_share_to_retrain`, or when a column
    drifts that had not been: its score rose `drift_rise_to_retrain` or more above its median over the
    `drift_baseline_partitions` partitions before, under the same model version. Columns that drift every day
    (a slow trend in the population, since the training window) then do not count, and a single cause does.
    """

    name: str
    description: str
    feature_view: FeatureViewSpec | str
    features: tuple[str, ...]
    pipeline: Callable | str
    owner: str
    gates: tuple[Gate, ...] = ()
    alert_threshold: float = 0.5
    seed: int = 7
    drift_share_to_retrain: float = 0.5
    drifted_partitions_to_retrain: int = 2  # sustained drift: this many consecutive drifted partitions
    new_labelled_partitions_to_retrain: int = 7  # final labels from the drift onset a retrain needs to learn from
    performance_drop_to_retrain: float = 0.15
    degraded_partitions_to_retrain: int = 3
    performance_pool_partitions: int = 5
    drift_reference_window: dt.timedelta | None = dt.timedelta(days=28)
    drift_rise_to_retrain: float = 0.12
    drift_baseline_partitions: int = 7
    system: str = ""

    @property
    def watched_metric(self) -> str | None:
        return self.gates[0].metric if self.gates else None

    @property
    def output_column(self) -> str:
        """Where predictions keep the model's output: a probability (binary) or a predicted value."""
        return "score" if self.feature_view.label.kind == "binary" else "prediction"

    @property
    def registered_name(self) -> str:
        """The MLflow registered model: one per system and model."""
        return f"{self.system}.{self.name}"

    @property
    def predictions_table(self) -> str:
        return f"{self.system}.{self.name}_predictions"

    @property
    def drift_table(self) -> str:
        return f"{self.system}.{self.name}_feature_drift"

    @property
    def performance_table(self) -> str:
        return f"{self.system}.{self.name}_performance"

    def build_pipeline(self, seed: int | None = None):
        return resolve_callable(self.pipeline)(self.seed if seed is None else seed)

    def validate(self) -> None:
        if not self.features:
            raise SpecError(f"model {self.name}: declare the features it uses")
        unknown = [f for f in self.features if f not in self.feature_view.output_columns]
        if unknown:
            raise SpecError(f"model {self.name}: features {unknown} are not columns of feature view "
                            f"{self.feature_view.name} ({list(self.feature_view.output_columns)})")


@dataclass(frozen=True)
class System:
    """One ML system: its sources, feature groups, feature views and models, on one partitioning.

    Declaring a system binds every spec to it: names given as strings are resolved, and every table,
    asset key, group, registered model and sensor is namespaced by the system's name.
    """

    name: str
    description: str
    start: dt.date
    owners: tuple[str, ...]
    sources: tuple[SourceSpec, ...] = ()
    feature_groups: tuple[FeatureGroupSpec, ...] = ()
    feature_views: tuple[FeatureViewSpec, ...] = ()
    models: tuple[ModelSpec, ...] = ()
    cadence: Literal["daily", "hourly"] = "daily"
    end: dt.date | None = None  # last partition's day; default: open-ended
    # When each new partition's landing files are ingested (cron, UTC); downstream layers follow eagerly.
    ingest_cron: str = ""  # default: 00:30 for daily systems, 5 past the hour for hourly ones
    rebuild_training_cron: str = "0 2 * * 1"  # training sets (and so models) are rebuilt weekly
    automation_on: bool = False  # whether daily automation starts running; else it waits for a switch in the UI

    def __post_init__(self):
        if not NAME.match(self.name):
            raise SpecError(f"system name {self.name!r} must be lower-case letters, digits and underscores")
        if self.cadence not in CADENCES:
            raise SpecError(f"system {self.name}: cadence must be one of {sorted(CADENCES)}")
        _Binder(self).bind()

    @property
    def step(self) -> dt.timedelta:
        return CADENCES[self.cadence]

    def source(self, name: str) -> SourceSpec:
        return _by_name(self.sources, name, f"system {self.name} has no source")

    def feature_group(self, name: str) -> FeatureGroupSpec:
        return _by_name(self.feature_groups, name, f"system {self.name} has no feature group")

    def feature_view(self, name: str) -> FeatureViewSpec:
        return _by_name(self.feature_views, name, f"system {self.name} has no feature view")

    def model(self, name: str) -> ModelSpec:
        return _by_name(self.models, name, f"system {self.name} has no model")


def _by_name(specs, name: str, missing: str):
    for spec in specs:
        if spec.name == name:
            return spec
    raise SpecError(f"{missing} named {name!r} (it has {[s.name for s in specs]})")


class _Binder:
    """Replaces every reference by the system's own bound spec, in dependency order."""

    def __init__(self, system: System):
        self.system = system
        self.tables: dict[str, SourceSpec | FeatureGroupSpec] = {}

    def bind(self) -> None:
        system = self.system
        _unique_names(system)
        sources = tuple(self._bound_source(s) for s in system.sources)
        groups = self._bound_groups(system.feature_groups)
        views = tuple(self._bound_view(v) for v in system.feature_views)
        views_by_name = {v.name: v for v in views}
        models = tuple(self._bound_model(m, views_by_name) for m in system.models)
        for name, value in (("sources", sources), ("feature_groups", groups), ("feature_views", views),
                            ("models", models)):
            object.__setattr__(system, name, value)

    def _bound_source(self, spec: SourceSpec) -> SourceSpec:
        bound = dataclasses.replace(spec, system=self.system.name)
        bound.validate()
        self.tables[spec.name] = bound
        return bound

    def _bound_groups(self, groups: tuple[FeatureGroupSpec, ...]) -> tuple[FeatureGroupSpec, ...]:
        pending, bound = list(groups), {}
        while pending:  # groups may read groups: bind each once its inputs are bound
            ready = [g for g in pending if all(i.name in self.tables for i in g.inputs)]
            if not ready:
                unknown = sorted({i.name for g in pending for i in g.inputs} - set(self.tables)
                                 - {g.name for g in pending})
                raise SpecError(f"system {self.system.name}: feature group inputs {unknown or 'form a cycle'} "
                                f"are not declared sources or groups")
            for group in ready:
                inputs = tuple(dataclasses.replace(i, source=self.tables[i.name]) for i in group.inputs)
                bound[group.name] = dataclasses.replace(group, inputs=inputs, system=self.system.name)
                bound[group.name].validate()
                self.tables[group.name] = bound[group.name]
                pending.remove(group)
        return tuple(bound[g.name] for g in groups)

    def _table(self, reference, context: str):
        name = reference if isinstance(reference, str) else reference.name
        if name not in self.tables:
            raise SpecError(f"{context}: {name!r} is not a source or feature group of system {self.system.name}")
        return self.tables[name]

    def _group(self, reference, context: str) -> FeatureGroupSpec:
        table = self._table(reference, context)
        if not isinstance(table, FeatureGroupSpec):
            raise SpecError(f"{context}: {table.name!r} is a source; a view selects features from feature groups "
                            "(declare a group over the source)")
        return table

    def _bound_view(self, view: FeatureViewSpec) -> FeatureViewSpec:
        context = f"feature view {view.name}"
        label = view.label
        if label.source is not None:
            label = dataclasses.replace(label, source=self._table(label.source, context))
        selections = tuple(dataclasses.replace(s, group=self._group(s.group, context)) for s in view.selections)
        bound = dataclasses.replace(view, spine=self._table(view.spine, context), label=label,
                                    selections=selections, system=self.system.name)
        bound.validate()
        return bound

    def _bound_model(self, model: ModelSpec, views: dict[str, FeatureViewSpec]) -> ModelSpec:
        name = model.feature_view if isinstance(model.feature_view, str) else model.feature_view.name
        if name not in views:
            raise SpecError(f"model {model.name}: {name!r} is not a feature view of system {self.system.name}")
        bound = dataclasses.replace(model, feature_view=views[name], system=self.system.name)
        bound.validate()
        return bound


def _unique_names(system: System) -> None:
    names = [s.name for s in (*system.sources, *system.feature_groups)]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise SpecError(f"system {system.name}: names used twice by sources and feature groups: {repeated}")
