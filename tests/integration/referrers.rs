//! Referrers travel with the image (issue 15): SBOMs, attestations, signatures and sigstore
//! bundles, found through the `sha256-<hex>` fallback index on real `docker-registry` 2.8
//! (which has no referrers API but stores manifests with `subject` as they are), through an
//! in-process referrers endpoint in front of it for the API path, and through the legacy cosign
//! tags. Every write is checked on the registry itself, and the no-op cost from its access log.

use std::process::Output;

use serde_json::{json, Value};

use crate::support::{
    describe, head_manifest, index_of, json_line, push_blob, push_index, push_manifest,
    random_image, run_async, sha256_digest, Blob, Format, Index, ReferrersApi, Registry,
    MT_OCI_INDEX, MT_OCI_MANIFEST,
};

const PLAIN: [&str; 2] = ["--src-tls-verify=false", "--dest-tls-verify=false"];
const EMPTY_TYPE: &str = "application/vnd.oci.empty.v1+json";
const SPDX: &str = "application/spdx+json";
const IN_TOTO: &str = "application/vnd.in-toto+json";
const BUNDLE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
const OTHER_TOOL: &str = "application/vnd.example.other-tool+json";

/// An OCI 1.1 artifact: empty config, one layer, a subject.
#[derive(Clone, Debug)]
struct Art {
    manifest: Vec<u8>,
    digest: String,
    artifact_type: String,
    blobs: Vec<Blob>,
}

impl Art {
    fn new(artifact_type: &str, subject: (&str, &str, usize), payload: &str) -> Art {
        let config = Blob::new(b"{}".to_vec(), EMPTY_TYPE);
        let layer = Blob::new(payload.as_bytes().to_vec(), artifact_type);
        let m = json!({
            "schemaVersion": 2,
            "mediaType": MT_OCI_MANIFEST,
            "artifactType": artifact_type,
            "config": {"mediaType": EMPTY_TYPE, "digest": config.digest, "size": 2},
            "layers": [{"mediaType": artifact_type, "digest": layer.digest, "size": layer.size()}],
            "subject": {"mediaType": subject.0, "digest": subject.1, "size": subject.2},
            "annotations": {"org.opencontainers.image.created": "2026-01-01T00:00:00Z"},
        });
        let manifest = serde_json::to_vec(&m).unwrap();
        Art {
            digest: sha256_digest(&manifest),
            manifest,
            artifact_type: artifact_type.into(),
            blobs: vec![config, layer],
        }
    }

    fn subject(&self) -> (&str, &str, usize) {
        (MT_OCI_MANIFEST, &self.digest, self.manifest.len())
    }

    fn descriptor(&self) -> Value {
        json!({"mediaType": MT_OCI_MANIFEST, "digest": self.digest,
               "size": self.manifest.len(), "artifactType": self.artifact_type})
    }

    async fn push(&self, url: &str, repo: &str) {
        for b in &self.blobs {
            push_blob(url, repo, b, None, None).await;
        }
        push_manifest(
            url,
            repo,
            &self.digest,
            &self.manifest,
            MT_OCI_MANIFEST,
            None,
            None,
        )
        .await;
    }
}

fn fallback_tag(digest: &str) -> String {
    digest.replacen(':', "-", 1)
}

/// Writes the `sha256-<hex>` fallback index of `subject` listing `entries`.
async fn push_fallback(url: &str, repo: &str, subject: &str, entries: &[Value]) {
    let idx = json!({"schemaVersion": 2, "mediaType": MT_OCI_INDEX, "manifests": entries});
    let bytes = serde_json::to_vec(&idx).unwrap();
    push_manifest(
        url,
        repo,
        &fallback_tag(subject),
        &bytes,
        MT_OCI_INDEX,
        None,
        None,
    )
    .await;
}

