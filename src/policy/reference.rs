//! Docker image references, parsed and normalised exactly as containers/image's
//! `docker/reference` package (a fork of distribution/reference) does, plus the policy-scope
//! names derived from them (`docker/policyconfiguration/naming.go`).
//!
//! The grammar is implemented by hand instead of with regular expressions; it accepts the same
//! language as `ReferenceRegexp`:
//!
//! ```text
//! reference       := name [ ":" tag ] [ "@" digest ]
//! name            := [domain "/"] path-component ["/" path-component]*
//! domain          := domain-component ["." domain-component]* [":" port-number]
//! domain-component:= [a-zA-Z0-9] | [a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]
//! path-component  := [a-z0-9]+ (separator [a-z0-9]+)*      separator := "." | "_" | "__" | "-"+
//! tag             := [\w][\w.-]{0,127}
//! digest          := [A-Za-z][A-Za-z0-9]*([-_+.][A-Za-z][A-Za-z0-9]*)* ":" [0-9a-fA-F]{32,}
//! ```

use std::fmt;

use super::error::PolicyError;
pub(super) use crate::grammar::is_domain;
use crate::grammar::{is_alnum_lower, is_path};

const DEFAULT_DOMAIN: &str = "docker.io";
const LEGACY_DEFAULT_DOMAIN: &str = "index.docker.io";
const OFFICIAL_REPO_NAME: &str = "library";
const DEFAULT_TAG: &str = "latest";
const NAME_TOTAL_LENGTH_MAX: usize = 255;

const ERR_REFERENCE_INVALID_FORMAT: &str = "invalid reference format";
const ERR_NAME_CONTAINS_UPPERCASE: &str = "repository name must be lowercase";
const ERR_NAME_EMPTY: &str = "repository name must have at least one component";
const ERR_NAME_NOT_CANONICAL: &str = "repository name must be canonical";
const ERR_DIGEST_INVALID_FORMAT: &str = "invalid checksum digest format";
const ERR_DIGEST_INVALID_LENGTH: &str = "invalid checksum digest length";
const ERR_DIGEST_UNSUPPORTED: &str = "unsupported digest algorithm";

/// A parsed reference (`reference.Named` in Go): a full name, and an optional tag and digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Named {
    /// `domain/path` (Go's `Name()`).
    pub(super) name: String,
    pub(super) tag: Option<String>,
    pub(super) digest: Option<String>,
}

impl Named {
    /// Go's `reference.IsNameOnly`.
    pub(super) fn is_name_only(&self) -> bool {
        self.tag.is_none() && self.digest.is_none()
    }
}

impl fmt::Display for Named {
    /// Go's `String()`: `name[:tag][@digest]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// Anchored `NameRegexp`; returns the length of the domain part (0 when there is none), chosen
/// as Go's leftmost-first regexp engine does (the optional domain is greedy).
fn match_name(s: &str) -> Option<usize> {
    if let Some((first, rest)) = s.split_once('/') {
        if is_domain(first) && is_path(rest) {
            return Some(first.len());
        }
    }
    if is_path(s) {
        return Some(0);
    }
    None
}

/// Anchored `NameRegexp` (a name, possibly without a domain; no tag or digest).
pub(super) fn is_name(s: &str) -> bool {
    match_name(s).is_some()
}

/// `[\w][\w.-]{0,127}`.
fn is_tag(s: &str) -> bool {
    let b = s.as_bytes();
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    !b.is_empty()
        && b.len() <= 128
        && word(b[0])
        && b.iter().all(|c| word(*c) || *c == b'.' || *c == b'-')
}

/// `DigestRegexp`, anchored.
fn is_digest_pattern(s: &str) -> bool {
    let Some((alg, hex)) = s.split_once(':') else {
        return false;
    };
    hex.len() >= 32
        && hex.bytes().all(|c| c.is_ascii_hexdigit())
        && alg.split(['-', '_', '+', '.']).all(|part| {
            let b = part.as_bytes();
            !b.is_empty() && b[0].is_ascii_alphabetic() && b.iter().all(u8::is_ascii_alphanumeric)
        })
}

/// go-digest's `digest.Parse` validation (`sha256`, `sha384` and `sha512` are available).
pub(super) fn validate_digest(s: &str) -> Result<(), &'static str> {
    let Some(i) = s.find(':') else {
        return Err(ERR_DIGEST_INVALID_FORMAT);
    };
    if i == 0 || i + 1 == s.len() {
        return Err(ERR_DIGEST_INVALID_FORMAT);
    }
    let (alg, encoded) = (&s[..i], &s[i + 1..]);
    let size = match alg {
        "sha256" => 32,
        "sha384" => 48,
        "sha512" => 64,
        _ => {
            // go-digest's DigestRegexpAnchored: ^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$
            let alg_ok = alg
                .split(['.', '+', '_', '-'])
                .all(|p| !p.is_empty() && p.bytes().all(is_alnum_lower));
            let enc_ok = encoded
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'=' | b'_' | b'-'));
            return Err(if alg_ok && enc_ok {
                ERR_DIGEST_UNSUPPORTED
            } else {
                ERR_DIGEST_INVALID_FORMAT
            });
        }
    };
    if encoded.len() != size * 2 {
        return Err(ERR_DIGEST_INVALID_LENGTH);
    }
    if !encoded
        .bytes()
        .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
    {
        return Err(ERR_DIGEST_INVALID_FORMAT);
    }
    Ok(())
}

