"""Feature semantics on hand-made transactions whose right answers are worked out by hand.

Card windows are per card and exclude the transaction itself; merchant risk is as of the start of the
day and uses only reports already received; a range of days computes the same rows as each day on its
own; on-demand features and the training helpers (time split, gates, metrics from probabilities).
"""

import datetime as dt
import random

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from card_fraud.features import CARD_DETAILS, CARD_TXN_WINDOWS, MERCHANT_RISK
from card_fraud.model import on_demand_features
from mlfs_dagster.core.features import compute_feature_group, input_range
from mlfs_dagster.core.offline_store import TimeRange
from mlfs_dagster.core.specs import FeatureGroupSpec, Gate
from mlfs_dagster.core.training import evaluate, gate_failures, time_split

UTC_US = pa.timestamp("us", tz="UTC")
DAY = dt.date(2026, 3, 10)
HISTORY_START = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)


def at(hour: int, minute: int = 0, second: int = 0, days: int = 0) -> dt.datetime:
    """An instant on DAY (or `days` after it), UTC."""
    start = dt.datetime(DAY.year, DAY.month, DAY.day, hour, minute, second, tzinfo=dt.UTC)
    return start + dt.timedelta(days=days)


def midnight(days: int = 0) -> dt.datetime:
    return at(0, days=days)


def transactions(rows: list[tuple]) -> pa.Table:
    """(transaction_id, card_id, event_time, amount[, merchant_id]) rows."""
    return pa.table({
        "transaction_id": [r[0] for r in rows],
        "card_id": [r[1] for r in rows],
        "merchant_id": [r[4] if len(r) > 4 else "m1" for r in rows],
        "event_time": pa.array([r[2] for r in rows], UTC_US),
        "amount": pa.array([r[3] for r in rows], pa.float64()),
    })


def compute(spec: FeatureGroupSpec, tables: dict[str, pa.Table], first: dt.date, last: dt.date) -> pa.Table:
    """The group over days first..last, each input cut to what a run reads (lookback, lag)."""
    days = TimeRange.of_days(first, last)
    inputs = {}
    for feature_input in spec.inputs:
        read = input_range(feature_input, days, HISTORY_START)
        table, time = tables[feature_input.name], feature_input.source.time_column
        inputs[feature_input.name] = table.filter(
            pc.and_(pc.greater_equal(table[time], pa.scalar(read.start, UTC_US)),
                    pc.less(table[time], pa.scalar(read.end, UTC_US))))
    return compute_feature_group(spec, inputs, days)


def windows(rows: list[tuple], first: dt.date = DAY, last: dt.date = DAY) -> dict[str, dict]:
    """card_txn_windows rows by transaction id."""
    result = compute(CARD_TXN_WINDOWS, {"transactions": transactions(rows)}, first, last)
    return {row["transaction_id"]: row for row in result.to_pylist()}


# --- card_txn_windows ----------------------------------------------------------------------------------


def test_windows_are_per_card_when_two_cards_interleave_within_the_hour():
    rows = [("a1", "A", at(10, 0), 10.0), ("b1", "B", at(10, 10), 100.0), ("a2", "A", at(10, 20), 20.0),
            ("b2", "B", at(10, 30), 200.0), ("a3", "A", at(10, 40), 40.0)]
    w = windows(rows)
    assert [(w[t]["txn_count_1h"], w[t]["amount_sum_1h"]) for t in ("a1", "a2", "a3")] == [
        (0, 0.0), (1, 10.0), (2, 30.0)]
    assert [(w[t]["txn_count_1h"], w[t]["amount_sum_1h"]) for t in ("b1", "b2")] == [(0, 0.0), (1, 100.0)]
    assert [w[t]["seconds_since_previous"] for t in ("a1", "a2", "a3", "b1", "b2")] == [
        None, 1200.0, 1200.0, None, 1200.0]


def test_the_transaction_itself_is_excluded():
    w = windows([("t1", "A", at(12), 50.0)])["t1"]
    assert [w[c] for c in ("txn_count_1h", "amount_sum_1h", "txn_count_24h", "amount_sum_24h",
                           "txn_count_7d", "amount_sum_7d", "seconds_since_previous")] == [
        0, 0.0, 0, 0.0, 0, 0.0, None]


