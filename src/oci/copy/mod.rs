//! Copying one image between registries, bottom-up.
//!
//! Anatomy of a copy (the order is the invariant that makes a killed run harmless):
//! 1. GET the source manifest (index or image) by tag.
//! 2. For each selected child manifest: when the destination tag exists (a stale tag), HEAD
//!    the child by digest and skip it when present; when the tag is absent (a cold mirror),
//!    skip the HEAD, which would nearly always answer 404. Then copy its blobs and PUT the
//!    child by digest (a registry only accepts a manifest whose blobs it has).
//! 3. For each blob: HEAD in the destination → skip; else mount from a repository of the
//!    same registry that got it earlier in this run; else stream it from the source,
//!    hashing on the way, and commit only when size and sha256 match.
//! 4. PUT the index (or the single manifest) — by tag, last. Until then the old tag keeps
//!    pointing at the old, complete image.
//!
//! Work is de-duplicated across every copy into one destination ([`BlobTracker`]): a blob is
//! uploaded once per run (the first copy uploads, the others wait and then mount), HEADed or
//! mounted once per repository, and a child manifest shared by two tags is copied once.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use oci_client::manifest::{OciDescriptor, OciImageManifest};
use sha2::{Digest as _, Sha256};
use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;

use super::client::{ByteStream, Mount, Registry};
use super::manifest::Manifest;
use super::manifest::{
    blobs_of, filtered_index, platform_string, select_children, Parsed, MAX_INDEX_DEPTH,
    MAX_MANIFEST_BYTES,
};
use crate::oci::PlatformFilter;
use crate::oci::RegistryError;

/// How many blobs of one image, and children of one index, are copied at once.
const IMAGE_FANOUT: usize = 4;

/// Receives progress as bytes flow; the CLI draws a progress bar from it.
pub trait Progress: Send + Sync {
    /// A blob transfer is starting.
    fn blob_started(&self, _size: u64) {}
    /// `n` more bytes were streamed.
    fn bytes(&self, _n: u64) {}
    /// A blob is done (uploaded, mounted or skipped).
    fn blob_done(&self, _how: BlobOutcome) {}
}

/// No progress reporting.
pub struct NoProgress;
impl Progress for NoProgress {}

/// What happened to one blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlobOutcome {
    /// Streamed from the source.
    Uploaded,
    /// Mounted from another repository of the destination registry.
    Mounted,
    /// Already present.
    Skipped,
}

/// (repository, digest).
type RepoBlob = (String, String);

/// Remembers, per destination registry, which repository got each blob during this run, and
/// makes concurrent copies of the same blob wait for the first one.
///
/// Two levels: per digest (the run's single upload; later repositories mount from the
/// holder) and per (repository, digest) (a blob placed in a repository once is not HEADed or
/// mounted there again). The second level is what keeps a layer shared by every tag of a
/// repository at one HEAD and at most one mount per repository, however many of its tags and
/// platforms are copied at once.
#[derive(Default)]
pub struct BlobTracker {
    cells: Mutex<HashMap<String, Arc<OnceCell<String>>>>,
    placed: Mutex<HashMap<RepoBlob, Arc<OnceCell<()>>>>,
    /// Child manifests put (or found) per (repository, digest) in this run.
    manifests: Mutex<HashMap<RepoBlob, Arc<OnceCell<()>>>>,
    /// Child manifests fetched, with their blobs placed, per (repository, digest).
    prepared: Mutex<HashMap<RepoBlob, Arc<OnceCell<Arc<Prepared>>>>>,
}

/// A child manifest after the first phase of a copy: fetched, with every blob under it placed
/// and verified, and waiting to be written; or found already present.
enum Prepared {
    /// The destination has it (a HEAD said so).
    Present,
    /// To write, after its own children (for a nested index). Taken when written, so the run
    /// does not keep every manifest it copied.
    Write {
        manifest: Mutex<Option<Manifest>>,
        children: Vec<String>,
    },
}

impl BlobTracker {
    fn cell(&self, digest: &str) -> Arc<OnceCell<String>> {
        self.cells
            .lock()
            .expect("not poisoned")
            .entry(digest.to_string())
            .or_default()
            .clone()
    }

