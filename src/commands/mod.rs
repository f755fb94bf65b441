//! The subcommands: each resolves its settings, calls the library, and renders the result.

pub mod copy;

use crate::cli::{AwsArgs, Cli, Command, DestAccess, NetArgs, OutputFormat};
use crate::error::{Error, Result};
use crate::registry::RegistryConfig;
use crate::settings;

/// What every command needs besides its own flags.
pub struct Context {
    /// Result format on stdout.
    pub output: OutputFormat,
}

/// Runs the parsed command line; returns the process exit code (0, 1 or 2).
pub async fn run(cli: Cli) -> u8 {
    let ctx = Context { output: cli.output };
    let cancel = tokio_util::sync::CancellationToken::new();
    spawn_signal_handler(cancel.clone());
    let result = match &cli.command {
        Command::Copy(a) => copy::run(&ctx, a, &cancel).await,
        Command::Sync(_) | Command::List(_) => {
            Err(Error::Usage("not available in this build".into()))
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            if ctx.output == OutputFormat::Json {
                println!(
                    "{}",
                    serde_json::json!({"type": "error", "data": {"message": e.to_string()}})
                );
            } else {
                eprintln!("error: {e}");
            }
            e.exit_code()
        }
    }
}

/// SIGTERM (a pod being evicted) and Ctrl-C cancel the run: uploads in flight are dropped,
/// and no tag is written after the signal.
fn spawn_signal_handler(cancel: tokio_util::sync::CancellationToken) {
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("signal handler");
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        tracing::warn!("signal received: cancelling; no tag will be moved");
        cancel.cancel();
    });
}

/// The destination registry config: ECR token auth for an ECR host, else the `--dest-*` flags.
pub async fn dest_registry_config(
    _ctx: &Context,
    registry: &str,
    access: &DestAccess,
    aws: &AwsArgs,
    net: &NetArgs,
) -> Result<RegistryConfig> {
    let mut c = settings::registry_config(registry, net, access.dest_tls_verify);
    c.cert_dir = access.dest_cert_dir.clone();
    c.endpoint = settings::endpoint(&aws.registry_endpoint)?;
    c.credentials = settings::dest_credentials(access).resolve(registry, "dest")?;
    Ok(c)
}
