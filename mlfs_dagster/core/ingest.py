"""Ingestion of a source's landing files into its raw table by write-audit-publish: nothing published is lost.

Each period of the run is read on its own. No file is "no delivery": the period is skipped and its published
rows stay (for an event source that must arrive, it is an error instead). Each file is held to the source's
contract (a missing column or a cast that would change the values' meaning stops the run, naming file and
column); then every row is judged (null key, time or required value, time outside its landing period, key
delivered twice, key already published outside the periods being replaced): a row that breaks a rule goes to
quarantine with its reason, the good rows land.

What counts as the same row depends on the delivery. An event happens once: its keys are unique across the
whole table. A reference delivery is a new version of each of its rows (SCD type 2, read with as-of joins on
the time column): a row is the same only with the same keys at the same time, so `(*keys, time_column)` is
unique instead, and a catalogue row re-delivered with new values on a later day is published beside the old.

Write, audit, publish:
1. write: the quarantined rows, then the good rows, replace the delivered periods on a new branch of the
   quarantine and raw tables, forked from the main heads read at the start (duplicates were found there);
2. audit the staged raw snapshot, read back: no incomplete row, no row twice (as above) in the whole table, no
   period emptied or shrunk beyond the source's `max_drop` unless the caller allows drops. The shrink is
   measured against the period's published rows and, only for sources that declare `must_arrive`, against
   the average of the same time of day on the last published days (a source's volume follows the day:
   an hourly period is compared with the same hour of previous days, never with the hours just before);
3. publish quarantine, then raw: each moves main to its branch in one commit, only if main has not moved
   since the start (else PublishConflictError). If raw cannot publish, the quarantine's main is moved back.

A commit lost to another writer (a run of other periods published first) redoes steps 1 to 3 from the new
main heads (`OfflineStore.retry_conflicts`, counted in `store.commit_retries`): the judgement against published
rows and the audit are made again on what is now published, so both runs land, and a period both delivered is
replaced, never duplicated. The landing files are read once.

Raw and quarantine cannot commit in one Iceberg transaction. A failure before the publishes leaves both
tables as they were. A crash between the two publishes, or a failed move back (the quarantine's main moved
meanwhile), leaves the quarantine ahead: this run's quarantine rows for periods whose raw rows are still the
previous version. Raw rows are never published without their quarantine rows, and a re-run replaces both.
The raw snapshot's summary names its quarantine snapshot (`mlfs.quarantine-snapshot`).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.expressions import And, Not

from mlfs_dagster.core.engine import query
from mlfs_dagster.core.landing import DAILY, UTC_US, LandingFileError, LandingZone, parse_timestamps
from mlfs_dagster.core.offline_store import OfflineStore, TimeRange, any_of, between_bounds
from mlfs_dagster.core.specs import SourceSpec

REASON = "_reason"
LANDING_PERIOD = "_landing_period"
QUARANTINE_SNAPSHOT = "mlfs.quarantine-snapshot"  # raw snapshot summary: the quarantine published with it
TRAILING_PERIODS = 7  # published days averaged, at the period's time of day
TRAILING_LOOKBACK = 4 * TRAILING_PERIODS  # days searched for them, so a gap is not endless


PUBLISHED, NO_DELIVERY = "published", "no delivery"  # what a period's landing folder held

class ContractError(ValueError):
    """A landing file breaks its source's contract; the message names the file and the column."""


class AuditError(ValueError):
    """A staged ingestion failed its audit; the published tables are unchanged. The message says why."""


@dataclass(frozen=True)
class PeriodReport:
    start: dt.datetime
    paths: list[str]
    rows: int
    quarantined: int
    previous_rows: int | None  # the period's published rows before this run, None if it held none
    status: str  # PUBLISHED | NO_DELIVERY
    # rows at this time of day on the last published days; only `must_arrive` sources are held to it
    trailing_average: float | None = None


@dataclass(frozen=True)
class IngestionResult:
    snapshot_id: int | None  # the published raw snapshot; None when no period was delivered
    quarantine_snapshot_id: int | None
    periods: list[PeriodReport]

    @property
    def rows_written(self) -> int:
        return sum(p.rows for p in self.periods)

    @property
    def quarantined_rows(self) -> int:
        return sum(p.quarantined for p in self.periods)


@dataclass(frozen=True)
class _Delivery:
    start: dt.datetime
    paths: list[str]
    rows: pa.Table  # the contract's columns and the landing period
    malformed: list[str]


