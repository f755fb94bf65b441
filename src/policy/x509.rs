//! X.509 for the keyless (`fulcio`) and `pki` requirements: PEM loading with Go's leniency,
//! parsing with `x509-cert`, and path validation with `rustls-webpki` at a chosen time, with the
//! code-signing EKU.
//!
//! containers/image uses Go's `crypto/x509`. Where webpki and Go differ, this module adds Go's
//! rules around webpki's path building, so that the verdicts agree:
//! - a certificate without an EKU extension, or with `anyExtendedKeyUsage`, is acceptable for
//!   code signing (Go), where webpki's stock validator would demand the OID;
//! - the root's validity period, its basic constraints and every issuer's `keyCertSign` key usage
//!   are checked (Go checks them; webpki treats a trust anchor as a bare name and key, and
//!   ignores key usage);
//! - the leaf's validity is checked first, so an expired leaf reports Go's "expired" text.
//!
//! Error texts are Go's (`x509: certificate signed by unknown authority`, `x509: certificate has
//! expired or is not yet valid: current time … is after …`, `x509: certificate specifies an
//! incompatible key usage`), because containers/image shows them to the user.

use std::time::Duration;

use rustls_pki_types::{CertificateDer, TrustAnchor};
use x509_cert::der;
use x509_cert::der::{Decode as _, Encode as _};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{BasicConstraints, KeyUsage, KeyUsages, SubjectAltName};

use super::json::{go_base64_std, go_quote};
use super::keys::PublicKey;

pub(super) const OID_SAN: der::oid::ObjectIdentifier =
    der::oid::ObjectIdentifier::new_unwrap("2.5.29.17");
pub(super) const OID_KEY_USAGE: der::oid::ObjectIdentifier =
    der::oid::ObjectIdentifier::new_unwrap("2.5.29.15");
pub(super) const OID_BASIC_CONSTRAINTS: der::oid::ObjectIdentifier =
    der::oid::ObjectIdentifier::new_unwrap("2.5.29.19");
pub(super) const OID_EKU: der::oid::ObjectIdentifier =
    der::oid::ObjectIdentifier::new_unwrap("2.5.29.37");
pub(super) const OID_KP_CODE_SIGNING: der::oid::ObjectIdentifier =
    der::oid::ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.3");
pub(super) const OID_ANY_EKU: der::oid::ObjectIdentifier =
    der::oid::ObjectIdentifier::new_unwrap("2.5.29.37.0");
pub(super) const OID_CN: der::oid::ObjectIdentifier =
    der::oid::ObjectIdentifier::new_unwrap("2.5.4.3");
pub(super) const OID_O: der::oid::ObjectIdentifier =
    der::oid::ObjectIdentifier::new_unwrap("2.5.4.10");

/// One decoded PEM block.
pub(super) struct PemBlock {
    pub(super) label: String,
    pub(super) has_headers: bool,
    pub(super) der: Vec<u8>,
}

/// Go's `pem.Decode` applied repeatedly: every well-formed block in `data`, in order, and
/// whether non-whitespace text (or a malformed block) follows the last one. Like `pem.Decode`,
/// text before a block is skipped; only what is left after the last block is an error for
/// `cryptoutils.UnmarshalCertificatesFromPEM`.
pub(super) fn pem_blocks(data: &[u8]) -> (Vec<PemBlock>, bool) {
    let text = String::from_utf8_lossy(data);
    let mut blocks = Vec::new();
    let mut junk = false;
    let mut lines = text.lines().map(str::trim).peekable();
    while let Some(line) = lines.next() {
        let Some(label) = line
            .strip_prefix("-----BEGIN ")
            .and_then(|rest| rest.strip_suffix("-----"))
        else {
            junk |= !line.is_empty();
            continue;
        };
        let end = format!("-----END {label}-----");
        let (mut body, mut has_headers, mut complete) = (String::new(), false, false);
        for line in lines.by_ref() {
            if line == end {
                complete = true;
                break;
            }
            if line.contains(':') {
                has_headers = true;
                continue;
            }
            body.push_str(line);
        }
        match go_base64_std(&body) {
            Ok(der) if complete => {
                blocks.push(PemBlock {
                    label: label.to_string(),
                    has_headers,
                    der,
                });
                junk = false;
            }
            _ => junk = true,
        }
    }
    (blocks, junk)
}

