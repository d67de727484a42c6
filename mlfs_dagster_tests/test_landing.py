"""The landing zone: period folders, the three formats and their malformed input, and landing history."""

import datetime as dt
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mlfs_dagster.core.landing import LandingFileError, LandingZone, land_history

DAY = dt.date(2026, 1, 5)
DAILY, HOURLY = dt.timedelta(days=1), dt.timedelta(hours=1)
UTC_US = pa.timestamp("us", tz="UTC")


def at(hour: int = 0, day: dt.date = DAY) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, hour, tzinfo=dt.UTC)


@pytest.fixture
def root(tmp_path) -> Path:
    return tmp_path / "landing"


@pytest.fixture
def zone(root) -> LandingZone:
    return LandingZone(str(root))


def folder(root: Path, hour: int | None = None) -> Path:
    path = root / "src" / "date=2026-01-05" / (f"hour={hour:02d}" if hour is not None else "")
    path.mkdir(parents=True, exist_ok=True)
    return path


def test_daily_and_hourly_period_folders(zone, root):
    assert zone.period_folder("src", at(0), DAILY) == f"{root}/src/date=2026-01-05"
    assert zone.period_folder("src", at(7), HOURLY) == f"{root}/src/date=2026-01-05/hour=07"
    with pytest.raises(ValueError, match="whole UTC day"):
        zone.period_folder("src", at(7), DAILY)


def test_no_folder_and_no_landing_file_are_both_no_delivery(zone, root):
    assert zone.read_period("src", at(), DAILY) == []
    for name in ("notes.txt", "_SUCCESS", ".part-0.parquet"):  # not data, a marker, a file being written
        (folder(root) / name).write_text("x")
    assert zone.read_period("src", at(), DAILY) == []


def test_a_daily_folder_ignores_its_hourly_subfolders(zone, root):
    pq.write_table(pa.table({"a": [1]}), folder(root, 3) / "h.parquet")
    assert zone.read_period("src", at(), DAILY) == []
    assert zone.read_period("src", at(3), HOURLY)[0].data.num_rows == 1


def test_zero_byte_file_is_named(zone, root):
    (folder(root) / "empty.csv").write_bytes(b"")
    with pytest.raises(LandingFileError, match="empty \\(zero bytes\\)") as raised:
        zone.read_period("src", at(), DAILY)
    assert str(folder(root) / "empty.csv") in str(raised.value)


def test_corrupt_parquet_is_named(zone, root):
    (folder(root) / "corrupt.parquet").write_bytes(b"this is not parquet at all")
    with pytest.raises(LandingFileError, match="cannot read landing file") as raised:
        zone.read_period("src", at(), DAILY)
    assert str(folder(root) / "corrupt.parquet") in str(raised.value)


def test_mixed_formats_in_one_folder_are_refused_naming_folder_and_formats(zone, root):
    pq.write_table(pa.table({"a": [1]}), folder(root) / "a.parquet")
    (folder(root) / "b.csv").write_text("a\n2\n")
    with pytest.raises(LandingFileError, match=r"mixes landing formats \['csv', 'parquet'\]") as raised:
        zone.read_period("src", at(), DAILY)
    assert str(folder(root)) in str(raised.value)


def test_jsonl_and_json_are_one_format(zone, root):
    (folder(root) / "a.jsonl").write_text('{"a": 1}\n')
    (folder(root) / "b.json").write_text('{"a": 2}\n')
    assert [f.data["a"].to_pylist() for f in zone.read_period("src", at(), DAILY)] == [[1], [2]]


def test_csv_columns_are_text_and_empty_fields_null(zone, root):
    (folder(root) / "a.csv").write_text('id,amount,note\n00123,10.5,""\n00124,,x\n')
    data = zone.read_period("src", at(), DAILY)[0].data
    assert data.schema == pa.schema([("id", pa.string()), ("amount", pa.string()), ("note", pa.string())])
    assert data.to_pylist() == [{"id": "00123", "amount": "10.5", "note": ""},
                                {"id": "00124", "amount": None, "note": "x"}]


def test_malformed_csv_lines_are_skipped_and_named_by_file_and_line(zone, root):
    (folder(root) / "a.csv").write_text("id,amount\nt1,1\nt2,2,surplus\nt3\nt4,4\n")
    landed = zone.read_period("src", at(), DAILY)[0]
    assert landed.data["id"].to_pylist() == ["t1", "t4"]
    path = folder(root) / "a.csv"
    assert landed.malformed == (
        f"malformed CSV line 3 of {path}: expected 2 fields, found 3: 't2,2,surplus'",
        f"malformed CSV line 4 of {path}: expected 2 fields, found 1: 't3'",
    )


def test_malformed_json_line_stops_the_file_naming_file_and_line(zone, root):
    (folder(root) / "a.jsonl").write_text('{"id": "t1"}\n\n{"id": "t2"\n{"id": "t3"}\n')
    with pytest.raises(LandingFileError, match="malformed JSON line 3 of") as raised:
        zone.read_period("src", at(), DAILY)
    assert str(folder(root) / "a.jsonl") in str(raised.value)


