from dagster import Definitions

from mlfs_dagster.builders import source_asset
from mlfs_dagster.fraud.sources import SOURCES

defs = Definitions(assets=[source_asset(spec) for spec in SOURCES])
