//! `ecr-mirror-sync copy` end to end: the release binary against real `docker-registry`
//! instances (plain, htpasswd, TLS), moto for ECR credentials, skopeo as an independent
//! writer of Docker v2s2 lists, and the in-process FaultProxy for corrupt and slow sources.
//!
//! Every assertion about writes comes from the destination registry's own access log
//! (`Registry::requests()` after `mark()`), never from the product's report alone.

use std::collections::BTreeSet;
use std::os::unix::process::ExitStatusExt as _;
use std::process::Output;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::support::{
    count, describe, get_blob, get_manifest, head_blob, head_manifest, image_with_layers, index_of,
    json_line, product_command, push_image, push_index, random_image, random_layer, run_async,
    sha256_digest, skopeo_copy_ok, Fault, FaultProxy, Format, Hostile, HostileAuth, Image, Index,
    Kind, Moto, Registry, RegistryOptions, Reply, Request, Rule, Schedule, MOTO_ACCOUNT_ID,
    MOTO_ECR_PASSWORD, MOTO_ECR_USER, MT_DOCKER_LIST, MT_DOCKER_MANIFEST, MT_OCI_INDEX,
};

const SOURCE_DIGEST_ANNOTATION: &str = "io.github.ecr-mirror-sync.source-digest";
const PLAIN: [&str; 2] = ["--src-tls-verify=false", "--dest-tls-verify=false"];

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// `copy --src SRC --dest DEST --output json EXTRA...`, run without blocking the runtime.
async fn copy(src: &str, dest: &str, extra: &[&str], envs: &[(String, String)]) -> Output {
    let mut args = vec!["copy", "--src", src, "--dest", dest, "--output", "json"];
    args.extend_from_slice(extra);
    run_async(&args, envs).await
}

/// Plain-HTTP copy with no extra environment.
async fn copy_plain(src: &str, dest: &str, extra: &[&str]) -> Output {
    let mut all = PLAIN.to_vec();
    all.extend_from_slice(extra);
    copy(src, dest, &all, &[]).await
}

fn text(out: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
/// Asserts exit 0 and returns `data.report` of the `copy` line.
fn report_ok(out: &Output) -> Value {
    assert_eq!(out.status.code(), Some(0), "copy failed\n{}", describe(out));
    json_line(out, "copy")["data"]["report"].clone()
}

/// Asserts `code` and returns the `error` line's message.
fn error_message(out: &Output, code: i32) -> String {
    assert_eq!(
        out.status.code(),
        Some(code),
        "expected exit {code}\n{}",
        describe(out)
    );
    json_line(out, "error")["data"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("error line without a message\n{}", describe(out)))
        .to_string()
}

fn u(v: &Value) -> u64 {
    v.as_u64()
        .unwrap_or_else(|| panic!("not an unsigned number: {v}"))
}

/// Requests that write: PUT, PATCH, POST, DELETE of any kind.
fn writes(reqs: &[Request]) -> Vec<&Request> {
    reqs.iter()
        .filter(|r| matches!(r.method.as_str(), "PUT" | "PATCH" | "POST" | "DELETE"))
        .collect()
}

/// Blob upload commits (`PUT .../blobs/uploads/<id>?digest=...`) naming `digest` that the
/// registry accepted (a PUT whose body stream we cut short is refused, not committed).
fn commits_of(reqs: &[Request], digest: &str) -> usize {
    let hex = digest.trim_start_matches("sha256:");
    reqs.iter()
        .filter(|r| r.method == "PUT" && r.kind() == Kind::Upload && r.status == 201)
        .filter(|r| r.query.as_deref().unwrap_or("").contains(hex))
        .count()
}

/// Unique blobs (configs and layers) of these images.
fn unique_blobs<'a>(images: impl IntoIterator<Item = &'a Image>) -> BTreeSet<String> {
    images
        .into_iter()
        .flat_map(|i| i.blobs().map(|b| b.digest.clone()))
        .collect()
}

/// The destination holds the whole image (manifest bytes and every blob's bytes) in `repo`.
async fn assert_image_complete(reg: &Registry, repo: &str, img: &Image) {
    let (bytes, ct) = get_manifest(&reg.url(), repo, &img.digest, reg.auth(), reg.ca_dir())
        .await
        .unwrap_or_else(|| panic!("{repo}@{} missing", img.digest));
    assert_eq!(bytes, img.manifest, "{repo}@{}: bytes differ", img.digest);
    assert_eq!(ct, img.media_type);
    for b in img.blobs() {
        let got = get_blob(&reg.url(), repo, &b.digest, reg.auth(), reg.ca_dir())
            .await
            .unwrap_or_else(|| panic!("blob {} missing in {repo}", b.digest));
        assert!(got == b.data, "blob {} in {repo}: bytes differ", b.digest);
    }
}

async fn assert_index_complete(reg: &Registry, repo: &str, tag: &str, idx: &Index) {
    let (bytes, ct) = get_manifest(&reg.url(), repo, tag, reg.auth(), reg.ca_dir())
        .await
        .unwrap_or_else(|| panic!("{repo}:{tag} missing"));
    assert_eq!(bytes, idx.manifest, "{repo}:{tag}: index bytes differ");
    assert_eq!(ct, idx.media_type);
    for img in &idx.images {
        assert_image_complete(reg, repo, img).await;
    }
}

fn two_platform_index(seed: u64, format: Format) -> Index {
    index_of(
        vec![
            random_image(seed, &[4096, 20_000], "linux/amd64", format),
            random_image(seed + 1, &[8192], "linux/arm64", format),
        ],
        format,
    )
}

