"""A deterministic simulator of the upstream systems of a card-fraud business.

It plays four source systems and writes one Parquet file per source and day into a landing zone::

    <landing>/transactions/date=YYYY-MM-DD/part-0.parquet    card payments
    <landing>/card_profiles/date=YYYY-MM-DD/part-0.parquet   SCD type 2 change events, a full profile per row
    <landing>/merchants/date=YYYY-MM-DD/part-0.parquet       SCD type 0 reference rows, written at onboarding
    <landing>/fraud_reports/date=YYYY-MM-DD/part-0.parquet   fraud reports, 1 to 30 days after the fraud
    <landing>/_ground_truth/drift.json, fraud.parquet        what was injected, so detection can be scored
    <landing>/_ground_truth/simulation.json                  the whole config, which `extend` carries on

Fraud comes as patterns: card-testing bursts (some short, some without small test charges), impossible travel,
misuse that looks like the holder's own spending and, after a concept change, counterfeit cards used like
ordinary ones. Legitimate behaviour that resembles fraud keeps the problem honest: holders travel abroad (their
in-person purchases follow them, with a flight between home and abroad) and go on online shopping sprees.
Drift is injected on request from a given date on, for good or until an end date.

Determinism: the random numbers of each day come from generators seeded by (seed, stream, day index), so the
same config gives byte-identical files, and a drift starting on some date leaves every earlier file unchanged.
It also lets `extend` add days to a landing zone, daily say, writing the files a longer run would have written
and leaving the existing ones alone.
"""

from __future__ import annotations

import argparse
import datetime
import enum
import json
import math
import shutil
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from card_fraud import sources
from card_fraud.sources import TIMESTAMP

SOURCES = ("transactions", "card_profiles", "merchants", "fraud_reports")
GROUND_TRUTH_FOLDER = "_ground_truth"
CONFIG_FILE = "simulation.json"  # in the ground truth folder


def _probabilities(shares: dict[str, float]) -> np.ndarray:
    weights = np.array(list(shares.values()))
    return weights / weights.sum()


# --- Vocabularies. Columns hold codes (indices into these tuples) until a table is written. -----------------

CHANNELS = ("pos", "online", "atm")
POS, ONLINE, ATM = range(len(CHANNELS))

CARD_TYPES = ("prepaid", "debit", "credit")  # ordered: an upgrade moves one step to the right
CREDIT = CARD_TYPES.index("credit")
CARD_STATUSES = ("active", "frozen")

FRAUD_TYPES = ("card_testing_burst", "impossible_travel", "counterfeit_card", "ordinary_looking")
LEGITIMATE, CARD_TESTING_BURST, IMPOSSIBLE_TRAVEL, COUNTERFEIT_CARD, ORDINARY_LOOKING = -1, 0, 1, 2, 3

_MERCHANT_COUNTRY_SHARES = {
    "US": 0.59,
    "GB": 0.05,
    "DE": 0.04,
    "FR": 0.04,
    "ES": 0.03,
    "IT": 0.03,
    "NL": 0.02,
    "CA": 0.04,
    "MX": 0.03,
    "BR": 0.02,
    "JP": 0.02,
    "AU": 0.02,
    "IN": 0.02,
    "NG": 0.015,
    "RU": 0.015,
    "CN": 0.02,
}
NEW_COUNTRIES = ("PL", "TR", "VN", "PH")  # never seen unless a country drift brings them in
COUNTRIES = (*_MERCHANT_COUNTRY_SHARES, *NEW_COUNTRIES)
_COUNTRY_CODE = {name: code for code, name in enumerate(COUNTRIES)}
_MERCHANT_COUNTRY_P = _probabilities(_MERCHANT_COUNTRY_SHARES)
_NEW_COUNTRY_CODES = np.array([_COUNTRY_CODE[c] for c in NEW_COUNTRIES])

# Cardholders live in these countries; the fraud hotspots are never home, so travel there is always far.
_HOME_COUNTRY_SHARES = {
    "US": 0.72,
    "GB": 0.06,
    "DE": 0.04,
    "FR": 0.04,
    "CA": 0.04,
    "MX": 0.02,
    "ES": 0.02,
    "IT": 0.02,
    "NL": 0.01,
    "JP": 0.01,
    "AU": 0.01,
    "IN": 0.01,
}
_HOME_CODES = np.array([_COUNTRY_CODE[c] for c in _HOME_COUNTRY_SHARES])
_HOME_P = _probabilities(_HOME_COUNTRY_SHARES)
_HOME_POSITION = np.full(len(COUNTRIES), -1)
_HOME_POSITION[_HOME_CODES] = np.arange(len(_HOME_CODES))
_HOTSPOT_CODES = np.array([_COUNTRY_CODE[c] for c in ("NG", "RU", "CN", "BR")])

_CATEGORY_TABLE = {  # category: (share of merchants, amount scale, word in the merchant's name)
    "grocery": (0.24, 1.0, "Market"),
    "electronics": (0.08, 4.0, "Electronics"),
    "travel": (0.06, 6.0, "Travel"),
    "restaurants": (0.20, 0.9, "Kitchen"),
    "fuel": (0.12, 1.3, "Fuel"),
    "fashion": (0.12, 2.0, "Boutique"),
    "digital_goods": (0.12, 0.4, "Digital"),
    "gambling": (0.06, 1.5, "Casino"),
}
MERCHANT_CATEGORIES = tuple(_CATEGORY_TABLE)
_CATEGORY_P = np.array([share for share, _, _ in _CATEGORY_TABLE.values()])
_CATEGORY_AMOUNT_SCALE = np.array([scale for _, scale, _ in _CATEGORY_TABLE.values()])
_CATEGORY_NOUN = [noun for _, _, noun in _CATEGORY_TABLE.values()]
GROCERY, ELECTRONICS, TRAVEL, FUEL, DIGITAL_GOODS = (
    MERCHANT_CATEGORIES.index(c) for c in ("grocery", "electronics", "travel", "fuel", "digital_goods")
)
_IN_PERSON_CATEGORIES = np.array(
    [MERCHANT_CATEGORIES.index(c) for c in ("grocery", "restaurants", "fuel", "fashion")]
)
_NAME_FIRST = ("Blue", "Golden", "North", "Silver", "Green", "Royal", "Urban", "Sunny", "Prime", "Metro")
_NAME_SECOND = ("Oak", "River", "Star", "Harbor", "Peak", "Lane", "Bridge", "Field", "Stone", "Bay")

# --- Schemas of the written files. --------------------------------------------------------------------------

# The landing contract each file must meet is the source spec's: one declaration, shared with ingestion.
SCHEMAS = {spec.name: spec.schema for spec in sources.SOURCES}
GROUND_TRUTH_SCHEMA = pa.schema(
    [("transaction_id", pa.string()), ("is_fraud", pa.bool_()), ("fraud_type", pa.string())]
)

# --- Behaviour. ---------------------------------------------------------------------------------------------

MINUTE_US = 60 * 1_000_000
HOUR_US = 60 * MINUTE_US
DAY_US = 24 * HOUR_US
_EPOCH = datetime.date(1970, 1, 1)
_TRANSACTION_DIGITS = 10

