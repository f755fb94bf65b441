//! Logging setup: tracing-subscriber to stderr, text or JSON.
//!
//! The default level is `info` for this crate and `warn` for dependencies; `--debug` raises
//! this crate to `debug`. `RUST_LOG` overrides both. Stdout is kept for results.

use tracing::Level;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::prelude::*;
use tracing_subscriber::{fmt, EnvFilter};

use crate::app::cli::LogFormat;

/// Installs the global subscriber. Safe to call once per process.
///
/// Without `RUST_LOG` the filter is a plain [`Targets`] list: `EnvFilter` compiles regexes
/// even for simple directives, which cost ~10 % of the CPU of a whole no-op sync (start-up is
/// paid by every nightly run and every CLI call). `RUST_LOG`, when set and valid, gets the full
/// `EnvFilter` syntax.
pub fn init(format: LogFormat, debug: bool) {
    let ours = if debug { Level::DEBUG } else { Level::INFO };
    let env_filter = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .and_then(|v| EnvFilter::try_new(v).ok());
    let targets = env_filter.is_none().then(|| {
        Targets::new()
            .with_default(LevelFilter::WARN)
            .with_target("ecr_mirror_sync", ours)
    });
    let json = matches!(format, LogFormat::Json);
    let _ = tracing_subscriber::registry()
        .with(env_filter)
        .with(targets)
        .with(json.then(|| {
            fmt::layer()
                .json()
                .flatten_event(true)
                .with_writer(std::io::stderr)
                .with_target(false)
        }))
        .with((!json).then(|| {
            fmt::layer()
                .compact()
                .with_writer(std::io::stderr)
                .with_target(false)
        }))
        .try_init();
}
