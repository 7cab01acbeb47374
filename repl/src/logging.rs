//! Structured logging with `tracing`, to stderr so results on stdout stay clean.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::cli::LogFormat;

/// Install the global subscriber. `RUST_LOG` wins over `-v`. In a terminal, progress bars
/// report progress and only warnings are logged; otherwise progress goes to the log at info.
pub fn init(verbose: u8, format: LogFormat) {
    let terminal = std::io::stderr().is_terminal();
    let default = match verbose {
        0 if terminal => "warn",
        0 => "warn,tidemark=info,tidemark_engine=info,tidemark_connectors=info",
        1 => "info,tidemark=debug,tidemark_engine=debug,tidemark_connectors=debug",
        _ => "debug,tidemark=trace,tidemark_engine=trace,tidemark_connectors=trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
