//! The console's pages. Each reads through the functions the CLI uses (status, the audit,
//! maturity, marts, the run journal), renders HTML, and shows what produced it.

use std::collections::BTreeSet;
use std::fmt::Write;
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Float64Type, Int64Type};
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Extension;
use chrono::NaiveDate;
use connectors::journal::Journal;
use connectors::status::DayState;
use engine::audit::{self, AuditRequest};
use engine::maturity::function::{compute, Kind, MaturityRequest};
use engine::maturity::Grain;
use engine::model::AD_PERFORMANCE;
use serde::Deserialize;
use sql::flight::auth::User;

use super::html::{cell, code_cell, escape, num, page, sql_block, table, STYLE};
use super::svg::{self, format_number, Point, Series};
use super::Console;

/// Runs listed on the runs page.
const RUNS_SHOWN: usize = 20;

/// What a page says about a table the user's grants leave out (without naming it).
const NOT_GRANTED: &str =
    "<p class=\"note\">Your grants do not include the data this page shows. Ask an admin to grant it.</p>";

fn error_html(e: impl std::fmt::Display) -> String {
    format!("<p class=\"bad\">{}</p>", escape(&e.to_string()))
}

pub async fn stylesheet() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE).into_response()
}

pub async fn not_found(Extension(user): Extension<User>) -> Response {
    (
        StatusCode::NOT_FOUND,
        Html(page(
            "Not found",
            "",
            &user.name,
            "<p>No such page. The navigation above lists them.</p>",
        )),
    )
        .into_response()
}

// ---------------------------------------------------------------------------------------------
// Overview

pub async fn overview(
    State(console): State<Arc<Console>>,
    Extension(user): Extension<User>,
) -> Html<String> {
    if !user.grants.allows(AD_PERFORMANCE) {
        return Html(page("Overview", "/", &user.name, NOT_GRANTED));
    }
    let today = console.today();
    let status = match connectors::status::status(&console.warehouse, &console.sources, today).await
    {
        Ok(status) => status,
        Err(e) => return Html(page("Overview", "/", &user.name, &error_html(e))),
    };
    let mut body = String::new();
    let _ = write!(
        body,
        "<p>Today is {today}. Each square is a day of the source's window (and a few settled \
         days before it), oldest first.</p><p class=\"legend\">"
    );
    for state in DayState::ALL {
        let _ = write!(body, "<span class=\"{0}\"></span>{0}", state.as_str());
    }
    body.push_str("</p>");
    let sources: BTreeSet<&str> = status.accounts.iter().map(|a| a.source.as_str()).collect();
    for source in sources {
        let _ = write!(body, "<h2>{}</h2>", escape(source));
        let mut rows = Vec::new();
        for account in status.accounts.iter().filter(|a| a.source == source) {
            let mut grid = String::from("<td><table class=\"grid\"><tr>");
            for day in &account.days {
                let _ = write!(
                    grid,
                    "<td class=\"cell {s}\" data-date=\"{d}\" data-state=\"{s}\" title=\"{d}: {s}\"></td>",
                    s = day.state.as_str(),
                    d = day.date
                );
            }
            grid.push_str("</tr></table></td>");
            let counts = DayState::ALL
                .iter()
                .filter_map(|s| {
                    let n = account.cells.get(s).copied().unwrap_or(0);
                    (n > 0).then(|| format!("{n} {}", s.as_str()))
                })
                .collect::<Vec<_>>()
                .join(", ");
            rows.push(vec![
                format!(
                    "<td class=\"account\" data-source=\"{}\" data-account=\"{}\">{}</td>",
                    escape(source),
                    escape(&account.account),
                    escape(&account.account)
                ),
                grid,
                cell(&counts),
                cell(&account.last_success.map_or("never".into(), |t| {
                    t.format("%Y-%m-%d %H:%M UTC").to_string()
                })),
                num(&account.lag_days.map_or("-".into(), |l| l.to_string())),
                cell(account.last_run.as_deref().unwrap_or("-")),
            ]);
        }
        body.push_str(&table(
            &[
                "account",
                "days",
                "counts",
                "last success",
                "lag (days)",
                "newest run",
            ],
            &rows,
        ));
    }
    let problems: Vec<_> = status
        .accounts
        .iter()
        .flat_map(|a| a.problems.iter().map(move |p| (a, p)))
        .collect();
    body.push_str("<h2>Failing and quarantined jobs</h2>");
    if problems.is_empty() {
        body.push_str("<p class=\"note\">None: every job of the newest runs loaded.</p>");
    } else {
        let rows: Vec<Vec<String>> = problems
            .iter()
            .map(|(a, p)| {
                vec![
                    format!("<td class=\"outcome {0}\">{0}</td>", escape(&p.outcome)),
                    cell(&a.source),
                    cell(&a.account),
                    cell(&format!("{}..{}", p.since, p.until)),
                    cell(&p.reason),
                    code_cell(&p.fix),
                ]
            })
            .collect();
        body.push_str(&table(
            &[
                "outcome",
                "source",
                "account",
                "days",
                "reason",
                "what fixes it",
            ],
            &rows,
        ));
    }
    body.push_str(&sql_block(&format!(
        "-- tidemark status --today {today} --format json\n\
         SELECT source, account_id, date, synced_at, settles_at, settled, run\n\
         FROM tidemark.slices ORDER BY source, account_id, date"
    )));
    Html(page("Overview", "/", &user.name, &body))
}

