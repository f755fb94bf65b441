//! An order-preserving JSON tree, and helpers that decode it with the same strictness (and the same
//! error texts) as containers/image's `signature/internal/json.go` on top of Go's `encoding/json`.
//!
//! serde_json alone is not strict enough for a security policy: it silently keeps the last of two
//! duplicated keys, and serde's error texts differ from the ones users know from skopeo/podman.
//! So the document is first parsed (syntax, trailing data) into [`JValue`], which keeps every
//! object member in document order, duplicates included; the policy and payload decoders then walk
//! that tree and report the *first* problem in document order, as Go's streaming decoder does.

use std::collections::HashSet;
use std::fmt;

use base64::Engine as _;
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// A JSON value whose objects keep their members in document order, duplicates included.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum JValue {
    Null,
    Bool(bool),
    Number(f64),
    String(String),
    Array(Vec<JValue>),
    Object(Vec<(String, JValue)>),
}

impl JValue {
    /// Parses a complete JSON document; trailing non-whitespace data is an error.
    pub(super) fn parse(data: &[u8]) -> Result<JValue, String> {
        serde_json::from_slice(data).map_err(|e| match e.classify() {
            // Go's text for a truncated document.
            serde_json::error::Category::Eof => "unexpected end of JSON input".to_string(),
            _ => e.to_string(),
        })
    }

    /// The JSON kind, spelled as Go's `json.UnmarshalTypeError` spells it.
    pub(super) fn kind(&self) -> &'static str {
        match self {
            JValue::Null => "null",
            JValue::Bool(_) => "bool",
            JValue::Number(_) => "number",
            JValue::String(_) => "string",
            JValue::Array(_) => "array",
            JValue::Object(_) => "object",
        }
    }

    /// The first token of the value, roughly as `json.Decoder.Token` + `%#v` would show it.
    fn first_token(&self) -> String {
        match self {
            JValue::Null => "<nil>".to_string(),
            JValue::Bool(b) => b.to_string(),
            JValue::Number(n) => n.to_string(),
            JValue::String(s) => go_quote(s),
            JValue::Array(_) => "\"[\"".to_string(),
            JValue::Object(_) => "\"{\"".to_string(),
        }
    }
}

/// `json: cannot unmarshal KIND into Go value of type GOTYPE`.
pub(super) fn type_error(v: &JValue, go_type: &str) -> String {
    format!(
        "json: cannot unmarshal {} into Go value of type {go_type}",
        v.kind()
    )
}

/// Quotes a string the way Go's `%q` does (close enough for error messages).
pub(super) fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// containers/image `ParanoidUnmarshalJSONObject`: `v` must be an object; keys are visited in
/// document order; a duplicated key fails with `Duplicate key "k"`; `field` decodes a known key and
/// returns `Ok(false)` for an unknown key, which fails with `Unknown key "k"`.
pub(super) fn paranoid_object<'a>(
    v: &'a JValue,
    mut field: impl FnMut(&'a str, &'a JValue) -> Result<bool, String>,
) -> Result<(), String> {
    let JValue::Object(members) = v else {
        return Err(format!("JSON object expected, got {}", v.first_token()));
    };
    let mut seen: HashSet<&str> = HashSet::new();
    for (key, value) in members {
        if !seen.insert(key.as_str()) {
            return Err(format!("Duplicate key {}", go_quote(key)));
        }
        if !field(key, value)? {
            return Err(format!("Unknown key {}", go_quote(key)));
        }
    }
    Ok(())
}

/// containers/image `ParanoidUnmarshalJSONObjectExactFields`: like [`paranoid_object`], and every
/// name in `exact` must be present (exactly once); no other key is accepted.
pub(super) fn paranoid_exact_fields<'a>(
    v: &'a JValue,
    exact: &[&str],
    mut field: impl FnMut(&'a str, &'a JValue) -> Result<(), String>,
) -> Result<(), String> {
    let mut seen: Vec<&str> = Vec::new();
    paranoid_object(v, |key, value| {
        if let Some(name) = exact.iter().find(|n| **n == key) {
            seen.push(name);
            field(key, value)?;
            Ok(true)
        } else {
            Ok(false)
        }
    })?;
    for name in exact {
        if !seen.contains(name) {
            return Err(format!("Key {} missing in a JSON object", go_quote(name)));
        }
    }
    Ok(())
}

