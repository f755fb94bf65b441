//! Registry personalities: an in-process HTTP/1.1 proxy in front of a real `docker-registry`
//! that gives it the manners of Amazon ECR, Docker Hub, registry.k8s.io or quay.io.
//!
//! A plain docker-registry is a well-behaved registry; the registries the tool exists for are
//! not. Each manner below is one field of [`Manners`], switchable at any time with
//! [`Personality::set_manners`], and each field's doc names the public report it comes from
//! (`docs/registries.md` has the full list, with links). The constructors
//! ([`Personality::ecr`], [`Personality::docker_hub`], [`Personality::k8s`],
//! [`Personality::quay`]) switch on the set a registry has by default.
//!
//! Two listeners:
//! - the **main** one ([`Personality::url`]) is the registry the client talks to;
//! - the **side** one ([`Personality::side_url`]) is "another host": Docker Hub's blob CDN
//!   (signed URLs under `/cdn/`) and registry.k8s.io's regional backends (`/v2/...` under a
//!   regional prefix). It records every request with its `Authorization` header
//!   ([`Personality::side_hits`]), since a client must never send credentials there.
//!
//! Everything that a manner does not change is forwarded verbatim (method, path+query, headers,
//! bodies streamed both ways) over a small pool of upstream connections. Upload `Location`s
//! that name the upstream are rewritten to the proxy, so PATCH and PUT come back through it.
//!
//! Counters for assertions: [`Personality::counters`] (requests by method and kind, pulls
//! spent, 429s, redirects, mounts refused, tokens issued) and [`Personality::hits`] (every
//! request in order). For benchmarks, [`Personality::cpu`] is the proxy's own CPU time
//! (thread CPU clock, summed over every poll of its tasks) and the number of requests it
//! handled, so a benchmark can show that it does not measure the proxy.
//!
//! Like the FaultProxy, it runs on the tokio runtime that started it: use
//! `#[tokio::test(flavor = "multi_thread")]` and run the product with `run_async`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::{HeaderMap, Method, Request as HRequest, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

use super::registry::{kind_of, Kind, Registry};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Body = UnsyncBoxBody<Bytes, BoxError>;

/// ECR's manifest size limit: `imageManifest` of `PutImage` has "Maximum length of 4194304"
/// (<https://docs.aws.amazon.com/AmazonECR/latest/APIReference/API_PutImage.html>).
pub const ECR_MANIFEST_MAX: usize = 4 * 1024 * 1024;

/// Docker Hub's rate-limit window, as sent in `RateLimit-Limit: 100;w=21600`.
pub const HUB_WINDOW_SECS: u64 = 21600;

/// The regional prefix registry.k8s.io's backends put before the repository name (Artifact
/// Registry serves `k8s-artifacts-prod/images/<name>`).
pub const K8S_BACKEND_PREFIX: &str = "k8s-artifacts-prod/images";

/// An ECR repository's tag mutability, as the data plane enforces it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum TagMutability {
    #[default]
    Mutable,
    /// Every tag is immutable.
    Immutable,
    /// Every tag is immutable except those matching one of these `WILDCARD` filters (`*`
    /// matches any run of characters; ECR allows `[0-9a-zA-Z._*-]{1,128}`).
    /// <https://docs.aws.amazon.com/AmazonECR/latest/APIReference/API_ImageTagMutabilityExclusionFilter.html>
    ImmutableWithExclusion(Vec<String>),
}

impl TagMutability {
    /// Whether a PUT of an existing `tag` is refused.
    pub fn refuses_overwrite(&self, tag: &str) -> bool {
        match self {
            TagMutability::Mutable => false,
            TagMutability::Immutable => true,
            TagMutability::ImmutableWithExclusion(filters) => {
                !filters.iter().any(|f| wildcard_match(f, tag))
            }
        }
    }
}

