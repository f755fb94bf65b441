//! Every usage or configuration conflict exits 2 before any network call, in every command
//! (issue 12). Each case points every endpoint the command could reach (the AWS API, the ECR
//! data plane, the source and destination registries, the Pushgateway) at one listener that
//! records connections, and that listener must see none.

use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::support::{describe, run};

/// A loopback listener that counts the connections it accepts (and drops them).
struct Recorder {
    host: String,
    seen: Arc<AtomicUsize>,
}

impl Recorder {
    fn start() -> Recorder {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let host = l.local_addr().unwrap().to_string();
        let seen = Arc::new(AtomicUsize::new(0));
        let counter = seen.clone();
        std::thread::spawn(move || {
            for s in l.incoming() {
                if s.is_ok() {
                    counter.fetch_add(1, Ordering::SeqCst);
                }
            }
        });
        Recorder { host, seen }
    }

    fn connections(&self) -> usize {
        // Let a connection that raced the exit be counted.
        std::thread::sleep(Duration::from_millis(50));
        self.seen.load(Ordering::SeqCst)
    }
}

#[test]
fn conflicts_exit_2_before_any_network_call_in_every_command() {
    let rec = Recorder::start();
    let h = rec.host.clone();
    let url = format!("http://{h}");
    let dir = tempfile::tempdir().unwrap();
    let bad_auth = dir.path().join("auth.json");
    std::fs::write(&bad_auth, "{not json").unwrap();
    let bad_auth = bad_auth.to_str().unwrap().to_string();
    let images = dir.path().join("images.yaml");
    std::fs::write(&images, "images:\n  - source: nginx:1.27\n").unwrap();
    let images = images.to_str().unwrap().to_string();
    let ecr = "123456789012.dkr.ecr.us-east-1.amazonaws.com";
    let src = format!("{h}/lib/app:v1");
    let dst = format!("{h}/mirror/app:v1");
    let env = vec![
        ("AWS_ENDPOINT_URL".to_string(), url.clone()),
        ("AWS_ACCESS_KEY_ID".to_string(), "testing".to_string()),
        ("AWS_SECRET_ACCESS_KEY".to_string(), "testing".to_string()),
        ("AWS_REGION".to_string(), "us-east-1".to_string()),
        ("ECR_MIRROR_SYNC_REGISTRY_ENDPOINT".to_string(), url.clone()),
    ];
    let copy = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = ["copy", "--src", &src, "--dest", &dst, "--insecure-policy"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let estate = |cmd: &str, extra: &[&str]| -> Vec<String> {
        let mut v = vec![cmd.to_string()];
        if cmd == "sync" {
            v.push("--insecure-policy".into());
        }
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let ecr_dst = format!("{ecr}/mirror/app:v1");
    let pushgw = format!("ftp://{h}");
    // (command line, a word the message must contain)
    let cases: Vec<(Vec<String>, &str)> = vec![
        // copy
        (
            copy(&["--src-creds", "a:b", "--src-username", "u"]),
            "--src-creds",
        ),
        (copy(&["--src-username", "u"]), "--src-password"),
        (
            copy(&["--dest-creds", "a:b", "--dest-registry-token", "t"]),
            "--dest-creds",
        ),
        (
            copy(&["--dest-creds", "a:b", "--dest-no-creds"]),
            "--dest-no-creds",
        ),
        (copy(&["--src-authfile", &bad_auth]), "auth.json"),
        (
            copy(&["--src-authfile", "/nonexistent/auth.json"]),
            "--src-authfile",
        ),
        (copy(&["--override-os", "linux"]), "--override-arch"),
        (copy(&["--platform", "linux"]), "linux"),
        (copy(&["--create-missing"]), "--create-missing"),
        (
            copy(&["--registry-endpoint", "not a url"]),
            "--registry-endpoint",
        ),
        (
            vec![
                "copy".into(),
                "--src".into(),
                src.clone(),
                "--dest".into(),
                dst.clone(),
                "--policy".into(),
                "/nonexistent/policy.json".into(),
            ],
            "policy.json",
        ),
        (
            vec![
                "copy".into(),
                "--src".into(),
                src.clone(),
                "--dest".into(),
                ecr_dst.clone(),
                "--insecure-policy".into(),
                "--create-missing".into(),
                "--kms-key".into(),
                "k".into(),
            ],
            "--kms-key",
        ),
        (
            vec![
                "copy".into(),
                "--src".into(),
                format!("{h}/lib/app@sha256:{}", "a".repeat(64)),
                "--dest".into(),
                format!("{h}/mirror/app"),
                "--insecure-policy".into(),
            ],
            "--dest",
        ),
        // sync
        (
            estate("sync", &["--src-creds", "a:b", "--src-username", "u"]),
            "--src-creds",
        ),
        (estate("sync", &["--src-authfile", &bad_auth]), "auth.json"),
        (estate("sync", &["--prefix", "/mirror"]), "--prefix"),
        (estate("sync", &["--shard", "3/2"]), "--shard"),
        (estate("sync", &["--pushgateway", &pushgw]), "--pushgateway"),
        (estate("sync", &["--metrics-job", "a b"]), "--metrics-job"),
        (
            estate("sync", &["--metrics-file", "/nonexistent/dir/m.prom"]),
            "--metrics-file",
        ),
        (
            estate("sync", &["--registry-endpoint", "not a url"]),
            "--registry-endpoint",
        ),
        (estate("sync", &["--platform", "bad"]), "bad"),
        (estate("sync", &["--create-missing"]), "--create-missing"),
        (estate("sync", &["--scan-on-push"]), "--scan-on-push"),
        (
            vec![
                "sync".into(),
                "--policy".into(),
                "/nonexistent/policy.json".into(),
            ],
            "policy.json",
        ),
        // list
        (
            estate("list", &["--src-creds", "a:b", "--src-no-creds"]),
            "--src-no-creds",
        ),
        (estate("list", &["--shard", "x"]), "--shard"),
        (estate("list", &["--check", "--prefix", "a/"]), "--prefix"),
        // verify
        (estate("verify", &["--src-password", "p"]), "--src-username"),
        (estate("verify", &["--prefix", ""]), "--prefix"),
        // push (the archive does not exist: the settings are checked first)
        (
            vec![
                "push".into(),
                "--archive".into(),
                "/nonexistent.tar".into(),
                "--dest".into(),
                dst.clone(),
                "--dest-creds".into(),
                "a:b".into(),
                "--dest-no-creds".into(),
            ],
            "--dest-creds",
        ),
        (
            vec![
                "push".into(),
                "--archive".into(),
                "/nonexistent.tar".into(),
                "--dest".into(),
                dst.clone(),
                "--tag=-bad".into(),
            ],
            "-bad",
        ),
        // import
        (
            vec![
                "import".into(),
                images.clone(),
                "--kms-key".into(),
                "k".into(),
            ],
            "--kms-key",
        ),
        (
            vec![
                "import".into(),
                images.clone(),
                "--lifecycle-policy".into(),
                "/nonexistent.json".into(),
            ],
            "--lifecycle-policy",
        ),
    ];
    let mut failures = Vec::new();
    for (args, needle) in &cases {
        let before = rec.connections();
        let out = run(args, &env);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let after = rec.connections();
        if out.status.code() != Some(2) || after != before || !text.contains(needle) {
            failures.push(format!(
                "{}: exit {:?}, {} connection(s), message must name {needle:?}\n{}",
                args.join(" "),
                out.status.code(),
                after - before,
                describe(&out)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert_eq!(rec.connections(), 0, "no command may touch the network");
}
