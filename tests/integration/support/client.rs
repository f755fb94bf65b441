//! The harness's own minimal registry client, independent of the product code: monolithic
//! blob upload (POST, then PUT with `?digest=`), manifests by digest then by tag, HEAD/GET.
//! Unexpected statuses panic with the registry's answer.

use std::future::Future;
use std::path::{Path, PathBuf};

use reqwest::{header, Client, Method, StatusCode};

use super::image::{Blob, Image, Index};

/// Every manifest media type the harness writes, for `Accept`.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json";

/// Runs a future to completion on a fresh current-thread runtime in a scoped thread, so sync
/// code can make HTTP calls even from inside a test's tokio runtime.
pub fn blocking<F>(fut: F) -> F::Output
where
    F: Future + Send,
    F::Output: Send,
{
    std::thread::scope(|s| {
        s.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("build runtime")
                .block_on(fut)
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

/// A reqwest client trusting only `ca` when given: a cert dir (every `*.crt`, skopeo layout)
/// or a PEM file. No env proxies (reqwest is built without `system-proxy`).
pub fn http_client(ca: Option<&Path>) -> Client {
    let mut b = Client::builder();
    if let Some(ca) = ca {
        let files: Vec<PathBuf> = if ca.is_dir() {
            std::fs::read_dir(ca)
                .unwrap_or_else(|e| panic!("read cert dir {}: {e}", ca.display()))
                .map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|x| x == "crt"))
                .collect()
        } else {
            vec![ca.to_path_buf()]
        };
        assert!(!files.is_empty(), "no *.crt in {}", ca.display());
        let certs = files.iter().map(|f| {
            let pem = std::fs::read(f).unwrap_or_else(|e| panic!("read {}: {e}", f.display()));
            reqwest::Certificate::from_pem(&pem).expect("parse CA PEM")
        });
        // 0.13: tls_certs_only replaces the deprecated add_root_certificate.
        b = b.tls_certs_only(certs.collect::<Vec<_>>());
    }
    b.build().expect("build reqwest client")
}

struct Conn<'a> {
    client: Client,
    base: String,
    auth: Option<(&'a str, &'a str)>,
}

impl<'a> Conn<'a> {
    fn new(reg_url: &str, auth: Option<(&'a str, &'a str)>, ca: Option<&Path>) -> Self {
        Conn {
            client: http_client(ca),
            base: reg_url.trim_end_matches('/').to_string(),
            auth,
        }
    }

    fn req(&self, method: Method, url: &str) -> reqwest::RequestBuilder {
        let url = if url.starts_with("http://") || url.starts_with("https://") {
            url.to_string()
        } else {
            format!("{}{url}", self.base)
        };
        let rb = self.client.request(method, url);
        match self.auth {
            Some((u, p)) => rb.basic_auth(u, Some(p)),
            None => rb,
        }
    }
}

async fn fail(what: &str, resp: reqwest::Response) -> ! {
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    panic!("{what}: unexpected {status}: {body}")
}

/// Uploads one blob unless the repository already has it (HEAD first).
pub async fn push_blob(
    reg_url: &str,
    repo: &str,
    blob: &Blob,
    auth: Option<(&str, &str)>,
    ca: Option<&Path>,
) {
    let c = Conn::new(reg_url, auth, ca);
    push_blob_with(&c, repo, blob).await;
}

async fn push_blob_with(c: &Conn<'_>, repo: &str, blob: &Blob) {
    let head = c
        .req(Method::HEAD, &format!("/v2/{repo}/blobs/{}", blob.digest))
        .send()
        .await
        .expect("HEAD blob");
    match head.status() {
        StatusCode::OK => return,
        StatusCode::NOT_FOUND => {}
        _ => fail("HEAD blob", head).await,
    }
    let post = c
        .req(Method::POST, &format!("/v2/{repo}/blobs/uploads/"))
        .header(header::CONTENT_LENGTH, "0")
        .send()
        .await
        .expect("POST upload");
    if post.status() != StatusCode::ACCEPTED {
        fail("POST blobs/uploads/", post).await;
    }
    let location = post
        .headers()
        .get(header::LOCATION)
        .expect("upload Location")
        .to_str()
        .unwrap()
        .to_string();
    let sep = if location.contains('?') { '&' } else { '?' };
    let put_url = format!("{location}{sep}digest={}", blob.digest.replace(':', "%3A"));
    let put = c
        .req(Method::PUT, &put_url)
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::CONTENT_LENGTH, blob.data.len())
        .body(blob.data.clone())
        .send()
        .await
        .expect("PUT upload");
    if put.status() != StatusCode::CREATED {
        fail("PUT blob upload", put).await;
    }
}

/// PUTs manifest bytes under `reference` (a tag or a digest); returns Docker-Content-Digest.
pub async fn push_manifest(
    reg_url: &str,
    repo: &str,
    reference: &str,
    bytes: &[u8],
    media_type: &str,
    auth: Option<(&str, &str)>,
    ca: Option<&Path>,
) -> String {
    let c = Conn::new(reg_url, auth, ca);
    push_manifest_with(&c, repo, reference, bytes, media_type).await
}