// ---------------------------------------------------------------------------------------------
// A day

#[derive(Debug, Deserialize)]
pub struct DayQuery {
    date: Option<NaiveDate>,
    table: Option<String>,
    source: Option<String>,
}

/// The text of a column of the audit, cast.
fn texts(batch: &RecordBatch, name: &str) -> Vec<Option<String>> {
    batch
        .column_by_name(name)
        .and_then(|c| cast(c, &DataType::Utf8).ok())
        .map(|c| {
            let c = c.as_string::<i32>();
            (0..c.len())
                .map(|i| (!c.is_null(i)).then(|| c.value(i).to_string()))
                .collect()
        })
        .unwrap_or_default()
}

pub async fn day(
    State(console): State<Arc<Console>>,
    Extension(user): Extension<User>,
    Query(query): Query<DayQuery>,
) -> Html<String> {
    let table_name = query.table.clone().unwrap_or_else(|| AD_PERFORMANCE.into());
    if !user.grants.allows(&table_name) {
        return Html(page("A day", "/day", &user.name, NOT_GRANTED));
    }
    let day = query
        .date
        .unwrap_or_else(|| console.today() - chrono::Days::new(2));
    let mut body = format!(
        "<form method=\"get\" action=\"/day\">Day <input type=\"date\" name=\"date\" value=\"{day}\"> \
         <input type=\"hidden\" name=\"table\" value=\"{t}\"> \
         Source <input name=\"source\" value=\"{s}\" placeholder=\"all\"> <button>Show</button></form>",
        t = escape(&table_name),
        s = escape(query.source.as_deref().unwrap_or_default()),
    );
    let request = AuditRequest {
        table: table_name.clone(),
        day,
        source: query.source.clone().filter(|s| !s.is_empty()),
        account: None,
    };
    let batches = match audit::restatements(&console.warehouse, &request).await {
        Ok(b) => b,
        Err(e) => return Html(page("A day", "/day", &user.name, &(body + &error_html(e)))),
    };
    let points = match crate::commands::history::totals(&batches) {
        Ok(p) => p,
        Err(e) => return Html(page("A day", "/day", &user.name, &(body + &error_html(e)))),
    };
    let _ = write!(
        body,
        "<h2>{} · {day}: the day's totals after each sync that changed it</h2>",
        escape(&table_name)
    );
    let when = |ms: Option<i64>| {
        ms.and_then(chrono::DateTime::from_timestamp_millis)
            .map_or("?".into(), |t| t.format("%m-%d %H:%M").to_string())
    };
    let series = |name: &str, colour, value: fn(&crate::commands::history::Point) -> f64| Series {
        name: name.into(),
        colour,
        points: points
            .iter()
            .map(|p| Point {
                x: p.version as f64,
                y: value(p),
                label: format!("v{} {}", p.version, when(p.committed_ms)),
                data: vec![
                    ("version", p.version.to_string()),
                    ("value", value(p).to_string()),
                ],
            })
            .collect(),
        band: None,
    };
    body.push_str(&svg::lines(
        "day-chart",
        &[
            series("installs", "#2f6fd6", |p| p.installs),
            series("spend", "#d6812f", |p| p.spend),
        ],
        true,
        "after each version",
    ));
    // What changed, per campaign.
    let mut rows = Vec::new();
    for batch in &batches {
        let columns: Vec<Vec<Option<String>>> = [
            "version",
            "change",
            "source",
            "account_id",
            "campaign_id",
            "campaign_name",
            "installs",
            "installs_delta",
            "spend",
            "spend_delta",
        ]
        .iter()
        .map(|c| texts(batch, c))
        .collect();
        for i in 0..batch.num_rows() {
            rows.push(
                columns
                    .iter()
                    .enumerate()
                    .map(|(k, c)| {
                        let v = c.get(i).cloned().flatten().unwrap_or_default();
                        if k >= 6 || k == 0 {
                            num(&v)
                        } else {
                            cell(&v)
                        }
                    })
                    .collect(),
            );
        }
    }
    body.push_str("<h2>Per campaign</h2>");
    if rows.is_empty() {
        body.push_str("<p class=\"note\">No readable version has rows for this day.</p>");
    } else {
        body.push_str(&table(
            &[
                "version",
                "change",
                "source",
                "account",
                "campaign",
                "name",
                "installs",
                "Δ installs",
                "spend",
                "Δ spend",
            ],
            &rows,
        ));
    }
    body.push_str(&sql_block(&format!(
        "SELECT * FROM restatements('{}', date => '{day}'{})\n-- tidemark history {day} --table {}{} --format json",
        table_name.replace('\'', "''"),
        request
            .source
            .as_ref()
            .map(|s| format!(", source => '{}'", s.replace('\'', "''")))
            .unwrap_or_default(),
        table_name,
        request
            .source
            .as_ref()
            .map(|s| format!(" --source {s}"))
            .unwrap_or_default(),
    )));
    Html(page("A day", "/day", &user.name, &body))
}

