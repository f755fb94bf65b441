//! Self-tests of the integration-test harness (`support/`): each real service starts, answers
//! and is counted exactly; generated images are what they claim; every proxy fault is
//! observable. These use only the harness's own client, never the product code.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::{
    count, get_blob, get_manifest, head_blob, head_manifest, http_client, image_with_layers,
    index_of, push_image, push_index, random_bytes, random_image, random_layer, sha256_digest,
    skopeo, skopeo_copy, write_oci_layout_index, Fault, FaultProxy, Format, Kind, Moto, Registry,
    RegistryOptions, Rule, Schedule, MANIFEST_ACCEPT, MOTO_ECR_PASSWORD, MOTO_ECR_USER,
    MT_DOCKER_LIST, MT_DOCKER_MANIFEST, MT_OCI_INDEX, MT_OCI_MANIFEST,
};

fn assert_process_gone(pid: u32) {
    // Drop kills and reaps the child, so its /proc entry disappears at once.
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "process {pid} still exists after Drop"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn plain_registry_push_pull_and_exact_access_log() {
    let reg = Registry::start();
    let pid = reg.pid();
    assert!(reg.url().starts_with("http://127.0.0.1:"));
    assert!(reg.requests().is_empty(), "readiness probes must not count");

    let img = random_image(1, &[1000, 70_000], "linux/amd64", Format::Oci);
    push_image(&reg.url(), "lib/app", "v1", &img, None, None).await;
    let reqs = reg.requests();
    // 2 layers + config: HEAD, POST, PUT each; then the manifest by digest and by tag.
    assert_eq!(count(&reqs, "HEAD", Kind::Blob), 3, "{reqs:#?}");
    assert_eq!(count(&reqs, "POST", Kind::Upload), 3);
    assert_eq!(count(&reqs, "PUT", Kind::Upload), 3);
    assert_eq!(count(&reqs, "PUT", Kind::Manifest), 2);
    assert_eq!(reqs.len(), 11, "{reqs:#?}");
    assert!(reqs.iter().all(|r| r.repo().as_deref() == Some("lib/app")));

    reg.mark();
    let d = head_manifest(&reg.url(), "lib/app", "v1", None, None).await;
    assert_eq!(d.as_deref(), Some(img.digest.as_str()));
    let reqs = reg.requests();
    assert_eq!(reqs.len(), 1, "{reqs:#?}");
    assert_eq!(count(&reqs, "HEAD", Kind::Manifest), 1);
    assert_eq!(reqs[0].status, 200);
    assert_eq!(reqs[0].path, "/v2/lib/app/manifests/v1");
    // Reading again adds nothing (the sentinel requests are not reported).
    assert_eq!(reg.requests(), reqs);

    let (bytes, ct) = get_manifest(&reg.url(), "lib/app", &img.digest, None, None)
        .await
        .unwrap();
    assert_eq!(bytes, img.manifest);
    assert_eq!(ct, MT_OCI_MANIFEST);
    assert!(head_blob(&reg.url(), "lib/app", &img.layers[1].digest, None, None).await);
    assert!(!head_blob(&reg.url(), "lib/app", &sha256_digest(b"nope"), None, None).await);
    assert_eq!(
        head_manifest(&reg.url(), "lib/app", "missing", None, None).await,
        None
    );
    let reqs = reg.requests();
    assert_eq!(count(&reqs, "GET", Kind::Manifest), 1);
    assert_eq!(count(&reqs, "HEAD", Kind::Blob), 2);
    assert_eq!(count(&reqs, "HEAD", Kind::Manifest), 2);
    assert_eq!(reqs.iter().filter(|r| r.status == 404).count(), 2);

    // The blob is on disk where blob_path says, so a test can corrupt it.
    let on_disk = std::fs::read(reg.blob_path(&img.layers[0].digest)).unwrap();
    assert_eq!(on_disk, img.layers[0].data);
    assert!(reg
        .data_dir()
        .join("docker/registry/v2/repositories/lib/app")
        .is_dir());

    drop(reg);
    assert_process_gone(pid);
}

#[tokio::test(flavor = "multi_thread")]
async fn htpasswd_registry_accepts_right_and_rejects_wrong_credentials() {
    let reg = Registry::start_htpasswd("alice", "s3cret");
    let img = random_image(2, &[500], "linux/arm64/v8", Format::DockerV2);
    push_image(&reg.url(), "app", "t", &img, reg.auth(), None).await;
    let d = head_manifest(&reg.url(), "app", "t", Some(("alice", "s3cret")), None).await;
    assert_eq!(d.as_deref(), Some(img.digest.as_str()));

    let url = format!("{}/v2/app/manifests/t", reg.url());
    let client = http_client(None);
    for auth in [None, Some(("alice", "wrong")), Some(("bob", "s3cret"))] {
        let mut rb = client.head(&url).header("accept", MANIFEST_ACCEPT);
        if let Some((u, p)) = auth {
            rb = rb.basic_auth(u, Some(p));
        }
        let r = rb.send().await.unwrap();
        assert_eq!(r.status(), 401, "auth {auth:?}");
        assert_eq!(
            r.headers()["www-authenticate"].to_str().unwrap(),
            r#"Basic realm="test""#
        );
    }
    let reqs = reg.requests();
    assert_eq!(
        reqs.iter()
            .filter(|r| r.kind() == Kind::Manifest && r.status == 401)
            .count(),
        3
    );

    // The htpasswd file is re-read while running: rotate the password.
    reg.set_users(&[("alice", "n3w")]);
    let r = client
        .get(format!("{}/v2/", reg.url()))
        .basic_auth("alice", Some("s3cret"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "old password must stop working");
    let d = head_manifest(&reg.url(), "app", "t", Some(("alice", "n3w")), None).await;
    assert_eq!(d.as_deref(), Some(img.digest.as_str()));
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_registry_trusts_only_its_ca() {
    let reg = Registry::start_tls();
    assert!(reg.url().starts_with("https://127.0.0.1:"));
    let ca = reg
        .ca_dir()
        .expect("TLS registry has a CA dir")
        .to_path_buf();
    let files: Vec<_> = std::fs::read_dir(&ca)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(files, ["ca.crt"], "cert-dir layout, as skopeo's --cert-dir");

    let img = random_image(3, &[2000], "linux/amd64", Format::Oci);
    push_image(&reg.url(), "secure/app", "v1", &img, None, Some(&ca)).await;
    let d = head_manifest(&reg.url(), "secure/app", "v1", None, Some(&ca)).await;
    assert_eq!(d.as_deref(), Some(img.digest.as_str()));
    // SAN localhost works as well as 127.0.0.1.
    let local = reg.url().replace("127.0.0.1", "localhost");
    let d = head_manifest(&local, "secure/app", "v1", None, Some(&ca)).await;
    assert_eq!(d.as_deref(), Some(img.digest.as_str()));

    // Without the CA the handshake fails.
    let err = http_client(None)
        .get(format!("{}/v2/", reg.url()))
        .send()
        .await
        .expect_err("untrusted cert must be rejected");
    assert!(err.is_connect(), "{err:?}");

    // skopeo accepts the same dir as --cert-dir.
    let out = skopeo(&[
        "inspect",
        "--raw",
        "--cert-dir",
        ca.to_str().unwrap(),
        &format!("docker://{}/secure/app:v1", reg.host),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, img.manifest);

    let reqs = reg.requests();
    assert_eq!(count(&reqs, "HEAD", Kind::Manifest), 2, "{reqs:#?}");
    assert_eq!(count(&reqs, "GET", Kind::Manifest), 1, "{reqs:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_and_htpasswd_together() {
    let reg = Registry::start_with(RegistryOptions {
        tls: true,
        htpasswd: Some(("AWS".into(), "pw".into())),
    });
    let ca = reg.ca_dir().unwrap().to_path_buf();
    let img = random_image(4, &[10], "linux/amd64", Format::Oci);
    push_image(&reg.url(), "r", "v1", &img, reg.auth(), Some(&ca)).await;
    let d = head_manifest(&reg.url(), "r", "v1", reg.auth(), Some(&ca)).await;
    assert_eq!(d.as_deref(), Some(img.digest.as_str()));
    let r = http_client(Some(&ca))
        .get(format!("{}/v2/", reg.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[test]
fn a_missing_component_panics_with_make_deps() {
    let err = std::panic::catch_unwind(|| {
        crate::support::locate(
            "no-such-tool",
            "HARNESS_SELFTEST_UNSET_VAR",
            &[],
            "no-such-tool-binary",
        )
    })
    .expect_err("must panic");
    let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        msg.contains("no-such-tool") && msg.contains("run `make deps`"),
        "{msg}"
    );
}

#[test]
fn images_are_deterministic_and_well_formed() {
    let a = random_image(7, &[10, 600], "linux/arm64/v8", Format::Oci);
    let b = random_image(7, &[10, 600], "linux/arm64/v8", Format::Oci);
    let c = random_image(8, &[10, 600], "linux/arm64/v8", Format::Oci);
    assert_eq!(a.digest, b.digest);
    assert_eq!(a.manifest, b.manifest);
    assert_ne!(a.digest, c.digest);
    assert_ne!(a.layers[0].digest, c.layers[0].digest);
    assert_eq!(a.digest, sha256_digest(&a.manifest));
    assert_eq!(
        a.platform,
        ("linux".into(), "arm64".into(), Some("v8".into()))
    );

    let m: serde_json::Value = serde_json::from_slice(&a.manifest).unwrap();
    assert_eq!(m["mediaType"], MT_OCI_MANIFEST);
    assert_eq!(m["layers"][1]["size"], a.layers[1].data.len());
    let cfg: serde_json::Value = serde_json::from_slice(&a.config.data).unwrap();
    assert_eq!(cfg["architecture"], "arm64");
    assert_eq!(cfg["variant"], "v8");
    assert_eq!(cfg["rootfs"]["diff_ids"][1], a.layers[1].diff_id());
    assert_ne!(a.layers[1].diff_id(), a.layers[1].digest);

    // A layer is a real gzipped tar holding one file of the requested size.
    let mut tar = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::GzDecoder::new(&a.layers[1].data[..]),
        &mut tar,
    )
    .unwrap();
    assert_eq!(
        tar.len(),
        512 + 1024 + 1024,
        "header + 600 bytes padded + trailer"
    );
    assert_eq!(&tar[257..262], b"ustar");
    assert_eq!(&tar[124..135], format!("{:011o}", 600).as_bytes());
    let sum: u32 = tar[..512]
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                32
            } else {
                b as u32
            }
        })
        .sum();
    let stored = u32::from_str_radix(std::str::from_utf8(&tar[148..154]).unwrap(), 8).unwrap();
    assert_eq!(sum, stored, "tar header checksum");

    // Shared base layers and Docker format.
    let base = random_layer(99, 300, Format::DockerV2);
    let mut tar = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&base.data[..]), &mut tar)
        .unwrap();
    assert_eq!(&tar[512..812], &random_bytes(99, 300)[..], "file content");
    assert!(tar[812..].iter().all(|&b| b == 0));
    // Several stored deflate blocks; the diff ID is sha256 of the tar.
    let big = random_layer(5, 200_000, Format::Oci);
    let mut tar = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&big.data[..]), &mut tar).unwrap();
    assert_eq!(tar.len(), 512 + 200_192 + 1024);
    assert_eq!(&tar[512..200_512], &random_bytes(5, 200_000)[..]);
    assert_eq!(big.diff_id(), sha256_digest(&tar));
    assert_eq!(big.digest, sha256_digest(&big.data));
    let x = image_with_layers(vec![base.clone()], "linux/amd64", Format::DockerV2);
    let y = image_with_layers(vec![base.clone()], "linux/arm64", Format::DockerV2);
    assert_eq!(x.layers[0].digest, y.layers[0].digest);
    assert_ne!(x.digest, y.digest);
    assert_eq!(x.media_type, MT_DOCKER_MANIFEST);
    let list = index_of(vec![x, y], Format::DockerV2);
    let v: serde_json::Value = serde_json::from_slice(&list.manifest).unwrap();
    assert_eq!(v["mediaType"], MT_DOCKER_LIST);
    assert_eq!(v["manifests"][1]["platform"]["architecture"], "arm64");
    assert_eq!(v["manifests"][0]["mediaType"], MT_DOCKER_MANIFEST);
}

