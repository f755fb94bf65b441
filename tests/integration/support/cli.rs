//! Running the product binary from a test, in a clean environment.
//!
//! The child gets none of the caller's `ECR_MIRROR_SYNC_*`, `AWS_*`, auth-file or proxy
//! variables, and a `HOME` that does not exist, so a developer's `~/.docker/config.json`,
//! `~/.aws/config` or exported flags cannot change what a test sees. Pass what a test needs
//! in `envs` (e.g. `Moto::env()`).

use std::ffi::OsString;
use std::process::{Command, Output, Stdio};

/// The product binary cargo built for this test run.
pub const PRODUCT_BIN: &str = env!("CARGO_BIN_EXE_ecr-mirror-sync");

/// Variables removed from the child's environment by exact name (any case is matched).
const SCRUBBED: &[&str] = &[
    "REGISTRY_AUTH_FILE",
    "XDG_RUNTIME_DIR",
    "DOCKER_CONFIG",
    "RUST_LOG",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
];

/// A `Command` for the product with `args`, a scrubbed environment plus `envs`, stdin closed
/// and stdout/stderr captured. Use it directly to spawn (e.g. to kill the child midway), or
/// through [`run`] / [`run_async`].
pub fn product_command<S: AsRef<str>>(args: &[S], envs: &[(String, String)]) -> Command {
    let mut cmd = Command::new(PRODUCT_BIN);
    for (k, _) in std::env::vars_os() {
        if scrubbed(&k) {
            cmd.env_remove(&k);
        }
    }
    cmd.env("HOME", "/nonexistent/ecr-mirror-sync-test-home")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("NO_COLOR", "1")
        .args(args.iter().map(AsRef::as_ref))
        .envs(envs.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

fn scrubbed(k: &OsString) -> bool {
    let k = k.to_string_lossy().to_ascii_uppercase();
    k.starts_with("ECR_MIRROR_SYNC_") || k.starts_with("AWS_") || SCRUBBED.contains(&k.as_str())
}

/// Runs the product to completion (blocking) and returns its output, whatever the status.
/// Inside a test that also runs an in-process server (FaultProxy), use [`run_async`].
pub fn run<S: AsRef<str>>(args: &[S], envs: &[(String, String)]) -> Output {
    product_command(args, envs)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {PRODUCT_BIN}: {e}"))
}

/// Like [`run`], without blocking the tokio runtime.
pub async fn run_async<S: AsRef<str>>(args: &[S], envs: &[(String, String)]) -> Output {
    tokio::process::Command::from(product_command(args, envs))
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run {PRODUCT_BIN}: {e}"))
}

/// The exit status and both streams, for assertion messages.
pub fn describe(out: &Output) -> String {
    format!(
        "status: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The one JSON Lines record of `kind` on stdout (exactly one expected).
pub fn json_line(out: &Output, kind: &str) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let found: Vec<serde_json::Value> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["type"] == kind)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "expected one {kind:?} JSON line on stdout\n{}",
        describe(out)
    );
    found.into_iter().next().unwrap()
}
