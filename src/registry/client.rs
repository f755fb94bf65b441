//! A small OCI distribution client for one registry: auth, retries, limits, streaming.
//!
//! Why not `oci_client::Client` for the requests: the copy engine needs the response headers
//! (`Retry-After`, Docker Hub's `RateLimit-Remaining`, `Docker-Content-Digest`), a typed 404 on
//! HEAD, client certificates (`client.cert`/`client.key` in a cert dir), a per-registry bound on
//! requests in flight, and a blob upload whose body is a verifying stream. oci-client 0.18
//! exposes none of those, so this module speaks the distribution API over `reqwest` (the same
//! HTTP stack oci-client uses) and keeps using oci-client's reference and manifest model.
//!
//! Retries: idempotent requests are retried here with the `backoff` crate (exponential, with
//! jitter, capped), on connect/reset/timeout errors, 408, 429 and 5xx, honouring
//! `Retry-After` (seconds or HTTP-date). A blob stream cannot be replayed, so blob transfers are
//! retried as a whole by the copy engine, through [`Registry::retrying`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, LOCATION};
use reqwest::{Method, StatusCode};
use tokio::sync::{Mutex, OnceCell, Semaphore};

use super::auth::{basic_header, parse_challenge, Challenge, Credentials, Secret};
use super::manifest::{accept_header, classify, sha256_digest, Manifest, MAX_MANIFEST_BYTES};
use crate::error::RegistryError;

/// Blobs up to this size are uploaded with one `PUT` carrying the body (after the `POST` that
/// opens the session); larger ones with `PATCH` + an empty `PUT`. Below 1 MiB the saved round
/// trip is a large share of the blob's cost (configs, small layers); above it, it is noise next
/// to the transfer, and a separate `PATCH` is what every registry has been tested with.
pub const MONOLITHIC_MAX: u64 = 1 << 20;

/// Retry settings, shared by every request of a run.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// How many times a failed request is repeated (`--retry-times`). Default 5.
    pub times: u32,
    /// The first wait. Default 500 ms; doubles each time, ±50 % jitter.
    pub initial: Duration,
    /// The longest wait between attempts. Default 30 s.
    pub max_interval: Duration,
    /// The longest `Retry-After` we honour; longer requests are capped. Default 120 s.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            times: 5,
            initial: Duration::from_millis(500),
            max_interval: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(120),
        }
    }
}

/// How to reach and trust one registry.
#[derive(Clone, Debug)]
pub struct RegistryConfig {
    /// The registry's name as it appears in references (`host[:port]`; `docker.io`).
    pub registry: String,
    /// Where to send requests instead of `https://<registry>` (e.g. `--registry-endpoint`).
    pub endpoint: Option<String>,
    /// Verify TLS certificates; `false` also allows plain HTTP (as in skopeo). Default true.
    pub tls_verify: bool,
    /// A directory with `*.crt` CA files and optionally `client.cert` + `client.key`.
    pub cert_dir: Option<PathBuf>,
    /// Credentials.
    pub credentials: Credentials,
    /// Retry settings.
    pub retry: RetryPolicy,
    /// Requests in flight to this registry at once. Default 16.
    pub max_in_flight: usize,
    /// TCP connect timeout. Default 30 s.
    pub connect_timeout: Duration,
    /// Longest silence while reading a response. Default 120 s.
    pub read_timeout: Duration,
}

impl RegistryConfig {
    /// A config with defaults for `registry`.
    pub fn new(registry: &str) -> RegistryConfig {
        RegistryConfig {
            registry: registry.to_string(),
            endpoint: None,
            tls_verify: true,
            cert_dir: None,
            credentials: Credentials::Anonymous,
            retry: RetryPolicy::default(),
            max_in_flight: 16,
            connect_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(120),
        }
    }
}

/// Counters a run reports.
#[derive(Debug, Default)]
pub struct Stats {
    /// Requests retried after a transient failure.
    pub retries: AtomicU64,
    /// Last `RateLimit-Remaining` seen (Docker Hub), or -1.
    pub rate_limit_remaining: AtomicI64,
}

/// What a manifest HEAD found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestHead {
    /// `Docker-Content-Digest`.
    pub digest: String,
    /// `Content-Type`.
    pub media_type: String,
}

/// The result of a cross-repository mount request.
#[derive(Debug)]
pub enum Mount {
    /// The blob is now in the target repository.
    Mounted,
    /// The registry did not mount; it opened an upload session at this location instead.
    Upload(String),
}

/// The access a request needs, which decides the bearer-token scope.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    /// `pull`.
    Pull,
    /// `pull,push`.
    Push,
}

/// A client for one registry. Cheap to share behind an `Arc`.
pub struct Registry {
    cfg: RegistryConfig,
    http: reqwest::Client,
    base: OnceCell<(String, Challenge)>,
    tokens: Mutex<HashMap<String, (Secret, Instant)>>,
    limit: Arc<Semaphore>,
    /// Per repository: its tag list, read at most once per run ([`Registry::listed_tags`]).
    tag_lists: std::sync::Mutex<HashMap<String, Arc<OnceCell<Option<TagSet>>>>>,
    /// Counters for the run report.
    pub stats: Stats,
}

