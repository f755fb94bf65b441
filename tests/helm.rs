//! The Helm chart (`charts/ecr-mirror-sync`), linted and rendered by the real `helm` binary, and the rendered
//! manifests checked field by field as k8s-openapi types.
//!
//! `helm` comes from `.tools/bin/helm` (installed by `make deps`, i.e. `.ci/install-helm.sh`) or `$HELM_BIN`. It
//! runs offline, with its cache, config and data directories in a temporary directory so nothing leaks into `$HOME`.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::path::PathBuf;
use std::process::{Command, Output};

use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::{ConfigMap, Container, EnvVar, PodSpec, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

const RELEASE: &str = "ecr-mirror-sync";
const NAMESPACE: &str = "mirror";
const POLICY_PATH: &str = "/etc/containers/policy.json";
const SRC_AUTHFILE: &str = "/etc/ecr-mirror-sync/source-auth/config.json";
const ROLE_ARN: &str = "arn:aws:iam::123456789012:role/ecr-mirror-sync";

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn chart_dir() -> PathBuf {
    manifest_dir().join("charts/ecr-mirror-sync")
}

/// The real helm, with its state in a temporary directory.
struct Helm {
    bin: PathBuf,
    home: tempfile::TempDir,
}

impl Helm {
    fn new() -> Self {
        let bin = std::env::var_os("HELM_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| manifest_dir().join(".tools/bin/helm"));
        assert!(
            bin.is_file(),
            "helm not found at {}: run `make deps` (it runs .ci/install-helm.sh), or set HELM_BIN",
            bin.display()
        );
        Self {
            bin,
            home: tempfile::tempdir().expect("a temporary directory"),
        }
    }

    fn run<S: AsRef<OsStr>>(&self, args: &[S]) -> Output {
        let home = self.home.path();
        Command::new(&self.bin)
            .args(args)
            .env("HELM_CACHE_HOME", home.join("cache"))
            .env("HELM_CONFIG_HOME", home.join("config"))
            .env("HELM_DATA_HOME", home.join("data"))
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", self.bin.display()))
    }

    /// `helm template` of the chart with `args` added; it must succeed.
    fn template(&self, args: &[&str]) -> Rendered {
        let out = self.run(&self.template_args(args));
        assert!(
            out.status.success(),
            "helm template {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Rendered::parse(&String::from_utf8(out.stdout).expect("UTF-8 manifests"))
    }

    /// `helm template` of the chart with `args` added; it must fail. Returns stderr.
    fn template_fails(&self, args: &[&str]) -> String {
        let out = self.run(&self.template_args(args));
        assert!(
            !out.status.success(),
            "helm template {args:?} should have failed"
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    fn template_args(&self, args: &[&str]) -> Vec<OsString> {
        let mut all: Vec<OsString> = vec![
            "template".into(),
            RELEASE.into(),
            chart_dir().into(),
            "--namespace".into(),
            NAMESPACE.into(),
        ];
        all.extend(args.iter().map(OsString::from));
        all
    }

    /// A values file in the temporary directory.
    fn values_file(&self, name: &str, yaml: &str) -> String {
        let path = self.home.path().join(name);
        std::fs::write(&path, yaml).unwrap();
        path.to_string_lossy().into_owned()
    }
}

/// The documents `helm template` printed, by kind.
struct Rendered {
    docs: Vec<Value>,
}

impl Rendered {
    fn parse(stream: &str) -> Self {
        let mut docs = Vec::new();
        for document in serde_yaml_ng::Deserializer::from_str(stream) {
            let value = Value::deserialize(document).expect("helm printed valid YAML");
            if !value.is_null() {
                docs.push(value);
            }
        }
        Self { docs }
    }

    fn kinds(&self) -> Vec<String> {
        let mut kinds: Vec<String> = self
            .docs
            .iter()
            .map(|d| d["kind"].as_str().unwrap().to_owned())
            .collect();
        kinds.sort();
        kinds
    }

    fn raw(&self, kind: &str) -> &Value {
        let found: Vec<&Value> = self.docs.iter().filter(|d| d["kind"] == kind).collect();
        assert_eq!(found.len(), 1, "expected one {kind}, got {}", found.len());
        found[0]
    }

    /// The only document of `kind`, as its k8s-openapi type (which also checks apiVersion and kind).
    fn one<T: DeserializeOwned>(&self, kind: &str) -> T {
        serde_json::from_value(self.raw(kind).clone())
            .unwrap_or_else(|e| panic!("{kind} does not parse: {e}"))
    }

    fn has(&self, kind: &str) -> bool {
        self.docs.iter().any(|d| d["kind"] == kind)
    }

    fn cronjob(&self) -> CronJob {
        assert_eq!(self.raw("CronJob")["apiVersion"], "batch/v1");
        self.one("CronJob")
    }
}

fn pod_spec(cronjob: &CronJob) -> PodSpec {
    cronjob
        .spec
        .clone()
        .unwrap()
        .job_template
        .spec
        .unwrap()
        .template
        .spec
        .unwrap()
}

fn container(cronjob: &CronJob) -> Container {
    let pod = pod_spec(cronjob);
    assert_eq!(pod.containers.len(), 1);
    pod.containers[0].clone()
}

fn env(container: &Container) -> BTreeMap<String, EnvVar> {
    container
        .env
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|e| (e.name.clone(), e))
        .collect()
}

fn env_value(container: &Container, name: &str) -> Option<String> {
    env(container).get(name).and_then(|e| e.value.clone())
}

fn args(container: &Container) -> Vec<String> {
    container.args.clone().unwrap_or_default()
}

#[test]
fn lint_strict() {
    let helm = Helm::new();
    let out = helm.run(&[
        OsStr::new("lint"),
        OsStr::new("--strict"),
        chart_dir().as_os_str(),
    ]);
    assert!(
        out.status.success(),
        "helm lint --strict failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn defaults() {
    let r = Helm::new().template(&[]);
    assert_eq!(
        r.kinds(),
        [
            "ConfigMap",
            "CronJob",
            "Role",
            "RoleBinding",
            "ServiceAccount"
        ]
    );

    let cj = r.cronjob();
    assert_eq!(cj.metadata.name.as_deref(), Some("ecr-mirror-sync"));
    assert_eq!(cj.metadata.namespace.as_deref(), Some(NAMESPACE));
    let spec = cj.spec.clone().unwrap();
    assert_eq!(spec.schedule, "0 2 * * *");
    assert_eq!(spec.time_zone, None);
    assert_eq!(spec.concurrency_policy.as_deref(), Some("Forbid"));
    assert_eq!(spec.starting_deadline_seconds, Some(3600));
    assert_eq!(spec.successful_jobs_history_limit, Some(3));
    assert_eq!(spec.failed_jobs_history_limit, Some(3));
    assert_eq!(spec.suspend, Some(false));

    let job = spec.job_template.spec.unwrap();
    assert_eq!(job.backoff_limit, Some(1));
    assert_eq!(job.active_deadline_seconds, Some(10800));
    assert_eq!(job.completion_mode, None, "one shard: not an Indexed Job");
    assert_eq!((job.completions, job.parallelism), (Some(1), Some(1)));
    // Exit code 2 (usage/config error) fails the Job at once.
    let rules = job.pod_failure_policy.unwrap().rules;
    let fail = rules
        .iter()
        .find(|r| r.action == "FailJob")
        .expect("a FailJob rule");
    let codes = fail.on_exit_codes.as_ref().unwrap();
    assert_eq!(
        (
            codes.container_name.as_deref(),
            codes.operator.as_str(),
            codes.values.as_slice()
        ),
        (Some("ecr-mirror-sync"), "In", &[2][..])
    );

    let pod = pod_spec(&cj);
    assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
    assert_eq!(pod.service_account_name.as_deref(), Some("ecr-mirror-sync"));
    assert_eq!(pod.automount_service_account_token, Some(true));

    // The restricted pod.
    let psc = pod.security_context.clone().unwrap();
    assert_eq!(psc.run_as_non_root, Some(true));
    assert_eq!(psc.run_as_user, Some(65532));
    assert_eq!(psc.seccomp_profile.unwrap().type_, "RuntimeDefault");
    let c = container(&cj);
    let sc = c.security_context.clone().unwrap();
    assert_eq!(sc.run_as_non_root, Some(true));
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(sc.capabilities.unwrap().drop, Some(vec!["ALL".to_owned()]));
    assert_eq!(sc.seccomp_profile.unwrap().type_, "RuntimeDefault");
    let resources = c.resources.clone().unwrap();
    assert!(resources.requests.unwrap().contains_key("memory"));
    assert!(resources.limits.unwrap().contains_key("memory"));

    // /tmp is an emptyDir; the policy ConfigMap is mounted at the default policy path.
    let volumes = pod.volumes.clone().unwrap();
    let mounts = c.volume_mounts.clone().unwrap();
    let tmp = mounts
        .iter()
        .find(|m| m.mount_path == "/tmp")
        .expect("/tmp mount");
    assert!(volumes
        .iter()
        .find(|v| v.name == tmp.name)
        .unwrap()
        .empty_dir
        .is_some());
    let policy_mount = mounts
        .iter()
        .find(|m| m.mount_path == POLICY_PATH)
        .expect("policy mount");
    assert_eq!(policy_mount.sub_path.as_deref(), Some("policy.json"));
    assert_eq!(policy_mount.read_only, Some(true));
    let policy_volume = volumes
        .iter()
        .find(|v| v.name == policy_mount.name)
        .unwrap();
    let cm: ConfigMap = r.one("ConfigMap");
    assert_eq!(
        policy_volume.config_map.as_ref().unwrap().name,
        cm.metadata.name.clone().unwrap()
    );
    let policy: Value =
        serde_json::from_str(&cm.data.unwrap()["policy.json"]).expect("policy.json is JSON");
    assert_eq!(
        policy,
        json!({"default": [{"type": "insecureAcceptAnything"}]})
    );

    // Args and env.
    assert_eq!(
        args(&c),
        ["sync".to_owned(), format!("--policy={POLICY_PATH}")]
    );
    assert_eq!(
        env_value(&c, "ECR_MIRROR_SYNC_LOG_FORMAT").as_deref(),
        Some("json")
    );
    assert_eq!(
        env_value(&c, "ECR_MIRROR_SYNC_IMAGE_KEY").as_deref(),
        Some("upstream-image")
    );
    assert_eq!(
        env_value(&c, "ECR_MIRROR_SYNC_TAG_KEY").as_deref(),
        Some("upstream-tags")
    );
    assert_eq!(
        env_value(&c, "ECR_MIRROR_SYNC_PARALLEL").as_deref(),
        Some("16")
    );
    assert_eq!(
        env_value(&c, "ECR_MIRROR_SYNC_RETRY_TIMES").as_deref(),
        Some("5")
    );
    for absent in [
        "ECR_MIRROR_SYNC_DRY_RUN",
        "ECR_MIRROR_SYNC_SHARD_COUNT",
        "AWS_REGION",
        "ECR_MIRROR_SYNC_PREFIX",
    ] {
        assert!(!env(&c).contains_key(absent), "{absent} set by default");
    }

    // The downward API.
    let vars = env(&c);
    for (name, field) in [
        ("POD_NAME", "metadata.name"),
        ("POD_NAMESPACE", "metadata.namespace"),
        ("POD_UID", "metadata.uid"),
    ] {
        let var = vars.get(name).unwrap_or_else(|| panic!("{name} missing"));
        let field_ref = var
            .value_from
            .as_ref()
            .and_then(|v| v.field_ref.as_ref())
            .unwrap_or_else(|| panic!("{name}: no fieldRef"));
        assert_eq!(field_ref.field_path, field, "{name}");
    }

    // No IRSA annotation without a role.
    let sa: ServiceAccount = r.one("ServiceAccount");
    assert_eq!(sa.metadata.name.as_deref(), Some("ecr-mirror-sync"));
    assert!(sa.metadata.annotations.unwrap_or_default().is_empty());

    // RBAC: create and patch on events, nothing else, bound to the ServiceAccount.
    let role: Role = r.one("Role");
    let rules = role.rules.unwrap();
    assert_eq!(rules.len(), 1, "{rules:?}");
    let mut groups = rules[0].api_groups.clone().unwrap();
    groups.sort();
    assert_eq!(groups, ["", "events.k8s.io"]);
    assert_eq!(
        rules[0].resources.as_deref(),
        Some(&["events".to_owned()][..])
    );
    let mut verbs = rules[0].verbs.clone();
    verbs.sort();
    assert_eq!(verbs, ["create", "patch"]);
    assert!(rules[0].resource_names.is_none() && rules[0].non_resource_urls.is_none());
    let binding: RoleBinding = r.one("RoleBinding");
    assert_eq!(binding.role_ref.kind, "Role");
    assert_eq!(Some(&binding.role_ref.name), role.metadata.name.as_ref());
    let subjects = binding.subjects.unwrap();
    assert_eq!(subjects.len(), 1);
    assert_eq!(
        (subjects[0].kind.as_str(), subjects[0].name.as_str()),
        ("ServiceAccount", "ecr-mirror-sync")
    );
    assert_eq!(subjects[0].namespace.as_deref(), Some(NAMESPACE));
}

#[test]
fn irsa_role_arn() {
    let r = Helm::new().template(&["--set", &format!("serviceAccount.roleArn={ROLE_ARN}")]);
    let sa: ServiceAccount = r.one("ServiceAccount");
    assert_eq!(
        sa.metadata.annotations.unwrap()["eks.amazonaws.com/role-arn"],
        ROLE_ARN
    );
    assert_eq!(
        pod_spec(&r.cronjob()).service_account_name,
        sa.metadata.name
    );
}

#[test]
fn existing_source_credentials_secret() {
    let r = Helm::new().template(&["--set", "sourceCredentials.existingSecret=upstream-creds"]);
    let cj = r.cronjob();
    let c = container(&cj);
    assert!(
        args(&c).contains(&format!("--src-authfile={SRC_AUTHFILE}")),
        "{:?}",
        args(&c)
    );
    let mount = c
        .volume_mounts
        .clone()
        .unwrap()
        .into_iter()
        .find(|m| SRC_AUTHFILE.starts_with(&format!("{}/", m.mount_path)))
        .expect("secret mount");
    assert_eq!(mount.read_only, Some(true));
    let volume = pod_spec(&cj)
        .volumes
        .unwrap()
        .into_iter()
        .find(|v| v.name == mount.name)
        .unwrap();
    let secret = volume.secret.expect("a secret volume");
    assert_eq!(secret.secret_name.as_deref(), Some("upstream-creds"));
    assert_eq!(secret.default_mode, Some(0o440));
    let items = secret.items.unwrap();
    assert_eq!(
        (items[0].key.as_str(), items[0].path.as_str()),
        (".dockerconfigjson", "config.json")
    );
    // Never as env: no secretKeyRef, no env value naming the secret.
    for var in c.env.unwrap() {
        assert!(
            var.value_from
                .as_ref()
                .is_none_or(|v| v.secret_key_ref.is_none()),
            "{var:?}"
        );
        assert!(!var.value.unwrap_or_default().contains("upstream-creds"));
    }
    assert!(c.env_from.is_none());
}

#[test]
fn shards_make_an_indexed_job() {
    let r = Helm::new().template(&["--set", "shards=3"]);
    let cj = r.cronjob();
    let job = cj.spec.clone().unwrap().job_template.spec.unwrap();
    assert_eq!(job.completion_mode.as_deref(), Some("Indexed"));
    assert_eq!(job.completions, Some(3));
    assert_eq!(job.parallelism, Some(3));
    assert_eq!(
        env_value(&container(&cj), "ECR_MIRROR_SYNC_SHARD_COUNT").as_deref(),
        Some("3")
    );
}

#[test]
fn custom_policy() {
    let helm = Helm::new();
    let policy = json!({
        "default": [{"type": "reject"}],
        "transports": {"docker": {
            "ghcr.io/kedacore": [{"type": "sigstoreSigned", "keyPath": "/etc/keys/keda.pub",
                                  "signedIdentity": {"type": "matchRepository"}}],
            "docker.io": [{"type": "insecureAcceptAnything"}]
        }}
    });
    let file = helm.values_file("policy.yaml", &format!("policy: {policy}\n"));
    let r = helm.template(&["-f", &file]);
    let cm: ConfigMap = r.one("ConfigMap");
    let rendered: Value = serde_json::from_str(&cm.data.unwrap()["policy.json"]).unwrap();
    assert_eq!(rendered, policy);
    let c = container(&r.cronjob());
    assert!(c
        .volume_mounts
        .unwrap()
        .iter()
        .any(|m| m.mount_path == POLICY_PATH));
}

#[test]
fn insecure_policy_is_explicit() {
    let r = Helm::new().template(&["--set", "insecurePolicy=true"]);
    assert!(!r.has("ConfigMap"));
    let c = container(&r.cronjob());
    assert!(args(&c).contains(&"--insecure-policy".to_owned()));
    assert!(!args(&c).iter().any(|a| a.starts_with("--policy")));
    assert!(!c
        .volume_mounts
        .unwrap()
        .iter()
        .any(|m| m.mount_path == POLICY_PATH));
}

#[test]
fn dry_run() {
    let r = Helm::new().template(&["--set", "dryRun=true"]);
    let c = container(&r.cronjob());
    assert!(
        env_value(&c, "ECR_MIRROR_SYNC_DRY_RUN").as_deref() == Some("true")
            || args(&c).contains(&"--dry-run".to_owned()),
        "{:?} {:?}",
        c.env,
        c.args
    );
}

#[test]
fn mirror_settings_and_pod_placement() {
    let helm = Helm::new();
    let file = helm.values_file(
        "settings.yaml",
        r#"
schedule: "30 1 * * 1-5"
timeZone: Europe/Paris
suspend: true
region: eu-west-1
prefix: mirror
imageKey: src-image
tagKey: src-tags
parallel: 8
retryTimes: 2
logFormat: text
debug: true
platforms: [linux/amd64, linux/arm64/v8]
extraArgs: ["--max-requests=8"]
extraEnv: [{name: RUST_BACKTRACE, value: "1"}]
image: {repository: 123456789012.dkr.ecr.eu-west-1.amazonaws.com/ecr-mirror-sync, tag: "1.2.3"}
imagePullSecrets: [{name: regcred}]
nodeSelector: {kubernetes.io/arch: arm64}
tolerations: [{key: dedicated, operator: Equal, value: batch, effect: NoSchedule}]
affinity: {nodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution: {nodeSelectorTerms: [{matchExpressions: [{key: kubernetes.io/os, operator: In, values: [linux]}]}]}}}
podAnnotations: {example.com/team: platform}
podLabels: {team: platform}
"#,
    );
    let r = helm.template(&["-f", &file]);
    let cj = r.cronjob();
    let spec = cj.spec.clone().unwrap();
    assert_eq!(spec.schedule, "30 1 * * 1-5");
    assert_eq!(spec.time_zone.as_deref(), Some("Europe/Paris"));
    assert_eq!(spec.suspend, Some(true));
    let c = container(&cj);
    assert_eq!(
        c.image.as_deref(),
        Some("123456789012.dkr.ecr.eu-west-1.amazonaws.com/ecr-mirror-sync:1.2.3")
    );
    for (name, want) in [
        ("AWS_REGION", "eu-west-1"),
        ("ECR_MIRROR_SYNC_PREFIX", "mirror"),
        ("ECR_MIRROR_SYNC_IMAGE_KEY", "src-image"),
        ("ECR_MIRROR_SYNC_TAG_KEY", "src-tags"),
        ("ECR_MIRROR_SYNC_PARALLEL", "8"),
        ("ECR_MIRROR_SYNC_RETRY_TIMES", "2"),
        ("ECR_MIRROR_SYNC_LOG_FORMAT", "text"),
        ("ECR_MIRROR_SYNC_DEBUG", "true"),
        ("RUST_BACKTRACE", "1"),
    ] {
        assert_eq!(env_value(&c, name).as_deref(), Some(want), "{name}");
    }
    assert_eq!(
        args(&c),
        [
            "sync",
            "--policy=/etc/containers/policy.json",
            "--platform=linux/amd64",
            "--platform=linux/arm64/v8",
            "--max-requests=8"
        ]
    );
    let pod = pod_spec(&cj);
    assert_eq!(pod.image_pull_secrets.unwrap()[0].name, "regcred");
    assert_eq!(pod.node_selector.unwrap()["kubernetes.io/arch"], "arm64");
    assert_eq!(
        pod.tolerations.unwrap()[0].key.as_deref(),
        Some("dedicated")
    );
    assert!(pod.affinity.unwrap().node_affinity.is_some());
    let meta = cj
        .spec
        .unwrap()
        .job_template
        .spec
        .unwrap()
        .template
        .metadata
        .unwrap();
    assert_eq!(meta.annotations.unwrap()["example.com/team"], "platform");
    let labels = meta.labels.unwrap();
    assert_eq!(labels["team"], "platform");
    assert_eq!(labels["app.kubernetes.io/name"], "ecr-mirror-sync");
}

#[test]
fn events_disabled_means_no_rbac_no_token_no_pod_env() {
    let r = Helm::new().template(&["--set", "events.enabled=false"]);
    assert!(!r.has("Role") && !r.has("RoleBinding"));
    let cj = r.cronjob();
    assert_eq!(pod_spec(&cj).automount_service_account_token, Some(false));
    let vars = env(&container(&cj));
    assert!(
        !vars.contains_key("POD_NAME")
            && !vars.contains_key("POD_NAMESPACE")
            && !vars.contains_key("POD_UID")
    );
}

#[test]
fn schema_rejects_invalid_values() {
    let helm = Helm::new();
    for (args, mentions) in [
        (vec!["--set", "shards=0"], "shards"),
        (vec!["--set", "notAValue=1"], "notAValue"),
        (vec!["--set", "logFormat=xml"], "logFormat"),
        (vec!["--set", "parallel=0"], "parallel"),
        (
            vec!["--set", "concurrencyPolicy=Allow"],
            "concurrencyPolicy",
        ),
        (vec!["--set-string", "insecurePolicy=yes"], "insecurePolicy"),
        (vec!["--set", "serviceAccount.roleArn=my-role"], "roleArn"),
        (vec!["--set", "platforms={linux}"], "platforms"),
        (vec!["--set", "policy.default=null"], "default"),
        (vec!["--set", "serviceAccount.typo=1"], "typo"),
    ] {
        let stderr = helm.template_fails(&args);
        assert!(
            stderr.contains("schema"),
            "{args:?}: not a schema error: {stderr}"
        );
        assert!(
            stderr.contains(mentions),
            "{args:?}: the error does not mention {mentions:?}: {stderr}"
        );
    }
}

/// Runs the real binary with the container's rendered args and literal env, plus
/// `--show-settings`, so a flag or env name the binary does not know fails here, not at 2 AM
/// in the cluster.
fn binary_accepts(c: &Container) -> String {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_ecr-mirror-sync"));
    for (k, _) in std::env::vars() {
        if k.starts_with("ECR_MIRROR_SYNC_") || k.starts_with("AWS_") {
            cmd.env_remove(k);
        }
    }
    for (name, e) in env(c) {
        if let Some(v) = e.value {
            cmd.env(name, v);
        }
    }
    cmd.arg("--show-settings").args(args(c));
    let out = cmd.output().expect("run the binary");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "the binary refused the chart's command line {:?}: {}{}",
        args(c),
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn the_binary_accepts_the_rendered_command_line() {
    let helm = Helm::new();
    let defaults = binary_accepts(&container(&helm.template(&[]).cronjob()));
    assert!(defaults.contains("Sync("), "{defaults}");
    assert!(defaults.contains("log_format: Json"), "{defaults}");
    let dry = binary_accepts(&container(
        &helm.template(&["--set", "dryRun=true"]).cronjob(),
    ));
    assert!(dry.contains("dry_run: true"), "{dry}");
    let many = binary_accepts(&container(
        &helm
            .template(&[
                "--set",
                "shards=3",
                "--set",
                "prefix=mirror",
                "--set",
                "parallel=7",
                "--set",
                "retryTimes=2",
                "--set",
                "platforms={linux/amd64,linux/arm64}",
                "--set",
                "insecurePolicy=true",
            ])
            .cronjob(),
    ));
    for want in [
        "parallel: 7",
        "retry_times: 2",
        "insecure_policy: true",
        "\"mirror\"",
        "linux/arm64",
    ] {
        assert!(many.contains(want), "{want} missing in {many}");
    }
    let metrics = binary_accepts(&container(
        &helm
            .template(&[
                "--set",
                "metrics.pushgateway.url=http://pushgateway.monitoring:9091",
                "--set",
                "metrics.job=team-a",
            ])
            .cronjob(),
    ));
    for want in [
        "\"http://pushgateway.monitoring:9091\"",
        "metrics_job: \"team-a\"",
    ] {
        assert!(metrics.contains(want), "{want} missing in {metrics}");
    }
}

/// `--pushgateway` (and `--metrics-job` when the job is not the binary's default) come from `metrics.*`; nothing
/// of it by default.
#[test]
fn metrics_pushgateway() {
    let helm = Helm::new();
    let defaults = args(&container(&helm.template(&[]).cronjob()));
    assert!(
        !defaults
            .iter()
            .any(|a| a.starts_with("--pushgateway") || a.starts_with("--metrics")),
        "{defaults:?}"
    );
    let url = "http://prometheus-pushgateway.monitoring:9091";
    let pushed = args(&container(
        &helm
            .template(&["--set", &format!("metrics.pushgateway.url={url}")])
            .cronjob(),
    ));
    assert!(
        pushed.contains(&format!("--pushgateway={url}")),
        "{pushed:?}"
    );
    assert!(
        !pushed.iter().any(|a| a.starts_with("--metrics-job")),
        "the default job is the binary's own: {pushed:?}"
    );
    let team = args(&container(
        &helm
            .template(&[
                "--set",
                &format!("metrics.pushgateway.url={url}"),
                "--set",
                "metrics.job=team-a",
            ])
            .cronjob(),
    ));
    assert!(
        team.contains(&"--metrics-job=team-a".to_owned()),
        "{team:?}"
    );
}

/// The PrometheusRule exists only when enabled AND the cluster serves its API; its age and labels are values.
#[test]
fn metrics_prometheus_rule() {
    let helm = Helm::new();
    let api = "monitoring.coreos.com/v1/PrometheusRule";
    assert!(!helm
        .template(&["--api-versions", api])
        .has("PrometheusRule"));
    assert!(
        !helm
            .template(&["--set", "metrics.prometheusRule.enabled=true"])
            .has("PrometheusRule"),
        "no CRD, no rule: an unknown kind would fail the install"
    );
    let r = helm.template(&[
        "--set",
        "metrics.prometheusRule.enabled=true",
        "--set",
        "metrics.prometheusRule.staleAfterHours=2",
        "--set",
        "metrics.prometheusRule.labels.release=kube-prometheus-stack",
        "--set",
        "metrics.prometheusRule.alertLabels.severity=critical",
        "--set",
        "metrics.job=team-a",
        "--api-versions",
        api,
    ]);
    let rule = r.raw("PrometheusRule");
    assert_eq!(rule["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(rule["metadata"]["namespace"], NAMESPACE);
    assert_eq!(
        rule["metadata"]["labels"]["release"],
        "kube-prometheus-stack"
    );
    assert_eq!(
        rule["metadata"]["labels"]["app.kubernetes.io/instance"],
        RELEASE
    );
    let rules: BTreeMap<String, Value> = rule["spec"]["groups"][0]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["alert"].as_str().unwrap().to_owned(), r.clone()))
        .collect();
    assert_eq!(
        rules.keys().collect::<Vec<_>>(),
        [
            "EcrMirrorSyncFailedItems",
            "EcrMirrorSyncNoSuccessRecorded",
            "EcrMirrorSyncStale"
        ]
    );
    let stale = &rules["EcrMirrorSyncStale"];
    let expr = stale["expr"].as_str().unwrap();
    assert!(expr.ends_with("> 7200"), "{expr}");
    assert!(expr.contains(r#"{job="team-a"}"#), "{expr}");
    assert_eq!(rules["EcrMirrorSyncNoSuccessRecorded"]["for"], "2h");
    assert!(rules["EcrMirrorSyncFailedItems"]["expr"]
        .as_str()
        .unwrap()
        .contains(r#"outcome=~"failed|blocked""#));
    for r in rules.values() {
        assert_eq!(r["labels"]["severity"], "critical");
    }
    // The 36 h default.
    let r = helm.template(&[
        "--set",
        "metrics.prometheusRule.enabled=true",
        "--api-versions",
        api,
    ]);
    let expr = r.raw("PrometheusRule")["spec"]["groups"][0]["rules"][0]["expr"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(expr.ends_with("> 129600"), "{expr}");
}

#[test]
fn metrics_schema_rejects_invalid_values() {
    let helm = Helm::new();
    for (args, mentions) in [
        (
            vec![
                "--set",
                "metrics.pushgateway.url=http://user:secret@pg:9091",
            ],
            "url",
        ),
        (vec!["--set", "metrics.pushgateway.url=pg:9091"], "url"),
        (
            vec!["--set", "metrics.prometheusRule.staleAfterHours=0"],
            "staleAfterHours",
        ),
        (vec!["--set", "metrics.job=team a"], "job"),
        (vec!["--set", "metrics.typo=1"], "typo"),
        (
            vec!["--set", "metrics.prometheusRule.alertLabels.bad-key=x"],
            "bad-key",
        ),
    ] {
        let stderr = helm.template_fails(&args);
        assert!(
            stderr.contains("schema"),
            "{args:?}: not a schema error: {stderr}"
        );
        assert!(
            stderr.contains(mentions),
            "{args:?}: the error does not mention {mentions:?}: {stderr}"
        );
    }
}

/// Both podFailurePolicy rules carry what the oldest supported Kubernetes' schema requires
/// (tests/validators.rs checks it with the real schemas).
#[test]
fn pod_failure_policy_fits_kubernetes_1_27() {
    let cj = Helm::new().template(&[]).cronjob();
    let rules = cj
        .spec
        .unwrap()
        .job_template
        .spec
        .unwrap()
        .pod_failure_policy
        .unwrap()
        .rules;
    assert_eq!(rules[0].on_pod_conditions.as_deref(), Some(&[][..]));
    let ignore = rules[1].on_pod_conditions.as_ref().unwrap();
    assert_eq!(
        (ignore[0].type_.as_str(), ignore[0].status.as_str()),
        ("DisruptionTarget", "True")
    );
}

/// The install notes say where metrics go, and warn when the rule was asked for but the cluster cannot have it.
/// (`helm install --dry-run=client` has no `--api-versions`, so offline the cluster never serves the CRD; the rule
/// itself is tested with `helm template --api-versions` above.)
#[test]
fn notes_tell_about_metrics() {
    let helm = Helm::new();
    let args: Vec<OsString> = vec![
        "install".into(),
        RELEASE.into(),
        chart_dir().into(),
        "--dry-run=client".into(),
        "--namespace".into(),
        NAMESPACE.into(),
        "--set".into(),
        "metrics.prometheusRule.enabled=true".into(),
        "--set".into(),
        "metrics.pushgateway.url=http://pg.monitoring:9091".into(),
    ];
    let out = helm.run(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let notes = &stdout[stdout.find("NOTES:").expect("notes")..];
    assert!(
        notes.contains("Metrics: pushed to http://pg.monitoring:9091 as job=\"ecr-mirror-sync\""),
        "{notes}"
    );
    assert!(
        notes.contains("does not serve monitoring.coreos.com/v1"),
        "{notes}"
    );
}
