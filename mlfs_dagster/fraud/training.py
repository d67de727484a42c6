"""The fraud training set: mature labelled transactions, joined point-in-time to the feature groups."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from mlfs_dagster.core.offline_store import OfflineStore, TimeRange
from mlfs_dagster.core.training import SPLIT, label_cutoff, time_split
from mlfs_dagster.fraud.features import LABEL_MATURITY_DAYS
from mlfs_dagster.fraud.model import FRAUD_VIEW, LABEL, TRANSACTION_COLUMNS
from mlfs_dagster.fraud.sources import FRAUD_REPORTS, TRANSACTIONS

TABLE = "training.fraud_training_set"


@dataclass(frozen=True)
class TrainingSet:
    data: pa.Table
    as_of: dt.datetime
    first_event: dt.datetime
    label_cutoff: dt.datetime
    input_snapshots: dict[str, int]


def input_tables() -> tuple[str, ...]:
    return (TRANSACTIONS.table, FRAUD_REPORTS.table, *FRAUD_VIEW.tables)


def build_training_set(
    store: OfflineStore,
    as_of: dt.datetime,
    features_complete_from: dt.datetime,
    validation_fraction: float = 0.2,
    snapshots: dict[str, int] | None = None,
) -> TrainingSet:
    """Transactions from `features_complete_from` until their labels are final as of `as_of`.

    A transaction is fraud when a report about it was received before `as_of`. Passing the
    `snapshots` of an earlier version rebuilds that version exactly.
    """
    snapshots = snapshots or {table: store.snapshot_id(table) for table in input_tables()}
    cutoff = label_cutoff(as_of, LABEL_MATURITY_DAYS)
    if cutoff <= features_complete_from:
        raise ValueError(
            f"no transaction has a final label yet: labels mature {LABEL_MATURITY_DAYS} days after the "
            f"transaction, so data as of {as_of:%Y-%m-%d} only labels transactions before {cutoff:%Y-%m-%d}, "
            f"and features are complete from {features_complete_from:%Y-%m-%d}"
        )
    window = TimeRange(features_complete_from, cutoff)
    spine = store.read(TRANSACTIONS.table, TRANSACTION_COLUMNS, window.filter(TRANSACTIONS.time_column),
                       snapshots[TRANSACTIONS.table])
    reports = store.read(FRAUD_REPORTS.table, ("transaction_id",),
                         TimeRange(features_complete_from, as_of).filter(FRAUD_REPORTS.time_column),
                         snapshots[FRAUD_REPORTS.table])
    labelled = spine.append_column(LABEL, pc.is_in(spine["transaction_id"], reports["transaction_id"]))
    # A fixed row order: the learner's own validation split depends on it, so the same version and seed
    # must always see the rows the same way, however the raw files happen to be laid out.
    vectors = FRAUD_VIEW.vectors(store, labelled, snapshots=snapshots).sort_by(
        [("event_time", "ascending"), ("transaction_id", "ascending")]
    )
    vectors = vectors.append_column(SPLIT, time_split(vectors["event_time"], validation_fraction))
    return TrainingSet(vectors, as_of, features_complete_from, cutoff, snapshots)
