//! The `ecr-mirror-sync` binary: parse → telemetry → app::run → exit code.

// As in the library: errors carry the registry, the request and the OCI error code, and sit on
// the failure path, where their size costs nothing worth boxing for.
#![allow(clippy::result_large_err)]

use std::process::ExitCode;

use clap::Parser;

mod app;

fn main() -> ExitCode {
    let cli = app::cli::Cli::parse();
    app::telemetry::init(cli.log_format, cli.debug);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    ExitCode::from(runtime.block_on(app::run(cli)))
}
