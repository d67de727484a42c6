"""The card-fraud reference system's code location: its declarations, built by the generic builders."""

from card_fraud.system import SYSTEM
from mlfs_dagster.builders import build_definitions

defs = build_definitions(SYSTEM)
