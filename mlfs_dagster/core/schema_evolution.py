"""Versioned tables: a spec change that would break readers is refused; an added column evolves in place.

A feature group's table is named after its version. Removing, renaming or retyping a column, or changing
the entity keys or the time column, would silently change what every reader of that table gets, so it is
refused with a message naming the change until the version is bumped (a new table beside the old one,
which stays readable). Adding a column breaks nobody: Iceberg schema evolution adds it in place, and
older rows read it as null.
"""

from __future__ import annotations

import pyarrow as pa

from mlfs_dagster.core.offline_store import OfflineStore, table_schema

KEYS_PROPERTY = "mlfs.entity-keys"
TIME_PROPERTY = "mlfs.time-column"


class SchemaChangeError(ValueError):
    """A declared schema would break the readers of an existing table version."""


def evolve_table(store: OfflineStore, identifier: str, schema: pa.Schema, time_column: str,
                 keys: tuple[str, ...]) -> None:
    """Create the table, or check the declared schema against it and add new columns in place."""
    table = store.ensure_table(identifier, schema, time_column)
    current = _plain(table_schema(table))
    changes = breaking_changes(current, schema) + _key_changes(table.properties, time_column, keys)
    if changes:
        raise SchemaChangeError(
            f"{identifier}: {'; '.join(changes)}. These changes break readers of this version: bump the "
            f"version to write a new table beside it (the old one stays readable)."
        )
    store.add_new_columns(identifier, schema)
    wanted = {KEYS_PROPERTY: ",".join(keys), TIME_PROPERTY: time_column}
    if any(table.properties.get(k) != v for k, v in wanted.items()):
        store.table(identifier).transaction().set_properties(wanted).commit_transaction()


def breaking_changes(current: pa.Schema, declared: pa.Schema) -> list[str]:
    """Columns removed (or renamed) and columns whose type changed, in words."""
    changes = []
    for field in current:
        if field.name not in declared.names:
            changes.append(f"column '{field.name}' removed or renamed")
        elif not _as_stored(declared.field(field.name).type).equals(field.type):
            changes.append(f"column '{field.name}' retyped from {field.type} to {declared.field(field.name).type}")
    return changes


def _key_changes(properties: dict, time_column: str, keys: tuple[str, ...]) -> list[str]:
    changes = []
    if KEYS_PROPERTY in properties and properties[KEYS_PROPERTY] != ",".join(keys):
        changes.append(f"entity keys changed from ({properties[KEYS_PROPERTY]}) to ({', '.join(keys)})")
    if TIME_PROPERTY in properties and properties[TIME_PROPERTY] != time_column:
        changes.append(f"time column changed from '{properties[TIME_PROPERTY]}' to '{time_column}'")
    return changes


def _as_stored(arrow_type: pa.DataType) -> pa.DataType:
    """The type a column declared as `arrow_type` reads back as from Iceberg (int16 is stored as int32)."""
    from pyiceberg.io.pyarrow import _ConvertToIcebergWithoutIDs, schema_to_pyarrow, visit_pyarrow
    from pyiceberg.schema import Schema
    from pyiceberg.types import NestedField

    stored = visit_pyarrow(arrow_type, _ConvertToIcebergWithoutIDs())
    schema = schema_to_pyarrow(Schema(NestedField(1, "c", stored, required=False)), include_field_ids=False)
    return _plain_type(schema.field("c").type)


def _plain(schema: pa.Schema) -> pa.Schema:
    return pa.schema([pa.field(f.name, _plain_type(f.type)) for f in schema])


def _plain_type(arrow_type: pa.DataType) -> pa.DataType:
    """Iceberg reads strings back as large strings; the difference means nothing to a reader."""
    if pa.types.is_large_string(arrow_type):
        return pa.string()
    if pa.types.is_large_binary(arrow_type):
        return pa.binary()
    return arrow_type
