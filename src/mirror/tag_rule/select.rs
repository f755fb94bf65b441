//! Applying a rule to an upstream repository's tags, and merging with `upstream-tags`.

use std::cmp::Ordering;
use std::collections::{BTreeSet, HashSet};
use std::fmt;

use super::grammar::TagRule;
use super::version::{parse_tag, TagVersion, Version};

/// Why a rule left a tag out. A tag gets the first reason that applies, in the order of
/// [`Reason::ALL`] (which is the order of the variants here).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// Not `MAJOR.MINOR.PATCH[-SUFFIX]` (`latest`, `1.25`, `1.024.0`, `20240101`): a rule never
    /// selects it. Most listings have many; see [`Selection::left_out_versions`].
    NotAVersion,
    /// A version with a variant suffix other than `variant=` asks for (or any suffix, without
    /// `variant=`), or without one when `variant=` is given.
    OtherVariant,
    /// A pre-release, and the rule does not say `prerelease=yes`.
    Prerelease,
    /// Outside `semver=`.
    OutsideSemver,
    /// Below `min=`.
    BelowMin,
    /// At or above `below=`.
    NotBelow,
    /// Matched by `exclude=`.
    Excluded,
    /// Matched everything else, but `newest=` versions newer than it matched too.
    BeyondNewest,
}

impl Reason {
    /// Every reason, in the order they are checked.
    pub const ALL: [Reason; 8] = [
        Reason::NotAVersion,
        Reason::OtherVariant,
        Reason::Prerelease,
        Reason::OutsideSemver,
        Reason::BelowMin,
        Reason::NotBelow,
        Reason::Excluded,
        Reason::BeyondNewest,
    ];

    /// A stable kebab-case label, for JSON Lines and scripts.
    pub fn label(self) -> &'static str {
        match self {
            Reason::NotAVersion => "not-a-version",
            Reason::OtherVariant => "other-variant",
            Reason::Prerelease => "prerelease",
            Reason::OutsideSemver => "outside-semver",
            Reason::BelowMin => "below-min",
            Reason::NotBelow => "not-below",
            Reason::Excluded => "excluded",
            Reason::BeyondNewest => "beyond-newest",
        }
    }
}

impl fmt::Display for Reason {
    /// A short phrase for tables: "below min", "beyond newest", ...
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Reason::NotAVersion => "not a version",
            Reason::OtherVariant => "another variant",
            Reason::Prerelease => "a pre-release",
            Reason::OutsideSemver => "outside semver",
            Reason::BelowMin => "below min",
            Reason::NotBelow => "at or above below",
            Reason::Excluded => "excluded",
            Reason::BeyondNewest => "beyond newest",
        })
    }
}

impl serde::Serialize for Reason {
    /// As its [`label`](Reason::label).
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.label())
    }
}

/// What a rule made of a list of tags. Every distinct input tag is in exactly one of the two
/// lists. The same set of tags gives the same `Selection`, whatever the order and duplicates.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selection {
    /// The selected tags, newest version first; tags of the same version (`1.2.3` and
    /// `v1.2.3`) next to each other in byte order.
    pub selected: Vec<String>,
    /// The other tags and why: versions first, newest first (ties in byte order), then the
    /// tags that are not versions, in byte order.
    pub left_out: Vec<(String, Reason)>,
}

impl Selection {
    /// `left_out` without the tags that are not versions: what is worth showing to a person.
    pub fn left_out_versions(&self) -> impl Iterator<Item = &(String, Reason)> + '_ {
        self.left_out
            .iter()
            .filter(|(_, r)| *r != Reason::NotAVersion)
    }

    /// Why `tag` was left out; `None` when it was selected or was not in the input.
    pub fn reason(&self, tag: &str) -> Option<Reason> {
        self.left_out
            .iter()
            .find(|(t, _)| t == tag)
            .map(|(_, r)| *r)
    }
}

