//! `ecr-mirror-sync sync` and `list`: discover → observe → plan → execute → report.

use std::sync::Arc;
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use crate::cli::{AwsArgs, DiscoverArgs, ListArgs, NetArgs, OutputFormat, SyncArgs, VerifyArgs};
use crate::connect::{self, Sources};
use crate::ecr::discover::{self, Discovered};
use crate::ecr::sdk::SdkEcr;
use crate::ecr::tags::TagKeys;
use crate::error::{Error, Result};
use crate::plan::{self, Action, Item};
use crate::policy::Policy;
use crate::registry::copy::Destination;
use crate::registry::Registry;
use crate::report::{self, Summary};
use crate::settings;
use crate::shard::{self, Shard};
use crate::spec::PlatformFilter;
use crate::sync::{self, Outcome};

use super::Context;

/// ListTagsForResource calls in flight during discovery.
const DISCOVERY_CONCURRENCY: usize = 16;
/// (repository, tag) observations in flight; each side is also bounded per registry.
const OBSERVE_CONCURRENCY: usize = 32;

/// Discovery results turned into items, with the run's ECR client.
struct Estate {
    api: SdkEcr,
    items: Vec<Item>,
    repo_errors: Vec<(String, String)>,
    /// `<account>.dkr.ecr.<region>.amazonaws.com`, from the repositories' URIs.
    registry_host: Option<String>,
    repositories: Vec<RepoView>,
}

/// One marked repository, for `list`.
struct RepoView {
    name: String,
    upstream: String,
    tags: Vec<String>,
    platforms: String,
    error: Option<String>,
}

fn shard_of(d: &DiscoverArgs) -> Result<Option<Shard>> {
    let explicit = match &d.shard {
        Some(s) => Some(
            s.parse::<Shard>()
                .map_err(|e| Error::Usage(format!("--shard {s:?}: {e}")))?,
        ),
        None => None,
    };
    shard::from_env(
        explicit,
        std::env::var("JOB_COMPLETION_INDEX").ok().as_deref(),
        std::env::var("ECR_MIRROR_SYNC_SHARD_COUNT").ok().as_deref(),
    )
    .map_err(Error::Usage)
}

/// What to observe while the estate is discovered (`sync`, `list --check`).
struct ObserveWith<'a> {
    sources: &'a Sources,
    policy: &'a Policy,
    tls_verify: bool,
    net: &'a NetArgs,
}

/// The ECR destination and what was observed of every item.
type Observation = (
    Arc<Registry>,
    std::collections::BTreeMap<(String, String), plan::Observed>,
);

async fn load_estate(
    d: &DiscoverArgs,
    aws: &AwsArgs,
    default_platforms: &PlatformFilter,
) -> Result<Estate> {
    Ok(load_estate_observing(d, aws, default_platforms, None)
        .await?
        .0)
}

/// Discovery, and, with `observe`, the observation of every item, pipelined: a repository's
/// tags are HEADed as soon as its resource tags are read, while discovery goes on with the
/// others (and the ECR token is fetched meanwhile), so a run costs about the longer of the two
/// phases instead of their sum.
async fn load_estate_observing(
    d: &DiscoverArgs,
    aws: &AwsArgs,
    default_platforms: &PlatformFilter,
    observe: Option<ObserveWith<'_>>,
) -> Result<(Estate, Option<Observation>)> {
    use futures::StreamExt;
    let shard = shard_of(d)?;
    if let Some(p) = &d.prefix {
        if p.is_empty() || p.starts_with('/') || p.ends_with('/') {
            return Err(Error::Usage(format!(
                "--prefix {p:?}: give a repository path prefix without leading or trailing '/', e.g. mirror"
            )));
        }
    }
    let keys = TagKeys {
        image: d.image_key.clone(),
        tags: d.tag_key.clone(),
        platforms: d.platforms_key.clone(),
    };
    let api = SdkEcr::from_env(aws.region.clone()).await;
    let mut candidates = discover::candidates(&api, d.prefix.as_deref()).await?;
    // A shard reads only its own repositories' tags.
    if let Some(s) = &shard {
        candidates.retain(|r| s.owns(&r.name));
    }
    // `<account>.dkr.ecr.<region>.amazonaws.com`: every repository's URI starts with it.
    let host = candidates
        .first()
        .and_then(|r| r.uri.split('/').next())
        .map(str::to_string);
    let (tx, mut rx) = futures::channel::mpsc::unbounded::<Item>();
    let discovering = async {
        let tx = tx; // dropped when discovery ends, which ends the observation's stream
        let on_found = |f: &Discovered| {
            if observe.is_some() {
                for item in repository_view(f, default_platforms).1 {
                    let _ = tx.unbounded_send(item);
                }
            }
        };
        discover::read_specs(&api, candidates, &keys, DISCOVERY_CONCURRENCY, &on_found).await
    };
    let observing = async {
        let Some(o) = &observe else {
            return Ok(None);
        };
        // No token and no registry traffic until the first marked repository shows up.
        let (Some(first), Some(host)) = (rx.next().await, &host) else {
            return Ok(None);
        };
        let dest = ecr_destination(&api, host, aws, o.tls_verify, o.net).await?;
        let items = futures::stream::iter([first]).chain(rx);
        let observed = sync::observe(items, o.sources, &dest, o.policy, OBSERVE_CONCURRENCY).await;
        Ok::<_, Error>(Some((dest, observed)))
    };
    let (discovery, observed) = tokio::join!(discovering, observing);
    let mut estate = Estate {
        api,
        items: vec![],
        repo_errors: vec![],
        registry_host: None,
        repositories: vec![],
    };
    for f in discovery.items {
        if estate.registry_host.is_none() {
            estate.registry_host = f.repository.uri.split('/').next().map(str::to_string);
        }
        let (view, items) = repository_view(&f, default_platforms);
        if let Some(e) = &view.error {
            estate
                .repo_errors
                .push((f.repository.name.clone(), e.clone()));
        }
        estate.repositories.push(view);
        estate.items.extend(items);
    }
    Ok((estate, observed?))
}

