//! `tidemark doctor`: what a user runs when something is off. Checks the project in front of
//! it, one line per check: the config parses, every secret resolves (never printed), each
//! source answers one cheap authenticated call, its API version is alive, the warehouse is
//! reachable and writable, S3 enforces conditional writes, Redis answers when a queue is
//! configured, and the Flight users' config is valid. Exit 1 when any line is red.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use chrono::NaiveDate;
use clap::{Args, ValueEnum};
use connectors::api_versions::{self, Verdict};
use connectors::config::{ProjectConfig, ResolvedSource};
use connectors::Purpose;
use object_store::ObjectStoreExt;
use serde::Serialize;

use crate::project::ProjectArgs;

/// Arguments of `tidemark doctor`.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    #[command(flatten)]
    pub project: ProjectArgs,

    /// The Redis Streams queue the workers use (redis://host:port), checked when given.
    #[arg(long, env = "TIDEMARK_QUEUE")]
    pub queue: Option<String>,

    /// Judge API versions and probe the platforms as of this day. Default: today, UTC.
    #[arg(long, env = "TIDEMARK_TODAY")]
    pub today: Option<NaiveDate>,

    /// Output: one line per check for people, or a JSON array.
    #[arg(long, value_enum, default_value_t = DoctorFormat::Text)]
    pub format: DoctorFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DoctorFormat {
    Text,
    Json,
}

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Ok,
    /// Works today, needs attention soon (an API version near its sunset).
    Warn,
    Fail,
    /// Not applicable to this project (no queue configured) or not reachable because an
    /// earlier check failed.
    Skip,
}

/// One line of the report.
#[derive(Debug, Serialize)]
pub struct Check {
    pub check: String,
    pub state: State,
    pub detail: String,
}

impl Check {
    fn new(check: impl Into<String>, state: State, detail: impl Into<String>) -> Self {
        Check {
            check: check.into(),
            state,
            detail: detail.into(),
        }
    }
}

/// A probe must not hang the doctor: a platform that does not answer is a red line.
const PROBE_TIMEOUT: Duration = Duration::from_secs(60);

