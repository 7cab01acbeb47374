-- description = "Campaign days with installs and revenue projected to their final values from the maturity curves (settled days carry their final values), and projected ROAS as projected revenue over projected spend"
-- unique_key = ["date", "source", "account_id", "campaign_id"]
-- [tests]
-- not_null = ["date", "source", "account_id", "campaign_id", "basis", "projected_installs"]
-- accepted_range = { spend = { min = 0 }, projected_spend = { min = 0 } }
WITH spend AS (
    -- Every day from `since`, so days that left the window keep their settled values here.
    SELECT * FROM projected('ad_performance', 'spend', by => 'campaign', since => '2000-01-01')
), installs AS (
    SELECT * FROM projected('ad_performance', 'installs', by => 'campaign', since => '2000-01-01')
), revenue AS (
    SELECT * FROM projected('ad_performance', 'revenue', by => 'campaign', since => '2000-01-01')
)
SELECT
    s.date,
    s.source,
    s.account_id,
    s.campaign_id,
    s.age_days,
    s.settled,
    i.basis,
    s.current_value AS spend,
    s.projected_value AS projected_spend,
    i.current_value AS installs,
    i.projected_value AS projected_installs,
    i.projected_low AS projected_installs_low,
    i.projected_high AS projected_installs_high,
    r.current_value AS revenue,
    r.projected_value AS projected_revenue,
    r.projected_value / nullif(s.projected_value, 0) AS projected_roas
FROM spend s
JOIN installs i
    ON i.date = s.date AND i.source = s.source AND i.account_id = s.account_id
   AND i.campaign_id = s.campaign_id
JOIN revenue r
    ON r.date = s.date AND r.source = s.source AND r.account_id = s.account_id
   AND r.campaign_id = s.campaign_id