/// Decodes into a Go `string`: `null` leaves the previous value (`""`) alone.
pub(super) fn go_string(v: &JValue) -> Result<String, String> {
    match v {
        JValue::String(s) => Ok(s.clone()),
        JValue::Null => Ok(String::new()),
        other => Err(type_error(other, "string")),
    }
}

/// Decodes into a Go `[]string`: `null` is a nil slice (`None`), a `null` element is `""`.
pub(super) fn go_string_slice(v: &JValue) -> Result<Option<Vec<String>>, String> {
    match v {
        JValue::Null => Ok(None),
        JValue::Array(items) => items
            .iter()
            .map(go_string)
            .collect::<Result<_, _>>()
            .map(Some),
        other => Err(type_error(other, "[]string")),
    }
}

/// Decodes into a Go `[]byte` (base64 in JSON): `null` is a nil slice (`None`).
pub(super) fn go_bytes(v: &JValue) -> Result<Option<Vec<u8>>, String> {
    match v {
        JValue::Null => Ok(None),
        JValue::String(s) => go_base64_std(s).map(Some),
        other => Err(type_error(other, "[]uint8")),
    }
}

/// Decodes into a Go `[][]byte`: `null` is a nil slice (`None`); a `null` element is a nil (empty) slice.
pub(super) fn go_bytes_slice(v: &JValue) -> Result<Option<Vec<Vec<u8>>>, String> {
    match v {
        JValue::Null => Ok(None),
        JValue::Array(items) => items
            .iter()
            .map(|item| go_bytes(item).map(Option::unwrap_or_default))
            .collect::<Result<_, _>>()
            .map(Some),
        other => Err(type_error(other, "[][]uint8")),
    }
}

/// Decodes into a Go `float64`: `null` leaves the previous value (`0`) alone.
pub(super) fn go_float(v: &JValue) -> Result<f64, String> {
    match v {
        JValue::Number(n) => Ok(*n),
        JValue::Null => Ok(0.0),
        other => Err(type_error(other, "float64")),
    }
}

/// Go's `base64.StdEncoding.DecodeString` (padding required; `\r` and `\n` are ignored).
pub(super) fn go_base64_std(s: &str) -> Result<Vec<u8>, String> {
    let cleaned: String = s.chars().filter(|c| *c != '\r' && *c != '\n').collect();
    base64::engine::general_purpose::STANDARD
        .decode(cleaned.as_bytes())
        .map_err(|e| match e {
            base64::DecodeError::InvalidByte(offset, _)
            | base64::DecodeError::InvalidLastSymbol(offset, _) => {
                format!("illegal base64 data at input byte {offset}")
            }
            base64::DecodeError::InvalidLength(len) => {
                format!("illegal base64 data at input byte {len}")
            }
            base64::DecodeError::InvalidPadding => {
                format!("illegal base64 data at input byte {}", cleaned.len())
            }
        })
}

/// Go's case-insensitive lookup of a struct field named `type` (as `json.Unmarshal` into a
/// `struct{ Type string `json:"type"` }` does): the last matching member wins, other members are
/// ignored, and a `null` leaves the field empty.
pub(super) fn go_type_field(v: &JValue, go_struct: &str, go_type: &str) -> Result<String, String> {
    let members = match v {
        JValue::Object(m) => m,
        JValue::Null => return Ok(String::new()),
        other => return Err(type_error(other, &format!("signature.{go_struct}"))),
    };
    let mut result = String::new();
    let mut first_error = None;
    for (key, value) in members {
        if key.eq_ignore_ascii_case("type") {
            match value {
                JValue::String(s) => result = s.clone(),
                JValue::Null => {}
                other => {
                    first_error.get_or_insert_with(|| {
                        format!(
                            "json: cannot unmarshal {} into Go struct field {go_struct}.type of type signature.{go_type}",
                            other.kind()
                        )
                    });
                }
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(result),
    }
}

impl<'de> Deserialize<'de> for JValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(JValueVisitor)
    }
}