/// One discovered repository as `list` shows it, and its items (none when its tags are bad).
fn repository_view(f: &Discovered, default_platforms: &PlatformFilter) -> (RepoView, Vec<Item>) {
    match &f.spec {
        Ok(spec) => {
            let platforms = match (&spec.platforms, default_platforms) {
                (PlatformFilter::All, d) => d.clone(),
                (p, _) => p.clone(),
            };
            let items = spec
                .tags
                .iter()
                .map(|tag| Item {
                    repository: spec.repository.clone(),
                    tag: tag.clone(),
                    source: spec.upstream.at_tag(tag),
                    platforms: platforms.clone(),
                    immutable: f.repository.tag_mutability_immutable,
                })
                .collect();
            let view = RepoView {
                name: spec.repository.clone(),
                upstream: spec.upstream.to_string(),
                tags: spec.tags.clone(),
                platforms: platforms.to_string(),
                error: None,
            };
            (view, items)
        }
        Err(e) => {
            let view = RepoView {
                name: f.repository.name.clone(),
                upstream: "-".into(),
                tags: vec![],
                platforms: "-".into(),
                error: Some(e.to_string()),
            };
            (view, vec![])
        }
    }
}

async fn ecr_destination(
    api: &SdkEcr,
    host: &str,
    aws: &AwsArgs,
    tls_verify: bool,
    net: &NetArgs,
) -> Result<Arc<Registry>> {
    let endpoint = settings::endpoint(&aws.registry_endpoint)?;
    let cfg = connect::ecr_registry(api.clone(), host, endpoint, tls_verify, net).await?;
    Ok(Arc::new(Registry::new(cfg)?))
}

/// The plan of `estate`, with what was observed (nothing: every item an error).
fn plan_of(estate: &Estate, observation: &Option<Observation>) -> Vec<Action> {
    let none = Default::default();
    let observed = observation.as_ref().map_or(&none, |(_, o)| o);
    plan::plan(&estate.items, &estate.repo_errors, observed)
}