/// `*` matches any (possibly empty) run of characters; everything else matches itself.
pub fn wildcard_match(pattern: &str, s: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == s;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !s.starts_with(first) || s.len() < first.len() + last.len() || !s.ends_with(last) {
        return false;
    }
    let mut rest = &s[first.len()..s.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

/// Every manner a personality can have. `Manners::default()` is a plain, well-behaved
/// registry (a transparent proxy); each constructor of [`Personality`] switches on its set.
#[derive(Clone, Debug, Default)]
pub struct Manners {
    /// Wait this long before handling each request on either listener (models a registry
    /// 5–100 ms away). Default zero.
    pub delay: Duration,
    /// Docker Hub: how long the token endpoint takes to answer (on top of `delay`), so that
    /// the tests can see how many token requests a client keeps in flight.
    pub token_delay: Duration,
    /// Require HTTP Basic with this user and password on the main listener (the redirect
    /// targets stay open). For tests of "no credentials at redirect targets" with a private
    /// registry that redirects. Default none.
    pub basic_auth: Option<(String, String)>,

    // ---------------------------------------------------------------- Amazon ECR
    /// ECR: the PATCH of an upload answers **201 Created**, not 202. regclient
    /// `scheme/reg/blob.go`: "distribution-spec is 202, AWS ECR returns a 201";
    /// dotnet/sdk-container-builds#279; kitops-ml/kitops#821; aws/containers-roadmap#2831.
    pub patch_answers_201: bool,
    /// ECR: `POST ?mount=&from=` mounts only if the account setting `BLOB_MOUNTING` is
    /// enabled *and* a manifest committed in `from` references the blob; otherwise it answers
    /// 202 with a fresh upload session (aws/containers-roadmap#2860; ECR's "Blob mounting"
    /// page). The proxy learns committed manifests from the manifest PUTs it forwards.
    pub mount_needs_committed_manifest: bool,
    /// ECR account setting `BLOB_MOUNTING` (`aws ecr put-account-setting --name BLOB_MOUNTING
    /// --value ENABLED`). Off by default, as on a new account. Only read when
    /// `mount_needs_committed_manifest` is on.
    pub blob_mounting: bool,
    /// ECR: a GET of a manifest carries no `Docker-Content-Digest` (HEAD does):
    /// aws/containers-roadmap#1931, distribution/distribution#3792.
    pub get_manifest_without_digest: bool,
    /// ECR: DELETE of an upload session answers 405 UNSUPPORTED (not forwarded).
    pub delete_upload_405: bool,
    /// ECR: per-repository tag mutability. A PUT of a tag that already exists in a
    /// repository whose mutability refuses it answers 400 `TAG_INVALID` "The image tag 'T'
    /// already exists in the 'R' repository and cannot be overwritten because the tag is
    /// immutable." (code and status: a jib log against ECR; message wording: ECR's current
    /// one, older logs end "because the repository is immutable").
    pub mutability: BTreeMap<String, TagMutability>,
    /// ECR: manifests over this many bytes are refused with 405 `UNSUPPORTED` "Invalid
    /// parameter at 'ImageManifest' failed to satisfy constraint: 'Member must have length
    /// less than or equal to 4194304'" (ECR maps PutImage's InvalidParameterException on
    /// `ImageManifest` to 405 UNSUPPORTED: chainguard-dev/apko#450, openai/tart#890; the limit
    /// is PutImage's documented length; the constraint text is inferred).
    pub manifest_max_bytes: Option<usize>,

    // ---------------------------------------------------------------- Docker Hub
    /// Docker Hub: every `/v2/` request needs `Bearer` a token from the proxy's `/token`
    /// (realm on the main listener, `service="registry.docker.io"`), issued anonymously per
    /// repository scope with `expires_in` 300 (Docker's token-auth docs). A token expires
    /// after this long. `None`: no token auth.
    pub bearer_token_ttl: Option<Duration>,
    /// Docker Hub: `RateLimit-Limit` / `RateLimit-Remaining: N;w=21600` on manifest
    /// responses; each manifest GET spends one pull and a HEAD none; at zero a manifest GET
    /// answers 429 `TOOMANYREQUESTS` (Docker's "Usage and limits" docs). The budget itself
    /// is [`Personality::set_pull_budget`].
    pub pull_budget: bool,
    /// Docker Hub: a repository that does not exist answers 401 (with the challenge and
    /// `error="insufficient_scope"`), not 404: jupyterhub/binderhub#1664,
    /// hashicorp/terraform-provider-docker#140, docker-library/meta-scripts#33.
    pub missing_repo_401: bool,
    /// Docker Hub: a blob GET answers 307 to a CDN (the side listener) with a signed URL.
    /// The CDN refuses a request that carries `Authorization` with 400 (S3's
    /// `InvalidArgument` "Only one auth mechanism allowed": renovatebot/renovate#3877;
    /// Hub's blob backend answering 400: ciiiii/cloudflare-docker-proxy#104,
    /// apple/swift-container-plugin#166), and an unsigned or altered URL with 403.
    pub blob_cdn_redirect: bool,

    // ---------------------------------------------------------------- registry.k8s.io
    /// registry.k8s.io: every `/v2/<name>/...` GET and HEAD (manifests, blobs, tag lists)
    /// answers 307 to a regional backend on another host (the side listener, under
    /// `/v2/k8s-artifacts-prod/images/`, with a `rid=` trace parameter), which serves them;
    /// other methods answer 405 (kubernetes/registry.k8s.io
    /// `cmd/archeio/internal/app/handlers.go`; kubernetes/k8s.io#4337).
    pub redirect_to_backend: bool,
    /// registry.k8s.io: `GET /v2/` answers 401 `Bearer realm=".../token",service="HOST"`;
    /// `/token` hands out a pull-correlation "token" (32 hex digits, `expires_in` 3600) that
    /// clients then send on every request, and must drop when they follow a redirect to
    /// another host (same file: "standard clients strip the Authorization header when
    /// following redirects to other hosts, so the correlation token never leaks").
    pub correlation_token: bool,

    // ---------------------------------------------------------------- quay.io
    /// quay.io (and some other registries): a HEAD of a manifest carries no
    /// `Docker-Content-Digest` (the spec only says SHOULD; quay/quay#1310,
    /// sylabs/singularity#733).
    pub head_manifest_without_digest: bool,
    /// quay.io: `tags/list` returns at most this many tags per page and a `Link:
    /// </v2/NAME/tags/list?n=N&last=LAST>; rel="next"` header while more remain
    /// (deitch/docker_registry2#107: quay answers `n=100&last=...`; regclient#276).
    pub tags_page_size: Option<usize>,

    // ---------------------------------------------------------------- a chunked-only registry
    /// A registry that takes a blob only as `PATCH` + an empty closing `PUT`: an upload `PUT`
    /// that carries a body (a non-zero `Content-Length`, or chunked) is read to its end, thrown
    /// away and answered with this status (e.g. 415), not forwarded. The spec makes the
    /// monolithic `PUT` a MUST, but the tool must still cope with a registry that refuses it
    /// (issue 18). Default none.
    pub refuse_put_with_body: Option<u16>,
}

/// Request counters, for assertions.
#[derive(Clone, Debug, Default)]
pub struct Counters {
    /// Main-listener requests by (method, kind of path).
    pub requests: HashMap<(String, Kind), usize>,
    /// Manifest GETs that spent a pull (Docker Hub budget).
    pub pulls_spent: u64,
    /// Requests answered 429 `TOOMANYREQUESTS`.
    pub rate_limited: u64,
    /// Requests answered with a 307 to the side listener.
    pub redirects: u64,
    /// `POST ?mount=` requests turned into a plain upload session (ECR).
    pub mounts_refused: u64,
    /// `POST ?mount=` requests forwarded as mounts.
    pub mounts_forwarded: u64,
    /// Scopes of every token issued (Docker Hub), in order.
    pub token_scopes: Vec<Vec<String>>,
    /// Requests refused with 401 for want of a valid token or Basic credentials.
    pub challenged: u64,
    /// Manifest PUTs refused by tag immutability.
    pub immutable_refusals: u64,
    /// Upload PUTs carrying a body refused by [`Manners::refuse_put_with_body`].
    pub put_bodies_refused: u64,
    /// Token requests being answered right now, and the most at once (Docker Hub).
    pub tokens_in_flight: u64,
    pub tokens_in_flight_max: u64,
    /// Main-listener requests being answered right now (the delay included), and the most at
    /// once.
    pub in_flight: u64,
    pub in_flight_max: u64,
}

impl Counters {
    /// Main-listener requests with this method and kind.
    pub fn count(&self, method: &str, kind: Kind) -> usize {
        self.requests
            .get(&(method.to_string(), kind))
            .copied()
            .unwrap_or(0)
    }
}

/// Which listener answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listener {
    Main,
    Side,
}

/// One request a listener answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PHit {
    pub listener: Listener,
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub status: u16,
    /// The `Authorization` header the request carried, verbatim.
    pub authorization: Option<String>,
}

