//! One blob into one repository: HEAD and skip, or mount from a repository where a manifest
//! referencing it is committed, or stream it with the body verified on the fly; one retry budget per transfer.
//!
//! A streamed blob costs two requests whatever its size: the `POST` that opens the session (or
//! the refused mount's session) and one `PUT ?digest=` carrying the whole body with the
//! descriptor's `Content-Length`. A registry that refuses that form gets `PATCH` + `PUT` for the
//! rest of the run, the refused blob included (source reopened, no retry spent). The body is
//! [`Verifying`]: it holds back its last chunk until size and sha256 match, so a short or
//! corrupt source fails the request before the registry can commit anything.

use super::*;
use crate::oci::Sent;

/// Puts one blob into `dst_repo`: HEAD and skip; else mount it from a repository where a
/// manifest referencing it is committed (waiting for the run's single upload and its commit
/// when the registry mounts); else stream it from `source` with verification. A blob already
/// placed in `dst_repo` earlier in this run costs no request.
pub(super) async fn push_blob(
    dst: &Destination,
    dst_repo: &str,
    d: &OciDescriptor,
    source: &dyn ImageSource,
    progress: &Arc<dyn Progress>,
    stats: &CopyStats,
    ss: &Session<'_>,
) -> Result<BlobOutcome, RegistryError> {
    let placed = dst.tracker.placed(dst_repo, &d.digest);
    let mut outcome = BlobOutcome::Skipped;
    placed
        .get_or_try_init(|| async {
            outcome = place_blob(dst, dst_repo, d, source, progress, stats, ss).await?;
            Ok::<_, RegistryError>(())
        })
        .await?;
    match outcome {
        BlobOutcome::Uploaded => stats.uploaded.fetch_add(1, Ordering::Relaxed),
        BlobOutcome::Mounted => stats.mounted.fetch_add(1, Ordering::Relaxed),
        BlobOutcome::Skipped => stats.skipped.fetch_add(1, Ordering::Relaxed),
    };
    progress.blob_done(outcome);
    Ok(outcome)
}

/// The requests behind [`push_blob`], for the first copy of `d` into `dst_repo` in this run.
async fn place_blob(
    dst: &Destination,
    dst_repo: &str,
    d: &OciDescriptor,
    source: &dyn ImageSource,
    progress: &Arc<dyn Progress>,
    stats: &CopyStats,
    ss: &Session<'_>,
) -> Result<BlobOutcome, RegistryError> {
    let reg = &dst.registry;
    if reg.has_blob(dst_repo, &d.digest).await? {
        dst.tracker.note(&d.digest, dst_repo);
        return Ok(BlobOutcome::Skipped);
    }
    let upload_here = |location: Option<String>| async move {
        transfer(dst, dst_repo, d, location, source, progress, stats).await?;
        ss.uploaded(dst_repo, &d.digest);
        Ok::<_, RegistryError>(BlobOutcome::Uploaded)
    };
    // Without mounts every repository needs its own upload: no reason to wait for another's.
    if dst.mount_policy() == MountPolicy::Disabled {
        return upload_here(None).await;
    }
    let cell = dst.tracker.cell(&d.digest);
    let mut uploaded_here = false;
    let holder = cell
        .get_or_try_init(|| async {
            upload_here(None).await?;
            uploaded_here = true;
            Ok::<_, RegistryError>(dst_repo.to_string())
        })
        .await?
        .clone();
    if uploaded_here {
        return Ok(BlobOutcome::Uploaded);
    }
    if holder == dst_repo {
        return Ok(BlobOutcome::Skipped);
    }
    let from = match dst.mount_policy() {
        MountPolicy::Disabled => None,
        _ => {
            dst.tracker
                .committed_source(dst_repo, &holder, &d.digest)
                .await
        }
    };
    let Some(from) = from else {
        return upload_here(None).await;
    };
    match dst.mount(dst_repo, &d.digest, &from).await? {
        Some(Mount::Mounted) => Ok(BlobOutcome::Mounted),
        // Refused: the registry opened an upload session instead; use it.
        Some(Mount::Upload(location)) => upload_here(Some(location)).await,
        None => upload_here(None).await,
    }
}

