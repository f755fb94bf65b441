//! An in-process OCI 1.1 referrers endpoint in front of a real `docker-registry` (2.8 has no
//! referrers API): everything is forwarded, and
//! * a manifest PUT whose body has a `subject` is recorded as a referrer of that subject, and
//!   answered with `OCI-Subject: <digest>` as a registry with the API does;
//! * `GET /v2/<name>/referrers/<digest>` answers the recorded referrers as an image index,
//!   honouring `?artifactType=` (with `OCI-Filters-Applied: artifactType`), `page_size` entries
//!   per page with a `Link: <...>; rel="next"`;
//! * with [`ReferrersApi::refuse_index_subjects`], a referrer whose subject is an index is
//!   refused with 405 (the ECR manner reported in containers-roadmap #2783), not forwarded.
//!
//! Bodies are buffered: this is for small test artifacts.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request as HRequest, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use super::image::sha256_digest;

type Body = UnsyncBoxBody<Bytes, Infallible>;

struct State {
    upstream: String,
    origin: String,
    http: reqwest::Client,
    /// (repository, subject digest) → descriptors, in push order.
    referrers: Mutex<HashMap<(String, String), Vec<serde_json::Value>>>,
    refuse_index_subjects: AtomicBool,
    page_size: usize,
    /// (method, path+query, status) of every request.
    hits: Mutex<Vec<(String, String, u16)>>,
}

/// The endpoint. Drop stops it.
pub struct ReferrersApi {
    /// `IP:PORT`
    pub host: String,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl ReferrersApi {
    /// Starts in front of `upstream` (`http://host:port`), `page_size` referrers per page.
    pub async fn start(upstream: &str, page_size: usize) -> ReferrersApi {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let host = listener.local_addr().unwrap().to_string();
        let state = Arc::new(State {
            upstream: upstream.trim_end_matches('/').to_string(),
            origin: format!("http://{host}"),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            referrers: Mutex::new(HashMap::new()),
            refuse_index_subjects: AtomicBool::new(false),
            page_size: page_size.max(1),
            hits: Mutex::new(Vec::new()),
        });
        let task = tokio::spawn(accept_loop(listener, state.clone()));
        ReferrersApi { host, state, task }
    }

    /// `http://host`
    pub fn url(&self) -> String {
        self.state.origin.clone()
    }

    /// Refuse (405) referrers whose subject is an index, as ECR has been reported to.
    pub fn refuse_index_subjects(&self, on: bool) {
        self.state.refuse_index_subjects.store(on, Ordering::SeqCst);
    }

    /// The recorded referrers of `subject` in `repo`.
    pub fn referrers_of(&self, repo: &str, subject: &str) -> Vec<serde_json::Value> {
        self.state
            .referrers
            .lock()
            .unwrap()
            .get(&(repo.to_string(), subject.to_string()))
            .cloned()
            .unwrap_or_default()
    }

    /// Every request so far: (method, path+query, status).
    pub fn hits(&self) -> Vec<(String, String, u16)> {
        self.state.hits.lock().unwrap().clone()
    }
}

impl Drop for ReferrersApi {
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
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).boxed_unsync()
}

fn is_index(mt: &str) -> bool {
    mt == "application/vnd.oci.image.index.v1+json"
        || mt == "application/vnd.docker.distribution.manifest.list.v2+json"
}

async fn handle(state: &State, req: HRequest<Incoming>) -> Response<Body> {
    let method = req.method().as_str().to_string();
    let path = req.uri().path().to_string();
    let pq = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| path.clone());
    let resp = handle_inner(state, req, &method, &path, &pq).await;
    state
        .hits
        .lock()
        .unwrap()
        .push((method, pq, resp.status().as_u16()));
    resp
}

