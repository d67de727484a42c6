"""Ingestion by write-audit-publish: bad input gets a clear error or a quarantined row, and nothing already
published is ever lost. A test per class of bad input, with small hand-made files in a real landing folder
and a real Iceberg store (SQLite catalog) under tmp_path.
"""

import dataclasses
import datetime as dt
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mlfs_dagster.core.ingest import (
    LANDING_PERIOD,
    QUARANTINE_SNAPSHOT,
    REASON,
    AuditError,
    ContractError,
    ingest,
)
from mlfs_dagster.core.landing import LandingFileError, LandingZone
from mlfs_dagster.core.offline_store import OfflineStore, PublishConflictError, TimeRange
from mlfs_dagster.core.specs import Column, SourceSpec

DAY = dt.date(2026, 1, 5)
DAILY, HOURLY = dt.timedelta(days=1), dt.timedelta(hours=1)
UTC_US = pa.timestamp("us", tz="UTC")

PAYMENTS = SourceSpec(
    name="payments",
    description="card payments",
    columns=(
        Column("transaction_id", pa.string()),
        Column("card_id", pa.string()),
        Column("event_time", UTC_US),
        Column("amount", pa.float64()),
        Column("card_present", pa.bool_()),
    ),
    keys=("transaction_id",),
    owner="test",
    required=("card_id", "amount"),
    system="t",
)


def day(offset: int) -> dt.date:
    return DAY + dt.timedelta(days=offset)


def at(hour: int, minute: int = 0, on: dt.date = DAY) -> dt.datetime:
    return dt.datetime(on.year, on.month, on.day, hour, minute, tzinfo=dt.UTC)


def payments(rows: list[tuple], time_type: pa.DataType = UTC_US, **override) -> pa.Table:
    """Payments from (transaction_id, card_id, event_time, amount) rows."""
    columns = {
        "transaction_id": [r[0] for r in rows],
        "card_id": [r[1] for r in rows],
        "event_time": pa.array([r[2] for r in rows], time_type),
        "amount": pa.array([r[3] for r in rows], pa.float64()),
        "card_present": [True] * len(rows),
    }
    return pa.table({**columns, **override})


GOOD = [("t1", "c1", at(9), 10.0), ("t2", "c2", at(10), 20.0), ("t3", "c1", at(11), 30.0)]


def folder(root: Path, on: dt.date = DAY, hour: int | None = None, source: str = "payments") -> Path:
    path = root / source / f"date={on.isoformat()}" / (f"hour={hour:02d}" if hour is not None else "")
    path.mkdir(parents=True, exist_ok=True)
    return path


def land(root: Path, data: pa.Table, on: dt.date = DAY, name: str = "part-0.parquet", **where) -> Path:
    path = folder(root, on, **where) / name
    pq.write_table(data, path)
    return path


def land_text(root: Path, text: str, name: str, on: dt.date = DAY) -> Path:
    path = folder(root, on) / name
    path.write_text(text)
    return path


@pytest.fixture
def root(tmp_path) -> Path:
    return tmp_path / "landing"


@pytest.fixture
def landing(root) -> LandingZone:
    return LandingZone(str(root))


@pytest.fixture
def store(tmp_path) -> OfflineStore:
    return OfflineStore(f"sqlite:///{tmp_path}/c.db", f"file://{tmp_path}/wh")


@pytest.fixture
def run(store, landing):
    def run(first: dt.date = DAY, last: dt.date | None = None, spec: SourceSpec = PAYMENTS, **options):
        return ingest(store, landing, spec, TimeRange.of_days(first, last or first), DAILY, **options)

    return run


def published(store: OfflineStore, spec: SourceSpec = PAYMENTS) -> list[str]:
    return sorted(store.read(spec.table)["transaction_id"].to_pylist())


def reasons(store: OfflineStore, spec: SourceSpec = PAYMENTS) -> dict:
    return {row["transaction_id"]: row[REASON] for row in store.read(spec.quarantine_table).to_pylist()}


def snapshots(store: OfflineStore, spec: SourceSpec = PAYMENTS) -> tuple:
    return store.snapshot_id(spec.table), store.snapshot_id(spec.quarantine_table)


