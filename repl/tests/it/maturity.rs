//! Maturity curves and projections on the simulators, whose ground truth matures on a known
//! curve: 40 daily syncs (the simulators' clock moving a day each time), then `maturity(…)`,
//! `projected(…)`, `tidemark maturity backtest` and `tidemark history --maturity` are checked
//! against what the simulators report at each age and what the days finally became.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use chrono::{Days, NaiveDate};
use connectors::config::Platform;
use connectors::sim::{SimConfig, World};
use serde_json::Value;

const META_TOKEN: &str = "EAAGmaturityMetaToken";
const GOOGLE_TOKEN: &str = "ya29.maturityGoogleToken";
const DEVELOPER_TOKEN: &str = "devMaturityToken";
/// The first sync's "today"; the last is 39 days later.
const FIRST: &str = "2026-09-01";
const SYNCS: u64 = 40;
/// The simulators' values reach their final value at this age.
const FINAL_AGE: i64 = connectors::sim::truth::MATURITY_DAYS;

fn tidemark(project: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tidemark"));
    cmd.env_remove("RUST_LOG")
        .env_remove("TIDEMARK_WAREHOUSE")
        .env("TIDEMARK_PROJECT", project)
        .env("SIM_META_TOKEN", META_TOKEN)
        .env("SIM_GOOGLE_TOKEN", GOOGLE_TOKEN)
        .env("SIM_DEV_TOKEN", DEVELOPER_TOKEN);
    cmd
}

fn d(text: &str) -> NaiveDate {
    text.parse().unwrap()
}

/// Run `sql` and return its rows as JSON objects.
async fn query(project: &Path, sql: &str) -> Vec<serde_json::Map<String, Value>> {
    let mut cmd = tidemark(project);
    cmd.args(["sql", "--format", "json", "-c", sql]);
    let out = crate::sync::run(cmd).await;
    assert!(out.status.success(), "{sql}: {}", crate::sync::text(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    let rows: Vec<Value> =
        serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{e}: {text}"));
    rows.into_iter()
        .map(|r| r.as_object().cloned().unwrap())
        .collect()
}

fn number(row: &serde_json::Map<String, Value>, key: &str) -> Option<f64> {
    match row.get(key)? {
        Value::Null => None,
        Value::Number(n) => n.as_f64(),
        other => panic!("{key} is not a number: {other}"),
    }
}

fn text<'a>(row: &'a serde_json::Map<String, Value>, key: &str) -> Option<&'a str> {
    row.get(key).and_then(Value::as_str)
}

/// The metric each source is followed by: Google Ads reports no installs, only conversions.
fn metric_of(platform: Platform) -> &'static str {
    match platform {
        Platform::Meta => "installs",
        _ => "conversions",
    }
}

/// A source's metric for `day` as its simulator reported it at `age`, per campaign.
fn reported(world: &World, platform: Platform, day: NaiveDate, age: i64) -> BTreeMap<String, f64> {
    let truth = world.truth(platform);
    let now = day + Days::new(age as u64);
    let mut out = BTreeMap::new();
    for ad in &truth.ads {
        if let Some(m) = truth.reported(ad, day, now) {
            let value = match platform {
                Platform::Meta => m.installs as f64,
                _ => m.conversions_centi as f64 / 100.0,
            };
            *out.entry(ad.campaign_id.clone()).or_default() += value;
        }
    }
    out
}

