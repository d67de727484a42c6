"""The ML checks of a training-set version on small hand-made tables whose answers are known."""

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from mlfs_dagster.core.dataset_checks import Profile, profile, training_set_findings


def version(positive_share: float, rows: int = 200, seed: int = 0, x_shift: float = 0.0, x_missing: float = 0.0):
    rng = np.random.default_rng(seed)
    label = rng.random(rows) < positive_share
    x = rng.normal(size=rows) + 2 * label
    x[rng.random(rows) < x_missing] = np.nan
    split = np.where(np.arange(rows) < rows * 0.8, "train", "validation")
    x = np.where(split == "validation", x + x_shift, x)
    return pd.DataFrame({"x": x, "y": label, "split": split})


def findings(current: pd.DataFrame, previous: pd.DataFrame | None = None, stream: bool = False) -> dict:
    """The findings by name. The previous version profiled from a table, or from batches streamed as a version
    written before profiles were kept is read, and its profile through the JSON a snapshot's summary keeps."""
    before = None
    if previous is not None:
        rows = pa.Table.from_pandas(previous, preserve_index=False)
        if stream:
            rows = pa.RecordBatchReader.from_batches(rows.schema, rows.to_batches(max_chunksize=50))
        before = Profile.from_json(profile(rows, "y", ["x"]).to_json())
    table = pa.Table.from_pandas(current, preserve_index=False)
    found = training_set_findings(table, profile(table, "y", ["x"]), before, "y", "binary", ["x"])
    return {f.name: f for f in found}


@pytest.mark.parametrize("stream", [False, True])
def test_label_balance_blocks_a_moved_share_and_a_split_with_one_class(stream):
    assert findings(version(0.3), version(0.3, seed=1), stream)["label_balance"].passed
    moved = findings(version(0.6), version(0.2, seed=1), stream)["label_balance"]
    assert not moved.passed and "positive share moved from" in moved.figures["problems"][0]
    one_class = version(0.3)
    one_class.loc[one_class["split"] == "validation", "y"] = False
    assert findings(one_class)["label_balance"].figures["problems"] == ["the validation split holds a single class"]


def test_null_rates_flag_a_feature_that_went_missing_nan_counted_as_missing():
    assert findings(version(0.3), version(0.3, seed=1))["feature_null_rates"].passed
    found = findings(version(0.3, x_missing=0.4), version(0.3, seed=1))["feature_null_rates"]
    assert not found.passed and "x" in found.figures["too_often_missing"]
    current = version(0.3, x_missing=0.4)
    assert found.figures["null_rates"]["x"] == round(current["x"].isna().mean(), 4)


def test_train_validation_shift_names_the_shifted_feature_as_pandas_measures_it():
    assert findings(version(0.3))["train_validation_shift"].passed
    shifted = version(0.3, x_shift=3.0, x_missing=0.1)
    found = findings(shifted)["train_validation_shift"]
    train, validation = (shifted.loc[shifted["split"] == s, "x"] for s in ("train", "validation"))
    assert found.figures["shifted"] == {"x": round(abs(validation.mean() - train.mean()) / train.std(), 4)}


def test_correlation_stability_flags_a_relation_that_changed():
    assert findings(version(0.3), version(0.3, seed=1))["correlation_stability"].passed
    unrelated = version(0.3, seed=2).assign(x=np.random.default_rng(3).normal(size=200))
    found = findings(unrelated, version(0.3, seed=1), stream=True)["correlation_stability"]
    assert not found.passed
    assert found.figures["correlation_with_label"]["x"] == round(unrelated["x"].corr(unrelated["y"].astype(float)), 4)


def test_a_previous_version_without_the_label_or_a_feature_is_compared_on_what_it_has():
    found = findings(version(0.3), version(0.3, seed=1).drop(columns=["y"]))
    assert all(f.passed for f in found.values())
    assert found["correlation_stability"].figures["previous"] is None
