//! Execute: run the copies of a plan, `parallel` images at a time. One failing item never
//! stops the others; SIGTERM/Ctrl-C stops new work, drops transfers in flight, and no tag
//! moves after it.

use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::ecr::EcrApi;
use crate::mirror::error::{Failure, Label};
use crate::mirror::plan::{Action, ActionKind, Item};
use crate::mirror::referrers::Referrers;
use crate::mirror::sources::Sources;
use crate::oci::copy::{
    Copy, CopyReport, Destination, MountPolicy, NoProgress, Progress, RegistryImage,
};
use crate::oci::{Registry, RegistryError};

/// The result of one item.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// Nothing to do.
    Skipped,
    /// Copied.
    Copied(CopyReport),
    /// Blocked by policy.
    Blocked(Failure),
    /// Failed, with the reason.
    Failed(Failure),
    /// Not attempted, or given up without writing anything, because a registry's pull budget
    /// is used up for this run (label `rate-limited`); the next run finishes it. Counts as a
    /// problem (exit 1).
    Deferred(Failure),
}

impl Outcome {
    /// `skipped`, `copied`, `blocked` or `failed`.
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Skipped => "skipped",
            Outcome::Copied(_) => "copied",
            Outcome::Blocked(_) => "blocked",
            Outcome::Failed(_) => "failed",
            Outcome::Deferred(_) => "deferred",
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
    referrers: &Referrers,
    cancel: &CancellationToken,
    on_done: &(dyn Fn(&Action, &Outcome, f64) + Sync),
) -> Vec<Executed> {
    let results = futures::stream::iter(run_order(plan).map(|(i, a)| async move {
        let started = Instant::now();
        let outcome = match &a.kind {
            // `--refresh-referrers`: an image in sync has its referrers checked again; it stays
            // `skipped` unless one was copied.
            ActionKind::Skip if referrers.refresh && !cancel.is_cancelled() => {
                match copy_one(a, sources, dest, referrers, cancel).await {
                    Ok(r)
                        if r.referrers.iter().any(|x| {
                            x.outcome != crate::oci::referrers::ReferrerOutcome::Present
                                && x.outcome != crate::oci::referrers::ReferrerOutcome::Skipped
                        }) =>
                    {
                        Outcome::Copied(r)
                    }
                    Ok(_) => Outcome::Skipped,
                    Err(e) => Outcome::Failed(Failure::from(e)),
                }
            }
            ActionKind::Skip => Outcome::Skipped,
            ActionKind::Blocked(r) => Outcome::Blocked(r.clone()),
            ActionKind::Error(r) => Outcome::Failed(r.clone()),
            ActionKind::Deferred(r) => Outcome::Deferred(r.clone()),
            ActionKind::CopyMissing | ActionKind::CopyStale => {
                if cancel.is_cancelled() {
                    Outcome::Failed(Failure::new(
                        Label::Cancelled,
                        "cancelled before it started",
                    ))
                } else {
                    match copy_one(a, sources, dest, referrers, cancel).await {
                        Ok(r) => Outcome::Copied(r),
                        Err(e @ RegistryError::PullBudget { .. }) => {
                            Outcome::Deferred(Failure::from(e))
                        }
                        Err(e) => Outcome::Failed(Failure::from(e)),
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

/// The order in which a plan's items are started: missing tags before stale ones (a tag that
/// is absent hurts more than one that is behind, and a pull budget that runs out should be
/// spent on those first), then everything that needs no request. Stable within each group.
fn run_order(plan: &[Action]) -> impl Iterator<Item = (usize, &Action)> {
    let rank = |a: &Action| match a.kind {
        ActionKind::CopyMissing => 0,
        ActionKind::CopyStale => 1,
        _ => 2,
    };
    let mut order: Vec<(usize, &Action)> = plan.iter().enumerate().collect();
    order.sort_by_key(|(i, a)| (rank(a), *i));
    order.into_iter()
}

async fn copy_one(
    a: &Action,
    sources: &Sources,
    dest: &Arc<Destination>,
    referrers: &Referrers,
    cancel: &CancellationToken,
) -> Result<CopyReport, RegistryError> {
    copy_with_progress(a, sources, dest, referrers, Arc::new(NoProgress), cancel).await
}

async fn copy_with_progress(
    a: &Action,
    sources: &Sources,
    dest: &Arc<Destination>,
    referrers: &Referrers,
    progress: Arc<dyn Progress>,
    cancel: &CancellationToken,
) -> Result<CopyReport, RegistryError> {
    let source = crate::oci::TaggedRef::parse(a.source.as_deref().unwrap_or_default())
        .map_err(|e| RegistryError::Config(e.to_string()))?;
    let src = sources
        .get(&source.image.registry)
        .await
        .map_err(|e| match e {
            crate::mirror::error::Error::Registry(r) => r,
            other => RegistryError::Config(other.to_string()),
        })?;
    let tag = a.tag.clone().unwrap_or_default();
    let image = RegistryImage {
        registry: &src,
        repo: &source.image.repository,
    };
    let job = Copy {
        src: &image,
        src_reference: source.reference(),
        dst: dest,
        dst_repo: &a.repository,
        dst_tag: &tag,
        platforms: &a.platforms,
        progress,
        cancel,
        referrers: referrers.for_repo(&a.repository),
        // Observed moments ago: the copy need not HEAD the tag again.
        dst_current: Some(a.dest_digest.as_deref()),
    };
    tokio::select! {
        r = job.run() => r,
        _ = cancel.cancelled() => Err(RegistryError::Cancelled),
    }
}

/// How `sync` executes its plan.
#[derive(Clone, Debug)]
pub struct SyncOptions {
    /// Images copied at once.
    pub parallel: usize,
    /// Which referrers travel, and whether those of images in sync are checked again.
    pub referrers: Referrers,
    /// Plan only; write nothing.
    pub dry_run: bool,
}

/// What a `sync` did.
#[derive(Debug)]
pub struct SyncRun {
    /// The plan, sorted by (repository, tag).
    pub actions: Vec<Action>,
    /// Every action with its outcome, in plan order (empty for a dry run).
    pub results: Vec<Executed>,
    /// Requests retried after transient failures, over every registry of the run.
    pub retries: u64,
    /// The lowest `RateLimit-Remaining` any registry reported.
    pub rate_limit_remaining: Option<i64>,
    /// What each tag rule selected and left out (repositories with a rule).
    pub rules: Vec<crate::mirror::estate::RuleView>,
    /// Per registry of the run: its name, requests sent by method, and its last
    /// `RateLimit-Remaining` (when it sends one).
    pub registries: Vec<RegistryStats>,
}

/// What one registry saw of a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistryStats {
    /// `host[:port]`.
    pub registry: String,
    /// Requests sent, by method.
    pub requests: Vec<(&'static str, u64)>,
    /// The last `RateLimit-Remaining` it sent.
    pub rate_limit_remaining: Option<i64>,
}

/// The whole `sync` pipeline: discover and observe (pipelined), plan, and — unless
/// `opts.dry_run` — execute, calling `on_done` as each item finishes.
pub async fn sync(
    estate: &crate::mirror::estate::EstateOptions,
    sources: &Sources,
    policy: &crate::policy::Policy,
    opts: &SyncOptions,
    cancel: &CancellationToken,
    on_done: &(dyn Fn(&Action, &Outcome, f64) + Sync),
) -> crate::mirror::Result<SyncRun> {
    use crate::mirror::estate;
    let observe = estate::ObserveWith { sources, policy };
    let (found, observation) = estate::load_observing(estate, Some(observe)).await?;
    let actions = estate::plan_of(&found, &observation);
    let dest = observation.map(|(d, _)| d);
    let mut run = SyncRun {
        actions,
        results: vec![],
        retries: 0,
        rate_limit_remaining: None,
        registries: vec![],
        rules: found.rules,
    };
    if opts.dry_run {
        return Ok(run);
    }
    // A repository's `upstream-referrers` tag overrides the run's selection (validated when
    // the tags were read).
    let referrers = opts.referrers.with_repository_tags(&found.referrers);
    run.results = match &dest {
        Some(d) => {
            let mounts = if run.actions.iter().any(|a| a.kind.is_copy()) {
                mount_policy(&found.api).await
            } else {
                MountPolicy::Unknown
            };
            let destination = Arc::new(Destination::with_mounts(d.clone(), mounts));
            execute(
                &run.actions,
                sources,
                &destination,
                opts.parallel,
                &referrers,
                cancel,
                on_done,
            )
            .await
        }
        // No ECR repository at all, or only repository-level errors: nothing to run.
        None => run
            .actions
            .iter()
            .map(|a| Executed {
                action: a.clone(),
                outcome: match &a.kind {
                    ActionKind::Error(e) => Outcome::Failed(e.clone()),
                    ActionKind::Deferred(e) => Outcome::Deferred(e.clone()),
                    _ => Outcome::Skipped,
                },
                secs: 0.0,
            })
            .collect(),
    };
    for r in sources.all().await.iter().chain(dest.iter()) {
        run.retries += r.retries();
        if let Some(v) = r.rate_limit_remaining() {
            run.rate_limit_remaining = Some(run.rate_limit_remaining.map_or(v, |s| s.min(v)));
        }
        run.registries.push(RegistryStats {
            registry: r.name().to_string(),
            requests: r.stats.requests(),
            rate_limit_remaining: r.rate_limit_remaining(),
        });
    }
    Ok(run)
}

/// Whether ECR will mount blobs across repositories in this run: its account setting
/// `BLOB_MOUNTING` (`GetAccountSetting`), read once per run, and only when something is to be
/// copied. A failure (moto answers 500; an older policy may lack `ecr:GetAccountSetting`)
/// leaves it unknown: the copy engine then asks for one mount and learns from the answer.
pub async fn mount_policy(api: &impl EcrApi) -> MountPolicy {
    match api.blob_mounting().await {
        Ok(true) => MountPolicy::Enabled,
        Ok(false) => MountPolicy::Disabled,
        Err(e) => {
            tracing::info!(error = %e,
                "cannot read the BLOB_MOUNTING account setting; one mount will tell");
            MountPolicy::Unknown
        }
    }
}

/// `copy` as a one-item plan: observe both sides of `item`, apply the trust policy, and plan
/// with the one in-sync rule ([`crate::mirror::plan`]). Execute the action with
/// [`execute_one`] when it copies.
pub async fn plan_one(
    item: &Item,
    sources: &Sources,
    dest: &Registry,
    policy: &crate::policy::Policy,
) -> Action {
    let observed = crate::mirror::observe::observe(
        futures::stream::iter([item.clone()]),
        sources,
        dest,
        policy,
        1,
    )
    .await;
    crate::mirror::plan::plan(std::slice::from_ref(item), &[], &observed)
        .pop()
        .expect("one item, one action")
}

/// Executes one planned copy, reporting bytes to `progress`. Cancellation stops it, and no tag
/// moves after it.
pub async fn execute_one(
    a: &Action,
    sources: &Sources,
    dest: &Arc<Destination>,
    referrers: &Referrers,
    progress: Arc<dyn Progress>,
    cancel: &CancellationToken,
) -> Result<CopyReport, RegistryError> {
    tokio::select! {
        r = copy_with_progress(a, sources, dest, referrers, progress, cancel) => r,
        _ = cancel.cancelled() => Err(RegistryError::Cancelled),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ecr::memory::MemoryEcr;

    #[tokio::test]
    async fn blob_mounting_setting_decides_the_mount_policy() {
        let ecr = MemoryEcr::new();
        ecr.set_blob_mounting(Some(true));
        assert_eq!(mount_policy(&ecr).await, MountPolicy::Enabled);
        ecr.set_blob_mounting(Some(false));
        assert_eq!(mount_policy(&ecr).await, MountPolicy::Disabled);
        // moto answers GetAccountSetting with HTTP 500: unknown, and one mount will tell.
        ecr.set_blob_mounting(None);
        assert_eq!(mount_policy(&ecr).await, MountPolicy::Unknown);
        assert_eq!(ecr.calls("GetAccountSetting"), 3);
    }

    #[test]
    fn missing_tags_start_before_stale_ones() {
        let a = |tag: &str, kind: ActionKind| Action {
            repository: "r".into(),
            tag: Some(tag.into()),
            kind,
            ..Action::default()
        };
        let plan = vec![
            a("a", ActionKind::CopyStale),
            a("b", ActionKind::Skip),
            a("c", ActionKind::CopyMissing),
            a("d", ActionKind::CopyStale),
            a("e", ActionKind::CopyMissing),
        ];
        let order: Vec<&str> = run_order(&plan)
            .map(|(_, x)| x.tag.as_deref().unwrap())
            .collect();
        assert_eq!(order, ["c", "e", "a", "d", "b"]);
    }
}