#[tokio::test(flavor = "multi_thread")]
async fn pushed_index_keeps_its_digest_and_skopeo_writes_a_v2s2_list() {
    let reg = Registry::start();
    let base = random_layer(10, 4096, Format::Oci);
    let amd = image_with_layers(
        vec![base.clone(), random_layer(11, 100, Format::Oci)],
        "linux/amd64",
        Format::Oci,
    );
    let arm = image_with_layers(
        vec![base.clone(), random_layer(12, 100, Format::Oci)],
        "linux/arm64/v8",
        Format::Oci,
    );
    let idx = index_of(vec![amd, arm], Format::Oci);
    assert_eq!(idx.digest, sha256_digest(&idx.manifest));
    push_index(&reg.url(), "multi", "v1", &idx, None, None).await;
    let reqs = reg.requests();
    // The shared base layer is uploaded once; the second image's HEAD finds it.
    assert_eq!(count(&reqs, "POST", Kind::Upload), 5, "{reqs:#?}");
    assert_eq!(count(&reqs, "HEAD", Kind::Blob), 6);

    let d = head_manifest(&reg.url(), "multi", "v1", None, None).await;
    assert_eq!(d.as_deref(), Some(idx.digest.as_str()));
    let (bytes, ct) = get_manifest(&reg.url(), "multi", "v1", None, None)
        .await
        .unwrap();
    assert_eq!(bytes, idx.manifest);
    assert_eq!(ct, MT_OCI_INDEX);
    for img in &idx.images {
        let d = head_manifest(&reg.url(), "multi", &img.digest, None, None).await;
        assert_eq!(d.as_deref(), Some(img.digest.as_str()));
    }

    let out = skopeo_copy(&[
        "--all",
        "--format",
        "v2s2",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        &format!("docker://{}/multi:v1", reg.host),
        &format!("docker://{}/multi-v2s2:v1", reg.host),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (bytes, ct) = get_manifest(&reg.url(), "multi-v2s2", "v1", None, None)
        .await
        .unwrap();
    assert_eq!(ct, MT_DOCKER_LIST);
    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(v["mediaType"], MT_DOCKER_LIST);
    assert_eq!(v["manifests"].as_array().unwrap().len(), 2);
    for m in v["manifests"].as_array().unwrap() {
        assert_eq!(m["mediaType"], MT_DOCKER_MANIFEST);
    }
    let d = head_manifest(&reg.url(), "multi-v2s2", "v1", None, None).await;
    assert_eq!(d, Some(sha256_digest(&bytes)));

    // An OCI layout written by the harness is a valid skopeo source, copied byte for byte.
    let layout = tempfile::tempdir().unwrap();
    write_oci_layout_index(layout.path(), "v1", &idx);
    let out = skopeo_copy(&[
        "--all",
        "--dest-tls-verify=false",
        &format!("oci:{}:v1", layout.path().display()),
        &format!("docker://{}/from-layout:v1", reg.host),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let d = head_manifest(&reg.url(), "from-layout", "v1", None, None).await;
    assert_eq!(d.as_deref(), Some(idx.digest.as_str()));
}

/// A SigV4-free call into moto: moto does not verify signatures, it only routes on the
/// credential scope of the `Authorization` header.
async fn moto_ecr(moto: &Moto, action: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
    let r = reqwest::Client::new()
        .post(&moto.url)
        .header("content-type", "application/x-amz-json-1.1")
        .header(
            "x-amz-target",
            format!("AmazonEC2ContainerRegistry_V20150921.{action}"),
        )
        .header(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/ecr/aws4_request, \
             SignedHeaders=host, Signature=00",
        )
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(serde_json::Value::Null))
}

#[tokio::test(flavor = "multi_thread")]
async fn moto_starts_resets_and_issues_the_known_token() {
    let t0 = Instant::now();
    let moto = Moto::start();
    eprintln!("moto ready in {:?}", t0.elapsed());
    let pid = moto.pid();
    let r = reqwest::get(format!("{}/moto-api/", moto.url))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let env = moto.env();
    let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    assert_eq!(get("AWS_ENDPOINT_URL"), Some(moto.url.clone()));
    assert_eq!(get("AWS_REGION").as_deref(), Some("us-east-1"));
    assert_eq!(get("AWS_EC2_METADATA_DISABLED").as_deref(), Some("true"));

    let (s, _) = moto_ecr(
        &moto,
        "CreateRepository",
        serde_json::json!({"repositoryName": "a/b"}),
    )
    .await;
    assert_eq!(s, 200);
    let (_, v) = moto_ecr(&moto, "DescribeRepositories", serde_json::json!({})).await;
    assert_eq!(v["repositories"].as_array().unwrap().len(), 1);

    let (_, v) = moto_ecr(&moto, "GetAuthorizationToken", serde_json::json!({})).await;
    let token = v["authorizationData"][0]["authorizationToken"]
        .as_str()
        .unwrap();
    let decoded = base64_decode(token);
    assert_eq!(decoded, format!("{MOTO_ECR_USER}:{MOTO_ECR_PASSWORD}"));

    moto.reset();
    let (_, v) = moto_ecr(&moto, "DescribeRepositories", serde_json::json!({})).await;
    assert_eq!(
        v["repositories"].as_array().unwrap().len(),
        0,
        "reset wipes state"
    );

    drop(moto);
    assert_process_gone(pid);
}

fn base64_decode(s: &str) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for c in s.bytes().filter(|&c| c != b'=') {
        bits = (bits << 6) | A.iter().position(|&a| a == c).unwrap() as u32;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
        }
    }
    String::from_utf8(out).unwrap()
}

/// Whether an error's source chain holds an io::Error of kind ConnectionReset (a real RST).
fn is_conn_reset(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::ConnectionReset {
                return true;
            }
        }
        cur = e.source();
    }
    false
}

