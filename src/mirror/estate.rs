//! The estate: the marked ECR repositories, discovered through the control plane and
//! (optionally) observed on both sides, pipelined.
//!
//! A repository with a tag rule (`upstream-tag-rule`) has its upstream tag list read
//! ([`Registry::all_tags`], complete and paginated, once per upstream repository per run) as
//! soon as its resource tags are parsed, while discovery goes on; the rule's selection is
//! merged with the explicit tags ([`merge_tags`]) and those items flow on to observation. The
//! selection and what the rule left out, with why, are kept in [`Estate::rules`] for `list
//! --check` and `sync --dry-run`.

use std::sync::Arc;

use crate::ecr::sdk::SdkEcr;
use crate::mirror::discover::{self, Discovered};
use crate::mirror::error::{Error, Failure, Result};
use crate::mirror::observe;
use crate::mirror::plan::{self, Action, Item};
use crate::mirror::shard::Shard;
use crate::mirror::sources::{self, Access, Sources};
use crate::mirror::tag_rule::{merge_tags, Selection};
use crate::mirror::tags::TagKeys;
use crate::oci::{PlatformFilter, Registry};
use crate::policy::Policy;

/// ListTagsForResource calls in flight during discovery.
const DISCOVERY_CONCURRENCY: usize = 16;
/// (repository, tag) observations in flight against a destination that allows `max_in_flight`
/// requests at once (`--max-requests`). Each observation is one HEAD per side, and each side is
/// also bounded by its own registry's limit, so items beyond the limit only wait at a semaphore.
/// Twice the limit keeps every slot busy while some items wait for a repository's bearer token
/// (which takes no slot, see `transport::send_with`) or for a slower upstream registry. A fixed
/// 32 here used to cap the no-op at 32 items in flight whatever `--max-requests` said (W6/W7,
/// docs/benchmarks.md).
pub fn observe_concurrency(max_in_flight: usize) -> usize {
    2 * max_in_flight.max(1)
}
/// Repositories being resolved at once (a tag rule lists upstream tags; without one,
/// resolving is immediate). Each registry also bounds its own requests in flight.
const RESOLVE_CONCURRENCY: usize = 16;

/// Discovery results turned into items, with the run's ECR client.
pub struct Estate {
    /// The run's ECR control-plane client.
    pub api: SdkEcr,
    /// One per (repository, tag) to keep in sync.
    pub items: Vec<Item>,
    /// Repositories whose resource tags could not be turned into a spec, with why.
    pub repo_errors: Vec<(String, String)>,
    /// `<account>.dkr.ecr.<region>.amazonaws.com`, from the repositories' URIs.
    pub registry_host: Option<String>,
    /// Every marked repository, as `list` shows it.
    pub repositories: Vec<RepoView>,
    /// What each repository's tag rule selected and left out, by repository name (only
    /// repositories with a rule).
    pub rules: Vec<RuleView>,
    /// Per repository: its `upstream-referrers` selection, where it has one.
    pub referrers: std::collections::HashMap<String, String>,
}

/// What one repository's tag rule made of its upstream tag list.
#[derive(Clone, Debug)]
pub struct RuleView {
    /// The ECR repository.
    pub repository: String,
    /// The upstream repository.
    pub upstream: String,
    /// The rule, in its canonical form.
    pub rule: String,
    /// The rule's selection from the upstream tags (`None` when upstream was not listed:
    /// `list` without `--check`), or why the upstream tags could not be listed.
    pub selection: Option<Result<Selection, Failure>>,
    /// How many tags upstream has.
    pub upstream_tags: usize,
    /// Tags in ECR that are neither explicit nor selected any more (`list --check` only; see
    /// [`find_unselected`]): they stay in ECR, nothing is deleted. Byte order.
    pub unselected: Option<Result<Vec<String>, Failure>>,
}

/// One marked repository, for `list`.
pub struct RepoView {
    /// The ECR repository.
    pub name: String,
    /// The upstream repository, or `-`.
    pub upstream: String,
    /// The tags to mirror: the explicit ones, then a rule's selection (when it was resolved).
    pub tags: Vec<String>,
    /// The tag rule, in its canonical form, if any.
    pub rule: Option<String>,
    /// The platform filter, as text.
    pub platforms: String,
    /// Why the repository's tags could not be read, if so.
    pub error: Option<String>,
}

/// What to observe while the estate is discovered (`sync`, `list --check`).
pub struct ObserveWith<'a> {
    /// The upstream registries.
    pub sources: &'a Sources,
    /// The trust policy, applied to items that would be copied.
    pub policy: &'a Policy,
}

