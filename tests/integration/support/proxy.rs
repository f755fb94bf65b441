//! An in-process, fault-injecting HTTP/1.1 reverse proxy for what a real registry cannot do:
//! 429/503 bursts, resets mid-body, flipped bytes, slow bodies and 401s mid-run.
//!
//! Everything not faulted is forwarded verbatim: method, path+query, headers (including
//! `Host`, `Authorization`, `Range`), and bodies streamed both ways. Each client connection gets
//! its own upstream connection. Upload `Location` headers that name the upstream are rewritten
//! to the proxy, so follow-up PATCH/PUTs come back through it.
//!
//! Rule semantics: for each request, every rule whose method (if set) and `path_contains`
//! (matched against path+query) match counts it; the first matching rule whose schedule fires
//! applies its fault. Counts restart on `set_rules`.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use http_body_util::{
    combinators::UnsyncBoxBody, BodyDataStream, BodyExt, Empty, Full, StreamBody,
};
use hyper::body::{Frame, Incoming};
use hyper::client::conn::http1::SendRequest;
use hyper::{Request as HRequest, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Body = UnsyncBoxBody<Bytes, BoxError>;

/// Marks a request a personality sends on its own behalf; such requests are forwarded without
/// a fault.
pub const INTERNAL_HEADER: &str = "x-personality-internal";

/// A fault to inject.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this status (and `Retry-After` if given) without contacting the upstream.
    /// The request body is drained first, so the client reliably reads the answer.
    Status {
        code: u16,
        retry_after: Option<String>,
    },
    /// Forward, send the headers and half the body, then reset the TCP connection (RST, via
    /// SO_LINGER 0). For a response without a body (HEAD, 204, length 0) the connection is
    /// reset before any byte of the response is sent.
    ResetMidBody,
    /// Forward, but flip one byte (XOR 0xFF) of the response body, at the middle when the
    /// length is known, else the first byte. Same length. Bodiless responses pass unchanged.
    FlipByte,
    /// Forward; send the headers at once, then hold the body back for `delay`. A bodiless
    /// response is delayed as a whole.
    SlowBody { delay: Duration },
    /// 401 with the upstream's `WWW-Authenticate` challenge (read once from an anonymous
    /// `GET /v2/` to the upstream; `Basic realm="fault-proxy"` if it has none). Not forwarded.
    Unauthorized,
}

impl Fault {
    fn name(&self) -> String {
        match self {
            Fault::Status { code, .. } => format!("status {code}"),
            Fault::ResetMidBody => "reset".into(),
            Fault::FlipByte => "flip".into(),
            Fault::SlowBody { delay } => format!("slow {delay:?}"),
            Fault::Unauthorized => "unauthorized".into(),
        }
    }
}

/// When a rule fires, counting only the requests the rule matches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Schedule {
    /// The first n matching requests of each distinct path (query ignored).
    FirstN(usize),
    /// Matching requests number n, 2n, 3n, ... (counted across all paths).
    EveryNth(usize),
    Always,
}

#[derive(Clone, Debug)]
pub struct Rule {
    /// Exact method (case-insensitive), or any.
    pub method: Option<String>,
    /// Substring of path+query; "" matches everything.
    pub path_contains: String,
    pub fault: Fault,
    pub schedule: Schedule,
}

impl Rule {
    pub fn new(path_contains: &str, fault: Fault, schedule: Schedule) -> Rule {
        Rule {
            method: None,
            path_contains: path_contains.to_string(),
            fault,
            schedule,
        }
    }

    /// Restricts the rule to one method.
    pub fn method(mut self, method: &str) -> Rule {
        self.method = Some(method.to_string());
        self
    }
}

/// One request the proxy answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hit {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    /// The status sent (the upstream's when forwarded); 0 when the connection was reset
    /// before a response, 502 when the upstream could not be reached.
    pub status: u16,
    /// The injected fault, if any.
    pub fault: Option<Fault>,
}

