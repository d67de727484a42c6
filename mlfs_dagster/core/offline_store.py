"""The offline store: Apache Iceberg tables in a pyiceberg catalog.

Partitioned tables are partitioned by `day(<time column>)`; a run replaces whole periods in one commit
(`overwrite` with a filter on the time range), so re-running a partition never duplicates rows.
Reads push column selection and time filters into the scan, and hand Arrow to DuckDB for the heavy work.

Write-audit-publish: `base_snapshot` gives main's head, `stage_ranges` writes on a branch forked from it,
the caller audits the staged snapshot, then `publish` moves main to the branch's head, only if main has
not moved since (pyiceberg 0.12 has no fast-forward, so the check is ours), or `discard` drops it.

Concurrent writers of one table (runs of different partitions, where no pool serialises them) race for its
catalog entry at each commit. A commit that lost is made again from the table's current metadata; a branch
whose base main has left must be staged again, which `retry_conflicts` does for a caller's whole write
(ingestion re-stages and re-audits). Each retry waits a growing, jittered pause and is counted in
`commit_retries`, which the assets report. pyiceberg's own retry is turned off on our tables
(`NO_PYICEBERG_RETRIES`): every retry is ours, bounded and counted.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property, reduce
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.exceptions import CommitFailedException, NoSuchTableError
from pyiceberg.expressions import (
    AlwaysFalse,
    AlwaysTrue,
    And,
    BooleanExpression,
    GreaterThanOrEqual,
    LessThan,
    LessThanOrEqual,
    Or,
)
from pyiceberg.transforms import DayTransform
from sqlalchemy import make_url
from sqlalchemy.exc import DatabaseError, IntegrityError, OperationalError

from mlfs_dagster.core.storage import (
    DEFAULT_S3,
    REFUSED,
    S3Options,
    StoreAccessError,
    StoreLocationError,
    StoreUnavailableError,
    says,
)

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

    def periods(self, step: dt.timedelta) -> list[dt.datetime]:
        """The start of every period of length `step` in the range; the range must hold whole periods."""
        count, rest = divmod(self.end - self.start, step)
        if rest:
            raise ValueError(f"[{self.start}, {self.end}) is not a whole number of {step} periods")
        return [self.start + i * step for i in range(count)]

    def filter(self, column: str) -> BooleanExpression:
        return And(GreaterThanOrEqual(column, self.start.isoformat()), LessThan(column, self.end.isoformat()))

    def rows_of(self, table: pa.Table, column: str) -> pa.Table:
        """The rows of `table` whose `column` lies in the range."""
        return table.filter(pc.and_(pc.greater_equal(table[column], self.start), pc.less(table[column], self.end)))


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)


def any_of(ranges: Sequence[TimeRange], column: str) -> BooleanExpression:
    """Rows whose `column` falls in any of `ranges`."""
    filters = [r.filter(column) for r in ranges]
    return filters[0] if len(filters) == 1 else Or(*filters)


def between_bounds(column: str, values: pa.ChunkedArray) -> BooleanExpression:
    """Rows whose `column` lies between the least and the greatest of `values`: all that a scan for rows
    matching any of them needs, and files whose statistics lie outside are skipped (sequential or
    time-ordered keys, the usual kind, leave a few files). Null values match nothing; other types than
    strings, integers, timestamps and dates are not bounded."""
    kind = values.type
    is_time = pa.types.is_timestamp(kind) or pa.types.is_date(kind)
    if not (is_time or pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_integer(kind)):
        return AlwaysTrue()
    least, greatest = (scalar.as_py() for scalar in pc.min_max(values).values())
    if least is None:
        return AlwaysFalse()
    literal = (lambda v: v.isoformat()) if is_time else (lambda v: v)
    return And(GreaterThanOrEqual(column, literal(least)), LessThanOrEqual(column, literal(greatest)))


# Snapshot summary property of a staged write: the main snapshot its branch was forked from.
WAP_BASE = "mlfs.wap-base"
NO_PYICEBERG_RETRIES = {"commit.retry.num-retries": "0"}  # table property: retries are `retry_conflicts`'s
COMMIT_ATTEMPTS = 10  # K writers of one table need up to K attempts; the rest is margin for racing on
FIRST_RETRY_WAIT = 0.1  # seconds, doubled at each retry up to MAX_RETRY_WAIT, with jitter
MAX_RETRY_WAIT = 5.0

T = TypeVar("T")
log = logging.getLogger(__name__)


class PublishConflictError(RuntimeError):
    """Main moved after a branch was staged on it: publishing would drop that commit. Re-run to retry."""


class MissingDataFileError(RuntimeError):
    """A snapshot references data files that are gone (deleted by hand, a lost bucket object): the message names
    the table, snapshot, files and the partitions they held, and the ways back."""

    def __init__(self, table: str, snapshot_id: int, files: dict[str, str], rollback_to: int | None):
        self.table, self.snapshot_id, self.files, self.rollback_to = table, snapshot_id, files, rollback_to
        listed = "; ".join(f"{path} (partition {partition})" for path, partition in files.items())
        back = (f"roll main back to the newest snapshot without them, `mlfs rollback {table} --to {rollback_to}` "
                f"(later commits leave main), or " if rollback_to else "")
        super().__init__(
            f"{table}: snapshot {snapshot_id} references {len(files)} data file(s) that no longer exist: {listed}. "
            f"To recover, {back}re-materialize those partitions (`mlfs repair {table}` prints the command); "
            f"`mlfs snapshots {table}` lists the snapshots and tags."
        )


@dataclass(frozen=True)
class TableStatus:
    identifier: str
    rows: int
    snapshot_id: int | None
    location: str
    metadata_location: str  # the current metadata file: what any Iceberg engine opens to read the table


class OfflineStore:
    """Iceberg tables behind a SQL catalog (SQLite embedded, PostgreSQL in production)."""

    def __init__(self, catalog_uri: str, warehouse: str, catalog_name: str = "mlfs", s3: S3Options = DEFAULT_S3):
        self.catalog_uri = catalog_uri
        self.warehouse = warehouse
        self.catalog_name = catalog_name
        self.s3 = s3
        self.commit_retries = 0  # commits this handle lost to another writer and made again

    @cached_property
    def catalog(self) -> SqlCatalog:
        for location in (self.catalog_uri.removeprefix("sqlite:///"), self.warehouse.removeprefix("file://")):
            if "://" not in location:
                Path(location).parent.mkdir(parents=True, exist_ok=True)
        properties = {"uri": self.catalog_uri, "warehouse": self.warehouse, **self.s3.iceberg_properties()}
        with self._stores_named():
            try:
                catalog = SqlCatalog(self.catalog_name, **properties)
            except DatabaseError as error:
                if "already exists" not in str(error):
                    raise
                catalog = SqlCatalog(self.catalog_name, **properties)  # steps creating a new catalog: one wins
        self._require_tables_in_warehouse(catalog)
        return catalog

    def _require_tables_in_warehouse(self, catalog: SqlCatalog) -> None:
        """Iceberg metadata holds absolute paths: the catalog of a copied or moved MLFS_HOME still points to the
        original's files. Refuse it before anything is read or written there."""
        from sqlalchemy import text

        with self._stores_named(), catalog.engine.connect() as connection:  # the Iceberg JDBC catalog's own table
            rows = connection.execute(text("SELECT table_namespace, table_name, metadata_location FROM iceberg_tables "
                                           "WHERE catalog_name = :name"), {"name": self.catalog_name}).all()
        inside = self.warehouse.rstrip("/") + "/"
        outside = [(f"{namespace}.{name}", location.split("/metadata/")[0])
                   for namespace, name, location in rows if not location.startswith(inside)]
        if outside:
            table, location = outside[0]
            raise StoreLocationError(
                f"the Iceberg catalog at {make_url(self.catalog_uri)!r} lists {len(outside)} table(s) outside its "
                f"warehouse {self.warehouse}, e.g. {table} at {location}: this MLFS_HOME was copied or moved from "
                f"another (or MLFS_WAREHOUSE changed), and Iceberg metadata keeps the original's absolute paths, so "
                f"nothing was read or written. Use the original home (or move this one back to where it was), or "
                f"start this home afresh: remove its catalog and warehouse and materialize again.")

    @contextmanager
    def _stores_named(self) -> Iterator[None]:
        """A failure of the catalog database or the warehouse raised as StoreUnavailableError or StoreAccessError,
        naming which of the two (and its server), never a password. The driver's error is not chained: its first
        line is in the message, and the innermost cause is what the run-failure report shows."""
        try:
            yield
        except OperationalError as error:  # SQLAlchemy: the catalog database
            reason = str(error.orig).strip().splitlines()[0]
            store = f"the Iceberg catalog at {make_url(self.catalog_uri)!r}"
            refused = says(reason, REFUSED)
            kind = StoreAccessError if refused else StoreUnavailableError
            raise kind(f"{store} {'refused access' if refused else 'is unavailable'}: {reason}") from None
        except OSError as error:  # pyarrow: the warehouse's files
            if named := self.s3.file_store_error("the Iceberg warehouse", self.warehouse, error):
                raise named from None
            raise

    def table(self, identifier: str) -> Table:
        with self._stores_named():
            return self.catalog.load_table(identifier)

    def exists(self, identifier: str) -> bool:
        with self._stores_named():
            return self.catalog.table_exists(identifier)

    def ensure_table(self, identifier: str, schema: pa.Schema, day_partition_column: str | None) -> Table:
        """Create the table if missing, partitioned by day of `day_partition_column` when given.

        A commit race of a new table's first writers raises CommitFailedException: callers retry it.
        """
        try:
            table = self.table(identifier)
        except NoSuchTableError:
            try:
                self.catalog.create_namespace_if_not_exists(identifier.rsplit(".", 1)[0])
            except IntegrityError:  # a parallel step created it between pyiceberg's check and its insert
                pass
            table = self.catalog.create_table_if_not_exists(identifier, schema=schema, properties=NO_PYICEBERG_RETRIES)
        if day_partition_column and table.spec().is_unpartitioned():
            with table.update_spec() as spec:
                spec.add_field(day_partition_column, DayTransform(), f"{day_partition_column}_day")
        if not NO_PYICEBERG_RETRIES.items() <= table.properties.items():  # a table created before they were ours
            with table.transaction() as transaction:
                transaction.set_properties(NO_PYICEBERG_RETRIES)
        return self.table(identifier)

    def retry_conflicts(self, write: Callable[[], T],
                        conflicts: tuple[type[Exception], ...] = (CommitFailedException, PublishConflictError)) -> T:
        """`write()`, made again when its commit lost a race with another writer's (CommitFailedException, or
        PublishConflictError: main moved after staging), at most COMMIT_ATTEMPTS times in all.

        `write` must start from main's head each time, so a retry re-stages (and its caller re-audits) on the
        new base: different periods both land, and a period both wrote is replaced, never duplicated.
        """
        for attempt in range(1, COMMIT_ATTEMPTS):
            try:
                with self._stores_named():
                    return write()
            except conflicts as conflict:
                self.commit_retries += 1
                # full jitter: writers that collided once do not collide again in step
                wait = random.uniform(0, min(FIRST_RETRY_WAIT * 2 ** (attempt - 1), MAX_RETRY_WAIT))
                log.warning("commit lost to another writer (%s); attempt %d of %d in %.2f s",
                            str(conflict).splitlines()[0], attempt + 1, COMMIT_ATTEMPTS, wait)
                time.sleep(wait)
        with self._stores_named():
            return write()  # the last attempt: its conflict is the caller's

    def _retry_commit(self, commit: Callable[[], T]) -> T:
        """A commit redone from the table's current metadata when another commit landed first: right for
        metadata changes, our private branches and whole-range overwrites. A PublishConflictError (main moved
        under a staged branch) is the caller's to handle: its branch must be staged again."""
        return self.retry_conflicts(commit, (CommitFailedException,))

    def replace_range(self, identifier: str, data: pa.Table, column: str, time_range: TimeRange) -> int:
        """Replace every row whose `column` falls in `time_range` with `data`, in one commit.

        Returns the new snapshot id. Rows of `data` outside the range are a programming error.
        """
        _require_inside(data, column, [time_range])
        return self._retry_commit(
            lambda: _overwrite(self.ensure_table(identifier, data.schema, column), data, time_range.filter(column)))

    def base_snapshot(self, identifier: str, schema: pa.Schema, day_partition_column: str | None) -> int:
        """Main's head: the snapshot a write-audit-publish run reads and stages on.

        A new table gets an empty first snapshot, since pyiceberg branches only from a snapshot.
        """
        def head() -> int:
            table = self.ensure_table(identifier, schema, day_partition_column)
            if table.current_snapshot() is None:
                table.append(_conform(schema.empty_table(), table))
            return table.refresh().current_snapshot().snapshot_id

        return self._retry_commit(head)

    def stage_ranges(
        self,
        identifier: str,
        data: pa.Table,
        column: str,
        ranges: Sequence[TimeRange],
        branch: str,
        base_snapshot_id: int,
        properties: dict[str, str] | None = None,
    ) -> int:
        """On a new `branch` forked from `base_snapshot_id`, replace the rows in `ranges` with `data`.

        Main is untouched; returns the staged snapshot id (read it with `read(..., snapshot_id=)`).
        `properties` go into the staged snapshot's summary.
        """
        _require_inside(data, column, ranges)
        self._retry_commit(lambda: self.table(identifier).manage_snapshots().create_branch(base_snapshot_id, branch)
                           .commit())
        summary = {**(properties or {}), WAP_BASE: str(base_snapshot_id)}
        return self._retry_commit(lambda: _overwrite(self.table(identifier), data, any_of(ranges, column), branch,
                                                     summary))

    def publish(self, identifier: str, branch: str) -> int:
        """Make the staged `branch` main's head and remove the branch, in one commit; returns the snapshot id.

        Raises PublishConflictError, leaving main as it is, if main is no longer the branch's base.
        """
        def move_main() -> int:
            table = self.table(identifier)
            staged = table.metadata.snapshot_by_name(branch)
            if staged is None:
                raise ValueError(f"{identifier} has no staged branch {branch}")
            base = int(staged.summary[WAP_BASE])
            _require_head(table, base, f"branch {branch} was staged on snapshot {base}")
            # the commit itself asserts main is still `base`, which closes the race after our check
            table.manage_snapshots().set_current_snapshot(staged.snapshot_id).remove_branch(branch).commit()
            return staged.snapshot_id

        return self._retry_commit(move_main)

    def discard(self, identifier: str, branch: str) -> None:
        """Remove a staged branch; main is untouched. Nothing to do if it is gone (published or discarded)."""
        def remove() -> None:
            table = self.table(identifier)
            if branch in table.refs():
                table.manage_snapshots().remove_branch(branch).commit()

        self._retry_commit(remove)

    def unpublish(self, identifier: str, snapshot_id: int) -> int:
        """Move main from the published `snapshot_id` back to the base it was staged on; returns that base.

        Raises PublishConflictError, leaving main as it is, if main has moved past `snapshot_id`.
        """
        def move_main_back() -> int:
            table = self.table(identifier)
            base = int(table.metadata.snapshot_by_id(snapshot_id).summary[WAP_BASE])
            _require_head(table, snapshot_id, f"snapshot {snapshot_id} was published")
            table.manage_snapshots().set_current_snapshot(base).commit()
            return base

        return self._retry_commit(move_main_back)

    def replace_all(self, identifier: str, data: pa.Table, properties: dict[str, str] | None = None) -> int:
        """Replace the whole (unpartitioned) table with `data`, in one commit; returns the snapshot id.
        `properties` go into the snapshot's summary.

        Each snapshot is a complete version, so a column `data` no longer has is written as nulls; older
        versions keep their values, read by time travel.
        """
        def write() -> int:
            table = self.ensure_table(identifier, data.schema, None)
            return _overwrite(table, _with_null_columns(data, table_schema(table)), AlwaysTrue(), properties=properties)

        return self._retry_commit(write)

    def add_new_columns(self, identifier: str, schema: pa.Schema) -> None:
        """Iceberg schema evolution: add the columns of `schema` the table lacks; older rows read them as null."""
        _add_new_columns(self.table(identifier), schema)

    def read(
        self,
        identifier: str,
        columns: tuple[str, ...] | None = None,
        where: BooleanExpression | None = None,
        snapshot_id: int | None = None,
    ) -> pa.Table:
        """Read a table (or an older snapshot of it), selecting columns and filtering in the scan.

        Raises MissingDataFileError if a data file the snapshot references is gone.
        """
        table = self.table(identifier)
        scan = table.scan(
            row_filter=where if where is not None else AlwaysTrue(),
            selected_fields=columns or ("*",),
            snapshot_id=snapshot_id,
        )
        with self._stores_named():
            try:
                return _without_large_types(scan.to_arrow())
            except OSError as error:
                _raise_if_files_missing(table, snapshot_id, error)
                raise

    def read_batches(
        self,
        identifier: str,
        columns: tuple[str, ...],
        where: BooleanExpression | None = None,
        snapshot_id: int | None = None,
    ) -> pa.RecordBatchReader:
        """Stream a scan batch by batch, for DuckDB to consume without holding the table in memory.

        A data file found gone while streaming raises MissingDataFileError (inside DuckDB's error, if it reads).
        """
        table = self.table(identifier)
        scan = table.scan(
            row_filter=where if where is not None else AlwaysTrue(),
            selected_fields=columns,
            snapshot_id=snapshot_id,
        )
        with self._stores_named():
            batches = scan.to_arrow_batch_reader()
        return pa.RecordBatchReader.from_batches(batches.schema, self._named_failures(batches, table, snapshot_id))

    def _named_failures(self, batches: pa.RecordBatchReader, table: Table, snapshot_id: int | None):
        """The batches, a failure while streaming them named: a data file gone, or the store that failed."""
        with self._stores_named():
            try:
                yield from batches
            except OSError as error:
                _raise_if_files_missing(table, snapshot_id, error)
                raise

    def read_range(
        self, identifier: str, column: str, time_range: TimeRange, columns: tuple[str, ...] | None = None
    ) -> pa.Table:
        return self.read(identifier, columns, time_range.filter(column))

    def snapshot_id(self, identifier: str) -> int | None:
        snapshot = self.table(identifier).current_snapshot()
        return snapshot.snapshot_id if snapshot else None

    def schema_at(self, identifier: str, snapshot_id: int) -> pa.Schema:
        """The columns a snapshot was written with (a later schema may have added some)."""
        metadata = self.table(identifier).metadata
        schema_id = metadata.snapshot_by_id(snapshot_id).schema_id
        return next(s for s in metadata.schemas if s.schema_id == schema_id).as_arrow()

    def summary_at(self, identifier: str, snapshot_id: int) -> dict[str, str]:
        """A snapshot's summary: its counts and the properties it was written with."""
        summary = self.table(identifier).metadata.snapshot_by_id(snapshot_id).summary
        return dict(summary.additional_properties) if summary else {}

    def rows_at(self, identifier: str, snapshot_id: int) -> int:
        """A snapshot's row count, from its summary: no data file is read."""
        return int(self.summary_at(identifier, snapshot_id).get("total-records", 0))

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
        return TableStatus(identifier, rows, snapshot.snapshot_id if snapshot else None, table.location(),
                           table.metadata_location)

    def list_tables(self) -> list[str]:
        with self._stores_named():
            return sorted(
                ".".join(identifier)
                for namespace in self.catalog.list_namespaces()
                for identifier in self.catalog.list_tables(namespace)
            )


