//! `tidemark serve`: the Arrow Flight SQL endpoint for BI tools and notebooks, with users and
//! grants from tidemark.toml, optional TLS, `/metrics`, and a graceful stop on SIGTERM.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context};
use arrow_flight::flight_service_server::FlightServiceServer;
use clap::Args;
use sql::flight::auth::Authenticator;
use sql::flight::{FlightConfig, TidemarkFlightSql};
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Identity, Server, ServerTlsConfig};

use crate::project::ProjectArgs;

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub project: ProjectArgs,

    #[command(flatten)]
    pub engine: crate::cli::EngineArgs,

    /// Address to listen on (port 0 picks a free one); overrides [serve] addr.
    #[arg(long)]
    pub addr: Option<String>,

    /// Serve Prometheus /metrics on this address; overrides [serve] metrics_addr.
    #[arg(long)]
    pub metrics_addr: Option<String>,
}

/// How a client connects, printed at start.
fn connect_hint(url: &str, user: &str) -> String {
    format!(
        "Connect with ADBC (pip install adbc-driver-flightsql pyarrow):\n\
         \x20 import adbc_driver_flightsql.dbapi as flightsql\n\
         \x20 conn = flightsql.connect(\"{url}\", db_kwargs={{\"username\": \"{user}\", \"password\": \"…\"}})\n\
         \x20 conn.cursor().execute(\"SELECT * FROM channel_daily\").fetch_arrow_table()\n\
         JDBC (DBeaver, Tableau): jdbc:arrow-flight-sql://{}?user={user}&password=…{}",
        url.split("://").nth(1).unwrap_or(url),
        if url.starts_with("grpc+tls") { "" } else { "&useEncryption=false" }
    )
}

pub async fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let config = args.project.config()?;
    let flight = FlightConfig::from_toml(&config.other).map_err(anyhow::Error::msg)?;
    if flight.users.is_empty() {
        bail!(
            "no users in {}: add one with `tidemark user add NAME --grant '*'` (no query runs unauthenticated)",
            args.project.project.join("tidemark.toml").display()
        );
    }
    let mut serve = flight.serve.clone();
    if let Some(addr) = &args.addr {
        serve.addr = addr.clone();
    }
    if let Some(addr) = &args.metrics_addr {
        serve.metrics_addr = Some(addr.clone());
    }
    let warehouse = args.engine.apply(args.project.open(&config).await?);
    let auth =
        Arc::new(Authenticator::new(&flight.users, serve.token_ttl).map_err(anyhow::Error::msg)?);
    let service = TidemarkFlightSql::new(warehouse.clone(), auth.clone(), serve.clone());
    let flight_metrics = service.metrics.clone();

    let mut builder = Server::builder();
    let tls = match (&serve.tls_cert, &serve.tls_key) {
        (Some(cert), Some(key)) => {
            let dir = &args.project.project;
            let read = |p: &std::path::Path| {
                let path = if p.is_absolute() {
                    p.to_path_buf()
                } else {
                    dir.join(p)
                };
                std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))
            };
            let identity = Identity::from_pem(read(cert)?, read(key)?);
            builder = builder
                .tls_config(ServerTlsConfig::new().identity(identity))
                .context("the TLS certificate or key is not valid PEM")?;
            true
        }
        (None, None) => false,
        _ => bail!("[serve] needs both tls_cert and tls_key, or neither"),
    };
    let addr: SocketAddr = serve.addr.parse().with_context(|| {
        format!(
            "[serve] addr '{}' is not an address like 127.0.0.1:50051",
            serve.addr
        )
    })?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let bound = listener.local_addr()?;
    let url = format!("{}://{bound}", if tls { "grpc+tls" } else { "grpc" });

    if let Some(metrics_addr) = &serve.metrics_addr {
        let metrics_addr: SocketAddr = metrics_addr
            .parse()
            .with_context(|| format!("metrics address '{metrics_addr}' is not an address"))?;
        let metrics = Arc::new(
            crate::metrics::Metrics::new()
                .with_collector(Box::new(crate::metrics::FlightCollector(flight_metrics))),
        );
        let bound = crate::metrics::serve(metrics_addr, metrics).await?;
        println!("metrics: http://{bound}/metrics");
    }
    if let Some(console) = crate::console::ConsoleConfig::from_toml(&config.other)? {
        // Sources are only needed for the overview; a project without them still serves.
        let sources = config.sources().unwrap_or_default();
        let addr = crate::console::start(
            &console,
            &flight.users,
            warehouse.clone(),
            args.project.project.clone(),
            sources,
        )
        .await?;
        println!("web console: http://{addr}/");
    }
    let first_user = flight.users.keys().next().cloned().unwrap_or_default();
    println!(
        "tidemark serve: Arrow Flight SQL on {url} · warehouse {} · {} user(s){}\n{}",
        warehouse.url(),
        auth.user_count(),
        if tls {
            " · TLS"
        } else {
            " · no TLS (set [serve] tls_cert/tls_key before exposing it)"
        },
        connect_hint(&url, &first_user)
    );
    tracing::info!(%url, "serving Flight SQL");

    let shutdown = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = term.recv() => {},
            _ = tokio::signal::ctrl_c() => {},
        }
        tracing::info!("stopping: finishing the calls in flight");
        println!("stopping: finishing the calls in flight");
    };
    builder
        .add_service(FlightServiceServer::new(service))
        // Small answers (`SELECT 1`, a tile's aggregate) must not wait for delayed ACKs:
        // `TcpIncoming::from` leaves Nagle's algorithm on, which cost ~40 ms per call.
        .serve_with_incoming_shutdown(
            TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown,
        )
        .await
        .context("the Flight SQL server failed")?;
    println!("stopped");
    Ok(ExitCode::SUCCESS)
}
