"""Offline-store maintenance: keep the warehouse bounded without ever losing what a reader may still need.

Per table, in this order:

1. **Compaction**: the small data files of each partition of main's head are rewritten into one, in one commit
   that deletes exactly those files. pyiceberg validates it against main as it stands at commit time: if a
   concurrent commit replaced or added files meanwhile, the commit fails, the partition is skipped (counted)
   and the next run retries it. The replaced files stay readable from the older snapshots until those expire.
2. **Snapshot expiry**: snapshots older than a configurable age leave the metadata, except branch heads (main,
   write-audit-publish staging branches) and tagged snapshots: every training-set version stays rebuildable.
   The commit requires main not to have moved since the snapshots were chosen (see `_ExpiryWhileMainStays`).
3. **Orphan removal**: files under the table's location that no kept snapshot, manifest or metadata log
   entry references (files of expired snapshots, files a killed run wrote and never committed, metadata files
   dropped from the log) are deleted once older than a grace period: a writer still running has written its
   files but not committed them yet, and those files are younger than the grace period.

pyiceberg 0.12 has expiry (`table.maintenance.expire_snapshots()`, which deletes no file) but neither
compaction nor orphan removal: those two are ours. Paths are listed and deleted through the pyarrow
filesystem of the table's location (local or s3://, `S3Options`).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

from pyiceberg.exceptions import CommitFailedException, ValidationException
from pyiceberg.table.update.snapshot import ExpireSnapshots

from mlfs_dagster.core.storage import S3Options

if TYPE_CHECKING:
    from pyiceberg.table import FileScanTask, Table

    from mlfs_dagster.core.offline_store import OfflineStore

# Snapshot summary property of a maintenance commit, so history shows which commits were compaction.
MAINTENANCE_OPERATION = "mlfs.maintenance"


@dataclass(frozen=True)
class MaintenancePolicy:
    snapshot_max_age: dt.timedelta = dt.timedelta(days=7)  # how far back untagged time travel (and rollback) reaches
    orphan_grace: dt.timedelta = dt.timedelta(days=1)  # longer than any write takes between its files and its commit
    small_file_bytes: int = 32 * 1024 * 1024  # files below this size are compacted
    min_files_to_compact: int = 2  # a partition is rewritten once it holds this many small files
    metadata_versions_kept: int = 10  # metadata files kept in the log (history only: readers need the current one)


@dataclass(frozen=True)
class Usage:
    files: int
    bytes: int


@dataclass(frozen=True)
class TableMaintenance:
    """What one maintenance pass did to one table."""

    table: str
    files_before: int
    bytes_before: int
    files_after: int
    bytes_after: int
    partitions_compacted: int
    files_compacted: int
    partitions_skipped: int  # a concurrent commit touched the partition: retried by the next run
    snapshots_expired: int
    expiry_skipped: bool  # main moved during expiry: retried by the next run
    orphans_removed: int
    orphan_bytes_removed: int

    def as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def maintain_store(store: OfflineStore, namespace: str, policy: MaintenancePolicy,
                   now: dt.datetime | None = None) -> list[TableMaintenance]:
    """Maintain every table of `namespace` (a system's tables, older feature-group versions included)."""
    tables = [t for t in store.list_tables() if t.rsplit(".", 1)[0] == namespace]
    return [maintain_table(store, t, policy, now) for t in tables]


def maintain_table(store: OfflineStore, identifier: str, policy: MaintenancePolicy,
                   now: dt.datetime | None = None) -> TableMaintenance:
    now = now or dt.datetime.now(dt.UTC)
    before = usage(store.table(identifier), store.s3)
    bound_metadata_log(store.table(identifier), policy.metadata_versions_kept)
    compacted, files_compacted, skipped = compact(store.table(identifier), policy)
    expired = expire_snapshots(store.table(identifier), now - policy.snapshot_max_age)
    orphans = remove_orphans(store.table(identifier), store.s3, now - policy.orphan_grace)
    after = usage(store.table(identifier), store.s3)
    return TableMaintenance(identifier, before.files, before.bytes, after.files, after.bytes, compacted, files_compacted,
                            skipped, expired or 0, expired is None, len(orphans), sum(orphans.values()))


# --- compaction -------------------------------------------------------------------------------------------


def compact(table: Table, policy: MaintenancePolicy) -> tuple[int, int, int]:
    """Rewrite each partition's small files into one; returns (partitions compacted, files compacted, skipped)."""
    compacted = files = skipped = 0
    for tasks in small_file_groups(table, policy):
        try:
            _rewrite(table, tasks)
        except (CommitFailedException, ValidationException):  # main changed the partition's files meanwhile
            skipped += 1
            continue
        compacted, files = compacted + 1, files + len(tasks)
    return compacted, files, skipped


def small_file_groups(table: Table, policy: MaintenancePolicy) -> list[list[FileScanTask]]:
    """Per partition of main's head (current partition spec), its small data files, where there are enough."""
    spec_id = table.spec().spec_id
    groups: dict[object, list[FileScanTask]] = defaultdict(list)
    for task in table.scan().plan_files():
        small = task.file.file_size_in_bytes < policy.small_file_bytes
        # Files with row deletes attached would need their deletes rewritten too; pyiceberg writes none (copy on write).
        if small and not task.delete_files and task.file.spec_id == spec_id:
            groups[task.file.partition].append(task)
    return [tasks for tasks in groups.values() if len(tasks) >= policy.min_files_to_compact]


def _rewrite(table: Table, tasks: list[FileScanTask]) -> None:
    """One commit replacing exactly `tasks`' files with one file of their rows; raises if they changed meanwhile."""
    from pyiceberg.expressions import AlwaysTrue
    from pyiceberg.io.pyarrow import ArrowScan, _dataframe_to_data_files

    rows = ArrowScan(table.metadata, table.io, table.schema(), AlwaysTrue()).to_table(tasks)
    written = []
    try:
        with table.transaction() as transaction:
            summary = {MAINTENANCE_OPERATION: "compaction"}
            with transaction.update_snapshot(snapshot_properties=summary).overwrite() as rewrite:
                for task in tasks:
                    rewrite.delete_data_file(task.file)
                for data_file in _dataframe_to_data_files(transaction.table_metadata, rows, table.io,
                                                          rewrite.commit_uuid):
                    written.append(data_file.file_path)
                    rewrite.append_data_file(data_file)
    except (CommitFailedException, ValidationException):  # the commit surely did not land: its new file is ours to drop
        for path in written:
            table.io.delete(path)
        raise


# --- snapshot expiry --------------------------------------------------------------------------------------


class _ExpiryWhileMainStays(ExpireSnapshots):
    """pyiceberg's expiry, required to find main where it was when the snapshots were chosen.

    Expiry re-applies its snapshot list to the table as it is at commit time and drops any ref pointing to a
    snapshot it removes: without this requirement, a rollback of main to an old snapshot committed meanwhile
    would lose that snapshot and main with it.
    """

    def __init__(self, table: Table, head_id: int) -> None:
        from pyiceberg.table import Transaction
        from pyiceberg.table.update import AssertRefSnapshotId

        super().__init__(Transaction(table, autocommit=True))
        self._requirements = (AssertRefSnapshotId(snapshot_id=head_id, ref="main"),)


def expire_snapshots(table: Table, older_than: dt.datetime) -> int | None:
    """Drop snapshots older than `older_than` that no branch or tag holds; returns how many, None if main moved."""
    head = table.current_snapshot()
    if head is None:
        return 0
    held = {ref.snapshot_id for ref in table.refs().values()}
    cutoff_ms = older_than.timestamp() * 1000
    expired = [s.snapshot_id for s in table.metadata.snapshots if s.timestamp_ms < cutoff_ms and s.snapshot_id not in held]
    if not expired:
        return 0
    try:
        _ExpiryWhileMainStays(table, head.snapshot_id).by_ids(expired).commit()
    except CommitFailedException:
        return None
    return len(expired)


def bound_metadata_log(table: Table, versions: int) -> None:
    """Cap the table's metadata log (pyiceberg keeps 100 by default, each file holding every snapshot): entries
    past the cap leave the log at the next commit, and orphan removal deletes their files after the grace
    period. (`write.metadata.delete-after-commit.enabled` would delete them at once, with no grace for a reader
    still opening one.)"""
    from pyiceberg.table import TableProperties

    if table.properties.get(TableProperties.METADATA_PREVIOUS_VERSIONS_MAX) != str(versions):
        with table.transaction() as transaction:
            transaction.set_properties({TableProperties.METADATA_PREVIOUS_VERSIONS_MAX: str(versions)})


# --- orphan files -----------------------------------------------------------------------------------------


def referenced_files(table: Table) -> set[str]:
    """Every file the table's metadata still needs: metadata files in the log, and per kept snapshot its
    manifest list, manifests and live data and delete files (as paths on the location's filesystem)."""
    metadata = table.metadata
    paths = {table.metadata_location, *(entry.metadata_file for entry in metadata.metadata_log)}
    paths |= {s.statistics_path for s in metadata.statistics}
    paths |= {s.statistics_path for s in metadata.partition_statistics}
    manifests = {}
    for snapshot in metadata.snapshots:
        paths.add(snapshot.manifest_list)
        manifests.update((m.manifest_path, m) for m in snapshot.manifests(table.io))
    for path, manifest in manifests.items():
        paths.add(path)
        paths.update(entry.data_file.file_path for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=True))
    return {_path_on_filesystem(p) for p in paths}


