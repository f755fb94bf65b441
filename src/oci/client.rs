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

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use reqwest::header::{ACCEPT, CONTENT_TYPE, LOCATION};
use reqwest::{Method, StatusCode};

use super::manifest::{accept_header, classify, sha256_digest, Manifest};
use super::transport::{transport_err, Access, Registry, TagSet};
use super::RegistryError;

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

/// What became of [`Registry::upload_stream`].
#[derive(Debug, PartialEq, Eq)]
pub enum Sent {
    /// The blob is committed.
    Committed,
    /// The registry refused a `PUT` carrying the body (now remembered for the run): the
    /// session and the body stream are spent; open both again and upload once more, which
    /// then goes as `PATCH` + `PUT`.
    Refused,
}

/// The largest tag list [`Registry::listed_tags`] reads (a one-page list of ~20,000 tags).
const MAX_TAG_LIST_BYTES: usize = 1 << 20;

/// A blob body as a stream of chunks.
pub type ByteStream = std::pin::Pin<Box<dyn Stream<Item = Result<Bytes, RegistryError>> + Send>>;

impl Registry {
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
            .await
            .map_err(|e| self.name_reference(e, repo, reference))?;
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

    /// GETs a manifest: at most [`MAX_MANIFEST_BYTES`](super::manifest::MAX_MANIFEST_BYTES), media type checked against the body,
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
        let _pull = self.reserve_pull(&what)?;
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
                .await
                .map_err(|e| self.name_reference(self.pull_refused(e, &what), repo, reference))?;
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
            let body = self.read_limited(res, &what).await?;
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
        self.put_manifest_with_subject(repo, reference, m)
            .await
            .map(|_| ())
    }

    /// PUTs a manifest's exact bytes and tells whether the registry processed its `subject`
    /// (the `OCI-Subject` response header of a registry with the referrers API).
    pub async fn put_manifest_with_subject(
        &self,
        repo: &str,
        reference: &str,
        m: &Manifest,
    ) -> Result<bool, RegistryError> {
        let what = format!("manifest {repo}:{reference}");
        let scopes = Self::scope_key(repo, Access::Push, None);
        let path = format!("/v2/{repo}/manifests/{reference}");
        let res = self
            .retrying(&what, || async {
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
        Ok(res.headers().contains_key("oci-subject"))
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
            // A complete listing already read this run (for a tag rule) answers as well.
            if let Some(all) = self.cached_all_tags(repo) {
                return Some(Arc::new(all.iter().cloned().collect()));
            }
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
            if res.headers().contains_key(reqwest::header::LINK) {
                return Ok(None);
            }
            let Some(body) = self.read_at_most(res, &what, MAX_TAG_LIST_BYTES).await? else {
                return Ok(None);
            };
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
    /// Every blob, whatever its size, goes as one `PUT ?digest=` carrying the body with
    /// `Content-Length` (the spec's monolithic upload, after the `POST` that opened the
    /// session): two requests per blob. ECR takes it (a 15 GB layer: kitops-ml/kitops#821).
    /// A registry that refuses that form with a 4xx other than 401, 403, 404, 408 and 429 is
    /// remembered for the run and answered [`Sent::Refused`]; from then on blobs go as one
    /// `PATCH` with the body and an empty closing `PUT`, the way containers/image and crane
    /// stream them. Either way the body stream verifies the digest itself and fails before
    /// its end on a mismatch, so a corrupt blob is never committed (and the registry checks
    /// the digest too). Not retried here: the stream is consumed; the caller retries the
    /// whole transfer.
    pub async fn upload_stream(
        &self,
        repo: &str,
        location: &str,
        digest: &str,
        size: u64,
        body: ByteStream,
    ) -> Result<Sent, RegistryError> {
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
        if !self.put_body_refused.load(Ordering::Relaxed) {
            let url = commit_url(location);
            let sent = self
                .send_with(
                    Method::PUT,
                    &url,
                    &scopes,
                    &what,
                    &commit_ok,
                    false,
                    &with_body,
                )
                .await;
            return match sent {
                Ok(_) => Ok(Sent::Committed),
                Err(RegistryError::Status { status, code, .. }) if refuses_form(status) => {
                    if !self.put_body_refused.swap(true, Ordering::Relaxed) {
                        tracing::info!(registry = %self.cfg.registry, status, ?code,
                            "the registry refuses a PUT carrying a blob; uploading with PATCH + PUT for the rest of the run");
                    }
                    Ok(Sent::Refused)
                }
                Err(e) => Err(e),
            };
        }
        let r = self
            .send_with(
                Method::PATCH,
                location,
                &scopes,
                &what,
                // ECR answers the PATCH with 201 Created (regclient `scheme/reg/blob.go`,
                // dotnet/sdk-container-builds#279) and still expects the closing PUT: the
                // upload is committed only by `PUT ?digest=`, whatever the PATCH said.
                &[
                    StatusCode::ACCEPTED,
                    StatusCode::NO_CONTENT,
                    StatusCode::CREATED,
                ],
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
        Ok(Sent::Committed)
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

    /// A manifest request's "not found, or not authorized" names the whole reference.
    fn name_reference(&self, e: RegistryError, repo: &str, reference: &str) -> RegistryError {
        match e {
            RegistryError::NotFoundOrDenied {
                registry, status, ..
            } => {
                let sep = if reference.starts_with("sha256:") {
                    '@'
                } else {
                    ':'
                };
                RegistryError::NotFoundOrDenied {
                    what: format!("{registry}/{repo}{sep}{reference}"),
                    registry,
                    status,
                }
            }
            other => other,
        }
    }

    /// Number of retried requests.
    pub fn retries(&self) -> u64 {
        self.stats.retries.load(Ordering::Relaxed)
    }
}

/// Whether a 4xx answer to a `PUT` carrying a blob refuses that form of upload (400, 405, 411,
/// 413, 415, 416, ...), rather than meaning what it means on any request: 401/403 (credentials),
/// 404 (no such repository or session), 408 and 429 (retried).
fn refuses_form(status: u16) -> bool {
    (400..500).contains(&status) && !matches!(status, 401 | 403 | 404 | 408 | 429)
}