def quarantine_schema(spec: SourceSpec) -> pa.Schema:
    return spec.schema.append(pa.field(REASON, pa.string())).append(pa.field(LANDING_PERIOD, UTC_US))


def ingest(
    store: OfflineStore,
    landing: LandingZone,
    spec: SourceSpec,
    time_range: TimeRange,
    step: dt.timedelta,
    allow_drop: bool = False,
) -> IngestionResult:
    """Ingest every period of `time_range` delivered to the landing zone, all published at once or none.

    Raises LandingFileError or ContractError for unusable files, AuditError when the staged result fails
    its audit, PublishConflictError when other writes kept publishing first through every retry.
    """
    starts = time_range.periods(step)
    delivered = [d for d in (_read_delivery(landing, spec, start, step) for start in starts) if d is not None]
    if not delivered:
        return IngestionResult(None, None, [_no_delivery(start) for start in starts])
    return store.retry_conflicts(lambda: _write_audit_publish(store, spec, starts, delivered, step, allow_drop))


def _write_audit_publish(store: OfflineStore, spec: SourceSpec, starts: list[dt.datetime],
                         delivered: list[_Delivery], step: dt.timedelta, allow_drop: bool) -> IngestionResult:
    """One attempt, from main's current heads."""
    base = store.base_snapshot(spec.table, spec.schema, spec.time_column)
    quarantine_base = store.base_snapshot(spec.quarantine_table, quarantine_schema(spec), LANDING_PERIOD)
    ranges = _contiguous([d.start for d in delivered], step)
    rows = pa.concat_tables([d.rows for d in delivered])
    published = _published_elsewhere(store, spec, base, rows, ranges)
    good, quarantined = _judge(spec, rows, published, step)
    quarantined = pa.concat_tables([quarantined, *(_malformed_rows(spec, d) for d in delivered)])
    previous = _published_counts(store, spec, base, delivered, step)

    with _staging_branch(store, spec) as branch:
        quarantine_id = store.stage_ranges(
            spec.quarantine_table, quarantined, LANDING_PERIOD, ranges, branch, quarantine_base
        )
        link = {QUARANTINE_SNAPSHOT: str(quarantine_id)}
        staged_id = store.stage_ranges(spec.table, good, spec.time_column, ranges, branch, base, link)
        columns = tuple(dict.fromkeys((*spec.keys, spec.time_column, *spec.required)))
        staged = store.read(spec.table, columns, any_of(ranges, spec.time_column), snapshot_id=staged_id)
        reports = _reports(spec, delivered, staged, quarantined, previous, step)
        _audit(spec, staged, published, reports, step, allow_drop)
        _publish(store, spec, branch, staged_id, quarantine_id)
    by_start = {r.start: r for r in reports}
    return IngestionResult(staged_id, quarantine_id, [by_start.get(s) or _no_delivery(s) for s in starts])


# --- reading and the contract ---------------------------------------------------------------------------


def _read_delivery(
    landing: LandingZone, spec: SourceSpec, start: dt.datetime, step: dt.timedelta
) -> _Delivery | None:
    text_columns = [c.name for c in spec.columns if pa.types.is_string(c.type)]
    files = landing.read_period(spec.name, start, step, text_columns)
    if not files:
        if spec.delivery == "event" and spec.must_arrive:
            raise LandingFileError(
                f"no landing file for source '{spec.name}' in period {_label(start, step)}: it must arrive "
                f"every period, expected files in {landing.period_folder(spec.name, start, step)}/"
            )
        return None
    rows = pa.concat_tables([conform_to_contract(f.data, spec, f.path, start) for f in files])
    rows = rows.append_column(LANDING_PERIOD, pa.repeat(pa.scalar(start, UTC_US), rows.num_rows))
    return _Delivery(start, [f.path for f in files], rows, [m for f in files for m in f.malformed])


def conform_to_contract(data: pa.Table, spec: SourceSpec, origin: str, period_start: dt.datetime) -> pa.Table:
    """Select the contract's columns in order, cast to their types; extra columns are ignored.

    With `time_from_landing`, the files have no time column: every row takes the period's start.
    """
    delivered = [c for c in spec.columns if not (spec.time_from_landing and c.name == spec.time_column)]
    missing = [c.name for c in delivered if c.name not in data.column_names]
    if missing:
        raise ContractError(
            f"{origin}: missing column(s) {missing} required by source '{spec.name}' "
            f"(found {data.column_names})"
        )
    arrays = {c.name: _cast_column(data[c.name], c.name, c.type, origin) for c in delivered}
    if spec.time_from_landing:
        time_type = spec.schema.field(spec.time_column).type
        arrays[spec.time_column] = pa.repeat(pa.scalar(period_start, UTC_US), data.num_rows).cast(time_type)
    return pa.Table.from_arrays([arrays[c.name] for c in spec.columns], schema=spec.schema)


