"""The card-fraud reference system's code location: its declarations, built by the generic builders, and the
simulator standing in for the upstream systems, which land each new day's files every night."""

import datetime as dt
from pathlib import Path

from dagster import DefaultScheduleStatus, Definitions, OpExecutionContext, ScheduleDefinition, job, op

from card_fraud.simulator import extend, recorded_config
from card_fraud.system import SYSTEM
from mlfs_dagster.builders import build_definitions
from mlfs_dagster.settings import Settings


@op(description="Writes the simulated upstream systems' files for every day since the last one, up to yesterday.")
def land_simulated_days(context: OpExecutionContext) -> None:
    yesterday = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
    landing = Path(Settings.from_env().landing)
    if recorded_config(landing) is None:  # nothing to continue: the history starts with `mlfs demo`
        context.log.info(f"no simulation recorded in {landing}: run `mlfs demo` (or `mlfs simulate`) first")
        return
    written = extend(landing, through=yesterday)
    context.log.info(f"landed {[d.isoformat() for d in written] or 'nothing new'} in {landing}")


@job(description="The card-fraud simulator playing the upstream systems: one new day of files each night.")
def simulate_upstream():
    land_simulated_days()


upstream_schedule = ScheduleDefinition(
    name="card_fraud__simulated_upstream",
    job=simulate_upstream,
    cron_schedule="10 0 * * *",  # before the raw sources' ingestion at 00:30
    execution_timezone="UTC",
    default_status=DefaultScheduleStatus.RUNNING,
    description="Lands yesterday's simulated files, which the daily automation then ingests at 00:30.",
)

defs = Definitions.merge(build_definitions(SYSTEM), Definitions(jobs=[simulate_upstream],
                                                                schedules=[upstream_schedule]))
