//! `ecr-mirror-sync push --archive` end to end: images generated in a real `docker-registry`,
//! written to docker-archive / oci-archive / OCI layout by skopeo (an independent writer),
//! pushed by the product binary into another registry, and checked there with the harness's
//! own client, skopeo, and the destination's access log.

use std::path::Path;
use std::process::Output;

use serde_json::Value;

use crate::support::{
    count, describe, get_blob, get_manifest, head_blob, head_manifest, index_of, json_line,
    push_image, push_index, random_image, run_async, sha256_digest, skopeo, skopeo_copy_ok, Format,
    Image, Index, Kind, Moto, Registry, Request, MOTO_ACCOUNT_ID, MOTO_ECR_PASSWORD, MOTO_ECR_USER,
    MT_DOCKER_MANIFEST, MT_OCI_INDEX,
};

const MT_DOCKER_LAYER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";
const MT_DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// `push --archive ARCHIVE --dest DEST --dest-tls-verify=false EXTRA...`.
async fn push(archive: &Path, dest: &str, extra: &[&str]) -> Output {
    let archive = archive.display().to_string();
    let mut args = vec![
        "push",
        "--archive",
        &archive,
        "--dest",
        dest,
        "--dest-tls-verify=false",
    ];
    args.extend_from_slice(extra);
    run_async(&args, &[]).await
}
/// Asserts exit 0 and returns the `push` line's data.
fn report_ok(out: &Output) -> Value {
    assert_eq!(out.status.code(), Some(0), "push failed\n{}", describe(out));
    json_line(out, "push")["data"].clone()
}

/// Asserts exit `code` and returns stderr and stdout together (the error message).
fn failed(out: &Output, code: i32) -> String {
    assert_eq!(
        out.status.code(),
        Some(code),
        "expected exit {code}\n{}",
        describe(out)
    );
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    )
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a number: {v}"))
}

fn writes(reqs: &[Request]) -> Vec<&Request> {
    reqs.iter()
        .filter(|r| matches!(r.method.as_str(), "PUT" | "PATCH" | "POST" | "DELETE"))
        .collect()
}

/// The data span (offset, size) of the tar entry whose name satisfies `pred`.
fn entry_span(tar_file: &Path, pred: impl Fn(&str, u64) -> bool) -> (String, u64, u64) {
    let mut a = tar::Archive::new(std::fs::File::open(tar_file).unwrap());
    for e in a.entries_with_seek().unwrap() {
        let e = e.unwrap();
        let name = e.path().unwrap().display().to_string();
        if e.header().entry_type().is_file() && pred(&name, e.size()) {
            return (name, e.raw_file_position(), e.size());
        }
    }
    panic!("no matching entry in {}", tar_file.display());
}

fn flip_byte(file: &Path, at: u64) {
    let mut data = std::fs::read(file).unwrap();
    data[at as usize] ^= 0xff;
    std::fs::write(file, data).unwrap();
}

/// `skopeo inspect --raw` of `reference` (plain HTTP): the manifest JSON.
fn skopeo_raw(reference: &str) -> Value {
    let out = skopeo(&["inspect", "--raw", "--tls-verify=false", reference]);
    assert!(out.status.success(), "skopeo inspect: {}", describe(&out));
    serde_json::from_slice(&out.stdout).expect("manifest JSON")
}

fn two_platform_index(seed: u64) -> Index {
    index_of(
        vec![
            random_image(seed, &[4096, 20_000], "linux/amd64", Format::Oci),
            random_image(seed + 1, &[8192], "linux/arm64", Format::Oci),
        ],
        Format::Oci,
    )
}

/// The destination holds `idx` byte for byte under `tag`, with every child and blob.
async fn assert_index_pushed(reg: &Registry, repo: &str, tag: &str, idx: &Index) {
    let (bytes, ct) = get_manifest(&reg.url(), repo, tag, None, None)
        .await
        .unwrap_or_else(|| panic!("{repo}:{tag} missing"));
    assert_eq!(bytes, idx.manifest, "{repo}:{tag}: index bytes differ");
    assert_eq!(ct, idx.media_type);
    for img in &idx.images {
        let (m, _) = get_manifest(&reg.url(), repo, &img.digest, None, None)
            .await
            .unwrap_or_else(|| panic!("{repo}@{} missing", img.digest));
        assert_eq!(m, img.manifest);
        for b in img.blobs() {
            let got = get_blob(&reg.url(), repo, &b.digest, None, None).await;
            assert!(got.as_ref() == Some(&b.data), "blob {} differs", b.digest);
        }
    }
}

