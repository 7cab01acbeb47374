-- description = "Spend joined to AppsFlyer installs and revenue and GA4 sessions and key events, per day and campaign; money in KRW"
-- unique_key = ["date", "campaign_key"]
-- [tests]
-- not_null = ["date", "campaign_key"]
-- accepted_range = { spend_krw = { min = 0 }, af_installs = { min = 0 }, ga_sessions = { min = 0 } }
--
-- # Campaign matching rule: a spend row and an attribution row are the same campaign when,
-- # on the same day, their campaign names are equal after trimming, collapsing runs of
-- # whitespace to one space and lower-casing (`campaign_key`): the name the ad platform
-- # reports (ad_performance.campaign_name), AppsFlyer's `Campaign (c)` and GA4's
-- # sessionCampaignName, which a tracking link sets from the same campaign name. Spend rows
-- # without a campaign name (Naver stat reports carry ids only) cannot match and are left out;
-- # GA4's "(other)" and "(not set)" rows name no campaign and are left out too (their totals
-- # stay in ga4_traffic_daily, flagged). A campaign seen on one side only keeps NULL for the
-- # other side's columns. Spend is converted with the fx_rates seed; AppsFlyer revenue is in
-- # the app's preferred currency and GA4 revenue in the property's currency (currency_code),
-- # converted with fx_rates as well (AppsFlyer's taken as KRW when the app reports in KRW).
WITH spend AS (
    SELECT p.date,
           lower(trim(regexp_replace(p.campaign_name, '\s+', ' ', 'g'))) AS campaign_key,
           sum(p.impressions) AS impressions,
           sum(p.clicks) AS clicks,
           sum(p.spend * CAST(r.krw_per_unit AS DECIMAL(18, 4))) AS spend_krw
    FROM ad_performance p
    JOIN fx_rates r ON p.currency = r.currency
    WHERE p.campaign_name IS NOT NULL
    GROUP BY 1, 2
),
appsflyer AS (
    SELECT date,
           lower(trim(regexp_replace(campaign_c, '\s+', ' ', 'g'))) AS campaign_key,
           sum(installs) AS af_installs,
           sum(total_revenue) AS af_revenue_krw
    FROM appsflyer_partners_daily
    WHERE campaign_c IS NOT NULL
    GROUP BY 1, 2
),
ga4 AS (
    SELECT g.date,
           lower(trim(regexp_replace(g.session_campaign_name, '\s+', ' ', 'g'))) AS campaign_key,
           sum(g.sessions) AS ga_sessions,
           sum(g.key_events) AS ga_key_events,
           sum(g.purchase_revenue * CAST(r.krw_per_unit AS DECIMAL(18, 4))) AS ga_revenue_krw
    FROM ga4_traffic_daily g
    JOIN fx_rates r ON g.currency_code = r.currency
    WHERE g.session_campaign_name NOT IN ('(other)', '(not set)')
    GROUP BY 1, 2
),
spend_and_installs AS (
    SELECT coalesce(s.date, a.date) AS date,
           coalesce(s.campaign_key, a.campaign_key) AS campaign_key,
           s.impressions, s.clicks, s.spend_krw, a.af_installs, a.af_revenue_krw
    FROM spend s
    FULL OUTER JOIN appsflyer a ON s.date = a.date AND s.campaign_key = a.campaign_key
)
SELECT coalesce(x.date, g.date) AS date,
       coalesce(x.campaign_key, g.campaign_key) AS campaign_key,
       x.impressions,
       x.clicks,
       x.spend_krw,
       x.af_installs,
       x.af_revenue_krw,
       g.ga_sessions,
       g.ga_key_events,
       g.ga_revenue_krw,
       round(CAST(x.spend_krw AS DOUBLE) / nullif(x.af_installs, 0), 2) AS cpi_krw,
       round(CAST(x.af_revenue_krw AS DOUBLE) / nullif(CAST(x.spend_krw AS DOUBLE), 0), 4) AS af_roas
FROM spend_and_installs x
FULL OUTER JOIN ga4 g ON x.date = g.date AND x.campaign_key = g.campaign_key
