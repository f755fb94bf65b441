//! The data plane's error type.
//!
//! Errors are classified by *type and status*, never by message text:
//! [`RegistryError::is_retryable`] decides what the retry layer may repeat, and
//! [`RegistryError::label`] gives the stable failure label that reports carry.
//!
//! No variant ever carries a credential: errors name the registry and, where known, the user,
//! but never a password or token (see [`Secret`](super::Secret)).

use std::time::Duration;

/// How a request failed below HTTP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransportKind {
    /// The TCP connection could not be made.
    Connect,
    /// The TLS handshake failed (unknown CA, bad certificate): configuration, never retried.
    Tls,
    /// A connect or read timeout.
    Timeout,
    /// The connection was reset or closed early.
    Reset,
    /// The response body could not be read.
    Body,
    /// The credentials expired during a streamed upload, which cannot be replayed in place:
    /// the whole transfer is restarted with fresh credentials.
    Reauth,
}

impl std::fmt::Display for TransportKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TransportKind::Connect => "connect",
            TransportKind::Tls => "tls",
            TransportKind::Timeout => "timeout",
            TransportKind::Reset => "reset",
            TransportKind::Body => "body",
            TransportKind::Reauth => "reauth",
        })
    }
}

/// Errors of the data plane (OCI distribution API).
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The registry answered with an unexpected HTTP status.
    #[error("{registry}: {method} {what}: HTTP {status}{}{}", code.as_deref().map(|c| format!(" {c}")).unwrap_or_default(), if message.is_empty() { String::new() } else { format!(": {message}") })]
    Status {
        /// `host[:port]`.
        registry: String,
        /// HTTP method.
        method: String,
        /// What was asked for, e.g. `manifest library/nginx:1.25`.
        what: String,
        /// HTTP status code.
        status: u16,
        /// The first OCI error code in the body, e.g. `MANIFEST_UNKNOWN`.
        code: Option<String>,
        /// The first OCI error message in the body (truncated).
        message: String,
        /// The wait the server asked for with `Retry-After`.
        retry_after: Option<Duration>,
    },
    /// Authentication failed (401/403 after presenting credentials, or a failed token request).
    #[error("{registry}: authentication failed{}: {reason}", user.as_deref().map(|u| format!(" for user {u:?}")).unwrap_or_default())]
    Auth {
        /// `host[:port]`.
        registry: String,
        /// The user name, if one was configured (never the password).
        user: Option<String>,
        /// What went wrong.
        reason: String,
    },
    /// The connection failed, was reset, or timed out. Retryable.
    #[error("{registry}: {what}: {kind}: {detail}")]
    Transport {
        /// `host[:port]`.
        registry: String,
        /// What was being done.
        what: String,
        /// What kind of failure.
        kind: TransportKind,
        /// The underlying error text (from reqwest/hyper; contains no credentials).
        detail: String,
    },
    /// Content did not hash to the digest that names it.
    #[error("digest mismatch for {what}: expected {expected}, got {actual}")]
    DigestMismatch {
        /// The blob or manifest.
        what: String,
        /// The digest from the descriptor or reference.
        expected: String,
        /// The digest of the bytes received.
        actual: String,
    },
    /// Content length disagreed with the descriptor.
    #[error("size mismatch for {what}: descriptor says {expected} bytes, got {actual}")]
    SizeMismatch {
        /// The blob or manifest.
        what: String,
        /// Size from the descriptor.
        expected: u64,
        /// Size received.
        actual: u64,
    },
    /// The content is well-formed but we do not copy it (e.g. Docker schema 1).
    #[error("{what}: {reason}")]
    Unsupported {
        /// The manifest.
        what: String,
        /// Why, and what to do.
        reason: String,
    },
    /// The content is malformed or hostile (bad JSON, media type disagreement, too large, loops).
    #[error("{what}: {reason}")]
    Invalid {
        /// The manifest or blob.
        what: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A platform filter matched nothing in the source.
    #[error("{image}: no platform matches {wanted}; the image offers: {available}")]
    NoMatchingPlatform {
        /// The source image.
        image: String,
        /// The filter.
        wanted: String,
        /// The platforms present.
        available: String,
    },
    /// The registry's pull budget (Docker Hub's `RateLimit-Remaining`) is used up for this run:
    /// it answered a manifest GET with 429, or its last `RateLimit-Remaining` was 0. No
    /// manifest GET is sent to it again in this run; the item is deferred to the next run.
    #[error("{registry}: {what}: the pull budget is used up{}; deferred to the next run", window_secs.map(|w| format!(" (RateLimit-Remaining 0 in a window of w={w} s)")).unwrap_or_default())]
    PullBudget {
        /// `host[:port]`.
        registry: String,
        /// What would have been pulled, e.g. `manifest library/nginx:1.25`.
        what: String,
        /// The window of the budget, from `RateLimit-Limit`/`-Remaining: N;w=SECS`.
        window_secs: Option<u64>,
    },
    /// A 401/403 whose challenge says `error="insufficient_scope"` although a token for the
    /// scope was presented: Docker Hub answers so for a repository that does not exist, so
    /// "not found" and "not authorized" cannot be told apart (jupyterhub/binderhub#1664).
    #[error("{what}: not found, or not authorized (HTTP {status} insufficient_scope)")]
    NotFoundOrDenied {
        /// `host[:port]`.
        registry: String,
        /// What was asked for; for a manifest, the full reference `host/repository:tag`.
        what: String,
        /// 401 or 403.
        status: u16,
    },
    /// A local configuration problem (cert dir, authfile).
    #[error("{0}")]
    Config(String),
    /// The run was cancelled (SIGTERM/Ctrl-C).
    #[error("cancelled")]
    Cancelled,
}

