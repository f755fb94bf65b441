//! Referrers: the artifacts that point at a manifest (signatures, SBOMs, attestations, sigstore
//! bundles), found and copied with the image they describe.
//!
//! Finding them, for one subject digest in the source repository:
//! 1. the referrers API, `GET /v2/<name>/referrers/<digest>` (OCI distribution 1.1), following
//!    `Link: <...>; rel="next"` pages, with `?artifactType=` when exactly one type is wanted
//!    (the answer is filtered again here: a registry may ignore the filter, and says so by
//!    leaving `OCI-Filters-Applied` out);
//! 2. where the API answers 404, the referrers tag schema: an index tagged `sha256-<hex>`;
//! 3. the legacy cosign tags `sha256-<hex>.sig`, `.att` and `.sbom`.
//!
//! Tags are looked up through the run's one tag listing per repository
//! ([`Registry::listed_tags`]), so a registry without the API costs one request per subject (the
//! API's 404), not one per tag kind.
//!
//! Copying them (`oci::copy::referrers`): each artifact byte for byte (its digest kept), its blobs
//! first, then its manifest by digest, then its own referrers (a signature on an SBOM), depth
//! first and bounded. All of it happens before the image's tag moves, so a tag in the
//! destination means its referrers were complete when it moved. Into a registry with the API the
//! manifest is pushed with its `subject` and the registry indexes it (it answers the PUT with
//! `OCI-Subject`); into one without, the `sha256-<hex>` index there is read, the new entries
//! are appended after the ones other tools wrote, and it is written once per subject.
//!
//! A registry that refuses a referrer with 405 (ECR for a subject that is an index,
//! containers-roadmap #2783) fails that artifact only: it is reported, the image is copied.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

use reqwest::header::ACCEPT;
use reqwest::{Method, StatusCode};

use super::manifest::Manifest;
use super::transport::Access;
use super::transport::Registry;
use super::RegistryError;

/// The media type of a referrers list and of a fallback index.
pub const INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";

/// The artifact type given to a legacy cosign `.sig` tag (the media type of its layers).
pub const COSIGN_SIG_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// The artifact type given to a legacy cosign `.att` tag (the media type of its layers).
pub const COSIGN_ATT_TYPE: &str = "application/vnd.dsse.envelope.v1+json";
/// The artifact type given to a legacy cosign `.sbom` tag.
pub const COSIGN_SBOM_TYPE: &str = "application/vnd.dev.cosign.artifact.sbom.v1+json";

/// The legacy cosign tag suffixes, with the artifact type each is reported and selected as.
pub const COSIGN_TAGS: [(&str, &str); 3] = [
    ("sig", COSIGN_SIG_TYPE),
    ("att", COSIGN_ATT_TYPE),
    ("sbom", COSIGN_SBOM_TYPE),
];

/// How many pages of one referrers list are read at most.
const MAX_PAGES: usize = 32;

/// Which referrers travel with an image.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ReferrerFilter {
    /// Every referrer (a full-fidelity mirror).
    #[default]
    All,
    /// None.
    None,
    /// Those whose artifact type is one of these (full media types; an entry without
    /// parameters also matches the type with parameters, e.g. `...bundle+json;version=0.2`).
    Types(BTreeSet<String>),
}

impl ReferrerFilter {
    /// Whether an artifact of type `artifact_type` travels.
    pub fn selects(&self, artifact_type: &str) -> bool {
        match self {
            ReferrerFilter::All => true,
            ReferrerFilter::None => false,
            ReferrerFilter::Types(t) => {
                let essence = artifact_type.split(';').next().unwrap_or("").trim();
                t.contains(artifact_type) || t.contains(essence)
            }
        }
    }

    /// Whether nothing travels.
    pub fn is_none(&self) -> bool {
        match self {
            ReferrerFilter::None => true,
            ReferrerFilter::Types(t) => t.is_empty(),
            ReferrerFilter::All => false,
        }
    }

    /// The one type to ask the API for, when exactly one is wanted.
    fn single(&self) -> Option<&str> {
        match self {
            ReferrerFilter::Types(t) if t.len() == 1 => t.iter().next().map(String::as_str),
            _ => None,
        }
    }
}

/// A descriptor in a referrers list or fallback index.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// The manifest's media type.
    pub media_type: String,
    /// Its digest.
    pub digest: String,
    /// Its size in bytes.
    pub size: i64,
    /// Its artifact type (`artifactType`, else the config's media type).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// Its annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

#[derive(serde::Deserialize)]
struct ListBody {
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

/// Where a referrer was found in the source.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Via {
    /// The referrers API.
    Api,
    /// The `sha256-<hex>` fallback index.
    FallbackTag,
    /// A legacy cosign tag (`.sig`, `.att`, `.sbom`).
    CosignTag,
}