/// A registry holding one image, and the proxy in front of it.
async fn proxied(rules: Vec<Rule>) -> (Registry, FaultProxy, crate::support::Image) {
    let reg = Registry::start();
    let img = random_image(20, &[256 * 1024], "linux/amd64", Format::Oci);
    push_image(&reg.url(), "p/app", "v1", &img, None, None).await;
    reg.mark();
    let proxy = FaultProxy::start(&reg.url(), rules).await;
    (reg, proxy, img)
}

#[tokio::test(flavor = "multi_thread")]
async fn proxy_status_faults_follow_their_schedule() {
    let rules = vec![Rule::new(
        "/manifests/",
        Fault::Status {
            code: 429,
            retry_after: Some("1".into()),
        },
        Schedule::FirstN(1),
    )];
    let (reg, proxy, img) = proxied(rules).await;
    let c = http_client(None);
    let url = format!("{}/v2/p/app/manifests/v1", proxy.url());
    let r = c
        .head(&url)
        .header("accept", MANIFEST_ACCEPT)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "1");
    let d = head_manifest(&proxy.url(), "p/app", "v1", None, None).await;
    assert_eq!(d.as_deref(), Some(img.digest.as_str()), "second try passes");
    // FirstN counts per path: another path gets its own first 429.
    let r = c
        .head(format!("{}/v2/p/app/manifests/{}", proxy.url(), img.digest))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    let statuses: Vec<u16> = proxy.hits().iter().map(|h| h.2).collect();
    assert_eq!(statuses, [429, 200, 429]);
    // Faulted requests never reach the registry.
    assert_eq!(count(&reg.requests(), "HEAD", Kind::Manifest), 1);

    // Every 3rd request: 503.
    proxy.set_rules(vec![Rule::new(
        "",
        Fault::Status {
            code: 503,
            retry_after: None,
        },
        Schedule::EveryNth(3),
    )]);
    proxy.clear_hits();
    let mut got = Vec::new();
    for _ in 0..6 {
        let r = c.get(format!("{}/v2/", proxy.url())).send().await.unwrap();
        got.push(r.status().as_u16());
    }
    assert_eq!(got, [200, 200, 503, 200, 200, 503]);
    assert_eq!(proxy.faults_injected(), 2);

    // A method filter: PUT only.
    proxy.set_rules(vec![Rule::new(
        "/manifests/",
        Fault::Status {
            code: 500,
            retry_after: None,
        },
        Schedule::Always,
    )
    .method("PUT")]);
    let d = head_manifest(&proxy.url(), "p/app", "v1", None, None).await;
    assert_eq!(d.as_deref(), Some(img.digest.as_str()));
}

