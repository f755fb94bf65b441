//! Tests of the whole module: golden invalid policies, the shared signature fixtures, scope
//! lookup tables, fresh-key round trips, and the policy files shipped in `docker/`.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use sha2::Digest as _;

use super::*;

/// The checked-in fixtures: `<crate>/tests/fixtures/policy`, or the main repository's copy when
/// this module is compiled from a scratch crate.
fn fixture_dir() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/policy");
    if here.is_dir() {
        here
    } else {
        PathBuf::from("/work/main/tests/fixtures/policy")
    }
}

/// The repository root (holds `docker/`).
fn repo_root() -> PathBuf {
    fixture_dir()
        .ancestors()
        .nth(3)
        .expect("fixture dir is <root>/tests/fixtures/policy")
        .to_path_buf()
}

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// A self-signed CA certificate, PEM.
fn test_ca_pem() -> String {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let key = rcgen::KeyPair::generate().unwrap();
    params.self_signed(&key).unwrap().pem()
}

fn policy(json: &str) -> Policy {
    Policy::from_slice(json.as_bytes(), "test-policy.json")
        .unwrap_or_else(|e| panic!("{e}\n{json}"))
}

fn policy_err(json: &str) -> String {
    match Policy::from_slice(json.as_bytes(), "test-policy.json") {
        Ok(_) => panic!("accepted: {json}"),
        Err(e) => e.to_string(),
    }
}

/// A scratch directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "ecr-mirror-sync-policy-{}-{name}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// ---------------------------------------------------------------------------------------------
// Golden invalid policies (../shared/fixtures/signatures/policies-invalid, copied in-repo).

const GOLDEN_INVALID: &[(&str, &str)] = &[
    (
        "policy-invalid-unknown-type.json",
        r#"Unknown policy requirement type "cosignSigned""#,
    ),
    (
        "policy-invalid-empty-list.json",
        "List of verification policy requirements must not be empty",
    ),
    (
        "policy-invalid-unknown-field.json",
        r#"Unknown key "keyId""#,
    ),
    (
        "policy-invalid-two-key-sources.json",
        "exactly one of keyPath, keyPaths, keyData, keyDatas, fulcio, and pki must be specified",
    ),
    (
        "policy-invalid-no-default.json",
        "Default policy is missing",
    ),
    (
        "policy-invalid-matchexact-extra.json",
        r#"Unknown key "dockerReference""#,
    ),
    (
        "policy-invalid-exactref-no-tag.json",
        r#"dockerReference "127.0.0.1:5100/sigpol/hello" contains neither a tag nor digest"#,
    ),
];

#[test]
fn golden_invalid_policies_are_rejected_with_containers_image_messages() {
    let dir = fixture_dir().join("invalid");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect();
    files.sort();
    assert_eq!(
        files.len(),
        GOLDEN_INVALID.len(),
        "every fixture has a golden message: {files:?}"
    );
    for file in &files {
        let (_, message) = GOLDEN_INVALID
            .iter()
            .find(|(name, _)| name == file)
            .unwrap_or_else(|| panic!("no golden message for {file}"));
        let path = dir.join(file);
        let err = Policy::from_file(&path).expect_err(file).to_string();
        assert!(err.contains(message), "{file}: {err}");
        assert!(
            err.contains(&path.display().to_string()),
            "error must name the file: {err}"
        );
        assert!(matches!(
            Policy::from_file(&path),
            Err(PolicyError::Invalid { .. })
        ));
    }
}

