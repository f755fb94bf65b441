//! Observe and execute: the I/O on either side of the pure planner.
//!
//! * [`observe`] HEADs every (repository, tag) on both sides, with bounded concurrency (the
//!   per-registry request limit bounds each side; `concurrency` bounds items in flight). A
//!   no-op run therefore costs one HEAD per tag per side — no GET, no PUT — except that a
//!   platform-filtered mirror GETs its *own* small index from ECR to read the recorded
//!   upstream digest.
//! * [`execute`] runs the copies of a plan, `parallel` images at a time. One failing item
//!   never stops the others; SIGTERM/Ctrl-C stops new work, drops transfers in flight, and no
//!   tag moves after it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::connect::Sources;
use crate::error::RegistryError;
use crate::plan::{Action, ActionKind, Item, Observed};
use crate::policy::Policy;
use crate::registry::copy::{Copy, CopyReport, Destination, NoProgress};
use crate::registry::manifest::recorded_source_digest;
use crate::registry::Registry;
use crate::spec::PlatformFilter;

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
                        .map_err(|e| e.to_string())?;
                    crate::trust::check(policy, &reg, &item.source, &item.platforms)
                        .await
                        .map_err(|e| e.to_string())
                };
                match verdict.await {
                    Ok(blocked) => o.blocked = blocked,
                    Err(e) => o.source = Err(format!("trust policy check failed: {e}")),
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
            .map_err(|e| e.to_string())?;
        reg.head_manifest(&item.source.image.repository, item.source.reference())
            .await
            .map(|h| h.map(|h| h.digest))
            .map_err(|e| e.to_string())
    };
    let dst = async {
        dest.head_manifest(&item.repository, &item.tag)
            .await
            .map(|h| h.map(|h| h.digest))
            .map_err(|e| e.to_string())
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
                Err(e) => o.dest = Err(e.to_string()),
            }
        }
    }
    o
}

/// The result of one item.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// Nothing to do.
    Skipped,
    /// Copied.
    Copied(CopyReport),
    /// Blocked by policy.
    Blocked(String),
    /// Failed, with the reason.
    Failed(String),
}

impl Outcome {
    /// `skipped`, `copied`, `blocked` or `failed`.
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Skipped => "skipped",
            Outcome::Copied(_) => "copied",
            Outcome::Blocked(_) => "blocked",
            Outcome::Failed(_) => "failed",
        }
    }
}

/// One executed action.
#[derive(Clone, Debug)]
pub struct Executed {
    /// What was planned.
    pub action: Action,
    /// What happened.
    pub outcome: Outcome,
    /// Seconds it took.
    pub secs: f64,
}

/// Runs a plan's copies, `parallel` at a time, calling `on_done` as each item finishes (in
/// completion order). Returns every action with its outcome, in plan order.
pub async fn execute(
    plan: &[Action],
    sources: &Sources,
    dest: &Arc<Destination>,
    parallel: usize,
    signatures: bool,
    cancel: &CancellationToken,
    on_done: &(dyn Fn(&Action, &Outcome, f64) + Sync),
) -> Vec<Executed> {
    let results = futures::stream::iter(plan.iter().enumerate().map(|(i, a)| async move {
        let started = Instant::now();
        let outcome = match &a.kind {
            ActionKind::Skip => Outcome::Skipped,
            ActionKind::Blocked(r) => Outcome::Blocked(r.clone()),
            ActionKind::Error(r) => Outcome::Failed(r.clone()),
            ActionKind::CopyMissing | ActionKind::CopyStale => {
                if cancel.is_cancelled() {
                    Outcome::Failed("cancelled before it started".into())
                } else {
                    match copy_one(a, sources, dest, signatures, cancel).await {
                        Ok(r) => Outcome::Copied(r),
                        Err(e) => Outcome::Failed(e.to_string()),
                    }
                }
            }
        };
        let secs = started.elapsed().as_secs_f64();
        on_done(a, &outcome, secs);
        (i, outcome, secs)
    }))
    .buffer_unordered(parallel.max(1))
    .collect::<Vec<_>>()
    .await;
    let mut by_index: Vec<Option<(Outcome, f64)>> = vec![None; plan.len()];
    for (i, o, secs) in results {
        by_index[i] = Some((o, secs));
    }
    plan.iter()
        .cloned()
        .zip(by_index)
        .map(|(action, o)| {
            let (outcome, secs) = o.expect("every item has an outcome");
            Executed {
                action,
                outcome,
                secs,
            }
        })
        .collect()
}

async fn copy_one(
    a: &Action,
    sources: &Sources,
    dest: &Arc<Destination>,
    signatures: bool,
    cancel: &CancellationToken,
) -> Result<CopyReport, RegistryError> {
    let source = crate::spec::TaggedRef::parse(a.source.as_deref().unwrap_or_default())
        .map_err(|e| RegistryError::Config(e.to_string()))?;
    let src = sources
        .get(&source.image.registry)
        .await
        .map_err(|e| match e {
            crate::error::Error::Registry(r) => r,
            other => RegistryError::Config(other.to_string()),
        })?;
    let tag = a.tag.clone().unwrap_or_default();
    let job = Copy {
        src: &src,
        src_repo: &source.image.repository,
        src_reference: source.reference(),
        dst: dest,
        dst_repo: &a.repository,
        dst_tag: &tag,
        platforms: &a.platforms,
        progress: Arc::new(NoProgress),
        cancel,
        signatures,
        // Observed moments ago: the copy need not HEAD the tag again.
        dst_current: Some(a.dest_digest.as_deref()),
    };
    tokio::select! {
        r = job.run() => r,
        _ = cancel.cancelled() => Err(RegistryError::Cancelled),
    }
}
