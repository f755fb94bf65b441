//! Path validation for `fulcio` and `pki`: rustls-webpki's path building at a chosen time, with
//! Go's extra rules around it (see `x509.rs` for the list) and Go's error texts.

use std::time::Duration;

use rustls_pki_types::{CertificateDer, TrustAnchor, UnixTime};
use webpki::{EndEntityCert, ExtendedKeyUsageValidator, KeyPurposeIdIter};

use x509_cert::der;
use x509_cert::der::{Decode as _, Encode as _};
use x509_cert::ext::pkix::ExtendedKeyUsage;

use super::json::go_quote;
use super::x509::*;

/// `id-kp-codeSigning` (1.3.6.1.5.5.7.3.3), as webpki compares it (the OID's DER contents).
const EKU_CODE_SIGNING: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x03];
/// `anyExtendedKeyUsage` (2.5.29.37.0).
const EKU_ANY: &[u8] = &[0x55, 0x1d, 0x25, 0x00];

/// Go's EKU rule for `x509.VerifyOptions{KeyUsages: [CodeSigning]}`: no EKU extension,
/// `anyExtendedKeyUsage`, or code signing.
struct CodeSigning;

impl ExtendedKeyUsageValidator for CodeSigning {
    #[allow(deprecated)] // The context variant's fields are private.
    fn validate(&self, iter: KeyPurposeIdIter<'_, '_>) -> Result<(), webpki::Error> {
        let mut empty = true;
        for id in iter {
            empty = false;
            let id = id?;
            if id == webpki::KeyPurposeId::new(EKU_CODE_SIGNING)
                || id == webpki::KeyPurposeId::new(EKU_ANY)
            {
                return Ok(());
            }
        }
        if empty {
            Ok(())
        } else {
            Err(webpki::Error::RequiredEkuNotFound)
        }
    }
}

/// Verifies that `leaf` chains to one of `roots` through `intermediates`, at `at` (seconds
/// since the epoch), for code signing. Errors are Go's `x509.Certificate.Verify` texts.
#[allow(deprecated)] // Both EKU error variants are matched.
pub(super) fn verify_chain(
    leaf: &Cert,
    intermediates: &[Cert],
    roots: &[Cert],
    at: Duration,
) -> Result<(), String> {
    // Go checks the leaf's own validity before it looks for a chain.
    leaf.check_time(at)?;
    let anchors: Vec<TrustAnchor<'_>> = roots.iter().filter_map(|r| r.anchor().ok()).collect();
    let anchor_certs: Vec<&Cert> = roots.iter().filter(|r| r.anchor().is_ok()).collect();
    let inter_der: Vec<CertificateDer<'_>> = intermediates
        .iter()
        .map(|c| CertificateDer::from(c.der.as_slice()))
        .collect();
    let leaf_der = CertificateDer::from(leaf.der.as_slice());
    let ee = EndEntityCert::try_from(&leaf_der).map_err(|e| format!("x509: {e:?}"))?;

    // What webpki does not check, Go does: the root's validity and CA-ness, and keyCertSign on
    // every issuer. A path failing these is dropped and path building goes on.
    let extra = |path: &webpki::VerifiedPath<'_>| -> Result<(), webpki::Error> {
        let anchor = path.anchor();
        // Several trusted certificates may share a name and key (a renewed root): one that
        // passes is enough.
        let mut first_err = None;
        let mut any_ok = false;
        for (a, root) in anchors.iter().zip(&anchor_certs) {
            if a.subject.as_ref() != anchor.subject.as_ref()
                || a.subject_public_key_info.as_ref() != anchor.subject_public_key_info.as_ref()
            {
                continue;
            }
            match check_root(root, at) {
                Ok(()) => any_ok = true,
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        if !any_ok {
            if let Some(e) = first_err {
                return Err(e);
            }
        }
        for inter in path.intermediate_certificates() {
            if let Ok(c) = Cert::from_der(inter.der().as_ref()) {
                if !c.may_sign_certificates() {
                    return Err(webpki::Error::CaUsedAsEndEntity);
                }
            }
        }
        Ok(())
    };
    let result = ee.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        &anchors,
        &inter_der,
        UnixTime::since_unix_epoch(at),
        CodeSigning,
        None,
        Some(&extra),
    );
    match result {
        Ok(_) => Ok(()),
        Err(webpki::Error::RequiredEkuNotFound | webpki::Error::RequiredEkuNotFoundContext(_)) => {
            Err("x509: certificate specifies an incompatible key usage".to_string())
        }
        Err(_) => {
            // Go reports an unknown authority, with a hint: the first candidate issuer (same
            // subject name; roots before intermediates, depth first) that did not do, and why.
            let mut chain = vec![leaf];
            Err(match go_hint(&mut chain, roots, intermediates, at) {
                Some((reason, name)) => format!(
                    "x509: certificate signed by unknown authority (possibly because of {} while trying to verify candidate authority certificate {})",
                    go_quote(&reason),
                    go_quote(&name)
                ),
                None => "x509: certificate signed by unknown authority".to_string(),
            })
        }
    }
}