def test_json_field_changing_kind_is_named_by_line(zone, root):
    (folder(root) / "a.jsonl").write_text('{"id": "t1"}\n{"id": 2}\n')
    with pytest.raises(LandingFileError, match=r"JSON line 2 of .*'id' is a number, on earlier lines a str"):
        zone.read_period("src", at(), DAILY)


def test_json_text_columns_stay_text_the_others_are_inferred(zone, root):
    (folder(root) / "a.jsonl").write_text('{"ref": "2026-01-05T09:00:00", "t": "2026-01-05T09:00:00"}\n')
    data = zone.read_period("src", at(), DAILY, text_columns=["ref"])[0].data
    assert data["ref"].to_pylist() == ["2026-01-05T09:00:00"]
    assert pa.types.is_timestamp(data["t"].type)


# --- landing a file of history ----------------------------------------------------------------------------


def history(tmp_path: Path) -> Path:
    path = tmp_path / "history.csv"
    path.write_text("id,event_time\n00007,2026-01-05T23:30:00\n00001,2026-01-05T09:00:00Z\n"
                    "00002,2026-01-06T01:00:00+02:00\n00003,2026-01-06T08:00:00\n")
    return path


def test_land_history_splits_rows_by_period_with_naive_times_as_utc(tmp_path, root, zone):
    written = land_history(str(root), "src", "event_time", DAILY, str(history(tmp_path)))
    # +02:00 at 01:00 on the 6th is 23:00 UTC on the 5th
    assert written == {at(0): 3, at(0, DAY + DAILY): 1}
    first = zone.read_period("src", at(), DAILY)
    assert [Path(f.path).name for f in first] == ["history.parquet"]
    assert first[0].data["id"].to_pylist() == ["00001", "00002", "00007"]  # ids stay text, rows in time order
    assert first[0].data["event_time"].type == UTC_US


def test_land_history_hourly_and_idempotent(tmp_path, root, zone):
    for _ in range(2):
        written = land_history(str(root), "src", "event_time", HOURLY, str(history(tmp_path)))
    assert written == {at(9): 1, at(23): 2, at(8, DAY + DAILY): 1}
    assert len(zone.read_period("src", at(23), HOURLY)) == 1  # the same file replaced, not a copy added
    assert zone.read_period("src", at(23), HOURLY)[0].data.num_rows == 2


def test_land_history_reads_parquet_and_jsonl(tmp_path, root):
    times = pa.array([dt.datetime(2026, 1, 5, 9), dt.datetime(2026, 1, 6, 9)], pa.timestamp("ns"))
    pq.write_table(pa.table({"id": ["a", "b"], "event_time": times}), tmp_path / "h.parquet")
    assert land_history(str(root), "p", "event_time", DAILY, str(tmp_path / "h.parquet")) == {
        at(0): 1, at(0, DAY + DAILY): 1}
    lines = [json.dumps({"id": "a", "event_time": "2026-01-05T09:00:00"})]
    (tmp_path / "h.jsonl").write_text("\n".join(lines) + "\n")
    assert land_history(str(root), "j", "event_time", DAILY, str(tmp_path / "h.jsonl")) == {at(0): 1}


def test_land_history_refuses_rows_without_a_time_naming_column_and_count(tmp_path, root):
    path = tmp_path / "h.csv"
    path.write_text("id,event_time\na,2026-01-05T09:00:00\nb,\nc,\n")
    with pytest.raises(LandingFileError, match="2 rows have no 'event_time'"):
        land_history(str(root), "src", "event_time", DAILY, str(path))
    assert not (root / "src").exists()


def test_land_history_refuses_epoch_numbers_and_a_missing_time_column(tmp_path, root):
    path = tmp_path / "h.parquet"
    pq.write_table(pa.table({"id": ["a"], "event_time": [1767603600]}), path)
    with pytest.raises(LandingFileError, match="'event_time' has type int64"):
        land_history(str(root), "src", "event_time", DAILY, str(path))
    with pytest.raises(LandingFileError, match="no time column 'when'"):
        land_history(str(root), "src", "when", DAILY, str(path))


def test_an_unreachable_s3_landing_zone_is_named_as_unavailable_not_as_a_bad_file():
    from mlfs_dagster.core.storage import S3Options, StoreUnavailableError

    zone = LandingZone("s3://mlfs/landing", S3Options(endpoint="http://127.0.0.1:9", region="us-east-1"))

    with pytest.raises(StoreUnavailableError, match=r"the landing zone s3://mlfs/landing on S3 at "
                                                     r"http://127.0.0.1:9 is unavailable"):
        zone.read_period("readings", dt.datetime(2026, 1, 1, tzinfo=dt.UTC), dt.timedelta(days=1))
