"""The fraud model's categorical encoder, in a module of its own: it needs scikit-learn's base classes to be
defined, and `card_fraud.model` is imported by every Dagster process, most of which never build a model.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin


class CategoryCodes(TransformerMixin, BaseEstimator):
    """Each column's value as its position among the values seen in training (float32); missing and unseen
    values become NaN, which the classifier's native categorical support treats as missing.

    Values are compared as text, so a column of booleans in training and of objects (booleans and None) at
    serving encode alike. scikit-learn's OrdinalEncoder looks each row up in a Python dict; here each distinct
    value is looked up once, as millions of rows hold a few dozen categories.
    """

    def fit(self, X: pd.DataFrame, y=None):
        self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        self.categories_ = [sorted(_distinct_text(X[column])) for column in X]
        return self

    def transform(self, X: pd.DataFrame) -> np.ndarray:
        codes = np.empty(X.shape, dtype=np.float32)
        for i, (column, known) in enumerate(zip(self.feature_names_in_, self.categories_)):
            codes[:, i] = _codes(X[column], known)
        return codes

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        return self.feature_names_in_


def _distinct_text(values: pd.Series) -> list[str]:
    return [str(value) for value in pd.unique(values.dropna())]


def _codes(values: pd.Series, known: list[str]) -> np.ndarray:
    rows, distinct = pd.factorize(values)  # missing values get -1, which picks the NaN appended last
    position = {text: float(i) for i, text in enumerate(known)}
    return np.array([*(position.get(str(value), np.nan) for value in distinct), np.nan], dtype=np.float32)[rows]
