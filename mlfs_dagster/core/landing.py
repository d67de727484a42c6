"""The landing zone: files delivered by the upstream systems, one folder per source and period.

    <root>/<source>/date=YYYY-MM-DD/            a daily period's files
    <root>/<source>/date=YYYY-MM-DD/hour=HH/    an hourly period's files

Files are Parquet (`.parquet`), CSV (`.csv`) or JSON Lines (`.jsonl`, `.json`), one format per folder. Other
names, and names starting with `.` or `_` (files being written, markers such as `_SUCCESS`), are not landing
files. The root is a local folder or an `s3://bucket/prefix` URI; pyarrow's filesystems read both alike.

Reading gives each file's rows as delivered; the source's contract (ingest.py) decides what they mean. CSV
has no types, so its columns are read as text (an id like "00123" stays "00123") and the contract parses them.
"""

from __future__ import annotations

import datetime as dt
import io
import json
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import PurePosixPath

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.fs as pafs
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from mlfs_dagster.core.storage import DEFAULT_S3, S3Options

FORMATS = {".parquet": "parquet", ".csv": "csv", ".jsonl": "json", ".json": "json"}
DAILY, HOURLY = dt.timedelta(days=1), dt.timedelta(hours=1)
UTC_US = pa.timestamp("us", tz="UTC")


class LandingFileError(ValueError):
    """A landing file is missing, unreadable or malformed; the message names the path (and line)."""


@dataclass(frozen=True)
class LandingFile:
    path: str
    data: pa.Table
    malformed: tuple[str, ...] = ()  # why each skipped CSV line is malformed, naming the file and line


class LandingZone:
    def __init__(self, root: str, s3: S3Options = DEFAULT_S3):
        self.root = root
        self.s3 = s3

    @cached_property
    def _fs_and_base(self) -> tuple[pafs.FileSystem, str]:
        fs, base = self.s3.filesystem(self.root)
        return fs, base.rstrip("/")

    def period_folder(self, source: str, start: dt.datetime, step: dt.timedelta) -> str:
        _, base = self._fs_and_base
        return f"{base}/{source}/{_period_path(start, step)}"

    def read_period(
        self, source: str, start: dt.datetime, step: dt.timedelta, text_columns: Collection[str] = ()
    ) -> list[LandingFile]:
        """Every landing file of one source and period, in name order; none if nothing was delivered.

        `text_columns` are read as text whatever they look like (JSON would turn ISO dates into timestamps).
        """
        fs, _ = self._fs_and_base
        folder = self.period_folder(source, start, step)
        with self._store_named():
            found = fs.get_file_info(pafs.FileSelector(folder, allow_not_found=True))
        files = sorted((f for f in found if f.type == pafs.FileType.File and _format(f.path)),
                       key=lambda f: f.path)
        formats = sorted({_format(f.path) for f in files})
        if len(formats) > 1:
            raise LandingFileError(f"{folder}/ mixes landing formats {formats}; use one format per period")
        with self._store_named():
            return [_read_file(fs, f, frozenset(text_columns)) for f in files]

    @contextmanager
    def _store_named(self) -> Iterator[None]:
        """An outage or a refusal is the landing zone's (StoreUnavailableError, retried; StoreAccessError), not a
        bad file's: no file is judged malformed because the server did not answer."""
        try:
            yield
        except (OSError, LandingFileError) as error:
            cause = error.__cause__ if isinstance(error, LandingFileError) else error
            if isinstance(cause, OSError) and (named := self.s3.file_store_error("the landing zone", self.root, cause)):
                raise named from None
            raise

    def write_period(
        self, source: str, start: dt.datetime, step: dt.timedelta, name: str, data: pa.Table
    ) -> str:
        """Write `data` as the period's Parquet file `name`, replacing any file so named; returns its path."""
        fs, _ = self._fs_and_base
        folder = self.period_folder(source, start, step)
        fs.create_dir(folder, recursive=True)
        path = f"{folder}/{name}"
        pq.write_table(data, path, filesystem=fs)
        return path