#[derive(Default)]
struct Counter {
    total: usize,
    per_path: HashMap<String, usize>,
}

struct State {
    rules: Mutex<Vec<(Rule, Counter)>>,
    hits: Mutex<Vec<Hit>>,
    upstream_addr: String,
    upstream_origin: String,
    proxy_origin: String,
    challenge: tokio::sync::OnceCell<String>,
}

impl State {
    fn decide(&self, method: &str, path: &str, path_and_query: &str) -> Option<Fault> {
        let mut rules = self.rules.lock().unwrap();
        let mut chosen = None;
        for (rule, counter) in rules.iter_mut() {
            let method_ok = rule
                .method
                .as_deref()
                .is_none_or(|m| m.eq_ignore_ascii_case(method));
            if !method_ok || !path_and_query.contains(&rule.path_contains) {
                continue;
            }
            counter.total += 1;
            let per_path = counter.per_path.entry(path.to_string()).or_default();
            *per_path += 1;
            let fires = match rule.schedule {
                Schedule::FirstN(n) => *per_path <= n,
                Schedule::EveryNth(n) => n > 0 && counter.total % n == 0,
                Schedule::Always => true,
            };
            if fires && chosen.is_none() {
                chosen = Some(rule.fault.clone());
            }
        }
        chosen
    }

    fn record(
        &self,
        method: &str,
        path: &str,
        query: Option<&str>,
        status: u16,
        fault: Option<&Fault>,
    ) {
        self.hits.lock().unwrap().push(Hit {
            method: method.to_string(),
            path: path.to_string(),
            query: query.map(str::to_string),
            status,
            fault: fault.cloned(),
        });
    }
}

/// The proxy. Runs on the tokio runtime that called [`FaultProxy::start`]; Drop stops it and
/// every connection it holds.
///
/// Because it runs on the test's runtime, that runtime must keep running while a client uses
/// the proxy: use `#[tokio::test(flavor = "multi_thread")]`, and run the product binary with
/// `tokio::process::Command` (or `spawn_blocking`), never a blocking `std::process` wait on a
/// current-thread runtime, which would stall the proxy.
pub struct FaultProxy {
    /// `127.0.0.1:PORT`
    pub host: String,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// Listens on a free loopback port in front of `upstream` (`http://127.0.0.1:PORT`).
    pub async fn start(upstream: &str, rules: Vec<Rule>) -> FaultProxy {
        let addr = upstream
            .strip_prefix("http://")
            .unwrap_or_else(|| panic!("FaultProxy needs an http:// upstream, got {upstream}"))
            .trim_end_matches('/')
            .to_string();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let host = listener.local_addr().unwrap().to_string();
        let state = Arc::new(State {
            rules: Mutex::new(rules.into_iter().map(|r| (r, Counter::default())).collect()),
            hits: Mutex::new(Vec::new()),
            upstream_origin: format!("http://{addr}"),
            upstream_addr: addr,
            proxy_origin: format!("http://{host}"),
            challenge: tokio::sync::OnceCell::new(),
        });
        let task = tokio::spawn(accept_loop(listener, state.clone()));
        FaultProxy { host, state, task }
    }

    /// `http://host`
    pub fn url(&self) -> String {
        format!("http://{}", self.host)
    }

    /// Replaces the rules and restarts their counts.
    pub fn set_rules(&self, rules: Vec<Rule>) {
        *self.state.rules.lock().unwrap() =
            rules.into_iter().map(|r| (r, Counter::default())).collect();
    }

    /// (method, path, status served) of every request so far.
    pub fn hits(&self) -> Vec<(String, String, u16)> {
        self.hit_log()
            .into_iter()
            .map(|h| (h.method, h.path, h.status))
            .collect()
    }

    /// Every request so far, with query and injected fault.
    pub fn hit_log(&self) -> Vec<Hit> {
        self.state.hits.lock().unwrap().clone()
    }

