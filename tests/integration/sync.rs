//! `sync` and `list` end to end: the product binary against moto (the ECR control plane) and
//! real `docker-registry` instances: an "upstream" registry (plain HTTP, anonymous) and an
//! "ECR" registry (htpasswd with moto's token user `AWS`), paired through
//! `ECR_MIRROR_SYNC_REGISTRY_ENDPOINT`, exactly as `.ci/demo.sh` does.
//!
//! Repositories are created in moto with plain JSON 1.1 requests (moto routes on the
//! `Credential=.../ecr/...` scope of the Authorization header and does not check signatures),
//! so the setup does not depend on the product's own ECR client.
//!
//! Every claim about what went over the wire comes from the registries' own access logs
//! (`Registry::requests()` after `mark()`) or from the FaultProxy's hit log, never from the
//! product's report alone. Every test starts its own services, so tests run in parallel.

use std::process::Output;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::{
    count, describe, get_blob, get_manifest, head_blob, head_manifest, image_with_layers, index_of,
    push_image, push_index, random_image, random_layer, run_async, sha256_digest, Fault,
    FaultProxy, Format, Hit, Image, Index, Kind, Moto, Registry, Request, Rule, Schedule,
    MOTO_ACCOUNT_ID, MOTO_ECR_PASSWORD, MOTO_ECR_USER,
};

const REGION: &str = "us-east-1";
const SOURCE_DIGEST_ANNOTATION: &str = "io.github.ecr-mirror-sync.source-digest";

// ---------------------------------------------------------------------------------------------
// Services and setup
// ---------------------------------------------------------------------------------------------

/// moto + an upstream registry + an "ECR" registry holding moto's token user.
struct Services {
    moto: Moto,
    up: Registry,
    ecr: Registry,
}

impl Services {
    fn start() -> Services {
        Services {
            moto: Moto::start(),
            up: Registry::start(),
            ecr: Registry::start_htpasswd(MOTO_ECR_USER, MOTO_ECR_PASSWORD),
        }
    }

    /// moto's AWS env plus the data-plane endpoint of the "ECR" registry, plain HTTP both ways.
    fn env(&self) -> Vec<(String, String)> {
        let mut env = self.moto.env();
        for (k, v) in [
            ("ECR_MIRROR_SYNC_REGISTRY_ENDPOINT", self.ecr.url()),
            ("ECR_MIRROR_SYNC_DEST_TLS_VERIFY", "false".to_string()),
            ("ECR_MIRROR_SYNC_SRC_TLS_VERIFY", "false".to_string()),
        ] {
            env.push((k.to_string(), v));
        }
        env
    }

    /// `127.0.0.1:PORT/<repo>` on the upstream registry.
    fn upstream(&self, repo: &str) -> String {
        format!("{}/{repo}", self.up.host)
    }

    async fn run(&self, args: &[&str]) -> Run {
        self.run_env(args, &self.env()).await
    }

    async fn run_env(&self, args: &[&str], env: &[(String, String)]) -> Run {
        Run::new(args, run_async(args, env).await)
    }

    /// One ECR API call to moto (JSON 1.1, unsigned).
    async fn ecr_api(&self, op: &str, body: Value) -> Value {
        self.moto.ecr_api(op, body).await
    }

    async fn create_repo(&self, name: &str, tags: &[(&str, &str)]) {
        self.create_repo_with(name, tags, false).await;
    }

    async fn create_repo_with(&self, name: &str, tags: &[(&str, &str)], immutable: bool) {
        let tags: Vec<Value> = tags
            .iter()
            .map(|(k, v)| json!({"Key": k, "Value": v}))
            .collect();
        let mutability = if immutable { "IMMUTABLE" } else { "MUTABLE" };
        let r = self
            .ecr_api(
                "CreateRepository",
                json!({"repositoryName": name, "tags": tags, "imageTagMutability": mutability}),
            )
            .await;
        assert_eq!(r["repository"]["repositoryName"], name, "{r}");
        assert_eq!(r["repository"]["imageTagMutability"], mutability, "{r}");
    }

    /// TagResource: adds or overwrites these resource tags.
    async fn set_tags(&self, name: &str, tags: &[(&str, &str)]) {
        let tags: Vec<Value> = tags
            .iter()
            .map(|(k, v)| json!({"Key": k, "Value": v}))
            .collect();
        let arn = format!("arn:aws:ecr:{REGION}:{MOTO_ACCOUNT_ID}:repository/{name}");
        self.ecr_api("TagResource", json!({"resourceArn": arn, "tags": tags}))
            .await;
    }

    async fn push_up(&self, repo: &str, tag: &str, img: &Image) {
        push_image(&self.up.url(), repo, tag, img, None, None).await;
    }

    async fn push_up_index(&self, repo: &str, tag: &str, idx: &Index) {
        push_index(&self.up.url(), repo, tag, idx, None, None).await;
    }

    /// Writes straight into the "ECR" registry, as if someone had pushed there.
    async fn push_ecr(&self, repo: &str, tag: &str, img: &Image) {
        push_image(&self.ecr.url(), repo, tag, img, self.ecr.auth(), None).await;
    }

    /// The ECR tag's digest (HEAD with the harness's own client and moto's token user).
    async fn ecr_digest(&self, repo: &str, reference: &str) -> Option<String> {
        head_manifest(&self.ecr.url(), repo, reference, self.ecr.auth(), None).await
    }

    async fn up_digest(&self, repo: &str, reference: &str) -> Option<String> {
        head_manifest(&self.up.url(), repo, reference, None, None).await
    }

    fn mark(&self) {
        self.up.mark();
        self.ecr.mark();
    }
}

fn img(seed: u64, format: Format) -> Image {
    random_image(seed, &[1500, 700], "linux/amd64", format)
}

/// Two platforms, `linux/amd64` and `linux/arm64` (exactly, no variant).
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
// Running the product and reading its JSON Lines
// ---------------------------------------------------------------------------------------------

/// One finished run of the product.
struct Run {
    args: Vec<String>,
    out: Output,
    /// (type, data) of every stdout line, when `--output json` was given.
    records: Vec<(String, Value)>,
}

impl Run {
    fn new(args: &[&str], out: Output) -> Run {
        let mut run = Run {
            args: args.iter().map(|a| a.to_string()).collect(),
            out,
            records: vec![],
        };
        if args.windows(2).any(|w| w == ["--output", "json"]) {
            let stdout = run.stdout();
            for line in stdout.lines().filter(|l| !l.trim().is_empty()) {
                let v: Value = serde_json::from_str(line).unwrap_or_else(|e| {
                    panic!(
                        "--output json printed a non-JSON line ({e}): {line:?}\n{}",
                        run.ctx()
                    )
                });
                let kind = v["type"]
                    .as_str()
                    .unwrap_or_else(|| panic!("JSON line without a type: {line}\n{}", run.ctx()));
                assert!(
                    v["data"].is_object(),
                    "JSON line without a data object: {line}"
                );
                run.records.push((kind.to_string(), v["data"].clone()));
            }
        }
        run
    }

    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.out.stdout).into_owned()
    }

    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.out.stderr).into_owned()
    }

    /// The command line and both streams, for assertion messages.
    fn ctx(&self) -> String {
        format!(
            "$ ecr-mirror-sync {}\n{}",
            self.args.join(" "),
            describe(&self.out)
        )
    }

    fn code(&self) -> Option<i32> {
        self.out.status.code()
    }

    fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code(),
            Some(code),
            "expected exit {code}\n{}",
            self.ctx()
        );
        self
    }

    fn all(&self, kind: &str) -> Vec<&Value> {
        self.records
            .iter()
            .filter(|(k, _)| k == kind)
            .map(|(_, d)| d)
            .collect()
    }

    /// The only `kind` record for (repository, tag); `tag` None is a repository-level record.
    fn one(&self, kind: &str, repo: &str, tag: Option<&str>) -> &Value {
        let found: Vec<&Value> = self
            .all(kind)
            .into_iter()
            .filter(|d| d["repository"] == repo && d["tag"].as_str() == tag)
            .collect();
        assert_eq!(
            found.len(),
            1,
            "expected one {kind:?} record for {repo}:{tag:?}\n{}",
            self.ctx()
        );
        found[0]
    }

    fn summary(&self) -> &Value {
        let s = self.all("summary");
        assert_eq!(s.len(), 1, "expected one summary record\n{}", self.ctx());
        s[0]
    }

    /// The (repository, tag) keys of every `kind` record, sorted.
    fn keys(&self, kind: &str) -> Vec<(String, Option<String>)> {
        let mut k: Vec<(String, Option<String>)> = self
            .all(kind)
            .into_iter()
            .map(|d| {
                (
                    d["repository"].as_str().unwrap_or_default().to_string(),
                    d["tag"].as_str().map(str::to_string),
                )
            })
            .collect();
        k.sort();
        k
    }
}