/// Newest first; the same version in byte order of the tag.
fn by_version_desc(a: (&str, &Version), b: (&str, &Version)) -> Ordering {
    b.1.cmp(a.1).then_with(|| a.0.cmp(b.0))
}

impl TagRule {
    /// Selects the tags to mirror from an upstream repository's tag list.
    ///
    /// Duplicates and order in `tags` do not matter. `newest=N` keeps the N highest distinct
    /// **versions**: tags that are the same version (`1.2.3` and `v1.2.3`) count once and are
    /// selected (or left out) together, since both are upstream's names for that release.
    pub fn select<S: AsRef<str>>(&self, tags: &[S]) -> Selection {
        let unique: BTreeSet<&str> = tags.iter().map(AsRef::as_ref).collect();
        let mut candidates: Vec<(&str, Version)> = Vec::new();
        let mut versions_left: Vec<(&str, Version, Reason)> = Vec::new();
        let mut others_left: Vec<(String, Reason)> = Vec::new();
        for tag in unique {
            let Ok(parsed) = parse_tag(tag) else {
                // In byte order already: `unique` is sorted.
                others_left.push((tag.to_owned(), Reason::NotAVersion));
                continue;
            };
            match self.reason_for(tag, &parsed) {
                None => candidates.push((tag, parsed.version)),
                Some(reason) => versions_left.push((tag, parsed.version, reason)),
            }
        }
        candidates.sort_by(|a, b| by_version_desc((a.0, &a.1), (b.0, &b.1)));

        let mut selected = Vec::new();
        let mut distinct = 0usize;
        let mut previous: Option<&Version> = None;
        for (tag, version) in &candidates {
            if previous != Some(version) {
                distinct += 1;
                previous = Some(version);
            }
            if self.newest.is_none_or(|n| distinct <= n.get()) {
                selected.push((*tag).to_owned());
            } else {
                versions_left.push((tag, version.clone(), Reason::BeyondNewest));
            }
        }
        versions_left.sort_by(|a, b| by_version_desc((a.0, &a.1), (b.0, &b.1)));
        let mut left_out: Vec<(String, Reason)> = versions_left
            .into_iter()
            .map(|(t, _, r)| (t.to_owned(), r))
            .collect();
        left_out.extend(others_left);
        Selection { selected, left_out }
    }

    /// The first reason this version tag is left out, before `newest=`; `None` if it matches.
    fn reason_for(&self, tag: &str, parsed: &TagVersion) -> Option<Reason> {
        let v = &parsed.version;
        if parsed.variant != self.variant {
            Some(Reason::OtherVariant)
        } else if v.is_prerelease() && self.prerelease != Some(true) {
            Some(Reason::Prerelease)
        } else if self.semver.as_ref().is_some_and(|s| !s.contains(v)) {
            Some(Reason::OutsideSemver)
        } else if self.min.as_ref().is_some_and(|min| v < min) {
            Some(Reason::BelowMin)
        } else if self.below.as_ref().is_some_and(|below| v >= below) {
            Some(Reason::NotBelow)
        } else if self.exclude.iter().any(|item| item.matches(tag, parsed)) {
            Some(Reason::Excluded)
        } else {
            None
        }
    }
}

/// The tags to mirror: the explicit `upstream-tags` as they are, then the rule's selection.
///
/// Each tag appears once, at its first place: explicit tags keep their order (a repeated one
/// keeps its first place), and a selected tag already listed explicitly is not repeated. An
/// explicit tag is mirrored even when the rule leaves it out (`latest`, an excluded version).
pub fn merge_tags<A: AsRef<str>, B: AsRef<str>>(explicit: &[A], selected: &[B]) -> Vec<String> {
    let mut seen: HashSet<&str> = HashSet::new();
    explicit
        .iter()
        .map(AsRef::as_ref)
        .chain(selected.iter().map(AsRef::as_ref))
        .filter(|t| seen.insert(t))
        .map(str::to_owned)
        .collect()
}