    fn placed(&self, repo: &str, digest: &str) -> Arc<OnceCell<()>> {
        Self::entry(&self.placed, repo, digest)
    }

    fn manifest_placed(&self, repo: &str, digest: &str) -> Arc<OnceCell<()>> {
        Self::entry(&self.manifests, repo, digest)
    }

    fn prepared(&self, repo: &str, digest: &str) -> Arc<OnceCell<Arc<Prepared>>> {
        self.prepared
            .lock()
            .expect("not poisoned")
            .entry((repo.to_string(), digest.to_string()))
            .or_default()
            .clone()
    }

    fn entry(
        map: &Mutex<HashMap<RepoBlob, Arc<OnceCell<()>>>>,
        repo: &str,
        digest: &str,
    ) -> Arc<OnceCell<()>> {
        map.lock()
            .expect("not poisoned")
            .entry((repo.to_string(), digest.to_string()))
            .or_default()
            .clone()
    }

    fn note(&self, digest: &str, repo: &str) {
        let _ = self.cell(digest).set(repo.to_string());
    }
}

/// Counters of one copy.
#[derive(Debug, Default)]
pub struct CopyStats {
    /// Blobs streamed.
    pub uploaded: AtomicU64,
    /// Blobs mounted.
    pub mounted: AtomicU64,
    /// Blobs already present.
    pub skipped: AtomicU64,
    /// Bytes streamed.
    pub bytes: AtomicU64,
    /// Manifests written (children, index, tag).
    pub manifests_put: AtomicU64,
}

/// The result of one image copy.
#[derive(Clone, Debug, serde::Serialize)]
pub struct CopyReport {
    /// The digest of the source manifest (index) that was copied.
    pub source_digest: String,
    /// The digest the destination tag now points at (equals `source_digest` with `All`).
    pub digest: String,
    /// Blobs streamed.
    pub blobs_uploaded: u64,
    /// Blobs mounted.
    pub blobs_mounted: u64,
    /// Blobs already present.
    pub blobs_skipped: u64,
    /// Bytes streamed.
    pub bytes: u64,
    /// Manifests written.
    pub manifests_put: u64,
    /// Platform children copied (`os/arch[/variant]` → digest); empty for a single image.
    pub platforms: Vec<(String, String)>,
    /// The referrers of the copied manifests, and of those referrers.
    pub referrers: Vec<crate::oci::referrers::ReferrerReport>,
    /// Whether the destination already held this exact image, so nothing was written.
    pub unchanged: bool,
    /// Wall time.
    #[serde(with = "secs")]
    pub duration: Duration,
}

mod secs {
    pub fn serialize<S: serde::Serializer>(
        d: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
}

/// A destination registry with the run-wide blob tracker.
pub struct Destination {
    /// The registry client.
    pub registry: Arc<Registry>,
    /// Which repository got which blob in this run.
    pub tracker: BlobTracker,
}

impl Destination {
    /// Wraps a registry client.
    pub fn new(registry: Arc<Registry>) -> Destination {
        Destination {
            registry,
            tracker: BlobTracker::default(),
        }
    }
}

/// One copy job: source image → destination repository and tag.
pub struct Copy<'a> {
    /// Where the image comes from: a registry repository ([`RegistryImage`]) or an archive.
    pub src: &'a dyn ImageSource,
    /// Source tag or digest.
    pub src_reference: &'a str,
    /// Destination.
    pub dst: &'a Destination,
    /// Destination repository.
    pub dst_repo: &'a str,
    /// Destination tag.
    pub dst_tag: &'a str,
    /// Which platforms.
    pub platforms: &'a PlatformFilter,
    /// Progress sink.
    pub progress: Arc<dyn Progress>,
    /// Cancelled on SIGTERM/Ctrl-C: checked before the tag is written.
    pub cancel: &'a CancellationToken,
    /// Which referrers of the copied manifests travel with them ([`crate::oci::referrers`]).
    pub referrers: crate::oci::referrers::ReferrerFilter,
    /// What the destination tag held when the caller looked (`Some(None)`: absent), so that
    /// the copy need not HEAD it again before writing; `None` makes the copy HEAD it.
    pub dst_current: Option<Option<&'a str>>,
}

