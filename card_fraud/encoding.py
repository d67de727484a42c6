"""The fraud model's encoder, in a module of its own: it needs scikit-learn's base classes to be defined, and
`card_fraud.model` is imported by every Dagster process, most of which never build a model.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin


class FeatureMatrix(TransformerMixin, BaseEstimator):
    """The model's float32 matrix: each categorical column's value as its position among the values seen in
    training (missing and unseen values NaN, which the classifier treats as missing), then the numbers as
    they are.

    One step instead of a ColumnTransformer of two: scoring one row online costs what these steps do per call,
    not per row. Values are compared as text, so a column of booleans in training and of objects (booleans and
    None) at serving encode alike. Each distinct value is looked up once: millions of rows hold a few dozen
    categories.
    """

    def __init__(self, categorical: tuple[str, ...] = (), numerical: tuple[str, ...] = ()):
        self.categorical, self.numerical = categorical, numerical

    def fit(self, X: pd.DataFrame, y=None):
        self.categories_ = [sorted(_distinct_text(X[column])) for column in self.categorical]
        self.positions_ = [_positions(known) for known in self.categories_]
        return self

    def transform(self, X: pd.DataFrame) -> np.ndarray:
        matrix = np.empty((len(X), len(self.categorical) + len(self.numerical)), dtype=np.float32)
        for i, (column, positions) in enumerate(zip(self.categorical, self.positions_)):
            matrix[:, i] = _codes(X[column], positions)
        if self.numerical:  # in one selection: a column at a time costs pandas' overhead per column
            matrix[:, len(self.categorical):] = X[list(self.numerical)].to_numpy(np.float32, na_value=np.nan)
        return matrix

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        return np.asarray([*self.categorical, *self.numerical], dtype=object)


class CategoryCodes(TransformerMixin, BaseEstimator):
    """The categorical half of `FeatureMatrix`, inside a ColumnTransformer: versions trained before it pickled
    this class, and still load (a champion is scored beside every candidate)."""

    def fit(self, X: pd.DataFrame, y=None):
        self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        self.categories_ = [sorted(_distinct_text(X[column])) for column in X]
        return self

    def transform(self, X: pd.DataFrame) -> np.ndarray:
        codes = np.empty(X.shape, dtype=np.float32)
        for i, (column, known) in enumerate(zip(self.feature_names_in_, self.categories_)):
            codes[:, i] = _codes(X[column], _positions(known))
        return codes

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        return self.feature_names_in_


def _distinct_text(values: pd.Series) -> list[str]:
    return [str(value) for value in pd.unique(values.dropna())]


def _positions(known: list[str]) -> dict[str, float]:
    return {text: float(i) for i, text in enumerate(known)}


FEW_ROWS = 256  # up to this many rows (a request's), each row is looked up: factorizing costs more per call


def _codes(values: pd.Series, positions: dict[str, float]) -> np.ndarray:
    if len(values) <= FEW_ROWS:
        return np.array([np.nan if pd.isna(value) else positions.get(str(value), np.nan) for value in values],
                        dtype=np.float32)
    rows, distinct = pd.factorize(values)  # missing values get -1, which picks the NaN appended last
    return np.array([*(positions.get(str(value), np.nan) for value in distinct), np.nan], dtype=np.float32)[rows]
