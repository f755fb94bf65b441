//! The policy's one error type: loading, locating, and parsing an image reference.

use std::path::PathBuf;

/// Errors from loading a policy, locating it, or parsing an image reference.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The policy file could not be read.
    #[error("reading policy file {}: {source}", path.display())]
    Read {
        /// The file that could not be read.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// The policy is invalid; `message` is containers/image's text for the same problem.
    #[error("invalid policy in {origin:?}: {message}")]
    Invalid {
        /// Where the policy came from (normally its file path).
        origin: String,
        /// What is wrong, in containers/image's words.
        message: String,
    },
    /// No policy file was given and none of the default locations exists.
    #[error(
        "no trust policy found (looked for {}); pass --policy FILE, or --insecure-policy to copy images without any signature policy",
        .searched.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    )]
    NotFound {
        /// The default locations that were tried, in order.
        searched: Vec<PathBuf>,
    },
    /// An image reference could not be parsed.
    #[error("invalid image reference {reference:?}: {message}")]
    InvalidReference {
        /// The reference as given.
        reference: String,
        /// What is wrong with it, in containers/image's words.
        message: String,
    },
}