/// A parsed certificate with its DER.
#[derive(Clone)]
pub(super) struct Cert {
    pub(super) der: Vec<u8>,
    pub(super) cert: x509_cert::Certificate,
}

impl std::fmt::Debug for Cert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Cert({})", self.display_name())
    }
}

impl Cert {
    /// Parses a DER certificate (Go's `x509.ParseCertificate`, as far as the checks here need).
    pub(super) fn from_der(der: &[u8]) -> Result<Cert, String> {
        let cert = x509_cert::Certificate::from_der(der)
            .map_err(|e| format!("x509: malformed certificate: {e}"))?;
        if let Some(exts) = &cert.tbs_certificate.extensions {
            let mut seen = std::collections::HashSet::new();
            if !exts.iter().all(|e| seen.insert(e.extn_id)) {
                return Err("x509: certificate contains duplicate extensions".to_string());
            }
        }
        Ok(Cert {
            der: der.to_vec(),
            cert,
        })
    }

    /// The value of the extension `oid`, if present.
    pub(super) fn extension(&self, oid: &der::oid::ObjectIdentifier) -> Option<&[u8]> {
        self.cert
            .tbs_certificate
            .extensions
            .as_ref()?
            .iter()
            .find(|e| e.extn_id == *oid)
            .map(|e| e.extn_value.as_bytes())
    }

    fn san(&self) -> Vec<GeneralName> {
        self.extension(&OID_SAN)
            .and_then(|v| SubjectAltName::from_der(v).ok())
            .map(|s| s.0)
            .unwrap_or_default()
    }

    /// Whether the certificate has a subjectAltName extension.
    pub(super) fn has_san(&self) -> bool {
        self.extension(&OID_SAN).is_some()
    }

    /// The rfc822Name entries of the SAN (Go's `EmailAddresses`).
    pub(super) fn email_addresses(&self) -> Vec<String> {
        self.san()
            .into_iter()
            .filter_map(|n| match n {
                GeneralName::Rfc822Name(s) => Some(s.to_string()),
                _ => None,
            })
            .collect()
    }

    /// The dNSName entries of the SAN (Go's `DNSNames`).
    pub(super) fn dns_names(&self) -> Vec<String> {
        self.san()
            .into_iter()
            .filter_map(|n| match n {
                GeneralName::DnsName(s) => Some(s.to_string()),
                _ => None,
            })
            .collect()
    }

    /// The iPAddress entries of the SAN (Go's `IPAddresses`).
    pub(super) fn ip_addresses(&self) -> Vec<std::net::IpAddr> {
        self.san()
            .into_iter()
            .filter_map(|n| match n {
                GeneralName::IpAddress(o) => match o.as_bytes().len() {
                    4 => <[u8; 4]>::try_from(o.as_bytes())
                        .ok()
                        .map(std::net::IpAddr::from),
                    16 => <[u8; 16]>::try_from(o.as_bytes())
                        .ok()
                        .map(std::net::IpAddr::from),
                    _ => None,
                },
                _ => None,
            })
            .collect()
    }

    /// The subject's first attribute of type `oid`, as text.
    fn subject_attr(&self, oid: der::oid::ObjectIdentifier) -> Option<String> {
        self.cert.tbs_certificate.subject.0.iter().find_map(|rdn| {
            rdn.0.iter().find(|a| a.oid == oid).map(|a| {
                der::asn1::Utf8StringRef::try_from(&a.value)
                    .map(|s| s.as_str().to_string())
                    .or_else(|_| {
                        der::asn1::PrintableStringRef::try_from(&a.value)
                            .map(|s| s.as_str().to_string())
                    })
                    .unwrap_or_default()
            })
        })
    }

    /// The subject's common name (empty when there is none).
    pub(super) fn common_name(&self) -> String {
        self.subject_attr(OID_CN).unwrap_or_default()
    }