async fn push_manifest_with(
    c: &Conn<'_>,
    repo: &str,
    reference: &str,
    bytes: &[u8],
    media_type: &str,
) -> String {
    let resp = c
        .req(Method::PUT, &format!("/v2/{repo}/manifests/{reference}"))
        .header(header::CONTENT_TYPE, media_type)
        .body(bytes.to_vec())
        .send()
        .await
        .expect("PUT manifest");
    if resp.status() != StatusCode::CREATED {
        fail(&format!("PUT manifest {repo}:{reference}"), resp).await;
    }
    resp.headers()
        .get("docker-content-digest")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

async fn push_image_with(c: &Conn<'_>, repo: &str, tag: &str, img: &Image) {
    push_blob_with(c, repo, &img.config).await;
    for l in &img.layers {
        push_blob_with(c, repo, l).await;
    }
    let d = push_manifest_with(c, repo, &img.digest, &img.manifest, &img.media_type).await;
    assert_eq!(d, img.digest, "registry computed another manifest digest");
    if !tag.is_empty() {
        push_manifest_with(c, repo, tag, &img.manifest, &img.media_type).await;
    }
}

/// Pushes an image: blobs (HEAD, else monolithic POST+PUT), then the manifest by digest, then
/// by `tag` (skipped when `tag` is empty).
pub async fn push_image(
    reg_url: &str,
    repo: &str,
    tag: &str,
    img: &Image,
    auth: Option<(&str, &str)>,
    ca: Option<&Path>,
) {
    let c = Conn::new(reg_url, auth, ca);
    push_image_with(&c, repo, tag, img).await;
}

/// Pushes every child image by digest, then the index by digest, then by `tag` (if not empty).
pub async fn push_index(
    reg_url: &str,
    repo: &str,
    tag: &str,
    idx: &Index,
    auth: Option<(&str, &str)>,
    ca: Option<&Path>,
) {
    let c = Conn::new(reg_url, auth, ca);
    for img in &idx.images {
        push_image_with(&c, repo, "", img).await;
    }
    let d = push_manifest_with(&c, repo, &idx.digest, &idx.manifest, &idx.media_type).await;
    assert_eq!(d, idx.digest, "registry computed another index digest");
    if !tag.is_empty() {
        push_manifest_with(&c, repo, tag, &idx.manifest, &idx.media_type).await;
    }
}

/// HEAD a manifest with the full Accept list: `Some(Docker-Content-Digest)` on 200, `None` on
/// 404; any other status panics (so a 401 from wrong credentials is loud).
pub async fn head_manifest(
    reg_url: &str,
    repo: &str,
    reference: &str,
    auth: Option<(&str, &str)>,
    ca: Option<&Path>,
) -> Option<String> {
    let c = Conn::new(reg_url, auth, ca);
    let resp = c
        .req(Method::HEAD, &format!("/v2/{repo}/manifests/{reference}"))
        .header(header::ACCEPT, MANIFEST_ACCEPT)
        .send()
        .await
        .expect("HEAD manifest");
    match resp.status() {
        StatusCode::OK => Some(
            resp.headers()
                .get("docker-content-digest")
                .expect("Docker-Content-Digest on HEAD")
                .to_str()
                .unwrap()
                .to_string(),
        ),
        StatusCode::NOT_FOUND => None,
        _ => fail(&format!("HEAD manifest {repo}:{reference}"), resp).await,
    }
}

/// GET a manifest: `Some((bytes, content-type))` on 200, `None` on 404, panics otherwise.
pub async fn get_manifest(
    reg_url: &str,
    repo: &str,
    reference: &str,
    auth: Option<(&str, &str)>,
    ca: Option<&Path>,
) -> Option<(Vec<u8>, String)> {
    let c = Conn::new(reg_url, auth, ca);
    let resp = c
        .req(Method::GET, &format!("/v2/{repo}/manifests/{reference}"))
        .header(header::ACCEPT, MANIFEST_ACCEPT)
        .send()
        .await
        .expect("GET manifest");
    match resp.status() {
        StatusCode::OK => {
            let ct = resp
                .headers()
                .get(header::CONTENT_TYPE)
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default();
            Some((resp.bytes().await.expect("manifest body").to_vec(), ct))
        }
        StatusCode::NOT_FOUND => None,
        _ => fail(&format!("GET manifest {repo}:{reference}"), resp).await,
    }
}

/// HEAD a blob: true on 200, false on 404, panics otherwise.
pub async fn head_blob(
    reg_url: &str,
    repo: &str,
    digest: &str,
    auth: Option<(&str, &str)>,
    ca: Option<&Path>,
) -> bool {
    let c = Conn::new(reg_url, auth, ca);
    let resp = c
        .req(Method::HEAD, &format!("/v2/{repo}/blobs/{digest}"))
        .send()
        .await
        .expect("HEAD blob");
    match resp.status() {
        StatusCode::OK => true,
        StatusCode::NOT_FOUND => false,
        _ => fail(&format!("HEAD blob {repo}@{digest}"), resp).await,
    }
}

/// GET a blob's bytes: `Some` on 200, `None` on 404, panics otherwise.
pub async fn get_blob(
    reg_url: &str,
    repo: &str,
    digest: &str,
    auth: Option<(&str, &str)>,
    ca: Option<&Path>,
) -> Option<Vec<u8>> {
    let c = Conn::new(reg_url, auth, ca);
    let resp = c
        .req(Method::GET, &format!("/v2/{repo}/blobs/{digest}"))
        .send()
        .await
        .expect("GET blob");
    match resp.status() {
        StatusCode::OK => Some(resp.bytes().await.expect("blob body").to_vec()),
        StatusCode::NOT_FOUND => None,
        _ => fail(&format!("GET blob {repo}@{digest}"), resp).await,
    }
}