def land_history(
    landing_root: str, source: str, time_column: str, step: dt.timedelta, path: str, s3: S3Options = DEFAULT_S3
) -> dict[dt.datetime, int]:
    """Split a file of history into the landing zone by its time column; returns rows written per period.

    One Parquet file per period, named after the input file's stem, so landing the same file again replaces
    its files rather than adding copies. Naive times are UTC. Rows without a time are refused.
    """
    data = _read_history(path, s3)
    times = _utc_times(data, time_column, path)
    starts = pc.floor_temporal(times, multiple=int(step.total_seconds()), unit="second")
    data = data.set_column(data.column_names.index(time_column), time_column, times)
    data = data.append_column("_period", starts)
    data = data.sort_by([("_period", "ascending"), (time_column, "ascending")])
    counts = data.group_by("_period").aggregate([("_period", "count")]).sort_by("_period")
    zone, name, written, offset = LandingZone(landing_root, s3), f"{PurePosixPath(path).stem}.parquet", {}, 0
    for start, rows in zip(counts["_period"].to_pylist(), counts["_period_count"].to_pylist(), strict=True):
        zone.write_period(source, start, step, name, data.slice(offset, rows).drop_columns(["_period"]))
        written[start], offset = rows, offset + rows
    return written


def parse_timestamps(text: pa.ChunkedArray, target: pa.DataType) -> pa.ChunkedArray:
    """ISO 8601 text to the timestamp type `target`; text without a zone offset is UTC."""
    # pyarrow parses a whole array with offsets or a whole array without, so each kind is parsed on its own.
    zoned = pc.match_substring_regex(text, r"[T ]\d.*(Z|[+-]\d\d(:?\d\d)?)$")
    nothing = pa.scalar(None, text.type)
    with_offset = pc.if_else(zoned, text, nothing).cast(pa.timestamp(target.unit, tz="UTC"))
    naive = pc.if_else(zoned, nothing, text).cast(pa.timestamp(target.unit))  # casts to UTC below
    return pc.coalesce(with_offset, naive.cast(with_offset.type)).cast(target)


def _period_path(start: dt.datetime, step: dt.timedelta) -> str:
    day = f"date={start.date().isoformat()}"
    if step == DAILY and start.time() == dt.time(0):
        return day
    if step == HOURLY and start == start.replace(minute=0, second=0, microsecond=0):
        return f"{day}/hour={start.hour:02d}"
    raise ValueError(f"a landing period is a whole UTC day or hour; {start} with a step of {step} is not")


def _format(path: str) -> str | None:
    name = PurePosixPath(path).name
    if name.startswith((".", "_")):
        return None
    return FORMATS.get(PurePosixPath(name).suffix.lower())


def _read_file(fs: pafs.FileSystem, info: pafs.FileInfo, text_columns: frozenset[str]) -> LandingFile:
    if info.size == 0:
        raise LandingFileError(f"landing file {info.path} is empty (zero bytes): not even a header or footer")
    try:
        if _format(info.path) == "parquet":
            return LandingFile(info.path, pq.read_table(info.path, filesystem=fs))
        with fs.open_input_stream(info.path) as stream:
            raw = stream.read()
        if _format(info.path) == "csv":
            return _read_csv(raw, info.path)
        return LandingFile(info.path, _read_json(raw, info.path, text_columns))
    except (pa.ArrowInvalid, OSError) as error:
        raise LandingFileError(f"cannot read landing file {info.path}: {error}") from error