/// The ECR destination and what was observed of every item.
pub type Observation = (
    Arc<Registry>,
    std::collections::BTreeMap<(String, String), plan::Observed>,
);

/// Which repositories to discover, and how to reach ECR's data plane.
#[derive(Clone, Debug)]
pub struct EstateOptions {
    /// The resource-tag keys.
    pub keys: TagKeys,
    /// Only repositories named `PREFIX/...` (validated by the caller).
    pub prefix: Option<String>,
    /// Only this shard's repositories.
    pub shard: Option<Shard>,
    /// The platform filter of repositories that do not name one.
    pub default_platforms: PlatformFilter,
    /// The AWS region (`None`: the SDK's chain).
    pub region: Option<String>,
    /// Where ECR data-plane requests go instead of the token's `proxyEndpoint`.
    pub endpoint: Option<String>,
    /// TLS and network settings for ECR's data plane (credentials come from the token).
    pub ecr_access: Access,
}

/// Discovers the estate without observing it, and without applying tag rules (no upstream
/// request: a rule's repository has its explicit tags only).
pub async fn load(opts: &EstateOptions) -> Result<Estate> {
    Ok(load_inner(opts, None, None).await?.0)
}

/// Discovers the estate and applies tag rules (listing upstream tags through `sources`),
/// without observing it.
pub async fn load_resolving(opts: &EstateOptions, sources: &Sources) -> Result<Estate> {
    Ok(load_inner(opts, Some(sources), None).await?.0)
}

/// Discovery, and, with `observe`, the observation of every item, pipelined: a repository's
/// tags are HEADed as soon as its resource tags are read, while discovery goes on with the
/// others (and the ECR token is fetched meanwhile), so a run costs about the longer of the two
/// phases instead of their sum.
pub async fn load_observing(
    opts: &EstateOptions,
    observe: Option<ObserveWith<'_>>,
) -> Result<(Estate, Option<Observation>)> {
    let sources = observe.as_ref().map(|o| o.sources);
    load_inner(opts, sources, observe.as_ref().map(|o| o.policy)).await
}

/// Discovery; with `rule_sources`, tag rules applied; with `observe_policy` (which needs
/// `rule_sources`), every item observed. All pipelined: discovery → resolution → observation.
async fn load_inner(
    opts: &EstateOptions,
    rule_sources: Option<&Sources>,
    observe_policy: Option<&Policy>,
) -> Result<(Estate, Option<Observation>)> {
    use futures::StreamExt;
    let observe = match (rule_sources, observe_policy) {
        (Some(sources), Some(policy)) => Some(ObserveWith { sources, policy }),
        _ => None,
    };
    let default_platforms = &opts.default_platforms;
    let keys = &opts.keys;
    let api = SdkEcr::from_env(opts.region.clone()).await;
    let mut candidates = discover::candidates(&api, opts.prefix.as_deref()).await?;
    // A shard reads only its own repositories' tags.
    if let Some(s) = &opts.shard {
        candidates.retain(|r| s.owns(&r.name));
    }
    // `<account>.dkr.ecr.<region>.amazonaws.com`: every repository's URI starts with it.
    let host = candidates
        .first()
        .and_then(|r| r.uri.split('/').next())
        .map(str::to_string);
    let (tx, rx) = futures::channel::mpsc::unbounded::<Discovered>();
    let discovering = async {
        let tx = tx; // dropped when discovery ends, which ends the resolution's stream
        let on_found = |f: &Discovered| {
            let _ = tx.unbounded_send(f.clone());
        };
        discover::read_specs(&api, candidates, keys, DISCOVERY_CONCURRENCY, &on_found).await
    };
    // Each discovered repository is resolved (its rule applied) as soon as it is found, and
    // its items go on to observation; the resolutions are kept for the estate.
    let resolved = std::sync::Mutex::new(std::collections::HashMap::<String, Resolved>::new());
    let mut items = rx
        .map(|f| async move { resolve(&f, default_platforms, rule_sources).await })
        .buffer_unordered(RESOLVE_CONCURRENCY)
        .flat_map(|r| {
            let items = r.items.clone();
            resolved
                .lock()
                .expect("not poisoned")
                .insert(r.view.name.clone(), r);
            futures::stream::iter(items)
        })
        .boxed();
    let observing = async {
        let Some(o) = &observe else {
            // Resolve everything (the rules' listings), observe nothing.
            while items.next().await.is_some() {}
            return Ok(None);
        };
        // No token and no registry traffic until the first marked repository shows up.
        let (Some(first), Some(host)) = (items.next().await, &host) else {
            while items.next().await.is_some() {}
            return Ok(None);
        };
        let dest = destination(&api, host, opts).await?;
        let items = futures::stream::iter([first]).chain(&mut items);
        let observed = observe::observe(
            items,
            o.sources,
            &dest,
            o.policy,
            observe_concurrency(dest.max_in_flight()),
        )
        .await;
        Ok::<_, Error>(Some((dest, observed)))
    };
    let (discovery, observed) = tokio::join!(discovering, observing);
    drop(items);
    let mut resolved = resolved.into_inner().expect("not poisoned");
    let mut estate = Estate {
        api,
        items: vec![],
        repo_errors: vec![],
        registry_host: None,
        repositories: vec![],
        rules: vec![],
        referrers: Default::default(),
    };
    for f in discovery.items {
        if estate.registry_host.is_none() {
            estate.registry_host = f.repository.uri.split('/').next().map(str::to_string);
        }
        if let Ok(spec) = &f.spec {
            if let Some(r) = &spec.referrers {
                estate.referrers.insert(spec.repository.clone(), r.clone());
            }
        }
        let r = match resolved.remove(&f.repository.name) {
            Some(r) => r,
            // Not reached: every discovered repository went through the resolution stream.
            None => resolve(&f, default_platforms, None).await,
        };
        if let Some(e) = &r.view.error {
            estate
                .repo_errors
                .push((f.repository.name.clone(), e.clone()));
        }
        estate.repositories.push(r.view);
        estate.items.extend(r.items);
        estate.rules.extend(r.rule);
    }
    Ok((estate, observed?))
}