impl PHit {
    pub fn kind(&self) -> Kind {
        kind_of(&self.path)
    }
}

/// The proxy's own CPU use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuUse {
    /// Thread CPU time spent polling the proxy's tasks (listeners, connections, upstream
    /// connections).
    pub cpu: Duration,
    /// Requests handled on both listeners.
    pub requests: u64,
}

impl CpuUse {
    /// Mean CPU per request (zero when none).
    pub fn per_request(&self) -> Duration {
        if self.requests == 0 {
            Duration::ZERO
        } else {
            self.cpu / self.requests as u32
        }
    }
}

struct Token {
    repos: BTreeSet<String>,
    issued: Instant,
}

struct State {
    manners: Mutex<Manners>,
    counters: Mutex<Counters>,
    hits: Mutex<Vec<PHit>>,
    /// (limit, remaining) of the pull budget.
    budget: Mutex<(u64, u64)>,
    tokens: Mutex<HashMap<String, Token>>,
    token_seq: AtomicU64,
    /// Blobs referenced by manifests committed through the proxy, per repository (ECR).
    committed: Mutex<HashMap<String, BTreeSet<String>>>,
    /// Signatures of CDN URLs handed out (Docker Hub).
    signed: Mutex<BTreeSet<String>>,
    upstream_addr: String,
    upstream_origin: String,
    main_origin: String,
    side_origin: String,
    pool: Mutex<Vec<SendRequest<Body>>>,
    cpu_nanos: AtomicU64,
    handled: AtomicU64,
}