/// The descriptors listed by the fallback index of `subject`, or none.
async fn fallback_entries(url: &str, repo: &str, subject: &str) -> Vec<Value> {
    let r = reqwest::Client::new()
        .get(format!(
            "{url}/v2/{repo}/manifests/{}",
            fallback_tag(subject)
        ))
        .header("accept", MT_OCI_INDEX)
        .send()
        .await
        .unwrap();
    if r.status() == 404 {
        return vec![];
    }
    let v: Value = r.json().await.unwrap();
    v["manifests"].as_array().cloned().unwrap_or_default()
}

fn digests(entries: &[Value]) -> Vec<String> {
    entries
        .iter()
        .map(|e| e["digest"].as_str().unwrap().to_string())
        .collect()
}

async fn copy(src: &str, dest: &str, extra: &[&str]) -> Output {
    let mut args = vec!["copy", "--src", src, "--dest", dest, "--output", "json"];
    args.extend_from_slice(&PLAIN);
    args.extend_from_slice(extra);
    run_async(&args, &[]).await
}

fn report_ok(out: &Output) -> Value {
    assert_eq!(out.status.code(), Some(0), "copy failed\n{}", describe(out));
    json_line(out, "copy")["data"]["report"].clone()
}

/// The report's referrer entries by digest: (outcome, via, label).
fn outcomes(report: &Value) -> Vec<(String, String, String, Option<String>)> {
    report["referrers"]
        .as_array()
        .unwrap_or_else(|| panic!("no referrers in {report}"))
        .iter()
        .map(|r| {
            (
                r["digest"].as_str().unwrap().to_string(),
                r["outcome"].as_str().unwrap().to_string(),
                r["via"].as_str().unwrap().to_string(),
                r["label"].as_str().map(str::to_string),
            )
        })
        .collect()
}

fn outcome_of(report: &Value, digest: &str) -> (String, String, Option<String>) {
    outcomes(report)
        .into_iter()
        .find(|(d, ..)| d == digest)
        .map(|(_, o, v, l)| (o, v, l))
        .unwrap_or_else(|| panic!("{digest} not reported: {report}"))
}

/// A two-platform index with: an SBOM on the index, an attestation on the first child, a
/// bundle (a signature) on the SBOM, and a legacy cosign `.sig` tag on the second child.
struct Scene {
    idx: Index,
    sbom: Art,
    att: Art,
    sig_on_sbom: Art,
    legacy_sig: crate::support::Image,
}