#[tokio::test(flavor = "multi_thread")]
async fn proxy_reset_mid_body_breaks_the_transfer_then_recovers() {
    let rules =
        vec![Rule::new("/blobs/sha256:", Fault::ResetMidBody, Schedule::FirstN(1)).method("GET")];
    let (reg, proxy, img) = proxied(rules).await;
    let layer = &img.layers[0];
    let url = format!("{}/v2/p/app/blobs/{}", proxy.url(), layer.digest);
    let c = http_client(None);
    let r = c.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200, "headers arrive");
    assert_eq!(r.content_length(), Some(layer.data.len() as u64));
    let err = r.bytes().await.expect_err("body must fail mid-way");
    assert!(is_conn_reset(&err), "want ECONNRESET mid-body, got {err:?}");

    // The retry, on a new connection, gets the whole blob.
    let got = get_blob(&proxy.url(), "p/app", &layer.digest, None, None)
        .await
        .unwrap();
    assert_eq!(sha256_digest(&got), layer.digest);
    assert_eq!(count(&reg.requests(), "GET", Kind::Blob), 2);

    // On a bodiless response (HEAD), the reset comes before any response.
    proxy.set_rules(vec![Rule::new(
        "/manifests/",
        Fault::ResetMidBody,
        Schedule::Always,
    )]);
    let err = c
        .head(format!("{}/v2/p/app/manifests/v1", proxy.url()))
        .send()
        .await
        .expect_err("HEAD must fail");
    assert!(is_conn_reset(&err), "want ECONNRESET, got {err:?}");
    let last = proxy.hit_log().pop().unwrap();
    assert_eq!((last.status, last.fault), (0, Some(Fault::ResetMidBody)));
}