def remove_orphans(table: Table, s3: S3Options, written_before: dt.datetime) -> dict[str, int]:
    """Delete the files under the table's location that nothing references and that were last written before
    `written_before`; returns their paths and sizes."""
    filesystem, root = s3.filesystem(table.location())
    listed = _list_files(filesystem, root)
    referenced = referenced_files(table)
    if _path_on_filesystem(table.metadata_location) not in listed:
        # Never delete on a listing that cannot see the current metadata: paths would all look unreferenced.
        raise RuntimeError(f"{table.name()}: {table.metadata_location} is not among the files listed under {root}")
    orphans = {path: size for path, (size, mtime) in listed.items()
               if path not in referenced and mtime < written_before}
    for path in orphans:
        try:
            filesystem.delete_file(path)
        except FileNotFoundError:  # another maintenance run got there first
            pass
    return orphans


def usage(table: Table, s3: S3Options) -> Usage:
    """Files and bytes under the table's location, referenced or not."""
    filesystem, root = s3.filesystem(table.location())
    listed = _list_files(filesystem, root)
    return Usage(len(listed), sum(size for size, _ in listed.values()))


def _list_files(filesystem, root: str) -> dict[str, tuple[int, dt.datetime]]:
    from pyarrow.fs import FileSelector, FileType

    infos = filesystem.get_file_info(FileSelector(root.rstrip("/"), recursive=True, allow_not_found=True))
    return {info.path: (info.size, _utc(info.mtime)) for info in infos if info.type == FileType.File}


