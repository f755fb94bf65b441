//! Policy evaluation: containers/image's `policy_eval.go`, `policy_eval_sigstore.go` and
//! `policy_reference_match.go`, for one (per-platform) manifest and its cosign signatures.

use super::json::{go_base64_std, go_quote};
use super::model::{Requirement, SignedIdentity, SigstoreSigned};
use super::payload::parse_payload;
use super::reference::{parse_named, parse_normalized_named, ImageName, Named};
use super::verdict::rejection;
pub use super::verdict::{
    is_sigstore_bundle_type, Rejection, RejectionKind, SignatureBlob, Verdict,
    SIGNATURE_ANNOTATION, SIGNATURE_LAYER_MEDIA_TYPE, SIGSTORE_BUNDLE_MEDIA_TYPES,
};

/// Whether evaluating `reqs` can depend on signatures. When it cannot (only
/// `insecureAcceptAnything`, `reject` and unsupported requirements), the caller may skip fetching
/// the `.sig` manifest.
pub fn needs_signatures(reqs: &[Requirement]) -> bool {
    reqs.iter()
        .any(|r| matches!(r, Requirement::SigstoreSigned(_)))
}

/// Evaluates `reqs` (from [`super::Policy::requirements_for`]) for one manifest.
///
/// `image` is the source reference as pulled (its tag is what the default `signedIdentity`
/// compares with); `manifest_digest` is the digest of the manifest being checked (for a
/// multi-arch image, each copied platform manifest is evaluated separately, with that manifest's
/// own signatures); `sigs` are the signature layers of its `sha256-<hex>.sig` manifest.
///
/// Every requirement must accept the image; the first rejection is returned. Within one
/// `sigstoreSigned` requirement one valid signature is enough.
pub fn evaluate(
    reqs: &[Requirement],
    image: &ImageName,
    manifest_digest: &str,
    sigs: &[SignatureBlob],
) -> Verdict {
    if reqs.is_empty() {
        return Verdict::Rejected(rejection(
            RejectionKind::Reject,
            "List of verification policy requirements must not be empty",
        ));
    }
    for req in reqs {
        if let Err(r) = evaluate_one(req, image, manifest_digest, sigs) {
            return Verdict::Rejected(r);
        }
    }
    Verdict::Accepted
}

fn evaluate_one(
    req: &Requirement,
    image: &ImageName,
    manifest_digest: &str,
    sigs: &[SignatureBlob],
) -> Result<(), Rejection> {
    match req {
        Requirement::InsecureAcceptAnything => Ok(()),
        Requirement::Reject => Err(rejection(
            RejectionKind::Reject,
            format!("Running image {} is rejected by policy.", image.transport_name()),
        )),
        Requirement::SignedBy(_) => Err(rejection(
            RejectionKind::NotSupported,
            "signedBy (GPG simple signing) verification is not supported yet; this requirement rejects every image",
        )),
        Requirement::SignedBaseLayer { .. } => Err(rejection(
            RejectionKind::NotSupported,
            "signedBaseLayer is not supported yet; this requirement rejects every image",
        )),
        Requirement::SigstoreSigned(s) => evaluate_sigstore(s, image, manifest_digest, sigs),
    }
}

fn evaluate_sigstore(
    req: &SigstoreSigned,
    image: &ImageName,
    manifest_digest: &str,
    sigs: &[SignatureBlob],
) -> Result<(), Rejection> {
    if sigs.is_empty() {
        return Err(rejection(
            RejectionKind::NoSignature,
            "A signature was required, but no signature exists",
        ));
    }
    let intended = image.policy_reference();
    let mut rejections = Vec::with_capacity(sigs.len());
    for sig in sigs {
        match check_signature(req, &intended, manifest_digest, sig) {
            Ok(()) => return Ok(()), // One accepted signature is enough.
            Err(r) => rejections.push(r),
        }
    }
    if rejections.len() == 1 {
        return Err(rejections.remove(0));
    }
    let kind = rejections
        .iter()
        .map(|r| r.kind)
        .max_by_key(|k| k.rank())
        .unwrap_or(RejectionKind::InvalidSignature);
    let reasons: Vec<&str> = rejections.iter().map(|r| r.message.as_str()).collect();
    Err(rejection(
        kind,
        format!(
            "None of the signatures were accepted, reasons: {}",
            reasons.join("; ")
        ),
    ))
}

