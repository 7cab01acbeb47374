-- description = "Daily performance by campaign across all sources, money also in KRW"
-- unique_key = ["date", "source", "account_id", "campaign_id"]
-- [tests]
-- not_null = ["date", "source", "account_id", "campaign_id"]
-- accepted_values = { source = ["meta", "google_ads"] }
-- accepted_range = { spend = { min = 0 }, impressions = { min = 0 }, clicks = { min = 0 } }
-- relationships = { currency = "fx_rates.currency" }
-- freshness_days = 3
SELECT
    p.date,
    p.source,
    p.account_id,
    p.campaign_id,
    max(p.campaign_name) AS campaign_name,
    max(p.currency) AS currency,
    sum(p.impressions) AS impressions,
    sum(p.clicks) AS clicks,
    sum(p.spend) AS spend,
    sum(p.installs) AS installs,
    sum(p.conversions) AS conversions,
    sum(p.revenue) AS revenue,
    sum(p.spend * CAST(r.krw_per_unit AS DECIMAL(18, 4))) AS spend_krw,
    sum(p.revenue * CAST(r.krw_per_unit AS DECIMAL(18, 4))) AS revenue_krw
FROM ad_performance p
LEFT JOIN fx_rates r ON p.currency = r.currency
GROUP BY p.date, p.source, p.account_id, p.campaign_id
