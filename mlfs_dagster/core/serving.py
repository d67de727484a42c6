"""Online feature vectors: the serving half of the one vector-building path.

A request row carries what the feature view's spine would: its entity keys and request-time values (the
amount being authorised), and its time (the request's arrival unless the row gives the spine's time column:
the skew check replays past rows). For each selected feature group the online store gives each entity's
latest row; it is used under the point-in-time join's rules at the row's time (not after it, within the
selection's TTL) and lands in the columns the join gives (`prefix + feature`, `<name>_event_time`). Then
the view's on-demand function runs, the same call `feature_view.vectors` makes for training and batch
inference, and the model scores the model's features.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from mlfs_dagster.core.feature_view import on_demand, vectors
from mlfs_dagster.core.offline_store import OfflineStore
from mlfs_dagster.core.online_store import OnlineRow, OnlineStore
from mlfs_dagster.core.registry import ModelRegistry
from mlfs_dagster.core.specs import FeatureSelection, FeatureViewSpec

MICROSECOND_UTC = pa.timestamp("us", "UTC")
OK, MISSING, EXPIRED, NEWER = "ok", "missing", "expired", "newer_than_request"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Served:
    """The vectors of a request's rows and, per row and selection, whether its features were used and why not."""

    vectors: pa.Table
    statuses: list[dict[str, str]]


def request_times(view: FeatureViewSpec, requests: pa.Table, now: dt.datetime) -> pa.Array:
    """Each row's time: its spine time when it gives one, else `now`."""
    if view.spine_time not in requests.column_names:
        return pa.array([now] * requests.num_rows, MICROSECOND_UTC)
    given = requests[view.spine_time].cast(MICROSECOND_UTC).combine_chunks()
    return pc.fill_null(given, pa.scalar(now, MICROSECOND_UTC))


def online_vectors(view: FeatureViewSpec, store: OnlineStore, requests: pa.Table, now: dt.datetime) -> Served:
    """The request rows with every selected feature from the online store, then the on-demand features.

    Features go into Arrow a column at a time from the stored maps, never a value at a time."""
    times = request_times(view, requests, now)
    instants = times.cast(pa.int64()).to_pylist()
    columns = {name: requests[name] for name in requests.column_names if name != view.spine_time}
    columns[view.spine_time] = times
    statuses = {}
    for selection in view.selections:
        rows = _read(store, selection, requests)
        statuses[selection.name] = _statuses(rows, instants, selection.ttl)
        columns.update(_columns(view, selection, rows, [s == OK for s in statuses[selection.name]]))
    per_row = [dict(zip(statuses, row)) for row in zip(*statuses.values())]
    return Served(on_demand(view, pa.table(columns)), per_row)


def _read(store: OnlineStore, selection: FeatureSelection, requests: pa.Table) -> list[OnlineRow | None]:
    """Each request row's stored row: every distinct entity read once; a row missing a key matches nothing."""
    keys = selection.group.entity_keys
    missing = [k for k in keys if k not in requests.column_names]
    if missing:
        raise KeyError(f"feature group {selection.name} is read by {list(keys)}; the request lacks {missing}")
    entities = list(zip(*(requests[k].to_pylist() for k in keys)))
    distinct = [e for e in dict.fromkeys(entities) if None not in e]
    found = dict(zip(distinct, store.read(selection.group.table, distinct))) if distinct else {}
    return [found.get(e) for e in entities]


def _statuses(rows: Sequence[OnlineRow | None], instants: Sequence[int], ttl: dt.timedelta | None) -> list[str]:
    """Per row: missing, newer_than_request (the store holds only the latest row, so the value as of the row's
    time is unknown), expired (older than the TTL) or ok."""
    limit = None if ttl is None else ttl // dt.timedelta(microseconds=1)
    return [MISSING if row is None else NEWER if row.micros > instant
            else EXPIRED if limit is not None and instant - row.micros > limit else OK
            for row, instant in zip(rows, instants)]


def _columns(view: FeatureViewSpec, selection: FeatureSelection, rows: Sequence[OnlineRow | None],
             usable: list[bool]) -> dict[str, pa.Array]:
    """The selection's columns as the point-in-time join names and types them; null where not usable."""
    layout = _layout(view, selection)
    values = pa.Table.from_pylist([r.values if ok else {} for r, ok in zip(rows, usable)], schema=layout.stored)
    columns = {name: values.column(i).cast(layout.decimals[i]) if i in layout.decimals else values.column(i)
               for i, name in enumerate(layout.names)}
    columns[layout.matched] = pa.array([r.micros if ok else None for r, ok in zip(rows, usable)], pa.int64()) \
        .cast(MICROSECOND_UTC)
    return columns


@dataclass(frozen=True)
class _Layout:
    """How a selection's stored values become the join's columns, worked out once per selection: a request
    would otherwise spend more on the specs' derived properties than on its read."""

    stored: pa.Schema  # the stored values' types; decimals are stored as text (exactly) and read through it
    decimals: dict[int, pa.DataType]  # by position
    names: tuple[str, ...]
    matched: str  # the matched event time's column


