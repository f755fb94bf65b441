//! How requests reach one registry: config, TLS, credentials and bearer tokens, the
//! per-registry bound on requests in flight, and retries with one budget per request.
//!
//! Retries: idempotent requests are retried with the `backoff` crate (exponential, with
//! jitter, capped), on connect/reset/timeout errors, 408, 429 and 5xx, honouring
//! `Retry-After` (seconds or HTTP-date). A blob stream cannot be replayed, so blob transfers are
//! retried as a whole by the copy engine, through [`Registry::retrying`], and the calls inside
//! such a transfer do not retry on their own.

pub mod auth;
mod redirect;
mod retry;
mod state;
mod stats;
mod tls;

use redirect::redirect_policy;
pub use retry::{parse_rate_limit, parse_rate_limit_window, parse_retry_after, RetryPolicy};
pub use state::{AllTags, TagSet};
pub(in crate::oci) use state::{PullBudget, PullGuard, TagListCell, TokenCell};
pub use stats::Stats;
use tls::load_cert_dir;
pub(super) use tls::transport_err;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use reqwest::{Method, StatusCode};
use tokio::sync::{OnceCell, Semaphore};

use super::{RegistryError, TransportKind};
use auth::{basic_header, parse_challenge, Challenge, Credentials, Secret};

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
    /// Requests in flight to this registry at once. Default 32.
    pub max_in_flight: usize,
    /// TCP connect timeout. Default 30 s.
    pub connect_timeout: Duration,
    /// Longest silence while reading a response. Default 120 s.
    pub read_timeout: Duration,
}

impl RegistryConfig {
    /// A config with defaults for `registry`.
    pub fn new(registry: &str) -> RegistryConfig {
        RegistryConfig::with_network(registry, &Network::default())
    }

    /// A config for `registry` with a run's network settings, and otherwise defaults.
    pub fn with_network(registry: &str, net: &Network) -> RegistryConfig {
        RegistryConfig {
            registry: registry.to_string(),
            endpoint: None,
            tls_verify: true,
            cert_dir: None,
            credentials: Credentials::Anonymous,
            retry: net.retry.clone(),
            max_in_flight: net.max_in_flight,
            connect_timeout: net.connect_timeout,
            read_timeout: net.read_timeout,
        }
    }
}

/// The network settings a run applies to every registry. Field docs give the defaults.
#[derive(Clone, Debug)]
pub struct Network {
    /// Retry settings.
    pub retry: RetryPolicy,
    /// Requests in flight per registry. Default 32.
    pub max_in_flight: usize,
    /// TCP connect timeout. Default 30 s.
    pub connect_timeout: Duration,
    /// Longest silence while reading a response. Default 120 s.
    pub read_timeout: Duration,
}

impl Default for Network {
    fn default() -> Self {
        Network {
            retry: RetryPolicy::default(),
            max_in_flight: 32,
            connect_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(120),
        }
    }
}

/// A client for one registry. Cheap to share behind an `Arc`.
pub struct Registry {
    pub(in crate::oci) cfg: RegistryConfig,
    pub(in crate::oci) http: reqwest::Client,
    pub(in crate::oci) base: OnceCell<(String, Challenge)>,
    /// Bearer tokens by scope. Each scope has its own cell, so fetching one repository's token
    /// never holds up requests (or token fetches) for another; one fetch per scope at a time.
    pub(in crate::oci) tokens: std::sync::Mutex<HashMap<String, TokenCell>>,
    pub(in crate::oci) limit: Arc<Semaphore>,
    /// Per repository: its tag list, read at most once per run ([`Registry::listed_tags`]).
    pub(in crate::oci) tag_lists: std::sync::Mutex<HashMap<String, Arc<OnceCell<Option<TagSet>>>>>,
    /// Counters for the run report.
    pub stats: Stats,
    /// The pull budget as this run has seen it (Docker Hub's `RateLimit-Remaining`).
    pub(in crate::oci) budget: std::sync::Mutex<PullBudget>,
    /// Per repository: its complete, paginated tag list ([`Registry::all_tags`]).
    pub(in crate::oci) all_tag_lists: std::sync::Mutex<HashMap<String, TagListCell>>,
    /// Repositories whose referrers endpoint answered 404: no referrers API there, so it is
    /// not asked again in this run (`oci::referrers`).
    pub(in crate::oci) no_referrers_api: std::sync::Mutex<std::collections::HashSet<String>>,
    /// Set at the first refusal of a `PUT` carrying a blob body: PATCH + PUT from then on.
    pub(in crate::oci) put_body_refused: AtomicBool,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("registry", &self.cfg.registry)
            .finish()
    }
}

