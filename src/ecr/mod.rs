//! The ECR **control plane**, behind a narrow trait we own.
//!
//! ECR is used through two planes (DESIGN.md §3). This module is the control plane only: list
//! repositories, read and write their resource tags, create repositories, and get the
//! authorization token. Manifests and blobs never go through here; the data plane talks to
//! ECR as to any OCI registry, at the token's `proxyEndpoint`.
//!
//! Why a trait ([`EcrApi`]) instead of calling `aws_sdk_ecr::Client` directly:
//! * the planner and executor are unit-tested against an in-memory fake, with no network;
//! * SDK error types stop here: every call returns our [`EcrError`], classified by the SDK's
//!   typed error code and HTTP status (never by message text), so callers can match on
//!   `NotFound`, `AlreadyExists`, `AccessDenied` and `Throttled`;
//! * the verbs are ours (`repositories`, `tags`, ...), so pagination and other SDK details are
//!   handled once, in [`sdk::SdkEcr`], and tested against moto.
//!
//! Beside it: [`registry_host`] recognises ECR registry host names, and [`token`] caches the
//! authorization token. What the resource tags *mean* (the tag schema) is the pipeline's
//! business, in `mirror::tags`: this module returns them as they are.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::SystemTime;

#[cfg(test)]
pub(crate) mod memory;
pub mod registry_host;
pub mod sdk;
pub mod token;

pub use registry_host::{parse_ecr_host, EcrHost};
pub use sdk::SdkEcr;
pub use token::TokenCache;

/// An ECR repository, as the control plane describes it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Repository {
    /// The repository name, e.g. `mirror/keda`.
    pub name: String,
    /// The repository ARN, e.g. `arn:aws:ecr:us-east-1:123456789012:repository/mirror/keda`.
    /// Tag operations address the repository by this ARN.
    pub arn: String,
    /// The repository URI, e.g. `123456789012.dkr.ecr.us-east-1.amazonaws.com/mirror/keda`.
    pub uri: String,
    /// The repository's tag mutability, with its exclusion filters
    /// (`imageTagMutability` and `imageTagMutabilityExclusionFilters`). A mirror cannot move
    /// an existing tag that [`TagMutability::is_immutable`].
    pub tag_mutability: TagMutability,
}

/// ECR's tag mutability of a repository.
///
/// With `IMMUTABLE_WITH_EXCLUSION`, tags matching one of the `WILDCARD` exclusion filters stay
/// mutable; with `MUTABLE_WITH_EXCLUSION`, those matching a filter are immutable (ECR API
/// reference, `ImageTagMutabilityExclusionFilter`: a filter is `[0-9a-zA-Z._*-]{1,128}`, `*`
/// matching any run of characters).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TagMutability {
    /// `MUTABLE`: every tag may move.
    #[default]
    Mutable,
    /// `IMMUTABLE`: no tag may move.
    Immutable,
    /// `IMMUTABLE_WITH_EXCLUSION`: no tag may move, except those matching a filter.
    ImmutableWithExclusion(Vec<String>),
    /// `MUTABLE_WITH_EXCLUSION`: every tag may move, except those matching a filter.
    MutableWithExclusion(Vec<String>),
}

impl TagMutability {
    /// Whether ECR refuses to move `tag` once it exists.
    pub fn is_immutable(&self, tag: &str) -> bool {
        let matches = |filters: &[String]| filters.iter().any(|f| wildcard_match(f, tag));
        match self {
            TagMutability::Mutable => false,
            TagMutability::Immutable => true,
            TagMutability::ImmutableWithExclusion(f) => !matches(f),
            TagMutability::MutableWithExclusion(f) => matches(f),
        }
    }

    /// Whether any tag can be immutable (for `IMMUTABLE` in reports and checks).
    pub fn any_immutable(&self) -> bool {
        !matches!(self, TagMutability::Mutable)
    }
}

