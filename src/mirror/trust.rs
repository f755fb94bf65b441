//! Applying the trust policy to a source image before it is copied, and finding its cosign
//! signatures.
//!
//! Multi-arch images are evaluated per platform manifest that will be copied, as
//! containers/image does: a signature on the index alone does not count. Requirements that need
//! no signatures (`insecureAcceptAnything`, `reject`, the not-yet-supported kinds) are decided
//! without any request, so a permissive policy adds nothing to a run.

use std::path::PathBuf;

use oci_client::manifest::OciImageManifest;

use crate::mirror::error::{Error, Result};
use crate::oci::manifest::{platform_string, select_children, Parsed};
use crate::oci::referrers::{find, ReferrerFilter, Via};
use crate::oci::Registry;
use crate::oci::RegistryError;
use crate::oci::{PlatformFilter, TaggedRef};
use crate::policy::{
    evaluate, is_sigstore_bundle_type, locate, needs_signatures, ImageName, Policy, SignatureBlob,
    Verdict, BUNDLE_ANNOTATION, CERTIFICATE_ANNOTATION, CHAIN_ANNOTATION, SIGNATURE_ANNOTATION,
    SIGNATURE_LAYER_MEDIA_TYPE, SIGSTORE_BUNDLE_MEDIA_TYPES,
};

/// The largest signature payload or sigstore bundle we read (a simple-signing payload is well
/// under 1 KiB, a bundle with its certificate a few KiB).
const MAX_PAYLOAD_BYTES: u64 = 256 * 1024;

/// Loads the policy from `--policy`, the user's or the system's file, or accepts anything with
/// an explicit `--insecure-policy`.
pub fn load(policy: &Option<PathBuf>, insecure: bool) -> Result<Policy> {
    match (policy, insecure) {
        (Some(p), true) => Err(Error::Usage(format!(
            "--policy {} and --insecure-policy cannot be used together",
            p.display()
        ))),
        (None, true) => Ok(Policy::insecure_accept_anything()),
        (explicit, false) => {
            let path = locate(explicit.as_deref())?;
            Ok(Policy::from_file(&path)?)
        }
    }
}

/// The tag under which cosign stores the signatures of `digest`.
pub fn signature_tag(digest: &str) -> String {
    format!("{}.sig", digest.replacen(':', "-", 1))
}

/// Evaluates the policy for `source` as it would be copied with `platforms`.
/// `Ok(None)`: allowed. `Ok(Some(reason))`: blocked.
pub async fn check(
    policy: &Policy,
    src: &Registry,
    source: &TaggedRef,
    platforms: &PlatformFilter,
) -> Result<Option<String>, RegistryError> {
    let name = ImageName::parse(&source.to_string()).map_err(|e| RegistryError::Invalid {
        what: source.to_string(),
        reason: e.to_string(),
    })?;
    let reqs = policy.requirements_for(&name);
    if !needs_signatures(reqs) {
        return Ok(match evaluate(reqs, &name, "", &[]) {
            Verdict::Accepted => None,
            Verdict::Rejected(r) => Some(r.to_string()),
        });
    }
    let repo = &source.image.repository;
    let top = src.get_manifest(repo, source.reference()).await?;
    let targets: Vec<(String, String)> = match top.parse(&source.to_string())? {
        Parsed::Image(_) => vec![("image".to_string(), top.digest.clone())],
        Parsed::Index(idx) => select_children(&idx, platforms)
            .into_iter()
            .map(|e| (platform_string(e), e.digest.clone()))
            .collect(),
    };
    for (platform, digest) in targets {
        let mut sigs = signatures(src, repo, &digest).await?;
        sigs.extend(bundles(src, repo, &digest).await?);
        if let Verdict::Rejected(r) = evaluate(reqs, &name, &digest, &sigs) {
            return Ok(Some(format!("{platform} ({digest}): {r}")));
        }
    }
    Ok(None)
}