# --- the contract: a file that breaks it stops the run, naming file and column -----------------------


def test_missing_column_stops_the_run_naming_file_and_column(root, run, store):
    path = land(root, payments(GOOD).drop_columns(["amount"]))
    with pytest.raises(ContractError) as raised:
        run()
    assert "'amount'" in str(raised.value) and str(path) in str(raised.value)
    assert not store.exists(PAYMENTS.table)


def test_extra_columns_are_ignored_and_contract_order_is_kept(root, run, store):
    data = payments(GOOD).append_column("upstream_debug", pa.array(["x", "y", "z"]))
    land(root, data.select(list(reversed(data.column_names))))
    run()
    table = store.read(PAYMENTS.table)
    assert table.column_names == PAYMENTS.schema.names and table.num_rows == 3


def test_wrong_type_names_file_column_and_both_types(root, run):
    path = land(root, payments(GOOD, amount=["ten", "twenty", "thirty"]))
    with pytest.raises(ContractError, match="has type string, expected double") as raised:
        run()
    assert "'amount'" in str(raised.value) and str(path) in str(raised.value)


def test_epoch_integers_into_a_timestamp_are_a_contract_error(root, run, store):
    epochs = [int(row[2].timestamp()) for row in GOOD]
    path = land(root, payments(GOOD, event_time=pa.array(epochs, pa.int64())))
    with pytest.raises(ContractError, match=r"'event_time' has type int64.*change what the values") as error:
        run()
    assert str(path) in str(error.value)
    assert not store.exists(PAYMENTS.table)  # nothing cast to 1970, nothing quarantined, nothing emptied


def test_numbers_into_a_boolean_are_a_contract_error(root, run):
    land(root, payments(GOOD, card_present=[1, 0, 1]))
    with pytest.raises(ContractError, match="'card_present' has type int64, expected bool"):
        run()


def test_lossless_casts_are_accepted_and_naive_timestamps_are_utc(root, run, store):
    naive = [(tid, card, time.replace(tzinfo=None), amount) for tid, card, time, amount in GOOD]
    integers = pa.array([10, 20, 30], pa.int32())
    land(root, payments(naive, time_type=pa.timestamp("ns"), amount=integers), name="a.parquet")
    paris = dt.timezone(dt.timedelta(hours=1))
    land(root, payments([("t4", "c4", at(12).astimezone(paris), 1.0)], pa.timestamp("ms", "Europe/Paris")),
         name="b.parquet")
    run()
    table = store.read(PAYMENTS.table).sort_by("transaction_id")
    assert table["amount"].to_pylist() == [10.0, 20.0, 30.0, 1.0]
    assert table["event_time"].to_pylist() == [at(9), at(10), at(11), at(12)]  # the same instants, in UTC


def test_lossy_casts_are_a_contract_error(root, run):
    with_nanos = pa.array([1_767_603_600_000_000_001], pa.timestamp("ns", "UTC"))
    land(root, payments(GOOD[:1], event_time=with_nanos))
    with pytest.raises(ContractError, match=r"'event_time' has type timestamp\[ns, tz=UTC\].*lose data"):
        run()


def test_csv_ids_keep_leading_zeros_and_iso_times_parse(root, run, store):
    land_text(root, "transaction_id,card_id,event_time,amount,card_present\n"
                    "00123,c1,2026-01-05T09:00:00,10.5,true\n"
                    "00124,c2,2026-01-05T11:00:00+01:00,7,false\n", "a.csv")
    run()
    table = store.read(PAYMENTS.table).sort_by("transaction_id")
    assert table["transaction_id"].to_pylist() == ["00123", "00124"]
    assert table["event_time"].to_pylist() == [at(9), at(10)]
    assert table["card_present"].to_pylist() == [True, False]


def test_epoch_text_in_a_csv_timestamp_is_a_contract_error(root, run):
    header = "transaction_id,card_id,event_time,amount,card_present\n"
    land_text(root, header + "t1,c1,1767603600,1,true\n", "a.csv")
    with pytest.raises(ContractError, match=r"a\.csv: column 'event_time'.*1767603600"):
        run()


# --- row rules: a bad row is quarantined with its reason, the good rows land ------------------------------


