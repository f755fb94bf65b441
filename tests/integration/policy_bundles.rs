//! cosign v3 bundles (issue 15): an image whose only signature is a sigstore bundle referrer is
//! checked by the same `sigstoreSigned` requirement, keyless (`fulcio` + Rekor) and with a key.
//! The bundles are made in the test (support/sigstore.rs: our own CA and Rekor key) as
//! `cosign sign` v3 writes them: a DSSE envelope over an in-toto statement of predicate type
//! `https://sigstore.dev/cosign/sign/v1` whose subject is the manifest digest, logged as a
//! `dsse` entry. They are found through the `sha256-<hex>` fallback index of docker-registry 2.8,
//! and through the referrers API (support/referrers_api.rs).
//!
//! What reached the destination is read back from the destination registry itself.

use std::process::Output;

use serde_json::{json, Value};

use crate::support::sigstore::{cosign_statement, pem_der, Ca, Leaf, Rekor};
use crate::support::{
    describe, head_manifest, push_blob, push_image, push_manifest, random_image, run_async, Blob,
    Format, Image, ReferrersApi, Registry, MT_OCI_INDEX, MT_OCI_MANIFEST,
};

const PLAIN: [&str; 2] = ["--src-tls-verify=false", "--dest-tls-verify=false"];
const BUNDLE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
const EMPTY: &str = "application/vnd.oci.empty.v1+json";
const ISSUER: &str = "https://accounts.google.com";
const EMAIL: &str = "release@example.com";

/// Pushes `bundle` as a referrer of `img` (empty config, one bundle layer, a subject) to
/// `url`/`repo`; with `fallback`, also the `sha256-<hex>` index listing it (a registry without
/// the referrers API, as cosign writes it there).
async fn push_bundle(url: &str, repo: &str, img: &Image, bundle: &Value, fallback: bool) {
    // The artifact and layer type is the bundle's own media type (v0.3, or v0.2 with a
    // parameter).
    let media_type = bundle["mediaType"].as_str().unwrap_or(BUNDLE);
    let config = Blob::new(b"{}".to_vec(), EMPTY);
    let layer = Blob::new(serde_json::to_vec(bundle).unwrap(), media_type);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": MT_OCI_MANIFEST,
        "artifactType": media_type,
        "config": {"mediaType": EMPTY, "digest": config.digest, "size": 2},
        "layers": [{"mediaType": media_type, "digest": layer.digest, "size": layer.data.len()}],
        "subject": {"mediaType": img.media_type, "digest": img.digest, "size": img.manifest.len()},
        "annotations": {
            "dev.sigstore.bundle.content": "dsse-envelope",
            "dev.sigstore.bundle.predicateType": "https://sigstore.dev/cosign/sign/v1"
        }
    }))
    .unwrap();
    push_blob(url, repo, &config, None, None).await;
    push_blob(url, repo, &layer, None, None).await;
    let digest = crate::support::sha256_digest(&manifest);
    push_manifest(url, repo, &digest, &manifest, MT_OCI_MANIFEST, None, None).await;
    if fallback {
        let idx = json!({"schemaVersion": 2, "mediaType": MT_OCI_INDEX, "manifests": [{
            "mediaType": MT_OCI_MANIFEST, "digest": digest, "size": manifest.len(),
            "artifactType": media_type
        }]});
        let tag = img.digest.replacen(':', "-", 1);
        push_manifest(
            url,
            repo,
            &tag,
            &serde_json::to_vec(&idx).unwrap(),
            MT_OCI_INDEX,
            None,
            None,
        )
        .await;
    }
}

fn logged_at() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc() - time::Duration::days(30)
}

struct Setup {
    src: Registry,
    dst: Registry,
    img: Image,
    dir: tempfile::TempDir,
}

impl Setup {
    fn new(seed: u64) -> Setup {
        Setup {
            src: Registry::start(),
            dst: Registry::start(),
            img: random_image(seed, &[900], "linux/amd64", Format::Oci),
            dir: tempfile::Builder::new()
                .prefix("bundle-policy-")
                .tempdir()
                .unwrap(),
        }
    }