/// A repository's tags, as one listing returned them.
pub type TagSet = Arc<std::collections::HashSet<String>>;

/// The largest tag list [`Registry::listed_tags`] reads (a one-page list of ~20,000 tags).
const MAX_TAG_LIST_BYTES: usize = 1 << 20;

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("registry", &self.cfg.registry)
            .finish()
    }
}

/// A blob body as a stream of chunks.
pub type ByteStream = std::pin::Pin<Box<dyn Stream<Item = Result<Bytes, RegistryError>> + Send>>;

fn load_cert_dir(
    dir: &Path,
    b: reqwest::ClientBuilder,
) -> Result<reqwest::ClientBuilder, RegistryError> {
    let cfg_err = |what: String| RegistryError::Config(what);
    let entries = std::fs::read_dir(dir)
        .map_err(|e| cfg_err(format!("cannot read cert dir {}: {e}", dir.display())))?;
    let mut b = b;
    let mut cert: Option<Vec<u8>> = None;
    let mut key: Option<Vec<u8>> = None;
    for e in entries.flatten() {
        let p = e.path();
        let name = p
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        let read =
            || std::fs::read(&p).map_err(|e| cfg_err(format!("cannot read {}: {e}", p.display())));
        if name.ends_with(".crt") {
            let pem = read()?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| cfg_err(format!("{}: not a PEM certificate: {e}", p.display())))?;
            for c in certs {
                b = b.add_root_certificate(c);
            }
        } else if name.ends_with(".cert") {
            cert = Some(read()?);
        } else if name.ends_with(".key") {
            key = Some(read()?);
        }
    }
    match (cert, key) {
        (Some(mut c), Some(k)) => {
            c.push(b'\n');
            c.extend_from_slice(&k);
            let id = reqwest::Identity::from_pem(&c).map_err(|e| {
                cfg_err(format!("{}: client.cert/client.key: {e}", dir.display()))
            })?;
            b = b.identity(id);
        }
        (Some(_), None) | (None, Some(_)) => {
            return Err(cfg_err(format!(
                "cert dir {} has a client certificate or key without its pair (need client.cert and client.key)",
                dir.display()
            )))
        }
        _ => {}
    }
    Ok(b)
}

/// Parses `Retry-After`: delta-seconds or an HTTP-date.
pub fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(
        when.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// Parses Docker Hub's `RateLimit-Remaining: 76;w=21600`.
pub fn parse_rate_limit(v: &str) -> Option<i64> {
    v.split(';').next()?.trim().parse().ok()
}

/// Whether the error chain holds a TLS failure: a `rustls::Error` (directly, or inside an
/// `io::Error`, as tokio-rustls reports it). A bad certificate does not get better by retrying.
fn is_tls_failure(e: &reqwest::Error) -> bool {
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        if s.downcast_ref::<rustls::Error>().is_some() {
            return true;
        }
        // hyper-util wraps the TLS error in io::Error(Other, io::Error(InvalidData, rustls));
        // `io::Error::source` skips the wrapped error itself, so unwrap by hand.
        let mut io = s.downcast_ref::<std::io::Error>();
        while let Some(e) = io {
            let inner = e.get_ref();
            if inner.is_some_and(|i| i.downcast_ref::<rustls::Error>().is_some()) {
                return true;
            }
            io = inner.and_then(|i| i.downcast_ref::<std::io::Error>());
        }
        src = s.source();
    }
    false
}

fn transport_err(registry: &str, what: &str, e: &reqwest::Error) -> RegistryError {
    let kind = if is_tls_failure(e) {
        "tls"
    } else if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else if e.is_body() || e.is_decode() {
        "body"
    } else {
        "reset"
    };
    // reqwest's Display includes the URL; our URLs never carry credentials.
    let mut detail = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        detail.push_str(": ");
        detail.push_str(&s.to_string());
        src = s.source();
    }
    RegistryError::Transport {
        registry: registry.to_string(),
        what: what.to_string(),
        kind,
        detail,
    }
}

#[derive(serde::Deserialize)]
struct ErrorBody {
    errors: Option<Vec<ErrorItem>>,
}
#[derive(serde::Deserialize)]
struct ErrorItem {
    code: Option<String>,
    message: Option<String>,
}

#[derive(serde::Deserialize)]
struct TokenResponse {
    token: Option<String>,
    access_token: Option<String>,
    expires_in: Option<u64>,
}

