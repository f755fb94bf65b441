//! Real `docker-registry` (CNCF distribution 2.8.2, Debian) instances on free loopback ports.
//!
//! Facts about distribution 2.8.2 that this file relies on (checked by experiment):
//! - The access log is separate from `log.level`: gorilla's `CombinedLoggingHandler` writes one
//!   Apache "combined" line per request to **stdout**, e.g.
//!   `127.0.0.1 - - [22/Nov/2026:08:31:22 +0000] "HEAD /v2/foo/manifests/latest?x=1 HTTP/1.1" 404 96 "" "curl/7.88.1"`.
//!   logrus (errors, warnings) goes to **stderr**. The URI inside the quotes is Go-escaped
//!   (`\"`, `\\`, `\xNN`); the user field is always `-`, even with Basic auth.
//! - The line is written *after the handler returns*, so a client may hold a complete response
//!   a moment before its line exists. `requests()` therefore sends a sentinel request and waits
//!   for the sentinel's own line: everything the test finished before is then on disk.
//! - Only bcrypt htpasswd entries are accepted, and the file is re-read while running.
//! - Upload `Location` headers are absolute URLs built from the request's `Host` header.

use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{blocking, http_client, locate, read_lossy, run_ok};

/// What a request in the access log was about, from its `/v2/<name>/...` path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `/v2/<name>/manifests/<reference>`
    Manifest,
    /// `/v2/<name>/blobs/<digest>`
    Blob,
    /// `/v2/<name>/blobs/uploads/` and `/v2/<name>/blobs/uploads/<uuid>`
    Upload,
    /// Anything else (`/v2/`, `_catalog`, `tags/list`, ...).
    Other,
}

/// One parsed access-log line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// The path, without the query string.
    pub path: String,
    /// The query string without `?`, if any.
    pub query: Option<String>,
    pub status: u16,
    /// Response bytes written (0 for HEAD).
    pub size: u64,
    pub user_agent: String,
}

impl Request {
    pub fn kind(&self) -> Kind {
        kind_of(&self.path)
    }

    /// The repository name for `/v2/<name>/{manifests,blobs,tags}/...` paths.
    pub fn repo(&self) -> Option<String> {
        let segs: Vec<&str> = self.path.strip_prefix("/v2/")?.split('/').collect();
        let n = segs.len();
        let name_len = match self.kind() {
            Kind::Manifest | Kind::Blob => n - 2,
            Kind::Upload if segs[n - 1] == "uploads" => n - 2,
            Kind::Upload => n - 3,
            Kind::Other if n >= 3 && segs[n - 2] == "tags" => n - 2,
            Kind::Other => return None,
        };
        (name_len > 0).then(|| segs[..name_len].join("/"))
    }
}

/// The request kind of a registry path.
pub fn kind_of(path: &str) -> Kind {
    let Some(rest) = path.strip_prefix("/v2/") else {
        return Kind::Other;
    };
    let segs: Vec<&str> = rest.split('/').collect();
    let n = segs.len();
    // Name components come first, so look at the tail: `.../blobs/uploads/[uuid]`,
    // `.../blobs/<digest>`, `.../manifests/<reference>`.
    if n >= 3 && segs[n - 2] == "uploads" && segs[n - 3] == "blobs" {
        return Kind::Upload;
    }
    if n >= 3 && segs[n - 1] == "uploads" && segs[n - 2] == "blobs" {
        return Kind::Upload;
    }
    if n >= 3 && segs[n - 2] == "blobs" && !segs[n - 1].is_empty() {
        return Kind::Blob;
    }
    if n >= 3 && segs[n - 2] == "manifests" && !segs[n - 1].is_empty() {
        return Kind::Manifest;
    }
    Kind::Other
}

/// How many requests have this method (case-insensitive) and kind.
pub fn count(reqs: &[Request], method: &str, kind: Kind) -> usize {
    reqs.iter()
        .filter(|r| r.method.eq_ignore_ascii_case(method) && r.kind() == kind)
        .count()
}

