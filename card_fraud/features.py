"""The card-fraud feature groups: model-independent features, each a spec and a DuckDB query file."""

import datetime as dt
from pathlib import Path

import pyarrow as pa

from card_fraud.sources import CARD_PROFILES, FRAUD_REPORTS, MERCHANTS, OWNER, TIMESTAMP, TRANSACTIONS
from mlfs_dagster.core.specs import Column, FeatureGroupSpec, FeatureInput

SQL = Path(__file__).parent / "sql"
# Fraud reports arrive up to 30 days after the transaction: labels are final only after this long.
LABEL_MATURITY = dt.timedelta(days=30)
MERCHANT_RISK_WINDOW = dt.timedelta(days=28)
DAY = dt.timedelta(days=1)

CARD_TXN_WINDOWS = FeatureGroupSpec(
    name="card_txn_windows",
    description=(
        "Per transaction, the card's activity before it: counts and amount sums over the previous "
        "1 hour, 24 hours and 7 days, and the time since the card's previous transaction."
    ),
    entity_keys=("card_id",),
    columns=(
        Column("card_id", pa.string(), "Card (entity key).", ("pii",)),
        Column("event_time", TIMESTAMP, "Time of the transaction the row describes."),
        Column("transaction_id", pa.string(), "Transaction the row describes."),
        Column("txn_count_1h", pa.int64(), "Card's transactions in the hour before."),
        Column("amount_sum_1h", pa.float64(), "Card's spend in the hour before."),
        Column("txn_count_24h", pa.int64(), "Card's transactions in the 24 hours before."),
        Column("amount_sum_24h", pa.float64(), "Card's spend in the 24 hours before."),
        Column("txn_count_7d", pa.int64(), "Card's transactions in the 7 days before."),
        Column("amount_sum_7d", pa.float64(), "Card's spend in the 7 days before."),
        Column("seconds_since_previous", pa.float64(), "Seconds since the card's previous transaction, if within 7 days."),
    ),
    inputs=(FeatureInput(TRANSACTIONS, lookback=dt.timedelta(days=7)),),
    identifiers=("transaction_id",),
    sql=(SQL / "card_txn_windows.sql").read_text(),
    owner=OWNER,
    online=True,
)

CARD_DETAILS = FeatureGroupSpec(
    name="card_details",
    description="Card profiles as SCD type 2 history: one row per card per change, read with as-of joins.",
    entity_keys=("card_id",),
    columns=(
        Column("card_id", pa.string(), "Card (entity key).", ("pii",)),
        Column("event_time", TIMESTAMP, "When this version of the profile took effect."),
        Column("card_type", pa.string(), "debit, credit or prepaid."),
        Column("credit_limit", pa.float64(), "Credit limit."),
        Column("home_country", pa.string(), "Cardholder's home country.", ("pii",)),
        Column("status", pa.string(), "active or frozen."),
    ),
    inputs=(FeatureInput(CARD_PROFILES),),
    sql=(SQL / "card_details.sql").read_text(),
    owner=OWNER,
    online=True,
)

MERCHANT_RISK = FeatureGroupSpec(
    name="merchant_risk",
    description=(
        "Per merchant per day, as of the start of the day: transactions and fraud reports received over "
        "the previous 28 days. Only reports already received count, so the value never uses a label from "
        "the future."
    ),
    entity_keys=("merchant_id",),
    columns=(
        Column("merchant_id", pa.string(), "Merchant (entity key)."),
        Column("event_time", TIMESTAMP, "Start of the day the values hold for."),
        Column("merchant_category", pa.string(), "Merchant category."),
        Column("merchant_txn_count_28d", pa.int64(), "Transactions at the merchant in the 28 days before."),
        Column("merchant_fraud_reports_28d", pa.int64(), "Fraud reports received in the 28 days before."),
        Column("merchant_fraud_rate_28d", pa.float64(), "Reports received per transaction, 28 days before."),
    ),
    inputs=(
        FeatureInput(MERCHANTS, lookback=None),
        # Reports in the window can name transactions up to the label maturity older than the window.
        FeatureInput(TRANSACTIONS, lookback=MERCHANT_RISK_WINDOW + LABEL_MATURITY, lag=DAY),
        FeatureInput(FRAUD_REPORTS, lookback=MERCHANT_RISK_WINDOW, lag=DAY),
    ),
    sql=(SQL / "merchant_risk.sql").read_text(),
    owner=OWNER,
    # Complete once 28 days of transactions lie behind the day before; the longer transaction lookback only
    # finds the merchants of reported transactions.
    warm_up=MERCHANT_RISK_WINDOW + DAY,
    online=True,
)

FEATURE_GROUPS = (CARD_TXN_WINDOWS, CARD_DETAILS, MERCHANT_RISK)