_LAYOUTS: dict[tuple, _Layout] = {}


def _layout(view: FeatureViewSpec, selection: FeatureSelection) -> _Layout:
    key = (selection.group.table, selection.features, selection.prefix)
    if key not in _LAYOUTS:
        types = [selection.group.schema.field(f).type for f in selection.columns]
        _LAYOUTS[key] = _Layout(
            pa.schema([(f, pa.string() if pa.types.is_decimal(t) else t) for f, t in zip(selection.columns, types)]),
            {i: t for i, t in enumerate(types) if pa.types.is_decimal(t)}, selection.output_columns,
            view.matched_time_column(selection))
    return _LAYOUTS[key]


@dataclass(frozen=True)
class Difference:
    column: str
    row: dict  # the spine row's keys, its entities' keys and its time
    online: object
    offline: object

    def __str__(self) -> str:
        return f"column {self.column}: online {self.online!r}, offline {self.offline!r} for {self.row}"


@dataclass(frozen=True)
class SkewReport:
    compared: int  # rows whose online vector can be built as of their time
    newer: int  # rows skipped: the store already holds a later row of one of their entities
    columns: tuple[str, ...]
    differences: list[Difference]


def skew(view: FeatureViewSpec, offline: OfflineStore, online: OnlineStore, spine: pa.Table) -> SkewReport:
    """Build each spine row's vector online and offline (`feature_view.vectors`) and compare every feature
    and on-demand column. Rows for which the store holds a row after their time are skipped: it keeps only
    the latest, so it cannot say what was served before it."""
    served = online_vectors(view, online, spine, dt.datetime.now(dt.UTC))
    current = [all(s != NEWER for s in status.values()) for status in served.statuses]
    kept = spine.filter(pa.array(current, pa.bool_()))
    online_side = served.vectors.filter(pa.array(current, pa.bool_()))
    offline_side = vectors(view, offline, kept)
    columns = tuple(c for c in view.output_columns if c not in view.spine_output_columns)
    identity = list(dict.fromkeys((*view.spine_keys, *(k for s in view.selections for k in s.group.entity_keys),
                                   view.spine_time)))
    differences = [
        Difference(column, {k: kept[k][i].as_py() for k in identity}, left, right)
        for column in columns
        for i, (left, right) in enumerate(zip(online_side[column].to_pylist(), offline_side[column].to_pylist()))
        if left != right and not (left != left and right != right)  # NaN equals NaN here
    ]
    return SkewReport(kept.num_rows, spine.num_rows - kept.num_rows, columns, differences)


@dataclass(frozen=True)
class Loaded:
    """A registered version and its fitted pipeline, always swapped together."""

    version: str
    pipeline: object


def one_thread(pipeline):
    """The pipeline with each step that has an `n_jobs` parameter on one thread, predictions unchanged: a
    request's rows are too few to share, and a server scales by processes (LightGBM, for one, otherwise runs a
    thread per core on every call, whatever OMP_NUM_THREADS says)."""
    if hasattr(pipeline, "get_params"):
        pipeline.set_params(**{k: 1 for k in pipeline.get_params(deep=True) if k.rpartition("__")[2] == "n_jobs"})
    return pipeline


class Champion:
    """The pipeline a model's `alias` (the champion) points to, reloaded when the alias moves.

    A background thread asks the registry every `poll_seconds` which version the alias names; a new one is
    loaded beside the serving one, then swapped in with one assignment, so a request scores with either the
    old or the new pipeline, never with none. A failed reload keeps the old pipeline and is logged.
    """

    def __init__(self, registry: ModelRegistry, name: str, alias: str = "champion", poll_seconds: float = 5.0):
        self.registry, self.name, self.alias, self.poll_seconds = registry, name, alias, poll_seconds
        self.loaded: Loaded | None = None  # None until the alias names a version that loads
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def refresh(self) -> bool:
        """Load the version the alias names if it is not the one served; True when the served one changed."""
        try:
            named = self.registry.aliased_version(self.name, self.alias)
            if named is None or (self.loaded is not None and named == self.loaded.version):
                return False
            self.loaded = Loaded(named, one_thread(self.registry.load_version(self.name, named)))
        except Exception:  # the registry down, an unreadable artifact: keep serving what is loaded
            log.exception("could not reload %s@%s; still serving version %s", self.name, self.alias,
                          self.loaded and self.loaded.version)
            return False
        log.info("serving %s version %s (%s)", self.name, self.loaded.version, self.alias)
        return True

    def start(self) -> Champion:
        """Load now, then follow the alias in a daemon thread."""
        self.refresh()
        self._thread = threading.Thread(target=self._follow, name=f"champion:{self.name}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        if self._thread is not None:
            self._thread.join()

    def _follow(self) -> None:
        while not self._stopped.wait(self.poll_seconds):
            self.refresh()