fn key(repo: &str, tag: Option<&str>) -> (String, Option<String>) {
    (repo.to_string(), tag.map(str::to_string))
}

/// Asserts `got[k] == v` for every (k, v) of `want`.
fn assert_fields(got: &Value, want: Value, ctx: &str) {
    for (k, v) in want.as_object().expect("want is an object") {
        assert_eq!(&got[k], v, "field {k:?} of {got}\n{ctx}");
    }
}

/// Asserts `got[field]` is a string containing every one of `needles`.
fn assert_text(got: &Value, field: &str, needles: &[&str], ctx: &str) {
    let s = got[field]
        .as_str()
        .unwrap_or_else(|| panic!("field {field:?} of {got} is not a string\n{ctx}"));
    for n in needles {
        assert!(
            s.contains(n),
            "field {field:?} = {s:?} should mention {n:?}\n{ctx}"
        );
    }
}

fn sync_json(extra: &[&str]) -> Vec<String> {
    let mut a = vec!["sync", "--output", "json"];
    a.extend_from_slice(extra);
    a.into_iter().map(str::to_string).collect()
}

fn as_strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

// ---------------------------------------------------------------------------------------------
// Access-log helpers
// ---------------------------------------------------------------------------------------------

fn is_ping(r: &Request) -> bool {
    r.method == "GET" && r.path == "/v2/"
}

fn is_head_manifest(r: &Request) -> bool {
    r.method == "HEAD" && r.kind() == Kind::Manifest
}

fn is_write(r: &Request) -> bool {
    matches!(r.method.as_str(), "PUT" | "PATCH" | "POST" | "DELETE")
}

fn show(reqs: &[Request]) -> String {
    reqs.iter()
        .map(|r| format!("  {} {} -> {}\n", r.method, r.path, r.status))
        .collect()
}

/// Asserts that `reqs` hold exactly one `HEAD /v2/<repo>/manifests/<tag>` for each of `heads`
/// (each answered 200), plus `GET /v2/` pings, and nothing else.
fn assert_head_only(side: &str, reqs: &[Request], heads: &[(&str, &str)]) {
    let with_status: Vec<(&str, &str, u16)> = heads.iter().map(|(r, t)| (*r, *t, 200)).collect();
    assert_head_only_status(side, reqs, &with_status);
}

/// Like [`assert_head_only`], with the status each HEAD must have been answered with.
fn assert_head_only_status(side: &str, reqs: &[Request], heads: &[(&str, &str, u16)]) {
    let others: Vec<Request> = reqs
        .iter()
        .filter(|r| !(is_ping(r) || is_head_manifest(r)))
        .cloned()
        .collect();
    assert!(
        others.is_empty(),
        "{side}: a no-op sync must send only HEAD manifest requests (and GET /v2/ pings); also \
         saw:\n{}all requests:\n{}",
        show(&others),
        show(reqs)
    );
    let mut got: Vec<(String, u16)> = reqs
        .iter()
        .filter(|r| r.method == "HEAD")
        .map(|r| (r.path.clone(), r.status))
        .collect();
    got.sort();
    let mut want: Vec<(String, u16)> = heads
        .iter()
        .map(|(repo, tag, status)| (format!("/v2/{repo}/manifests/{tag}"), *status))
        .collect();
    want.sort();
    assert_eq!(
        got,
        want,
        "{side}: expected exactly one HEAD per tag; all requests:\n{}",
        show(reqs)
    );
}

// ---------------------------------------------------------------------------------------------
// 1. A mixed estate in one run
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn mixed_estate_plan_outcomes_digests_and_exit_code() {
    let s = Services::start();
    let a = img(101, Format::Oci);
    let b_old = img(102, Format::DockerV2);
    let b_new = img(103, Format::DockerV2);
    let c = two_platforms(104);
    s.push_up("up/app", "v1", &a).await;
    s.push_up("up/app", "v2", &b_old).await;

    let app = s.upstream("up/app");
    s.create_repo(
        "mirror/app",
        &[("upstream-image", &app), ("upstream-tags", "v1/v2")],
    )
    .await;
    // A repository nobody marked: never planned, never touched.
    s.create_repo("mirror/unmarked", &[]).await;

    // First sync: v1 and v2 become present in ECR.
    let first = s.run(&as_strs(&sync_json(&[]))).await;
    first.assert_code(0);
    assert_fields(
        first.summary(),
        json!({"copied": 2, "skipped": 0, "failed": 0}),
        &first.ctx(),
    );
    assert_eq!(
        s.ecr_digest("mirror/app", "v1").await,
        Some(a.digest.clone())
    );
    assert_eq!(
        s.ecr_digest("mirror/app", "v2").await,
        Some(b_old.digest.clone())
    );

    // The upstream moves on: v2 points at a new image (stale in ECR), v3 appears (missing in
    // ECR), v404 is wanted but does not exist upstream. Two repositories carry bad tag values.
    s.push_up("up/app", "v2", &b_new).await;
    s.push_up_index("up/app", "v3", &c).await;
    s.set_tags("mirror/app", &[("upstream-tags", "v1/v2/v3/v404")])
        .await;
    s.create_repo(
        "mirror/broken",
        &[("upstream-image", &app), ("upstream-tags", "v1//v2")],
    )
    .await;
    let bad_ref = format!("{}/Up/App", s.up.host);
    s.create_repo(
        "mirror/badref",
        &[("upstream-image", &bad_ref), ("upstream-tags", "v1")],
    )
    .await;
    let src = |tag: &str| format!("{app}:{tag}");

    // --- the dry run: the plan with both digests, and no writes anywhere ---
    s.mark();
    let dry = s.run(&as_strs(&sync_json(&["--dry-run"]))).await;
    let ctx = dry.ctx();
    assert_eq!(
        dry.keys("plan"),
        vec![
            key("mirror/app", Some("v1")),
            key("mirror/app", Some("v2")),
            key("mirror/app", Some("v3")),
            key("mirror/app", Some("v404")),
            key("mirror/badref", None),
            key("mirror/broken", None),
        ],
        "{ctx}"
    );
    assert_fields(
        dry.one("plan", "mirror/app", Some("v1")),
        json!({"action": "skip", "reason": "in-sync", "source": src("v1"),
               "source_digest": a.digest, "dest_digest": a.digest}),
        &ctx,
    );
    assert_fields(
        dry.one("plan", "mirror/app", Some("v2")),
        json!({"action": "copy", "reason": "stale", "source": src("v2"),
               "source_digest": b_new.digest, "dest_digest": b_old.digest}),
        &ctx,
    );
    assert_fields(
        dry.one("plan", "mirror/app", Some("v3")),
        json!({"action": "copy", "reason": "missing", "source": src("v3"),
               "source_digest": c.digest, "dest_digest": null}),
        &ctx,
    );
    let p404 = dry.one("plan", "mirror/app", Some("v404"));
    assert_fields(
        p404,
        json!({"action": "error", "source_digest": null, "dest_digest": null}),
        &ctx,
    );
    assert_text(p404, "reason", &["not found", "v404"], &ctx);
    let broken = dry.one("plan", "mirror/broken", None);
    assert_fields(broken, json!({"action": "error"}), &ctx);
    assert_text(broken, "reason", &["upstream-tags", "empty"], &ctx);
    let badref = dry.one("plan", "mirror/badref", None);
    assert_fields(badref, json!({"action": "error"}), &ctx);
    assert_text(badref, "reason", &["upstream-image"], &ctx);
    assert_fields(
        dry.summary(),
        json!({"skip": 1, "copy": 2, "error": 3, "blocked": 0}),
        &ctx,
    );
    dry.assert_code(1);
    for (side, reg) in [("upstream", &s.up), ("ECR", &s.ecr)] {
        let reqs = reg.requests();
        let bad: Vec<Request> = reqs
            .iter()
            .filter(|r| is_write(r) || (r.method == "GET" && r.kind() != Kind::Other))
            .cloned()
            .collect();
        assert!(
            bad.is_empty(),
            "{side}: --dry-run must only HEAD, but sent:\n{}",
            show(&bad)
        );
    }

    // --- the sync ---
    s.mark();
    let run = s.run(&as_strs(&sync_json(&[]))).await;
    let ctx = run.ctx();
    assert_eq!(run.keys("item"), dry.keys("plan"), "{ctx}");
    assert_fields(
        run.one("item", "mirror/app", Some("v1")),
        json!({"outcome": "skipped", "action": "skip", "reason": "in-sync"}),
        &ctx,
    );
    let v2 = run.one("item", "mirror/app", Some("v2"));
    assert_fields(
        v2,
        json!({"outcome": "copied", "reason": "stale", "source_digest": b_new.digest,
               "previous_digest": b_old.digest, "dest_digest": b_new.digest}),
        &ctx,
    );
    assert!(v2["bytes"].as_u64().unwrap_or(0) > 0, "{v2}");
    let v3 = run.one("item", "mirror/app", Some("v3"));
    assert_fields(
        v3,
        json!({"outcome": "copied", "reason": "missing", "previous_digest": null,
               "dest_digest": c.digest}),
        &ctx,
    );
    let mut platform_digests: Vec<(String, String)> =
        serde_json::from_value(v3["platform_digests"].clone())
            .unwrap_or_else(|e| panic!("platform_digests of {v3}: {e}"));
    platform_digests.sort();
    assert_eq!(
        platform_digests,
        vec![
            ("linux/amd64".to_string(), c.images[0].digest.clone()),
            ("linux/arm64".to_string(), c.images[1].digest.clone()),
        ],
        "{ctx}"
    );
    let f404 = run.one("item", "mirror/app", Some("v404"));
    assert_fields(f404, json!({"outcome": "failed"}), &ctx);
    assert_text(f404, "error", &["not found"], &ctx);
    for repo in ["mirror/broken", "mirror/badref"] {
        let f = run.one("item", repo, None);
        assert_fields(f, json!({"outcome": "failed"}), &ctx);
        assert_text(f, "error", &[repo], &ctx);
    }
    assert_fields(
        run.summary(),
        json!({"copied": 2, "skipped": 1, "failed": 3, "blocked": 0}),
        &ctx,
    );
    run.assert_code(1);

    // ECR now holds exactly the upstream digests; nothing for the failed items.
    for tag in ["v1", "v2", "v3"] {
        assert_eq!(
            s.ecr_digest("mirror/app", tag).await,
            s.up_digest("up/app", tag).await,
            "mirror/app:{tag}"
        );
    }
    assert_eq!(
        s.ecr_digest("mirror/app", "v3").await,
        Some(c.digest.clone())
    );
    assert_eq!(s.ecr_digest("mirror/app", "v404").await, None);
    for (repo, tag) in [
        ("mirror/broken", "v1"),
        ("mirror/broken", "v2"),
        ("mirror/badref", "v1"),
    ] {
        assert_eq!(s.ecr_digest(repo, tag).await, None, "{repo}:{tag}");
    }
    let reqs = s.ecr.requests();
    let stray: Vec<Request> = reqs
        .iter()
        .filter(|r| is_write(r))
        .filter(|r| {
            r.repo().as_deref() != Some("mirror/app")
                || r.path.ends_with("/manifests/v1")
                || r.path.ends_with("/manifests/v404")
        })
        .cloned()
        .collect();
    assert!(
        stray.is_empty(),
        "writes for items that should not be written:\n{}",
        show(&stray)
    );
    for tag in ["v2", "v3"] {
        let puts = reqs
            .iter()
            .filter(|r| r.method == "PUT" && r.path == format!("/v2/mirror/app/manifests/{tag}"))
            .count();
        assert_eq!(puts, 1, "one tag PUT for mirror/app:{tag}\n{}", show(&reqs));
    }
    assert!(
        !reqs
            .iter()
            .any(|r| r.repo().as_deref() == Some("mirror/unmarked")),
        "an unmarked repository was touched:\n{}",
        show(&reqs)
    );
}

