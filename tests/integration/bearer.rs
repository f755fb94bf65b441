//! The bearer-token challenge flow (Docker Hub, ghcr.io): `401` with
//! `WWW-Authenticate: Bearer realm=…,service=…`, a token request to the realm (with Basic
//! credentials when configured, anonymous otherwise), then requests with `Bearer <token>`.
//!
//! A real docker-registry cannot issue tokens without a JWT signing setup, so a small in-process
//! gate plays the token service and forwards authorised requests to a real registry behind it.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::support::{self, Format, Registry};

/// What the gate saw.
#[derive(Default)]
struct Seen {
    /// (Basic user or "-", scopes, service) of every token request.
    token_requests: Vec<(String, Vec<String>, String)>,
    /// Registry requests that carried a valid bearer token.
    authorised: usize,
    /// Registry requests answered with the challenge.
    challenged: usize,
}

struct Gate {
    origin: String,
    seen: Arc<Mutex<Seen>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.task.abort();
    }
}

const TOKEN: &str = "t0k3n-for-the-gate";

fn basic_user(req: &Request<Incoming>) -> Option<(String, String)> {
    let h = req.headers().get("authorization")?.to_str().ok()?;
    let b64 = h.strip_prefix("Basic ")?;
    let raw = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    let s = String::from_utf8(raw).ok()?;
    let (u, p) = s.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

async fn handle(
    req: Request<Incoming>,
    upstream: String,
    origin: String,
    creds: (String, String),
    seen: Arc<Mutex<Seen>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    if path == "/token" {
        let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let scopes = pairs
            .iter()
            .filter(|(k, _)| k == "scope")
            .map(|(_, v)| v.clone())
            .collect();
        let service = pairs
            .iter()
            .find(|(k, _)| k == "service")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        let user = basic_user(&req);
        seen.lock().unwrap().token_requests.push((
            user.as_ref()
                .map(|u| u.0.clone())
                .unwrap_or_else(|| "-".into()),
            scopes,
            service,
        ));
        // Anonymous tokens are issued (as Docker Hub does for public images); wrong
        // credentials are refused.
        if let Some(u) = user {
            if u != creds {
                return Ok(Response::builder()
                    .status(401)
                    .body(Full::new(Bytes::from_static(
                        b"{\"details\":\"incorrect username or password\"}",
                    )))
                    .unwrap());
            }
        }
        let body = format!("{{\"token\":\"{TOKEN}\",\"expires_in\":300}}");
        return Ok(Response::new(Full::new(Bytes::from(body))));
    }
    let bearer_ok = req
        .headers()
        .get("authorization")
        .and_then(|h| h.to_str().ok())
        .is_some_and(|h| h == format!("Bearer {TOKEN}"));
    if !bearer_ok {
        seen.lock().unwrap().challenged += 1;
        let challenge = format!("Bearer realm=\"{origin}/token\",service=\"gate.test\"");
        return Ok(Response::builder()
            .status(401)
            .header("www-authenticate", challenge)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from_static(
                b"{\"errors\":[{\"code\":\"UNAUTHORIZED\"}]}",
            )))
            .unwrap());
    }
    seen.lock().unwrap().authorised += 1;
    // Forward to the real registry (small test images: buffering is fine here).
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let url = if query.is_empty() {
        format!("{upstream}{path}")
    } else {
        format!("{upstream}{path}?{query}")
    };
    let method = reqwest::Method::from_bytes(req.method().as_str().as_bytes()).unwrap();
    let mut rb = client.request(method, url);
    for (k, v) in req.headers() {
        if k != "host" && k != "authorization" {
            rb = rb.header(k.as_str(), v.as_bytes());
        }
    }
    let body = req.into_body().collect().await.unwrap().to_bytes();
    let res = rb.body(body).send().await.unwrap();
    let mut out = Response::builder().status(StatusCode::from_u16(res.status().as_u16()).unwrap());
    for (k, v) in res.headers() {
        let v = if k == "location" {
            v.to_str().unwrap().replace(&upstream, &origin).into_bytes()
        } else {
            v.as_bytes().to_vec()
        };
        if k != "content-length" && k != "transfer-encoding" {
            out = out.header(k.as_str(), v);
        }
    }
    let bytes = res.bytes().await.unwrap();
    Ok(out.body(Full::new(bytes)).unwrap())
}

