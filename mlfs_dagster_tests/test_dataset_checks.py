"""The ML checks of a training-set version on small hand-made frames whose answers are known."""

import numpy as np
import pandas as pd

from mlfs_dagster.core.dataset_checks import (
    correlation_stability,
    label_balance,
    null_rates,
    train_validation_shift,
)


def version(positive_share: float, rows: int = 200, seed: int = 0, x_shift: float = 0.0, x_missing: float = 0.0):
    rng = np.random.default_rng(seed)
    label = rng.random(rows) < positive_share
    x = rng.normal(size=rows) + 2 * label
    x[rng.random(rows) < x_missing] = np.nan
    split = np.where(np.arange(rows) < rows * 0.8, "train", "validation")
    x = np.where(split == "validation", x + x_shift, x)
    return pd.DataFrame({"x": x, "y": label, "split": split})


def test_label_balance_blocks_a_moved_share_and_a_split_with_one_class():
    assert label_balance(version(0.3), version(0.3, seed=1), "y", "binary").passed
    moved = label_balance(version(0.6), version(0.2, seed=1), "y", "binary")
    assert not moved.passed and "positive share moved from" in moved.figures["problems"][0]
    one_class = version(0.3)
    one_class.loc[one_class["split"] == "validation", "y"] = False
    assert "the validation split holds a single class" in label_balance(one_class, None, "y", "binary").figures["problems"]


def test_null_rates_flag_a_feature_that_went_missing():
    assert null_rates(version(0.3), version(0.3, seed=1), ["x"]).passed
    found = null_rates(version(0.3, x_missing=0.4), version(0.3, seed=1), ["x"])
    assert not found.passed and "x" in found.figures["too_often_missing"]


def test_train_validation_shift_names_the_shifted_feature():
    assert train_validation_shift(version(0.3), ["x"]).passed
    assert "x" in train_validation_shift(version(0.3, x_shift=3.0), ["x"]).figures["shifted"]


def test_correlation_stability_flags_a_relation_that_changed():
    assert correlation_stability(version(0.3), version(0.3, seed=1), "y", ["x"]).passed
    unrelated = version(0.3, seed=2).assign(x=np.random.default_rng(3).normal(size=200))
    assert not correlation_stability(unrelated, version(0.3, seed=1), "y", ["x"]).passed