def _utc(mtime: dt.datetime | None) -> dt.datetime:
    if mtime is None:  # a store that reports no time: treat the file as new, so it is never removed
        return dt.datetime.max.replace(tzinfo=dt.UTC)
    return mtime if mtime.tzinfo else mtime.replace(tzinfo=dt.UTC)


def _path_on_filesystem(uri: str) -> str:
    """`file:///a/b` -> `/a/b`, `s3://bucket/key` -> `bucket/key`: how the pyarrow filesystems name paths."""
    return uri.split("://", 1)[1] if "://" in uri else uri


def totals(results: Iterable[TableMaintenance]) -> dict[str, int]:
    """The figures of several tables added up (flags counted)."""
    summed: dict[str, int] = defaultdict(int)
    for result in results:
        for name, value in result.as_dict().items():
            if name != "table":
                summed[name] += int(value)
    return dict(summed)


# --- recovery: what `mlfs snapshots` lists and `mlfs rollback` does -------------------------------------------


@dataclass(frozen=True)
class SnapshotEntry:
    snapshot_id: int
    committed: dt.datetime
    operation: str
    records: int | None
    refs: tuple[str, ...]  # branches and tags pointing at it ("main" for the head)
    on_main: bool  # in main's history: a rollback target that keeps the history linear


def snapshot_history(table: Table) -> list[SnapshotEntry]:
    """Every snapshot the table keeps, oldest first."""
    from pyiceberg.table.snapshots import ancestors_of

    refs = defaultdict(list)
    for name, ref in table.refs().items():
        refs[ref.snapshot_id].append(name)
    on_main = {s.snapshot_id for s in ancestors_of(table.current_snapshot(), table.metadata)}
    return [
        SnapshotEntry(s.snapshot_id, dt.datetime.fromtimestamp(s.timestamp_ms / 1000, dt.UTC),
                      s.summary.operation.value if s.summary else "?",
                      int(s.summary["total-records"]) if s.summary and "total-records" in s.summary else None,
                      tuple(sorted(refs[s.snapshot_id])), s.snapshot_id in on_main)
        for s in sorted(table.metadata.snapshots, key=lambda s: s.timestamp_ms)
    ]


def rollback(table: Table, target: str) -> int:
    """Point main at snapshot `target` (an id or a tag name); returns its id. The commit fails if main moved
    meanwhile. Later snapshots stay until they expire, so a rollback can itself be undone."""
    snapshot = table.snapshot_by_name(target) if not target.isdigit() else table.snapshot_by_id(int(target))
    if snapshot is None:
        raise ValueError(f"{'.'.join(table.name())} has no snapshot or tag {target!r}")
    table.manage_snapshots().set_current_snapshot(snapshot.snapshot_id).commit()
    return snapshot.snapshot_id