    fn file(&self, name: &str, contents: &str) -> String {
        let p = self.dir.path().join(name);
        std::fs::write(&p, contents).unwrap();
        p.display().to_string()
    }

    /// Copies `src_host/lib/app:v1` to `dst/repo:v1` under a policy with `requirement` for the
    /// source registry (and `reject` for the rest).
    async fn copy(&self, src_host: &str, repo: &str, requirement: Value) -> Output {
        let policy = json!({
            "default": [{"type": "reject"}],
            "transports": {"docker": {src_host: [requirement]}}
        });
        let path = self.file("policy.json", &policy.to_string());
        let src = format!("{src_host}/lib/app:v1");
        let dest = format!("{}/{repo}:v1", self.dst.host);
        let mut args = vec![
            "copy", "--src", &src, "--dest", &dest, "--output", "json", "--policy", &path,
        ];
        args.extend_from_slice(&PLAIN);
        run_async(&args, &[]).await
    }

    async fn copied(&self, repo: &str) -> Option<String> {
        head_manifest(&self.dst.url(), repo, &self.img.digest, None, None).await
    }

    async fn assert_copied(&self, out: &Output, repo: &str) {
        assert_eq!(out.status.code(), Some(0), "{}", describe(out));
        assert_eq!(
            self.copied(repo).await,
            Some(self.img.digest.clone()),
            "{}",
            describe(out)
        );
    }

    async fn assert_blocked(&self, out: &Output, repo: &str, reason: &str) {
        assert_eq!(out.status.code(), Some(1), "{}", describe(out));
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            text.contains("blocked by the trust policy") && text.contains(reason),
            "expected {reason:?}\n{}",
            describe(out)
        );
        assert_eq!(self.copied(repo).await, None, "{}", describe(out));
    }
}

/// Tampers with a bundle's DSSE payload after signing (the predicate changes; the subject stays).
fn tamper(bundle: &Value) -> Value {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut out = bundle.clone();
    let mut stmt: Value = serde_json::from_slice(
        &b64.decode(bundle["dsseEnvelope"]["payload"].as_str().unwrap())
            .unwrap(),
    )
    .unwrap();
    stmt["predicate"] = json!({"forged": true});
    out["dsseEnvelope"]["payload"] = json!(b64.encode(serde_json::to_vec(&stmt).unwrap()));
    out
}