_ABROAD_SHARE = 0.08  # everyday purchases at foreign merchants: online, as in person they need a trip
_INITIAL_FROZEN_SHARE = 0.01
_PROFILE_CHANGE_RATE = 0.002  # share of cards with a profile change event per day
_CHANGE_KIND_P = np.array([0.5, 0.2, 0.1, 0.2])  # limit change, upgrade, home move, freeze/unfreeze
_LIMIT_CHANGE, _UPGRADE, _HOME_MOVE, _STATUS_TOGGLE = range(len(_CHANGE_KIND_P))
_CARD_TYPE_P = np.array([0.10, 0.55, 0.35])
_BASE_CREDIT_LIMIT = np.array([500.0, 2_000.0, 6_000.0])
_INITIAL_MERCHANT_SHARE = 0.9
# Late merchants onboard within this many days whatever `days` is, so a short run is a prefix of a long one.
_ONBOARDING_HORIZON_DAYS = 60
# Relative purchase volume per UTC hour: quiet at night, busiest in the evening.
_HOUR_WEIGHTS = np.array(
    [1, 0.6, 0.4, 0.3, 0.3, 0.5, 1.2, 2.5, 4, 5, 5.5, 6, 6.5, 6, 5.5, 5.5, 6, 6.5, 7, 6.5, 5, 4, 3, 2]
)
_HOUR_P = _HOUR_WEIGHTS / _HOUR_WEIGHTS.sum()
# Fraud. Sizes are transactions per incident, inclusive bounds.
_BURST_SIZE = (3, 8)
_TWO_STEP_BURST_SHARE = 0.25  # bursts of one test and one large charge
_UNTESTED_BURST_SHARE = 0.3  # bursts that skip the small test charges
_TRAVEL_SIZE = (1, 3)
_TRAVEL_FRAUD_AT_HOTSPOT = 0.6  # the other clones are used where legitimate travellers go too
_ORDINARY_LOOKING_SIZE = (1, 3)
_COUNTERFEIT_SIZE = (1, 3)
# Shares of the fraud transactions, before a concept change: bursts, impossible travel, ordinary-looking.
_PATTERN_SHARES = (0.4, 0.4, 0.2)

# Legitimate travel. A card may start a trip only on its own day of a cycle, and every trip is over before
# its cycle ends: a card's trips never overlap, and a day finds its travellers by looking one cycle back.
_TRIP_CYCLE_DAYS = 10
_TRIP_CHANCE = 0.06  # a card's chance of starting a trip on its day of the cycle: ~2 % of holders are abroad
_TRIP_NIGHTS = (2, 8)
_FLIGHT_HOURS = (2, 12)
_TRIP_PURCHASES_PER_DAY = 1.5  # in person abroad, besides the holder's everyday purchases that follow them
_CASH_ABROAD_SHARE = 0.2
_CASH_ABROAD_DAYS = 4  # cash drawn abroad lasts this many days of spending

# Legitimate online sprees: small app purchases, then something big, all within an hour.
_SPREE_RATE = 0.001  # sprees a day per card
_SPREE_SIZE = (3, 6)


class _Stream(enum.IntEnum):
    """Independent random streams: changing one concern (say a drift) leaves the draws of the others alone."""

    POPULATION = 0
    PROFILE_CHANGES = 1
    PURCHASES = 2
    FRAUD = 3
    REPORTS = 4
    DRIFT = 5
    TRIPS = 6  # who travels where and when, keyed by the day a trip starts
    TRIP_PURCHASES = 7  # the day's purchases of travellers, and where their card-present purchases happen
    SPREES = 8


def _rng(seed: int, stream: _Stream, day: int, *extra: int) -> np.random.Generator:
    return np.random.default_rng([seed, int(stream), day, *extra])


# --- Public configuration. ----------------------------------------------------------------------------------

TRANSACTION_COLUMNS = frozenset(SCHEMAS["transactions"].names)
DRIFT_COLUMNS = {  # kind: the transaction columns it can act on
    "mean_shift": frozenset({"amount"}),
    "category_mix": frozenset({"channel", "country"}),
    "concept_change": TRANSACTION_COLUMNS,  # optional: the columns the new fraud pattern shows in
}


@dataclass(frozen=True)
class DriftSpec:
    """A drift injected into the transactions from `start` on, up to `end` (exclusive) or for good if None.

    mean_shift on amount: legitimate amounts are multiplied by 1 + strength.
    category_mix on channel: the online share of ordinary purchases rises by 40 points x strength;
    on country: a share of ordinary purchases, growing over a week to 30 % x strength, moves to countries
    never seen before.
    concept_change: a share min(1, strength) of fraud becomes counterfeit cards used like ordinary cards.
    From `end` on, the drift stops at once: a country mix does not ramp down, fraud takes its old patterns.
    """

    start: datetime.date
    kind: str
    columns: tuple[str, ...]
    strength: float = 1.0
    end: datetime.date | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "columns", tuple(self.columns))
        if not isinstance(self.start, datetime.date):
            raise ValueError(f"drift start must be a date, got {self.start!r}")
        if self.end is not None and not (isinstance(self.end, datetime.date) and self.end > self.start):
            raise ValueError(f"drift end must be a date after its start {self.start}, got {self.end!r}")
        if self.kind not in DRIFT_COLUMNS:
            raise ValueError(f"unknown drift kind {self.kind!r}; expected one of {sorted(DRIFT_COLUMNS)}")
        allowed = DRIFT_COLUMNS[self.kind]
        unknown = [c for c in self.columns if c not in allowed]
        if unknown:
            raise ValueError(
                f"drift kind {self.kind!r} cannot act on {unknown}; allowed columns: {sorted(allowed)}"
            )
        if not self.columns and self.kind != "concept_change":
            raise ValueError(f"drift kind {self.kind!r} needs at least one column, one of {sorted(allowed)}")
        if not (math.isfinite(self.strength) and self.strength > 0):
            raise ValueError(f"drift strength must be a positive number, got {self.strength!r}")
        object.__setattr__(self, "strength", float(self.strength))  # recorded as 2.0 when given as 2

    def in_effect_on(self, date: datetime.date) -> bool:
        return self.start <= date and (self.end is None or date < self.end)

    @classmethod
    def parse(cls, text: str) -> DriftSpec:
        """Parse `START[..END]:KIND:COLUMNS[:STRENGTH]`, e.g. `2026-02-14:mean_shift:amount:1.5`, or
        `2026-02-14..2026-02-21:concept_change:-` for a drift that ends before END.

        COLUMNS is comma-separated; `-` or nothing means no columns (for concept_change).
        """
        parts = text.strip().split(":")
        if len(parts) not in (3, 4):
            raise ValueError(
                f"drift {text!r}: expected START[..END]:KIND:COLUMNS[:STRENGTH], "
                "e.g. 2026-02-14:mean_shift:amount"
            )
        dates_text, kind, columns_text, *strength_text = (part.strip() for part in parts)

        def date(name: str, value: str) -> datetime.date:
            try:
                return datetime.date.fromisoformat(value)
            except ValueError:
                raise ValueError(f"drift {text!r}: {name} {value!r} is not a date (YYYY-MM-DD)") from None

        start_text, has_end, end_text = dates_text.partition("..")
        start = date("start", start_text)
        end = date("end", end_text) if has_end else None
        try:
            strength = float(strength_text[0]) if strength_text else 1.0
        except ValueError:
            raise ValueError(f"drift {text!r}: strength {strength_text[0]!r} is not a number") from None
        columns = () if columns_text in ("", "-") else tuple(c.strip() for c in columns_text.split(","))
        try:
            return cls(start=start, kind=kind, columns=columns, strength=strength, end=end)
        except ValueError as error:
            raise ValueError(f"drift {text!r}: {error}") from None


