"""The card-fraud reference system, declared through the public API only: sources, feature groups, the
fraud feature view (training dataset) and the fraud model with its gates."""

import datetime as dt
from pathlib import Path

from card_fraud.features import CARD_DETAILS, CARD_TXN_WINDOWS, FEATURE_GROUPS, LABEL_MATURITY, MERCHANT_RISK
from card_fraud.model import FEATURES, build_pipeline, on_demand_features
from card_fraud.simulator import recorded_config
from card_fraud.sources import FRAUD_REPORTS, OWNER, SOURCES, TRANSACTIONS
from mlfs_dagster.core.specs import FeatureSelection, FeatureViewSpec, Gate, Label, ModelSpec, Split, System
from mlfs_dagster.settings import Settings

ML_OWNER = "team:fraud-ml"


def history_start() -> dt.date:
    """The simulator's first day in the landing zone (`mlfs demo` writes it), where the partitions start."""
    recorded = recorded_config(Path(Settings.from_env().landing))
    return recorded.start_date if recorded else dt.date(2026, 1, 1)


START = history_start()

FRAUD_VIEW = FeatureViewSpec(
    name="fraud",
    description="Transaction features for fraud scoring: card activity, card profile, merchant risk.",
    spine=TRANSACTIONS,
    spine_keys=("transaction_id",),
    spine_columns=("transaction_id", "card_id", "merchant_id", "event_time", "amount", "channel", "country",
                   "card_present"),
    label=Label("is_fraud", kind="binary", source=FRAUD_REPORTS, on=("transaction_id",), maturity=LABEL_MATURITY),
    selections=(
        FeatureSelection(CARD_TXN_WINDOWS, ttl=dt.timedelta(days=7)),
        FeatureSelection(CARD_DETAILS),
        FeatureSelection(MERCHANT_RISK, ttl=dt.timedelta(days=2)),
    ),
    on_demand=on_demand_features,
    on_demand_columns=("amount_to_mean_7d", "is_foreign"),
    split=Split(validation_fraction=0.2),
    owner=OWNER,
)

FRAUD_MODEL = ModelSpec(
    name="fraud_model",
    description=(
        "Gradient-boosted fraud classifier: its category encoder inside the scikit-learn pipeline, trained on "
        "the training set's train split, evaluated on the later validation split from probabilities."
    ),
    feature_view=FRAUD_VIEW,
    features=FEATURES,
    pipeline=build_pipeline,
    gates=(Gate("pr_auc", minimum=0.3, champion_tolerance=0.05), Gate("roc_auc", minimum=0.85, champion_tolerance=0.02)),
    alert_threshold=0.5,
    owner=ML_OWNER,
)

SYSTEM = System(
    name="card_fraud",
    description="Card-payment fraud detection: the reference system, fed by the simulator.",
    start=START,
    owners=(OWNER, ML_OWNER),
    sources=SOURCES,
    feature_groups=FEATURE_GROUPS,
    feature_views=(FRAUD_VIEW,),
    models=(FRAUD_MODEL,),
    automation_on=True,  # the simulator lands a new day each night (card_fraud.definitions); Dagster takes it on
)
# The system's own (bound) specs: table names and registered model names carry the system's namespace.
FRAUD_VIEW, FRAUD_MODEL = SYSTEM.feature_view("fraud"), SYSTEM.model("fraud_model")
