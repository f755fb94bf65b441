//! Public keys for `sigstoreSigned`, and verification of the raw signature over the payload.
//!
//! The key type is detected from the SubjectPublicKeyInfo, as sigstore's
//! `cryptoutils.UnmarshalPEMToPublicKey` + `signature.LoadVerifier(key, SHA256)` do:
//! - ECDSA P-256 and P-384: SHA-256 (whatever the curve, as sigstore's verifier is loaded with
//!   SHA-256), ASN.1 DER signature (high-S values are accepted, as Go does);
//! - Ed25519: pure Ed25519 over the payload bytes;
//! - RSA: PKCS#1 v1.5 with SHA-256 (`RSA PUBLIC KEY` PKCS#1 PEM blocks are accepted too).

use std::fmt;

use ed25519_dalek::Verifier as _;
use p256::pkcs8::der::Decode as _;
use p256::pkcs8::spki::{ObjectIdentifier, SubjectPublicKeyInfoRef};
use sha2::Sha256;

const OID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const OID_P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const OID_P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const OID_ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
const OID_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");

/// Largest RSA modulus accepted, in bits (Go accepts up to 16384 bits for verification).
const RSA_MAX_BITS: usize = 16384;

/// A public key trusted by a `sigstoreSigned` requirement.
#[derive(Clone)]
pub struct PublicKey {
    inner: KeyInner,
}

#[derive(Clone)]
enum KeyInner {
    P256(p256::ecdsa::VerifyingKey),
    P384(p384::ecdsa::VerifyingKey),
    Ed25519(ed25519_dalek::VerifyingKey),
    Rsa(rsa::pkcs1v15::VerifyingKey<Sha256>),
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.algorithm())
    }
}

/// A decoded PEM block: its label and DER contents.
struct PemBlock {
    label: String,
    der: Vec<u8>,
}

/// Finds the first well-formed PEM block, skipping any text before it (as Go's `pem.Decode`).
fn decode_pem(data: &[u8]) -> Option<PemBlock> {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.lines().map(str::trim);
    while let Some(line) = lines.next() {
        let Some(label) = line
            .strip_prefix("-----BEGIN ")
            .and_then(|rest| rest.strip_suffix("-----"))
        else {
            continue;
        };
        let end = format!("-----END {label}-----");
        let mut body = String::new();
        let mut complete = false;
        for line in lines.by_ref() {
            if line == end {
                complete = true;
                break;
            }
            if line.contains(':') {
                // An RFC 1421 header line ("Proc-Type: …"); not part of the base64 body.
                continue;
            }
            body.push_str(line);
        }
        if !complete {
            return None;
        }
        if let Ok(der) = super::json::go_base64_std(&body) {
            return Some(PemBlock {
                label: label.to_string(),
                der,
            });
        }
    }
    None
}

fn rsa_from_pkcs1(der: &[u8]) -> Result<rsa::RsaPublicKey, String> {
    let key = rsa::pkcs1::RsaPublicKey::from_der(der).map_err(|e| format!("x509: {e}"))?;
    let n = rsa::BigUint::from_bytes_be(key.modulus.as_bytes());
    let e = rsa::BigUint::from_bytes_be(key.public_exponent.as_bytes());
    rsa::RsaPublicKey::new_with_max_size(n, e, RSA_MAX_BITS)
        .map_err(|e| format!("invalid RSA public key: {e}"))
}

impl PublicKey {
    /// Parses a PEM public key (`PUBLIC KEY` SubjectPublicKeyInfo, or `RSA PUBLIC KEY` PKCS#1).
    pub fn from_pem(data: &[u8]) -> Result<PublicKey, String> {
        let block = decode_pem(data).ok_or_else(|| "PEM decoding failed".to_string())?;
        match block.label.as_str() {
            "PUBLIC KEY" => Self::from_spki_der(&block.der),
            "RSA PUBLIC KEY" => Ok(PublicKey {
                inner: KeyInner::Rsa(rsa::pkcs1v15::VerifyingKey::new(rsa_from_pkcs1(
                    &block.der,
                )?)),
            }),
            other => Err(format!(
                "unknown Public key PEM file type: {other}. Are you passing the correct public key?"
            )),
        }
    }

