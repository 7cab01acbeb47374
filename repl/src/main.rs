//! The `tidemark` binary: parse the command line, set up logging, run one subcommand.

#[macro_use]
mod output;
mod cli;
mod commands;
mod console;
mod logging;
mod metrics;
mod progress;
mod project;
mod schedule;
mod shell;
mod table;

/// mimalloc: a sync allocates and frees many small buffers (JSON, Arrow, HTTP); glibc's
/// allocator spent about a third of the collect benchmark's CPU time.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    logging::init(cli.verbose, cli.log_format);
    // Both rustls back ends are linked (ring for tonic, aws-lc-rs via the S3 client); name one
    // for the process, or the first TLS server or client config panics choosing.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::run(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", describe(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, leaving out causes whose text is already shown
/// (library errors often repeat their source in their own message).
fn describe(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let part = cause.to_string();
        if text.contains(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}