def test_null_key_time_and_required_values_are_quarantined_with_their_reason(root, run, store):
    bad = [(None, "c1", at(12), 1.0), ("t5", "c1", None, 1.0), ("t6", None, at(12), 1.0),
           ("t7", "c1", at(12), None)]
    land(root, payments(GOOD + bad))
    result = run()
    assert reasons(store) == {None: "null key transaction_id", "t5": "null event_time",
                              "t6": "null card_id", "t7": "null amount"}
    assert published(store) == ["t1", "t2", "t3"]
    assert (result.rows_written, result.quarantined_rows) == (3, 4)
    quarantine = store.read(PAYMENTS.quarantine_table)
    assert quarantine.column_names == [*PAYMENTS.schema.names, REASON, LANDING_PERIOD]
    assert set(quarantine[LANDING_PERIOD].to_pylist()) == {at(0)}


def test_times_outside_the_landing_period_are_quarantined(root, run, store):
    rows = [("a", "c1", at(0), 1.0), ("b", "c1", at(0, on=day(1)), 1.0),
            ("c", "c1", at(23, 59, on=day(-1)), 1.0)]
    land(root, payments(rows))
    run()
    assert published(store) == ["a"]
    assert reasons(store) == {"b": "event_time outside the landing period 2026-01-05",
                              "c": "event_time outside the landing period 2026-01-05"}


def test_duplicates_within_a_delivery_keep_the_earliest_row(root, run, store):
    rows = [("t1", "c1", at(13), 99.0), ("t1", "c1", at(9), 10.0),
            ("t2", "c2", at(9), 5.0), ("t2", "c2", at(9), 4.0)]
    land(root, payments(rows[:2]), name="a.parquet")
    land(root, payments(rows[2:]), name="b.parquet")
    run()
    table = store.read(PAYMENTS.table).sort_by("transaction_id")
    assert table["amount"].to_pylist() == [10.0, 4.0]  # earliest, then ties by every column: deterministic
    quarantine = store.read(PAYMENTS.quarantine_table).sort_by("transaction_id")
    assert quarantine["amount"].to_pylist() == [99.0, 5.0]
    assert quarantine[REASON].to_pylist() == [
        "key transaction_id=t1 delivered more than once; the earliest row was kept",
        "key transaction_id=t2 delivered more than once; the earliest row was kept"]


def test_a_key_with_its_time_is_a_duplicate_only_at_the_same_time(root, run, store):
    profiles = dataclasses.replace(PAYMENTS, keys=("card_id", "event_time"), required=())
    rows = [("p1", "c1", at(9), 1.0), ("p2", "c1", at(15), 2.0), ("p3", "c1", at(15), 3.0)]
    land(root, payments(rows))
    run(spec=profiles)
    assert published(store, profiles) == ["p1", "p2"]
    assert reasons(store, profiles) == {
        "p3": "key card_id=c1, event_time=2026-01-05 15:00:00+00 delivered more than once; the earliest row "
              "was kept"}


def test_key_resent_in_the_next_days_file_is_quarantined_naming_key_and_day(root, run, store):
    land(root, payments(GOOD))
    run()
    resent = [("t2", "c2", at(1, on=day(1)), 20.0), ("t8", "c8", at(2, on=day(1)), 8.0),
              ("t9", "c9", at(3, on=day(1)), 9.0)]
    land(root, payments(resent), day(1))
    result = run(day(1))
    assert published(store) == ["t1", "t2", "t3", "t8", "t9"]
    assert reasons(store) == {"t2": "key transaction_id=t2 already published on 2026-01-05"}
    assert (result.rows_written, result.quarantined_rows) == (2, 1)


def test_key_repeated_across_days_of_one_run_keeps_the_earliest(root, run, store):
    land(root, payments(GOOD))
    next_day = [("t1", "c1", at(8, on=day(1)), 10.0), ("n1", "c1", at(9, on=day(1)), 1.0),
                ("n2", "c1", at(10, on=day(1)), 1.0)]
    land(root, payments(next_day), day(1))
    run(DAY, day(1))
    assert published(store) == ["n1", "n2", "t1", "t2", "t3"]
    quarantine = store.read(PAYMENTS.quarantine_table).to_pylist()
    assert [(q["transaction_id"], q[LANDING_PERIOD]) for q in quarantine] == [("t1", at(0, on=day(1)))]


