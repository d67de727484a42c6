"""One place where failures are reported: a run-failure sensor per system.

For every failed run of the system's code location it writes the root cause on the run (tag), on each asset
the run was materializing (an observation with the error and the run), and in one log line.
"""

from dagster import (
    AssetObservation,
    DagsterEventType,
    DefaultSensorStatus,
    RunFailureSensorContext,
    SensorDefinition,
    run_failure_sensor,
)

from mlfs_dagster.core.specs import System

FAILURE_TAG = "mlfs/failure"


def failure_sensor_name(system: System) -> str:
    return f"{system.name}__run_failures"


def failure_sensor(system: System) -> SensorDefinition:
    @run_failure_sensor(
        name=failure_sensor_name(system),
        description=f"Reports every failed run of {system.name}: the root cause on the run's tags, on the metadata "
        "of each asset it was materializing, and in one log line.",
        default_status=DefaultSensorStatus.RUNNING,
    )
    def report_failure(context: RunFailureSensorContext):
        run = context.dagster_run
        cause = root_cause(context)
        context.instance.add_run_tags(run.run_id, {FAILURE_TAG: cause[:1000]})
        for key in _planned_assets(context.instance, run.run_id):
            context.instance.report_runless_asset_event(
                AssetObservation(key, metadata={"failed_run": run.run_id, "failure": cause}))
        context.log.error(f"{system.name}: run {run.run_id} failed: {cause}")

    return report_failure


def root_cause(context: RunFailureSensorContext) -> str:
    """The first failed step and its error's own message (the innermost cause), not the wrapper's."""
    steps = context.get_step_failure_events()
    if not steps:
        return context.failure_event.message or "run failed before any step"
    error = steps[0].step_failure_data.error
    while error.cause is not None:
        error = error.cause
    kind, _, text = error.message.strip().partition(": ")  # "package.ErrorClass: what happened"
    return f"{steps[0].step_key}: {text if text and ' ' not in kind else error.message.strip()}"


def _planned_assets(instance, run_id: str) -> set:
    """The assets the run set out to materialize (its plan, whichever way it was launched)."""
    planned = instance.get_records_for_run(run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION_PLANNED).records
    return {record.event_log_entry.dagster_event.asset_key for record in planned}
