"""The card-fraud simulator: determinism, file layout and schemas, fraud patterns and their legitimate
look-alikes, drift injection and its end, the recorded config and daily extension, CLI."""

import argparse
import dataclasses
import datetime as dt
import hashlib
import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from card_fraud.simulator import (
    NEW_COUNTRIES,
    SOURCES,
    DriftSpec,
    SimulationConfig,
    add_arguments,
    config_from_args,
    extend,
    recorded_config,
    simulate,
)
from card_fraud.sources import SOURCES as SOURCE_SPECS

START = dt.date(2026, 1, 1)
SMALL = SimulationConfig(
    start_date=START, days=12, cards=300, merchants=200, transactions_per_day=600, fraud_rate=0.02, seed=11
)
# Many cards and few days: enough travellers and online sprees to look for, still fast.
CROWD = SimulationConfig(
    start_date=START, days=8, cards=3_000, merchants=200, transactions_per_day=3_000, fraud_rate=0.01, seed=5
)
DRIFT_START = START + dt.timedelta(days=6)
HOTSPOTS = {"NG", "RU", "CN", "BR"}
TIME_COLUMN = {"transactions": "event_time", "card_profiles": "event_time", "merchants": "event_time"}
TIME_COLUMN["fraud_reports"] = "reported_at"