def test_rerunning_an_ingestion_leaves_the_same_rows(root, run, store):
    land(root, payments([*GOOD, (None, "c1", at(12), 1.0), ("t1", "c1", at(13), 2.0)]))
    first = run()
    second = run()
    assert published(store) == ["t1", "t2", "t3"]  # not "already published": the period is being replaced
    assert len(reasons(store)) == 2 and store.read(PAYMENTS.quarantine_table).num_rows == 2
    assert [p.previous_rows for p in (first.periods[0], second.periods[0])] == [None, 3]
    assert second.snapshot_id != first.snapshot_id and second.rows_written == 3


SITES = SourceSpec(
    name="sites",
    description="site catalogue, re-delivered when a site changes",
    columns=(Column("site_id", pa.string()), Column("capacity", pa.int64()), Column("valid_from", UTC_US)),
    keys=("site_id",),
    owner="test",
    time_column="valid_from",
    delivery="reference",
    time_from_landing=True,
    system="t",
)


def sites(rows: list[tuple]) -> pa.Table:
    return pa.table({"site_id": [r[0] for r in rows], "capacity": pa.array([r[1] for r in rows], pa.int64())})


def test_a_reference_re_delivery_is_a_new_version_of_its_rows(root, run, store):
    land(root, sites([("s1", 120), ("s2", 80)]), day(1), source="sites")
    run(day(1), spec=SITES)
    land(root, sites([("s1", 150)]), day(3), source="sites")
    for _ in range(2):  # the re-run replaces day 3 with the same rows
        result = run(day(3), spec=SITES)
        versions = store.read(SITES.table).sort_by([("site_id", "ascending"), ("valid_from", "ascending")])
        assert versions.to_pylist() == [
            {"site_id": "s1", "capacity": 120, "valid_from": at(0, on=day(1))},
            {"site_id": "s1", "capacity": 150, "valid_from": at(0, on=day(3))},
            {"site_id": "s2", "capacity": 80, "valid_from": at(0, on=day(1))},
        ]
        assert (result.rows_written, result.quarantined_rows) == (1, 0)
        assert store.read(SITES.quarantine_table).num_rows == 0


def test_a_reference_row_twice_at_the_same_time_is_a_duplicate(root, run, store):
    land(root, sites([("s1", 150), ("s1", 120)]), day(3), source="sites")
    run(day(3), spec=SITES)
    assert store.read(SITES.table)["capacity"].to_pylist() == [120]  # ties: ordered by every column
    assert store.read(SITES.quarantine_table)[REASON].to_pylist() == [
        "key site_id=s1, valid_from=2026-01-08 00:00:00+00 delivered more than once; "
        "the earliest row was kept"]


# --- audits: a delivery that would lose published rows is refused ---------------------------------------


def test_empty_file_over_a_published_period_is_refused_and_nothing_changes(root, run, store):
    land(root, payments([*GOOD, (None, "c1", at(12), 1.0)]))
    run()
    before = snapshots(store)
    land(root, payments([]).cast(PAYMENTS.schema))
    with pytest.raises(AuditError) as raised:
        run()
    message = str(raised.value)
    assert "source 'payments'" in message and "period 2026-01-05" in message
    assert "an empty delivery would replace 3 published rows" in message and "allow_drop=True" in message
    assert snapshots(store) == before
    assert published(store) == ["t1", "t2", "t3"] and list(reasons(store)) == [None]
    assert set(store.table(PAYMENTS.table).refs()) == {"main"}  # the staging branch is gone


def test_empty_file_over_a_published_period_is_accepted_with_allow_drop(root, run, store):
    land(root, payments(GOOD))
    run()
    land(root, payments([]).cast(PAYMENTS.schema))
    result = run(allow_drop=True)
    assert published(store) == [] and result.periods[0].previous_rows == 3