/// A running personality. Drop stops both listeners and every connection.
pub struct Personality {
    /// `127.0.0.1:PORT` of the main listener.
    pub host: String,
    /// `127.0.0.1:PORT` of the side listener (CDN / regional backend).
    pub side_host: String,
    state: Arc<State>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Personality {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Personality {
    /// A transparent proxy in front of `upstream` (`http://127.0.0.1:PORT`) with `manners`.
    pub async fn start(upstream: &str, manners: Manners) -> Personality {
        let addr = upstream
            .strip_prefix("http://")
            .unwrap_or_else(|| panic!("Personality needs an http:// upstream, got {upstream}"))
            .trim_end_matches('/')
            .to_string();
        let main = TcpListener::bind("127.0.0.1:0").await.expect("bind main");
        let side = TcpListener::bind("127.0.0.1:0").await.expect("bind side");
        let host = main.local_addr().unwrap().to_string();
        let side_host = side.local_addr().unwrap().to_string();
        let state = Arc::new(State {
            manners: Mutex::new(manners),
            counters: Mutex::new(Counters::default()),
            hits: Mutex::new(Vec::new()),
            budget: Mutex::new((100, 100)),
            tokens: Mutex::new(HashMap::new()),
            token_seq: AtomicU64::new(0),
            committed: Mutex::new(HashMap::new()),
            signed: Mutex::new(BTreeSet::new()),
            upstream_origin: format!("http://{addr}"),
            upstream_addr: addr,
            main_origin: format!("http://{host}"),
            side_origin: format!("http://{side_host}"),
            pool: Mutex::new(Vec::new()),
            cpu_nanos: AtomicU64::new(0),
            handled: AtomicU64::new(0),
        });
        let tasks = vec![
            tokio::spawn(Cpu::new(
                accept_loop(main, state.clone(), Listener::Main),
                &state,
            )),
            tokio::spawn(Cpu::new(
                accept_loop(side, state.clone(), Listener::Side),
                &state,
            )),
        ];
        Personality {
            host,
            side_host,
            state,
            tasks,
        }
    }

    /// Amazon ECR's data plane with default account settings (`BLOB_MOUNTING` off) in front
    /// of `ecr`, a registry holding moto's token user (Basic auth passes through).
    pub async fn ecr(ecr: &Registry) -> Personality {
        Personality::start(&ecr.url(), Manners::ecr()).await
    }

    /// Docker Hub in front of `up` (anonymous), with `budget` pulls left of a limit of
    /// `max(budget, 100)`.
    pub async fn docker_hub(up: &Registry, budget: u64) -> Personality {
        let p = Personality::start(&up.url(), Manners::docker_hub()).await;
        p.set_pull_budget(budget.max(100), budget);
        p
    }

    /// registry.k8s.io in front of `up` (anonymous).
    pub async fn k8s(up: &Registry) -> Personality {
        Personality::start(&up.url(), Manners::k8s()).await
    }

    /// quay.io in front of `up` (anonymous), paging `tags/list` at `page` tags.
    pub async fn quay(up: &Registry, page: usize) -> Personality {
        let mut m = Manners::quay();
        m.tags_page_size = Some(page);
        Personality::start(&up.url(), m).await
    }

    /// `http://host` of the main listener.
    pub fn url(&self) -> String {
        format!("http://{}", self.host)
    }

    /// `http://side_host`.
    pub fn side_url(&self) -> String {
        format!("http://{}", self.side_host)
    }

    /// The manners now in force.
    pub fn manners(&self) -> Manners {
        self.state.manners.lock().unwrap().clone()
    }

    /// Changes the manners (takes effect from the next request).
    pub fn set_manners(&self, f: impl FnOnce(&mut Manners)) {
        f(&mut self.state.manners.lock().unwrap());
    }

    /// Sets an ECR repository's tag mutability.
    pub fn set_mutability(&self, repo: &str, m: TagMutability) {
        self.set_manners(|x| {
            x.mutability.insert(repo.to_string(), m);
        });
    }

    /// Sets the Docker Hub pull budget: `limit` per window, `remaining` left now.
    pub fn set_pull_budget(&self, limit: u64, remaining: u64) {
        *self.state.budget.lock().unwrap() = (limit, remaining);
    }

    /// Pulls left in the budget.
    pub fn pulls_remaining(&self) -> u64 {
        self.state.budget.lock().unwrap().1
    }

    /// Expires every Docker Hub token issued so far (the next request is challenged again).
    pub fn expire_tokens(&self) {
        self.state.tokens.lock().unwrap().clear();
    }

    /// Records that a manifest committed in `repo` references `digest`, for blobs pushed to
    /// the backing registry around the proxy.
    pub fn mark_committed(&self, repo: &str, digest: &str) {
        self.state
            .committed
            .lock()
            .unwrap()
            .entry(repo.to_string())
            .or_default()
            .insert(digest.to_string());
    }

    pub fn counters(&self) -> Counters {
        self.state.counters.lock().unwrap().clone()
    }

    /// Every request either listener answered, in order.
    pub fn hits(&self) -> Vec<PHit> {
        self.state.hits.lock().unwrap().clone()
    }

    /// The side listener's requests (CDN, regional backend).
    pub fn side_hits(&self) -> Vec<PHit> {
        self.hits()
            .into_iter()
            .filter(|h| h.listener == Listener::Side)
            .collect()
    }

    /// Side-listener requests that carried an `Authorization` header.
    pub fn side_hits_with_authorization(&self) -> Vec<PHit> {
        self.side_hits()
            .into_iter()
            .filter(|h| h.authorization.is_some())
            .collect()
    }

    /// Forgets hits and counters (not the budget, tokens or committed manifests).
    pub fn clear(&self) {
        self.state.hits.lock().unwrap().clear();
        *self.state.counters.lock().unwrap() = Counters::default();
    }

    /// The proxy's CPU time and requests handled so far.
    pub fn cpu(&self) -> CpuUse {
        CpuUse {
            cpu: Duration::from_nanos(self.state.cpu_nanos.load(Ordering::Relaxed)),
            requests: self.state.handled.load(Ordering::Relaxed),
        }
    }
}

impl Manners {
    /// Amazon ECR's data plane, default account settings.
    pub fn ecr() -> Manners {
        Manners {
            patch_answers_201: true,
            mount_needs_committed_manifest: true,
            blob_mounting: false,
            get_manifest_without_digest: true,
            delete_upload_405: true,
            manifest_max_bytes: Some(ECR_MANIFEST_MAX),
            ..Manners::default()
        }
    }

    /// Docker Hub, anonymous.
    pub fn docker_hub() -> Manners {
        Manners {
            bearer_token_ttl: Some(Duration::from_secs(300)),
            pull_budget: true,
            missing_repo_401: true,
            blob_cdn_redirect: true,
            ..Manners::default()
        }
    }

    /// registry.k8s.io.
    pub fn k8s() -> Manners {
        Manners {
            redirect_to_backend: true,
            correlation_token: true,
            ..Manners::default()
        }
    }

    /// quay.io (page size 100, as quay answers today).
    pub fn quay() -> Manners {
        Manners {
            head_manifest_without_digest: true,
            tags_page_size: Some(100),
            ..Manners::default()
        }
    }
}

// ---------------------------------------------------------------------------------------------
// CPU accounting
// ---------------------------------------------------------------------------------------------

#[repr(C)]
struct Timespec {
    tv_sec: i64,
    tv_nsec: i64,
}

extern "C" {
    fn clock_gettime(clk: i32, tp: *mut Timespec) -> i32;
}

/// Linux `CLOCK_THREAD_CPUTIME_ID`.
const CLOCK_THREAD_CPUTIME_ID: i32 = 3;

fn thread_cpu_nanos() -> u64 {
    let mut ts = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through a valid pointer; std links libc.
    let rc = unsafe { clock_gettime(CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return 0;
    }
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Adds the thread CPU time of every poll of `inner` to a counter.
struct Cpu<F> {
    inner: Pin<Box<F>>,
    sink: Arc<State>,
}

impl<F> Cpu<F> {
    fn new(inner: F, state: &Arc<State>) -> Cpu<F> {
        Cpu {
            inner: Box::pin(inner),
            sink: state.clone(),
        }
    }
}

impl<F: Future> Future for Cpu<F> {
    type Output = F::Output;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let t0 = thread_cpu_nanos();
        let r = self.inner.as_mut().poll(cx);
        let dt = thread_cpu_nanos().saturating_sub(t0);
        self.sink.cpu_nanos.fetch_add(dt, Ordering::Relaxed);
        r
    }
}

// ---------------------------------------------------------------------------------------------
// Serving
// ---------------------------------------------------------------------------------------------

async fn accept_loop(listener: TcpListener, state: Arc<State>, which: Listener) {
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        while conns.try_join_next().is_some() {}
        let _ = stream.set_nodelay(true);
        let st = state.clone();
        conns.spawn(Cpu::new(serve_conn(stream, st, which), &state));
    }
}

async fn serve_conn(stream: TcpStream, state: Arc<State>, which: Listener) {
    let svc = hyper::service::service_fn(move |req| {
        let state = state.clone();
        async move {
            let method = req.method().as_str().to_string();
            let path = req.uri().path().to_string();
            let query = req.uri().query().map(str::to_string);
            let authorization = header_str(req.headers(), "authorization");
            if which == Listener::Main {
                let mut c = state.counters.lock().unwrap();
                c.in_flight += 1;
                c.in_flight_max = c.in_flight_max.max(c.in_flight);
            }
            let delay = state.manners.lock().unwrap().delay;
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let resp = match which {
                Listener::Main => handle_main(&state, req).await,
                Listener::Side => handle_side(&state, req).await,
            };
            state.handled.fetch_add(1, Ordering::Relaxed);
            if which == Listener::Main {
                let mut c = state.counters.lock().unwrap();
                c.in_flight -= 1;
                *c.requests
                    .entry((method.clone(), kind_of(&path)))
                    .or_default() += 1;
            }
            state.hits.lock().unwrap().push(PHit {
                listener: which,
                method,
                path,
                query,
                status: resp.status().as_u16(),
                authorization,
            });
            Ok::<_, std::convert::Infallible>(resp)
        }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), svc)
        .await;
}

fn header_str(h: &HeaderMap, name: &str) -> Option<String> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|e| match e {}).boxed_unsync()
}

fn empty() -> Body {
    Empty::new().map_err(|e| match e {}).boxed_unsync()
}

fn passthrough(b: Incoming) -> Body {
    b.map_err(|e| -> BoxError { Box::new(e) }).boxed_unsync()
}

/// A registry error response (`{"errors":[{code, message}]}`).
fn oci_error(status: u16, code: &str, message: &str) -> Response<Body> {
    let body = serde_json::json!({"errors": [{"code": code, "message": message}]}).to_string();
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("docker-distribution-api-version", "registry/2.0")
        .body(full(body))
        .unwrap()
}

