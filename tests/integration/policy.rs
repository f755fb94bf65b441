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
