"""What every builder shares: a system's asset keys, groups and partitions, and UI metadata from specs."""

import datetime as dt
import inspect
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from functools import cache, wraps

import pyarrow as pa
from dagster import (
    AssetCheckEvaluation,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetExecutionContext,
    AssetKey,
    AutomationCondition,
    Backoff,
    DailyPartitionsDefinition,
    FreshnessPolicy,
    HourlyPartitionsDefinition,
    Jitter,
    MetadataValue,
    RetryPolicy,
    RetryRequested,
    TableColumn,
    TableSchema,
    TimeWindowPartitionsDefinition,
)

from mlfs_dagster.core.offline_store import StoreUnavailableError, TimeRange
from mlfs_dagster.core.specs import Column, System


def asset_key(system: System, name: str) -> AssetKey:
    """Every asset of a system lives under the system's name, so two systems never share a key."""
    return AssetKey([system.name, name])


def group_name(system: System, layer: str) -> str:
    return f"{system.name}_{layer}"


@cache
def partitions(system: System) -> TimeWindowPartitionsDefinition:
    """The system's own partitions: its start, its cadence, and its end when it declares one."""
    end = (system.end + dt.timedelta(days=1)).isoformat() if system.end else None
    if system.cadence == "hourly":
        return HourlyPartitionsDefinition(start_date=f"{system.start.isoformat()}-00:00", end_date=end and f"{end}-00:00",
                                          timezone="UTC")
    return DailyPartitionsDefinition(start_date=system.start.isoformat(), end_date=end, timezone="UTC")


def history_start(system: System) -> dt.datetime:
    return dt.datetime.combine(system.start, dt.time(), tzinfo=dt.UTC)


def partition_range(context: AssetExecutionContext) -> TimeRange:
    """The instants this run covers: one partition, or a whole range in a single-run backfill."""
    window = context.partition_time_window
    return TimeRange(window.start, window.end)


def partition_key(system: System, period_start: dt.datetime) -> str:
    return period_start.strftime(partitions(system).fmt)


def add_partition_metadata(context: AssetExecutionContext, system: System,
                           figures: Mapping[dt.datetime, Mapping], key: AssetKey | None = None) -> None:
    """Each partition's own figures on its own materialization (never a range total copied onto each);
    `key` names the asset when the step materializes several."""
    for period_start, values in figures.items():
        context.add_asset_metadata(dict(values), asset_key=key, partition_key=partition_key(system, period_start))


def check_per_partition(context: AssetExecutionContext, system: System, key: AssetKey, name: str,
                        outcomes: Mapping[dt.datetime, tuple[bool, dict]],
                        severity: AssetCheckSeverity = AssetCheckSeverity.ERROR) -> AssetCheckResult:
    """A check's result for each partition of the run, keyed by period start: a range run logs one result per
    partition, so the UI shows each day's outcome, and returns the run's overall result."""
    if len(outcomes) > 1:
        for start, (passed, metadata) in outcomes.items():
            context.log_event(AssetCheckEvaluation(asset_key=key, check_name=name, passed=passed, metadata=metadata,
                                                   severity=severity, partition=partition_key(system, start)))
    failed = [partition_key(system, start) for start, (passed, _) in outcomes.items() if not passed]
    metadata = next(iter(outcomes.values()))[1] if len(outcomes) == 1 else {
        "partitions": len(outcomes), "failed_partitions": MetadataValue.json(failed)}
    return AssetCheckResult(asset_key=key, check_name=name, passed=not failed, severity=severity, metadata=metadata)


def column_schema(columns: tuple[Column, ...] | pa.Schema, docs: Mapping[str, Column] | None = None) -> TableSchema:
    """Columns with their types, and descriptions and tags (`pii`) wherever a spec documents them."""
    if not isinstance(columns, pa.Schema):
        docs, columns = {c.name: c for c in columns}, pa.schema([pa.field(c.name, c.type) for c in columns])
    docs = docs or {}
    return TableSchema(columns=[
        TableColumn(f.name, str(f.type), docs[f.name].description if f.name in docs else None,
                    tags={t: "" for t in docs[f.name].tags} if f.name in docs else None)
        for f in columns
    ])