/// The access a request needs, which decides the bearer-token scope.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    /// `pull`.
    Pull,
    /// `pull,push`.
    Push,
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
            .pool_max_idle_per_host(cfg.max_in_flight.max(1))
            .redirect(redirect_policy());
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
            tokens: Default::default(),
            tag_lists: Default::default(),
            budget: Default::default(),
            all_tag_lists: Default::default(),
            no_referrers_api: Default::default(),
            put_body_refused: AtomicBool::new(false),
            stats: Stats {
                retries: AtomicU64::new(0),
                rate_limit_remaining: AtomicI64::new(-1),
                requests: Default::default(),
            },
        })
    }

    /// The registry's name (`host[:port]`).
    pub fn name(&self) -> &str {
        &self.cfg.registry
    }

    /// Requests this registry may have in flight at once (`--max-requests`).
    pub fn max_in_flight(&self) -> usize {
        self.cfg.max_in_flight.max(1)
    }

    /// The retry policy.
    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.cfg.retry
    }

    pub(in crate::oci) fn request_host(&self) -> &str {
        match self.cfg.registry.as_str() {
            // Docker Hub's API lives on another host than its name.
            "docker.io" => "registry-1.docker.io",
            h => h,
        }
    }

    /// One `GET /v2/` to `base`: the ping that finds the scheme and the auth challenge.
    async fn ping(&self, base: &str) -> Result<reqwest::Response, RegistryError> {
        self.stats.count(&Method::GET);
        self.http
            .get(format!("{base}/v2/"))
            .send()
            .await
            .map_err(|e| transport_err(&self.cfg.registry, "GET /v2/", &e))
    }

    /// Pings `/v2/` once to learn the base URL (scheme) and the auth challenge.
    pub(in crate::oci) async fn base(&self) -> Result<&(String, Challenge), RegistryError> {
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
                    if i + 1 < n {
                        match self.ping(&base).await {
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
                        let r = self.ping(&base).await?;
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

    pub(in crate::oci) fn scope_key(
        repo: &str,
        access: Access,
        extra_pull: Option<&str>,
    ) -> Vec<String> {
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
    pub(in crate::oci) async fn authorization(
        &self,
        scopes: &[String],
    ) -> Result<Option<HeaderValue>, RegistryError> {
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
                let cell = self.token_cell(&scopes.join(" "));
                let mut slot = cell.lock().await;
                if let Some((tok, until)) = slot.as_ref() {
                    if Instant::now() < *until {
                        return Ok(Some(bearer(tok)));
                    }
                }
                let tok = self
                    .fetch_token(realm, service.as_deref(), scopes, creds)
                    .await?;
                let header = bearer(&tok.0);
                *slot = Some(tok);
                return Ok(Some(header));
            }
        };
        Ok(header.map(|h| {
            let mut v = HeaderValue::from_str(&h).expect("auth header is ASCII");
            v.set_sensitive(true);
            v
        }))
    }

    /// The token cell of one scope key (created empty on first use).
    fn token_cell(&self, key: &str) -> TokenCell {
        self.tokens
            .lock()
            .expect("not poisoned")
            .entry(key.to_string())
            .or_default()
            .clone()
    }

    pub(in crate::oci) async fn fetch_token(
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
            self.stats.count(&Method::GET);
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

    pub(in crate::oci) async fn forget_auth(&self, scopes: &[String]) {
        *self.token_cell(&scopes.join(" ")).lock().await = None;
        if let Credentials::Dynamic(src) = &self.cfg.credentials {
            src.invalidate().await;
        }
    }

    pub(in crate::oci) async fn status_error(
        &self,
        r: reqwest::Response,
        method: &str,
        what: &str,
    ) -> RegistryError {
        let status = r.status().as_u16();
        let retry_after = r
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after)
            .map(|d| d.min(self.cfg.retry.max_retry_after));
        let insufficient_scope = r
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|c| c.contains("error=\"insufficient_scope\""));
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
        if (status == 401 || status == 403) && insufficient_scope {
            return RegistryError::NotFoundOrDenied {
                registry: self.cfg.registry.clone(),
                what: format!("{}: {method} {what}", self.cfg.registry),
                status,
            };
        }
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

    pub(in crate::oci) fn observe_headers(&self, h: &HeaderMap) {
        let remaining = h.get("ratelimit-remaining").and_then(|v| v.to_str().ok());
        if let Some(v) = remaining.and_then(parse_rate_limit) {
            self.stats.rate_limit_remaining.store(v, Ordering::Relaxed);
            let window = remaining.and_then(parse_rate_limit_window).or_else(|| {
                h.get("ratelimit-limit")
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_rate_limit_window)
            });
            let mut b = self.budget.lock().expect("not poisoned");
            b.remaining = Some(v);
            if window.is_some() {
                b.window_secs = window;
            }
        }
    }

    /// Sends one request with auth (re-authenticating once on 401) and returns the response if
    /// its status is in `ok`; any other status becomes a typed error.
    #[allow(clippy::too_many_arguments)]
    pub(in crate::oci) async fn send(
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
    pub(in crate::oci) async fn send_with(
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
        // The credentials first, then a slot: a request waiting for its repository's token
        // (Docker Hub: one per repository, a round trip each) must not hold one of the
        // registry's slots meanwhile, or a burst for one new repository stalls all the others.
        let mut auth = self.authorization(scopes).await?;
        let _permit = self.limit.acquire().await.expect("semaphore never closed");
        for attempt in 0..2 {
            let mut rb = build(self.http.request(method.clone(), &url));
            if attempt > 0 {
                auth = self.authorization(scopes).await?;
            }
            if let Some(h) = &auth {
                rb = rb.header(AUTHORIZATION, h.clone());
            }
            self.stats.count(&method);
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
                        kind: TransportKind::Reauth,
                        detail: "the credentials expired during a streamed upload; the transfer is restarted".into(),
                    });
                }
                continue;
            }
            return Err(self.status_error(r, method.as_str(), what).await);
        }
        unreachable!("the loop returns")
    }
}

pub(super) fn challenge_of(r: &reqwest::Response) -> Challenge {
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

pub(super) fn bearer(tok: &Secret) -> HeaderValue {
    let mut v = HeaderValue::from_str(&format!("Bearer {}", tok.expose()))
        .unwrap_or_else(|_| HeaderValue::from_static("Bearer invalid"));
    v.set_sensitive(true);
    v
}