    /// Parses a DER SubjectPublicKeyInfo.
    pub fn from_spki_der(der: &[u8]) -> Result<PublicKey, String> {
        let spki = SubjectPublicKeyInfoRef::from_der(der).map_err(|e| format!("x509: {e}"))?;
        let key_bytes = spki
            .subject_public_key
            .as_bytes()
            .ok_or_else(|| "x509: invalid public key bit string".to_string())?;
        let oid = spki.algorithm.oid;
        let inner = if oid == OID_EC_PUBLIC_KEY {
            let curve = spki
                .algorithm
                .parameters_oid()
                .map_err(|e| format!("x509: invalid ECDSA parameters: {e}"))?;
            if curve == OID_P256 {
                KeyInner::P256(
                    p256::ecdsa::VerifyingKey::from_sec1_bytes(key_bytes)
                        .map_err(|e| format!("x509: invalid P-256 public key: {e}"))?,
                )
            } else if curve == OID_P384 {
                KeyInner::P384(
                    p384::ecdsa::VerifyingKey::from_sec1_bytes(key_bytes)
                        .map_err(|e| format!("x509: invalid P-384 public key: {e}"))?,
                )
            } else {
                return Err(format!(
                    "ECDSA curve {curve} is not supported yet (only P-256 and P-384 are)"
                ));
            }
        } else if oid == OID_ED25519 {
            let bytes: [u8; 32] = key_bytes
                .try_into()
                .map_err(|_| "x509: invalid Ed25519 public key length".to_string())?;
            KeyInner::Ed25519(
                ed25519_dalek::VerifyingKey::from_bytes(&bytes)
                    .map_err(|e| format!("x509: invalid Ed25519 public key: {e}"))?,
            )
        } else if oid == OID_RSA {
            KeyInner::Rsa(rsa::pkcs1v15::VerifyingKey::new(rsa_from_pkcs1(key_bytes)?))
        } else {
            return Err(format!(
                "public key algorithm {oid} is not supported yet (ECDSA P-256 and P-384, Ed25519 and RSA are)"
            ));
        };
        Ok(PublicKey { inner })
    }