/// Keyless: a bundle with a Fulcio-like certificate, logged in our Rekor, found through the
/// fallback index. Accepted under `matchRepository`; the default identity cannot accept a
/// bundle (it names no reference); a bundle whose statement was altered after signing, and one
/// whose SET is from another log, are blocked.
#[tokio::test(flavor = "multi_thread")]
async fn keyless_bundle_referrer_is_verified() {
    let (ca, rekor, rogue) = (Ca::new(), Rekor::new(), Rekor::new());
    let leaf = ca.issue(&Leaf::fulcio(EMAIL, ISSUER, logged_at()));
    let sign = |data: &[u8]| {
        use rcgen::SigningKey as _;
        leaf.key.sign(data).unwrap()
    };
    let at = logged_at().unix_timestamp() + 60;
    // The v0.3 bundle carries the leaf only: the intermediate comes from the CA file.
    let requirement = |s: &Setup, identity: Value| {
        let mut r = json!({
            "type": "sigstoreSigned",
            "fulcio": {
                "caPath": s.file("fulcio.pem", &format!("{}{}", ca.intermediate_pem(), ca.root_pem())),
                "oidcIssuer": ISSUER,
                "subjectEmail": EMAIL
            },
            "rekorPublicKeyPath": s.file("rekor.pub", &rekor.public_pem())
        });
        if !identity.is_null() {
            r["signedIdentity"] = identity;
        }
        r
    };
    let repo_identity = json!({"type": "matchRepository"});

    // A good bundle: copied under matchRepository, blocked under the default identity.
    let s = Setup::new(8801);
    push_image(&s.src.url(), "lib/app", "v1", &s.img, None, None).await;
    let good = rekor.dsse_bundle(
        &cosign_statement(&s.img.digest),
        &sign,
        &leaf.cert_pem,
        Some(&leaf.cert_pem),
        at,
    );
    push_bundle(&s.src.url(), "lib/app", &s.img, &good, true).await;
    let host = s.src.host.clone();
    let out = s
        .copy(&host, "ok/app", requirement(&s, repo_identity.clone()))
        .await;
    s.assert_copied(&out, "ok/app").await;
    let out = s
        .copy(&host, "default/app", requirement(&s, Value::Null))
        .await;
    s.assert_blocked(&out, "default/app", "names no docker-reference")
        .await;

    // Tampered after signing: the logged payload hash no longer matches.
    let s = Setup::new(8802);
    push_image(&s.src.url(), "lib/app", "v1", &s.img, None, None).await;
    let bundle = rekor.dsse_bundle(
        &cosign_statement(&s.img.digest),
        &sign,
        &leaf.cert_pem,
        Some(&leaf.cert_pem),
        at,
    );
    push_bundle(&s.src.url(), "lib/app", &s.img, &tamper(&bundle), true).await;
    let out = s
        .copy(
            &s.src.host,
            "tampered/app",
            requirement(&s, repo_identity.clone()),
        )
        .await;
    s.assert_blocked(&out, "tampered/app", "payload in Rekor SET does not match")
        .await;

    // Logged in another log.
    let s = Setup::new(8803);
    push_image(&s.src.url(), "lib/app", "v1", &s.img, None, None).await;
    let bundle = rogue.dsse_bundle(
        &cosign_statement(&s.img.digest),
        &sign,
        &leaf.cert_pem,
        Some(&leaf.cert_pem),
        at,
    );
    push_bundle(&s.src.url(), "lib/app", &s.img, &bundle, true).await;
    let out = s
        .copy(&s.src.host, "rogue/app", requirement(&s, repo_identity))
        .await;
    s.assert_blocked(
        &out,
        "rogue/app",
        "cryptographic signature verification of Rekor SET failed",
    )
    .await;
}

/// A key: a bundle with a public-key hint, found through the referrers API, accepted under
/// `exactRepository`; the same bundle for another image's digest (its subject does not name
/// this manifest) and a bundle by another key are blocked.
#[tokio::test(flavor = "multi_thread")]
async fn key_bundle_referrer_through_the_referrers_api() {
    let s = Setup::new(8811);
    let api = ReferrersApi::start(&s.src.url(), 10).await;
    push_image(&api.url(), "lib/app", "v1", &s.img, None, None).await;
    let key = p256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
    let pem = {
        use p256::pkcs8::EncodePublicKey as _;
        key.verifying_key()
            .to_public_key_pem(p256::pkcs8::LineEnding::LF)
            .unwrap()
    };
    let sign = |data: &[u8]| {
        use p256::ecdsa::signature::Signer as _;
        let sig: p256::ecdsa::Signature = key.sign(data);
        sig.to_der().as_bytes().to_vec()
    };
    let rekor = Rekor::new();
    let requirement = json!({
        "type": "sigstoreSigned",
        "keyPath": s.file("cosign.pub", &pem),
        "rekorPublicKeyPath": s.file("rekor.pub", &rekor.public_pem()),
        "signedIdentity": {"type": "exactRepository", "dockerRepository": "upstream.example.com/org/app"}
    });

    // First a bundle for another digest only: blocked.
    let wrong = rekor.dsse_bundle(
        &cosign_statement(&format!("sha256:{}", "cd".repeat(32))),
        &sign,
        &pem,
        None,
        1_700_000_000,
    );
    push_bundle(&api.url(), "lib/app", &s.img, &wrong, false).await;
    let out = s.copy(&api.host, "wrong/app", requirement.clone()).await;
    s.assert_blocked(&out, "wrong/app", "subject does not name digest")
        .await;

    // Then a bundle by another key: still blocked (neither is accepted).
    let other = p256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
    let other_pem = {
        use p256::pkcs8::EncodePublicKey as _;
        other
            .verifying_key()
            .to_public_key_pem(p256::pkcs8::LineEnding::LF)
            .unwrap()
    };
    let other_sign = |data: &[u8]| {
        use p256::ecdsa::signature::Signer as _;
        let sig: p256::ecdsa::Signature = other.sign(data);
        sig.to_der().as_bytes().to_vec()
    };
    let foreign = rekor.dsse_bundle(
        &cosign_statement(&s.img.digest),
        &other_sign,
        &other_pem,
        None,
        1_700_000_000,
    );
    push_bundle(&api.url(), "lib/app", &s.img, &foreign, false).await;
    let out = s.copy(&api.host, "foreign/app", requirement.clone()).await;
    s.assert_blocked(&out, "foreign/app", "None of the signatures were accepted")
        .await;

    // Then the good one: copied.
    let good = rekor.dsse_bundle(
        &cosign_statement(&s.img.digest),
        &sign,
        &pem,
        None,
        1_700_000_000,
    );
    push_bundle(&api.url(), "lib/app", &s.img, &good, false).await;
    let out = s.copy(&api.host, "good/app", requirement).await;
    s.assert_copied(&out, "good/app").await;
}