/// Go's `buildChains` order of candidates, for the hint of an `UnknownAuthorityError`.
fn go_hint<'a>(
    chain: &mut Vec<&'a Cert>,
    roots: &'a [Cert],
    intermediates: &'a [Cert],
    at: Duration,
) -> Option<(String, String)> {
    const MAX_DEPTH: usize = 8;
    let cert = *chain.last().expect("non-empty chain");
    let issuer = &cert.cert.tbs_certificate.issuer;
    let candidates = roots
        .iter()
        .map(|c| (true, c))
        .chain(intermediates.iter().map(|c| (false, c)));
    for (is_root, c) in candidates {
        if &c.cert.tbs_certificate.subject != issuer || chain.iter().any(|x| x.der == c.der) {
            continue;
        }
        let failure = if !c.may_sign_certificates() {
            Some(
                "x509: invalid signature: parent certificate cannot sign this kind of certificate"
                    .to_string(),
            )
        } else if !signature_ok(cert, c) {
            Some(signature_failure_text(c))
        } else {
            c.check_time(at).err()
        };
        if let Some(reason) = failure {
            return Some((reason, c.display_name()));
        }
        if !is_root && chain.len() < MAX_DEPTH {
            chain.push(c);
            if let Some(hint) = go_hint(chain, roots, intermediates, at) {
                return Some(hint);
            }
            chain.pop();
        }
    }
    None
}

/// What Go checks of a root and webpki does not: its validity at `at`, that it may sign
/// certificates, and that its EKUs (if any) allow code signing.
#[allow(deprecated)] // The EKU variant with context has private fields.
fn check_root(root: &Cert, at: Duration) -> Result<(), webpki::Error> {
    if root.check_time(at).is_err() {
        return Err(webpki::Error::CertExpired {
            time: UnixTime::since_unix_epoch(at),
            not_after: UnixTime::since_unix_epoch(root.not_after()),
        });
    }
    if !root.may_sign_certificates() {
        return Err(webpki::Error::CaUsedAsEndEntity);
    }
    if let Some(Ok(eku)) = root.extension(&OID_EKU).map(ExtendedKeyUsage::from_der) {
        let ok = eku
            .0
            .iter()
            .any(|o| *o == OID_KP_CODE_SIGNING || *o == OID_ANY_EKU);
        if !ok {
            return Err(webpki::Error::RequiredEkuNotFound);
        }
    }
    Ok(())
}

/// Whether `parent`'s key made `child`'s signature (with the algorithms webpki supports).
fn signature_ok(child: &Cert, parent: &Cert) -> bool {
    use x509_cert::der::Reader as _;
    // The TBS bytes exactly as signed: the first element of the certificate SEQUENCE.
    let tbs = der::SliceReader::new(&child.der).and_then(|mut r| {
        r.sequence(|r| {
            let tbs: der::asn1::AnyRef<'_> = r.decode()?;
            let _alg: der::asn1::AnyRef<'_> = r.decode()?;
            let _sig: der::asn1::AnyRef<'_> = r.decode()?;
            tbs.to_der()
        })
    });
    let (Ok(tbs), Ok(sig_alg), Ok(pk_alg)) = (
        tbs,
        child.cert.signature_algorithm.to_der(),
        parent
            .cert
            .tbs_certificate
            .subject_public_key_info
            .algorithm
            .to_der(),
    ) else {
        return false;
    };
    let (Some(signature), Some(public_key)) = (
        child.cert.signature.as_bytes(),
        parent
            .cert
            .tbs_certificate
            .subject_public_key_info
            .subject_public_key
            .as_bytes(),
    ) else {
        return false;
    };
    // webpki's identifiers are the SEQUENCE contents; ours are whole SEQUENCEs.
    let contents = |seq: &[u8]| -> Vec<u8> {
        der::asn1::AnyRef::from_der(seq)
            .map(|a| a.value().to_vec())
            .unwrap_or_default()
    };
    let (sig_alg, pk_alg) = (contents(&sig_alg), contents(&pk_alg));
    webpki::ALL_VERIFICATION_ALGS
        .iter()
        .filter(|a| *a.signature_alg_id() == *sig_alg && *a.public_key_alg_id() == *pk_alg)
        .any(|a| a.verify_signature(public_key, &tbs, signature).is_ok())
}

/// Go's text for a certificate signature that `parent`'s key does not verify.
fn signature_failure_text(parent: &Cert) -> String {
    match parent.public_key().map(|k| k.algorithm()) {
        Ok("rsa") => "crypto/rsa: verification error".to_string(),
        Ok("ed25519") => "x509: Ed25519 verification failure".to_string(),
        _ => "x509: ECDSA verification failure".to_string(),
    }
}