/// One discovered repository, resolved: as `list` shows it, its items, and its rule's outcome.
struct Resolved {
    view: RepoView,
    items: Vec<Item>,
    rule: Option<RuleView>,
}

/// Applies `f`'s tag rule, if it has one and `sources` are given: lists the upstream tags,
/// selects, and merges the selection after the explicit tags. A listing that fails is an error
/// for this repository's rule only: the explicit tags are still mirrored.
async fn resolve(
    f: &Discovered,
    default_platforms: &PlatformFilter,
    sources: Option<&Sources>,
) -> Resolved {
    let (mut view, mut items) = repository_view(f, default_platforms);
    let Ok(spec) = &f.spec else {
        return Resolved {
            view,
            items,
            rule: None,
        };
    };
    let Some(rule) = &spec.rule else {
        return Resolved {
            view,
            items,
            rule: None,
        };
    };
    let mut rv = RuleView {
        repository: spec.repository.clone(),
        upstream: spec.upstream.to_string(),
        rule: rule.to_string(),
        selection: None,
        upstream_tags: 0,
        unselected: None,
    };
    if let Some(sources) = sources {
        let listed = async {
            let reg = sources
                .get(&spec.upstream.registry)
                .await
                .map_err(|e| Failure::from(&e))?;
            reg.all_tags(&spec.upstream.repository)
                .await
                .map_err(|e| Failure::from(&*e))
        };
        match listed.await {
            Ok(upstream_tags) => {
                let selection = rule.select(&upstream_tags);
                tracing::info!(
                    repo = %spec.repository,
                    upstream = %spec.upstream,
                    rule = %rule,
                    upstream_tags = upstream_tags.len(),
                    selected = selection.selected.len(),
                    "tag rule applied"
                );
                let merged = merge_tags(&spec.tags, &selection.selected);
                let platforms = items
                    .first()
                    .map(|i: &Item| i.platforms.clone())
                    .unwrap_or_else(|| effective_platforms(&spec.platforms, default_platforms));
                items = merged
                    .iter()
                    .map(|tag| Item {
                        repository: spec.repository.clone(),
                        tag: tag.clone(),
                        source: spec.upstream.at_tag(tag),
                        platforms: platforms.clone(),
                        immutable: f.repository.tag_mutability.is_immutable(tag),
                    })
                    .collect();
                view.tags = merged;
                rv.upstream_tags = upstream_tags.len();
                rv.selection = Some(Ok(selection));
            }
            Err(e) => {
                tracing::warn!(repo = %spec.repository, upstream = %spec.upstream, error = %e,
                    "cannot list the upstream tags for the tag rule; only the explicit tags are mirrored");
                rv.selection = Some(Err(Failure::new(
                    e.label,
                    format!(
                        "repository {:?}: cannot apply the tag rule: {}",
                        spec.repository, e.message
                    ),
                )));
            }
        }
    }
    Resolved {
        view,
        items,
        rule: Some(rv),
    }
}

fn effective_platforms(
    spec: &PlatformFilter,
    default_platforms: &PlatformFilter,
) -> PlatformFilter {
    match (spec, default_platforms) {
        (PlatformFilter::All, d) => d.clone(),
        (p, _) => p.clone(),
    }
}