// ---------------------------------------------------------------------------------------------
// 2. The no-op sync: one HEAD per tag per side, nothing else
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn second_sync_is_head_only_on_both_sides() {
    let s = Services::start();
    let (a1, a2, b1) = (
        img(201, Format::Oci),
        img(202, Format::DockerV2),
        two_platforms(203),
    );
    s.push_up("up/a", "v1", &a1).await;
    s.push_up("up/a", "v2", &a2).await;
    s.push_up_index("up/b", "1.0", &b1).await;
    s.create_repo(
        "mirror/a",
        &[
            ("upstream-image", &s.upstream("up/a")),
            ("upstream-tags", "v1 / v2"),
        ],
    )
    .await;
    s.create_repo(
        "mirror/b",
        &[
            ("upstream-image", &s.upstream("up/b")),
            ("upstream-tags", "1.0"),
        ],
    )
    .await;

    let first = s.run(&as_strs(&sync_json(&[]))).await;
    first.assert_code(0);
    assert_fields(
        first.summary(),
        json!({"copied": 3, "skipped": 0, "failed": 0}),
        &first.ctx(),
    );

    s.mark();
    let second = s.run(&as_strs(&sync_json(&["--parallel", "2"]))).await;
    second.assert_code(0);
    let ctx = second.ctx();
    for (repo, tag) in [("mirror/a", "v1"), ("mirror/a", "v2"), ("mirror/b", "1.0")] {
        assert_fields(
            second.one("item", repo, Some(tag)),
            json!({"outcome": "skipped", "reason": "in-sync"}),
            &ctx,
        );
    }
    assert_fields(
        second.summary(),
        json!({"copied": 0, "skipped": 3, "failed": 0, "bytes": 0}),
        &ctx,
    );
    assert_head_only(
        "upstream",
        &s.up.requests(),
        &[("up/a", "v1"), ("up/a", "v2"), ("up/b", "1.0")],
    );
    assert_head_only(
        "ECR",
        &s.ecr.requests(),
        &[("mirror/a", "v1"), ("mirror/a", "v2"), ("mirror/b", "1.0")],
    );
    assert_eq!(
        s.ecr_digest("mirror/b", "1.0").await,
        Some(b1.digest.clone())
    );
}