// ---------------------------------------------------------------------------------------------
// Maturity

#[derive(Debug, Deserialize)]
pub struct MaturityQuery {
    table: Option<String>,
    metric: Option<String>,
}

fn floats(batch: &RecordBatch, name: &str) -> Vec<Option<f64>> {
    batch
        .column_by_name(name)
        .map(|c| {
            let c = c.as_primitive::<Float64Type>();
            (0..c.len())
                .map(|i| (!c.is_null(i)).then(|| c.value(i)))
                .collect()
        })
        .unwrap_or_default()
}

fn integers(batch: &RecordBatch, name: &str) -> Vec<i64> {
    batch
        .column_by_name(name)
        .map(|c| c.as_primitive::<Int64Type>().values().to_vec())
        .unwrap_or_default()
}

pub async fn maturity(
    State(console): State<Arc<Console>>,
    Extension(user): Extension<User>,
    Query(query): Query<MaturityQuery>,
) -> Html<String> {
    let table_name = query.table.clone().unwrap_or_else(|| AD_PERFORMANCE.into());
    if !user.grants.allows(&table_name) {
        return Html(page("Maturity", "/maturity", &user.name, NOT_GRANTED));
    }
    let metric = query.metric.clone().unwrap_or_else(|| "installs".into());
    let mut body =
        String::from("<form method=\"get\" action=\"/maturity\">Metric <select name=\"metric\">");
    for (m, _) in audit::METRICS {
        let selected = if m == metric { " selected" } else { "" };
        let _ = write!(body, "<option{selected}>{m}</option>");
    }
    let _ = write!(
        body,
        "</select><input type=\"hidden\" name=\"table\" value=\"{}\"> <button>Show</button></form>",
        escape(&table_name)
    );
    let request = |kind| MaturityRequest {
        kind,
        table: table_name.clone(),
        metric: metric.clone(),
        by: Grain::Source,
        since: None,
        curve: Grain::Source,
    };
    let curve = match compute(&console.warehouse, &request(Kind::Curve)).await {
        Ok(b) => b,
        Err(e) => {
            return Html(page(
                "Maturity",
                "/maturity",
                &user.name,
                &(body + &error_html(e)),
            ))
        }
    };
    let sources = texts(&curve, "source");
    let (ages, days) = (
        integers(&curve, "age_days"),
        integers(&curve, "days_observed"),
    );
    let (median, p10, p90) = (
        floats(&curve, "median_fraction"),
        floats(&curve, "p10_fraction"),
        floats(&curve, "p90_fraction"),
    );
    let names: BTreeSet<String> = sources.iter().flatten().cloned().collect();
    for source in &names {
        let rows: Vec<usize> = (0..curve.num_rows())
            .filter(|&i| sources[i].as_deref() == Some(source.as_str()) && median[i].is_some())
            .collect();
        let _ = write!(body, "<h2>{} · {}</h2>", escape(source), escape(&metric));
        if rows.is_empty() {
            body.push_str("<p class=\"note\">No settled day reports it yet.</p>");
            continue;
        }
        let series = Series {
            name: "median share of final".into(),
            colour: "#2f6fd6",
            points: rows
                .iter()
                .map(|&i| Point {
                    x: ages[i] as f64,
                    y: median[i].unwrap_or(0.0),
                    label: format!("{}d", ages[i]),
                    data: vec![
                        ("age", ages[i].to_string()),
                        ("median", median[i].unwrap_or(0.0).to_string()),
                        ("days", days[i].to_string()),
                    ],
                })
                .collect(),
            band: Some(
                rows.iter()
                    .map(|&i| (p10[i].unwrap_or(0.0), p90[i].unwrap_or(0.0)))
                    .collect(),
            ),
        };
        body.push_str(&svg::lines(
            &format!("curve-{}", escape(source)),
            &[series],
            false,
            "share of final value by age (days); band: 10th–90th percentile",
        ));
    }
    let projected = match compute(&console.warehouse, &request(Kind::Projected)).await {
        Ok(b) => b,
        Err(e) => {
            return Html(page(
                "Maturity",
                "/maturity",
                &user.name,
                &(body + &error_html(e)),
            ))
        }
    };
    body.push_str("<h2>Projected final values of the days still restating</h2>");
    let (p_sources, p_dates, p_basis) = (
        texts(&projected, "source"),
        texts(&projected, "date"),
        texts(&projected, "basis"),
    );
    let p_ages = integers(&projected, "age_days");
    let value = |name| floats(&projected, name);
    let (current, maturity, value_p, low, high) = (
        value("current_value"),
        value("maturity"),
        value("projected_value"),
        value("projected_low"),
        value("projected_high"),
    );
    let show = |v: Option<f64>| v.map_or("–".to_string(), format_number);
    let rows: Vec<Vec<String>> = (0..projected.num_rows())
        .map(|i| {
            vec![
                cell(p_sources[i].as_deref().unwrap_or_default()),
                cell(p_dates[i].as_deref().unwrap_or_default()),
                num(&p_ages[i].to_string()),
                num(&show(current[i])),
                num(&maturity[i].map_or("–".into(), |m| format!("{:.1}%", m * 100.0))),
                num(&show(value_p[i])),
                num(&match (low[i], high[i]) {
                    (None, None) => "–".to_string(),
                    (l, h) => format!("{} – {}", show(l), show(h)),
                }),
                cell(p_basis[i].as_deref().unwrap_or_default()),
            ]
        })
        .collect();
    body.push_str(&table(
        &[
            "source",
            "day",
            "age",
            "now",
            "maturity",
            "projected",
            "80% interval",
            "basis",
        ],
        &rows,
    ));
    body.push_str(&sql_block(&format!(
        "SELECT * FROM maturity('{t}', '{m}');\nSELECT * FROM projected('{t}', '{m}');\n-- tidemark history --maturity {m} --table {t}; tidemark maturity backtest --metric {m}",
        t = table_name.replace('\'', "''"),
        m = metric.replace('\'', "''"),
    )));
    Html(page("Maturity", "/maturity", &user.name, &body))
}