def _overwrite(
    table: Table,
    data: pa.Table,
    where: BooleanExpression,
    branch: str = "main",
    properties: dict[str, str] | None = None,
) -> int:
    """Replace the rows matching `where` with `data` in one commit on `branch`; returns its new head."""
    with warnings.catch_warnings():  # nothing to delete is normal on a first run, not worth a warning
        warnings.filterwarnings("ignore", "Delete operation did not match any records")
        try:
            table.overwrite(_conform(data, table), overwrite_filter=where, branch=branch,
                            snapshot_properties=properties or {})
        except ValueError as error:  # how pyiceberg's SQL catalog reports a snapshot that lost a commit race
            if "older than last sequence number" in str(error):
                raise CommitFailedException(f"{table.name()}: {error}") from error
            raise
    return table.refresh().metadata.snapshot_by_name(branch).snapshot_id


def _require_head(table: Table, snapshot_id: int, since: str) -> None:
    head = table.current_snapshot()
    if head is None or head.snapshot_id != snapshot_id:
        raise PublishConflictError(
            f"{table.name()}: main is at snapshot {head and head.snapshot_id}, but {since}; another write "
            f"was published in between, so publishing now would drop it. Re-run to stage on the new head."
        )


def _require_inside(data: pa.Table, column: str, ranges: Sequence[TimeRange]) -> None:
    """Rows outside the ranges replaced would survive a re-run next to their copy: a programming error."""
    if not ranges:
        raise ValueError("no range to replace")
    times = data[column]
    in_each = (pc.and_(pc.greater_equal(times, r.start), pc.less(times, r.end)) for r in ranges)
    inside = reduce(pc.or_, in_each)
    outside = times.filter(pc.invert(inside))
    if len(outside):
        bounds = ", ".join(f"[{r.start}, {r.end})" for r in ranges)
        raise ValueError(
            f"rows with {column} from {pc.min(outside).as_py()} to {pc.max(outside).as_py()} fall outside "
            f"the range being replaced {bounds}"
        )


