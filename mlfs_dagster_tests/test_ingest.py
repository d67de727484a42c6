"""Ingestion of a landing day: bad input gets a clear error, and no row is ever lost.

File-level problems (no file, a corrupt file, a missing column, a column that cannot be cast) stop the
day with a message naming the file and the column; row-level problems send each row to quarantine
with its own reason while the good rows land. Small hand-made files, a real landing folder and a real
Iceberg store under tmp_path.
"""

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mlfs_dagster.core.ingest import LANDING_DATE, REASON, ContractError, ingest_day
from mlfs_dagster.core.landing import LandingFileError, LandingZone
from mlfs_dagster.core.offline_store import OfflineStore, TimeRange
from mlfs_dagster.fraud.sources import CARD_PROFILES, TRANSACTIONS

DAY = dt.date(2026, 1, 5)
UTC_US = pa.timestamp("us", tz="UTC")


def at(hour: int, minute: int = 0, day: dt.date = DAY) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=dt.UTC)


def transactions(rows: list[tuple], time_type: pa.DataType = UTC_US, **override) -> pa.Table:
    """Transactions from (transaction_id, card_id, event_time, amount) rows; other columns fixed."""
    n = len(rows)
    columns = {
        "transaction_id": [r[0] for r in rows],
        "card_id": [r[1] for r in rows],
        "merchant_id": ["m1"] * n,
        "event_time": pa.array([r[2] for r in rows], time_type),
        "amount": [r[3] for r in rows],
        "channel": ["pos"] * n,
        "country": ["FR"] * n,
        "card_present": [True] * n,
    }
    return pa.table({**columns, **override})


def land(root: Path, source: str, data: pa.Table, name: str = "part-0.parquet", day: dt.date = DAY) -> Path:
    folder = root / source / f"date={day.isoformat()}"
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(data, folder / name)
    return folder / name


@pytest.fixture
def landing(tmp_path) -> LandingZone:
    return LandingZone(str(tmp_path / "landing"))


@pytest.fixture
def root(tmp_path) -> Path:
    return tmp_path / "landing"


GOOD = [("t1", "c1", at(9), 10.0), ("t2", "c2", at(10), 20.0), ("t3", "c1", at(11), 30.0)]


# --- file-level problems: the day stops, with a message that says where to look ----------------------


def test_missing_day_folder_names_the_folder_the_source_and_the_day(landing):
    with pytest.raises(LandingFileError) as raised:
        ingest_day(landing, TRANSACTIONS, DAY)
    message = str(raised.value)
    assert landing.day_folder("transactions", DAY) in message
    assert "'transactions'" in message and "2026-01-05" in message


def test_day_folder_without_parquet_files_is_missing(landing, root):
    folder = root / "transactions" / "date=2026-01-05"
    folder.mkdir(parents=True)
    (folder / "notes.txt").write_text("not data")
    with pytest.raises(LandingFileError, match="no landing file"):
        ingest_day(landing, TRANSACTIONS, DAY)


def test_corrupt_parquet_file_is_named(landing, root):
    land(root, "transactions", transactions(GOOD), "good.parquet")
    corrupt = root / "transactions" / "date=2026-01-05" / "corrupt.parquet"
    corrupt.write_bytes(b"this is not parquet at all")
    with pytest.raises(LandingFileError, match="cannot read landing file") as raised:
        ingest_day(landing, TRANSACTIONS, DAY)
    assert str(corrupt) in str(raised.value)


def test_missing_column_names_the_column_and_the_file(landing, root):
    path = land(root, "transactions", transactions(GOOD).drop_columns(["amount"]))
    with pytest.raises(ContractError) as raised:
        ingest_day(landing, TRANSACTIONS, DAY)
    assert "'amount'" in str(raised.value) and str(path) in str(raised.value)


def test_uncastable_column_names_the_column_and_both_types(landing, root):
    path = land(root, "transactions", transactions(GOOD, amount=["ten", "twenty", "thirty"]))
    with pytest.raises(ContractError) as raised:
        ingest_day(landing, TRANSACTIONS, DAY)
    message = str(raised.value)
    assert "'amount'" in message and str(path) in message
    assert "has type string, expected double" in message


def test_missing_column_in_one_of_several_files_is_a_contract_error(landing, root):
    land(root, "transactions", transactions(GOOD), "a.parquet")
    lacking_amount = transactions([("t9", "c9", at(12), 5.0)]).drop_columns(["amount"])
    land(root, "transactions", lacking_amount, "b.parquet")
    with pytest.raises(ContractError, match="amount"):
        ingest_day(landing, TRANSACTIONS, DAY)


def test_wrong_type_in_one_of_several_files_is_a_contract_error(landing, root):
    land(root, "transactions", transactions(GOOD), "a.parquet")
    land(root, "transactions", transactions([("t9", "c9", at(12), 5.0)], amount=["five"]), "b.parquet")
    with pytest.raises(ContractError, match="amount"):
        ingest_day(landing, TRANSACTIONS, DAY)


