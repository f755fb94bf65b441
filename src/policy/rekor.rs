//! Rekor SignedEntryTimestamps (SETs): the `dev.sigstore.cosign/bundle` annotation, with the
//! semantics of containers/image's `signature/internal/rekor_set.go`.
//!
//! The annotation holds `{"SignedEntryTimestamp": base64, "Payload": {...}}`. The SET is an
//! ECDSA signature, by the Rekor log's key, over the SHA-256 of the RFC 8785 canonical form of
//! `Payload`. `Payload.body` is the logged `hashedrekord` entry: it must name this signature's
//! payload hash, signature bytes, and public key or certificate, so a SET cannot be borrowed
//! from another signature. On success the entry's `integratedTime` is returned: the time the
//! Fulcio certificate is checked at.

use std::time::Duration;

use base64::Engine as _;
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use super::json::{
    go_base64_std, go_bytes, go_float, go_quote, go_string, paranoid_exact_fields, JValue,
};
use super::keys::PublicKey;
use super::x509::pem_blocks;

/// The one `hashedrekord` API version containers/image accepts.
const HASHEDREKORD_V001: &str = "0.0.1";

/// Verifies `set_json` (the bundle annotation) with one of `rekor_keys`, and that the logged
/// entry is for `key_or_cert_pem`, `signature_b64` and `payload`. Returns the integrated time.
pub(super) fn verify_set(
    rekor_keys: &[PublicKey],
    set_json: &[u8],
    key_or_cert_pem: &[u8],
    signature_b64: &str,
    payload: &[u8],
) -> Result<Duration, String> {
    // == Parse the SET (exact fields, as ParanoidUnmarshalJSONObjectExactFields).
    let root = JValue::parse(set_json)?;
    let mut set_sig = None;
    let mut set_payload = &JValue::Null;
    paranoid_exact_fields(&root, &["SignedEntryTimestamp", "Payload"], |key, value| {
        match key {
            "SignedEntryTimestamp" => set_sig = go_bytes(value)?,
            _ => set_payload = value,
        }
        Ok(())
    })?;
    let set_sig = set_sig.unwrap_or_default();

    // == Verify the SET's signature over the canonical payload.
    let canonical =
        canonicalize(set_payload).map_err(|e| format!("canonicalizing Rekor SET JSON: {e}"))?;
    if !rekor_keys
        .iter()
        .any(|k| k.verify(&canonical, &set_sig).is_ok())
    {
        return Err("cryptographic signature verification of Rekor SET failed".to_string());
    }

    // == Parse the (now trusted) canonical payload.
    let trusted =
        JValue::parse(&canonical).map_err(|e| format!("parsing Rekor SET payload: {e}"))?;
    let (mut body, mut integrated_time) = (None, 0i64);
    paranoid_exact_fields(
        &trusted,
        &["body", "integratedTime", "logIndex", "logID"],
        |key, value| {
            match key {
                "body" => body = go_bytes(value)?,
                "integratedTime" => integrated_time = go_int64(value)?,
                "logIndex" => {
                    go_int64(value)?;
                }
                _ => {
                    go_string(value)?;
                }
            }
            Ok(())
        },
    )
    .map_err(|e| format!("parsing Rekor SET payload: {e}"))?;
    let body = body.unwrap_or_default();
    let ours_sig =
        || go_base64_std(signature_b64).map_err(|e| format!("decoding signature base64: {e}"));
    hashedrekord_matches(
        &body,
        key_or_cert_pem,
        &ours_sig,
        Sha256::digest(payload).as_slice(),
    )?;
    Ok(Duration::from_secs(integrated_time.max(0) as u64))
}