async fn start_gate(upstream: &str, creds: (&str, &str)) -> Gate {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let origin = format!("http://{addr}");
    let seen = Arc::new(Mutex::new(Seen::default()));
    let (up, org, s) = (upstream.to_string(), origin.clone(), seen.clone());
    let creds = (creds.0.to_string(), creds.1.to_string());
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (up, org, s, creds) = (up.clone(), org.clone(), s.clone(), creds.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    handle(req, up.clone(), org.clone(), creds.clone(), s.clone())
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Gate { origin, seen, task }
}

#[tokio::test(flavor = "multi_thread")]
async fn copy_through_a_bearer_token_challenge() {
    let upstream = Registry::start();
    let dest = Registry::start();
    let img = support::random_image(71, &[2048, 4096], "linux/amd64", Format::Oci);
    support::push_image(&upstream.url(), "up/app", "v1", &img, None, None).await;
    let gate = start_gate(&upstream.url(), ("alice", "pa55-alice")).await;
    let gate_host = gate.origin.trim_start_matches("http://").to_string();

    // With credentials: the token request carries Basic alice and the pull scope.
    let out = support::run_async(
        &[
            "copy",
            "--src",
            &format!("{gate_host}/up/app:v1"),
            "--dest",
            &format!("{}/mirror/app", dest.host),
            "--src-creds",
            "alice:pa55-alice",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            "--insecure-policy",
        ],
        &[],
    )
    .await;
    assert!(out.status.success(), "{}", support::describe(&out));
    let got = support::head_manifest(&dest.url(), "mirror/app", "v1", None, None).await;
    assert_eq!(got.as_deref(), Some(img.digest.as_str()));
    {
        let seen = gate.seen.lock().unwrap();
        assert!(!seen.token_requests.is_empty(), "no token was requested");
        for (user, scopes, service) in &seen.token_requests {
            assert_eq!(user, "alice");
            assert_eq!(service, "gate.test");
            assert!(
                scopes.iter().any(|s| s == "repository:up/app:pull"),
                "{scopes:?}"
            );
        }
        assert!(
            seen.authorised >= 3,
            "manifest and blobs went through with the token"
        );
        // One challenge from the ping; afterwards every request carries the token.
        assert_eq!(seen.challenged, 1, "only the /v2/ ping is challenged");
    }

    // Anonymous: a token is still fetched (as for public Docker Hub images).
    let out = support::run_async(
        &[
            "copy",
            "--src",
            &format!("{gate_host}/up/app:v1"),
            "--dest",
            &format!("{}/mirror/anon", dest.host),
            "--src-no-creds",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            "--insecure-policy",
        ],
        &[],
    )
    .await;
    assert!(out.status.success(), "{}", support::describe(&out));
    assert!(gate
        .seen
        .lock()
        .unwrap()
        .token_requests
        .iter()
        .any(|(u, _, _)| u == "-"));

    // Wrong credentials: a clear error naming the registry and the user, never the password.
    let out = support::run_async(
        &[
            "copy",
            "--src",
            &format!("{gate_host}/up/app:v1"),
            "--dest",
            &format!("{}/mirror/wrong", dest.host),
            "--src-creds",
            "alice:Wr0ng-S3cret",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            "--insecure-policy",
            "--retry-times",
            "0",
        ],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", support::describe(&out));
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        all.contains("authentication failed") && all.contains("alice") && all.contains(&gate_host),
        "{all}"
    );
    assert!(!all.contains("Wr0ng-S3cret"), "the password leaked: {all}");
    assert!(
        support::head_manifest(&dest.url(), "mirror/wrong", "v1", None, None)
            .await
            .is_none()
    );
}
