//! Integration-test harness: real `docker-registry` and moto processes, images generated in
//! code, a minimal independent pusher, and an in-process fault-injecting HTTP proxy.
//!
//! The harness installs nothing. A missing component panics with a message naming it and
//! saying "run `make deps`"; no test is ever skipped silently.
//!
//! Every process is started on a free loopback port and killed by PID when its handle drops.
//!
//! ```ignore
//! let up = Registry::start();                                   // plain HTTP
//! let ecr = Registry::start_htpasswd(MOTO_ECR_USER, MOTO_ECR_PASSWORD);
//! let moto = Moto::start();                                     // clean state per test
//! let idx = index_of(vec![random_image(1, &[4096], "linux/amd64", Format::Oci),
//!                         random_image(2, &[4096], "linux/arm64/v8", Format::Oci)], Format::Oci);
//! push_index(&up.url(), "lib/app", "v1", &idx, None, None).await;
//! up.mark();                                                    // count only what follows
//! // ... run the product (env: moto.env()) ...
//! let reqs = up.requests();
//! assert_eq!(count(&reqs, "GET", Kind::Manifest), 0);
//! ```
//!
//! Large layers: `random_layer` hashes every byte twice (digest, diff ID). sha2 is slow in an
//! unoptimised build (~30 MB/s), so a crate using 100+ MiB layers in debug tests wants
//! `[profile.dev.package.sha2] opt-level = 3` (then a 512 MiB layer takes ~8 s in debug).
#![allow(dead_code)]

mod cli;
mod client;
mod hostile;
mod image;
mod moto;
mod paging;
pub mod personality;
mod proxy;
mod pushgateway;
mod referrers_api;
mod registry;
pub mod sigstore;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

#[allow(unused_imports)]
pub use cli::*;
#[allow(unused_imports)]
pub use client::{
    blocking, get_blob, get_manifest, head_blob, head_manifest, http_client, push_blob, push_image,
    push_index, push_manifest, MANIFEST_ACCEPT,
};
#[allow(unused_imports)]
pub use hostile::*;
#[allow(unused_imports)]
pub use image::{
    image_with_layers, index_of, parse_platform, random_blob, random_bytes, random_image,
    random_layer, sha256_digest, write_oci_layout_image, write_oci_layout_index, Blob, Format,
    Image, Index, MT_DOCKER_CONFIG, MT_DOCKER_LAYER_GZIP, MT_DOCKER_LIST, MT_DOCKER_MANIFEST,
    MT_OCI_CONFIG, MT_OCI_INDEX, MT_OCI_LAYER, MT_OCI_LAYER_GZIP, MT_OCI_MANIFEST,
};
#[allow(unused_imports)]
pub use moto::{Moto, MOTO_ACCOUNT_ID, MOTO_ECR_PASSWORD, MOTO_ECR_USER};
#[allow(unused_imports)]
pub use paging::PagingRegistry;
#[allow(unused_imports)]
pub use proxy::{Fault, FaultProxy, Hit, Rule, Schedule};
pub use pushgateway::{promtool_check_metrics, Pushgateway};
#[allow(unused_imports)]
pub use referrers_api::ReferrersApi;
#[allow(unused_imports)]
pub use registry::{count, kind_of, parse_access_line, Kind, Registry, RegistryOptions, Request};

/// Panics with the standard "missing component" message.
pub(crate) fn missing(component: &str, detail: &str) -> ! {
    panic!(
        "test component `{component}` is not available ({detail}); run `make deps` to install \
         the integration-test dependencies"
    )
}

/// Finds an executable: `$env_var` if set, else each of `candidates` that exists, else `name`
/// on `PATH`. Panics with "run `make deps`" when none is found.
pub(crate) fn locate(
    component: &str,
    env_var: &str,
    candidates: &[PathBuf],
    name: &str,
) -> PathBuf {
    if let Some(p) = std::env::var_os(env_var).filter(|v| !v.is_empty()) {
        let p = PathBuf::from(p);
        if p.is_file() {
            return p;
        }
        missing(
            component,
            &format!("${env_var}={} does not exist", p.display()),
        );
    }
    for c in candidates {
        if c.is_file() {
            return c.clone();
        }
    }
    if let Some(p) = which(name) {
        return p;
    }
    let tried: Vec<String> = candidates.iter().map(|c| c.display().to_string()).collect();
    missing(
        component,
        &format!("not found via ${env_var}, {tried:?} or `{name}` on PATH"),
    )
}

/// `name` on `PATH`, if present.
pub(crate) fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The crate root at run time (`cargo test` sets `CARGO_MANIFEST_DIR` for the test binary),
/// falling back to the one the harness was compiled in.
pub(crate) fn manifest_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

/// Reserves a free loopback port: bind 127.0.0.1:0, read the port, drop the listener.
/// A child process then binds it; callers retry on the rare race where someone else won.
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

/// Runs a command to completion, panicking with its output if it fails.
pub(crate) fn run_ok(cmd: &mut Command, what: &str) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what} ({cmd:?}): {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The `skopeo` binary (env `SKOPEO_BIN`, else /usr/bin/skopeo, else PATH).
pub fn skopeo_bin() -> PathBuf {
    locate(
        "skopeo",
        "SKOPEO_BIN",
        &[PathBuf::from("/usr/bin/skopeo")],
        "skopeo",
    )
}

/// Runs `skopeo --insecure-policy <args>` and returns its output, whatever the exit status.
/// `--insecure-policy` keeps the run independent of `/etc/containers/policy.json`.
pub fn skopeo(args: &[&str]) -> Output {
    Command::new(skopeo_bin())
        .arg("--insecure-policy")
        .args(args)
        .output()
        .expect("run skopeo")
}

/// Runs `skopeo --insecure-policy copy <args>`. Example, to write a Docker v2s2 manifest list
/// from an OCI index:
/// `skopeo_copy(&["--all", "--format", "v2s2", "--src-tls-verify=false",
///   "--dest-tls-verify=false", "docker://H/a:t", "docker://H/b:t"])`.
///
/// Facts about skopeo 1.9.3 (Debian) that matter here:
/// - `--src-tls-verify=false`/`--dest-tls-verify=false` also allow plain HTTP.
/// - `--all --format v2s2` on an OCI index writes a Docker manifest list (children converted
///   too, so their digests change); without `--all` it copies only the host's platform.
pub fn skopeo_copy(args: &[&str]) -> Output {
    let mut full = vec!["copy"];
    full.extend_from_slice(args);
    skopeo(&full)
}

/// Like [`skopeo_copy`] but panics with skopeo's stderr unless it succeeded.
pub fn skopeo_copy_ok(args: &[&str]) -> Output {
    let out = skopeo_copy(args);
    assert!(
        out.status.success(),
        "skopeo copy {args:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Reads a file to a string, or "" (for error messages showing a child's stderr).
pub(crate) fn read_lossy(p: &Path) -> String {
    std::fs::read(p)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}
