"""The one daily partitioning every partitioned asset shares."""

import datetime as dt

from dagster import AssetExecutionContext, DailyPartitionsDefinition

from mlfs_dagster.core.offline_store import TimeRange
from mlfs_dagster.settings import Settings

DAILY = DailyPartitionsDefinition(start_date=Settings.from_env().start_date.isoformat(), timezone="UTC")


def range_tags(days: tuple[dt.date, dt.date] | None) -> dict[str, str]:
    """Run tags that make one run cover the days first..last (a single-run backfill); none for None."""
    if days is None:
        return {}
    first, last = days
    return {"dagster/asset_partition_range_start": first.isoformat(),
            "dagster/asset_partition_range_end": last.isoformat()}


def partition_range(context: AssetExecutionContext) -> TimeRange:
    """The days this run covers: one partition, or a whole range in a single-run backfill."""
    window = context.partition_time_window
    return TimeRange(window.start, window.end)
