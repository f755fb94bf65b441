//! Sigstore bundles (cosign v3): a signature, its certificate or key hint, and its Rekor entry in
//! one JSON document, stored as the layer of a referrer of artifact type
//! `application/vnd.dev.sigstore.bundle.v0.3+json` (or `…bundle+json;version=0.2`/`0.1`).
//!
//! containers/image does not read bundles; this follows sigstore-go (`pkg/verify`,
//! `pkg/tlog`) and cosign v3 (`signDigestBundle`), with the trust sources of the policy's
//! `sigstoreSigned` requirement (keys, optionally with Rekor; `fulcio` with Rekor; `pki`):
//!
//! - **Content.** Exactly one of `messageSignature` and `dsseEnvelope`.
//!   - `dsseEnvelope` (what `cosign sign` writes): exactly one signature, over the DSSEv1
//!     pre-authentication encoding of `payloadType` and `payload`. The payload must be an in-toto
//!     statement (`application/vnd.in-toto+json`) of predicate type
//!     `https://sigstore.dev/cosign/sign/v1`, the type cosign gives an image signature (an
//!     attestation, such as an SBOM or provenance, signed by the same key is not a signature of
//!     the image, as `cosign verify` also holds), and one of its subjects must have the
//!     manifest's digest.
//!   - `messageSignature`: a signature over the SHA-256 digest in `messageDigest`, which must be
//!     the manifest's digest (the signed artifact is the manifest itself).
//! - **Rekor** (when the requirement has Rekor keys, always for `fulcio`): one tlog entry with an
//!   inclusion promise whose SignedEntryTimestamp verifies with a configured Rekor key over the
//!   canonical `{body, integratedTime, logID, logIndex}` (sigstore-go's `VerifySET`), and whose
//!   logged body is for this signature: `hashedrekord` 0.0.1 for a message signature (the
//!   signature, the key or certificate, and the digest), `dsse` 0.0.1 for an envelope (the one
//!   signature, the verifier, and the payload's SHA-256). The entry's `kindVersion` must agree
//!   with its body. Its `integratedTime` is when the Fulcio certificate is checked. Inclusion
//!   proofs, checkpoints, RFC 3161 timestamps and Rekor v2 entries (no promise) are not checked,
//!   so a bundle whose only log evidence is one of those is rejected.
//! - **Certificate**: `verificationMaterial.certificate` (v0.3) or the first certificate of
//!   `x509CertificateChain` (v0.1, v0.2; the others are intermediates), checked as the
//!   annotation form is (`fulcio.rs`, `pki.rs`). With keys, the key hint is ignored: the
//!   signature must verify with a configured key.
//!
//! The identity rule (`signedIdentity`) is applied by the caller: a bundle names no
//! docker-reference.

use std::borrow::Cow;
use std::time::Duration;

use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::Value;

use super::json::go_quote;
use super::keys::PublicKey;
use super::model::SigstoreSigned;
use super::rekor::{dsse_entry_matches, hashedrekord_matches, verify_set_fields};
use super::verdict::{is_sigstore_bundle_type, rejection, Rejection, RejectionKind};

/// The DSSE payload type of an in-toto statement.
pub(super) const IN_TOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
/// The predicate type `cosign sign` gives the statement of an image signature.
pub(super) const COSIGN_SIGN_PREDICATE_TYPE: &str = "https://sigstore.dev/cosign/sign/v1";
const STATEMENT_TYPES: [&str; 2] = [
    "https://in-toto.io/Statement/v1",
    "https://in-toto.io/Statement/v0.1",
];

fn invalid(message: impl Into<String>) -> Rejection {
    rejection(RejectionKind::InvalidSignature, message)
}