    /// How Go names a certificate in an "unknown authority" hint: CN, else O, else the serial.
    pub(super) fn display_name(&self) -> String {
        let cn = self.common_name();
        if !cn.is_empty() {
            return cn;
        }
        match self.subject_attr(OID_O) {
            Some(o) => o,
            None => format!(
                "serial:{}",
                hex::encode(self.cert.tbs_certificate.serial_number.as_bytes())
            ),
        }
    }

    /// The certificate's public key, for verifying a payload signature.
    pub(super) fn public_key(&self) -> Result<PublicKey, String> {
        let spki = self
            .cert
            .tbs_certificate
            .subject_public_key_info
            .to_der()
            .map_err(|e| format!("x509: {e}"))?;
        PublicKey::from_spki_der(&spki)
    }

    fn not_before(&self) -> Duration {
        self.cert
            .tbs_certificate
            .validity
            .not_before
            .to_unix_duration()
    }

    pub(super) fn not_after(&self) -> Duration {
        self.cert
            .tbs_certificate
            .validity
            .not_after
            .to_unix_duration()
    }

    /// Go's `isValid` time check: `CertificateInvalidError{Expired}`'s text.
    pub(super) fn check_time(&self, at: Duration) -> Result<(), String> {
        let prefix = "x509: certificate has expired or is not yet valid:";
        if at < self.not_before() {
            return Err(format!(
                "{prefix} current time {} is before {}",
                rfc3339(at),
                rfc3339(self.not_before())
            ));
        }
        if at > self.not_after() {
            return Err(format!(
                "{prefix} current time {} is after {}",
                rfc3339(at),
                rfc3339(self.not_after())
            ));
        }
        Ok(())
    }

    /// Go's `CheckSignatureFrom` constraints on a parent: a v3 parent must carry basic
    /// constraints with `cA`, and a key usage extension, if any, must allow `keyCertSign`.
    pub(super) fn may_sign_certificates(&self) -> bool {
        let v3 = self.cert.tbs_certificate.version == x509_cert::certificate::Version::V3;
        let bc = self
            .extension(&OID_BASIC_CONSTRAINTS)
            .map(BasicConstraints::from_der);
        let ca_ok = match bc {
            Some(Ok(bc)) => bc.ca,
            Some(Err(_)) => false,
            None => !v3,
        };
        let ku_ok = match self.extension(&OID_KEY_USAGE).map(KeyUsage::from_der) {
            None => true,
            Some(Ok(ku)) => ku.0.is_empty() || ku.0.contains(KeyUsages::KeyCertSign),
            Some(Err(_)) => false,
        };
        ca_ok && ku_ok
    }

    pub(super) fn anchor(&self) -> Result<TrustAnchor<'_>, String> {
        let der = CertificateDer::from(self.der.as_slice());
        webpki::anchor_from_trusted_cert(&der)
            .map(|a| a.to_owned())
            .map_err(|e| format!("x509: {e}"))
    }
}

/// Go's `cryptoutils.UnmarshalCertificatesFromPEM`: every PEM block must be a parsable
/// certificate (the block type is not checked); anything else is an error.
pub(super) fn certs_from_pem(data: &[u8]) -> Result<Vec<Cert>, String> {
    let (blocks, junk) = pem_blocks(data);
    if junk {
        return Err("error during PEM decoding".to_string());
    }
    blocks.iter().map(|b| Cert::from_der(&b.der)).collect()
}

/// Go's `CertPool.AppendCertsFromPEM`: the `CERTIFICATE` blocks without headers that parse;
/// everything else is skipped. `None` when no certificate was found.
pub(super) fn pool_from_pem(data: &[u8]) -> Option<Vec<Cert>> {
    let (blocks, _) = pem_blocks(data);
    let certs: Vec<Cert> = blocks
        .iter()
        .filter(|b| b.label == "CERTIFICATE" && !b.has_headers)
        .filter_map(|b| Cert::from_der(&b.der).ok())
        .collect();
    (!certs.is_empty()).then_some(certs)
}

