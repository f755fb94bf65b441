//! The subcommands: each resolves its settings, calls the library, and renders the result.

pub mod copy;
pub mod import;
pub mod push;
pub mod sync;

use crate::cli::{AwsArgs, Cli, Command, DestAccess, NetArgs, OutputFormat};
use crate::error::Result;
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
    if cli.show_settings {
        // Every secret is a `Secret`, whose Debug prints <redacted>.
        println!("{cli:#?}");
        return 0;
    }
    let cancel = tokio_util::sync::CancellationToken::new();
    spawn_signal_handler(cancel.clone());
    let result = match &cli.command {
        Command::Copy(a) => copy::run(&ctx, a, &cancel).await,
        Command::Sync(a) => sync::run_sync(&ctx, a, &cancel).await,
        Command::List(a) => sync::run_list(&ctx, a).await,
        Command::Verify(a) => sync::run_verify(&ctx, a).await,
        Command::Push(a) => push::run(&ctx, a, &cancel).await,
        Command::Import(a) => import::run(&ctx, a).await,
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
    let endpoint = settings::endpoint(&aws.registry_endpoint)?;
    let flags = settings::dest_credentials(access);
    if let Some(host) = crate::ecr::registry_host::parse_ecr_host(registry) {
        let explicit =
            flags.creds.is_some() || flags.username.is_some() || flags.registry_token.is_some();
        if !explicit && !flags.no_creds {
            // An ECR destination: credentials from GetAuthorizationToken, in the registry's
            // own region unless --region says otherwise.
            let region = aws.region.clone().or(Some(host.region.clone()));
            let api = crate::ecr::sdk::SdkEcr::from_env(region).await;
            let mut c =
                crate::connect::ecr_registry(api, registry, endpoint, access.dest_tls_verify, net)
                    .await?;
            c.cert_dir = access.dest_cert_dir.clone();
            return Ok(c);
        }
    }
    let mut c = settings::registry_config(registry, net, access.dest_tls_verify);
    c.cert_dir = access.dest_cert_dir.clone();
    c.endpoint = endpoint;
    c.credentials = flags.resolve(registry, "dest")?;
    Ok(c)
}
