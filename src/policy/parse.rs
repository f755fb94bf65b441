//! The strict policy parser: a port of containers/image's `signature/policy_config.go` and
//! `policy_config_sigstore.go` (`UnmarshalJSON` methods and `newPR*` constructors), checking the
//! same things in the same order so that the first error reported is the one skopeo reports.

use std::collections::BTreeMap;

use super::json::{
    go_bytes, go_bytes_slice, go_quote, go_string, go_string_slice, go_type_field,
    paranoid_exact_fields, paranoid_object, type_error, JValue,
};
use super::model::{
    Fulcio, Pki, Policy, RekorKeySource, Requirement, SignedBy, SignedByKeySource, SignedIdentity,
    SigstoreKeySource, SigstoreSigned,
};
use super::reference::{is_domain, is_name, parse_normalized_named};

type Result<T> = std::result::Result<T, String>;

/// Parses a whole policy document (no key files are read here).
pub(super) fn parse_policy(data: &[u8]) -> Result<Policy> {
    let root = JValue::parse(data)?;
    let mut default = None;
    let mut transports = BTreeMap::new();
    paranoid_object(&root, |key, value| {
        match key {
            "default" => default = Some(parse_requirements(value)?),
            "transports" => transports = parse_transports(value)?,
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    let default = default.ok_or_else(|| "Default policy is missing".to_string())?;
    Ok(Policy {
        default,
        transports,
    })
}

fn parse_transports(v: &JValue) -> Result<BTreeMap<String, BTreeMap<String, Vec<Requirement>>>> {
    let mut transports = BTreeMap::new();
    paranoid_object(v, |transport, value| {
        let scopes = parse_scopes(transport, value)?;
        transports.insert(transport.to_string(), scopes);
        Ok(true)
    })?;
    Ok(transports)
}

fn parse_scopes(transport: &str, v: &JValue) -> Result<BTreeMap<String, Vec<Requirement>>> {
    let mut scopes = BTreeMap::new();
    paranoid_object(v, |scope, value| {
        // An invalid scope is reported as an unknown key, as in containers/image.
        if !scope.is_empty() && !is_valid_scope(transport, scope) {
            return Ok(false);
        }
        scopes.insert(scope.to_string(), parse_requirements(value)?);
        Ok(true)
    })?;
    Ok(scopes)
}

/// `ImageTransport.ValidatePolicyConfigurationScope` of the transports containers/image registers.
/// The `docker` transport accepts every scope; transports unknown to containers/image (or whose
/// validation needs local state, like `containers-storage`) accept every scope too.
fn is_valid_scope(transport: &str, scope: &str) -> bool {
    match transport {
        // These support no scope except "".
        "docker-daemon" | "docker-archive" | "tarball" => false,
        // Path-based transports: an absolute, clean path other than "/".
        "dir" | "oci" | "oci-archive" | "sif" => {
            scope.starts_with('/') && scope != "/" && clean_path(scope) == scope
        }
        _ => true,
    }
}

/// Go's `filepath.Clean` for absolute Unix paths.
fn clean_path(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

/// `PolicyRequirements.UnmarshalJSON`.
fn parse_requirements(v: &JValue) -> Result<Vec<Requirement>> {
    let items: &[JValue] = match v {
        JValue::Array(items) => items,
        JValue::Null => &[],
        other => return Err(type_error(other, "[]json.RawMessage")),
    };
    if items.is_empty() {
        return Err("List of verification policy requirements must not be empty".to_string());
    }
    items.iter().map(parse_requirement).collect()
}

fn unexpected_type(t: &str) -> String {
    format!("Unexpected policy requirement type {}", go_quote(t))
}

/// Parses an object whose only member is `"type": expected`.
fn parse_type_only(v: &JValue, expected: &str) -> Result<()> {
    let mut t = String::new();
    paranoid_exact_fields(v, &["type"], |_, value| {
        t = go_string(value)?;
        Ok(())
    })?;
    if t != expected {
        return Err(unexpected_type(&t));
    }
    Ok(())
}

/// `newPolicyRequirementFromJSON`.
fn parse_requirement(v: &JValue) -> Result<Requirement> {
    let t = go_type_field(v, "prCommon", "prTypeIdentifier")?;
    match t.as_str() {
        "insecureAcceptAnything" => {
            parse_type_only(v, &t)?;
            Ok(Requirement::InsecureAcceptAnything)
        }
        "reject" => {
            parse_type_only(v, &t)?;
            Ok(Requirement::Reject)
        }
        "signedBy" => parse_signed_by(v).map(Requirement::SignedBy),
        "signedBaseLayer" => parse_signed_base_layer(v),
        "sigstoreSigned" => parse_sigstore_signed(v).map(Requirement::SigstoreSigned),
        _ => Err(format!("Unknown policy requirement type {}", go_quote(&t))),
    }
}

/// `sbKeyType.UnmarshalJSON`.
fn parse_sb_key_type(v: &JValue) -> Result<String> {
    let s = go_string(v)?;
    if !is_valid_sb_key_type(&s) {
        return Err(format!("Unrecognized keyType value {}", go_quote(&s)));
    }
    Ok(s)
}

fn is_valid_sb_key_type(s: &str) -> bool {
    matches!(
        s,
        "GPGKeys" | "signedByGPGKeys" | "X509Certificates" | "signedByX509CAs"
    )
}

/// `prSignedBy.UnmarshalJSON` + `newPRSignedBy`.
fn parse_signed_by(v: &JValue) -> Result<SignedBy> {
    let mut t = String::new();
    let mut key_type = String::new();
    let (mut got_path, mut got_paths, mut got_data) = (false, false, false);
    let mut key_path = String::new();
    let mut key_paths = None;
    let mut key_data = None;
    let mut signed_identity = None;
    paranoid_object(v, |key, value| {
        match key {
            "type" => t = go_string(value)?,
            "keyType" => key_type = parse_sb_key_type(value)?,
            "keyPath" => {
                got_path = true;
                key_path = go_string(value)?;
            }
            "keyPaths" => {
                got_paths = true;
                key_paths = go_string_slice(value)?;
            }
            "keyData" => {
                got_data = true;
                key_data = go_bytes(value)?;
            }
            "signedIdentity" => signed_identity = Some(value),
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    if t != "signedBy" {
        return Err(unexpected_type(&t));
    }
    let signed_identity = match signed_identity {
        None => SignedIdentity::MatchRepoDigestOrExact,
        Some(raw) => parse_identity(raw)?,
    };
    match (got_path, got_paths, got_data) {
        (true, false, false) | (false, true, false) | (false, false, true) => {}
        (false, false, false) => return Err(
            "Exactly one of keyPath, keyPaths and keyData must be specified, none of them present"
                .to_string(),
        ),
        _ => return Err(
            "Exactly one of keyPath, keyPaths and keyData must be specified, more than one present"
                .to_string(),
        ),
    }
    if !is_valid_sb_key_type(&key_type) {
        return Err(format!("invalid keyType {}", go_quote(&key_type)));
    }
    let key_source = if !key_path.is_empty() {
        SignedByKeySource::KeyPath(key_path)
    } else if let Some(paths) = key_paths {
        SignedByKeySource::KeyPaths(paths)
    } else if let Some(data) = key_data {
        SignedByKeySource::KeyData(data)
    } else {
        return Err("exactly one of keyPath, keyPaths and keyData must be specified".to_string());
    };
    Ok(SignedBy {
        key_type,
        key_source,
        signed_identity,
    })
}

/// `prSignedBaseLayer.UnmarshalJSON`.
fn parse_signed_base_layer(v: &JValue) -> Result<Requirement> {
    let mut t = String::new();
    let mut identity = &JValue::Null;
    paranoid_exact_fields(v, &["type", "baseLayerIdentity"], |key, value| {
        match key {
            "type" => t = go_string(value)?,
            _ => identity = value,
        }
        Ok(())
    })?;
    if t != "signedBaseLayer" {
        return Err(unexpected_type(&t));
    }
    Ok(Requirement::SignedBaseLayer {
        base_layer_identity: parse_identity(identity)?,
    })
}

/// `prSigstoreSigned.UnmarshalJSON` + `newPRSigstoreSigned`.
fn parse_sigstore_signed(v: &JValue) -> Result<SigstoreSigned> {
    let mut t = String::new();
    let mut key_path = String::new();
    let mut key_paths: Option<Option<Vec<String>>> = None;
    let mut key_data: Option<Vec<u8>> = None;
    let mut key_datas: Option<Option<Vec<Vec<u8>>>> = None;
    let mut fulcio = None;
    let mut rekor_path = String::new();
    let mut rekor_paths: Option<Option<Vec<String>>> = None;
    let mut rekor_data: Option<Vec<u8>> = None;
    let mut rekor_datas: Option<Option<Vec<Vec<u8>>>> = None;
    let mut pki = None;
    let mut signed_identity = None;
    paranoid_object(v, |key, value| {
        match key {
            "type" => t = go_string(value)?,
            "keyPath" => key_path = go_string(value)?,
            "keyPaths" => key_paths = Some(go_string_slice(value)?),
            "keyData" => key_data = go_bytes(value)?,
            "keyDatas" => key_datas = Some(go_bytes_slice(value)?),
            "fulcio" => fulcio = Some(parse_fulcio(value)?),
            "rekorPublicKeyPath" => rekor_path = go_string(value)?,
            "rekorPublicKeyPaths" => rekor_paths = Some(go_string_slice(value)?),
            "rekorPublicKeyData" => rekor_data = go_bytes(value)?,
            "rekorPublicKeyDatas" => rekor_datas = Some(go_bytes_slice(value)?),
            "pki" => pki = Some(parse_pki(value)?),
            "signedIdentity" => signed_identity = Some(value),
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    if t != "sigstoreSigned" {
        return Err(unexpected_type(&t));
    }
    let signed_identity = match signed_identity {
        None => SignedIdentity::MatchRepoDigestOrExact,
        Some(raw) => parse_identity(raw)?,
    };

    // The PRSigstoreSignedWith* options, in the order UnmarshalJSON applies them.
    let non_empty = |list: Option<Vec<String>>, name: &str| match list {
        Some(l) if !l.is_empty() => Ok(l),
        _ => Err(format!("\"{name}\" contains no entries")),
    };
    let non_empty_bytes = |list: Option<Vec<Vec<u8>>>, name: &str| match list {
        Some(l) if !l.is_empty() => Ok(l),
        _ => Err(format!("\"{name}\" contains no entries")),
    };
    let key_paths = key_paths.map(|l| non_empty(l, "keyPaths")).transpose()?;
    let key_datas = key_datas
        .map(|l| non_empty_bytes(l, "keyDatas"))
        .transpose()?;
    let rekor_paths = rekor_paths
        .map(|l| non_empty(l, "rekorPublickeyPaths"))
        .transpose()?;
    let rekor_datas = rekor_datas
        .map(|l| non_empty_bytes(l, "rekorPublickeyDatas"))
        .transpose()?;

    let mut key_sources = Vec::new();
    if !key_path.is_empty() {
        key_sources.push(SigstoreKeySource::KeyPath(key_path));
    }
    if let Some(p) = key_paths {
        key_sources.push(SigstoreKeySource::KeyPaths(p));
    }
    if let Some(d) = key_data {
        key_sources.push(SigstoreKeySource::KeyData(d));
    }
    if let Some(d) = key_datas {
        key_sources.push(SigstoreKeySource::KeyDatas(d));
    }
    if let Some(f) = fulcio {
        key_sources.push(SigstoreKeySource::Fulcio(f));
    }
    if let Some(p) = pki {
        key_sources.push(SigstoreKeySource::Pki(p));
    }
    if key_sources.len() != 1 {
        return Err(
            "exactly one of keyPath, keyPaths, keyData, keyDatas, fulcio, and pki must be specified".to_string(),
        );
    }
    let key_source = key_sources.remove(0);

    let mut rekor_sources = Vec::new();
    if !rekor_path.is_empty() {
        rekor_sources.push(RekorKeySource::Path(rekor_path));
    }
    if let Some(p) = rekor_paths {
        rekor_sources.push(RekorKeySource::Paths(p));
    }
    if let Some(d) = rekor_data {
        rekor_sources.push(RekorKeySource::Data(d));
    }
    if let Some(d) = rekor_datas {
        rekor_sources.push(RekorKeySource::Datas(d));
    }
    if rekor_sources.len() > 1 {
        return Err("at most one of rekorPublickeyPath, rekorPublicKeyPaths, rekorPublickeyData and rekorPublicKeyDatas can be used simultaneously".to_string());
    }
    let rekor = rekor_sources.pop();
    match (&key_source, &rekor) {
        (SigstoreKeySource::Fulcio(_), None) => {
            return Err("At least one of rekorPublickeyPath, rekorPublicKeyPaths, rekorPublickeyData and rekorPublicKeyDatas must be specified if fulcio is used".to_string());
        }
        (SigstoreKeySource::Pki(_), Some(_)) => {
            return Err("rekorPublickeyPath, rekorPublicKeyPaths, rekorPublickeyData and rekorPublicKeyDatas are not supported for pki".to_string());
        }
        _ => {}
    }
    Ok(SigstoreSigned {
        key_source,
        rekor,
        signed_identity,
        keys: Vec::new(),
        rekor_keys: Vec::new(),
        fulcio: None,
        pki: None,
    })
}

/// `prSigstoreSignedFulcio.UnmarshalJSON` + `newPRSigstoreSignedFulcio`.
fn parse_fulcio(v: &JValue) -> Result<Fulcio> {
    let mut ca_path = String::new();
    let mut ca_data = None;
    let mut oidc_issuer = String::new();
    let mut subject_email = String::new();
    paranoid_object(v, |key, value| {
        match key {
            "caPath" => ca_path = go_string(value)?,
            "caData" => ca_data = go_bytes(value)?,
            "oidcIssuer" => oidc_issuer = go_string(value)?,
            "subjectEmail" => subject_email = go_string(value)?,
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    if !ca_path.is_empty() && ca_data.is_some() {
        return Err("caPath and caData cannot be used simultaneously".to_string());
    }
    if ca_path.is_empty() && ca_data.is_none() {
        return Err("At least one of caPath and caData must be specified".to_string());
    }
    if oidc_issuer.is_empty() {
        return Err("oidcIssuer not specified".to_string());
    }
    if subject_email.is_empty() {
        return Err("subjectEmail not specified".to_string());
    }
    Ok(Fulcio {
        ca_path: (!ca_path.is_empty()).then_some(ca_path),
        ca_data,
        oidc_issuer,
        subject_email,
    })
}

/// `prSigstoreSignedPKI.UnmarshalJSON` + `newPRSigstoreSignedPKI`.
fn parse_pki(v: &JValue) -> Result<Pki> {
    let mut roots_path = String::new();
    let mut roots_data = None;
    let mut intermediates_path = String::new();
    let mut intermediates_data = None;
    let mut subject_email = String::new();
    let mut subject_hostname = String::new();
    paranoid_object(v, |key, value| {
        match key {
            "caRootsPath" => roots_path = go_string(value)?,
            "caRootsData" => roots_data = go_bytes(value)?,
            "caIntermediatesPath" => intermediates_path = go_string(value)?,
            "caIntermediatesData" => intermediates_data = go_bytes(value)?,
            "subjectEmail" => subject_email = go_string(value)?,
            "subjectHostname" => subject_hostname = go_string(value)?,
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    if !roots_path.is_empty() && roots_data.is_some() {
        return Err("caRootsPath and caRootsData cannot be used simultaneously".to_string());
    }
    if roots_path.is_empty() && roots_data.is_none() {
        return Err("At least one of caRootsPath and caRootsData must be specified".to_string());
    }
    if !intermediates_path.is_empty() && intermediates_data.is_some() {
        return Err(
            "caIntermediatesPath and caIntermediatesData cannot be used simultaneously".to_string(),
        );
    }
    if subject_email.is_empty() && subject_hostname.is_empty() {
        return Err("At least one of subjectEmail, subjectHostname must be specified".to_string());
    }
    let opt = |s: String| (!s.is_empty()).then_some(s);
    Ok(Pki {
        ca_roots_path: opt(roots_path),
        ca_roots_data: roots_data,
        ca_intermediates_path: opt(intermediates_path),
        ca_intermediates_data: intermediates_data,
        subject_email: opt(subject_email),
        subject_hostname: opt(subject_hostname),
    })
}

/// `newPolicyReferenceMatchFromJSON` and the `prm*` `UnmarshalJSON` methods.
fn parse_identity(v: &JValue) -> Result<SignedIdentity> {
    let t = go_type_field(v, "prmCommon", "prmTypeIdentifier")?;
    let fields: &[&str] = match t.as_str() {
        "matchExact" | "matchRepoDigestOrExact" | "matchRepository" => &["type"],
        "exactReference" => &["type", "dockerReference"],
        "exactRepository" => &["type", "dockerRepository"],
        "remapIdentity" => &["type", "prefix", "signedPrefix"],
        _ => {
            return Err(format!(
                "Unknown policy reference match type {}",
                go_quote(&t)
            ))
        }
    };
    let mut values: BTreeMap<&str, String> = BTreeMap::new();
    paranoid_exact_fields(v, fields, |key, value| {
        values.insert(key, go_string(value)?);
        Ok(())
    })?;
    let mut take = |k: &str| values.remove(k).unwrap_or_default();
    let actual_type = take("type");
    if actual_type != t {
        return Err(unexpected_type(&actual_type));
    }
    Ok(match t.as_str() {
        "matchExact" => SignedIdentity::MatchExact,
        "matchRepoDigestOrExact" => SignedIdentity::MatchRepoDigestOrExact,
        "matchRepository" => SignedIdentity::MatchRepository,
        "exactReference" => {
            let r = take("dockerReference");
            let named = parse_normalized_named(&r)
                .map_err(|e| format!("Invalid format of dockerReference {}: {e}", go_quote(&r)))?;
            if named.is_name_only() {
                return Err(format!(
                    "dockerReference {} contains neither a tag nor digest",
                    go_quote(&r)
                ));
            }
            SignedIdentity::ExactReference {
                docker_reference: r,
            }
        }
        "exactRepository" => {
            let r = take("dockerRepository");
            parse_normalized_named(&r)
                .map_err(|e| format!("Invalid format of dockerRepository {}: {e}", go_quote(&r)))?;
            SignedIdentity::ExactRepository {
                docker_repository: r,
            }
        }
        _ => {
            let prefix = take("prefix");
            let signed_prefix = take("signedPrefix");
            validate_remap_prefix(&prefix)?;
            validate_remap_prefix(&signed_prefix)?;
            SignedIdentity::RemapIdentity {
                prefix,
                signed_prefix,
            }
        }
    })
}

/// `validateIdentityRemappingPrefix`: a `host[:port]`, or a full name that starts with one.
fn validate_remap_prefix(s: &str) -> Result<()> {
    let starts_with_domain = s.split_once('/').is_some_and(|(first, _)| is_domain(first));
    if is_domain(s) || (is_name(s) && starts_with_domain) {
        Ok(())
    } else {
        Err(format!("prefix {} is not valid", go_quote(s)))
    }
}
