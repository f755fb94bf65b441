//! Which referrers travel with an image (`--referrers`, the `upstream-referrers` resource tag),
//! and how each one is reported.
//!
//! A selection is `all`, `none`, or a list of artifact types and short names. Full media types
//! fit AWS tag values (`application/vnd.dev.sigstore.bundle.v0.3+json` uses only letters,
//! digits and `/ . + -`), but a type with parameters (`...bundle+json;version=0.2`) does not
//! (AWS allows no `;`), and four full types already take ~180 of the 256
//! characters. So the short names below exist too; the list separator is a space or a comma
//! (a comma is for the command line only: AWS tag values do not allow it).

use std::collections::{BTreeSet, HashMap};

use crate::mirror::error::{Failure, Label};
use crate::oci::referrers::{
    ReferrerFilter, ReferrerOutcome, ReferrerReport, COSIGN_ATT_TYPE, COSIGN_SBOM_TYPE,
    COSIGN_SIG_TYPE,
};
use crate::oci::RegistryError;

/// The sigstore bundle media types cosign writes (v0.3 as a plain type, older with a version
/// parameter).
pub const BUNDLE_TYPES: [&str; 4] = [
    "application/vnd.dev.sigstore.bundle.v0.3+json",
    "application/vnd.dev.sigstore.bundle+json",
    "application/vnd.dev.sigstore.bundle+json;version=0.2",
    "application/vnd.dev.sigstore.bundle+json;version=0.1",
];

/// The short names, and the artifact types each stands for.
pub fn short_name(name: &str) -> Option<&'static [&'static str]> {
    const SIG: &[&str] = &[
        COSIGN_SIG_TYPE,
        "application/vnd.dev.cosign.artifact.sig.v1+json",
    ];
    const SBOM: &[&str] = &[
        COSIGN_SBOM_TYPE,
        "application/spdx+json",
        "text/spdx",
        "text/spdx+json",
        "application/vnd.cyclonedx+json",
        "application/vnd.cyclonedx+xml",
        "application/vnd.syft+json",
    ];
    const ATT: &[&str] = &[
        COSIGN_ATT_TYPE,
        "application/vnd.in-toto+json",
        "application/vnd.dev.cosign.artifact.att.v1+json",
    ];
    match name {
        "sig" => Some(SIG),
        "sbom" => Some(SBOM),
        "att" => Some(ATT),
        "bundle" => Some(&BUNDLE_TYPES),
        _ => None,
    }
}

/// Parses a selection: `all`, `none`, or artifact types and short names separated by spaces
/// or commas.
pub fn parse_selection(value: &str) -> Result<ReferrerFilter, String> {
    let words: Vec<&str> = value
        .split([',', ' '])
        .map(str::trim)
        .filter(|w| !w.is_empty())
        .collect();
    match words.as_slice() {
        [] => return Err("an empty referrer selection (use `none`)".into()),
        ["all"] => return Ok(ReferrerFilter::All),
        ["none"] => return Ok(ReferrerFilter::None),
        _ => {}
    }
    let mut types = BTreeSet::new();
    for w in words {
        if w == "all" || w == "none" {
            return Err(format!(
                "`{w}` cannot be combined with other referrer types"
            ));
        }
        if let Some(list) = short_name(w) {
            types.extend(list.iter().map(|t| t.to_string()));
        } else if is_media_type(w) {
            types.insert(w.to_string());
        } else {
            return Err(format!(
                "`{w}` is neither an artifact type (type/subtype) nor one of sig, sbom, att, bundle"
            ));
        }
    }
    Ok(ReferrerFilter::Types(types))
}

/// `type/subtype[;params]`, the RFC 6838 shape, loosely.
fn is_media_type(w: &str) -> bool {
    let essence = w.split(';').next().unwrap_or("");
    let Some((t, s)) = essence.split_once('/') else {
        return false;
    };
    let ok = |p: &str| {
        !p.is_empty()
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || "!#$&-^_.+".contains(c))
    };
    ok(t) && ok(s)
}

/// Drops the signature kinds from a selection (`--remove-signatures`): the legacy `.sig` tag,
/// cosign's OCI 1.1 signature artifact and sigstore bundles.
pub fn without_signatures(f: &ReferrerFilter) -> ReferrerFilter {
    let sig: BTreeSet<&str> = short_name("sig")
        .into_iter()
        .chain(short_name("bundle"))
        .flatten()
        .copied()
        .collect();
    match f {
        ReferrerFilter::None => ReferrerFilter::None,
        ReferrerFilter::All => {
            let mut keep = BTreeSet::new();
            for n in ["sbom", "att"] {
                keep.extend(short_name(n).unwrap_or(&[]).iter().map(|t| t.to_string()));
            }
            // `All` minus signatures cannot list unknown types; keep every known non-signature
            // type, which is what --remove-signatures meant before referrers existed (nothing
            // but `.sig` was copied then).
            ReferrerFilter::Types(keep)
        }
        ReferrerFilter::Types(t) => ReferrerFilter::Types(
            t.iter()
                .filter(|x| !sig.contains(x.as_str()))
                .cloned()
                .collect(),
        ),
    }
}

/// Referrer settings of one run.
#[derive(Clone, Debug, Default)]
pub struct Referrers {
    /// The selection of repositories without their own (`--referrers`).
    pub default: ReferrerFilter,
    /// Per repository: the `upstream-referrers` resource tag.
    pub per_repo: HashMap<String, ReferrerFilter>,
    /// Re-check the referrers of images that are in sync (`--refresh-referrers`).
    pub refresh: bool,
}

impl Referrers {
    /// Everything, the default: a full-fidelity mirror.
    pub fn all() -> Referrers {
        Referrers::default()
    }