def _conform(data: pa.Table, table: Table) -> pa.Table:
    """Order and type the columns as the Iceberg table expects them; new columns evolve the table first, so
    a column added to a declaration is written, never silently dropped."""
    _add_new_columns(table, data.schema)
    target = table_schema(table)
    missing = set(target.names) - set(data.column_names)
    if missing:
        raise ValueError(f"{table.name()}: data lacks columns {sorted(missing)}")
    return data.select(target.names).cast(target)


def _add_new_columns(table: Table, schema: pa.Schema) -> None:
    from pyiceberg.io.pyarrow import _ConvertToIcebergWithoutIDs, visit_pyarrow

    known = set(table.schema().column_names)
    added = [f for f in schema if f.name not in known]
    if added:
        with table.update_schema() as update:
            for field in added:
                update.add_column(field.name, visit_pyarrow(field.type, _ConvertToIcebergWithoutIDs()))


def _with_null_columns(data: pa.Table, target: pa.Schema) -> pa.Table:
    for field in target:
        if field.name not in data.column_names:
            data = data.append_column(field.name, pa.nulls(data.num_rows, field.type))
    return data


def table_schema(table: Table) -> pa.Schema:
    """The Arrow schema of an Iceberg table as it stands now."""
    from pyiceberg.io.pyarrow import schema_to_pyarrow

    return schema_to_pyarrow(table.schema(), include_field_ids=False)