impl Registry {
    /// Builds the HTTP client (TLS roots, client certificate, timeouts).
    pub fn new(cfg: RegistryConfig) -> Result<Registry, RegistryError> {
        let mut b = reqwest::Client::builder()
            .user_agent(concat!("ecr-mirror-sync/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(cfg.connect_timeout)
            .read_timeout(cfg.read_timeout)
            .pool_max_idle_per_host(cfg.max_in_flight.max(1));
        if let Some(dir) = &cfg.cert_dir {
            b = load_cert_dir(dir, b)?;
        }
        if !cfg.tls_verify {
            b = b.danger_accept_invalid_certs(true);
        }
        let http = b
            .build()
            .map_err(|e| RegistryError::Config(format!("cannot build HTTP client: {e}")))?;
        Ok(Registry {
            limit: Arc::new(Semaphore::new(cfg.max_in_flight.max(1))),
            cfg,
            http,
            base: OnceCell::new(),
            tokens: Mutex::new(HashMap::new()),
            tag_lists: Default::default(),
            stats: Stats {
                retries: AtomicU64::new(0),
                rate_limit_remaining: AtomicI64::new(-1),
            },
        })
    }

    /// The registry's name (`host[:port]`).
    pub fn name(&self) -> &str {
        &self.cfg.registry
    }

    /// The retry policy.
    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.cfg.retry
    }

    fn request_host(&self) -> &str {
        match self.cfg.registry.as_str() {
            // Docker Hub's API lives on another host than its name.
            "docker.io" => "registry-1.docker.io",
            h => h,
        }
    }

    /// Pings `/v2/` once to learn the base URL (scheme) and the auth challenge.
    async fn base(&self) -> Result<&(String, Challenge), RegistryError> {
        self.base
            .get_or_try_init(|| async {
                let candidates: Vec<String> = match &self.cfg.endpoint {
                    Some(e) => vec![e.trim_end_matches('/').to_string()],
                    None if self.cfg.tls_verify => vec![format!("https://{}", self.request_host())],
                    None => vec![
                        format!("https://{}", self.request_host()),
                        format!("http://{}", self.request_host()),
                    ],
                };
                let mut last = None;
                let n = candidates.len();
                for (i, base) in candidates.into_iter().enumerate() {
                    // With several candidates (https, then http for --tls-verify=false), a
                    // failed handshake means "try the next scheme", not "retry".
                    let url = format!("{base}/v2/");
                    let probe = async {
                        let r = self
                            .http
                            .get(&url)
                            .send()
                            .await
                            .map_err(|e| transport_err(&self.cfg.registry, "GET /v2/", &e))?;
                        Ok::<_, RegistryError>(r)
                    };
                    if i + 1 < n {
                        match probe.await {
                            Err(e) => {
                                tracing::debug!(registry = %self.cfg.registry, %base, error = %e, "trying the next scheme");
                                last = Some(e);
                                continue;
                            }
                            Ok(r) if r.status().is_server_error() => {}
                            Ok(r) => {
                                let challenge = challenge_of(&r);
                                return Ok((base, challenge));
                            }
                        }
                    }
                    // Not retried here: every caller of `base()` is already inside a
                    // retried request, and nesting retries multiplies the attempts.
                    let res = async {
                        let r = self
                            .http
                            .get(format!("{base}/v2/"))
                            .send()
                            .await
                            .map_err(|e| transport_err(&self.cfg.registry, "GET /v2/", &e))?;
                        if r.status().is_server_error() || r.status() == StatusCode::TOO_MANY_REQUESTS {
                            return Err(self.status_error(r, "GET", "/v2/").await);
                        }
                        Ok(r)
                    }
                    .await;
                    match res {
                        Ok(r) => {
                            let challenge = challenge_of(&r);
                            tracing::debug!(registry = %self.cfg.registry, %base, ?challenge, "registry ping");
                            return Ok((base, challenge));
                        }
                        Err(e @ RegistryError::Transport { .. }) => last = Some(e),
                        Err(e) => return Err(e),
                    }
                }
                Err(last.expect("at least one candidate"))
            })
            .await
    }

    fn scope_key(repo: &str, access: Access, extra_pull: Option<&str>) -> Vec<String> {
        let mut scopes = vec![format!(
            "repository:{repo}:{}",
            match access {
                Access::Pull => "pull",
                Access::Push => "pull,push",
            }
        )];
        if let Some(from) = extra_pull {
            scopes.push(format!("repository:{from}:pull"));
        }
        scopes
    }

    /// The `Authorization` header for a request needing `scopes`, or `None`.
    async fn authorization(&self, scopes: &[String]) -> Result<Option<HeaderValue>, RegistryError> {
        let (_, challenge) = self.base().await?;
        let header = match (challenge, &self.cfg.credentials) {
            (_, Credentials::Bearer(t)) => Some(format!("Bearer {}", t.expose())),
            (Challenge::None, _) => None,
            (Challenge::Basic, Credentials::Basic(c)) => Some(basic_header(c)),
            (Challenge::Basic, Credentials::Dynamic(src)) => {
                Some(basic_header(&src.current().await?))
            }
            (Challenge::Basic, Credentials::Anonymous) => None,
            (Challenge::Bearer { realm, service }, creds) => {
                let key = scopes.join(" ");
                let mut tokens = self.tokens.lock().await;
                if let Some((tok, until)) = tokens.get(&key) {
                    if Instant::now() < *until {
                        return Ok(Some(bearer(tok)));
                    }
                }
                let tok = self
                    .fetch_token(realm, service.as_deref(), scopes, creds)
                    .await?;
                let header = bearer(&tok.0);
                tokens.insert(key, tok);
                return Ok(Some(header));
            }
        };
        Ok(header.map(|h| {
            let mut v = HeaderValue::from_str(&h).expect("auth header is ASCII");
            v.set_sensitive(true);
            v
        }))
    }

    async fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scopes: &[String],
        creds: &Credentials,
    ) -> Result<(Secret, Instant), RegistryError> {
        let mut q: Vec<(&str, &str)> = scopes.iter().map(|s| ("scope", s.as_str())).collect();
        if let Some(s) = service {
            q.push(("service", s));
        }
        let basic = match creds {
            Credentials::Basic(c) => Some(c.clone()),
            Credentials::Dynamic(src) => Some(src.current().await?),
            _ => None,
        };
        // Not retried here: the token is fetched inside an already-retried request.
        let res = {
            let mut rb = self.http.get(realm).query(&q);
            if let Some(c) = &basic {
                let mut v = HeaderValue::from_str(&basic_header(c)).expect("ascii");
                v.set_sensitive(true);
                rb = rb.header(AUTHORIZATION, v);
            }
            let r = rb
                .send()
                .await
                .map_err(|e| transport_err(&self.cfg.registry, "token request", &e))?;
            if r.status().is_server_error() || r.status() == StatusCode::TOO_MANY_REQUESTS {
                return Err(self.status_error(r, "GET", "token").await);
            }
            r
        };
        if !res.status().is_success() {
            return Err(RegistryError::Auth {
                registry: self.cfg.registry.clone(),
                user: creds.username(),
                reason: format!("the token service answered HTTP {}", res.status().as_u16()),
            });
        }
        let body: TokenResponse = res.json().await.map_err(|e| RegistryError::Auth {
            registry: self.cfg.registry.clone(),
            user: creds.username(),
            reason: format!("unreadable token response: {e}"),
        })?;
        let tok = body
            .token
            .or(body.access_token)
            .ok_or_else(|| RegistryError::Auth {
                registry: self.cfg.registry.clone(),
                user: creds.username(),
                reason: "the token response has no token".into(),
            })?;
        // Refresh 30 s early; the spec's default lifetime is 60 s.
        let ttl = body.expires_in.unwrap_or(60).max(31) - 30;
        Ok((Secret::new(tok), Instant::now() + Duration::from_secs(ttl)))
    }

