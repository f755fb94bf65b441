//! `verify`: compare each platform's digest on both sides, for `--all` and filtered mirrors.
//!
//! A `--all` mirror must hold the upstream index byte for byte, so its index digest is
//! compared as well as every child. A filtered mirror's index differs by design: its children
//! are compared, and its index must record the upstream index digest
//! ([`crate::oci::SOURCE_DIGEST_ANNOTATION`]).
//!
//! The referrers selected for a repository (`--referrers`, its `upstream-referrers` tag) are
//! compared too: each one upstream of a compared manifest must be in ECR (a row
//! `referrer <artifact type>`). Referrers of referrers are not followed here.

use std::collections::BTreeMap;

use crate::mirror::plan::Item;
use crate::oci::manifest::{platform_string, recorded_source_digest, select_children, Parsed};
use crate::oci::referrers::{self, ReferrerFilter};
use crate::oci::PlatformFilter;
use crate::oci::Registry;

/// One compared row.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Row {
    /// `os/arch[/variant]`, `index` for the index itself, or `image` for a single manifest.
    pub platform: String,
    /// Upstream digest, when present.
    pub source: Option<String>,
    /// ECR digest, when present. For the index row of a platform-filtered mirror this is the
    /// digest of the filtered index that ECR holds (it differs from upstream by design).
    pub ecr: Option<String>,
    /// For the index row of a platform-filtered mirror: the upstream index digest that the
    /// ECR index records, which is what is compared with `source`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recorded_source: Option<String>,
    /// Whether they agree.
    pub matches: bool,
}

/// The verdict for one (repository, tag).
#[derive(Clone, Debug, serde::Serialize)]
pub struct ImageCheck {
    /// ECR repository.
    pub repository: String,
    /// Tag.
    pub tag: String,
    /// Upstream reference.
    pub source: String,
    /// Per-platform rows.
    pub rows: Vec<Row>,
    /// Why it could not be compared (e.g. a tag missing on one side).
    pub error: Option<String>,
}

impl ImageCheck {
    /// Whether every row matches and nothing failed.
    pub fn ok(&self) -> bool {
        self.error.is_none() && !self.rows.is_empty() && self.rows.iter().all(|r| r.matches)
    }
}

/// Per-platform digests of a manifest: `platform → digest`, with `index` for an index.
async fn digests(
    reg: &Registry,
    repo: &str,
    reference: &str,
    filter: &PlatformFilter,
) -> Result<(String, BTreeMap<String, String>, Option<String>), String> {
    let m = reg
        .get_manifest(repo, reference)
        .await
        .map_err(|e| e.to_string())?;
    let mut out = BTreeMap::new();
    match m.parse(reference).map_err(|e| e.to_string())? {
        Parsed::Image(_) => {
            out.insert("image".to_string(), m.digest.clone());
        }
        Parsed::Index(idx) => {
            for e in select_children(&idx, filter) {
                out.insert(platform_string(e), e.digest.clone());
            }
        }
    }
    Ok((m.digest.clone(), out, recorded_source_digest(&m.bytes)))
}

/// Compares one item. Upstream is read with GET (verify is an audit, not the nightly path).
/// With a referrer selection, each selected referrer upstream of a compared manifest must be
/// in ECR too: one row `referrer <artifact type>` each.
pub async fn check(
    item: &Item,
    src: &Registry,
    ecr: &Registry,
    referrers: &ReferrerFilter,
) -> ImageCheck {
    let mut c = ImageCheck {
        repository: item.repository.clone(),
        tag: item.tag.clone(),
        source: item.source.to_string(),
        rows: vec![],
        error: None,
    };
    let up = digests(
        src,
        &item.source.image.repository,
        item.source.reference(),
        &item.platforms,
    )
    .await;
    let down = digests(ecr, &item.repository, &item.tag, &PlatformFilter::All).await;
    let ((up_top, up_kids, _), (down_top, down_kids, recorded)) = match (up, down) {
        (Err(e), _) => {
            c.error = Some(format!("upstream: {e}"));
            return c;
        }
        (_, Err(e)) => {
            c.error = Some(format!("ECR: {e}"));
            return c;
        }
        (Ok(u), Ok(d)) => (u, d),
    };
    let single = up_kids.contains_key("image");
    if !single {
        let (matches, recorded_source) = match &item.platforms {
            PlatformFilter::All => (down_top == up_top, None),
            // A filtered index records the upstream digest it was made from.
            PlatformFilter::Only(_) => (
                recorded.as_deref() == Some(up_top.as_str()),
                Some(recorded.clone().unwrap_or_else(|| "-".into())),
            ),
        };
        c.rows.push(Row {
            platform: "index".into(),
            source: Some(up_top.clone()),
            ecr: Some(down_top.clone()),
            recorded_source,
            matches,
        });
    }
    for (platform, digest) in &up_kids {
        let theirs = down_kids.get(platform).cloned();
        c.rows.push(Row {
            platform: platform.clone(),
            source: Some(digest.clone()),
            matches: theirs.as_deref() == Some(digest.as_str()),
            ecr: theirs,
            recorded_source: None,
        });
    }
    // Platforms in ECR that upstream (under this filter) does not have are a mismatch too.
    for (platform, digest) in &down_kids {
        if !(up_kids.contains_key(platform) || single && platform == "image") {
            c.rows.push(Row {
                platform: platform.clone(),
                source: None,
                ecr: Some(digest.clone()),
                recorded_source: None,
                matches: false,
            });
        }
    }
    if !referrers.is_none() {
        // The manifests whose referrers travel: each copied child, and the index itself when
        // it is copied as is (a filtered index is a new manifest; upstream's referrers of the
        // index do not apply to it).
        let mut subjects: Vec<&String> = up_kids.values().collect();
        if !single && item.platforms == PlatformFilter::All {
            subjects.push(&up_top);
        }
        for subject in subjects {
            match compare_referrers(item, src, ecr, subject, referrers).await {
                Ok(rows) => c.rows.extend(rows),
                Err(e) => {
                    c.error = Some(format!("referrers of {subject}: {e}"));
                    return c;
                }
            }
        }
    }
    c
}