def test_window_start_is_inclusive_a_transaction_exactly_one_hour_earlier_counts():
    # RANGE BETWEEN INTERVAL 1 HOUR PRECEDING is inclusive: "in the hour before" includes exactly 1 h before.
    rows = [("t1", "A", at(9), 1.0), ("t2", "A", at(10), 2.0), ("t3", "A", at(10, 0, 1), 4.0)]
    w = windows(rows)
    assert (w["t2"]["txn_count_1h"], w["t2"]["amount_sum_1h"]) == (1, 1.0)  # t1, exactly 1 h before
    assert (w["t3"]["txn_count_1h"], w["t3"]["amount_sum_1h"]) == (1, 2.0)  # t1 is 1 h 1 s before: out


def test_24_hour_and_7_day_windows_include_their_exact_start_and_nothing_older():
    rows = [("old", "A", at(9, 59, 59, days=-7), 1000.0), ("week", "A", at(10, days=-7), 100.0),
            ("day_edge", "A", at(10, days=-1), 10.0), ("recent", "A", at(9), 1.0), ("now", "A", at(10), 5.0)]
    now = windows(rows)["now"]
    assert (now["txn_count_1h"], now["amount_sum_1h"]) == (1, 1.0)
    assert (now["txn_count_24h"], now["amount_sum_24h"]) == (2, 11.0)
    assert (now["txn_count_7d"], now["amount_sum_7d"]) == (3, 111.0)


def test_only_the_range_days_are_output_lookback_rows_only_feed_the_windows():
    rows = [("before", "A", at(23, days=-1), 7.0), ("t1", "A", at(1), 1.0),
            ("after", "A", at(0, days=1), 3.0)]
    w = windows(rows)
    assert list(w) == ["t1"]
    assert (w["t1"]["txn_count_24h"], w["t1"]["seconds_since_previous"]) == (1, 7200.0)


def test_seconds_since_previous_is_null_when_the_previous_is_more_than_7_days_before():
    rows = [("a0", "A", at(10, days=-8), 1.0), ("a1", "A", at(10), 1.0),
            ("b0", "B", at(10, days=-7), 1.0), ("b1", "B", at(10), 1.0)]
    # Computed over all rows, not cut by the lookback: the SQL itself bounds the gap at 7 days, inclusive.
    result = compute_feature_group(CARD_TXN_WINDOWS, {"transactions": transactions(rows)},
                                   TimeRange.of_days(DAY, DAY))
    gaps = {row["transaction_id"]: row["seconds_since_previous"] for row in result.to_pylist()}
    assert gaps == {"a1": None, "b1": 7 * 86400.0}


def test_transactions_at_the_same_instant_count_each_other_in_the_windows():
    # EXCLUDE CURRENT ROW leaves the card's other same-instant transactions in the window; the previous
    # transaction is ordered by (event_time, transaction_id), so only the second one sees a gap of 0.
    w = windows([("t1", "A", at(9), 1.0), ("t2", "A", at(9), 2.0)])
    columns = ("txn_count_1h", "amount_sum_1h", "seconds_since_previous")
    assert [w["t1"][c] for c in columns] == [1, 2.0, None]
    assert [w["t2"][c] for c in columns] == [1, 1.0, 0.0]


def random_transactions(days: int, seed: int = 3) -> pa.Table:
    rng = random.Random(seed)
    start = midnight(-days)
    rows = []
    for i in range(400):
        time = start + dt.timedelta(seconds=rng.randrange(days * 86400 + 86400 * 3))
        amount = round(rng.uniform(1, 500), 2)
        rows.append((f"t{i:03}", rng.choice("ABCD"), time, amount, rng.choice(["m1", "m2"])))
    return transactions(rows)


def day_by_day(spec: FeatureGroupSpec, tables: dict[str, pa.Table], first: dt.date, last: dt.date):
    days = [first + dt.timedelta(days=n) for n in range((last - first).days + 1)]
    return pa.concat_tables([compute(spec, tables, day, day) for day in days])


def test_card_windows_over_a_range_equal_each_day_computed_alone():
    tables = {"transactions": random_transactions(days=12)}
    first, last = DAY - dt.timedelta(days=3), DAY + dt.timedelta(days=2)
    at_once = compute(CARD_TXN_WINDOWS, tables, first, last)
    assert at_once.num_rows > 100
    assert at_once.equals(day_by_day(CARD_TXN_WINDOWS, tables, first, last))


# --- card_details ----------------------------------------------------------------------------------------