/// The cold sync sends each request it needs once, from the access logs: per tag one HEAD on
/// each side (the observation), no second HEAD of the tag before its PUT and no HEAD of the
/// children of a tag that is absent; a child shared by two tags (`latest` = `t2`) fetched and
/// PUT once; per upstream
/// repository one tag listing and no per-digest `.sig` HEADs; per blob and repository one
/// HEAD, however many tags and platforms share it; one upload (POST + PUT with the body, no
/// PATCH, whatever the blob's size) per unique blob in the estate; and one mount per
/// other repository of the layer they all share.
#[tokio::test(flavor = "multi_thread")]
async fn cold_sync_sends_each_needed_request_once() {
    let s = Services::start();
    let shared = random_layer(250, 40_000, Format::Oci);
    let index = |seed: u64| {
        index_of(
            ["linux/amd64", "linux/arm64"]
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let own = random_layer(seed + i as u64, 9_000, Format::Oci);
                    image_with_layers(vec![shared.clone(), own], p, Format::Oci)
                })
                .collect(),
            Format::Oci,
        )
    };
    let t2 = index(2530);
    let estate: Vec<(&str, Vec<(&str, Index)>)> = vec![
        (
            "x",
            vec![
                ("t0", index(2510)),
                ("t1", index(2520)),
                ("t2", t2.clone()),
                ("latest", t2),
            ],
        ),
        ("y", vec![("t0", index(2540)), ("t1", index(2550))]),
    ];
    for (name, tags) in &estate {
        for (tag, idx) in tags {
            s.push_up_index(&format!("up/{name}"), tag, idx).await;
        }
        let list: Vec<&str> = tags.iter().map(|(t, _)| *t).collect();
        s.create_repo(
            &format!("mirror/{name}"),
            &[
                ("upstream-image", &s.upstream(&format!("up/{name}"))),
                ("upstream-tags", &list.join("/")),
            ],
        )
        .await;
    }
    s.mark();
    let run = s.run(&as_strs(&sync_json(&[]))).await;
    run.assert_code(0);
    let ctx = run.ctx();
    assert_fields(run.summary(), json!({"copied": 6, "failed": 0}), &ctx);

    let (n_tags, n_images) = (6, 5); // `latest` is `t2`
    let per_repo_blobs: Vec<(String, std::collections::BTreeSet<String>)> = estate
        .iter()
        .map(|(name, tags)| {
            let blobs = tags
                .iter()
                .flat_map(|(_, idx)| idx.images.iter())
                .flat_map(|i| i.blobs().map(|b| b.digest.clone()))
                .collect();
            (format!("mirror/{name}"), blobs)
        })
        .collect();
    let unique: std::collections::BTreeSet<&String> =
        per_repo_blobs.iter().flat_map(|(_, b)| b.iter()).collect();
    assert_eq!(
        unique.len(),
        1 + n_images * 2 * 2,
        "shared layer + config and layer per child"
    );

    let up = s.up.requests();
    let heads: Vec<&Request> = up.iter().filter(|r| r.method == "HEAD").collect();
    assert_eq!(
        heads.len(),
        n_tags,
        "upstream: one HEAD per tag, no .sig HEADs:\n{}",
        show(&up)
    );
    let lists = up.iter().filter(|r| r.path.ends_with("/tags/list")).count();
    assert_eq!(
        lists,
        2,
        "upstream: one tag listing per repository:\n{}",
        show(&up)
    );
    let manifest_gets = up
        .iter()
        .filter(|r| r.method == "GET" && r.kind() == Kind::Manifest)
        .count();
    assert_eq!(
        manifest_gets,
        n_tags + n_images * 2,
        "the index of each tag, each child once:\n{}",
        show(&up)
    );

    let ecr = s.ecr.requests();
    let tag_heads = ecr
        .iter()
        .filter(|r| is_head_manifest(r) && !r.path.contains("/manifests/sha256:"))
        .count();
    assert_eq!(
        tag_heads,
        n_tags,
        "ECR: the tag is HEADed once (observe):\n{}",
        show(&ecr)
    );
    let child_heads = ecr
        .iter()
        .filter(|r| is_head_manifest(r) && r.path.contains("/manifests/sha256:"))
        .count();
    assert_eq!(
        child_heads,
        0,
        "the tags are absent: no child HEADs:\n{}",
        show(&ecr)
    );
    let child_puts = ecr
        .iter()
        .filter(|r| r.method == "PUT" && r.path.contains("/manifests/sha256:"))
        .count();
    assert_eq!(
        child_puts,
        n_images * 2,
        "each child PUT once:\n{}",
        show(&ecr)
    );
    assert_eq!(count(&ecr, "PATCH", Kind::Upload), 0, "{}", show(&ecr));
    let mounts: Vec<&Request> = ecr
        .iter()
        .filter(|r| r.method == "POST" && r.query.as_deref().unwrap_or("").contains("mount="))
        .collect();
    assert_eq!(
        mounts.len(),
        1,
        "the shared layer mounted into the other repository once:\n{}",
        show(&ecr)
    );
    let uploads = ecr
        .iter()
        .filter(|r| r.method == "POST" && r.kind() == Kind::Upload)
        .count()
        - mounts.len();
    assert_eq!(
        uploads,
        unique.len(),
        "one upload per unique blob:\n{}",
        show(&ecr)
    );
    assert_eq!(
        count(&ecr, "PUT", Kind::Upload),
        unique.len(),
        "{}",
        show(&ecr)
    );
    for (repo, blobs) in &per_repo_blobs {
        for b in blobs {
            let n = ecr
                .iter()
                .filter(|r| r.method == "HEAD" && r.path == format!("/v2/{repo}/blobs/{b}"))
                .count();
            assert_eq!(n, 1, "{repo}@{b} HEADed {n} times:\n{}", show(&ecr));
        }
    }
    for (name, tags) in &estate {
        for (tag, idx) in tags {
            assert_eq!(
                s.ecr_digest(&format!("mirror/{name}"), tag)
                    .await
                    .as_deref(),
                Some(idx.digest.as_str()),
                "mirror/{name}:{tag}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 3. Faults from a FaultProxy in front of the upstream
// ---------------------------------------------------------------------------------------------

/// Upstream `up/a:v1` (an image) and `up/b:v1` (a two-platform index), mirrored into
/// `mirror/a` and `mirror/b` through a FaultProxy with `rules`.
struct FaultCase {
    s: Services,
    proxy: Arc<FaultProxy>,
    a: Image,
    b: Index,
}

impl FaultCase {
    async fn start(rules: Vec<Rule>, layer: usize) -> FaultCase {
        let s = Services::start();
        let a = random_image(301, &[layer, layer / 3], "linux/amd64", Format::Oci);
        let b = index_of(
            vec![
                random_image(302, &[layer], "linux/amd64", Format::Oci),
                random_image(303, &[layer], "linux/arm64", Format::DockerV2),
            ],
            Format::Oci,
        );
        s.push_up("up/a", "v1", &a).await;
        s.push_up_index("up/b", "v1", &b).await;
        let proxy = Arc::new(FaultProxy::start(&s.up.url(), rules).await);
        for name in ["a", "b"] {
            let image = format!("{}/up/{name}", proxy.host);
            s.create_repo(
                &format!("mirror/{name}"),
                &[("upstream-image", &image), ("upstream-tags", "v1")],
            )
            .await;
        }
        FaultCase { s, proxy, a, b }
    }

    /// Runs the product while recording when each proxy hit appeared (polled every 5 ms).
    async fn run_watching(&self, args: &[&str]) -> (Run, Vec<(Hit, Instant)>) {
        let env = self.s.env();
        let child = run_async(args, &env);
        tokio::pin!(child);
        let mut seen: Vec<(Hit, Instant)> = vec![];
        let out = loop {
            tokio::select! {
                out = &mut child => break out,
                _ = tokio::time::sleep(Duration::from_millis(5)) => {
                    let now = Instant::now();
                    let log = self.proxy.hit_log();
                    for h in log.into_iter().skip(seen.len()) {
                        seen.push((h, now));
                    }
                }
            }
        };
        let now = Instant::now();
        for h in self.proxy.hit_log().into_iter().skip(seen.len()) {
            seen.push((h, now));
        }
        (Run::new(args, out), seen)
    }

    async fn assert_mirrored(&self) {
        assert_eq!(
            self.s.ecr_digest("mirror/a", "v1").await,
            Some(self.a.digest.clone())
        );
        assert_eq!(
            self.s.ecr_digest("mirror/b", "v1").await,
            Some(self.b.digest.clone())
        );
        // Whole images: every manifest and every blob, byte for byte.
        let ecr = &self.s.ecr;
        let images: Vec<(&str, &Image)> = std::iter::once(("mirror/a", &self.a))
            .chain(self.b.images.iter().map(|i| ("mirror/b", i)))
            .collect();
        for (repo, image) in images {
            let (bytes, _) = get_manifest(&ecr.url(), repo, &image.digest, ecr.auth(), None)
                .await
                .unwrap_or_else(|| panic!("{repo}@{} missing in ECR", image.digest));
            assert!(
                bytes == image.manifest,
                "{repo}@{}: bytes differ",
                image.digest
            );
            for blob in image.blobs() {
                let got = get_blob(&ecr.url(), repo, &blob.digest, ecr.auth(), None)
                    .await
                    .unwrap_or_else(|| panic!("blob {} missing in {repo}", blob.digest));
                assert!(
                    got == blob.data,
                    "blob {} in {repo}: bytes differ",
                    blob.digest
                );
            }
        }
    }
}

/// Every faulted path was later asked again and forwarded (answered by the real upstream: 200,
/// or 404 for an absent cosign `.sig` tag).
fn assert_faults_recovered(hits: &[(Hit, Instant)]) {
    for (i, (h, _)) in hits.iter().enumerate() {
        if h.fault.is_some() {
            assert!(
                hits[i + 1..].iter().any(|(l, _)| l.path == h.path
                    && l.fault.is_none()
                    && matches!(l.status, 200 | 404)),
                "{} {} was faulted ({:?}) and never served afterwards",
                h.method,
                h.path,
                h.fault
            );
        }
    }
}

fn u(v: &Value) -> u64 {
    v.as_u64()
        .unwrap_or_else(|| panic!("not an unsigned number: {v}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn fault_429_with_retry_after_then_success() {
    let rules = vec![Rule::new(
        "/manifests/",
        Fault::Status {
            code: 429,
            retry_after: Some("1".into()),
        },
        Schedule::FirstN(1),
    )];
    let f = FaultCase::start(rules, 4096).await;
    let args = sync_json(&[]);
    let (run, hits) = f.run_watching(&as_strs(&args)).await;
    run.assert_code(0);
    let ctx = run.ctx();
    let injected = hits.iter().filter(|(h, _)| h.fault.is_some()).count();
    assert!(injected >= 2, "one 429 per manifest path expected\n{ctx}");
    assert_faults_recovered(&hits);
    // Retry-After: 1 is honoured: the next request for a 429'd path comes >= 1 s later.
    for (i, (h, t)) in hits.iter().enumerate() {
        if h.fault.is_none() {
            continue;
        }
        let (_, next) = hits[i + 1..]
            .iter()
            .find(|(l, _)| l.path == h.path)
            .expect("retried");
        let gap = next.duration_since(*t);
        assert!(
            gap >= Duration::from_millis(900),
            "{} {} got 429 with Retry-After: 1 but was retried after {gap:?}\n{ctx}",
            h.method,
            h.path
        );
    }
    let summary = run.summary();
    assert!(
        u(&summary["retries"]) >= injected as u64,
        "{summary}\n{ctx}"
    );
    assert_fields(summary, json!({"copied": 2, "failed": 0}), &ctx);
    f.assert_mirrored().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fault_three_503s_then_success() {
    let rules = vec![Rule::new(
        "/manifests/",
        Fault::Status {
            code: 503,
            retry_after: None,
        },
        Schedule::FirstN(3),
    )];
    let f = FaultCase::start(rules, 4096).await;
    let (run, hits) = f.run_watching(&as_strs(&sync_json(&[]))).await;
    run.assert_code(0);
    let ctx = run.ctx();
    assert_faults_recovered(&hits);
    // Each of the two tag paths got its three 503s.
    for name in ["a", "b"] {
        let path = format!("/v2/up/{name}/manifests/v1");
        let n = hits
            .iter()
            .filter(|(h, _)| h.path == path && h.fault.is_some())
            .count();
        assert_eq!(n, 3, "{path}: three 503s expected\n{ctx}");
    }
    let injected = hits.iter().filter(|(h, _)| h.fault.is_some()).count() as u64;
    let summary = run.summary();
    assert!(u(&summary["retries"]) >= injected, "{summary}\n{ctx}");
    assert_fields(summary, json!({"copied": 2, "failed": 0}), &ctx);
    f.assert_mirrored().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn retry_times_bounds_retries_and_only_that_item_fails() {
    // Three 503s on up/b's tag, but only two retries allowed (--batch: the original alias).
    let rules = vec![Rule::new(
        "/v2/up/b/manifests/v1",
        Fault::Status {
            code: 503,
            retry_after: None,
        },
        Schedule::FirstN(3),
    )];
    let f = FaultCase::start(rules, 4096).await;
    f.s.mark();
    let args = sync_json(&["--retry-times", "2", "--batch", "1"]);
    let (run, hits) = f.run_watching(&as_strs(&args)).await;
    let ctx = run.ctx();
    let b_hits: Vec<&Hit> = hits
        .iter()
        .map(|(h, _)| h)
        .filter(|h| h.path == "/v2/up/b/manifests/v1")
        .collect();
    assert_eq!(b_hits.len(), 3, "1 attempt + 2 retries: {b_hits:?}\n{ctx}");
    assert!(b_hits.iter().all(|h| h.status == 503), "{b_hits:?}");
    let b = run.one("item", "mirror/b", Some("v1"));
    assert_fields(b, json!({"outcome": "failed"}), &ctx);
    assert_text(b, "error", &["503"], &ctx);
    assert_fields(
        run.one("item", "mirror/a", Some("v1")),
        json!({"outcome": "copied", "dest_digest": f.a.digest}),
        &ctx,
    );
    assert_fields(run.summary(), json!({"copied": 1, "failed": 1}), &ctx);
    assert!(u(&run.summary()["retries"]) >= 2, "{ctx}");
    run.assert_code(1);
    assert_eq!(f.s.ecr_digest("mirror/b", "v1").await, None);
    let reqs = f.s.ecr.requests();
    assert!(
        !reqs
            .iter()
            .any(|r| is_write(r) && r.repo().as_deref() == Some("mirror/b")),
        "{}",
        show(&reqs)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn fault_connection_reset_mid_blob_then_success() {
    let rules = vec![Rule::new("/blobs/", Fault::ResetMidBody, Schedule::FirstN(1)).method("GET")];
    let f = FaultCase::start(rules, 256 * 1024).await;
    f.s.mark();
    let (run, hits) = f.run_watching(&as_strs(&sync_json(&[]))).await;
    run.assert_code(0);
    let ctx = run.ctx();
    let resets = hits.iter().filter(|(h, _)| h.fault.is_some()).count();
    assert!(resets >= 1, "no reset was injected\n{ctx}");
    assert_faults_recovered(&hits);
    assert_fields(run.summary(), json!({"copied": 2, "failed": 0}), &ctx);
    f.assert_mirrored().await;
    // Nothing half-written: every manifest PUT was accepted, and each blob was committed
    // exactly once. The upload PUTs that carried a reset stream (every blob goes up in one PUT
    // with the body) were cut short by us and refused by the registry: not committed.
    let reqs = f.s.ecr.requests();
    let failed_manifest_puts: Vec<Request> = reqs
        .iter()
        .filter(|r| r.method == "PUT" && r.kind() == Kind::Manifest && r.status != 201)
        .cloned()
        .collect();
    assert!(
        failed_manifest_puts.is_empty(),
        "{}",
        show(&failed_manifest_puts)
    );
    let mut commits = std::collections::BTreeMap::<String, usize>::new();
    for r in reqs
        .iter()
        .filter(|r| r.method == "PUT" && r.kind() == Kind::Upload)
    {
        let q = r.query.clone().unwrap_or_default();
        let digest = q.split("digest=").nth(1).unwrap_or("?").to_string();
        if r.status == 201 {
            *commits
                .entry(format!("{} {digest}", r.repo().unwrap_or_default()))
                .or_default() += 1;
        }
    }
    assert!(
        commits.values().all(|n| *n == 1),
        "a blob committed twice: {commits:?}\n{}",
        show(&reqs)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn fault_wrong_digest_fails_that_item_only() {
    let rules = vec![Rule::new(
        "/v2/up/b/blobs/",
        Fault::FlipByte,
        Schedule::Always,
    )];
    let f = FaultCase::start(rules, 8192).await;
    f.s.mark();
    let (run, hits) = f.run_watching(&as_strs(&sync_json(&[]))).await;
    let ctx = run.ctx();
    assert!(
        hits.iter().any(|(h, _)| h.fault.is_some()),
        "no byte was flipped\n{ctx}"
    );
    assert_fields(
        run.one("item", "mirror/a", Some("v1")),
        json!({"outcome": "copied", "dest_digest": f.a.digest}),
        &ctx,
    );
    let b = run.one("item", "mirror/b", Some("v1"));
    assert_fields(b, json!({"outcome": "failed"}), &ctx);
    assert_text(b, "error", &["digest mismatch"], &ctx);
    assert_fields(run.summary(), json!({"copied": 1, "failed": 1}), &ctx);
    run.assert_code(1);
    assert_eq!(
        f.s.ecr_digest("mirror/a", "v1").await,
        Some(f.a.digest.clone())
    );
    assert_eq!(f.s.ecr_digest("mirror/b", "v1").await, None);
    // Nothing half-written for mirror/b: no manifest PUT, no committed blob.
    let reqs = f.s.ecr.requests();
    let b_writes: Vec<Request> = reqs
        .iter()
        .filter(|r| r.repo().as_deref() == Some("mirror/b"))
        .filter(|r| {
            (r.method == "PUT" && r.kind() == Kind::Manifest)
                || (r.method == "PUT" && r.kind() == Kind::Upload && r.status == 201)
        })
        .cloned()
        .collect();
    assert!(
        b_writes.is_empty(),
        "the corrupted repository got writes:\n{}",
        show(&b_writes)
    );
    for image in &f.b.images {
        for blob in image.blobs() {
            assert!(
                !head_blob(
                    &f.s.ecr.url(),
                    "mirror/b",
                    &blob.digest,
                    f.s.ecr.auth(),
                    None
                )
                .await,
                "blob {} of the corrupted source is in ECR",
                blob.digest
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 4. A platform-filtered repository
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn platform_filtered_repository_keeps_children_and_second_sync_is_noop() {
    let s = Services::start();
    let idx = two_platforms(401);
    let (amd, arm) = (&idx.images[0], &idx.images[1]);
    s.push_up_index("up/multi", "v1", &idx).await;
    s.create_repo(
        "mirror/multi",
        &[
            ("upstream-image", &s.upstream("up/multi")),
            ("upstream-tags", "v1"),
            ("upstream-platforms", "linux/arm64"),
        ],
    )
    .await;

    let run = s.run(&as_strs(&sync_json(&[]))).await;
    run.assert_code(0);
    let ctx = run.ctx();
    let item = run.one("item", "mirror/multi", Some("v1"));
    assert_fields(
        item,
        json!({"outcome": "copied", "platforms": "linux/arm64", "source_digest": idx.digest,
               "platform_digests": [["linux/arm64", arm.digest]]}),
        &ctx,
    );

    // The ECR index: only the arm64 child, unchanged, and the upstream index digest recorded.
    let (bytes, ct) = get_manifest(&s.ecr.url(), "mirror/multi", "v1", s.ecr.auth(), None)
        .await
        .expect("mirror/multi:v1 in ECR");
    let filtered_digest = sha256_digest(&bytes);
    assert_eq!(item["dest_digest"], filtered_digest.as_str(), "{ctx}");
    assert_ne!(
        filtered_digest, idx.digest,
        "a filtered index is a new index"
    );
    assert_eq!(ct, idx.media_type);
    let doc: Value = serde_json::from_slice(&bytes).expect("ECR index is JSON");
    let children = doc["manifests"].as_array().expect("manifests");
    assert_eq!(children.len(), 1, "{doc}");
    assert_eq!(children[0]["digest"], arm.digest.as_str(), "{doc}");
    assert_eq!(children[0]["platform"]["architecture"], "arm64", "{doc}");
    assert_eq!(
        doc["annotations"][SOURCE_DIGEST_ANNOTATION],
        idx.digest.as_str(),
        "{doc}"
    );
    let (child, _) = get_manifest(
        &s.ecr.url(),
        "mirror/multi",
        &arm.digest,
        s.ecr.auth(),
        None,
    )
    .await
    .expect("arm64 child in ECR");
    assert!(child == arm.manifest, "arm64 child bytes differ");
    for blob in arm.blobs() {
        assert!(
            head_blob(
                &s.ecr.url(),
                "mirror/multi",
                &blob.digest,
                s.ecr.auth(),
                None
            )
            .await,
            "arm64 blob {} missing",
            blob.digest
        );
    }
    assert_eq!(
        s.ecr_digest("mirror/multi", &amd.digest).await,
        None,
        "the amd64 child must not be copied"
    );
    for blob in amd.layers.iter() {
        assert!(
            !head_blob(
                &s.ecr.url(),
                "mirror/multi",
                &blob.digest,
                s.ecr.auth(),
                None
            )
            .await,
            "amd64 layer {} was copied",
            blob.digest
        );
    }

    // Second sync: skipped; upstream sees one HEAD; ECR one HEAD plus at most one GET of its
    // own index.
    s.mark();
    let again = s.run(&as_strs(&sync_json(&[]))).await;
    again.assert_code(0);
    let ctx = again.ctx();
    assert_fields(
        again.one("item", "mirror/multi", Some("v1")),
        json!({"outcome": "skipped", "reason": "in-sync", "source_digest": idx.digest,
               "dest_digest": filtered_digest}),
        &ctx,
    );
    assert_head_only("upstream", &s.up.requests(), &[("up/multi", "v1")]);
    let reqs = s.ecr.requests();
    let heads: Vec<&Request> = reqs.iter().filter(|r| r.method == "HEAD").collect();
    assert_eq!(heads.len(), 1, "{}", show(&reqs));
    assert_eq!(heads[0].path, "/v2/mirror/multi/manifests/v1");
    let gets: Vec<&Request> = reqs
        .iter()
        .filter(|r| r.method == "GET" && !is_ping(r))
        .collect();
    assert!(gets.len() <= 1, "{}", show(&reqs));
    for g in &gets {
        assert!(
            g.path == "/v2/mirror/multi/manifests/v1"
                || g.path == format!("/v2/mirror/multi/manifests/{filtered_digest}"),
            "only its own index may be read: {}",
            show(&reqs)
        );
    }
    let others: Vec<Request> = reqs
        .iter()
        .filter(|r| !is_ping(r) && r.method != "HEAD" && r.method != "GET")
        .cloned()
        .collect();
    assert!(others.is_empty(), "{}", show(&others));
    assert_eq!(
        s.ecr_digest("mirror/multi", "v1").await,
        Some(filtered_digest)
    );
}

// ---------------------------------------------------------------------------------------------
// 5. --prefix, --image-key, --tag-key
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn prefix_and_custom_keys_limit_what_is_touched() {
    let s = Services::start();
    let x = img(501, Format::Oci);
    s.push_up("up/x", "v1", &x).await;
    let up_x = s.upstream("up/x");
    let custom = [("src-image", up_x.as_str()), ("src-tags", "v1")];
    let default = [("upstream-image", up_x.as_str()), ("upstream-tags", "v1")];
    s.create_repo("mirror/x", &custom).await;
    s.create_repo("other/x", &custom).await;
    s.create_repo("mirrorx/x", &custom).await; // `mirror` is a path prefix, not a string prefix
    s.create_repo("mirror/y", &default).await; // marked with the default keys only

    s.mark();
    let run = s
        .run(&as_strs(&sync_json(&[
            "--prefix",
            "mirror",
            "--image-key",
            "src-image",
            "--tag-key",
            "src-tags",
        ])))
        .await;
    run.assert_code(0);
    let ctx = run.ctx();
    assert_eq!(run.keys("item"), vec![key("mirror/x", Some("v1"))], "{ctx}");
    assert_fields(
        run.one("item", "mirror/x", Some("v1")),
        json!({"outcome": "copied", "dest_digest": x.digest}),
        &ctx,
    );
    assert_eq!(s.ecr_digest("mirror/x", "v1").await, Some(x.digest.clone()));
    let reqs = s.ecr.requests();
    let touched: Vec<Request> = reqs
        .iter()
        .filter(|r| r.repo().is_some_and(|repo| repo != "mirror/x"))
        .cloned()
        .collect();
    assert!(
        touched.is_empty(),
        "other repositories touched:\n{}",
        show(&touched)
    );
    for repo in ["other/x", "mirrorx/x", "mirror/y"] {
        assert_eq!(s.ecr_digest(repo, "v1").await, None, "{repo}");
    }

    // The same keys without --prefix: every custom-keyed repository, not the default-keyed one.
    let list = s
        .run(&[
            "list",
            "--output",
            "json",
            "--image-key",
            "src-image",
            "--tag-key",
            "src-tags",
        ])
        .await;
    list.assert_code(0);
    let mut repos: Vec<String> = list
        .all("repository")
        .iter()
        .map(|d| d["repository"].as_str().unwrap_or_default().to_string())
        .collect();
    repos.sort();
    assert_eq!(
        repos,
        ["mirror/x", "mirrorx/x", "other/x"],
        "{}",
        list.ctx()
    );

    // Default keys: only mirror/y is marked.
    let dry = s.run(&as_strs(&sync_json(&["--dry-run"]))).await;
    dry.assert_code(0);
    assert_eq!(
        dry.keys("plan"),
        vec![key("mirror/y", Some("v1"))],
        "{}",
        dry.ctx()
    );
}

// ---------------------------------------------------------------------------------------------
// 6. list
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn list_table_and_check_statuses() {
    let s = Services::start();
    let (a1, a2, old, b1) = (
        img(601, Format::Oci),
        img(602, Format::Oci),
        img(603, Format::DockerV2),
        img(604, Format::DockerV2),
    );
    s.push_up("up/a", "v1", &a1).await;
    s.push_up("up/a", "v2", &a2).await;
    s.push_up("up/b", "latest", &b1).await;
    let (up_a, up_b) = (s.upstream("up/a"), s.upstream("up/b"));
    s.create_repo(
        "mirror/a",
        &[("upstream-image", &up_a), ("upstream-tags", "v1/v2")],
    )
    .await;
    s.create_repo(
        "mirror/b",
        &[
            ("upstream-image", &up_b),
            ("upstream-tags", "latest"),
            ("upstream-platforms", "linux/amd64"),
        ],
    )
    .await;
    s.create_repo("plain/unmarked", &[("team", "x")]).await;
    s.push_ecr("mirror/a", "v1", &a1).await; // in sync
    s.push_ecr("mirror/a", "v2", &old).await; // stale

    let table = s.run(&["list", "--render-table"]).await;
    table.assert_code(0);
    let out = table.stdout();
    for needle in [
        "REPOSITORY",
        "mirror/a",
        "mirror/b",
        up_a.as_str(),
        up_b.as_str(),
        "v1 v2",
        "latest",
        "linux/amd64",
    ] {
        assert!(
            out.contains(needle),
            "table lacks {needle:?}\n{}",
            table.ctx()
        );
    }
    assert!(
        out.contains('│') || out.contains('|'),
        "not a table\n{}",
        table.ctx()
    );
    assert!(!out.contains("plain/unmarked"), "{}", table.ctx());

    s.mark();
    let check = s.run(&["list", "--check", "--output", "json"]).await;
    check.assert_code(0);
    let ctx = check.ctx();
    assert_eq!(
        check.keys("tag"),
        vec![
            key("mirror/a", Some("v1")),
            key("mirror/a", Some("v2")),
            key("mirror/b", Some("latest")),
        ],
        "{ctx}"
    );
    assert_fields(
        check.one("tag", "mirror/a", Some("v1")),
        json!({"status": "in-sync", "source_digest": a1.digest, "dest_digest": a1.digest}),
        &ctx,
    );
    assert_fields(
        check.one("tag", "mirror/a", Some("v2")),
        json!({"status": "stale", "source_digest": a2.digest, "dest_digest": old.digest}),
        &ctx,
    );
    assert_fields(
        check.one("tag", "mirror/b", Some("latest")),
        json!({"status": "missing", "source_digest": b1.digest, "dest_digest": null,
               "platforms": "linux/amd64"}),
        &ctx,
    );
    // `list --check` reads: HEADs only, on both sides.
    assert_head_only(
        "upstream",
        &s.up.requests(),
        &[("up/a", "v1"), ("up/a", "v2"), ("up/b", "latest")],
    );
    assert_head_only_status(
        "ECR",
        &s.ecr.requests(),
        &[
            ("mirror/a", "v1", 200),
            ("mirror/a", "v2", 200),
            ("mirror/b", "latest", 404),
        ],
    );

    // The text form of --check names the statuses too.
    let text = s.run(&["list", "--check"]).await;
    text.assert_code(0);
    for needle in [
        "in-sync",
        "stale",
        "missing",
        a2.digest.as_str(),
        old.digest.as_str(),
    ] {
        assert!(text.stdout().contains(needle), "{needle}\n{}", text.ctx());
    }
}

// ---------------------------------------------------------------------------------------------
// 7. IMMUTABLE destination tags
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn immutable_tag_holding_another_digest_is_a_clear_per_tag_error() {
    let s = Services::start();
    let (new, old, v2, same, ok) = (
        img(701, Format::Oci),
        img(702, Format::Oci),
        img(703, Format::Oci),
        img(704, Format::Oci),
        img(705, Format::Oci),
    );
    s.push_up("up/imm", "v1", &new).await;
    s.push_up("up/imm", "v2", &v2).await;
    s.push_up("up/imm", "v3", &same).await;
    s.push_up("up/ok", "v1", &ok).await;
    s.create_repo_with(
        "mirror/imm",
        &[
            ("upstream-image", &s.upstream("up/imm")),
            ("upstream-tags", "v1/v2/v3"),
        ],
        true,
    )
    .await;
    s.create_repo(
        "mirror/ok",
        &[
            ("upstream-image", &s.upstream("up/ok")),
            ("upstream-tags", "v1"),
        ],
    )
    .await;
    s.push_ecr("mirror/imm", "v1", &old).await; // the immutable tag holds another image
    s.push_ecr("mirror/imm", "v3", &same).await; // in sync

    s.mark();
    let run = s.run(&as_strs(&sync_json(&[]))).await;
    let ctx = run.ctx();
    let v1 = run.one("item", "mirror/imm", Some("v1"));
    assert_fields(v1, json!({"outcome": "failed"}), &ctx);
    assert_text(v1, "error", &["IMMUTABLE", "v1"], &ctx);
    assert_fields(
        run.one("item", "mirror/imm", Some("v2")),
        json!({"outcome": "copied", "dest_digest": v2.digest}),
        &ctx,
    );
    assert_fields(
        run.one("item", "mirror/imm", Some("v3")),
        json!({"outcome": "skipped"}),
        &ctx,
    );
    assert_fields(
        run.one("item", "mirror/ok", Some("v1")),
        json!({"outcome": "copied", "dest_digest": ok.digest}),
        &ctx,
    );
    assert_fields(
        run.summary(),
        json!({"copied": 2, "skipped": 1, "failed": 1}),
        &ctx,
    );
    run.assert_code(1);
    assert_eq!(
        s.ecr_digest("mirror/imm", "v1").await,
        Some(old.digest.clone())
    );
    assert_eq!(
        s.ecr_digest("mirror/imm", "v2").await,
        Some(v2.digest.clone())
    );
    assert_eq!(
        s.ecr_digest("mirror/ok", "v1").await,
        Some(ok.digest.clone())
    );
    let reqs = s.ecr.requests();
    assert!(
        !reqs
            .iter()
            .any(|r| r.method == "PUT" && r.path == "/v2/mirror/imm/manifests/v1"),
        "the immutable tag was written:\n{}",
        show(&reqs)
    );
}

// ---------------------------------------------------------------------------------------------
// 8. The AWS endpoint
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn aws_endpoint_url_is_honoured_and_an_unreachable_one_fails_clearly() {
    let s = Services::start();
    s.create_repo(
        "mirror/a",
        &[
            ("upstream-image", &s.upstream("up/a")),
            ("upstream-tags", "v1"),
        ],
    )
    .await;
    // Honoured: the repository created in this moto is listed (moto's log shows the calls).
    let before = s.moto.stderr_log().matches("POST /").count();
    let ok = s.run(&["list", "--output", "json"]).await;
    ok.assert_code(0);
    ok.one("repository", "mirror/a", None);
    assert!(
        s.moto.stderr_log().matches("POST /").count() > before,
        "moto saw no request from the product"
    );

    // Unreachable: a non-zero exit naming the failed operation, quickly.
    let mut env = s.env();
    for (k, v) in env.iter_mut() {
        if k == "AWS_ENDPOINT_URL" {
            *v = "http://127.0.0.1:1".into();
        }
    }
    let started = Instant::now();
    let bad = s.run_env(&["list"], &env).await;
    let took = started.elapsed();
    assert!(
        !matches!(bad.code(), Some(0) | None),
        "expected a failure\n{}",
        bad.ctx()
    );
    assert!(
        bad.stderr().contains("DescribeRepositories"),
        "the error should name the operation\n{}",
        bad.ctx()
    );
    assert!(took < Duration::from_secs(60), "took {took:?}");

    // The same with --output json: one error record naming the operation.
    let bad = s.run_env(&["list", "--output", "json"], &env).await;
    assert!(!matches!(bad.code(), Some(0) | None), "{}", bad.ctx());
    let errors = bad.all("error");
    assert_eq!(errors.len(), 1, "{}", bad.ctx());
    assert_text(errors[0], "message", &["DescribeRepositories"], &bad.ctx());
    assert!(s.up.requests().is_empty() && s.ecr.requests().is_empty());
}

// ---------------------------------------------------------------------------------------------
// verify and report files (issue 6)
// ---------------------------------------------------------------------------------------------

/// Reads the one `images_*.<ext>` file in `dir`.
fn report_file(dir: &std::path::Path, ext: &str) -> std::path::PathBuf {
    let found: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.extension().is_some_and(|e| e == ext)
                && p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("images_")
        })
        .collect();
    assert_eq!(
        found.len(),
        1,
        "one images_*.{ext} in {}: {found:?}",
        dir.display()
    );
    found[0].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_matches_full_and_filtered_mirrors_and_catches_a_tampered_child() {
    let s = Services::start();
    let full = two_platforms(901);
    let filtered = two_platforms(911);
    s.push_up_index("up/full", "v1", &full).await;
    s.push_up_index("up/filtered", "v1", &filtered).await;
    s.create_repo(
        "mirror/full",
        &[
            ("upstream-image", &s.upstream("up/full")),
            ("upstream-tags", "v1"),
        ],
    )
    .await;
    s.create_repo(
        "mirror/filtered",
        &[
            ("upstream-image", &s.upstream("up/filtered")),
            ("upstream-tags", "v1"),
            ("upstream-platforms", "linux/arm64"),
        ],
    )
    .await;
    let reports = tempfile::tempdir().unwrap();
    let dir = reports.path().join("sync");
    let run = s
        .run(&as_strs(&sync_json(&[
            "--report-dir",
            dir.to_str().unwrap(),
        ])))
        .await;
    run.assert_code(0);

    // The sync report files, parsed back: one row per tag, in three formats that agree.
    let csv_text = std::fs::read_to_string(report_file(&dir, "csv")).unwrap();
    let mut lines = csv_text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(
        header,
        [
            "source",
            "destination",
            "source_digest",
            "dest_digest",
            "platform_digests",
            "action",
            "outcome",
            "reason",
            "label",
            "bytes",
            "duration_secs",
            "referrers"
        ]
    );
    let rows: Vec<Vec<String>> = lines
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect();
    assert_eq!(rows.len(), 2, "{csv_text}");
    let full_row = rows
        .iter()
        .find(|r| r[1] == "mirror/full:v1")
        .expect("full row");
    assert_eq!(full_row[2], full.digest);
    assert_eq!(full_row[3], full.digest, "--all keeps the index digest");
    assert_eq!(
        (full_row[5].as_str(), full_row[6].as_str()),
        ("copy", "copied")
    );
    assert!(
        full_row[4].contains(&format!("linux/amd64={}", full.images[0].digest)),
        "{csv_text}"
    );
    assert!(full_row[9].parse::<u64>().unwrap() > 0, "bytes");
    assert_eq!(full_row[8], "", "no failure label on a copied row");
    let json: Value =
        serde_json::from_slice(&std::fs::read(report_file(&dir, "json")).unwrap()).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 2);
    let md = std::fs::read_to_string(report_file(&dir, "md")).unwrap();
    assert_eq!(md.lines().count(), 4, "header, rule and two rows: {md}");

    // verify: everything matches, per platform, for both mirror kinds.
    let vdir = reports.path().join("verify");
    let run = s
        .run(&[
            "verify",
            "--output",
            "json",
            "--report-dir",
            vdir.to_str().unwrap(),
        ])
        .await;
    run.assert_code(0);
    let ctx = run.ctx();
    let vf = run.one("verify", "mirror/full", Some("v1"));
    assert_eq!(vf["ok"], true, "{ctx}");
    let platforms: Vec<&str> = vf["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["platform"].as_str().unwrap())
        .collect();
    assert_eq!(platforms, ["index", "linux/amd64", "linux/arm64"], "{ctx}");
    let vfl = run.one("verify", "mirror/filtered", Some("v1"));
    assert_eq!(vfl["ok"], true, "{ctx}");
    let rows = vfl["rows"].as_array().unwrap();
    assert_eq!(
        rows.len(),
        2,
        "index (recorded upstream digest) and arm64 only: {ctx}"
    );
    // The index row is truthful (issue 12): `ecr` is the filtered index ECR holds, which
    // differs from upstream by design; `recorded_source` is the upstream digest it records,
    // which is what is compared.
    assert_eq!(
        rows[0]["recorded_source"],
        filtered.digest.as_str(),
        "the recorded upstream digest: {ctx}"
    );
    let ecr_index = rows[0]["ecr"].as_str().unwrap();
    assert!(
        ecr_index.starts_with("sha256:") && ecr_index != filtered.digest,
        "the ECR index digest, not the upstream one: {ctx}"
    );
    assert_eq!(rows[1]["platform"], "linux/arm64");
    let vcsv = std::fs::read_to_string(report_file(&vdir, "csv")).unwrap();
    assert_eq!(
        vcsv.lines()
            .filter(|l| l.contains(",verify,match,"))
            .count(),
        2,
        "{vcsv}"
    );

    // Tamper: the ECR tag now points at an index whose arm64 child is other content.
    let other_arm = random_image(999, &[2000, 900], "linux/arm64", Format::Oci);
    let tampered = index_of(
        vec![
            random_image(901, &[3000], "linux/amd64", Format::Oci),
            other_arm,
        ],
        Format::Oci,
    );
    assert_eq!(
        tampered.images[0].digest, full.images[0].digest,
        "amd64 child unchanged"
    );
    push_index(
        &s.ecr.url(),
        "mirror/full",
        "v1",
        &tampered,
        s.ecr.auth(),
        None,
    )
    .await;
    let run = s
        .run(&["verify", "--repository", "mirror/full", "--render-table"])
        .await;
    run.assert_code(1);
    let out = run.stdout();
    assert!(out.contains("MISMATCH mirror/full:v1"), "{out}");
    assert!(
        out.contains("index, linux/arm64"),
        "the verdict names what differs: {out}"
    );
    let arm_row = out
        .lines()
        .find(|l| l.contains("linux/arm64"))
        .expect("arm64 row");
    assert!(
        arm_row.contains(&full.images[1].digest) && arm_row.contains("NO"),
        "{arm_row}"
    );
    let amd_row = out
        .lines()
        .find(|l| l.contains("linux/amd64"))
        .expect("amd64 row");
    assert!(amd_row.contains("yes"), "{amd_row}");
    assert!(
        !out.contains("mirror/filtered"),
        "--repository limits the check: {out}"
    );
}

// ---------------------------------------------------------------------------------------------
// 9. Metrics (issue 17): the metrics file passes promtool, the push reaches a real Pushgateway
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn sync_writes_a_metrics_file_and_pushes_to_a_real_pushgateway() {
    use crate::support::{promtool_check_metrics, Pushgateway};
    let s = Services::start();
    let pg = Pushgateway::start().await;
    let image = img(901, Format::Oci);
    s.push_up("up/m", "v1", &image).await;
    s.create_repo(
        "mirror/m",
        &[
            ("upstream-image", &s.upstream("up/m")),
            ("upstream-tags", "v1/v404"),
        ],
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ecr_mirror_sync.prom");
    let run = s
        .run(&as_strs(&sync_json(&[
            "--metrics-file",
            file.to_str().unwrap(),
            "--pushgateway",
            &pg.url,
            "--metrics-job",
            "team-a",
        ])))
        .await;
    let ctx = run.ctx();
    run.assert_code(1); // v404 does not exist upstream
    let text = std::fs::read_to_string(&file).unwrap();
    promtool_check_metrics(&file).unwrap_or_else(|e| panic!("promtool: {e}\n{text}"));
    for want in [
        "ecr_mirror_sync_items{outcome=\"copied\"} 1",
        "ecr_mirror_sync_items{outcome=\"failed\"} 1",
        "ecr_mirror_sync_failures{outcome=\"failed\",label=\"upstream-not-found\"} 1",
        "ecr_mirror_sync_tag_in_sync{repository=\"mirror/m\",tag=\"v1\"} 1",
        "ecr_mirror_sync_tag_in_sync{repository=\"mirror/m\",tag=\"v404\"} 0",
        "ecr_mirror_sync_last_run_success 0",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}\n{ctx}");
    }
    // Requests by registry and method: the ECR side (named by its registry host, not by the
    // endpoint the requests were sent to) got the blob uploads.
    let ecr_host = format!("registry=\"{MOTO_ACCOUNT_ID}.dkr.ecr.{REGION}.amazonaws.com\"");
    assert!(
        text.lines()
            .any(|l| l.starts_with("ecr_mirror_sync_requests{")
                && l.contains(&ecr_host)
                && l.contains("method=\"PUT\"")),
        "no PUT count for the ECR registry in\n{text}"
    );
    assert!(
        !text.contains(MOTO_ECR_PASSWORD),
        "a credential reached the metrics"
    );
    let pushed = pg.metrics().await;
    assert!(
        pushed
            .lines()
            .any(|l| l.starts_with("ecr_mirror_sync_items{")
                && l.contains("job=\"team-a\"")
                && l.contains("outcome=\"copied\"")
                && l.ends_with(" 1")),
        "the push did not reach the Pushgateway:\n{pushed}"
    );
    // A failed push is a warning, never a failed run: a closed port changes nothing.
    let closed = format!(
        "http://127.0.0.1:{}",
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    );
    let again = s
        .run(&as_strs(&sync_json(&["--pushgateway", &closed])))
        .await;
    again.assert_code(1);
    assert!(
        String::from_utf8_lossy(&again.out.stderr).contains("could not push the metrics"),
        "{}",
        again.ctx()
    );
}

// ---------------------------------------------------------------------------------------------
// 10. Tag rules (`upstream-tag-rule`), with this module's harness
// ---------------------------------------------------------------------------------------------

#[path = "sync_tag_rule.rs"]
mod tag_rule;
