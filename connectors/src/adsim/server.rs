//! The simulated platform's HTTP API.
//!
//! ```text
//! GET  /v1/accounts                                   accounts the token can read
//! GET  /v1/accounts/{id}/report?since=D&until=D[&page_size=N][&cursor=C]
//!                                                     ad-level daily rows, cursor-paged
//! GET  /_sim/clock   POST /_sim/clock {"now": "D"}    the simulated date ("today")
//! ```
//! Requests need `Authorization: Bearer <token>`. Numbers arrive as strings and money as
//! micros, as real platforms send them; errors are JSON `{"error": {"code", "message"}}`.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::NaiveDate;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::net::TcpListener;

use super::truth::Truth;

/// Rows per page unless the client asks otherwise.
const DEFAULT_PAGE_SIZE: usize = 200;
/// The largest page the API serves.
const MAX_PAGE_SIZE: usize = 1000;
/// How far back the API serves reports (the platform's restatement window and then some).
const MAX_LOOKBACK_DAYS: i64 = 90;

/// Shared server state.
pub struct SimState {
    truth: Truth,
    token: String,
    now: RwLock<NaiveDate>,
}

impl SimState {
    pub fn new(truth: Truth, token: impl Into<String>, now: NaiveDate) -> Arc<Self> {
        Arc::new(SimState {
            truth,
            token: token.into(),
            now: RwLock::new(now),
        })
    }

    /// The simulated date.
    pub fn now(&self) -> NaiveDate {
        *self.now.read().expect("clock lock")
    }

    /// Move the simulated date.
    pub fn set_now(&self, now: NaiveDate) {
        *self.now.write().expect("clock lock") = now;
    }

    /// The ground truth behind the API.
    pub fn truth(&self) -> &Truth {
        &self.truth
    }
}

/// The API's routes over `state`.
pub fn router(state: Arc<SimState>) -> Router {
    Router::new()
        .route("/v1/accounts", get(accounts))
        .route("/v1/accounts/{id}/report", get(report))
        .route("/_sim/clock", get(get_clock).post(set_clock))
        .with_state(state)
}

/// A simulator serving on a loopback port until dropped.
pub struct RunningSim {
    pub addr: SocketAddr,
    pub state: Arc<SimState>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningSim {
    /// Base URL, e.g. `http://127.0.0.1:41234`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for RunningSim {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serve `state` on `listener` until the task is aborted.
pub async fn serve(listener: TcpListener, state: Arc<SimState>) -> std::io::Result<()> {
    axum::serve(listener, router(state)).await
}

/// Bind `addr` (port 0 picks a free port) and serve in the background.
pub async fn spawn(addr: &str, state: Arc<SimState>) -> std::io::Result<RunningSim> {
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let served = Arc::clone(&state);
    let task = tokio::spawn(async move {
        if let Err(e) = serve(listener, served).await {
            tracing::error!(error = %e, "simulator stopped");
        }
    });
    Ok(RunningSim { addr, state, task })
}

fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (
        status,
        Json(json!({"error": {"code": code, "message": message.into()}})),
    )
        .into_response()
}

/// `None` when the bearer token is right, else the error response to send.
fn denied(state: &SimState, headers: &HeaderMap) -> Option<Response> {
    let given = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(token) if token == state.token => None,
        Some(_) => Some(error(
            StatusCode::UNAUTHORIZED,
            "INVALID_TOKEN",
            "the access token is invalid or expired",
        )),
        None => Some(error(
            StatusCode::UNAUTHORIZED,
            "MISSING_TOKEN",
            "send Authorization: Bearer <token>",
        )),
    }
}

async fn accounts(State(state): State<Arc<SimState>>, headers: HeaderMap) -> Response {
    if let Some(response) = denied(&state, &headers) {
        return response;
    }
    Json(json!({"data": state.truth.accounts})).into_response()
}

#[derive(Debug, Deserialize)]
struct ReportQuery {
    since: String,
    until: String,
    page_size: Option<usize>,
    cursor: Option<String>,
}

async fn report(
    State(state): State<Arc<SimState>>,
    Path(account_id): Path<String>,
    Query(query): Query<ReportQuery>,
    headers: HeaderMap,
) -> Response {
    if let Some(response) = denied(&state, &headers) {
        return response;
    }
    let Some((account_index, account)) = state.truth.account(&account_id) else {
        return error(
            StatusCode::NOT_FOUND,
            "UNKNOWN_ACCOUNT",
            format!("no account {account_id}"),
        );
    };
    let parse = |s: &str| s.parse::<NaiveDate>();
    let (Ok(since), Ok(until)) = (parse(&query.since), parse(&query.until)) else {
        return error(
            StatusCode::BAD_REQUEST,
            "INVALID_DATE",
            "since and until must be YYYY-MM-DD",
        );
    };
    let now = state.now();
    if since > until {
        return error(
            StatusCode::BAD_REQUEST,
            "INVALID_RANGE",
            "since is after until",
        );
    }
    if (now - since).num_days() > MAX_LOOKBACK_DAYS {
        return error(
            StatusCode::BAD_REQUEST,
            "RANGE_TOO_OLD",
            format!("reports reach back {MAX_LOOKBACK_DAYS} days"),
        );
    }
    let page_size = query
        .page_size
        .unwrap_or(DEFAULT_PAGE_SIZE)
        .clamp(1, MAX_PAGE_SIZE);
    let offset: usize = match query.cursor.as_deref().map(str::parse) {
        None => 0,
        Some(Ok(offset)) => offset,
        Some(Err(_)) => return error(StatusCode::BAD_REQUEST, "INVALID_CURSOR", "unknown cursor"),
    };

    let truth = &state.truth;
    let mut rows: Vec<Value> = Vec::new();
    let mut day = since;
    while day <= until {
        for ad in truth
            .ads
            .iter()
            .filter(|ad| ad.account_index == account_index)
        {
            if let Some(m) = truth.reported(ad, day, now) {
                rows.push(json!({
                    "date": day.to_string(),
                    "campaign_id": ad.campaign_id,
                    "campaign_name": ad.campaign_name,
                    "ad_group_id": ad.ad_group_id,
                    "ad_group_name": ad.ad_group_name,
                    "ad_id": ad.ad_id,
                    "ad_name": ad.ad_name,
                    "impressions": m.impressions.to_string(),
                    "clicks": m.clicks.to_string(),
                    "spend_micros": m.spend_micros.to_string(),
                    "installs": m.installs.to_string(),
                    "conversions": format!("{}.{:02}", m.conversions_centi / 100, m.conversions_centi % 100),
                    "revenue": format!("{}.{:06}", m.revenue_micros / 1_000_000, m.revenue_micros % 1_000_000),
                }));
            }
        }
        day = day.succ_opt().expect("date in range");
    }
    let page: Vec<Value> = rows.iter().skip(offset).take(page_size).cloned().collect();
    let next = offset + page.len();
    let paging = if next < rows.len() {
        json!({"next_cursor": next.to_string()})
    } else {
        json!({})
    };
    Json(json!({
        "account": {"id": account.id, "name": account.name, "currency": account.currency},
        "data": page,
        "paging": paging,
    }))
    .into_response()
}

async fn get_clock(State(state): State<Arc<SimState>>) -> Response {
    Json(json!({"now": state.now().to_string()})).into_response()
}

#[derive(Debug, Deserialize)]
struct Clock {
    now: NaiveDate,
}

async fn set_clock(State(state): State<Arc<SimState>>, Json(clock): Json<Clock>) -> Response {
    state.set_now(clock.now);
    Json(json!({"now": clock.now.to_string()})).into_response()
}
