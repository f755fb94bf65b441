//! A Fulcio-like CA, leaf certificates with Fulcio's extensions, a PKI chain, and a Rekor-like
//! log key that signs SignedEntryTimestamps: what keyless and PKI cosign signatures are made of,
//! generated in the test (rcgen for the certificates, p256 for the Rekor key).
//!
//! A SET here is what cosign stores in `dev.sigstore.cosign/bundle`:
//! `{"SignedEntryTimestamp": base64(ECDSA(sha256(canonical Payload))), "Payload": {"body":
//! base64(hashedrekord entry), "integratedTime", "logIndex", "logID"}}`; the entry names the
//! payload's SHA-256, the signature, and the certificate (or public key) PEM.

use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, CustomExtension, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType, SigningKey as _,
};
use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;

/// Fulcio's OIDC issuer extension, v1 (the raw string).
pub const OID_ISSUER_V1: &[u64] = &[1, 3, 6, 1, 4, 1, 57264, 1, 1];
/// Fulcio's OIDC issuer extension, v2 (a DER UTF8String).
pub const OID_ISSUER_V2: &[u64] = &[1, 3, 6, 1, 4, 1, 57264, 1, 8];

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

fn ca_params(cn: &str, not_before: OffsetDateTime, not_after: OffsetDateTime) -> CertificateParams {
    let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "sigstore.dev");
    dn.push(DnType::CommonName, cn);
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::CodeSigning];
    p.not_before = not_before;
    p.not_after = not_after;
    p
}

/// A root CA and one intermediate, Fulcio's layout. Names are the same for every instance, so
/// "another CA" differs only by its keys (as a rogue Fulcio would).
pub struct Ca {
    root: CertifiedIssuer<'static, KeyPair>,
    intermediate: CertifiedIssuer<'static, KeyPair>,
}

/// What goes into a leaf certificate.
#[derive(Clone)]
pub struct Leaf {
    /// rfc822Name SAN entries.
    pub emails: Vec<String>,
    /// URI SAN entries (GitHub Actions identities).
    pub uris: Vec<String>,
    /// dNSName SAN entries (PKI hostnames).
    pub dns: Vec<String>,
    /// The v1 issuer extension's value.
    pub issuer_v1: Option<String>,
    /// The v2 issuer extension's value.
    pub issuer_v2: Option<String>,
    /// Validity.
    pub not_before: OffsetDateTime,
    /// Validity.
    pub not_after: OffsetDateTime,
}

impl Leaf {
    /// A Fulcio leaf for `email` from `issuer` (both extensions), valid ten minutes from `at`.
    pub fn fulcio(email: &str, issuer: &str, at: OffsetDateTime) -> Leaf {
        Leaf {
            emails: vec![email.to_string()],
            uris: vec![],
            dns: vec![],
            issuer_v1: Some(issuer.to_string()),
            issuer_v2: Some(issuer.to_string()),
            not_before: at,
            not_after: at + time::Duration::minutes(10),
        }
    }
}

/// A leaf certificate and its key.
pub struct Issued {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The leaf's key (ECDSA P-256).
    pub key: KeyPair,
}

impl Issued {
    /// ECDSA-SHA256 (DER) over `data`, base64: the cosign signature annotation.
    pub fn sign_b64(&self, data: &[u8]) -> String {
        b64(&self.key.sign(data).expect("sign"))
    }
}

