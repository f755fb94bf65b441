//! Platforms, and which children of a multi-platform index are copied.

use std::fmt;
use std::str::FromStr;

use super::SpecError;

/// An OS/architecture/variant triple, as in an index's `platform` field.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Platform {
    /// e.g. `linux`.
    pub os: String,
    /// e.g. `arm64`.
    pub architecture: String,
    /// e.g. `v8`; `None` matches any variant.
    pub variant: Option<String>,
}

impl FromStr for Platform {
    type Err = SpecError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.trim().split('/').collect();
        let valid = |p: &str| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        };
        match parts.as_slice() {
            [os, arch] if valid(os) && valid(arch) => Ok(Platform {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: None,
            }),
            [os, arch, var] if valid(os) && valid(arch) && valid(var) => Ok(Platform {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: Some(var.to_string()),
            }),
            _ => Err(SpecError::Platform(s.to_string())),
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

impl Platform {
    /// Whether a concrete platform (from an index entry) is selected by this filter entry.
    /// A filter without a variant matches every variant.
    pub fn matches(&self, os: &str, architecture: &str, variant: Option<&str>) -> bool {
        self.os == os
            && self.architecture == architecture
            && match &self.variant {
                None => true,
                Some(v) => Some(v.as_str()) == variant,
            }
    }
}

/// Which children of a multi-platform index are copied.
///
/// * `All` copies the index byte for byte: the destination digest equals the upstream digest.
/// * `Only` copies the selected children byte for byte (their digests are preserved) and
///   writes a new index listing them, so the *index* digest differs from upstream. That index
///   carries the upstream index digest in the [`SOURCE_DIGEST_ANNOTATION`] annotation, so a
///   no-op check needs no upstream GET.
#[derive(Debug, Clone, PartialEq, Eq, Default, PartialOrd, Ord, Hash)]
pub enum PlatformFilter {
    /// Every platform; the index is copied unchanged.
    #[default]
    All,
    /// Only these platforms (never empty).
    Only(Vec<Platform>),
}

/// Annotation on a filtered index that records the digest of the upstream index it came from.
pub const SOURCE_DIGEST_ANNOTATION: &str = "io.github.ecr-mirror-sync.source-digest";

impl PlatformFilter {
    /// Builds a filter from a list; an empty list means `All`.
    pub fn from_list(platforms: Vec<Platform>) -> PlatformFilter {
        if platforms.is_empty() {
            PlatformFilter::All
        } else {
            let mut p = platforms;
            p.sort();
            p.dedup();
            PlatformFilter::Only(p)
        }
    }

    /// Parses a space-separated list (the `upstream-platforms` tag value).
    pub fn parse_list(s: &str) -> Result<PlatformFilter, SpecError> {
        let list = s
            .split_whitespace()
            .map(Platform::from_str)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(PlatformFilter::from_list(list))
    }

    /// Whether a platform is selected.
    pub fn selects(&self, os: &str, architecture: &str, variant: Option<&str>) -> bool {
        match self {
            PlatformFilter::All => true,
            PlatformFilter::Only(list) => list.iter().any(|p| p.matches(os, architecture, variant)),
        }
    }
}

impl fmt::Display for PlatformFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlatformFilter::All => write!(f, "all"),
            PlatformFilter::Only(list) => {
                let s: Vec<String> = list.iter().map(|p| p.to_string()).collect();
                write!(f, "{}", s.join(" "))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn platforms_parse_and_match() {
        let p: Platform = "linux/arm64/v8".parse().unwrap();
        assert!(p.matches("linux", "arm64", Some("v8")));
        assert!(!p.matches("linux", "arm64", None));
        let p: Platform = "linux/arm64".parse().unwrap();
        assert!(p.matches("linux", "arm64", Some("v8")));
        for bad in ["linux", "linux/", "a/b/c/d", "linux amd64"] {
            assert!(bad.parse::<Platform>().is_err(), "{bad}");
        }
        let f = PlatformFilter::parse_list(" linux/arm64  linux/amd64 ").unwrap();
        assert_eq!(f.to_string(), "linux/amd64 linux/arm64");
        assert!(f.selects("linux", "amd64", None));
        assert!(!f.selects("windows", "amd64", None));
        assert_eq!(PlatformFilter::parse_list("").unwrap(), PlatformFilter::All);
    }
}