@dataclass(frozen=True)
class SimulationConfig:
    start_date: datetime.date = datetime.date(2026, 1, 1)
    days: int = 60
    cards: int = 2_000
    merchants: int = 300
    transactions_per_day: int = 4_000
    fraud_rate: float = 0.004  # share of transactions that are fraud (approximately)
    seed: int = 7
    drifts: tuple[DriftSpec, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "drifts", tuple(self.drifts))
        for name in ("days", "cards", "merchants", "transactions_per_day"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 0 <= self.fraud_rate <= 0.5:
            raise ValueError(f"fraud_rate must be between 0 and 0.5, got {self.fraud_rate}")
        if self.seed < 0:
            raise ValueError(f"seed must not be negative, got {self.seed}")
        for drift in self.drifts:
            if not isinstance(drift, DriftSpec):
                raise ValueError(f"drifts must be DriftSpec values, got {drift!r}")


@dataclass(frozen=True)
class SimulationResult:
    files: dict[str, list[Path]]  # source -> files written, in day order
    rows: dict[str, int]  # source -> rows written
    fraud_transactions: int


# --- The simulated world. -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _CardTraits:
    """What never changes about a card: its id and its holder's habits."""

    ids: pa.Array
    activity: np.ndarray  # relative purchase frequency
    spend_level: np.ndarray  # typical amount of a grocery purchase
    channel_cdf: np.ndarray  # (cards, 2): cumulative preference for pos, then online; the rest is atm


@dataclass
class _CardProfiles:
    """The current SCD type 2 profile of every card; change events update it in place."""

    card_type: np.ndarray
    credit_limit: np.ndarray
    home_country: np.ndarray
    frozen: np.ndarray

    def spending_cards(self) -> np.ndarray:
        """Cards that can pay: frozen ones cannot, unless all are (a day always has transactions)."""
        active = np.flatnonzero(~self.frozen)
        return active if len(active) else np.arange(len(self.frozen))


@dataclass(frozen=True)
class _Merchants:
    ids: pa.Array
    names: pa.Array
    category: np.ndarray
    country: np.ndarray
    onboarding_day: np.ndarray  # day index; 0 for the initial set
    onboarded_at: np.ndarray  # microseconds since the epoch

    @property
    def trading_from(self) -> np.ndarray:
        """First day a merchant takes payments: the initial set at once, the others after onboarding day."""
        return self.onboarding_day + (self.onboarding_day > 0)


@dataclass
class _World:
    """Everything the day generators draw on."""

    cards: _CardTraits
    merchants: _Merchants
    profiles: _CardProfiles


def _create_world(config: SimulationConfig) -> _World:
    rng = _rng(config.seed, _Stream.POPULATION, 0)
    count = config.cards
    card_type = rng.choice(len(CARD_TYPES), size=count, p=_CARD_TYPE_P)
    profiles = _CardProfiles(
        card_type=card_type,
        credit_limit=_round_limit(_BASE_CREDIT_LIMIT[card_type] * rng.lognormal(0.0, 0.4, count)),
        home_country=rng.choice(_HOME_CODES, size=count, p=_HOME_P),
        frozen=rng.random(count) < _INITIAL_FROZEN_SHARE,
    )
    channel_share = rng.dirichlet((6.0, 3.0, 1.0), size=count)
    cards = _CardTraits(
        ids=_ids("c", np.arange(count), max(6, len(str(count - 1)))),
        activity=rng.gamma(2.0, size=count),
        spend_level=rng.lognormal(math.log(35.0), 0.5, count),
        channel_cdf=np.cumsum(channel_share[:, :2], axis=1),
    )
    return _World(cards=cards, merchants=_create_merchants(rng, config), profiles=profiles)


def _create_merchants(rng: np.random.Generator, config: SimulationConfig) -> _Merchants:
    count = config.merchants
    category = rng.choice(len(MERCHANT_CATEGORIES), size=count, p=_CATEGORY_P)
    country = rng.choice(len(_MERCHANT_COUNTRY_P), size=count, p=_MERCHANT_COUNTRY_P)
    # The first merchants cover every country and category, so each fraud pattern finds a merchant to use.
    covered = min(count, len(_MERCHANT_COUNTRY_P))
    country[:covered] = np.arange(covered)
    category[:covered] = np.arange(covered) % len(MERCHANT_CATEGORIES)
    initial = max(1, round(_INITIAL_MERCHANT_SHARE * count))
    onboarding_day = np.zeros(count, dtype=np.int64)
    onboarding_day[initial:] = rng.integers(1, _ONBOARDING_HORIZON_DAYS, size=count - initial)
    time_of_day = np.where(onboarding_day > 0, rng.integers(0, DAY_US, size=count), 0)
    first, second = rng.integers(len(_NAME_FIRST), size=count), rng.integers(len(_NAME_SECOND), size=count)
    names = [
        f"{_NAME_FIRST[a]} {_NAME_SECOND[b]} {_CATEGORY_NOUN[c]}"
        for a, b, c in zip(first.tolist(), second.tolist(), category.tolist(), strict=True)
    ]
    return _Merchants(
        ids=_ids("m", np.arange(count), max(4, len(str(count - 1)))),
        names=pa.array(names, pa.string()),
        category=category,
        country=country,
        onboarding_day=onboarding_day,
        onboarded_at=_day_start_us(config.start_date) + onboarding_day * DAY_US + time_of_day,
    )


class _Pool:
    """Merchants grouped by an integer key, to draw one merchant per requested key in one vectorised step."""

    def __init__(self, merchants: np.ndarray, keys: np.ndarray, key_count: int):
        self._members = merchants[np.argsort(keys, kind="stable")]
        self._counts = np.bincount(keys, minlength=key_count)
        self._starts = np.cumsum(self._counts) - self._counts

    def draw(self, rng: np.random.Generator, keys: np.ndarray) -> np.ndarray:
        """A random merchant for each key; -1 where the key has no merchant."""
        counts = self._counts[keys]
        slot = self._starts[keys] + (rng.random(len(keys)) * counts).astype(np.int64)
        return np.where(counts > 0, self._members[np.minimum(slot, len(self._members) - 1)], -1)


class _MerchantPools:
    """The merchants trading on one day, grouped the ways the generators look them up, each with fallbacks."""

    def __init__(self, merchants: _Merchants, day: int):
        trading = np.flatnonzero(merchants.trading_from <= day)
        country, category = merchants.country[trading], merchants.category[trading]
        self._anywhere = _Pool(trading, np.zeros_like(trading), 1)
        self._by_country = _Pool(trading, country, len(COUNTRIES))
        self._by_category = _Pool(trading, category, len(MERCHANT_CATEGORIES))
        self._by_both = _Pool(
            trading, _country_category_key(country, category), len(COUNTRIES) * len(MERCHANT_CATEGORIES)
        )

    def anywhere(self, rng: np.random.Generator, count: int) -> np.ndarray:
        return self._anywhere.draw(rng, np.zeros(count, dtype=np.int64))

    def in_country(self, rng: np.random.Generator, country: np.ndarray) -> np.ndarray:
        return _first_found(self._by_country.draw(rng, country), self.anywhere(rng, len(country)))

    def in_category(self, rng: np.random.Generator, category: np.ndarray) -> np.ndarray:
        return _first_found(self._by_category.draw(rng, category), self.anywhere(rng, len(category)))

    def in_country_and_category(
        self, rng: np.random.Generator, country: np.ndarray, category: np.ndarray
    ) -> np.ndarray:
        found = self._by_both.draw(rng, _country_category_key(country, category))
        return _first_found(found, self.in_country(rng, country))


def _country_category_key(country: np.ndarray, category: np.ndarray) -> np.ndarray:
    return country * len(MERCHANT_CATEGORIES) + category


def _first_found(found: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    return np.where(found >= 0, found, fallback)


# --- Transactions of one day. -------------------------------------------------------------------------------


class _Rows:
    """A batch of rows held as equally long numpy arrays, one per dataclass field."""

    def __len__(self) -> int:
        return len(getattr(self, fields(self)[0].name))

    def take(self, index: np.ndarray):
        return type(self)(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    @classmethod
    def empty(cls):
        return cls(**{f.name: np.zeros(0, dtype=np.int64) for f in fields(cls)})

    @classmethod
    def concat(cls, parts: list):
        return cls(**{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(cls)})


@dataclass
class _Transactions(_Rows):
    card: np.ndarray
    merchant: np.ndarray
    offset_us: np.ndarray  # time since the start of the day, so it stays inside the day
    amount: np.ndarray
    channel: np.ndarray
    country: np.ndarray
    fraud_type: np.ndarray  # index into FRAUD_TYPES, LEGITIMATE (-1) otherwise
    ordinary: np.ndarray  # an ordinary purchase, not part of a fraud pattern: what category drift may move


def _transactions_of_day(config: SimulationConfig, world: _World, day: int) -> _Transactions:
    """The day's transactions in time order, drift applied."""
    pools = _MerchantPools(world.merchants, day)
    rng = _rng(config.seed, _Stream.PURCHASES, day)
    count = max(1, int(rng.poisson(config.transactions_per_day * (1 - config.fraud_rate))))
    purchases = _ordinary_purchases(rng, world, pools, count)
    sprees = _online_sprees(_rng(config.seed, _Stream.SPREES, day), world, pools)
    fraud = _fraud(_rng(config.seed, _Stream.FRAUD, day), config, world, pools, _concept_share(config, day))
    transactions = _with_travel(config, world, pools, day, _Transactions.concat([purchases, sprees, fraud]))
    _apply_drifts(config, day, transactions)
    return transactions.take(np.argsort(transactions.offset_us, kind="stable"))


def _ordinary_purchases(
    rng: np.random.Generator, world: _World, pools: _MerchantPools, count: int
) -> _Transactions:
    spending = world.profiles.spending_cards()
    weights = world.cards.activity[spending]
    card = spending[rng.choice(len(spending), size=count, p=weights / weights.sum())]
    abroad = rng.random(count) < _ABROAD_SHARE
    destination = rng.choice(len(_MERCHANT_COUNTRY_P), size=count, p=_MERCHANT_COUNTRY_P)
    merchant = pools.in_country(rng, np.where(abroad, destination, world.profiles.home_country[card]))
    category = world.merchants.category[merchant]
    channel = _sold_online_where_digital(_preferred_channel(rng, world.cards.channel_cdf[card]), category)
    return _Transactions(
        card=card,
        merchant=merchant,
        offset_us=_daytime_offsets(rng, count),
        amount=_usual_amount(rng, world.cards.spend_level[card], category, channel),
        channel=channel,
        country=world.merchants.country[merchant],
        fraud_type=np.full(count, LEGITIMATE),
        ordinary=np.ones(count, dtype=bool),
    )


def _fraud(
    rng: np.random.Generator,
    config: SimulationConfig,
    world: _World,
    pools: _MerchantPools,
    concept_share: float,
) -> _Transactions:
    """The day's fraud incidents, sized so fraud is about `fraud_rate` of the transactions."""
    expected = config.transactions_per_day * config.fraud_rate
    classic = expected * (1 - concept_share)
    burst_share, travel_share, ordinary_looking_share = _PATTERN_SHARES
    bursts = rng.poisson(classic * burst_share / _mean_burst_size())
    travels = rng.poisson(classic * travel_share / np.mean(_TRAVEL_SIZE))
    counterfeits = rng.poisson(expected * concept_share / np.mean(_COUNTERFEIT_SIZE))
    ordinary_looking = rng.poisson(classic * ordinary_looking_share / np.mean(_ORDINARY_LOOKING_SIZE))
    return _Transactions.concat(
        [
            _card_testing_bursts(rng, world, pools, bursts),
            _impossible_travel(rng, world, pools, travels),
            _counterfeit_card_use(rng, world, pools, counterfeits),
            _ordinary_looking_fraud(rng, world, pools, ordinary_looking),
        ]
    )


def _mean_burst_size() -> float:
    return _TWO_STEP_BURST_SHARE * 2 + (1 - _TWO_STEP_BURST_SHARE) * np.mean(_BURST_SIZE)


def _card_testing_bursts(
    rng: np.random.Generator, world: _World, pools: _MerchantPools, incidents: int
) -> _Transactions:
    """A stolen card tested with small online charges, then drained with large ones, within 30-90 minutes.

    Not every fraudster follows the script: some bursts are one test and one large charge, and some skip the
    tiny test charges and start at amounts an ordinary shopper might spend.
    """
    card = rng.choice(world.profiles.spending_cards(), size=incidents)
    size = rng.integers(_BURST_SIZE[0], _BURST_SIZE[1], size=incidents, endpoint=True)
    start = rng.integers(0, DAY_US - 90 * MINUTE_US, size=incidents)
    duration = rng.integers(30 * MINUTE_US, 90 * MINUTE_US, size=incidents, endpoint=True)
    first_amount, last_amount = rng.uniform(1, 5, incidents), rng.uniform(300, 3_000, incidents)
    size[rng.random(incidents) < _TWO_STEP_BURST_SHARE] = 2
    untested = rng.random(incidents) < _UNTESTED_BURST_SHARE
    first_amount[untested] = rng.uniform(30, 200, int(untested.sum()))
    incident, position = _expand(size)
    rows = len(incident)
    # Geometric steps from the first to the last amount, so every charge is larger than the one before.
    progress = position / (size[incident] - 1)
    amount = first_amount[incident] * (last_amount[incident] / first_amount[incident]) ** progress
    # Charge i of n falls in the i-th n-th of the burst, which keeps the charges in order.
    slot = (position + 0.8 * rng.random(rows)) / size[incident]
    offset = start[incident] + (duration[incident] * slot).astype(np.int64)
    favoured_category = rng.choice(np.array([DIGITAL_GOODS, ELECTRONICS]), size=rows)
    at_favoured = rng.random(rows) < 0.8
    merchant = np.where(at_favoured, pools.in_category(rng, favoured_category), pools.anywhere(rng, rows))
    return _fraud_rows(
        world, card[incident], merchant, offset, _cents(amount), np.full(rows, ONLINE), CARD_TESTING_BURST
    )


def _impossible_travel(
    rng: np.random.Generator, world: _World, pools: _MerchantPools, incidents: int
) -> _Transactions:
    """The real card is used at home; 1-3 hours later a clone is used in person in a distant country.

    Most clones turn up in the fraud hotspots, the others in countries where legitimate travellers go too.
    """
    card = rng.choice(world.profiles.spending_cards(), size=incidents)
    at_home = rng.integers(6 * HOUR_US, 18 * HOUR_US, size=incidents)
    delay = rng.integers(HOUR_US, 3 * HOUR_US, size=incidents, endpoint=True)
    step = rng.integers(5 * MINUTE_US, 60 * MINUTE_US, size=incidents, endpoint=True)
    size = rng.integers(_TRAVEL_SIZE[0], _TRAVEL_SIZE[1], size=incidents, endpoint=True)
    hotspot = rng.choice(_HOTSPOT_CODES, size=incidents)
    elsewhere = _foreign_countries(rng, world.profiles.home_country[card])
    destination = np.where(rng.random(incidents) < _TRAVEL_FRAUD_AT_HOTSPOT, hotspot, elsewhere)

    in_person = rng.choice(_IN_PERSON_CATEGORIES, size=incidents)
    home_merchant = pools.in_country_and_category(rng, world.profiles.home_country[card], in_person)
    home_category = world.merchants.category[home_merchant]
    genuine = _Transactions(
        card=card,
        merchant=home_merchant,
        offset_us=at_home,
        amount=_usual_amount(rng, world.cards.spend_level[card], home_category, np.full(incidents, POS)),
        channel=np.full(incidents, POS),
        country=world.merchants.country[home_merchant],
        fraud_type=np.full(incidents, LEGITIMATE),
        ordinary=np.zeros(incidents, dtype=bool),
    )

    incident, position = _expand(size)
    rows = len(incident)
    clone_category = rng.choice(_IN_PERSON_CATEGORIES, rows)
    merchant = pools.in_country_and_category(rng, destination[incident], clone_category)
    channel = np.where(rng.random(rows) < 0.3, ATM, POS)
    amount = _cents(_as_cash_where_atm(rng.lognormal(math.log(150), 0.9, rows), channel))
    offset = at_home[incident] + delay[incident] + position * step[incident]  # ends before 23:00
    clone = _fraud_rows(world, card[incident], merchant, offset, amount, channel, IMPOSSIBLE_TRAVEL)
    return _Transactions.concat([genuine, clone])


def _counterfeit_card_use(
    rng: np.random.Generator, world: _World, pools: _MerchantPools, incidents: int
) -> _Transactions:
    """After a concept change: a counterfeit card used in person at home (grocery, fuel), usual amounts."""
    size = rng.integers(_COUNTERFEIT_SIZE[0], _COUNTERFEIT_SIZE[1], size=incidents, endpoint=True)
    card = rng.choice(world.profiles.spending_cards(), size=incidents)[_expand(size)[0]]
    rows = len(card)
    category = rng.choice(np.array([GROCERY, FUEL]), size=rows)
    merchant = pools.in_country_and_category(rng, world.profiles.home_country[card], category)
    scale = _CATEGORY_AMOUNT_SCALE[world.merchants.category[merchant]]
    amount = _cents(world.cards.spend_level[card] * scale * rng.lognormal(math.log(1.5), 0.3, rows))
    offset = _daytime_offsets(rng, rows)
    return _fraud_rows(world, card, merchant, offset, amount, np.full(rows, POS), COUNTERFEIT_CARD)


def _ordinary_looking_fraud(
    rng: np.random.Generator, world: _World, pools: _MerchantPools, incidents: int
) -> _Transactions:
    """A stolen card or its details used the way the holder uses it: at home, in their usual channel, at
    ordinary merchants, for amounts somewhat above their usual, in one shopping session of up to two hours.
    Little but the holder's report gives it away."""
    size = rng.integers(_ORDINARY_LOOKING_SIZE[0], _ORDINARY_LOOKING_SIZE[1], size=incidents, endpoint=True)
    card = rng.choice(world.profiles.spending_cards(), size=incidents)
    start = rng.integers(7 * HOUR_US, 21 * HOUR_US, size=incidents)
    step = rng.integers(10 * MINUTE_US, 60 * MINUTE_US, size=incidents, endpoint=True)
    incident, position = _expand(size)
    card, rows = card[incident], len(incident)
    merchant = pools.in_country(rng, world.profiles.home_country[card])
    category = world.merchants.category[merchant]
    channel = _sold_online_where_digital(_preferred_channel(rng, world.cards.channel_cdf[card]), category)
    spend_level = world.cards.spend_level[card] * rng.lognormal(math.log(2.0), 0.4, rows)
    amount = _usual_amount(rng, spend_level, category, channel)
    offset = start[incident] + position * step[incident]
    return _fraud_rows(world, card, merchant, offset, amount, channel, ORDINARY_LOOKING)


def _fraud_rows(
    world: _World,
    card: np.ndarray,
    merchant: np.ndarray,
    offset: np.ndarray,
    amount: np.ndarray,
    channel: np.ndarray,
    fraud_type: int,
) -> _Transactions:
    return _Transactions(
        card=card,
        merchant=merchant,
        offset_us=offset,
        amount=amount,
        channel=channel,
        country=world.merchants.country[merchant],
        fraud_type=np.full(len(card), fraud_type),
        ordinary=np.zeros(len(card), dtype=bool),
    )


def _expand(sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows of incidents with the given sizes: each row's incident, and its position inside the incident."""
    incident = np.repeat(np.arange(len(sizes)), sizes)
    first_row = np.cumsum(sizes) - sizes
    return incident, np.arange(len(incident)) - first_row[incident]


def _foreign_countries(rng: np.random.Generator, home: np.ndarray) -> np.ndarray:
    """For each home country, another country, drawn by the shares of merchants."""
    weights = np.tile(_MERCHANT_COUNTRY_P, (len(home), 1))
    weights[np.arange(len(home)), home] = 0.0
    cumulative = np.cumsum(weights, axis=1)
    drawn = rng.random(len(home)) * cumulative[:, -1]
    return (cumulative <= drawn[:, None]).sum(axis=1)


def _sold_online_where_digital(channel: np.ndarray, category: np.ndarray) -> np.ndarray:
    """Digital goods are not sold at a till."""
    return np.where(category == DIGITAL_GOODS, ONLINE, channel)


def _preferred_channel(rng: np.random.Generator, channel_cdf: np.ndarray) -> np.ndarray:
    u = rng.random(len(channel_cdf))
    return (u >= channel_cdf[:, 0]).astype(np.int64) + (u >= channel_cdf[:, 1])


def _daytime_offsets(rng: np.random.Generator, count: int) -> np.ndarray:
    hour = rng.choice(24, size=count, p=_HOUR_P)
    return hour * HOUR_US + rng.integers(0, HOUR_US, size=count)


def _usual_amount(
    rng: np.random.Generator, spend_level: np.ndarray, category: np.ndarray, channel: np.ndarray
) -> np.ndarray:
    amount = spend_level * _CATEGORY_AMOUNT_SCALE[category] * rng.lognormal(0.0, 0.5, len(spend_level))
    return _cents(_as_cash_where_atm(amount, channel))


def _as_cash_where_atm(amount: np.ndarray, channel: np.ndarray) -> np.ndarray:
    """ATMs pay out in notes: multiples of 20."""
    return np.where(channel == ATM, np.maximum(20.0, np.round(amount / 20) * 20), amount)


def _cents(amount: np.ndarray) -> np.ndarray:
    return np.maximum(0.01, np.round(amount, 2))


def _round_limit(limit: np.ndarray) -> np.ndarray:
    return np.maximum(100.0, np.round(limit / 100) * 100)


# --- Legitimate look-alikes of fraud: online sprees and travel. ---------------------------------------------


def _online_sprees(rng: np.random.Generator, world: _World, pools: _MerchantPools) -> _Transactions:
    """A holder buys a few apps, then a phone: rising online charges within an hour, like a card test."""
    spending = world.profiles.spending_cards()
    incidents = int(rng.poisson(_SPREE_RATE * len(spending)))
    card = rng.choice(spending, size=incidents)
    size = rng.integers(_SPREE_SIZE[0], _SPREE_SIZE[1], size=incidents, endpoint=True)
    start = rng.integers(7 * HOUR_US, 23 * HOUR_US, size=incidents)
    duration = rng.integers(10 * MINUTE_US, 60 * MINUTE_US, size=incidents, endpoint=True)
    first_amount = rng.uniform(1, 15, incidents)
    typical_gadget = world.cards.spend_level[card] * _CATEGORY_AMOUNT_SCALE[ELECTRONICS]
    last_amount = typical_gadget * rng.lognormal(1.0, 0.5, incidents)
    incident, position = _expand(size)
    rows = len(incident)
    card, last = card[incident], position == size[incident] - 1
    progress = position / (size[incident] - 1)
    amount = first_amount[incident] * (last_amount[incident] / first_amount[incident]) ** progress
    amount = amount * np.where(last, 1.0, rng.uniform(0.7, 1.3, rows))  # rising, not by a fixed step
    slot = (position + 0.8 * rng.random(rows)) / size[incident]
    offset = start[incident] + (duration[incident] * slot).astype(np.int64)
    # Small purchases are digital goods, the big one electronics; most from shops in the holder's country.
    category = np.where(last, ELECTRONICS, DIGITAL_GOODS)
    shop_country = world.profiles.home_country[card]
    abroad = rng.random(rows) < _ABROAD_SHARE
    shop_country[abroad] = rng.choice(len(_MERCHANT_COUNTRY_P), size=int(abroad.sum()), p=_MERCHANT_COUNTRY_P)
    merchant = pools.in_country_and_category(rng, shop_country, category)
    return _Transactions(
        card=card,
        merchant=merchant,
        offset_us=offset,
        amount=_cents(amount),
        channel=np.full(rows, ONLINE),
        country=world.merchants.country[merchant],
        fraud_type=np.full(rows, LEGITIMATE),
        ordinary=np.ones(rows, dtype=bool),
    )


@dataclass
class _Trips(_Rows):
    """Trips abroad; times in microseconds since the first simulated day began."""

    card: np.ndarray
    destination: np.ndarray
    departs: np.ndarray  # the outbound flight takes off
    arrives: np.ndarray
    leaves: np.ndarray  # the return flight takes off
    returns: np.ndarray

    def holder_in_the_air(self, trip: np.ndarray, time: np.ndarray) -> np.ndarray:
        return ((self.departs[trip] <= time) & (time < self.arrives[trip])) | (
            (self.leaves[trip] <= time) & (time < self.returns[trip])
        )

    def holder_abroad(self, trip: np.ndarray, time: np.ndarray) -> np.ndarray:
        return (self.arrives[trip] <= time) & (time < self.leaves[trip])


@dataclass
class _TripPurchases(_Rows):
    """In-person purchases a trip brings: at the airport, on arrival, abroad each day, the hotel, back home."""

    card: np.ndarray
    time: np.ndarray  # microseconds since the first simulated day began
    abroad: np.ndarray
    destination: np.ndarray
    category: np.ndarray


def _trips_starting_on(config: SimulationConfig, day: int) -> tuple[_Trips, _TripPurchases]:
    """The trips starting on `day` (which may precede the first day) and all their purchases.

    Drawn from a generator of their start day alone, so a trip is the same on every day it spans.
    """
    # Generator keys cannot be negative; trips from the cycle before the first day still reach into it.
    rng = _rng(config.seed, _Stream.TRIPS, day + _TRIP_CYCLE_DAYS)
    on_their_day = np.arange(day % _TRIP_CYCLE_DAYS, config.cards, _TRIP_CYCLE_DAYS)
    card = on_their_day[rng.random(len(on_their_day)) < _TRIP_CHANCE]
    count, day_start = len(card), day * DAY_US
    departs = day_start + rng.integers(8 * HOUR_US, 22 * HOUR_US, size=count)
    nights = rng.integers(_TRIP_NIGHTS[0], _TRIP_NIGHTS[1], size=count, endpoint=True)
    leaves = day_start + nights * DAY_US + rng.integers(9 * HOUR_US, 21 * HOUR_US, size=count)
    trips = _Trips(
        card=card,
        destination=rng.choice(len(_MERCHANT_COUNTRY_P), size=count, p=_MERCHANT_COUNTRY_P),
        departs=departs,
        arrives=departs + _flight_time(rng, count),
        leaves=leaves,
        returns=leaves + _flight_time(rng, count),
    )
    return trips, _purchases_on_trips(rng, trips)


def _flight_time(rng: np.random.Generator, count: int) -> np.ndarray:
    return rng.integers(_FLIGHT_HOURS[0] * HOUR_US, _FLIGHT_HOURS[1] * HOUR_US, size=count, endpoint=True)


def _purchases_on_trips(rng: np.random.Generator, trips: _Trips) -> _TripPurchases:
    every = np.arange(len(trips))
    stay = trips.leaves - trips.arrives
    shopping, _ = _expand(rng.poisson(_TRIP_PURCHASES_PER_DAY * stay / DAY_US))
    # Shopping abroad at any hour of UTC: the traveller's daytime is in another time zone.
    shopping_time = trips.arrives[shopping] + (rng.random(len(shopping)) * stay[shopping]).astype(np.int64)
    stops = [
        (every, trips.departs - _minutes(rng, 30, 150, every), False, None),  # the airport before take-off
        (every, trips.arrives + _minutes(rng, 20, 120, every), True, None),  # a meal on arrival
        (every, trips.leaves - _minutes(rng, 60, 240, every), True, TRAVEL),  # the hotel bill at check-out
        (every, trips.returns + _minutes(rng, 30, 180, every), False, None),  # home again after landing
        (shopping, shopping_time, True, None),
    ]
    return _TripPurchases.concat([_trip_stop(rng, trips, *stop) for stop in stops])


def _minutes(rng: np.random.Generator, low: int, high: int, rows: np.ndarray) -> np.ndarray:
    return rng.integers(low * MINUTE_US, high * MINUTE_US, size=len(rows))


def _trip_stop(
    rng: np.random.Generator,
    trips: _Trips,
    trip: np.ndarray,
    time: np.ndarray,
    abroad: bool,
    category: int | None,
) -> _TripPurchases:
    """Purchases at one kind of stop; without a `category`, at any shop one visits in person."""
    rows = len(trip)
    categories = rng.choice(_IN_PERSON_CATEGORIES, size=rows) if category is None else np.full(rows, category)
    return _TripPurchases(
        card=trips.card[trip],
        time=time,
        abroad=np.full(rows, abroad),
        destination=trips.destination[trip],
        category=categories,
    )


def _with_travel(
    config: SimulationConfig, world: _World, pools: _MerchantPools, day: int, transactions: _Transactions
) -> _Transactions:
    """Add the day's trip purchases, and put every legitimate card-present purchase where its holder is."""
    rng = _rng(config.seed, _Stream.TRIP_PURCHASES, day)
    trips, planned = _trips_of_day(config, world, day)
    bought = _bought_on_trips(rng, world, pools, planned, day)
    return _where_the_holder_is(rng, world, pools, trips, day, _Transactions.concat([transactions, bought]))


def _trips_of_day(config: SimulationConfig, world: _World, day: int) -> tuple[_Trips, _TripPurchases]:
    """Trips that may reach into `day`, and their purchases on it. A trip to the holder's home is no trip."""
    started = [_trips_starting_on(config, start) for start in range(day - _TRIP_CYCLE_DAYS + 1, day + 1)]
    trips = _Trips.concat([t for t, _ in started])
    planned = _TripPurchases.concat([p for _, p in started])
    trips = trips.take(trips.destination != world.profiles.home_country[trips.card])
    today = (planned.time >= day * DAY_US) & (planned.time < (day + 1) * DAY_US)
    can_pay = np.isin(planned.card, world.profiles.spending_cards())
    away = planned.destination != world.profiles.home_country[planned.card]
    return trips, planned.take(today & can_pay & away)


def _bought_on_trips(
    rng: np.random.Generator, world: _World, pools: _MerchantPools, planned: _TripPurchases, day: int
) -> _Transactions:
    card, count = planned.card, len(planned)
    country = np.where(planned.abroad, planned.destination, world.profiles.home_country[card])
    merchant = pools.in_country_and_category(rng, country, planned.category)
    category = world.merchants.category[merchant]
    channel = np.where(planned.abroad & (rng.random(count) < _CASH_ABROAD_SHARE), ATM, POS)
    channel = _sold_online_where_digital(channel, category)
    # Travellers draw cash for several days at a time.
    spend_level = world.cards.spend_level[card] * np.where(channel == ATM, _CASH_ABROAD_DAYS, 1.0)
    return _Transactions(
        card=card,
        merchant=merchant,
        offset_us=planned.time - day * DAY_US,
        amount=_usual_amount(rng, spend_level, category, channel),
        channel=channel,
        country=world.merchants.country[merchant],
        fraud_type=np.full(count, LEGITIMATE),
        ordinary=np.ones(count, dtype=bool),
    )


def _where_the_holder_is(
    rng: np.random.Generator,
    world: _World,
    pools: _MerchantPools,
    trips: _Trips,
    day: int,
    transactions: _Transactions,
) -> _Transactions:
    """Legitimate card-present purchases happen where the holder is: at the trip's destination while abroad,
    at home otherwise, and not at all while they are in the air. Fraud stays where the fraudster is."""
    in_the_air, location = _holders_whereabouts(world, trips, day, transactions)
    transactions, location = transactions.take(~in_the_air), location[~in_the_air]
    in_person = (transactions.fraud_type == LEGITIMATE) & (transactions.channel != ONLINE)
    moved = np.flatnonzero(in_person & (transactions.country != location))
    category = world.merchants.category[transactions.merchant[moved]]
    merchant = pools.in_country_and_category(rng, location[moved], category)
    transactions.merchant[moved] = merchant
    transactions.country[moved] = world.merchants.country[merchant]
    channel = _sold_online_where_digital(transactions.channel[moved], world.merchants.category[merchant])
    transactions.channel[moved] = channel
    return transactions


def _holders_whereabouts(
    world: _World, trips: _Trips, day: int, transactions: _Transactions
) -> tuple[np.ndarray, np.ndarray]:
    """For each transaction, whether its legitimate holder is in the air, and the country they are in."""
    trip_of_card = np.full(len(world.profiles.frozen), -1)
    trip_of_card[trips.card] = np.arange(len(trips))  # a card's trips never overlap
    legitimate = transactions.fraud_type == LEGITIMATE
    travelling = np.flatnonzero(legitimate & (trip_of_card[transactions.card] >= 0))
    trip = trip_of_card[transactions.card[travelling]]
    time = day * DAY_US + transactions.offset_us[travelling]
    in_the_air = np.zeros(len(transactions), dtype=bool)
    in_the_air[travelling] = trips.holder_in_the_air(trip, time)
    location = world.profiles.home_country[transactions.card]
    abroad = trips.holder_abroad(trip, time)
    location[travelling[abroad]] = trips.destination[trip[abroad]]
    return in_the_air, location


# --- Drift. -------------------------------------------------------------------------------------------------


def _active_drifts(config: SimulationConfig, day: int) -> list[tuple[int, DriftSpec]]:
    date = config.start_date + datetime.timedelta(days=day)
    return [(index, drift) for index, drift in enumerate(config.drifts) if drift.in_effect_on(date)]


def _concept_share(config: SimulationConfig, day: int) -> float:
    """Share of fraud that follows the new pattern of an active concept change (0 without one)."""
    shares = [min(1.0, d.strength) for _, d in _active_drifts(config, day) if d.kind == "concept_change"]
    return max(shares, default=0.0)


def _apply_drifts(config: SimulationConfig, day: int, transactions: _Transactions) -> None:
    """Change the day's transactions in place by every drift in effect (concept change acts in `_fraud`)."""
    date = config.start_date + datetime.timedelta(days=day)
    for index, drift in _active_drifts(config, day):
        rng = _rng(config.seed, _Stream.DRIFT, day, index)
        if drift.kind == "mean_shift":
            legitimate = transactions.fraud_type == LEGITIMATE
            transactions.amount[legitimate] = _cents(transactions.amount[legitimate] * (1 + drift.strength))
        elif drift.kind == "category_mix":
            if "channel" in drift.columns:
                _move_online(rng, transactions, drift.strength)
            if "country" in drift.columns:
                days_in_effect = (date - drift.start).days + 1
                share = min(1.0, 0.3 * drift.strength) * min(1.0, days_in_effect / 7)
                _move_to_new_countries(rng, transactions, share)


def _move_online(rng: np.random.Generator, transactions: _Transactions, strength: float) -> None:
    ordinary = transactions.ordinary
    movable = ordinary & (transactions.channel != ONLINE)
    if not movable.any():
        return
    # Convert enough in-person purchases that the online share of ordinary ones rises by 40 points x strength.
    probability = min(1.0, 0.4 * strength * ordinary.sum() / movable.sum())
    transactions.channel[movable & (rng.random(len(transactions)) < probability)] = ONLINE


def _move_to_new_countries(rng: np.random.Generator, transactions: _Transactions, share: float) -> None:
    moved = transactions.ordinary & (rng.random(len(transactions)) < share)
    transactions.country[moved] = rng.choice(_NEW_COUNTRY_CODES, size=int(moved.sum()))


# --- Card profile changes and fraud reports. ----------------------------------------------------------------


def _change_profiles(rng: np.random.Generator, profiles: _CardProfiles) -> tuple[np.ndarray, np.ndarray]:
    """Apply the day's change events to `profiles`; return the changed cards and their offsets in the day."""
    total = len(profiles.frozen)
    count = min(total, int(rng.poisson(_PROFILE_CHANGE_RATE * total)))
    cards = rng.choice(total, size=count, replace=False)
    kind = rng.choice(len(_CHANGE_KIND_P), size=count, p=_CHANGE_KIND_P)
    limit_factor = rng.choice(np.array([0.5, 1.5, 2.0]), size=count)
    home_step = rng.integers(1, len(_HOME_CODES), size=count)
    offset = rng.integers(0, DAY_US, size=count)

    upgrade = kind == _UPGRADE  # one step up the card types, and a doubled limit
    factor = np.where(kind == _LIMIT_CHANGE, limit_factor, np.where(upgrade, 2.0, 1.0))
    profiles.credit_limit[cards] = _round_limit(profiles.credit_limit[cards] * factor)
    profiles.card_type[cards[upgrade]] = np.minimum(profiles.card_type[cards[upgrade]] + 1, CREDIT)
    movers = cards[kind == _HOME_MOVE]
    new_position = _HOME_POSITION[profiles.home_country[movers]] + home_step[kind == _HOME_MOVE]
    profiles.home_country[movers] = _HOME_CODES[new_position % len(_HOME_CODES)]
    toggled = cards[kind == _STATUS_TOGGLE]
    profiles.frozen[toggled] = ~profiles.frozen[toggled]
    return cards, offset


@dataclass
class _Reports(_Rows):
    reported_at: np.ndarray  # microseconds since the epoch
    transaction_number: np.ndarray
    fraud_type: np.ndarray


def _report_fraud(
    rng: np.random.Generator, transactions: _Transactions, numbers: np.ndarray, day_start: int
) -> _Reports:
    """One report per fraud transaction, filed 1 to 30 days after it at a random time."""
    fraud = transactions.fraud_type != LEGITIMATE
    delay = (rng.uniform(1, 30, int(fraud.sum())) * DAY_US).astype(np.int64)
    return _Reports(
        reported_at=day_start + transactions.offset_us[fraud] + delay,
        transaction_number=numbers[fraud],
        fraud_type=transactions.fraud_type[fraud],
    )


# --- Arrow tables. ------------------------------------------------------------------------------------------


def _ids(prefix: str, numbers: np.ndarray, digits: int) -> pa.Array:
    """Zero-padded ids such as "t0000000042", built in Arrow because Python string formatting is slow."""
    padded = pc.utf8_lpad(pa.array(numbers, pa.int64()).cast(pa.string()), width=digits, padding="0")
    return pc.binary_join_element_wise(prefix, padded, "")


def _labels(vocabulary: tuple[str, ...], codes: np.ndarray) -> pa.Array:
    return pa.array(vocabulary, pa.string()).take(codes)


def _timestamps(micros: np.ndarray) -> pa.Array:
    return pa.array(np.asarray(micros, dtype=np.int64), TIMESTAMP)


def _transactions_table(
    world: _World, transactions: _Transactions, numbers: np.ndarray, day_start: int
) -> pa.Table:
    return pa.Table.from_arrays(
        [
            _ids("t", numbers, _TRANSACTION_DIGITS),
            world.cards.ids.take(transactions.card),
            world.merchants.ids.take(transactions.merchant),
            _timestamps(day_start + transactions.offset_us),
            pa.array(transactions.amount, pa.float64()),
            _labels(CHANNELS, transactions.channel),
            _labels(COUNTRIES, transactions.country),
            pa.array(transactions.channel != ONLINE),
        ],
        schema=SCHEMAS["transactions"],
    )


def _profiles_table(world: _World, cards: np.ndarray, times: np.ndarray) -> pa.Table:
    order = np.lexsort((cards, times))
    cards, times = cards[order], times[order]
    profiles = world.profiles
    return pa.Table.from_arrays(
        [
            world.cards.ids.take(cards),
            _timestamps(times),
            _labels(CARD_TYPES, profiles.card_type[cards]),
            pa.array(profiles.credit_limit[cards], pa.float64()),
            _labels(COUNTRIES, profiles.home_country[cards]),
            _labels(CARD_STATUSES, profiles.frozen[cards].astype(np.int64)),
        ],
        schema=SCHEMAS["card_profiles"],
    )


def _merchants_table(merchants: _Merchants, day: int) -> pa.Table:
    onboarded = np.flatnonzero(merchants.onboarding_day == day)
    onboarded = onboarded[np.argsort(merchants.onboarded_at[onboarded], kind="stable")]
    return pa.Table.from_arrays(
        [
            merchants.ids.take(onboarded),
            _timestamps(merchants.onboarded_at[onboarded]),
            merchants.names.take(onboarded),
            _labels(MERCHANT_CATEGORIES, merchants.category[onboarded]),
            _labels(COUNTRIES, merchants.country[onboarded]),
        ],
        schema=SCHEMAS["merchants"],
    )


def _reports_table(reports: _Reports) -> pa.Table:
    reports = reports.take(np.lexsort((reports.transaction_number, reports.reported_at)))
    return pa.Table.from_arrays(
        [
            _ids("r", reports.transaction_number, _TRANSACTION_DIGITS),
            _ids("t", reports.transaction_number, _TRANSACTION_DIGITS),
            _timestamps(reports.reported_at),
            _labels(FRAUD_TYPES, reports.fraud_type),
        ],
        schema=SCHEMAS["fraud_reports"],
    )


def _ground_truth_table(transactions: _Transactions, numbers: np.ndarray) -> pa.Table:
    legitimate = transactions.fraud_type == LEGITIMATE
    fraud_type = pa.array(FRAUD_TYPES, pa.string()).take(pa.array(transactions.fraud_type, mask=legitimate))
    return pa.Table.from_arrays(
        [_ids("t", numbers, _TRANSACTION_DIGITS), pa.array(~legitimate), fraud_type],
        schema=GROUND_TRUTH_SCHEMA,
    )


# --- Writing. -----------------------------------------------------------------------------------------------


def _day_start_us(date: datetime.date) -> int:
    return (date - _EPOCH).days * DAY_US


class _Landing:
    """Writes the day files of the sources and the ground truth, and keeps count of what it wrote."""

    def __init__(self, root: Path):
        self.root = root
        self.files: dict[str, list[Path]] = {source: [] for source in SOURCES}
        self.rows: dict[str, int] = {source: 0 for source in SOURCES}
        self.fraud_transactions = 0

    def clear(self) -> None:
        """Remove earlier output, so a rerun with fewer days leaves no stale day folders."""
        for folder in (*SOURCES, GROUND_TRUTH_FOLDER):
            if (self.root / folder).exists():
                shutil.rmtree(self.root / folder)

    def write_run(self, config: SimulationConfig, first_new_day: int) -> None:
        """Play `config` from its first day and write the day files from `first_new_day` on; the fraud truth
        and the config cover every day. The config goes last: until it is written, `extend` redoes the run."""
        with self._fraud_truth_writer() as fraud_truth:
            for index, day in enumerate(_play(config)):
                fraud_truth.write_table(day.fraud_truth)
                self.fraud_transactions += pc.sum(day.fraud_truth["is_fraud"]).as_py()
                if index >= first_new_day:
                    for source, table in day.files.items():
                        self._write(source, day.date, table)
        record = asdict(config)
        self._write_json("drift.json", {key: record[key] for key in ("seed", "start_date", "days", "drifts")})
        self._write_json(CONFIG_FILE, record)

    def _write(self, source: str, date: datetime.date, table: pa.Table) -> None:
        path = self.root / source / f"date={date.isoformat()}" / "part-0.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path, compression="zstd")
        self.files[source].append(path)
        self.rows[source] += table.num_rows

    def _write_json(self, name: str, record: dict) -> None:
        path = self.root / GROUND_TRUTH_FOLDER / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record, sort_keys=True, indent=2, default=datetime.date.isoformat) + "\n")

    def _fraud_truth_writer(self) -> pq.ParquetWriter:
        """A writer for the is-fraud truth of every transaction, one row group a day, so memory stays flat."""
        path = self.root / GROUND_TRUTH_FOLDER / "fraud.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        return pq.ParquetWriter(path, GROUND_TRUTH_SCHEMA, compression="zstd")


@dataclass(frozen=True)
class _Day:
    date: datetime.date
    files: dict[str, pa.Table]  # source -> the day's file
    fraud_truth: pa.Table


def _play(config: SimulationConfig) -> Iterator[_Day]:
    """The business day by day from the first day: each day's world depends on all the days before it."""
    world = _create_world(config)
    pending = _Reports.empty()
    first_number = 0
    for day in range(config.days):
        date = config.start_date + datetime.timedelta(days=day)
        day_start = _day_start_us(date)

        transactions = _transactions_of_day(config, world, day)
        numbers = first_number + np.arange(len(transactions))
        first_number += len(transactions)

        # Reports arrive on later days; each day writes those that have arrived by its end.
        reports = _report_fraud(_rng(config.seed, _Stream.REPORTS, day), transactions, numbers, day_start)
        pending = _Reports.concat([pending, reports])
        arrived = pending.reported_at < day_start + DAY_US
        arrived_reports, pending = pending.take(arrived), pending.take(~arrived)

        # Day one holds the initial profiles. Later changes are applied after the day's transactions
        # were drawn, so they shape purchases from the next day on.
        if day == 0:
            changed, offset = np.arange(config.cards), np.zeros(config.cards, dtype=np.int64)
        else:
            rng = _rng(config.seed, _Stream.PROFILE_CHANGES, day)
            changed, offset = _change_profiles(rng, world.profiles)

        files = {
            "transactions": _transactions_table(world, transactions, numbers, day_start),
            "card_profiles": _profiles_table(world, changed, day_start + offset),
            "merchants": _merchants_table(world.merchants, day),
            "fraud_reports": _reports_table(arrived_reports),
        }
        yield _Day(date, files, _ground_truth_table(transactions, numbers))


def simulate(config: SimulationConfig, landing: Path) -> SimulationResult:
    """Write each source's day files, the ground truth and the config into `landing`, replacing old output."""
    output = _Landing(Path(landing))
    output.clear()
    output.write_run(config, first_new_day=0)
    return SimulationResult(output.files, output.rows, output.fraud_transactions)


def recorded_config(landing: Path) -> SimulationConfig | None:
    """The config the files in `landing` were simulated with, extensions included; None if there are none."""
    path = Path(landing) / GROUND_TRUTH_FOLDER / CONFIG_FILE
    if not path.exists():
        return None
    record = json.loads(path.read_text())

    def date(text: str | None) -> datetime.date | None:
        return None if text is None else datetime.date.fromisoformat(text)

    drifts = tuple(
        DriftSpec(**{**d, "start": date(d["start"]), "end": date(d["end"])}) for d in record["drifts"]
    )
    return SimulationConfig(**{**record, "start_date": date(record["start_date"]), "drifts": drifts})


def extend(landing: Path, through: datetime.date) -> list[datetime.date]:
    """Add the day files of the days after the last simulated day up to `through` (inclusive) to `landing`,
    the same files a run with more days would have written; return their dates (none when up to date).

    Existing day files are left untouched; the fraud truth is rewritten whole and the recorded days updated.
    """
    recorded = recorded_config(landing)
    if recorded is None:
        raise FileNotFoundError(f"no simulation recorded in {landing}; run simulate first")
    days = (through - recorded.start_date).days + 1
    if days <= recorded.days:
        return []
    _Landing(Path(landing)).write_run(replace(recorded, days=days), first_new_day=recorded.days)
    return [recorded.start_date + datetime.timedelta(days=day) for day in range(recorded.days, days)]


# --- Command line. ------------------------------------------------------------------------------------------


def _date_argument(text: str) -> datetime.date:
    try:
        return datetime.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from None


def _drift_argument(text: str) -> DriftSpec:
    try:
        return DriftSpec.parse(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the simulator's options (defaults from SimulationConfig) on `parser`."""
    defaults = SimulationConfig()
    parser.add_argument("--start-date", type=_date_argument, default=defaults.start_date, help="YYYY-MM-DD")
    parser.add_argument("--days", type=int, default=defaults.days, help="number of days to simulate")
    parser.add_argument("--cards", type=int, default=defaults.cards, help="number of cards")
    parser.add_argument("--merchants", type=int, default=defaults.merchants, help="number of merchants")
    parser.add_argument(
        "--transactions-per-day",
        type=int,
        default=defaults.transactions_per_day,
        help="average transactions a day",
    )
    parser.add_argument("--fraud-rate", type=float, default=defaults.fraud_rate, help="share of fraud, about")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="random seed; same seed, same files")
    parser.add_argument(
        "--drift",
        type=_drift_argument,
        action="append",
        default=None,
        metavar="START[..END]:KIND:COLUMNS[:STRENGTH]",
        help="inject drift (repeatable) from START on, up to END (exclusive) if given, e.g. "
        "2026-02-14:mean_shift:amount:1.5, 2026-02-14:category_mix:channel,country or "
        "2026-02-14..2026-02-21:concept_change:-",
    )


def config_from_args(args: argparse.Namespace) -> SimulationConfig:
    return SimulationConfig(
        start_date=args.start_date,
        days=args.days,
        cards=args.cards,
        merchants=args.merchants,
        transactions_per_day=args.transactions_per_day,
        fraud_rate=args.fraud_rate,
        seed=args.seed,
        drifts=tuple(args.drift or ()),
    )