impl Ca {
    /// A new root ("sigstore") and intermediate ("sigstore-intermediate"), valid for years
    /// around now.
    pub fn new() -> Ca {
        let now = OffsetDateTime::now_utc();
        let (nb, na) = (
            now - time::Duration::days(3650),
            now + time::Duration::days(3650),
        );
        let root = CertifiedIssuer::self_signed(
            ca_params("sigstore", nb, na),
            KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).expect("root key"),
        )
        .expect("root");
        let intermediate = CertifiedIssuer::signed_by(
            ca_params("sigstore-intermediate", nb, na),
            KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).expect("intermediate key"),
            &root,
        )
        .expect("intermediate");
        Ca { root, intermediate }
    }

    /// The root certificate, PEM: `caPath`/`caRootsPath`.
    pub fn root_pem(&self) -> String {
        self.root.pem()
    }

    /// The intermediate certificate, PEM: `caIntermediatesPath`.
    pub fn intermediate_pem(&self) -> String {
        self.intermediate.pem()
    }

    /// `dev.sigstore.cosign/chain`: the intermediate, then the root.
    pub fn chain_pem(&self) -> String {
        format!("{}{}", self.intermediate.pem(), self.root.pem())
    }

    /// Issues a code-signing leaf from the intermediate.
    pub fn issue(&self, leaf: &Leaf) -> Issued {
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
        p.distinguished_name = DistinguishedName::new();
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::CodeSigning];
        p.not_before = leaf.not_before;
        p.not_after = leaf.not_after;
        for e in &leaf.emails {
            p.subject_alt_names
                .push(SanType::Rfc822Name(e.as_str().try_into().expect("email")));
        }
        for u in &leaf.uris {
            p.subject_alt_names
                .push(SanType::URI(u.as_str().try_into().expect("uri")));
        }
        for d in &leaf.dns {
            p.subject_alt_names
                .push(SanType::DnsName(d.as_str().try_into().expect("dns")));
        }
        if let Some(v1) = &leaf.issuer_v1 {
            p.custom_extensions.push(CustomExtension::from_oid_content(
                OID_ISSUER_V1,
                v1.as_bytes().to_vec(),
            ));
        }
        if let Some(v2) = &leaf.issuer_v2 {
            // DER UTF8String: tag 0x0c, short or long length.
            let mut der = vec![0x0c];
            let len = v2.len();
            if len < 128 {
                der.push(len as u8);
            } else {
                der.extend_from_slice(&[0x81, len as u8]);
            }
            der.extend_from_slice(v2.as_bytes());
            p.custom_extensions
                .push(CustomExtension::from_oid_content(OID_ISSUER_V2, der));
        }
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("leaf key");
        let cert = p.signed_by(&key, &self.intermediate).expect("leaf");
        Issued {
            cert_pem: cert.pem(),
            key,
        }
    }
}

impl Default for Ca {
    fn default() -> Self {
        Ca::new()
    }
}

/// A Rekor-like transparency log: its key signs SETs.
pub struct Rekor {
    key: p256::ecdsa::SigningKey,
    index: std::sync::atomic::AtomicI64,
}

impl Default for Rekor {
    fn default() -> Self {
        Rekor::new()
    }
}

impl Rekor {
    /// A log with a fresh P-256 key.
    pub fn new() -> Rekor {
        Rekor {
            key: p256::ecdsa::SigningKey::random(&mut rand_core::OsRng),
            index: std::sync::atomic::AtomicI64::new(1000),
        }
    }

    /// The log's public key, PEM: `rekorPublicKeyPath`.
    pub fn public_pem(&self) -> String {
        use p256::pkcs8::EncodePublicKey as _;
        self.key
            .verifying_key()
            .to_public_key_pem(p256::pkcs8::LineEnding::LF)
            .expect("PEM")
    }

    /// The `dev.sigstore.cosign/bundle` annotation for a hashedrekord entry logging `payload`'s
    /// hash, `signature_b64` and `key_or_cert_pem`, integrated at `integrated_time`.
    pub fn bundle(
        &self,
        payload: &[u8],
        signature_b64: &str,
        key_or_cert_pem: &str,
        integrated_time: i64,
    ) -> String {
        let entry = serde_json::json!({
            "apiVersion": "0.0.1",
            "kind": "hashedrekord",
            "spec": {
                "data": {"hash": {"algorithm": "sha256", "value": hex::encode(Sha256::digest(payload))}},
                "signature": {
                    "content": signature_b64,
                    "publicKey": {"content": b64(key_or_cert_pem.as_bytes())}
                }
            }
        });
        let body = b64(&serde_json::to_vec(&entry).unwrap());
        let index = self
            .index
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let log_id = hex::encode(Sha256::digest(self.public_pem().as_bytes()));
        // The canonical form (RFC 8785): keys sorted, no whitespace. This is what is signed.
        let canonical = format!(
            r#"{{"body":"{body}","integratedTime":{integrated_time},"logID":"{log_id}","logIndex":{index}}}"#
        );
        use p256::ecdsa::signature::Signer as _;
        let set: p256::ecdsa::Signature = self.key.sign(canonical.as_bytes());
        // The annotation carries the payload in another key order and with whitespace, as
        // cosign's encoder may; the verifier must canonicalise before checking.
        format!(
            r#"{{"SignedEntryTimestamp":"{}","Payload":{{"logIndex": {index}, "body": "{body}", "integratedTime": {integrated_time}, "logID": "{log_id}"}}}}"#,
            b64(set.to_der().as_bytes())
        )
    }
}

