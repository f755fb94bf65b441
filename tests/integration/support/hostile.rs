//! A small in-process registry that serves exactly what a test scripts, for the bad input a
//! real `docker-registry` refuses to store: oversized or lying manifests, indexes nested too
//! deep or pointing at themselves, blobs whose size disagrees with their descriptor, and blob
//! GETs redirected to another host (as registries do with their CDNs).
//!
//! Routes are exact paths (the query is ignored). `HEAD` answers like `GET` without the body
//! (`Content-Length` still tells the body's length). Unknown paths get a 404 with an OCI error
//! body. Every request is recorded with all its headers ([`Hostile::seen`]), so a test can check
//! what a client sent, e.g. that a redirect target never received an `Authorization` header.
//!
//! Auth, when configured, applies to every path except the token endpoint: `Basic` checks the
//! user and password; `Bearer` accepts one token, which `GET /token` issues (to the configured
//! Basic user if there is one, else to anyone), like a distribution token server.
//!
//! Like the FaultProxy, it runs on the runtime of the test that started it: use
//! `#[tokio::test(flavor = "multi_thread")]` and run the product asynchronously.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Empty, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request as HRequest, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use super::image::{sha256_digest, Image, Index};

type Body = UnsyncBoxBody<Bytes, Infallible>;

/// How the hostile registry authenticates.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum HostileAuth {
    /// Everything is open.
    #[default]
    None,
    /// HTTP Basic with this user and password (challenge `Basic realm="hostile"`).
    Basic { user: String, pass: String },
    /// Bearer with exactly this token. `GET /token` issues it: to `issuer` (Basic user,
    /// password) when given, else to anyone.
    Bearer {
        token: String,
        issuer: Option<(String, String)>,
    },
}

/// One scripted answer.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    /// Send the body chunked (no `Content-Length`), in pieces of at most 64 KiB.
    pub chunked: bool,
}

impl Reply {
    /// A bare status with an OCI-style error body.
    pub fn status(code: u16) -> Reply {
        Reply {
            status: code,
            headers: vec![("content-type".into(), "application/json".into())],
            body: Bytes::from(format!(
                r#"{{"errors":[{{"code":"HOSTILE","message":"scripted status {code}"}}]}}"#
            )),
            chunked: false,
        }
    }

    /// A manifest: 200, this `Content-Type`, and `Docker-Content-Digest` = sha256 of the bytes.
    pub fn manifest(bytes: impl Into<Bytes>, content_type: &str) -> Reply {
        let body: Bytes = bytes.into();
        Reply {
            status: 200,
            headers: vec![
                ("content-type".into(), content_type.into()),
                ("docker-content-digest".into(), sha256_digest(&body)),
            ],
            body,
            chunked: false,
        }
    }

    /// A blob: 200, `application/octet-stream`.
    pub fn blob(bytes: impl Into<Bytes>) -> Reply {
        Reply {
            status: 200,
            headers: vec![("content-type".into(), "application/octet-stream".into())],
            body: bytes.into(),
            chunked: false,
        }
    }

    /// A `307 Temporary Redirect` to `location`.
    pub fn redirect(location: &str) -> Reply {
        Reply {
            status: 307,
            headers: vec![("location".into(), location.into())],
            body: Bytes::new(),
            chunked: false,
        }
    }

    /// Adds or replaces a header.
    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
        self.headers
            .push((name.to_ascii_lowercase(), value.to_string()));
        self
    }

    /// Sends the body chunked, without `Content-Length`.
    pub fn chunked(mut self) -> Reply {
        self.chunked = true;
        self
    }
}

/// One request the hostile registry received.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    /// Every header, names lower-case, in the order received.
    pub headers: Vec<(String, String)>,
    /// The status answered.
    pub status: u16,
}