def test_card_details_keeps_every_profile_version():
    profiles = pa.table({
        "card_id": ["A", "A", "B", "A"],
        "event_time": pa.array([at(9, days=-5), at(9, days=-2), at(12, days=-3), at(18)], UTC_US),
        "card_type": ["credit", "credit", "debit", "credit"],
        "credit_limit": [1000.0, 2500.0, None, 500.0],
        "home_country": ["FR", "FR", "DE", "FR"],
        "status": ["active", "active", "active", "frozen"],
    })
    result = compute(CARD_DETAILS, {"card_profiles": profiles}, DAY - dt.timedelta(days=5), DAY)
    assert [(r["card_id"], r["credit_limit"], r["status"]) for r in result.to_pylist()] == [
        ("A", 1000.0, "active"), ("B", None, "active"), ("A", 2500.0, "active"), ("A", 500.0, "frozen")]


# --- merchant_risk ---------------------------------------------------------------------------------------


def merchants(rows: list[tuple[str, dt.datetime]]) -> pa.Table:
    return pa.table({
        "merchant_id": [m for m, _ in rows],
        "event_time": pa.array([t for _, t in rows], UTC_US),
        "name": [f"{m} ltd" for m, _ in rows],
        "category": ["grocery"] * len(rows),
        "country": ["FR"] * len(rows),
    })


def reports(rows: list[tuple[str, dt.datetime]]) -> pa.Table:
    """(transaction_id, reported_at) rows."""
    return pa.table({
        "report_id": [f"r{i}" for i in range(len(rows))],
        "transaction_id": [t for t, _ in rows],
        "reported_at": pa.array([time for _, time in rows], UTC_US),
        "fraud_type": ["card_testing"] * len(rows),
    })


MERCHANT_WORLD = {
    "merchants": merchants([
        ("m1", midnight(-40)),
        ("idle", midnight(-40)),
        ("m2", midnight(0)),  # onboarded exactly at the start of DAY: present on DAY
        ("m3", at(10)),  # onboarded during DAY: present from the next day
    ]),
    "transactions": transactions([
        ("t_old", "A", at(12, days=-45), 1.0, "m1"),  # outside the window, but its report arrives inside
        ("t_gone", "A", at(23, days=-29), 1.0, "m1"),  # day DAY-29: outside the 28 days before DAY
        ("t_edge", "A", at(0, days=-28), 1.0, "m1"),  # day DAY-28: inside on DAY, out on DAY+1
        ("t_late", "A", at(23, 59, days=-1), 1.0, "m1"),
        ("t_today", "A", at(8), 1.0, "m1"),  # counts from DAY+1
    ]),
    "fraud_reports": reports([
        ("t_old", at(9, days=-3)),
        ("t_late", at(9)),  # received during DAY: counts from DAY+1
        ("t_edge", at(12, days=-29)),  # impossible in practice; received before the window: never counts
        ("never_written", at(9, days=-2)),  # references a transaction that does not exist: no merchant
    ]),
}


def merchant_rows() -> dict[tuple[str, dt.date], tuple]:
    result = compute(MERCHANT_RISK, MERCHANT_WORLD, DAY, DAY + dt.timedelta(days=1))
    return {
        (r["merchant_id"], r["event_time"].date()): (
            r["merchant_txn_count_28d"], r["merchant_fraud_reports_28d"], r["merchant_fraud_rate_28d"])
        for r in result.to_pylist()
    }


def test_merchant_risk_is_as_of_the_start_of_each_day():
    next_day = DAY + dt.timedelta(days=1)
    assert merchant_rows() == {
        ("m1", DAY): (2, 1, 0.5),  # t_edge, t_late; the report on t_old
        ("m1", next_day): (2, 2, 1.0),  # t_late, t_today; reports on t_old and t_late; t_edge dropped out
        ("idle", DAY): (0, 0, None),
        ("idle", next_day): (0, 0, None),
        ("m2", DAY): (0, 0, None),
        ("m2", next_day): (0, 0, None),
        ("m3", next_day): (0, 0, None),
    }


def test_merchant_risk_rows_start_at_midnight_and_carry_the_category():
    result = compute(MERCHANT_RISK, MERCHANT_WORLD, DAY, DAY)
    assert set(result["event_time"].to_pylist()) == {midnight()}
    assert set(result["merchant_category"].to_pylist()) == {"grocery"}


def test_merchant_risk_over_a_range_equals_each_day_computed_alone():
    tx = random_transactions(days=70)
    rng = random.Random(5)
    sample = zip(tx["transaction_id"].to_pylist()[::7], tx["event_time"].to_pylist()[::7])
    fraud = reports([(t, time + dt.timedelta(days=rng.randint(1, 30))) for t, time in sample])
    tables = {"merchants": merchants([("m1", midnight(-80)), ("m2", midnight(-5))]),
              "transactions": tx, "fraud_reports": fraud}
    first, last = DAY - dt.timedelta(days=6), DAY + dt.timedelta(days=2)
    at_once = compute(MERCHANT_RISK, tables, first, last)
    assert at_once.num_rows == 9 + 8 and pc.sum(at_once["merchant_fraud_reports_28d"]).as_py() > 0
    assert at_once.equals(day_by_day(MERCHANT_RISK, tables, first, last))