/// `prSigstoreSigned.isSignatureAccepted`.
fn check_signature(
    req: &SigstoreSigned,
    intended: &Named,
    manifest_digest: &str,
    sig: &SignatureBlob,
) -> Result<(), Rejection> {
    use RejectionKind::*;
    if let Some(json) = &sig.sigstore_bundle {
        super::bundle::verify_bundle(req, manifest_digest, json)?;
        return bundle_identity(&req.signed_identity);
    }
    if sig.signature_b64.is_empty() {
        return Err(rejection(
            InvalidSignature,
            format!("missing {SIGNATURE_ANNOTATION} annotation"),
        ));
    }
    let keys = super::sigstore::signer_keys(req, sig)?;
    let raw = go_base64_std(&sig.signature_b64)
        .map_err(|e| rejection(InvalidSignature, format!("base64 decoding: {e}")))?;
    if keys.is_empty() {
        return Err(rejection(
            UntrustedKey,
            "Need at least one public key to verify the sigstore payload, but got 0",
        ));
    }
    let mut failures = Vec::new();
    let verified = keys.iter().any(|key| match key.verify(&sig.payload, &raw) {
        Ok(()) => true,
        Err(e) => {
            failures.push(e);
            false
        }
    });
    if !verified {
        return Err(rejection(
            UntrustedKey,
            format!(
                "cryptographic signature verification failed: {}",
                failures.join(", ")
            ),
        ));
    }
    let payload = parse_payload(&sig.payload).map_err(|e| rejection(InvalidSignature, e))?;
    if payload.docker_manifest_digest != manifest_digest {
        return Err(rejection(
            InvalidSignature,
            format!(
                "Signature for digest {} does not match",
                payload.docker_manifest_digest
            ),
        ));
    }
    if !identity_matches(&req.signed_identity, intended, &payload.docker_reference) {
        return Err(rejection(
            IdentityMismatch,
            format!(
                "Signature for identity {} is not accepted",
                go_quote(&payload.docker_reference)
            ),
        ));
    }
    Ok(())
}

/// The identity rule for a sigstore bundle, which names no docker-reference (only the digest it
/// signs): the identities that pin a tag or a reference (the default `matchRepoDigestOrExact`,
/// `matchExact`, `exactReference`, `remapIdentity`) cannot be met, so they reject it;
/// `matchRepository` and `exactRepository`, which accept any tag, accept it on its digest binding
/// alone (docs/policy.md, "cosign v3 bundles").
fn bundle_identity(identity: &SignedIdentity) -> Result<(), Rejection> {
    let name = match identity {
        SignedIdentity::MatchRepository | SignedIdentity::ExactRepository { .. } => return Ok(()),
        SignedIdentity::MatchRepoDigestOrExact => "matchRepoDigestOrExact",
        SignedIdentity::MatchExact => "matchExact",
        SignedIdentity::ExactReference { .. } => "exactReference",
        SignedIdentity::RemapIdentity { .. } => "remapIdentity",
    };
    Err(rejection(
        RejectionKind::IdentityMismatch,
        format!(
            "A sigstore bundle names no docker-reference, so signedIdentity {name} cannot accept it (matchRepository and exactRepository can)"
        ),
    ))
}

/// `matchRepoDigestOrExactReferenceValues`.
fn match_repo_digest_or_exact(intended: &Named, signature: &Named) -> bool {
    if signature.is_name_only() {
        return false;
    }
    if intended.tag.is_some() {
        signature.to_string() == intended.to_string()
    } else if intended.digest.is_some() {
        signature.name == intended.name
    } else {
        false
    }
}

/// `prmRemapIdentity.remapReferencePrefix`: `None` when the rewritten reference is invalid.
fn remap_reference_prefix(reference: &Named, prefix: &str, signed_prefix: &str) -> Option<Named> {
    let name = &reference.name;
    let matches = name == prefix
        || (name.len() > prefix.len()
            && name.starts_with(prefix)
            && name.as_bytes()[prefix.len()] == b'/');
    if !matches {
        return Some(reference.clone());
    }
    let rewritten = reference.to_string().replacen(prefix, signed_prefix, 1);
    parse_named(&rewritten).ok()
}

