//! `verify`: compare each platform's digest on both sides, for `--all` and filtered mirrors.
//!
//! A `--all` mirror must hold the upstream index byte for byte, so its index digest is
//! compared as well as every child. A filtered mirror's index differs by design: its children
//! are compared, and its index must record the upstream index digest
//! ([`crate::spec::SOURCE_DIGEST_ANNOTATION`]).

use std::collections::BTreeMap;

use crate::plan::Item;
use crate::registry::manifest::{platform_string, recorded_source_digest, select_children, Parsed};
use crate::registry::Registry;
use crate::spec::PlatformFilter;

/// One compared row.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Row {
    /// `os/arch[/variant]`, `index` for the index itself, or `image` for a single manifest.
    pub platform: String,
    /// Upstream digest, when present.
    pub source: Option<String>,
    /// ECR digest, when present.
    pub ecr: Option<String>,
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
pub async fn check(item: &Item, src: &Registry, ecr: &Registry) -> ImageCheck {
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
        let (matches, ecr_side) = match &item.platforms {
            PlatformFilter::All => (down_top == up_top, Some(down_top.clone())),
            // A filtered index records the upstream digest it was made from.
            PlatformFilter::Only(_) => (
                recorded.as_deref() == Some(up_top.as_str()),
                recorded.clone(),
            ),
        };
        c.rows.push(Row {
            platform: "index".into(),
            source: Some(up_top),
            ecr: ecr_side,
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
        });
    }
    // Platforms in ECR that upstream (under this filter) does not have are a mismatch too.
    for (platform, digest) in &down_kids {
        if !(up_kids.contains_key(platform) || single && platform == "image") {
            c.rows.push(Row {
                platform: platform.clone(),
                source: None,
                ecr: Some(digest.clone()),
                matches: false,
            });
        }
    }
    c
}