def table_metadata(table: str, columns: tuple[Column, ...] | pa.Schema, docs: Mapping[str, Column] | None = None) -> dict:
    return {"dagster/table_name": table, "dagster/column_schema": column_schema(columns, docs)}


def period_ranges(time_range: TimeRange, step: dt.timedelta) -> list[TimeRange]:
    starts = time_range.periods(step)
    return [TimeRange(start, start + step) for start in starts]


CHUNK_PERIODS = 31  # periods a range run holds in memory at once: its memory follows a period's data, not the range's


def chunks(time_range: TimeRange, step: dt.timedelta, periods: int = CHUNK_PERIODS) -> list[TimeRange]:
    """The range in consecutive pieces of at most `periods` periods, for range runs to work through one by one."""
    starts = time_range.periods(step)[::periods]
    return [TimeRange(start, min(start + periods * step, time_range.end)) for start in starts]


def range_tags(first: str, last: str) -> dict[str, str]:
    """Run tags that make one run cover the partitions first..last (a single-run backfill)."""
    return {"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last}


def ingest_on_schedule(system: System) -> dict:
    """Raw assets: each new partition ingested once its period is over, at the system's ingest time."""
    cron = system.ingest_cron or ("5 * * * *" if system.cadence == "hourly" else "30 0 * * *")
    return {"automation_condition": AutomationCondition.on_cron(cron, "UTC"), **fresh_within(system, periods=2)}


def table_pool(table: str) -> str:
    """The concurrency pool of the steps writing `table`: commits to one Iceberg table race (the loser fails),
    so the instance's pool limit (dagster.yaml) makes the others wait for their turn instead."""
    return f"iceberg/{table}"


# A store down for a while (a database restart, a network cut): waits of about 10, 30, 70 and 150 s, each
# +-10 s so that the runs it failed do not all come back at once.
STORE_OUTAGE_RETRIES = RetryPolicy(max_retries=4, delay=10, backoff=Backoff.EXPONENTIAL, jitter=Jitter.PLUS_MINUS)


def retried_while_stores_are_unavailable(compute: Callable) -> Callable:
    """Decorate an asset's body: a step failed by an unavailable store (StoreUnavailableError) is retried after
    STORE_OUTAGE_RETRIES' delays. Only then: a `retry_policy` on the asset would also retry failures that would
    fail again the same way (a refused audit, a leak, labels not final yet, refused credentials)."""

    @contextmanager
    def outages_retried(context) -> Iterator[None]:
        try:
            yield
        except StoreUnavailableError as outage:  # past the last retry, Dagster fails the step with it
            policy, retry = STORE_OUTAGE_RETRIES, context.retry_number + 1
            raise RetryRequested(policy.max_retries, policy.calculate_delay(retry)) from outage

    if inspect.isgeneratorfunction(compute):
        @wraps(compute)
        def steps(context, *args, **kwargs):
            with outages_retried(context):
                yield from compute(context, *args, **kwargs)

        return steps

    @wraps(compute)
    def step(context, *args, **kwargs):
        with outages_retried(context):
            return compute(context, *args, **kwargs)

    return step


def follow_upstream(system: System) -> dict:
    """Features, inference and monitoring: the latest partition is computed as soon as its inputs are."""
    return {"automation_condition": AutomationCondition.eager(), **fresh_within(system, periods=2)}


def fresh_within(system: System, periods: float) -> dict:
    """A freshness policy the UI shows: late once the newest data is older than `periods` partitions."""
    return {"freshness_policy": FreshnessPolicy.time_window(fail_window=system.step * periods,
                                                            warn_window=system.step * (periods - 0.5))}
