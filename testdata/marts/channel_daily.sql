-- description = "Spend and ROAS by channel (source) and day, in KRW"
-- unique_key = ["date", "channel"]
-- [tests]
-- not_null = ["date", "channel", "spend_krw"]
-- accepted_range = { spend_krw = { min = 0 }, roas = { min = 0 } }
SELECT
    date,
    source AS channel,
    sum(impressions) AS impressions,
    sum(clicks) AS clicks,
    sum(installs) AS installs,
    sum(conversions) AS conversions,
    sum(spend_krw) AS spend_krw,
    sum(revenue_krw) AS revenue_krw,
    ctr(clicks, impressions) AS ctr,
    roas(revenue_krw, spend_krw) AS roas
FROM daily_campaign_performance
GROUP BY date, source