/// PKI: a v0.2 bundle whose `x509CertificateChain` is the leaf and the intermediate (the root
/// comes from `caRootsPath`), found through the fallback index: copied; a leaf for another
/// hostname is blocked.
#[tokio::test(flavor = "multi_thread")]
async fn pki_bundle_with_a_certificate_chain() {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let (ca, rekor) = (Ca::new(), Rekor::new());
    let now = time::OffsetDateTime::now_utc();
    let leaf_for = |dns: &str| {
        ca.issue(&Leaf {
            emails: vec![EMAIL.to_string()],
            uris: vec![],
            dns: vec![dns.to_string()],
            issuer_v1: None,
            issuer_v2: None,
            not_before: now - time::Duration::hours(1),
            not_after: now + time::Duration::days(1),
        })
    };
    for (seed, dns, accepted) in [
        (8821, "signer.example.com", true),
        (8822, "other.example.com", false),
    ] {
        let s = Setup::new(seed);
        push_image(&s.src.url(), "lib/app", "v1", &s.img, None, None).await;
        let leaf = leaf_for(dns);
        let sign = |data: &[u8]| {
            use rcgen::SigningKey as _;
            leaf.key.sign(data).unwrap()
        };
        let mut bundle = rekor.dsse_bundle(
            &cosign_statement(&s.img.digest),
            &sign,
            &leaf.cert_pem,
            None,
            now.unix_timestamp(),
        );
        bundle["mediaType"] = json!("application/vnd.dev.sigstore.bundle+json;version=0.2");
        let material = bundle["verificationMaterial"].as_object_mut().unwrap();
        material.remove("publicKey");
        material.insert(
            "x509CertificateChain".into(),
            json!({"certificates": [
                {"rawBytes": b64.encode(pem_der(&leaf.cert_pem))},
                {"rawBytes": b64.encode(pem_der(&ca.intermediate_pem()))}
            ]}),
        );
        push_bundle(&s.src.url(), "lib/app", &s.img, &bundle, true).await;
        let requirement = json!({
            "type": "sigstoreSigned",
            "pki": {
                "caRootsPath": s.file("roots.pem", &ca.root_pem()),
                "subjectEmail": EMAIL,
                "subjectHostname": "signer.example.com"
            },
            "signedIdentity": {"type": "matchRepository"}
        });
        let out = s.copy(&s.src.host, "pki/app", requirement).await;
        if accepted {
            s.assert_copied(&out, "pki/app").await;
        } else {
            s.assert_blocked(&out, "pki/app", "Unexpected subject hostname")
                .await;
        }
    }
}