/// Streams one blob, retrying the whole transfer (a stream cannot be replayed). When the
/// registry refuses the `PUT` carrying the body ([`Sent::Refused`], at most once per transfer:
/// the registry remembers it), the source is opened again and the blob goes as `PATCH` + `PUT`
/// in a new session, within the same attempt: that is no failure and spends no retry.
async fn transfer(
    dst: &Destination,
    dst_repo: &str,
    d: &OciDescriptor,
    preopened: Option<String>,
    source: &dyn ImageSource,
    progress: &Arc<dyn Progress>,
    stats: &CopyStats,
) -> Result<(), RegistryError> {
    let reg = &dst.registry;
    let size = d.size as u64;
    let preopened = Mutex::new(preopened);
    let what = format!("blob {dst_repo}@{}", d.digest);
    reg.retrying(&what, || async {
        let mut taken = preopened.lock().expect("not poisoned").take();
        loop {
            let location = match taken.take() {
                Some(l) => l,
                None => reg.start_upload(dst_repo).await?,
            };
            let result = async {
                let body = source.blob(&d.digest, size).await?;
                progress.blob_started(size);
                let verdict = Arc::new(Mutex::new(None));
                let body = verifying(body, &d.digest, size, verdict.clone(), progress.clone());
                let sent = reg
                    .upload_stream(dst_repo, &location, &d.digest, size, body)
                    .await;
                // The body's own verdict wins: a digest mismatch surfaces as a failed request
                // body, and must be reported (and not retried) as what it is.
                if let Some(e) = verdict.lock().expect("not poisoned").take() {
                    return Err(e);
                }
                sent
            }
            .await;
            match result {
                Ok(Sent::Committed) => return Ok(()),
                Ok(Sent::Refused) => reg.abort_upload(dst_repo, &location).await,
                Err(e) => {
                    reg.abort_upload(dst_repo, &location).await;
                    return Err(e);
                }
            }
        }
    })
    .await?;
    stats.bytes.fetch_add(size, Ordering::Relaxed);
    Ok(())
}

/// Wraps a blob stream so that it hashes and counts as it goes. More bytes than `size`, fewer
/// bytes, or a different sha256 end the stream with an error *before* its last chunk is
/// released, so the upload is never committed. The error is also left in `verdict`, because
/// the HTTP client reports a failed body only as a generic body error.
struct Verifying {
    inner: ByteStream,
    hasher: Sha256,
    digest: String,
    size: u64,
    seen: u64,
    pending: Option<bytes::Bytes>,
    done: bool,
    verdict: Arc<Mutex<Option<RegistryError>>>,
    progress: Arc<dyn Progress>,
}

impl Verifying {
    fn fail(
        &mut self,
        e: RegistryError,
    ) -> std::task::Poll<Option<Result<bytes::Bytes, RegistryError>>> {
        *self.verdict.lock().expect("not poisoned") = Some(e.duplicate());
        self.done = true;
        std::task::Poll::Ready(Some(Err(e)))
    }
}

impl futures::Stream for Verifying {
    type Item = Result<bytes::Bytes, RegistryError>;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        let this = &mut *self;
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            match this.inner.as_mut().poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(chunk))) => {
                    this.seen += chunk.len() as u64;
                    if this.seen > this.size {
                        let e = RegistryError::SizeMismatch {
                            what: format!("blob {}", this.digest),
                            expected: this.size,
                            actual: this.seen,
                        };
                        return this.fail(e);
                    }
                    this.hasher.update(&chunk);
                    this.progress.bytes(chunk.len() as u64);
                    // Hold one chunk back: the last one is released only after verification.
                    if let Some(prev) = this.pending.replace(chunk) {
                        return Poll::Ready(Some(Ok(prev)));
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(None) => {
                    if this.seen != this.size {
                        let e = RegistryError::SizeMismatch {
                            what: format!("blob {}", this.digest),
                            expected: this.size,
                            actual: this.seen,
                        };
                        return this.fail(e);
                    }
                    let actual = format!("sha256:{}", hex::encode(this.hasher.clone().finalize()));
                    if actual != this.digest {
                        let e = RegistryError::DigestMismatch {
                            what: format!("blob {}", this.digest),
                            expected: this.digest.clone(),
                            actual,
                        };
                        return this.fail(e);
                    }
                    this.done = true;
                    return Poll::Ready(this.pending.take().map(Ok));
                }
            }
        }
    }
}

fn verifying(
    inner: ByteStream,
    digest: &str,
    size: u64,
    verdict: Arc<Mutex<Option<RegistryError>>>,
    progress: Arc<dyn Progress>,
) -> ByteStream {
    Box::pin(Verifying {
        inner,
        hasher: Sha256::new(),
        digest: digest.to_string(),
        size,
        seen: 0,
        pending: None,
        done: false,
        verdict,
        progress,
    })
}
