//! The web console: a read-only view of a warehouse for the people who run tidemark. Is the
//! data fresh, complete and settling as expected? Served by `tidemark serve` and `tidemark run`
//! on `[console] addr` (its own HTTP address; Flight stays gRPC) with Flight SQL's users,
//! passwords and grants ([`session`]).
//!
//! Pages are rendered on the server from the same functions the CLI calls, and each shows the
//! SQL (or command) behind it:
//! - `/` overview: per source and account, the window's days coloured by state
//!   (`connectors::status`, as `tidemark status`), failing and quarantined jobs with their fix.
//! - `/day`: how one day grew sync by sync (the `tidemark history` chart, as SVG) and what
//!   changed per campaign (`restatements(…)`).
//! - `/maturity`: curves and projected finals (`maturity(…)`, `projected(…)`).
//! - `/marts`: inputs, last refresh, version, rows and data tests with failing rows.
//! - `/runs`: recent runs, their jobs, what did not load, requests, throttling and retries.
//!
//! A user sees only what their grants allow: pages about a table they may not read say so
//! without naming it, and lists leave such tables out.

mod html;
mod pages;
pub mod session;
mod svg;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::routing::{get, post};
use axum::Router;
use chrono::NaiveDate;
use connectors::config::ResolvedSource;
use engine::Warehouse;
use serde::Deserialize;
use sql::flight::auth::Authenticator;
use sql::flight::UserConfig;

/// `[console]` in tidemark.toml.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleConfig {
    /// Where the console listens, e.g. "127.0.0.1:8480".
    pub addr: String,
    /// How long a login lasts (default 8h).
    #[serde(default = "default_session_ttl")]
    pub session_ttl: String,
}

fn default_session_ttl() -> String {
    "8h".into()
}

impl ConsoleConfig {
    /// `[console]` of tidemark.toml's sections, when there is one.
    pub fn from_toml(sections: &BTreeMap<String, toml::Value>) -> anyhow::Result<Option<Self>> {
        let Some(value) = sections.get("console") else {
            return Ok(None);
        };
        let config: ConsoleConfig = value.clone().try_into().map_err(|e: toml::de::Error| {
            anyhow::anyhow!("tidemark.toml [console]: {}", e.message())
        })?;
        Ok(Some(config))
    }

    pub fn ttl(&self) -> anyhow::Result<Duration> {
        sql::flight::config::parse_duration(&self.session_ttl)
            .map_err(|e| anyhow::anyhow!("tidemark.toml [console] session_ttl: {e}"))
    }
}

/// What every page reads.
pub struct Console {
    pub warehouse: Warehouse,
    pub auth: Arc<Authenticator>,
    pub session_ttl: Duration,
    /// The project directory (its `marts/`).
    pub project: PathBuf,
    pub sources: Vec<ResolvedSource>,
}

impl Console {
    /// Today, as `tidemark status` takes it (`TIDEMARK_TODAY`, or the UTC date).
    pub fn today(&self) -> NaiveDate {
        std::env::var("TIDEMARK_TODAY")
            .ok()
            .and_then(|d| d.parse().ok())
            .unwrap_or_else(|| chrono::Utc::now().date_naive())
    }
}

/// Start the console on `config.addr` with `users`; returns the address it listens on.
pub async fn start(
    config: &ConsoleConfig,
    users: &BTreeMap<String, UserConfig>,
    warehouse: Warehouse,
    project: PathBuf,
    sources: Vec<ResolvedSource>,
) -> anyhow::Result<SocketAddr> {
    anyhow::ensure!(
        !users.is_empty(),
        "[console] needs users to log in: add one with `tidemark user add NAME --grant '*'`"
    );
    let session_ttl = config.ttl()?;
    let auth = Arc::new(Authenticator::new(users, session_ttl).map_err(anyhow::Error::msg)?);
    let console = Arc::new(Console {
        warehouse,
        auth,
        session_ttl,
        project,
        sources,
    });
    let addr: SocketAddr = config.addr.parse().with_context(|| {
        format!(
            "[console] addr '{}' is not an address like 127.0.0.1:8480",
            config.addr
        )
    })?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("the console cannot listen on {addr}"))?;
    let bound = listener.local_addr()?;
    let app = router(console);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "the console stopped");
        }
    });
    tracing::info!(addr = %bound, "serving the web console");
    Ok(bound)
}

/// Every path: the login form and logout, then the pages and the stylesheet behind the login.
fn router(console: Arc<Console>) -> Router {
    let pages = Router::new()
        .route("/", get(pages::overview))
        .route("/day", get(pages::day))
        .route("/maturity", get(pages::maturity))
        .route("/marts", get(pages::marts))
        .route("/runs", get(pages::runs))
        .route("/console.css", get(pages::stylesheet))
        .fallback(pages::not_found)
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&console),
            session::require_login,
        ));
    Router::new()
        .route("/login", get(session::login_form).post(session::login))
        .route("/logout", post(session::logout))
        .merge(pages)
        .with_state(console)
}
