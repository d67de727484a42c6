-- A daily aggregate that never sees its own day: each row is stamped at the START of its day and counts
-- only transactions and reports of the 28 days BEFORE it (inputs are read with a one-day lag, and the
-- joins below stop at `day < event_time`). Stamping a day's totals inside the day they summarise would
-- let every transaction of that day see later ones: the builder's leak check, which recomputes a day with
-- its inputs cut at noon, would refuse to publish it.
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
        AND dt.day >= md.event_time - INTERVAL 28 DAY AND dt.day < md.event_time
    GROUP BY md.merchant_id, md.event_time
),
reported AS (
    SELECT md.merchant_id, md.event_time, coalesce(sum(dr.n), 0) AS merchant_fraud_reports_28d
    FROM merchant_days md LEFT JOIN daily_reports dr
        ON dr.merchant_id = md.merchant_id
        AND dr.day >= md.event_time - INTERVAL 28 DAY AND dr.day < md.event_time
    GROUP BY md.merchant_id, md.event_time
)
SELECT merchant_id, event_time, merchant_category, merchant_txn_count_28d, merchant_fraud_reports_28d,
    merchant_fraud_reports_28d / nullif(merchant_txn_count_28d, 0) AS merchant_fraud_rate_28d
FROM windowed JOIN reported USING (merchant_id, event_time)
