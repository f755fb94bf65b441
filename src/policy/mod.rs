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
//! - **A requirement we cannot check rejects.** `signedBy` (GPG) and `signedBaseLayer` are parsed,
//!   so a valid file still loads, but they evaluate to [`RejectionKind::NotSupported`] ("… is not
//!   supported yet"). Accepting what we cannot verify would turn a policy that demands signatures
//!   into one that demands nothing.
//! - **Keys and trust roots are loaded with the policy.** Every `keyPath`/`keyPaths` file, every
//!   Rekor key, and the CA files of `fulcio` and `pki` are read and parsed when the policy is
//!   loaded. A missing or bad file fails at start-up with its name, not in the middle of a sync.
//!   Relative paths are relative to the current directory, as in containers/image. The supported
//!   key types are ECDSA P-256 and P-384, Ed25519 and RSA; Rekor keys must be ECDSA.
//! - **Keyless is checked as containers/image checks it** (`fulcio.rs`, `rekor.rs`): the Rekor SET
//!   is verified with the configured log key and must be for this payload, signature and
//!   certificate; the Fulcio certificate must chain to the configured CA *at the entry's
//!   integrated time* (Fulcio certificates live ten minutes), for code signing, with the OIDC
//!   issuer and SAN email the policy names. `pki` (`pki.rs`) checks its chain at the current time.
//!   Path validation is rustls-webpki's, with Go's extra rules around it (`x509.rs`).
//! - **Signatures are per manifest.** [`evaluate`] checks one manifest digest against the
//!   signatures stored for that digest. For a multi-arch image, the caller checks each platform
//!   manifest it copies separately. A signature on the index alone does not vouch for the
//!   platform images.
//!
//! - **cosign v3 bundles go beyond containers/image** (`bundle.rs`): a sigstore bundle referrer
//!   ([`SignatureBlob::from_bundle`]) is checked with the same trust roots (DSSE or message
//!   signature, Rekor SET and entry binding, certificate), and must sign this manifest. It names
//!   no docker-reference, so only `matchRepository` and `exactRepository` can accept it.
//!
//! Only the `docker` transport's scopes are consulted. The sections of other transports are
//! parsed, validated as containers/image validates them, and kept.

mod bundle;
mod chain;
mod error;
mod eval;
mod fulcio;
mod json;
mod keys;
mod load;
mod model;
mod parse;
mod payload;
mod pki;
mod reference;
mod rekor;
mod sigstore;
mod verdict;
mod x509;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

pub use eval::{
    evaluate, is_sigstore_bundle_type, needs_signatures, Rejection, RejectionKind, SignatureBlob,
    Verdict, SIGNATURE_ANNOTATION, SIGNATURE_LAYER_MEDIA_TYPE, SIGSTORE_BUNDLE_MEDIA_TYPES,
};
pub use keys::PublicKey;
pub use model::{
    Fulcio, Pki, Policy, PolicyError, RekorKeySource, Requirement, SignedBy, SignedByKeySource,
    SignedIdentity, SigstoreKeySource, SigstoreSigned, DOCKER_TRANSPORT,
};
pub use reference::ImageName;
pub use sigstore::{BUNDLE_ANNOTATION, CERTIFICATE_ANNOTATION, CHAIN_ANNOTATION};

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
