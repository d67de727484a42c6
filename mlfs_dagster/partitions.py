"""The one daily partitioning every partitioned asset shares."""

from dagster import AssetExecutionContext, DailyPartitionsDefinition

from mlfs_dagster.core.offline_store import TimeRange
from mlfs_dagster.settings import Settings

DAILY = DailyPartitionsDefinition(start_date=Settings.from_env().start_date.isoformat(), timezone="UTC")


def partition_range(context: AssetExecutionContext) -> TimeRange:
    """The days this run covers: one partition, or a whole range in a single-run backfill."""
    window = context.partition_time_window
    return TimeRange(window.start, window.end)
