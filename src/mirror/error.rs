//! The pipeline's error type, and the stable failure labels that reports carry.

use crate::oci::RegistryError;

/// The crate-level error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A usage or configuration error: exit code 2.
    #[error("{0}")]
    Usage(String),
    /// The trust policy refused the image: a failed item (exit code 1).
    #[error("{0}")]
    Blocked(String),
    /// A data-plane error.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// A reference/tag/platform error in user input.
    #[error(transparent)]
    Spec(#[from] crate::oci::SpecError),
    /// An ECR control-plane error.
    #[error(transparent)]
    Ecr(#[from] crate::ecr::EcrError),
    /// A trust-policy error.
    #[error(transparent)]
    Policy(#[from] crate::policy::PolicyError),
    /// An item failed (a one-item plan, as `copy` runs it).
    #[error("{0}")]
    Item(Failure),
}

impl Error {
    /// The process exit code for this error when it ends a command.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_) | Error::Spec(_) | Error::Policy(_) => 2,
            Error::Registry(RegistryError::Config(_)) => 2,
            Error::Item(f) if f.label == Label::Config => 2,
            _ => 1,
        }
    }
}

impl From<crate::oci::archive::ArchiveError> for Error {
    fn from(e: crate::oci::archive::ArchiveError) -> Self {
        match e {
            crate::oci::archive::ArchiveError::Unusable { .. } => Error::Usage(e.to_string()),
            crate::oci::archive::ArchiveError::Corrupt { path, reason } => {
                Error::Registry(RegistryError::Invalid { what: path, reason })
            }
            crate::oci::archive::ArchiveError::Unsupported { path, reason } => {
                Error::Registry(RegistryError::Unsupported { what: path, reason })
            }
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The stable label of a failed, blocked or deferred item: what JSON Lines, the report files,
/// the Kubernetes Events and the metrics carry, so that alerts and scripts never parse messages.
/// The list, with what each means, is in `docs/output.md`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Label {
    /// The upstream tag or manifest does not exist (404).
    UpstreamNotFound,
    /// Something other than the upstream tag was not found (a blob, a destination repository).
    NotFound,
    /// Authentication or authorization failed (401/403, a failed token request).
    Auth,
    /// A 401/403 that may mean the repository does not exist (Docker Hub answers a missing
    /// repository with 401 `insufficient_scope`).
    NotFoundOrDenied,
    /// The TLS handshake failed (unknown CA, bad certificate).
    Tls,
    /// A connect or read timeout.
    Timeout,
    /// The connection failed or was reset.
    Network,
    /// The registry rate-limited us (429).
    RateLimited,
    /// The registry answered with another unexpected status (5xx, 4xx).
    RegistryError,
    /// The trust policy refused the image.
    PolicyBlocked,
    /// The trust policy could not be evaluated (its signatures could not be read).
    PolicyError,
    /// Content did not hash to its digest.
    DigestMismatch,
    /// Content length disagreed with its descriptor.
    SizeMismatch,
    /// The tag is immutable in ECR and holds another digest.
    ImmutableTag,
    /// The repository's resource tags (the mirror spec) are invalid.
    InvalidSpec,
    /// A manifest is malformed, hostile or too large.
    InvalidManifest,
    /// The content is valid but not copied (e.g. Docker schema 1).
    Unsupported,
    /// A platform filter matched nothing upstream.
    NoMatchingPlatform,
    /// Local configuration (a cert dir, an auth file entry).
    Config,
    /// The run was cancelled (SIGTERM, Ctrl-C) before the item finished.
    Cancelled,
    /// The ECR API failed.
    EcrApi,
    /// The destination refused a referrer (405; ECR for a subject that is an index). Reported
    /// per artifact; the image is copied.
    ReferrerRefused,
}

impl Label {
    /// The label as reports write it, e.g. `upstream-not-found`.
    pub fn as_str(self) -> &'static str {
        match self {
            Label::UpstreamNotFound => "upstream-not-found",
            Label::NotFound => "not-found",
            Label::Auth => "auth",
            Label::NotFoundOrDenied => "not-found-or-denied",
            Label::Tls => "tls",
            Label::Timeout => "timeout",
            Label::Network => "network",
            Label::RateLimited => "rate-limited",
            Label::RegistryError => "registry-error",
            Label::PolicyBlocked => "policy-blocked",
            Label::PolicyError => "policy-error",
            Label::DigestMismatch => "digest-mismatch",
            Label::SizeMismatch => "size-mismatch",
            Label::ImmutableTag => "immutable-tag",
            Label::InvalidSpec => "invalid-spec",
            Label::InvalidManifest => "invalid-manifest",
            Label::Unsupported => "unsupported",
            Label::NoMatchingPlatform => "no-matching-platform",
            Label::Config => "config",
            Label::Cancelled => "cancelled",
            Label::EcrApi => "ecr-api",
            Label::ReferrerRefused => "referrer-refused",
        }
    }

    /// Every label, in a stable order (for docs and tests).
    pub const ALL: [Label; 22] = [
        Label::UpstreamNotFound,
        Label::NotFound,
        Label::Auth,
        Label::NotFoundOrDenied,
        Label::Tls,
        Label::Timeout,
        Label::Network,
        Label::RateLimited,
        Label::RegistryError,
        Label::PolicyBlocked,
        Label::PolicyError,
        Label::DigestMismatch,
        Label::SizeMismatch,
        Label::ImmutableTag,
        Label::InvalidSpec,
        Label::InvalidManifest,
        Label::Unsupported,
        Label::NoMatchingPlatform,
        Label::Config,
        Label::Cancelled,
        Label::EcrApi,
        Label::ReferrerRefused,
    ];

    /// The label of a data-plane error, classified by type and status.
    pub fn of_registry(e: &RegistryError) -> Label {
        use crate::oci::TransportKind;
        match e {
            RegistryError::Status { status: 404, .. } => Label::NotFound,
            RegistryError::Status {
                status: 401 | 403, ..
            } => Label::Auth,
            RegistryError::Status { status: 429, .. } => Label::RateLimited,
            RegistryError::Status { .. } => Label::RegistryError,
            RegistryError::Auth { .. } => Label::Auth,
            RegistryError::Transport { kind, .. } => match kind {
                TransportKind::Tls => Label::Tls,
                TransportKind::Timeout => Label::Timeout,
                TransportKind::Reauth => Label::Auth,
                TransportKind::Connect | TransportKind::Reset | TransportKind::Body => {
                    Label::Network
                }
            },
            RegistryError::DigestMismatch { .. } => Label::DigestMismatch,
            RegistryError::SizeMismatch { .. } => Label::SizeMismatch,
            RegistryError::Unsupported { .. } => Label::Unsupported,
            RegistryError::Invalid { .. } => Label::InvalidManifest,
            RegistryError::NoMatchingPlatform { .. } => Label::NoMatchingPlatform,
            RegistryError::PullBudget { .. } => Label::RateLimited,
            RegistryError::NotFoundOrDenied { .. } => Label::NotFoundOrDenied,
            RegistryError::Config(_) => Label::Config,
            RegistryError::Cancelled => Label::Cancelled,
        }
    }

    /// The label of a pipeline error.
    pub fn of_error(e: &Error) -> Label {
        match e {
            Error::Usage(_) => Label::Config,
            Error::Blocked(_) => Label::PolicyBlocked,
            Error::Registry(r) => Label::of_registry(r),
            Error::Spec(_) => Label::InvalidSpec,
            Error::Ecr(_) => Label::EcrApi,
            Error::Policy(_) => Label::PolicyError,
            Error::Item(f) => f.label,
        }
    }
}

impl std::fmt::Display for Label {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an item failed, was blocked or was deferred: a stable [`Label`] and a message for people.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// The stable label.
    pub label: Label,
    /// What happened, naming the input; never a credential.
    pub message: String,
}

impl Failure {
    /// A failure with `label` and `message`.
    pub fn new(label: Label, message: impl Into<String>) -> Failure {
        Failure {
            label,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<&RegistryError> for Failure {
    fn from(e: &RegistryError) -> Failure {
        Failure::new(Label::of_registry(e), e.to_string())
    }
}

impl From<RegistryError> for Failure {
    fn from(e: RegistryError) -> Failure {
        Failure::from(&e)
    }
}

impl From<&Error> for Failure {
    fn from(e: &Error) -> Failure {
        Failure::new(Label::of_error(e), e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_distinct_kebab_case() {
        let mut seen = std::collections::BTreeSet::new();
        for l in Label::ALL {
            let s = l.as_str();
            assert!(seen.insert(s), "{s} twice");
            assert!(s.chars().all(|c| c.is_ascii_lowercase() || c == '-'), "{s}");
        }
    }

    #[test]
    fn registry_errors_are_labelled_by_status_and_kind() {
        let status = |code| RegistryError::Status {
            registry: "r".into(),
            method: "GET".into(),
            what: "x".into(),
            status: code,
            code: None,
            message: String::new(),
            retry_after: None,
        };
        assert_eq!(Label::of_registry(&status(404)), Label::NotFound);
        assert_eq!(Label::of_registry(&status(401)), Label::Auth);
        assert_eq!(Label::of_registry(&status(429)), Label::RateLimited);
        assert_eq!(Label::of_registry(&status(503)), Label::RegistryError);
        let budget = RegistryError::PullBudget {
            registry: "docker.io".into(),
            what: "manifest library/nginx:1".into(),
            window_secs: Some(21600),
        };
        assert_eq!(Label::of_registry(&budget), Label::RateLimited);
        assert!(budget.to_string().contains("w=21600"), "{budget}");
        assert!(!budget.is_retryable());
        let tls = RegistryError::Transport {
            registry: "r".into(),
            what: "x".into(),
            kind: crate::oci::TransportKind::Tls,
            detail: String::new(),
        };
        assert_eq!(Label::of_registry(&tls), Label::Tls);
    }
}
