"""The card-fraud reference system's upstream sources: what each daily landing file must hold."""

import pyarrow as pa

from mlfs_dagster.core.specs import Column, SourceSpec

TIMESTAMP = pa.timestamp("us", tz="UTC")
OWNER = "team:fraud-data"

TRANSACTIONS = SourceSpec(
    name="transactions",
    description="Card authorisations from the payment switch, one row per transaction.",
    columns=(
        Column("transaction_id", pa.string(), "Unique id of the authorisation."),
        Column("card_id", pa.string(), "Card that was charged.", ("pii",)),
        Column("merchant_id", pa.string(), "Merchant that took the payment."),
        Column("event_time", TIMESTAMP, "When the authorisation happened (UTC)."),
        Column("amount", pa.float64(), "Amount charged, in the card's currency."),
        Column("channel", pa.string(), "pos, online or atm."),
        Column("country", pa.string(), "ISO-2 country where the transaction took place."),
        Column("card_present", pa.bool_(), "Whether the physical card was read."),
    ),
    time_column="event_time",
    keys=("transaction_id",),
    owner=OWNER,
    must_arrive=True,
    required=("card_id", "merchant_id", "amount"),
)

CARD_PROFILES = SourceSpec(
    name="card_profiles",
    description="Card profile change events from the card management system; each row is a full profile.",
    columns=(
        Column("card_id", pa.string(), "Card whose profile changed.", ("pii",)),
        Column("event_time", TIMESTAMP, "When the profile took effect (UTC)."),
        Column("card_type", pa.string(), "debit, credit or prepaid."),
        Column("credit_limit", pa.float64(), "Credit limit after the change."),
        Column("home_country", pa.string(), "ISO-2 country of the cardholder's address.", ("pii",)),
        Column("status", pa.string(), "active or frozen."),
    ),
    time_column="event_time",
    keys=("card_id", "event_time"),
    owner=OWNER,
)

MERCHANTS = SourceSpec(
    name="merchants",
    description="Merchants as they are onboarded by the acquirer (reference data, never updated).",
    delivery="reference",
    columns=(
        Column("merchant_id", pa.string(), "Unique merchant id."),
        Column("event_time", TIMESTAMP, "When the merchant was onboarded (UTC)."),
        Column("name", pa.string(), "Trading name."),
        Column("category", pa.string(), "Merchant category (grocery, travel, digital_goods, ...)."),
        Column("country", pa.string(), "ISO-2 country of the merchant."),
    ),
    time_column="event_time",
    keys=("merchant_id",),
    owner=OWNER,
)

FRAUD_REPORTS = SourceSpec(
    name="fraud_reports",
    description="Confirmed fraud reports from the disputes team, arriving 1 to 30 days after the transaction.",
    columns=(
        Column("report_id", pa.string(), "Unique id of the report."),
        Column("transaction_id", pa.string(), "The transaction reported as fraud."),
        Column("reported_at", TIMESTAMP, "When the report was filed (UTC)."),
        Column("fraud_type", pa.string(), "Pattern the investigator recorded."),
    ),
    time_column="reported_at",
    keys=("report_id",),
    owner=OWNER,
    required=("transaction_id",),
)

SOURCES = (TRANSACTIONS, CARD_PROFILES, MERCHANTS, FRAUD_REPORTS)
