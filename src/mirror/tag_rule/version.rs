//! The version model: which image tags are versions, and how versions order.
//!
//! A tag is a version when it is `MAJOR.MINOR.PATCH`, optionally preceded by a lower-case `v`,
//! optionally followed by `-SUFFIX`. Each number is `0` or has no leading zero, and may be of any
//! length: numbers are kept as their digits and compared by length, then digit by digit, so
//! `1.18446744073709551616.0` (2^64) is a version and sorts above `1.18446744073709551615.0`.
//! An image tag has at most 128 characters, so the numbers stay small in memory.
//!
//! A suffix is a **pre-release** when it begins (in any case) with `rc`, `alpha`, `beta`, `pre`,
//! `snapshot` or `nightly`; it must then be a SemVer 2.0.0 pre-release (dot-separated
//! identifiers of ASCII letters, digits and `-`, numeric identifiers without leading zeros), or
//! the tag is not a version. Any other suffix is a **variant** (`alpine`, `slim`, `1`,
//! `alpine3.19`), compared as a whole and case-sensitively. `+` (SemVer build metadata) cannot
//! occur in an image tag; a `+` makes a string not a version.
//!
//! Versions order as SemVer 2.0.0 orders them (section 11): by the three numbers, then a version
//! without pre-release above one with; pre-releases identifier by identifier, numeric ones
//! numerically, alphanumeric ones in ASCII order, numeric below alphanumeric, and a shorter list
//! below a longer one that it begins. ASCII order puts upper case first: `1.30.0-RC.2` sorts
//! below `1.30.0-beta`, which sorts below `1.30.0-rc.1`.
//!
//! Why not the `semver` crate: it rejects the `v` prefix, keeps numbers in `u64`, accepts build
//! metadata, and has no notion of the pre-release words above or of variants, so a wrapper would
//! have to pre-classify every tag anyway; the parser and the ordering here are ~150 lines.

use std::cmp::Ordering;
use std::fmt;

/// The words that make a suffix a pre-release, lower case (matched case-insensitively).
pub(super) const PRERELEASE_WORDS: [&str; 6] =
    ["rc", "alpha", "beta", "pre", "snapshot", "nightly"];

/// Whether a suffix (the part after the first `-`) begins with a pre-release word, in any case.
pub(super) fn is_prerelease_suffix(suffix: &str) -> bool {
    PRERELEASE_WORDS.iter().any(|w| {
        suffix.len() >= w.len() && suffix.as_bytes()[..w.len()].eq_ignore_ascii_case(w.as_bytes())
    })
}

/// A non-negative integer of any length: its decimal digits, without leading zeros.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct Num(String);

impl Num {
    /// Parses decimal digits; `Err(true)` for a leading zero, `Err(false)` for anything else.
    pub(super) fn parse(s: &str) -> Result<Num, bool> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            Err(false)
        } else if s.len() > 1 && s.starts_with('0') {
            Err(true)
        } else {
            Ok(Num(s.to_owned()))
        }
    }
}

impl Ord for Num {
    fn cmp(&self, other: &Self) -> Ordering {
        // No leading zeros: a longer number is a bigger one.
        self.0
            .len()
            .cmp(&other.0.len())
            .then_with(|| self.0.cmp(&other.0))
    }
}

impl PartialOrd for Num {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Num {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One pre-release identifier. The variant order gives SemVer's rule: numeric below alphanumeric.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Ident {
    Numeric(Num),
    Alpha(String),
}

/// A version: `MAJOR.MINOR.PATCH` and its pre-release identifiers (empty for a release).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct Version {
    pub(super) major: Num,
    pub(super) minor: Num,
    pub(super) patch: Num,
    pre: Vec<Ident>,
}

impl Version {
    /// Whether this is a pre-release.
    pub(super) fn is_prerelease(&self) -> bool {
        !self.pre.is_empty()
    }