impl Copy<'_> {
    fn src_what(&self) -> String {
        format!("{}:{}", self.src.name(), self.src_reference)
    }

    /// Runs the copy. See the module docs for the order of operations.
    pub async fn run(&self) -> Result<CopyReport, RegistryError> {
        let started = Instant::now();
        let stats = CopyStats::default();
        let top = self.src.manifest(self.src_reference).await?;
        let current = match self.dst_current {
            Some(known) => known.map(str::to_string),
            None => self
                .dst
                .registry
                .head_manifest(self.dst_repo, self.dst_tag)
                .await?
                .map(|h| h.digest),
        };
        // A tag that is not there yet (a cold mirror) rarely has its children there either:
        // copy them without a HEAD each. A stale tag's children often are (a re-pushed index
        // that kept some platforms), so those are HEADed first; so are an archive's, which is
        // often pushed again under another tag.
        let probe = current.is_some() || self.src.children_often_present();
        let mut platforms = Vec::new();
        let to_put = match top.parse(&self.src_what())? {
            Parsed::Image(m) => {
                if let PlatformFilter::Only(_) = self.platforms {
                    self.check_single_platform(&m).await?;
                }
                self.copy_blobs(&m, &stats).await?;
                top.clone()
            }
            Parsed::Index(idx) => {
                let children = select_children(&idx, self.platforms);
                if children.is_empty() {
                    return Err(RegistryError::NoMatchingPlatform {
                        image: self.src_what(),
                        wanted: self.platforms.to_string(),
                        available: idx
                            .manifests
                            .iter()
                            .map(platform_string)
                            .collect::<Vec<_>>()
                            .join(", "),
                    });
                }
                let mut visited = BTreeSet::from([top.digest.clone()]);
                visited.extend(children.iter().map(|c| c.digest.clone()));
                // Two phases: every child's blobs are placed and verified before any child
                // manifest is written, so a corrupt blob anywhere leaves no manifest behind.
                futures::stream::iter(
                    children
                        .iter()
                        .map(|c| self.prepare_child(&c.digest, 1, &visited, probe, &stats)),
                )
                .buffer_unordered(IMAGE_FANOUT)
                .try_collect::<Vec<()>>()
                .await?;
                futures::stream::iter(children.iter().map(|c| self.place_child(&c.digest, &stats)))
                    .buffer_unordered(IMAGE_FANOUT)
                    .try_collect::<Vec<()>>()
                    .await?;
                platforms = children
                    .iter()
                    .map(|c| (platform_string(c), c.digest.clone()))
                    .collect();
                match self.platforms {
                    PlatformFilter::All => top.clone(),
                    PlatformFilter::Only(_) => {
                        filtered_index(&idx, &top.media_type, &top.digest, &children)
                    }
                }
            }
        };
        let unchanged = current.as_deref() == Some(to_put.digest.as_str());
        // Referrers travel before the tag moves. A filtered index has a new digest, so only
        // the children's referrers apply; the index's own go with an unfiltered copy.
        let mut subjects = Vec::new();
        if to_put.digest == top.digest {
            subjects.push(top.digest.clone());
        }
        subjects.extend(platforms.iter().map(|(_, d)| d.clone()));
        let before_top = (!unchanged && to_put.digest == top.digest).then_some(&to_put);
        let referrers =
            crate::oci::referrers::copy_referrers(self, &subjects, before_top, &stats).await?;
        if !unchanged {
            if self.cancel.is_cancelled() {
                return Err(RegistryError::Cancelled);
            }
            self.dst
                .registry
                .put_manifest(self.dst_repo, self.dst_tag, &to_put)
                .await?;
            stats.manifests_put.fetch_add(1, Ordering::Relaxed);
        }
        Ok(CopyReport {
            source_digest: top.digest.clone(),
            digest: to_put.digest,
            blobs_uploaded: stats.uploaded.load(Ordering::Relaxed),
            blobs_mounted: stats.mounted.load(Ordering::Relaxed),
            blobs_skipped: stats.skipped.load(Ordering::Relaxed),
            bytes: stats.bytes.load(Ordering::Relaxed),
            manifests_put: stats.manifests_put.load(Ordering::Relaxed),
            platforms,
            referrers,
            unchanged: unchanged && stats.manifests_put.load(Ordering::Relaxed) == 0,
            duration: started.elapsed(),
        })
    }

    /// A platform filter on a single-platform image: read its config to learn its platform.
    async fn check_single_platform(&self, m: &OciImageManifest) -> Result<(), RegistryError> {
        let size = m.config.size as u64;
        if size > MAX_MANIFEST_BYTES as u64 {
            return Err(RegistryError::Invalid {
                what: self.src_what(),
                reason: "image config is too large".into(),
            });
        }
        let s = self.src.blob(&m.config.digest, size).await?;
        let bytes: Vec<u8> = s
            .try_fold(Vec::new(), |mut acc, c| async move {
                acc.extend_from_slice(&c);
                Ok(acc)
            })
            .await?;
        #[derive(serde::Deserialize)]
        struct Cfg {
            os: Option<String>,
            architecture: Option<String>,
            variant: Option<String>,
        }
        let cfg: Cfg = serde_json::from_slice(&bytes).map_err(|e| RegistryError::Invalid {
            what: self.src_what(),
            reason: format!("image config is not valid JSON: {e}"),
        })?;
        let (os, arch) = (
            cfg.os.unwrap_or_default(),
            cfg.architecture.unwrap_or_default(),
        );
        if self.platforms.selects(&os, &arch, cfg.variant.as_deref()) {
            Ok(())
        } else {
            let mut have = format!("{os}/{arch}");
            if let Some(v) = cfg.variant {
                have = format!("{have}/{v}");
            }
            Err(RegistryError::NoMatchingPlatform {
                image: self.src_what(),
                wanted: self.platforms.to_string(),
                available: have,
            })
        }
    }

    /// Phase one for a child: HEAD it when `probe` (skip it when present), else fetch it and
    /// place every blob under it. Tags of one run that share a child (`latest` and `1.2.3`)
    /// fetch it once.
    fn prepare_child<'b>(
        &'b self,
        digest: &'b str,
        depth: usize,
        visited: &'b BTreeSet<String>,
        probe: bool,
        stats: &'b CopyStats,
    ) -> futures::future::BoxFuture<'b, Result<(), RegistryError>> {
        Box::pin(async move {
            let cell = self.dst.tracker.prepared(self.dst_repo, digest);
            cell.get_or_try_init(|| async {
                self.prepare_child_once(digest, depth, visited, probe, stats)
                    .await
                    .map(Arc::new)
            })
            .await?;
            Ok(())
        })
    }

    async fn prepare_child_once(
        &self,
        digest: &str,
        depth: usize,
        visited: &BTreeSet<String>,
        probe: bool,
        stats: &CopyStats,
    ) -> Result<Prepared, RegistryError> {
        if probe
            && self
                .dst
                .registry
                .head_manifest(self.dst_repo, digest)
                .await?
                .is_some()
        {
            return Ok(Prepared::Present);
        }
        let m = self.src.manifest(digest).await?;
        let what = format!("{}@{}", self.src.name(), digest);
        let mut children = Vec::new();
        match m.parse(&what)? {
            Parsed::Image(img) => self.copy_blobs(&img, stats).await?,
            Parsed::Index(idx) => {
                if depth >= MAX_INDEX_DEPTH {
                    return Err(RegistryError::Invalid {
                        what,
                        reason: format!("indexes nest deeper than {MAX_INDEX_DEPTH} levels"),
                    });
                }
                let mut seen = visited.clone();
                for c in &idx.manifests {
                    if !seen.insert(c.digest.clone()) {
                        return Err(RegistryError::Invalid {
                            what,
                            reason: format!("index refers to {} twice or in a loop", c.digest),
                        });
                    }
                }
                for c in &idx.manifests {
                    self.prepare_child(&c.digest, depth + 1, &seen, probe, stats)
                        .await?;
                    children.push(c.digest.clone());
                }
            }
        }
        Ok(Prepared::Write {
            manifest: Mutex::new(Some(m)),
            children,
        })
    }

    /// Phase two for a child: write it by digest, after its own children. Once per run.
    fn place_child<'b>(
        &'b self,
        digest: &'b str,
        stats: &'b CopyStats,
    ) -> futures::future::BoxFuture<'b, Result<(), RegistryError>> {
        Box::pin(async move {
            let placed = self.dst.tracker.manifest_placed(self.dst_repo, digest);
            placed
                .get_or_try_init(|| async {
                    let prepared = self.dst.tracker.prepared(self.dst_repo, digest);
                    let Some(p) = prepared.get() else {
                        return Err(RegistryError::Invalid {
                            what: digest.to_string(),
                            reason: "a child manifest was written before it was fetched".into(),
                        });
                    };
                    let Prepared::Write { manifest, children } = p.as_ref() else {
                        return Ok(());
                    };
                    for c in children {
                        self.place_child(c, stats).await?;
                    }
                    let m = manifest.lock().expect("not poisoned").take();
                    if let Some(m) = m {
                        self.dst
                            .registry
                            .put_manifest(self.dst_repo, digest, &m)
                            .await?;
                        stats.manifests_put.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(())
                })
                .await?;
            Ok(())
        })
    }

    pub(in crate::oci) async fn copy_blobs(
        &self,
        m: &OciImageManifest,
        stats: &CopyStats,
    ) -> Result<(), RegistryError> {
        futures::stream::iter(blobs_of(m).into_iter().map(|d| self.copy_blob(d, stats)))
            .buffer_unordered(IMAGE_FANOUT)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(())
    }

    async fn copy_blob(&self, d: OciDescriptor, stats: &CopyStats) -> Result<(), RegistryError> {
        push_blob(self.dst, self.dst_repo, &d, self.src, &self.progress, stats).await?;
        Ok(())
    }
}