    /// Nothing travels (an archive push).
    pub fn none() -> Referrers {
        Referrers {
            default: ReferrerFilter::None,
            ..Referrers::default()
        }
    }

    /// These settings with each repository's `upstream-referrers` resource tag (validated when
    /// the tags were read) overriding the run's selection.
    pub fn with_repository_tags(&self, tags: &HashMap<String, String>) -> Referrers {
        let mut out = self.clone();
        for (repo, value) in tags {
            if let Ok(f) = parse_selection(value) {
                out.per_repo.insert(repo.clone(), f);
            }
        }
        out
    }

    /// The selection for `repository`.
    pub fn for_repo(&self, repository: &str) -> ReferrerFilter {
        self.per_repo
            .get(repository)
            .cloned()
            .unwrap_or_else(|| self.default.clone())
    }
}

/// The label of a referrer that failed: `referrer-refused` for a 405 (the destination does not
/// take a referrer of this subject, as ECR for an index), else the error's own label.
pub fn label_of(r: &ReferrerReport) -> Option<Label> {
    if r.outcome != ReferrerOutcome::Failed {
        return None;
    }
    Some(match r.error.as_deref() {
        Some(RegistryError::Status { status: 405, .. }) => Label::ReferrerRefused,
        Some(e) => Label::of_registry(e),
        None => Label::RegistryError,
    })
}

/// One referrer as JSON Lines and the report files show it.
pub fn to_json(r: &ReferrerReport) -> serde_json::Value {
    let mut v = serde_json::to_value(r).expect("a report serialises");
    if let Some(l) = label_of(r) {
        v["label"] = l.as_str().into();
    }
    v
}

/// The failures among `reports`, for summaries.
pub fn failures(reports: &[ReferrerReport]) -> Vec<Failure> {
    reports
        .iter()
        .filter_map(|r| label_of(r).map(|l| Failure::new(l, r.message.clone().unwrap_or_default())))
        .collect()
}

/// Counts of `reports` by outcome: (copied, present, skipped, failed).
pub fn counts(reports: &[ReferrerReport]) -> (usize, usize, usize, usize) {
    let n = |o| reports.iter().filter(|r| r.outcome == o).count();
    (
        n(ReferrerOutcome::Copied),
        n(ReferrerOutcome::Present),
        n(ReferrerOutcome::Skipped),
        n(ReferrerOutcome::Failed),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selections() {
        assert_eq!(parse_selection("all").unwrap(), ReferrerFilter::All);
        assert_eq!(parse_selection(" none ").unwrap(), ReferrerFilter::None);
        let f = parse_selection("sbom,application/vnd.example+json").unwrap();
        assert!(f.selects("application/spdx+json"));
        assert!(f.selects("application/vnd.example+json"));
        assert!(!f.selects(COSIGN_SIG_TYPE));
        let b = parse_selection("bundle").unwrap();
        assert!(b.selects("application/vnd.dev.sigstore.bundle.v0.3+json"));
        assert!(b.selects("application/vnd.dev.sigstore.bundle+json;version=0.2"));
        assert!(parse_selection("all sbom").is_err());
        assert!(parse_selection("").is_err());
        assert!(parse_selection("sboms").is_err());
    }

    #[test]
    fn without_signatures_keeps_the_rest() {
        let f = without_signatures(&ReferrerFilter::All);
        assert!(!f.selects(COSIGN_SIG_TYPE));
        assert!(!f.selects(BUNDLE_TYPES[0]));
        assert!(f.selects("application/spdx+json"));
        let g = without_signatures(&parse_selection("sig application/x+json").unwrap());
        assert!(!g.selects(COSIGN_SIG_TYPE));
        assert!(g.selects("application/x+json"));
    }

    #[test]
    fn every_full_type_of_a_short_name_fits_an_aws_tag_value() {
        for n in ["sig", "sbom", "att", "bundle"] {
            for t in short_name(n).unwrap() {
                let fits = crate::mirror::tags::disallowed_tag_value_char(t).is_none();
                // Only the parameterised bundle types need the short name.
                assert_eq!(fits, !t.contains(';'), "{t}");
            }
        }
    }

    #[test]
    fn the_resource_tag_parses_round_trips_and_names_its_errors() {
        use crate::mirror::tags::{spec_from_tags, spec_to_tags, TagError, TagKeys};
        let keys = TagKeys::default();
        let tags = |r: &str| {
            vec![
                ("upstream-image".to_string(), "nginx".to_string()),
                ("upstream-tags".to_string(), "1.27".to_string()),
                ("upstream-referrers".to_string(), r.to_string()),
            ]
        };
        let value = "sbom application/vnd.dev.sigstore.bundle.v0.3+json";
        let spec = spec_from_tags("m/nginx", &tags(value), &keys)
            .spec
            .unwrap()
            .unwrap();
        assert_eq!(spec.referrers.as_deref(), Some(value));
        let back = spec_to_tags(&spec, &keys);
        assert!(back.contains(&("upstream-referrers".to_string(), value.to_string())));
        match spec_from_tags("m/nginx", &tags("sbom,sig"), &keys).spec {
            Some(Err(TagError::BadCharacter { character: ',', .. })) => {}
            other => panic!("{other:?}"),
        }
        match spec_from_tags("m/nginx", &tags("sboms"), &keys).spec {
            Some(Err(e @ TagError::Referrers { .. })) => {
                assert!(e.to_string().contains("upstream-referrers"), "{e}")
            }
            other => panic!("{other:?}"),
        }
        let none = spec_from_tags("m/nginx", &tags("all")[..2], &keys);
        assert_eq!(none.spec.unwrap().unwrap().referrers, None);
    }
}
