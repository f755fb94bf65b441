//! The estate: the marked ECR repositories, discovered through the control plane and
//! (optionally) observed on both sides, pipelined.

use std::sync::Arc;

use crate::ecr::sdk::SdkEcr;
use crate::mirror::discover::{self, Discovered};
use crate::mirror::error::{Error, Result};
use crate::mirror::observe;
use crate::mirror::plan::{self, Action, Item};
use crate::mirror::shard::Shard;
use crate::mirror::sources::{self, Access, Sources};
use crate::mirror::tags::TagKeys;
use crate::oci::{PlatformFilter, Registry};
use crate::policy::Policy;

/// ListTagsForResource calls in flight during discovery.
const DISCOVERY_CONCURRENCY: usize = 16;
/// (repository, tag) observations in flight; each side is also bounded per registry.
pub const OBSERVE_CONCURRENCY: usize = 32;

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
    /// Per repository: its `upstream-referrers` selection, where it has one.
    pub referrers: std::collections::HashMap<String, String>,
}

/// One marked repository, for `list`.
pub struct RepoView {
    /// The ECR repository.
    pub name: String,
    /// The upstream repository, or `-`.
    pub upstream: String,
    /// The tags to mirror.
    pub tags: Vec<String>,
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

/// Discovers the estate without observing it.
pub async fn load(opts: &EstateOptions) -> Result<Estate> {
    Ok(load_observing(opts, None).await?.0)
}

/// Discovery, and, with `observe`, the observation of every item, pipelined: a repository's
/// tags are HEADed as soon as its resource tags are read, while discovery goes on with the
/// others (and the ECR token is fetched meanwhile), so a run costs about the longer of the two
/// phases instead of their sum.
pub async fn load_observing(
    opts: &EstateOptions,
    observe: Option<ObserveWith<'_>>,
) -> Result<(Estate, Option<Observation>)> {
    use futures::StreamExt;
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
        discover::read_specs(&api, candidates, keys, DISCOVERY_CONCURRENCY, &on_found).await
    };
    let observing = async {
        let Some(o) = &observe else {
            return Ok(None);
        };
        // No token and no registry traffic until the first marked repository shows up.
        let (Some(first), Some(host)) = (rx.next().await, &host) else {
            return Ok(None);
        };
        let dest = destination(&api, host, opts).await?;
        let items = futures::stream::iter([first]).chain(rx);
        let observed =
            observe::observe(items, o.sources, &dest, o.policy, OBSERVE_CONCURRENCY).await;
        Ok::<_, Error>(Some((dest, observed)))
    };
    let (discovery, observed) = tokio::join!(discovering, observing);
    let mut estate = Estate {
        api,
        items: vec![],
        repo_errors: vec![],
        registry_host: None,
        repositories: vec![],
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
pub fn repository_view(
    f: &Discovered,
    default_platforms: &PlatformFilter,
) -> (RepoView, Vec<Item>) {
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

/// The data-plane client of the estate's ECR registry `host`.
pub async fn destination(api: &SdkEcr, host: &str, opts: &EstateOptions) -> Result<Arc<Registry>> {
    let cfg =
        sources::ecr_registry(api.clone(), host, opts.endpoint.clone(), &opts.ecr_access).await?;
    Ok(Arc::new(Registry::new(cfg)?))
}

/// The plan of `estate`, with what was observed (nothing: every item an error).
pub fn plan_of(estate: &Estate, observation: &Option<Observation>) -> Vec<Action> {
    let none = Default::default();
    let observed = observation.as_ref().map_or(&none, |(_, o)| o);
    plan::plan(&estate.items, &estate.repo_errors, observed)
}