/// The DSSEv1 pre-authentication encoding.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {payload_type} {} ",
        payload_type.len(),
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

/// The in-toto statement `cosign sign` (v3) signs for `manifest_digest`.
pub fn cosign_statement(manifest_digest: &str) -> Vec<u8> {
    let hex = manifest_digest
        .strip_prefix("sha256:")
        .expect("sha256 digest");
    serde_json::to_vec(&serde_json::json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"digest": {"sha256": hex}, "annotations": {}}],
        "predicateType": "https://sigstore.dev/cosign/sign/v1",
        "predicate": {}
    }))
    .unwrap()
}

/// The DER of the first certificate of a PEM text.
pub fn pem_der(pem: &str) -> Vec<u8> {
    let b64: String = pem
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("PEM")
}

impl Rekor {
    /// A cosign v3 bundle (v0.3, DSSE form): `statement` signed by `sign` (DER ECDSA over the
    /// PAE), logged as a `dsse` 0.0.1 entry with the verifier `key_or_cert_pem` at
    /// `integrated_time`. `certificate_pem`, if given, is the bundle's certificate; otherwise
    /// it carries a public-key hint.
    pub fn dsse_bundle(
        &self,
        statement: &[u8],
        sign: &dyn Fn(&[u8]) -> Vec<u8>,
        key_or_cert_pem: &str,
        certificate_pem: Option<&str>,
        integrated_time: i64,
    ) -> serde_json::Value {
        use serde_json::json;
        const IN_TOTO: &str = "application/vnd.in-toto+json";
        let sig = sign(&pae(IN_TOTO, statement));
        let body = serde_json::to_vec(&json!({
            "apiVersion": "0.0.1", "kind": "dsse",
            "spec": {
                "envelopeHash": {"algorithm": "sha256", "value": hex::encode([0u8; 32])},
                "payloadHash": {"algorithm": "sha256", "value": hex::encode(Sha256::digest(statement))},
                "signatures": [{"signature": b64(&sig), "verifier": b64(key_or_cert_pem.as_bytes())}]
            }
        }))
        .unwrap();
        let index = self
            .index
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let log_id = Sha256::digest(self.public_pem().as_bytes()).to_vec();
        let canonical = format!(
            r#"{{"body":"{}","integratedTime":{integrated_time},"logID":"{}","logIndex":{index}}}"#,
            b64(&body),
            hex::encode(&log_id)
        );
        use p256::ecdsa::signature::Signer as _;
        let set: p256::ecdsa::Signature = self.key.sign(canonical.as_bytes());
        let material = match certificate_pem {
            Some(pem) => json!({"certificate": {"rawBytes": b64(&pem_der(pem))}}),
            None => json!({"publicKey": {"hint": "test"}}),
        };
        let mut material = material;
        material["tlogEntries"] = json!([{
            "logIndex": index.to_string(),
            "logId": {"keyId": b64(&log_id)},
            "kindVersion": {"kind": "dsse", "version": "0.0.1"},
            "integratedTime": integrated_time.to_string(),
            "inclusionPromise": {"signedEntryTimestamp": b64(set.to_der().as_bytes())},
            "canonicalizedBody": b64(&body)
        }]);
        json!({
            "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
            "verificationMaterial": material,
            "dsseEnvelope": {
                "payload": b64(statement),
                "payloadType": IN_TOTO,
                "signatures": [{"sig": b64(&sig), "keyid": ""}]
            }
        })
    }
}
