//! A real Prometheus Pushgateway (Debian `prometheus-pushgateway`) on a free loopback port,
//! without persistence, stopped on drop; and `promtool check metrics` (Debian `prometheus`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// `name` from `$env`, else from PATH; a missing tool is a failure that says how to install it.
fn tool(name: &str, env: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(env) {
        return PathBuf::from(p);
    }
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join(name))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| {
            panic!(
                "{name} not found on PATH: run `make deps` (it installs the Debian packages \
                 prometheus and prometheus-pushgateway), or set {env}"
            )
        })
}

pub struct Pushgateway {
    child: Child,
    pub url: String,
}

impl Pushgateway {
    pub async fn start() -> Pushgateway {
        let bin = tool("prometheus-pushgateway", "PUSHGATEWAY_BIN");
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let mut child = Command::new(&bin)
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .args(["--persistence.file=", "--log.level=warn"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
            let url = format!("http://127.0.0.1:{port}");
            for _ in 0..100 {
                if let Ok(Some(_)) = child.try_wait() {
                    break; // the port was taken meanwhile: try another
                }
                if let Ok(r) = reqwest::get(format!("{url}/-/ready")).await {
                    if r.status().is_success() {
                        return Pushgateway { child, url };
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("the Pushgateway did not become ready on a loopback port");
    }

    /// What the Pushgateway serves on `/metrics` (pushed groups included).
    pub async fn metrics(&self) -> String {
        reqwest::get(format!("{}/metrics", self.url))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

impl Drop for Pushgateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `promtool check metrics < file`: `Ok` or promtool's complaint.
pub fn promtool_check_metrics(file: &Path) -> Result<(), String> {
    let out = Command::new(tool("promtool", "PROMTOOL_BIN"))
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(file).unwrap())
        .output()
        .expect("run promtool");
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}