pub async fn run(args: DoctorArgs) -> anyhow::Result<ExitCode> {
    let today = args
        .today
        .unwrap_or_else(|| chrono::Utc::now().date_naive());
    let checks = examine(&args, today).await;
    match args.format {
        DoctorFormat::Json => crate::outln!("{}", serde_json::to_string_pretty(&checks)?),
        DoctorFormat::Text => print_lines(&checks),
    }
    let failed = checks.iter().any(|c| c.state == State::Fail);
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Every check, in the order a user would fix them.
async fn examine(args: &DoctorArgs, today: NaiveDate) -> Vec<Check> {
    let mut checks = Vec::new();
    let path = args.project.project.join("tidemark.toml");
    let config = match args.project.config() {
        Ok(config) => {
            checks.push(Check::new(
                "config",
                State::Ok,
                format!("{} parses", path.display()),
            ));
            config
        }
        Err(e) => {
            checks.push(Check::new("config", State::Fail, e.to_string()));
            return checks;
        }
    };
    match config.sources() {
        Ok(sources) => {
            for source in &sources {
                check_source(source, today, &mut checks).await;
            }
        }
        Err(e) => checks.push(Check::new("sources", State::Fail, e)),
    }
    check_warehouse(args, &config, &mut checks).await;
    checks.push(match &args.queue {
        None => Check::new(
            "queue",
            State::Skip,
            "none configured (--queue / TIDEMARK_QUEUE)",
        ),
        Some(url) => match connectors::queue::ping(url).await {
            Ok(server) => Check::new("queue", State::Ok, format!("{server} answers PING")),
            Err(e) => Check::new(
                "queue",
                State::Fail,
                format!("{e}; start Redis there or fix --queue"),
            ),
        },
    });
    checks.push(check_flight_users(&config));
    checks
}

/// Secrets, API version and one authenticated call of one source.
async fn check_source(source: &ResolvedSource, today: NaiveDate, checks: &mut Vec<Check>) {
    let name = &source.name;
    let clients = connectors::build_sources(std::slice::from_ref(source), Purpose::Fetch);
    let client = match clients {
        Ok(mut clients) => {
            checks.push(Check::new(
                format!("secrets {name}"),
                State::Ok,
                secret_origins(source),
            ));
            clients.pop()
        }
        Err(e) => {
            checks.push(Check::new(
                format!("secrets {name}"),
                State::Fail,
                e.to_string(),
            ));
            None
        }
    };

    let version = source.api_version();
    let verdict = api_versions::check(source.platform, &version, today);
    let advice = api_versions::advice(name, source.platform, &version, &verdict);
    let (state, detail) = match verdict {
        Verdict::Live => (State::Ok, format!("{version} is live")),
        Verdict::SunsetSoon { .. } | Verdict::Unknown => (State::Warn, advice.unwrap_or_default()),
        Verdict::Sunset { .. } => (State::Fail, advice.unwrap_or_default()),
    };
    let version_alive = state != State::Fail;
    checks.push(Check::new(format!("api version {name}"), state, detail));

    let label = format!("source {name}");
    let (Some(client), Some(account)) = (client, source.account_ids().into_iter().next()) else {
        checks.push(Check::new(
            label,
            State::Skip,
            "not called: its secrets did not resolve",
        ));
        return;
    };
    if !version_alive {
        checks.push(Check::new(
            label,
            State::Skip,
            "not called: its API version is switched off",
        ));
        return;
    }
    let yesterday = today.pred_opt().unwrap_or(today);
    let probe = tokio::time::timeout(PROBE_TIMEOUT, client.probe(&account, yesterday)).await;
    checks.push(match probe {
        Ok(Ok(())) => Check::new(
            label,
            State::Ok,
            format!(
                "{} answered for account {account} ({version})",
                source.base_url()
            ),
        ),
        Ok(Err(e)) => Check::new(label, State::Fail, e.to_string()),
        Err(_) => Check::new(
            label,
            State::Fail,
            format!(
                "{} did not answer within {}s",
                source.base_url(),
                PROBE_TIMEOUT.as_secs()
            ),
        ),
    });
}

/// Where a source's secrets come from (never their values).
fn secret_origins(source: &ResolvedSource) -> String {
    let c = &source.config;
    let mut parts = Vec::new();
    if let Some(token) = &c.access_token {
        parts.push(format!("access_token from {}", token.describe()));
    }
    if let Some(oauth) = &c.oauth {
        parts.push(format!(
            "oauth.refresh_token from {}",
            oauth.refresh_token.describe()
        ));
        parts.push(format!(
            "oauth.client_secret from {}",
            oauth.client_secret.describe()
        ));
    }
    if let Some(token) = &c.developer_token {
        parts.push(format!("developer_token from {}", token.describe()));
    }
    format!("resolved: {}", parts.join(", "))
}

/// Reachable, writable, and on S3 enforcing `If-None-Match: *` (the engine's own check).
async fn check_warehouse(args: &DoctorArgs, config: &ProjectConfig, checks: &mut Vec<Check>) {
    let url = match args.project.warehouse_url(config) {
        Ok(url) => url,
        Err(e) => {
            checks.push(Check::new("warehouse", State::Fail, e.to_string()));
            return;
        }
    };
    let warehouse = match args.project.open(config).await {
        Ok(warehouse) => warehouse,
        Err(e) => {
            checks.push(Check::new("warehouse", State::Fail, crate::describe(&e)));
            checks.push(Check::new(
                "conditional writes",
                State::Skip,
                "warehouse unreachable",
            ));
            return;
        }
    };
    let storage = warehouse.storage();
    let probe =
        object_store::path::Path::from(format!("_tidemark/checks/doctor-{}", std::process::id()));
    let store = storage.store();
    let written = async {
        store.put(&probe, "doctor".into()).await?;
        store.delete(&probe).await
    }
    .await;
    checks.push(match written {
        Ok(()) => Check::new(
            "warehouse",
            State::Ok,
            format!("{url} is reachable and writable"),
        ),
        Err(e) => Check::new(
            "warehouse",
            State::Fail,
            format!("{url} answers but refuses a write to {probe}: {e}"),
        ),
    });
    checks.push(match storage.location() {
        engine::storage::Location::Local(_) => Check::new(
            "conditional writes",
            State::Ok,
            "local directory: commits are created atomically",
        ),
        engine::storage::Location::S3 { .. } => match storage.check_conditional_put().await {
            Ok(()) => Check::new(
                "conditional writes",
                State::Ok,
                "the server refuses a second If-None-Match: * write, as commits need",
            ),
            Err(e) => Check::new("conditional writes", State::Fail, e.to_string()),
        },
    });
}

/// `[serve]` and `[users.*]` as `tidemark serve` reads them.
fn check_flight_users(config: &ProjectConfig) -> Check {
    let flight = match sql::flight::FlightConfig::from_toml(&config.other) {
        Ok(flight) => flight,
        Err(e) => return Check::new("flight users", State::Fail, e),
    };
    if flight.users.is_empty() {
        return Check::new(
            "flight users",
            State::Skip,
            "no [users.*]: `tidemark serve` would refuse every login (add one with `tidemark user add NAME`)",
        );
    }
    match sql::flight::auth::Authenticator::new(&flight.users, flight.serve.token_ttl) {
        Ok(_) => Check::new(
            "flight users",
            State::Ok,
            format!("{} user(s) with valid password hashes", flight.users.len()),
        ),
        Err(e) => Check::new("flight users", State::Fail, e),
    }
}

/// One line per check; coloured marks in a terminal (NO_COLOR turns them off).
fn print_lines(checks: &[Check]) {
    let colour = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let width = checks.iter().map(|c| c.check.len()).max().unwrap_or(0);
    for check in checks {
        let (mark, code) = match check.state {
            State::Ok => ("ok  ", "32"),
            State::Warn => ("warn", "33"),
            State::Fail => ("FAIL", "31"),
            State::Skip => ("skip", "2"),
        };
        let mark = if colour {
            format!("\x1b[{code}m{mark}\x1b[0m")
        } else {
            mark.to_string()
        };
        crate::outln!("{mark}  {:width$}  {}", check.check, check.detail);
    }
    let failed = checks.iter().filter(|c| c.state == State::Fail).count();
    if failed > 0 {
        crate::outln!("\n{failed} check(s) failed");
    }
}