    async fn forget_auth(&self, scopes: &[String]) {
        self.tokens.lock().await.remove(&scopes.join(" "));
        if let Credentials::Dynamic(src) = &self.cfg.credentials {
            src.invalidate().await;
        }
    }

    async fn status_error(&self, r: reqwest::Response, method: &str, what: &str) -> RegistryError {
        let status = r.status().as_u16();
        let retry_after = r
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after)
            .map(|d| d.min(self.cfg.retry.max_retry_after));
        let body = r.bytes().await.unwrap_or_default();
        let parsed: Option<ErrorBody> =
            serde_json::from_slice(&body[..body.len().min(64 * 1024)]).ok();
        let first = parsed
            .and_then(|p| p.errors)
            .and_then(|e| e.into_iter().next());
        let (code, mut message) = match first {
            Some(i) => (i.code, i.message.unwrap_or_default()),
            None => (None, String::new()),
        };
        message.truncate(300);
        if status == 401 || status == 403 {
            return RegistryError::Auth {
                registry: self.cfg.registry.clone(),
                user: self.cfg.credentials.username(),
                reason: format!(
                    "{method} {what}: HTTP {status}{}",
                    code.map(|c| format!(" {c}")).unwrap_or_default()
                ),
            };
        }
        RegistryError::Status {
            registry: self.cfg.registry.clone(),
            method: method.to_string(),
            what: what.to_string(),
            status,
            code,
            message,
            retry_after,
        }
    }

    fn observe_headers(&self, h: &HeaderMap) {
        if let Some(v) = h
            .get("ratelimit-remaining")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_rate_limit)
        {
            self.stats.rate_limit_remaining.store(v, Ordering::Relaxed);
        }
    }

    /// Docker Hub: slow down as the pull budget nears zero, instead of hitting 429.
    async fn pace(&self) {
        let left = self.stats.rate_limit_remaining.load(Ordering::Relaxed);
        if (0..10).contains(&left) {
            let wait = Duration::from_millis(500 * (10 - left) as u64);
            tracing::warn!(registry = %self.cfg.registry, remaining = left, ?wait, "rate limit nearly used up; slowing down");
            tokio::time::sleep(wait).await;
        }
    }

    /// Sends one request with auth (re-authenticating once on 401) and returns the response if
    /// its status is in `ok`; any other status becomes a typed error.
    #[allow(clippy::too_many_arguments)]
    async fn send(
        &self,
        method: Method,
        url_or_path: &str,
        scopes: &[String],
        what: &str,
        ok: &[StatusCode],
        build: &(dyn Fn(reqwest::RequestBuilder) -> reqwest::RequestBuilder + Sync),
    ) -> Result<reqwest::Response, RegistryError> {
        self.send_with(method, url_or_path, scopes, what, ok, true, build)
            .await
    }

    /// [`Self::send`], for a request whose body may not be replayable (a streamed upload):
    /// then a 401 does not resend; it drops the cached credentials and fails with a retryable
    /// error, so the caller restarts the whole transfer with fresh credentials.
    #[allow(clippy::too_many_arguments)]
    async fn send_with(
        &self,
        method: Method,
        url_or_path: &str,
        scopes: &[String],
        what: &str,
        ok: &[StatusCode],
        replayable: bool,
        build: &(dyn Fn(reqwest::RequestBuilder) -> reqwest::RequestBuilder + Sync),
    ) -> Result<reqwest::Response, RegistryError> {
        let (base, _) = self.base().await?;
        let url = if url_or_path.starts_with("http://") || url_or_path.starts_with("https://") {
            url_or_path.to_string()
        } else if url_or_path.starts_with('/') {
            format!("{base}{url_or_path}")
        } else {
            format!("{base}/{url_or_path}")
        };
        self.pace().await;
        let _permit = self.limit.acquire().await.expect("semaphore never closed");
        for attempt in 0..2 {
            let mut rb = build(self.http.request(method.clone(), &url));
            if let Some(h) = self.authorization(scopes).await? {
                rb = rb.header(AUTHORIZATION, h);
            }
            let r = rb
                .send()
                .await
                .map_err(|e| transport_err(&self.cfg.registry, what, &e))?;
            self.observe_headers(r.headers());
            if ok.contains(&r.status()) {
                return Ok(r);
            }
            if r.status() == StatusCode::UNAUTHORIZED && attempt == 0 {
                tracing::debug!(registry = %self.cfg.registry, what, "401; re-authenticating once");
                self.forget_auth(scopes).await;
                if !replayable {
                    return Err(RegistryError::Transport {
                        registry: self.cfg.registry.clone(),
                        what: what.to_string(),
                        kind: "reauth",
                        detail: "the credentials expired during a streamed upload; the transfer is restarted".into(),
                    });
                }
                continue;
            }
            return Err(self.status_error(r, method.as_str(), what).await);
        }
        unreachable!("the loop returns")
    }

    /// Runs `op` with the run's retry policy: transient errors are repeated with exponential
    /// backoff and jitter, `Retry-After` sets the wait, anything else fails at once.
    pub async fn retrying<T, F, Fut>(&self, what: &str, mut op: F) -> Result<T, RegistryError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, RegistryError>>,
    {
        let p = &self.cfg.retry;
        let policy = backoff::ExponentialBackoffBuilder::new()
            .with_initial_interval(p.initial)
            .with_multiplier(2.0)
            .with_randomization_factor(0.5)
            .with_max_interval(p.max_interval)
            .with_max_elapsed_time(None)
            .build();
        let attempts = std::sync::atomic::AtomicU32::new(0);
        backoff::future::retry_notify(
            policy,
            || {
                let fut = op();
                let attempts = &attempts;
                async move {
                    match fut.await {
                        Ok(v) => Ok(v),
                        Err(e)
                            if e.is_retryable()
                                && attempts.fetch_add(1, Ordering::Relaxed) < p.times =>
                        {
                            match e.retry_after() {
                                Some(d) => Err(backoff::Error::retry_after(e, d)),
                                None => Err(backoff::Error::transient(e)),
                            }
                        }
                        Err(e) => Err(backoff::Error::permanent(e)),
                    }
                }
            },
            |e: RegistryError, wait: Duration| {
                self.stats.retries.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(registry = %self.cfg.registry, what, error = %e, ?wait, "retrying");
            },
        )
        .await
    }

    /// HEADs a manifest. `Ok(None)` on 404.
    pub async fn head_manifest(
        &self,
        repo: &str,
        reference: &str,
    ) -> Result<Option<ManifestHead>, RegistryError> {
        let what = format!("manifest {repo}:{reference}");
        let scopes = Self::scope_key(repo, Access::Pull, None);
        let path = format!("/v2/{repo}/manifests/{reference}");
        let accept = accept_header();
        let res = self
            .retrying(&what, || async {
                self.send(
                    Method::HEAD,
                    &path,
                    &scopes,
                    &what,
                    &[StatusCode::OK, StatusCode::NOT_FOUND],
                    &|rb| rb.header(ACCEPT, accept.as_str()),
                )
                .await
            })
            .await?;
        if res.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let h = res.headers();
        let digest = h
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let media_type = h
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        match digest {
            Some(d) => Ok(Some(ManifestHead {
                digest: d,
                media_type,
            })),
            // A registry that omits the digest on HEAD (the spec says SHOULD): fall back to GET.
            None => {
                let m = self.get_manifest(repo, reference).await?;
                Ok(Some(ManifestHead {
                    digest: m.digest,
                    media_type: m.media_type,
                }))
            }
        }
    }

    /// GETs a manifest: at most [`MAX_MANIFEST_BYTES`], media type checked against the body,
    /// digest computed from the bytes and checked against the reference (when it is a digest)
    /// and against `Docker-Content-Digest`.
    pub async fn get_manifest(
        &self,
        repo: &str,
        reference: &str,
    ) -> Result<Manifest, RegistryError> {
        let what = format!("manifest {repo}:{reference}");
        let scopes = Self::scope_key(repo, Access::Pull, None);
        let path = format!("/v2/{repo}/manifests/{reference}");
        let accept = accept_header();
        self.retrying(&what, || async {
            let res = self
                .send(
                    Method::GET,
                    &path,
                    &scopes,
                    &what,
                    &[StatusCode::OK],
                    &|rb| rb.header(ACCEPT, accept.as_str()),
                )
                .await?;
            let header_type = res
                .headers()
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let header_digest = res
                .headers()
                .get("docker-content-digest")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            if res
                .content_length()
                .is_some_and(|l| l > MAX_MANIFEST_BYTES as u64)
            {
                return Err(too_large(&what));
            }
            let mut body = Vec::new();
            let mut stream = res.bytes_stream();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| transport_err(&self.cfg.registry, &what, &e))?;
                if body.len() + chunk.len() > MAX_MANIFEST_BYTES {
                    return Err(too_large(&what));
                }
                body.extend_from_slice(&chunk);
            }
            let digest = sha256_digest(&body);
            if reference.starts_with("sha256:") && reference != digest {
                return Err(RegistryError::DigestMismatch {
                    what: what.clone(),
                    expected: reference.to_string(),
                    actual: digest,
                });
            }
            if let Some(h) = header_digest.filter(|h| h.starts_with("sha256:")) {
                if h != digest {
                    return Err(RegistryError::DigestMismatch {
                        what: what.clone(),
                        expected: h,
                        actual: digest,
                    });
                }
            }
            let media_type = classify(&body, header_type.as_deref(), &what)?;
            Ok(Manifest {
                bytes: Bytes::from(body),
                media_type,
                digest,
            })
        })
        .await
    }

    /// PUTs a manifest's exact bytes at `reference` (a tag or its digest).
    pub async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        m: &Manifest,
    ) -> Result<(), RegistryError> {
        let what = format!("manifest {repo}:{reference}");
        let scopes = Self::scope_key(repo, Access::Push, None);
        let path = format!("/v2/{repo}/manifests/{reference}");
        self.retrying(&what, || async {
            self.send(
                Method::PUT,
                &path,
                &scopes,
                &what,
                &[StatusCode::CREATED, StatusCode::OK, StatusCode::ACCEPTED],
                &|rb| {
                    rb.header(CONTENT_TYPE, m.media_type.as_str())
                        .body(m.bytes.clone())
                },
            )
            .await
        })
        .await?;
        Ok(())
    }

    /// The tags of `repo`, listed once per run and shared by every caller (`GET
    /// /v2/<repo>/tags/list`). `None` when the list is not complete in one response (a `Link`
    /// to a next page, or more than 1 MiB) or cannot be read at all: then the caller asks
    /// about each tag it cares about instead. Used to skip the per-digest HEADs of cosign
    /// `.sig` tags that most upstream images do not have.
    pub async fn listed_tags(&self, repo: &str) -> Option<TagSet> {
        let cell = self
            .tag_lists
            .lock()
            .expect("not poisoned")
            .entry(repo.to_string())
            .or_default()
            .clone();
        cell.get_or_init(|| async {
            match self.list_tags_once(repo).await {
                Ok(tags) => tags,
                Err(e) => {
                    tracing::debug!(registry = %self.cfg.registry, repo, error = %e,
                        "cannot list tags; signature tags are looked up one by one");
                    None
                }
            }
        })
        .await
        .clone()
    }

    async fn list_tags_once(&self, repo: &str) -> Result<Option<TagSet>, RegistryError> {
        #[derive(serde::Deserialize)]
        struct TagList {
            tags: Option<Vec<String>>,
        }
        let what = format!("tag list of {repo}");
        let scopes = Self::scope_key(repo, Access::Pull, None);
        let path = format!("/v2/{repo}/tags/list");
        self.retrying(&what, || async {
            let res = self
                .send(
                    Method::GET,
                    &path,
                    &scopes,
                    &what,
                    &[StatusCode::OK],
                    &|rb| rb,
                )
                .await?;
            if res.headers().contains_key(reqwest::header::LINK)
                || res
                    .content_length()
                    .is_some_and(|l| l > MAX_TAG_LIST_BYTES as u64)
            {
                return Ok(None);
            }
            let mut body = Vec::new();
            let mut stream = res.bytes_stream();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| transport_err(&self.cfg.registry, &what, &e))?;
                if body.len() + chunk.len() > MAX_TAG_LIST_BYTES {
                    return Ok(None);
                }
                body.extend_from_slice(&chunk);
            }
            let list: TagList =
                serde_json::from_slice(&body).map_err(|e| RegistryError::Invalid {
                    what: what.clone(),
                    reason: format!("not a tag list: {e}"),
                })?;
            Ok(Some(Arc::new(
                list.tags.unwrap_or_default().into_iter().collect(),
            )))
        })
        .await
    }

    /// HEADs a blob: whether the repository has it.
    pub async fn has_blob(&self, repo: &str, digest: &str) -> Result<bool, RegistryError> {
        let what = format!("blob {repo}@{digest}");
        let scopes = Self::scope_key(repo, Access::Pull, None);
        let path = format!("/v2/{repo}/blobs/{digest}");
        let r = self
            .retrying(&what, || async {
                self.send(
                    Method::HEAD,
                    &path,
                    &scopes,
                    &what,
                    &[StatusCode::OK, StatusCode::NOT_FOUND],
                    &|rb| rb,
                )
                .await
            })
            .await?;
        Ok(r.status() == StatusCode::OK)
    }

    /// GETs a blob as a stream (redirects to a CDN are followed; reqwest drops the
    /// `Authorization` header when the host changes). The request permit is held until the
    /// stream ends. `Content-Length`, when sent, must equal `size`.
    pub async fn blob_stream(
        &self,
        repo: &str,
        digest: &str,
        size: u64,
    ) -> Result<ByteStream, RegistryError> {
        let what = format!("blob {repo}@{digest}");
        let scopes = Self::scope_key(repo, Access::Pull, None);
        let path = format!("/v2/{repo}/blobs/{digest}");
        let res = self
            .retrying(&what, || async {
                self.send(
                    Method::GET,
                    &path,
                    &scopes,
                    &what,
                    &[StatusCode::OK],
                    &|rb| rb,
                )
                .await
            })
            .await?;
        if let Some(len) = res.content_length() {
            if len != size {
                return Err(RegistryError::SizeMismatch {
                    what,
                    expected: size,
                    actual: len,
                });
            }
        }
        let permit = self.limit.clone().acquire_owned().await.expect("open");
        let registry = self.cfg.registry.clone();
        let s = res
            .bytes_stream()
            .map_err(move |e| transport_err(&registry, &what, &e));
        Ok(Box::pin(s.map(move |x| {
            let _hold = &permit;
            x
        })))
    }

    /// Asks the registry to mount `digest` from `from` into `repo`.
    pub async fn mount_blob(
        &self,
        repo: &str,
        digest: &str,
        from: &str,
    ) -> Result<Mount, RegistryError> {
        let what = format!("mount {digest} from {from} into {repo}");
        let scopes = Self::scope_key(repo, Access::Push, Some(from));
        let path = format!("/v2/{repo}/blobs/uploads/?mount={digest}&from={from}");
        let r = self
            .retrying(&what, || async {
                self.send(
                    Method::POST,
                    &path,
                    &scopes,
                    &what,
                    &[StatusCode::CREATED, StatusCode::ACCEPTED],
                    &|rb| rb.header(reqwest::header::CONTENT_LENGTH, "0"),
                )
                .await
            })
            .await?;
        if r.status() == StatusCode::CREATED {
            Ok(Mount::Mounted)
        } else {
            Ok(Mount::Upload(self.location(&r, &what)?))
        }
    }

    fn location(&self, r: &reqwest::Response, what: &str) -> Result<String, RegistryError> {
        let loc = r
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| RegistryError::Invalid {
                what: what.to_string(),
                reason: "upload response has no Location header".into(),
            })?;
        // Relative locations are resolved against the request URL.
        Ok(r.url()
            .join(loc)
            .map(|u| u.to_string())
            .unwrap_or_else(|_| loc.to_string()))
    }

    /// Opens an upload session and returns its location.
    pub async fn start_upload(&self, repo: &str) -> Result<String, RegistryError> {
        let what = format!("upload to {repo}");
        let scopes = Self::scope_key(repo, Access::Push, None);
        let path = format!("/v2/{repo}/blobs/uploads/");
        let r = self
            .retrying(&what, || async {
                self.send(
                    Method::POST,
                    &path,
                    &scopes,
                    &what,
                    &[StatusCode::ACCEPTED],
                    &|rb| rb.header(reqwest::header::CONTENT_LENGTH, "0"),
                )
                .await
            })
            .await?;
        self.location(&r, &what)
    }

    /// Streams `body` into the upload session and commits it.
    ///
    /// Up to [`MONOLITHIC_MAX`] bytes go as one `PUT ?digest=` carrying the body (the spec's
    /// "monolithic" POST + PUT: two requests per blob instead of three; oras does the same,
    /// and ECR accepts it). Larger blobs go as one `PATCH` and an empty closing `PUT`, the
    /// way containers/image and crane stream them. Either way the body stream verifies the
    /// digest itself and fails before its end on a mismatch, so a corrupt blob is never
    /// committed (and the registry checks the digest of a PUT body too). Not retried here:
    /// the stream is consumed; the caller retries the whole transfer.
    pub async fn upload_stream(
        &self,
        repo: &str,
        location: &str,
        digest: &str,
        size: u64,
        body: ByteStream,
    ) -> Result<(), RegistryError> {
        let what = format!("blob {repo}@{digest}");
        let scopes = Self::scope_key(repo, Access::Push, None);
        let commit_ok = [
            StatusCode::CREATED,
            StatusCode::NO_CONTENT,
            StatusCode::ACCEPTED,
        ];
        let body = std::sync::Mutex::new(Some(body));
        let with_body = |rb: reqwest::RequestBuilder| {
            let rb = rb
                .header(CONTENT_TYPE, "application/octet-stream")
                .header(reqwest::header::CONTENT_LENGTH, size.to_string());
            match body.lock().expect("not poisoned").take() {
                Some(s) => rb.body(reqwest::Body::wrap_stream(s)),
                // Not reached: `send_with(.., false, ..)` never builds twice.
                None => rb.body(Vec::<u8>::new()),
            }
        };
        let commit_url = |loc: &str| {
            let sep = if loc.contains('?') { '&' } else { '?' };
            format!("{loc}{sep}digest={digest}")
        };
        if size <= MONOLITHIC_MAX {
            self.send_with(
                Method::PUT,
                &commit_url(location),
                &scopes,
                &what,
                &commit_ok,
                false,
                &with_body,
            )
            .await?;
            return Ok(());
        }
        let r = self
            .send_with(
                Method::PATCH,
                location,
                &scopes,
                &what,
                &[StatusCode::ACCEPTED, StatusCode::NO_CONTENT],
                false,
                &with_body,
            )
            .await?;
        let loc = self.location(&r, &what)?;
        self.send(
            Method::PUT,
            &commit_url(&loc),
            &scopes,
            &what,
            &commit_ok,
            &|rb| rb.header(reqwest::header::CONTENT_LENGTH, "0"),
        )
        .await?;
        Ok(())
    }

    /// Abandons an upload session (best effort; the registry garbage-collects it anyway).
    pub async fn abort_upload(&self, repo: &str, location: &str) {
        let scopes = Self::scope_key(repo, Access::Push, None);
        let what = format!("abort upload to {repo}");
        let _ = self
            .send(
                Method::DELETE,
                location,
                &scopes,
                &what,
                &[
                    StatusCode::NO_CONTENT,
                    StatusCode::OK,
                    StatusCode::ACCEPTED,
                    StatusCode::NOT_FOUND,
                ],
                &|rb| rb,
            )
            .await;
    }

    /// Last `RateLimit-Remaining` seen, if any.
    pub fn rate_limit_remaining(&self) -> Option<i64> {
        let v = self.stats.rate_limit_remaining.load(Ordering::Relaxed);
        (v >= 0).then_some(v)
    }

    /// Number of retried requests.
    pub fn retries(&self) -> u64 {
        self.stats.retries.load(Ordering::Relaxed)
    }
}