def test_drop_beyond_max_drop_against_the_published_period_is_refused(root, run, store):
    land(root, payments([*GOOD, ("t4", "c4", at(12), 1.0)]))
    run()
    land(root, payments(GOOD[:1]))
    with pytest.raises(AuditError, match="period 2026-01-05: 1 rows would replace 4 published rows, "
                                         "a drop beyond max_drop 50%"):
        run()
    land(root, payments(GOOD[:2]))
    assert run().rows_written == 2  # half is within max_drop


def test_drop_against_the_trailing_average_is_refused_for_a_source_that_must_arrive(root, run, store):
    every_day = dataclasses.replace(PAYMENTS, must_arrive=True)
    for offset in range(4):
        rows = [(f"d{offset}-{i}", "c1", at(9, i, on=day(offset)), 1.0) for i in range(10 if offset < 3 else 1)]
        land(root, payments(rows), day(offset))
    with pytest.raises(AuditError, match=r"period 2026-01-08: 1 rows against a trailing average of 10\.0"):
        run(DAY, day(3), spec=every_day)
    assert run(DAY, day(3)).rows_written == 31  # a sparse source's quiet day is normal


def test_an_hourly_period_is_held_to_the_same_hour_of_previous_days(root, store, landing):
    every_hour = dataclasses.replace(PAYMENTS, must_arrive=True)
    evening = {20: 40, 21: 40, 22: 40, 23: 10}  # busy hours, then a quiet one, every day

    def deliver(offset: int, rows_by_hour: dict[int, int]):
        on = day(offset)
        for hour, count in rows_by_hour.items():
            rows = [(f"{on}-{hour}-{i}", "c1", at(hour, i, on=on), 1.0) for i in range(count)]
            land(root, payments(rows), on, hour=hour)
        return ingest(store, landing, every_hour, TimeRange(at(20, on=on), at(0, on=day(offset + 1))), HOURLY)

    for offset in range(3):
        quiet = deliver(offset, evening).periods[-1]
    assert (quiet.rows, quiet.trailing_average) == (10, 10.0)  # not the 40 of the hours just before
    refused = (r"period 2026-01-08T23:00: 3 rows against a trailing average of 10\.0 at this time of day on "
               r"the last published days \(checked because the source declares must_arrive\)")
    with pytest.raises(AuditError, match=refused):
        deliver(3, {**evening, 23: 3})


def test_a_failed_audit_in_a_range_publishes_no_period(root, run, store):
    land(root, payments(GOOD))
    run()
    land(root, payments([("n1", "c1", at(9, on=day(1)), 1.0)]), day(1))
    land(root, payments([]).cast(PAYMENTS.schema))
    with pytest.raises(AuditError):
        run(DAY, day(1))
    assert published(store) == ["t1", "t2", "t3"]


def test_the_audit_checks_what_was_staged_so_a_judging_bug_cannot_publish(root, run, store, monkeypatch):
    from mlfs_dagster.core import ingest as ingestion

    land(root, payments(GOOD))
    run()
    before = snapshots(store)
    resent = [(tid, card, at(9, on=day(1)), amount) for tid, card, _, amount in GOOD]
    land(root, payments([*resent, ("t1", "c1", at(12, on=day(1)), 1.0)]), day(1))

    def let_everything_through(spec, rows, published, step):
        return rows.select(spec.schema.names), ingestion.quarantine_schema(spec).empty_table()

    monkeypatch.setattr(ingestion, "_judge", let_everything_through)
    with pytest.raises(AuditError) as raised:
        run(day(1))
    assert "1 keys (transaction_id) staged more than once" in str(raised.value)
    assert "4 staged rows with a key already published outside the replaced periods" in str(raised.value)
    assert snapshots(store) == before


# --- files that cannot be read ---------------------------------------------------------------------------


def test_zero_byte_file_stops_the_run_naming_the_path(root, run, store):
    land(root, payments(GOOD), name="a.parquet")
    empty = folder(root) / "b.parquet"
    empty.write_bytes(b"")
    with pytest.raises(LandingFileError, match="zero bytes") as raised:
        run()
    assert str(empty) in str(raised.value)
    assert not store.exists(PAYMENTS.table)


