-- description = "7-day rolling installs and cost per install (KRW) by channel"
-- unique_key = ["date", "channel"]
-- lookback_days = 6
-- [tests]
-- not_null = ["date", "channel"]
-- accepted_range = { installs_7d = { min = 0 } }
SELECT
    d.date,
    d.channel,
    sum(w.installs) AS installs_7d,
    sum(w.spend_krw) AS spend_krw_7d,
    cpi(w.spend_krw, w.installs) AS cpi_krw_7d
FROM channel_daily d
JOIN channel_daily w
    ON w.channel = d.channel
   AND w.date BETWEEN d.date - INTERVAL '6 days' AND d.date
GROUP BY d.date, d.channel