/// A docker-archive of `img` written by skopeo from `src`, recording `docker_ref`.
fn docker_archive(src: &Registry, repo: &str, tag: &str, file: &Path, docker_ref: Option<&str>) {
    let dest = match docker_ref {
        Some(r) => format!("docker-archive:{}:{r}", file.display()),
        None => format!("docker-archive:{}", file.display()),
    };
    skopeo_copy_ok(&[
        "--src-tls-verify=false",
        &format!("docker://{}/{repo}:{tag}", src.host),
        &dest,
    ]);
}

// ---------------------------------------------------------------------------------------------
// 1. docker-archive (skopeo) → registry; the tag comes from RepoTags
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn push_docker_archive_written_by_skopeo() {
    let src = Registry::start();
    let dst = Registry::start();
    let img: Image = random_image(3000, &[4096, 300_000], "linux/amd64", Format::DockerV2);
    push_image(&src.url(), "lib/app", "v1", &img, None, None).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("app.tar");
    docker_archive(
        &src,
        "lib/app",
        "v1",
        &file,
        Some("example.com/team/app:1.2.3"),
    );

    // No tag on --dest and no --tag: RepoTags' tag (1.2.3) is used.
    let out = push(
        &file,
        &format!("{}/pushed/app", dst.host),
        &["--output", "json"],
    )
    .await;
    let r = report_ok(&out);
    assert_eq!(r["format"], "docker-archive");
    assert_eq!(r["tags"], serde_json::json!(["1.2.3"]));
    assert_eq!(r["media_type"], MT_DOCKER_MANIFEST);
    let digest = r["digest"].as_str().unwrap().to_string();
    assert_eq!(u(&r["blobs_uploaded"]), 3, "{r}");
    assert!(u(&r["bytes"]) > 300_000, "{r}");

    let head = head_manifest(&dst.url(), "pushed/app", "1.2.3", None, None).await;
    assert_eq!(head.as_deref(), Some(digest.as_str()));
    let (bytes, ct) = get_manifest(&dst.url(), "pushed/app", &digest, None, None)
        .await
        .expect("manifest by digest");
    assert_eq!(ct, MT_DOCKER_MANIFEST);
    assert_eq!(
        sha256_digest(&bytes),
        digest,
        "the digest is our manifest's"
    );
    // skopeo stores layers uncompressed, so the manifest (and its digest) differ from the
    // source's; the config is the same blob, and each layer is the source's diff ID.
    assert_ne!(digest, img.digest);
    let m: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(m["config"]["mediaType"], MT_DOCKER_CONFIG);
    assert_eq!(m["config"]["digest"], img.config.digest.as_str());
    let layers = m["layers"].as_array().unwrap();
    assert_eq!(layers.len(), img.layers.len());
    for (l, src_layer) in layers.iter().zip(&img.layers) {
        assert_eq!(l["mediaType"], MT_DOCKER_LAYER_TAR);
        assert_eq!(l["digest"], src_layer.diff_id().as_str());
        assert!(
            head_blob(
                &dst.url(),
                "pushed/app",
                l["digest"].as_str().unwrap(),
                None,
                None
            )
            .await
        );
    }
    assert!(head_blob(&dst.url(), "pushed/app", &img.config.digest, None, None).await);

    // skopeo agrees: same config digest as the source, and the image reads back whole
    // (skopeo verifies every blob's digest while copying).
    let src_raw = skopeo_raw(&format!("docker://{}/lib/app:v1", src.host));
    let dst_ref = format!("docker://{}/pushed/app:1.2.3", dst.host);
    let dst_raw = skopeo_raw(&dst_ref);
    assert_eq!(dst_raw["config"]["digest"], src_raw["config"]["digest"]);
    let inspect = skopeo(&["inspect", "--tls-verify=false", &dst_ref]);
    assert!(inspect.status.success(), "{}", describe(&inspect));
    let back = dir.path().join("back");
    skopeo_copy_ok(&[
        "--src-tls-verify=false",
        &dst_ref,
        &format!("oci:{}", back.display()),
    ]);

    // 4. A second push (text output) uploads nothing and writes no manifest.
    dst.mark();
    let out = push(&file, &format!("{}/pushed/app:1.2.3", dst.host), &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(&digest), "{stdout}");
    assert!(stdout.contains("already up to date"), "{stdout}");
    assert!(stdout.contains("0 uploaded, 3 skipped"), "{stdout}");
    let secs = stdout.rsplit(" in ").next().unwrap().trim();
    assert!(
        secs.ends_with('s') && secs.trim_end_matches('s').parse::<f64>().is_ok(),
        "elapsed time printed: {stdout}"
    );
    let reqs = dst.requests();
    assert_eq!(
        count(&reqs, "POST", Kind::Upload),
        0,
        "no upload opened: {reqs:#?}"
    );
    assert!(writes(&reqs).is_empty(), "nothing written: {reqs:#?}");
}

