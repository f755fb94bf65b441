//! The `ecr-mirror-sync` binary: parse → telemetry → run → exit code.

use std::process::ExitCode;

use clap::Parser;
use ecr_mirror_sync::{cli::Cli, commands, telemetry};

fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init(cli.log_format, cli.debug);
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
    ExitCode::from(runtime.block_on(commands::run(cli)))
}
