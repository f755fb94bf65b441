//! Image references: `[host[:port]/]path[:tag][@digest]`, Docker-normalised.
//!
//! Nothing here does I/O. References are normalised the way Docker does it
//! (`nginx` → `docker.io/library/nginx`), using `oci_client::Reference` for the grammar so
//! that we accept exactly what the distribution reference grammar accepts.

use std::fmt;
use std::str::FromStr;

/// Errors in user-supplied references, tags or platforms. Each message names the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// The reference does not follow the distribution reference grammar.
    #[error("invalid image reference {input:?}: {reason}")]
    Reference {
        /// What the user wrote.
        input: String,
        /// Why it was refused.
        reason: String,
    },
    /// The tag does not follow `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
    #[error("invalid tag {0:?}: a tag is 1-128 characters of letters, digits, '_', '.' and '-', and must not start with '.' or '-'")]
    Tag(String),
    /// The platform is not `OS/ARCH[/VARIANT]`.
    #[error(
        "invalid platform {0:?}: expected OS/ARCH[/VARIANT], e.g. linux/amd64 or linux/arm64/v8"
    )]
    Platform(String),
}

/// A repository on some registry, without tag or digest, normalised.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ImageRef {
    /// `host[:port]`; `docker.io` for Docker Hub.
    pub registry: String,
    /// The repository path, e.g. `library/nginx`.
    pub repository: String,
}

/// A reference to one manifest: a repository plus a tag and/or a digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaggedRef {
    /// The repository.
    pub image: ImageRef,
    /// The tag, if any.
    pub tag: Option<String>,
    /// The digest, if any (`sha256:...`).
    pub digest: Option<String>,
}

impl ImageRef {
    /// Parses a repository reference. A tag or digest in it is an error, because tags are
    /// listed separately (in `upstream-tags`).
    pub fn parse(input: &str) -> Result<ImageRef, SpecError> {
        let r = TaggedRef::parse(input)?;
        if r.tag.is_some() || r.digest.is_some() {
            return Err(SpecError::Reference {
                input: input.to_string(),
                reason: "must name a repository without a tag or digest".into(),
            });
        }
        Ok(r.image)
    }

    /// This repository at `tag`.
    pub fn at_tag(&self, tag: &str) -> TaggedRef {
        TaggedRef {
            image: self.clone(),
            tag: Some(tag.to_string()),
            digest: None,
        }
    }

    /// This repository at `digest`.
    pub fn at_digest(&self, digest: &str) -> TaggedRef {
        TaggedRef {
            image: self.clone(),
            tag: None,
            digest: Some(digest.to_string()),
        }
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)
    }
}

impl TaggedRef {
    /// Parses `[host[:port]/]path[:tag][@digest]`, Docker-normalised. No tag is filled in.
    pub fn parse(input: &str) -> Result<TaggedRef, SpecError> {
        let trimmed = input.trim();
        let err = |reason: String| SpecError::Reference {
            input: input.to_string(),
            reason,
        };
        if trimmed.is_empty() {
            return Err(err("empty reference".into()));
        }
        if trimmed.contains("://") {
            return Err(err("write the reference without a URL scheme".into()));
        }
        let parsed = oci_client::Reference::from_str(trimmed).map_err(|e| err(e.to_string()))?;
        // oci-spec fills in `latest` when neither a tag nor a digest is given; undo that so the
        // caller can tell "no tag" from ":latest".
        let explicit_tag = has_explicit_tag(trimmed);
        if parsed.repository().chars().any(|c| c.is_ascii_uppercase()) {
            return Err(err("repository name must be lowercase".into()));
        }
        let registry = match parsed.registry() {
            "index.docker.io" | "registry-1.docker.io" => "docker.io".to_string(),
            r => r.to_string(),
        };
        Ok(TaggedRef {
            image: ImageRef {
                registry,
                repository: parsed.repository().to_string(),
            },
            tag: if explicit_tag {
                parsed.tag().map(str::to_string)
            } else {
                None
            },
            digest: parsed.digest().map(str::to_string),
        })
    }

    /// The tag, or the digest when there is no tag: what goes after `/manifests/`.
    pub fn reference(&self) -> &str {
        self.tag
            .as_deref()
            .or(self.digest.as_deref())
            .unwrap_or("latest")
    }
}

/// Whether the last path component of `s` carries a `:tag` (a `:` after the last `/`,
/// before any `@`).
fn has_explicit_tag(s: &str) -> bool {
    let name = s.split('@').next().unwrap_or(s);
    let last = name.rsplit('/').next().unwrap_or(name);
    last.contains(':')
}

impl fmt::Display for TaggedRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.image)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// Validates a tag against the distribution grammar `[\w][\w.-]{0,127}`.
pub fn validate_tag(tag: &str) -> Result<(), SpecError> {
    let ok = !tag.is_empty()
        && tag.len() <= 128
        && tag
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        && tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(SpecError::Tag(tag.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_docker_hub_short_names() {
        let cases = [
            ("nginx", "docker.io", "library/nginx"),
            ("bitnami/redis", "docker.io", "bitnami/redis"),
            ("docker.io/library/nginx", "docker.io", "library/nginx"),
            (
                "index.docker.io/library/nginx",
                "docker.io",
                "library/nginx",
            ),
            ("ghcr.io/kedacore/keda", "ghcr.io", "kedacore/keda"),
            ("127.0.0.1:5000/a/b", "127.0.0.1:5000", "a/b"),
            ("localhost:5000/x", "localhost:5000", "x"),
        ];
        for (input, reg, repo) in cases {
            let r = ImageRef::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(
                (r.registry.as_str(), r.repository.as_str()),
                (reg, repo),
                "{input}"
            );
        }
    }

    #[test]
    fn image_ref_rejects_tags_and_bad_input() {
        for bad in ["nginx:1.25", "Upper/case", "", "https://ghcr.io/x", "a//b"] {
            assert!(ImageRef::parse(bad).is_err(), "{bad:?} should be rejected");
        }
        let e = ImageRef::parse("nginx:1.25").unwrap_err().to_string();
        assert!(e.contains("nginx:1.25"), "{e}");
    }

    #[test]
    fn tagged_ref_keeps_tag_and_port_apart() {
        let r = TaggedRef::parse("127.0.0.1:5000/a/b:v1").unwrap();
        assert_eq!(r.image.registry, "127.0.0.1:5000");
        assert_eq!(r.tag.as_deref(), Some("v1"));
        let r = TaggedRef::parse("127.0.0.1:5000/a/b").unwrap();
        assert_eq!(r.tag, None);
        let d = format!("sha256:{}", "a".repeat(64));
        let r = TaggedRef::parse(&format!("ghcr.io/x/y@{d}")).unwrap();
        assert_eq!(r.digest.as_deref(), Some(d.as_str()));
        assert_eq!(r.reference(), d);
    }

    #[test]
    fn tag_validation() {
        for ok in ["1.0", "latest", "_x", "v1.2.3-rc.1", &"a".repeat(128)] {
            assert!(validate_tag(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".x", "-x", "a b", "a/b", &"a".repeat(129), "ä"] {
            assert!(validate_tag(bad).is_err(), "{bad:?}");
        }
    }
}