/// Matches `ReferenceRegexp`, returning (name, tag, digest) captures.
fn match_reference(s: &str) -> Option<(&str, Option<&str>, Option<&str>)> {
    let (left, digest) = match s.split_once('@') {
        Some((l, d)) => (l, Some(d)),
        None => (s, None),
    };
    if let Some(d) = digest {
        if !is_digest_pattern(d) {
            return None;
        }
    }
    // A tag cannot contain '/' or ':', so it can only follow the last ':' and only if no '/'
    // follows that ':' (otherwise the ':' separates a registry port).
    let (name, tag) = match left.rfind(':') {
        Some(i) if !left[i + 1..].contains('/') => (&left[..i], Some(&left[i + 1..])),
        _ => (left, None),
    };
    if let Some(t) = tag {
        if !is_tag(t) {
            return None;
        }
    }
    match_name(name)?;
    Some((name, tag, digest))
}

/// `reference.Parse` restricted to named references.
fn parse(s: &str) -> Result<Named, String> {
    let Some((name, tag, digest)) = match_reference(s) else {
        if s.is_empty() {
            return Err(ERR_NAME_EMPTY.to_string());
        }
        if match_reference(&s.to_lowercase()).is_some() {
            return Err(ERR_NAME_CONTAINS_UPPERCASE.to_string());
        }
        return Err(ERR_REFERENCE_INVALID_FORMAT.to_string());
    };
    if name.len() > NAME_TOTAL_LENGTH_MAX {
        return Err(format!(
            "repository name must not be more than {NAME_TOTAL_LENGTH_MAX} characters"
        ));
    }
    if let Some(d) = digest {
        validate_digest(d).map_err(str::to_string)?;
    }
    Ok(Named {
        name: name.to_string(),
        tag: tag.map(str::to_string),
        digest: digest.map(str::to_string),
    })
}

/// `reference.SplitDockerDomain`.
fn split_docker_domain(name: &str) -> (String, String) {
    let (mut domain, mut remainder) = match name.find('/') {
        Some(i) if name[..i].contains(['.', ':']) || &name[..i] == "localhost" => {
            (name[..i].to_string(), name[i + 1..].to_string())
        }
        _ => (DEFAULT_DOMAIN.to_string(), name.to_string()),
    };
    if domain == LEGACY_DEFAULT_DOMAIN {
        domain = DEFAULT_DOMAIN.to_string();
    }
    if domain == DEFAULT_DOMAIN && !remainder.contains('/') {
        remainder = format!("{OFFICIAL_REPO_NAME}/{remainder}");
    }
    (domain, remainder)
}

fn is_anchored_identifier(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
}

/// `reference.ParseNormalizedNamed`: `nginx` → `docker.io/library/nginx` (no default tag added).
pub(super) fn parse_normalized_named(s: &str) -> Result<Named, String> {
    if is_anchored_identifier(s) {
        return Err(format!(
            "invalid repository name ({s}), cannot specify 64-byte hexadecimal strings"
        ));
    }
    let (domain, remainder) = split_docker_domain(s);
    let remote_name = match remainder.find(':') {
        Some(i) => &remainder[..i],
        None => remainder.as_str(),
    };
    if remote_name.to_lowercase() != remote_name {
        return Err(format!(
            "{ERR_REFERENCE_INVALID_FORMAT}: {ERR_NAME_CONTAINS_UPPERCASE}"
        ));
    }
    parse(&format!("{domain}/{remainder}"))
}

