"""The feature catalog: every system's feature groups with version, owner, entity, columns and freshness.

`mlfs features` prints it; each feature-group asset carries the same entry as Markdown in the UI.
"""

from __future__ import annotations

from collections.abc import Sequence

from mlfs_dagster.core.engine import query
from mlfs_dagster.core.offline_store import OfflineStore
from mlfs_dagster.core.specs import FeatureGroupSpec, System


def feature_catalog(store: OfflineStore, systems: Sequence[System]) -> list[dict]:
    return [_entry(store, system, group) for system in systems for group in system.feature_groups]


def _entry(store: OfflineStore, system: System, group: FeatureGroupSpec) -> dict:
    rows, latest = 0, None
    if store.exists(group.table):
        rows = store.status(group.table).rows
        times = store.read_batches(group.table, (group.time_column,))
        latest = query(f'SELECT max("{group.time_column}") FROM times', {"times": times}).column(0)[0].as_py()
    return {
        "system": system.name, "group": group.name, "version": group.version, "table": group.table,
        "owner": group.owner, "entity": list(group.entity_keys), "description": group.description,
        "columns": [{"name": c.name, "type": str(c.type), "description": c.description, "tags": list(c.tags)}
                    for c in group.columns],
        "rows": rows, "latest_event": latest.isoformat() if latest else None,
    }


def group_markdown(system: System, group: FeatureGroupSpec) -> str:
    """A feature group's catalog entry as Markdown (without its live figures, which change per run)."""
    lines = [
        f"**{system.name} / {group.name}** version {group.version}, owner {group.owner}",
        f"Entity: {', '.join(f'`{k}`' for k in group.entity_keys) or 'none (global features)'}; "
        f"time `{group.time_column}`; table `{group.table}`",
        "",
        "| column | type | description | tags |",
        "|---|---|---|---|",
    ]
    lines += [f"| `{c.name}` | {c.type} | {c.description} | {', '.join(c.tags)} |" for c in group.columns]
    return "\n".join(lines)
