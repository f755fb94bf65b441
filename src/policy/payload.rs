//! The cosign "simple signing" payload, parsed as strictly as containers/image's
//! `signature/internal/sigstore_payload.go` (`UntrustedSigstorePayload.strictUnmarshalJSON`).
//!
//! ```json
//! {"critical":{"identity":{"docker-reference":"host/repo:tag"},
//!              "image":{"docker-manifest-digest":"sha256:…"},
//!              "type":"cosign container image signature"},
//!  "optional":null}
//! ```

use super::json::{go_float, go_string, paranoid_exact_fields, paranoid_object, JValue};
use super::reference::validate_digest;

/// The only accepted `critical.type`.
pub(super) const SIGSTORE_SIGNATURE_TYPE: &str = "cosign container image signature";

/// The contents of a payload whose signature has been verified, but whose claims have not yet
/// been checked against the image.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct UntrustedPayload {
    /// `critical.image.docker-manifest-digest`.
    pub(super) docker_manifest_digest: String,
    /// `critical.identity.docker-reference`.
    pub(super) docker_reference: String,
    /// `optional.creator`.
    pub(super) creator: Option<String>,
    /// `optional.timestamp` (seconds since the epoch).
    pub(super) timestamp: Option<i64>,
}

/// Parses a payload; errors are containers/image's texts (all mean "invalid signature").
pub(super) fn parse_payload(data: &[u8]) -> Result<UntrustedPayload, String> {
    let root = JValue::parse(data)?;
    let (mut critical, mut optional) = (&JValue::Null, &JValue::Null);
    paranoid_exact_fields(&root, &["critical", "optional"], |key, value| {
        match key {
            "critical" => critical = value,
            _ => optional = value,
        }
        Ok(())
    })?;

    let mut creator = None;
    let mut timestamp = None;
    // /usr/bin/cosign writes "optional": null when there are no annotations.
    if *optional != JValue::Null {
        paranoid_object(optional, |key, value| {
            match key {
                "creator" => creator = Some(go_string(value)?),
                "timestamp" => timestamp = Some(go_float(value)?),
                _ => {} // Other optional fields are ignored.
            }
            Ok(true)
        })?;
    }
    let timestamp = match timestamp {
        None => None,
        Some(t) if t.fract() == 0.0 && t >= i64::MIN as f64 && t < i64::MAX as f64 => {
            Some(t as i64)
        }
        Some(_) => return Err("Field optional.timestamp is not an integer".to_string()),
    };

    let mut t = String::new();
    let (mut image, mut identity) = (&JValue::Null, &JValue::Null);
    paranoid_exact_fields(critical, &["type", "image", "identity"], |key, value| {
        match key {
            "type" => t = go_string(value)?,
            "image" => image = value,
            _ => identity = value,
        }
        Ok(())
    })?;
    if t != SIGSTORE_SIGNATURE_TYPE {
        return Err(format!("Unrecognized signature type {t}"));
    }

    let mut digest = String::new();
    paranoid_exact_fields(image, &["docker-manifest-digest"], |_, value| {
        digest = go_string(value)?;
        Ok(())
    })?;
    validate_digest(&digest).map_err(|e| {
        format!(
            "invalid docker-manifest-digest value {}: {e}",
            super::json::go_quote(&digest)
        )
    })?;

    let mut docker_reference = String::new();
    paranoid_exact_fields(identity, &["docker-reference"], |_, value| {
        docker_reference = go_string(value)?;
        Ok(())
    })?;

    Ok(UntrustedPayload {
        docker_manifest_digest: digest,
        docker_reference,
        creator,
        timestamp,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:01fad4b0c19751584467cfe1c8ce3275e6c8949fd95be15451d8214b291072ae";

    fn payload(critical_type: &str, digest: &str, optional: &str) -> String {
        format!(
            r#"{{"critical":{{"identity":{{"docker-reference":"example.com/ns/repo:v1"}},"image":{{"docker-manifest-digest":"{digest}"}},"type":"{critical_type}"}},"optional":{optional}}}"#
        )
    }

    #[test]
    fn valid_payloads() {
        let p = parse_payload(payload(SIGSTORE_SIGNATURE_TYPE, DIGEST, "null").as_bytes()).unwrap();
        assert_eq!(p.docker_manifest_digest, DIGEST);
        assert_eq!(p.docker_reference, "example.com/ns/repo:v1");
        assert_eq!((p.creator, p.timestamp), (None, None));
        let p = parse_payload(
            payload(
                SIGSTORE_SIGNATURE_TYPE,
                DIGEST,
                r#"{"creator":"c","timestamp":1795333742,"x":{"a":[1]}}"#,
            )
            .as_bytes(),
        )
        .unwrap();
        assert_eq!(
            (p.creator.as_deref(), p.timestamp),
            (Some("c"), Some(1795333742))
        );
    }

    #[test]
    fn invalid_payloads() {
        for (data, message) in [
            (payload("atomic container signature", DIGEST, "null"), "Unrecognized signature type atomic container signature".to_string()),
            (payload(SIGSTORE_SIGNATURE_TYPE, "sha256:abc", "null"), r#"invalid docker-manifest-digest value "sha256:abc": invalid checksum digest length"#.to_string()),
            (payload(SIGSTORE_SIGNATURE_TYPE, DIGEST, r#"{"timestamp":1.5}"#), "Field optional.timestamp is not an integer".to_string()),
            (payload(SIGSTORE_SIGNATURE_TYPE, DIGEST, r#"{"creator":1}"#), "json: cannot unmarshal number into Go value of type string".to_string()),
            (payload(SIGSTORE_SIGNATURE_TYPE, DIGEST, r#"{"a":1,"a":2}"#), r#"Duplicate key "a""#.to_string()),
            (r#"{"critical":{},"optional":null}"#.to_string(), r#"Key "type" missing in a JSON object"#.to_string()),
            (r#"{"critical":{}}"#.to_string(), r#"Key "optional" missing in a JSON object"#.to_string()),
            (r#"{"critical":{},"optional":null,"extra":1}"#.to_string(), r#"Unknown key "extra""#.to_string()),
            (r#"{"optional":null}"#.to_string(), r#"Key "critical" missing in a JSON object"#.to_string()),
        ] {
            assert_eq!(parse_payload(data.as_bytes()).unwrap_err(), message, "{data}");
        }
        let extra = payload(SIGSTORE_SIGNATURE_TYPE, DIGEST, "null")
            .replace(r#""type":"#, r#""extra":1,"type":"#);
        assert_eq!(
            parse_payload(extra.as_bytes()).unwrap_err(),
            r#"Unknown key "extra""#
        );
        assert!(parse_payload(b"not json").is_err());
        let trailing = format!("{} x", payload(SIGSTORE_SIGNATURE_TYPE, DIGEST, "null"));
        assert!(parse_payload(trailing.as_bytes()).is_err());
    }
}