/// Parses one gorilla/handlers combined-log line. `None` if it is not one.
pub fn parse_access_line(line: &str) -> Option<Request> {
    // host - user [timestamp] "METHOD URI PROTO" status size "referer" "user-agent"
    let ts_end = line.find("] \"")?;
    let rest = &line[ts_end + 3..];
    // The method is a plain token; the URI is Go-quoted; then the protocol.
    let sp = rest.find(' ')?;
    let method = rest[..sp].to_string();
    let (request_tail, rest) = unquote_until_quote(&rest[sp + 1..])?;
    let (uri, _proto) = request_tail.rsplit_once(' ')?;
    let mut fields = rest.trim_start().splitn(3, ' ');
    let status: u16 = fields.next()?.parse().ok()?;
    let size: u64 = fields.next()?.parse().unwrap_or(0);
    let tail = fields.next().unwrap_or("");
    let user_agent = tail
        .strip_prefix('"')
        .and_then(unquote_until_quote)
        .and_then(|(_referer, r)| r.trim_start().strip_prefix('"').map(str::to_string))
        .and_then(|r| unquote_until_quote(&r).map(|(ua, _)| ua))
        .unwrap_or_default();
    let (path, query) = match uri.split_once('?') {
        Some((p, q)) => (p.to_string(), Some(q.to_string())),
        None => (uri.to_string(), None),
    };
    if method.is_empty() || !path.starts_with('/') {
        return None;
    }
    Some(Request {
        method,
        path,
        query,
        status,
        size,
        user_agent,
    })
}

/// Reads a Go-escaped string up to its closing unescaped `"`; returns it and what follows.
fn unquote_until_quote(s: &str) -> Option<(String, &str)> {
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((out, &s[i + 1..])),
            '\\' => match chars.next()?.1 {
                '"' => out.push('"'),
                '\\' => out.push('\\'),
                'n' => out.push('\n'),
                't' => out.push('\t'),
                'r' => out.push('\r'),
                other => {
                    // \xNN, \uNNNN, ...: keep the escape as written; paths never need it.
                    out.push('\\');
                    out.push(other);
                }
            },
            c => out.push(c),
        }
    }
    None
}

/// Options for [`Registry::start_with`].
#[derive(Clone, Debug, Default)]
pub struct RegistryOptions {
    /// Serve HTTPS with a leaf certificate signed by a fresh test CA.
    pub tls: bool,
    /// Require Basic auth for this user (bcrypt htpasswd, realm `test`).
    pub htpasswd: Option<(String, String)>,
}

/// A running `docker-registry serve`. Drop kills it (by PID) and removes its temp dir
/// (set `HARNESS_KEEP_DIRS=1` to keep the dir for debugging).
pub struct Registry {
    /// `127.0.0.1:PORT`
    pub host: String,
    tls: bool,
    creds: Option<(String, String)>,
    child: Child,
    dir: Option<tempfile::TempDir>,
    root: PathBuf,
    cert_dir: PathBuf,
    data: PathBuf,
    /// Byte offset in the access log where `requests()` starts.
    mark_offset: Mutex<u64>,
    sentinel_seq: AtomicU64,
}

const SENTINEL: &str = "harness-sentinel=";

pub fn docker_registry_bin() -> PathBuf {
    locate(
        "docker-registry",
        "DOCKER_REGISTRY_BIN",
        &[PathBuf::from("/usr/bin/docker-registry")],
        "docker-registry",
    )
}

fn htpasswd_bin() -> PathBuf {
    locate(
        "htpasswd (apache2-utils)",
        "HTPASSWD_BIN",
        &[PathBuf::from("/usr/bin/htpasswd")],
        "htpasswd",
    )
}

fn openssl_bin() -> PathBuf {
    locate(
        "openssl",
        "OPENSSL_BIN",
        &[PathBuf::from("/usr/bin/openssl")],
        "openssl",
    )
}

impl Registry {
    /// Plain HTTP, anonymous.
    pub fn start() -> Registry {
        Self::start_with(RegistryOptions::default())
    }

    /// Plain HTTP with Basic auth: bcrypt htpasswd (`htpasswd -Bbn`), realm `test`.
    pub fn start_htpasswd(user: &str, pass: &str) -> Registry {
        Self::start_with(RegistryOptions {
            tls: false,
            htpasswd: Some((user.to_string(), pass.to_string())),
        })
    }

    /// HTTPS with a CA + leaf (SAN `localhost`, `127.0.0.1`); trust it via [`Registry::ca_dir`].
    pub fn start_tls() -> Registry {
        Self::start_with(RegistryOptions {
            tls: true,
            htpasswd: None,
        })
    }