/// Runs `sync`.
pub async fn run_sync(ctx: &Context, a: &SyncArgs, cancel: &CancellationToken) -> Result<u8> {
    let started = Instant::now();
    let default_platforms = settings::platform_filter(&a.platforms)?.unwrap_or_default();
    let policy = crate::trust::load(&a.policy.policy, a.policy.insecure_policy)?;
    let sources = Sources::new(a.estate.src_access.clone(), a.estate.net.clone());
    let observe = ObserveWith {
        sources: &sources,
        policy: &policy,
        tls_verify: a.estate.dest_tls_verify,
        net: &a.estate.net,
    };
    let (estate, observation) = load_estate_observing(
        &a.estate.discover,
        &a.estate.aws,
        &default_platforms,
        Some(observe),
    )
    .await?;
    let actions = plan_of(&estate, &observation);
    let dest = observation.map(|(d, _)| d);

    if a.dry_run {
        match ctx.output {
            OutputFormat::Json => {
                for act in &actions {
                    report::emit("plan", report::action_json(act));
                }
                report::emit(
                    "summary",
                    serde_json::to_value(plan::counts(&actions)).expect("serialisable"),
                );
            }
            OutputFormat::Text => {
                println!("{}", report::plan_table(&actions));
                let c = plan::counts(&actions);
                println!(
                    "dry run: {} to copy, {} in sync, {} blocked, {} errors; nothing was written",
                    c.copy, c.skip, c.blocked, c.error
                );
            }
        }
        let c = plan::counts(&actions);
        return Ok(u8::from(c.error + c.blocked > 0));
    }

    let results = match &dest {
        None => vec![],
        Some(d) => {
            let destination = Arc::new(Destination::new(d.clone()));
            let output = ctx.output;
            let on_done = move |act: &Action, o: &Outcome, secs: f64| match output {
                OutputFormat::Json => report::emit("item", report::item_json(act, o, secs)),
                OutputFormat::Text => {
                    if !matches!(o, Outcome::Skipped) {
                        println!("{}", report::item_line(act, o, secs));
                    }
                }
            };
            sync::execute(
                &actions,
                &sources,
                &destination,
                a.parallel as usize,
                !a.policy.remove_signatures,
                cancel,
                &on_done,
            )
            .await
        }
    };
    let results = if results.is_empty() {
        // No ECR repository at all, or only repository-level errors.
        actions
            .iter()
            .map(|a| {
                let outcome = match &a.kind {
                    plan::ActionKind::Error(e) => Outcome::Failed(e.clone()),
                    _ => Outcome::Skipped,
                };
                sync::Executed {
                    action: a.clone(),
                    outcome,
                    secs: 0.0,
                }
            })
            .collect()
    } else {
        results
    };
    let mut summary = Summary::of(&results);
    for r in sources.all().await.iter().chain(dest.iter()) {
        summary.retries += r.retries();
        if let Some(v) = r.rate_limit_remaining() {
            summary.rate_limit_remaining =
                Some(summary.rate_limit_remaining.map_or(v, |s| s.min(v)));
        }
    }
    summary.duration_secs = started.elapsed().as_secs_f64();
    match ctx.output {
        OutputFormat::Json => report::emit(
            "summary",
            serde_json::to_value(&summary).expect("serialisable"),
        ),
        OutputFormat::Text => println!("{}", summary.table()),
    }
    if let Some(dir) = &a.report_dir {
        let rows: Vec<_> = results.iter().map(report::file_row).collect();
        write_report_files(dir, &rows)?;
    }
    post_events(&summary, &results).await;
    if cancel.is_cancelled() {
        return Ok(1);
    }
    Ok(summary.exit_code())
}

#[cfg(feature = "k8s")]
async fn post_events(summary: &Summary, results: &[sync::Executed]) {
    use crate::k8s::{publish_from_env, ItemProblem, RunSummary};
    let problems: Vec<ItemProblem> = results
        .iter()
        .map(|e| (&e.action, &e.outcome))
        .filter_map(|(a, o)| match o {
            Outcome::Failed(r) | Outcome::Blocked(r) => Some(ItemProblem {
                image: format!("{}:{}", a.repository, a.tag.as_deref().unwrap_or("*")),
                source: a.source.clone().unwrap_or_default(),
                reason: r.clone(),
                blocked: matches!(o, Outcome::Blocked(_)),
            }),
            _ => None,
        })
        .collect();
    let rs = RunSummary {
        copied: summary.copied,
        skipped: summary.skipped,
        failed: summary.failed,
        blocked: summary.blocked,
    };
    if let Err(e) = publish_from_env(&rs, &problems).await {
        tracing::warn!(error = %e, "could not post Kubernetes events");
    }
}

#[cfg(not(feature = "k8s"))]
async fn post_events(_: &Summary, _: &[sync::Executed]) {}

/// Writes the `--report-dir` files and logs where they went.
pub fn write_report_files(dir: &std::path::Path, rows: &[crate::report_files::Row]) -> Result<()> {
    let paths =
        crate::report_files::write(dir, rows, std::time::SystemTime::now()).map_err(|e| {
            Error::Usage(format!(
                "--report-dir {}: cannot write the report: {e}",
                dir.display()
            ))
        })?;
    for p in paths {
        tracing::info!(file = %p.display(), "report written");
    }
    Ok(())
}

