//! A moto server (the ECR API) on a free loopback port.
//!
//! Facts about moto 5.2.x that matter (checked against moto's `ecr/responses.py` and boto3):
//! - `GetAuthorizationToken` returns base64 of `AWS:<account>-auth-token`, account
//!   `123456789012` by default (overridable with `MOTO_ACCOUNT_ID`, which we clear for the child),
//!   `expiresAt` 2015-01-01 (already expired), and `proxyEndpoint`
//!   `https://<account>.dkr.ecr.<region>.amazonaws.com` (a real AWS host; moto serves no `/v2/`).
//! - `moto_server` runs as a single (threaded werkzeug) process; it logs requests to stderr.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{blocking, free_port, locate, manifest_dir, read_lossy};

/// The user moto's `GetAuthorizationToken` decodes to.
pub const MOTO_ECR_USER: &str = "AWS";
/// The password moto's `GetAuthorizationToken` decodes to (default account).
pub const MOTO_ECR_PASSWORD: &str = "123456789012-auth-token";
/// moto's default account id.
pub const MOTO_ACCOUNT_ID: &str = "123456789012";

/// A running `moto_server`. Drop kills it by PID.
pub struct Moto {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    child: Child,
    _dir: tempfile::TempDir,
    stderr_path: PathBuf,
}

/// `$MOTO_SERVER`, else `$CARGO_MANIFEST_DIR/.venv/bin/moto_server`, else `moto_server` on PATH.
pub fn moto_server_bin() -> PathBuf {
    locate(
        "moto_server (PyPI moto[server])",
        "MOTO_SERVER",
        &[manifest_dir().join(".venv/bin/moto_server")],
        "moto_server",
    )
}

impl Moto {
    /// One ECR API call (JSON 1.1). moto does not check signatures; it routes on the
    /// credential scope of the `Authorization` header, so an unsigned header is enough.
    pub async fn ecr_api(&self, op: &str, body: serde_json::Value) -> serde_json::Value {
        let resp = reqwest::Client::new()
            .post(format!("{}/", self.url))
            .header("content-type", "application/x-amz-json-1.1")
            .header(
                "x-amz-target",
                format!("AmazonEC2ContainerRegistry_V20150921.{op}"),
            )
            .header(
                "authorization",
                "AWS4-HMAC-SHA256 Credential=testing/20240101/us-east-1/ecr/aws4_request, \
                 SignedHeaders=host, Signature=00",
            )
            .body(body.to_string())
            .send()
            .await
            .unwrap_or_else(|e| panic!("moto {op}: {e}"));
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        assert!(status.is_success(), "moto {op} {body}: {status}: {text}");
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null)
    }

    /// Starts a fresh moto (clean state), ready to answer.
    pub fn start() -> Moto {
        let bin = moto_server_bin();
        let dir = tempfile::Builder::new()
            .prefix("harness-moto-")
            .tempdir()
            .unwrap();
        let stderr_path = dir.path().join("stderr.log");
        let mut last = String::new();
        for _attempt in 0..5 {
            let port = free_port();
            let mut child = Command::new(&bin)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .env_remove("MOTO_ACCOUNT_ID")
                .stdin(Stdio::null())
                .stdout(std::fs::File::create(dir.path().join("stdout.log")).unwrap())
                .stderr(std::fs::File::create(&stderr_path).unwrap())
                .spawn()
                .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
            let url = format!("http://127.0.0.1:{port}");
            match wait_ready(&mut child, &url) {
                Ok(()) => {
                    return Moto {
                        url,
                        child,
                        _dir: dir,
                        stderr_path,
                    }
                }
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let log = read_lossy(&stderr_path);
                    if log.contains("Address already in use") || log.contains("already in use") {
                        last = log;
                        continue;
                    }
                    panic!("moto_server did not start at {url}: {e}\nstderr:\n{log}");
                }
            }
        }
        panic!("moto_server could not get a free port:\n{last}");
    }

    /// Wipes all state (`POST /moto-api/reset`).
    pub fn reset(&self) {
        let url = format!("{}/moto-api/reset", self.url);
        let status = blocking(async move {
            reqwest::Client::new()
                .post(&url)
                .send()
                .await
                .map(|r| r.status().as_u16())
        })
        .expect("POST /moto-api/reset");
        assert_eq!(status, 200, "moto reset answered {status}");
    }

    /// Env for an AWS SDK child process pointed at this moto.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", self.url.as_str()),
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    /// moto's request log so far.
    pub fn stderr_log(&self) -> String {
        read_lossy(&self.stderr_path)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `GET /moto-api/` until 200, failing early if the process exits.
fn wait_ready(child: &mut Child, url: &str) -> Result<(), String> {
    let probe = format!("{url}/moto-api/");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            return Err(format!("exited early with {status}"));
        }
        let port_open = std::net::TcpStream::connect(url.trim_start_matches("http://")).is_ok();
        if port_open {
            // A client per runtime: reqwest's pool must not outlive the runtime it ran on.
            let r = blocking(async {
                let c = reqwest::Client::new();
                c.get(&probe).send().await.map(|r| r.status().as_u16())
            });
            if let Ok(200) = r {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            return Err("no 200 from /moto-api/ within 30 s".to_string());
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}