    pub fn start_with(opts: RegistryOptions) -> Registry {
        let bin = docker_registry_bin();
        let dir = tempfile::Builder::new()
            .prefix("harness-registry-")
            .tempdir()
            .expect("create registry temp dir");
        let root = dir.path().to_path_buf();
        let data = root.join("data");
        fs::create_dir_all(&data).unwrap();

        let mut extra = String::new();
        if let Some((user, pass)) = &opts.htpasswd {
            write_htpasswd(&root.join("htpasswd"), &[(user, pass)]);
            extra.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: test\n    path: {}\n",
                root.join("htpasswd").display()
            ));
        }
        let mut tls_cfg = String::new();
        if opts.tls {
            make_tls(&root);
            tls_cfg = format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                root.join("tls/cert.pem").display(),
                root.join("tls/key.pem").display()
            );
        }

        let mut last_err = String::new();
        for _attempt in 0..8 {
            let port = super::free_port();
            let host = format!("127.0.0.1:{port}");
            // accesslog is on by default; say so, since requests() depends on it.
            // No blob-descriptor cache: corrupting a blob on disk must be seen at once.
            // uploadpurging off: no background goroutine touching the storage root.
            let config = format!(
                "version: 0.1\n\
                 log:\n  level: warn\n  accesslog:\n    disabled: false\n\
                 storage:\n  filesystem:\n    rootdirectory: {data}\n  delete:\n    enabled: true\n  \
                 maintenance:\n    uploadpurging:\n      enabled: false\n\
                 http:\n  addr: {host}\n  secret: harness-{port}-secret\n{tls_cfg}\
                 {extra}",
                data = data.display(),
            );
            let cfg_path = root.join("config.yml");
            fs::write(&cfg_path, config).unwrap();
            let stdout = fs::File::create(root.join("access.log")).unwrap();
            let stderr = fs::File::create(root.join("stderr.log")).unwrap();
            let mut child = Command::new(&bin)
                .arg("serve")
                .arg(&cfg_path)
                .stdin(Stdio::null())
                .stdout(stdout)
                .stderr(stderr)
                .spawn()
                .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));

            match wait_listening(&mut child, &host, Duration::from_secs(15)) {
                Ok(()) => {}
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let log = read_lossy(&root.join("stderr.log"));
                    if log.contains("address already in use") {
                        last_err = log;
                        continue; // lost the port race: try another port
                    }
                    panic!("docker-registry did not start on {host}: {e}\nstderr:\n{log}");
                }
            }
            let reg = Registry {
                host,
                tls: opts.tls,
                creds: opts.htpasswd.clone(),
                child,
                dir: Some(dir),
                cert_dir: root.join("certs"),
                data: data.clone(),
                root,
                mark_offset: Mutex::new(0),
                sentinel_seq: AtomicU64::new(0),
            };
            // The first real HTTP round trip doubles as readiness (200 or 401 on /v2/);
            // mark() then hides it from requests().
            match reg.try_get_status("/v2/") {
                Ok(200 | 401) => {}
                other => panic!(
                    "docker-registry {}/v2/ is not ready: {other:?}; stderr:\n{}",
                    reg.url(),
                    reg.stderr_log()
                ),
            }
            reg.mark();
            return reg;
        }
        panic!("docker-registry could not get a free port after 8 attempts:\n{last_err}");
    }

    /// `http://host` or `https://host`.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.host)
    }

    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// A directory holding only `ca.crt` (skopeo `--cert-dir` layout); `None` without TLS.
    pub fn ca_dir(&self) -> Option<&Path> {
        self.tls.then_some(self.cert_dir.as_path())
    }

    /// The CA certificate (PEM) when TLS is on.
    pub fn ca_pem(&self) -> Option<PathBuf> {
        self.tls.then(|| self.root.join("certs/ca.crt"))
    }

    /// The credentials the registry was started with (htpasswd), if any.
    pub fn creds(&self) -> Option<(&str, &str)> {
        self.creds.as_ref().map(|(u, p)| (u.as_str(), p.as_str()))
    }

    /// Same as [`Registry::creds`], shaped for the pusher's `auth` argument.
    pub fn auth(&self) -> Option<(&str, &str)> {
        self.creds()
    }

    /// The htpasswd file (exists only for htpasswd registries).
    pub fn password_file(&self) -> PathBuf {
        self.root.join("htpasswd")
    }

    /// Replaces the htpasswd users. distribution re-reads the file while running, which lets a
    /// test revoke or rotate credentials mid-run.
    pub fn set_users(&self, users: &[(&str, &str)]) {
        assert!(
            self.creds.is_some(),
            "set_users on a registry started without htpasswd auth"
        );
        write_htpasswd(&self.password_file(), users);
    }

    /// Storage root (`rootdirectory`); blobs live under `docker/registry/v2/blobs/`.
    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    /// Where the registry stores a blob's bytes, e.g. to corrupt it on disk.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let (algo, hex) = digest.split_once(':').expect("digest algo:hex");
        self.data
            .join("docker/registry/v2/blobs")
            .join(algo)
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// The registry's stderr so far (logrus output).
    pub fn stderr_log(&self) -> String {
        read_lossy(&self.root.join("stderr.log"))
    }

    pub fn access_log_path(&self) -> PathBuf {
        self.root.join("access.log")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Every request since start (or since the last [`Registry::mark`]), in log order.
    /// Exact: waits until a sentinel request made now is logged, then leaves it out.
    pub fn requests(&self) -> Vec<Request> {
        let end = self.sync_log();
        let start = *self.mark_offset.lock().unwrap();
        let text = self.read_log_range(start, end);
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                parse_access_line(l)
                    .unwrap_or_else(|| panic!("unparseable docker-registry access-log line: {l:?}"))
            })
            .filter(|r| !r.query.as_deref().unwrap_or("").contains(SENTINEL))
            .collect()
    }

    /// Start counting afresh: later `requests()` return only what comes after this call.
    pub fn mark(&self) {
        let end = self.sync_log();
        *self.mark_offset.lock().unwrap() = end;
    }

    /// Sends a unique sentinel request and waits until its line is in the access log.
    /// Returns the log length just past the sentinel's line.
    fn sync_log(&self) -> u64 {
        let n = self.sentinel_seq.fetch_add(1, Ordering::SeqCst);
        let token = format!("{SENTINEL}{}-{n}", std::process::id());
        let path = format!("/v2/?{token}");
        if let Err(e) = self.try_get_status(&path) {
            panic!(
                "docker-registry sentinel {path}: {e}; stderr:\n{}",
                self.stderr_log()
            );
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        let start = *self.mark_offset.lock().unwrap();
        loop {
            let text = self.read_log_range(start, u64::MAX);
            if let Some(pos) = text.find(&token) {
                let line_end = text[pos..]
                    .find('\n')
                    .map(|i| pos + i + 1)
                    .unwrap_or(text.len());
                return start + line_end as u64;
            }
            assert!(
                Instant::now() < deadline,
                "sentinel request {path} never appeared in the docker-registry access log {}",
                self.access_log_path().display()
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn read_log_range(&self, start: u64, end: u64) -> String {
        let mut f = fs::File::open(self.access_log_path()).expect("open access log");
        f.seek(SeekFrom::Start(start)).unwrap();
        let mut buf = Vec::new();
        f.take(end.saturating_sub(start))
            .read_to_end(&mut buf)
            .unwrap();
        // Only complete lines.
        if let Some(last_nl) = buf.iter().rposition(|&b| b == b'\n') {
            buf.truncate(last_nl + 1);
        } else {
            buf.clear();
        }
        String::from_utf8_lossy(&buf).into_owned()
    }

    /// One blocking GET (no auth), retried for up to ~1 s on transport errors, returning the
    /// status; safe inside a tokio runtime.
    fn try_get_status(&self, path: &str) -> Result<u16, String> {
        let url = format!("{}{path}", self.url());
        let ca = self.ca_dir().map(Path::to_path_buf);
        blocking(async move {
            let client = http_client(ca.as_deref());
            let mut last = String::new();
            for _ in 0..50 {
                match client.get(&url).send().await {
                    Ok(r) => return Ok(r.status().as_u16()),
                    Err(e) => last = format!("{e:?}"),
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(format!("GET {url} failed: {last}"))
        })
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::env::var_os("HARNESS_KEEP_DIRS").is_some() {
            if let Some(d) = self.dir.take() {
                eprintln!("keeping registry dir {}", d.keep().display());
            }
        }
    }
}

/// Waits until `host` accepts TCP connections, failing early if the child exits.
fn wait_listening(child: &mut Child, host: &str, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            return Err(format!("exited early with {status}"));
        }
        if TcpStream::connect_timeout(&host.parse().unwrap(), Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("not listening after {timeout:?}"));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn write_htpasswd(path: &Path, users: &[(&str, &str)]) {
    let bin = htpasswd_bin();
    let mut text = String::new();
    for (user, pass) in users {
        // -B: bcrypt, the only scheme distribution accepts. -n: print, -b: password from argv.
        let out = run_ok(
            Command::new(&bin).args(["-Bbn", user, pass]),
            "htpasswd -Bbn",
        );
        text.push_str(String::from_utf8_lossy(&out.stdout).trim());
        text.push('\n');
    }
    // Write then rename, so the running registry never reads a half-written file.
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, text).unwrap();
    fs::rename(&tmp, path).unwrap();
}

/// CA + leaf, per TESTING.md: rustls rejects a one-step self-signed cert used as end entity
/// (`CaUsedAsEndEntity`). EC P-256 keys: much faster to generate than RSA, and accepted by
/// Go, rustls and skopeo alike.
fn make_tls(root: &Path) {
    let tls = root.join("tls");
    let certs = root.join("certs");
    fs::create_dir_all(&tls).unwrap();
    fs::create_dir_all(&certs).unwrap();
    let openssl = openssl_bin();
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
    run_ok(
        Command::new(&openssl)
            .current_dir(&tls)
            .args(["req", "-x509"])
            .args(ec)
            .args(["-nodes", "-days", "30", "-subj", "/CN=harness test CA"])
            .args(["-keyout", "ca.key", "-out", "ca.pem"])
            .args(["-addext", "basicConstraints=critical,CA:TRUE"])
            .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]),
        "openssl (test CA)",
    );
    run_ok(
        Command::new(&openssl)
            .current_dir(&tls)
            .arg("req")
            .args(ec)
            .args(["-nodes", "-subj", "/CN=localhost"])
            .args(["-keyout", "key.pem", "-out", "leaf.csr"]),
        "openssl (leaf CSR)",
    );
    fs::write(
        tls.join("leaf.ext"),
        "basicConstraints=critical,CA:FALSE\n\
         keyUsage=critical,digitalSignature,keyEncipherment\n\
         extendedKeyUsage=serverAuth\n\
         subjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .unwrap();
    run_ok(
        Command::new(&openssl)
            .current_dir(&tls)
            .args(["x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem"])
            .args(["-CAkey", "ca.key", "-CAcreateserial", "-days", "30"])
            .args(["-extfile", "leaf.ext", "-out", "cert.pem"]),
        "openssl (leaf cert)",
    );
    fs::copy(tls.join("ca.pem"), certs.join("ca.crt")).unwrap();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_combined_lines() {
        let r = parse_access_line(
            r#"127.0.0.1 - - [22/Nov/2026:08:31:22 +0000] "HEAD /v2/a/b/manifests/latest?x=1 HTTP/1.1" 404 96 "" "curl/7.88.1""#,
        )
        .unwrap();
        assert_eq!(r.method, "HEAD");
        assert_eq!(r.path, "/v2/a/b/manifests/latest");
        assert_eq!(r.query.as_deref(), Some("x=1"));
        assert_eq!(r.status, 404);
        assert_eq!(r.size, 96);
        assert_eq!(r.user_agent, "curl/7.88.1");
        assert_eq!(r.kind(), Kind::Manifest);
        assert_eq!(r.repo().as_deref(), Some("a/b"));
        let r = parse_access_line(
            r#"::1 - - [22/Nov/2026:08:31:22 +0000] "PUT /v2/x/blobs/uploads/9a-b?_state=q%3D&digest=sha256%3Aab HTTP/1.1" 201 0 "" "ua \"quoted\" [x]""#,
        )
        .unwrap();
        assert_eq!(r.kind(), Kind::Upload);
        assert_eq!(r.user_agent, r#"ua "quoted" [x]"#);
        assert_eq!(r.repo().as_deref(), Some("x"));
        assert!(parse_access_line("garbage").is_none());
    }

    #[test]
    fn kinds() {
        assert_eq!(kind_of("/v2/"), Kind::Other);
        assert_eq!(kind_of("/v2/_catalog"), Kind::Other);
        assert_eq!(kind_of("/v2/a/tags/list"), Kind::Other);
        assert_eq!(kind_of("/v2/a/blobs/uploads/"), Kind::Upload);
        assert_eq!(kind_of("/v2/a/blobs/uploads/uuid"), Kind::Upload);
        assert_eq!(kind_of("/v2/blobs/blobs/sha256:00"), Kind::Blob);
        assert_eq!(kind_of("/v2/manifests/manifests/v1"), Kind::Manifest);
    }
}