/// Where an image comes from: a registry repository, or an archive on disk. The one
/// bottom-up writer ([`Copy`]) reads manifests and blobs through it, so `copy`, `sync` and
/// `push --archive` share every rule of the writer (the order, de-duplication, verification).
pub trait ImageSource: Send + Sync {
    /// A name for messages: `registry/repository`, or the archive.
    fn name(&self) -> String;
    /// The manifest that `reference` (a tag or a digest) names, bytes as stored.
    fn manifest<'a>(
        &'a self,
        reference: &'a str,
    ) -> futures::future::BoxFuture<'a, Result<Manifest, RegistryError>>;
    /// Opens the blob `digest` of `size` bytes as a stream. Called again for each retry.
    fn blob<'a>(
        &'a self,
        digest: &'a str,
        size: u64,
    ) -> futures::future::BoxFuture<'a, Result<ByteStream, RegistryError>>;
    /// The registry and repository behind this source, when it is one: signature tags are
    /// looked up there. `None` for an archive.
    fn registry(&self) -> Option<(&Registry, &str)> {
        None
    }
    /// Whether the destination often holds this image's child manifests even where the tag
    /// is absent, so that they are HEADed before they are written. `false` for a registry
    /// mirror, whose absent tag means a cold mirror.
    fn children_often_present(&self) -> bool {
        false
    }
}

/// An image in a repository of a registry.
pub struct RegistryImage<'a> {
    /// The registry.
    pub registry: &'a Registry,
    /// The repository.
    pub repo: &'a str,
}

impl ImageSource for RegistryImage<'_> {
    fn name(&self) -> String {
        format!("{}/{}", self.registry.name(), self.repo)
    }
    fn manifest<'a>(
        &'a self,
        reference: &'a str,
    ) -> futures::future::BoxFuture<'a, Result<Manifest, RegistryError>> {
        Box::pin(self.registry.get_manifest(self.repo, reference))
    }
    fn blob<'a>(
        &'a self,
        digest: &'a str,
        size: u64,
    ) -> futures::future::BoxFuture<'a, Result<ByteStream, RegistryError>> {
        Box::pin(self.registry.blob_stream(self.repo, digest, size))
    }
    fn registry(&self) -> Option<(&Registry, &str)> {
        Some((self.registry, self.repo))
    }
}

/// Puts one blob into `dst_repo`: HEAD and skip; else wait for (or do) the run's single
/// upload of this digest and mount from the repository that got it; else stream it from
/// `source` with verification. A blob already placed in `dst_repo` earlier in this run costs
/// no request.
async fn push_blob(
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