# --- what the contract accepts --------------------------------------------------------------------------


def test_castable_types_are_accepted_and_naive_timestamps_are_utc(landing, root):
    naive = [(tid, card, time.replace(tzinfo=None), int(amount)) for tid, card, time, amount in GOOD]
    land(root, "transactions", transactions(naive, time_type=pa.timestamp("ns")))
    good = ingest_day(landing, TRANSACTIONS, DAY).good
    assert good.schema == TRANSACTIONS.schema
    assert good["amount"].to_pylist() == [10.0, 20.0, 30.0]
    assert good["event_time"].to_pylist() == [at(9), at(10), at(11)]  # the same instants, read as UTC


def test_timestamps_in_another_zone_keep_their_instant(landing, root):
    plus_one = dt.timezone(dt.timedelta(hours=1))
    paris = [(tid, card, time.astimezone(plus_one), amount) for tid, card, time, amount in GOOD]
    land(root, "transactions", transactions(paris, time_type=pa.timestamp("us", tz="Europe/Paris")))
    assert ingest_day(landing, TRANSACTIONS, DAY).good["event_time"].to_pylist() == [at(9), at(10), at(11)]


def test_extra_columns_are_ignored_and_contract_order_is_kept(landing, root):
    data = transactions(GOOD).append_column("upstream_debug", pa.array(["x", "y", "z"]))
    land(root, "transactions", data.select(list(reversed(data.column_names))))
    good = ingest_day(landing, TRANSACTIONS, DAY).good
    assert good.column_names == TRANSACTIONS.schema.names
    assert good.num_rows == 3


def test_files_of_one_day_are_concatenated(landing, root):
    land(root, "transactions", transactions(GOOD[:2]), "a.parquet")
    land(root, "transactions", transactions(GOOD[2:]), "b.parquet")
    result = ingest_day(landing, TRANSACTIONS, DAY)
    assert sorted(result.good["transaction_id"].to_pylist()) == ["t1", "t2", "t3"]
    assert [Path(p).name for p in result.paths] == ["a.parquet", "b.parquet"]


# --- row-level problems: quarantined with a reason, nothing lost ----------------------------------------

BAD = [
    (None, "c1", at(12), 1.0),
    ("t5", "c1", None, 1.0),
    ("t6", "c1", at(23, 0, DAY - dt.timedelta(days=1)), 1.0),
    ("t7", "c1", at(0, 0, DAY + dt.timedelta(days=1)), 1.0),
    ("t1", "c1", at(13), 99.0),  # t1 again, later than the first
]


def test_each_bad_row_is_quarantined_with_its_reason_and_good_rows_land(landing, root):
    land(root, "transactions", transactions(GOOD + BAD))
    result = ingest_day(landing, TRANSACTIONS, DAY)

    reasons = {row["transaction_id"]: row[REASON] for row in result.quarantined.to_pylist()}
    assert reasons == {
        None: "null key transaction_id",
        "t5": "null event_time",
        "t6": "event_time outside the landing day 2026-01-05",
        "t7": "event_time outside the landing day 2026-01-05",
        "t1": "duplicate key (transaction_id)",
    }
    assert sorted(result.good["transaction_id"].to_pylist()) == ["t1", "t2", "t3"]
    assert result.good.num_rows + result.quarantined.num_rows == len(GOOD + BAD)


def test_a_row_shadowed_by_an_out_of_day_row_of_the_same_key_is_a_duplicate(landing, root):
    rows = [("t1", "c1", at(23, 0, DAY - dt.timedelta(days=1)), 1.0), ("t1", "c1", at(10), 2.0)]
    land(root, "transactions", transactions(rows))
    result = ingest_day(landing, TRANSACTIONS, DAY)
    assert result.good.num_rows == 0  # conservative: an id seen twice is not trusted, whichever is in the day
    assert result.quarantined[REASON].to_pylist() == [
        "event_time outside the landing day 2026-01-05", "duplicate key (transaction_id)"]


def test_rows_missing_a_required_value_are_quarantined_and_optional_nulls_land(landing, root):
    land(root, "transactions", transactions([("t1", None, at(9), 5.0), ("t2", "c2", at(9), None),
                                             ("t3", "c3", at(9), 7.0)]))
    result = ingest_day(landing, TRANSACTIONS, DAY)
    assert result.quarantined[REASON].to_pylist() == ["null card_id", "null amount"]
    assert result.good["transaction_id"].to_pylist() == ["t3"]


def test_the_earliest_row_of_a_duplicated_key_is_kept(landing, root):
    land(root, "transactions", transactions([("t1", "c1", at(13), 99.0), ("t1", "c1", at(9), 10.0)]))
    result = ingest_day(landing, TRANSACTIONS, DAY)
    assert result.good["amount"].to_pylist() == [10.0]
    assert result.quarantined["amount"].to_pylist() == [99.0]


