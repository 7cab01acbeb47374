//! `tidemark ballista scheduler` and `tidemark ballista executor`: the roles of a Ballista
//! cluster with tidemark built in (its plan codec, functions and object stores; see
//! `engine::distributed`). A stock Ballista executor cannot read tidemark's plans.
//!
//! ```text
//! tidemark ballista scheduler --bind 0.0.0.0:50050
//! tidemark ballista executor --scheduler sched-host:50050 --port 50051   # on each machine
//! tidemark sql --engine ballista://sched-host:50050 -c "SELECT …"
//! ```

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use ballista_executor::executor_process::{start_executor_process, ExecutorProcessConfig};
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::SchedulerConfig;
use ballista_scheduler::scheduler_process::start_server;
use clap::{Args, Subcommand};
use engine::distributed::{self, stores::WarehouseStores, TidemarkLogicalCodec};

#[derive(Debug, Args)]
pub struct BallistaArgs {
    #[command(subcommand)]
    pub role: Role,
}

#[derive(Debug, Subcommand)]
pub enum Role {
    /// Run a scheduler: it takes queries from `--engine ballista://HOST:PORT` clients, opens
    /// each table at the version the client planned on, and hands the stages to executors.
    Scheduler(SchedulerArgs),
    /// Run an executor: it registers with the scheduler and runs the tasks it is given.
    Executor(ExecutorArgs),
}

/// What both roles need to reach warehouses on S3.
#[derive(Debug, Clone, Args)]
pub struct StorageArgs {
    /// Endpoint of an S3-compatible server (e.g. http://127.0.0.1:9000). Credentials come from
    /// the usual AWS_* environment variables; timeouts and retries from TIDEMARK_STORAGE_*.
    #[arg(long, env = "TIDEMARK_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
}

impl StorageArgs {
    fn config(&self) -> anyhow::Result<engine::StorageConfig> {
        Ok(engine::StorageConfig {
            s3_endpoint: self.s3_endpoint.clone(),
            retry: crate::project::retry_budget(None, |key| std::env::var(key).ok())?,
            ..Default::default()
        })
    }
}

#[derive(Debug, Args)]
pub struct SchedulerArgs {
    /// Address to listen on for clients and executors.
    #[arg(
        long,
        default_value = "127.0.0.1:50050",
        env = "TIDEMARK_BALLISTA_BIND"
    )]
    pub bind: String,
    /// The host name executors and clients reach this scheduler by (default: the bind host).
    #[arg(long)]
    pub external_host: Option<String>,
    #[command(flatten)]
    pub storage: StorageArgs,
}

#[derive(Debug, Args)]
pub struct ExecutorArgs {
    /// The scheduler to register with, as HOST:PORT.
    #[arg(
        long,
        default_value = "127.0.0.1:50050",
        env = "TIDEMARK_BALLISTA_SCHEDULER"
    )]
    pub scheduler: String,
    /// Host to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind_host: String,
    /// The host name other executors and clients reach this one by (default: the bind host).
    #[arg(long)]
    pub external_host: Option<String>,
    /// Port of the Arrow Flight service that serves this executor's shuffle output.
    #[arg(long, default_value_t = 50051)]
    pub port: u16,
    /// Port of the gRPC service the scheduler talks to.
    #[arg(long, default_value_t = 50052)]
    pub grpc_port: u16,
    /// Tasks run at once (default: the machine's cores).
    #[arg(long)]
    pub concurrent_tasks: Option<usize>,
    /// Directory for shuffle files and spills (default: a temporary directory).
    #[arg(long)]
    pub work_dir: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub storage: StorageArgs,
}

pub async fn run(args: BallistaArgs) -> anyhow::Result<ExitCode> {
    match args.role {
        Role::Scheduler(args) => scheduler(args).await,
        Role::Executor(args) => executor(args).await,
    }
}

fn host_port(text: &str, what: &str) -> anyhow::Result<(String, u16)> {
    let (host, port) = text
        .rsplit_once(':')
        .with_context(|| format!("{what} {text:?} is not HOST:PORT"))?;
    let port = port
        .parse()
        .with_context(|| format!("{what} {text:?}: '{port}' is not a port number"))?;
    Ok((host.to_string(), port))
}

async fn scheduler(args: SchedulerArgs) -> anyhow::Result<ExitCode> {
    let (host, port) = host_port(&args.bind, "--bind")?;
    let address = args
        .bind
        .parse()
        .with_context(|| format!("--bind {:?} is not an IP address and port", args.bind))?;
    let storage = args.storage.config()?;
    let stores = WarehouseStores::new(storage.clone());
    let mut config = SchedulerConfig {
        bind_host: host.clone(),
        bind_port: port,
        external_host: args.external_host.unwrap_or(host),
        ..Default::default()
    };
    config.override_config_producer = Some(Arc::new(distributed::cluster_config));
    config.override_session_builder = Some(Arc::new(move |session_config| {
        distributed::scheduler_session(session_config, &stores)
    }));
    config.override_logical_codec = Some(Arc::new(TidemarkLogicalCodec::new(storage)));
    let cluster = BallistaCluster::new_from_config(&config)
        .await
        .context("cannot set up the scheduler's state")?;
    tracing::info!(%address, "Ballista scheduler listening");
    eprintln!(
        "tidemark Ballista scheduler on {address} (ballista {}, datafusion {}); query with --engine ballista://{address}",
        ballista_core::BALLISTA_VERSION,
        datafusion::DATAFUSION_VERSION
    );
    start_server(cluster, address, Arc::new(config))
        .await
        .context("the scheduler stopped")?;
    Ok(ExitCode::SUCCESS)
}

async fn executor(args: ExecutorArgs) -> anyhow::Result<ExitCode> {
    let (scheduler_host, scheduler_port) = host_port(&args.scheduler, "--scheduler")?;
    let storage = args.storage.config()?;
    let stores = WarehouseStores::new(storage.clone());
    let work_dir = match &args.work_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create --work-dir {}", dir.display()))?;
            dir.clone()
        }
        None => std::env::temp_dir().join(format!("tidemark-executor-{}", args.port)),
    };
    std::fs::create_dir_all(&work_dir)
        .with_context(|| format!("cannot create {}", work_dir.display()))?;
    let spill_dir = work_dir.clone();
    let mut config = ExecutorProcessConfig {
        bind_host: args.bind_host.clone(),
        external_host: args.external_host.clone(),
        port: args.port,
        grpc_port: args.grpc_port,
        scheduler_host,
        scheduler_port,
        work_dir: Some(work_dir.to_string_lossy().into_owned()),
        print_thread_info: false,
        // Shuffle files of finished jobs are also removed by the scheduler; this catches
        // what a scheduler restart leaves behind.
        job_data_ttl_seconds: 3600,
        job_data_clean_up_interval_seconds: 600,
        ..Default::default()
    };
    if let Some(n) = args.concurrent_tasks {
        config.vcores = n.max(1);
    }
    config.override_function_registry = Some(Arc::new(distributed::executor_functions()));
    config.override_config_producer = Some(Arc::new(distributed::cluster_config));
    config.override_runtime_producer =
        Some(Arc::new(move |_config| stores.runtime(Some(&spill_dir))));
    config.override_logical_codec = Some(Arc::new(TidemarkLogicalCodec::new(storage)));
    eprintln!(
        "tidemark Ballista executor on {}:{} (tasks at once: {}), registering with {}",
        args.bind_host, args.port, config.vcores, args.scheduler
    );
    start_executor_process(Arc::new(config))
        .await
        .context("the executor stopped")?;
    Ok(ExitCode::SUCCESS)
}