/// `reference.ParseNamed`: like [`parse_normalized_named`], but the input must already be canonical.
pub(super) fn parse_named(s: &str) -> Result<Named, String> {
    let named = parse_normalized_named(s)?;
    if named.to_string() != s {
        return Err(ERR_NAME_NOT_CANONICAL.to_string());
    }
    Ok(named)
}

/// A normalised Docker image reference, as the trust policy sees it.
///
/// [`ImageName::parse`] normalises like Docker/containers/image: `nginx` becomes
/// `docker.io/library/nginx:latest`. When a reference carries both a tag and a digest, the digest
/// is what identifies the image for the policy (containers/image refuses such references; we
/// follow `reference.ParseDockerRef` and drop the tag for policy purposes).
///
/// Build values with [`ImageName::parse`]. If you fill in the fields yourself, they must already
/// be normalised the same way (`docker.io`, `library/nginx`), or scope lookup will not match.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageName {
    /// `host[:port]`; `docker.io` for Docker Hub.
    pub registry: String,
    /// The repository path inside the registry, e.g. `library/nginx`.
    pub repository: String,
    /// The tag, if any (`latest` is filled in by [`ImageName::parse`] when neither a tag nor a
    /// digest is given).
    pub tag: Option<String>,
    /// The manifest digest (`sha256:…`), if the reference is by digest.
    pub digest: Option<String>,
}

impl ImageName {
    /// Parses and normalises a Docker reference (`nginx` → `docker.io/library/nginx:latest`).
    pub fn parse(s: &str) -> Result<ImageName, PolicyError> {
        let named = parse_normalized_named(s).map_err(|message| PolicyError::InvalidReference {
            reference: s.to_string(),
            message,
        })?;
        let (registry, repository) = named
            .name
            .split_once('/')
            .map(|(r, p)| (r.to_string(), p.to_string()))
            .unwrap_or_default();
        let tag = match (&named.tag, &named.digest) {
            (None, None) => Some(DEFAULT_TAG.to_string()),
            (t, _) => t.clone(),
        };
        Ok(ImageName {
            registry,
            repository,
            tag,
            digest: named.digest,
        })
    }

    /// `registry/repository`, without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The reference the policy works with: the digest wins over the tag, `latest` is the default.
    pub(super) fn policy_reference(&self) -> Named {
        let (tag, digest) = match (&self.tag, &self.digest) {
            (_, Some(d)) => (None, Some(d.clone())),
            (Some(t), None) => (Some(t.clone()), None),
            (None, None) => (Some(DEFAULT_TAG.to_string()), None),
        };
        Named {
            name: self.name(),
            tag,
            digest,
        }
    }

    /// The exact scope name for this image (`PolicyConfigurationIdentity`): `host/repo:tag` or
    /// `host/repo@digest`.
    pub fn policy_identity(&self) -> String {
        self.policy_reference().to_string()
    }

    /// The less specific scope names to try, most specific first (`PolicyConfigurationNamespaces`):
    /// the repository, each parent namespace cut on whole path components, `host[:port]`, then the
    /// `*.` wildcards of the host with its port stripped (`*.example.com`, `*.com`).
    pub fn policy_namespaces(&self) -> Vec<String> {
        let mut res = Vec::new();
        let mut name = self.name();
        loop {
            res.push(name.clone());
            match name.rfind('/') {
                Some(i) => name.truncate(i),
                None => break,
            }
        }
        if let Some(i) = name.find(':') {
            name.truncate(i);
        }
        while let Some(i) = name.find('.') {
            name = name[i + 1..].to_string();
            res.push(format!("*.{name}"));
        }
        res
    }

    /// The reference as containers/image prints it in messages (`docker://nginx:latest`).
    pub(super) fn transport_name(&self) -> String {
        let mut path = self.repository.clone();
        let mut familiar = if self.registry == DEFAULT_DOMAIN {
            if let Some(rest) = path.strip_prefix("library/") {
                if !rest.contains('/') {
                    path = rest.to_string();
                }
            }
            path
        } else {
            format!("{}/{}", self.registry, path)
        };
        let reference = self.policy_reference();
        if let Some(tag) = &reference.tag {
            familiar.push(':');
            familiar.push_str(tag);
        }
        if let Some(digest) = &reference.digest {
            familiar.push('@');
            familiar.push_str(digest);
        }
        format!("docker://{familiar}")
    }
}

