//! Image references: `[host[:port]/]path[:tag][@digest]`, Docker-normalised.
//!
//! Nothing here does I/O. References are normalised the way Docker does it
//! (`nginx` → `docker.io/library/nginx`) and checked against the distribution reference grammar
//! (distribution/reference `reference.go`; the OCI distribution spec for names and tags).
//!
//! Why a small parser here rather than `oci_client::Reference::from_str`: that one (oci-spec)
//! matches one big regex whose tag part is Unicode `\w{0,127}`, and compiling it, once per
//! process, took **17.7 MiB of heap** (heaptrack, W1 no-op: half of the run's peak RSS, for a
//! string check; docs/benchmarks.md, issue 18). The grammar is a few lines of byte checks. It is
//! also stricter where it should be: a tag is ASCII, as in the Go grammar (Go's `\w` is ASCII).

use std::fmt;

use crate::grammar;

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
        let (rest, digest) = match trimmed.split_once('@') {
            Some((n, d)) => (n, Some(d)),
            None => (trimmed, None),
        };
        let (name, tag) = match rest.rfind(':') {
            Some(i) if !rest[i..].contains('/') => (&rest[..i], Some(&rest[i + 1..])),
            _ => (rest, None),
        };
        if let Some(t) = tag {
            validate_tag(t).map_err(|e| err(e.to_string()))?;
        }
        if let Some(d) = digest {
            check_digest(d).map_err(err)?;
        }
        let (registry, repository) = split_name(name).map_err(err)?;
        if repository.len() > NAME_MAX {
            return Err(err(format!(
                "the repository name is {} characters, more than {NAME_MAX}",
                repository.len()
            )));
        }
        Ok(TaggedRef {
            image: ImageRef {
                registry,
                repository,
            },
            tag: tag.map(str::to_string),
            digest: digest.map(str::to_string),
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

/// The longest repository name the grammar allows.
const NAME_MAX: usize = 255;

/// Splits `[domain/]path` into a registry and a repository, Docker-normalised: the first
/// component is a registry only if it holds a `.` or a `:` or is `localhost`; otherwise the
/// whole name is a Docker Hub path, and a one-component one is under `library/`.
fn split_name(name: &str) -> Result<(String, String), String> {
    if name.is_empty() {
        return Err("the repository name is empty".into());
    }
    let (registry, path) = match name.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            check_domain(first)?;
            (first, rest)
        }
        _ => ("docker.io", name),
    };
    if path.chars().any(|c| c.is_ascii_uppercase()) {
        return Err("repository name must be lowercase".into());
    }
    check_path(path)?;
    let registry = match registry {
        "index.docker.io" | "registry-1.docker.io" => "docker.io",
        r => r,
    };
    let repository = if registry == "docker.io" && !path.contains('/') {
        format!("library/{path}")
    } else {
        path.to_string()
    };
    Ok((registry.to_string(), repository))
}

/// `host[:port]` (the grammar's domain), or a bracketed IPv6 address with an optional port.
fn check_domain(d: &str) -> Result<(), String> {
    let ok = match d.strip_prefix('[').and_then(|v6| v6.split_once(']')) {
        Some((addr, rest)) => {
            addr.parse::<std::net::Ipv6Addr>().is_ok()
                && (rest.is_empty()
                    || rest
                        .strip_prefix(':')
                        .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())))
        }
        None => !d.starts_with('[') && grammar::is_domain(d),
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid registry host {d:?}: expected host[:port] (dot-separated parts of letters, \
             digits and inner '-'; the port digits) or [IPv6]:port"
        ))
    }
}

/// `component(/component)*`, each `[a-z0-9]+` joined by one separator: `.`, `_`, `__` or any
/// run of `-`.
fn check_path(path: &str) -> Result<(), String> {
    match path.split('/').find(|c| !grammar::is_path_component(c)) {
        None => Ok(()),
        Some(c) => Err(format!(
            "path component {c:?} must be lowercase letters and digits, joined by '.', '_', '__' or '-'"
        )),
    }
}

/// `algorithm:hex`, with the length each known algorithm needs.
fn check_digest(d: &str) -> Result<(), String> {
    let (alg, hex) = d
        .split_once(':')
        .ok_or_else(|| format!("invalid digest {d:?}: expected ALGORITHM:HEX"))?;
    let want = match alg {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return Err(format!("unsupported digest algorithm {alg:?} in {d:?}")),
    };
    if hex.len() != want || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "invalid digest {d:?}: {alg} takes {want} hex digits"
        ));
    }
    Ok(())
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
    fn grammar_edges() {
        let d = format!("sha256:{}", "a".repeat(64));
        for ok in [
            "a-b/c__d/e.f_g",
            "a---b",
            "localhost/x",
            "my-registry.example.com:443/team/app:1.0",
            "[::1]:5000/x/y",
            &format!("ghcr.io/x/y:v1@{d}"),
        ] {
            assert!(
                TaggedRef::parse(ok).is_ok(),
                "{ok}: {:?}",
                TaggedRef::parse(ok)
            );
        }
        for bad in [
            "a..b",
            "a___b",
            "-a/b",
            "a/b-",
            "a/b:",
            "a/b:.x",
            "host:port/x",
            "-bad.io/x",
            "ghcr.io/x@sha256:abc",
            &format!("ghcr.io/x@md5:{}", "a".repeat(32)),
            &format!("ghcr.io/x@sha256:{}", "g".repeat(64)),
            &format!("ghcr.io/{}", "a".repeat(256)),
            "ghcr.io/x:tä",
            "[::1]x/y",
            "[zz]/y",
        ] {
            let e = TaggedRef::parse(bad).expect_err(bad).to_string();
            assert!(e.contains(bad), "the error names the input: {e}");
        }
        let r = TaggedRef::parse("localhost/x").unwrap();
        assert_eq!(
            (r.image.registry.as_str(), r.image.repository.as_str()),
            ("localhost", "x")
        );
        let r = TaggedRef::parse("nginx:1.25").unwrap();
        assert_eq!(r.to_string(), "docker.io/library/nginx:1.25");
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