// ---------------------------------------------------------------------------------------------
// Marts

pub async fn marts(
    State(console): State<Arc<Console>>,
    Extension(user): Extension<User>,
) -> Html<String> {
    let definitions = match engine::marts::load_dir(&console.project.join("marts")) {
        Ok(d) => d,
        Err(e) => return Html(page("Marts", "/marts", &user.name, &error_html(e))),
    };
    let graph = match engine::marts::MartGraph::build(&definitions) {
        Ok(g) => g,
        Err(e) => return Html(page("Marts", "/marts", &user.name, &error_html(e))),
    };
    let visible: Vec<_> = definitions
        .iter()
        .filter(|m| user.grants.allows(&m.name))
        .collect();
    if visible.is_empty() {
        return Html(page("Marts", "/marts", &user.name, NOT_GRANTED));
    }
    let session = match engine::WarehouseSession::new(console.warehouse.clone()).await {
        Ok(s) => s,
        Err(e) => return Html(page("Marts", "/marts", &user.name, &error_html(e))),
    };
    let today = console.today();
    let mut body = String::new();
    for mart in visible {
        let state = engine::marts::read_state(&console.warehouse, &mart.name)
            .await
            .unwrap_or_default();
        let inputs = &graph.inputs[&mart.name];
        let shown: Vec<String> = inputs
            .iter()
            .filter(|i| user.grants.allows(i))
            .map(|i| format!("<code>{}</code>", escape(i)))
            .collect();
        let hidden = inputs.len() - shown.len();
        let _ = write!(
            body,
            "<h2 class=\"mart\" data-mart=\"{n}\">{n}</h2><p>{d}</p><p>reads {inputs}{more} · \
             version {v} · {rows} rows · refreshed {when}</p>",
            n = escape(&mart.name),
            d = escape(mart.header.description.as_deref().unwrap_or_default()),
            inputs = if shown.is_empty() {
                "–".to_string()
            } else {
                shown.join(" → ")
            },
            more = if hidden > 0 {
                format!(" and {hidden} input(s) outside your grants")
            } else {
                String::new()
            },
            v = state.version.map_or("-".into(), |v| v.to_string()),
            rows = state.rows,
            when = state.refreshed_at.map_or("never".into(), |t| t
                .format("%Y-%m-%d %H:%M UTC")
                .to_string()),
        );
        match engine::marts::run_checks(&session, mart, today).await {
            Ok(checks) if checks.is_empty() => {
                body.push_str("<p class=\"note\">No data tests.</p>")
            }
            Ok(checks) => {
                let rows: Vec<Vec<String>> = checks
                    .iter()
                    .map(|c| {
                        vec![
                            format!(
                                "<td class=\"{}\">{}</td>",
                                if c.passed { "pass" } else { "bad" },
                                if c.passed { "PASS" } else { "FAIL" }
                            ),
                            cell(&c.test),
                            cell(&c.message),
                            format!("<td><pre>{}</pre></td>", escape(&c.samples)),
                        ]
                    })
                    .collect();
                body.push_str(&table(&["", "test", "result", "failing rows"], &rows));
            }
            Err(e) => body.push_str(&error_html(e)),
        }
    }
    body.push_str(&sql_block(
        "-- tidemark mart list --format json; tidemark mart test --format json\nSHOW TABLES",
    ));
    Html(page("Marts", "/marts", &user.name, &body))
}

