"""The card-fraud feature groups: model-independent features, each a spec and a DuckDB query."""

import pyarrow as pa

from mlfs_dagster.core.specs import Column, FeatureGroupSpec, FeatureInput
from mlfs_dagster.fraud.sources import CARD_PROFILES, FRAUD_REPORTS, MERCHANTS, OWNER, TIMESTAMP, TRANSACTIONS

# Fraud reports arrive up to 30 days after the transaction: labels are final only after this many days.
LABEL_MATURITY_DAYS = 30
MERCHANT_RISK_WINDOW_DAYS = 28


def _window(name: str, span: str) -> str:
    # Windows end just before the transaction itself: "what did this card do before this charge".
    return (
        f"{name} AS (PARTITION BY card_id ORDER BY event_time "
        f"RANGE BETWEEN INTERVAL {span} PRECEDING AND CURRENT ROW EXCLUDE CURRENT ROW)"
    )


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
    inputs=(FeatureInput(TRANSACTIONS, lookback_days=7),),
    identifiers=("transaction_id",),
    sql=f"""
        SELECT card_id, event_time, transaction_id,
            count(*) OVER w1h AS txn_count_1h,
            coalesce(sum(cents) OVER w1h, 0)::DOUBLE AS amount_sum_1h,
            count(*) OVER w24h AS txn_count_24h,
            coalesce(sum(cents) OVER w24h, 0)::DOUBLE AS amount_sum_24h,
            count(*) OVER w7d AS txn_count_7d,
            coalesce(sum(cents) OVER w7d, 0)::DOUBLE AS amount_sum_7d,
            -- Bounded by the lookback, so a daily run and a backfill see the same previous transaction.
            CASE WHEN gap <= INTERVAL 7 DAYS THEN epoch(gap) END AS seconds_since_previous
        -- Sums in exact decimals: float sums depend on the window's evaluation order, so a re-run
        -- over a different range would differ in the last bits.
        FROM (
            SELECT *, amount::DECIMAL(18, 2) AS cents,
                event_time - lag(event_time) OVER (PARTITION BY card_id ORDER BY event_time, transaction_id) AS gap
            FROM transactions
        )
        WINDOW {_window("w1h", "1 HOUR")}, {_window("w24h", "24 HOURS")}, {_window("w7d", "7 DAYS")}
    """,
    owner=OWNER,
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
    sql="SELECT card_id, event_time, card_type, credit_limit, home_country, status FROM card_profiles",
    owner=OWNER,
)

MERCHANT_RISK = FeatureGroupSpec(
    name="merchant_risk",
    description=(
        f"Per merchant per day, as of the start of the day: transactions and fraud reports received over "
        f"the previous {MERCHANT_RISK_WINDOW_DAYS} days. Only reports already received count, so the "
        "value never uses a label from the future."
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
        FeatureInput(MERCHANTS, lookback_days=None),
        FeatureInput(TRANSACTIONS, lookback_days=MERCHANT_RISK_WINDOW_DAYS + LABEL_MATURITY_DAYS, lag_days=1),
        FeatureInput(FRAUD_REPORTS, lookback_days=MERCHANT_RISK_WINDOW_DAYS, lag_days=1),
    ),
    sql=f"""
        WITH days AS (
            SELECT unnest(generate_series($start::TIMESTAMPTZ, $end::TIMESTAMPTZ - INTERVAL 1 DAY,
                                          INTERVAL 1 DAY)) AS event_time
        ),
        merchant_days AS (
            SELECT m.merchant_id, m.category, d.event_time
            FROM days d JOIN (
                -- Reference data: a merchant delivered twice keeps its first onboarding.
                SELECT * FROM merchants QUALIFY row_number() OVER (PARTITION BY merchant_id ORDER BY event_time) = 1
            ) m ON m.event_time <= d.event_time
        ),
        daily_txns AS (
            SELECT merchant_id, date_trunc('day', event_time) AS day, count(*) AS n
            FROM transactions GROUP BY ALL
        ),
        daily_reports AS (
            SELECT t.merchant_id, date_trunc('day', r.reported_at) AS day, count(*) AS n
            FROM fraud_reports r JOIN transactions t USING (transaction_id) GROUP BY ALL
        ),
        windowed AS (
            SELECT md.merchant_id, md.event_time, any_value(md.category) AS merchant_category,
                coalesce(sum(dt.n), 0) AS merchant_txn_count_28d
            FROM merchant_days md LEFT JOIN daily_txns dt
                ON dt.merchant_id = md.merchant_id
                AND dt.day >= md.event_time - INTERVAL {MERCHANT_RISK_WINDOW_DAYS} DAY AND dt.day < md.event_time
            GROUP BY md.merchant_id, md.event_time
        ),
        reported AS (
            SELECT md.merchant_id, md.event_time, coalesce(sum(dr.n), 0) AS merchant_fraud_reports_28d
            FROM merchant_days md LEFT JOIN daily_reports dr
                ON dr.merchant_id = md.merchant_id
                AND dr.day >= md.event_time - INTERVAL {MERCHANT_RISK_WINDOW_DAYS} DAY AND dr.day < md.event_time
            GROUP BY md.merchant_id, md.event_time
        )
        SELECT merchant_id, event_time, merchant_category, merchant_txn_count_28d, merchant_fraud_reports_28d,
            merchant_fraud_reports_28d / nullif(merchant_txn_count_28d, 0) AS merchant_fraud_rate_28d
        FROM windowed JOIN reported USING (merchant_id, event_time)
    """,
    owner=OWNER,
)

FEATURE_GROUPS = (CARD_TXN_WINDOWS, CARD_DETAILS, MERCHANT_RISK)