/// The median (linear interpolation) of some values.
fn median(mut values: Vec<f64>) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => None,
        _ => {
            let position = 0.5 * (n - 1) as f64;
            let (below, above) = (position.floor() as usize, position.ceil() as usize);
            Some(values[below] + (values[above] - values[below]) * (position - below as f64))
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curves_projections_and_the_backtest_recover_the_simulators_maturity() {
    let first = d(FIRST);
    let sim = connectors::sim::start_local(SimConfig {
        today: first,
        meta_token: META_TOKEN.into(),
        google_token: GOOGLE_TOKEN.into(),
        google_developer_token: DEVELOPER_TOKEN.into(),
        meta_job_polls: 1,
        ..SimConfig::default()
    })
    .await
    .expect("start simulator");
    let world = &sim.world;
    let project = tempfile::tempdir().unwrap();
    if let Ok(keep) = std::env::var("TIDEMARK_TEST_KEEP") {
        println!("keeping the project at {keep}");
    }
    let windows = [
        (Platform::Meta, "meta", 28i64),
        (Platform::GoogleAds, "google_ads", 30),
    ];
    let accounts = |p| format!("{:?}", world.account_ids(p)).replace(['[', ']'], "");
    std::fs::write(
        project.path().join("tidemark.toml"),
        format!(
            r#"
warehouse = "wh"

[sources.meta]
base_url = "{base}"
access_token = {{ env = "SIM_META_TOKEN" }}
accounts = [{meta}]
window_days = 28
poll_interval = "5ms"

[sources.google_ads]
base_url = "{base}"
access_token = {{ env = "SIM_GOOGLE_TOKEN" }}
developer_token = {{ env = "SIM_DEV_TOKEN" }}
accounts = [{google}]
window_days = 30
"#,
            base = sim.base_url(),
            meta = accounts(Platform::Meta),
            google = accounts(Platform::GoogleAds),
        ),
    )
    .unwrap();

    // 40 daily syncs, the platforms' clock a day later each time.
    for i in 0..SYNCS {
        let today = first + Days::new(i);
        world.set_now(today);
        let mut cmd = tidemark(project.path());
        cmd.args(["sync", "--today", &today.to_string()]);
        let out = crate::sync::run(cmd).await;
        assert!(
            out.status.success(),
            "sync {today}: {}",
            crate::sync::text(&out)
        );
    }
    let last = first + Days::new(SYNCS - 1);
    if let Ok(keep) = std::env::var("TIDEMARK_TEST_KEEP") {
        let status = Command::new("cp")
            .args(["-r", &project.path().display().to_string(), &keep])
            .status();
        println!("copied to {keep}: {status:?}");
    }

    // 1. The curve per source equals the one the simulators' reports make, age by age.
    for (platform, source, window) in windows {
        let curve = query(
            project.path(),
            &format!(
                "SELECT * FROM maturity('ad_performance', '{}') ORDER BY source, age_days",
                metric_of(platform)
            ),
        )
        .await;
        let settled: Vec<NaiveDate> = (1..=SYNCS + 40)
            .map(|back| last - Days::new(back))
            .filter(|day| (last - *day).num_days() >= window)
            .collect();
        let rows: Vec<_> = curve
            .iter()
            .filter(|r| text(r, "source") == Some(source))
            .collect();
        assert_eq!(
            rows.last().and_then(|r| number(r, "age_days")),
            Some(window as f64),
            "{source}: ages run to the window"
        );
        for row in &rows {
            let age = number(row, "age_days").unwrap() as i64;
            let fractions: Vec<f64> = settled
                .iter()
                // Days the first sync already found older than `age` were not seen at it.
                .filter(|day| (first - **day).num_days() <= age)
                .filter_map(|day| {
                    let total = |age| reported(world, platform, *day, age).values().sum::<f64>();
                    let final_value = total(FINAL_AGE.max(window));
                    (final_value != 0.0).then(|| total(age) / final_value)
                })
                .collect();
            assert_eq!(
                number(row, "days_observed"),
                Some(fractions.len() as f64),
                "{source} age {age}"
            );
            let expected = median(fractions);
            let got = number(row, "median_fraction");
            match (expected, got) {
                (Some(e), Some(g)) => {
                    assert!((e - g).abs() < 1e-6, "{source} age {age}: {g} vs {e}")
                }
                (e, g) => assert_eq!(e, g, "{source} age {age}"),
            }
            // And the simulators' nominal curve (1 - 2^(-age/6)), within what late and
            // vanishing rows move it.
            if let Some(g) = got {
                let nominal = if age >= FINAL_AGE {
                    1.0
                } else {
                    1.0 - 0.5f64.powf(age as f64 / 6.0)
                };
                assert!(
                    (g - nominal).abs() < 0.08,
                    "{source} age {age}: {g} against the nominal {nominal}"
                );
            }
        }
    }

    // 2. Projected finals of the days still restating: within their 80% interval of what
    // the simulators finally report for at least 80% of campaign-days.
    let mut projected = query(
        project.path(),
        "SELECT * FROM projected('ad_performance', 'installs', by => 'campaign') WHERE source = 'meta'",
    )
    .await;
    projected.extend(
        query(
            project.path(),
            "SELECT * FROM projected('ad_performance', 'conversions', by => 'campaign') \
             WHERE source = 'google_ads'",
        )
        .await,
    );
    let (mut inside, mut immature) = (0usize, 0usize);
    for row in &projected {
        for key in [
            "current_value",
            "projected_value",
            "projected_low",
            "projected_high",
            "maturity",
        ] {
            if let Some(v) = number(row, key) {
                assert!(v.is_finite(), "{key} in {row:?}");
            }
        }
        let platform = match text(row, "source") {
            Some("meta") => Platform::Meta,
            _ => Platform::GoogleAds,
        };
        let day = d(text(row, "date").unwrap());
        let campaign = text(row, "campaign_id").unwrap().to_string();
        if row.get("settled") == Some(&Value::Bool(true)) {
            assert_eq!(text(row, "basis"), Some("settled"));
            continue;
        }
        immature += 1;
        let eventual = reported(world, platform, day, FINAL_AGE)
            .get(&campaign)
            .copied()
            .unwrap_or(0.0);
        let (low, high) = (number(row, "projected_low"), number(row, "projected_high"));
        if let (Some(low), Some(high)) = (low, high) {
            if low - 1e-6 <= eventual && eventual <= high + 1e-6 {
                inside += 1;
            }
        }
    }
    assert!(immature > 200, "{immature} immature campaign-days");
    let coverage = inside as f64 / immature as f64;
    println!("projection interval coverage: {inside}/{immature} = {coverage:.3}");
    assert!(
        coverage >= 0.8,
        "coverage {coverage:.3} below the nominal 80%"
    );

    // 3. The backtest beats "today's value is final" at every age before the values settle.
    let mut cmd = tidemark(project.path());
    cmd.args([
        "maturity", "backtest", "--metric", "installs", "--format", "json",
    ]);
    let out = crate::sync::run(cmd).await;
    assert!(out.status.success(), "{}", crate::sync::text(&out));
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert!(!rows.is_empty());
    for row in rows.iter().map(|r| r.as_object().unwrap()) {
        let age = number(row, "age_days").unwrap() as i64;
        let (projected, naive) = (
            number(row, "mdape_projected_pct").unwrap(),
            number(row, "mdape_naive_pct").unwrap(),
        );
        println!("backtest age {age}: projected {projected:.2}% naive {naive:.2}%");
        if age < FINAL_AGE {
            assert!(projected < naive, "age {age}: {projected} vs {naive}");
        } else {
            assert!(projected <= naive, "age {age}: {projected} vs {naive}");
        }
    }

    // 4. The terminal chart.
    let mut cmd = tidemark(project.path());
    cmd.args(["history", "--maturity", "conversions"]);
    let out = crate::sync::run(cmd).await;
    let chart = crate::sync::text(&out);
    assert!(out.status.success(), "{chart}");
    assert!(
        chart.contains("meta") && chart.contains("google_ads") && chart.contains("p10–p90"),
        "{chart}"
    );
    println!("{chart}");
}