def test_corrupt_parquet_stops_the_run_naming_the_path(root, run):
    land(root, payments(GOOD), name="a.parquet")
    corrupt = folder(root) / "b.parquet"
    corrupt.write_bytes(b"PAR1 this is not parquet at all")
    with pytest.raises(LandingFileError, match="cannot read landing file") as raised:
        run()
    assert str(corrupt) in str(raised.value)


def test_malformed_csv_line_is_quarantined_naming_file_and_line(root, run, store):
    path = land_text(root, "transaction_id,card_id,event_time,amount,card_present\n"
                           "t1,c1,2026-01-05T09:00:00,1,true\n"
                           "t2,c2,2026-01-05T10:00:00,2,true,surplus\n"
                           "t3,c3,2026-01-05T11:00:00,3,false\n", "a.csv")
    result = run()
    assert published(store) == ["t1", "t3"]
    assert reasons(store) == {None: f"malformed CSV line 3 of {path}: expected 5 fields, found 6: "
                                    f"'t2,c2,2026-01-05T10:00:00,2,true,surplus'"}
    assert result.periods[0].quarantined == 1


def test_malformed_json_line_stops_the_run_naming_file_and_line(root, run, store):
    path = land_text(root, '{"transaction_id": "t1", "card_id": "c1", "event_time": "2026-01-05T09:00:00", '
                           '"amount": 1, "card_present": true}\n{"transaction_id": "t2",\n', "a.jsonl")
    with pytest.raises(LandingFileError, match=f"malformed JSON line 2 of {path}"):
        run()
    assert not store.exists(PAYMENTS.table)


def test_jsonl_delivery_lands(root, run, store):
    land_text(root, '{"transaction_id": "t1", "card_id": "c1", "event_time": "2026-01-05T09:00:00Z", '
                    '"amount": 1, "card_present": true, "extra": [1, 2]}\n', "a.jsonl")
    run()
    assert store.read(PAYMENTS.table).to_pylist() == [
        {"transaction_id": "t1", "card_id": "c1", "event_time": at(9), "amount": 1.0, "card_present": True}]


def test_mixed_formats_in_a_period_folder_stop_the_run(root, run):
    land(root, payments(GOOD))
    land_text(root, "transaction_id\nt9\n", "extra.csv")
    with pytest.raises(LandingFileError, match=r"mixes landing formats \['csv', 'parquet'\]") as raised:
        run()
    assert str(folder(root)) in str(raised.value)


# --- missing periods --------------------------------------------------------------------------------------


def test_missing_period_of_a_must_arrive_source_is_an_error_naming_folder_source_and_period(run, landing):
    must_arrive = dataclasses.replace(PAYMENTS, must_arrive=True)
    with pytest.raises(LandingFileError) as raised:
        run(spec=must_arrive)
    message = str(raised.value)
    assert "'payments'" in message and "2026-01-05" in message
    assert landing.period_folder("payments", at(0), DAILY) in message


def test_missing_period_is_skipped_and_its_published_rows_stay(root, run, store):
    land(root, payments(GOOD))
    run()
    land(root, payments([("n1", "c1", at(9, on=day(1)), 1.0), ("n2", "c1", at(9, on=day(1)), 1.0)]), day(1))
    (folder(root) / "part-0.parquet").unlink()
    result = run(DAY, day(1))
    assert [(p.start, p.status, p.rows) for p in result.periods] == [
        (at(0), "no delivery", 0), (at(0, on=day(1)), "published", 2)]
    assert published(store) == ["n1", "n2", "t1", "t2", "t3"]


def test_nothing_delivered_publishes_nothing(run, store):
    result = run(DAY, day(2))
    assert (result.snapshot_id, result.quarantine_snapshot_id) == (None, None)
    assert [p.status for p in result.periods] == ["no delivery"] * 3
    assert not store.exists(PAYMENTS.table)


def test_reference_source_without_files_is_skipped(root, run, store):
    reference = dataclasses.replace(PAYMENTS, delivery="reference", must_arrive=True)
    land(root, payments(GOOD))
    run(spec=reference)
    result = run(day(1), day(3), spec=reference)
    assert [p.status for p in result.periods] == ["no delivery"] * 3
    assert published(store) == ["t1", "t2", "t3"]


# --- periods and time ------------------------------------------------------------------------------------


