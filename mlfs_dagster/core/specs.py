"""Declarations the whole system is built from: raw sources and feature groups.

A spec says what a table holds (columns with types, descriptions and tags), how it is keyed and timed,
and, for a feature group, which inputs over which lookback it is computed from. Builders turn specs into
Dagster assets, checks and UI schemas; the core computes from them. Nothing here imports Dagster.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa


@dataclass(frozen=True)
class Column:
    name: str
    type: pa.DataType
    description: str
    tags: tuple[str, ...] = ()


def arrow_schema(columns: tuple[Column, ...]) -> pa.Schema:
    return pa.schema([pa.field(c.name, c.type) for c in columns])


@dataclass(frozen=True)
class SourceSpec:
    """An upstream system's daily files in the landing zone, ingested into `raw.<name>`."""

    name: str
    description: str
    columns: tuple[Column, ...]
    time_column: str
    keys: tuple[str, ...]
    owner: str
    rows_every_day: bool = False  # an empty day is an incident, not a quiet day
    required: tuple[str, ...] = ()  # non-key columns a row is useless without

    @property
    def schema(self) -> pa.Schema:
        return arrow_schema(self.columns)

    @property
    def table(self) -> str:
        return f"raw.{self.name}"

    @property
    def quarantine_table(self) -> str:
        return f"quarantine.{self.name}"

    @property
    def asset_name(self) -> str:
        return f"raw_{self.name}"


@dataclass(frozen=True)
class FeatureInput:
    """A table a feature group reads, over the days [start - lookback_days, end - lag_days).

    `lookback_days=None` reads all history up to the end: reference data such as merchants.
    """

    source: SourceSpec | FeatureGroupSpec
    lookback_days: int | None = 0
    lag_days: int = 0

    @property
    def name(self) -> str:
        return self.source.name


@dataclass(frozen=True)
class FeatureGroupSpec:
    """A versioned table of model-independent features for one entity.

    `sql` is DuckDB SQL over views named after the inputs; `$start` and `$end` bind the time range being
    computed, and rows outside it are dropped, so lookback rows only feed windows.
    """

    name: str
    description: str
    entity_keys: tuple[str, ...]
    columns: tuple[Column, ...]
    inputs: tuple[FeatureInput, ...]
    sql: str
    owner: str
    version: int = 1
    time_column: str = "event_time"
    identifiers: tuple[str, ...] = ()  # identify a row beyond entity and time; never served as features

    @property
    def schema(self) -> pa.Schema:
        return arrow_schema(self.columns)

    @property
    def table(self) -> str:
        return f"features.{self.name}"

    @property
    def asset_name(self) -> str:
        return self.name

    @property
    def feature_columns(self) -> tuple[str, ...]:
        not_features = (*self.entity_keys, self.time_column, *self.identifiers)
        return tuple(c.name for c in self.columns if c.name not in not_features)

    @property
    def lookback_days(self) -> int:
        """Days of history the group needs before its values are complete (its warm-up)."""
        return max((i.lookback_days or 0 for i in self.inputs), default=0)