@pytest.fixture(scope="module")
def landing(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("landing")
    simulate(SMALL, path)
    return path


@pytest.fixture(scope="module")
def crowd(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("crowd")
    simulate(CROWD, path)
    return path


def file_hashes(landing: Path) -> dict[str, str]:
    return {
        str(path.relative_to(landing)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(landing.rglob("*"))
        if path.is_file()
    }


def modification_times(landing: Path) -> dict[str, int]:
    files = (path for path in landing.rglob("*") if path.is_file())
    return {str(path.relative_to(landing)): path.stat().st_mtime_ns for path in files}


def file_date(name: str) -> str:
    """The date of a day file's relative path, "" for the ground truth files."""
    return name.split("date=")[1][:10] if "date=" in name else ""


def read(landing: Path, source: str) -> pd.DataFrame:
    """All days of a source, with the date of the file each row came from."""
    frames = [
        pq.read_table(path).to_pandas().assign(file_date=dt.date.fromisoformat(path.parent.name[5:]))
        for path in sorted((landing / source).glob("date=*/part-0.parquet"))
    ]
    return pd.concat(frames, ignore_index=True)


def transactions_with_truth(landing: Path) -> pd.DataFrame:
    """Transactions with their ground truth, merchant category and the card's first home country."""
    truth = pq.read_table(landing / "_ground_truth" / "fraud.parquet").to_pandas()
    category = read(landing, "merchants").set_index("merchant_id")["category"]
    txns = read(landing, "transactions").merge(truth, on="transaction_id", validate="one_to_one")
    return txns.assign(
        category=txns["merchant_id"].map(category), home=txns["card_id"].map(first_homes(landing))
    )


def first_homes(landing: Path) -> pd.Series:
    return read(landing, "card_profiles").drop_duplicates("card_id").set_index("card_id")["home_country"]


def cards_that_moved_home(landing: Path) -> set[str]:
    homes = read(landing, "card_profiles").groupby("card_id")["home_country"].nunique()
    return set(homes[homes > 1].index)


def test_same_seed_gives_byte_identical_files(landing, tmp_path):
    result = simulate(SMALL, tmp_path)
    assert file_hashes(tmp_path) == file_hashes(landing)
    assert all(len(files) == SMALL.days for files in result.files.values())
    assert set(result.files) == set(SOURCES)


def test_different_seed_gives_different_files(landing, tmp_path):
    simulate(dataclasses.replace(SMALL, seed=12), tmp_path)
    mine, theirs = file_hashes(tmp_path), file_hashes(landing)
    assert all(mine[name] != theirs[name] for name in mine if name.startswith("transactions/"))


def test_every_file_has_the_exact_schema(landing):
    for source, schema in ((spec.name, spec.schema) for spec in SOURCE_SPECS):
        paths = sorted((landing / source).glob("date=*/part-0.parquet"))
        assert len(paths) == SMALL.days, source
        for path in paths:
            assert pq.read_schema(path).equals(schema), path
    truth = pq.read_schema(landing / "_ground_truth" / "fraud.parquet")
    assert truth.equals(
        pa.schema([("transaction_id", pa.string()), ("is_fraud", pa.bool_()), ("fraud_type", pa.string())])
    )


def test_every_time_falls_inside_its_file_date(landing):
    for source, column in TIME_COLUMN.items():
        frame = read(landing, source)
        assert (frame[column].dt.date == frame["file_date"]).all(), source


def test_transactions_are_unique_sorted_and_consistent(landing):
    txns = read(landing, "transactions")
    assert txns["transaction_id"].is_unique
    for _, day in txns.groupby("file_date"):
        assert len(day) > 0
        ordered = day.sort_values(["event_time", "transaction_id"])
        assert list(ordered.index) == list(day.index)
    assert txns["file_date"].nunique() == SMALL.days
    assert set(txns["channel"]) == {"pos", "online", "atm"}
    assert (txns["card_present"] == (txns["channel"] != "online")).all()
    assert (txns["amount"] > 0).all()
    assert (txns["amount"].round(2) == txns["amount"]).all()
    assert not set(txns["country"]) & set(NEW_COUNTRIES)


def test_fraud_share_is_about_the_fraud_rate(landing):
    truth = pq.read_table(landing / "_ground_truth" / "fraud.parquet").to_pandas()
    assert 0.5 * SMALL.fraud_rate < truth["is_fraud"].mean() < 1.5 * SMALL.fraud_rate
    assert (truth["fraud_type"].isna() == ~truth["is_fraud"]).all()


def test_fraud_reports_reference_written_transactions_and_arrive_1_to_30_days_later(landing):
    txns = transactions_with_truth(landing)
    reports = read(landing, "fraud_reports")
    assert len(reports) > 0 and reports["report_id"].is_unique
    joined = reports.merge(txns, on="transaction_id", how="left", validate="1:1", suffixes=("", "_txn"))
    assert joined["event_time"].notna().all(), "a report references a transaction that was not written"
    assert joined["is_fraud"].all()
    assert (joined["fraud_type"] == joined["fraud_type_txn"]).all()
    delay = joined["reported_at"] - joined["event_time"]
    assert (delay >= pd.Timedelta(days=1)).all() and (delay <= pd.Timedelta(days=30)).all()
    last_day = START + dt.timedelta(days=SMALL.days - 1)
    assert (reports["reported_at"].dt.date <= last_day).all()


def test_first_card_profiles_file_holds_every_card_at_midnight(landing):
    profiles = read(landing, "card_profiles")
    first = profiles[profiles["file_date"] == START]
    assert len(first) == SMALL.cards and first["card_id"].is_unique
    assert (first["event_time"] == pd.Timestamp(START, tz="UTC")).all()
    later = profiles[profiles["file_date"] > START]
    assert 0 < len(later) < SMALL.cards
    assert set(later["card_id"]) <= set(first["card_id"])


def test_merchants_only_transact_after_onboarding(landing):
    merchants = read(landing, "merchants")
    assert merchants["merchant_id"].is_unique
    initial = merchants[merchants["file_date"] == START]
    assert len(initial) == round(0.9 * SMALL.merchants)
    assert (initial["event_time"] == pd.Timestamp(START, tz="UTC")).all()
    onboarding = merchants.set_index("merchant_id")["event_time"]
    txns = read(landing, "transactions")
    assert txns["merchant_id"].isin(onboarding.index).all()
    assert (txns["event_time"] > txns["merchant_id"].map(onboarding)).all()
    assert txns["merchant_id"].isin(merchants.loc[merchants["file_date"] > START, "merchant_id"]).any()


def test_card_testing_bursts_step_up_online_within_90_minutes(landing):
    txns = transactions_with_truth(landing)
    bursts = txns[txns["fraud_type"] == "card_testing_burst"].sort_values("event_time")
    tested = untested = two_step = 0
    for _, card in bursts.groupby("card_id"):
        span = card["event_time"].iloc[-1] - card["event_time"].iloc[0]
        if span <= pd.Timedelta(minutes=90):  # one burst on this card
            assert (card["channel"] == "online").all()
            assert card["amount"].is_monotonic_increasing and card["amount"].iloc[-1] >= 300
            tested += card["amount"].iloc[0] <= 5
            untested += card["amount"].iloc[0] >= 30  # no small test charge first
            two_step += len(card) == 2
    assert tested >= 2 and untested >= 1 and two_step >= 1
    assert tested > untested


def test_impossible_travel_follows_a_home_purchase_within_3_hours(landing):
    txns = transactions_with_truth(landing).sort_values("event_time")
    home = read(landing, "card_profiles").drop_duplicates("card_id").set_index("card_id")["home_country"]
    travel = txns[txns["fraud_type"] == "impossible_travel"]
    assert len(travel) > 0 and travel["card_present"].all()
    found = 0
    for _, fraud in travel.drop_duplicates("card_id").iterrows():
        before = txns[
            (txns["card_id"] == fraud["card_id"])
            & (txns["event_time"] >= fraud["event_time"] - pd.Timedelta(hours=3))
            & (txns["event_time"] <= fraud["event_time"] - pd.Timedelta(hours=1))
            & txns["card_present"]
            & ~txns["is_fraud"]
            & (txns["country"] == home[fraud["card_id"]])
        ]
        found += len(before) > 0 and fraud["country"] != home[fraud["card_id"]]
    assert found >= 0.9 * travel["card_id"].nunique()


def test_impossible_travel_also_happens_where_legitimate_travellers_go(crowd):
    txns = transactions_with_truth(crowd)
    clones = set(txns.loc[txns["fraud_type"] == "impossible_travel", "country"])
    travellers = txns[~txns["is_fraud"] & txns["card_present"] & (txns["country"] != txns["home"])]
    assert clones & HOTSPOTS and clones - HOTSPOTS
    assert (clones - HOTSPOTS) & set(travellers["country"])


def test_some_fraud_looks_like_the_holders_own_spending(landing):
    txns = transactions_with_truth(landing)
    fraud = txns[txns["is_fraud"]]
    quiet = fraud[fraud["fraud_type"] == "ordinary_looking"]
    assert 0.1 < len(quiet) / len(fraud) < 0.3
    assert (quiet["country"] == quiet["home"]).all()
    assert {"pos", "online"} <= set(quiet["channel"])
    usual = txns[~txns["is_fraud"]].groupby("card_id")["amount"].median()
    assert 1 < (quiet["amount"] / quiet["card_id"].map(usual)).median() < 4
    assert quiet["amount"].max() < 2_000


def test_travellers_buy_in_person_abroad_with_a_flight_between_countries(crowd):
    txns = transactions_with_truth(crowd)
    in_person = txns[
        ~txns["is_fraud"] & txns["card_present"] & ~txns["card_id"].isin(cards_that_moved_home(crowd))
    ]
    in_person = in_person.sort_values(["card_id", "event_time"])
    previous = in_person.groupby("card_id")[["country", "event_time"]].shift()
    crossing = previous["country"].notna() & (in_person["country"] != previous["country"])
    gaps = (in_person["event_time"] - previous["event_time"])[crossing]
    assert crossing.sum() >= 50
    assert gaps.min() >= pd.Timedelta(hours=2), "a legitimate holder changed country without a flight"
    abroad = in_person[in_person["country"] != in_person["home"]]
    assert 0.005 < abroad.groupby("file_date")["card_id"].nunique().mean() / CROWD.cards < 0.04
    assert set(abroad["country"]) & HOTSPOTS and set(abroad["country"]) - HOTSPOTS


def test_online_sprees_rise_like_card_tests_and_are_not_reported(crowd):
    txns = transactions_with_truth(crowd)
    online = txns[txns["channel"] == "online"].sort_values(["card_id", "event_time"])
    online["reported"] = online["transaction_id"].isin(read(crowd, "fraud_reports")["transaction_id"])
    gap = online.groupby("card_id")["event_time"].diff()
    spree_id = (gap.isna() | (gap > pd.Timedelta(minutes=60))).cumsum()
    sprees = online.groupby(spree_id).agg(
        rows=("amount", "size"),
        start=("event_time", "min"),
        end=("event_time", "max"),
        first=("amount", "first"),
        last=("amount", "last"),
        largest=("amount", "max"),
        last_category=("category", "last"),
        reported=("reported", "any"),
    )
    # Rising online charges within an hour, ending in a large one at an electronics shop, as a card test does.
    card_test_like = sprees[
        (sprees["rows"] >= 3)
        & (sprees["end"] - sprees["start"] <= pd.Timedelta(minutes=60))
        & (sprees["last"] == sprees["largest"])
        & (sprees["last"] >= 10 * sprees["first"])
        & (sprees["last_category"] == "electronics")
    ]
    assert (~card_test_like["reported"]).sum() >= 5
    assert card_test_like["reported"].any()  # the same shape is also fraud


def test_frozen_cards_do_not_transact(landing):
    profiles = read(landing, "card_profiles")
    # A change applies from the day after its file; the first file holds the profiles of day one.
    profiles["effective"] = pd.to_datetime(profiles["file_date"]) + pd.Timedelta(days=1)
    profiles.loc[profiles["file_date"] == START, "effective"] = pd.Timestamp(START)
    txns = read(landing, "transactions").assign(day=lambda t: pd.to_datetime(t["file_date"]))
    status = pd.merge_asof(
        txns.sort_values("day"),
        profiles.sort_values("effective"),
        left_on="day",
        right_on="effective",
        by="card_id",
        suffixes=("", "_profile"),
    )["status"]
    assert (profiles["status"] == "frozen").any()
    assert (status == "active").all()


def test_mean_shift_raises_amounts_from_its_start_and_leaves_earlier_files_unchanged(landing, tmp_path):
    drifted = dataclasses.replace(SMALL, drifts=(DriftSpec(DRIFT_START, "mean_shift", ("amount",), 1.0),))
    simulate(drifted, tmp_path)

    def after_over_before(path: Path) -> float:
        txns = read(path, "transactions")
        after = txns["file_date"] >= DRIFT_START
        return txns.loc[after, "amount"].mean() / txns.loc[~after, "amount"].mean()

    assert after_over_before(tmp_path) > 1.6
    assert 0.8 < after_over_before(landing) < 1.25
    with_drift, without = file_hashes(tmp_path), file_hashes(landing)
    earlier = [name for name in without if "" < file_date(name) < str(DRIFT_START)]
    assert len(earlier) == 4 * 6
    assert all(with_drift[name] == without[name] for name in earlier)
    later = [name for name in without if name.startswith("transactions/") and name not in earlier]
    assert all(with_drift[name] != without[name] for name in later)
    truth = json.loads((tmp_path / "_ground_truth" / "drift.json").read_text())
    assert truth == {
        "seed": 11,
        "start_date": "2026-01-01",
        "days": 12,
        "drifts": [
            {
                "start": str(DRIFT_START),
                "end": None,
                "kind": "mean_shift",
                "columns": ["amount"],
                "strength": 1.0,
            }
        ],
    }


def test_category_mix_moves_purchases_online_and_abroad_to_new_countries(landing, tmp_path):
    drift = DriftSpec(DRIFT_START, "category_mix", ("channel", "country"))
    simulate(dataclasses.replace(SMALL, drifts=(drift,)), tmp_path)
    txns = read(tmp_path, "transactions")
    after = txns["file_date"] >= DRIFT_START
    online = txns["channel"] == "online"
    assert online[after].mean() - online[~after].mean() > 0.3
    new_country = txns["country"].isin(NEW_COUNTRIES)
    assert not new_country[~after].any()
    assert new_country[txns["file_date"] == DRIFT_START].mean() < 0.1  # the share grows over a week
    assert new_country[txns["file_date"] == START + dt.timedelta(days=SMALL.days - 1)].mean() > 0.15


def test_concept_change_turns_fraud_into_ordinary_looking_purchases(tmp_path):
    simulate(dataclasses.replace(SMALL, drifts=(DriftSpec(DRIFT_START, "concept_change", ()),)), tmp_path)
    txns = transactions_with_truth(tmp_path)
    after = txns["file_date"] >= DRIFT_START
    fraud_after = txns[after & txns["is_fraud"]]
    assert len(fraud_after) > 0
    assert (fraud_after["fraud_type"] == "counterfeit_card").all()
    assert fraud_after["card_present"].all() and fraud_after["amount"].max() < 1_000
    assert not (txns.loc[~after, "fraud_type"] == "counterfeit_card").any()


def test_a_drift_that_ends_leaves_the_files_from_its_end_on_as_without_it(landing, tmp_path):
    start, end = START + dt.timedelta(days=3), START + dt.timedelta(days=6)
    drifted_dates = {start + dt.timedelta(days=day) for day in range(3)}
    drifts = (
        DriftSpec(start, "mean_shift", ("amount",), end=end),
        DriftSpec(start, "category_mix", ("country",), 3.0, end=end),
    )
    simulate(dataclasses.replace(SMALL, drifts=drifts), tmp_path)
    # Neither drift changes how many transactions there are or which are fraud: only the drifted days differ.
    with_drift, without = file_hashes(tmp_path), file_hashes(landing)
    changed = {name for name in without if with_drift[name] != without[name]}
    drifted_files = {f"transactions/date={date}/part-0.parquet" for date in drifted_dates}
    assert changed == drifted_files | {"_ground_truth/drift.json", "_ground_truth/simulation.json"}
    txns = read(tmp_path, "transactions")
    assert set(txns.loc[txns["country"].isin(NEW_COUNTRIES), "file_date"]) == drifted_dates
    truth = json.loads((tmp_path / "_ground_truth" / "drift.json").read_text())
    assert [(d["start"], d["end"]) for d in truth["drifts"]] == [(str(start), str(end))] * 2


def test_fraud_returns_to_its_old_patterns_when_a_concept_change_ends(tmp_path):
    end = DRIFT_START + dt.timedelta(days=3)
    drift = DriftSpec(DRIFT_START, "concept_change", (), end=end)
    simulate(dataclasses.replace(SMALL, drifts=(drift,)), tmp_path)
    txns = transactions_with_truth(tmp_path)
    counterfeit = txns["fraud_type"] == "counterfeit_card"
    assert set(txns.loc[counterfeit, "file_date"]) == {DRIFT_START + dt.timedelta(days=d) for d in range(3)}
    after = txns[(txns["file_date"] >= end) & txns["is_fraud"]]
    assert {"card_testing_burst", "impossible_travel"} <= set(after["fraud_type"])


def test_the_whole_config_is_recorded(landing, tmp_path):
    assert recorded_config(landing) == SMALL
    assert recorded_config(tmp_path) is None
    drift = DriftSpec(DRIFT_START, "category_mix", ("channel",), 2, end=DRIFT_START + dt.timedelta(days=2))
    config = dataclasses.replace(SMALL, days=2, drifts=(drift,))
    simulate(config, tmp_path)
    assert recorded_config(tmp_path) == config


def test_extend_writes_the_days_a_longer_run_writes_and_leaves_existing_files_alone(tmp_path):
    drifts = (
        DriftSpec(START + dt.timedelta(days=3), "concept_change", (), end=START + dt.timedelta(days=7)),
        DriftSpec(START + dt.timedelta(days=4), "mean_shift", ("amount",)),
    )
    config = dataclasses.replace(SMALL, drifts=drifts)
    simulate(config, tmp_path / "at_once")
    extended = tmp_path / "extended"
    simulate(dataclasses.replace(config, days=5), extended)
    before, written_at = file_hashes(extended), modification_times(extended)

    new_dates = extend(extended, through=START + dt.timedelta(days=11))

    assert new_dates == [START + dt.timedelta(days=day) for day in range(5, 12)]
    assert file_hashes(extended) == file_hashes(tmp_path / "at_once")  # day files and ground truth alike
    day_files = [name for name in before if file_date(name)]
    assert len(day_files) == 4 * 5
    assert all(modification_times(extended)[name] == written_at[name] for name in day_files)
    assert recorded_config(extended) == config


def test_extend_is_idempotent_and_needs_a_recorded_simulation(landing, tmp_path):
    before, written_at = file_hashes(landing), modification_times(landing)
    last_day = START + dt.timedelta(days=SMALL.days - 1)
    assert extend(landing, through=last_day) == []
    assert extend(landing, through=START) == []
    assert (file_hashes(landing), modification_times(landing)) == (before, written_at)
    with pytest.raises(FileNotFoundError, match="no simulation recorded"):
        extend(tmp_path, through=last_day)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-02-14:mean_shift:amount", DriftSpec(dt.date(2026, 2, 14), "mean_shift", ("amount",), 1.0)),
        ("2026-02-14:mean_shift:amount:1.5", DriftSpec(dt.date(2026, 2, 14), "mean_shift", ("amount",), 1.5)),
        (
            " 2026-02-14:category_mix:channel, country ",
            DriftSpec(dt.date(2026, 2, 14), "category_mix", ("channel", "country")),
        ),
        ("2026-02-14:concept_change:-", DriftSpec(dt.date(2026, 2, 14), "concept_change", ())),
        ("2026-02-14:concept_change::2", DriftSpec(dt.date(2026, 2, 14), "concept_change", (), 2.0)),
        (
            "2026-02-14..2026-02-21:concept_change:-",
            DriftSpec(dt.date(2026, 2, 14), "concept_change", (), end=dt.date(2026, 2, 21)),
        ),
    ],
)
def test_drift_spec_parses(text, expected):
    assert DriftSpec.parse(text) == expected


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("mean_shift", "expected START\\[..END\\]:KIND:COLUMNS"),
        ("2026-02-14:mean_shift:amount:1:2", "expected START\\[..END\\]:KIND:COLUMNS"),
        ("2026-14-02:mean_shift:amount", "start '2026-14-02' is not a date"),
        ("2026-02-14..2026-02-30:mean_shift:amount", "end '2026-02-30' is not a date"),
        ("2026-02-14..:mean_shift:amount", "end '' is not a date"),
        ("2026-02-14..2026-02-14:mean_shift:amount", "drift end must be a date after its start 2026-02-14"),
        ("2026-02-14..2026-02-01:mean_shift:amount", "drift end must be a date after its start"),
        ("2026-02-14:explode:amount", "unknown drift kind 'explode'"),
        ("2026-02-14:mean_shift:colour", "cannot act on \\['colour'\\]"),
        ("2026-02-14:mean_shift:channel", "cannot act on \\['channel'\\]"),
        ("2026-02-14:category_mix:-", "needs at least one column"),
        ("2026-02-14:mean_shift:amount:strong", "strength 'strong' is not a number"),
        ("2026-02-14:mean_shift:amount:-1", "strength must be a positive number"),
    ],
)
def test_drift_spec_rejects_bad_input_naming_the_problem(text, problem):
    with pytest.raises(ValueError, match=problem):
        DriftSpec.parse(text)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"days": 0}, "days must be at least 1"),
        ({"cards": 0}, "cards must be at least 1"),
        ({"fraud_rate": 0.6}, "fraud_rate must be between 0 and 0.5"),
        ({"fraud_rate": -0.1}, "fraud_rate must be between 0 and 0.5"),
        ({"drifts": ("2026-02-14:mean_shift:amount",)}, "drifts must be DriftSpec values"),
    ],
)
def test_config_rejects_bad_values(change, problem):
    with pytest.raises(ValueError, match=problem):
        dataclasses.replace(SMALL, **change)