    /// How many requests had a fault injected.
    pub fn faults_injected(&self) -> usize {
        self.state
            .hits
            .lock()
            .unwrap()
            .iter()
            .filter(|h| h.fault.is_some())
            .count()
    }

    pub fn clear_hits(&self) {
        self.state.hits.lock().unwrap().clear();
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        // Aborting the accept task drops its JoinSet, which aborts every connection task.
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, state: Arc<State>) {
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let Ok((stream, _peer)) = listener.accept().await else {
            continue;
        };
        while conns.try_join_next().is_some() {}
        let _ = stream.set_nodelay(true);
        conns.spawn(serve_conn(stream, state.clone()));
    }
}

/// Per-connection control shared by the service and the IO wrapper.
#[derive(Default)]
struct ConnCtl {
    /// Set to make the connection end with a RST instead of a FIN.
    reset: AtomicBool,
}

/// The client-side socket; on drop after a reset request, sets SO_LINGER 0 so that close
/// sends RST (the client sees ECONNRESET, as with a real network fault).
struct KillableIo {
    inner: TcpStream,
    ctl: Arc<ConnCtl>,
}

impl Drop for KillableIo {
    fn drop(&mut self) {
        if self.ctl.reset.load(Ordering::SeqCst) {
            let _ = socket2::SockRef::from(&self.inner).set_linger(Some(Duration::ZERO));
        }
    }
}

impl AsyncRead for KillableIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for KillableIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

struct ConnCtx {
    state: Arc<State>,
    ctl: Arc<ConnCtl>,
    upstream: tokio::sync::Mutex<Option<SendRequest<Incoming>>>,
}

