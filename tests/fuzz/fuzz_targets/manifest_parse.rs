//! Manifests as a registry serves them: `classify` (body + Content-Type), then
//! `Manifest::parse`, then what the copy engine does with the result (children, platform
//! filter, filtered index, blob list). The first input byte picks the Content-Type header.
#![no_main]

use bytes::Bytes;
use ecr_mirror_sync::oci::manifest::{
    blobs_of, classify, filtered_index, is_valid_digest, platform_string, recorded_source_digest,
    select_children, sha256_digest, Manifest, Parsed,
};
use ecr_mirror_sync::oci::PlatformFilter;
use libfuzzer_sys::fuzz_target;

const HEADERS: &[&str] = &[
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
    "application/vnd.oci.image.index.v1+json; charset=utf-8",
];

fuzz_target!(|data: &[u8]| {
    let Some((&sel, body)) = data.split_first() else {
        return;
    };
    let owned;
    let header: Option<&str> = match sel as usize % (HEADERS.len() + 2) {
        0 => None,
        i if i <= HEADERS.len() => Some(HEADERS[i - 1]),
        // A header taken from the input itself: up to the first newline.
        _ => {
            let end = body.iter().position(|&b| b == b'\n').unwrap_or(body.len());
            owned = String::from_utf8_lossy(&body[..end]).into_owned();
            Some(owned.as_str())
        }
    };
    let _ = recorded_source_digest(body);
    let Ok(media_type) = classify(body, header, "fuzz") else {
        return;
    };
    let m = Manifest {
        bytes: Bytes::copy_from_slice(body),
        media_type,
        digest: sha256_digest(body),
    };
    match m.parse("fuzz") {
        Ok(Parsed::Index(idx)) => {
            for e in &idx.manifests {
                assert!(
                    is_valid_digest(&e.digest),
                    "parse let through {:?}",
                    e.digest
                );
                let _ = platform_string(e);
            }
            let all = select_children(&idx, &PlatformFilter::All);
            assert_eq!(all.len(), idx.manifests.len());
            let filter = PlatformFilter::parse_list("linux/amd64 linux/arm64/v8").unwrap();
            let some = select_children(&idx, &filter);
            let out = filtered_index(&idx, &m.media_type, &m.digest, &some);
            assert_eq!(recorded_source_digest(&out.bytes), Some(m.digest.clone()));
            assert_eq!(out.digest, sha256_digest(&out.bytes));
        }
        Ok(Parsed::Image(img)) => {
            for d in blobs_of(&img) {
                assert!(
                    is_valid_digest(&d.digest),
                    "parse let through {:?}",
                    d.digest
                );
            }
        }
        Err(_) => {}
    }
});