async fn handle_inner(
    state: &State,
    req: HRequest<Incoming>,
    method: &str,
    path: &str,
    pq: &str,
) -> Response<Body> {
    if method == "GET" {
        if let Some((repo, digest)) = path
            .strip_prefix("/v2/")
            .and_then(|p| p.split_once("/referrers/"))
        {
            return list(state, repo, digest, req.uri().query());
        }
    }
    let headers = req.headers().clone();
    let body = req.into_body().collect().await.unwrap().to_bytes();
    let mut subject = None;
    if method == "PUT" && path.contains("/manifests/") {
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body) {
            if let Some(s) = v.get("subject").filter(|s| s.is_object()) {
                let repo = path
                    .strip_prefix("/v2/")
                    .and_then(|p| p.split_once("/manifests/"))
                    .map(|(r, _)| r.to_string())
                    .unwrap_or_default();
                let smt = s["mediaType"].as_str().unwrap_or_default();
                if is_index(smt) && state.refuse_index_subjects.load(Ordering::SeqCst) {
                    return Response::builder()
                        .status(405)
                        .header("content-type", "application/json")
                        .body(full(
                            r#"{"errors":[{"code":"UNSUPPORTED","message":"Invalid parameter at 'subject' failed to satisfy constraint"}]}"#,
                        ))
                        .unwrap();
                }
                let mt = headers
                    .get("content-type")
                    .and_then(|h| h.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                let artifact_type = v["artifactType"]
                    .as_str()
                    .or(v["config"]["mediaType"].as_str())
                    .map(str::to_string);
                let mut d = serde_json::json!({
                    "mediaType": mt,
                    "digest": sha256_digest(&body),
                    "size": body.len(),
                });
                if let Some(t) = artifact_type {
                    d["artifactType"] = t.into();
                }
                if let Some(a) = v.get("annotations") {
                    d["annotations"] = a.clone();
                }
                subject = Some((
                    repo,
                    s["digest"].as_str().unwrap_or_default().to_string(),
                    d,
                ));
            }
        }
    }
    let url = format!("{}{pq}", state.upstream);
    let mut rb = state.http.request(method.parse().unwrap(), &url);
    for (k, v) in headers.iter() {
        if k == "host" || k == "connection" || k == "content-length" {
            continue;
        }
        rb = rb.header(k, v);
    }
    let r = match rb.body(body.to_vec()).send().await {
        Ok(r) => r,
        Err(e) => {
            return Response::builder()
                .status(502)
                .body(full(e.to_string()))
                .unwrap()
        }
    };
    let status = r.status().as_u16();
    let mut b = Response::builder().status(status);
    for (k, v) in r.headers() {
        if k == "connection" || k == "transfer-encoding" {
            continue;
        }
        if k == "location" {
            let loc = v.to_str().unwrap_or_default();
            let loc = match loc.strip_prefix(&state.upstream) {
                Some(rest) => format!("{}{rest}", state.origin),
                None => loc.to_string(),
            };
            b = b.header(k, loc);
            continue;
        }
        b = b.header(k, v);
    }
    if let Some((repo, s, d)) = subject.filter(|_| (200..300).contains(&status)) {
        b = b.header("oci-subject", s.as_str());
        let mut m = state.referrers.lock().unwrap();
        let list = m.entry((repo, s)).or_default();
        if !list.iter().any(|x| x["digest"] == d["digest"]) {
            list.push(d);
        }
    }
    let bytes = r.bytes().await.unwrap_or_default();
    b.body(full(bytes)).unwrap()
}

fn list(state: &State, repo: &str, digest: &str, query: Option<&str>) -> Response<Body> {
    let params: HashMap<String, String> = query
        .unwrap_or_default()
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.replace("%2F", "/").replace("%2B", "+")))
        .collect();
    let mut all = state
        .referrers
        .lock()
        .unwrap()
        .get(&(repo.to_string(), digest.to_string()))
        .cloned()
        .unwrap_or_default();
    let filtered = params.get("artifactType");
    if let Some(t) = filtered {
        all.retain(|d| d["artifactType"].as_str() == Some(t.as_str()));
    }
    let start: usize = params.get("page").and_then(|p| p.parse().ok()).unwrap_or(0);
    let end = (start + state.page_size).min(all.len());
    let page: Vec<_> = all.get(start..end).unwrap_or_default().to_vec();
    let body = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": page,
    });
    let mut b = Response::builder()
        .status(200)
        .header("content-type", "application/vnd.oci.image.index.v1+json");
    if filtered.is_some() {
        b = b.header("oci-filters-applied", "artifactType");
    }
    if end < all.len() {
        let mut next = format!("/v2/{repo}/referrers/{digest}?page={end}");
        if let Some(t) = filtered {
            next = format!("{next}&artifactType={t}");
        }
        b = b.header("link", format!("<{next}>; rel=\"next\""));
    }
    b.body(full(serde_json::to_vec(&body).unwrap())).unwrap()
}
