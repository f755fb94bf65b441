//! A registry personality that paginates tag lists, in front of a real `docker-registry`.
//!
//! Debian's docker-registry (distribution 2.8.2) ignores `n` and `last` on
//! `GET /v2/<name>/tags/list` and always answers the whole list in one response (checked by
//! hand: `?n=2` on a repository with 5 tags returns all 5, and no `Link`). Registries that do
//! paginate (ECR, distribution 3, Harbor, Quay) answer at most `n` tags in lexical order, after
//! `last`, with `Link: <...>; rel="next"` (distribution spec, "Listing Tags"); some also cap `n`
//! below what was asked for. This front does exactly that for tag lists, with a cap of
//! `page_cap` tags, and alternates relative and absolute `Link` URLs so that a client must
//! resolve both. Everything else is forwarded verbatim (bodies buffered: test images are
//! small). Each tag-list request is logged (path and query) for assertions.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request as HRequest, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

pub struct PagingRegistry {
    /// `127.0.0.1:PORT`
    pub host: String,
    state: Arc<PagingState>,
    task: tokio::task::JoinHandle<()>,
}

struct PagingState {
    upstream: String,
    origin: String,
    page_cap: usize,
    client: reqwest::Client,
    log: Mutex<Vec<String>>,
}

impl Drop for PagingRegistry {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl PagingRegistry {
    /// Listens on a free loopback port in front of `upstream` (`http://127.0.0.1:PORT`).
    pub async fn start(upstream: &str, page_cap: usize) -> PagingRegistry {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let host = listener.local_addr().unwrap().to_string();
        let state = Arc::new(PagingState {
            upstream: upstream.trim_end_matches('/').to_string(),
            origin: format!("http://{host}"),
            page_cap,
            client: reqwest::Client::new(),
            log: Mutex::new(vec![]),
        });
        let s = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let s = s.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| handle(s.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        PagingRegistry { host, state, task }
    }

    /// The tag-list requests received (path and query), in order.
    pub fn tag_list_requests(&self) -> Vec<String> {
        self.state.log.lock().unwrap().clone()
    }

    pub fn clear(&self) {
        self.state.log.lock().unwrap().clear();
    }
}

fn query_param<'a>(query: &'a str, key: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

async fn handle(
    s: Arc<PagingState>,
    req: HRequest<Incoming>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let method = req.method().clone();
    let is_tag_list = method == hyper::Method::GET && path.ends_with("/tags/list");
    // The tag list is fetched whole (docker-registry ignores n and last); anything else as asked.
    let url = if query.is_empty() || is_tag_list {
        format!("{}{path}", s.upstream)
    } else {
        format!("{}{path}?{query}", s.upstream)
    };
    let mut fwd = s.client.request(
        reqwest::Method::from_bytes(method.as_str().as_bytes()).unwrap(),
        url,
    );
    for (k, v) in req.headers() {
        if k != hyper::header::HOST {
            fwd = fwd.header(k.as_str(), v.as_bytes());
        }
    }
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    if !is_tag_list {
        return Ok(forward(&s, fwd.body(body)).await);
    }
    s.log.lock().unwrap().push(format!("{path}?{query}"));
    let res = fwd.send().await.expect("upstream tag list");
    if res.status() != reqwest::StatusCode::OK {
        let status = res.status().as_u16();
        let b = res.bytes().await.unwrap_or_default();
        return Ok(Response::builder()
            .status(status)
            .body(Full::new(b))
            .unwrap());
    }
    let v: serde_json::Value = res.json().await.expect("tag list JSON");
    let mut tags: Vec<String> = v["tags"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|t| t.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    tags.sort();
    if let Some(last) = query_param(&query, "last") {
        tags.retain(|t| t.as_str() > last);
    }
    let n = query_param(&query, "n")
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(usize::MAX)
        .min(s.page_cap);
    let more = tags.len() > n;
    tags.truncate(n);
    let mut b = Response::builder()
        .status(200)
        .header("content-type", "application/json");
    if more {
        let last = tags.last().cloned().unwrap_or_default();
        let page = s.log.lock().unwrap().len();
        let next = format!("{path}?n={n}&last={last}");
        // Alternate relative and absolute URLs, as registries differ.
        let next = if page % 2 == 0 {
            format!("{}{next}", s.origin)
        } else {
            next
        };
        b = b.header("link", format!("<{next}>; rel=\"next\""));
    }
    let body = serde_json::json!({"name": v["name"], "tags": tags}).to_string();
    Ok(b.body(Full::new(Bytes::from(body))).unwrap())
}

async fn forward(s: &PagingState, r: reqwest::RequestBuilder) -> Response<Full<Bytes>> {
    let res = match r.send().await {
        Ok(res) => res,
        Err(e) => {
            return Response::builder()
                .status(502)
                .body(Full::new(Bytes::from(e.to_string())))
                .unwrap()
        }
    };
    let mut b = Response::builder().status(res.status().as_u16());
    for (k, v) in res.headers() {
        if k == reqwest::header::LOCATION {
            let loc = v.to_str().unwrap_or("").replace(&s.upstream, &s.origin);
            b = b.header(k.as_str(), loc);
        } else if k != reqwest::header::TRANSFER_ENCODING {
            b = b.header(k.as_str(), v.as_bytes());
        }
    }
    let bytes = res.bytes().await.unwrap_or_default();
    b.body(Full::new(bytes)).unwrap()
}
