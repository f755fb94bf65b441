//! Observe: HEAD every (repository, tag) on both sides, with bounded concurrency (the
//! per-registry request limit bounds each side; `concurrency` bounds items in flight). A no-op
//! run therefore costs one HEAD per tag per side — no GET, no PUT — except that a
//! platform-filtered mirror GETs its *own* small index from ECR to read the recorded upstream
//! digest.

use std::collections::BTreeMap;

use futures::StreamExt;

use crate::mirror::error::{Failure, Label};
use crate::mirror::plan::{Item, Observed};
use crate::mirror::sources::Sources;
use crate::oci::manifest::recorded_source_digest;
use crate::oci::{PlatformFilter, Registry};
use crate::policy::Policy;

/// HEADs both sides of every item.
///
/// Items that would be copied are also checked against the trust `policy` (which may GET the
/// upstream manifest and its signatures when the policy requires signatures).
///
/// `items` is a stream so that observation can start while discovery is still reading the
/// other repositories' tags (see `commands::sync`).
pub async fn observe(
    items: impl futures::Stream<Item = Item>,
    sources: &Sources,
    dest: &Registry,
    policy: &Policy,
    concurrency: usize,
) -> BTreeMap<(String, String), Observed> {
    let results = items
        .map(|item| async move {
            let key = (item.repository.clone(), item.tag.clone());
            let item = &item;
            let mut o = observe_one(item, sources, dest).await;
            let in_sync = matches!((&o.source, &o.dest), (Ok(Some(s)), Ok(Some(d))) if s == d)
                || matches!((&o.source, &o.dest_recorded_source), (Ok(Some(s)), Some(r)) if s == r);
            if let (Ok(Some(_)), false) = (&o.source, in_sync) {
                let verdict = async {
                    let reg = sources
                        .get(&item.source.image.registry)
                        .await
                        .map_err(|e| Failure::from(&e))?;
                    crate::mirror::trust::check(policy, &reg, &item.source, &item.platforms)
                        .await
                        .map_err(Failure::from)
                };
                match verdict.await {
                    Ok(blocked) => o.blocked = blocked,
                    // The policy needed the manifest, and the pull budget is used up: the
                    // item is deferred, not failed.
                    Err(e) if e.label == Label::RateLimited => o.source = Err(e),
                    Err(e) => {
                        o.source = Err(Failure::new(
                            Label::PolicyError,
                            format!("trust policy check failed: {e}"),
                        ))
                    }
                }
            }
            (key, o)
        })
        .buffer_unordered(concurrency.max(1))
        .collect::<Vec<_>>()
        .await;
    results.into_iter().collect()
}

async fn observe_one(item: &Item, sources: &Sources, dest: &Registry) -> Observed {
    let src = async {
        let reg = sources
            .get(&item.source.image.registry)
            .await
            .map_err(|e| Failure::from(&e))?;
        reg.head_manifest(&item.source.image.repository, item.source.reference())
            .await
            .map(|h| h.map(|h| h.digest))
            .map_err(Failure::from)
    };
    let dst = async {
        dest.head_manifest(&item.repository, &item.tag)
            .await
            .map(|h| h.map(|h| h.digest))
            .map_err(Failure::from)
    };
    let (source, dest_digest) = tokio::join!(src, dst);
    let mut o = Observed {
        source,
        dest: dest_digest,
        dest_recorded_source: None,
        blocked: None,
    };
    // A filtered mirror's index differs from upstream by design; read the upstream digest it
    // records (our own small index, in ECR) instead of fetching anything upstream.
    if let (PlatformFilter::Only(_), Ok(Some(s)), Ok(Some(d))) =
        (&item.platforms, &o.source, &o.dest)
    {
        if s != d {
            match dest.get_manifest(&item.repository, d).await {
                Ok(m) => o.dest_recorded_source = recorded_source_digest(&m.bytes),
                Err(e) => o.dest = Err(Failure::from(e)),
            }
        }
    }
    o
}