/// Runs `list`.
pub async fn run_list(ctx: &Context, a: &ListArgs) -> Result<u8> {
    let sources = Sources::new(a.estate.src_access.clone(), a.estate.net.clone());
    // `list --check` reports status; it does not judge signatures.
    let accept = Policy::insecure_accept_anything();
    let observe = a.check.then_some(ObserveWith {
        sources: &sources,
        policy: &accept,
        tls_verify: a.estate.dest_tls_verify,
        net: &a.estate.net,
    });
    let (estate, observation) = load_estate_observing(
        &a.estate.discover,
        &a.estate.aws,
        &PlatformFilter::All,
        observe,
    )
    .await?;
    let failed = !estate.repo_errors.is_empty();
    if !a.check {
        match ctx.output {
            OutputFormat::Json => {
                for r in &estate.repositories {
                    report::emit(
                        "repository",
                        serde_json::json!({"repository": r.name, "upstream": r.upstream, "tags": r.tags, "platforms": r.platforms, "error": r.error}),
                    );
                }
            }
            OutputFormat::Text if a.render_table => {
                let mut t =
                    report::table(&["REPOSITORY", "UPSTREAM", "TAGS", "PLATFORMS", "ERROR"]);
                for r in &estate.repositories {
                    t.add_row(vec![
                        r.name.clone(),
                        r.upstream.clone(),
                        r.tags.join(" "),
                        r.platforms.clone(),
                        r.error.clone().unwrap_or_default(),
                    ]);
                }
                println!("{t}");
            }
            OutputFormat::Text => {
                for r in &estate.repositories {
                    match &r.error {
                        None => println!(
                            "{}\t{}\t{}\t{}",
                            r.name,
                            r.upstream,
                            r.tags.join("/"),
                            r.platforms
                        ),
                        Some(e) => println!("{}\terror: {e}", r.name),
                    }
                }
            }
        }
        return Ok(u8::from(failed));
    }
    let actions = plan_of(&estate, &observation);
    let status = |act: &Action| match &act.kind {
        plan::ActionKind::Skip => "in-sync".to_string(),
        plan::ActionKind::CopyMissing => "missing".into(),
        plan::ActionKind::CopyStale => "stale".into(),
        plan::ActionKind::Blocked(r) => format!("blocked: {r}"),
        plan::ActionKind::Error(r) => format!("error: {r}"),
    };
    match ctx.output {
        OutputFormat::Json => {
            for act in &actions {
                let mut v = report::action_json(act);
                v["status"] = serde_json::json!(status(act));
                report::emit("tag", v);
            }
        }
        OutputFormat::Text => {
            let mut t = report::table(&[
                "REPOSITORY",
                "TAG",
                "UPSTREAM",
                "STATUS",
                "UPSTREAM DIGEST",
                "ECR DIGEST",
            ]);
            for act in &actions {
                t.add_row(vec![
                    act.repository.clone(),
                    act.tag.clone().unwrap_or_else(|| "-".into()),
                    act.source.clone().unwrap_or_else(|| "-".into()),
                    status(act),
                    act.source_digest.clone().unwrap_or_else(|| "-".into()),
                    act.dest_digest.clone().unwrap_or_else(|| "-".into()),
                ]);
            }
            println!("{t}");
        }
    }
    let c = plan::counts(&actions);
    Ok(u8::from(c.error + c.blocked > 0))
}

