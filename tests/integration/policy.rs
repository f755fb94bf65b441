//! The trust policy (containers-policy.json) end to end: `copy` and `sync` against real
//! `docker-registry` instances, with cosign signatures made in the test by freshly generated
//! P-256 and Ed25519 keys and pushed in the cosign tag format (`sha256-<hex>.sig`, one per
//! platform manifest) to the source repository.
//!
//! What reached the destination is read back from the destination registry itself (HEAD
//! manifest), never taken from the product's report alone.

use std::path::{Path, PathBuf};
use std::process::Output;

use base64::Engine as _;
use serde_json::{json, Value};

use crate::support::{
    describe, head_manifest, index_of, push_blob, push_image, push_index, push_manifest,
    random_image, run_async, skopeo_bin, Blob, Format, Index, Moto, Registry, MOTO_ECR_PASSWORD,
    MOTO_ECR_USER, MT_OCI_CONFIG, MT_OCI_MANIFEST,
};

const PLAIN: [&str; 2] = ["--src-tls-verify=false", "--dest-tls-verify=false"];
const MT_SIMPLESIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
const SIG_ANNOTATION: &str = "dev.cosignproject.cosign/signature";

// ---------------------------------------------------------------------------------------------
// Keys and signatures
// ---------------------------------------------------------------------------------------------

/// A signing key generated for this test run.
enum TestKey {
    P256(p256::ecdsa::SigningKey),
    Ed25519(ed25519_dalek::SigningKey),
}

impl TestKey {
    fn p256() -> TestKey {
        TestKey::P256(p256::ecdsa::SigningKey::random(&mut rand_core::OsRng))
    }

    fn ed25519() -> TestKey {
        let mut seed = [0u8; 32];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut seed);
        TestKey::Ed25519(ed25519_dalek::SigningKey::from_bytes(&seed))
    }

    /// The public key as a PEM SubjectPublicKeyInfo (what `cosign generate-key-pair` writes).
    fn public_pem(&self) -> String {
        use p256::pkcs8::EncodePublicKey as _;
        match self {
            TestKey::P256(k) => k
                .verifying_key()
                .to_public_key_pem(p256::pkcs8::LineEnding::LF)
                .expect("P-256 public key PEM"),
            TestKey::Ed25519(k) => k
                .verifying_key()
                .to_public_key_pem(p256::pkcs8::LineEnding::LF)
                .expect("Ed25519 public key PEM"),
        }
    }

    /// A raw signature over `data`: ECDSA P-256 SHA-256 in DER, or Ed25519.
    fn sign(&self, data: &[u8]) -> Vec<u8> {
        match self {
            TestKey::P256(k) => {
                use p256::ecdsa::signature::Signer as _;
                let sig: p256::ecdsa::Signature = k.sign(data);
                sig.to_der().as_bytes().to_vec()
            }
            TestKey::Ed25519(k) => {
                use ed25519_dalek::Signer as _;
                k.sign(data).to_bytes().to_vec()
            }
        }
    }

    /// Writes the public key PEM to `dir/name` and returns its absolute path.
    fn write_public(&self, dir: &Path, name: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, self.public_pem()).expect("write public key");
        p
    }
}

/// The simple-signing payload, byte for byte as skopeo writes it (`optional` null).
fn payload(docker_reference: &str, manifest_digest: &str) -> Vec<u8> {
    let v = json!({
        "critical": {
            "identity": {"docker-reference": docker_reference},
            "image": {"docker-manifest-digest": manifest_digest},
            "type": "cosign container image signature"
        },
        "optional": null
    });
    serde_json::to_vec(&v).unwrap()
}

/// `sha256-<hex>.sig` for a manifest digest.
fn sig_tag(digest: &str) -> String {
    format!(
        "{}.sig",
        digest
            .strip_prefix("sha256:")
            .map(|h| format!("sha256-{h}"))
            .expect("sha256 digest")
    )
}

/// Signs `manifest_digest` with `key` for `docker_reference` and pushes the signature manifest
/// (config + one simple-signing layer) to `repo:sha256-<hex>.sig` in `reg_url`. Returns the
/// signature manifest's digest.
async fn push_signature(
    reg_url: &str,
    auth: Option<(&str, &str)>,
    repo: &str,
    manifest_digest: &str,
    docker_reference: &str,
    key: &TestKey,
) -> String {
    let body = payload(docker_reference, manifest_digest);
    let signature = base64::engine::general_purpose::STANDARD.encode(key.sign(&body));
    let layer = Blob::new(body, MT_SIMPLESIGNING);
    let config = Blob::new(
        serde_json::to_vec(&json!({
            "architecture": "",
            "os": "",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [layer.digest]}
        }))
        .unwrap(),
        MT_OCI_CONFIG,
    );
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": MT_OCI_MANIFEST,
        "config": {"mediaType": MT_OCI_CONFIG, "digest": config.digest, "size": config.data.len()},
        "layers": [{
            "mediaType": MT_SIMPLESIGNING,
            "digest": layer.digest,
            "size": layer.data.len(),
            "annotations": {SIG_ANNOTATION: signature}
        }]
    }))
    .unwrap();
    push_blob(reg_url, repo, &config, auth, None).await;
    push_blob(reg_url, repo, &layer, auth, None).await;
    push_manifest(
        reg_url,
        repo,
        &sig_tag(manifest_digest),
        &manifest,
        MT_OCI_MANIFEST,
        auth,
        None,
    )
    .await
}

/// Signs every platform manifest of `idx` (not the index itself) in `reg`'s `repo`.
/// Returns the signature manifest digests, in platform order.
async fn sign_children(
    reg: &Registry,
    repo: &str,
    idx: &Index,
    docker_reference: &str,
    key: &TestKey,
) -> Vec<String> {
    let mut out = vec![];
    for img in &idx.images {
        out.push(
            push_signature(
                &reg.url(),
                reg.auth(),
                repo,
                &img.digest,
                docker_reference,
                key,
            )
            .await,
        );
    }
    out
}

fn two_platforms(seed: u64) -> Index {
    index_of(
        vec![
            random_image(seed, &[3000], "linux/amd64", Format::Oci),
            random_image(seed + 1, &[2000, 900], "linux/arm64", Format::Oci),
        ],
        Format::Oci,
    )
}

// ---------------------------------------------------------------------------------------------
// Policies and runs
// ---------------------------------------------------------------------------------------------

/// A temp dir holding the keys and the policy file.
struct PolicyDir {
    dir: tempfile::TempDir,
}

