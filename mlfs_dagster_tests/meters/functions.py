"""The meters system's Python: an on-demand feature and the regression pipeline factory."""

import pyarrow as pa
import pyarrow.compute as pc


def hour_of_day(vectors: pa.Table) -> pa.Table:
    """Request-time feature: the hour the reading is for, known only from the request itself."""
    return vectors.append_column("hour_of_day", pc.hour(vectors["event_time"]).cast(pa.int64()))


def demand_pipeline(seed: int):
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    preprocess = ColumnTransformer([
        ("numbers", SimpleImputer(strategy="median"), ["temperature", "kwh_mean_24h", "previous_kwh",
                                                       "capacity_kw", "hour_of_day"]),
        ("categories", Pipeline([("impute", SimpleImputer(strategy="constant", fill_value="missing")),
                                 ("encode", OneHotEncoder(handle_unknown="ignore"))]), ["climate"]),
    ])
    return Pipeline([("preprocess", preprocess),
                     ("regress", HistGradientBoostingRegressor(max_iter=100, random_state=seed))])