# --- on-demand features ----------------------------------------------------------------------------------


def vectors(**columns) -> pa.Table:
    return pa.table({
        "amount": pa.array(columns["amount"], pa.float64()),
        "amount_sum_7d": pa.array(columns["amount_sum_7d"], pa.float64()),
        "txn_count_7d": pa.array(columns["txn_count_7d"], pa.int64()),
        "country": columns["country"],
        "home_country": columns["home_country"],
    })


def test_amount_to_mean_7d_divides_by_the_card_mean_and_is_null_without_history():
    result = on_demand_features(vectors(
        amount=[30.0, 30.0, 30.0], amount_sum_7d=[100.0, 0.0, None], txn_count_7d=[5, 0, None],
        country=["FR"] * 3, home_country=["FR"] * 3))
    assert result["amount_to_mean_7d"].to_pylist() == [1.5, None, None]


def test_is_foreign_compares_country_with_home_country():
    result = on_demand_features(vectors(amount=[1.0] * 3, amount_sum_7d=[1.0] * 3, txn_count_7d=[1] * 3,
                                        country=["FR", "DE", "FR"], home_country=["FR", "FR", None]))
    assert result["is_foreign"].to_pylist() == [False, True, None]
    assert result.column_names[-2:] == ["amount_to_mean_7d", "is_foreign"]


def test_amount_to_mean_7d_is_never_infinite():
    result = on_demand_features(vectors(amount=[30.0], amount_sum_7d=[0.0], txn_count_7d=[2],
                                        country=["FR"], home_country=["FR"]))
    assert result["amount_to_mean_7d"].to_pylist() in ([None], [0.0])


# --- training helpers ------------------------------------------------------------------------------------


def times(*day_offsets: int) -> pa.ChunkedArray:
    return pa.chunked_array([pa.array([at(12, days=d) for d in day_offsets], UTC_US)])


def test_time_split_puts_the_latest_days_in_validation():
    split = time_split(times(0, 4, 1, 2, 3, 4, 0), validation_fraction=0.4)
    assert split.to_pylist() == ["train", "validation", "train", "train", "validation", "validation", "train"]


def test_time_split_refuses_a_single_day():
    with pytest.raises(ValueError, match="at least two days"):
        time_split(times(0, 0, 0), validation_fraction=0.2)


def test_time_split_always_leaves_a_training_day():
    assert "train" in time_split(times(0, 1), validation_fraction=0.75).to_pylist()


def test_time_split_leaves_out_the_gap_before_validation():
    split = time_split(times(0, 1, 2, 3, 4), validation_fraction=0.2, gap=dt.timedelta(days=2))
    assert split.to_pylist() == ["train", "train", None, None, "validation"]


def test_gate_failures_lists_floors_missed_and_missing_metrics():
    gates = (Gate("pr_auc", minimum=0.6), Gate("roc_auc", minimum=0.8), Gate("recall", minimum=0.1),
             Gate("mae", maximum=2.0))
    assert gate_failures(gates, {"pr_auc": 0.5, "roc_auc": 0.9, "mae": 2.5}) == [
        "pr_auc 0.5000 < minimum 0.6", "recall missing", "mae 2.5000 > maximum 2.0"]
    assert gate_failures((Gate("pr_auc", minimum=0.6),), {"pr_auc": 0.6}) == []  # equal to the minimum passes


def test_champion_gate_compares_in_the_metric_direction_within_tolerance():
    gates = (Gate("pr_auc", champion_tolerance=0.05), Gate("mae", champion_tolerance=0.5))
    champion = {"pr_auc": 0.70, "mae": 3.0}
    assert gate_failures(gates, {"pr_auc": 0.66, "mae": 3.4}, champion) == []
    failures = gate_failures(gates, {"pr_auc": 0.60, "mae": 3.6}, champion)
    assert [f.split()[0] for f in failures] == ["pr_auc", "mae"] and "worse than the champion" in failures[0]
    assert gate_failures(gates, {"pr_auc": 0.1, "mae": 9.0}, None) == []  # no champion yet: nothing to beat


class RanksPerfectlyPredictsNothing:
    """Scores rank every fraud above every non-fraud, yet every hard prediction is 0."""

    def predict_proba(self, frame: pd.DataFrame):
        import numpy as np

        score = frame["score"].to_numpy()
        return np.column_stack([1 - score, score])

    def predict(self, frame: pd.DataFrame):
        return [0] * len(frame)


