//! The image trust policy: containers-policy.json(5), as skopeo and podman use it.
//!
//! Before an image is copied, its source reference is checked against a policy file. This module
//! parses the file, picks the requirements for the image, and verifies cosign ("sigstore")
//! signatures. The rules come from containers/image (the library behind skopeo). The aim is that
//! the mirror accepts and rejects exactly the images that `skopeo copy` would, and gives the same
//! error texts.
//!
//! # Invariants, and why
//!
//! - **Strict parsing, all or nothing.** An unknown or duplicated key, trailing data, a missing
//!   `default`, an empty requirement list, or an unknown requirement or `signedIdentity` type
//!   rejects the *whole* file. A typo in a security policy must not quietly weaken it. For example,
//!   a misspelt `keyPath` must not turn into "no key configured", and a duplicated scope must not
//!   silently replace the first. serde_json keeps the last of two duplicated keys without a word,
//!   so the file is first read into an order-preserving tree (`json.rs`), then checked member by
//!   member, in document order. The first problem found is the one reported, with containers/image's
//!   message.
//! - **The most specific scope wins, and scopes are never merged.** The lookup order is: the exact
//!   `host/repo:tag`, then each parent namespace, then `host[:port]`, then the `*.` host wildcards,
//!   then the transport's `""` scope, then `default`. The first scope that exists supplies *all*
//!   the requirements. So an administrator can relax or tighten one repository without reading
//!   every broader rule that might otherwise combine with it. This is also what skopeo does.
//! - **All requirements of the scope must accept; one good signature per requirement is enough.**
//! - **A requirement we cannot check rejects.** `signedBy` (GPG), `signedBaseLayer`, and
//!   `sigstoreSigned` with `fulcio`, `pki` or a Rekor key are parsed, so a valid file still loads,
//!   but they evaluate to [`RejectionKind::NotSupported`] ("… is not supported yet"). Accepting
//!   what we cannot verify would turn a policy that demands signatures into one that demands
//!   nothing.
//! - **Keys are loaded with the policy.** Every `keyPath`/`keyPaths` file is read, and every key is
//!   parsed, when the policy is loaded. A missing or bad key fails at start-up with the file's name,
//!   not in the middle of a sync. Relative paths are relative to the current directory, as in
//!   containers/image. The supported key types are ECDSA P-256, Ed25519 and RSA.
//! - **Signatures are per manifest.** [`evaluate`] checks one manifest digest against the
//!   signatures stored for that digest. For a multi-arch image, the caller checks each platform
//!   manifest it copies separately. A signature on the index alone does not vouch for the
//!   platform images.
//!
//! Only the `docker` transport's scopes are consulted. The sections of other transports are
//! parsed, validated as containers/image validates them, and kept.

mod eval;
mod json;
mod keys;
mod model;
mod parse;
mod payload;
mod reference;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

pub use eval::{
    evaluate, needs_signatures, Rejection, RejectionKind, SignatureBlob, Verdict,
    SIGNATURE_ANNOTATION, SIGNATURE_LAYER_MEDIA_TYPE,
};
pub use keys::PublicKey;
pub use model::{
    Fulcio, Pki, Policy, PolicyError, RekorKeySource, Requirement, SignedBy, SignedByKeySource,
    SignedIdentity, SigstoreKeySource, SigstoreSigned, DOCKER_TRANSPORT,
};
pub use reference::ImageName;

/// The per-user policy file, relative to `$HOME`.
pub const USER_POLICY_PATH: &str = ".config/containers/policy.json";

/// The system-wide policy file.
pub const SYSTEM_POLICY_PATH: &str = "/etc/containers/policy.json";

/// Finds the policy file to use. The order is: `--policy FILE` (`explicit`, returned as given;
/// reading it reports any error), then `$HOME/.config/containers/policy.json`, then
/// `/etc/containers/policy.json`. If none exists, the error names `--policy` and
/// `--insecure-policy`. There is never a silent fallback to "accept anything".
pub fn locate(explicit: Option<&Path>) -> Result<PathBuf, PolicyError> {
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from);
    locate_in(explicit, home.as_deref(), Path::new(SYSTEM_POLICY_PATH))
}

/// [`locate`] with the home directory and the system path given (for tests).
fn locate_in(
    explicit: Option<&Path>,
    home: Option<&Path>,
    system: &Path,
) -> Result<PathBuf, PolicyError> {
    if let Some(path) = explicit {
        return Ok(path.to_path_buf());
    }
    let mut searched = Vec::new();
    if let Some(home) = home {
        let user = home.join(USER_POLICY_PATH);
        if user.exists() {
            return Ok(user);
        }
        searched.push(user);
    }
    if system.exists() {
        return Ok(system.to_path_buf());
    }
    searched.push(system.to_path_buf());
    Err(PolicyError::NotFound { searched })
}