def _without_large_types(data: pa.Table) -> pa.Table:
    """pyiceberg reads strings as large_string; downstream code and DuckDB prefer plain types."""
    fields = [
        pa.field(f.name, pa.string() if pa.types.is_large_string(f.type) else f.type, f.nullable)
        for f in data.schema
    ]
    return data.cast(pa.schema(fields))


def _raise_if_files_missing(table: Table, snapshot_id: int | None, error: OSError) -> None:
    """An I/O error may be a data file gone (name it, and the way back) or anything else (left as it is)."""
    missing = missing_data_files(table, snapshot_id)
    if missing:
        raise missing from error


def missing_data_files(table: Table, snapshot_id: int | None = None) -> MissingDataFileError | None:
    """The error naming the data files of the snapshot (main's head by default) that are gone, if any are."""
    snapshot = table.snapshot_by_id(snapshot_id) if snapshot_id else table.current_snapshot()
    if snapshot is None:
        return None
    tasks = table.scan(snapshot_id=snapshot.snapshot_id).plan_files()
    gone = {t.file.file_path: t.file for t in tasks if not table.io.new_input(t.file.file_path).exists()}
    if not gone:
        return None
    specs, schema = table.specs(), table.schema()
    partitions = {path: specs[f.spec_id].partition_to_path(f.partition, schema) or "unpartitioned"
                  for path, f in gone.items()}
    return MissingDataFileError(".".join(table.name()), snapshot.snapshot_id, partitions,
                                _newest_snapshot_without(table, snapshot.snapshot_id, set(gone)))


def _newest_snapshot_without(table: Table, snapshot_id: int, files: set[str]) -> int | None:
    """The newest ancestor of `snapshot_id` whose data files include none of `files`: a rollback target."""
    from pyiceberg.table.snapshots import ancestors_of

    for ancestor in ancestors_of(table.snapshot_by_id(snapshot_id), table.metadata):
        if not files & {t.file.file_path for t in table.scan(snapshot_id=ancestor.snapshot_id).plan_files()}:
            return ancestor.snapshot_id
    return None
