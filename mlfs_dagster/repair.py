"""The way back from data files lost under a table: the asset writing the table, and the `dagster` command that
re-materializes the partitions the files held (a partition overwrite drops the lost files' entries unread)."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable

from dagster import AssetKey

from mlfs_dagster.core.specs import System


def system_of(systems: Iterable[System], table: str) -> System:
    """Every table of a system lives in the system's namespace."""
    namespace = table.rsplit(".", 1)[0]
    for system in systems:
        if system.name == namespace:
            return system
    raise ValueError(f"no system of the workspace owns {table}")


def asset_writing(system: System, table: str) -> AssetKey:
    from mlfs_dagster.builders import system_definitions

    for assets in system_definitions(system).assets:
        for key, metadata in assets.metadata_by_key.items():
            if metadata.get("dagster/table_name") == table:
                return key
    raise ValueError(f"no asset of {system.name} writes {table}")


def partition_options(system: System, partitions: Iterable[str]) -> list[str]:
    """`--partition` / `--partition-range` options covering each lost day partition (`event_time_day=2026-01-05`):
    the whole day, so the overwrite covers whole files; none for an unpartitioned table."""
    from mlfs_dagster.builders.common import partition_key

    days = sorted({dt.date.fromisoformat(day) for p in partitions for day in re.findall(r"=(\d{4}-\d{2}-\d{2})", p)})
    options = []
    for day in days:
        start = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
        first, last = partition_key(system, start), partition_key(system, start + dt.timedelta(days=1) - system.step)
        options.append(f"--partition {first}" if first == last else f"--partition-range {first}...{last}")
    return options or [""]


def rematerialize_commands(system: System, table: str, partitions: Iterable[str], location: str) -> list[str]:
    key = asset_writing(system, table).to_user_string()
    return [f"dagster asset materialize {location} --select {key} {option}".rstrip()
            for option in partition_options(system, partitions)]