/// What happened to one referrer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReferrerOutcome {
    /// Copied in this run.
    Copied,
    /// The destination already listed it.
    Present,
    /// Its artifact type is not selected.
    Skipped,
    /// The destination refused it; the image was copied anyway.
    Failed,
}

/// One referrer of a copied manifest, as the report shows it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ReferrerReport {
    /// The digest it refers to (a copied manifest, or another referrer).
    pub subject: String,
    /// Its digest (kept: the bytes are copied as they are).
    pub digest: String,
    /// Its artifact type.
    pub artifact_type: String,
    /// Where it was found.
    pub via: Via,
    /// The tag it is stored under, for a legacy cosign tag.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// What happened.
    pub outcome: ReferrerOutcome,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The error behind a failure, for classification.
    #[serde(skip)]
    pub error: Option<Arc<RegistryError>>,
}

/// A referrer found in the source.
#[derive(Clone, Debug)]
pub struct Found {
    /// Its descriptor (for a cosign tag: made from a HEAD; size 0 until fetched).
    pub descriptor: Descriptor,
    /// Where it was found.
    pub via: Via,
    /// The tag, for a cosign tag.
    pub tag: Option<String>,
}

/// `sha256-<hex>` for `sha256:<hex>`: the fallback tag of a digest.
pub fn fallback_tag(digest: &str) -> String {
    digest.replacen(':', "-", 1)
}

/// The `rel="next"` target of a `Link` header.
fn next_link(link: &str) -> Option<String> {
    link.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        params
            .split(';')
            .any(|p| {
                let p = p.trim().replace(' ', "");
                p == "rel=\"next\"" || p == "rel=next"
            })
            .then(|| {
                target
                    .trim()
                    .trim_start_matches('<')
                    .trim_end_matches('>')
                    .to_string()
            })
    })
}

impl Registry {
    /// The referrers of `digest` in `repo` through the referrers API, all pages. `Ok(None)`
    /// when the registry has no such API (404).
    pub async fn list_referrers(
        &self,
        repo: &str,
        digest: &str,
        artifact_type: Option<&str>,
    ) -> Result<Option<Vec<Descriptor>>, RegistryError> {
        let what = format!("referrers of {repo}@{digest}");
        // The distribution spec: a registry that supports the referrers API "MUST NOT return a
        // 404 Not Found to a referrers API request" (it answers an empty list). So one 404
        // shows the repository has no API, and its other subjects go straight to the fallback
        // tag: a cold mirror of N manifests costs one 404 per repository, not N (oras-go keeps
        // the same per-repository capability).
        if self
            .no_referrers_api
            .lock()
            .expect("not poisoned")
            .contains(repo)
        {
            return Ok(None);
        }
        let scopes = Self::scope_key(repo, Access::Pull, None);
        let mut url = format!("/v2/{repo}/referrers/{digest}");
        if let Some(t) = artifact_type {
            url = format!("{url}?artifactType={}", urlencode(t));
        }
        let mut all = Vec::new();
        for page in 0..MAX_PAGES {
            let (status, next, body) = self
                .retrying(&what, || async {
                    let res = self
                        .send(
                            Method::GET,
                            &url,
                            &scopes,
                            &what,
                            &[StatusCode::OK, StatusCode::NOT_FOUND],
                            &|rb| rb.header(ACCEPT, INDEX_MEDIA_TYPE),
                        )
                        .await?;
                    let status = res.status();
                    let next = res
                        .headers()
                        .get(reqwest::header::LINK)
                        .and_then(|v| v.to_str().ok())
                        .and_then(next_link)
                        .map(|n| res.url().join(&n).map(|u| u.to_string()).unwrap_or(n));
                    let body = self.read_limited(res, &what).await?;
                    Ok((status, next, body))
                })
                .await?;
            if status == StatusCode::NOT_FOUND {
                if page == 0 {
                    self.no_referrers_api
                        .lock()
                        .expect("not poisoned")
                        .insert(repo.to_string());
                    return Ok(None);
                }
                break;
            }
            let list: ListBody =
                serde_json::from_slice(&body).map_err(|e| RegistryError::Invalid {
                    what: what.clone(),
                    reason: format!("not a referrers list: {e}"),
                })?;
            all.extend(list.manifests);
            match next {
                Some(n) => url = n,
                None => break,
            }
        }
        Ok(Some(all))
    }