def test_day_boundaries_midnight_is_in_and_next_midnight_is_out(landing, root):
    rows = [("a", "c1", at(0, 0), 1.0), ("b", "c1", at(0, 0, DAY + dt.timedelta(days=1)), 1.0)]
    land(root, "transactions", transactions(rows))
    result = ingest_day(landing, TRANSACTIONS, DAY)
    assert result.good["transaction_id"].to_pylist() == ["a"]
    assert result.quarantined["transaction_id"].to_pylist() == ["b"]


def test_quarantined_rows_keep_their_columns_and_the_landing_date(landing, root):
    land(root, "transactions", transactions(GOOD + BAD))
    quarantined = ingest_day(landing, TRANSACTIONS, DAY).quarantined
    assert quarantined.column_names == [*TRANSACTIONS.schema.names, REASON, LANDING_DATE]
    assert set(quarantined[LANDING_DATE].to_pylist()) == {at(0)}


def card_profiles(rows: list[tuple]) -> pa.Table:
    """Profiles from (card_id, event_time, credit_limit) rows."""
    n = len(rows)
    return pa.table({
        "card_id": [r[0] for r in rows],
        "event_time": pa.array([r[1] for r in rows], UTC_US),
        "card_type": ["credit"] * n,
        "credit_limit": [r[2] for r in rows],
        "home_country": ["FR"] * n,
        "status": ["active"] * n,
    })


def test_composite_key_same_card_twice_a_day_is_not_a_duplicate(landing, root):
    land(root, "card_profiles", card_profiles([("c1", at(9), 1000.0), ("c1", at(15), 2000.0),
                                               ("c1", at(15), 3000.0), (None, at(16), 5.0)]))
    result = ingest_day(landing, CARD_PROFILES, DAY)
    assert result.good["credit_limit"].to_pylist() in ([1000.0, 2000.0], [1000.0, 3000.0])
    assert result.quarantined[REASON].to_pylist() == [
        "duplicate key (card_id, event_time)", "null key card_id"]


def test_empty_landing_file_gives_no_rows_and_no_error(landing, root):
    land(root, "transactions", transactions([]).cast(TRANSACTIONS.schema))
    result = ingest_day(landing, TRANSACTIONS, DAY)
    assert result.good.num_rows == 0 and result.quarantined.num_rows == 0


# --- into the offline store -----------------------------------------------------------------------------


@pytest.fixture
def store(tmp_path) -> OfflineStore:
    return OfflineStore(f"sqlite:///{tmp_path}/c.db", f"file://{tmp_path}/wh")


def rows_of(table: pa.Table) -> list[dict]:
    return sorted(table.to_pylist(), key=lambda row: str(row.get("transaction_id")))


def test_ingested_day_written_twice_leaves_the_same_rows_and_quarantine(landing, root, store):
    land(root, "transactions", transactions(GOOD + BAD))
    result = ingest_day(landing, TRANSACTIONS, DAY)
    days = TimeRange.of_days(DAY, DAY)
    for _ in range(2):
        store.replace_range(TRANSACTIONS.table, result.good, "event_time", days)
        store.replace_range(TRANSACTIONS.quarantine_table, result.quarantined, LANDING_DATE, days)

    assert rows_of(store.read(TRANSACTIONS.table)) == rows_of(result.good)
    quarantine = store.read(TRANSACTIONS.quarantine_table)
    assert rows_of(quarantine) == rows_of(result.quarantined)
    assert quarantine[REASON].null_count == 0
    assert set(quarantine[LANDING_DATE].to_pylist()) == {at(0)}


def test_replacing_a_day_keeps_the_other_days(store):
    next_day = DAY + dt.timedelta(days=1)
    store.replace_range("raw.t", transactions(GOOD).cast(TRANSACTIONS.schema), "event_time",
                        TimeRange.of_days(DAY, DAY))
    store.replace_range("raw.t", transactions([("n1", "c1", at(8, 0, next_day), 1.0)]).cast(
        TRANSACTIONS.schema), "event_time", TimeRange.of_days(next_day, next_day))
    store.replace_range("raw.t", transactions(GOOD[:1]).cast(TRANSACTIONS.schema), "event_time",
                        TimeRange.of_days(DAY, DAY))
    assert sorted(store.read("raw.t")["transaction_id"].to_pylist()) == ["n1", "t1"]


def test_replace_range_refuses_rows_outside_the_range(store):
    tomorrow = DAY + dt.timedelta(days=1)
    outside = transactions([("t1", "c1", at(9), 1.0), ("t2", "c1", at(1, 0, tomorrow), 1.0)])
    with pytest.raises(ValueError, match="fall outside the range being replaced"):
        store.replace_range("raw.t", outside, "event_time", TimeRange.of_days(DAY, DAY))
    assert not store.exists("raw.t")  # refused before anything was written
