//! One blob into one repository: HEAD and skip, or mount from the repository that got it in
//! this run, or stream it with the body verified on the fly; one retry budget per transfer.

use super::*;

/// Puts one blob into `dst_repo`: HEAD and skip; else wait for (or do) the run's single
/// upload of this digest and mount from the repository that got it; else stream it from
/// `source` with verification. A blob already placed in `dst_repo` earlier in this run costs
/// no request.
pub(super) async fn push_blob(
    dst: &Destination,
    dst_repo: &str,
    d: &OciDescriptor,
    source: &dyn ImageSource,
    progress: &Arc<dyn Progress>,
    stats: &CopyStats,
) -> Result<BlobOutcome, RegistryError> {
    let placed = dst.tracker.placed(dst_repo, &d.digest);
    let mut outcome = BlobOutcome::Skipped;
    placed
        .get_or_try_init(|| async {
            outcome = place_blob(dst, dst_repo, d, source, progress, stats).await?;
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
) -> Result<BlobOutcome, RegistryError> {
    let reg = &dst.registry;
    if reg.has_blob(dst_repo, &d.digest).await? {
        dst.tracker.note(&d.digest, dst_repo);
        return Ok(BlobOutcome::Skipped);
    }
    let cell = dst.tracker.cell(&d.digest);
    let mut uploaded_here = false;
    let holder = cell
        .get_or_try_init(|| async {
            transfer(dst, dst_repo, d, None, source, progress, stats).await?;
            uploaded_here = true;
            Ok::<_, RegistryError>(dst_repo.to_string())
        })
        .await?
        .clone();
    Ok(if uploaded_here {
        BlobOutcome::Uploaded
    } else if holder == dst_repo {
        BlobOutcome::Skipped
    } else {
        match reg.mount_blob(dst_repo, &d.digest, &holder).await? {
            Mount::Mounted => BlobOutcome::Mounted,
            Mount::Upload(location) => {
                transfer(dst, dst_repo, d, Some(location), source, progress, stats).await?;
                BlobOutcome::Uploaded
            }
        }
    })
}

/// Streams one blob, retrying the whole transfer (a stream cannot be replayed).
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
        let taken = preopened.lock().expect("not poisoned").take();
        let location = match taken {
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
        if result.is_err() {
            reg.abort_upload(dst_repo, &location).await;
        }
        result
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
