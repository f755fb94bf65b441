//! Which public keys may have made a cosign signature: `prSigstoreSigned.isSignatureAccepted`
//! up to the payload check, for the three trust sources (public keys, optionally with Rekor;
//! `fulcio` with Rekor; `pki`).
//!
//! [`signer_keys`] takes the signature's parts (payload bytes, base64 signature, certificate PEM,
//! chain PEM, Rekor SET) and returns the keys whose signature over the payload must then be
//! checked. cosign v3 bundles (`bundle.rs`) follow the same order with their own parts: a DSSE
//! envelope or a message digest is logged as a `dsse` or `hashedrekord` entry, not as the
//! hashedrekord of a simple-signing payload, so they cannot pass through here unchanged.

use std::borrow::Cow;

use super::keys::PublicKey;
use super::model::SigstoreSigned;
use super::rekor::verify_set;
use super::verdict::{Rejection, RejectionKind, SignatureBlob};

/// Annotation: the PEM leaf certificate of a keyless or PKI signature.
pub const CERTIFICATE_ANNOTATION: &str = "dev.sigstore.cosign/certificate";
/// Annotation: the PEM intermediates and root of the certificate.
pub const CHAIN_ANNOTATION: &str = "dev.sigstore.cosign/chain";
/// Annotation: the Rekor bundle (SignedEntryTimestamp and its payload).
pub const BUNDLE_ANNOTATION: &str = "dev.sigstore.cosign/bundle";

fn invalid(message: impl Into<String>) -> Rejection {
    Rejection {
        kind: RejectionKind::InvalidSignature,
        message: message.into(),
    }
}

fn untrusted(message: impl Into<String>) -> Rejection {
    Rejection {
        kind: RejectionKind::UntrustedKey,
        message: message.into(),
    }
}

fn missing(annotation: &str) -> Rejection {
    invalid(format!("missing {annotation} annotation"))
}

/// The keys that may have signed `sig`'s payload under `req`, after the Rekor and certificate
/// checks `req` calls for. The caller verifies the payload signature with one of them.
pub(super) fn signer_keys<'a>(
    req: &'a SigstoreSigned,
    sig: &SignatureBlob,
) -> Result<Cow<'a, [PublicKey]>, Rejection> {
    if let Some(fulcio) = &req.fulcio {
        let set = sig
            .bundle
            .as_deref()
            .ok_or_else(|| missing(BUNDLE_ANNOTATION))?;
        let cert = sig
            .certificate
            .as_deref()
            .ok_or_else(|| missing(CERTIFICATE_ANNOTATION))?;
        let at = verify_set(
            &req.rekor_keys,
            set.as_bytes(),
            cert.as_bytes(),
            &sig.signature_b64,
            &sig.payload,
        )
        .map_err(invalid)?;
        let key = fulcio
            .verify_at(at, cert.as_bytes(), sig.chain.as_deref().map(str::as_bytes))
            .map_err(untrusted)?;
        return Ok(Cow::Owned(vec![key]));
    }
    if let Some(pki) = &req.pki {
        let cert = sig
            .certificate
            .as_deref()
            .ok_or_else(|| missing(CERTIFICATE_ANNOTATION))?;
        let key = pki
            .verify(cert.as_bytes(), sig.chain.as_deref().map(str::as_bytes))
            .map_err(untrusted)?;
        return Ok(Cow::Owned(vec![key]));
    }
    if req.rekor_keys.is_empty() {
        return Ok(Cow::Borrowed(&req.keys));
    }
    // A key signature that must also be in the Rekor log.
    let set = sig
        .bundle
        .as_deref()
        .ok_or_else(|| missing(BUNDLE_ANNOTATION))?;
    let mut failures = Vec::new();
    for key in &req.keys {
        let pem = key.to_spki_pem().map_err(invalid)?;
        match verify_set(
            &req.rekor_keys,
            set.as_bytes(),
            pem.as_bytes(),
            &sig.signature_b64,
            &sig.payload,
        ) {
            // The SET logs one key: the others either differ or are duplicates.
            Ok(_) => return Ok(Cow::Owned(vec![key.clone()])),
            Err(e) => failures.push(e),
        }
    }
    Err(invalid(format!(
        "No public key verified against the RekorSET: {}",
        failures.join(", ")
    )))
}