def _cast_column(values: pa.ChunkedArray, name: str, to_type: pa.DataType, origin: str) -> pa.ChunkedArray:
    """Casts that keep every value's meaning, checked for loss (overflow, truncation, unparsable text)."""
    if values.type == to_type:
        return values
    problem = f"{origin}: column '{name}' has type {values.type}, expected {to_type}"
    if _changes_meaning(values.type, to_type):
        raise ContractError(f"{problem}; casting would change what the values mean (an epoch number is not "
                            f"a time, a number is not a yes/no), so the file must deliver {to_type}")
    try:
        if _is_text(values.type) and pa.types.is_timestamp(to_type):
            return parse_timestamps(values, to_type)
        return values.cast(to_type, safe=True)  # naive timestamps cast as UTC, other zones keep their instant
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
        raise ContractError(f"{problem}: {error}") from error


def _changes_meaning(source: pa.DataType, target: pa.DataType) -> bool:
    def is_number(t: pa.DataType) -> bool:
        return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)

    def is_time(t: pa.DataType) -> bool:
        return pa.types.is_timestamp(t) or pa.types.is_date(t) or pa.types.is_time(t)

    return (
        (is_number(source) and (is_time(target) or pa.types.is_boolean(target)))
        or (pa.types.is_boolean(source) and is_number(target))
        or (is_time(source) and is_number(target))
    )


def _is_text(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t)


# --- judging rows ---------------------------------------------------------------------------------------


def _published_elsewhere(
    store: OfflineStore, spec: SourceSpec, base: int, rows: pa.Table, ranges: list[TimeRange]
) -> pa.Table:
    """Unique columns of `rows` already published outside the periods being replaced, with their earliest
    time there.

    The published table streams through DuckDB against the delivery's keys, so it is never held in memory;
    only its rows within the delivered keys' bounds are read (a month of sequential keys is a month of files,
    not the whole table).
    """
    unique, keys, time = spec.unique_on, _quoted(spec.unique_on), spec.time_column
    columns = tuple(dict.fromkeys((*unique, time)))
    where = And(Not(any_of(ranges, time)), *(between_bounds(k, rows[k]) for k in unique))
    published = store.read_batches(spec.table, columns, where, snapshot_id=base)
    return query(
        f'SELECT {keys}, min("{time}") AS _published '
        f"FROM published SEMI JOIN delivered USING ({keys}) GROUP BY ALL",
        {"published": published, "delivered": rows.select(list(unique))},
    )


def _judge(
    spec: SourceSpec, rows: pa.Table, published: pa.Table, step: dt.timedelta
) -> tuple[pa.Table, pa.Table]:
    """Good rows, and quarantined rows with a `_reason` (the first rule each breaks) and `_landing_period`.

    Of the good rows sharing their unique columns, the earliest is kept (ties: ordered by every column, so a
    re-run keeps the same one) and the others are quarantined.
    """
    time, keys, columns = spec.time_column, _quoted(spec.unique_on), _quoted(spec.schema.names)
    key_text = " || ', ' || ".join(
        f"""'{k}=' || coalesce(CAST(d."{k}" AS VARCHAR), 'null')""" for k in spec.unique_on
    )
    rules = "\n".join([
        *(f"""WHEN "{k}" IS NULL THEN 'null key {k}'""" for k in spec.keys),
        f"""WHEN "{time}" IS NULL THEN 'null {time}'""",
        *(f"""WHEN "{c}" IS NULL THEN 'null {c}'""" for c in spec.required),
        f"""WHEN "{time}" < {LANDING_PERIOD} OR "{time}" >= {LANDING_PERIOD} + $step
            THEN '{time} outside the landing period ' || strftime({LANDING_PERIOD}, $period_format)""",
    ])
    judged = query(
        f"""
        WITH checked AS (SELECT *, CASE {rules} END AS {REASON} FROM rows),
        against_published AS (
            SELECT d.* REPLACE (coalesce({REASON}, CASE WHEN p._published IS NOT NULL THEN
                'key ' || {key_text} || ' already published on ' || strftime(p._published, '%Y-%m-%d') END)
                AS {REASON})
            FROM checked d LEFT JOIN published p USING ({keys})
        )
        SELECT d.* REPLACE (coalesce({REASON}, CASE WHEN row_number() OVER (
                PARTITION BY {REASON} IS NULL, {keys} ORDER BY "{time}", {columns}) > 1
            THEN 'key ' || {key_text} || ' delivered more than once; the earliest row was kept' END)
            AS {REASON})
        FROM against_published d
        ORDER BY {LANDING_PERIOD}, "{time}", {columns}
        """,
        {"rows": rows, "published": published},
        {"step": step, "period_format": _period_format(step)},
    )
    is_good = judged[REASON].is_null()
    good = judged.filter(is_good).select(spec.schema.names).cast(spec.schema)
    quarantined = judged.filter(pc.invert(is_good)).select(quarantine_schema(spec).names)
    return good, quarantined.cast(quarantine_schema(spec))