def test_time_from_landing_gives_each_row_its_period_start(root, run, store):
    merchants = dataclasses.replace(PAYMENTS, delivery="reference", time_from_landing=True)
    land(root, payments(GOOD).drop_columns(["event_time"]), day(1))
    run(DAY, day(1), spec=merchants)
    assert set(store.read(merchants.table)["event_time"].to_pylist()) == {at(0, on=day(1))}
    assert published(store, merchants) == ["t1", "t2", "t3"]


def test_hourly_periods_land_from_hour_folders(root, store, landing):
    land(root, payments(GOOD[:1]), hour=9)
    land(root, payments([("t9", "c9", at(10, 30), 1.0), ("late", "c1", at(11), 1.0)]), hour=10)
    result = ingest(store, landing, PAYMENTS, TimeRange(at(8), at(11)), HOURLY)
    assert [(p.start.hour, p.status, p.rows, p.quarantined) for p in result.periods] == [
        (8, "no delivery", 0, 0), (9, "published", 1, 0), (10, "published", 1, 1)]
    assert reasons(store) == {"late": "event_time outside the landing period 2026-01-05T10:00"}
    land(root, payments([("t1b", "c1", at(9, 5), 1.0)]), hour=9, name="part-0.parquet")
    ingest(store, landing, PAYMENTS, TimeRange(at(9), at(10)), HOURLY)  # one hour replaced, its day kept
    assert published(store) == ["t1b", "t9"]


# --- publishing: raw and quarantine together, or neither ---------------------------------------------------


def test_raw_snapshot_names_the_quarantine_published_with_it(root, run, store):
    land(root, payments([*GOOD, (None, "c1", at(12), 1.0)]))
    result = run()
    assert snapshots(store) == (result.snapshot_id, result.quarantine_snapshot_id)
    summary = store.table(PAYMENTS.table).current_snapshot().summary
    assert summary[QUARANTINE_SNAPSHOT] == str(result.quarantine_snapshot_id)


def _another_writer_publishes_after_staging(store, monkeypatch, times: int) -> None:
    stage, other = store.stage_ranges, payments([("other", "c1", at(9, on=day(1)), 1.0)])
    commits = []

    def stage_then_another_writer_publishes(identifier, *args, **kwargs):
        staged = stage(identifier, *args, **kwargs)
        if identifier == PAYMENTS.table and len(commits) < times:
            commits.append(store.replace_range(identifier, other, "event_time", TimeRange.of_days(day(1), day(1))))
        return staged

    monkeypatch.setattr(store, "stage_ranges", stage_then_another_writer_publishes)


def test_a_publish_conflict_is_retried_on_the_new_head_and_both_writes_land(root, run, store, monkeypatch):
    land(root, payments(GOOD))
    _another_writer_publishes_after_staging(store, monkeypatch, times=1)
    assert run().rows_written == 3
    assert store.commit_retries == 1  # staged again on the other writer's commit, audited, published
    assert published(store) == ["other", "t1", "t2", "t3"]


def test_a_publish_conflict_through_every_attempt_leaves_both_tables_unchanged(root, run, store, monkeypatch):
    from mlfs_dagster.core import offline_store

    land(root, payments(GOOD))
    run()
    land(root, payments([*GOOD[:2], (None, "c1", at(12), 1.0)]))
    monkeypatch.setattr(offline_store, "COMMIT_ATTEMPTS", 2)
    _another_writer_publishes_after_staging(store, monkeypatch, times=2)
    quarantine_before = store.snapshot_id(PAYMENTS.quarantine_table)
    with pytest.raises(PublishConflictError, match="Re-run"):
        run()
    assert published(store) == ["other", "t1", "t2", "t3"]  # the other writer's commit is kept
    assert store.snapshot_id(PAYMENTS.quarantine_table) == quarantine_before  # quarantine rolled back
    assert reasons(store) == {}
    assert set(store.table(PAYMENTS.table).refs()) == {"main"}
    assert set(store.table(PAYMENTS.quarantine_table).refs()) == {"main"}

    monkeypatch.undo()
    assert run().rows_written == 2  # a re-run stages on the new head and publishes
    assert published(store) == ["other", "t1", "t2"]
