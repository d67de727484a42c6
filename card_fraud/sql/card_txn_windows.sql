-- Per transaction, the card's activity before it. Windows end just before the transaction itself
-- ("what did this card do before this charge"), so a row never sees its own amount.
SELECT card_id, event_time, transaction_id,
    count(*) OVER w1h AS txn_count_1h,
    coalesce(sum(cents) OVER w1h, 0)::DOUBLE AS amount_sum_1h,
    count(*) OVER w24h AS txn_count_24h,
    coalesce(sum(cents) OVER w24h, 0)::DOUBLE AS amount_sum_24h,
    count(*) OVER w7d AS txn_count_7d,
    coalesce(sum(cents) OVER w7d, 0)::DOUBLE AS amount_sum_7d,
    -- Bounded by the lookback, so a daily run and a backfill see the same previous transaction.
    CASE WHEN gap <= INTERVAL 7 DAYS THEN epoch(gap) END AS seconds_since_previous
-- Sums in exact decimals: float sums depend on the window's evaluation order, so a re-run over a
-- different range would differ in the last bits.
FROM (
    SELECT *, amount::DECIMAL(18, 2) AS cents,
        event_time - lag(event_time) OVER (PARTITION BY card_id ORDER BY event_time, transaction_id) AS gap
    FROM transactions
)
WINDOW
    w1h AS (PARTITION BY card_id ORDER BY event_time
            RANGE BETWEEN INTERVAL 1 HOUR PRECEDING AND CURRENT ROW EXCLUDE CURRENT ROW),
    w24h AS (PARTITION BY card_id ORDER BY event_time
             RANGE BETWEEN INTERVAL 24 HOURS PRECEDING AND CURRENT ROW EXCLUDE CURRENT ROW),
    w7d AS (PARTITION BY card_id ORDER BY event_time
            RANGE BETWEEN INTERVAL 7 DAYS PRECEDING AND CURRENT ROW EXCLUDE CURRENT ROW)
