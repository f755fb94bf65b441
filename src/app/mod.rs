//! The application: the command line, settings, commands, reports and the Kubernetes adapter.
//!
//! This layer belongs to the binary. It turns flags into typed settings (every conflict an
//! exit 2 before any network call), calls one library function per command, and renders.

pub mod cli;
pub mod commands;
#[cfg(feature = "k8s")]
pub mod k8s;
pub mod report;
pub mod settings;
pub mod telemetry;

use crate::app::cli::{Cli, Command, OutputFormat};
use ecr_mirror_sync::mirror::error::Result;
use ecr_mirror_sync::oci::RegistryConfig;

/// What every command needs besides its own flags.
pub struct Context {
    /// Result format on stdout.
    pub output: OutputFormat,
}

/// Runs the parsed command line; returns the process exit code (0, 1 or 2).
pub async fn run(cli: Cli) -> u8 {
    let ctx = Context { output: cli.output };
    if cli.show_settings {
        // Every secret is a `Secret`, whose Debug prints <redacted>.
        println!("{cli:#?}");
        return 0;
    }
    let cancel = tokio_util::sync::CancellationToken::new();
    spawn_signal_handler(cancel.clone());
    let result = match &cli.command {
        Command::Copy(a) => commands::copy::run(&ctx, a, &cancel).await,
        Command::Sync(a) => commands::sync::run_sync(&ctx, a, &cancel).await,
        Command::List(a) => commands::list::run(&ctx, a).await,
        Command::Verify(a) => commands::verify::run(&ctx, a).await,
        Command::Push(a) => commands::push::run(&ctx, a, &cancel).await,
        Command::Import(a) => commands::import::run(&ctx, a).await,
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
/// `dest` was resolved by [`settings::dest`] before any request.
pub async fn dest_registry_config(dest: &settings::Dest, registry: &str) -> Result<RegistryConfig> {
    if let Some(region) = &dest.ecr_region {
        // An ECR destination: credentials from GetAuthorizationToken, in the registry's own
        // region unless --region says otherwise.
        let api = ecr_mirror_sync::ecr::sdk::SdkEcr::from_env(region.clone()).await;
        return ecr_mirror_sync::mirror::sources::ecr_registry(
            api,
            registry,
            dest.endpoint.clone(),
            &dest.access,
        )
        .await;
    }
    let mut c = dest.access.config_with_credentials(registry)?;
    c.endpoint = dest.endpoint.clone();
    Ok(c)
}
