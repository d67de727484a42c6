from dagster import Definitions

from mlfs_dagster.builders import feature_group_asset
from mlfs_dagster.fraud.features import FEATURE_GROUPS

defs = Definitions(assets=[feature_group_asset(spec) for spec in FEATURE_GROUPS])