async fn serve_conn(stream: TcpStream, state: Arc<State>) {
    let ctl = Arc::new(ConnCtl::default());
    let ctx = Arc::new(ConnCtx {
        state,
        ctl: ctl.clone(),
        upstream: tokio::sync::Mutex::new(None),
    });
    let io = TokioIo::new(KillableIo { inner: stream, ctl });
    let svc = hyper::service::service_fn(move |req| {
        let ctx = ctx.clone();
        async move { handle(ctx, req).await }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(io, svc)
        .await;
}

fn error_body(code: u16) -> Body {
    let (c, msg) = match code {
        401 => ("UNAUTHORIZED", "authentication required"),
        429 => ("TOOMANYREQUESTS", "too many requests"),
        _ => ("UNAVAILABLE", "service unavailable"),
    };
    let json =
        format!(r#"{{"errors":[{{"code":"{c}","message":"{msg} (injected by FaultProxy)"}}]}}"#);
    Full::new(Bytes::from(json))
        .map_err(|e| match e {})
        .boxed_unsync()
}

async fn handle(ctx: Arc<ConnCtx>, req: HRequest<Incoming>) -> Result<Response<Body>, Abort> {
    let state = ctx.state.clone();
    let method = req.method().as_str().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().map(str::to_string);
    let pq = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| path.clone());
    // A personality's own look-ups (`personality::internal`, e.g. Hub checking whether a
    // repository exists) are not the tool's requests: no fault for them, since the tool
    // could neither see nor retry it.
    let fault = if req.headers().contains_key(INTERNAL_HEADER) {
        None
    } else {
        state.decide(&method, &path, &pq)
    };

    match &fault {
        Some(Fault::Status { code, retry_after }) => {
            drain(req.into_body()).await;
            let mut b = Response::builder()
                .status(*code)
                .header("content-type", "application/json")
                .header("docker-distribution-api-version", "registry/2.0");
            if let Some(ra) = retry_after {
                b = b.header("retry-after", ra.as_str());
            }
            state.record(&method, &path, query.as_deref(), *code, fault.as_ref());
            return Ok(b.body(error_body(*code)).unwrap());
        }
        Some(Fault::Unauthorized) => {
            drain(req.into_body()).await;
            let challenge = state
                .challenge
                .get_or_init(|| fetch_challenge(state.upstream_addr.clone()))
                .await
                .clone();
            state.record(&method, &path, query.as_deref(), 401, fault.as_ref());
            return Ok(Response::builder()
                .status(401)
                .header("content-type", "application/json")
                .header("docker-distribution-api-version", "registry/2.0")
                .header("www-authenticate", challenge)
                .body(error_body(401))
                .unwrap());
        }
        _ => {}
    }

    // Forward.
    let (mut parts, body) = req.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    let upstream_req = HRequest::from_parts(parts, body);
    let resp = match send_upstream(&ctx, upstream_req).await {
        Ok(r) => r,
        Err(e) => {
            state.record(&method, &path, query.as_deref(), 502, fault.as_ref());
            return Ok(Response::builder()
                .status(StatusCode::BAD_GATEWAY)
                .body(
                    Full::new(Bytes::from(format!("FaultProxy: upstream error: {e}")))
                        .map_err(|e| match e {})
                        .boxed_unsync(),
                )
                .unwrap());
        }
    };
    let (mut parts, body) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    if let Some(loc) = parts.headers.get("location").and_then(|v| v.to_str().ok()) {
        if let Some(rest) = loc.strip_prefix(&state.upstream_origin) {
            let new = format!("{}{rest}", state.proxy_origin);
            parts.headers.insert("location", new.parse().unwrap());
        }
    }
    let bodiless = method == "HEAD"
        || parts.status == StatusCode::NO_CONTENT
        || parts.status == StatusCode::NOT_MODIFIED
        || content_length(&parts.headers) == Some(0);
    let len = content_length(&parts.headers);
    let status = parts.status.as_u16();

    let body: Body = match &fault {
        None => passthrough(body),
        Some(Fault::ResetMidBody) if bodiless => {
            state.record(&method, &path, query.as_deref(), 0, fault.as_ref());
            ctx.ctl.reset.store(true, Ordering::SeqCst);
            return Err(Abort);
        }
        Some(Fault::ResetMidBody) => reset_body(body, len, ctx.ctl.clone()),
        Some(Fault::FlipByte) => flip_body(body, len),
        Some(Fault::SlowBody { delay }) if bodiless => {
            tokio::time::sleep(*delay).await;
            passthrough(body)
        }
        Some(Fault::SlowBody { delay }) => slow_body(body, *delay),
        Some(Fault::Status { .. } | Fault::Unauthorized) => unreachable!(),
    };
    state.record(&method, &path, query.as_deref(), status, fault.as_ref());
    Ok(Response::from_parts(parts, body))
}

/// The service error that makes hyper drop the client connection (an injected reset).
#[derive(Debug)]
struct Abort;

impl std::fmt::Display for Abort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FaultProxy: injected reset")
    }
}

impl std::error::Error for Abort {}

fn content_length(h: &http::HeaderMap) -> Option<u64> {
    h.get("content-length")?.to_str().ok()?.parse().ok()
}

fn strip_hop_by_hop(h: &mut http::HeaderMap) {
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

async fn drain(body: Incoming) {
    let mut s = BodyDataStream::new(body);
    while let Some(Ok(_)) = s.next().await {}
}

/// Sends on this connection's upstream connection, (re)connecting when needed.
async fn send_upstream(
    ctx: &ConnCtx,
    req: HRequest<Incoming>,
) -> Result<Response<Incoming>, String> {
    let mut guard = ctx.upstream.lock().await;
    let usable = match guard.as_mut() {
        Some(s) => !s.is_closed() && s.ready().await.is_ok(),
        None => false,
    };
    if !usable {
        let stream = TcpStream::connect(&ctx.state.upstream_addr)
            .await
            .map_err(|e| format!("connect {}: {e}", ctx.state.upstream_addr))?;
        let _ = stream.set_nodelay(true);
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        *guard = Some(sender);
    }
    let sender = guard.as_mut().unwrap();
    sender.send_request(req).await.map_err(|e| e.to_string())
}

/// The upstream's `WWW-Authenticate` for an anonymous `GET /v2/`.
async fn fetch_challenge(upstream_addr: String) -> String {
    let fallback = r#"Basic realm="fault-proxy""#.to_string();
    let Ok(stream) = TcpStream::connect(&upstream_addr).await else {
        return fallback;
    };
    let Ok((mut sender, conn)) =
        hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream)).await
    else {
        return fallback;
    };
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = HRequest::get("/v2/")
        .header("host", upstream_addr.as_str())
        .body(Empty::new())
        .unwrap();
    match sender.send_request(req).await {
        Ok(r) => r
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .unwrap_or(fallback),
        Err(_) => fallback,
    }
}

