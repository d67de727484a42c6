"""Builders: declared systems -> Dagster definitions, by the same code for every system.

`system_definitions(system)` gives one system its raw, feature, training, model, inference and monitoring
assets with their checks, one retraining sensor per model, and the nightly maintenance of its tables, all
under the system's own key prefix, groups and partitions. `build_definitions(*systems)` merges systems into a code location with the stores
configured from the environment.
"""

import warnings

from dagster import (
    AssetSelection,
    AutomationConditionSensorDefinition,
    BetaWarning,
    DefaultSensorStatus,
    Definitions,
    PreviewWarning,
)

from mlfs_dagster.builders.alerts import failure_sensor
from mlfs_dagster.builders.features import feature_group_asset
from mlfs_dagster.builders.inference import predictions_asset
from mlfs_dagster.builders.maintenance import maintenance_asset, maintenance_schedule
from mlfs_dagster.builders.models import model_assets
from mlfs_dagster.builders.monitoring import drift_report_asset, retraining_sensor
from mlfs_dagster.builders.online import online_features_asset, online_view_asset
from mlfs_dagster.builders.performance import performance_asset, performance_schedule
from mlfs_dagster.builders.raw import source_asset
from mlfs_dagster.builders.training import training_set_asset
from mlfs_dagster.core.specs import System

# Single-run backfill policies and per-partition checks are beta/preview in Dagster 1.13 and deliberate here;
# their warnings would bury every command's output.
warnings.filterwarnings("ignore", category=BetaWarning)
warnings.filterwarnings("ignore", category=PreviewWarning)


def system_definitions(system: System) -> Definitions:
    assets = [source_asset(system, s) for s in system.sources]
    assets += [feature_group_asset(system, g) for g in system.feature_groups]
    assets += [online_features_asset(system, g) for g in system.feature_groups if g.online]
    assets += [online_view_asset(system, v) for v in system.feature_views if all(s.group.online for s in v.selections)]
    training_sets = {v.name: training_set_asset(system, v) for v in system.feature_views}
    assets += training_sets.values()
    sensors, schedules = [failure_sensor(system)], []
    for model in system.models:
        candidate, champion = model_assets(system, model)
        assets += [candidate, champion, predictions_asset(system, model), drift_report_asset(system, model),
                   performance_asset(system, model)]
        sensors.append(retraining_sensor(system, model, [training_sets[model.feature_view.name], candidate, champion]))
        schedules.append(performance_schedule(system, model))
    sensors.append(AutomationConditionSensorDefinition(
        f"{system.name}__daily_automation",
        target=AssetSelection.assets(*assets),
        default_status=DefaultSensorStatus.RUNNING if system.automation_on else DefaultSensorStatus.STOPPED,
        description=f"Takes each new partition of {system.name} through raw, features, inference and monitoring by "
        "the assets' automation conditions, and rebuilds training sets on their schedule (realised performance "
        "follows its own schedule, once labels are final).",
    ))
    # Maintenance is outside the automation sensor's target: its schedule runs it.
    return Definitions(assets=[*assets, maintenance_asset(system)], sensors=sensors,
                       schedules=[*schedules, maintenance_schedule(system)])


def build_definitions(*systems: System) -> Definitions:
    """A code location holding `systems`, with the stores configured from the environment."""
    from mlfs_dagster.resources import resources_from_env

    names = [s.name for s in systems]
    if len(set(names)) != len(names):
        raise ValueError(f"two systems share a name: {names}")
    return Definitions.merge(*(system_definitions(s) for s in systems), Definitions(resources=resources_from_env()))