/// Fills each rule's [`RuleView::unselected`]: the tags in ECR (`dest`'s complete tag list)
/// that the repository no longer mirrors, neither explicit nor selected. Signature and
/// attestation tags (`sha256-<hex>.sig`, `.att`, `.sbom`, and the referrers fallback
/// `sha256-<hex>`) travel with their images and are not counted. Nothing is deleted.
pub async fn find_unselected(estate: &mut Estate, dest: &Registry) {
    use futures::StreamExt;
    let wanted: std::collections::HashMap<&str, &Vec<String>> = estate
        .repositories
        .iter()
        .map(|r| (r.name.as_str(), &r.tags))
        .collect();
    let found: Vec<Option<Result<Vec<String>, Failure>>> =
        futures::stream::iter(estate.rules.iter().map(|rv| {
            let tags = wanted.get(rv.repository.as_str()).copied();
            async move {
                // Only a rule that was applied: otherwise what it selects is unknown.
                if !matches!(rv.selection, Some(Ok(_))) {
                    return None;
                }
                let in_ecr = match dest.all_tags(&rv.repository).await {
                    Ok(t) => t,
                    Err(e) => return Some(Err(Failure::from(&*e))),
                };
                let mut out: Vec<String> = in_ecr
                    .iter()
                    .filter(|t| !is_signature_tag(t))
                    .filter(|t| !tags.is_some_and(|w| w.contains(t)))
                    .cloned()
                    .collect();
                out.sort();
                out.dedup();
                Some(Ok(out))
            }
        }))
        .buffered(RESOLVE_CONCURRENCY)
        .collect()
        .await;
    for (rv, u) in estate.rules.iter_mut().zip(found) {
        rv.unselected = u;
    }
}

/// `sha256-<64 hex>`, optionally followed by `.sig`, `.att` or `.sbom`: cosign's tags and the
/// OCI referrers fallback tag, which are copied with the image they refer to.
fn is_signature_tag(tag: &str) -> bool {
    let Some(rest) = tag.strip_prefix("sha256-") else {
        return false;
    };
    let (hex, suffix) = rest.split_at(rest.len().min(64));
    hex.len() == 64
        && hex.bytes().all(|b| b.is_ascii_hexdigit())
        && matches!(suffix, "" | ".sig" | ".att" | ".sbom")
}

/// One discovered repository as `list` shows it, and its items (none when its tags are bad).
pub fn repository_view(
    f: &Discovered,
    default_platforms: &PlatformFilter,
) -> (RepoView, Vec<Item>) {
    match &f.spec {
        Ok(spec) => {
            let platforms = effective_platforms(&spec.platforms, default_platforms);
            let items = spec
                .tags
                .iter()
                .map(|tag| Item {
                    repository: spec.repository.clone(),
                    tag: tag.clone(),
                    source: spec.upstream.at_tag(tag),
                    platforms: platforms.clone(),
                    immutable: f.repository.tag_mutability.is_immutable(tag),
                })
                .collect();
            let view = RepoView {
                name: spec.repository.clone(),
                upstream: spec.upstream.to_string(),
                tags: spec.tags.clone(),
                rule: spec.rule.as_ref().map(ToString::to_string),
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
                rule: None,
                platforms: "-".into(),
                error: Some(e.to_string()),
            };
            (view, vec![])
        }
    }
}

/// The data-plane client of the estate's ECR registry `host`.
pub async fn destination(api: &SdkEcr, host: &str, opts: &EstateOptions) -> Result<Arc<Registry>> {
    let cfg =
        sources::ecr_registry(api.clone(), host, opts.endpoint.clone(), &opts.ecr_access).await?;
    Ok(Arc::new(Registry::new(cfg)?))
}

/// The plan of `estate`, with what was observed (nothing: every item an error). A tag rule
/// whose upstream tags could not be listed is one failed action for its repository (with the
/// listing's label), next to the actions of its explicit tags.
pub fn plan_of(estate: &Estate, observation: &Option<Observation>) -> Vec<Action> {
    let none = Default::default();
    let observed = observation.as_ref().map_or(&none, |(_, o)| o);
    let mut actions = plan::plan(&estate.items, &estate.repo_errors, observed);
    let rule_errors = estate.rules.iter().filter_map(|rv| match &rv.selection {
        Some(Err(e)) => Some(Action {
            repository: rv.repository.clone(),
            source: Some(rv.upstream.clone()),
            kind: plan::ActionKind::Error(e.clone()),
            ..Action::default()
        }),
        _ => None,
    });
    actions.extend(rule_errors);
    actions.sort_by(|x, y| (&x.repository, &x.tag).cmp(&(&y.repository, &y.tag)));
    actions
}
