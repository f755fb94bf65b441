//! `pki`: a certificate in `dev.sigstore.cosign/certificate` issued by a configured CA
//! (cosign's `--certificate-chain`), checked as containers/image's `signature/pki_cert.go`
//! checks it.
//!
//! Unlike `fulcio`, there is no Rekor entry, so the chain is verified at the current time, as
//! containers/image does (an expired certificate rejects the image even if it signed while it was
//! valid). Intermediates come from the policy (`caIntermediates*`) and from the signature's
//! `dev.sigstore.cosign/chain` (all but its last certificate). `subjectEmail` must be an email
//! in the SAN; `subjectHostname` is matched as Go's `VerifyHostname` matches (SAN DNS names with
//! a leading `*.` wildcard, or IP addresses); when both are set, both must match.

use std::time::{Duration, SystemTime};

use super::chain::verify_chain;
use super::json::go_quote;
use super::keys::PublicKey;
use super::x509::{go_quote_list, parse_leaf, untrusted_intermediates, verify_hostname, Cert};

/// A loaded `pki` section.
#[derive(Debug, Clone)]
pub(super) struct PkiTrustRoot {
    pub(super) roots: Vec<Cert>,
    pub(super) intermediates: Vec<Cert>,
    pub(super) subject_email: Option<String>,
    pub(super) subject_hostname: Option<String>,
}

impl PkiTrustRoot {
    /// `verifyPKI`: the certificate's key, if the certificate is trusted now.
    pub(super) fn verify(
        &self,
        cert_pem: &[u8],
        chain_pem: Option<&[u8]>,
    ) -> Result<PublicKey, String> {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        self.verify_at(now, cert_pem, chain_pem)
    }

    pub(super) fn verify_at(
        &self,
        at: Duration,
        cert_pem: &[u8],
        chain_pem: Option<&[u8]>,
    ) -> Result<PublicKey, String> {
        let mut intermediates = self.intermediates.clone();
        intermediates.extend(untrusted_intermediates(chain_pem)?);
        let leaf = parse_leaf(cert_pem)?;
        verify_chain(&leaf, &intermediates, &self.roots, at)
            .map_err(|e| format!("veryfing leaf certificate failed: {e}"))?;
        if let Some(email) = &self.subject_email {
            let emails = leaf.email_addresses();
            if !emails.contains(email) {
                return Err(format!(
                    "Required email {} not found (got {})",
                    go_quote(email),
                    go_quote_list(&emails)
                ));
            }
        }
        if let Some(host) = &self.subject_hostname {
            verify_hostname(&leaf, host)
                .map_err(|e| format!("Unexpected subject hostname: {e}"))?;
        }
        leaf.public_key()
    }
}
