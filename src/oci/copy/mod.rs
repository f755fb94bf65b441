//! Copying one image between registries, bottom-up.
//!
//! Anatomy of a copy (the order is the invariant that makes a killed run harmless):
//! 1. GET the source manifest (index or image) by tag.
//! 2. For each selected child manifest: when the destination tag exists (a stale tag), HEAD
//!    the child by digest and skip it when present; when the tag is absent (a cold mirror),
//!    skip the HEAD, which would nearly always answer 404. Then copy its blobs and PUT the
//!    child by digest (a registry only accepts a manifest whose blobs it has).
//! 3. For each blob: HEAD in the destination → skip; else mount from a repository of the
//!    same registry where a manifest referencing it was committed earlier in this run (ECR
//!    mounts nothing else); else stream it from the source, hashing on the way, and commit
//!    only when size and sha256 match.
//! 4. PUT the index (or the single manifest) — by tag, last. Until then the old tag keeps
//!    pointing at the old, complete image.
//!
//! Work is de-duplicated across every copy into one destination ([`BlobTracker`]): a blob is
//! uploaded once per run where the registry mounts (the first copy uploads and commits its
//! manifest, the others wait for that commit and then mount), HEADed or mounted once per
//! repository, and a child manifest shared by two tags is copied once.
//!
//! Mounts ([`MountPolicy`]): Amazon ECR mounts a blob only when its account setting
//! `BLOB_MOUNTING` is on *and* a manifest committed in the `from` repository references the
//! blob (aws/containers-roadmap#2860); otherwise it answers 202 with a fresh upload session.
//! So a copy mounts only from a repository whose manifest referencing the blob was committed
//! in this run, and the first refused mount (202 with a session, which the copy then uploads
//! into) switches mounting off for the rest of the run. Waiting for another copy's commit
//! could deadlock (two images each waiting for the other's manifest), so the tracker keeps a
//! graph of which repository waits for which, and a wait that would close a cycle uploads
//! instead.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use oci_client::manifest::{OciDescriptor, OciImageManifest};
use sha2::{Digest as _, Sha256};
use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;

use super::client::{ByteStream, Mount};
use super::transport::Registry;

mod blob;
mod referrers;
mod source;
mod tracker;

use super::manifest::Manifest;
use super::manifest::{
    blobs_of, filtered_index, platform_string, select_children, Parsed, MAX_INDEX_DEPTH,
    MAX_MANIFEST_BYTES,
};
use crate::oci::PlatformFilter;
use crate::oci::RegistryError;
use blob::push_blob;
pub use referrers::merged_fallback;
pub use source::{ImageSource, RegistryImage};
pub(in crate::oci) use tracker::Session;
use tracker::*;
pub use tracker::{BlobTracker, Destination, MountPolicy};

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
        let session = Session::new(&self.dst.tracker);
        self.run_in(&session).await
    }

    async fn run_in(&self, ss: &Session<'_>) -> Result<CopyReport, RegistryError> {
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
                self.copy_blobs(&m, &stats, ss).await?;
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
                        .map(|c| self.prepare_child(&c.digest, 1, &visited, probe, &stats, ss)),
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
        let referrers = referrers::copy_referrers(self, &subjects, before_top, &stats).await?;
        if !unchanged {
            if self.cancel.is_cancelled() {
                return Err(RegistryError::Cancelled);
            }
            self.put(self.dst_tag, &to_put).await?;
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

    /// PUTs a manifest into the destination repository and notes the blobs it commits there.
    async fn put(&self, reference: &str, m: &Manifest) -> Result<(), RegistryError> {
        self.dst
            .registry
            .put_manifest(self.dst_repo, reference, m)
            .await?;
        self.dst
            .tracker
            .committed(self.dst_repo, referenced_blobs(m));
        Ok(())
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
        ss: &'b Session<'_>,
    ) -> futures::future::BoxFuture<'b, Result<(), RegistryError>> {
        Box::pin(async move {
            let cell = self.dst.tracker.prepared(self.dst_repo, digest);
            cell.get_or_try_init(|| async {
                self.prepare_child_once(digest, depth, visited, probe, stats, ss)
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
        ss: &Session<'_>,
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
            Parsed::Image(img) => self.copy_blobs(&img, stats, ss).await?,
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
                    self.prepare_child(&c.digest, depth + 1, &seen, probe, stats, ss)
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
                        self.put(digest, &m).await?;
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
        ss: &Session<'_>,
    ) -> Result<(), RegistryError> {
        futures::stream::iter(
            blobs_of(m)
                .into_iter()
                .map(|d| self.copy_blob(d, stats, ss)),
        )
        .buffer_unordered(IMAGE_FANOUT)
        .try_collect::<Vec<()>>()
        .await?;
        Ok(())
    }

    async fn copy_blob(
        &self,
        d: OciDescriptor,
        stats: &CopyStats,
        ss: &Session<'_>,
    ) -> Result<(), RegistryError> {
        push_blob(
            self.dst,
            self.dst_repo,
            &d,
            self.src,
            &self.progress,
            stats,
            ss,
        )
        .await?;
        Ok(())
    }
}
