//! Loading a policy: the file read, parsed strictly, and every key, CA and Rekor key it names
//! read and checked, so that a bad trust file stops the run at start-up.

use std::path::Path;

use super::fulcio::FulcioTrustRoot;
use super::json::go_quote;
use super::keys::PublicKey;
use super::model::*;
use super::parse::parse_policy;
use super::pki::PkiTrustRoot;
use super::x509::{certs_from_pem, pool_from_pem};

type Result<T, E = String> = std::result::Result<T, E>;

impl Policy {
    /// Loads a policy file. Errors name the file and carry containers/image's message, e.g.
    /// `invalid policy in "/etc/containers/policy.json": Default policy is missing`.
    pub fn from_file(path: &Path) -> Result<Policy, PolicyError> {
        let data = std::fs::read(path).map_err(|source| PolicyError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Policy::from_slice(&data, &path.display().to_string())
    }

    /// Parses a policy from bytes; `origin` names it in errors (normally the file path).
    /// Public key files named by `keyPath`/`keyPaths` are read now (relative paths are relative
    /// to the current directory, as in containers/image).
    pub fn from_slice(data: &[u8], origin: &str) -> Result<Policy, PolicyError> {
        let invalid = |message: String| PolicyError::Invalid {
            origin: origin.to_string(),
            message,
        };
        let mut policy = parse_policy(data).map_err(invalid)?;
        load_keys(&mut policy).map_err(invalid)?;
        Ok(policy)
    }
}

/// Reads and parses the public keys of every key-based `sigstoreSigned` requirement.
pub(super) fn load_keys(policy: &mut Policy) -> Result<()> {
    let lists = std::iter::once(&mut policy.default).chain(
        policy
            .transports
            .values_mut()
            .flat_map(|scopes| scopes.values_mut()),
    );
    for list in lists {
        for req in list.iter_mut() {
            if let Requirement::SigstoreSigned(s) = req {
                s.keys = load_sigstore_keys(&s.key_source)?;
                s.rekor_keys = match &s.rekor {
                    Some(source) => load_rekor_keys(source)?,
                    None => Vec::new(),
                };
                match &s.key_source {
                    SigstoreKeySource::Fulcio(f) => s.fulcio = Some(Box::new(load_fulcio(f)?)),
                    SigstoreKeySource::Pki(p) => s.pki = Some(Box::new(load_pki(p)?)),
                    _ => {}
                }
            }
        }
    }
    Ok(())
}

/// `prSigstoreSigned.prepareTrustRoot` for the Rekor keys: each must be an ECDSA key.
fn load_rekor_keys(source: &RekorKeySource) -> Result<Vec<PublicKey>> {
    let pems: Vec<(Option<&str>, Vec<u8>)> = match source {
        RekorKeySource::Path(p) => vec![(Some(p.as_str()), read_file(p, "Rekor public key")?)],
        RekorKeySource::Paths(ps) => ps
            .iter()
            .map(|p| Ok((Some(p.as_str()), read_file(p, "Rekor public key")?)))
            .collect::<Result<_>>()?,
        RekorKeySource::Data(d) => vec![(None, d.clone())],
        RekorKeySource::Datas(ds) => ds.iter().map(|d| (None, d.clone())).collect(),
    };
    pems.iter()
        .enumerate()
        .map(|(i, (origin, pem))| {
            let index = i + 1;
            let named = |e: String| match origin {
                Some(path) => format!("parsing Rekor public key {index} ({}): {e}", go_quote(path)),
                None => format!("parsing Rekor public key {index}: {e}"),
            };
            let key = PublicKey::from_pem(pem).map_err(named)?;
            if !key.algorithm().starts_with("ecdsa") {
                return Err(format!("Rekor public key {index} is not using ECDSA"));
            }
            Ok(key)
        })
        .collect()
}

fn read_file(path: &str, what: &str) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| format!("reading {what} file {}: {e}", go_quote(path)))
}

/// `prSigstoreSignedFulcio.prepareTrustRoot`.
fn load_fulcio(f: &Fulcio) -> Result<FulcioTrustRoot> {
    let pem = match (&f.ca_path, &f.ca_data) {
        (Some(p), None) => read_file(p, "Fulcio CA certificate")?,
        (None, Some(d)) => d.clone(),
        _ => return Err(r#"Internal inconsistency: Fulcio specified with not exactly one of "caPath" nor "caData""#.to_string()),
    };
    let ca_certificates =
        pool_from_pem(&pem).ok_or_else(|| "error loading Fulcio CA certificates".to_string())?;
    Ok(FulcioTrustRoot {
        ca_certificates,
        oidc_issuer: f.oidc_issuer.clone(),
        subject_email: f.subject_email.clone(),
    })
}

/// `prSigstoreSignedPKI.prepareTrustRoot`.
fn load_pki(p: &Pki) -> Result<PkiTrustRoot> {
    let roots_pem = match (&p.ca_roots_path, &p.ca_roots_data) {
        (Some(path), None) => read_file(path, "PKI CA roots")?,
        (None, Some(d)) => d.clone(),
        _ => return Err(r#"Internal inconsistency: PKI specified with not exactly one of "caRootsPath" nor "caRootsData""#.to_string()),
    };
    let roots = pool_from_pem(&roots_pem)
        .ok_or_else(|| "error loading PKI CA Roots certificates".to_string())?;
    let intermediates_pem = match (&p.ca_intermediates_path, &p.ca_intermediates_data) {
        (Some(path), None) => Some(read_file(path, "PKI CA intermediates")?),
        (None, Some(d)) => Some(d.clone()),
        _ => None,
    };
    let intermediates = match intermediates_pem {
        Some(pem) => certs_from_pem(&pem)
            .map_err(|e| format!("loading trusted intermediate certificates: {e}"))?,
        None => Vec::new(),
    };
    Ok(PkiTrustRoot {
        roots,
        intermediates,
        subject_email: p.subject_email.clone(),
        subject_hostname: p.subject_hostname.clone(),
    })
}

fn read_key_file(path: &str) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| format!("reading public key file {}: {e}", go_quote(path)))
}

fn load_sigstore_keys(source: &SigstoreKeySource) -> Result<Vec<PublicKey>> {
    let parse = |index: usize, origin: Option<&str>, pem: &[u8]| {
        PublicKey::from_pem(pem).map_err(|e| match origin {
            Some(path) => format!("parsing public key {index} ({}): {e}", go_quote(path)),
            None => format!("parsing public key {index}: {e}"),
        })
    };
    match source {
        SigstoreKeySource::KeyPath(path) => Ok(vec![parse(1, Some(path), &read_key_file(path)?)?]),
        SigstoreKeySource::KeyPaths(paths) => paths
            .iter()
            .enumerate()
            .map(|(i, path)| parse(i + 1, Some(path), &read_key_file(path)?))
            .collect(),
        SigstoreKeySource::KeyData(data) => Ok(vec![parse(1, None, data)?]),
        SigstoreKeySource::KeyDatas(datas) => datas
            .iter()
            .enumerate()
            .map(|(i, data)| parse(i + 1, None, data))
            .collect(),
        SigstoreKeySource::Fulcio(_) | SigstoreKeySource::Pki(_) => Ok(Vec::new()),
    }
}
