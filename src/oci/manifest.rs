//! Manifest media types, strict parsing and the platform-filtered index.
//!
//! Manifests are always copied as the exact bytes received, so digests are preserved; parsing
//! is only for finding what a manifest references. The model types are oci-client's
//! (`OciImageIndex`, `OciImageManifest`), which cover both OCI and Docker v2s2 JSON.

use bytes::Bytes;
use oci_client::manifest::{
    ImageIndexEntry, OciDescriptor, OciImageIndex, OciImageManifest,
    IMAGE_MANIFEST_LIST_MEDIA_TYPE, IMAGE_MANIFEST_MEDIA_TYPE, OCI_IMAGE_INDEX_MEDIA_TYPE,
    OCI_IMAGE_MEDIA_TYPE,
};
use sha2::{Digest as _, Sha256};

use crate::oci::RegistryError;
use crate::oci::{PlatformFilter, SOURCE_DIGEST_ANNOTATION};

/// The largest manifest we accept, as containers/image does (4 MiB). A hostile registry
/// cannot make us buffer more than this for one manifest.
pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;

/// How deep indexes may nest (an index of indexes of ...). Deeper is refused as hostile.
pub const MAX_INDEX_DEPTH: usize = 4;

/// Docker schema 1 media types: recognised only to refuse them clearly.
const SCHEMA1_TYPES: &[&str] = &[
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
];

/// The `Accept` header for manifest requests: every type we can copy, plus schema 1 so that a
/// schema-1-only image is reported as such instead of being converted by the registry.
pub fn accept_header() -> String {
    [
        OCI_IMAGE_INDEX_MEDIA_TYPE,
        IMAGE_MANIFEST_LIST_MEDIA_TYPE,
        OCI_IMAGE_MEDIA_TYPE,
        IMAGE_MANIFEST_MEDIA_TYPE,
        SCHEMA1_TYPES[1],
        SCHEMA1_TYPES[0],
    ]
    .join(", ")
}