fn scene(seed: u64) -> Scene {
    let idx = index_of(
        vec![
            random_image(seed, &[700], "linux/amd64", Format::Oci),
            random_image(seed + 1, &[700], "linux/arm64", Format::Oci),
        ],
        Format::Oci,
    );
    let sbom = Art::new(
        SPDX,
        (MT_OCI_INDEX, &idx.digest, idx.manifest.len()),
        &format!(r#"{{"spdxVersion":"SPDX-2.3","seed":{seed}}}"#),
    );
    let child = &idx.images[0];
    let att = Art::new(
        IN_TOTO,
        (MT_OCI_MANIFEST, &child.digest, child.manifest.len()),
        &format!(r#"{{"_type":"https://in-toto.io/Statement/v1","seed":{seed}}}"#),
    );
    let sig_on_sbom = Art::new(BUNDLE, sbom.subject(), &format!(r#"{{"seed":{seed}}}"#));
    let legacy_sig = random_image(seed + 7, &[100], "linux/amd64", Format::Oci);
    Scene {
        idx,
        sbom,
        att,
        sig_on_sbom,
        legacy_sig,
    }
}

impl Scene {
    /// Pushes the image and its referrers to `url`/`repo`; with `fallback`, also the
    /// `sha256-<hex>` indexes (a registry without the API, as cosign and oras write them).
    async fn push(&self, url: &str, repo: &str, fallback: bool) {
        push_index(url, repo, "v1", &self.idx, None, None).await;
        for a in [&self.sbom, &self.att, &self.sig_on_sbom] {
            a.push(url, repo).await;
        }
        if fallback {
            push_fallback(url, repo, &self.idx.digest, &[self.sbom.descriptor()]).await;
            push_fallback(
                url,
                repo,
                &self.idx.images[0].digest,
                &[self.att.descriptor()],
            )
            .await;
            push_fallback(
                url,
                repo,
                &self.sbom.digest,
                &[self.sig_on_sbom.descriptor()],
            )
            .await;
        }
        let sig_tag = format!("{}.sig", fallback_tag(&self.idx.images[1].digest));
        crate::support::push_image(url, repo, &sig_tag, &self.legacy_sig, None, None).await;
    }
}

/// docker-registry 2.8 on both sides: the referrers are found through the fallback indexes and
/// the cosign tag, copied byte for byte before the tag moves, and listed in fallback indexes at
/// the destination; an existing fallback index there keeps another tool's entry. A second run
/// is the same two HEADs as without referrers; `--refresh-referrers` finds them all present.
#[tokio::test(flavor = "multi_thread")]
async fn fallback_tags_on_both_sides_sbom_attestation_signature_and_another_tools_entry() {
    let src = Registry::start();
    let dst = Registry::start();
    let s = scene(9100);
    s.push(&src.url(), "lib/app", true).await;
    // Another tool's artifact on the index, already listed in the destination's fallback index.
    let other = Art::new(
        OTHER_TOOL,
        (MT_OCI_INDEX, &s.idx.digest, s.idx.manifest.len()),
        "other",
    );
    other.push(&dst.url(), "mirror/app").await;
    push_fallback(
        &dst.url(),
        "mirror/app",
        &s.idx.digest,
        &[other.descriptor()],
    )
    .await;

    dst.mark();
    src.mark();
    let out = copy(
        &format!("{}/lib/app:v1", src.host),
        &format!("{}/mirror/app:v1", dst.host),
        &[],
    )
    .await;
    let report = report_ok(&out);
    let reqs = dst.requests();
    // docker-registry 2.8 has no referrers API: the first 404 shows it, and the other subjects
    // (the children, the SBOM) go straight to the fallback tag: one referrers request per
    // repository and side, not one per subject.
    for (side, r) in [("source", src.requests()), ("destination", reqs.clone())] {
        let asked = r.iter().filter(|q| q.path.contains("/referrers/")).count();
        assert_eq!(asked, 1, "{side}: referrers API requests: {r:?}");
    }

    for (a, via) in [
        (&s.sbom, "fallback-tag"),
        (&s.att, "fallback-tag"),
        (&s.sig_on_sbom, "fallback-tag"),
    ] {
        assert_eq!(
            outcome_of(&report, &a.digest),
            ("copied".into(), via.into(), None)
        );
        assert_eq!(
            head_manifest(&dst.url(), "mirror/app", &a.digest, None, None)
                .await
                .as_deref(),
            Some(a.digest.as_str()),
            "{} copied with its digest",
            a.artifact_type
        );
    }
    assert_eq!(
        outcome_of(&report, &s.legacy_sig.digest),
        ("copied".into(), "cosign-tag".into(), None)
    );
    let sig_tag = format!("{}.sig", fallback_tag(&s.idx.images[1].digest));
    assert_eq!(
        head_manifest(&dst.url(), "mirror/app", &sig_tag, None, None)
            .await
            .as_deref(),
        Some(s.legacy_sig.digest.as_str())
    );
    // The destination's fallback indexes: the other tool's entry first and kept, ours after.
    let on_index = fallback_entries(&dst.url(), "mirror/app", &s.idx.digest).await;
    assert_eq!(
        digests(&on_index),
        vec![other.digest.clone(), s.sbom.digest.clone()]
    );
    assert_eq!(on_index[0]["artifactType"], OTHER_TOOL);
    assert_eq!(on_index[1]["artifactType"], SPDX);
    assert_eq!(
        digests(&fallback_entries(&dst.url(), "mirror/app", &s.idx.images[0].digest).await),
        vec![s.att.digest.clone()]
    );
    assert_eq!(
        digests(&fallback_entries(&dst.url(), "mirror/app", &s.sbom.digest).await),
        vec![s.sig_on_sbom.digest.clone()]
    );
    // Before the tag moves: the `v1` PUT is the last manifest write.
    let puts: Vec<&str> = reqs
        .iter()
        .filter(|r| r.method == "PUT" && r.path.contains("/manifests/"))
        .map(|r| r.path.as_str())
        .collect();
    assert_eq!(
        puts.last().copied(),
        Some("/v2/mirror/app/manifests/v1"),
        "{puts:#?}"
    );
    let put_at = |p: &str| puts.iter().position(|x| x.ends_with(p)).unwrap();
    assert!(put_at(&s.sbom.digest) < put_at(&s.sig_on_sbom.digest));
    assert!(
        put_at(&s.idx.digest) < put_at(&s.sbom.digest),
        "subject first"
    );

    // The no-op: one HEAD of the tag on each side, nothing about referrers.
    src.mark();
    dst.mark();
    let out = copy(
        &format!("{}/lib/app:v1", src.host),
        &format!("{}/mirror/app:v1", dst.host),
        &[],
    )
    .await;
    let noop = report_ok(&out);
    assert_eq!(noop["unchanged"], true);
    for (reqs, repo) in [(src.requests(), "lib/app"), (dst.requests(), "mirror/app")] {
        let paths: Vec<String> = reqs
            .iter()
            .filter(|r| r.path != "/v2/")
            .map(|r| format!("{} {}", r.method, r.path))
            .collect();
        assert_eq!(
            paths,
            vec![format!("HEAD /v2/{repo}/manifests/v1")],
            "{repo}: a no-op is one HEAD"
        );
    }

    // --refresh-referrers: each is found present; nothing is written.
    dst.mark();
    let out = copy(
        &format!("{}/lib/app:v1", src.host),
        &format!("{}/mirror/app:v1", dst.host),
        &["--refresh-referrers"],
    )
    .await;
    let refreshed = report_ok(&out);
    for a in [&s.sbom, &s.att, &s.sig_on_sbom] {
        assert_eq!(outcome_of(&refreshed, &a.digest).0, "present");
    }
    assert_eq!(outcome_of(&refreshed, &s.legacy_sig.digest).0, "present");
    let writes: Vec<_> = dst
        .requests()
        .into_iter()
        .filter(|r| r.method != "GET" && r.method != "HEAD")
        .collect();
    assert!(
        writes.is_empty(),
        "a refresh of a complete mirror writes nothing: {writes:#?}"
    );
}

/// `--referrers sbom`: only the SBOM travels; the attestation and the signature on the SBOM
/// are reported as skipped and are not in the destination.
#[tokio::test(flavor = "multi_thread")]
async fn selection_by_type() {
    let src = Registry::start();
    let dst = Registry::start();
    let s = scene(9200);
    s.push(&src.url(), "lib/app", true).await;
    let out = copy(
        &format!("{}/lib/app:v1", src.host),
        &format!("{}/mirror/app:v1", dst.host),
        &["--referrers", "sbom"],
    )
    .await;
    let report = report_ok(&out);
    assert_eq!(outcome_of(&report, &s.sbom.digest).0, "copied");
    for a in [&s.att, &s.sig_on_sbom] {
        assert_eq!(outcome_of(&report, &a.digest).0, "skipped");
        assert_eq!(
            head_manifest(&dst.url(), "mirror/app", &a.digest, None, None).await,
            None
        );
    }
    assert_eq!(outcome_of(&report, &s.legacy_sig.digest).0, "skipped");
    // `none` copies none, and a bad selection is an exit 2 before any request.
    let out = copy(
        &format!("{}/lib/app:v1", src.host),
        &format!("{}/mirror/none:v1", dst.host),
        &["--referrers", "none"],
    )
    .await;
    let report = report_ok(&out);
    assert_eq!(report["referrers"], json!([]));
    assert_eq!(
        head_manifest(&dst.url(), "mirror/none", &s.sbom.digest, None, None).await,
        None
    );
    src.mark();
    let out = copy(
        &format!("{}/lib/app:v1", src.host),
        &format!("{}/mirror/bad:v1", dst.host),
        &["--referrers", "sboms"],
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(src.requests().is_empty());
}

/// The referrers API on both sides (an in-process endpoint in front of docker-registry):
/// found through the API, pages followed, pushed with their subject, no fallback tag written.
/// Then a destination that refuses referrers of an index with 405 (ECR's manner): that
/// artifact is reported `failed` with `referrer-refused`, the rest is copied, the tag moves.
#[tokio::test(flavor = "multi_thread")]
async fn referrers_api_on_both_sides_and_the_405_manner() {
    let src_reg = Registry::start();
    let dst_reg = Registry::start();
    let src = ReferrersApi::start(&src_reg.url(), 1).await;
    let dst = ReferrersApi::start(&dst_reg.url(), 10).await;
    let s = scene(9300);
    s.push(&src.url(), "lib/app", false).await;
    // A second referrer on the index, so that its list takes two pages.
    let sbom2 = Art::new(
        "application/vnd.cyclonedx+json",
        (MT_OCI_INDEX, &s.idx.digest, s.idx.manifest.len()),
        "cdx",
    );
    sbom2.push(&src.url(), "lib/app").await;
    assert_eq!(src.referrers_of("lib/app", &s.idx.digest).len(), 2);

    let out = copy(
        &format!("{}/lib/app:v1", src.host),
        &format!("{}/mirror/app:v1", dst.host),
        &[],
    )
    .await;
    let report = report_ok(&out);
    for a in [&s.sbom, &sbom2, &s.att, &s.sig_on_sbom] {
        assert_eq!(
            outcome_of(&report, &a.digest),
            ("copied".into(), "api".into(), None)
        );
    }
    assert_eq!(
        digests(&dst.referrers_of("mirror/app", &s.idx.digest)),
        vec![s.sbom.digest.clone(), sbom2.digest.clone()]
    );
    assert_eq!(
        digests(&dst.referrers_of("mirror/app", &s.sbom.digest)),
        vec![s.sig_on_sbom.digest.clone()]
    );
    assert!(
        fallback_entries(&dst_reg.url(), "mirror/app", &s.idx.digest)
            .await
            .is_empty(),
        "a destination with the API gets no fallback tag"
    );
    let paged = src
        .hits()
        .iter()
        .filter(|(m, p, _)| m == "GET" && p.contains(&format!("/referrers/{}", s.idx.digest)))
        .count();
    assert_eq!(
        paged,
        2,
        "two pages of one referrer each: {:#?}",
        src.hits()
    );

    // The 405 manner.
    dst.refuse_index_subjects(true);
    let out = copy(
        &format!("{}/lib/app:v1", src.host),
        &format!("{}/mirror/ecr-like:v1", dst.host),
        &[],
    )
    .await;
    let report = report_ok(&out);
    for a in [&s.sbom, &sbom2] {
        let (outcome, _, label) = outcome_of(&report, &a.digest);
        assert_eq!(
            (outcome.as_str(), label.as_deref()),
            ("failed", Some("referrer-refused"))
        );
    }
    assert_eq!(outcome_of(&report, &s.att.digest).0, "copied");
    assert_eq!(
        head_manifest(&dst_reg.url(), "mirror/ecr-like", "v1", None, None)
            .await
            .as_deref(),
        Some(s.idx.digest.as_str()),
        "the image is copied and tagged"
    );
}

/// `verify` compares referrers too (issue 15, point 6). A mirror synced with `--referrers
/// none` lacks them: `verify` (default `all`) fails and names each missing one in a
/// `referrer <type>` row; `verify --referrers none` compares the images alone and passes. After
/// `sync --refresh-referrers` has copied them onto the unchanged image, `verify` passes with a
/// row per referrer.
#[tokio::test(flavor = "multi_thread")]
async fn verify_compares_referrers() {
    use crate::support::{Moto, MOTO_ECR_PASSWORD, MOTO_ECR_USER};
    let moto = Moto::start();
    let src = Registry::start();
    let ecr = Registry::start_htpasswd(MOTO_ECR_USER, MOTO_ECR_PASSWORD);
    let sc = scene(61);
    sc.push(&src.url(), "lib/app", true).await;
    let r = moto
        .ecr_api(
            "CreateRepository",
            json!({"repositoryName": "mirror/app", "tags": [
                {"Key": "upstream-image", "Value": format!("{}/lib/app", src.host)},
                {"Key": "upstream-tags", "Value": "v1"}]}),
        )
        .await;
    assert_eq!(r["repository"]["repositoryName"], "mirror/app", "{r}");
    let mut env = moto.env();
    for (k, v) in [
        ("ECR_MIRROR_SYNC_REGISTRY_ENDPOINT", ecr.url()),
        ("ECR_MIRROR_SYNC_DEST_TLS_VERIFY", "false".into()),
        ("ECR_MIRROR_SYNC_SRC_TLS_VERIFY", "false".into()),
    ] {
        env.push((k.to_string(), v));
    }
    let sync = |extra: &'static [&'static str]| {
        let env = env.clone();
        async move {
            let mut a = vec!["sync", "--output", "json", "--insecure-policy"];
            a.extend_from_slice(extra);
            run_async(&a, &env).await
        }
    };
    let verify = |extra: &'static [&'static str]| {
        let env = env.clone();
        async move {
            let mut a = vec!["verify", "--output", "json"];
            a.extend_from_slice(extra);
            run_async(&a, &env).await
        }
    };
    let referrer_rows = |out: &Output| -> Vec<(String, bool)> {
        let v = json_line(out, "verify");
        let mut rows: Vec<(String, bool)> = v["data"]["rows"]
            .as_array()
            .or_else(|| v["rows"].as_array())
            .unwrap_or_else(|| panic!("no rows: {v}"))
            .iter()
            .filter(|r| r["platform"].as_str().unwrap().starts_with("referrer "))
            .map(|r| {
                (
                    r["source"].as_str().unwrap().to_string(),
                    r["matches"].as_bool().unwrap(),
                )
            })
            .collect();
        rows.sort();
        rows
    };
    // The referrers of the copied manifests (the index and its two children); a referrer of a
    // referrer (the bundle on the SBOM) is not followed by verify.
    let legacy = head_manifest(
        &src.url(),
        "lib/app",
        &format!("{}.sig", fallback_tag(&sc.idx.images[1].digest)),
        None,
        None,
    )
    .await
    .expect("the legacy signature tag upstream");
    let mut expected = [sc.sbom.digest.clone(), sc.att.digest.clone(), legacy];
    expected.sort();

    let out = sync(&["--referrers", "none"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let out = verify(&[]).await;
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let missing = referrer_rows(&out);
    assert_eq!(
        missing,
        expected
            .iter()
            .map(|d| (d.clone(), false))
            .collect::<Vec<_>>(),
        "{}",
        describe(&out)
    );
    let out = verify(&["--referrers", "none"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(referrer_rows(&out).is_empty(), "{}", describe(&out));

    let out = sync(&["--refresh-referrers"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let out = verify(&[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(
        referrer_rows(&out),
        expected
            .iter()
            .map(|d| (d.clone(), true))
            .collect::<Vec<_>>(),
        "{}",
        describe(&out)
    );
}
