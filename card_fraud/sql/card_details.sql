-- SCD type 2: every profile change is a row keyed by (card_id, event_time), read with as-of joins.
SELECT card_id, event_time, card_type, credit_limit, home_country, status FROM card_profiles