fn untrusted(message: impl Into<String>) -> Rejection {
    rejection(RejectionKind::UntrustedKey, message)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawBundle {
    #[serde(default)]
    media_type: String,
    verification_material: Option<RawMaterial>,
    message_signature: Option<RawMessageSignature>,
    dsse_envelope: Option<RawEnvelope>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawMaterial {
    certificate: Option<RawCert>,
    x509_certificate_chain: Option<RawChain>,
    #[serde(default)]
    tlog_entries: Vec<RawTlogEntry>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawCert {
    #[serde(default)]
    raw_bytes: String,
}

#[derive(Deserialize)]
struct RawChain {
    #[serde(default)]
    certificates: Vec<RawCert>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawTlogEntry {
    #[serde(default)]
    log_index: Value,
    log_id: Option<RawLogId>,
    kind_version: Option<RawKindVersion>,
    #[serde(default)]
    integrated_time: Value,
    inclusion_promise: Option<RawPromise>,
    #[serde(default)]
    canonicalized_body: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawLogId {
    #[serde(default)]
    key_id: String,
}

#[derive(Deserialize)]
struct RawKindVersion {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    version: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawPromise {
    #[serde(default)]
    signed_entry_timestamp: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawMessageSignature {
    message_digest: Option<RawDigest>,
    #[serde(default)]
    signature: String,
}

#[derive(Deserialize)]
struct RawDigest {
    #[serde(default)]
    algorithm: String,
    #[serde(default)]
    digest: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawEnvelope {
    #[serde(default)]
    payload: String,
    #[serde(default)]
    payload_type: String,
    #[serde(default)]
    signatures: Vec<RawDsseSignature>,
}

#[derive(Deserialize)]
struct RawDsseSignature {
    #[serde(default)]
    sig: String,
}

/// What the bundle's signature covers.
enum Signed {
    /// A signature over a SHA-256 digest.
    Message { digest: Vec<u8>, signature: Vec<u8> },
    /// A DSSE envelope's one signature.
    Dsse {
        payload_type: String,
        payload: Vec<u8>,
        signature: Vec<u8>,
    },
}

impl Signed {
    fn verify(&self, key: &PublicKey) -> Result<(), String> {
        match self {
            Signed::Message { digest, signature } => key.verify_digest(digest, signature),
            Signed::Dsse {
                payload_type,
                payload,
                signature,
            } => key.verify(&pae(payload_type, payload), signature),
        }
    }

    /// Whether a (trusted) Rekor entry body logs this signature by `key_or_cert_pem`.
    fn logged_in(&self, body: &[u8], key_or_cert_pem: &[u8]) -> Result<(), String> {
        match self {
            Signed::Message { digest, signature } => {
                hashedrekord_matches(body, key_or_cert_pem, &|| Ok(signature.clone()), digest)
            }
            Signed::Dsse {
                payload, signature, ..
            } => dsse_entry_matches(body, key_or_cert_pem, signature, payload),
        }
    }

    /// Whether the signed content is for `manifest_digest`.
    fn binds(&self, manifest_digest: &str) -> Result<(), String> {
        match self {
            Signed::Message { digest, .. } => {
                let signed = format!("sha256:{}", hex::encode(digest));
                if signed == manifest_digest {
                    Ok(())
                } else {
                    Err(format!("Signature for digest {signed} does not match"))
                }
            }
            Signed::Dsse {
                payload_type,
                payload,
                ..
            } => statement_binds(payload_type, payload, manifest_digest),
        }
    }
}

/// DSSEv1 pre-authentication encoding: `DSSEv1 <len> <type> <len> <body>`.
pub(super) fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {} {} ",
        payload_type.len(),
        payload_type,
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

/// The in-toto statement must be cosign's image signature for `manifest_digest`.
fn statement_binds(
    payload_type: &str,
    payload: &[u8],
    manifest_digest: &str,
) -> Result<(), String> {
    if payload_type != IN_TOTO_PAYLOAD_TYPE {
        return Err(format!(
            "DSSE payload type {} is not {IN_TOTO_PAYLOAD_TYPE}",
            go_quote(payload_type)
        ));
    }
    let statement: Value = serde_json::from_slice(payload)
        .map_err(|e| format!("parsing the in-toto statement: {e}"))?;
    let kind = statement.get("_type").and_then(Value::as_str).unwrap_or("");
    if !STATEMENT_TYPES.contains(&kind) {
        return Err(format!("unknown in-toto statement type {}", go_quote(kind)));
    }
    let predicate = statement
        .get("predicateType")
        .and_then(Value::as_str)
        .unwrap_or("");
    if predicate != COSIGN_SIGN_PREDICATE_TYPE {
        return Err(format!(
            "in-toto predicate type {} is not {COSIGN_SIGN_PREDICATE_TYPE}: an attestation is not an image signature",
            go_quote(predicate)
        ));
    }
    let (algorithm, hex) = manifest_digest
        .split_once(':')
        .ok_or_else(|| format!("invalid manifest digest {manifest_digest}"))?;
    let subjects = statement
        .get("subject")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let names = subjects.iter().any(|s| {
        s.get("digest")
            .and_then(|d| d.get(algorithm))
            .and_then(Value::as_str)
            == Some(hex)
    });
    if names {
        Ok(())
    } else {
        Err(format!(
            "the in-toto statement's subject does not name digest {manifest_digest}"
        ))
    }
}

/// Protobuf JSON bytes: standard base64, padding optional.
fn b64(what: &str, s: &str) -> Result<Vec<u8>, String> {
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    LENIENT
        .decode(s.trim())
        .map_err(|e| format!("decoding {what} base64: {e}"))
}

/// Protobuf JSON int64: a string or a number.
fn int64(what: &str, v: &Value) -> Result<i64, String> {
    match v {
        Value::Null => Ok(0),
        Value::String(s) => s.parse().map_err(|e| format!("invalid {what}: {e}")),
        Value::Number(n) => n.as_i64().ok_or_else(|| format!("invalid {what}: {n}")),
        _ => Err(format!("invalid {what}: not an integer")),
    }
}

fn pem(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// The leaf certificate (PEM) and, for a v0.1/v0.2 chain, the intermediates in the form of the
/// `dev.sigstore.cosign/chain` annotation.
fn certificate(material: &RawMaterial) -> Result<Option<(String, Option<String>)>, String> {
    if let Some(cert) = &material.certificate {
        return Ok(Some((pem(&b64("certificate", &cert.raw_bytes)?), None)));
    }
    let Some(chain) = &material.x509_certificate_chain else {
        return Ok(None);
    };
    let mut ders = Vec::with_capacity(chain.certificates.len());
    for c in &chain.certificates {
        ders.push(b64("certificate", &c.raw_bytes)?);
    }
    let Some((leaf, rest)) = ders.split_first() else {
        return Err("sigstore bundle has an empty x509CertificateChain".to_string());
    };
    // The annotation's last certificate is its root, which is dropped (roots come from the
    // policy). A bundle's chain has no root (the bundle format says so), so all of the rest are
    // intermediates: the leaf is appended as the certificate that is dropped.
    let mut annotation: String = rest.iter().map(|d| pem(d)).collect();
    annotation.push_str(&pem(leaf));
    Ok(Some((pem(leaf), (!rest.is_empty()).then_some(annotation))))
}

/// The integrated time of a tlog entry that the Rekor keys vouch for and that logs `signed` by
/// `key_or_cert_pem`.
fn logged_at(
    rekor_keys: &[PublicKey],
    entries: &[RawTlogEntry],
    key_or_cert_pem: &[u8],
    signed: &Signed,
) -> Result<Duration, String> {
    if entries.is_empty() {
        return Err("sigstore bundle has no transparency log entry".to_string());
    }
    let mut failures = Vec::new();
    for entry in entries {
        match entry_time(rekor_keys, entry, key_or_cert_pem, signed) {
            Ok(t) => return Ok(t),
            Err(e) => failures.push(e),
        }
    }
    Err(failures.join("; "))
}

fn entry_time(
    rekor_keys: &[PublicKey],
    entry: &RawTlogEntry,
    key_or_cert_pem: &[u8],
    signed: &Signed,
) -> Result<Duration, String> {
    let promise = entry.inclusion_promise.as_ref().ok_or_else(|| {
        "tlog entry has no inclusion promise (SignedEntryTimestamp); only those are verified"
            .to_string()
    })?;
    let set = b64("signedEntryTimestamp", &promise.signed_entry_timestamp)?;
    let body = b64("canonicalizedBody", &entry.canonicalized_body)?;
    let log_id = b64(
        "logId.keyId",
        entry
            .log_id
            .as_ref()
            .map(|l| l.key_id.as_str())
            .unwrap_or(""),
    )?;
    let integrated_time = int64("integratedTime", &entry.integrated_time)?;
    let log_index = int64("logIndex", &entry.log_index)?;
    verify_set_fields(rekor_keys, &set, &body, integrated_time, log_index, &log_id)?;
    // The body is trusted now; its kind and version must be what the entry says they are.
    let parsed: Value =
        serde_json::from_slice(&body).map_err(|e| format!("decoding the Rekor entry body: {e}"))?;
    let kind = parsed.get("kind").and_then(Value::as_str).unwrap_or("");
    let version = parsed
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    if let Some(kv) = &entry.kind_version {
        if kv.kind != kind || kv.version != version {
            return Err(format!(
                "kind and version mismatch: {kind}/{version} != {}/{}",
                kv.kind, kv.version
            ));
        }
    }
    signed.logged_in(&body, key_or_cert_pem)?;
    Ok(Duration::from_secs(integrated_time.max(0) as u64))
}

/// The keys that may have made the bundle's signature under `req`, after its Rekor and
/// certificate checks (as `sigstore::signer_keys` for the annotation form).
fn signer_keys<'a>(
    req: &'a SigstoreSigned,
    material: &RawMaterial,
    signed: &Signed,
) -> Result<Cow<'a, [PublicKey]>, Rejection> {
    let cert = || {
        certificate(material)
            .map_err(invalid)?
            .ok_or_else(|| invalid("sigstore bundle has no certificate"))
    };
    if let Some(fulcio) = &req.fulcio {
        let (leaf, chain) = cert()?;
        let at = logged_at(
            &req.rekor_keys,
            &material.tlog_entries,
            leaf.as_bytes(),
            signed,
        )
        .map_err(invalid)?;
        let key = fulcio
            .verify_at(at, leaf.as_bytes(), chain.as_deref().map(str::as_bytes))
            .map_err(untrusted)?;
        return Ok(Cow::Owned(vec![key]));
    }
    if let Some(pki) = &req.pki {
        let (leaf, chain) = cert()?;
        let key = pki
            .verify(leaf.as_bytes(), chain.as_deref().map(str::as_bytes))
            .map_err(untrusted)?;
        return Ok(Cow::Owned(vec![key]));
    }
    if req.rekor_keys.is_empty() {
        return Ok(Cow::Borrowed(&req.keys));
    }
    let mut failures = Vec::new();
    for key in &req.keys {
        let pem = key.to_spki_pem().map_err(invalid)?;
        match logged_at(
            &req.rekor_keys,
            &material.tlog_entries,
            pem.as_bytes(),
            signed,
        ) {
            Ok(_) => return Ok(Cow::Owned(vec![key.clone()])),
            Err(e) => failures.push(e),
        }
    }
    Err(invalid(format!(
        "No public key verified against the RekorSET: {}",
        failures.join(", ")
    )))
}

/// Verifies the sigstore bundle `json` for `manifest_digest` under `req`: its signature, its
/// certificate or the trusted keys, its Rekor entry, and that it signs this manifest. The
/// `signedIdentity` rule is left to the caller.
pub(super) fn verify_bundle(
    req: &SigstoreSigned,
    manifest_digest: &str,
    json: &[u8],
) -> Result<(), Rejection> {
    let bundle: RawBundle = serde_json::from_slice(json)
        .map_err(|e| invalid(format!("parsing sigstore bundle: {e}")))?;
    if !is_sigstore_bundle_type(&bundle.media_type) {
        return Err(invalid(format!(
            "unsupported sigstore bundle media type {}",
            go_quote(&bundle.media_type)
        )));
    }
    let material = bundle
        .verification_material
        .ok_or_else(|| invalid("sigstore bundle has no verificationMaterial"))?;
    let signed = match (bundle.message_signature, bundle.dsse_envelope) {
        (Some(m), None) => {
            let digest = m
                .message_digest
                .ok_or_else(|| invalid("sigstore bundle messageSignature has no messageDigest"))?;
            if digest.algorithm != "SHA2_256" {
                return Err(invalid(format!(
                    "unsupported messageDigest algorithm {}",
                    go_quote(&digest.algorithm)
                )));
            }
            Signed::Message {
                digest: b64("messageDigest", &digest.digest).map_err(invalid)?,
                signature: b64("signature", &m.signature).map_err(invalid)?,
            }
        }
        (None, Some(e)) => {
            let [sig] = e.signatures.as_slice() else {
                return Err(invalid(format!(
                    "DSSE envelope has {} signatures, expected 1",
                    e.signatures.len()
                )));
            };
            Signed::Dsse {
                payload: b64("DSSE payload", &e.payload).map_err(invalid)?,
                signature: b64("DSSE signature", &sig.sig).map_err(invalid)?,
                payload_type: e.payload_type,
            }
        }
        _ => {
            return Err(invalid(
                "sigstore bundle must have exactly one of messageSignature and dsseEnvelope",
            ))
        }
    };
    let keys = signer_keys(req, &material, &signed)?;
    if keys.is_empty() {
        return Err(untrusted(
            "Need at least one public key to verify the sigstore payload, but got 0",
        ));
    }
    let mut failures = Vec::new();
    if !keys.iter().any(|key| match signed.verify(key) {
        Ok(()) => true,
        Err(e) => {
            failures.push(e);
            false
        }
    }) {
        return Err(untrusted(format!(
            "cryptographic signature verification failed: {}",
            failures.join(", ")
        )));
    }
    signed.binds(manifest_digest).map_err(invalid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::model::{SignedIdentity, SigstoreKeySource};
    use crate::policy::{evaluate, ImageName, RejectionKind, SignatureBlob, Verdict};
    use p256::ecdsa::signature::hazmat::PrehashSigner as _;
    use p256::ecdsa::signature::Signer as _;
    use p256::pkcs8::EncodePublicKey as _;
    use serde_json::json;
    use sha2::{Digest as _, Sha256};

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    const OTHER: &str = "sha256:1123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    const TIME: i64 = 1_700_000_000;

    fn enc(data: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(data)
    }

    struct Key {
        sk: p256::ecdsa::SigningKey,
        pem: String,
        public: PublicKey,
    }

    fn key() -> Key {
        let sk = p256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
        let pem = sk
            .verifying_key()
            .to_public_key_pem(p256::pkcs8::LineEnding::LF)
            .unwrap();
        let public = PublicKey::from_pem(pem.as_bytes()).unwrap();
        Key { sk, pem, public }
    }

    impl Key {
        fn sign(&self, data: &[u8]) -> Vec<u8> {
            let s: p256::ecdsa::Signature = self.sk.sign(data);
            s.to_der().as_bytes().to_vec()
        }
    }

    fn requirement(keys: Vec<PublicKey>, rekor: Vec<PublicKey>) -> SigstoreSigned {
        SigstoreSigned {
            key_source: SigstoreKeySource::KeyDatas(vec![]),
            rekor: None,
            signed_identity: SignedIdentity::MatchRepository,
            keys,
            rekor_keys: rekor,
            fulcio: None,
            pki: None,
        }
    }

    fn statement(digest: &str, predicate: &str) -> Vec<u8> {
        let hex = digest.strip_prefix("sha256:").unwrap();
        serde_json::to_vec(&json!({
            "_type": "https://in-toto.io/Statement/v1",
            "subject": [{"digest": {"sha256": hex}}],
            "predicateType": predicate,
            "predicate": {}
        }))
        .unwrap()
    }

    /// A tlog entry logging `body`, with a SET by `log`.
    fn tlog_entry(log: &Key, body: &Value, kind: &str) -> Value {
        let body = serde_json::to_vec(body).unwrap();
        let log_id = Sha256::digest(log.pem.as_bytes()).to_vec();
        let canonical = serde_json_canonicalizer::to_vec(&json!({
            "body": enc(&body), "integratedTime": TIME, "logID": hex::encode(&log_id),
            "logIndex": 7
        }))
        .unwrap();
        json!({
            "logIndex": "7",
            "logId": {"keyId": enc(&log_id)},
            "kindVersion": {"kind": kind, "version": "0.0.1"},
            "integratedTime": TIME.to_string(),
            "inclusionPromise": {"signedEntryTimestamp": enc(&log.sign(&canonical))},
            "canonicalizedBody": enc(&body)
        })
    }

    /// A DSSE bundle as `cosign sign` writes it, for `payload`, signed by `signer`, logged by
    /// `log` with the verifier `logged_pem`.
    fn dsse_bundle(signer: &Key, log: &Key, payload: &[u8], logged_pem: &str) -> Value {
        let sig = signer.sign(&pae(IN_TOTO_PAYLOAD_TYPE, payload));
        let body = json!({
            "apiVersion": "0.0.1", "kind": "dsse",
            "spec": {
                "envelopeHash": {"algorithm": "sha256", "value": hex::encode([0u8; 32])},
                "payloadHash": {"algorithm": "sha256", "value": hex::encode(Sha256::digest(payload))},
                "signatures": [{"signature": enc(&sig), "verifier": enc(logged_pem.as_bytes())}]
            }
        });
        json!({
            "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
            "verificationMaterial": {
                "publicKey": {"hint": "test"},
                "tlogEntries": [tlog_entry(log, &body, "dsse")]
            },
            "dsseEnvelope": {
                "payload": enc(payload),
                "payloadType": IN_TOTO_PAYLOAD_TYPE,
                "signatures": [{"sig": enc(&sig), "keyid": ""}]
            }
        })
    }

    /// A message-signature bundle over the manifest digest `digest`.
    fn message_bundle(signer: &Key, log: &Key, digest: &str) -> Value {
        let raw = hex::decode(digest.strip_prefix("sha256:").unwrap()).unwrap();
        let sig: p256::ecdsa::Signature = signer.sk.sign_prehash(&raw).unwrap();
        let sig = sig.to_der().as_bytes().to_vec();
        let body = json!({
            "apiVersion": "0.0.1", "kind": "hashedrekord",
            "spec": {
                "data": {"hash": {"algorithm": "sha256", "value": hex::encode(&raw)}},
                "signature": {"content": enc(&sig), "publicKey": {"content": enc(signer.pem.as_bytes())}}
            }
        });
        json!({
            "mediaType": "application/vnd.dev.sigstore.bundle+json;version=0.2",
            "verificationMaterial": {
                "publicKey": {"hint": "test"},
                "tlogEntries": [tlog_entry(log, &body, "hashedrekord")]
            },
            "messageSignature": {
                "messageDigest": {"algorithm": "SHA2_256", "digest": enc(&raw)},
                "signature": enc(&sig)
            }
        })
    }

    fn check(req: &SigstoreSigned, digest: &str, bundle: &Value) -> Result<(), Rejection> {
        verify_bundle(req, digest, &serde_json::to_vec(bundle).unwrap())
    }

    fn kind_of(r: Result<(), Rejection>) -> (RejectionKind, String) {
        let r = r.unwrap_err();
        (r.kind, r.message)
    }

    #[test]
    fn pae_is_dssev1() {
        assert_eq!(pae("a/b", b"hello"), b"DSSEv1 3 a/b 5 hello".to_vec());
    }

    #[test]
    fn good_dsse_and_message_bundles_are_accepted() {
        let (signer, log) = (key(), key());
        let payload = statement(DIGEST, COSIGN_SIGN_PREDICATE_TYPE);
        let dsse = dsse_bundle(&signer, &log, &payload, &signer.pem);
        let msg = message_bundle(&signer, &log, DIGEST);
        // With the key and the log, and with the key alone (the entry is not needed then).
        for req in [
            requirement(vec![signer.public.clone()], vec![log.public.clone()]),
            requirement(vec![signer.public.clone()], vec![]),
        ] {
            check(&req, DIGEST, &dsse).unwrap();
            check(&req, DIGEST, &msg).unwrap();
        }
    }

    #[test]
    fn verification_matrix_rejects() {
        let (signer, log, other) = (key(), key(), key());
        let req = requirement(vec![signer.public.clone()], vec![log.public.clone()]);
        let payload = statement(DIGEST, COSIGN_SIGN_PREDICATE_TYPE);
        let good = dsse_bundle(&signer, &log, &payload, &signer.pem);

        // Another manifest's digest.
        let (k, m) = kind_of(check(&req, OTHER, &good));
        assert_eq!(k, RejectionKind::InvalidSignature);
        assert!(m.contains("subject does not name digest"), "{m}");
        let (k, m) = kind_of(check(&req, OTHER, &message_bundle(&signer, &log, DIGEST)));
        assert_eq!(k, RejectionKind::InvalidSignature);
        assert_eq!(m, format!("Signature for digest {DIGEST} does not match"));

        // Signed and logged by a key the policy does not trust.
        let foreign = dsse_bundle(&other, &log, &payload, &other.pem);
        let (k, m) = kind_of(check(&req, DIGEST, &foreign));
        assert_eq!(k, RejectionKind::InvalidSignature);
        assert!(m.contains("publicKey in Rekor SET does not match"), "{m}");
        let no_rekor = requirement(vec![signer.public.clone()], vec![]);
        let (k, m) = kind_of(check(&no_rekor, DIGEST, &foreign));
        assert_eq!(k, RejectionKind::UntrustedKey);
        assert!(
            m.starts_with("cryptographic signature verification failed"),
            "{m}"
        );

        // A SET by another log, and a SET that does not cover the body.
        let (k, m) = kind_of(check(
            &req,
            DIGEST,
            &dsse_bundle(&signer, &other, &payload, &signer.pem),
        ));
        assert_eq!(k, RejectionKind::InvalidSignature);
        assert!(
            m.contains("cryptographic signature verification of Rekor SET failed"),
            "{m}"
        );
        let mut bad_set = good.clone();
        bad_set["verificationMaterial"]["tlogEntries"][0]["integratedTime"] = json!("1700000001");
        let (_, m) = kind_of(check(&req, DIGEST, &bad_set));
        assert!(m.contains("verification of Rekor SET failed"), "{m}");
        let mut no_promise = good.clone();
        no_promise["verificationMaterial"]["tlogEntries"][0]
            .as_object_mut()
            .unwrap()
            .remove("inclusionPromise");
        let (_, m) = kind_of(check(&req, DIGEST, &no_promise));
        assert!(m.contains("no inclusion promise"), "{m}");

        // A DSSE signature that does not verify (the payload changed after signing), with and
        // without Rekor.
        let mut tampered = good.clone();
        let evil = statement(OTHER, COSIGN_SIGN_PREDICATE_TYPE);
        tampered["dsseEnvelope"]["payload"] = json!(enc(&evil));
        let (_, m) = kind_of(check(&req, OTHER, &tampered));
        assert!(m.contains("payload in Rekor SET does not match"), "{m}");
        let (k, m) = kind_of(check(&no_rekor, OTHER, &tampered));
        assert_eq!(k, RejectionKind::UntrustedKey);
        assert!(
            m.starts_with("cryptographic signature verification failed"),
            "{m}"
        );
        // The payload type is part of what is signed.
        let mut retyped = good.clone();
        retyped["dsseEnvelope"]["payloadType"] = json!("application/json");
        let (k, _) = kind_of(check(&no_rekor, DIGEST, &retyped));
        assert_eq!(k, RejectionKind::UntrustedKey);

        // Subject mismatch, though well signed and logged.
        let elsewhere = statement(OTHER, COSIGN_SIGN_PREDICATE_TYPE);
        let (k, m) = kind_of(check(
            &req,
            DIGEST,
            &dsse_bundle(&signer, &log, &elsewhere, &signer.pem),
        ));
        assert_eq!(k, RejectionKind::InvalidSignature);
        assert!(m.contains("subject does not name digest"), "{m}");

        // An attestation (another predicate type) by the same key is not a signature.
        let sbom = statement(DIGEST, "https://spdx.dev/Document");
        let (_, m) = kind_of(check(
            &req,
            DIGEST,
            &dsse_bundle(&signer, &log, &sbom, &signer.pem),
        ));
        assert!(
            m.contains("an attestation is not an image signature"),
            "{m}"
        );

        // Shape errors.
        let mut two = good.clone();
        let s = two["dsseEnvelope"]["signatures"][0].clone();
        two["dsseEnvelope"]["signatures"] = json!([s.clone(), s]);
        let (_, m) = kind_of(check(&req, DIGEST, &two));
        assert_eq!(m, "DSSE envelope has 2 signatures, expected 1");
        let mut both = good.clone();
        both["messageSignature"] =
            message_bundle(&signer, &log, DIGEST)["messageSignature"].clone();
        let (_, m) = kind_of(check(&req, DIGEST, &both));
        assert!(m.contains("exactly one of"), "{m}");
        let mut media = good.clone();
        media["mediaType"] = json!("application/json");
        let (_, m) = kind_of(check(&req, DIGEST, &media));
        assert!(
            m.starts_with("unsupported sigstore bundle media type"),
            "{m}"
        );
        let (_, m) = kind_of(verify_bundle(&req, DIGEST, b"not json"));
        assert!(m.starts_with("parsing sigstore bundle"), "{m}");
    }

    #[test]
    fn identity_rules_for_bundles() {
        use crate::policy::Requirement;
        let (signer, log) = (key(), key());
        let payload = statement(DIGEST, COSIGN_SIGN_PREDICATE_TYPE);
        let bundle = dsse_bundle(&signer, &log, &payload, &signer.pem);
        let blob = SignatureBlob::from_bundle(serde_json::to_vec(&bundle).unwrap());
        let image = ImageName::parse("example.com/ns/app:v1").unwrap();
        let cases = [
            (SignedIdentity::MatchRepository, true),
            (
                SignedIdentity::ExactRepository {
                    docker_repository: "upstream.io/ns/app".into(),
                },
                true,
            ),
            (SignedIdentity::MatchRepoDigestOrExact, false),
            (SignedIdentity::MatchExact, false),
            (
                SignedIdentity::ExactReference {
                    docker_reference: "example.com/ns/app:v1".into(),
                },
                false,
            ),
            (
                SignedIdentity::RemapIdentity {
                    prefix: "example.com".into(),
                    signed_prefix: "upstream.io".into(),
                },
                false,
            ),
        ];
        for (identity, accepted) in cases {
            let mut req = requirement(vec![signer.public.clone()], vec![log.public.clone()]);
            req.signed_identity = identity.clone();
            let v = evaluate(
                &[Requirement::SigstoreSigned(req)],
                &image,
                DIGEST,
                std::slice::from_ref(&blob),
            );
            match v {
                Verdict::Accepted => assert!(accepted, "{identity:?}"),
                Verdict::Rejected(r) => {
                    assert!(!accepted, "{identity:?}: {r}");
                    assert_eq!(r.kind, RejectionKind::IdentityMismatch);
                    assert!(r.message.contains("names no docker-reference"), "{r}");
                }
            }
        }
    }

    #[test]
    fn ed25519_keys_cannot_verify_a_message_digest() {
        let sk = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
        let pem = {
            use ed25519_dalek::pkcs8::EncodePublicKey as _;
            sk.verifying_key()
                .to_public_key_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
                .unwrap()
        };
        let k = PublicKey::from_pem(pem.as_bytes()).unwrap();
        assert!(k.verify_digest(&[0u8; 32], &[0u8; 64]).is_err());
    }
}
