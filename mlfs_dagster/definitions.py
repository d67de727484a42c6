"""The mlfs-dagster code location: every domain's definitions, with stores configured from the environment."""

from dagster import Definitions

from mlfs_dagster.defs import features, inference, models, monitoring, raw, training
from mlfs_dagster.resources import resources_from_env

defs = Definitions.merge(
    raw.defs, features.defs, training.defs, models.defs, inference.defs, monitoring.defs,
    Definitions(resources=resources_from_env()),
)