    /// A short name of the key type: `ecdsa-p256`, `ecdsa-p384`, `ed25519` or `rsa`.
    pub fn algorithm(&self) -> &'static str {
        match self.inner {
            KeyInner::P256(_) => "ecdsa-p256",
            KeyInner::P384(_) => "ecdsa-p384",
            KeyInner::Ed25519(_) => "ed25519",
            KeyInner::Rsa(_) => "rsa",
        }
    }

    /// The key as a PEM `PUBLIC KEY` (PKIX SubjectPublicKeyInfo), as sigstore's
    /// `cryptoutils.MarshalPublicKeyToPEM` writes it: what a Rekor entry for this key logs.
    pub fn to_spki_pem(&self) -> Result<String, String> {
        use base64::Engine as _;
        let der = match &self.inner {
            KeyInner::P256(k) => {
                use p256::pkcs8::EncodePublicKey as _;
                k.to_public_key_der().map(|d| d.into_vec())
            }
            KeyInner::P384(k) => {
                use p384::pkcs8::EncodePublicKey as _;
                k.to_public_key_der().map(|d| d.into_vec())
            }
            KeyInner::Ed25519(k) => {
                use ed25519_dalek::pkcs8::EncodePublicKey as _;
                k.to_public_key_der().map(|d| d.into_vec())
            }
            KeyInner::Rsa(k) => {
                use rsa::pkcs8::EncodePublicKey as _;
                k.as_ref().to_public_key_der().map(|d| d.into_vec())
            }
        }
        .map_err(|e| format!("re-marshaling public key to PEM: {e}"))?;
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        let mut pem = String::from("-----BEGIN PUBLIC KEY-----\n");
        for chunk in b64.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
            pem.push('\n');
        }
        pem.push_str("-----END PUBLIC KEY-----\n");
        Ok(pem)
    }

    /// Verifies `signature` over data whose SHA-256 is `digest` (a sigstore bundle's
    /// `messageSignature`, where only the digest is signed and carried). Ed25519 signs the
    /// message itself, not a digest, so it cannot verify one.
    pub(super) fn verify_digest(&self, digest: &[u8], signature: &[u8]) -> Result<(), String> {
        use p256::ecdsa::signature::hazmat::PrehashVerifier as _;
        const MSG: &str = "invalid signature when validating ASN.1 encoded signature";
        if digest.len() != 32 {
            return Err("a SHA-256 digest is 32 bytes".to_string());
        }
        match &self.inner {
            KeyInner::P256(key) => {
                let sig =
                    p256::ecdsa::Signature::from_der(signature).map_err(|_| MSG.to_string())?;
                key.verify_prehash(digest, &sig)
                    .map_err(|_| MSG.to_string())
            }
            KeyInner::P384(key) => {
                let sig =
                    p384::ecdsa::Signature::from_der(signature).map_err(|_| MSG.to_string())?;
                key.verify_prehash(digest, &sig)
                    .map_err(|_| MSG.to_string())
            }
            KeyInner::Ed25519(_) => {
                Err("an Ed25519 key cannot verify a signature over a message digest".to_string())
            }
            KeyInner::Rsa(key) => {
                const MSG: &str = "crypto/rsa: verification error";
                let sig =
                    rsa::pkcs1v15::Signature::try_from(signature).map_err(|_| MSG.to_string())?;
                key.verify_prehash(digest, &sig)
                    .map_err(|_| MSG.to_string())
            }
        }
    }

    /// Verifies `signature` (raw bytes, already base64-decoded) over exactly `payload`.
    /// The error texts are those of sigstore's verifiers.
    pub(super) fn verify(&self, payload: &[u8], signature: &[u8]) -> Result<(), String> {
        match &self.inner {
            KeyInner::P256(key) => {
                const MSG: &str = "invalid signature when validating ASN.1 encoded signature";
                let sig =
                    p256::ecdsa::Signature::from_der(signature).map_err(|_| MSG.to_string())?;
                key.verify(payload, &sig).map_err(|_| MSG.to_string())
            }
            KeyInner::P384(key) => {
                use p384::ecdsa::signature::hazmat::PrehashVerifier as _;
                use sha2::Digest as _;
                const MSG: &str = "invalid signature when validating ASN.1 encoded signature";
                let sig =
                    p384::ecdsa::Signature::from_der(signature).map_err(|_| MSG.to_string())?;
                // Go's ecdsa.VerifyASN1 over the SHA-256 digest, as sigstore's verifier does.
                key.verify_prehash(&Sha256::digest(payload), &sig)
                    .map_err(|_| MSG.to_string())
            }
            KeyInner::Ed25519(key) => {
                const MSG: &str = "failed to verify signature";
                let sig =
                    ed25519_dalek::Signature::from_slice(signature).map_err(|_| MSG.to_string())?;
                key.verify(payload, &sig).map_err(|_| MSG.to_string())
            }
            KeyInner::Rsa(key) => {
                const MSG: &str = "crypto/rsa: verification error";
                let sig =
                    rsa::pkcs1v15::Signature::try_from(signature).map_err(|_| MSG.to_string())?;
                key.verify(payload, &sig).map_err(|_| MSG.to_string())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::Signer as _;
    use p256::pkcs8::EncodePublicKey as _;

    fn p256_pair() -> (p256::ecdsa::SigningKey, PublicKey) {
        let sk = p256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
        let pem = sk
            .verifying_key()
            .to_public_key_pem(p256::pkcs8::LineEnding::LF)
            .unwrap();
        (sk, PublicKey::from_pem(pem.as_bytes()).unwrap())
    }

    #[test]
    fn p256_round_trip_and_high_s() {
        let (sk, pk) = p256_pair();
        assert_eq!(pk.algorithm(), "ecdsa-p256");
        let payload = b"hello payload";
        let sig: p256::ecdsa::Signature = sk.sign(payload);
        pk.verify(payload, sig.to_der().as_bytes()).unwrap();
        // Go's ecdsa.VerifyASN1 accepts both s and n-s; so must we.
        let (r, s) = sig.split_scalars();
        let flipped = p256::ecdsa::Signature::from_scalars(r, -*s).unwrap();
        pk.verify(payload, flipped.to_der().as_bytes()).unwrap();
        assert_eq!(
            pk.verify(b"other payload", sig.to_der().as_bytes())
                .unwrap_err(),
            "invalid signature when validating ASN.1 encoded signature"
        );
        assert!(
            pk.verify(payload, &sig.to_bytes()).is_err(),
            "raw r||s is not DER"
        );
        let (_, other) = p256_pair();
        assert!(other.verify(payload, sig.to_der().as_bytes()).is_err());
    }

    #[test]
    fn ed25519_round_trip() {
        use ed25519_dalek::pkcs8::EncodePublicKey as _;
        use ed25519_dalek::Signer as _;
        let mut seed = [0u8; 32];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut seed);
        let sk = ed25519_dalek::SigningKey::from_bytes(&seed);
        let pem = sk
            .verifying_key()
            .to_public_key_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
            .unwrap();
        let pk = PublicKey::from_pem(pem.as_bytes()).unwrap();
        assert_eq!(pk.algorithm(), "ed25519");
        let sig = sk.sign(b"payload");
        pk.verify(b"payload", &sig.to_bytes()).unwrap();
        assert_eq!(
            pk.verify(b"payloaD", &sig.to_bytes()).unwrap_err(),
            "failed to verify signature"
        );
        assert!(pk.verify(b"payload", &sig.to_bytes()[..63]).is_err());
    }

    #[test]
    fn pem_errors() {
        assert_eq!(
            PublicKey::from_pem(b"garbage").unwrap_err(),
            "PEM decoding failed"
        );
        assert_eq!(PublicKey::from_pem(b"").unwrap_err(), "PEM decoding failed");
        let err =
            PublicKey::from_pem(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
                .unwrap_err();
        assert_eq!(
            err,
            "unknown Public key PEM file type: PRIVATE KEY. Are you passing the correct public key?"
        );
        let err =
            PublicKey::from_pem(b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
                .unwrap_err();
        assert!(err.starts_with("x509:"), "{err}");
        // P-384 (secp384r1) is supported; secp256k1 is recognised and refused clearly.
        let p384 = "-----BEGIN PUBLIC KEY-----\nMHYwEAYHKoZIzj0CAQYFK4EEACIDYgAENpLvd0frYvVC7UlCzlnrXdbbiQt3afZs\nXTCxp3MiOXGHZzmxVpXWP3xT0p/tPiTL9EI3BORicLsoa94WNp3PRnnXrEh2Zg8d\n8sCQNwf5AIPIWRRtVegUCy9Xp2wxcZm3\n-----END PUBLIC KEY-----\n";
        assert_eq!(
            PublicKey::from_pem(p384.as_bytes()).unwrap().algorithm(),
            "ecdsa-p384"
        );
        let k1 = "-----BEGIN PUBLIC KEY-----\nMFYwEAYHKoZIzj0CAQYFK4EEAAoDQgAEHDKWlyzvKa2G+JyCbNk721xqoOc/xQJf\nWcUfc4gcCDU8t5zvT9Hn/bB5G40L9McU9+/FRRUlsNLA36XV+Erpqw==\n-----END PUBLIC KEY-----\n";
        let err = PublicKey::from_pem(k1.as_bytes()).unwrap_err();
        assert!(err.contains("not supported yet"), "{err}");
    }

    #[test]
    fn pem_with_leading_text() {
        let (sk, _) = p256_pair();
        let pem = sk
            .verifying_key()
            .to_public_key_pem(p256::pkcs8::LineEnding::CRLF)
            .unwrap();
        let data = format!("comment line\r\n{pem}trailing");
        let pk = PublicKey::from_pem(data.as_bytes()).unwrap();
        let sig: p256::ecdsa::Signature = sk.sign(b"x");
        pk.verify(b"x", sig.to_der().as_bytes()).unwrap();
    }
}