    /// Compares `MAJOR.MINOR.PATCH` only.
    pub(super) fn cmp_core(&self, other: &Self) -> Ordering {
        (&self.major, &self.minor, &self.patch).cmp(&(&other.major, &other.minor, &other.patch))
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        self.cmp_core(other).then_with(|| {
            match (self.pre.is_empty(), other.pre.is_empty()) {
                (true, true) => Ordering::Equal,
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                // Vec's order is SemVer's: identifier by identifier, a prefix below the longer.
                (false, false) => self.pre.cmp(&other.pre),
            }
        })
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Version {
    /// The canonical form: no `v`, the pre-release as parsed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)?;
        for (i, ident) in self.pre.iter().enumerate() {
            f.write_str(if i == 0 { "-" } else { "." })?;
            match ident {
                Ident::Numeric(n) => write!(f, "{n}")?,
                Ident::Alpha(s) => f.write_str(s)?,
            }
        }
        Ok(())
    }
}

/// A tag that is a version: the version, and the variant suffix if it has one.
///
/// A variant tag's `version` is never a pre-release.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct TagVersion {
    pub(super) version: Version,
    pub(super) variant: Option<String>,
}

/// Why a string is not a version; the grammar turns these into messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum VersionError {
    /// Not `MAJOR.MINOR.PATCH` with numbers (e.g. `1.25`, `latest`, `20240101`).
    Shape,
    /// A number with a leading zero (e.g. `1.024.0`, `2024.01.01`).
    LeadingZero,
    /// A `+` (build metadata).
    BuildMetadata,
    /// `-` with nothing after it.
    EmptySuffix,
    /// A suffix that begins with a pre-release word but is not a SemVer pre-release.
    BadPrerelease,
}

/// Parses a tag (or a version written in a rule) into its version and variant.
pub(super) fn parse_tag(s: &str) -> Result<TagVersion, VersionError> {
    let body = s.strip_prefix('v').unwrap_or(s);
    let (core, suffix) = match body.find(['-', '+']) {
        Some(i) if body.as_bytes()[i] == b'+' => return Err(VersionError::BuildMetadata),
        Some(i) => (&body[..i], Some(&body[i + 1..])),
        None => (body, None),
    };
    let mut numbers = [None, None, None];
    let mut parts = core.split('.');
    for slot in &mut numbers {
        let part = parts.next().ok_or(VersionError::Shape)?;
        *slot = Some(Num::parse(part).map_err(|leading_zero| {
            if leading_zero {
                VersionError::LeadingZero
            } else {
                VersionError::Shape
            }
        })?);
    }
    if parts.next().is_some() {
        return Err(VersionError::Shape);
    }
    let [Some(major), Some(minor), Some(patch)] = numbers else {
        unreachable!("all three slots are filled above")
    };
    let mut version = Version {
        major,
        minor,
        patch,
        pre: Vec::new(),
    };
    let variant = match suffix {
        None => None,
        Some("") => return Err(VersionError::EmptySuffix),
        Some(suffix) if suffix.contains('+') => return Err(VersionError::BuildMetadata),
        Some(suffix) if is_prerelease_suffix(suffix) => {
            version.pre = parse_prerelease(suffix).ok_or(VersionError::BadPrerelease)?;
            None
        }
        Some(suffix) => Some(suffix.to_owned()),
    };
    Ok(TagVersion { version, variant })
}

/// A SemVer 2.0.0 pre-release: non-empty dot-separated `[0-9A-Za-z-]+`, numbers without
/// leading zeros.
fn parse_prerelease(s: &str) -> Option<Vec<Ident>> {
    s.split('.')
        .map(|id| {
            if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                None
            } else if id.bytes().all(|b| b.is_ascii_digit()) {
                Num::parse(id).ok().map(Ident::Numeric)
            } else {
                Some(Ident::Alpha(id.to_owned()))
            }
        })
        .collect()
}