impl fmt::Display for ImageName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn normalisation() {
        for (input, expected) in [
            ("busybox", "docker.io/library/busybox"),
            ("busybox:notlatest", "docker.io/library/busybox:notlatest"),
            ("docker.io/busybox", "docker.io/library/busybox"),
            ("index.docker.io/busybox", "docker.io/library/busybox"),
            ("library/busybox", "docker.io/library/busybox"),
            ("ns/repo", "docker.io/ns/repo"),
            ("notlocalhost/repo", "docker.io/notlocalhost/repo"),
            ("localhost/repo", "localhost/repo"),
            ("localhost:5000/repo:tag", "localhost:5000/repo:tag"),
            (
                "127.0.0.1:5100/sigpol/hello:v1",
                "127.0.0.1:5100/sigpol/hello:v1",
            ),
            ("Example.COM/ns/repo", "Example.COM/ns/repo"),
            (
                "example.com/a__b/c--d/e.f:T_a.g-1",
                "example.com/a__b/c--d/e.f:T_a.g-1",
            ),
        ] {
            assert_eq!(
                parse_normalized_named(input).unwrap().to_string(),
                expected,
                "{input}"
            );
        }
        let with_digest = format!("quay.io/ns/repo@{D}");
        assert_eq!(
            parse_normalized_named(&with_digest).unwrap().to_string(),
            with_digest
        );
        let both = format!("quay.io/ns/repo:tag@{D}");
        let n = parse_normalized_named(&both).unwrap();
        assert_eq!(
            (n.tag.as_deref(), n.digest.as_deref()),
            (Some("tag"), Some(D))
        );
    }

    #[test]
    fn invalid_references() {
        for (input, message) in [
            ("", "invalid reference format"),
            ("UPPER", "invalid reference format: repository name must be lowercase"),
            ("example.com/Upper", "invalid reference format: repository name must be lowercase"),
            ("example.com/a:b:c", "invalid reference format"),
            ("example.com/a/", "invalid reference format"),
            ("example.com/a..b", "invalid reference format"),
            ("example.com/a___b", "invalid reference format"),
            ("example.com/-a", "invalid reference format"),
            ("example.com/a:-tag", "invalid reference format"),
            ("example.com/a@sha256:abc", "invalid reference format"),
            (
                "example.com/a@sha256:0123456789abcdef0123456789abcdef",
                "invalid checksum digest length",
            ),
            (
                "example.com/a@md5:0123456789abcdef0123456789abcdef",
                "unsupported digest algorithm",
            ),
            (
                "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                "invalid repository name (0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef), cannot specify 64-byte hexadecimal strings",
            ),
        ] {
            assert_eq!(parse_normalized_named(input).unwrap_err(), message, "{input:?}");
        }
        let long = format!("example.com/{}", "a".repeat(250));
        assert_eq!(
            parse_normalized_named(&long).unwrap_err(),
            "repository name must not be more than 255 characters"
        );
        assert_eq!(
            parse_named("busybox").unwrap_err(),
            "repository name must be canonical"
        );
        assert!(parse_named("docker.io/library/busybox:latest").is_ok());
    }

    #[test]
    fn digests() {
        assert_eq!(validate_digest(D), Ok(()));
        assert_eq!(validate_digest("sha256:"), Err(ERR_DIGEST_INVALID_FORMAT));
        assert_eq!(validate_digest(":abc"), Err(ERR_DIGEST_INVALID_FORMAT));
        assert_eq!(
            validate_digest("sha256:abc"),
            Err(ERR_DIGEST_INVALID_LENGTH)
        );
        assert_eq!(
            validate_digest(&D.to_uppercase().replace("SHA", "sha")),
            Err(ERR_DIGEST_INVALID_FORMAT)
        );
        assert_eq!(validate_digest("foo:abc"), Err(ERR_DIGEST_UNSUPPORTED));
        assert_eq!(validate_digest("FOO:abc"), Err(ERR_DIGEST_INVALID_FORMAT));
    }

    #[test]
    fn domains_and_names() {
        for ok in [
            "example.com",
            "example.com:5000",
            "localhost",
            "a-b.c",
            "127.0.0.1:5100",
            "X",
        ] {
            assert!(is_domain(ok), "{ok}");
        }
        for bad in [
            "", "-a.com", "a-.com", "a..com", "a.com:", "a.com:x", "a_b.com", "a.com/x",
        ] {
            assert!(!is_domain(bad), "{bad}");
        }
        assert!(is_name("example.com/ns/repo"));
        assert!(is_name("foo_bar.com/x"));
        assert!(!is_name("example.com/ns/"));
    }

    #[test]
    fn image_name_parse() {
        let n = ImageName::parse("nginx").unwrap();
        assert_eq!(
            n,
            ImageName {
                registry: "docker.io".into(),
                repository: "library/nginx".into(),
                tag: Some("latest".into()),
                digest: None
            }
        );
        assert_eq!(n.to_string(), "docker.io/library/nginx:latest");
        assert_eq!(n.transport_name(), "docker://nginx:latest");
        let n = ImageName::parse("127.0.0.1:5100/sigpol/hello:v1").unwrap();
        assert_eq!(
            (n.registry.as_str(), n.repository.as_str()),
            ("127.0.0.1:5100", "sigpol/hello")
        );
        assert_eq!(
            n.transport_name(),
            "docker://127.0.0.1:5100/sigpol/hello:v1"
        );
        let n = ImageName::parse(&format!("ghcr.io/kedacore/keda@{D}")).unwrap();
        assert_eq!((n.tag.as_deref(), n.digest.as_deref()), (None, Some(D)));
        assert_eq!(n.policy_identity(), format!("ghcr.io/kedacore/keda@{D}"));
        let n = ImageName::parse(&format!("ghcr.io/kedacore/keda:2.1@{D}")).unwrap();
        assert_eq!(n.policy_identity(), format!("ghcr.io/kedacore/keda@{D}"));
        let err = ImageName::parse("Nginx").unwrap_err().to_string();
        assert!(
            err.contains("Nginx") && err.contains("must be lowercase"),
            "{err}"
        );
    }

    #[test]
    fn namespaces_as_containers_image() {
        // The table of containers/image's docker/policyconfiguration/naming_test.go.
        for (input, expected) in [
            (
                "example.com/ns/repo",
                vec![
                    "example.com/ns/repo",
                    "example.com/ns",
                    "example.com",
                    "*.com",
                ],
            ),
            (
                "example.com/repo",
                vec!["example.com/repo", "example.com", "*.com"],
            ),
            (
                "localhost/ns/repo",
                vec!["localhost/ns/repo", "localhost/ns", "localhost"],
            ),
            ("localhost/repo", vec!["localhost/repo", "localhost"]),
            (
                "notlocalhost/repo",
                vec![
                    "docker.io/notlocalhost/repo",
                    "docker.io/notlocalhost",
                    "docker.io",
                    "*.io",
                ],
            ),
            (
                "docker.io/ns/repo",
                vec!["docker.io/ns/repo", "docker.io/ns", "docker.io", "*.io"],
            ),
            (
                "docker.io/library/repo",
                vec![
                    "docker.io/library/repo",
                    "docker.io/library",
                    "docker.io",
                    "*.io",
                ],
            ),
            (
                "docker.io/repo",
                vec![
                    "docker.io/library/repo",
                    "docker.io/library",
                    "docker.io",
                    "*.io",
                ],
            ),
            (
                "ns/repo",
                vec!["docker.io/ns/repo", "docker.io/ns", "docker.io", "*.io"],
            ),
            (
                "library/repo",
                vec![
                    "docker.io/library/repo",
                    "docker.io/library",
                    "docker.io",
                    "*.io",
                ],
            ),
            (
                "repo",
                vec![
                    "docker.io/library/repo",
                    "docker.io/library",
                    "docker.io",
                    "*.io",
                ],
            ),
            (
                "yet.another.example.com:8443/ns/repo",
                vec![
                    "yet.another.example.com:8443/ns/repo",
                    "yet.another.example.com:8443/ns",
                    "yet.another.example.com:8443",
                    "*.another.example.com",
                    "*.example.com",
                    "*.com",
                ],
            ),
        ] {
            for (suffix, mapped) in [
                (":tag".to_string(), ":tag".to_string()),
                (format!("@{D}"), format!("@{D}")),
            ] {
                let image = ImageName::parse(&format!("{input}{suffix}")).unwrap();
                assert_eq!(
                    image.policy_identity(),
                    format!("{}{mapped}", expected[0]),
                    "{input}"
                );
                assert_eq!(image.policy_namespaces(), expected, "{input}");
            }
        }
        let image = ImageName::parse("busybox").unwrap();
        assert_eq!(image.policy_identity(), "docker.io/library/busybox:latest");
    }
}