    /// GETs a manifest, `Ok(None)` on 404.
    pub async fn get_manifest_if_any(
        &self,
        repo: &str,
        reference: &str,
    ) -> Result<Option<Manifest>, RegistryError> {
        match self.get_manifest(repo, reference).await {
            Ok(m) => Ok(Some(m)),
            Err(RegistryError::Status { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Whether `repo` may have the tag: `false` only when the run's complete tag listing
    /// lacks it.
    async fn may_have_tag(&self, repo: &str, tag: &str) -> bool {
        match self.listed_tags(repo).await {
            Some(tags) => tags.contains(tag),
            None => true,
        }
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The referrers of `digest` in `repo`: the API, else the fallback index; and the cosign tags.
pub async fn find(
    reg: &Registry,
    repo: &str,
    digest: &str,
    filter: &ReferrerFilter,
) -> Result<Vec<Found>, RegistryError> {
    let mut found = Vec::new();
    match reg.list_referrers(repo, digest, filter.single()).await? {
        Some(list) => found.extend(list.into_iter().map(|d| Found {
            descriptor: d,
            via: Via::Api,
            tag: None,
        })),
        None => {
            let tag = fallback_tag(digest);
            if reg.may_have_tag(repo, &tag).await {
                if let Some(m) = reg.get_manifest_if_any(repo, &tag).await? {
                    let list: ListBody =
                        serde_json::from_slice(&m.bytes).map_err(|e| RegistryError::Invalid {
                            what: format!("{repo}:{tag}"),
                            reason: format!("not a referrers index: {e}"),
                        })?;
                    found.extend(list.manifests.into_iter().map(|d| Found {
                        descriptor: d,
                        via: Via::FallbackTag,
                        tag: None,
                    }));
                }
            }
        }
    }
    for (suffix, artifact_type) in COSIGN_TAGS {
        let tag = format!("{}.{suffix}", fallback_tag(digest));
        if !reg.may_have_tag(repo, &tag).await {
            continue;
        }
        if let Some(h) = reg.head_manifest(repo, &tag).await? {
            found.push(Found {
                descriptor: Descriptor {
                    media_type: h.media_type,
                    digest: h.digest,
                    size: 0,
                    artifact_type: Some(artifact_type.to_string()),
                    annotations: None,
                },
                via: Via::CosignTag,
                tag: Some(tag),
            });
        }
    }
    let mut seen = HashSet::new();
    found.retain(|f| seen.insert((f.descriptor.digest.clone(), f.tag.clone())));
    Ok(found)
}

/// The artifact type of a referrer manifest: `artifactType`, else the config's media type.
pub(in crate::oci) fn artifact_type_of(m: &Manifest) -> Option<String> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        artifact_type: Option<String>,
        config: Option<Cfg>,
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Cfg {
        media_type: String,
    }
    let p: Probe = serde_json::from_slice(&m.bytes).ok()?;
    p.artifact_type.or(p.config.map(|c| c.media_type))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::copy::merged_fallback;
    use crate::oci::manifest::sha256_digest;

    #[test]
    fn next_link_forms() {
        assert_eq!(
            next_link(r#"</v2/a/referrers/sha256:1?n=1&last=x>; rel="next""#).as_deref(),
            Some("/v2/a/referrers/sha256:1?n=1&last=x")
        );
        assert_eq!(next_link(r#"<https://x/y>; rel="prev""#), None);
    }

    #[test]
    fn filter_matches_essence_and_exact() {
        let f = ReferrerFilter::Types(BTreeSet::from([
            "application/vnd.dev.sigstore.bundle+json".to_string()
        ]));
        assert!(f.selects("application/vnd.dev.sigstore.bundle+json;version=0.2"));
        assert!(!f.selects("application/spdx+json"));
        assert!(ReferrerFilter::All.selects("x/y"));
        assert!(!ReferrerFilter::None.selects("x/y"));
        assert!(ReferrerFilter::Types(BTreeSet::new()).is_none());
    }

    #[test]
    fn merged_fallback_keeps_other_entries() {
        let existing = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": INDEX_MEDIA_TYPE,
            "manifests": [{"mediaType": "m", "digest": "sha256:other", "size": 3,
                           "artifactType": "x/other", "annotations": {"k": "v"}, "extra": 1}],
        });
        let add = Descriptor {
            media_type: "m".into(),
            digest: "sha256:new".into(),
            size: 5,
            artifact_type: Some("x/new".into()),
            annotations: None,
        };
        let m = merged_fallback(Some(&existing), &[add.clone(), add]);
        let v: serde_json::Value = serde_json::from_slice(&m.bytes).unwrap();
        let list = v["manifests"].as_array().unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0]["extra"], 1);
        assert_eq!(list[0]["annotations"]["k"], "v");
        assert_eq!(list[1]["digest"], "sha256:new");
        assert_eq!(m.digest, sha256_digest(&m.bytes));
    }
}