/// An ECR `WILDCARD` filter: `*` matches any run of characters (also none); every other
/// character matches itself. The whole tag must match.
pub fn wildcard_match(filter: &str, tag: &str) -> bool {
    let mut parts = filter.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = tag.strip_prefix(first) else {
        return false;
    };
    let tail: Vec<&str> = parts.collect();
    let Some((last, middle)) = tail.split_last() else {
        // No `*`: an exact match.
        return rest.is_empty();
    };
    for m in middle {
        match rest.find(m) {
            Some(i) => rest = &rest[i + m.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}

/// The ECR authorization token: Basic credentials for the data plane (the registry API).
///
/// `Debug` redacts the password, so a token can be logged safely.
#[derive(Clone, PartialEq, Eq)]
pub struct EcrToken {
    /// The user name; always `AWS` for ECR.
    pub username: String,
    /// The password, decoded from the base64 `AWS:<password>` token.
    pub password: String,
    /// The registry endpoint the token is for, e.g.
    /// `https://123456789012.dkr.ecr.us-east-1.amazonaws.com`. moto returns the real AWS host
    /// name here, so tests override the data-plane endpoint instead of using this one.
    pub proxy_endpoint: String,
    /// When the token expires (12 h after issue on AWS). `None` when the service gave no time.
    pub expires_at: Option<SystemTime>,
}

impl EcrToken {
    /// The host (and port, if any) of [`proxy_endpoint`](Self::proxy_endpoint), without scheme
    /// or path: what an OCI client calls the registry.
    pub fn registry_host(&self) -> &str {
        let s = self.proxy_endpoint.as_str();
        let s = s.split_once("://").map_or(s, |(_, rest)| rest);
        s.split('/').next().unwrap_or(s)
    }
}

impl fmt::Debug for EcrToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EcrToken")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("proxy_endpoint", &self.proxy_endpoint)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// Server-side encryption of a new repository. Fixed at creation; ECR cannot change it later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Encryption {
    /// Amazon S3-managed keys (`AES256`), ECR's default.
    Aes256,
    /// AWS KMS (`KMS`).
    Kms {
        /// The KMS key ARN or id; `None` uses the AWS-managed `aws/ecr` key.
        key: Option<String>,
    },
}

/// Settings for [`EcrApi::create_repository`].
///
/// `Default` is ECR's own default: no scan on push, mutable tags, ECR's default encryption
/// (AES256), no lifecycle policy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepoSettings {
    /// Scan images on push (basic scanning). Default `false`.
    pub scan_on_push: bool,
    /// Create the repository with `IMMUTABLE` tags. Default `false` (`MUTABLE`).
    pub immutable: bool,
    /// Encryption; `None` (the default) leaves ECR's default, AES256.
    pub encryption: Option<Encryption>,
    /// A lifecycle policy document (JSON text), put right after creation. Default `None`.
    pub lifecycle_policy: Option<String>,
}

/// An ECR control-plane failure, classified.
///
/// Classification uses the SDK's error code and HTTP status, never the message text. Every
/// message names the ECR operation and, where there is one, the repository.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EcrError {
    /// The repository does not exist (`RepositoryNotFoundException`).
    #[error("{op}: repository {repository:?} not found")]
    NotFound {
        /// The ECR operation, e.g. `ListTagsForResource`.
        op: &'static str,
        /// The repository.
        repository: String,
    },
    /// The repository already exists (`RepositoryAlreadyExistsException`).
    #[error("{op}: repository {repository:?} already exists")]
    AlreadyExists {
        /// The ECR operation, e.g. `CreateRepository`.
        op: &'static str,
        /// The repository.
        repository: String,
    },
    /// The credentials are missing, invalid, expired, or not allowed to do this (HTTP 401/403,
    /// `AccessDeniedException`, `UnrecognizedClientException`, ...).
    #[error("{op}{}: access denied: {message}", on_repository(.repository))]
    AccessDenied {
        /// The ECR operation.
        op: &'static str,
        /// The repository, when the call was about one.
        repository: Option<String>,
        /// The service's message.
        message: String,
    },
    /// The service throttled the call (HTTP 429, `ThrottlingException`, ...) after the SDK's
    /// own retries were used up. Worth retrying later.
    #[error("{op}{}: throttled: {message}", on_repository(.repository))]
    Throttled {
        /// The ECR operation.
        op: &'static str,
        /// The repository, when the call was about one.
        repository: Option<String>,
        /// The service's message.
        message: String,
    },
    /// Anything else: other service errors, network failures, timeouts, bad configuration
    /// (e.g. no region), malformed responses. The message names the repository, if any.
    #[error("{op}: {message}")]
    Other {
        /// The ECR operation.
        op: &'static str,
        /// What went wrong, with the full error chain.
        message: String,
    },
}