// ---------------------------------------------------------------------------------------------
// 2, 3, 4. oci-archive and OCI layout of a 2-platform index: the digest is kept
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn push_oci_archive_keeps_the_index_digest_and_tags_last() {
    let src = Registry::start();
    let dst = Registry::start();
    let idx = two_platform_index(3100);
    push_index(&src.url(), "lib/multi", "v2", &idx, None, None).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("multi.tar");
    // `:v2` records org.opencontainers.image.ref.name = v2 in index.json.
    skopeo_copy_ok(&[
        "--all",
        "--src-tls-verify=false",
        &format!("docker://{}/lib/multi:v2", src.host),
        &format!("oci-archive:{}:v2", file.display()),
    ]);

    dst.mark();
    let out = push(
        &file,
        &format!("{}/oci/multi", dst.host),
        &["--output", "json"],
    )
    .await;
    let r = report_ok(&out);
    assert_eq!(r["format"], "oci-archive");
    assert_eq!(r["tags"], serde_json::json!(["v2"]), "tag from ref.name");
    assert_eq!(r["digest"], idx.digest.as_str(), "byte-for-byte index");
    assert_eq!(r["media_type"], MT_OCI_INDEX);
    let blobs: std::collections::BTreeSet<&str> = idx
        .images
        .iter()
        .flat_map(|i| i.blobs().map(|b| b.digest.as_str()))
        .collect();
    assert_eq!(u(&r["blobs_uploaded"]), blobs.len() as u64, "{r}");
    assert_eq!(u(&r["manifests_put"]), 3, "{r}");
    assert_eq!(
        head_manifest(&dst.url(), "oci/multi", "v2", None, None)
            .await
            .as_deref(),
        Some(idx.digest.as_str())
    );
    assert_index_pushed(&dst, "oci/multi", "v2", &idx).await;

    // Bottom-up, from the destination's log: blob commits, then children by digest, then
    // the tag, last.
    let reqs = dst.requests();
    let pos = |pred: &dyn Fn(&Request) -> bool| -> Vec<usize> {
        reqs.iter()
            .enumerate()
            .filter(|(_, r)| pred(r))
            .map(|(i, _)| i)
            .collect()
    };
    let commits = pos(&|r| r.method == "PUT" && r.kind() == Kind::Upload);
    let children = pos(&|r| {
        r.method == "PUT" && r.kind() == Kind::Manifest && r.path.contains("/manifests/sha256:")
    });
    assert_eq!(commits.len(), blobs.len(), "{reqs:#?}");
    assert_eq!(children.len(), 2, "{reqs:#?}");
    assert!(commits.iter().max() < children.iter().min(), "{reqs:#?}");
    assert_eq!(
        writes(&reqs).last().map(|r| r.path.as_str()),
        Some("/v2/oci/multi/manifests/v2"),
        "the tag is the last write"
    );

    // 4. Again: nothing uploaded (no upload session opened), nothing written.
    dst.mark();
    let out = push(
        &file,
        &format!("{}/oci/multi", dst.host),
        &["--output", "json"],
    )
    .await;
    let r = report_ok(&out);
    assert_eq!(r["unchanged"], true, "{r}");
    assert_eq!(u(&r["blobs_uploaded"]), 0, "{r}");
    let reqs = dst.requests();
    assert_eq!(
        count(&reqs, "POST", Kind::Upload),
        0,
        "no upload opened: {reqs:#?}"
    );
    assert!(writes(&reqs).is_empty(), "{reqs:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn push_oci_layout_directory_with_two_tags() {
    let src = Registry::start();
    let dst = Registry::start();
    let idx = two_platform_index(3200);
    push_index(&src.url(), "lib/multi", "v1", &idx, None, None).await;
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    skopeo_copy_ok(&[
        "--all",
        "--src-tls-verify=false",
        &format!("docker://{}/lib/multi:v1", src.host),
        &format!("oci:{}", layout.display()),
    ]);

    // 3. --dest without a tag, two --tag: both point at the source index digest.
    dst.mark();
    let out = push(
        &layout,
        &format!("{}/layout/app", dst.host),
        &["--tag", "v1", "--tag", "latest", "--output", "json"],
    )
    .await;
    let r = report_ok(&out);
    assert_eq!(r["format"], "oci-layout");
    assert_eq!(r["tags"], serde_json::json!(["v1", "latest"]));
    assert_eq!(r["digest"], idx.digest.as_str());
    for tag in ["v1", "latest"] {
        assert_eq!(
            head_manifest(&dst.url(), "layout/app", tag, None, None)
                .await
                .as_deref(),
            Some(idx.digest.as_str()),
            "{tag}"
        );
    }
    assert_index_pushed(&dst, "layout/app", "latest", &idx).await;
    let reqs = dst.requests();
    let tag_puts: Vec<&str> = writes(&reqs)
        .into_iter()
        .filter(|r| r.kind() == Kind::Manifest && !r.path.contains("sha256:"))
        .map(|r| r.path.as_str())
        .collect();
    assert_eq!(
        tag_puts,
        [
            "/v2/layout/app/manifests/v1",
            "/v2/layout/app/manifests/latest"
        ],
        "the first tag first, then the others, after everything else"
    );

    // --dest REPO:TAG plus --tag: the destination's tag is the first one.
    let out = push(
        &layout,
        &format!("{}/layout/app:v9", dst.host),
        &["--tag", "stable", "--output", "json"],
    )
    .await;
    let r = report_ok(&out);
    assert_eq!(r["tags"], serde_json::json!(["v9", "stable"]));
    assert_eq!(u(&r["blobs_uploaded"]), 0, "{r}");
    assert_eq!(
        u(&r["manifests_put"]),
        2,
        "two new tags, children present: {r}"
    );
}

// ---------------------------------------------------------------------------------------------
// 5. Corrupted archives: clear error, exit 1, no tag
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn truncated_docker_archive_fails_without_a_tag() {
    let src = Registry::start();
    let dst = Registry::start();
    let img = random_image(3300, &[200_000], "linux/amd64", Format::DockerV2);
    push_image(&src.url(), "lib/app", "v1", &img, None, None).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("app.tar");
    docker_archive(&src, "lib/app", "v1", &file, Some("example.com/app:v1"));

    // Cut the file in the middle of the big layer.
    let (name, offset, size) = entry_span(&file, |_, size| size > 150_000);
    let f = std::fs::OpenOptions::new().write(true).open(&file).unwrap();
    f.set_len(offset + size / 2).unwrap();
    drop(f);

    dst.mark();
    let out = push(&file, &format!("{}/cut/app:v1", dst.host), &[]).await;
    let msg = failed(&out, 1);
    assert!(msg.contains("truncated"), "{msg}");
    assert!(
        msg.contains(&name) || msg.contains("end-of-archive"),
        "{msg}"
    );
    assert_eq!(
        head_manifest(&dst.url(), "cut/app", "v1", None, None).await,
        None
    );
    assert!(
        writes(&dst.requests()).is_empty(),
        "refused before any write"
    );

    // A flipped byte inside an (uncompressed) docker-archive layer: its sha256 no longer
    // matches the config's diff ID.
    let file2 = dir.path().join("flip.tar");
    docker_archive(&src, "lib/app", "v1", &file2, None);
    let (_, offset, size) = entry_span(&file2, |_, size| size > 150_000);
    flip_byte(&file2, offset + size / 2);
    let out = push(&file2, &format!("{}/flip/app:v1", dst.host), &[]).await;
    let msg = failed(&out, 1);
    assert!(msg.contains("corrupted"), "{msg}");
    assert_eq!(
        head_manifest(&dst.url(), "flip/app", "v1", None, None).await,
        None
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn flipped_byte_in_an_oci_blob_is_caught_by_the_verifying_upload() {
    let src = Registry::start();
    let dst = Registry::start();
    let idx = two_platform_index(3400);
    push_index(&src.url(), "lib/multi", "v1", &idx, None, None).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("multi.tar");
    skopeo_copy_ok(&[
        "--all",
        "--src-tls-verify=false",
        &format!("docker://{}/lib/multi:v1", src.host),
        &format!("oci-archive:{}:v1", file.display()),
    ]);
    // The biggest layer (20 000 random bytes, gzip-stored) of the amd64 image.
    let big = idx.images[0]
        .layers
        .iter()
        .max_by_key(|l| l.data.len())
        .unwrap();
    let hex = big.digest.trim_start_matches("sha256:").to_string();
    let (_, offset, size) = entry_span(&file, |name, _| name.ends_with(&hex));
    flip_byte(&file, offset + size / 2);

    let out = push(
        &file,
        &format!("{}/bad/multi", dst.host),
        &["--output", "json"],
    )
    .await;
    let msg = failed(&out, 1);
    assert!(msg.contains("digest mismatch"), "{msg}");
    assert!(msg.contains(&big.digest), "names the blob: {msg}");
    assert_eq!(
        head_manifest(&dst.url(), "bad/multi", "v1", None, None).await,
        None
    );
    assert!(
        !head_blob(&dst.url(), "bad/multi", &big.digest, None, None).await,
        "the corrupt blob was not committed"
    );
    let reqs = dst.requests();
    assert_eq!(
        count(&reqs, "PUT", Kind::Manifest),
        0,
        "no manifest at all: {reqs:#?}"
    );
}

// ---------------------------------------------------------------------------------------------
// 6. Usage errors: no tag anywhere, compressed tarball
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn no_tag_anywhere_and_compressed_archives_are_usage_errors() {
    let src = Registry::start();
    let dst = Registry::start();
    let img = random_image(3500, &[4096], "linux/amd64", Format::Oci);
    push_image(&src.url(), "lib/app", "v1", &img, None, None).await;
    let dir = tempfile::tempdir().unwrap();
    let oci = dir.path().join("untagged.tar");
    skopeo_copy_ok(&[
        "--src-tls-verify=false",
        &format!("docker://{}/lib/app:v1", src.host),
        &format!("oci-archive:{}", oci.display()),
    ]);
    let dock = dir.path().join("untagged-docker.tar");
    docker_archive(&src, "lib/app", "v1", &dock, None);

    dst.mark();
    for file in [&oci, &dock] {
        let out = push(file, &format!("{}/x/app", dst.host), &[]).await;
        let msg = failed(&out, 2);
        assert!(msg.contains("no tag"), "{msg}");
        assert!(msg.contains("--tag"), "says what to do: {msg}");
    }
    assert!(dst.requests().is_empty(), "no request at all");

    // With a tag it works, and the OCI manifest is pushed byte for byte.
    let out = push(
        &oci,
        &format!("{}/x/app:v1", dst.host),
        &["--output", "json"],
    )
    .await;
    let r = report_ok(&out);
    assert_eq!(r["digest"], img.digest.as_str());

    // A gzip-compressed tarball cannot be read in place.
    let gz = dir.path().join("untagged.tar.gz");
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut enc, &std::fs::read(&oci).unwrap()).unwrap();
    std::fs::write(&gz, enc.finish().unwrap()).unwrap();
    let out = push(&gz, &format!("{}/x/app:v1", dst.host), &[]).await;
    let msg = failed(&out, 2);
    assert!(msg.contains("decompress it first"), "{msg}");

    // A missing file, and a digest as destination.
    let out = push(
        &dir.path().join("nope.tar"),
        &format!("{}/x/app:v1", dst.host),
        &[],
    )
    .await;
    failed(&out, 2);
    let out = push(&oci, &format!("{}/x/app@{}", dst.host, img.digest), &[]).await;
    failed(&out, 2);
}

// ---------------------------------------------------------------------------------------------
// ECR destination: moto token + --registry-endpoint
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn push_into_ecr_via_moto_token_and_registry_endpoint() {
    let moto = Moto::start();
    let ecr = Registry::start_htpasswd(MOTO_ECR_USER, MOTO_ECR_PASSWORD);
    let src = Registry::start();
    let idx = two_platform_index(3600);
    push_index(&src.url(), "lib/multi", "v1", &idx, None, None).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("multi.tar");
    skopeo_copy_ok(&[
        "--all",
        "--src-tls-verify=false",
        &format!("docker://{}/lib/multi:v1", src.host),
        &format!("oci-archive:{}:v1", file.display()),
    ]);
    let file_s = file.display().to_string();
    let dest = format!("{MOTO_ACCOUNT_ID}.dkr.ecr.us-east-1.amazonaws.com/mirror/multi");
    let endpoint = ecr.url();
    let out = run_async(
        &[
            "push",
            "--archive",
            &file_s,
            "--dest",
            &dest,
            "--tag",
            "v1",
            "--registry-endpoint",
            &endpoint,
            "--dest-tls-verify=false",
            "--output",
            "json",
        ],
        &moto.env(),
    )
    .await;
    let r = report_ok(&out);
    assert_eq!(r["digest"], idx.digest.as_str());
    assert_eq!(
        head_manifest(&ecr.url(), "mirror/multi", "v1", ecr.auth(), None)
            .await
            .as_deref(),
        Some(idx.digest.as_str())
    );
}
