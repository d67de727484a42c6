"""The fraud model's estimators, in a module of their own: they need scikit-learn's and LightGBM's classes to
be defined, and `card_fraud.model` is imported by every Dagster process, most of which never build a model.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from lightgbm import LGBMClassifier
from sklearn.base import BaseEstimator, TransformerMixin


# Without scikit-learn's output wrapper (auto_wrap_output_keys=None): the matrix goes to the classifier as it is,
# and the wrapper's configuration lookups cost a request more than its encoding.
class FeatureMatrix(TransformerMixin, BaseEstimator, auto_wrap_output_keys=None):
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
        if len(X) <= FEW_ROWS:
            return self._rows(X)
        matrix = np.empty((len(X), len(self.categorical) + len(self.numerical)), dtype=np.float32)
        for i, (column, positions) in enumerate(zip(self.categorical, self.positions_)):
            matrix[:, i] = _codes(X[column], positions)
        for i, column in enumerate(self.numerical, start=len(self.categorical)):  # a column at a time: no copy of all
            matrix[:, i] = X[column].to_numpy(np.float32, na_value=np.nan)
        return matrix

    def _rows(self, X: pd.DataFrame) -> np.ndarray:
        """A request's few rows, each value looked up: through one object matrix, as selecting each column
        from the frame costs pandas more than encoding the row does."""
        values = X.to_numpy(dtype=object)
        categorical = X.columns.get_indexer(self.categorical)
        codes = [[np.nan if pd.isna(value) else positions.get(str(value), np.nan) for value in values[:, column]]
                 for column, positions in zip(categorical, self.positions_)]
        numbers = values[:, X.columns.get_indexer(self.numerical)].astype(np.float32)  # None becomes NaN
        return np.hstack((np.array(codes, np.float32).reshape(len(categorical), len(X)).T, numbers))

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        return np.asarray([*self.categorical, *self.numerical], dtype=object)


class BoosterClassifier(LGBMClassifier):
    """LightGBM's classifier, whose probabilities for an encoded matrix come from its fitted booster directly:
    the scikit-learn wrapper re-derives all its parameters on every call, about 0.5 ms, more than ten times what
    the trees take for a request's row. Fitting and all else are LightGBM's own."""

    def predict_proba(self, X, **kwargs) -> np.ndarray:
        if kwargs or not isinstance(X, np.ndarray) or self.n_classes_ != 2:
            return super().predict_proba(X, **kwargs)
        positive = self.booster_.predict(X, num_threads=self.n_jobs or 0)  # 0: LightGBM's default, as the wrapper
        return np.column_stack((1.0 - positive, positive))


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
    """Each distinct value looked up once; missing values' -1 picks the NaN appended last."""
    rows, distinct = pd.factorize(values)
    return np.array([*(positions.get(str(value), np.nan) for value in distinct), np.nan], dtype=np.float32)[rows]