def _read_csv(raw: bytes, path: str) -> LandingFile:
    """Every column as text; an unquoted empty field is null. A line with the wrong field count is skipped
    and reported, so the file's good lines still land."""
    malformed = []

    def skip(row) -> str:
        malformed.append(f"malformed CSV line {row.number} of {path}: expected {row.expected_columns} "
                         f"fields, found {row.actual_columns}: {row.text!r}")
        return "skip"

    # Single-threaded: only then does pyarrow number the malformed lines.
    read = pa_csv.ReadOptions(use_threads=False)
    parse = pa_csv.ParseOptions(invalid_row_handler=skip)
    names = pa_csv.open_csv(io.BytesIO(raw), read_options=read, parse_options=parse).schema.names
    malformed.clear()  # the header sniffing above may have seen the first block's bad lines already
    convert = pa_csv.ConvertOptions(column_types=dict.fromkeys(names, pa.string()), strings_can_be_null=True,
                                    null_values=[""], quoted_strings_can_be_null=False)
    data = pa_csv.read_csv(io.BytesIO(raw), read_options=read, parse_options=parse, convert_options=convert)
    return LandingFile(path, data, tuple(malformed))


def _read_json(raw: bytes, path: str, text_columns: frozenset[str]) -> pa.Table:
    try:
        data = pa_json.read_json(io.BytesIO(raw))
        # JSON inference reads ISO-looking text as timestamps; text columns must stay the text delivered.
        retyped = [c for c in data.column_names if c in text_columns and pa.types.is_timestamp(data[c].type)]
        if not retyped:
            return data
        explicit = pa.schema([(c, pa.string()) for c in retyped])
        parse = pa_json.ParseOptions(explicit_schema=explicit)
        return pa_json.read_json(io.BytesIO(raw), parse_options=parse)
    except pa.ArrowInvalid as error:
        unreadable = LandingFileError(f"cannot read landing file {path}: {error}")
        raise _json_line_error(raw, path) or unreadable from error


def _json_line_error(raw: bytes, path: str) -> LandingFileError | None:
    """Find the line pyarrow choked on (its own message counts rows within a block, not lines of the file)."""
    kinds: dict[str, str] = {}
    for number, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as error:
            return LandingFileError(f"malformed JSON line {number} of {path}: {error}")
        if not isinstance(record, dict):
            return LandingFileError(f"malformed JSON line {number} of {path}: not a JSON object")
        for field, value in record.items():
            kind = _json_kind(value)
            if kind and kinds.setdefault(field, kind) != kind:
                return LandingFileError(f"JSON line {number} of {path}: field '{field}' is a {kind}, "
                                        f"on earlier lines a {kinds[field]}")
    return None


def _json_kind(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return {str: "string", list: "list", dict: "object"}[type(value)]


def _read_history(path: str, s3: S3Options) -> pa.Table:
    fs, inner = s3.filesystem(path)
    info = fs.get_file_info(inner)
    if info.type != pafs.FileType.File or not _format(inner):
        raise LandingFileError(f"{path}: not a Parquet, CSV or JSON Lines file")
    landed = _read_file(fs, info, frozenset())
    if landed.malformed:
        raise LandingFileError(f"{len(landed.malformed)} malformed lines, the first: {landed.malformed[0]}")
    return landed.data


def _utc_times(data: pa.Table, column: str, path: str) -> pa.ChunkedArray:
    if column not in data.column_names:
        raise LandingFileError(f"{path} has no time column '{column}' (its columns: {data.column_names})")
    times = data[column]
    if times.null_count:
        raise LandingFileError(f"{path}: {times.null_count} rows have no '{column}', so no period to land in")
    try:
        if pa.types.is_string(times.type) or pa.types.is_large_string(times.type):
            return parse_timestamps(times, UTC_US)
        if pa.types.is_timestamp(times.type):
            return times.cast(pa.timestamp(times.type.unit, tz="UTC"))
        if pa.types.is_date(times.type):
            return times.cast(UTC_US)
    except pa.ArrowInvalid as error:
        raise LandingFileError(f"{path}: column '{column}' is not ISO 8601 time: {error}") from error
    raise LandingFileError(f"{path}: column '{column}' has type {times.type}, not a time or ISO 8601 text")
