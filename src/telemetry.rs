//! Logging setup: tracing-subscriber to stderr, text or JSON.
//!
//! The default level is `info` for this crate and `warn` for dependencies; `--debug` raises
//! this crate to `debug`. `RUST_LOG` overrides both. Stdout is kept for results.

use tracing_subscriber::EnvFilter;

use crate::cli::LogFormat;

/// Installs the global subscriber. Safe to call once per process.
pub fn init(format: LogFormat, debug: bool) {
    let default = if debug {
        "warn,ecr_mirror_sync=debug"
    } else {
        "warn,ecr_mirror_sync=info"
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.compact().try_init(),
    };
}
