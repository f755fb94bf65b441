//! Copying referrers with the image: each artifact byte for byte (its digest kept), bottom-up,
//! before the tag moves; with its `subject` into a registry with the referrers API, else listed
//! in the destination's `sha256-<hex>` fallback index (entries other tools wrote are kept).
//! Finding them is `oci::referrers`.

use std::collections::{BTreeSet, HashSet};

use super::*;
use crate::oci::manifest::{sha256_digest, MAX_INDEX_DEPTH};
use crate::oci::referrers::*;

/// What the destination lists as referrers of one subject.
struct DestListing {
    /// Whether the destination has the referrers API.
    api: bool,
    /// Digests it lists.
    listed: HashSet<String>,
    /// The fallback index as stored, when there is one (no API).
    fallback: Option<serde_json::Value>,
}

async fn dest_listing(
    reg: &Registry,
    repo: &str,
    subject: &str,
) -> Result<DestListing, RegistryError> {
    if let Some(list) = reg.list_referrers(repo, subject, None).await? {
        return Ok(DestListing {
            api: true,
            listed: list.into_iter().map(|d| d.digest).collect(),
            fallback: None,
        });
    }
    let tag = fallback_tag(subject);
    let Some(m) = reg.get_manifest_if_any(repo, &tag).await? else {
        return Ok(DestListing {
            api: false,
            listed: HashSet::new(),
            fallback: None,
        });
    };
    let v: serde_json::Value =
        serde_json::from_slice(&m.bytes).map_err(|e| RegistryError::Invalid {
            what: format!("{repo}:{tag}"),
            reason: format!("not a referrers index: {e}"),
        })?;
    let listed = v["manifests"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|d| d["digest"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    Ok(DestListing {
        api: false,
        listed,
        fallback: Some(v),
    })
}

/// The fallback index `existing` (another tool's, or ours) with `add` appended; every entry
/// already there is kept as it was.
pub fn merged_fallback(existing: Option<&serde_json::Value>, add: &[Descriptor]) -> Manifest {
    let mut v = existing.cloned().unwrap_or_else(|| {
        serde_json::json!({
            "schemaVersion": 2,
            "mediaType": INDEX_MEDIA_TYPE,
            "manifests": [],
        })
    });
    if !v["manifests"].is_array() {
        v["manifests"] = serde_json::json!([]);
    }
    let list = v["manifests"].as_array_mut().expect("an array");
    let mut have: HashSet<String> = list
        .iter()
        .filter_map(|d| d["digest"].as_str().map(str::to_string))
        .collect();
    for d in add {
        if have.insert(d.digest.clone()) {
            list.push(serde_json::to_value(d).expect("a descriptor serialises"));
        }
    }
    let bytes = serde_json::to_vec(&v).expect("JSON serialises");
    Manifest {
        digest: sha256_digest(&bytes),
        bytes: bytes.into(),
        media_type: INDEX_MEDIA_TYPE.to_string(),
    }
}

/// Copies the referrers of each of `subjects` (digests already in, or about to be in, the
/// destination repository) and theirs, before the caller moves the tag. `before_top` is the
/// manifest whose digest is `subjects[0]` when the destination does not hold it yet: it is
/// written by digest first, only if it has referrers, so that they never point at nothing.
pub(super) async fn copy_referrers(
    c: &Copy<'_>,
    subjects: &[String],
    before_top: Option<&Manifest>,
    stats: &CopyStats,
) -> Result<Vec<ReferrerReport>, RegistryError> {
    let Some((src, src_repo)) = c.src.registry() else {
        return Ok(vec![]);
    };
    if c.referrers.is_none() {
        return Ok(vec![]);
    }
    let ctx = Ctx {
        c,
        src,
        src_repo,
        stats,
    };
    let mut reports = Vec::new();
    for (i, s) in subjects.iter().enumerate() {
        let ensure = if i == 0 { before_top } else { None };
        let visited = BTreeSet::from([s.clone()]);
        reports.extend(ctx.of_subject(s, ensure, 0, &visited).await?);
    }
    Ok(reports)
}

struct Ctx<'a, 'b> {
    c: &'a Copy<'b>,
    src: &'a Registry,
    src_repo: &'a str,
    stats: &'a CopyStats,
}

impl Ctx<'_, '_> {
    fn of_subject<'s>(
        &'s self,
        subject: &'s str,
        ensure: Option<&'s Manifest>,
        depth: usize,
        visited: &'s BTreeSet<String>,
    ) -> futures::future::BoxFuture<'s, Result<Vec<ReferrerReport>, RegistryError>> {
        Box::pin(async move {
            let filter = &self.c.referrers;
            let found = find(self.src, self.src_repo, subject, filter).await?;
            if found.is_empty() {
                return Ok(vec![]);
            }
            let dst = &self.c.dst.registry;
            let dst_repo = self.c.dst_repo;
            if let Some(m) = ensure {
                dst.put_manifest(dst_repo, &m.digest, m).await?;
                self.stats
                    .manifests_put
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            let mut listing: Option<DestListing> = None;
            let mut reports = Vec::new();
            let mut to_list = Vec::new();
            for f in found {
                let d = &f.descriptor;
                if visited.contains(&d.digest) || depth >= MAX_INDEX_DEPTH {
                    continue;
                }
                let report =
                    |artifact_type: &str, outcome, error: Option<RegistryError>| ReferrerReport {
                        subject: subject.to_string(),
                        digest: d.digest.clone(),
                        artifact_type: artifact_type.to_string(),
                        via: f.via,
                        tag: f.tag.clone(),
                        outcome,
                        message: error.as_ref().map(|e| e.to_string()),
                        error: error.map(Arc::new),
                    };
                // The manifest is fetched only to learn a missing artifact type, or to copy.
                let mut fetched: Option<Manifest> = None;
                let artifact_type = match &d.artifact_type {
                    Some(t) => t.clone(),
                    None => {
                        let m = self.src.get_manifest(self.src_repo, &d.digest).await?;
                        let t = artifact_type_of(&m).unwrap_or_default();
                        fetched = Some(m);
                        t
                    }
                };
                if !filter.selects(&artifact_type) {
                    reports.push(report(&artifact_type, ReferrerOutcome::Skipped, None));
                    continue;
                }
                let present = match &f.tag {
                    Some(tag) => dst
                        .head_manifest(dst_repo, tag)
                        .await?
                        .is_some_and(|h| h.digest == d.digest),
                    None => {
                        if listing.is_none() {
                            listing = Some(dest_listing(dst, dst_repo, subject).await?);
                        }
                        listing
                            .as_ref()
                            .is_some_and(|l| l.listed.contains(&d.digest))
                    }
                };
                if present {
                    reports.push(report(&artifact_type, ReferrerOutcome::Present, None));
                } else {
                    let m = match fetched.take() {
                        Some(m) => m,
                        None => self.src.get_manifest(self.src_repo, &d.digest).await?,
                    };
                    match self.place(&m, f.tag.as_deref()).await {
                        Ok(()) => {
                            reports.push(report(&artifact_type, ReferrerOutcome::Copied, None));
                            if f.tag.is_none() {
                                to_list.push(Descriptor {
                                    media_type: m.media_type.clone(),
                                    digest: m.digest.clone(),
                                    size: m.bytes.len() as i64,
                                    artifact_type: Some(artifact_type.clone()),
                                    annotations: d.annotations.clone(),
                                });
                            }
                        }
                        // A registry that refuses this referrer (ECR's 405 for a subject
                        // that is an index): this artifact fails, the image goes on.
                        Err(e @ RegistryError::Status { status: 405, .. }) => {
                            reports.push(report(&artifact_type, ReferrerOutcome::Failed, Some(e)));
                            continue;
                        }
                        Err(e) => return Err(e),
                    }
                }
                let mut deeper = visited.clone();
                deeper.insert(d.digest.clone());
                reports.extend(self.of_subject(&d.digest, None, depth + 1, &deeper).await?);
            }
            if let Some(l) = listing.filter(|l| !l.api) {
                if !to_list.is_empty() {
                    let index = merged_fallback(l.fallback.as_ref(), &to_list);
                    if self.c.cancel.is_cancelled() {
                        return Err(RegistryError::Cancelled);
                    }
                    dst.put_manifest(dst_repo, &fallback_tag(subject), &index)
                        .await?;
                    self.stats
                        .manifests_put
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
            Ok(reports)
        })
    }

    /// Writes one referrer: its blobs (or, for an index, its children), then its manifest by
    /// digest, or by `tag` for a cosign tag.
    async fn place(&self, m: &Manifest, tag: Option<&str>) -> Result<(), RegistryError> {
        let what = format!("{}@{}", self.c.src.name(), m.digest);
        // Its own session: the blobs uploaded for this referrer are committed by its PUT below.
        let ss = crate::oci::copy::Session::new(&self.c.dst.tracker);
        match m.parse(&what)? {
            Parsed::Image(img) => self.c.copy_blobs(&img, self.stats, &ss).await?,
            Parsed::Index(idx) => {
                for child in &idx.manifests {
                    let cm = self.src.get_manifest(self.src_repo, &child.digest).await?;
                    match cm.parse(&what)? {
                        Parsed::Image(img) => self.c.copy_blobs(&img, self.stats, &ss).await?,
                        Parsed::Index(_) => {
                            return Err(RegistryError::Unsupported {
                                what,
                                reason: "a referrer that is an index of indexes".into(),
                            })
                        }
                    }
                    self.c
                        .dst
                        .registry
                        .put_manifest(self.c.dst_repo, &cm.digest, &cm)
                        .await?;
                }
            }
        }
        if self.c.cancel.is_cancelled() {
            return Err(RegistryError::Cancelled);
        }
        self.c
            .dst
            .registry
            .put_manifest_with_subject(self.c.dst_repo, tag.unwrap_or(&m.digest), m)
            .await?;
        self.stats
            .manifests_put
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }
}
