-- Per reading, the meter's consumption before it: the mean over the previous 24 hours and the previous
-- reading (if within 24 hours). Windows exclude the reading itself, and the mean is taken in exact
-- decimals so a range run and a single-hour run give identical values.
SELECT site_id, meter_id, event_time,
    avg(kwh::DECIMAL(18, 3)) OVER last_day::DOUBLE AS kwh_mean_24h,
    CASE WHEN event_time - lag(event_time) OVER by_time <= INTERVAL 24 HOURS THEN lag(kwh) OVER by_time END
        AS previous_kwh
FROM readings
WINDOW
    last_day AS (PARTITION BY site_id, meter_id ORDER BY event_time
                 RANGE BETWEEN INTERVAL 24 HOURS PRECEDING AND CURRENT ROW EXCLUDE CURRENT ROW),
    by_time AS (PARTITION BY site_id, meter_id ORDER BY event_time)