def _malformed_rows(spec: SourceSpec, delivery: _Delivery) -> pa.Table:
    """A quarantine row per malformed line: no column could be read, the reason holds the line's text."""
    count = len(delivery.malformed)
    columns = [pa.nulls(count, f.type) for f in spec.schema]
    columns.append(pa.array(delivery.malformed, pa.string()))
    columns.append(pa.repeat(pa.scalar(delivery.start, UTC_US), count))
    return pa.Table.from_arrays(columns, schema=quarantine_schema(spec))


# --- audit ----------------------------------------------------------------------------------------------


def _published_counts(
    store: OfflineStore, spec: SourceSpec, base: int, delivered: list[_Delivery], step: dt.timedelta
) -> dict[dt.datetime, int]:
    """Published rows per period, from the trailing lookback before the first delivered period to the last."""
    window = TimeRange(delivered[0].start - TRAILING_LOOKBACK * _day_stride(step), delivered[-1].start + step)
    time = spec.time_column
    times = store.read_batches(spec.table, (time,), window.filter(time), snapshot_id=base)
    return _counts_by_period(times, spec.time_column, step)


def _counts_by_period(
    data: pa.Table | pa.RecordBatchReader, time: str, step: dt.timedelta
) -> dict[dt.datetime, int]:
    counts = query(
        f'SELECT epoch_us("{time}") // $step * $step AS period, count(*) AS n FROM data GROUP BY ALL',
        {"data": data},
        {"step": step // dt.timedelta(microseconds=1)},
    )
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return {epoch + dt.timedelta(microseconds=p): n
            for p, n in zip(counts["period"].to_pylist(), counts["n"].to_pylist(), strict=True)}


def _reports(
    spec: SourceSpec,
    delivered: list[_Delivery],
    staged: pa.Table,
    quarantined: pa.Table,
    previous: dict[dt.datetime, int],
    step: dt.timedelta,
) -> list[PeriodReport]:
    """Each delivered period as staged, against its published version and the periods before it."""
    staged_counts = _counts_by_period(staged, spec.time_column, step)
    quarantine_counts = _counts_by_period(quarantined, LANDING_PERIOD, step)
    after = {**previous, **{d.start: staged_counts.get(d.start, 0) for d in delivered}}
    return [
        PeriodReport(
            d.start, d.paths, after[d.start], quarantine_counts.get(d.start, 0), previous.get(d.start),
            PUBLISHED, _trailing_average(after, d.start, step),
        )
        for d in delivered
    ]


def _audit(
    spec: SourceSpec,
    staged: pa.Table,
    published: pa.Table,
    reports: list[PeriodReport],
    step: dt.timedelta,
    allow_drop: bool,
) -> None:
    """Raise AuditError naming every problem of the staged rows; drops pass only when allowed."""
    integrity = _integrity_problems(spec, staged, published)
    drops = [] if allow_drop else [p for r in reports if (p := _drop_problem(spec, r, step))]
    if integrity or drops:
        advice = ["pass allow_drop=True to accept the drops"] if drops else []
        header = (f"ingestion of source '{spec.name}' refused; {spec.table} and {spec.quarantine_table} "
                  f"are unchanged:")
        raise AuditError("\n  ".join([header, *integrity, *drops, *advice]))


def _integrity_problems(spec: SourceSpec, staged: pa.Table, published: pa.Table) -> list[str]:
    """Rules every published row meets, checked on what was actually written: a bug upstream cannot pass."""
    keys = _quoted(spec.unique_on)
    needed = dict.fromkeys((*spec.keys, spec.time_column, *spec.required))
    incomplete = " OR ".join(f'"{c}" IS NULL' for c in needed)
    found = query(
        f"""
        SELECT (SELECT count(*) FROM staged WHERE {incomplete}) AS incomplete,
               (SELECT count(*) FROM (SELECT 1 FROM staged GROUP BY {keys} HAVING count(*) > 1)) AS repeated,
               (SELECT count(*) FROM staged SEMI JOIN published USING ({keys})) AS elsewhere
        """,
        {"staged": staged, "published": published},
    ).to_pylist()[0]
    messages = {
        "incomplete": "staged rows with a null key, time or required value",
        "repeated": f"keys ({', '.join(spec.unique_on)}) staged more than once",
        "elsewhere": "staged rows with a key already published outside the replaced periods",
    }
    return [f"{found[name]} {message}" for name, message in messages.items() if found[name]]


def _trailing_average(counts: dict[dt.datetime, int], start: dt.datetime, step: dt.timedelta) -> float | None:
    """Average rows at `start`'s time of day on the last published days before it."""
    before = [start - i * _day_stride(step) for i in range(1, TRAILING_LOOKBACK + 1)]
    trailing = [counts[p] for p in before if counts.get(p)][:TRAILING_PERIODS]
    return sum(trailing) / len(trailing) if trailing else None


def _drop_problem(spec: SourceSpec, report: PeriodReport, step: dt.timedelta) -> str | None:
    """Why a period's delivery looks truncated, or None. Only sources that declare a delivery every period
    (`must_arrive`) are held to their trailing average: sparse event sources and reference deliveries
    vary in size by nature, and a quiet period is normal for them."""
    period, rows, keep = f"period {_label(report.start, step)}", report.rows, 1 - spec.max_drop
    if rows == 0 and report.previous_rows:
        return f"{period}: an empty delivery would replace {report.previous_rows} published rows"
    if report.previous_rows and rows < keep * report.previous_rows:
        return (f"{period}: {rows} rows would replace {report.previous_rows} published rows, "
                f"a drop beyond max_drop {spec.max_drop:.0%}")
    average = report.trailing_average
    if spec.must_arrive and average and rows < keep * average:
        return (f"{period}: {rows} rows against a trailing average of {average:.1f} at this time of day on "
                f"the last published days (checked because the source declares must_arrive), a drop beyond "
                f"max_drop {spec.max_drop:.0%}")
    return None


# --- publishing -----------------------------------------------------------------------------------------


@contextmanager
def _staging_branch(store: OfflineStore, spec: SourceSpec) -> Iterator[str]:
    """A branch name private to this run; whatever happens, no branch of it outlives the run."""
    branch = f"wap-{uuid.uuid4().hex}"
    try:
        yield branch
    finally:
        for identifier in (spec.quarantine_table, spec.table):
            store.discard(identifier, branch)


def _publish(store: OfflineStore, spec: SourceSpec, branch: str, staged_id: int, quarantine_id: int) -> None:
    """Quarantine first, so raw rows are never published without the rows rejected from their delivery."""
    store.publish(spec.quarantine_table, branch)
    try:
        store.publish(spec.table, branch)
    except Exception:
        if store.snapshot_id(spec.table) != staged_id:  # a commit can land before its error is reported
            store.unpublish(spec.quarantine_table, quarantine_id)
        raise


# --- small helpers --------------------------------------------------------------------------------------


def _no_delivery(start: dt.datetime) -> PeriodReport:
    return PeriodReport(start, [], 0, 0, None, NO_DELIVERY)


def _contiguous(starts: list[dt.datetime], step: dt.timedelta) -> list[TimeRange]:
    """Consecutive periods merged into ranges, so the overwrite filter stays short."""
    ranges: list[TimeRange] = []
    for start in starts:
        if ranges and ranges[-1].end == start:
            ranges[-1] = TimeRange(ranges[-1].start, start + step)
        else:
            ranges.append(TimeRange(start, start + step))
    return ranges


def _day_stride(step: dt.timedelta) -> dt.timedelta:
    """From a period to the same time of day on the day before: volume follows the day, not the last hours."""
    return max(step, DAILY)


def _quoted(columns) -> str:
    return ", ".join(f'"{c}"' for c in columns)


def _period_format(step: dt.timedelta) -> str:
    return "%Y-%m-%d" if step == DAILY else "%Y-%m-%dT%H:00"


def _label(start: dt.datetime, step: dt.timedelta) -> str:
    return start.strftime(_period_format(step))