impl RegistryError {
    /// Whether repeating the operation may succeed: connect/reset/timeout errors, 408, 429
    /// and 5xx. Digest mismatches are not retried: a corrupt upstream stays corrupt.
    pub fn is_retryable(&self) -> bool {
        match self {
            RegistryError::Status { status, .. } => {
                matches!(*status, 408 | 429) || (500..=599).contains(status)
            }
            // A TLS failure (unknown CA, bad certificate) is configuration, not weather.
            RegistryError::Transport { kind, .. } => *kind != TransportKind::Tls,
            _ => false,
        }
    }

    /// The server-requested wait, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            RegistryError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Whether this is a 404 (manifest or blob unknown).
    pub fn is_not_found(&self) -> bool {
        matches!(self, RegistryError::Status { status: 404, .. })
    }

    /// A copy of this error for a second owner. Exact for the mismatch variants (which the
    /// blob verifier must hand to two places); others keep their message.
    pub fn duplicate(&self) -> RegistryError {
        match self {
            RegistryError::DigestMismatch {
                what,
                expected,
                actual,
            } => RegistryError::DigestMismatch {
                what: what.clone(),
                expected: expected.clone(),
                actual: actual.clone(),
            },
            RegistryError::SizeMismatch {
                what,
                expected,
                actual,
            } => RegistryError::SizeMismatch {
                what: what.clone(),
                expected: *expected,
                actual: *actual,
            },
            other => RegistryError::Invalid {
                what: "error".into(),
                reason: other.to_string(),
            },
        }
    }

    /// A short stable label for reports and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            RegistryError::Status { status: 404, .. } => "not-found",
            RegistryError::Status { .. } => "http-status",
            RegistryError::Auth { .. } => "auth",
            RegistryError::Transport { .. } => "transport",
            RegistryError::DigestMismatch { .. } => "digest-mismatch",
            RegistryError::SizeMismatch { .. } => "size-mismatch",
            RegistryError::Unsupported { .. } => "unsupported",
            RegistryError::Invalid { .. } => "invalid",
            RegistryError::NoMatchingPlatform { .. } => "no-matching-platform",
            RegistryError::PullBudget { .. } => "rate-limited",
            RegistryError::NotFoundOrDenied { .. } => "not-found-or-denied",
            RegistryError::Config(_) => "config",
            RegistryError::Cancelled => "cancelled",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16) -> RegistryError {
        RegistryError::Status {
            registry: "r".into(),
            method: "GET".into(),
            what: "x".into(),
            status: code,
            code: None,
            message: String::new(),
            retry_after: None,
        }
    }

    #[test]
    fn retry_classification_is_by_status() {
        for c in [408, 429, 500, 502, 503, 504] {
            assert!(status(c).is_retryable(), "{c}");
        }
        for c in [400, 401, 403, 404, 405, 412] {
            assert!(!status(c).is_retryable(), "{c}");
        }
        let dm = RegistryError::DigestMismatch {
            what: "b".into(),
            expected: "e".into(),
            actual: "a".into(),
        };
        assert!(!dm.is_retryable());
    }
}
