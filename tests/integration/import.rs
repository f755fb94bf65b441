//! `import` and `--create-missing` end to end: the product binary against moto (the ECR
//! control plane) and, for the follow-up `sync` and `copy`, real `docker-registry` instances:
//! an "upstream" registry (plain HTTP, anonymous) and an "ECR" registry (htpasswd with moto's
//! token user), paired through `ECR_MIRROR_SYNC_REGISTRY_ENDPOINT`.
//!
//! What ECR holds afterwards is read back with an SDK client of our own pointed at moto
//! (`DescribeRepositories`, `ListTagsForResource`, `GetLifecyclePolicy`), never from the
//! product's report alone. Every test starts its own services.

use std::path::{Path, PathBuf};
use std::process::Output;

use ecr_mirror_sync::ecr::{EcrApi, RepoSettings, SdkEcr};
use serde_json::{json, Value};

use crate::support::{
    describe, head_manifest, push_image, random_image, run_async, Fault, FaultProxy, Format, Moto,
    Registry, Rule, Schedule, MOTO_ACCOUNT_ID, MOTO_ECR_PASSWORD, MOTO_ECR_USER,
};

const REGION: &str = "us-east-1";
const KMS_KEY: &str = "arn:aws:kms:us-east-1:123456789012:key/import-test";
const POLICY: &str = r#"{"rules":[{"rulePriority":1,"description":"expire untagged","selection":{"tagStatus":"untagged","countType":"sinceImagePushed","countUnit":"days","countNumber":7},"action":{"type":"expire"}}]}"#;

