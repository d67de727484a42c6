"""The reference model's encoder: a request's few rows and a training set's millions encode alike, through
the per-row path and the factorizing one; missing and unseen categories become NaN (the classifier's
missing), numbers pass as float32."""

import numpy as np
import pandas as pd
import pytest
from lightgbm import LGBMClassifier

from card_fraud import encoding
from card_fraud.encoding import FeatureMatrix


def frame(rows: int) -> pd.DataFrame:
    channels = ["web", "pos", None, "atm"]
    present = [True, False, None]
    return pd.DataFrame({
        "channel": [channels[i % 4] for i in range(rows)],
        "card_present": [present[i % 3] for i in range(rows)],
        "amount": [float(i) if i % 5 else np.nan for i in range(rows)],
        "count": pd.array([i if i % 7 else None for i in range(rows)], "Int64").astype("float64"),
    })


def test_codes_are_positions_among_training_values_missing_and_unseen_are_nan():
    encoder = FeatureMatrix(("channel", "card_present"), ("amount", "count")).fit(frame(3))  # no "atm"
    assert encoder.categories_ == [["pos", "web"], ["False", "True"]]
    request = pd.DataFrame({"channel": ["web", "atm", None, "moon"], "card_present": [False, None, True, True],
                            "amount": [1.5, None, 3.0, 0.0], "count": [2.0, 1.0, np.nan, 4.0]})
    expected = np.array([[1, 0, 1.5, 2], [np.nan, np.nan, np.nan, 1], [np.nan, 1, 3, np.nan],
                         [np.nan, 1, 0, 4]], np.float32)
    np.testing.assert_array_equal(encoder.transform(request), expected)


@pytest.mark.parametrize("rows", [encoding.FEW_ROWS, encoding.FEW_ROWS + 1])
def test_few_rows_and_many_rows_encode_alike(rows, monkeypatch):
    data = frame(rows)
    encoder = FeatureMatrix(("channel", "card_present"), ("amount", "count")).fit(data.iloc[:40])
    fast = encoder.transform(data)
    monkeypatch.setattr(encoding, "FEW_ROWS", -1 if rows <= encoding.FEW_ROWS else 10**9)  # the other path
    np.testing.assert_array_equal(encoder.transform(data), fast)
    assert fast.dtype == np.float32


def test_booster_classifier_scores_as_lightgbm_does():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(400, 3)).astype(np.float32)
    X[::9, 1] = np.nan
    y = (X[:, 0] + rng.normal(scale=0.5, size=400) > 0).astype(int)
    parameters = dict(n_estimators=20, num_leaves=7, verbose=-1, deterministic=True, force_row_wise=True)
    ours = encoding.BoosterClassifier(**parameters, n_jobs=1).fit(X, y)
    theirs = LGBMClassifier(**parameters, n_jobs=1).fit(X, y)
    np.testing.assert_allclose(ours.predict_proba(X[:5]), theirs.predict_proba(X[:5]))
    np.testing.assert_allclose(ours.predict_proba(pd.DataFrame(X)), theirs.predict_proba(X))  # the wrapper's path
    np.testing.assert_array_equal(ours.predict(X), theirs.predict(X))