def test_rerun_with_fewer_days_leaves_no_stale_days_and_a_shorter_run_is_a_prefix(tmp_path):
    (tmp_path / "other_source").mkdir()
    simulate(dataclasses.replace(SMALL, days=10), tmp_path)
    ten_days = file_hashes(tmp_path)
    result = simulate(dataclasses.replace(SMALL, days=5), tmp_path)
    for source in SOURCES:
        assert len(list((tmp_path / source).iterdir())) == 5
        assert len(result.files[source]) == 5
    day_files = {name: digest for name, digest in file_hashes(tmp_path).items() if "date=" in name}
    assert day_files == {name: ten_days[name] for name in day_files}
    truth = pq.read_table(tmp_path / "_ground_truth" / "fraud.parquet").to_pandas()
    assert len(truth) == result.rows["transactions"]
    assert result.fraud_transactions == truth["is_fraud"].sum()
    assert (tmp_path / "other_source").is_dir()


def test_command_line_arguments_build_the_config():
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(
        ["--start-date", "2026-03-01", "--days", "5", "--cards", "50", "--merchants", "20"]
        + ["--transactions-per-day", "100", "--fraud-rate", "0.01", "--seed", "3"]
        + ["--drift", "2026-03-03:mean_shift:amount:0.5"]
        + ["--drift", "2026-03-04..2026-03-05:concept_change:-"]
    )
    assert config_from_args(args) == SimulationConfig(
        start_date=dt.date(2026, 3, 1),
        days=5,
        cards=50,
        merchants=20,
        transactions_per_day=100,
        fraud_rate=0.01,
        seed=3,
        drifts=(
            DriftSpec(dt.date(2026, 3, 3), "mean_shift", ("amount",), 0.5),
            DriftSpec(dt.date(2026, 3, 4), "concept_change", (), end=dt.date(2026, 3, 5)),
        ),
    )
    assert config_from_args(parser.parse_args([])) == SimulationConfig()