/// `PolicyReferenceMatch.matchesDockerReference`: does a signature claiming `signed_reference`
/// satisfy `identity` for an image whose (policy) reference is `intended`?
pub(super) fn identity_matches(
    identity: &SignedIdentity,
    intended: &Named,
    signed_reference: &str,
) -> bool {
    let Ok(signature) = parse_normalized_named(signed_reference) else {
        return false;
    };
    match identity {
        SignedIdentity::MatchExact => {
            !intended.is_name_only()
                && !signature.is_name_only()
                && signature.to_string() == intended.to_string()
        }
        SignedIdentity::MatchRepoDigestOrExact => match_repo_digest_or_exact(intended, &signature),
        SignedIdentity::MatchRepository => signature.name == intended.name,
        SignedIdentity::ExactReference { docker_reference } => {
            match parse_normalized_named(docker_reference) {
                Ok(wanted) => {
                    !wanted.is_name_only()
                        && !signature.is_name_only()
                        && signature.to_string() == wanted.to_string()
                }
                Err(_) => false,
            }
        }
        SignedIdentity::ExactRepository { docker_repository } => {
            match parse_normalized_named(docker_repository) {
                Ok(wanted) => signature.name == wanted.name,
                Err(_) => false,
            }
        }
        SignedIdentity::RemapIdentity {
            prefix,
            signed_prefix,
        } => match remap_reference_prefix(intended, prefix, signed_prefix) {
            Some(remapped) => match_repo_digest_or_exact(&remapped, &signature),
            None => false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    const D2: &str = "sha256:1123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn intended(s: &str) -> Named {
        ImageName::parse(s).unwrap().policy_reference()
    }

    /// (identity, image as pulled, signed reference, expected).
    fn check(identity: &SignedIdentity, cases: &[(&str, &str, bool)]) {
        for (image, signed, expected) in cases {
            assert_eq!(
                identity_matches(identity, &intended(image), signed),
                *expected,
                "{identity:?}: image {image}, signed {signed}"
            );
        }
    }

    #[test]
    fn match_repo_digest_or_exact_identity() {
        check(
            &SignedIdentity::MatchRepoDigestOrExact,
            &[
                ("example.com/ns/repo:v1", "example.com/ns/repo:v1", true),
                ("example.com/ns/repo:v1", "example.com/ns/repo:v2", false),
                ("example.com/ns/repo:v1", "example.com/ns/repo", false),
                (
                    "example.com/ns/repo:v1",
                    &format!("example.com/ns/repo@{D}"),
                    false,
                ),
                ("example.com/ns/repo", "example.com/ns/repo:latest", true),
                ("busybox", "docker.io/library/busybox:latest", true),
                ("busybox:latest", "busybox", false),
                (
                    &format!("example.com/ns/repo@{D}"),
                    "example.com/ns/repo:anything",
                    true,
                ),
                (
                    &format!("example.com/ns/repo@{D}"),
                    &format!("example.com/ns/repo@{D2}"),
                    true,
                ),
                (
                    &format!("example.com/ns/repo@{D}"),
                    "example.com/ns/repo",
                    false,
                ),
                (
                    &format!("example.com/ns/repo@{D}"),
                    "example.com/ns/other:v1",
                    false,
                ),
                ("example.com/ns/repo:v1", "not a reference", false),
            ],
        );
    }

    #[test]
    fn match_exact_identity() {
        check(
            &SignedIdentity::MatchExact,
            &[
                ("example.com/ns/repo:v1", "example.com/ns/repo:v1", true),
                ("example.com/ns/repo:v1", "example.com/ns/repo:v2", false),
                ("example.com/ns/repo:v1", "example.com/ns/repo", false),
                (
                    &format!("example.com/ns/repo@{D}"),
                    &format!("example.com/ns/repo@{D}"),
                    true,
                ),
                (
                    &format!("example.com/ns/repo@{D}"),
                    &format!("example.com/ns/repo@{D2}"),
                    false,
                ),
                (
                    &format!("example.com/ns/repo@{D}"),
                    "example.com/ns/repo:v1",
                    false,
                ),
            ],
        );
    }

    #[test]
    fn match_repository_identity() {
        check(
            &SignedIdentity::MatchRepository,
            &[
                ("example.com/ns/repo:v1", "example.com/ns/repo", true),
                ("example.com/ns/repo:v1", "example.com/ns/repo:v2", true),
                (
                    &format!("example.com/ns/repo@{D}"),
                    "example.com/ns/repo",
                    true,
                ),
                ("example.com/ns/repo:v1", "example.com/ns/repo2", false),
                ("example.com/ns/repo:v1", "example.com/ns", false),
                ("nginx", "docker.io/library/nginx", true),
            ],
        );
    }

    #[test]
    fn exact_reference_and_repository_identities() {
        let exact_ref = SignedIdentity::ExactReference {
            docker_reference: "upstream.io/ns/repo:v1".into(),
        };
        check(
            &exact_ref,
            &[
                (
                    "mirror.example.com/any/thing:v9",
                    "upstream.io/ns/repo:v1",
                    true,
                ),
                (
                    "mirror.example.com/any/thing:v9",
                    "upstream.io/ns/repo:v2",
                    false,
                ),
                (
                    "mirror.example.com/any/thing:v9",
                    "upstream.io/ns/repo",
                    false,
                ),
            ],
        );
        let exact_repo = SignedIdentity::ExactRepository {
            docker_repository: "upstream.io/ns/repo".into(),
        };
        check(
            &exact_repo,
            &[
                (
                    "mirror.example.com/any/thing:v9",
                    "upstream.io/ns/repo:v1",
                    true,
                ),
                (
                    "mirror.example.com/any/thing:v9",
                    "upstream.io/ns/repo",
                    true,
                ),
                (
                    "mirror.example.com/any/thing:v9",
                    "upstream.io/ns/other",
                    false,
                ),
            ],
        );
        let hub = SignedIdentity::ExactRepository {
            docker_repository: "nginx".into(),
        };
        check(
            &hub,
            &[("example.com/x:1", "docker.io/library/nginx:1.25", true)],
        );
    }

    #[test]
    fn remap_identity() {
        let remap = SignedIdentity::RemapIdentity {
            prefix: "123456789012.dkr.ecr.eu-west-1.amazonaws.com/mirror/ghcr.io".into(),
            signed_prefix: "ghcr.io".into(),
        };
        let ecr = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/mirror/ghcr.io";
        check(
            &remap,
            &[
                (
                    &format!("{ecr}/kedacore/keda:2.14"),
                    "ghcr.io/kedacore/keda:2.14",
                    true,
                ),
                (
                    &format!("{ecr}/kedacore/keda:2.14"),
                    "ghcr.io/kedacore/keda:2.15",
                    false,
                ),
                (
                    &format!("{ecr}/kedacore/keda:2.14"),
                    "ghcr.io/kedacore/keda",
                    false,
                ),
                (
                    &format!("{ecr}/kedacore/keda@{D}"),
                    "ghcr.io/kedacore/keda:2.14",
                    true,
                ),
                // Not under the prefix: compared unchanged.
                (
                    "ghcr.io/kedacore/keda:2.14",
                    "ghcr.io/kedacore/keda:2.14",
                    true,
                ),
                // The prefix must match whole path components.
                (
                    &format!("{ecr}x/kedacore/keda:2.14"),
                    "ghcr.io/kedacore/keda:2.14",
                    false,
                ),
            ],
        );
        // A prefix whose replacement is not canonical never matches.
        let hub = SignedIdentity::RemapIdentity {
            prefix: "mirror.example.com/hub".into(),
            signed_prefix: "docker.io".into(),
        };
        check(
            &hub,
            &[
                (
                    "mirror.example.com/hub/library/nginx:1",
                    "docker.io/library/nginx:1",
                    true,
                ),
                (
                    "mirror.example.com/hub/nginx:1",
                    "docker.io/library/nginx:1",
                    false,
                ),
            ],
        );
    }

    #[test]
    fn rejection_kinds_have_reasons() {
        assert_eq!(
            RejectionKind::UntrustedKey.reason(),
            "signature by an untrusted key"
        );
        let r = rejection(RejectionKind::NoSignature, "x");
        assert_eq!(r.to_string(), "no signature: x");
    }
}