// ---------------------------------------------------------------------------------------------
// Runs

pub async fn runs(
    State(console): State<Arc<Console>>,
    Extension(user): Extension<User>,
) -> Html<String> {
    if !user.grants.allows(AD_PERFORMANCE) {
        return Html(page("Runs", "/runs", &user.name, NOT_GRANTED));
    }
    let store = console.warehouse.storage().store();
    let runs = match Journal::started_runs(&store).await {
        Ok(r) => r,
        Err(e) => return Html(page("Runs", "/runs", &user.name, &error_html(e))),
    };
    let mut rows = Vec::new();
    let mut problems = Vec::new();
    for (journal, plan) in runs.iter().rev().take(RUNS_SHOWN) {
        let run = journal.run();
        let committed = journal.records().await.map(|r| r.len()).unwrap_or(0);
        let unloaded = journal.unloaded().await.unwrap_or_default();
        let http = journal.http().await.unwrap_or_default();
        let total = http
            .iter()
            .fold(connectors::throttle::StatsSnapshot::default(), |a, r| {
                a + r.http
            });
        rows.push(vec![
            format!("<td class=\"run\" data-run=\"{0}\">{0}</td>", escape(run)),
            cell(&plan.created_at.format("%Y-%m-%d %H:%M UTC").to_string()),
            cell(&plan.today.to_string()),
            num(&plan.jobs.len().to_string()),
            num(&committed.to_string()),
            num(&unloaded.len().to_string()),
            num(&total.requests.to_string()),
            num(&total.throttled.to_string()),
            num(&total.retried.to_string()),
            num(&format!("{:.1}", total.waited_ms as f64 / 1000.0)),
        ]);
        for u in unloaded {
            problems.push(vec![
                cell(run),
                cell(&u.outcome),
                cell(&format!(
                    "{}/{} {}..{}",
                    u.unit.source, u.unit.account, u.unit.since, u.unit.until
                )),
                cell(&u.reason),
                code_cell(&format!("`tidemark sync --resume {run}`")),
            ]);
        }
    }
    let mut body = table(
        &[
            "run",
            "started",
            "today",
            "jobs",
            "committed",
            "not loaded",
            "requests",
            "throttled",
            "retried",
            "waited (s)",
        ],
        &rows,
    );
    body.push_str("<h2>Jobs that did not load</h2>");
    if problems.is_empty() {
        body.push_str("<p class=\"note\">None.</p>");
    } else {
        body.push_str(&table(
            &["run", "outcome", "job", "reason", "finish it with"],
            &problems,
        ));
    }
    body.push_str(&sql_block(
        "-- the run journal: _tidemark/runs/<run>/ (plan.json, jobs/, unloaded/, http/)\n\
         -- tidemark status --format json",
    ));
    Html(page("Runs", "/runs", &user.name, &body))
}