/// Checks that a trusted `hashedrekord` 0.0.1 entry body logs `key_or_cert_pem`, the signature
/// `ours_sig` gives, and the SHA-256 `digest` of the signed data.
pub(super) fn hashedrekord_matches(
    body: &[u8],
    key_or_cert_pem: &[u8],
    ours_sig: &dyn Fn() -> Result<Vec<u8>, String>,
    digest: &[u8],
) -> Result<(), String> {
    let entry: Value = serde_json::from_slice(body)
        .map_err(|e| format!("decoding the body of a Rekor SET payload: {e}"))?;
    match entry.get("kind").and_then(Value::as_str) {
        Some("hashedrekord") => {}
        other => {
            return Err(format!(
                "decoding the body of a Rekor SET payload: invalid kind value: {}",
                go_quote(other.unwrap_or(""))
            ))
        }
    }
    let version = match entry.get("apiVersion") {
        None | Some(Value::Null) => {
            return Err("missing Rekor SET Payload API version".to_string())
        }
        Some(Value::String(v)) => v.as_str(),
        Some(_) => {
            return Err(
                "decoding the body of a Rekor SET payload: json: cannot unmarshal into Go value of type string"
                    .to_string(),
            )
        }
    };
    if version != HASHEDREKORD_V001 {
        return Err(format!(
            "unsupported Rekor SET Payload hashedrekord version {}",
            go_quote(version)
        ));
    }
    let spec_err = |what: &str| format!("decoding hashedrekod spec: {what}");
    // An absent spec is Go's empty json.RawMessage (an error); `null` decodes to nothing.
    let spec = entry
        .get("spec")
        .cloned()
        .ok_or_else(|| spec_err("unexpected end of JSON input"))?;

    // == The key or certificate.
    let signature = match spec.get("signature") {
        None | Some(Value::Null) => {
            return Err(r#"Missing "signature" field in hashedrekord"#.to_string())
        }
        Some(s) => s,
    };
    let logged_key = match signature.get("publicKey") {
        None | Some(Value::Null) => {
            return Err(r#"Missing "signature.publicKey" field in hashedrekord"#.to_string())
        }
        Some(k) => b64_field(k.get("content")).map_err(|e| spec_err(&e))?,
    };
    let logged_der = single_pem(&logged_key).map_err(|e| match e {
        PemIssue::NotPem => "publicKey in Rekor SET is not in PEM format".to_string(),
        PemIssue::Trailing => "publicKey in Rekor SET has trailing data".to_string(),
    })?;
    let ours_der = single_pem(key_or_cert_pem).map_err(|e| match e {
        PemIssue::NotPem => {
            "public key or cert to be matched against publicKey in Rekor SET is not in PEM format"
                .to_string()
        }
        PemIssue::Trailing => {
            "public key or cert to be matched against publicKey in Rekor SET has trailing data"
                .to_string()
        }
    })?;
    if logged_der != ours_der {
        return Err("publicKey in Rekor SET does not match".to_string());
    }

    // == The signature.
    let ours_sig = ours_sig()?;
    let logged_sig = b64_field(signature.get("content")).map_err(|e| spec_err(&e))?;
    if logged_sig != ours_sig {
        return Err(format!(
            "signature in Rekor SET does not match: {} vs. {}",
            go_quote(&String::from_utf8_lossy(&logged_sig)),
            go_quote(&String::from_utf8_lossy(&ours_sig))
        ));
    }

    // == The payload hash.
    let data = match spec.get("data") {
        None | Some(Value::Null) => {
            return Err(r#"Missing "data" field in hashedrekord"#.to_string())
        }
        Some(d) => d,
    };
    let hash = match data.get("hash") {
        None | Some(Value::Null) => {
            return Err(r#"Missing "data.hash" field in hashedrekord"#.to_string())
        }
        Some(h) => h,
    };
    let algorithm = match hash.get("algorithm") {
        None | Some(Value::Null) => {
            return Err(r#"Missing "data.hash.algorithm" field in hashedrekord"#.to_string())
        }
        Some(Value::String(a)) => a.as_str(),
        Some(_) => {
            return Err(spec_err(
                "json: cannot unmarshal into Go value of type string",
            ))
        }
    };
    if algorithm != "sha256" {
        return Err(format!(
            r#"Unexpected "data.hash.algorithm" value {}"#,
            go_quote(algorithm)
        ));
    }
    let value = match hash.get("value") {
        None | Some(Value::Null) => {
            return Err(r#"Missing "data.hash.value" field in hashedrekord"#.to_string())
        }
        Some(Value::String(v)) => v.as_str(),
        Some(_) => {
            return Err(spec_err(
                "json: cannot unmarshal into Go value of type string",
            ))
        }
    };
    let logged_hash = hex::decode(value)
        .map_err(|e| format!(r#"Invalid "data.hash.value" field in hashedrekord: {e}"#))?;
    if logged_hash.as_slice() != digest {
        return Err("payload in Rekor SET does not match".to_string());
    }
    Ok(())
}

/// Verifies a SET given as a sigstore bundle's tlog entry gives it: the log's signature over the
/// canonical `{"body", "integratedTime", "logID", "logIndex"}` (`logID` in hex), as sigstore-go's
/// `VerifySET`. `body` is the entry's canonicalized body (raw bytes).
pub(super) fn verify_set_fields(
    rekor_keys: &[PublicKey],
    set: &[u8],
    body: &[u8],
    integrated_time: i64,
    log_index: i64,
    log_id: &[u8],
) -> Result<(), String> {
    let payload = serde_json::json!({
        "body": base64::engine::general_purpose::STANDARD.encode(body),
        "integratedTime": integrated_time,
        "logIndex": log_index,
        "logID": hex::encode(log_id),
    });
    let canonical = serde_json_canonicalizer::to_vec(&payload)
        .map_err(|e| format!("canonicalizing Rekor SET JSON: {e}"))?;
    if rekor_keys.iter().any(|k| k.verify(&canonical, set).is_ok()) {
        Ok(())
    } else {
        Err("cryptographic signature verification of Rekor SET failed".to_string())
    }
}

/// Checks that a trusted `dsse` 0.0.1 entry body (what Rekor logs for a DSSE envelope) logs
/// exactly one signature, equal to `ours_sig`, by `key_or_cert_pem`, over a payload whose
/// SHA-256 is that of `payload`. The envelope hash is not compared: Rekor computes it over its
/// own re-serialisation of the envelope.
pub(super) fn dsse_entry_matches(
    body: &[u8],
    key_or_cert_pem: &[u8],
    ours_sig: &[u8],
    payload: &[u8],
) -> Result<(), String> {
    let entry: Value = serde_json::from_slice(body)
        .map_err(|e| format!("decoding the body of a Rekor entry: {e}"))?;
    let str_at = |ptr: &str| entry.pointer(ptr).and_then(Value::as_str);
    if str_at("/kind") != Some("dsse") || str_at("/apiVersion") != Some("0.0.1") {
        return Err(format!(
            "unsupported Rekor entry {}/{} for a DSSE envelope (dsse/0.0.1 is)",
            go_quote(str_at("/kind").unwrap_or("")),
            go_quote(str_at("/apiVersion").unwrap_or(""))
        ));
    }
    let signatures = entry
        .pointer("/spec/signatures")
        .and_then(Value::as_array)
        .ok_or_else(|| r#"Missing "signatures" field in dsse entry"#.to_string())?;
    let [logged] = signatures.as_slice() else {
        return Err(format!(
            "dsse entry logs {} signatures, expected 1",
            signatures.len()
        ));
    };
    let logged_sig = b64_field(logged.get("signature"))?;
    if logged_sig != ours_sig {
        return Err("signature in Rekor entry does not match".to_string());
    }
    let logged_key = b64_field(logged.get("verifier"))?;
    let logged_der = single_pem(&logged_key)
        .map_err(|_| "verifier in Rekor entry is not one PEM block".to_string())?;
    let ours_der = single_pem(key_or_cert_pem)
        .map_err(|_| "public key or cert to be matched is not one PEM block".to_string())?;
    if logged_der != ours_der {
        return Err("publicKey in Rekor SET does not match".to_string());
    }
    if str_at("/spec/payloadHash/algorithm") != Some("sha256") {
        return Err(r#"Unexpected "payloadHash.algorithm" in dsse entry"#.to_string());
    }
    let logged_hash = hex::decode(str_at("/spec/payloadHash/value").unwrap_or(""))
        .map_err(|e| format!(r#"Invalid "payloadHash.value" in dsse entry: {e}"#))?;
    if logged_hash.as_slice() != Sha256::digest(payload).as_slice() {
        return Err("payload in Rekor SET does not match".to_string());
    }
    Ok(())
}

/// RFC 8785 (JCS) form of a JSON value; duplicated keys are refused.
fn canonicalize(v: &JValue) -> Result<Vec<u8>, String> {
    let value = to_serde(v)?;
    serde_json_canonicalizer::to_vec(&value).map_err(|e| e.to_string())
}

fn to_serde(v: &JValue) -> Result<Value, String> {
    Ok(match v {
        JValue::Null => Value::Null,
        JValue::Bool(b) => Value::Bool(*b),
        JValue::Number(n) => {
            if n.fract() == 0.0 && n.abs() < 9_007_199_254_740_992.0 {
                Value::from(*n as i64)
            } else {
                serde_json::Number::from_f64(*n)
                    .map(Value::Number)
                    .ok_or_else(|| "invalid number".to_string())?
            }
        }
        JValue::String(s) => Value::String(s.clone()),
        JValue::Array(items) => Value::Array(items.iter().map(to_serde).collect::<Result<_, _>>()?),
        JValue::Object(members) => {
            let mut map = serde_json::Map::new();
            for (k, val) in members {
                if map.insert(k.clone(), to_serde(val)?).is_some() {
                    return Err(format!("Duplicate key: {k}"));
                }
            }
            Value::Object(map)
        }
    })
}

/// Go's decoding of a JSON number into an `int64`.
fn go_int64(v: &JValue) -> Result<i64, String> {
    let f = go_float(v)?;
    if f.fract() != 0.0 || f < i64::MIN as f64 || f >= i64::MAX as f64 {
        return Err(format!(
            "json: cannot unmarshal number {f} into Go value of type int64"
        ));
    }
    Ok(f as i64)
}

/// A `[]byte` field of the hashedrekord spec (base64 in JSON; absent or null is empty).
fn b64_field(v: Option<&Value>) -> Result<Vec<u8>, String> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => base64::engine::general_purpose::STANDARD
            .decode(s)
            .map_err(|e| format!("illegal base64 data: {e}")),
        Some(_) => Err("json: cannot unmarshal into Go value of type []uint8".to_string()),
    }
}

enum PemIssue {
    NotPem,
    Trailing,
}

/// One PEM block's DER, and nothing after it (Go's `pem.Decode` + `len(rest) != 0`).
fn single_pem(data: &[u8]) -> Result<Vec<u8>, PemIssue> {
    let text = String::from_utf8_lossy(data);
    let (blocks, _) = pem_blocks(data);
    let Some(first) = blocks.into_iter().next() else {
        return Err(PemIssue::NotPem);
    };
    // Whatever follows the first END line must be empty (Go's rest, after its trailing newline).
    let end = text
        .find("-----END ")
        .and_then(|i| text[i..].find('\n').map(|j| i + j + 1));
    match end {
        Some(i) if !text[i..].is_empty() => Err(PemIssue::Trailing),
        _ => Ok(first.der),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::Signer as _;
    use p256::pkcs8::EncodePublicKey as _;

    struct Log {
        sk: p256::ecdsa::SigningKey,
        key: PublicKey,
    }

    fn log() -> Log {
        let sk = p256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
        let pem = sk
            .verifying_key()
            .to_public_key_pem(p256::pkcs8::LineEnding::LF)
            .unwrap();
        Log {
            key: PublicKey::from_pem(pem.as_bytes()).unwrap(),
            sk,
        }
    }

    const CERT: &str = "-----BEGIN CERTIFICATE-----\nAQID\n-----END CERTIFICATE-----\n";

    fn b64(d: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(d)
    }

    /// A SET over `canonical` (which must already be canonical), for `entry`.
    fn set(log: &Log, entry: &Value, time: i64, extra: &str) -> String {
        let body = b64(&serde_json::to_vec(entry).unwrap());
        let canonical = format!(
            r#"{{"body":"{body}","integratedTime":{time},"logID":"ab","logIndex":7{extra}}}"#
        );
        let sig: p256::ecdsa::Signature = log.sk.sign(canonical.as_bytes());
        format!(
            r#"{{"SignedEntryTimestamp":"{}","Payload":{canonical}}}"#,
            b64(sig.to_der().as_bytes())
        )
    }

    fn entry(payload: &[u8], sig_b64: &str, version: &str) -> Value {
        serde_json::json!({
            "apiVersion": version, "kind": "hashedrekord",
            "spec": {
                "data": {"hash": {"algorithm": "sha256", "value": hex::encode(Sha256::digest(payload))}},
                "signature": {"content": sig_b64, "publicKey": {"content": b64(CERT.as_bytes())}}
            }
        })
    }

    #[test]
    fn valid_set_returns_the_integrated_time() {
        let l = log();
        let s = set(&l, &entry(b"payload", "c2ln", "0.0.1"), 1_700_000_000, "");
        let t = verify_set(
            std::slice::from_ref(&l.key),
            s.as_bytes(),
            CERT.as_bytes(),
            "c2ln",
            b"payload",
        );
        assert_eq!(t.unwrap(), Duration::from_secs(1_700_000_000));
    }

    #[test]
    fn set_rejections_have_containers_image_messages() {
        let l = log();
        let other = log();
        let good = set(&l, &entry(b"payload", "c2ln", "0.0.1"), 1, "");
        let check = |keys: &[PublicKey], set: &str, cert: &str, sig: &str, payload: &[u8]| {
            verify_set(keys, set.as_bytes(), cert.as_bytes(), sig, payload).unwrap_err()
        };
        let k = std::slice::from_ref(&l.key);
        assert_eq!(
            check(
                std::slice::from_ref(&other.key),
                &good,
                CERT,
                "c2ln",
                b"payload"
            ),
            "cryptographic signature verification of Rekor SET failed"
        );
        assert_eq!(
            check(k, &good, CERT, "c2ln", b"other"),
            "payload in Rekor SET does not match"
        );
        assert_eq!(
            check(k, &good, CERT, "b3RoZXI=", b"payload"),
            r#"signature in Rekor SET does not match: "sig" vs. "other""#
        );
        let other_cert = "-----BEGIN CERTIFICATE-----\nAQIE\n-----END CERTIFICATE-----\n";
        assert_eq!(
            check(k, &good, other_cert, "c2ln", b"payload"),
            "publicKey in Rekor SET does not match"
        );
        assert_eq!(
            check(k, &good, &format!("{CERT}x"), "c2ln", b"payload"),
            "public key or cert to be matched against publicKey in Rekor SET has trailing data"
        );
        let v2 = set(&l, &entry(b"payload", "c2ln", "0.0.2"), 1, "");
        assert_eq!(
            check(k, &v2, CERT, "c2ln", b"payload"),
            r#"unsupported Rekor SET Payload hashedrekord version "0.0.2""#
        );
        // An unknown field in the signed payload, and a SET that is not an object.
        let extra = set(&l, &entry(b"payload", "c2ln", "0.0.1"), 1, r#","zzz":1"#);
        assert_eq!(
            check(k, &extra, CERT, "c2ln", b"payload"),
            r#"parsing Rekor SET payload: Unknown key "zzz""#
        );
        assert!(check(k, "this is not a valid SET", CERT, "c2ln", b"payload").contains("expected"));
        // Duplicated keys are refused before anything is trusted.
        let dup = good.replacen(r#""logIndex":7"#, r#""logIndex":7,"logIndex":8"#, 1);
        assert!(check(k, &dup, CERT, "c2ln", b"payload").contains("Duplicate key"));
    }
    /// A real entry of the public-good Rekor log (log index 189132280, a `cosign sign --key`
    /// signature), with that log's public key: the SET must verify with our canonical JSON, and
    /// the logged key must match the signer's key re-marshaled as PKIX, as for keyPath + Rekor.
    #[test]
    fn real_public_good_rekor_set_verifies() {
        const REKOR: &[u8] = b"-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE2G2Y+2tabdTV5BcGiBIx0a9fAFwr\nkBbmLSGtks4L3qX6yYY0zufBnhC8Ur/iy55GhWP/9A/bY2LhC30M9+RYtw==\n-----END PUBLIC KEY-----\n";
        const BODY: &str = "eyJhcGlWZXJzaW9uIjoiMC4wLjEiLCJraW5kIjoiaGFzaGVkcmVrb3JkIiwic3BlYyI6eyJkYXRhIjp7Imhhc2giOnsiYWxnb3JpdGhtIjoic2hhMjU2IiwidmFsdWUiOiI0YjE2NWQwMmY1ZDUwNjE4ZWZlM2FjYWZiMDBlOWZkMjc5YTBhZWRiYTQzYWEzYzBmNzRjMDc3YzM3NmUxY2ZkIn19LCJzaWduYXR1cmUiOnsiY29udGVudCI6Ik1FUUNJSHRvL2hWaVlWa2c4V29YRWdiQzNxdEdKQThIZ3hpd0ltZ3R0WUREWWtLYUFpQVI1MHRVMlNwSVBjdVVmSUxianQwSWlhcVlwa0FqSjgrbUM1Q09iS3lDTWc9PSIsInB1YmxpY0tleSI6eyJjb250ZW50IjoiTFMwdExTMUNSVWRKVGlCUVZVSk1TVU1nUzBWWkxTMHRMUzBLVFVacmQwVjNXVWhMYjFwSmVtb3dRMEZSV1VsTGIxcEplbW93UkVGUlkwUlJaMEZGU0hZeVdIVlZkVzVDTjFkVldWVjBaMDEzT1RNMWNsRnBUVzl1Vndvd09HWnFRV2xKYzNWcEswTXhZV2N4UmxwMUwybDNORkZZTlc1clJUQlVhbUpLVjFCc2RHeFlLM1p6VXpkNU1FeDRXVVJqU1ROWmFDOVJQVDBLTFMwdExTMUZUa1FnVUZWQ1RFbERJRXRGV1MwdExTMHRDZz09In19fX0=";
        let set = format!(
            r#"{{"SignedEntryTimestamp":"MEUCIQCdrTBN2z8gzFjmNwggcBIj3Znnm9Luwy0FpJaCBnhHGAIgL5LMmBu56btKOJ864NpMLRKmTGZEnFFGxtucfXxnMYM=","Payload":{{"body":"{BODY}","integratedTime":1743113110,"logIndex":189132280,"logID":"c0d23d6ad406973f9559f3ba2d1ca01f84147d8ffc5b8445c224f98b9591801d"}}}}"#
        );
        let payload = br#"{"critical":{"identity":{"docker-reference":"index.docker.io/dellabeneta/kube-news-distroless"},"image":{"docker-manifest-digest":"sha256:6914ccc5986efa51ac28cf58e04fda2af9fb8cf5d20f8d6815fa63b895da6d44"},"type":"cosign container image signature"},"optional":null}"#;
        let entry: Value = serde_json::from_slice(
            &base64::engine::general_purpose::STANDARD
                .decode(BODY)
                .unwrap(),
        )
        .unwrap();
        let sig = entry["spec"]["signature"]["content"].as_str().unwrap();
        let key_pem = base64::engine::general_purpose::STANDARD
            .decode(
                entry["spec"]["signature"]["publicKey"]["content"]
                    .as_str()
                    .unwrap(),
            )
            .unwrap();
        let rekor = [PublicKey::from_pem(REKOR).unwrap()];
        let signer = PublicKey::from_pem(&key_pem).unwrap();
        let remarshaled = signer.to_spki_pem().unwrap();
        assert_eq!(
            verify_set(&rekor, set.as_bytes(), remarshaled.as_bytes(), sig, payload),
            Ok(Duration::from_secs(1_743_113_110))
        );
        let raw = base64::engine::general_purpose::STANDARD
            .decode(sig)
            .unwrap();
        signer.verify(payload, &raw).unwrap();
        // The same SET does not vouch for another payload, nor verify with another log's key.
        assert_eq!(
            verify_set(&rekor, set.as_bytes(), remarshaled.as_bytes(), sig, b"{}"),
            Err("payload in Rekor SET does not match".to_string())
        );
        let other = [log().key];
        assert!(verify_set(&other, set.as_bytes(), remarshaled.as_bytes(), sig, payload).is_err());
    }
}