#[test]
fn unreadable_policy_file_names_the_file() {
    let err = Policy::from_file(Path::new("/nonexistent/policy.json")).unwrap_err();
    assert!(matches!(err, PolicyError::Read { .. }));
    assert!(
        err.to_string().contains("/nonexistent/policy.json"),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------------
// Parser strictness beyond the golden files (messages checked against containers/image/skopeo).

#[test]
fn strict_parser_rejections() {
    let reject = r#"[{"type":"reject"}]"#;
    let sig = |extra: &str| {
        format!(
            r#"{{"default":[{{"type":"sigstoreSigned","keyData":"{}"{extra}}}]}}"#,
            b64(b"x")
        )
    };
    let cases: Vec<(String, &str)> = vec![
        ("[]".into(), r#"JSON object expected, got "[""#),
        ("null".into(), "JSON object expected, got <nil>"),
        (format!(r#"{{"default":{reject}}} x"#), "trailing characters"),
        (format!(r#"{{"default":{reject}}}{{}}"#), "trailing characters"),
        (format!(r#"{{"default":{reject},"default":{reject}}}"#), r#"Duplicate key "default""#),
        (format!(r#"{{"default":{reject},"Transports":{{}}}}"#), r#"Unknown key "Transports""#),
        (r#"{"default":null}"#.into(), "List of verification policy requirements must not be empty"),
        (r#"{"default":{}}"#.into(), "json: cannot unmarshal object into Go value of type []json.RawMessage"),
        (r#"{"default":[5]}"#.into(), "json: cannot unmarshal number into Go value of type signature.prCommon"),
        (r#"{"default":[null]}"#.into(), r#"Unknown policy requirement type """#),
        (r#"{"default":[{}]}"#.into(), r#"Unknown policy requirement type """#),
        (r#"{"default":[{"Type":"reject"}]}"#.into(), r#"Unknown key "Type""#),
        (r#"{"default":[{"type":"reject","Type":"x"}]}"#.into(), r#"Unknown policy requirement type "x""#),
        (
            r#"{"default":[{"type":5}]}"#.into(),
            "json: cannot unmarshal number into Go struct field prCommon.type of type signature.prTypeIdentifier",
        ),
        (r#"{"default":[{"type":"reject","x":1}]}"#.into(), r#"Unknown key "x""#),
        (r#"{"default":[{"type":"reject","type":"reject"}]}"#.into(), r#"Duplicate key "type""#),
        (format!(r#"{{"default":{reject},"transports":null}}"#), "JSON object expected, got <nil>"),
        (format!(r#"{{"default":{reject},"transports":{{"docker":null}}}}"#), "JSON object expected, got <nil>"),
        (
            format!(r#"{{"default":{reject},"transports":{{"docker":{{"a":{reject},"a":{reject}}}}}}}"#),
            r#"Duplicate key "a""#,
        ),
        (
            format!(r#"{{"default":{reject},"transports":{{"docker":{{}},"docker":{{}}}}}}"#),
            r#"Duplicate key "docker""#,
        ),
        (format!(r#"{{"default":{reject},"transports":{{"docker":{{"x":[]}}}}}}"#), "must not be empty"),
        // Scopes are validated per transport: invalid ones are "unknown keys".
        (
            format!(r#"{{"default":{reject},"transports":{{"docker-daemon":{{"foo":{reject}}}}}}}"#),
            r#"Unknown key "foo""#,
        ),
        (format!(r#"{{"default":{reject},"transports":{{"oci":{{"foo":{reject}}}}}}}"#), r#"Unknown key "foo""#),
        (format!(r#"{{"default":{reject},"transports":{{"dir":{{"/":{reject}}}}}}}"#), r#"Unknown key "/""#),
        (
            format!(r#"{{"default":{reject},"transports":{{"dir":{{"/a/../b":{reject}}}}}}}"#),
            r#"Unknown key "/a/../b""#,
        ),
        // sigstoreSigned.
        (r#"{"default":[{"type":"sigstoreSigned","keyPath":5}]}"#.into(), "json: cannot unmarshal number into Go value of type string"),
        (r#"{"default":[{"type":"sigstoreSigned","keyData":"!!"}]}"#.into(), "illegal base64 data at input byte 0"),
        (r#"{"default":[{"type":"sigstoreSigned","keyData":5}]}"#.into(), "json: cannot unmarshal number into Go value of type []uint8"),
        (r#"{"default":[{"type":"sigstoreSigned"}]}"#.into(), "exactly one of keyPath, keyPaths, keyData, keyDatas, fulcio, and pki must be specified"),
        (r#"{"default":[{"type":"sigstoreSigned","keyPath":""}]}"#.into(), "exactly one of keyPath, keyPaths, keyData, keyDatas, fulcio, and pki must be specified"),
        (r#"{"default":[{"type":"sigstoreSigned","keyPaths":[]}]}"#.into(), r#""keyPaths" contains no entries"#),
        (r#"{"default":[{"type":"sigstoreSigned","keyPaths":null}]}"#.into(), r#""keyPaths" contains no entries"#),
        (r#"{"default":[{"type":"sigstoreSigned","keyDatas":[]}]}"#.into(), r#""keyDatas" contains no entries"#),
        (sig(r#","keyType":"GPGKeys""#), r#"Unknown key "keyType""#),
        (sig(r#","keyPath":"/a""#), "exactly one of keyPath, keyPaths, keyData, keyDatas, fulcio, and pki must be specified"),
        (
            sig(r#","rekorPublicKeyPath":"/a","rekorPublicKeyData":"eA==""#),
            "at most one of rekorPublickeyPath, rekorPublicKeyPaths, rekorPublickeyData and rekorPublicKeyDatas can be used simultaneously",
        ),
        (sig(r#","rekorPublicKeyPaths":[]"#), r#""rekorPublickeyPaths" contains no entries"#),
        (
            r#"{"default":[{"type":"sigstoreSigned","fulcio":{"caPath":"/a","oidcIssuer":"i","subjectEmail":"e"}}]}"#.into(),
            "At least one of rekorPublickeyPath, rekorPublicKeyPaths, rekorPublickeyData and rekorPublicKeyDatas must be specified if fulcio is used",
        ),
        (
            r#"{"default":[{"type":"sigstoreSigned","fulcio":{"oidcIssuer":"i","subjectEmail":"e"},"rekorPublicKeyPath":"/r"}]}"#.into(),
            "At least one of caPath and caData must be specified",
        ),
        (
            r#"{"default":[{"type":"sigstoreSigned","fulcio":{"caPath":"/a","subjectEmail":"e"},"rekorPublicKeyPath":"/r"}]}"#.into(),
            "oidcIssuer not specified",
        ),
        (
            r#"{"default":[{"type":"sigstoreSigned","fulcio":{"caPath":"/a","oidcIssuer":"i","subjectEmail":"e","x":1},"rekorPublicKeyPath":"/r"}]}"#.into(),
            r#"Unknown key "x""#,
        ),
        (
            r#"{"default":[{"type":"sigstoreSigned","pki":{"caRootsPath":"/a"}}]}"#.into(),
            "At least one of subjectEmail, subjectHostname must be specified",
        ),
        (
            r#"{"default":[{"type":"sigstoreSigned","pki":{"caRootsPath":"/a","subjectEmail":"e"},"rekorPublicKeyPath":"/r"}]}"#.into(),
            "rekorPublickeyPath, rekorPublicKeyPaths, rekorPublickeyData and rekorPublicKeyDatas are not supported for pki",
        ),
        // signedIdentity.
        (sig(r#","signedIdentity":null"#), r#"Unknown policy reference match type """#),
        (sig(r#","signedIdentity":"x""#), "json: cannot unmarshal string into Go value of type signature.prmCommon"),
        (sig(r#","signedIdentity":{"type":"matchSomething"}"#), r#"Unknown policy reference match type "matchSomething""#),
        (sig(r#","signedIdentity":{"type":"exactReference"}"#), r#"Key "dockerReference" missing in a JSON object"#),
        (
            sig(r#","signedIdentity":{"type":"exactReference","dockerReference":"Foo:1"}"#),
            r#"Invalid format of dockerReference "Foo:1": invalid reference format: repository name must be lowercase"#,
        ),
        (
            sig(r#","signedIdentity":{"type":"exactRepository","dockerRepository":"Foo"}"#),
            r#"Invalid format of dockerRepository "Foo": invalid reference format: repository name must be lowercase"#,
        ),
        (
            sig(r#","signedIdentity":{"type":"remapIdentity","prefix":"example.com/ns/","signedPrefix":"x.io"}"#),
            r#"prefix "example.com/ns/" is not valid"#,
        ),
        (
            sig(r#","signedIdentity":{"type":"remapIdentity","prefix":"example.com","signedPrefix":"ns/Repo"}"#),
            r#"prefix "ns/Repo" is not valid"#,
        ),
        (sig(r#","signedIdentity":{"type":"remapIdentity","prefix":"example.com"}"#), r#"Key "signedPrefix" missing in a JSON object"#),
        // signedBy and signedBaseLayer.
        (r#"{"default":[{"type":"signedBy","keyPath":"/x"}]}"#.into(), r#"invalid keyType """#),
        (r#"{"default":[{"type":"signedBy","keyType":"x","keyPath":"/x"}]}"#.into(), r#"Unrecognized keyType value "x""#),
        (
            r#"{"default":[{"type":"signedBy","keyType":"GPGKeys"}]}"#.into(),
            "Exactly one of keyPath, keyPaths and keyData must be specified, none of them present",
        ),
        (
            r#"{"default":[{"type":"signedBy","keyType":"GPGKeys","keyPath":"/a","keyData":"eA=="}]}"#.into(),
            "Exactly one of keyPath, keyPaths and keyData must be specified, more than one present",
        ),
        (r#"{"default":[{"type":"signedBaseLayer"}]}"#.into(), r#"Key "baseLayerIdentity" missing in a JSON object"#),
    ];
    for (json, message) in cases {
        let err = policy_err(&json);
        assert!(
            err.contains(message),
            "{json}\n  got: {err}\n  want: {message}"
        );
        assert!(
            err.starts_with(r#"invalid policy in "test-policy.json": "#),
            "{err}"
        );
    }
}

#[test]
fn valid_policies_parse_with_every_transport_kept() {
    let p = policy(
        r#"{
            "default": [{"type": "reject"}],
            "transports": {
                "docker": {
                    "": [{"type": "insecureAcceptAnything"}],
                    "*.example.com": [{"type": "reject"}],
                    "quay.io/ns/repo@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef": [{"type": "reject"}],
                    "any string at all is a valid docker scope": [{"type": "reject"}]
                },
                "docker-daemon": {"": [{"type": "insecureAcceptAnything"}]},
                "atomic": {"whatever": [{"type": "reject"}]},
                "oci": {"/var/lib/images": [{"type": "reject"}]},
                "dir": {"/srv/images:tag": [{"type": "reject"}]},
                "containers-storage": {"[overlay@/var/lib/containers/storage]": [{"type": "reject"}]},
                "some-future-transport": {"x": [{"type": "reject"}]}
            }
        }"#,
    );
    assert_eq!(p.transports.len(), 7);
    assert_eq!(p.transports["docker"].len(), 4);
    assert!(matches!(p.default[..], [Requirement::Reject]));

    // Every requirement and identity kind parses (the unsupported ones too).
    let keys = fixture_dir().join("keys");
    let cosign = keys.join("cosign.pub");
    let ed = keys.join("ed25519.pub");
    let pem = std::fs::read(&cosign).unwrap();
    let p = policy(&format!(
        r#"{{"default": [
            {{"type": "insecureAcceptAnything"}},
            {{"type": "sigstoreSigned", "keyPath": "{cosign}"}},
            {{"type": "sigstoreSigned", "keyPaths": ["{cosign}", "{ed}"], "signedIdentity": {{"type": "matchExact"}}}},
            {{"type": "sigstoreSigned", "keyData": "{data}", "signedIdentity": {{"type": "matchRepository"}}}},
            {{"type": "sigstoreSigned", "keyDatas": ["{data}"], "signedIdentity": {{"type": "matchRepoDigestOrExact"}}}},
            {{"type": "sigstoreSigned", "keyData": "{data}", "signedIdentity": {{"type": "exactReference", "dockerReference": "nginx:1"}}}},
            {{"type": "sigstoreSigned", "keyData": "{data}", "signedIdentity": {{"type": "exactRepository", "dockerRepository": "nginx"}}}},
            {{"type": "sigstoreSigned", "keyData": "{data}", "signedIdentity": {{"type": "remapIdentity", "prefix": "mirror.example.com/hub", "signedPrefix": "docker.io"}}}},
            {{"type": "sigstoreSigned", "keyData": "{data}", "rekorPublicKeyPath": "{cosign}"}},
            {{"type": "sigstoreSigned", "fulcio": {{"caData": "{ca}", "oidcIssuer": "https://o", "subjectEmail": "a@b"}}, "rekorPublicKeyData": "{data}"}},
            {{"type": "sigstoreSigned", "pki": {{"caRootsData": "{ca}", "subjectHostname": "h"}}}},
            {{"type": "signedBy", "keyType": "GPGKeys", "keyPath": "/etc/pki/gpg.pub"}},
            {{"type": "signedBy", "keyType": "GPGKeys", "keyPaths": ["/a", "/b"], "signedIdentity": {{"type": "matchRepository"}}}},
            {{"type": "signedBaseLayer", "baseLayerIdentity": {{"type": "exactRepository", "dockerRepository": "busybox"}}}}
        ]}}"#,
        cosign = cosign.display(),
        ed = ed.display(),
        data = b64(&pem),
        ca = b64(test_ca_pem().as_bytes()),
    ));
    let kinds: Vec<&str> = p.default.iter().map(Requirement::type_name).collect();
    assert_eq!(
        kinds[..3],
        ["insecureAcceptAnything", "sigstoreSigned", "sigstoreSigned"]
    );
    assert_eq!(kinds.len(), 14);
    let Requirement::SigstoreSigned(s) = &p.default[2] else {
        panic!()
    };
    assert_eq!(s.keys().len(), 2);
    assert_eq!(s.keys()[1].algorithm(), "ed25519");
    assert_eq!(s.signed_identity, SignedIdentity::MatchExact);
    let Requirement::SigstoreSigned(s) = &p.default[7] else {
        panic!()
    };
    assert_eq!(
        s.signed_identity,
        SignedIdentity::RemapIdentity {
            prefix: "mirror.example.com/hub".into(),
            signed_prefix: "docker.io".into()
        }
    );
}

#[test]
fn key_files_are_read_at_load_time() {
    let err =
        policy_err(r#"{"default":[{"type":"sigstoreSigned","keyPath":"/nonexistent/key.pub"}]}"#);
    assert!(
        err.contains(r#"reading public key file "/nonexistent/key.pub""#),
        "{err}"
    );
    let err = policy_err(&format!(
        r#"{{"default":[{{"type":"reject"}}],"transports":{{"docker":{{"a.io":[{{"type":"sigstoreSigned","keyPaths":["{}","/nonexistent/2.pub"]}}]}}}}}}"#,
        fixture_dir().join("keys/cosign.pub").display()
    ));
    assert!(err.contains("/nonexistent/2.pub"), "{err}");
    let err = policy_err(&format!(
        r#"{{"default":[{{"type":"sigstoreSigned","keyData":"{}"}}]}}"#,
        b64(b"not a key")
    ));
    assert!(
        err.contains("parsing public key 1: PEM decoding failed"),
        "{err}"
    );
    // P-384 keys load (as in containers/image); other curves are refused with the file's name.
    let p384 = fixture_dir().join("openssl/p384.pub");
    let p = policy(&format!(
        r#"{{"default":[{{"type":"sigstoreSigned","keyPath":"{}"}}]}}"#,
        p384.display()
    ));
    let Requirement::SigstoreSigned(s) = &p.default[0] else {
        panic!()
    };
    assert_eq!(s.keys()[0].algorithm(), "ecdsa-p384");
    // GPG (signedBy) keys are never read: that requirement is not supported.
    policy(r#"{"default":[{"type":"signedBy","keyType":"GPGKeys","keyPath":"/nonexistent/gpg"}]}"#);
}

// ---------------------------------------------------------------------------------------------
// Scope lookup.

#[test]
fn scope_lookup_most_specific_wins() {
    let p = policy(
        r#"{
            "default": [{"type": "reject"}],
            "transports": {
                "docker": {
                    "": [{"type": "insecureAcceptAnything"}],
                    "registry.example.com/team/app:v1": [{"type": "reject"}],
                    "registry.example.com/team/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef": [{"type": "reject"}],
                    "registry.example.com/team/app": [{"type": "reject"}],
                    "registry.example.com/team": [{"type": "reject"}],
                    "registry.example.com": [{"type": "reject"}],
                    "localhost:5000": [{"type": "reject"}],
                    "docker.io/library/nginx:latest": [{"type": "reject"}],
                    "docker.io/library": [{"type": "reject"}],
                    "*.example.com": [{"type": "reject"}],
                    "*.com": [{"type": "reject"}],
                    "*.internal.corp": [{"type": "reject"}],
                    "127.0.0.1:5100/sigpol": [{"type": "reject"}],
                    "ghcr.io/kedacore": [{"type": "reject"}]
                }
            }
        }"#,
    );
    let digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    let by_digest = format!("registry.example.com/team/app@{digest}");
    let table: Vec<(String, Option<&str>)> = vec![
        (
            "registry.example.com/team/app:v1".into(),
            Some("registry.example.com/team/app:v1"),
        ),
        (by_digest.clone(), Some(&by_digest)),
        (
            "registry.example.com/team/app:v2".into(),
            Some("registry.example.com/team/app"),
        ),
        (
            "registry.example.com/team/app".into(),
            Some("registry.example.com/team/app"),
        ),
        (
            "registry.example.com/team/app2:v1".into(),
            Some("registry.example.com/team"),
        ),
        // Namespaces are cut on whole path components only.
        (
            "registry.example.com/teamx/app:v1".into(),
            Some("registry.example.com"),
        ),
        (
            "registry.example.com/team/sub/app:v1".into(),
            Some("registry.example.com/team"),
        ),
        (
            "registry.example.com/other:v1".into(),
            Some("registry.example.com"),
        ),
        // The port is part of the host scope, but is stripped for wildcards.
        (
            "registry.example.com:5000/team/app:v1".into(),
            Some("*.example.com"),
        ),
        ("localhost:5000/app:1".into(), Some("localhost:5000")),
        ("localhost/app:1".into(), Some("")),
        ("mirror.eu.example.com/x:1".into(), Some("*.example.com")),
        ("example.com/x:1".into(), Some("*.com")),
        ("gitlab.com/x:1".into(), Some("*.com")),
        ("a.b.internal.corp:8443/x:1".into(), Some("*.internal.corp")),
        ("nginx".into(), Some("docker.io/library/nginx:latest")),
        ("nginx:1.25".into(), Some("docker.io/library")),
        ("bitnami/redis:7".into(), Some("")),
        (
            "127.0.0.1:5100/sigpol/hello:v1".into(),
            Some("127.0.0.1:5100/sigpol"),
        ),
        ("127.0.0.1:5100/other/hello:v1".into(), Some("")),
        (
            "ghcr.io/kedacore/keda:2.14".into(),
            Some("ghcr.io/kedacore"),
        ),
        ("ghcr.io/kedacore-fork/keda:2.14".into(), Some("")),
    ];
    for (image, expected) in table {
        let name = ImageName::parse(&image).unwrap();
        assert_eq!(p.scope_for(&name), expected, "{image}");
        let reqs = p.requirements_for(&name);
        let expected_reqs: &[Requirement] = match expected {
            Some(scope) => &p.transports["docker"][scope],
            None => &p.default,
        };
        assert!(std::ptr::eq(reqs, expected_reqs), "{image}");
    }
}

#[test]
fn scope_lookup_falls_back_to_default_and_never_merges() {
    let p = policy(
        r#"{
            "default": [{"type": "insecureAcceptAnything"}],
            "transports": {
                "docker": {"other.example.org": [{"type": "reject"}]},
                "docker-daemon": {"": [{"type": "reject"}]}
            }
        }"#,
    );
    let image = ImageName::parse("127.0.0.1:5100/sigpol/hello:v1").unwrap();
    assert_eq!(p.scope_for(&image), None);
    assert!(matches!(
        p.requirements_for(&image),
        [Requirement::InsecureAcceptAnything]
    ));
    // Without a docker section at all, default applies.
    let p = policy(
        r#"{"default": [{"type": "reject"}], "transports": {"docker-daemon": {"": [{"type": "insecureAcceptAnything"}]}}}"#,
    );
    assert!(matches!(p.requirements_for(&image), [Requirement::Reject]));
    // A matching scope replaces default entirely, even when default is stricter.
    let p = policy(
        r#"{"default": [{"type": "reject"}], "transports": {"docker": {"127.0.0.1:5100": [{"type": "insecureAcceptAnything"}]}}}"#,
    );
    assert!(matches!(
        p.requirements_for(&image),
        [Requirement::InsecureAcceptAnything]
    ));
    assert_eq!(
        evaluate(p.requirements_for(&image), &image, "sha256:x", &[]),
        Verdict::Accepted
    );
}

#[test]
fn insecure_accept_anything_policy() {
    let p = Policy::insecure_accept_anything();
    let image = ImageName::parse("quay.io/any/thing:1").unwrap();
    let reqs = p.requirements_for(&image);
    assert!(!needs_signatures(reqs));
    assert_eq!(evaluate(reqs, &image, "sha256:x", &[]), Verdict::Accepted);
}

// ---------------------------------------------------------------------------------------------
// The shared signature fixtures (../shared/fixtures/signatures/cases, copied in-repo).

struct Case {
    /// The scenario that meta.json's `expected` describes.
    primary: bool,
    name: &'static str,
    key: &'static str,
    identity: &'static str,
    accepted: bool,
    kind: Option<RejectionKind>,
    message: &'static str,
}

const CASES: &[Case] = &[
    Case { primary: true, name: "skopeo-ecdsa-p256", key: "cosign.pub", identity: "", accepted: true, kind: None, message: "" },
    Case { primary: true, name: "skopeo-ed25519", key: "ed25519.pub", identity: "", accepted: true, kind: None, message: "" },
    Case {
        primary: false,
        name: "cosign-style-ecdsa",
        key: "cosign.pub",
        identity: "",
        accepted: false,
        kind: Some(RejectionKind::IdentityMismatch),
        message: r#"Signature for identity "127.0.0.1:5100/sigpol/cosignstyle" is not accepted"#,
    },
    Case {
        primary: true,
        name: "cosign-style-ecdsa",
        key: "cosign.pub",
        identity: r#"{"type":"matchRepository"}"#,
        accepted: true,
        kind: None,
        message: "",
    },
    Case {
        primary: false,
        name: "cosign-style-ecdsa",
        key: "cosign.pub",
        identity: r#"{"type":"exactRepository","dockerRepository":"127.0.0.1:5100/sigpol/cosignstyle"}"#,
        accepted: true,
        kind: None,
        message: "",
    },
    Case {
        primary: false,
        name: "cosign-style-ecdsa",
        key: "cosign.pub",
        identity: r#"{"type":"matchExact"}"#,
        accepted: false,
        kind: Some(RejectionKind::IdentityMismatch),
        message: "is not accepted",
    },
    Case {
        primary: true,
        name: "tamper-digest",
        key: "cosign.pub",
        identity: r#"{"type":"matchRepository"}"#,
        accepted: false,
        kind: Some(RejectionKind::InvalidSignature),
        message: "Signature for digest sha256:0000000000000000000000000000000000000000000000000000000000000000 does not match",
    },
    Case {
        primary: true,
        name: "atomic-type",
        key: "cosign.pub",
        identity: r#"{"type":"matchRepository"}"#,
        accepted: false,
        kind: Some(RejectionKind::InvalidSignature),
        message: "Unrecognized signature type atomic container signature",
    },
    Case {
        primary: true,
        name: "multi-amd64",
        key: "cosign.pub",
        identity: r#"{"type":"matchRepository"}"#,
        accepted: true,
        kind: None,
        message: "",
    },
    Case {
        primary: false,
        name: "multi-amd64",
        key: "cosign.pub",
        identity: "",
        accepted: false,
        kind: Some(RejectionKind::IdentityMismatch),
        message: "is not accepted",
    },
];

struct LoadedCase {
    repository: String,
    pulled_as: String,
    manifest_digest: String,
    expected: String,
    sig: SignatureBlob,
}

fn load_case(name: &str) -> LoadedCase {
    let dir = fixture_dir().join("cases").join(name);
    let read = |f: &str| std::fs::read(dir.join(f)).unwrap_or_else(|e| panic!("{name}/{f}: {e}"));
    let meta: serde_json::Value = serde_json::from_slice(&read("meta.json")).unwrap();
    let field = |k: &str| {
        meta[k]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: meta.{k}"))
            .to_string()
    };
    let manifest_digest = field("manifest_digest");
    // The manifest digest is the sha256 of the exact manifest bytes.
    let computed = format!(
        "sha256:{}",
        hex::encode(sha2::Sha256::digest(read("image-manifest.json")))
    );
    assert_eq!(computed, manifest_digest, "{name}");
    assert_eq!(
        field("sig_tag"),
        format!("{}.sig", manifest_digest.replace(':', "-")),
        "{name}"
    );
    let sig_manifest: serde_json::Value =
        serde_json::from_slice(&read("sig-manifest.json")).unwrap();
    let layer = &sig_manifest["layers"][0];
    assert_eq!(layer["mediaType"], SIGNATURE_LAYER_MEDIA_TYPE, "{name}");
    let payload = read("sig-payload.json");
    // The payload file is the layer blob, byte for byte.
    let blob_digest = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&payload)));
    assert_eq!(layer["digest"].as_str().unwrap(), blob_digest, "{name}");
    let signature_b64 = layer["annotations"][SIGNATURE_ANNOTATION]
        .as_str()
        .unwrap()
        .to_string();
    LoadedCase {
        repository: field("repository"),
        pulled_as: field("pulled_as"),
        manifest_digest,
        expected: field("expected"),
        sig: SignatureBlob {
            payload,
            signature_b64,
            ..Default::default()
        },
    }
}

fn case_image(c: &LoadedCase) -> ImageName {
    let reference = if c.pulled_as.starts_with("sha256:") {
        format!("{}@{}", c.repository, c.pulled_as)
    } else {
        format!("{}:{}", c.repository, c.pulled_as)
    };
    ImageName::parse(&reference).unwrap()
}

/// A policy whose scope for the case's registry requires a signature by `key`.
fn case_policy(key: &str, identity: &str) -> Policy {
    let key_path = fixture_dir().join("keys").join(key);
    let identity = if identity.is_empty() {
        String::new()
    } else {
        format!(r#", "signedIdentity": {identity}"#)
    };
    policy(&format!(
        r#"{{"default": [{{"type": "reject"}}],
            "transports": {{"docker": {{"127.0.0.1:5100": [
                {{"type": "sigstoreSigned", "keyPath": "{}"{identity}}}
            ]}}}}}}"#,
        key_path.display()
    ))
}

#[test]
fn shared_fixture_cases_reach_the_expected_verdicts() {
    for case in CASES {
        let c = load_case(case.name);
        let image = case_image(&c);
        let p = case_policy(case.key, case.identity);
        let reqs = p.requirements_for(&image);
        assert_eq!(p.scope_for(&image), Some("127.0.0.1:5100"));
        assert!(needs_signatures(reqs));
        let verdict = evaluate(
            reqs,
            &image,
            &c.manifest_digest,
            std::slice::from_ref(&c.sig),
        );
        let what = format!("{} with {} {}", case.name, case.key, case.identity);
        if case.accepted {
            assert_eq!(verdict, Verdict::Accepted, "{what}");
        } else {
            let Verdict::Rejected(r) = verdict else {
                panic!("{what}: accepted")
            };
            assert_eq!(Some(r.kind), case.kind, "{what}: {r}");
            assert!(r.message.contains(case.message), "{what}: {r}");
        }
        // meta.json's `expected` describes the primary scenario of each case.
        if case.primary {
            assert_eq!(
                c.expected.starts_with("accept"),
                case.accepted,
                "{what}: meta says {}",
                c.expected
            );
        }
    }
    assert_eq!(CASES.iter().filter(|c| c.primary).count(), 6);
}

#[test]
fn every_shared_case_is_rejected_with_the_wrong_key() {
    let mut names: Vec<String> = std::fs::read_dir(fixture_dir().join("cases"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names.len(), 6, "{names:?}");
    for name in names {
        let c = load_case(&name);
        let image = case_image(&c);
        for identity in ["", r#"{"type":"matchRepository"}"#] {
            let p = case_policy("wrong.pub", identity);
            let verdict = evaluate(
                p.requirements_for(&image),
                &image,
                &c.manifest_digest,
                std::slice::from_ref(&c.sig),
            );
            let Verdict::Rejected(r) = verdict else {
                panic!("{name}: accepted with wrong.pub")
            };
            assert_eq!(r.kind, RejectionKind::UntrustedKey, "{name}: {r}");
            assert!(
                r.message
                    .contains("cryptographic signature verification failed"),
                "{name}: {r}"
            );
        }
    }
}

#[test]
fn shared_fixtures_with_several_keys_and_signatures() {
    let c = load_case("skopeo-ecdsa-p256");
    let image = case_image(&c);
    let keys = fixture_dir().join("keys");
    // keyPaths: any trusted key will do.
    let p = policy(&format!(
        r#"{{"default":[{{"type":"sigstoreSigned","keyPaths":["{}","{}"]}}]}}"#,
        keys.join("wrong.pub").display(),
        keys.join("cosign.pub").display()
    ));
    assert_eq!(
        evaluate(
            p.requirements_for(&image),
            &image,
            &c.manifest_digest,
            std::slice::from_ref(&c.sig)
        ),
        Verdict::Accepted
    );
    // One valid signature among bad ones is enough; the order does not matter.
    let mut bad = c.sig.clone();
    bad.signature_b64 = b64(b"garbage");
    let atomic = load_case("atomic-type").sig;
    for sigs in [
        vec![bad.clone(), c.sig.clone()],
        vec![c.sig.clone(), bad.clone(), atomic.clone()],
    ] {
        assert_eq!(
            evaluate(
                p.requirements_for(&image),
                &image,
                &c.manifest_digest,
                &sigs
            ),
            Verdict::Accepted
        );
    }
    // All bad: the reasons are combined, and the kind is the most telling one.
    let verdict = evaluate(
        p.requirements_for(&image),
        &image,
        &c.manifest_digest,
        &[bad, atomic],
    );
    let Verdict::Rejected(r) = verdict else {
        panic!()
    };
    assert_eq!(r.kind, RejectionKind::InvalidSignature);
    assert!(r.message.starts_with("None of the signatures were accepted, reasons: cryptographic signature verification failed"), "{r}");
    assert!(
        r.message
            .contains("; Unrecognized signature type atomic container signature"),
        "{r}"
    );
    // The signature of another manifest does not vouch for this one.
    let other_digest = "sha256:eacff2685cd71eef25c8a8eab4b539d492176cdf7bf6ae5500a3fc77694bc150";
    let verdict = evaluate(
        p.requirements_for(&image),
        &image,
        other_digest,
        std::slice::from_ref(&c.sig),
    );
    assert!(matches!(
        verdict,
        Verdict::Rejected(Rejection {
            kind: RejectionKind::InvalidSignature,
            ..
        })
    ));
    // No signature at all.
    let verdict = evaluate(p.requirements_for(&image), &image, &c.manifest_digest, &[]);
    assert_eq!(
        verdict,
        Verdict::Rejected(Rejection {
            kind: RejectionKind::NoSignature,
            message: "A signature was required, but no signature exists".into()
        })
    );
    // A layer without the annotation, and a signature that is not base64.
    let mut missing = c.sig.clone();
    missing.signature_b64.clear();
    let Verdict::Rejected(r) = evaluate(
        p.requirements_for(&image),
        &image,
        &c.manifest_digest,
        &[missing],
    ) else {
        panic!()
    };
    assert_eq!(
        r.message,
        "missing dev.cosignproject.cosign/signature annotation"
    );
    let mut not_b64 = c.sig.clone();
    not_b64.signature_b64 = "%%%".into();
    let Verdict::Rejected(r) = evaluate(
        p.requirements_for(&image),
        &image,
        &c.manifest_digest,
        &[not_b64],
    ) else {
        panic!()
    };
    assert_eq!(r.kind, RejectionKind::InvalidSignature);
    assert!(
        r.message
            .starts_with("base64 decoding: illegal base64 data"),
        "{r}"
    );
}

#[test]
fn all_requirements_must_accept() {
    let c = load_case("skopeo-ecdsa-p256");
    let image = case_image(&c);
    let keys = fixture_dir().join("keys");
    let both = |second: &str| {
        policy(&format!(
            r#"{{"default":[{{"type":"sigstoreSigned","keyPath":"{}"}}, {second}]}}"#,
            keys.join("cosign.pub").display()
        ))
    };
    let sigs = std::slice::from_ref(&c.sig);
    let p = both(r#"{"type":"insecureAcceptAnything"}"#);
    assert_eq!(
        evaluate(&p.default, &image, &c.manifest_digest, sigs),
        Verdict::Accepted
    );
    let p = both(&format!(
        r#"{{"type":"sigstoreSigned","keyPath":"{}"}}"#,
        keys.join("ed25519.pub").display()
    ));
    let Verdict::Rejected(r) = evaluate(&p.default, &image, &c.manifest_digest, sigs) else {
        panic!()
    };
    assert_eq!(r.kind, RejectionKind::UntrustedKey);
    let p = both(r#"{"type":"reject"}"#);
    let Verdict::Rejected(r) = evaluate(&p.default, &image, &c.manifest_digest, sigs) else {
        panic!()
    };
    assert_eq!(r.kind, RejectionKind::Reject);
    assert_eq!(
        r.message,
        "Running image docker://127.0.0.1:5100/sigpol/hello:v1 is rejected by policy."
    );
    assert!(!evaluate(&[], &image, &c.manifest_digest, sigs).is_accepted());
}

#[test]
fn unsupported_requirements_reject_and_need_no_signatures() {
    let c = load_case("skopeo-ecdsa-p256");
    let image = case_image(&c);
    for req in [
        r#"{"type":"signedBy","keyType":"GPGKeys","keyPath":"/etc/pki/containers/key.gpg"}"#
            .to_string(),
        r#"{"type":"signedBaseLayer","baseLayerIdentity":{"type":"matchRepository"}}"#.to_string(),
    ] {
        let p = policy(&format!(r#"{{"default":[{req}]}}"#));
        assert!(!needs_signatures(&p.default), "{req}");
        // Even a perfectly valid signature does not make them accept.
        let verdict = evaluate(
            &p.default,
            &image,
            &c.manifest_digest,
            std::slice::from_ref(&c.sig),
        );
        let Verdict::Rejected(r) = verdict else {
            panic!("{req}: accepted")
        };
        assert_eq!(r.kind, RejectionKind::NotSupported, "{req}");
        assert!(r.message.contains("not supported yet"), "{req}: {r}");
    }
}

#[test]
fn needs_signatures_table() {
    let key = fixture_dir().join("keys/cosign.pub");
    let sig = format!(
        r#"{{"type":"sigstoreSigned","keyPath":"{}"}}"#,
        key.display()
    );
    for (reqs, expected) in [
        (r#"[{"type":"insecureAcceptAnything"}]"#.to_string(), false),
        (r#"[{"type":"reject"}]"#.to_string(), false),
        (
            r#"[{"type":"insecureAcceptAnything"},{"type":"reject"}]"#.to_string(),
            false,
        ),
        (format!("[{sig}]"), true),
        (
            format!(r#"[{{"type":"insecureAcceptAnything"}},{sig}]"#),
            true,
        ),
    ] {
        let p = policy(&format!(r#"{{"default":{reqs}}}"#));
        assert_eq!(needs_signatures(&p.default), expected, "{reqs}");
    }
}

// ---------------------------------------------------------------------------------------------
// Fresh keys: sign + verify round trips in the cosign format, and the identity kinds end to end.

const DIGEST_A: &str = "sha256:01fad4b0c19751584467cfe1c8ce3275e6c8949fd95be15451d8214b291072ae";

/// A payload as containers/image writes it.
fn cosign_payload(reference: &str, digest: &str) -> Vec<u8> {
    format!(
        r#"{{"critical":{{"identity":{{"docker-reference":"{reference}"}},"image":{{"docker-manifest-digest":"{digest}"}},"type":"cosign container image signature"}},"optional":{{"creator":"ecr-mirror-sync tests","timestamp":1700000000}}}}"#
    )
    .into_bytes()
}

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

    fn public_pem(&self) -> String {
        use p256::pkcs8::EncodePublicKey as _;
        match self {
            TestKey::P256(k) => k
                .verifying_key()
                .to_public_key_pem(p256::pkcs8::LineEnding::LF)
                .unwrap(),
            TestKey::Ed25519(k) => k
                .verifying_key()
                .to_public_key_pem(p256::pkcs8::LineEnding::LF)
                .unwrap(),
        }
    }

    fn sign(&self, reference: &str, digest: &str) -> SignatureBlob {
        let payload = cosign_payload(reference, digest);
        let raw = match self {
            TestKey::P256(k) => {
                use p256::ecdsa::signature::Signer as _;
                let sig: p256::ecdsa::Signature = k.sign(&payload);
                sig.to_der().as_bytes().to_vec()
            }
            TestKey::Ed25519(k) => {
                use ed25519_dalek::Signer as _;
                k.sign(&payload).to_bytes().to_vec()
            }
        };
        SignatureBlob {
            payload,
            signature_b64: b64(&raw),
            ..Default::default()
        }
    }

    fn policy_with(&self, identity: &str) -> Policy {
        let identity = if identity.is_empty() {
            String::new()
        } else {
            format!(r#","signedIdentity":{identity}"#)
        };
        policy(&format!(
            r#"{{"default":[{{"type":"sigstoreSigned","keyData":"{}"{identity}}}]}}"#,
            b64(self.public_pem().as_bytes())
        ))
    }
}

fn verdict_kind(v: &Verdict) -> Option<RejectionKind> {
    match v {
        Verdict::Accepted => None,
        Verdict::Rejected(r) => Some(r.kind),
    }
}

#[test]
fn fresh_keys_round_trip() {
    for key in [TestKey::p256(), TestKey::ed25519()] {
        let other = TestKey::p256();
        let image = ImageName::parse("registry.example.com/ns/app:1.0").unwrap();
        let p = key.policy_with("");
        let good = key.sign("registry.example.com/ns/app:1.0", DIGEST_A);
        assert_eq!(
            evaluate(&p.default, &image, DIGEST_A, std::slice::from_ref(&good)),
            Verdict::Accepted
        );
        // Any change to the payload breaks the signature.
        let mut tampered = good.clone();
        let last = tampered.payload.len() - 2;
        tampered.payload[last] ^= 1;
        assert_eq!(
            verdict_kind(&evaluate(&p.default, &image, DIGEST_A, &[tampered])),
            Some(RejectionKind::UntrustedKey)
        );
        // A signature by another key.
        let foreign = other.sign("registry.example.com/ns/app:1.0", DIGEST_A);
        assert_eq!(
            verdict_kind(&evaluate(&p.default, &image, DIGEST_A, &[foreign])),
            Some(RejectionKind::UntrustedKey)
        );
        // A signature for another manifest.
        let wrong_digest = key.sign(
            "registry.example.com/ns/app:1.0",
            &DIGEST_A.replace("01f", "02f"),
        );
        assert_eq!(
            verdict_kind(&evaluate(&p.default, &image, DIGEST_A, &[wrong_digest])),
            Some(RejectionKind::InvalidSignature)
        );
    }
}

#[test]
fn identity_kinds_end_to_end() {
    let key = TestKey::p256();
    let ecr = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/mirror";
    let mirrored = ImageName::parse(&format!("{ecr}/ghcr.io/kedacore/keda:2.14.0")).unwrap();
    let upstream = ImageName::parse("ghcr.io/kedacore/keda:2.14.0").unwrap();
    let by_digest = ImageName::parse(&format!("ghcr.io/kedacore/keda@{DIGEST_A}")).unwrap();
    let skopeo_style = key.sign("ghcr.io/kedacore/keda:2.14.0", DIGEST_A);
    let cosign_style = key.sign("ghcr.io/kedacore/keda", DIGEST_A);
    let remap =
        format!(r#"{{"type":"remapIdentity","prefix":"{ecr}/ghcr.io","signedPrefix":"ghcr.io"}}"#);
    let table: Vec<(&str, &ImageName, &SignatureBlob, bool)> = vec![
        ("", &upstream, &skopeo_style, true),
        ("", &upstream, &cosign_style, false),
        ("", &by_digest, &skopeo_style, true),
        ("", &by_digest, &cosign_style, false),
        ("", &mirrored, &skopeo_style, false),
        (r#"{"type":"matchExact"}"#, &upstream, &skopeo_style, true),
        (r#"{"type":"matchExact"}"#, &by_digest, &skopeo_style, false),
        (
            r#"{"type":"matchRepository"}"#,
            &upstream,
            &cosign_style,
            true,
        ),
        (
            r#"{"type":"matchRepository"}"#,
            &mirrored,
            &cosign_style,
            false,
        ),
        (
            r#"{"type":"exactReference","dockerReference":"ghcr.io/kedacore/keda:2.14.0"}"#,
            &mirrored,
            &skopeo_style,
            true,
        ),
        (
            r#"{"type":"exactReference","dockerReference":"ghcr.io/kedacore/keda:2.14.1"}"#,
            &mirrored,
            &skopeo_style,
            false,
        ),
        (
            r#"{"type":"exactRepository","dockerRepository":"ghcr.io/kedacore/keda"}"#,
            &mirrored,
            &cosign_style,
            true,
        ),
        (
            r#"{"type":"exactRepository","dockerRepository":"ghcr.io/kedacore/keda"}"#,
            &mirrored,
            &skopeo_style,
            true,
        ),
        (
            r#"{"type":"exactRepository","dockerRepository":"ghcr.io/kedacore/other"}"#,
            &mirrored,
            &skopeo_style,
            false,
        ),
        (&remap, &mirrored, &skopeo_style, true),
        (&remap, &mirrored, &cosign_style, false),
        (&remap, &upstream, &skopeo_style, true),
    ];
    for (identity, image, sig, accepted) in table {
        let p = key.policy_with(identity);
        let verdict = evaluate(&p.default, image, DIGEST_A, std::slice::from_ref(sig));
        if accepted {
            assert_eq!(verdict, Verdict::Accepted, "{identity} {image}");
        } else {
            assert_eq!(
                verdict_kind(&verdict),
                Some(RejectionKind::IdentityMismatch),
                "{identity} {image}"
            );
        }
    }
}

#[test]
fn openssl_signatures_verify() {
    let dir = fixture_dir().join("openssl");
    let payload = std::fs::read(dir.join("payload.json")).unwrap();
    let image = ImageName::parse("registry.example.com/ns/app:1.0").unwrap();
    for (key, sig) in [
        ("rsa.pub", "rsa.sig"),
        ("rsa-pkcs1.pub", "rsa.sig"),
        ("ecdsa.pub", "ecdsa.sig"),
        ("ed25519.pub", "ed25519.sig"),
        ("p384-signer.pub", "p384.sig"),
    ] {
        let p = policy(&format!(
            r#"{{"default":[{{"type":"sigstoreSigned","keyPath":"{}"}}]}}"#,
            dir.join(key).display()
        ));
        let blob = SignatureBlob {
            payload: payload.clone(),
            signature_b64: std::fs::read_to_string(dir.join(sig))
                .unwrap()
                .trim()
                .to_string(),
            ..Default::default()
        };
        assert_eq!(
            evaluate(&p.default, &image, DIGEST_A, std::slice::from_ref(&blob)),
            Verdict::Accepted,
            "{key}"
        );
        let mut other = blob.clone();
        other.payload.push(b'\n');
        assert_eq!(
            verdict_kind(&evaluate(&p.default, &image, DIGEST_A, &[other])),
            Some(RejectionKind::UntrustedKey),
            "{key}"
        );
    }
    let Requirement::SigstoreSigned(s) = &policy(&format!(
        r#"{{"default":[{{"type":"sigstoreSigned","keyPath":"{}"}}]}}"#,
        dir.join("rsa.pub").display()
    ))
    .default[0] else {
        panic!()
    };
    assert_eq!(s.keys()[0].algorithm(), "rsa");
}

// ---------------------------------------------------------------------------------------------
// Locating the policy file.

#[test]
fn locate_order() {
    let tmp = TempDir::new("locate");
    let home = tmp.0.join("home");
    let system = tmp.0.join("etc/policy.json");
    // Nothing exists: the error names both flags and the paths searched.
    let err = locate_in(None, Some(&home), &system).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("--policy") && msg.contains("--insecure-policy"),
        "{msg}"
    );
    assert!(msg.contains(&system.display().to_string()), "{msg}");
    assert!(msg.contains(".config/containers/policy.json"), "{msg}");
    // The system file.
    std::fs::create_dir_all(system.parent().unwrap()).unwrap();
    std::fs::write(&system, "{}").unwrap();
    assert_eq!(locate_in(None, Some(&home), &system).unwrap(), system);
    assert_eq!(locate_in(None, None, &system).unwrap(), system);
    // The user's file wins over the system file.
    let user = home.join(USER_POLICY_PATH);
    std::fs::create_dir_all(user.parent().unwrap()).unwrap();
    std::fs::write(&user, "{}").unwrap();
    assert_eq!(locate_in(None, Some(&home), &system).unwrap(), user);
    // --policy wins over both, even if it does not exist (reading it reports that).
    let explicit = tmp.0.join("explicit.json");
    assert_eq!(
        locate_in(Some(&explicit), Some(&home), &system).unwrap(),
        explicit
    );
    assert!(locate(Some(&explicit)).is_ok());
}

// ---------------------------------------------------------------------------------------------
// The policy files shipped in docker/.

#[test]
fn shipped_policy_files_parse() {
    let docker = repo_root().join("docker");
    let default = Policy::from_file(&docker.join("default-policy.json")).unwrap();
    let image = ImageName::parse("nginx:1.25").unwrap();
    assert!(matches!(
        default.requirements_for(&image),
        [Requirement::InsecureAcceptAnything]
    ));

    let examples = docker.join("policy-examples");
    let mut count = 0;
    for entry in std::fs::read_dir(&examples).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        count += 1;
        // Their keyPath files exist only where they are deployed: check everything but the keys.
        let data = std::fs::read(&path).unwrap();
        super::parse::parse_policy(&data).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
    assert!(count >= 1);

    let ghcr = super::parse::parse_policy(
        &std::fs::read(examples.join("require-cosign-for-ghcr.json")).unwrap(),
    )
    .unwrap();
    let keda = ImageName::parse("ghcr.io/kedacore/keda:2.14.0").unwrap();
    assert_eq!(ghcr.scope_for(&keda), Some("ghcr.io/kedacore"));
    assert!(needs_signatures(ghcr.requirements_for(&keda)));
    assert!(matches!(
        ghcr.requirements_for(&image),
        [Requirement::InsecureAcceptAnything]
    ));
    let other = ImageName::parse("quay.io/prometheus/prometheus:v2").unwrap();
    assert!(matches!(
        ghcr.requirements_for(&other),
        [Requirement::Reject]
    ));
    let unsigned_ghcr = ImageName::parse("ghcr.io/someone/else:1").unwrap();
    assert!(matches!(
        ghcr.requirements_for(&unsigned_ghcr),
        [Requirement::Reject]
    ));
}

#[test]
fn policy_types_can_be_shared_across_tasks() {
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<Policy>();
    assert_send_sync::<Requirement>();
    assert_send_sync::<Verdict>();
    assert_send_sync::<PolicyError>();
    assert_send_sync::<ImageName>();
}

#[test]
fn keyless_and_pki_trust_material_errors_refuse_the_policy() {
    let keys = fixture_dir().join("keys");
    let p256 = b64(&std::fs::read(keys.join("cosign.pub")).unwrap());
    let ed = b64(&std::fs::read(keys.join("ed25519.pub")).unwrap());
    let ca = b64(test_ca_pem().as_bytes());
    let not_pem = b64(b"not a certificate");
    let fulcio = |ca_data: &str, rekor: &str| {
        format!(
            r#"{{"default":[{{"type":"sigstoreSigned","fulcio":{{"caData":"{ca_data}","oidcIssuer":"https://o","subjectEmail":"a@b"}},{rekor}}}]}}"#
        )
    };
    let pki = |fields: &str| {
        format!(
            r#"{{"default":[{{"type":"sigstoreSigned","pki":{{{fields},"subjectEmail":"a@b"}}}}]}}"#
        )
    };
    for (json, message) in [
        (
            fulcio(&not_pem, &format!(r#""rekorPublicKeyData":"{p256}""#)),
            "error loading Fulcio CA certificates".to_string(),
        ),
        (
            fulcio(&ca, &format!(r#""rekorPublicKeyData":"{ed}""#)),
            "Rekor public key 1 is not using ECDSA".to_string(),
        ),
        (
            fulcio(
                &ca,
                &format!(r#""rekorPublicKeyDatas":["{p256}","{not_pem}"]"#),
            ),
            "parsing Rekor public key 2: PEM decoding failed".to_string(),
        ),
        (
            fulcio(&ca, r#""rekorPublicKeyPath":"/nonexistent/rekor.pub""#),
            r#"reading Rekor public key file "/nonexistent/rekor.pub""#.to_string(),
        ),
        (
            pki(&format!(r#""caRootsData":"{not_pem}""#)),
            "error loading PKI CA Roots certificates".to_string(),
        ),
        (
            pki(&format!(
                r#""caRootsData":"{ca}","caIntermediatesData":"{not_pem}""#
            )),
            "loading trusted intermediate certificates: error during PEM decoding".to_string(),
        ),
        (
            pki(r#""caRootsPath":"/nonexistent/roots.pem""#),
            r#"reading PKI CA roots file "/nonexistent/roots.pem""#.to_string(),
        ),
    ] {
        let err = policy_err(&json);
        assert!(
            err.starts_with(r#"invalid policy in "test-policy.json": "#) && err.contains(&message),
            "{json}\nwanted {message:?}\ngot {err}"
        );
    }
    // The valid combinations load, with their trust material parsed.
    let p = policy(&fulcio(
        &ca,
        &format!(r#""rekorPublicKeyDatas":["{p256}","{p256}"]"#),
    ));
    let Requirement::SigstoreSigned(s) = &p.default[0] else {
        panic!()
    };
    assert_eq!(s.rekor_keys().len(), 2);
    assert!(s.fulcio.is_some() && s.pki.is_none() && s.keys().is_empty());
    let p = policy(&pki(&format!(
        r#""caRootsData":"{ca}","caIntermediatesData":"{ca}""#
    )));
    let Requirement::SigstoreSigned(s) = &p.default[0] else {
        panic!()
    };
    assert!(s.pki.is_some() && s.rekor_keys().is_empty());
}
