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
    quiet_caught_upload_panics();
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

/// deltalake aborts a Parquet upload whose completion failed (a storage fault) with
/// object_store's `BufWriter::abort`, which panics by design once the upload was shut down;
/// deltalake catches that panic and returns the storage error, which tidemark reports. The
/// default hook would still print "thread panicked … Already shut down" in the middle of a
/// sync's output, so that one panic goes to the debug log; every other panic prints as usual.
fn quiet_caught_upload_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let caught_by_deltalake = info.location().is_some_and(|l| {
            l.file().contains("object_store") && l.file().ends_with("buffered.rs")
        }) && info.payload().downcast_ref::<&str>()
            == Some(&"Already shut down");
        if caught_by_deltalake {
            tracing::debug!(
                "aborting a failed upload panicked in object_store (caught by deltalake)"
            );
        } else {
            default(info);
        }
    }));
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