/// The sha256 digest of `data`, as `sha256:<hex>`.
pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// Whether `d` is a well-formed `sha256:<64 hex>` digest (the only algorithm we accept).
pub fn is_valid_digest(d: &str) -> bool {
    d.strip_prefix("sha256:").is_some_and(|h| {
        h.len() == 64
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// A manifest as received: exact bytes, media type and digest.
#[derive(Clone, Debug)]
pub struct Manifest {
    /// The exact bytes.
    pub bytes: Bytes,
    /// The media type (from the body's `mediaType`, else the `Content-Type` header).
    pub media_type: String,
    /// `sha256:` of the bytes.
    pub digest: String,
}

/// A parsed manifest.
#[derive(Clone, Debug)]
pub enum Parsed {
    /// An OCI index or Docker manifest list.
    Index(OciImageIndex),
    /// An OCI image manifest or Docker v2s2 manifest.
    Image(Box<OciImageManifest>),
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Probe {
    schema_version: Option<i64>,
    media_type: Option<String>,
    manifests: Option<serde_json::Value>,
    config: Option<serde_json::Value>,
    layers: Option<serde_json::Value>,
}

fn is_index_type(mt: &str) -> bool {
    mt == OCI_IMAGE_INDEX_MEDIA_TYPE || mt == IMAGE_MANIFEST_LIST_MEDIA_TYPE
}

fn is_image_type(mt: &str) -> bool {
    mt == OCI_IMAGE_MEDIA_TYPE || mt == IMAGE_MANIFEST_MEDIA_TYPE
}

/// Decides the media type of `bytes` and checks that the header and the body agree.
///
/// `header` is the response's `Content-Type` (parameters stripped). A body whose own
/// `mediaType` disagrees with the header, or whose structure disagrees with its media type, is
/// refused: that is either a broken or a hostile registry.
pub fn classify(bytes: &[u8], header: Option<&str>, what: &str) -> Result<String, RegistryError> {
    let invalid = |reason: String| RegistryError::Invalid {
        what: what.to_string(),
        reason,
    };
    let probe: Probe = serde_json::from_slice(bytes)
        .map_err(|e| invalid(format!("manifest is not valid JSON: {e}")))?;
    let header = header
        .map(|h| h.split(';').next().unwrap_or(h).trim().to_string())
        .filter(|h| !h.is_empty() && h != "application/json" && h != "text/plain");
    if let Some(h) = &header {
        if SCHEMA1_TYPES.contains(&h.as_str()) {
            return Err(schema1(what));
        }
    }
    if probe.schema_version == Some(1) {
        return Err(schema1(what));
    }
    let media_type = match (&probe.media_type, &header) {
        (Some(body), Some(h)) if body != h => {
            return Err(invalid(format!(
                "the registry says the media type is {h}, but the manifest says {body}"
            )))
        }
        (Some(body), _) => body.clone(),
        (None, Some(h)) => h.clone(),
        (None, None) => {
            if probe.manifests.is_some() {
                OCI_IMAGE_INDEX_MEDIA_TYPE.to_string()
            } else {
                OCI_IMAGE_MEDIA_TYPE.to_string()
            }
        }
    };
    if SCHEMA1_TYPES.contains(&media_type.as_str()) {
        return Err(schema1(what));
    }
    if probe.schema_version != Some(2) {
        return Err(invalid(format!(
            "unsupported schemaVersion {:?}; expected 2",
            probe.schema_version
        )));
    }
    if is_index_type(&media_type) {
        if probe.manifests.is_none() || probe.config.is_some() || probe.layers.is_some() {
            return Err(invalid(format!(
                "media type {media_type} needs a \"manifests\" list and no config or layers"
            )));
        }
    } else if is_image_type(&media_type) {
        if probe.config.is_none() || probe.manifests.is_some() {
            return Err(invalid(format!(
                "media type {media_type} needs a \"config\" and no \"manifests\""
            )));
        }
    } else if probe.manifests.is_some() {
        // Unknown index-like artifact; still an index structurally.
    }
    Ok(media_type)
}

fn schema1(what: &str) -> RegistryError {
    RegistryError::Unsupported {
        what: what.to_string(),
        reason: "Docker schema 1 manifests are not supported (deprecated since 2017 and refused by ECR); ask the publisher for a schema 2 or OCI image".into(),
    }
}

impl Manifest {
    /// Parses the manifest into the oci-client model.
    pub fn parse(&self, what: &str) -> Result<Parsed, RegistryError> {
        let invalid = |e: serde_json::Error| RegistryError::Invalid {
            what: what.to_string(),
            reason: format!("cannot parse {}: {e}", self.media_type),
        };
        if is_index_type(&self.media_type) {
            let idx: OciImageIndex = serde_json::from_slice(&self.bytes).map_err(invalid)?;
            for m in &idx.manifests {
                check_descriptor(&m.digest, m.size, what)?;
            }
            Ok(Parsed::Index(idx))
        } else if is_image_type(&self.media_type) || self.media_type.contains("manifest") {
            let m: OciImageManifest = serde_json::from_slice(&self.bytes).map_err(invalid)?;
            check_descriptor(&m.config.digest, m.config.size, what)?;
            for l in &m.layers {
                check_descriptor(&l.digest, l.size, what)?;
            }
            Ok(Parsed::Image(Box::new(m)))
        } else {
            Err(RegistryError::Unsupported {
                what: what.to_string(),
                reason: format!("unsupported manifest media type {}", self.media_type),
            })
        }
    }
}

fn check_descriptor(digest: &str, size: i64, what: &str) -> Result<(), RegistryError> {
    if !is_valid_digest(digest) {
        return Err(RegistryError::Invalid {
            what: what.to_string(),
            reason: format!("descriptor digest {digest:?} is not a sha256 digest"),
        });
    }
    if size < 0 {
        return Err(RegistryError::Invalid {
            what: what.to_string(),
            reason: format!("descriptor {digest} has a negative size"),
        });
    }
    Ok(())
}

/// The blobs an image manifest references: config first, then layers. Layers with foreign
/// `urls` (Windows base layers) are skipped, as registries do not hold them.
pub fn blobs_of(m: &OciImageManifest) -> Vec<OciDescriptor> {
    let mut out = vec![m.config.clone()];
    for l in &m.layers {
        if l.urls.as_ref().is_some_and(|u| !u.is_empty()) && l.media_type.contains("foreign") {
            continue;
        }
        if !out.iter().any(|d: &OciDescriptor| d.digest == l.digest) {
            out.push(l.clone());
        }
    }
    out
}

/// `os/arch[/variant]` of an index entry, for messages.
pub fn platform_string(e: &ImageIndexEntry) -> String {
    match &e.platform {
        Some(p) => {
            let mut s = format!("{}/{}", p.os, p.architecture);
            if let Some(v) = &p.variant {
                s.push('/');
                s.push_str(v);
            }
            s
        }
        None => "unknown".into(),
    }
}

/// Selects the children of `index` that `filter` wants. `All` returns every entry.
pub fn select_children<'a>(
    index: &'a OciImageIndex,
    filter: &PlatformFilter,
) -> Vec<&'a ImageIndexEntry> {
    index
        .manifests
        .iter()
        .filter(|e| match (&e.platform, filter) {
            (_, PlatformFilter::All) => true,
            (Some(p), f) => f.selects(
                &p.os.to_string(),
                &p.architecture.to_string(),
                p.variant.as_deref(),
            ),
            (None, _) => false,
        })
        .collect()
}

/// Builds the filtered index: the selected entries unchanged, the source's annotations plus
/// [`SOURCE_DIGEST_ANNOTATION`] = the upstream index digest. Deterministic for a given source,
/// so a re-run produces the same bytes and the same digest.
pub fn filtered_index(
    source: &OciImageIndex,
    source_media_type: &str,
    source_digest: &str,
    children: &[&ImageIndexEntry],
) -> Manifest {
    let mut annotations = source.annotations.clone().unwrap_or_default();
    annotations.insert(
        SOURCE_DIGEST_ANNOTATION.to_string(),
        source_digest.to_string(),
    );
    let idx = OciImageIndex {
        schema_version: 2,
        media_type: Some(source_media_type.to_string()),
        manifests: children.iter().map(|e| (*e).clone()).collect(),
        artifact_type: source.artifact_type.clone(),
        annotations: Some(annotations),
    };
    let bytes = serde_json::to_vec(&idx).expect("an index always serialises");
    let digest = sha256_digest(&bytes);
    Manifest {
        bytes: Bytes::from(bytes),
        media_type: source_media_type.to_string(),
        digest,
    }
}

/// The upstream digest recorded in a filtered index, if `bytes` is one.
pub fn recorded_source_digest(bytes: &[u8]) -> Option<String> {
    let idx: OciImageIndex = serde_json::from_slice(bytes).ok()?;
    idx.annotations?.get(SOURCE_DIGEST_ANNOTATION).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDX: &str = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[
      {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:1111111111111111111111111111111111111111111111111111111111111111","size":10,"platform":{"os":"linux","architecture":"amd64"}},
      {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:2222222222222222222222222222222222222222222222222222222222222222","size":10,"platform":{"os":"linux","architecture":"arm64","variant":"v8"}}]}"#;

    #[test]
    fn classify_checks_header_and_body_agree() {
        let mt = classify(IDX.as_bytes(), Some(OCI_IMAGE_INDEX_MEDIA_TYPE), "x").unwrap();
        assert_eq!(mt, OCI_IMAGE_INDEX_MEDIA_TYPE);
        let e = classify(IDX.as_bytes(), Some(OCI_IMAGE_MEDIA_TYPE), "x").unwrap_err();
        assert!(e.to_string().contains("says"), "{e}");
        let s1 = r#"{"schemaVersion":1,"name":"x","tag":"y","fsLayers":[]}"#;
        let e = classify(s1.as_bytes(), None, "img").unwrap_err();
        assert!(matches!(e, RegistryError::Unsupported { .. }), "{e}");
        assert!(e.to_string().contains("schema 1"));
        let lying = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","manifests":[]}"#;
        assert!(classify(lying.as_bytes(), None, "x").is_err());
        assert!(classify(b"not json", None, "x").is_err());
    }

    #[test]
    fn filter_selects_and_annotates() {
        let m = Manifest {
            bytes: Bytes::from_static(IDX.as_bytes()),
            media_type: OCI_IMAGE_INDEX_MEDIA_TYPE.into(),
            digest: sha256_digest(IDX.as_bytes()),
        };
        let Parsed::Index(idx) = m.parse("x").unwrap() else {
            panic!()
        };
        let f = PlatformFilter::parse_list("linux/arm64").unwrap();
        let kids = select_children(&idx, &f);
        assert_eq!(kids.len(), 1);
        assert_eq!(platform_string(kids[0]), "linux/arm64/v8");
        let out = filtered_index(&idx, &m.media_type, &m.digest, &kids);
        assert_eq!(recorded_source_digest(&out.bytes), Some(m.digest.clone()));
        let again = filtered_index(&idx, &m.media_type, &m.digest, &kids);
        assert_eq!(out.digest, again.digest, "deterministic");
        assert_eq!(select_children(&idx, &PlatformFilter::All).len(), 2);
        let none = PlatformFilter::parse_list("windows/amd64").unwrap();
        assert!(select_children(&idx, &none).is_empty());
    }

    #[test]
    fn digests() {
        assert!(is_valid_digest(&sha256_digest(b"")));
        assert!(!is_valid_digest("sha256:ABC"));
        assert!(!is_valid_digest("md5:00"));
    }
}