fn on_repository(repository: &Option<String>) -> String {
    match repository {
        Some(r) => format!(" on repository {r:?}"),
        None => String::new(),
    }
}

impl EcrError {
    /// The ECR operation that failed, e.g. `DescribeRepositories`.
    pub fn op(&self) -> &'static str {
        match self {
            EcrError::NotFound { op, .. }
            | EcrError::AlreadyExists { op, .. }
            | EcrError::AccessDenied { op, .. }
            | EcrError::Throttled { op, .. }
            | EcrError::Other { op, .. } => op,
        }
    }

    /// Whether trying again later may succeed. Only throttling qualifies: the SDK already
    /// retried transient network and 5xx errors (standard retry mode) before we saw them.
    pub fn is_retryable(&self) -> bool {
        matches!(self, EcrError::Throttled { .. })
    }
}

/// The ECR control-plane verbs this tool uses.
///
/// Implemented over aws-sdk-ecr by [`SdkEcr`]; planner and executor tests implement it in
/// memory. The methods return `Send` futures (so generic callers can spawn them); the trait is
/// therefore used through generics (`A: EcrApi`), not `dyn`. It is implemented for `&A` and
/// `Arc<A>` too, so one client can be shared.
pub trait EcrApi: Send + Sync {
    /// All repositories of the registry (every page), or only those named `prefix/...` when a
    /// prefix is given (a trailing `/` on the prefix is ignored). Order is unspecified.
    fn repositories(
        &self,
        prefix: Option<&str>,
    ) -> impl Future<Output = Result<Vec<Repository>, EcrError>> + Send;