impl Seen {
    /// The first value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

struct State {
    auth: HostileAuth,
    origin: String,
    routes: Mutex<HashMap<String, Reply>>,
    seen: Mutex<Vec<Seen>>,
}

/// The hostile registry. Drop stops it.
pub struct Hostile {
    /// `IP:PORT`
    pub host: String,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl Hostile {
    /// Starts on 127.0.0.1.
    pub async fn start(auth: HostileAuth) -> Hostile {
        Self::start_on("127.0.0.1", auth).await
    }

    /// Starts on a free port of `ip` (any 127.x.y.z address works on Linux).
    pub async fn start_on(ip: &str, auth: HostileAuth) -> Hostile {
        let listener = TcpListener::bind(format!("{ip}:0"))
            .await
            .unwrap_or_else(|e| panic!("bind {ip}:0 for the hostile registry: {e}"));
        let host = listener.local_addr().unwrap().to_string();
        let state = Arc::new(State {
            auth,
            origin: format!("http://{host}"),
            routes: Mutex::new(HashMap::new()),
            seen: Mutex::new(Vec::new()),
        });
        let task = tokio::spawn(accept_loop(listener, state.clone()));
        Hostile { host, state, task }
    }

    /// `http://host`
    pub fn url(&self) -> String {
        self.state.origin.clone()
    }

    /// Serves `reply` at exactly `path` (replacing any earlier route).
    pub fn route(&self, path: &str, reply: Reply) {
        self.state
            .routes
            .lock()
            .unwrap()
            .insert(path.to_string(), reply);
    }

    /// Serves an image honestly: its blobs, and its manifest by digest and (if not empty) by
    /// `tag`.
    pub fn serve_image(&self, repo: &str, tag: &str, img: &Image) {
        for b in img.blobs() {
            self.route(
                &format!("/v2/{repo}/blobs/{}", b.digest),
                Reply::blob(b.data.clone()),
            );
        }
        let m = Reply::manifest(img.manifest.clone(), &img.media_type);
        self.route(&format!("/v2/{repo}/manifests/{}", img.digest), m.clone());
        if !tag.is_empty() {
            self.route(&format!("/v2/{repo}/manifests/{tag}"), m);
        }
    }

    /// Serves an index honestly: every child image, and the index by digest and by `tag`.
    pub fn serve_index(&self, repo: &str, tag: &str, idx: &Index) {
        for img in &idx.images {
            self.serve_image(repo, "", img);
        }
        let m = Reply::manifest(idx.manifest.clone(), &idx.media_type);
        self.route(&format!("/v2/{repo}/manifests/{}", idx.digest), m.clone());
        self.route(&format!("/v2/{repo}/manifests/{tag}"), m);
    }

    /// Every request so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }

    /// Requests for `path` so far.
    pub fn seen_at(&self, path: &str) -> Vec<Seen> {
        self.seen().into_iter().filter(|s| s.path == path).collect()
    }
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, state: Arc<State>) {
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        while conns.try_join_next().is_some() {}
        let state = state.clone();
        conns.spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(handle(&state, req).await) }
            });
            // A TLS ClientHello (clients probe https first) fails to parse and closes the
            // connection, which is what a plain-HTTP registry does.
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

fn chunked_body(b: Bytes) -> Body {
    let pieces: Vec<Result<Frame<Bytes>, Infallible>> = (0..b.len())
        .step_by(64 * 1024)
        .map(|i| Ok(Frame::data(b.slice(i..(i + 64 * 1024).min(b.len())))))
        .collect();
    StreamBody::new(futures::stream::iter(pieces)).boxed_unsync()
}

fn basic_ok(header: Option<&str>, user: &str, pass: &str) -> bool {
    let want = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
    header.is_some_and(|h| h.trim() == format!("Basic {want}"))
}

async fn handle(state: &State, req: HRequest<Incoming>) -> Response<Body> {
    let method = req.method().as_str().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().map(str::to_string);
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    // Drain any request body (a hostile source receives none worth keeping).
    let _ = req.into_body().collect().await;
    let authz = headers
        .iter()
        .find(|(k, _)| k == "authorization")
        .map(|(_, v)| v.as_str());

    let reply = answer(state, &path, authz);
    state.seen.lock().unwrap().push(Seen {
        method: method.clone(),
        path,
        query,
        headers,
        status: reply.status,
    });
    let mut b = Response::builder()
        .status(reply.status)
        .header("docker-distribution-api-version", "registry/2.0");
    for (k, v) in &reply.headers {
        b = b.header(k.as_str(), v.as_str());
    }
    let body = if method == "HEAD" {
        if !reply.chunked {
            b = b.header("content-length", reply.body.len().to_string());
        }
        Empty::new().boxed_unsync()
    } else if reply.chunked {
        chunked_body(reply.body)
    } else {
        Full::new(reply.body).boxed_unsync()
    };
    b.body(body).expect("valid scripted response")
}

fn answer(state: &State, path: &str, authz: Option<&str>) -> Reply {
    // The token endpoint of a Bearer registry.
    if let HostileAuth::Bearer { token, issuer } = &state.auth {
        if path == "/token" {
            return match issuer {
                Some((u, p)) if !basic_ok(authz, u, p) => Reply::status(401),
                _ => Reply::manifest(
                    serde_json::json!({"token": token, "expires_in": 300}).to_string(),
                    "application/json",
                ),
            };
        }
    }
    let challenge = match &state.auth {
        HostileAuth::None => None,
        HostileAuth::Basic { user, pass } => {
            (!basic_ok(authz, user, pass)).then(|| r#"Basic realm="hostile""#.to_string())
        }
        HostileAuth::Bearer { token, .. } => {
            let want = format!("Bearer {token}");
            (authz.map(str::trim) != Some(want.as_str()))
                .then(|| format!(r#"Bearer realm="{}/token",service="hostile""#, state.origin))
        }
    };
    if let Some(c) = challenge {
        return Reply::status(401).header("www-authenticate", &c);
    }
    if path == "/v2/" || path == "/v2" {
        return Reply::manifest("{}", "application/json");
    }
    if let Some(r) = state.routes.lock().unwrap().get(path) {
        return r.clone();
    }
    let code = if path.contains("/manifests/") {
        "MANIFEST_UNKNOWN"
    } else {
        "BLOB_UNKNOWN"
    };
    let mut r = Reply::status(404);
    r.body = Bytes::from(format!(
        r#"{{"errors":[{{"code":"{code}","message":"not scripted"}}]}}"#
    ));
    r
}