/// One row per selected referrer of `subject` upstream: present in ECR, or not.
async fn compare_referrers(
    item: &Item,
    src: &Registry,
    ecr: &Registry,
    subject: &str,
    filter: &ReferrerFilter,
) -> Result<Vec<Row>, String> {
    let up = referrers::find(src, &item.source.image.repository, subject, filter)
        .await
        .map_err(|e| format!("upstream: {e}"))?;
    let down = referrers::find(ecr, &item.repository, subject, filter)
        .await
        .map_err(|e| format!("ECR: {e}"))?;
    let in_ecr: std::collections::HashSet<&str> =
        down.iter().map(|f| f.descriptor.digest.as_str()).collect();
    Ok(up
        .iter()
        .filter(|f| {
            f.descriptor
                .artifact_type
                .as_deref()
                .is_none_or(|t| filter.selects(t))
        })
        .map(|f| {
            let d = &f.descriptor.digest;
            let present = in_ecr.contains(d.as_str());
            Row {
                platform: format!(
                    "referrer {}",
                    f.descriptor.artifact_type.as_deref().unwrap_or("?")
                ),
                source: Some(d.clone()),
                ecr: present.then(|| d.clone()),
                recorded_source: None,
                matches: present,
            }
        })
        .collect())
}

/// The result of verifying an estate.
#[derive(Debug, Default)]
pub struct VerifyRun {
    /// One check per (repository, tag), with the seconds it took, in plan order.
    pub checks: Vec<(ImageCheck, f64)>,
    /// Repositories whose resource tags could not be read, with why.
    pub repo_errors: Vec<(String, String)>,
}

/// Verifies every item of the estate (or of one repository, `only`). `Ok(None)` when `only`
/// names no marked repository.
pub async fn verify_estate(
    opts: &crate::mirror::estate::EstateOptions,
    sources: &crate::mirror::sources::Sources,
    only: Option<&str>,
    referrers: &crate::mirror::referrers::Referrers,
) -> crate::mirror::Result<Option<VerifyRun>> {
    use crate::mirror::estate;
    use futures::StreamExt;
    let mut found = estate::load_resolving(opts, sources).await?;
    if let Some(only) = only {
        found.items.retain(|i| i.repository == only);
        found.repo_errors.retain(|(r, _)| r == only);
        if found.items.is_empty() && found.repo_errors.is_empty() {
            return Ok(None);
        }
    }
    let mut run = VerifyRun {
        checks: vec![],
        repo_errors: std::mem::take(&mut found.repo_errors),
    };
    let Some(host) = &found.registry_host else {
        return Ok(Some(run));
    };
    let d = estate::destination(&found.api, host, opts).await?;
    let referrers = referrers.with_repository_tags(&found.referrers);
    run.checks = futures::stream::iter(found.items.iter().map(|item| {
        let d = &d;
        let filter = referrers.for_repo(&item.repository);
        async move {
            let t = std::time::Instant::now();
            let c = match sources.get(&item.source.image.registry).await {
                Ok(src) => check(item, &src, d, &filter).await,
                Err(e) => ImageCheck {
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
    .buffered(estate::observe_concurrency(d.max_in_flight()))
    .collect::<Vec<_>>()
    .await;
    Ok(Some(run))
}