#[tokio::test(flavor = "multi_thread")]
async fn proxy_flip_byte_corrupts_one_byte() {
    let rules = vec![Rule::new("/blobs/", Fault::FlipByte, Schedule::Always)];
    let (_reg, proxy, img) = proxied(rules).await;
    let layer = &img.layers[0];
    let got = get_blob(&proxy.url(), "p/app", &layer.digest, None, None)
        .await
        .unwrap();
    assert_eq!(got.len(), layer.data.len());
    assert_ne!(sha256_digest(&got), layer.digest);
    let diffs: Vec<usize> = (0..got.len())
        .filter(|&i| got[i] != layer.data[i])
        .collect();
    assert_eq!(diffs, [layer.data.len() / 2]);
    // Manifests are untouched by a /blobs/ rule.
    let (m, _) = get_manifest(&proxy.url(), "p/app", "v1", None, None)
        .await
        .unwrap();
    assert_eq!(m, img.manifest);
}

#[tokio::test(flavor = "multi_thread")]
async fn proxy_slow_body_delays_the_body_not_the_headers() {
    let delay = Duration::from_millis(1500);
    let rules = vec![Rule::new(
        "/blobs/",
        Fault::SlowBody { delay },
        Schedule::Always,
    )];
    let (_reg, proxy, img) = proxied(rules).await;
    let layer = &img.layers[0];
    let c = http_client(None);
    let t0 = Instant::now();
    let r = c
        .get(format!("{}/v2/p/app/blobs/{}", proxy.url(), layer.digest))
        .send()
        .await
        .unwrap();
    let headers_at = t0.elapsed();
    let body = r.bytes().await.unwrap();
    let body_at = t0.elapsed();
    assert!(headers_at < Duration::from_millis(1000), "{headers_at:?}");
    assert!(body_at >= delay, "{body_at:?}");
    assert_eq!(sha256_digest(&body), layer.digest);

    // A client read timeout shorter than the delay fires.
    let c = reqwest::Client::builder()
        .read_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let r = c
        .get(format!("{}/v2/p/app/blobs/{}", proxy.url(), layer.digest))
        .send()
        .await
        .unwrap();
    let err = r.bytes().await.expect_err("read timeout");
    assert!(err.is_timeout(), "{err:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn proxy_unauthorized_uses_the_upstream_challenge() {
    let reg = Registry::start_htpasswd("AWS", "tok");
    let img = random_image(30, &[100], "linux/amd64", Format::Oci);
    push_image(&reg.url(), "e/app", "v1", &img, reg.auth(), None).await;
    let proxy = FaultProxy::start(
        &reg.url(),
        vec![Rule::new(
            "/manifests/",
            Fault::Unauthorized,
            Schedule::FirstN(1),
        )],
    )
    .await;
    let c = http_client(None);
    let url = format!("{}/v2/e/app/manifests/v1", proxy.url());
    let r = c
        .head(&url)
        .basic_auth("AWS", Some("tok"))
        .header("accept", MANIFEST_ACCEPT)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "good credentials, injected 401");
    assert_eq!(r.headers()["www-authenticate"], r#"Basic realm="test""#);
    let d = head_manifest(&proxy.url(), "e/app", "v1", reg.auth(), None).await;
    assert_eq!(d.as_deref(), Some(img.digest.as_str()));
}

#[tokio::test(flavor = "multi_thread")]
async fn proxy_forwards_pushes_and_heads_verbatim() {
    let reg = Registry::start_htpasswd("u", "p");
    let proxy = FaultProxy::start(&reg.url(), vec![]).await;
    let img = random_image(40, &[3000, 5000], "linux/amd64", Format::DockerV2);
    push_image(
        &proxy.url(),
        "via/proxy",
        "v1",
        &img,
        Some(("u", "p")),
        None,
    )
    .await;
    // Uploads came back through the proxy (Location points at it).
    let hits = proxy.hits();
    assert_eq!(
        hits.iter()
            .filter(|(m, p, s)| m == "PUT" && p.contains("/blobs/uploads/") && *s == 201)
            .count(),
        3,
        "{hits:#?}"
    );
    let reqs = reg.requests();
    assert_eq!(
        reqs.len(),
        hits.len(),
        "every proxied request reached the registry once"
    );

    // An upload's Location points back at the proxy.
    let c = http_client(None);
    let r = c
        .post(format!("{}/v2/via/proxy/blobs/uploads/", proxy.url()))
        .basic_auth("u", Some("p"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let loc = r.headers()["location"].to_str().unwrap();
    assert!(
        loc.starts_with(&format!("{}/v2/via/proxy/blobs/uploads/", proxy.url())),
        "{loc}"
    );

    // HEAD keeps Content-Length and the digest header; Range is forwarded.
    let r = c
        .head(format!("{}/v2/via/proxy/manifests/v1", proxy.url()))
        .basic_auth("u", Some("p"))
        .header("accept", MANIFEST_ACCEPT)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-length"].to_str().unwrap(),
        img.manifest.len().to_string()
    );
    assert_eq!(r.headers()["docker-content-digest"], img.digest.as_str());
    let r = c
        .get(format!(
            "{}/v2/via/proxy/blobs/{}",
            proxy.url(),
            img.layers[0].digest
        ))
        .basic_auth("u", Some("p"))
        .header("range", "bytes=10-19")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(&r.bytes().await.unwrap()[..], &img.layers[0].data[10..20]);
}