/// The repository name of a `/v2/<name>/{manifests,blobs,tags}/...` path.
fn repo_of(path: &str) -> Option<String> {
    let segs: Vec<&str> = path.strip_prefix("/v2/")?.split('/').collect();
    let n = segs.len();
    let name_len = match kind_of(path) {
        Kind::Manifest | Kind::Blob => n - 2,
        Kind::Upload if segs[n - 1] == "uploads" || segs[n - 1].is_empty() => {
            n - 2 - usize::from(segs[n - 1].is_empty())
        }
        Kind::Upload => n - 3,
        Kind::Other if n >= 3 && segs[n - 2] == "tags" => n - 2,
        Kind::Other => return None,
    };
    (name_len > 0).then(|| segs[..name_len].join("/"))
}

/// The last path segment (a manifest reference or blob digest).
fn last_segment(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or("")
}

fn query_pairs(q: Option<&str>) -> Vec<(String, String)> {
    url::form_urlencoded::parse(q.unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

async fn handle_main(state: &Arc<State>, req: HRequest<Incoming>) -> Response<Body> {
    let m = state.manners.lock().unwrap().clone();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().map(str::to_string);
    let kind = kind_of(&path);
    let repo = repo_of(&path);

    // --- registry.k8s.io's correlation token ---
    if m.correlation_token {
        if path == "/token" {
            return correlation_token(state);
        }
        if path == "/v2/" || path == "/v2" {
            let ok = header_str(req.headers(), "authorization")
                .and_then(|h| h.strip_prefix("Bearer ").map(str::to_string))
                .is_some_and(|t| t.len() == 32 && t.bytes().all(|b| b.is_ascii_hexdigit()));
            if !ok {
                state.counters.lock().unwrap().challenged += 1;
                let mut r = oci_error(401, "UNAUTHORIZED", "authentication required");
                let c = format!(
                    "Bearer realm=\"{}/token\",service=\"{}\"",
                    state.main_origin,
                    state.main_origin.trim_start_matches("http://")
                );
                r.headers_mut()
                    .insert("www-authenticate", c.parse().unwrap());
                return r;
            }
        }
    }

    // --- Docker Hub's token endpoint and bearer gate ---
    if path == "/token" {
        if m.bearer_token_ttl.is_some() {
            {
                let mut c = state.counters.lock().unwrap();
                c.tokens_in_flight += 1;
                c.tokens_in_flight_max = c.tokens_in_flight_max.max(c.tokens_in_flight);
            }
            if !m.token_delay.is_zero() {
                tokio::time::sleep(m.token_delay).await;
            }
            state.counters.lock().unwrap().tokens_in_flight -= 1;
            return issue_token(state, query.as_deref());
        }
        return oci_error(404, "NOT_FOUND", "no token endpoint");
    }
    let mut req = req;
    if let Some(ttl) = m.bearer_token_ttl {
        if let Err(resp) = check_bearer(state, &req, repo.as_deref(), ttl) {
            return resp;
        }
        // The backing registry is anonymous.
        req.headers_mut().remove("authorization");
    }
    if let Some((user, pass)) = &m.basic_auth {
        let want = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
        );
        if header_str(req.headers(), "authorization").as_deref() != Some(want.as_str()) {
            state.counters.lock().unwrap().challenged += 1;
            let mut r = oci_error(401, "UNAUTHORIZED", "authentication required");
            r.headers_mut().insert(
                "www-authenticate",
                "Basic realm=\"personality\"".parse().unwrap(),
            );
            return r;
        }
        req.headers_mut().remove("authorization");
    }

    match (kind, &method) {
        (Kind::Manifest, &Method::GET) if m.pull_budget => {
            let mut b = state.budget.lock().unwrap();
            if b.1 == 0 {
                let limit = b.0;
                drop(b);
                state.counters.lock().unwrap().rate_limited += 1;
                let mut r = oci_error(
                    429,
                    "TOOMANYREQUESTS",
                    "You have reached your pull rate limit. You may increase the limit by \
                     authenticating and upgrading: https://www.docker.com/increase-rate-limits",
                );
                add_ratelimit(r.headers_mut(), limit, 0);
                return r;
            }
            b.1 -= 1;
            drop(b);
            state.counters.lock().unwrap().pulls_spent += 1;
        }
        _ => {}
    }

    // --- redirects to another host ---
    if m.redirect_to_backend && path.starts_with("/v2/") && path != "/v2/" {
        if !matches!(method, Method::GET | Method::HEAD) {
            return oci_error(405, "UNSUPPORTED", "Only GET and HEAD are allowed.");
        }
        let rest = path.strip_prefix("/v2/").unwrap_or("");
        let rid = format!(
            "{:032x}",
            state.token_seq.fetch_add(1, Ordering::Relaxed) as u128 * 0x9e37_79b9_7f4a_7c15
        );
        let q = match &query {
            Some(q) => format!("?{q}&rid={rid}"),
            None => format!("?rid={rid}"),
        };
        let loc = format!("{}/v2/{K8S_BACKEND_PREFIX}/{rest}{q}", state.side_origin);
        return redirect(state, &loc);
    }
    if m.blob_cdn_redirect && kind == Kind::Blob && method == Method::GET {
        // Redirect only what exists, as Hub does; a missing blob is the registry's 404.
        let head = lookup(state, Method::HEAD, &path, None).await;
        if head.as_ref().map(|r| r.status()) == Ok(StatusCode::OK) {
            let sig = format!(
                "{:016x}",
                state.token_seq.fetch_add(1, Ordering::Relaxed) ^ 0x5eed_cafe_f00d
            );
            state.signed.lock().unwrap().insert(sig.clone());
            let r = repo.clone().unwrap_or_default();
            let loc = format!(
                "{}/cdn/{r}/blobs/{}?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Expires=1200&X-Amz-Signature={sig}",
                state.side_origin,
                last_segment(&path)
            );
            return redirect(state, &loc);
        }
    }

    // --- ECR's upload and manifest manners ---
    if kind == Kind::Upload && method == Method::DELETE && m.delete_upload_405 {
        return oci_error(405, "UNSUPPORTED", "The operation is unsupported.");
    }
    if let (Kind::Upload, &Method::PUT, Some(status)) = (kind, &method, m.refuse_put_with_body) {
        let carries = match header_str(req.headers(), "content-length") {
            Some(l) => l.trim() != "0",
            None => req.headers().contains_key("transfer-encoding"),
        };
        if carries {
            // Read the body first, so that the client sees this answer and not a reset.
            let _ = req.into_body().collect().await;
            state.counters.lock().unwrap().put_bodies_refused += 1;
            return oci_error(
                status,
                "UNSUPPORTED",
                "upload the blob with PATCH, then PUT",
            );
        }
    }
    if kind == Kind::Upload && method == Method::POST && m.mount_needs_committed_manifest {
        let pairs = query_pairs(query.as_deref());
        let mount = pairs
            .iter()
            .find(|(k, _)| k == "mount")
            .map(|p| p.1.clone());
        let from = pairs.iter().find(|(k, _)| k == "from").map(|p| p.1.clone());
        if let (Some(d), Some(f)) = (mount, from) {
            let committed = state
                .committed
                .lock()
                .unwrap()
                .get(&f)
                .is_some_and(|s| s.contains(&d));
            if m.blob_mounting && committed {
                state.counters.lock().unwrap().mounts_forwarded += 1;
            } else {
                state.counters.lock().unwrap().mounts_refused += 1;
                // A fresh upload session, as if no mount had been asked for.
                let rest: Vec<String> = pairs
                    .iter()
                    .filter(|(k, _)| k != "mount" && k != "from")
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                let pq = if rest.is_empty() {
                    path.clone()
                } else {
                    format!("{path}?{}", rest.join("&"))
                };
                *req.uri_mut() = pq.parse().unwrap();
            }
        }
    }
    if kind == Kind::Manifest && method == Method::PUT {
        let r = repo.clone().unwrap_or_default();
        let reference = last_segment(&path).to_string();
        let (parts, body) = req.into_parts();
        let bytes = match body.collect().await {
            Ok(c) => c.to_bytes(),
            Err(e) => return oci_error(400, "MANIFEST_INVALID", &format!("body: {e}")),
        };
        if let Some(max) = m.manifest_max_bytes {
            if bytes.len() > max {
                return oci_error(
                    405,
                    "UNSUPPORTED",
                    &format!(
                        "Invalid parameter at 'ImageManifest' failed to satisfy constraint: \
                         'Member must have length less than or equal to {max}'"
                    ),
                );
            }
        }
        let mutability = m.mutability.get(&r).cloned().unwrap_or_default();
        if !reference.starts_with("sha256:") && mutability.refuses_overwrite(&reference) {
            let auth = header_str(&parts.headers, "authorization");
            let exists = lookup(state, Method::HEAD, &path, auth.as_deref()).await;
            if exists.map(|x| x.status()) == Ok(StatusCode::OK) {
                state.counters.lock().unwrap().immutable_refusals += 1;
                return oci_error(
                    400,
                    "TAG_INVALID",
                    &format!(
                        "The image tag '{reference}' already exists in the '{r}' repository \
                         and cannot be overwritten because the tag is immutable."
                    ),
                );
            }
        }
        let fwd = HRequest::from_parts(parts, full(bytes.clone()));
        return finish(state, &m, fwd, &method, kind, repo, Some((r, bytes))).await;
    }

    if kind == Kind::Other && method == Method::GET && path.ends_with("/tags/list") {
        if let Some(page) = m.tags_page_size {
            return tags_page(state, &req, repo.as_deref().unwrap_or(""), page, query).await;
        }
    }

    let (parts, body) = req.into_parts();
    let fwd = HRequest::from_parts(parts, passthrough(body));
    finish(state, &m, fwd, &method, kind, repo, None).await
}

/// Forwards `fwd` and applies the response-side manners.
async fn finish(
    state: &Arc<State>,
    m: &Manners,
    mut fwd: HRequest<Body>,
    method: &Method,
    kind: Kind,
    repo: Option<String>,
    ecr_put: Option<(String, Bytes)>,
) -> Response<Body> {
    strip_hop_by_hop(fwd.headers_mut());
    let resp = match send_upstream(state, fwd).await {
        Ok(r) => r,
        Err(e) => {
            return Response::builder()
                .status(502)
                .body(full(format!("Personality: upstream error: {e}")))
                .unwrap()
        }
    };
    let (mut parts, body) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    if let Some(loc) = header_str(&parts.headers, "location") {
        if let Some(rest) = loc.strip_prefix(&state.upstream_origin) {
            let new = format!("{}{rest}", state.main_origin);
            parts.headers.insert("location", new.parse().unwrap());
        }
    }
    let status = parts.status;

    if let Some((r, bytes)) = ecr_put {
        if status == StatusCode::CREATED {
            record_committed(state, &r, &bytes);
        }
    }
    if kind == Kind::Upload
        && *method == Method::PATCH
        && m.patch_answers_201
        && status == StatusCode::ACCEPTED
    {
        parts.status = StatusCode::CREATED;
    }
    if kind == Kind::Manifest {
        if *method == Method::GET && m.get_manifest_without_digest {
            parts.headers.remove("docker-content-digest");
        }
        if *method == Method::HEAD && m.head_manifest_without_digest {
            parts.headers.remove("docker-content-digest");
        }
        if m.pull_budget && matches!(*method, Method::GET | Method::HEAD) {
            let (limit, remaining) = *state.budget.lock().unwrap();
            add_ratelimit(&mut parts.headers, limit, remaining);
        }
    }
    if m.missing_repo_401 && status == StatusCode::NOT_FOUND {
        if let Some(r) = &repo {
            let list = lookup(state, Method::GET, &format!("/v2/{r}/tags/list"), None).await;
            if list.map(|x| x.status()) == Ok(StatusCode::NOT_FOUND) {
                return hub_challenge(state, Some(r), true);
            }
        }
    }
    Response::from_parts(parts, passthrough(body))
}

fn add_ratelimit(h: &mut HeaderMap, limit: u64, remaining: u64) {
    h.insert(
        "ratelimit-limit",
        format!("{limit};w={HUB_WINDOW_SECS}").parse().unwrap(),
    );
    h.insert(
        "ratelimit-remaining",
        format!("{remaining};w={HUB_WINDOW_SECS}").parse().unwrap(),
    );
    h.insert("docker-ratelimit-source", "127.0.0.1".parse().unwrap());
}

fn redirect(state: &Arc<State>, location: &str) -> Response<Body> {
    state.counters.lock().unwrap().redirects += 1;
    Response::builder()
        .status(307)
        .header("location", location)
        .header("content-length", "0")
        .header("docker-distribution-api-version", "registry/2.0")
        .body(empty())
        .unwrap()
}

/// Remembers the blobs a committed manifest references (config and layers).
fn record_committed(state: &Arc<State>, repo: &str, manifest: &[u8]) {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(manifest) else {
        return;
    };
    let mut digests = Vec::new();
    if let Some(d) = v["config"]["digest"].as_str() {
        digests.push(d.to_string());
    }
    if let Some(layers) = v["layers"].as_array() {
        for l in layers {
            if let Some(d) = l["digest"].as_str() {
                digests.push(d.to_string());
            }
        }
    }
    let mut c = state.committed.lock().unwrap();
    c.entry(repo.to_string()).or_default().extend(digests);
}

// ---------------------------------------------------------------------------------------------
// Docker Hub tokens
// ---------------------------------------------------------------------------------------------

fn issue_token(state: &Arc<State>, query: Option<&str>) -> Response<Body> {
    let scopes: Vec<String> = query_pairs(query)
        .into_iter()
        .filter(|(k, _)| k == "scope")
        .map(|(_, v)| v)
        .collect();
    // `repository:NAME:pull[,push]` (several scope parameters, or space-separated).
    let repos: BTreeSet<String> = scopes
        .iter()
        .flat_map(|s| s.split(' '))
        .filter_map(|s| {
            let s = s.strip_prefix("repository:")?;
            let (name, _actions) = s.rsplit_once(':')?;
            Some(name.to_string())
        })
        .collect();
    let n = state.token_seq.fetch_add(1, Ordering::Relaxed);
    let token = format!("hub-token-{n}");
    state.tokens.lock().unwrap().insert(
        token.clone(),
        Token {
            repos,
            issued: Instant::now(),
        },
    );
    state.counters.lock().unwrap().token_scopes.push(scopes);
    let body = serde_json::json!({
        "token": token,
        "access_token": token,
        "expires_in": 300,
        // RFC 3339, as the token spec (distribution's docs/spec/auth/token.md) and Docker Hub
        // send it; Go clients (skopeo) refuse any other form.
        "issued_at": time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .expect("format a UTC time as RFC 3339"),
    })
    .to_string();
    Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(full(body))
        .unwrap()
}

fn correlation_token(state: &Arc<State>) -> Response<Body> {
    let n = state.token_seq.fetch_add(1, Ordering::Relaxed);
    let token = format!("{:032x}", (n as u128 + 1) * 0x0123_4567_89ab_cdef);
    state.counters.lock().unwrap().token_scopes.push(vec![]);
    Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(full(format!(
            "{{\"token\":\"{token}\",\"expires_in\":3600}}"
        )))
        .unwrap()
}

fn check_bearer(
    state: &Arc<State>,
    req: &HRequest<Incoming>,
    repo: Option<&str>,
    ttl: Duration,
) -> Result<(), Response<Body>> {
    let token = header_str(req.headers(), "authorization")
        .and_then(|h| h.strip_prefix("Bearer ").map(str::to_string));
    let ok = token.is_some_and(|t| {
        state.tokens.lock().unwrap().get(&t).is_some_and(|tok| {
            tok.issued.elapsed() < ttl && repo.is_none_or(|r| tok.repos.contains(r))
        })
    });
    if ok {
        Ok(())
    } else {
        state.counters.lock().unwrap().challenged += 1;
        Err(hub_challenge(state, repo, false))
    }
}

fn hub_challenge(state: &Arc<State>, repo: Option<&str>, insufficient: bool) -> Response<Body> {
    let mut c = format!(
        "Bearer realm=\"{}/token\",service=\"registry.docker.io\"",
        state.main_origin
    );
    if let Some(r) = repo {
        c.push_str(&format!(",scope=\"repository:{r}:pull\""));
    }
    if insufficient {
        c.push_str(",error=\"insufficient_scope\"");
    }
    let detail = repo.map(
        |r| serde_json::json!([{"Type": "repository", "Class": "", "Name": r, "Action": "pull"}]),
    );
    let body = serde_json::json!({"errors": [{
        "code": "UNAUTHORIZED",
        "message": "authentication required",
        "detail": detail,
    }]})
    .to_string();
    Response::builder()
        .status(401)
        .header("content-type", "application/json")
        .header("docker-distribution-api-version", "registry/2.0")
        .header("www-authenticate", c)
        .body(full(body))
        .unwrap()
}

// ---------------------------------------------------------------------------------------------
// quay's tags/list pages
// ---------------------------------------------------------------------------------------------

async fn tags_page(
    state: &Arc<State>,
    req: &HRequest<Incoming>,
    repo: &str,
    page: usize,
    query: Option<String>,
) -> Response<Body> {
    let auth = header_str(req.headers(), "authorization");
    let path = format!("/v2/{repo}/tags/list");
    let resp = match internal(state, Method::GET, &path, auth.as_deref()).await {
        Ok(r) => r,
        Err(e) => return Response::builder().status(502).body(full(e)).unwrap(),
    };
    let status = resp.status();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    if status != StatusCode::OK {
        return Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(full(bytes))
            .unwrap();
    }
    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    let mut tags: Vec<String> = v["tags"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|t| t.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    tags.sort();
    let pairs = query_pairs(query.as_deref());
    let n = pairs
        .iter()
        .find(|(k, _)| k == "n")
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(page)
        .min(page);
    let last = pairs.iter().find(|(k, _)| k == "last").map(|p| p.1.clone());
    let start = match &last {
        Some(l) => tags.iter().position(|t| t > l).unwrap_or(tags.len()),
        None => 0,
    };
    let chunk: Vec<String> = tags.iter().skip(start).take(n).cloned().collect();
    let more = start + chunk.len() < tags.len();
    let body = serde_json::json!({"name": repo, "tags": chunk}).to_string();
    let mut b = Response::builder()
        .status(200)
        .header("content-type", "application/json");
    if more {
        if let Some(l) = chunk.last() {
            let last_enc: String = url::form_urlencoded::byte_serialize(l.as_bytes()).collect();
            b = b.header(
                "link",
                format!("</v2/{repo}/tags/list?n={n}&last={last_enc}>; rel=\"next\""),
            );
        }
    }
    b.body(full(body)).unwrap()
}

// ---------------------------------------------------------------------------------------------
// The side listener: CDN and regional backend
// ---------------------------------------------------------------------------------------------

async fn handle_side(state: &Arc<State>, req: HRequest<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let query = req.uri().query().map(str::to_string);
    let has_auth = req.headers().contains_key("authorization");
    if let Some(rest) = path.strip_prefix("/cdn/") {
        // Docker Hub's CDN: a signed URL, and only one auth mechanism.
        if has_auth {
            return Response::builder()
                .status(400)
                .header("content-type", "application/xml")
                .body(full(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>InvalidArgument</Code>\
                     <Message>Only one auth mechanism allowed; only the X-Amz-Algorithm query \
                     parameter, Signature query string parameter or the Authorization header \
                     should be specified</Message><ArgumentName>Authorization</ArgumentName>\
                     </Error>",
                ))
                .unwrap();
        }
        let sig = query_pairs(query.as_deref())
            .into_iter()
            .find(|(k, _)| k == "X-Amz-Signature")
            .map(|p| p.1);
        let valid = sig.is_some_and(|s| state.signed.lock().unwrap().contains(&s));
        if !valid {
            return Response::builder()
                .status(403)
                .header("content-type", "application/xml")
                .body(full(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>AccessDenied</Code>\
                     <Message>Request has expired or the signature does not match</Message></Error>",
                ))
                .unwrap();
        }
        let up = format!("/v2/{rest}");
        let method = req.method().clone();
        return match internal(state, method, &up, None).await {
            Ok(r) => {
                let (mut parts, body) = r.into_parts();
                strip_hop_by_hop(&mut parts.headers);
                parts.headers.remove("docker-distribution-api-version");
                Response::from_parts(parts, passthrough(body))
            }
            Err(e) => Response::builder().status(502).body(full(e)).unwrap(),
        };
    }
    let prefix = format!("/v2/{K8S_BACKEND_PREFIX}/");
    if let Some(rest) = path.strip_prefix(&prefix) {
        // A regional backend: serves the same content under its own prefix, anonymously.
        let mut req = req;
        req.headers_mut().remove("authorization");
        let kept: Vec<String> = query_pairs(query.as_deref())
            .into_iter()
            .filter(|(k, _)| k != "rid")
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let pq = if kept.is_empty() {
            format!("/v2/{rest}")
        } else {
            format!("/v2/{rest}?{}", kept.join("&"))
        };
        *req.uri_mut() = pq.parse().unwrap();
        let (parts, body) = req.into_parts();
        let mut fwd = HRequest::from_parts(parts, passthrough(body));
        strip_hop_by_hop(fwd.headers_mut());
        return match send_upstream(state, fwd).await {
            Ok(r) => {
                let (mut parts, body) = r.into_parts();
                strip_hop_by_hop(&mut parts.headers);
                Response::from_parts(parts, passthrough(body))
            }
            Err(e) => Response::builder().status(502).body(full(e)).unwrap(),
        };
    }
    Response::builder()
        .status(404)
        .body(full("not a CDN or backend path"))
        .unwrap()
}

// ---------------------------------------------------------------------------------------------
// Upstream connections
// ---------------------------------------------------------------------------------------------

fn strip_hop_by_hop(h: &mut HeaderMap) {
    for name in [
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "upgrade",
    ] {
        h.remove(name);
    }
}

/// A request of the proxy's own to the upstream (existence checks, tag lists).
/// A request the personality sends on its own behalf, to decide how to answer (does the blob,
/// the tag, the repository exist?), marked so that a fault proxy behind it does not fault it:
/// the tool never sees it and cannot retry it.
async fn lookup(
    state: &Arc<State>,
    method: Method,
    path: &str,
    authorization: Option<&str>,
) -> Result<Response<Incoming>, String> {
    internal_with(state, method, path, authorization, true).await
}

async fn internal(
    state: &Arc<State>,
    method: Method,
    path: &str,
    authorization: Option<&str>,
) -> Result<Response<Incoming>, String> {
    internal_with(state, method, path, authorization, false).await
}

async fn internal_with(
    state: &Arc<State>,
    method: Method,
    path: &str,
    authorization: Option<&str>,
    own_behalf: bool,
) -> Result<Response<Incoming>, String> {
    let mut b = HRequest::builder()
        .method(method)
        .uri(path)
        .header("host", state.upstream_addr.as_str())
        .header(
            "accept",
            "application/vnd.oci.image.index.v1+json, \
             application/vnd.docker.distribution.manifest.list.v2+json, \
             application/vnd.oci.image.manifest.v1+json, \
             application/vnd.docker.distribution.manifest.v2+json",
        );
    if let Some(a) = authorization {
        b = b.header("authorization", a);
    }
    if own_behalf {
        b = b.header(super::proxy::INTERNAL_HEADER, "1");
    }
    let resp = send_upstream(state, b.body(empty()).unwrap()).await?;
    Ok(resp)
}

/// Sends on a pooled upstream connection that is ready, or on a new one.
async fn send_upstream(
    state: &Arc<State>,
    req: HRequest<Body>,
) -> Result<Response<Incoming>, String> {
    let pooled = {
        let mut pool = state.pool.lock().unwrap();
        pool.retain(|s| !s.is_closed());
        let i = pool.iter().position(|s| s.is_ready());
        i.map(|i| pool.swap_remove(i))
    };
    let mut sender = match pooled {
        Some(s) => s,
        None => {
            let stream = TcpStream::connect(&state.upstream_addr)
                .await
                .map_err(|e| format!("connect {}: {e}", state.upstream_addr))?;
            let _ = stream.set_nodelay(true);
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|e| format!("handshake: {e}"))?;
            tokio::spawn(Cpu::new(
                async move {
                    let _ = conn.await;
                },
                state,
            ));
            sender
        }
    };
    let resp = sender.send_request(req).await.map_err(|e| e.to_string());
    {
        let mut pool = state.pool.lock().unwrap();
        if pool.len() < 64 && !sender.is_closed() {
            pool.push(sender);
        }
    }
    resp
}
