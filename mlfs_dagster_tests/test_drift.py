"""Feature drift over Evidently: stable tests, Evidently's own verdicts, nulls, sampling, the HTML report."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlfs_dagster.core.drift import DriftResult, feature_drift

NUMERICAL = ["amount", "hour", "distance_km", "txn_count_7d"]
CATEGORICAL = ["channel", "card_present"]
WASSERSTEIN = "Wasserstein distance (normed)"
JENSEN_SHANNON = "Jensen-Shannon distance"


def transactions(seed: int, rows: int = 3_000) -> pd.DataFrame:
    """Draws from one fixed distribution; only the seed differs between samples."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "amount": rng.lognormal(3.5, 1.0, rows),
            "hour": rng.integers(0, 24, rows),
            "distance_km": rng.exponential(20.0, rows),
            "txn_count_7d": rng.poisson(12, rows),
            "channel": rng.choice(["online", "pos", "atm"], rows, p=[0.5, 0.4, 0.1]),
            "card_present": rng.random(rows) < 0.4,
        }
    )


def drift(reference: pd.DataFrame, current: pd.DataFrame, **options) -> DriftResult:
    return feature_drift(reference, current, NUMERICAL, CATEGORICAL, **options)


def by_column(result: DriftResult) -> dict:
    return {column.column: column for column in result.columns}


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    return transactions(seed=1)


@pytest.fixture(scope="module")
def amount_shifted(reference) -> pd.DataFrame:
    current = transactions(seed=2)
    current["amount"] += reference["amount"].std()
    return current


@pytest.fixture(scope="module")
def shifted_result(reference, amount_shifted, tmp_path_factory) -> DriftResult:
    """One report shared by several tests: each Evidently run takes most of a second."""
    html_path = tmp_path_factory.mktemp("drift") / "reports" / "2026-11-01" / "feature_drift.html"
    return drift(reference, amount_shifted, html_path=html_path)


def test_identical_distributions_do_not_drift(reference):
    result = drift(reference, transactions(seed=2))

    assert result.drifted_columns == ()
    assert result.drift_share == 0.0
    assert not result.dataset_drift
    assert [column.column for column in result.columns] == NUMERICAL + CATEGORICAL
    assert (result.reference_rows, result.current_rows) == (3_000, 3_000)
    assert result.html_path is None


def test_mean_shift_of_one_std_drifts_that_column_only(shifted_result):
    assert shifted_result.drifted_columns == ("amount",)
    amount = by_column(shifted_result)["amount"]
    assert amount.method == WASSERSTEIN
    assert amount.threshold == 0.1
    assert amount.score > 0.5  # the normed distance of a 1-std shift is about 1


def test_new_category_taking_40_percent_drifts_the_category(reference):
    current = transactions(seed=2)
    current.loc[current.sample(frac=0.4, random_state=0).index, "channel"] = "crypto_atm"

    result = drift(reference, current)

    assert result.drifted_columns == ("channel",)
    channel = by_column(result)["channel"]
    assert channel.method == JENSEN_SHANNON
    assert channel.score > channel.threshold


def test_dataset_drift_when_drifted_share_reaches_threshold(reference, amount_shifted, shifted_result):
    assert shifted_result.drift_share == pytest.approx(1 / 6)
    assert not shifted_result.dataset_drift  # below the default share of 0.5

    at_threshold = drift(reference, amount_shifted, share_threshold=shifted_result.drift_share)

    assert at_threshold.dataset_drift


def test_booleans_are_tested_as_categories_even_when_listed_as_numbers(reference):
    current = transactions(seed=2)

    result = feature_drift(reference, current, numerical=["amount", "card_present"], categorical=[])

    assert by_column(result)["card_present"].method == JENSEN_SHANNON


def test_html_report_is_saved(shifted_result):
    html_path = shifted_result.html_path

    html = html_path.read_text(encoding="utf-8")
    # Evidently's HTML never names Evidently; it does name each column and its verdict.
    assert "Drift in column 'amount'" in html
    assert "Data drift detected. Drift detection method: Wasserstein distance (normed)" in html


def test_reference_sampling_is_deterministic_and_keeps_the_chosen_methods():
    # 1,000 reference rows is where Evidently's defaults would switch to KS p-values.
    reference = transactions(seed=3, rows=5_000)
    current = transactions(seed=4, rows=500)

    first = drift(reference, current, max_reference_rows=1_000)
    second = drift(reference, current, max_reference_rows=1_000)

    assert first == second
    assert (first.reference_rows, first.current_rows) == (1_000, 500)
    assert {column.method for column in first.columns} == {WASSERSTEIN, JENSEN_SHANNON}


def test_all_null_columns_drift_only_when_one_side_has_values(reference):
    reference = reference.assign(always_null=np.nan, vanished=1.0, appeared=None)
    current = transactions(seed=2).assign(always_null=np.nan, vanished=np.inf, appeared="new")

    result = feature_drift(
        reference,
        current,
        numerical=["amount", "always_null", "vanished"],
        categorical=["channel", "appeared"],
    )

    assert set(result.drifted_columns) == {"vanished", "appeared"}
    assert result.drift_share == pytest.approx(2 / 5)
    assert not by_column(result)["always_null"].drifted


def test_empty_current_raises(reference):
    with pytest.raises(ValueError, match="no current rows to compare"):
        drift(reference, reference.iloc[:0])