/// Runs `verify`.
pub async fn run_verify(ctx: &Context, a: &VerifyArgs) -> Result<u8> {
    let started = Instant::now();
    let mut estate = load_estate(&a.estate.discover, &a.estate.aws, &PlatformFilter::All).await?;
    if let Some(only) = &a.repository {
        estate.items.retain(|i| &i.repository == only);
        estate.repo_errors.retain(|(r, _)| r == only);
        if estate.items.is_empty() && estate.repo_errors.is_empty() {
            return Err(Error::Usage(format!(
                "--repository {only:?}: no such repository is marked for mirroring (see `ecr-mirror-sync list`)"
            )));
        }
    }
    let sources = Sources::new(a.estate.src_access.clone(), a.estate.net.clone());
    let dest = match &estate.registry_host {
        Some(host) => Some(
            ecr_destination(
                &estate.api,
                host,
                &a.estate.aws,
                a.estate.dest_tls_verify,
                &a.estate.net,
            )
            .await?,
        ),
        None => None,
    };
    let mut checks = Vec::new();
    if let Some(d) = &dest {
        use futures::StreamExt;
        checks = futures::stream::iter(estate.items.iter().map(|item| {
            let sources = &sources;
            async move {
                let t = Instant::now();
                let c = match sources.get(&item.source.image.registry).await {
                    Ok(src) => crate::verify::check(item, &src, d).await,
                    Err(e) => crate::verify::ImageCheck {
                        repository: item.repository.clone(),
                        tag: item.tag.clone(),
                        source: item.source.to_string(),
                        rows: vec![],
                        error: Some(e.to_string()),
                    },
                };
                (c, t.elapsed().as_secs_f64())
            }
        }))
        .buffered(OBSERVE_CONCURRENCY)
        .collect::<Vec<_>>()
        .await;
    }
    let mut bad = estate.repo_errors.len();
    match ctx.output {
        OutputFormat::Json => {
            for (c, _) in &checks {
                let mut v = serde_json::to_value(c).expect("serialisable");
                v["ok"] = serde_json::json!(c.ok());
                report::emit("verify", v);
            }
            for (r, e) in &estate.repo_errors {
                report::emit(
                    "verify",
                    serde_json::json!({"repository": r, "tag": null, "rows": [], "error": e, "ok": false}),
                );
            }
        }
        OutputFormat::Text => {
            let mut t =
                report::table(&["IMAGE", "PLATFORM", "SOURCE DIGEST", "ECR DIGEST", "MATCH"]);
            for (c, _) in &checks {
                for r in &c.rows {
                    t.add_row(vec![
                        format!("{}:{}", c.repository, c.tag),
                        r.platform.clone(),
                        r.source.clone().unwrap_or_else(|| "-".into()),
                        r.ecr.clone().unwrap_or_else(|| "-".into()),
                        if r.matches { "yes" } else { "NO" }.to_string(),
                    ]);
                }
            }
            if a.render_table {
                println!("{t}");
            } else {
                for (c, _) in &checks {
                    for r in &c.rows {
                        println!(
                            "{}:{}\t{}\t{}\t{}\t{}",
                            c.repository,
                            c.tag,
                            r.platform,
                            r.source.as_deref().unwrap_or("-"),
                            r.ecr.as_deref().unwrap_or("-"),
                            if r.matches { "match" } else { "MISMATCH" }
                        );
                    }
                }
            }
            for (c, _) in &checks {
                let n = c.rows.iter().filter(|r| r.platform != "index").count();
                match (&c.error, c.ok()) {
                    (Some(e), _) => {
                        println!("ERROR    {}:{} <- {}: {e}", c.repository, c.tag, c.source)
                    }
                    (None, true) => println!(
                        "OK       {}:{} <- {}: {n} platform(s) match",
                        c.repository, c.tag, c.source
                    ),
                    (None, false) => {
                        let which: Vec<&str> = c
                            .rows
                            .iter()
                            .filter(|r| !r.matches)
                            .map(|r| r.platform.as_str())
                            .collect();
                        println!(
                            "MISMATCH {}:{} <- {}: {}",
                            c.repository,
                            c.tag,
                            c.source,
                            which.join(", ")
                        );
                    }
                }
            }
            for (r, e) in &estate.repo_errors {
                println!("ERROR    {r}: {e}");
            }
        }
    }
    bad += checks.iter().filter(|(c, _)| !c.ok()).count();
    if let Some(dir) = &a.report_dir {
        let rows: Vec<crate::report_files::Row> = checks
            .iter()
            .map(|(c, secs)| crate::report_files::Row {
                source: c.source.clone(),
                destination: format!("{}:{}", c.repository, c.tag),
                source_digest: c
                    .rows
                    .first()
                    .and_then(|r| r.source.clone())
                    .unwrap_or_default(),
                dest_digest: c
                    .rows
                    .first()
                    .and_then(|r| r.ecr.clone())
                    .unwrap_or_default(),
                platform_digests: c
                    .rows
                    .iter()
                    .map(|r| format!("{}={}", r.platform, r.ecr.as_deref().unwrap_or("-")))
                    .collect::<Vec<_>>()
                    .join(" "),
                action: "verify".into(),
                outcome: if c.ok() { "match" } else { "mismatch" }.into(),
                reason: c.error.clone().unwrap_or_else(|| {
                    c.rows
                        .iter()
                        .filter(|r| !r.matches)
                        .map(|r| r.platform.clone())
                        .collect::<Vec<_>>()
                        .join(" ")
                }),
                bytes: 0,
                duration_secs: *secs,
            })
            .collect();
        write_report_files(dir, &rows)?;
    }
    tracing::debug!(secs = started.elapsed().as_secs_f64(), "verify done");
    Ok(u8::from(bad > 0))
}