    /// One repository by exact name, or `None` when it does not exist.
    ///
    /// The default implementation lists every repository; [`SdkEcr`] asks for just this one.
    fn repository(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<Repository>, EcrError>> + Send {
        async move {
            let all = self.repositories(None).await?;
            Ok(all.into_iter().find(|r| r.name == name))
        }
    }

    /// The resource tags of the repository with this ARN, as `(key, value)` pairs.
    fn tags(
        &self,
        arn: &str,
    ) -> impl Future<Output = Result<Vec<(String, String)>, EcrError>> + Send;

    /// A fresh authorization token for the registry's data plane.
    fn auth_token(&self) -> impl Future<Output = Result<EcrToken, EcrError>> + Send;

    /// Creates a repository with these settings and resource tags, then puts the lifecycle
    /// policy if one is set. An existing repository gives [`EcrError::AlreadyExists`].
    fn create_repository(
        &self,
        name: &str,
        settings: &RepoSettings,
        tags: &[(String, String)],
    ) -> impl Future<Output = Result<Repository, EcrError>> + Send;

    /// Adds or overwrites these resource tags on the repository with this ARN. Other tags are
    /// kept (ECR's `TagResource` merges by key).
    fn tag_resource(
        &self,
        arn: &str,
        tags: &[(String, String)],
    ) -> impl Future<Output = Result<(), EcrError>> + Send;

    /// Whether the account setting `BLOB_MOUNTING` is `ENABLED` (`GetAccountSetting`): only
    /// then does ECR mount blobs across repositories. The default implementation fails, as
    /// an adapter that cannot tell; callers treat a failure as "unknown".
    fn blob_mounting(&self) -> impl Future<Output = Result<bool, EcrError>> + Send {
        async {
            Err(EcrError::Other {
                op: "GetAccountSetting",
                message: "not available from this adapter".into(),
            })
        }
    }
}

impl<A: EcrApi> EcrApi for &A {
    fn repositories(
        &self,
        prefix: Option<&str>,
    ) -> impl Future<Output = Result<Vec<Repository>, EcrError>> + Send {
        (**self).repositories(prefix)
    }
    fn repository(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<Repository>, EcrError>> + Send {
        (**self).repository(name)
    }
    fn tags(
        &self,
        arn: &str,
    ) -> impl Future<Output = Result<Vec<(String, String)>, EcrError>> + Send {
        (**self).tags(arn)
    }
    fn auth_token(&self) -> impl Future<Output = Result<EcrToken, EcrError>> + Send {
        (**self).auth_token()
    }
    fn create_repository(
        &self,
        name: &str,
        settings: &RepoSettings,
        tags: &[(String, String)],
    ) -> impl Future<Output = Result<Repository, EcrError>> + Send {
        (**self).create_repository(name, settings, tags)
    }
    fn tag_resource(
        &self,
        arn: &str,
        tags: &[(String, String)],
    ) -> impl Future<Output = Result<(), EcrError>> + Send {
        (**self).tag_resource(arn, tags)
    }
    fn blob_mounting(&self) -> impl Future<Output = Result<bool, EcrError>> + Send {
        (**self).blob_mounting()
    }
}

impl<A: EcrApi> EcrApi for Arc<A> {
    fn repositories(
        &self,
        prefix: Option<&str>,
    ) -> impl Future<Output = Result<Vec<Repository>, EcrError>> + Send {
        (**self).repositories(prefix)
    }
    fn repository(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<Repository>, EcrError>> + Send {
        (**self).repository(name)
    }
    fn tags(
        &self,
        arn: &str,
    ) -> impl Future<Output = Result<Vec<(String, String)>, EcrError>> + Send {
        (**self).tags(arn)
    }
    fn auth_token(&self) -> impl Future<Output = Result<EcrToken, EcrError>> + Send {
        (**self).auth_token()
    }
    fn create_repository(
        &self,
        name: &str,
        settings: &RepoSettings,
        tags: &[(String, String)],
    ) -> impl Future<Output = Result<Repository, EcrError>> + Send {
        (**self).create_repository(name, settings, tags)
    }
    fn tag_resource(
        &self,
        arn: &str,
        tags: &[(String, String)],
    ) -> impl Future<Output = Result<(), EcrError>> + Send {
        (**self).tag_resource(arn, tags)
    }
    fn blob_mounting(&self) -> impl Future<Output = Result<bool, EcrError>> + Send {
        (**self).blob_mounting()
    }
}

/// The repository name inside an ECR repository ARN
/// (`arn:aws:ecr:REGION:ACCOUNT:repository/NAME` → `NAME`), or the input unchanged when it is
/// not such an ARN. Used to name the repository in errors about ARN-addressed calls.
pub fn repository_name_from_arn(arn: &str) -> &str {
    arn.split_once(":repository/").map_or(arn, |(_, name)| name)
}

/// Keeps the repositories inside `prefix` (named `prefix/...`). A trailing `/` on the prefix
/// is ignored; an empty prefix keeps everything.
pub(crate) fn in_prefix(name: &str, prefix: Option<&str>) -> bool {
    match prefix.map(|p| p.trim_end_matches('/')) {
        None | Some("") => true,
        Some(p) => name
            .strip_prefix(p)
            .is_some_and(|rest| rest.starts_with('/')),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_debug_redacts_password() {
        let t = EcrToken {
            username: "AWS".into(),
            password: "s3cr3t-password".into(),
            proxy_endpoint: "https://123456789012.dkr.ecr.us-east-1.amazonaws.com".into(),
            expires_at: None,
        };
        let d = format!("{t:?}");
        assert!(!d.contains("s3cr3t"), "{d}");
        assert!(d.contains("<redacted>") && d.contains("AWS"), "{d}");
        assert_eq!(
            t.registry_host(),
            "123456789012.dkr.ecr.us-east-1.amazonaws.com"
        );
    }

    #[test]
    fn registry_host_strips_scheme_and_path() {
        let mut t = EcrToken {
            username: "AWS".into(),
            password: String::new(),
            proxy_endpoint: "http://127.0.0.1:5000/".into(),
            expires_at: None,
        };
        assert_eq!(t.registry_host(), "127.0.0.1:5000");
        t.proxy_endpoint = "127.0.0.1:5000".into();
        assert_eq!(t.registry_host(), "127.0.0.1:5000");
    }

    #[test]
    fn prefix_matches_whole_path_components() {
        let cases = [
            ("mirror/nginx", Some("mirror"), true),
            ("mirror/nginx", Some("mirror/"), true),
            ("mirror/a/b", Some("mirror/a"), true),
            ("mirror", Some("mirror"), false),
            ("mirrors/nginx", Some("mirror"), false),
            ("other/mirror/x", Some("mirror"), false),
            ("anything", None, true),
            ("anything", Some(""), true),
        ];
        for (name, prefix, want) in cases {
            assert_eq!(in_prefix(name, prefix), want, "{name} in {prefix:?}");
        }
    }

    #[test]
    fn wildcard_filters_match_whole_tags() {
        let cases = [
            ("latest", "latest", true),
            ("latest", "latest-1", false),
            ("latest*", "latest", true),
            ("latest*", "latest-arm64", true),
            ("latest*", "v1-latest", false),
            ("*-dev", "1.2-dev", true),
            ("*-dev", "1.2-dev2", false),
            ("v*-rc*", "v1.2-rc3", true),
            ("v*-rc*", "v1.2", false),
            ("*", "anything", true),
            ("a*a", "a", false),
            ("a*a", "aa", true),
        ];
        for (f, t, want) in cases {
            assert_eq!(wildcard_match(f, t), want, "{f} ~ {t}");
        }
        let m = TagMutability::ImmutableWithExclusion(vec!["latest*".into()]);
        assert!(!m.is_immutable("latest"));
        assert!(m.is_immutable("v1"));
        let m = TagMutability::MutableWithExclusion(vec!["v*".into()]);
        assert!(m.is_immutable("v1"));
        assert!(!m.is_immutable("latest"));
        assert!(TagMutability::Immutable.is_immutable("x"));
        assert!(!TagMutability::Mutable.is_immutable("x"));
    }

    #[test]
    fn arn_to_name() {
        assert_eq!(
            repository_name_from_arn("arn:aws:ecr:us-east-1:123456789012:repository/mirror/keda"),
            "mirror/keda"
        );
        assert_eq!(repository_name_from_arn("not-an-arn"), "not-an-arn");
    }

    #[test]
    fn error_messages_name_op_and_repository() {
        let e = EcrError::AccessDenied {
            op: "ListTagsForResource",
            repository: Some("mirror/x".into()),
            message: "no".into(),
        };
        assert_eq!(
            e.to_string(),
            "ListTagsForResource on repository \"mirror/x\": access denied: no"
        );
        let e = EcrError::NotFound {
            op: "TagResource",
            repository: "mirror/y".into(),
        };
        assert!(e.to_string().contains("TagResource") && e.to_string().contains("mirror/y"));
        assert!(!e.is_retryable());
        assert_eq!(e.op(), "TagResource");
    }
}