/// The leaf certificate of a signature (containers/image's `parseLeafCertFromPEM`).
pub(super) fn parse_leaf(pem: &[u8]) -> Result<Cert, String> {
    let certs = certs_from_pem(pem).map_err(|e| format!("parsing leaf certificate: {e}"))?;
    match certs.len() {
        0 => Err("no certificate found in signature certificate data".to_string()),
        1 => Ok(certs.into_iter().next().expect("one certificate")),
        _ => Err(
            "unexpected multiple certificates present in signature certificate data".to_string(),
        ),
    }
}

/// The intermediates a signature supplies in `dev.sigstore.cosign/chain`: every certificate but
/// the last one (the root, which must come from the policy), as containers/image uses them.
pub(super) fn untrusted_intermediates(chain_pem: Option<&[u8]>) -> Result<Vec<Cert>, String> {
    let Some(chain) = chain_pem.filter(|c| !c.is_empty()) else {
        return Ok(Vec::new());
    };
    let mut certs = certs_from_pem(chain).map_err(|e| format!("loading certificate chain: {e}"))?;
    certs.pop();
    Ok(certs)
}

/// `time.Time.Format(time.RFC3339)` in UTC.
pub(super) fn rfc3339(t: Duration) -> String {
    let secs = t.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Go's `Certificate.VerifyHostname` and `HostnameError` texts (SANs only, no Common Name).
pub(super) fn verify_hostname(cert: &Cert, host: &str) -> Result<(), String> {
    let candidate_ip = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .filter(|_| host.len() >= 3)
        .unwrap_or(host);
    if let Ok(ip) = candidate_ip.parse::<std::net::IpAddr>() {
        let ips = cert.ip_addresses();
        if ips.iter().any(|c| ip_equal(*c, ip)) {
            return Ok(());
        }
        if ips.is_empty() {
            return Err(format!(
                "x509: cannot validate certificate for {candidate_ip} because it doesn't contain any IP SANs"
            ));
        }
        let valid: Vec<String> = ips.iter().map(|i| i.to_string()).collect();
        return Err(format!(
            "x509: certificate is valid for {}, not {candidate_ip}",
            valid.join(", ")
        ));
    }
    let name = host.to_ascii_lowercase();
    let valid_name = valid_hostname(&name, false);
    let dns = cert.dns_names();
    for pattern in &dns {
        let ok = if valid_name && valid_hostname(pattern, true) {
            match_hostnames(pattern, &name)
        } else {
            match_exactly(pattern, &name)
        };
        if ok {
            return Ok(());
        }
    }
    if !cert.has_san() && match_hostnames(&cert.common_name(), host) {
        return Err(
            "x509: certificate relies on legacy Common Name field, use SANs instead".to_string(),
        );
    }
    if dns.is_empty() {
        return Err(format!(
            "x509: certificate is not valid for any names, but wanted to match {host}"
        ));
    }
    Err(format!(
        "x509: certificate is valid for {}, not {host}",
        dns.join(", ")
    ))
}

fn ip_equal(a: std::net::IpAddr, b: std::net::IpAddr) -> bool {
    use std::net::IpAddr::*;
    match (a, b) {
        (V4(x), V6(y)) | (V6(y), V4(x)) => y.to_ipv4_mapped() == Some(x),
        _ => a == b,
    }
}

fn valid_hostname(host: &str, is_pattern: bool) -> bool {
    let host = if is_pattern {
        host
    } else {
        host.strip_suffix('.').unwrap_or(host)
    };
    if host.is_empty() || host == "*" {
        return false;
    }
    host.split('.').enumerate().all(|(i, part)| {
        !part.is_empty()
            && ((is_pattern && i == 0 && part == "*")
                || part
                    .char_indices()
                    .all(|(j, c)| c.is_ascii_alphanumeric() || (c == '-' && j != 0) || c == '_'))
    })
}

fn match_exactly(a: &str, b: &str) -> bool {
    if a.is_empty() || a == "." || b.is_empty() || b == "." {
        return false;
    }
    a.eq_ignore_ascii_case(b)
}

fn match_hostnames(pattern: &str, host: &str) -> bool {
    let pattern = pattern.to_ascii_lowercase();
    let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    if pattern.is_empty() || host.is_empty() {
        return false;
    }
    let p: Vec<&str> = pattern.split('.').collect();
    let h: Vec<&str> = host.split('.').collect();
    p.len() == h.len()
        && p.iter()
            .zip(&h)
            .enumerate()
            .all(|(i, (pp, hp))| (i == 0 && *pp == "*") || pp == hp)
}

/// Go's `%q` of a `[]string`: `["a" "b"]`.
pub(super) fn go_quote_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| go_quote(s)).collect();
    format!("[{}]", quoted.join(" "))
}