struct JValueVisitor;

impl<'de> Visitor<'de> for JValueVisitor {
    type Value = JValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<JValue, E> {
        Ok(JValue::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<JValue, E> {
        Ok(JValue::Number(v as f64))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<JValue, E> {
        Ok(JValue::Number(v as f64))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<JValue, E> {
        Ok(JValue::Number(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<JValue, E> {
        Ok(JValue::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<JValue, E> {
        Ok(JValue::String(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<JValue, E> {
        Ok(JValue::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<JValue, E> {
        Ok(JValue::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<JValue, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(JValue::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<JValue, A::Error> {
        let mut members = Vec::new();
        while let Some((key, value)) = map.next_entry::<String, JValue>()? {
            members.push((key, value));
        }
        Ok(JValue::Object(members))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_duplicates_and_order() {
        let v = JValue::parse(br#"{"b":1,"a":2,"b":3}"#).unwrap();
        let JValue::Object(m) = &v else { panic!() };
        let keys: Vec<&str> = m.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["b", "a", "b"]);
        let err = paranoid_object(&v, |_, _| Ok(true)).unwrap_err();
        assert_eq!(err, r#"Duplicate key "b""#);
    }

    #[test]
    fn trailing_data_is_an_error() {
        assert!(JValue::parse(b"{} x").is_err());
        assert!(JValue::parse(b"{}{}").is_err());
        assert!(JValue::parse(b" {} \n").is_ok());
        assert_eq!(
            JValue::parse(b"").unwrap_err(),
            "unexpected end of JSON input"
        );
        assert_eq!(
            JValue::parse(br#"{"a":"#).unwrap_err(),
            "unexpected end of JSON input"
        );
    }

    #[test]
    fn exact_fields() {
        let v = JValue::parse(br#"{"type":"x"}"#).unwrap();
        let err =
            paranoid_exact_fields(&v, &["type", "dockerReference"], |_, _| Ok(())).unwrap_err();
        assert_eq!(err, r#"Key "dockerReference" missing in a JSON object"#);
        let v = JValue::parse(br#"{"type":"x","other":1}"#).unwrap();
        let err = paranoid_exact_fields(&v, &["type"], |_, _| Ok(())).unwrap_err();
        assert_eq!(err, r#"Unknown key "other""#);
        let err = paranoid_object(&JValue::Null, |_, _| Ok(true)).unwrap_err();
        assert_eq!(err, "JSON object expected, got <nil>");
    }

    #[test]
    fn go_decoding_rules() {
        assert_eq!(go_string(&JValue::Null).unwrap(), "");
        assert_eq!(
            go_string(&JValue::Number(5.0)).unwrap_err(),
            "json: cannot unmarshal number into Go value of type string"
        );
        assert_eq!(go_bytes(&JValue::Null).unwrap(), None);
        assert_eq!(
            go_bytes(&JValue::String("aGk=".into())).unwrap(),
            Some(b"hi".to_vec())
        );
        assert_eq!(
            go_bytes(&JValue::String("aG\nk=".into())).unwrap(),
            Some(b"hi".to_vec())
        );
        assert_eq!(
            go_bytes(&JValue::String("!!".into())).unwrap_err(),
            "illegal base64 data at input byte 0"
        );
        assert!(go_bytes(&JValue::String("aGk".into())).is_err());
        assert_eq!(go_string_slice(&JValue::Null).unwrap(), None);
        let v = JValue::parse(br#"{"TYPE":"a","x":1,"type":"b"}"#).unwrap();
        assert_eq!(
            go_type_field(&v, "prCommon", "prTypeIdentifier").unwrap(),
            "b"
        );
        let v = JValue::parse(br#"{"type":5}"#).unwrap();
        assert_eq!(
            go_type_field(&v, "prCommon", "prTypeIdentifier").unwrap_err(),
            "json: cannot unmarshal number into Go struct field prCommon.type of type signature.prTypeIdentifier"
        );
        assert_eq!(
            go_type_field(&JValue::Number(1.0), "prCommon", "x").unwrap_err(),
            "json: cannot unmarshal number into Go value of type signature.prCommon"
        );
    }
}