impl PolicyDir {
    fn new() -> PolicyDir {
        PolicyDir {
            dir: tempfile::Builder::new()
                .prefix("policy-test-")
                .tempdir()
                .expect("temp dir"),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `policy` as `name` and returns its path as a string.
    fn write(&self, name: &str, policy: &Value) -> String {
        let p = self.dir.path().join(name);
        std::fs::write(&p, serde_json::to_vec_pretty(policy).unwrap()).unwrap();
        p.display().to_string()
    }
}

/// `{"default": [reject], "transports": {"docker": {scope: [requirement]}}}`.
fn scoped_policy(scope: &str, requirement: Value) -> Value {
    json!({
        "default": [{"type": "reject"}],
        "transports": {"docker": {scope: [requirement]}}
    })
}

fn sigstore_key(key_path: &Path) -> Value {
    json!({"type": "sigstoreSigned", "keyPath": key_path.display().to_string()})
}

/// `copy --src SRC --dest DEST --output json` over plain HTTP, plus `extra`.
async fn copy(src: &str, dest: &str, extra: &[&str]) -> Output {
    let mut args = vec!["copy", "--src", src, "--dest", dest, "--output", "json"];
    args.extend_from_slice(&PLAIN);
    args.extend_from_slice(extra);
    run_async(&args, &[]).await
}

fn text(out: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn assert_exit(out: &Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "expected exit {code}\n{}",
        describe(out)
    );
}

/// Asserts exit 1 with "blocked by the trust policy" and one of `reasons` (lower-cased match).
fn assert_blocked(out: &Output, reasons: &[&str]) {
    assert_exit(out, 1);
    let t = text(out);
    assert!(
        t.contains("blocked by the trust policy"),
        "expected \"blocked by the trust policy\"\n{}",
        describe(out)
    );
    let lower = t.to_lowercase();
    assert!(
        reasons.iter().any(|r| lower.contains(&r.to_lowercase())),
        "expected the reason to mention one of {reasons:?}\n{}",
        describe(out)
    );
}

/// Source and destination plain registries and an index `lib/app:v1` in the source.
struct CopySetup {
    src: Registry,
    dst: Registry,
    idx: Index,
    keys: PolicyDir,
}

impl CopySetup {
    async fn new(seed: u64) -> CopySetup {
        let src = Registry::start();
        let dst = Registry::start();
        let idx = two_platforms(seed);
        push_index(&src.url(), "lib/app", "v1", &idx, None, None).await;
        CopySetup {
            src,
            dst,
            idx,
            keys: PolicyDir::new(),
        }
    }

    /// `<src host>/lib/app:v1`: what the image is pulled as.
    fn src_ref(&self) -> String {
        format!("{}/lib/app:v1", self.src.host)
    }

    fn dst_ref(&self, repo: &str) -> String {
        format!("{}/{repo}:v1", self.dst.host)
    }

    async fn dst_digest(&self, repo: &str, reference: &str) -> Option<String> {
        head_manifest(&self.dst.url(), repo, reference, None, None).await
    }

    async fn src_digest(&self, reference: &str) -> Option<String> {
        head_manifest(&self.src.url(), "lib/app", reference, None, None).await
    }

    /// The destination has neither the tag nor any platform manifest.
    async fn assert_nothing_copied(&self, repo: &str) {
        assert_eq!(self.dst_digest(repo, "v1").await, None, "{repo}:v1 exists");
        for img in &self.idx.images {
            assert_eq!(
                self.dst_digest(repo, &img.digest).await,
                None,
                "{repo}@{} exists",
                img.digest
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 1. A signed multi-arch image is copied with its signatures
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn copy_signed_index_copies_image_and_sig_tags() {
    let s = CopySetup::new(7001).await;
    let p256 = TestKey::p256();
    let ed = TestKey::ed25519();
    let p256_pem = p256.write_public(s.keys.path(), "p256.pub");
    let ed_pem = ed.write_public(s.keys.path(), "ed25519.pub");
    assert!(std::fs::read_to_string(&p256_pem)
        .unwrap()
        .starts_with("-----BEGIN PUBLIC KEY-----"));
    assert!(std::fs::read_to_string(&ed_pem)
        .unwrap()
        .starts_with("-----BEGIN PUBLIC KEY-----"));

    let sigs = sign_children(&s.src, "lib/app", &s.idx, &s.src_ref(), &p256).await;
    let policy = s.keys.write(
        "p256.json",
        &scoped_policy(&s.src.host, sigstore_key(&p256_pem)),
    );

    let out = copy(
        &s.src_ref(),
        &s.dst_ref("mirror/app"),
        &["--policy", &policy],
    )
    .await;
    assert_exit(&out, 0);
    assert_eq!(
        s.dst_digest("mirror/app", "v1").await,
        Some(s.idx.digest.clone()),
        "{}",
        describe(&out)
    );
    for (img, sig) in s.idx.images.iter().zip(&sigs) {
        assert_eq!(
            s.dst_digest("mirror/app", &img.digest).await,
            Some(img.digest.clone())
        );
        let tag = sig_tag(&img.digest);
        assert_eq!(s.src_digest(&tag).await, Some(sig.clone()));
        assert_eq!(
            s.dst_digest("mirror/app", &tag).await,
            Some(sig.clone()),
            "signature tag {tag} was not copied\n{}",
            describe(&out)
        );
    }

    // --remove-signatures: the image, but no `.sig` tags.
    let out = copy(
        &s.src_ref(),
        &s.dst_ref("mirror/nosig"),
        &["--policy", &policy, "--remove-signatures"],
    )
    .await;
    assert_exit(&out, 0);
    assert_eq!(
        s.dst_digest("mirror/nosig", "v1").await,
        Some(s.idx.digest.clone())
    );
    for img in &s.idx.images {
        assert_eq!(
            s.dst_digest("mirror/nosig", &sig_tag(&img.digest)).await,
            None,
            "--remove-signatures still copied the signature of {}",
            img.digest
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn copy_signed_with_ed25519_key_is_accepted() {
    let s = CopySetup::new(7011).await;
    let ed = TestKey::ed25519();
    let ed_pem = ed.write_public(s.keys.path(), "ed25519.pub");
    let sigs = sign_children(&s.src, "lib/app", &s.idx, &s.src_ref(), &ed).await;
    let policy = s.keys.write(
        "ed.json",
        &scoped_policy(&s.src.host, sigstore_key(&ed_pem)),
    );
    let out = copy(
        &s.src_ref(),
        &s.dst_ref("mirror/app"),
        &["--policy", &policy],
    )
    .await;
    assert_exit(&out, 0);
    assert_eq!(
        s.dst_digest("mirror/app", "v1").await,
        Some(s.idx.digest.clone())
    );
    for (img, sig) in s.idx.images.iter().zip(&sigs) {
        assert_eq!(
            s.dst_digest("mirror/app", &sig_tag(&img.digest)).await,
            Some(sig.clone())
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Unsigned → blocked
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn copy_unsigned_image_is_blocked() {
    let s = CopySetup::new(7021).await;
    let p256 = TestKey::p256();
    let pem = p256.write_public(s.keys.path(), "p256.pub");
    let policy = s
        .keys
        .write("p.json", &scoped_policy(&s.src.host, sigstore_key(&pem)));
    let out = copy(
        &s.src_ref(),
        &s.dst_ref("mirror/app"),
        &["--policy", &policy],
    )
    .await;
    assert_blocked(&out, &["no signature"]);
    s.assert_nothing_copied("mirror/app").await;

    // Only one platform signed: the other platform is still unsigned, so still blocked.
    push_signature(
        &s.src.url(),
        None,
        "lib/app",
        &s.idx.images[0].digest,
        &s.src_ref(),
        &p256,
    )
    .await;
    let out = copy(
        &s.src_ref(),
        &s.dst_ref("mirror/app"),
        &["--policy", &policy],
    )
    .await;
    assert_blocked(&out, &["no signature"]);
    s.assert_nothing_copied("mirror/app").await;
}

// ---------------------------------------------------------------------------------------------
// 3. Wrong key → blocked
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn copy_signed_by_untrusted_key_is_blocked() {
    let s = CopySetup::new(7031).await;
    let p256 = TestKey::p256();
    let ed = TestKey::ed25519();
    let pem = p256.write_public(s.keys.path(), "p256.pub");
    sign_children(&s.src, "lib/app", &s.idx, &s.src_ref(), &ed).await;
    let policy = s
        .keys
        .write("p.json", &scoped_policy(&s.src.host, sigstore_key(&pem)));
    let out = copy(
        &s.src_ref(),
        &s.dst_ref("mirror/app"),
        &["--policy", &policy],
    )
    .await;
    assert_blocked(&out, &["untrusted key", "verification failed"]);
    s.assert_nothing_copied("mirror/app").await;

    // Another P-256 key is just as untrusted.
    let other = TestKey::p256();
    let s2 = CopySetup::new(7035).await;
    sign_children(&s2.src, "lib/app", &s2.idx, &s2.src_ref(), &other).await;
    let policy2 = s2
        .keys
        .write("p.json", &scoped_policy(&s2.src.host, sigstore_key(&pem)));
    let out = copy(
        &s2.src_ref(),
        &s2.dst_ref("mirror/app"),
        &["--policy", &policy2],
    )
    .await;
    assert_blocked(&out, &["untrusted key", "verification failed"]);
    s2.assert_nothing_copied("mirror/app").await;
}

// ---------------------------------------------------------------------------------------------
// 4. Identity mismatch: default identity blocks, matchRepository allows
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn copy_identity_mismatch_blocked_by_default_allowed_by_match_repository() {
    let s = CopySetup::new(7041).await;
    let p256 = TestKey::p256();
    let pem = p256.write_public(s.keys.path(), "p256.pub");
    // Same repository, another tag: matchRepoDigestOrExact refuses (pulled by tag v1),
    // matchRepository accepts.
    let signed_as = format!("{}/lib/app:v2", s.src.host);
    let sigs = sign_children(&s.src, "lib/app", &s.idx, &signed_as, &p256).await;

    let strict = s.keys.write(
        "strict.json",
        &scoped_policy(&s.src.host, sigstore_key(&pem)),
    );
    let out = copy(
        &s.src_ref(),
        &s.dst_ref("mirror/app"),
        &["--policy", &strict],
    )
    .await;
    assert_blocked(&out, &["identity mismatch", "is not accepted"]);
    s.assert_nothing_copied("mirror/app").await;

    let mut req = sigstore_key(&pem);
    req["signedIdentity"] = json!({"type": "matchRepository"});
    let relaxed = s
        .keys
        .write("relaxed.json", &scoped_policy(&s.src.host, req));
    let out = copy(
        &s.src_ref(),
        &s.dst_ref("mirror/app"),
        &["--policy", &relaxed],
    )
    .await;
    assert_exit(&out, 0);
    assert_eq!(
        s.dst_digest("mirror/app", "v1").await,
        Some(s.idx.digest.clone())
    );
    for (img, sig) in s.idx.images.iter().zip(&sigs) {
        assert_eq!(
            s.dst_digest("mirror/app", &sig_tag(&img.digest)).await,
            Some(sig.clone())
        );
    }

    // matchRepository still refuses another repository.
    let s2 = CopySetup::new(7045).await;
    let elsewhere = format!("{}/lib/other:v1", s2.src.host);
    sign_children(&s2.src, "lib/app", &s2.idx, &elsewhere, &p256).await;
    let mut req = sigstore_key(&pem);
    req["signedIdentity"] = json!({"type": "matchRepository"});
    let relaxed2 = s2
        .keys
        .write("relaxed.json", &scoped_policy(&s2.src.host, req));
    let out = copy(
        &s2.src_ref(),
        &s2.dst_ref("mirror/app"),
        &["--policy", &relaxed2],
    )
    .await;
    assert_blocked(&out, &["identity mismatch", "is not accepted"]);
    s2.assert_nothing_copied("mirror/app").await;
}

// ---------------------------------------------------------------------------------------------
// 5. A scope for another registry leaves this one under `default`
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn copy_other_registry_scope_falls_back_to_default() {
    let s = CopySetup::new(7051).await;
    let other = s.keys.write(
        "other.json",
        &json!({
            "default": [{"type": "insecureAcceptAnything"}],
            "transports": {"docker": {"other.example:5000": [{"type": "reject"}]}}
        }),
    );
    let out = copy(
        &s.src_ref(),
        &s.dst_ref("mirror/app"),
        &["--policy", &other],
    )
    .await;
    assert_exit(&out, 0);
    assert_eq!(
        s.dst_digest("mirror/app", "v1").await,
        Some(s.idx.digest.clone())
    );

    // Control: the same policy with our registry as the scope rejects.
    let ours = s.keys.write(
        "ours.json",
        &json!({
            "default": [{"type": "insecureAcceptAnything"}],
            "transports": {"docker": {s.src.host.as_str(): [{"type": "reject"}]}}
        }),
    );
    let out = copy(
        &s.src_ref(),
        &s.dst_ref("mirror/other"),
        &["--policy", &ours],
    )
    .await;
    assert_blocked(&out, &["rejected by policy"]);
    s.assert_nothing_copied("mirror/other").await;

    // And the reverse: reject by default, a scope for another registry only.
    let strict = s.keys.write(
        "strict.json",
        &json!({
            "default": [{"type": "reject"}],
            "transports": {"docker": {"other.example:5000": [{"type": "insecureAcceptAnything"}]}}
        }),
    );
    let out = copy(
        &s.src_ref(),
        &s.dst_ref("mirror/third"),
        &["--policy", &strict],
    )
    .await;
    assert_blocked(&out, &["rejected by policy"]);
    s.assert_nothing_copied("mirror/third").await;
}

// ---------------------------------------------------------------------------------------------
// 6. sync: signed copied with its signatures, unsigned blocked
// ---------------------------------------------------------------------------------------------

/// One ECR API call to moto (JSON 1.1, unsigned).
async fn ecr_api(moto: &Moto, op: &str, body: Value) -> Value {
    moto.ecr_api(op, body).await
}

/// The (type, data) of every JSON line on stdout.
fn records(out: &Output) -> Vec<(String, Value)> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("non-JSON line ({e}): {l:?}\n{}", describe(out)));
            (
                v["type"].as_str().unwrap_or_default().to_string(),
                v["data"].clone(),
            )
        })
        .collect()
}

/// The only `kind` record for `repo:tag`.
fn one(out: &Output, kind: &str, repo: &str, tag: &str) -> Value {
    let found: Vec<Value> = records(out)
        .into_iter()
        .filter(|(k, d)| k == kind && d["repository"] == repo && d["tag"] == tag)
        .map(|(_, d)| d)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "expected one {kind:?} record for {repo}:{tag}\n{}",
        describe(out)
    );
    found.into_iter().next().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn sync_copies_signed_and_blocks_unsigned() {
    let moto = Moto::start();
    let up = Registry::start();
    let ecr = Registry::start_htpasswd(MOTO_ECR_USER, MOTO_ECR_PASSWORD);
    let keys = PolicyDir::new();
    let key = TestKey::p256();
    let pem = key.write_public(keys.path(), "p256.pub");

    let signed = two_platforms(7061);
    let unsigned = random_image(7063, &[1500], "linux/amd64", Format::Oci);
    push_index(&up.url(), "up/signed", "v1", &signed, None, None).await;
    push_image(&up.url(), "up/unsigned", "v1", &unsigned, None, None).await;
    let signed_src = format!("{}/up/signed", up.host);
    let unsigned_src = format!("{}/up/unsigned", up.host);
    let sigs = sign_children(&up, "up/signed", &signed, &format!("{signed_src}:v1"), &key).await;

    for (name, src) in [
        ("mirror/signed", &signed_src),
        ("mirror/unsigned", &unsigned_src),
    ] {
        ecr_api(
            &moto,
            "CreateRepository",
            json!({"repositoryName": name, "tags": [
                {"Key": "upstream-image", "Value": src},
                {"Key": "upstream-tags", "Value": "v1"}
            ]}),
        )
        .await;
    }
    let policy = keys.write("p.json", &scoped_policy(&up.host, sigstore_key(&pem)));

    let mut env = moto.env();
    for (k, v) in [
        ("ECR_MIRROR_SYNC_REGISTRY_ENDPOINT", ecr.url()),
        ("ECR_MIRROR_SYNC_DEST_TLS_VERIFY", "false".to_string()),
        ("ECR_MIRROR_SYNC_SRC_TLS_VERIFY", "false".to_string()),
    ] {
        env.push((k.to_string(), v));
    }

    // --- dry run: the plan ---
    let dry = run_async(
        &["sync", "--output", "json", "--dry-run", "--policy", &policy],
        &env,
    )
    .await;
    let p = one(&dry, "plan", "mirror/signed", "v1");
    assert_eq!(p["action"], "copy", "{p}\n{}", describe(&dry));
    let p = one(&dry, "plan", "mirror/unsigned", "v1");
    assert_eq!(p["action"], "blocked", "{p}\n{}", describe(&dry));
    assert!(
        p["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("no signature"),
        "{p}"
    );
    assert_eq!(
        head_manifest(&ecr.url(), "mirror/signed", "v1", ecr.auth(), None).await,
        None,
        "--dry-run wrote"
    );

    // --- the sync ---
    let run = run_async(&["sync", "--output", "json", "--policy", &policy], &env).await;
    let i = one(&run, "item", "mirror/signed", "v1");
    assert_eq!(i["outcome"], "copied", "{i}\n{}", describe(&run));
    let i = one(&run, "item", "mirror/unsigned", "v1");
    assert_eq!(i["outcome"], "blocked", "{i}\n{}", describe(&run));
    assert_exit(&run, 1);

    assert_eq!(
        head_manifest(&ecr.url(), "mirror/signed", "v1", ecr.auth(), None).await,
        Some(signed.digest.clone())
    );
    for (img, sig) in signed.images.iter().zip(&sigs) {
        assert_eq!(
            head_manifest(
                &ecr.url(),
                "mirror/signed",
                &sig_tag(&img.digest),
                ecr.auth(),
                None
            )
            .await,
            Some(sig.clone()),
            "signature of {} not copied\n{}",
            img.digest,
            describe(&run)
        );
    }
    assert_eq!(
        head_manifest(&ecr.url(), "mirror/unsigned", "v1", ecr.auth(), None).await,
        None,
        "the blocked image was written"
    );
    assert_eq!(
        head_manifest(
            &ecr.url(),
            "mirror/unsigned",
            &unsigned.digest,
            ecr.auth(),
            None
        )
        .await,
        None,
        "the blocked image's manifest was written"
    );
}

// ---------------------------------------------------------------------------------------------
// 7. Usage errors
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn missing_policy_file_and_conflicting_flags_are_usage_errors() {
    let s = CopySetup::new(7071).await;
    let out = copy(
        &s.src_ref(),
        &s.dst_ref("mirror/app"),
        &["--policy", "/nonexistent.json"],
    )
    .await;
    assert_exit(&out, 2);
    assert!(
        text(&out).contains("/nonexistent.json"),
        "the error should name the file\n{}",
        describe(&out)
    );
    s.assert_nothing_copied("mirror/app").await;

    let keys = PolicyDir::new();
    let policy = keys.write(
        "accept.json",
        &json!({"default": [{"type": "insecureAcceptAnything"}]}),
    );
    let out = copy(
        &s.src_ref(),
        &s.dst_ref("mirror/app"),
        &["--policy", &policy, "--insecure-policy"],
    )
    .await;
    assert_exit(&out, 2);
    s.assert_nothing_copied("mirror/app").await;

    // A missing key file named by the policy is also a start-up error naming the key.
    let bad_key = keys.write(
        "badkey.json",
        &scoped_policy(
            &s.src.host,
            json!({"type": "sigstoreSigned", "keyPath": "/nonexistent/cosign.pub"}),
        ),
    );
    let out = copy(
        &s.src_ref(),
        &s.dst_ref("mirror/app"),
        &["--policy", &bad_key],
    )
    .await;
    assert!(
        matches!(out.status.code(), Some(c) if c != 0),
        "a missing key file must fail the run\n{}",
        describe(&out)
    );
    assert!(
        text(&out).contains("/nonexistent/cosign.pub"),
        "the error should name the key file\n{}",
        describe(&out)
    );
    s.assert_nothing_copied("mirror/app").await;

    // Sanity: the same copy with the valid policy works (so the refusals above were about the
    // flags, not the setup).
    let out = copy(
        &s.src_ref(),
        &s.dst_ref("mirror/app"),
        &["--policy", &policy],
    )
    .await;
    assert_exit(&out, 0);
    assert_eq!(
        s.dst_digest("mirror/app", "v1").await,
        Some(s.idx.digest.clone())
    );
}

// ---------------------------------------------------------------------------------------------
// 8. A verdict matrix: every signer/identity against every policy, in one registry
// ---------------------------------------------------------------------------------------------
//
// skopeo is the reference only where no signature must be verified: Debian's skopeo 1.9.3 is
// built with sigstore disabled ("Debian-local change: sigstore disabled") and rejects every
// image under a `sigstoreSigned` requirement, so it cannot be the oracle for those.

/// `skopeo --policy POLICY --registries.d DIR copy --all SRC DEST` over plain HTTP.
async fn skopeo_copy_with_policy(
    policy: &str,
    registries_d: &Path,
    src: &str,
    dest: &str,
) -> Output {
    tokio::process::Command::new(skopeo_bin())
        .arg("--policy")
        .arg(policy)
        .arg("--registries.d")
        .arg(registries_d)
        .args(["copy", "--all"])
        .args(PLAIN)
        .arg(format!("docker://{src}"))
        .arg(format!("docker://{dest}"))
        .env("HOME", registries_d)
        .output()
        .await
        .expect("run skopeo")
}

#[tokio::test(flavor = "multi_thread")]
async fn verdict_matrix_and_skopeo_agreement_without_signatures() {
    let src = Registry::start();
    let dst = Registry::start();
    let keys = PolicyDir::new();
    let p256 = TestKey::p256();
    let ed = TestKey::ed25519();
    let p256_pem = p256.write_public(keys.path(), "p256.pub");
    let ed_pem = ed.write_public(keys.path(), "ed25519.pub");
    // containers/image reads sigstore signatures from the registry only when told to.
    let regd = keys.path().join("registries.d");
    std::fs::create_dir_all(&regd).unwrap();
    std::fs::write(
        regd.join("default.yaml"),
        "default-docker:\n  use-sigstore-attachments: true\n",
    )
    .unwrap();

    let host = src.host.clone();
    // (repository, signer, signed reference)
    let setups: Vec<(&str, Option<&TestKey>, String)> = vec![
        ("lib/p256", Some(&p256), format!("{host}/lib/p256:v1")),
        ("lib/ed", Some(&ed), format!("{host}/lib/ed:v1")),
        ("lib/none", None, String::new()),
        (
            "lib/othertag",
            Some(&p256),
            format!("{host}/lib/othertag:v2"),
        ),
        ("lib/otherrepo", Some(&p256), format!("{host}/lib/zzz:v1")),
        ("lib/repoonly", Some(&p256), format!("{host}/lib/repoonly")),
    ];
    for (n, (repo, signer, signed_as)) in setups.iter().enumerate() {
        let idx = two_platforms(7100 + 10 * n as u64);
        push_index(&src.url(), repo, "v1", &idx, None, None).await;
        if let Some(k) = signer {
            sign_children(&src, repo, &idx, signed_as, k).await;
        }
    }

    let with_identity = |key: &Path, identity: Option<Value>| {
        let mut r = sigstore_key(key);
        if let Some(i) = identity {
            r["signedIdentity"] = i;
        }
        scoped_policy(&host, r)
    };
    let policies = [
        ("p256", with_identity(&p256_pem, None)),
        ("ed", with_identity(&ed_pem, None)),
        (
            "p256-repo",
            with_identity(&p256_pem, Some(json!({"type": "matchRepository"}))),
        ),
        (
            "other-scope",
            json!({
                "default": [{"type": "insecureAcceptAnything"}],
                "transports": {"docker": {"other.example:5000": [{"type": "reject"}]}}
            }),
        ),
    ];
    // Expected verdicts (allowed?) per (policy, repository).
    let want_of = |policy: &str, repo: &str| -> bool {
        match policy {
            "p256" => repo == "lib/p256",
            "ed" => repo == "lib/ed",
            "p256-repo" => matches!(repo, "lib/p256" | "lib/othertag" | "lib/repoonly"),
            _ => true,
        }
    };

    let mut disagreements = vec![];
    let mut n = 0;
    for (pname, policy) in &policies {
        let path = keys.write(&format!("{pname}.json"), policy);
        for (repo, _, _) in &setups {
            n += 1;
            let src_ref = format!("{host}/{repo}:v1");
            // Only where Debian's skopeo can judge (no sigstore verification needed).
            let skopeo_ok = if *pname == "other-scope" {
                let theirs = skopeo_copy_with_policy(
                    &path,
                    &regd,
                    &src_ref,
                    &format!("{}/skopeo{n}/app:v1", dst.host),
                )
                .await;
                if !theirs.status.success() {
                    disagreements.push(format!(
                        "policy {pname}, {repo}: skopeo refused: {}",
                        String::from_utf8_lossy(&theirs.stderr).trim()
                    ));
                }
                theirs.status.success()
            } else {
                want_of(pname, repo)
            };
            let ours = copy(
                &src_ref,
                &format!("{}/ours{n}/app:v1", dst.host),
                &["--policy", &path],
            )
            .await;
            let want = want_of(pname, repo);
            let ours_ok = ours.status.success();
            if ours_ok != want || skopeo_ok != want {
                disagreements.push(format!(
                    "policy {pname}, {repo}: expected allowed={want}, skopeo allowed={skopeo_ok}, \
                     ours allowed={ours_ok}\n  ours: {}",
                    text(&ours).trim()
                ));
            }
            if !ours_ok {
                assert_blocked(&ours, &[""]);
            } else {
                assert!(
                    head_manifest(&dst.url(), &format!("ours{n}/app"), "v1", None, None)
                        .await
                        .is_some(),
                    "ours{n}: allowed but nothing written"
                );
            }
        }
    }
    assert!(
        disagreements.is_empty(),
        "verdicts differ:\n{}",
        disagreements.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// 8. Keyless (Fulcio + Rekor), key + Rekor, and PKI signatures (issue 14)
// ---------------------------------------------------------------------------------------------
//
// The CA, the leaf certificates (with Fulcio's issuer extensions and an email SAN) and the Rekor
// key that signs SETs are generated per test (support/sigstore.rs). Each case changes one thing
// from a valid signature and checks that exactly that is caught, end to end through `copy`
// (and `sync` below) against real registries.

use crate::support::sigstore::{Ca, Issued, Leaf, Rekor};

const ISSUER: &str = "https://accounts.google.com";
const EMAIL: &str = "krel-trust@k8s-releng-prod.iam.gserviceaccount.com";
const CERT_ANNOTATION: &str = "dev.sigstore.cosign/certificate";
const CHAIN_ANNOTATION: &str = "dev.sigstore.cosign/chain";
const BUNDLE_ANNOTATION: &str = "dev.sigstore.cosign/bundle";

/// Pushes a cosign signature manifest whose one layer is `payload` with `annotations` (which
/// must include the signature) to `repo:sha256-<hex>.sig`. Returns the manifest's digest.
async fn push_signature_layer(
    reg: &Registry,
    repo: &str,
    manifest_digest: &str,
    payload: Vec<u8>,
    annotations: Value,
) -> String {
    let layer = Blob::new(payload, MT_SIMPLESIGNING);
    let config = Blob::new(
        serde_json::to_vec(&json!({
            "architecture": "", "os": "", "config": {},
            "rootfs": {"type": "layers", "diff_ids": [layer.digest]}
        }))
        .unwrap(),
        MT_OCI_CONFIG,
    );
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": MT_OCI_MANIFEST,
        "config": {"mediaType": MT_OCI_CONFIG, "digest": config.digest, "size": config.data.len()},
        "layers": [{
            "mediaType": MT_SIMPLESIGNING,
            "digest": layer.digest,
            "size": layer.data.len(),
            "annotations": annotations
        }]
    }))
    .unwrap();
    push_blob(&reg.url(), repo, &config, reg.auth(), None).await;
    push_blob(&reg.url(), repo, &layer, reg.auth(), None).await;
    push_manifest(
        &reg.url(),
        repo,
        &sig_tag(manifest_digest),
        &manifest,
        MT_OCI_MANIFEST,
        reg.auth(),
        None,
    )
    .await
}

/// A time in the past, well before any certificate here expires "now": signatures are logged
/// at this time, and their ten-minute Fulcio certificates have long expired when the test runs.
fn logged_at() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc() - time::Duration::days(30)
}

/// One image `lib/app:v1` in a source registry, an empty destination, a Fulcio-like CA and a
/// Rekor-like log, and a directory for the policy and trust files.
struct Keyless {
    src: Registry,
    dst: Registry,
    img: crate::support::Image,
    dir: PolicyDir,
    ca: Ca,
    rekor: Rekor,
}

impl Keyless {
    async fn new(seed: u64) -> Keyless {
        let src = Registry::start();
        let dst = Registry::start();
        let img = random_image(seed, &[1200], "linux/amd64", Format::Oci);
        push_image(&src.url(), "lib/app", "v1", &img, None, None).await;
        Keyless {
            src,
            dst,
            img,
            dir: PolicyDir::new(),
            ca: Ca::new(),
            rekor: Rekor::new(),
        }
    }

    fn src_ref(&self) -> String {
        format!("{}/lib/app:v1", self.src.host)
    }

    fn payload(&self) -> Vec<u8> {
        payload(&self.src_ref(), &self.img.digest)
    }

    fn file(&self, name: &str, contents: &str) -> String {
        let p = self.dir.path().join(name);
        std::fs::write(&p, contents).unwrap();
        p.display().to_string()
    }

    /// A `fulcio` requirement trusting `self.ca` and `self.rekor`, for ISSUER and EMAIL.
    fn fulcio_requirement(&self) -> Value {
        json!({
            "type": "sigstoreSigned",
            "fulcio": {
                "caPath": self.file("fulcio.pem", &self.ca.root_pem()),
                "oidcIssuer": ISSUER,
                "subjectEmail": EMAIL
            },
            "rekorPublicKeyPath": self.file("rekor.pub", &self.rekor.public_pem())
        })
    }

    /// Signs the image's payload with `leaf`, logs it in `log` at `logged_at()`, and pushes the
    /// signature with the certificate, chain and bundle annotations; `tweak` may change the
    /// annotations first.
    async fn push_keyless(&self, leaf: &Issued, log: &Rekor, tweak: impl FnOnce(&mut Value)) {
        let body = self.payload();
        let sig = leaf.sign_b64(&body);
        let bundle = log.bundle(
            &body,
            &sig,
            &leaf.cert_pem,
            logged_at().unix_timestamp() + 60,
        );
        let mut ann = json!({
            SIG_ANNOTATION: sig,
            CERT_ANNOTATION: leaf.cert_pem,
            CHAIN_ANNOTATION: self.ca.chain_pem(),
            BUNDLE_ANNOTATION: bundle,
        });
        tweak(&mut ann);
        push_signature_layer(&self.src, "lib/app", &self.img.digest, body, ann).await;
    }

    async fn copy_with(&self, requirement: Value) -> Output {
        let policy = self
            .dir
            .write("policy.json", &scoped_policy(&self.src.host, requirement));
        copy(
            &self.src_ref(),
            &format!("{}/mirror/app:v1", self.dst.host),
            &["--policy", &policy],
        )
        .await
    }

    async fn assert_copied(&self, out: &Output) {
        assert_exit(out, 0);
        assert_eq!(
            head_manifest(&self.dst.url(), "mirror/app", "v1", None, None).await,
            Some(self.img.digest.clone()),
            "the image was not copied\n{}",
            describe(out)
        );
    }

    async fn assert_not_copied(&self, out: &Output, reason: &str) {
        // The reason is inside a JSON string on stdout: its quotes are escaped there.
        assert_blocked(out, &[reason, &reason.replace('"', "\\\"")]);
        assert_eq!(
            head_manifest(&self.dst.url(), "mirror/app", &self.img.digest, None, None).await,
            None,
            "a blocked image was written\n{}",
            describe(out)
        );
    }
}

/// The Fulcio leaf a real signer would get at `logged_at()`.
fn valid_leaf(ca: &Ca) -> Issued {
    ca.issue(&Leaf::fulcio(EMAIL, ISSUER, logged_at()))
}

#[tokio::test(flavor = "multi_thread")]
async fn keyless_valid_signature_is_copied_though_its_certificate_expired_since() {
    let k = Keyless::new(7401).await;
    k.push_keyless(&valid_leaf(&k.ca), &k.rekor, |_| {}).await;
    let out = k.copy_with(k.fulcio_requirement()).await;
    k.assert_copied(&out).await;
    // The signature tag went along with the image.
    assert!(
        head_manifest(
            &k.dst.url(),
            "mirror/app",
            &sig_tag(&k.img.digest),
            None,
            None
        )
        .await
        .is_some(),
        "the signature was not copied\n{}",
        describe(&out)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn keyless_v1_only_or_v2_only_issuer_extension_is_accepted() {
    for (seed, v1, v2) in [(7402, true, false), (7403, false, true)] {
        let k = Keyless::new(seed).await;
        let mut leaf = Leaf::fulcio(EMAIL, ISSUER, logged_at());
        if !v1 {
            leaf.issuer_v1 = None;
        }
        if !v2 {
            leaf.issuer_v2 = None;
        }
        k.push_keyless(&k.ca.issue(&leaf), &k.rekor, |_| {}).await;
        let out = k.copy_with(k.fulcio_requirement()).await;
        k.assert_copied(&out).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn keyless_wrong_email_is_blocked() {
    let k = Keyless::new(7404).await;
    let leaf =
        k.ca.issue(&Leaf::fulcio("someone@example.com", ISSUER, logged_at()));
    k.push_keyless(&leaf, &k.rekor, |_| {}).await;
    let out = k.copy_with(k.fulcio_requirement()).await;
    k.assert_not_copied(
        &out,
        &format!(r#"Required email "{EMAIL}" not found (got ["someone@example.com"])"#),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn keyless_github_actions_uri_identity_cannot_match_subject_email() {
    // A GitHub Actions certificate names the workflow by URI, with no email: containers/image's
    // `fulcio` (and so this tool) has nothing to match `subjectEmail` against (docs/policy.md).
    let k = Keyless::new(7414).await;
    let mut leaf = Leaf::fulcio(
        EMAIL,
        "https://token.actions.githubusercontent.com",
        logged_at(),
    );
    leaf.emails.clear();
    leaf.uris = vec![
        "https://github.com/org/app/.github/workflows/release.yml@refs/tags/v1.0.0".to_string(),
    ];
    k.push_keyless(&k.ca.issue(&leaf), &k.rekor, |_| {}).await;
    let mut requirement = k.fulcio_requirement();
    requirement["fulcio"]["oidcIssuer"] = json!("https://token.actions.githubusercontent.com");
    let out = k.copy_with(requirement).await;
    k.assert_not_copied(
        &out,
        &format!(r#"Required email "{EMAIL}" not found (got [])"#),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn keyless_wrong_issuer_is_blocked() {
    let k = Keyless::new(7405).await;
    let leaf = k.ca.issue(&Leaf::fulcio(
        EMAIL,
        "https://token.actions.githubusercontent.com",
        logged_at(),
    ));
    k.push_keyless(&leaf, &k.rekor, |_| {}).await;
    let out = k.copy_with(k.fulcio_requirement()).await;
    k.assert_not_copied(
        &out,
        r#"Unexpected Fulcio OIDC issuer "https://token.actions.githubusercontent.com""#,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn keyless_certificate_expired_at_integrated_time_is_blocked() {
    let k = Keyless::new(7406).await;
    // Valid for ten minutes, ending half an hour before the entry was integrated.
    let leaf = k.ca.issue(&Leaf::fulcio(
        EMAIL,
        ISSUER,
        logged_at() - time::Duration::minutes(40),
    ));
    k.push_keyless(&leaf, &k.rekor, |_| {}).await;
    let out = k.copy_with(k.fulcio_requirement()).await;
    k.assert_not_copied(
        &out,
        "x509: certificate has expired or is not yet valid: current time",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn keyless_chain_to_another_ca_is_blocked() {
    let k = Keyless::new(7407).await;
    let other = Ca::new();
    let leaf = valid_leaf(&other);
    let chain = other.chain_pem();
    k.push_keyless(&leaf, &k.rekor, |a| a[CHAIN_ANNOTATION] = json!(chain))
        .await;
    let out = k.copy_with(k.fulcio_requirement()).await;
    // Go's text: the other intermediate chains up to a root named like ours, whose key did not
    // sign it.
    k.assert_not_copied(
        &out,
        r#"veryfing leaf certificate failed: x509: certificate signed by unknown authority (possibly because of "x509: ECDSA verification failure" while trying to verify candidate authority certificate "sigstore")"#,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn keyless_set_signed_by_another_key_is_blocked() {
    let k = Keyless::new(7408).await;
    k.push_keyless(&valid_leaf(&k.ca), &Rekor::new(), |_| {})
        .await;
    let out = k.copy_with(k.fulcio_requirement()).await;
    k.assert_not_copied(
        &out,
        "cryptographic signature verification of Rekor SET failed",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn keyless_set_made_for_another_signature_is_blocked() {
    let k = Keyless::new(7409).await;
    let leaf = valid_leaf(&k.ca);
    // A genuine SET, for the same certificate, over another payload and signature.
    let other_payload = payload(&k.src_ref(), &crate::support::sha256_digest(b"other"));
    let other_sig = leaf.sign_b64(&other_payload);
    let other_bundle = k.rekor.bundle(
        &other_payload,
        &other_sig,
        &leaf.cert_pem,
        logged_at().unix_timestamp(),
    );
    k.push_keyless(&leaf, &k.rekor, |a| {
        a[BUNDLE_ANNOTATION] = json!(other_bundle)
    })
    .await;
    let out = k.copy_with(k.fulcio_requirement()).await;
    k.assert_not_copied(&out, "signature in Rekor SET does not match")
        .await;

    // The same, with a SET for this signature but another certificate.
    let k = Keyless::new(7410).await;
    let leaf = valid_leaf(&k.ca);
    let body = k.payload();
    let sig = leaf.sign_b64(&body);
    let other_leaf = valid_leaf(&k.ca);
    let other_bundle = k.rekor.bundle(
        &body,
        &sig,
        &other_leaf.cert_pem,
        logged_at().unix_timestamp(),
    );
    let ann = json!({
        SIG_ANNOTATION: sig,
        CERT_ANNOTATION: leaf.cert_pem,
        CHAIN_ANNOTATION: k.ca.chain_pem(),
        BUNDLE_ANNOTATION: other_bundle,
    });
    push_signature_layer(&k.src, "lib/app", &k.img.digest, body, ann).await;
    let out = k.copy_with(k.fulcio_requirement()).await;
    k.assert_not_copied(&out, "publicKey in Rekor SET does not match")
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn keyless_bundle_or_certificate_annotation_missing_is_blocked() {
    let k = Keyless::new(7411).await;
    k.push_keyless(&valid_leaf(&k.ca), &k.rekor, |a| {
        a.as_object_mut().unwrap().remove(BUNDLE_ANNOTATION);
    })
    .await;
    let out = k.copy_with(k.fulcio_requirement()).await;
    k.assert_not_copied(&out, "missing dev.sigstore.cosign/bundle annotation")
        .await;

    let k = Keyless::new(7412).await;
    k.push_keyless(&valid_leaf(&k.ca), &k.rekor, |a| {
        a.as_object_mut().unwrap().remove(CERT_ANNOTATION);
    })
    .await;
    let out = k.copy_with(k.fulcio_requirement()).await;
    k.assert_not_copied(&out, "missing dev.sigstore.cosign/certificate annotation")
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn key_signature_must_also_be_in_rekor_when_a_rekor_key_is_set() {
    let k = Keyless::new(7413).await;
    let key = TestKey::p256();
    let key_path = key.write_public(k.dir.path(), "cosign.pub");
    let requirement = json!({
        "type": "sigstoreSigned",
        "keyPath": key_path.display().to_string(),
        "rekorPublicKeyPath": k.file("rekor.pub", &k.rekor.public_pem())
    });
    let body = k.payload();
    let sig = base64::engine::general_purpose::STANDARD.encode(key.sign(&body));

    // Without a bundle: blocked.
    push_signature_layer(
        &k.src,
        "lib/app",
        &k.img.digest,
        body.clone(),
        json!({ SIG_ANNOTATION: sig }),
    )
    .await;
    let out = k.copy_with(requirement.clone()).await;
    k.assert_not_copied(&out, "missing dev.sigstore.cosign/bundle annotation")
        .await;

    // Logged with the key: copied.
    let bundle = k
        .rekor
        .bundle(&body, &sig, &key.public_pem(), logged_at().unix_timestamp());
    push_signature_layer(
        &k.src,
        "lib/app",
        &k.img.digest,
        body,
        json!({ SIG_ANNOTATION: sig, BUNDLE_ANNOTATION: bundle }),
    )
    .await;
    let out = k.copy_with(requirement).await;
    k.assert_copied(&out).await;
}

/// A PKI leaf for `dns` and EMAIL, valid around now.
fn pki_leaf(ca: &Ca, dns: &str) -> Issued {
    let now = time::OffsetDateTime::now_utc();
    ca.issue(&Leaf {
        emails: vec![EMAIL.to_string()],
        uris: vec![],
        dns: vec![dns.to_string()],
        issuer_v1: None,
        issuer_v2: None,
        not_before: now - time::Duration::hours(1),
        not_after: now + time::Duration::days(1),
    })
}

impl Keyless {
    fn pki_requirement(&self, hostname: &str, with_intermediates: bool) -> Value {
        let mut pki = json!({
            "caRootsPath": self.file("roots.pem", &self.ca.root_pem()),
            "subjectEmail": EMAIL,
            "subjectHostname": hostname
        });
        if with_intermediates {
            pki["caIntermediatesPath"] = json!(self.file("inter.pem", &self.ca.intermediate_pem()));
        }
        json!({"type": "sigstoreSigned", "pki": pki})
    }

    async fn push_pki(&self, leaf: &Issued, chain: Option<String>) {
        let body = self.payload();
        let mut ann = json!({
            SIG_ANNOTATION: leaf.sign_b64(&body),
            CERT_ANNOTATION: leaf.cert_pem,
        });
        if let Some(chain) = chain {
            ann[CHAIN_ANNOTATION] = json!(chain);
        }
        push_signature_layer(&self.src, "lib/app", &self.img.digest, body, ann).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn pki_valid_signature_is_copied() {
    // The intermediate from the signature's chain annotation …
    let k = Keyless::new(7421).await;
    k.push_pki(
        &pki_leaf(&k.ca, "signer.example.com"),
        Some(k.ca.chain_pem()),
    )
    .await;
    let out = k
        .copy_with(k.pki_requirement("signer.example.com", false))
        .await;
    k.assert_copied(&out).await;
    // … or from the policy's caIntermediatesPath.
    let k = Keyless::new(7422).await;
    k.push_pki(&pki_leaf(&k.ca, "signer.example.com"), None)
        .await;
    let out = k
        .copy_with(k.pki_requirement("signer.example.com", true))
        .await;
    k.assert_copied(&out).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pki_wrong_hostname_is_blocked() {
    let k = Keyless::new(7423).await;
    k.push_pki(
        &pki_leaf(&k.ca, "other.example.com"),
        Some(k.ca.chain_pem()),
    )
    .await;
    let out = k
        .copy_with(k.pki_requirement("signer.example.com", false))
        .await;
    k.assert_not_copied(
        &out,
        "Unexpected subject hostname: x509: certificate is valid for other.example.com, not signer.example.com",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pki_missing_intermediate_is_blocked() {
    let k = Keyless::new(7424).await;
    k.push_pki(&pki_leaf(&k.ca, "signer.example.com"), None)
        .await;
    let out = k
        .copy_with(k.pki_requirement("signer.example.com", false))
        .await;
    k.assert_not_copied(&out, "x509: certificate signed by unknown authority")
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn keyless_policy_without_rekor_key_is_refused_naming_the_file() {
    let k = Keyless::new(7425).await;
    let mut requirement = k.fulcio_requirement();
    requirement
        .as_object_mut()
        .unwrap()
        .remove("rekorPublicKeyPath");
    let out = k.copy_with(requirement).await;
    assert_ne!(out.status.code(), Some(0), "{}", describe(&out));
    let t = text(&out);
    assert!(
        t.contains("policy.json") && t.contains("At least one of rekorPublickeyPath, rekorPublicKeyPaths, rekorPublickeyData and rekorPublicKeyDatas must be specified if fulcio is used"),
        "{}",
        describe(&out)
    );
    assert_eq!(
        head_manifest(&k.dst.url(), "mirror/app", &k.img.digest, None, None).await,
        None
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sync_applies_keyless_and_pki_requirements_per_repository() {
    let moto = Moto::start();
    let up = Registry::start();
    let ecr = Registry::start_htpasswd(MOTO_ECR_USER, MOTO_ECR_PASSWORD);
    let dir = PolicyDir::new();
    let (ca, rekor) = (Ca::new(), Rekor::new());
    let write = |name: &str, contents: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, contents).unwrap();
        p.display().to_string()
    };

    // Three upstream images: keyless-signed by EMAIL, keyless-signed by someone else, PKI-signed.
    let mut images = vec![];
    for (i, repo) in ["up/keyless", "up/impostor", "up/pki"].iter().enumerate() {
        let img = random_image(7430 + i as u64, &[900], "linux/amd64", Format::Oci);
        push_image(&up.url(), repo, "v1", &img, None, None).await;
        let body = payload(&format!("{}/{repo}:v1", up.host), &img.digest);
        let ann = match *repo {
            "up/pki" => {
                let leaf = pki_leaf(&ca, "signer.example.com");
                json!({
                    SIG_ANNOTATION: leaf.sign_b64(&body),
                    CERT_ANNOTATION: leaf.cert_pem,
                    CHAIN_ANNOTATION: ca.chain_pem(),
                })
            }
            _ => {
                let email = if *repo == "up/keyless" {
                    EMAIL
                } else {
                    "x@example.com"
                };
                let leaf = ca.issue(&Leaf::fulcio(email, ISSUER, logged_at()));
                let sig = leaf.sign_b64(&body);
                let bundle = rekor.bundle(
                    &body,
                    &sig,
                    &leaf.cert_pem,
                    logged_at().unix_timestamp() + 1,
                );
                json!({
                    SIG_ANNOTATION: sig,
                    CERT_ANNOTATION: leaf.cert_pem,
                    CHAIN_ANNOTATION: ca.chain_pem(),
                    BUNDLE_ANNOTATION: bundle,
                })
            }
        };
        push_signature_layer(&up, repo, &img.digest, body, ann).await;
        let mirror = repo.replace("up/", "mirror/");
        ecr_api(
            &moto,
            "CreateRepository",
            json!({"repositoryName": mirror, "tags": [
                {"Key": "upstream-image", "Value": format!("{}/{repo}", up.host)},
                {"Key": "upstream-tags", "Value": "v1"}
            ]}),
        )
        .await;
        images.push((mirror, img));
    }
    let fulcio = json!([{
        "type": "sigstoreSigned",
        "fulcio": {"caPath": write("fulcio.pem", &ca.root_pem()), "oidcIssuer": ISSUER, "subjectEmail": EMAIL},
        "rekorPublicKeyPath": write("rekor.pub", &rekor.public_pem())
    }]);
    let pki = json!([{
        "type": "sigstoreSigned",
        "pki": {"caRootsPath": write("roots.pem", &ca.root_pem()), "subjectHostname": "signer.example.com"}
    }]);
    let policy = dir.write(
        "policy.json",
        &json!({
            "default": [{"type": "reject"}],
            "transports": {"docker": {
                format!("{}/up/keyless", up.host): fulcio,
                format!("{}/up/impostor", up.host): fulcio,
                format!("{}/up/pki", up.host): pki,
            }}
        }),
    );
    let mut env = moto.env();
    for (k, v) in [
        ("ECR_MIRROR_SYNC_REGISTRY_ENDPOINT", ecr.url()),
        ("ECR_MIRROR_SYNC_DEST_TLS_VERIFY", "false".to_string()),
        ("ECR_MIRROR_SYNC_SRC_TLS_VERIFY", "false".to_string()),
    ] {
        env.push((k.to_string(), v));
    }
    let run = run_async(&["sync", "--output", "json", "--policy", &policy], &env).await;
    assert_exit(&run, 1);
    for (mirror, img) in &images {
        let i = one(&run, "item", mirror, "v1");
        let written = head_manifest(&ecr.url(), mirror, "v1", ecr.auth(), None).await;
        if mirror == "mirror/impostor" {
            assert_eq!(i["outcome"], "blocked", "{i}\n{}", describe(&run));
            assert!(i.to_string().contains("Required email"), "{i}");
            assert_eq!(written, None, "the impostor was written");
        } else {
            assert_eq!(i["outcome"], "copied", "{mirror}: {i}\n{}", describe(&run));
            assert_eq!(written, Some(img.digest.clone()), "{mirror}");
        }
    }
}