fn ecr_host() -> String {
    format!("{MOTO_ACCOUNT_ID}.dkr.ecr.{REGION}.amazonaws.com")
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// One finished run: the output and, with `--output json`, its records.
struct Run {
    args: Vec<String>,
    out: Output,
}

impl Run {
    async fn new(args: &[&str], env: &[(String, String)]) -> Run {
        Run {
            args: args.iter().map(|a| a.to_string()).collect(),
            out: run_async(args, env).await,
        }
    }

    fn ctx(&self) -> String {
        format!(
            "$ ecr-mirror-sync {}\n{}",
            self.args.join(" "),
            describe(&self.out)
        )
    }

    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.out.stdout).into_owned()
    }

    fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.out.status.code(),
            Some(code),
            "expected exit {code}\n{}",
            self.ctx()
        );
        self
    }

    /// The `data` of every JSON line of `kind`.
    fn records(&self, kind: &str) -> Vec<Value> {
        self.stdout()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str::<Value>(l)
                    .unwrap_or_else(|e| panic!("non-JSON line {l:?}: {e}\n{}", self.ctx()))
            })
            .filter(|v| v["type"] == kind)
            .map(|v| v["data"].clone())
            .collect()
    }

    fn summary(&self) -> Value {
        let s = self.records("summary");
        assert_eq!(s.len(), 1, "one summary expected\n{}", self.ctx());
        s[0].clone()
    }

    /// `import` records about repositories: (repository, action).
    fn actions(&self) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = self
            .records("import")
            .iter()
            .filter(|d| d["repository"].is_string())
            .map(|d| {
                (
                    d["repository"].as_str().unwrap().to_string(),
                    d["action"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        v.sort();
        v
    }

    fn record(&self, repository: &str) -> Value {
        let found: Vec<Value> = self
            .records("import")
            .into_iter()
            .filter(|d| d["repository"] == repository)
            .collect();
        assert_eq!(
            found.len(),
            1,
            "one record for {repository}\n{}",
            self.ctx()
        );
        found[0].clone()
    }

    /// Invalid-entry records: (line, entry, error).
    fn entry_errors(&self) -> Vec<(Option<u64>, Option<u64>, String)> {
        self.records("import")
            .iter()
            .filter(|d| d["repository"].is_null())
            .map(|d| {
                assert_eq!(d["action"], "error", "{d}");
                (
                    d["line"].as_u64(),
                    d["entry"].as_u64(),
                    d["error"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// What moto holds about one repository.
#[derive(Debug)]
struct Observed {
    mutability: String,
    scan_on_push: bool,
    encryption: String,
    kms_key: Option<String>,
    tags: Vec<(String, String)>,
    lifecycle_policy: Option<Value>,
}

async fn observe(moto: &Moto, name: &str) -> Option<Observed> {
    let api = SdkEcr::with_endpoint(&moto.url, REGION).await;
    let repo = api.repository(name).await.unwrap()?;
    let out = api
        .client()
        .describe_repositories()
        .repository_names(name)
        .send()
        .await
        .unwrap();
    let r = &out.repositories()[0];
    let enc = r.encryption_configuration().unwrap();
    let mut tags = api.tags(&repo.arn).await.unwrap();
    tags.sort();
    let lifecycle_policy = api
        .client()
        .get_lifecycle_policy()
        .repository_name(name)
        .send()
        .await
        .ok()
        .and_then(|o| o.lifecycle_policy_text().map(str::to_string))
        .map(|t| serde_json::from_str(&t).unwrap());
    Some(Observed {
        mutability: r.image_tag_mutability().unwrap().as_str().to_string(),
        scan_on_push: r.image_scanning_configuration().unwrap().scan_on_push(),
        encryption: enc.encryption_type().as_str().to_string(),
        kms_key: enc.kms_key().map(str::to_string),
        tags,
        lifecycle_policy,
    })
}

async fn repository_names(moto: &Moto) -> Vec<String> {
    let api = SdkEcr::with_endpoint(&moto.url, REGION).await;
    let mut names: Vec<String> = api
        .repositories(None)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    names.sort();
    names
}

fn marked(image: &str, tags: &str) -> Vec<(String, String)> {
    let mut v = pairs(&[("upstream-image", image), ("upstream-tags", tags)]);
    v.sort();
    v
}

// ---------------------------------------------------------------------------------------------
// 1. source-images.list: creation with settings, idempotence, merging
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn list_import_creates_with_settings_then_changes_nothing_then_merges() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let list = write(
        dir.path(),
        "source-images.list",
        "# images the charts need\n\
         rockylinux:9.0.20220720\n\
         docker/dockerfile:1.4.3\n\
         \n\
         rockylinux:8   # older line\n\
         ghcr.io/kedacore/keda:2.4.0\n",
    );
    let policy = write(dir.path(), "lifecycle.json", POLICY);
    let list_s = list.to_str().unwrap();
    let policy_s = policy.to_str().unwrap();
    let args = [
        "import",
        list_s,
        "--output",
        "json",
        "--scan-on-push",
        "--image-tag-mutability",
        "IMMUTABLE",
        "--encryption",
        "KMS",
        "--kms-key",
        KMS_KEY,
        "--lifecycle-policy",
        policy_s,
    ];

    // A dry run first: the plan, nothing created.
    let mut dry = args.to_vec();
    dry.push("--dry-run");
    let r = Run::new(&dry, &moto.env()).await;
    r.assert_code(0);
    assert_eq!(
        r.summary(),
        json!({"create": 3, "update": 0, "unchanged": 0, "error": 0, "dry_run": true})
    );
    assert!(repository_names(&moto).await.is_empty(), "{}", r.ctx());

    let first = Run::new(&args, &moto.env()).await;
    first.assert_code(0);
    let created = [
        "mirror/docker/dockerfile",
        "mirror/kedacore/keda",
        "mirror/library/rockylinux",
    ];
    assert_eq!(
        first.actions(),
        created
            .iter()
            .map(|n| (n.to_string(), "create".to_string()))
            .collect::<Vec<_>>()
    );
    let rocky = first.record("mirror/library/rockylinux");
    assert_eq!(rocky["tags_before"], Value::Null);
    assert_eq!(
        rocky["tags_after"],
        json!({"upstream-image": "docker.io/library/rockylinux", "upstream-tags": "8/9.0.20220720"})
    );
    assert_eq!(rocky["lines"], json!([2, 5]));
    assert_eq!(repository_names(&moto).await, created);

    let want_tags = [
        (
            "mirror/docker/dockerfile",
            "docker.io/docker/dockerfile",
            "1.4.3",
        ),
        ("mirror/kedacore/keda", "ghcr.io/kedacore/keda", "2.4.0"),
        (
            "mirror/library/rockylinux",
            "docker.io/library/rockylinux",
            "8/9.0.20220720",
        ),
    ];
    let policy_json: Value = serde_json::from_str(POLICY).unwrap();
    for (name, image, tags) in want_tags {
        let o = observe(&moto, name).await.unwrap();
        assert_eq!(o.mutability, "IMMUTABLE", "{name}: {o:?}");
        assert!(o.scan_on_push, "{name}: {o:?}");
        assert_eq!(o.encryption, "KMS", "{name}: {o:?}");
        assert_eq!(o.kms_key.as_deref(), Some(KMS_KEY), "{name}: {o:?}");
        assert_eq!(o.lifecycle_policy.as_ref(), Some(&policy_json), "{name}");
        assert_eq!(o.tags, marked(image, tags), "{name}");
    }

    // Second run: nothing to do, nothing written.
    let second = Run::new(&args, &moto.env()).await;
    second.assert_code(0);
    assert_eq!(
        second.summary(),
        json!({"create": 0, "update": 0, "unchanged": 3, "error": 0, "dry_run": false})
    );
    for (name, image, tags) in want_tags {
        let r = second.record(name);
        assert_eq!(r["action"], "unchanged");
        assert_eq!(r["tags_before"], r["tags_after"], "{r}");
        assert_eq!(
            observe(&moto, name).await.unwrap().tags,
            marked(image, tags)
        );
    }

    // Someone added a tag by hand; the file gains another one. Both are kept, the existing
    // order first, and the other repositories stay untouched.
    let api = SdkEcr::with_endpoint(&moto.url, REGION).await;
    let rocky_repo = api
        .repository("mirror/library/rockylinux")
        .await
        .unwrap()
        .unwrap();
    api.tag_resource(
        &rocky_repo.arn,
        &pairs(&[("upstream-tags", "8/9.0.20220720/latest"), ("team", "os")]),
    )
    .await
    .unwrap();
    std::fs::write(
        &list,
        format!(
            "{}rockylinux:9.1\n",
            std::fs::read_to_string(&list).unwrap()
        ),
    )
    .unwrap();
    let third = Run::new(&args, &moto.env()).await;
    third.assert_code(0);
    assert_eq!(
        third.actions(),
        vec![
            ("mirror/docker/dockerfile".into(), "unchanged".into()),
            ("mirror/kedacore/keda".into(), "unchanged".into()),
            ("mirror/library/rockylinux".into(), "update".into()),
        ]
    );
    let o = observe(&moto, "mirror/library/rockylinux").await.unwrap();
    let mut want = pairs(&[
        ("team", "os"),
        ("upstream-image", "docker.io/library/rockylinux"),
        ("upstream-tags", "8/9.0.20220720/latest/9.1"),
    ]);
    want.sort();
    assert_eq!(o.tags, want);
}

// ---------------------------------------------------------------------------------------------
// 2. images.yaml: dest naming, bad entries with line numbers, conflicts, --force
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn yaml_import_names_by_dest_and_reports_bad_entries_with_lines() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let yaml = write(
        dir.path(),
        "images.yaml",
        "\
images:
  - chart: grafana
    source: docker.io/grafana/grafana:11.4.0
    dest: grafana/grafana:11.4.0
  - chart: grafana
    source: docker.io/grafana/grafana:11.3.1
    dest: grafana/grafana
  - chart: keda
    source: ghcr.io/kedacore/keda:2.4.0
  - chart: broken
    source: nginx
  - chart: pinned
    source: nginx@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa
  - chart: mismatch
    source: redis:7.2
    dest: cache/redis:7.4
  - chart: clash
    source: quay.io/other/grafana:1.0
    dest: apps/shared
  - chart: clash
    source: ghcr.io/another/grafana:2.0
    dest: apps/shared
",
    );
    let yaml_s = yaml.to_str().unwrap();
    let r = Run::new(&["import", yaml_s, "--output", "json"], &moto.env()).await;
    r.assert_code(1);
    assert_eq!(
        r.actions(),
        vec![
            ("apps/shared".into(), "error".into()),
            ("grafana/grafana".into(), "create".into()),
            ("mirror/kedacore/keda".into(), "create".into()),
        ]
    );
    let errors = r.entry_errors();
    let want: &[(u64, u64, &[&str])] = &[
        (10, 4, &["entry 4 (line 10)", "\"nginx\"", "no tag"]),
        (
            12,
            5,
            &["entry 5 (line 12)", "digest only", "ECR tags need a tag"],
        ),
        (14, 6, &["entry 6 (line 14)", "7.4", "7.2", "equal"]),
    ];
    assert_eq!(errors.len(), want.len(), "{errors:#?}\n{}", r.ctx());
    for ((line, entry, msg), (wl, we, needles)) in errors.iter().zip(want) {
        assert_eq!((*line, *entry), (Some(*wl), Some(*we)), "{msg}");
        for n in *needles {
            assert!(msg.contains(n), "{msg:?} lacks {n:?}");
        }
    }
    let clash = r.record("apps/shared");
    let msg = clash["error"].as_str().unwrap();
    for n in [
        "quay.io/other/grafana",
        "ghcr.io/another/grafana",
        "line 17",
        "line 20",
    ] {
        assert!(msg.contains(n), "{msg:?} lacks {n:?}");
    }
    assert_eq!(
        r.summary(),
        json!({"create": 2, "update": 0, "unchanged": 0, "error": 4, "dry_run": false})
    );
    assert_eq!(
        repository_names(&moto).await,
        ["grafana/grafana", "mirror/kedacore/keda"],
        "nothing is created for a conflict"
    );
    let o = observe(&moto, "grafana/grafana").await.unwrap();
    assert_eq!(o.tags, marked("docker.io/grafana/grafana", "11.3.1/11.4.0"));
    // Defaults: mutable, no scan, AES256, no policy.
    assert_eq!(
        (o.mutability.as_str(), o.scan_on_push, o.encryption.as_str()),
        ("MUTABLE", false, "AES256")
    );
    assert_eq!(o.lifecycle_policy, None);

    // The same bad entries in text mode name their lines too.
    let t = Run::new(&["import", yaml_s], &moto.env()).await;
    t.assert_code(1);
    let out = t.stdout();
    for n in [
        "entry 4 (line 10)",
        "entry 5 (line 12)",
        "entry 6 (line 14)",
        "grafana/grafana",
        "unchanged",
    ] {
        assert!(out.contains(n), "text output lacks {n:?}\n{}", t.ctx());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_different_upstream_image_is_an_error_unless_forced() {
    let moto = Moto::start();
    let api = SdkEcr::with_endpoint(&moto.url, REGION).await;
    api.create_repository(
        "mirror/library/nginx",
        &RepoSettings::default(),
        &pairs(&[
            ("upstream-image", "ghcr.io/someone/nginx"),
            ("upstream-tags", "1"),
        ]),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let list = write(dir.path(), "l.list", "nginx:1.27\nredis:7\n");
    let list_s = list.to_str().unwrap();

    let r = Run::new(&["import", list_s, "--output", "json"], &moto.env()).await;
    r.assert_code(1);
    let nginx = r.record("mirror/library/nginx");
    assert_eq!(nginx["action"], "error");
    let msg = nginx["error"].as_str().unwrap();
    assert!(
        msg.contains("ghcr.io/someone/nginx") && msg.contains("--force"),
        "{msg}"
    );
    assert_eq!(r.record("mirror/library/redis")["action"], "create");
    assert_eq!(
        observe(&moto, "mirror/library/nginx").await.unwrap().tags,
        marked("ghcr.io/someone/nginx", "1"),
        "not overwritten"
    );

    let f = Run::new(
        &["import", list_s, "--output", "json", "--force"],
        &moto.env(),
    )
    .await;
    f.assert_code(0);
    assert_eq!(f.record("mirror/library/nginx")["action"], "update");
    assert_eq!(
        observe(&moto, "mirror/library/nginx").await.unwrap().tags,
        marked("docker.io/library/nginx", "1/1.27")
    );
}

// ---------------------------------------------------------------------------------------------
// 3. Naming: scoped and unscoped, prefixes
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn scoped_and_unscoped_naming() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let list = write(
        dir.path(),
        "l.list",
        "rockylinux:9.0.20220720\n127.0.0.1:5000/team/app:1.0\nghcr.io/kedacore/keda:2.4.0\n",
    );
    let list_s = list.to_str().unwrap();
    // (extra flags, expected repositories in order of the lines)
    let cases: &[(&[&str], [&str; 3])] = &[
        (
            &["--scoped"],
            [
                "mirror/docker.io/library/rockylinux",
                "mirror/127.0.0.1-5000/team/app",
                "mirror/ghcr.io/kedacore/keda",
            ],
        ),
        (
            &["--scoped", "--prefix", ""],
            [
                "docker.io/library/rockylinux",
                "127.0.0.1-5000/team/app",
                "ghcr.io/kedacore/keda",
            ],
        ),
        (
            &[],
            [
                "mirror/library/rockylinux",
                "mirror/team/app",
                "mirror/kedacore/keda",
            ],
        ),
        (
            &["--prefix", "org/cache"],
            [
                "org/cache/library/rockylinux",
                "org/cache/team/app",
                "org/cache/kedacore/keda",
            ],
        ),
    ];
    for (extra, want) in cases {
        moto.reset();
        let mut args = vec!["import", list_s, "--output", "json"];
        args.extend_from_slice(extra);
        let r = Run::new(&args, &moto.env()).await;
        r.assert_code(0);
        let mut want_sorted = want.to_vec();
        want_sorted.sort();
        assert_eq!(repository_names(&moto).await, want_sorted, "{extra:?}");
        let upstreams = [
            "docker.io/library/rockylinux",
            "127.0.0.1:5000/team/app",
            "ghcr.io/kedacore/keda",
        ];
        for (name, upstream) in want.iter().zip(upstreams) {
            let o = observe(&moto, name).await.unwrap();
            assert_eq!(
                o.tags
                    .iter()
                    .find(|(k, _)| k == "upstream-image")
                    .unwrap()
                    .1,
                upstream,
                "{extra:?} {name}"
            );
        }
    }
    // A bad prefix is a usage error.
    let r = Run::new(&["import", list_s, "--prefix", "/x/"], &moto.env()).await;
    r.assert_code(2);
}

#[tokio::test(flavor = "multi_thread")]
async fn unreadable_or_empty_files_exit_2() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.list");
    let r = Run::new(&["import", missing.to_str().unwrap()], &moto.env()).await;
    r.assert_code(2);
    assert!(String::from_utf8_lossy(&r.out.stderr).contains("cannot read"));

    let bad = write(dir.path(), "bad.list", "# nothing valid\nnginx\nUpper:1\n");
    let r = Run::new(
        &["import", bad.to_str().unwrap(), "--output", "json"],
        &moto.env(),
    )
    .await;
    r.assert_code(2);
    let lines: Vec<Option<u64>> = r.entry_errors().iter().map(|e| e.0).collect();
    assert_eq!(lines, [Some(2), Some(3)], "{}", r.ctx());
    let err = r.records("error");
    assert!(
        err[0]["message"]
            .as_str()
            .unwrap()
            .contains("no valid image reference"),
        "{}",
        r.ctx()
    );

    let yaml = write(
        dir.path(),
        "bad.yaml",
        "images:\n  - source: a:1\n   x: [\n",
    );
    let r = Run::new(&["import", yaml.to_str().unwrap()], &moto.env()).await;
    r.assert_code(2);
    let stderr = String::from_utf8_lossy(&r.out.stderr);
    assert!(
        stderr.contains("not valid YAML") && stderr.contains("line"),
        "{stderr}"
    );

    let policy = write(dir.path(), "policy.json", "{not json");
    let ok = write(dir.path(), "ok.list", "nginx:1\n");
    let r = Run::new(
        &[
            "import",
            ok.to_str().unwrap(),
            "--lifecycle-policy",
            policy.to_str().unwrap(),
        ],
        &moto.env(),
    )
    .await;
    r.assert_code(2);
    assert!(String::from_utf8_lossy(&r.out.stderr).contains("policy.json"));
    let r = Run::new(
        &["import", ok.to_str().unwrap(), "--kms-key", KMS_KEY],
        &moto.env(),
    )
    .await;
    r.assert_code(2);
    assert!(String::from_utf8_lossy(&r.out.stderr).contains("--encryption KMS"));
    assert!(repository_names(&moto).await.is_empty());
}

// ---------------------------------------------------------------------------------------------
// 4. import, then sync mirrors everything
// ---------------------------------------------------------------------------------------------

/// moto's AWS env plus the "ECR" registry's endpoint, plain HTTP both ways.
fn data_plane_env(moto: &Moto, ecr: &Registry) -> Vec<(String, String)> {
    let mut env = moto.env();
    for (k, v) in [
        ("ECR_MIRROR_SYNC_REGISTRY_ENDPOINT", ecr.url()),
        ("ECR_MIRROR_SYNC_DEST_TLS_VERIFY", "false".to_string()),
        ("ECR_MIRROR_SYNC_SRC_TLS_VERIFY", "false".to_string()),
    ] {
        env.push((k.to_string(), v));
    }
    env
}

#[tokio::test(flavor = "multi_thread")]
async fn import_then_sync_mirrors_everything() {
    let moto = Moto::start();
    let up = Registry::start();
    let ecr = Registry::start_htpasswd(MOTO_ECR_USER, MOTO_ECR_PASSWORD);
    let images = [
        (
            "library/app",
            "1.0",
            random_image(7001, &[1500], "linux/amd64", Format::Oci),
        ),
        (
            "library/app",
            "2.0",
            random_image(7002, &[900], "linux/amd64", Format::Oci),
        ),
        (
            "team/tool",
            "v1",
            random_image(7003, &[700], "linux/arm64", Format::DockerV2),
        ),
        (
            "team/other",
            "v3",
            random_image(7004, &[600], "linux/amd64", Format::Oci),
        ),
    ];
    for (repo, tag, img) in &images {
        push_image(&up.url(), repo, tag, img, None, None).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let h = &up.host;
    let yaml = write(
        dir.path(),
        "images.yaml",
        &format!(
            "images:\n\
             - {{chart: app, source: '{h}/library/app:1.0'}}\n\
             - {{chart: app, source: '{h}/library/app:2.0'}}\n\
             - {{chart: tool, source: '{h}/team/tool:v1', dest: 'tools/tool:v1'}}\n"
        ),
    );
    let list = write(
        dir.path(),
        "source-images.list",
        &format!("{h}/team/other:v3\n"),
    );
    let env = data_plane_env(&moto, &ecr);
    Run::new(&["import", yaml.to_str().unwrap()], &env)
        .await
        .assert_code(0);
    Run::new(&["import", list.to_str().unwrap(), "--scoped"], &env)
        .await
        .assert_code(0);
    let scoped = format!("mirror/{}/team/other", h.replace(':', "-"));
    let mut want_repos = vec![
        "mirror/library/app".to_string(),
        "tools/tool".to_string(),
        scoped.clone(),
    ];
    want_repos.sort();
    assert_eq!(repository_names(&moto).await, want_repos);

    let sync = Run::new(&["sync", "--insecure-policy", "--output", "json"], &env).await;
    sync.assert_code(0);
    let s = sync.summary();
    assert_eq!(
        (s["copied"].as_u64(), s["failed"].as_u64()),
        (Some(4), Some(0)),
        "{}",
        sync.ctx()
    );
    let dests = [
        ("mirror/library/app", "1.0", &images[0].2),
        ("mirror/library/app", "2.0", &images[1].2),
        ("tools/tool", "v1", &images[2].2),
        (scoped.as_str(), "v3", &images[3].2),
    ];
    for (repo, tag, img) in dests {
        assert_eq!(
            head_manifest(&ecr.url(), repo, tag, ecr.auth(), None).await,
            Some(img.digest.clone()),
            "{repo}:{tag}\n{}",
            sync.ctx()
        );
    }
    // And a second sync has nothing to copy.
    let again = Run::new(&["sync", "--insecure-policy", "--output", "json"], &env).await;
    again.assert_code(0);
    assert_eq!(
        again.summary()["skipped"].as_u64(),
        Some(4),
        "{}",
        again.ctx()
    );
    assert_eq!(again.summary()["copied"].as_u64(), Some(0));
}

// ---------------------------------------------------------------------------------------------
// 5. copy --create-missing
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn copy_create_missing_creates_the_repository_with_the_settings() {
    let moto = Moto::start();
    let up = Registry::start();
    let ecr = Registry::start_htpasswd(MOTO_ECR_USER, MOTO_ECR_PASSWORD);
    let img = random_image(7101, &[1200], "linux/amd64", Format::Oci);
    push_image(&up.url(), "lib/app", "v1", &img, None, None).await;
    let dir = tempfile::tempdir().unwrap();
    let policy = write(dir.path(), "lifecycle.json", POLICY);
    let env = data_plane_env(&moto, &ecr);
    let src = format!("{}/lib/app:v1", up.host);
    let dest = format!("{}/made/app", ecr_host());
    let args = [
        "copy",
        "--src",
        &src,
        "--dest",
        &dest,
        "--insecure-policy",
        "--output",
        "json",
        "--create-missing",
        "--scan-on-push",
        "--image-tag-mutability",
        "IMMUTABLE",
        "--encryption",
        "AES256",
        "--lifecycle-policy",
        policy.to_str().unwrap(),
    ];
    let r = Run::new(&args, &env).await;
    r.assert_code(0);
    assert_eq!(
        head_manifest(&ecr.url(), "made/app", "v1", ecr.auth(), None).await,
        Some(img.digest.clone())
    );
    let o = observe(&moto, "made/app").await.expect("created");
    assert_eq!(o.mutability, "IMMUTABLE", "{o:?}");
    assert!(o.scan_on_push, "{o:?}");
    assert_eq!(o.encryption, "AES256");
    assert_eq!(
        o.lifecycle_policy,
        Some(serde_json::from_str::<Value>(POLICY).unwrap())
    );
    assert!(
        o.tags.is_empty(),
        "a copy does not mark the repository: {o:?}"
    );

    // Again: the repository exists, the image is in sync; nothing fails.
    let again = Run::new(&args, &env).await;
    again.assert_code(0);
    assert_eq!(again.records("copy")[0]["report"]["unchanged"], true);
    assert_eq!(repository_names(&moto).await, ["made/app"]);

    // --create-missing needs an ECR destination, and valid settings.
    let plain_dest = format!("{}/x/app", up.host);
    let r = Run::new(
        &[
            "copy",
            "--src",
            &src,
            "--dest",
            &plain_dest,
            "--insecure-policy",
            "--create-missing",
        ],
        &env,
    )
    .await;
    r.assert_code(2);
    assert!(String::from_utf8_lossy(&r.out.stderr).contains("not an ECR registry"));
    let other = format!("{}/made/other", ecr_host());
    let r = Run::new(
        &[
            "copy",
            "--src",
            &src,
            "--dest",
            &other,
            "--insecure-policy",
            "--create-missing",
            "--kms-key",
            KMS_KEY,
        ],
        &env,
    )
    .await;
    r.assert_code(2);
    assert_eq!(repository_names(&moto).await, ["made/app"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn copy_into_a_missing_ecr_repository_names_create_missing() {
    let moto = Moto::start();
    let up = Registry::start();
    let ecr = Registry::start_htpasswd(MOTO_ECR_USER, MOTO_ECR_PASSWORD);
    let img = random_image(7201, &[800], "linux/amd64", Format::Oci);
    push_image(&up.url(), "lib/app", "v1", &img, None, None).await;
    // docker-registry accepts any repository name; ECR answers 404 NAME_UNKNOWN for a
    // repository that does not exist. The proxy plays that part for upload starts.
    let proxy = FaultProxy::start(
        &ecr.url(),
        vec![Rule::new(
            "/blobs/uploads",
            Fault::Status {
                code: 404,
                retry_after: None,
            },
            Schedule::Always,
        )
        .method("POST")],
    )
    .await;
    let mut env = data_plane_env(&moto, &ecr);
    for (k, v) in env.iter_mut() {
        if k == "ECR_MIRROR_SYNC_REGISTRY_ENDPOINT" {
            *v = proxy.url();
        }
    }
    let src = format!("{}/lib/app:v1", up.host);
    let dest = format!("{}/missing/app", ecr_host());
    let r = Run::new(
        &[
            "copy",
            "--src",
            &src,
            "--dest",
            &dest,
            "--insecure-policy",
            "--output",
            "json",
        ],
        &env,
    )
    .await;
    r.assert_code(1);
    let msg = r.records("error")[0]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        msg.contains(
            "repository \"missing/app\" does not exist in ECR; create it or pass --create-missing"
        ),
        "{msg}\n{}",
        r.ctx()
    );
    assert!(repository_names(&moto).await.is_empty());
}

// ---------------------------------------------------------------------------------------------
// 6. Tag rules: `rule:` in images.yaml, rule words in source-images.list
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn import_writes_tag_rules_and_sync_follows_them() {
    let moto = Moto::start();
    let up = Registry::start();
    let ecr = Registry::start_htpasswd(MOTO_ECR_USER, MOTO_ECR_PASSWORD);
    let img = random_image(7101, &[800], "linux/amd64", Format::Oci);
    for tag in ["1.0.0", "1.1.0", "1.2.0", "2.0.0", "latest"] {
        push_image(&up.url(), "library/app", tag, &img, None, None).await;
    }
    push_image(&up.url(), "team/tool", "0.9.1", &img, None, None).await;
    let dir = tempfile::tempdir().unwrap();
    let h = &up.host;
    // A rule alone (no tag in the source), and a rule next to an explicit tag; a bad rule is
    // an error for its entry only.
    let yaml = write(
        dir.path(),
        "images.yaml",
        &format!(
            "images:\n\
             - {{source: '{h}/library/app', rule: 'newest=2  semver=v1.x'}}\n\
             - {{source: '{h}/library/app:latest', dest: 'apps/app-latest', rule: 'newest=1'}}\n\
             - {{source: '{h}/library/bad', rule: 'newst=2'}}\n"
        ),
    );
    let env = data_plane_env(&moto, &ecr);
    let run = Run::new(
        &["import", yaml.to_str().unwrap(), "--output", "json"],
        &env,
    )
    .await;
    run.assert_code(1);
    let errors = run.entry_errors();
    assert_eq!(errors.len(), 1, "{}", run.ctx());
    assert!(
        errors[0].2.contains("upstream-tag-rule word \"newst=2\""),
        "{errors:?}"
    );
    let app = observe(&moto, "mirror/library/app").await.expect("created");
    let mut want = pairs(&[
        ("upstream-image", &format!("{h}/library/app")),
        ("upstream-tag-rule", "semver=1.x newest=2"),
    ]);
    want.sort();
    assert_eq!(app.tags, want, "canonical form, no upstream-tags key");
    let latest = observe(&moto, "apps/app-latest").await.expect("created");
    let mut want = pairs(&[
        ("upstream-image", &format!("{h}/library/app")),
        ("upstream-tags", "latest"),
        ("upstream-tag-rule", "newest=1"),
    ]);
    want.sort();
    assert_eq!(latest.tags, want);

    // The same rule again, in another spelling: nothing changes. Another rule: an error,
    // unless --force.
    let list = write(
        dir.path(),
        "source-images.list",
        &format!("{h}/library/app semver=1.x newest=2\n"),
    );
    let again = Run::new(
        &["import", list.to_str().unwrap(), "--output", "json"],
        &env,
    )
    .await;
    again.assert_code(0);
    assert_eq!(again.record("mirror/library/app")["action"], "unchanged");
    let other = write(
        dir.path(),
        "other.list",
        &format!("{h}/library/app newest=3\n{h}/team/tool:0.9.1 min=0.9.0\n"),
    );
    let run = Run::new(
        &["import", other.to_str().unwrap(), "--output", "json"],
        &env,
    )
    .await;
    run.assert_code(1);
    let r = run.record("mirror/library/app");
    assert_eq!(r["action"], "error", "{}", run.ctx());
    assert!(r["error"].as_str().unwrap().contains("--force"), "{r}");
    assert_eq!(run.record("mirror/team/tool")["action"], "create");
    let tool = observe(&moto, "mirror/team/tool").await.expect("created");
    assert!(
        tool.tags
            .contains(&("upstream-tag-rule".to_string(), "min=0.9.0".to_string())),
        "{:?}",
        tool.tags
    );
    let forced = Run::new(
        &[
            "import",
            other.to_str().unwrap(),
            "--force",
            "--output",
            "json",
        ],
        &env,
    )
    .await;
    forced.assert_code(0);
    assert_eq!(forced.record("mirror/library/app")["action"], "update");

    // sync mirrors what the rules select (the forced newest=3: 2.0.0, 1.2.0, 1.1.0).
    let sync = Run::new(&["sync", "--insecure-policy", "--output", "json"], &env).await;
    sync.assert_code(0);
    for (repo, tag) in [
        ("mirror/library/app", "2.0.0"),
        ("mirror/library/app", "1.2.0"),
        ("mirror/library/app", "1.1.0"),
        ("apps/app-latest", "latest"),
        ("apps/app-latest", "2.0.0"),
        ("mirror/team/tool", "0.9.1"),
    ] {
        assert_eq!(
            head_manifest(&ecr.url(), repo, tag, ecr.auth(), None).await,
            Some(img.digest.clone()),
            "{repo}:{tag}\n{}",
            sync.ctx()
        );
    }
    assert_eq!(
        head_manifest(&ecr.url(), "mirror/library/app", "1.0.0", ecr.auth(), None).await,
        None
    );
    assert_eq!(sync.summary()["copied"].as_u64(), Some(6), "{}", sync.ctx());
}