/// The cosign signatures of `digest` in `repo`: the layers of the `sha256-<hex>.sig` manifest.
pub async fn signatures(
    src: &Registry,
    repo: &str,
    digest: &str,
) -> Result<Vec<SignatureBlob>, RegistryError> {
    let tag = signature_tag(digest);
    let m = match src.get_manifest(repo, &tag).await {
        Ok(m) => m,
        Err(e) if e.is_not_found() => return Ok(vec![]),
        Err(e) => return Err(e),
    };
    let Parsed::Image(sig) = m.parse(&format!("{repo}:{tag}"))? else {
        return Ok(vec![]);
    };
    read_payloads(src, repo, &sig).await
}

async fn read_payloads(
    src: &Registry,
    repo: &str,
    sig: &OciImageManifest,
) -> Result<Vec<SignatureBlob>, RegistryError> {
    let mut out = Vec::new();
    for layer in &sig.layers {
        if layer.media_type != SIGNATURE_LAYER_MEDIA_TYPE {
            continue;
        }
        let payload = read_blob(src, repo, &layer.digest, layer.size).await?;
        let annotation = |key: &str| layer.annotations.as_ref().and_then(|a| a.get(key)).cloned();
        out.push(SignatureBlob {
            payload,
            signature_b64: annotation(SIGNATURE_ANNOTATION).unwrap_or_default(),
            certificate: annotation(CERTIFICATE_ANNOTATION),
            chain: annotation(CHAIN_ANNOTATION),
            bundle: annotation(BUNDLE_ANNOTATION),
            sigstore_bundle: None,
        });
    }
    Ok(out)
}

/// The sigstore bundles (cosign v3) of `digest` in `repo`: the bundle layers of its referrers
/// (the referrers API, else the `sha256-<hex>` fallback index) of a bundle artifact type.
pub async fn bundles(
    src: &Registry,
    repo: &str,
    digest: &str,
) -> Result<Vec<SignatureBlob>, RegistryError> {
    let filter = ReferrerFilter::Types(
        SIGSTORE_BUNDLE_MEDIA_TYPES
            .iter()
            .map(|t| t.to_string())
            .collect(),
    );
    let mut out = Vec::new();
    for found in find(src, repo, digest, &filter).await? {
        let is_bundle = found
            .descriptor
            .artifact_type
            .as_deref()
            .is_some_and(is_sigstore_bundle_type);
        if found.via == Via::CosignTag || !is_bundle {
            continue;
        }
        let m = src.get_manifest(repo, &found.descriptor.digest).await?;
        let Parsed::Image(referrer) = m.parse(&format!("{repo}@{}", found.descriptor.digest))?
        else {
            continue;
        };
        for layer in &referrer.layers {
            if is_sigstore_bundle_type(&layer.media_type) {
                let json = read_blob(src, repo, &layer.digest, layer.size).await?;
                out.push(SignatureBlob::from_bundle(json));
            }
        }
    }
    Ok(out)
}

/// A signature blob, at most [`MAX_PAYLOAD_BYTES`], checked against its digest.
async fn read_blob(
    src: &Registry,
    repo: &str,
    digest: &str,
    size: i64,
) -> Result<Vec<u8>, RegistryError> {
    use futures::TryStreamExt;
    let size = size.max(0) as u64;
    if size > MAX_PAYLOAD_BYTES {
        return Err(RegistryError::Invalid {
            what: format!("signature payload {digest}"),
            reason: format!("larger than {MAX_PAYLOAD_BYTES} bytes"),
        });
    }
    let payload: Vec<u8> = src
        .blob_stream(repo, digest, size)
        .await?
        .try_fold(Vec::new(), |mut acc, c| async move {
            acc.extend_from_slice(&c);
            Ok(acc)
        })
        .await?;
    let actual = crate::oci::manifest::sha256_digest(&payload);
    if actual != digest {
        return Err(RegistryError::DigestMismatch {
            what: format!("signature payload in {repo}"),
            expected: digest.to_string(),
            actual,
        });
    }
    Ok(payload)
}
