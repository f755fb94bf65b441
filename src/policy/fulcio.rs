//! Keyless signatures: a Fulcio certificate in `dev.sigstore.cosign/certificate`, checked as
//! containers/image's `signature/fulcio_cert.go` checks it.
//!
//! The chain to the configured CA is verified at the Rekor entry's `integratedTime` (Fulcio
//! certificates live ten minutes, so "now" would reject every signature older than that), for
//! code signing. The OIDC issuer comes from Fulcio's issuer extension: the v1 OID
//! 1.3.6.1.4.1.57264.1.1 (the raw string) and the v2 OID 1.3.6.1.4.1.57264.1.8 (a DER string);
//! when both are present they must agree. The subject must be an email in the SAN: like
//! containers/image, URI identities (GitHub Actions workflows) are not matched.

use std::time::Duration;

use x509_cert::der;
use x509_cert::der::{Decode as _, Tagged as _};

use super::chain::verify_chain;
use super::keys::PublicKey;
use super::x509::{go_quote_list, parse_leaf, untrusted_intermediates, Cert};

const OID_ISSUER_V1: der::oid::ObjectIdentifier =
    der::oid::ObjectIdentifier::new_unwrap("1.3.6.1.4.1.57264.1.1");
const OID_ISSUER_V2: der::oid::ObjectIdentifier =
    der::oid::ObjectIdentifier::new_unwrap("1.3.6.1.4.1.57264.1.8");

/// A loaded `fulcio` section: the CA certificates and the identity to require.
#[derive(Debug, Clone)]
pub(super) struct FulcioTrustRoot {
    pub(super) ca_certificates: Vec<Cert>,
    pub(super) oidc_issuer: String,
    pub(super) subject_email: String,
}

/// The OIDC issuer Fulcio recorded in the certificate (`fulcioIssuerInCertificate`).
pub(super) fn issuer_in_certificate(cert: &Cert) -> Result<String, String> {
    let v1 = cert
        .extension(&OID_ISSUER_V1)
        .map(|v| String::from_utf8_lossy(v).into_owned());
    let v2 = match cert.extension(&OID_ISSUER_V2) {
        None => None,
        Some(value) => Some(decode_der_string(value)?),
    };
    match (v1, v2) {
        (Some(a), Some(b)) if a != b => Err(format!(
            "inconsistent OIDC issuer extension values: v1 {}, v2 {}",
            super::json::go_quote(&a),
            super::json::go_quote(&b)
        )),
        (Some(a), _) => Ok(a),
        (None, Some(b)) => Ok(b),
        (None, None) => Err("Fulcio certificate is missing the issuer extension".to_string()),
    }
}

/// Go's `asn1.Unmarshal(value, &string)`: a UTF8String, PrintableString or IA5String, with no
/// trailing data.
fn decode_der_string(value: &[u8]) -> Result<String, String> {
    let mut reader = der::SliceReader::new(value)
        .map_err(|e| format!("invalid ASN.1 in OIDC issuer v2 extension: {e}"))?;
    let any = der::asn1::AnyRef::decode(&mut reader)
        .map_err(|e| format!("invalid ASN.1 in OIDC issuer v2 extension: {e}"))?;
    if !der::Reader::is_finished(&reader) {
        return Err("invalid ASN.1 in OIDC issuer v2 extension, trailing data".to_string());
    }
    let text = match any.tag() {
        der::Tag::Utf8String | der::Tag::PrintableString | der::Tag::Ia5String => {
            std::str::from_utf8(any.value()).map_err(|e| e.to_string())
        }
        tag => Err(format!("asn1: structure error: tags don't match ({tag})")),
    };
    text.map(str::to_string)
        .map_err(|e| format!("invalid ASN.1 in OIDC issuer v2 extension: {e}"))
}

impl FulcioTrustRoot {
    /// `verifyFulcioCertificateAtTime`: the certificate's key, if the certificate is trusted.
    pub(super) fn verify_at(
        &self,
        at: Duration,
        cert_pem: &[u8],
        chain_pem: Option<&[u8]>,
    ) -> Result<PublicKey, String> {
        let intermediates = untrusted_intermediates(chain_pem)?;
        let leaf = parse_leaf(cert_pem)?;
        verify_chain(&leaf, &intermediates, &self.ca_certificates, at)
            .map_err(|e| format!("veryfing leaf certificate failed: {e}"))?;
        let issuer = issuer_in_certificate(&leaf)?;
        if issuer != self.oidc_issuer {
            return Err(format!(
                "Unexpected Fulcio OIDC issuer {}",
                super::json::go_quote(&issuer)
            ));
        }
        let emails = leaf.email_addresses();
        if !emails.contains(&self.subject_email) {
            return Err(format!(
                "Required email {} not found (got {})",
                super::json::go_quote(&self.subject_email),
                go_quote_list(&emails)
            ));
        }
        leaf.public_key()
    }
}

/// The DER UTF8String value of a v2 issuer extension (for tests).
#[cfg(test)]
pub(super) fn issuer_v2_value(issuer: &str) -> Vec<u8> {
    use x509_cert::der::Encode as _;
    der::asn1::Utf8StringRef::new(issuer)
        .expect("utf8")
        .to_der()
        .expect("der")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_issuer_decoding() {
        assert_eq!(
            decode_der_string(&issuer_v2_value("https://accounts.google.com")).unwrap(),
            "https://accounts.google.com"
        );
        let mut trailing = issuer_v2_value("x");
        trailing.push(0);
        assert_eq!(
            decode_der_string(&trailing).unwrap_err(),
            "invalid ASN.1 in OIDC issuer v2 extension, trailing data"
        );
        assert!(decode_der_string(b"https://raw")
            .unwrap_err()
            .starts_with("invalid ASN.1 in OIDC issuer v2 extension: "));
    }
}
