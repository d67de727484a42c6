"""The offline store: Apache Iceberg tables in a pyiceberg catalog.

Partitioned tables are partitioned by `day(<time column>)`; a run replaces whole days in one commit
(`overwrite` with a filter on the time range), so re-running a partition never duplicates rows.
Reads push column selection and time filters into the scan, and hand Arrow to DuckDB for the heavy work.
"""

from __future__ import annotations

import datetime as dt
import warnings
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.exceptions import NoSuchTableError
from pyiceberg.expressions import AlwaysTrue, And, BooleanExpression, GreaterThanOrEqual, LessThan
from pyiceberg.transforms import DayTransform

if TYPE_CHECKING:
    from pyiceberg.table import Table


@dataclass(frozen=True)
class TimeRange:
    """A half-open range of instants [start, end), in UTC."""

    start: dt.datetime
    end: dt.datetime

    @classmethod
    def of_days(cls, first: dt.date, last: dt.date) -> TimeRange:
        """Every instant of the days first..last, both included."""
        return cls(_midnight(first), _midnight(last + dt.timedelta(days=1)))

    def days(self) -> list[dt.date]:
        count = (self.end - self.start).days
        return [self.start.date() + dt.timedelta(days=i) for i in range(count)]

    def shifted(self, start_days: int = 0, end_days: int = 0) -> TimeRange:
        return TimeRange(self.start + dt.timedelta(days=start_days), self.end + dt.timedelta(days=end_days))

    def filter(self, column: str) -> BooleanExpression:
        return And(GreaterThanOrEqual(column, self.start.isoformat()), LessThan(column, self.end.isoformat()))


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)


@dataclass(frozen=True)
class TableStatus:
    identifier: str
    rows: int
    snapshot_id: int | None
    location: str


class OfflineStore:
    """Iceberg tables behind a SQL catalog (SQLite embedded, PostgreSQL in production)."""

    def __init__(self, catalog_uri: str, warehouse: str, catalog_name: str = "mlfs"):
        self.catalog_uri = catalog_uri
        self.warehouse = warehouse
        self.catalog_name = catalog_name

    @cached_property
    def catalog(self) -> SqlCatalog:
        for location in (self.catalog_uri.removeprefix("sqlite:///"), self.warehouse.removeprefix("file://")):
            if "://" not in location:
                Path(location).parent.mkdir(parents=True, exist_ok=True)
        return SqlCatalog(self.catalog_name, uri=self.catalog_uri, warehouse=self.warehouse)

    def table(self, identifier: str) -> Table:
        return self.catalog.load_table(identifier)

    def exists(self, identifier: str) -> bool:
        return self.catalog.table_exists(identifier)

    def ensure_table(self, identifier: str, schema: pa.Schema, day_partition_column: str | None) -> Table:
        """Create the table if missing, partitioned by day of `day_partition_column` when given."""
        try:
            return self.table(identifier)
        except NoSuchTableError:
            pass
        self.catalog.create_namespace_if_not_exists(identifier.rsplit(".", 1)[0])
        table = self.catalog.create_table_if_not_exists(identifier, schema=schema)
        if day_partition_column and table.spec().is_unpartitioned():
            with table.update_spec() as spec:
                spec.add_field(day_partition_column, DayTransform(), f"{day_partition_column}_day")
        return self.table(identifier)

    def replace_range(self, identifier: str, data: pa.Table, column: str, time_range: TimeRange) -> int:
        """Replace every row whose `column` falls in `time_range` with `data`, in one commit.

        Returns the new snapshot id. Rows of `data` outside the range are a programming error.
        """
        _require_inside(data, column, time_range)
        table = self.ensure_table(identifier, data.schema, column)
        return _overwrite(table, data, time_range.filter(column))

    def replace_all(self, identifier: str, data: pa.Table) -> int:
        """Replace the whole (unpartitioned) table with `data`, in one commit; returns the snapshot id."""
        return _overwrite(self.ensure_table(identifier, data.schema, None), data, AlwaysTrue())

    def read(
        self,
        identifier: str,
        columns: tuple[str, ...] | None = None,
        where: BooleanExpression | None = None,
        snapshot_id: int | None = None,
    ) -> pa.Table:
        """Read a table (or an older snapshot of it), selecting columns and filtering in the scan."""
        scan = self.table(identifier).scan(
            row_filter=where if where is not None else AlwaysTrue(),
            selected_fields=columns or ("*",),
            snapshot_id=snapshot_id,
        )
        return _without_large_types(scan.to_arrow())

    def read_range(
        self, identifier: str, column: str, time_range: TimeRange, columns: tuple[str, ...] | None = None
    ) -> pa.Table:
        return self.read(identifier, columns, time_range.filter(column))

    def snapshot_id(self, identifier: str) -> int | None:
        snapshot = self.table(identifier).current_snapshot()
        return snapshot.snapshot_id if snapshot else None

    def tag(self, identifier: str, snapshot_id: int, name: str) -> None:
        self.table(identifier).manage_snapshots().create_tag(snapshot_id, name).commit()

    def tags(self, identifier: str) -> dict[str, int]:
        return {
            name: ref.snapshot_id
            for name, ref in self.table(identifier).refs().items()
            if ref.snapshot_ref_type == "tag"
        }

    def status(self, identifier: str) -> TableStatus:
        """Row count from the current snapshot's summary: exact, and no data file is read."""
        table = self.table(identifier)
        snapshot = table.current_snapshot()
        rows = int(snapshot.summary["total-records"]) if snapshot and snapshot.summary else 0
        return TableStatus(identifier, rows, snapshot.snapshot_id if snapshot else None, table.location())

    def list_tables(self) -> list[str]:
        return sorted(
            ".".join(identifier)
            for namespace in self.catalog.list_namespaces()
            for identifier in self.catalog.list_tables(namespace)
        )


def _overwrite(table: Table, data: pa.Table, where: BooleanExpression) -> int:
    """Replace the rows matching `where` with `data` in one commit; returns the new snapshot id."""
    with warnings.catch_warnings():  # nothing to delete is normal on a first run, not worth a warning
        warnings.filterwarnings("ignore", "Delete operation did not match any records")
        table.overwrite(_conform(data, table), overwrite_filter=where)
    return table.refresh().current_snapshot().snapshot_id


def _require_inside(data: pa.Table, column: str, time_range: TimeRange) -> None:
    import pyarrow.compute as pc

    if data.num_rows == 0:
        return
    low, high = pc.min(data[column]).as_py(), pc.max(data[column]).as_py()
    if low < time_range.start or high >= time_range.end:
        raise ValueError(
            f"rows with {column} from {low} to {high} fall outside the range being replaced "
            f"[{time_range.start}, {time_range.end})"
        )


def _conform(data: pa.Table, table: Table) -> pa.Table:
    """Order and type the columns as the Iceberg table expects them."""
    from pyiceberg.io.pyarrow import schema_to_pyarrow

    target = schema_to_pyarrow(table.schema(), include_field_ids=False)
    missing = set(target.names) - set(data.column_names)
    if missing:
        raise ValueError(f"{table.name()}: data lacks columns {sorted(missing)}")
    return data.select(target.names).cast(target)


def _without_large_types(data: pa.Table) -> pa.Table:
    """pyiceberg reads strings as large_string; downstream code and DuckDB prefer plain types."""
    fields = [
        pa.field(f.name, pa.string() if pa.types.is_large_string(f.type) else f.type, f.nullable)
        for f in data.schema
    ]
    return data.cast(pa.schema(fields))