fn challenge_of(r: &reqwest::Response) -> Challenge {
    if r.status() == StatusCode::UNAUTHORIZED {
        r.headers()
            .get("www-authenticate")
            .and_then(|h| h.to_str().ok())
            .map(parse_challenge)
            .unwrap_or(Challenge::Basic)
    } else {
        Challenge::None
    }
}

fn bearer(tok: &Secret) -> HeaderValue {
    let mut v = HeaderValue::from_str(&format!("Bearer {}", tok.expose()))
        .unwrap_or_else(|_| HeaderValue::from_static("Bearer invalid"));
    v.set_sensitive(true);
    v
}

fn too_large(what: &str) -> RegistryError {
    RegistryError::Invalid {
        what: what.to_string(),
        reason: format!("manifest is larger than the {MAX_MANIFEST_BYTES}-byte limit"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_parses_seconds_and_dates() {
        assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
        let future = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(30));
        let d = parse_retry_after(&future).unwrap();
        assert!(
            d <= Duration::from_secs(30) && d >= Duration::from_secs(28),
            "{d:?}"
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn rate_limit_header() {
        assert_eq!(parse_rate_limit("76;w=21600"), Some(76));
        assert_eq!(parse_rate_limit("0"), Some(0));
        assert_eq!(parse_rate_limit("x"), None);
    }

    #[tokio::test]
    async fn retrying_counts_and_gives_up() {
        let mut cfg = RegistryConfig::new("r");
        cfg.retry.times = 2;
        cfg.retry.initial = Duration::from_millis(1);
        let reg = Registry::new(cfg).unwrap();
        let calls = std::sync::atomic::AtomicU32::new(0);
        let r: Result<(), _> = reg
            .retrying("x", || async {
                calls.fetch_add(1, Ordering::Relaxed);
                Err(RegistryError::Status {
                    registry: "r".into(),
                    method: "GET".into(),
                    what: "x".into(),
                    status: 503,
                    code: None,
                    message: String::new(),
                    retry_after: Some(Duration::from_millis(1)),
                })
            })
            .await;
        assert!(r.is_err());
        assert_eq!(calls.load(Ordering::Relaxed), 3, "1 try + 2 retries");
        assert_eq!(reg.retries(), 2);
        let calls = std::sync::atomic::AtomicU32::new(0);
        let r: Result<(), _> = reg
            .retrying("x", || async {
                calls.fetch_add(1, Ordering::Relaxed);
                Err(RegistryError::DigestMismatch {
                    what: "b".into(),
                    expected: "e".into(),
                    actual: "a".into(),
                })
            })
            .await;
        assert!(r.is_err());
        assert_eq!(
            calls.load(Ordering::Relaxed),
            1,
            "permanent errors are not retried"
        );
    }
}