// ---------------------------------------------------------------------------------------------
// 1, 2. Digest preservation (OCI index, Docker v2s2 list written by skopeo)
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn copy_oci_index_all_preserves_digest_bottom_up() {
    let src = Registry::start();
    let dst = Registry::start();
    let idx = two_platform_index(1000, Format::Oci);
    push_index(&src.url(), "lib/app", "v1", &idx, None, None).await;

    // --dest without a tag keeps the source tag; --all is the default.
    let out = copy_plain(
        &format!("{}/lib/app:v1", src.host),
        &format!("{}/mirror/app", dst.host),
        &[],
    )
    .await;
    let report = report_ok(&out);

    let head = head_manifest(&dst.url(), "mirror/app", "v1", None, None).await;
    assert_eq!(head.as_deref(), Some(idx.digest.as_str()), "digest changed");
    assert_eq!(
        head_manifest(&src.url(), "lib/app", "v1", None, None).await,
        head
    );
    assert_index_complete(&dst, "mirror/app", "v1", &idx).await;

    let blobs = unique_blobs(&idx.images);
    assert_eq!(report["source_digest"], idx.digest.as_str());
    assert_eq!(report["digest"], idx.digest.as_str());
    assert_eq!(report["unchanged"], false);
    assert_eq!(u(&report["blobs_uploaded"]), blobs.len() as u64, "{report}");
    assert_eq!(u(&report["manifests_put"]), 3, "{report}");
    let platforms: BTreeSet<(String, String)> =
        serde_json::from_value(report["platforms"].clone()).expect("platforms pairs");
    let want: BTreeSet<(String, String)> = idx
        .images
        .iter()
        .map(|i| {
            (
                format!("{}/{}", i.platform.0, i.platform.1),
                i.digest.clone(),
            )
        })
        .collect();
    assert_eq!(platforms, want);

    // Bottom-up, from the destination's own log: every blob commit, then the children by
    // digest, then the tag, last, exactly once.
    // Each blob is one POST + one PUT carrying the body: no PATCH.
    let reqs = dst.requests();
    assert_eq!(count(&reqs, "POST", Kind::Upload), blobs.len(), "{reqs:#?}");
    assert_eq!(count(&reqs, "PATCH", Kind::Upload), 0, "{reqs:#?}");
    for d in &blobs {
        assert_eq!(commits_of(&reqs, d), 1, "blob {d} committed once");
    }
    let pos = |pred: &dyn Fn(&Request) -> bool| -> Vec<usize> {
        reqs.iter()
            .enumerate()
            .filter(|(_, r)| pred(r))
            .map(|(i, _)| i)
            .collect()
    };
    let blob_commits = pos(&|r| r.method == "PUT" && r.kind() == Kind::Upload);
    let child_puts = pos(&|r| {
        r.method == "PUT" && r.kind() == Kind::Manifest && r.path.contains("/manifests/sha256:")
    });
    let tag_puts = pos(&|r| r.method == "PUT" && r.path == "/v2/mirror/app/manifests/v1");
    assert_eq!(child_puts.len(), 2, "{reqs:#?}");
    assert_eq!(tag_puts.len(), 1, "{reqs:#?}");
    // Children are copied concurrently, so one child's manifest may land while another
    // child's blobs are still uploading; what must hold is that every blob is committed
    // before the tag (and the registry itself refuses a manifest whose blobs it lacks).
    assert!(
        blob_commits.iter().max() < tag_puts.first(),
        "the tag was PUT before all blobs were committed: {reqs:#?}"
    );
    assert!(
        child_puts.iter().max() < tag_puts.first(),
        "the tag was PUT before a child: {reqs:#?}"
    );
    assert_eq!(
        writes(&reqs).last().map(|r| r.path.as_str()),
        Some("/v2/mirror/app/manifests/v1"),
        "the tag must be the last write"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn copy_docker_v2s2_list_from_skopeo_preserves_digest_and_media_type() {
    let src = Registry::start();
    let dst = Registry::start();
    let idx = two_platform_index(1100, Format::Oci);
    push_index(&src.url(), "oci/app", "v1", &idx, None, None).await;
    // skopeo converts the OCI index (and children) into a Docker manifest list.
    skopeo_copy_ok(&[
        "--all",
        "--format",
        "v2s2",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        &format!("docker://{}/oci/app:v1", src.host),
        &format!("docker://{}/docker/app:v1", src.host),
    ]);
    let (list, ct) = get_manifest(&src.url(), "docker/app", "v1", None, None)
        .await
        .expect("skopeo wrote the list");
    assert_eq!(ct, MT_DOCKER_LIST, "skopeo did not write a Docker list");
    let list_digest = sha256_digest(&list);
    let children: Vec<String> = serde_json::from_slice::<Value>(&list).unwrap()["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["digest"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(children.len(), 2);

    let out = copy_plain(
        &format!("{}/docker/app:v1", src.host),
        &format!("{}/mirror/docker:v1", dst.host),
        &[],
    )
    .await;
    let report = report_ok(&out);
    assert_eq!(report["digest"], list_digest.as_str());

    let head = head_manifest(&dst.url(), "mirror/docker", "v1", None, None).await;
    assert_eq!(
        head.as_deref(),
        Some(list_digest.as_str()),
        "digest changed"
    );
    let (bytes, ct) = get_manifest(&dst.url(), "mirror/docker", "v1", None, None)
        .await
        .unwrap();
    assert_eq!(bytes, list, "list bytes differ");
    assert_eq!(ct, MT_DOCKER_LIST);
    for c in &children {
        let (src_bytes, _) = get_manifest(&src.url(), "docker/app", c, None, None)
            .await
            .unwrap();
        let (dst_bytes, ct) = get_manifest(&dst.url(), "mirror/docker", c, None, None)
            .await
            .unwrap_or_else(|| panic!("child {c} missing"));
        assert_eq!(dst_bytes, src_bytes, "child {c} bytes differ");
        assert_eq!(ct, MT_DOCKER_MANIFEST);
        let m: Value = serde_json::from_slice(&dst_bytes).unwrap();
        let mut blobs = vec![m["config"]["digest"].as_str().unwrap().to_string()];
        for l in m["layers"].as_array().unwrap() {
            blobs.push(l["digest"].as_str().unwrap().to_string());
        }
        for b in blobs {
            assert!(
                head_blob(&dst.url(), "mirror/docker", &b, None, None).await,
                "blob {b} of child {c} missing"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 3. Idempotence
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn second_copy_uploads_nothing_all_and_filtered() {
    let src = Registry::start();
    let dst = Registry::start();
    let idx = two_platform_index(1200, Format::Oci);
    push_index(&src.url(), "lib/app", "v1", &idx, None, None).await;
    let s = format!("{}/lib/app:v1", src.host);

    for (dest_repo, extra) in [
        ("mirror/all", vec![]),
        ("mirror/arm", vec!["--platform", "linux/arm64"]),
    ] {
        let d = format!("{}/{dest_repo}:v1", dst.host);
        let first = report_ok(&copy_plain(&s, &d, &extra).await);
        assert_eq!(first["unchanged"], false, "{dest_repo}: {first}");

        dst.mark();
        src.mark();
        let out = copy_plain(&s, &d, &extra).await;
        let report = report_ok(&out);
        let reqs = dst.requests();
        assert!(
            writes(&reqs).is_empty(),
            "{dest_repo}: the second copy wrote to the destination: {:#?}",
            writes(&reqs)
        );
        assert_eq!(report["unchanged"], true, "{dest_repo}: {report}");
        assert_eq!(u(&report["blobs_uploaded"]), 0);
        assert_eq!(u(&report["manifests_put"]), 0);
        assert_eq!(report["digest"], first["digest"], "{dest_repo}");
        assert_eq!(report["source_digest"], idx.digest.as_str());
        // The source is only HEADed: no blob or manifest bodies are fetched.
        let sreqs = src.requests();
        assert_eq!(count(&sreqs, "GET", Kind::Blob), 0, "{sreqs:#?}");
    }
}

// ---------------------------------------------------------------------------------------------
// 4. A shared base layer is uploaded once
// ---------------------------------------------------------------------------------------------

/// `copy` takes one image per run, and the product mounts only blobs it uploaded earlier in
/// the same run, so the shared-layer case that a single run can meet is an index whose
/// children share a layer: it must be uploaded exactly once.
#[tokio::test(flavor = "multi_thread")]
async fn shared_base_layer_in_one_index_is_uploaded_once() {
    let src = Registry::start();
    let dst = Registry::start();
    let base = random_layer(1300, 300_000, Format::Oci);
    let a = image_with_layers(
        vec![base.clone(), random_layer(1301, 5000, Format::Oci)],
        "linux/amd64",
        Format::Oci,
    );
    let b = image_with_layers(
        vec![base.clone(), random_layer(1302, 6000, Format::Oci)],
        "linux/arm64",
        Format::Oci,
    );
    let idx = index_of(vec![a, b], Format::Oci);
    push_index(&src.url(), "lib/base", "v1", &idx, None, None).await;
    let blobs = unique_blobs(&idx.images);
    assert_eq!(blobs.len(), 5, "2 configs, 2 own layers, 1 shared layer");

    let out = copy_plain(
        &format!("{}/lib/base:v1", src.host),
        &format!("{}/mirror/base:v1", dst.host),
        &[],
    )
    .await;
    let report = report_ok(&out);
    let reqs = dst.requests();
    assert_eq!(
        count(&reqs, "POST", Kind::Upload),
        blobs.len(),
        "one upload per unique blob: {reqs:#?}"
    );
    assert_eq!(count(&reqs, "PUT", Kind::Upload), blobs.len(), "{reqs:#?}");
    assert_eq!(
        commits_of(&reqs, &base.digest),
        1,
        "shared layer committed once"
    );
    let src_reqs = src.requests();
    let base_gets = src_reqs
        .iter()
        .filter(|r| r.method == "GET" && r.path.ends_with(&base.digest))
        .count();
    assert_eq!(base_gets, 1, "shared layer read from the source once");
    assert_eq!(u(&report["blobs_uploaded"]), 5, "{report}");
    assert_eq!(
        u(&report["blobs_uploaded"]) + u(&report["blobs_mounted"]) + u(&report["blobs_skipped"]),
        6,
        "every blob reference accounted for: {report}"
    );
    assert_eq!(u(&report["bytes"]), {
        let s: u64 = idx
            .images
            .iter()
            .flat_map(|i| i.blobs())
            .filter(|b| b.digest != base.digest)
            .map(|b| b.size())
            .sum();
        s + base.size()
    });
    assert_index_complete(&dst, "mirror/base", "v1", &idx).await;
}

/// Every blob, small or big, goes up as POST + one PUT carrying the body (the spec's monolithic
/// upload): exactly two requests per uploaded blob, no PATCH, each blob committed once, and the
/// image arrives whole.
#[tokio::test(flavor = "multi_thread")]
async fn every_blob_uploads_as_post_and_one_put_whatever_its_size() {
    let src = Registry::start();
    let dst = Registry::start();
    let big = random_layer(1400, 3 << 20, Format::Oci);
    let small = random_layer(1401, 10_000, Format::Oci);
    assert!(big.size() > 1 << 20 && small.size() < 1 << 20);
    let img = image_with_layers(vec![big.clone(), small], "linux/amd64", Format::Oci);
    push_image(&src.url(), "lib/mixed", "v1", &img, None, None).await;
    let out = copy_plain(
        &format!("{}/lib/mixed:v1", src.host),
        &format!("{}/mirror/mixed:v1", dst.host),
        &[],
    )
    .await;
    let report = report_ok(&out);
    assert_eq!(
        u(&report["blobs_uploaded"]),
        3,
        "config + 2 layers: {report}"
    );
    let reqs = dst.requests();
    let uploads: Vec<&Request> = writes(&reqs)
        .into_iter()
        .filter(|r| r.kind() == Kind::Upload)
        .collect();
    assert_eq!(uploads.len(), 2 * 3, "two requests per blob: {uploads:#?}");
    assert_eq!(count(&reqs, "POST", Kind::Upload), 3, "{reqs:#?}");
    assert_eq!(count(&reqs, "PUT", Kind::Upload), 3, "{reqs:#?}");
    assert_eq!(count(&reqs, "PATCH", Kind::Upload), 0, "{reqs:#?}");
    for b in img.blobs() {
        assert_eq!(
            commits_of(&reqs, &b.digest),
            1,
            "blob {} committed once",
            b.digest
        );
    }
    assert_image_complete(&dst, "mirror/mixed", &img).await;
    assert_eq!(
        head_manifest(&dst.url(), "mirror/mixed", "v1", None, None)
            .await
            .as_deref(),
        Some(img.digest.as_str())
    );
}

/// cosign `.sig` tags are found through one tag listing per source repository. A complete
/// list without the image's `.sig` tag means no request for it at all; a list that continues on
/// a next page (`Link`) is not trusted to be complete, so the copy HEADs the `.sig` tag, finds
/// it and copies it along.
#[tokio::test(flavor = "multi_thread")]
async fn signature_tags_found_by_one_listing_or_a_head_when_the_list_is_paged() {
    let h = Hostile::start(HostileAuth::None).await;
    let dst = Registry::start();
    let img = random_image(1500, &[3000], "linux/amd64", Format::Oci);
    let sig = random_image(1501, &[500], "linux/amd64", Format::Oci);
    let sig_tag = format!("{}.sig", img.digest.replacen(':', "-", 1));
    let list = |repo: &str| {
        Reply::manifest(
            format!(r#"{{"name":"{repo}","tags":["v1"]}}"#),
            "application/json",
        )
    };
    h.serve_image("lib/one", "v1", &img);
    h.route("/v2/lib/one/tags/list", list("lib/one"));
    h.serve_image("lib/paged", "v1", &img);
    h.serve_image("lib/paged", &sig_tag, &sig);
    h.route(
        "/v2/lib/paged/tags/list",
        list("lib/paged").header(
            "link",
            r#"</v2/lib/paged/tags/list?last=v1&n=1>; rel="next""#,
        ),
    );

    for repo in ["lib/one", "lib/paged"] {
        let out = copy_plain(
            &format!("{}/{repo}:v1", h.host),
            &format!("{}/mirror/{repo}:v1", dst.host),
            &[],
        )
        .await;
        report_ok(&out);
        assert_eq!(
            h.seen_at(&format!("/v2/{repo}/tags/list")).len(),
            1,
            "{repo}: one listing"
        );
    }
    let one_sig = h.seen_at(&format!("/v2/lib/one/manifests/{sig_tag}"));
    assert!(
        one_sig.is_empty(),
        "complete list: no .sig lookup: {one_sig:?}"
    );
    let paged_sig = h.seen_at(&format!("/v2/lib/paged/manifests/{sig_tag}"));
    assert!(
        paged_sig.iter().any(|s| s.method == "HEAD"),
        "paged list: the .sig tag is HEADed: {paged_sig:?}"
    );
    assert_eq!(
        head_manifest(&dst.url(), "mirror/lib/paged", &sig_tag, None, None)
            .await
            .as_deref(),
        Some(sig.digest.as_str()),
        "the signature travelled with the image"
    );
    assert_eq!(
        head_manifest(&dst.url(), "mirror/lib/one", &sig_tag, None, None).await,
        None
    );
}

// ---------------------------------------------------------------------------------------------
// 5. Platform filter
// ---------------------------------------------------------------------------------------------

/// The destination tag's index, parsed, after a filtered copy; checks the one child it lists.
async fn assert_filtered(dst: &Registry, repo: &str, idx: &Index, keep: usize, report: &Value) {
    let kept = &idx.images[keep];
    let dropped = &idx.images[1 - keep];
    let (bytes, ct) = get_manifest(&dst.url(), repo, "v1", None, None)
        .await
        .unwrap_or_else(|| panic!("{repo}:v1 missing"));
    assert_eq!(ct, MT_OCI_INDEX);
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    let entries = v["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{repo}: {v}");
    assert_eq!(entries[0]["digest"], kept.digest.as_str());
    assert_eq!(
        entries[0]["platform"]["architecture"],
        kept.platform.1.as_str()
    );
    assert_eq!(
        v["annotations"][SOURCE_DIGEST_ANNOTATION],
        idx.digest.as_str(),
        "{repo}: source-digest annotation: {v}"
    );
    // The child is byte-identical, so its digest is the source child's.
    assert_image_complete(dst, repo, kept).await;
    assert_eq!(
        head_manifest(&dst.url(), repo, &dropped.digest, None, None).await,
        None,
        "{repo}: the {} child must not be copied",
        dropped.platform.1
    );
    for b in dropped.blobs() {
        assert!(!head_blob(&dst.url(), repo, &b.digest, None, None).await);
    }
    assert_eq!(report["source_digest"], idx.digest.as_str());
    assert_eq!(report["digest"], sha256_digest(&bytes).as_str());
    assert_ne!(report["digest"], idx.digest.as_str());
    let platforms: Vec<(String, String)> =
        serde_json::from_value(report["platforms"].clone()).unwrap();
    assert_eq!(
        platforms,
        vec![(format!("linux/{}", kept.platform.1), kept.digest.clone())]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn platform_filter_keeps_child_digests_and_annotates_source_index() {
    let src = Registry::start();
    let dst = Registry::start();
    let idx = two_platform_index(1400, Format::Oci);
    assert_eq!(idx.images[1].platform.1, "arm64");
    push_index(&src.url(), "lib/app", "v1", &idx, None, None).await;
    let s = format!("{}/lib/app:v1", src.host);

    let out = copy_plain(
        &s,
        &format!("{}/mirror/arm:v1", dst.host),
        &["--platform", "linux/arm64"],
    )
    .await;
    let report = report_ok(&out);
    assert_filtered(&dst, "mirror/arm", &idx, 1, &report).await;

    let out = copy_plain(
        &s,
        &format!("{}/mirror/amd:v1", dst.host),
        &["--override-os", "linux", "--override-arch", "amd64"],
    )
    .await;
    let report = report_ok(&out);
    assert_filtered(&dst, "mirror/amd", &idx, 0, &report).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn platform_filter_matching_nothing_fails_and_writes_no_tag() {
    let src = Registry::start();
    let dst = Registry::start();
    let idx = two_platform_index(1500, Format::Oci);
    push_index(&src.url(), "lib/app", "v1", &idx, None, None).await;
    dst.mark();

    let out = copy_plain(
        &format!("{}/lib/app:v1", src.host),
        &format!("{}/mirror/none:v1", dst.host),
        &["--platform", "linux/s390x"],
    )
    .await;
    let msg = error_message(&out, 1);
    for want in ["linux/s390x", "linux/amd64", "linux/arm64"] {
        assert!(msg.contains(want), "message lacks {want:?}: {msg}");
    }
    assert_eq!(
        head_manifest(&dst.url(), "mirror/none", "v1", None, None).await,
        None
    );
    let reqs = dst.requests();
    assert!(writes(&reqs).is_empty(), "{:#?}", writes(&reqs));
}

// ---------------------------------------------------------------------------------------------
// 6. htpasswd auth
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn htpasswd_source_and_destination_with_every_credential_flag() {
    let src = Registry::start_htpasswd("srcuser", "src-Pass-1");
    let dst = Registry::start_htpasswd("dstuser", "dst-Pass-2");
    let img = random_image(1600, &[10_000], "linux/amd64", Format::Oci);
    push_image(&src.url(), "lib/app", "v1", &img, src.auth(), None).await;
    let s = format!("{}/lib/app:v1", src.host);

    // --src-creds + --dest-username/--dest-password
    let out = copy_plain(
        &s,
        &format!("{}/mirror/a:v1", dst.host),
        &[
            "--src-creds",
            "srcuser:src-Pass-1",
            "--dest-username",
            "dstuser",
            "--dest-password",
            "dst-Pass-2",
        ],
    )
    .await;
    assert_eq!(report_ok(&out)["digest"], img.digest.as_str());
    assert_eq!(
        head_manifest(&dst.url(), "mirror/a", "v1", dst.auth(), None)
            .await
            .as_deref(),
        Some(img.digest.as_str())
    );

    // --src-authfile (a docker config.json) + --dest-creds
    let dir = tempfile::tempdir().unwrap();
    let authfile = dir.path().join("config.json");
    let enc = base64::engine::general_purpose::STANDARD.encode("srcuser:src-Pass-1");
    std::fs::write(
        &authfile,
        serde_json::json!({"auths": {src.host.as_str(): {"auth": enc}}}).to_string(),
    )
    .unwrap();
    let out = copy_plain(
        &s,
        &format!("{}/mirror/b:v1", dst.host),
        &[
            "--src-authfile",
            authfile.to_str().unwrap(),
            "--dest-creds",
            "dstuser:dst-Pass-2",
        ],
    )
    .await;
    assert_eq!(report_ok(&out)["digest"], img.digest.as_str());
    assert_image_complete(&dst, "mirror/b", &img).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_credentials_fail_clearly_without_leaking_the_password() {
    let src = Registry::start_htpasswd("srcuser", "src-Pass-1");
    let dst = Registry::start_htpasswd("dstuser", "dst-Pass-2");
    let img = random_image(1650, &[10_000], "linux/amd64", Format::Oci);
    push_image(&src.url(), "lib/app", "v1", &img, src.auth(), None).await;
    let s = format!("{}/lib/app:v1", src.host);
    let d = format!("{}/mirror/app:v1", dst.host);
    const BAD_SRC: &str = "Wr0ng-src-Secret-7f3a";
    const BAD_DST: &str = "Wr0ng-dst-Secret-91cc";

    // JSON output, debug logging on: neither stream may carry the password.
    let bad_src = format!("srcuser:{BAD_SRC}");
    let out = copy_plain(
        &s,
        &d,
        &[
            "--debug",
            "--src-creds",
            &bad_src,
            "--dest-creds",
            "dstuser:dst-Pass-2",
        ],
    )
    .await;
    let msg = error_message(&out, 1);
    assert!(msg.contains(&src.host), "names the registry: {msg}");
    assert!(msg.contains("srcuser"), "names the user: {msg}");
    assert!(
        msg.to_lowercase().contains("auth"),
        "says it is an authentication failure: {msg}"
    );
    assert!(
        !text(&out).contains(BAD_SRC),
        "password leaked:\n{}",
        text(&out)
    );

    // Text output (error on stderr), wrong destination password.
    dst.mark();
    let out = run_async(
        &[
            "copy",
            "--src",
            &s,
            "--dest",
            &d,
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            "--debug",
            "--src-username",
            "srcuser",
            "--src-password",
            "src-Pass-1",
            "--dest-username",
            "dstuser",
            "--dest-password",
            BAD_DST,
        ],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let err_line = stderr
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_else(|| panic!("no error line\n{}", describe(&out)));
    assert!(
        err_line.contains(&dst.host),
        "names the registry: {err_line}"
    );
    assert!(err_line.contains("dstuser"), "names the user: {err_line}");
    assert!(
        !text(&out).contains(BAD_DST),
        "password leaked:\n{}",
        text(&out)
    );
    assert_eq!(
        head_manifest(&dst.url(), "mirror/app", "v1", dst.auth(), None).await,
        None
    );
    let reqs = dst.requests();
    assert!(
        reqs.iter()
            .filter(|r| r.method == "PUT")
            .all(|r| r.status == 401),
        "nothing may be written with wrong credentials: {reqs:#?}"
    );
}

// ---------------------------------------------------------------------------------------------
// 7. TLS
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn tls_registries_with_cert_dirs_and_a_clear_error_without() {
    let tls = RegistryOptions {
        tls: true,
        htpasswd: None,
    };
    let src = Registry::start_with(tls.clone());
    let dst = Registry::start_with(tls);
    let img = random_image(1700, &[10_000], "linux/amd64", Format::Oci);
    push_image(&src.url(), "lib/app", "v1", &img, None, src.ca_dir()).await;
    let s = format!("{}/lib/app:v1", src.host);
    let src_ca = src.ca_dir().unwrap().to_str().unwrap().to_string();
    let dst_ca = dst.ca_dir().unwrap().to_str().unwrap().to_string();

    let out = copy(
        &s,
        &format!("{}/mirror/app:v1", dst.host),
        &["--src-cert-dir", &src_ca, "--dest-cert-dir", &dst_ca],
        &[],
    )
    .await;
    assert_eq!(report_ok(&out)["digest"], img.digest.as_str());
    assert_eq!(
        head_manifest(&dst.url(), "mirror/app", "v1", None, dst.ca_dir())
            .await
            .as_deref(),
        Some(img.digest.as_str())
    );

    // Verification on, destination CA not given: a TLS error, exit 1, nothing written.
    dst.mark();
    let started = Instant::now();
    let out = copy(
        &s,
        &format!("{}/mirror/other:v1", dst.host),
        &["--src-cert-dir", &src_ca],
        &[],
    )
    .await;
    let msg = error_message(&out, 1);
    let lower = msg.to_lowercase();
    assert!(msg.contains(&dst.host), "names the registry: {msg}");
    assert!(
        lower.contains("certificate") || lower.contains("tls"),
        "not a clear TLS error: {msg}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "a certificate error is not transient and must not be retried for {:?}",
        started.elapsed()
    );
    assert_eq!(
        head_manifest(&dst.url(), "mirror/other", "v1", None, dst.ca_dir()).await,
        None
    );
}

// ---------------------------------------------------------------------------------------------
// 8. ECR destination (moto + htpasswd registry)
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn ecr_destination_via_moto_token_and_registry_endpoint() {
    let moto = Moto::start();
    let ecr = Registry::start_htpasswd(MOTO_ECR_USER, MOTO_ECR_PASSWORD);
    let src = Registry::start();
    let idx = two_platform_index(1800, Format::Oci);
    push_index(&src.url(), "lib/app", "v1", &idx, None, None).await;

    let endpoint = ecr.url();
    let out = copy(
        &format!("{}/lib/app:v1", src.host),
        &format!("{MOTO_ACCOUNT_ID}.dkr.ecr.us-east-1.amazonaws.com/mirror/app:v1"),
        &[
            "--src-tls-verify=false",
            "--registry-endpoint",
            &endpoint,
            "--dest-tls-verify=false",
        ],
        &moto.env(),
    )
    .await;
    let report = report_ok(&out);
    assert_eq!(report["digest"], idx.digest.as_str());
    assert_eq!(
        head_manifest(&ecr.url(), "mirror/app", "v1", ecr.auth(), None)
            .await
            .as_deref(),
        Some(idx.digest.as_str())
    );
    assert_index_complete(&ecr, "mirror/app", "v1", &idx).await;
    // The registry only admits moto's token, so this also proves GetAuthorizationToken ran.
    let reqs = ecr.requests();
    assert!(reqs.iter().any(|r| r.method == "PUT" && r.status == 201));
}

// ---------------------------------------------------------------------------------------------
// 9. Corrupt blob
// ---------------------------------------------------------------------------------------------

/// A corrupt layer, small (200 kB) or big (3 MiB, streamed in many chunks in the one PUT),
/// is a digest mismatch: nothing committed, no tag, not re-fetched.
#[tokio::test(flavor = "multi_thread")]
async fn corrupt_source_blob_is_detected_and_no_tag_written() {
    for (seed, size) in [(1900, 200_000), (1901, 3 << 20)] {
        corrupt_source_blob_case(seed, size).await;
    }
}

async fn corrupt_source_blob_case(seed: u64, size: usize) {
    let src = Registry::start();
    let dst = Registry::start();
    let img = random_image(seed, &[size], "linux/amd64", Format::Oci);
    push_image(&src.url(), "lib/app", "v1", &img, None, None).await;
    let layer = img.layers[0].digest.clone();
    let proxy = FaultProxy::start(
        &src.url(),
        vec![Rule::new(
            &format!("/blobs/{layer}"),
            Fault::FlipByte,
            Schedule::Always,
        )
        .method("GET")],
    )
    .await;

    let out = copy_plain(
        &format!("{}/lib/app:v1", proxy.host),
        &format!("{}/mirror/app:v1", dst.host),
        &[],
    )
    .await;
    let msg = error_message(&out, 1);
    assert!(
        msg.to_lowercase().contains("digest mismatch"),
        "{size} B: not a digest-mismatch error: {msg}"
    );
    assert!(msg.contains(&layer), "names the blob: {msg}");
    assert!(proxy.faults_injected() >= 1, "the proxy flipped nothing");
    let layer_gets = proxy
        .hit_log()
        .iter()
        .filter(|h| h.method == "GET" && h.path.ends_with(&layer))
        .count();
    assert_eq!(layer_gets, 1, "a corrupt blob must not be re-fetched");

    assert_eq!(
        head_manifest(&dst.url(), "mirror/app", "v1", None, None).await,
        None,
        "the tag was written"
    );
    assert!(!head_blob(&dst.url(), "mirror/app", &layer, None, None).await);
    let reqs = dst.requests();
    assert_eq!(count(&reqs, "PUT", Kind::Manifest), 0, "{reqs:#?}");
    assert_eq!(count(&reqs, "PATCH", Kind::Upload), 0, "{reqs:#?}");
    assert_eq!(
        commits_of(&reqs, &layer),
        0,
        "{size} B: the corrupt blob was committed"
    );
}

// ---------------------------------------------------------------------------------------------
// 10. Killed midway
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn copy_killed_midway_leaves_destination_tag_as_it_was() {
    let src = Registry::start();
    let dst = Registry::start();
    let old = random_image(2000, &[4096], "linux/amd64", Format::Oci);
    push_image(&dst.url(), "mirror/app", "v1", &old, None, None).await;
    let new = index_of(
        vec![
            random_image(2001, &[2 << 20, 2 << 20], "linux/amd64", Format::Oci),
            random_image(2002, &[2 << 20], "linux/arm64", Format::Oci),
        ],
        Format::Oci,
    );
    push_index(&src.url(), "lib/app", "v1", &new, None, None).await;
    let proxy = FaultProxy::start(
        &src.url(),
        vec![Rule::new(
            "/blobs/sha256:",
            Fault::SlowBody {
                delay: Duration::from_secs(5),
            },
            Schedule::Always,
        )
        .method("GET")],
    )
    .await;
    dst.mark();

    let src_ref = format!("{}/lib/app:v1", proxy.host);
    let dst_ref = format!("{}/mirror/app:v1", dst.host);
    let args = [
        "copy", "--src", &src_ref, "--dest", &dst_ref, PLAIN[0], PLAIN[1],
    ];
    let mut child = tokio::process::Command::from(product_command(&args, &[]))
        .kill_on_drop(true)
        .spawn()
        .expect("spawn the product");

    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().await.unwrap();
            panic!(
                "the copy ended ({status}) before it could be killed\n{}",
                describe(&out)
            );
        }
        if count(&dst.requests(), "POST", Kind::Upload) > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "no upload started within 15 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    child.kill().await.expect("SIGKILL the copy");
    let status = child.wait().await.unwrap();
    assert_eq!(status.signal(), Some(9), "killed by SIGKILL, not finished");

    assert_eq!(
        head_manifest(&dst.url(), "mirror/app", "v1", None, None)
            .await
            .as_deref(),
        Some(old.digest.as_str()),
        "the tag moved"
    );
    let (bytes, _) = get_manifest(&dst.url(), "mirror/app", "v1", None, None)
        .await
        .unwrap();
    assert_eq!(bytes, old.manifest);
    assert_image_complete(&dst, "mirror/app", &old).await;
    assert_eq!(
        head_manifest(&dst.url(), "mirror/app", &new.digest, None, None).await,
        None
    );
    let reqs = dst.requests();
    assert_eq!(count(&reqs, "PUT", Kind::Manifest), 0, "{reqs:#?}");
}

// ---------------------------------------------------------------------------------------------
// 11. Docker schema 1: a clear refusal
// ---------------------------------------------------------------------------------------------

/// distribution 2.8 refuses schema-1 pushes, so a tiny in-process server plays a legacy
/// registry: `/v2/` answers 200 and one manifest is schema 1 (`v1+prettyjws`).
async fn serve_schema1(repo: &'static str) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let body = format!(
        r#"{{"schemaVersion":1,"name":"{repo}","tag":"v1","architecture":"amd64","fsLayers":[{{"blobSum":"sha256:a3ed95caeb02ffe68cdd9fd84406680ae93d633cb16422d00e8a7c22955b46d4"}}],"history":[{{"v1Compatibility":"{{\"id\":\"0\"}}"}}],"signatures":[]}}"#
    );
    let digest = sha256_digest(body.as_bytes());
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let body = body.clone();
            let digest = digest.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                    // A TLS ClientHello (the client tries https first): plain HTTP only here.
                    if buf.first() == Some(&0x16) {
                        return;
                    }
                }
                let head = String::from_utf8_lossy(&buf);
                let mut first = head.lines().next().unwrap_or("").split(' ');
                let method = first.next().unwrap_or("");
                let path = first.next().unwrap_or("").split('?').next().unwrap_or("");
                let (status, ctype, payload) = if path == "/v2/" {
                    ("200 OK", "application/json", "{}".to_string())
                } else if path == format!("/v2/{repo}/manifests/v1") || path.ends_with(&digest) {
                    (
                        "200 OK",
                        "application/vnd.docker.distribution.manifest.v1+prettyjws",
                        body,
                    )
                } else {
                    (
                        "404 Not Found",
                        "application/json",
                        r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"unknown"}]}"#
                            .to_string(),
                    )
                };
                let mut resp = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n\
                     Docker-Content-Digest: {digest}\r\n\
                     Docker-Distribution-Api-Version: registry/2.0\r\nConnection: close\r\n\r\n",
                    payload.len()
                );
                if method != "HEAD" {
                    resp.push_str(&payload);
                }
                let _ = sock.write_all(resp.as_bytes()).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    (host, task)
}

#[tokio::test(flavor = "multi_thread")]
async fn docker_schema1_source_is_refused_clearly() {
    let (legacy, task) = serve_schema1("legacy/app").await;
    let dst = Registry::start();
    let out = copy_plain(
        &format!("{legacy}/legacy/app:v1"),
        &format!("{}/mirror/legacy:v1", dst.host),
        &[],
    )
    .await;
    task.abort();
    let msg = error_message(&out, 1);
    assert!(
        msg.to_lowercase().contains("schema 1"),
        "not a clear schema-1 error: {msg}"
    );
    let reqs = dst.requests();
    assert!(writes(&reqs).is_empty(), "{:#?}", writes(&reqs));
}

// ---------------------------------------------------------------------------------------------
// 12. Usage errors
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn usage_errors_exit_2_before_touching_a_registry() {
    let src = Registry::start();
    let dst = Registry::start();
    let s = format!("{}/lib/app:v1", src.host);
    let digest = sha256_digest(b"x");

    let out = copy_plain(&s, &format!("{}/mirror/app@{digest}", dst.host), &[]).await;
    let msg = error_message(&out, 2);
    assert!(msg.contains("--dest"), "names the flag: {msg}");

    let out = copy_plain(
        &s,
        &format!("{}/mirror/app:v1", dst.host),
        &["--src-creds", "u:p", "--src-registry-token", "tok"],
    )
    .await;
    let msg = error_message(&out, 2);
    for flag in ["--src-creds", "--src-registry-token"] {
        assert!(msg.contains(flag), "message lacks {flag}: {msg}");
    }

    // clap rejects --all with --platform (exit 2 as well).
    let out = copy_plain(
        &s,
        &format!("{}/mirror/app:v1", dst.host),
        &["--all", "--platform", "linux/amd64"],
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));

    assert!(src.requests().is_empty(), "{:#?}", src.requests());
    assert!(dst.requests().is_empty(), "{:#?}", dst.requests());
}

// ---------------------------------------------------------------------------------------------
// One retry budget per request (issue 12)
// ---------------------------------------------------------------------------------------------

/// `--retry-times 2` against an upload endpoint that always answers 503: each blob's upload
/// gets 1 try + 2 retries, so 3 upload POSTs per blob. Before the budget was shared, the
/// transfer's retry loop ran the POST's own retry loop inside it: 3 × 3 = 9 per blob.
#[tokio::test(flavor = "multi_thread")]
async fn retry_times_bounds_upload_posts_with_one_budget() {
    let src = Registry::start();
    let dst = Registry::start();
    let img = random_image(2100, &[4096], "linux/amd64", Format::Oci);
    push_image(&src.url(), "lib/app", "v1", &img, None, None).await;
    let proxy = FaultProxy::start(
        &dst.url(),
        vec![Rule::new(
            "/blobs/uploads/",
            Fault::Status {
                code: 503,
                retry_after: Some("0".into()),
            },
            Schedule::Always,
        )
        .method("POST")],
    )
    .await;
    let out = copy_plain(
        &format!("{}/lib/app:v1", src.host),
        &format!("{}/mirror/app:v1", proxy.host),
        &["--retry-times", "2"],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let posts = proxy
        .hit_log()
        .iter()
        .filter(|h| h.method == "POST" && h.path.contains("/blobs/uploads/"))
        .count();
    // Two blobs (config and layer) may each spend their budget before the copy gives up.
    assert!(
        (3..=6).contains(&posts),
        "expected 3 upload POSTs per blob (at most 6 for 2 blobs), got {posts}"
    );
    assert_eq!(
        count(&dst.requests(), "PUT", Kind::Manifest),
        0,
        "no manifest may be written"
    );
}