type ChunkStream = futures::stream::BoxStream<'static, Result<Bytes, BoxError>>;

fn data_stream(body: Incoming) -> ChunkStream {
    BodyDataStream::new(body)
        .map(|r| r.map_err(|e| -> BoxError { Box::new(e) }))
        .boxed()
}

fn passthrough(body: Incoming) -> Body {
    body.map_err(|e| -> BoxError { Box::new(e) }).boxed_unsync()
}

fn to_body(s: ChunkStream) -> Body {
    StreamBody::new(s.map(|r| r.map(Frame::data))).boxed_unsync()
}

enum Cut {
    Forwarding { up: ChunkStream, sent: u64 },
    Cutting,
    Done,
}

/// Half the body, a pause so hyper flushes it, then an error: hyper drops the connection and
/// `KillableIo` turns the close into a RST.
fn reset_body(body: Incoming, len: Option<u64>, ctl: Arc<ConnCtl>) -> Body {
    let start = Cut::Forwarding {
        up: data_stream(body),
        sent: 0,
    };
    let s = futures::stream::unfold(start, move |st| {
        let ctl = ctl.clone();
        async move {
            match st {
                Cut::Forwarding { mut up, sent } => {
                    // Upstream ending or failing before the cut point: cut right here.
                    let chunk = match up.next().await {
                        Some(Ok(c)) => c,
                        _ => Bytes::new(),
                    };
                    // Cut at half the declared length, else at half the first chunk.
                    let cut = len.unwrap_or(sent + chunk.len() as u64 * 2) / 2;
                    let room = cut.saturating_sub(sent) as usize;
                    if chunk.is_empty() || chunk.len() >= room {
                        Some((Ok(chunk.slice(..room.min(chunk.len()))), Cut::Cutting))
                    } else {
                        let sent = sent + chunk.len() as u64;
                        Some((Ok(chunk), Cut::Forwarding { up, sent }))
                    }
                }
                Cut::Cutting => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    ctl.reset.store(true, Ordering::SeqCst);
                    let err = BoxError::from("FaultProxy: injected reset mid-body");
                    Some((Err(err), Cut::Done))
                }
                Cut::Done => None,
            }
        }
    });
    to_body(s.boxed())
}

/// XOR 0xFF one byte: at `len / 2` when known, else the first byte.
fn flip_body(body: Incoming, len: Option<u64>) -> Body {
    let target = len.map(|l| l / 2).unwrap_or(0);
    let mut offset = 0u64;
    let s = data_stream(body).map(move |r| {
        r.map(|chunk| {
            let start = offset;
            offset += chunk.len() as u64;
            if target >= start && target < offset {
                let mut m = BytesMut::from(&chunk[..]);
                m[(target - start) as usize] ^= 0xFF;
                m.freeze()
            } else {
                chunk
            }
        })
    });
    to_body(s.boxed())
}

/// Holds the body back for `delay`, then streams it.
fn slow_body(body: Incoming, delay: Duration) -> Body {
    let s = futures::stream::once(async move {
        tokio::time::sleep(delay).await;
        Ok::<_, BoxError>(Bytes::new())
    })
    .chain(data_stream(body))
    .filter(|r| futures::future::ready(!matches!(r, Ok(b) if b.is_empty())));
    to_body(s.boxed())
}