#[cfg(test)]
mod tests {
    use super::super::chain::verify_chain;
    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
        IsCa, KeyPair, KeyUsagePurpose,
    };

    const YEAR: u64 = 365 * 86_400;
    /// 2030-01-01, well inside every validity period below unless a test says otherwise.
    const AT: Duration = Duration::from_secs(1_893_456_000);

    fn when(secs: u64) -> time::OffsetDateTime {
        time::OffsetDateTime::from_unix_timestamp(secs as i64).unwrap()
    }

    fn params(cn: &str, ca: bool, from: u64, to: u64) -> CertificateParams {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.not_before = when(from);
        p.not_after = when(to);
        if ca {
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            p.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        } else {
            p.is_ca = IsCa::ExplicitNoCa;
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::CodeSigning];
        }
        p
    }

    fn cert(pem: &str) -> Cert {
        certs_from_pem(pem.as_bytes()).unwrap().remove(0)
    }

    /// root → intermediate → leaf, every validity around AT unless changed by `tweak`.
    fn chain(tweak: impl Fn(&str, &mut CertificateParams)) -> (Cert, Cert, Cert) {
        let t = AT.as_secs();
        let mut rp = params("root", true, t - YEAR, t + YEAR);
        tweak("root", &mut rp);
        let root = CertifiedIssuer::self_signed(rp, KeyPair::generate().unwrap()).unwrap();
        let mut ip = params("inter", true, t - YEAR, t + YEAR);
        tweak("inter", &mut ip);
        let inter = CertifiedIssuer::signed_by(ip, KeyPair::generate().unwrap(), &root).unwrap();
        let mut lp = params("", false, t - 60, t + 60);
        tweak("leaf", &mut lp);
        let leaf = lp.signed_by(&KeyPair::generate().unwrap(), &inter).unwrap();
        (cert(&root.pem()), cert(&inter.pem()), cert(&leaf.pem()))
    }

    fn verify(tweak: impl Fn(&str, &mut CertificateParams)) -> Result<(), String> {
        let (root, inter, leaf) = chain(tweak);
        verify_chain(&leaf, &[inter], &[root], AT)
    }

    #[test]
    fn chain_rules_follow_go() {
        verify(|_, _| {}).unwrap();
        // No EKU on the leaf is "any" in Go; anyExtendedKeyUsage too.
        verify(|w, p| {
            if w == "leaf" {
                p.extended_key_usages.clear()
            }
        })
        .unwrap();
        verify(|w, p| {
            if w == "leaf" {
                p.extended_key_usages = vec![ExtendedKeyUsagePurpose::Any]
            }
        })
        .unwrap();
        // Another EKU, on the leaf, the intermediate or the root: incompatible.
        for who in ["leaf", "inter", "root"] {
            assert_eq!(
                verify(|w, p| {
                    if w == who {
                        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth]
                    }
                })
                .unwrap_err(),
                "x509: certificate specifies an incompatible key usage",
                "{who}"
            );
        }
        // The leaf's validity is checked first, with Go's text.
        let t = AT.as_secs();
        assert_eq!(
            verify(|w, p| if w == "leaf" {
                p.not_after = when(t - 1)
            })
            .unwrap_err(),
            format!(
                "x509: certificate has expired or is not yet valid: current time {} is after {}",
                rfc3339(AT),
                rfc3339(Duration::from_secs(t - 1))
            )
        );
        // An expired root or intermediate: unknown authority, naming it.
        for who in ["root", "inter"] {
            let err = verify(|w, p| {
                if w == who {
                    p.not_after = when(t - 10)
                }
            })
            .unwrap_err();
            assert!(
                err.starts_with("x509: certificate signed by unknown authority (possibly because of \"x509: certificate has expired or is not yet valid: current time")
                    && err.ends_with(&format!("while trying to verify candidate authority certificate \"{who}\")")),
                "{who}: {err}"
            );
        }
        // An intermediate that is not a CA, or may not sign certificates.
        for (who, tweak) in [
            ("not a CA", IsCa::ExplicitNoCa),
            ("no keyCertSign", IsCa::Ca(BasicConstraints::Unconstrained)),
        ] {
            let err = verify(|w, p| {
                if w == "inter" {
                    p.is_ca = tweak;
                    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
                }
            })
            .unwrap_err();
            assert!(
                err.starts_with("x509: certificate signed by unknown authority"),
                "{who}: {err}"
            );
        }
        // A root that is not among the trusted ones, with the same name and another key.
        let (_, inter, leaf) = chain(|_, _| {});
        let (other_root, _, _) = chain(|_, _| {});
        assert_eq!(
            verify_chain(&leaf, &[inter], &[other_root], AT).unwrap_err(),
            "x509: certificate signed by unknown authority (possibly because of \"x509: ECDSA verification failure\" while trying to verify candidate authority certificate \"root\")"
        );
        // The intermediate may be trusted directly.
        let (_, inter, leaf) = chain(|_, _| {});
        verify_chain(&leaf, &[], &[inter], AT).unwrap();
    }

    #[test]
    fn a_renewed_root_with_the_same_name_and_key_is_enough() {
        let t = AT.as_secs();
        let key = KeyPair::generate().unwrap();
        let old = params("root", true, t - 2 * YEAR, t - YEAR)
            .self_signed(&key)
            .unwrap();
        let renewed =
            CertifiedIssuer::self_signed(params("root", true, t - YEAR, t + YEAR), key).unwrap();
        let inter = CertifiedIssuer::signed_by(
            params("inter", true, t - YEAR, t + YEAR),
            KeyPair::generate().unwrap(),
            &renewed,
        )
        .unwrap();
        let leaf = params("", false, t - 60, t + 60)
            .signed_by(&KeyPair::generate().unwrap(), &inter)
            .unwrap();
        let (old, renewed) = (cert(&old.pem()), cert(&renewed.pem()));
        let (inter, leaf) = (cert(&inter.pem()), cert(&leaf.pem()));
        verify_chain(
            &leaf,
            std::slice::from_ref(&inter),
            &[old.clone(), renewed],
            AT,
        )
        .unwrap();
        assert!(verify_chain(&leaf, &[inter], &[old], AT)
            .unwrap_err()
            .contains("has expired or is not yet valid"));
    }

    #[test]
    fn rfc3339_formats_utc() {
        assert_eq!(rfc3339(Duration::from_secs(0)), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339(Duration::from_secs(1_670_000_000)),
            "2022-12-02T16:53:20Z"
        );
        assert_eq!(
            rfc3339(Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00Z"
        );
    }

    #[test]
    fn hostname_matching_follows_go() {
        assert!(match_hostnames("*.example.com", "a.example.com"));
        assert!(!match_hostnames("*.example.com", "a.b.example.com"));
        assert!(match_hostnames("Example.COM", "example.com."));
        assert!(!valid_hostname("-bad.com", false));
        assert!(valid_hostname("under_score.com", false));
        assert!(match_exactly("weird name", "WEIRD NAME"));
    }

    #[test]
    fn pem_blocks_and_junk() {
        let (b, junk) = pem_blocks(b"x\n-----BEGIN A-----\nAAAA\n-----END A-----\n\n");
        assert_eq!(b.len(), 1);
        assert!(!junk, "text before a block is skipped, as pem.Decode does");
        let (b, junk) = pem_blocks(b"-----BEGIN A-----\nAAAA\n-----END A-----\ntrailing\n");
        assert_eq!(b.len(), 1);
        assert!(junk, "text after the last block is left over");
        assert_eq!(
            certs_from_pem(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
                .unwrap_err()
                .split(':')
                .next(),
            Some("x509")
        );
        assert!(pool_from_pem(b"nothing").is_none());
    }
}