def test_evaluate_uses_probabilities_not_hard_predictions():
    frame = pd.DataFrame({"score": [0.01, 0.02, 0.03, 0.2, 0.3],
                          "is_fraud": [False, False, False, True, True]})
    metrics = evaluate(RanksPerfectlyPredictsNothing(), frame, ["score"], "is_fraud", "binary")
    assert metrics == {"pr_auc": 1.0, "roc_auc": 1.0, "positive_rate": 0.4, "rows": 5.0}


def test_evaluate_refuses_a_single_class_validation_set():
    frame = pd.DataFrame({"score": [0.1, 0.2], "is_fraud": [0, 0]})
    with pytest.raises(ValueError, match="single class"):
        evaluate(RanksPerfectlyPredictsNothing(), frame, ["score"], "is_fraud", "binary")


class ScoresTheAmount:
    def predict_proba(self, frame: pd.DataFrame):
        import numpy as np

        score = frame["amount"].to_numpy() / 1000
        return np.column_stack([1 - score, score])


def test_the_monitoring_reference_is_the_latest_training_window_and_the_validation_outputs():
    import dataclasses

    from card_fraud.system import FRAUD_MODEL
    from mlfs_dagster.core.training import REFERENCE_ROWS, SPLIT, monitoring_reference, validation_outputs_of

    days = [midnight(day) for day in range(60)]
    frame = pd.DataFrame({feature: 1.0 for feature in FRAUD_MODEL.features}, index=range(60)).assign(
        amount=[float(day) for day in range(60)], event_time=days,
        split=["train"] * 50 + ["validation"] * 10)
    model = dataclasses.replace(FRAUD_MODEL, drift_reference_window=dt.timedelta(days=7))
    outputs = validation_outputs_of(model, frame, ScoresTheAmount())
    reference = monitoring_reference(model, frame, outputs)
    assert reference["training_rows"]["amount"].tolist() == [42.0, 43, 44, 45, 46, 47, 48, 49]  # days 42..49
    assert set(reference["training_rows"].columns) == {*FRAUD_MODEL.features, "event_time"}
    assert reference["validation_outputs"]["score"].tolist() == pytest.approx([d / 1000 for d in range(50, 60)])

    whole = monitoring_reference(dataclasses.replace(model, drift_reference_window=None), frame, outputs)
    assert len(whole["training_rows"]) == 50 and SPLIT not in whole["training_rows"]
    many = pd.concat([frame.iloc[:50]] * (REFERENCE_ROWS // 50 + 2), ignore_index=True)
    sampled = monitoring_reference(dataclasses.replace(model, drift_reference_window=None),
                                   pd.concat([many, frame.iloc[50:]]), outputs)["training_rows"]
    assert len(sampled) == REFERENCE_ROWS and sampled["event_time"].is_monotonic_increasing


def test_the_monitoring_reference_leaves_out_drift_that_came_and_went_but_keeps_drift_still_going_on():
    from mlfs_dagster.core.offline_store import TimeRange
    from mlfs_dagster.core.training import latest_window

    rows = pd.DataFrame({"event_time": [midnight(day) for day in range(30)], "day": range(30)})
    week = dt.timedelta(days=7)
    ended = [TimeRange(midnight(22), midnight(25))]  # days 22..24 drifted, days 25..29 quiet again
    # 7 days of quiet time back from day 29, plus the 3 drifted days inside: days 19..21 and 25..29
    assert latest_window(rows, "event_time", week, ended)["day"].tolist() == [19, 20, 21, 25, 26, 27, 28, 29]
    assert latest_window(rows, "event_time", week, [])["day"].tolist() == [22, 23, 24, 25, 26, 27, 28, 29]
    # the reach back over days 22..24 takes in day 19, itself drifted with day 18: it reaches back over both
    two = [TimeRange(midnight(18), midnight(20)), *ended]
    assert latest_window(rows, "event_time", week, two)["day"].tolist() == [17, 20, 21, 25, 26, 27, 28, 29]
    going_on = [TimeRange(midnight(27), midnight(28)), TimeRange(midnight(28), midnight(31))]  # the rows end in it
    assert latest_window(rows, "event_time", week, going_on)["day"].tolist() == list(range(22, 30))  # new normal
    # an earlier episode that came and went stays out, beside the one still going on
    assert latest_window(rows, "event_time", week, [*ended, *going_on])["day"].tolist() == [19, 20, 21, 25, 26, 27,
                                                                                           28, 29]
