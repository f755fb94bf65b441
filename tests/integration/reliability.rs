//! Reliability and security suite (issue 8): the product binary against real `docker-registry`
//! instances and moto, with faults injected by the in-process FaultProxy, crashes (SIGKILL at
//! seeded points, SIGTERM), hostile registries (`support::hostile`) and credentials given every
//! supported way. docs/reliability.md maps every row of the fault matrix to its test here.
//!
//! What is asserted comes from the registries themselves (HEAD/GET with the harness's own
//! client, the access logs, the FaultProxy and hostile request logs), never from the product's
//! report alone. Every product run is bounded ([`RUN_LIMIT`]): a hang fails the test.
//!
//! Sections:
//! 1. Fault matrix: `sync` of 10 repositories × 2 tags through a FaultProxy.
//! 2. Crash consistency: SIGKILL at seeded points, SIGTERM mid-run.
//! 3. Hostile input: manifests and blobs a real registry would not serve, CDN redirects.
//! 4. Secrets: every credential source, failing and succeeding, with debug and JSON output.
//! 5. Fuzz corpus replay and regressions (inputs found by `tests/fuzz`).

use std::future::Future;
use std::os::unix::process::ExitStatusExt as _;
use std::pin::Pin;
use std::process::Output;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};
use tokio::io::AsyncReadExt as _;

use crate::support::personality::{Manners, Personality};
use crate::support::{
    get_manifest, head_blob, head_manifest, image_with_layers, index_of, product_command,
    push_image, push_index, random_blob, random_image, random_layer, sha256_digest, Blob, Fault,
    FaultProxy, Format, Hit, Hostile, HostileAuth, Image, Index, Kind, Moto, Registry, Reply,
    Request, Rule, Schedule, MOTO_ACCOUNT_ID, MOTO_ECR_PASSWORD, MOTO_ECR_USER, MT_OCI_INDEX,
    MT_OCI_LAYER, MT_OCI_MANIFEST,
};

const REGION: &str = "us-east-1";

/// The longest any single product run may take here; past it the test fails as a hang.
const RUN_LIMIT: Duration = Duration::from_secs(90);

// =============================================================================================
// Services, estate and runs
// =============================================================================================

/// moto + an upstream registry + an "ECR" registry accepting moto's token user.
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

    fn env(&self) -> Vec<(String, String)> {
        env_for(&self.moto, &self.ecr.url())
    }
}

/// Which registries' manners the run meets (issue 13, section 3): the plain pair is what a
/// self-hosted destination looks like; the others put the upstream's personality in front of
/// the upstream side (after the FaultProxy, so faults still apply to what the personality
/// forwards or redirects) and ECR's personality in front of the "ECR" registry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pair {
    Plain,
    HubToEcr,
    K8sToEcr,
    QuayToEcr,
}

/// The personalities of a [`Pair`], in front of an upstream URL and the "ECR" registry.
struct Fronts {
    src: Option<Personality>,
    ecr: Option<Personality>,
}

impl Fronts {
    async fn start(pair: Pair, upstream_url: &str, ecr: &Registry) -> Fronts {
        let src_manners = match pair {
            Pair::Plain => None,
            Pair::HubToEcr => Some(Manners::docker_hub()),
            Pair::K8sToEcr => Some(Manners::k8s()),
            Pair::QuayToEcr => Some(Manners::quay()),
        };
        let src = match src_manners {
            Some(m) => {
                let p = Personality::start(upstream_url, m).await;
                // A budget no test here reaches: the pull budget has tests of its own.
                p.set_pull_budget(1_000_000, 1_000_000);
                Some(p)
            }
            None => None,
        };
        let ecr = match pair {
            Pair::Plain => None,
            _ => Some(Personality::ecr(ecr).await),
        };
        Fronts { src, ecr }
    }

    /// `host:port` to mark as `upstream-image`'s registry.
    fn upstream_host(&self, plain: &str) -> String {
        self.src
            .as_ref()
            .map_or_else(|| plain.to_string(), |p| p.host.clone())
    }

    /// The env of a run, with ECR's data plane behind its personality when there is one.
    fn env(&self, moto: &Moto, ecr: &Registry) -> Vec<(String, String)> {
        env_for(
            moto,
            &self.ecr.as_ref().map_or_else(|| ecr.url(), |p| p.url()),
        )
    }

    /// No credentials ever reached a redirect target (CDN, regional backend).
    fn assert_no_credentials_leaked(&self, ctx: &str) {
        if let Some(p) = &self.src {
            let leaked = p.side_hits_with_authorization();
            assert!(
                leaked.is_empty(),
                "Authorization sent to another host: {leaked:?}\n{ctx}"
            );
        }
    }
}

/// moto's AWS env, ECR data-plane requests sent to `endpoint`, plain HTTP both ways.
fn env_for(moto: &Moto, endpoint: &str) -> Vec<(String, String)> {
    let mut env = moto.env();
    for (k, v) in [
        ("ECR_MIRROR_SYNC_REGISTRY_ENDPOINT", endpoint),
        ("ECR_MIRROR_SYNC_DEST_TLS_VERIFY", "false"),
        ("ECR_MIRROR_SYNC_SRC_TLS_VERIFY", "false"),
    ] {
        env.push((k.to_string(), v.to_string()));
    }
    env
}

/// One ECR API call to moto (JSON 1.1, unsigned: moto routes on the credential scope).
async fn ecr_api(moto: &Moto, op: &str, body: Value) -> Value {
    moto.ecr_api(op, body).await
}

async fn create_repo(moto: &Moto, name: &str, tags: &[(&str, &str)]) {
    let tags: Vec<Value> = tags
        .iter()
        .map(|(k, v)| json!({"Key": k, "Value": v}))
        .collect();
    let r = ecr_api(
        moto,
        "CreateRepository",
        json!({"repositoryName": name, "tags": tags}),
    )
    .await;
    assert_eq!(r["repository"]["repositoryName"], name, "{r}");
}

/// What an upstream tag holds.
#[derive(Clone)]
enum Top {
    Image(Image),
    Index(Index),
}

impl Top {
    fn digest(&self) -> &str {
        match self {
            Top::Image(i) => &i.digest,
            Top::Index(x) => &x.digest,
        }
    }
}

/// One tag of the estate: ECR `repo:tag` mirrors upstream `up_repo:tag`.
struct Item {
    repo: String,
    up_repo: String,
    tag: &'static str,
    top: Top,
}

impl Item {
    fn name(&self) -> String {
        format!("{}:{}", self.repo, self.tag)
    }
}

/// `mirror/rNN` ← `up/rNN`, tags `v1` and `v2` each.
struct Estate {
    items: Vec<Item>,
}

impl Estate {
    /// `repos` repositories. `v1`: an image over a base layer of `base` bytes shared by every
    /// repository (none when 0) plus an own layer of `layer` bytes. `v2`: a two-platform OCI
    /// index on even repositories, a Docker v2s2 image of two layers on odd ones.
    fn new(repos: usize, base: usize, layer: usize, seed: u64) -> Estate {
        let shared = (base > 0).then(|| random_layer(seed, base, Format::Oci));
        let mut items = vec![];
        for r in 0..repos {
            let s = seed + 100 * (r as u64 + 1);
            let mut layers: Vec<Blob> = shared.iter().cloned().collect();
            layers.push(random_layer(s + 1, layer, Format::Oci));
            let v1 = Top::Image(image_with_layers(layers, "linux/amd64", Format::Oci));
            let v2 = if r % 2 == 0 {
                Top::Index(index_of(
                    vec![
                        random_image(s + 2, &[layer], "linux/amd64", Format::Oci),
                        random_image(s + 3, &[layer / 2], "linux/arm64", Format::Oci),
                    ],
                    Format::Oci,
                ))
            } else {
                Top::Image(random_image(
                    s + 4,
                    &[layer, layer / 3],
                    "linux/amd64",
                    Format::DockerV2,
                ))
            };
            let repo = format!("mirror/r{r:02}");
            let up_repo = format!("up/r{r:02}");
            for (tag, top) in [("v1", v1), ("v2", v2)] {
                items.push(Item {
                    repo: repo.clone(),
                    up_repo: up_repo.clone(),
                    tag,
                    top,
                });
            }
        }
        Estate { items }
    }

    async fn push_upstream(&self, up: &Registry) {
        for it in &self.items {
            match &it.top {
                Top::Image(i) => push_image(&up.url(), &it.up_repo, it.tag, i, None, None).await,
                Top::Index(x) => push_index(&up.url(), &it.up_repo, it.tag, x, None, None).await,
            }
        }
    }

    /// (ECR repository, upstream repository), once each.
    fn repos(&self) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = self
            .items
            .iter()
            .map(|i| (i.repo.clone(), i.up_repo.clone()))
            .collect();
        v.dedup();
        v
    }

    /// Marks every ECR repository in moto: `upstream-image` = `upstream_host/up/rNN`.
    async fn mark(&self, moto: &Moto, upstream_host: &str) {
        for (repo, up_repo) in self.repos() {
            let image = format!("{upstream_host}/{up_repo}");
            create_repo(
                moto,
                &repo,
                &[("upstream-image", &image), ("upstream-tags", "v1/v2")],
            )
            .await;
        }
    }
}

/// Resolves `repo@reference` in `reg` completely: the manifest, every child manifest of an
/// index (recursively), and a HEAD 200 for every blob (config and layers) of every image.
/// Returns how many manifests and blobs were checked, or what is missing.
fn resolve<'a>(
    reg: &'a Registry,
    repo: &'a str,
    reference: &'a str,
) -> Pin<Box<dyn Future<Output = Result<usize, String>> + Send + 'a>> {
    Box::pin(async move {
        let (bytes, _) = get_manifest(&reg.url(), repo, reference, reg.auth(), None)
            .await
            .ok_or_else(|| format!("{repo}@{reference}: manifest missing"))?;
        let v: Value = serde_json::from_slice(&bytes)
            .map_err(|e| format!("{repo}@{reference}: manifest is not JSON: {e}"))?;
        let mut checked = 1;
        if let Some(children) = v["manifests"].as_array() {
            for c in children {
                let d = c["digest"]
                    .as_str()
                    .ok_or_else(|| format!("{repo}@{reference}: child without digest"))?;
                checked += resolve(reg, repo, d).await?;
            }
            return Ok(checked);
        }
        let mut blobs = vec![v["config"]["digest"].as_str().unwrap_or("").to_string()];
        if let Some(layers) = v["layers"].as_array() {
            blobs.extend(
                layers
                    .iter()
                    .map(|l| l["digest"].as_str().unwrap_or("").to_string()),
            );
        }
        for d in blobs {
            if d.is_empty() || !head_blob(&reg.url(), repo, &d, reg.auth(), None).await {
                return Err(format!("{repo}@{reference}: blob {d:?} missing"));
            }
            checked += 1;
        }
        Ok(checked)
    })
}

/// Every item: upstream and ECR HEAD to the same (expected) digest, and ECR resolves it
/// completely.
async fn assert_mirrored(up: &Registry, ecr: &Registry, items: &[&Item], ctx: &str) {
    for it in items {
        let want = it.top.digest();
        let upd = head_manifest(&up.url(), &it.up_repo, it.tag, None, None).await;
        assert_eq!(upd.as_deref(), Some(want), "upstream {}", it.name());
        let got = head_manifest(&ecr.url(), &it.repo, it.tag, ecr.auth(), None).await;
        assert_eq!(
            got.as_deref(),
            Some(want),
            "ECR {} does not hold the upstream digest\n{ctx}",
            it.name()
        );
        if let Err(e) = resolve(ecr, &it.repo, want).await {
            panic!("ECR {} is incomplete: {e}\n{ctx}", it.name());
        }
    }
}

/// One finished product run.
struct Run {
    args: Vec<String>,
    out: Output,
    /// (type, data) of every JSON line on stdout.
    records: Vec<(String, Value)>,
}

impl Run {
    fn new(args: &[String], out: Output) -> Run {
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let records = stdout
            .lines()
            .filter(|l| l.trim_start().starts_with('{'))
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter_map(|v| Some((v["type"].as_str()?.to_string(), v["data"].clone())))
            .collect();
        Run {
            args: args.to_vec(),
            out,
            records,
        }
    }

    /// stdout and stderr together.
    fn text(&self) -> String {
        format!(
            "{}\n{}",
            String::from_utf8_lossy(&self.out.stdout),
            String::from_utf8_lossy(&self.out.stderr)
        )
    }

    fn ctx(&self) -> String {
        format!(
            "$ ecr-mirror-sync {}\nstatus: {}\nstdout:\n{}\nstderr:\n{}",
            self.args.join(" "),
            self.out.status,
            String::from_utf8_lossy(&self.out.stdout),
            String::from_utf8_lossy(&self.out.stderr)
        )
    }

    fn code(&self) -> Option<i32> {
        self.out.status.code()
    }

    fn assert_code(&self, code: i32) {
        assert_eq!(
            self.code(),
            Some(code),
            "expected exit {code}\n{}",
            self.ctx()
        );
    }

    fn all(&self, kind: &str) -> Vec<&Value> {
        self.records
            .iter()
            .filter(|(k, _)| k == kind)
            .map(|(_, d)| d)
            .collect()
    }

    fn item(&self, repo: &str, tag: &str) -> &Value {
        let found: Vec<&Value> = self
            .all("item")
            .into_iter()
            .filter(|d| d["repository"] == repo && d["tag"] == tag)
            .collect();
        assert_eq!(
            found.len(),
            1,
            "expected one item for {repo}:{tag}\n{}",
            self.ctx()
        );
        found[0]
    }

    fn summary(&self) -> &Value {
        let s = self.all("summary");
        assert_eq!(s.len(), 1, "expected one summary\n{}", self.ctx());
        s[0]
    }

    /// The message of a failed command: the `error` JSON line, else the `error:` stderr line.
    fn error_message(&self) -> String {
        if let Some(e) = self.all("error").first() {
            return e["message"].as_str().unwrap_or_default().to_string();
        }
        String::from_utf8_lossy(&self.out.stderr)
            .lines()
            .find(|l| l.starts_with("error:"))
            .unwrap_or_else(|| panic!("no error message\n{}", self.ctx()))
            .to_string()
    }
}

/// Runs the product to completion. After [`RUN_LIMIT`] it is killed and the test fails as a
/// hang, showing what the product had printed so far.
async fn product(args: &[String], env: &[(String, String)]) -> Run {
    let mut child = tokio::process::Command::from(product_command(args, env))
        .kill_on_drop(true)
        .spawn()
        .expect("spawn the product");
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let out_task = tokio::spawn(async move {
        let mut b = vec![];
        let _ = stdout.read_to_end(&mut b).await;
        b
    });
    let err_task = tokio::spawn(async move {
        let mut b = vec![];
        let _ = stderr.read_to_end(&mut b).await;
        b
    });
    let started = Instant::now();
    let waited = tokio::time::timeout(RUN_LIMIT, child.wait()).await;
    let hung = waited.is_err();
    let status = match waited {
        Ok(s) => s.expect("wait for the product"),
        Err(_) => {
            let _ = child.start_kill();
            child.wait().await.expect("wait for the killed product")
        }
    };
    let out = Output {
        status,
        stdout: out_task.await.unwrap(),
        stderr: err_task.await.unwrap(),
    };
    let run = Run::new(args, out);
    assert!(
        !hung,
        "`ecr-mirror-sync {}` did not finish within {RUN_LIMIT:?}: it hangs\n{}",
        args.join(" "),
        run.ctx()
    );
    if started.elapsed() > Duration::from_secs(20) {
        eprintln!(
            "note: `{}` took {:?}",
            run.args.join(" "),
            started.elapsed()
        );
    }
    run
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// `sync --output json --insecure-policy EXTRA...`
fn sync_args(extra: &[&str]) -> Vec<String> {
    let mut a = strings(&["sync", "--output", "json", "--insecure-policy"]);
    a.extend(strings(extra));
    a
}

fn u(v: &Value) -> u64 {
    v.as_u64()
        .unwrap_or_else(|| panic!("not an unsigned number: {v}"))
}

fn show(reqs: &[Request]) -> String {
    reqs.iter()
        .map(|r| format!("  {} {} -> {}\n", r.method, r.path, r.status))
        .collect()
}

/// Every request a fault was injected into was later asked again and answered without a fault
/// by the real registry (2xx, or 404 for an absent cosign `.sig` tag). Upload sessions are
/// new paths each time, so they are checked by their outcome instead.
fn assert_faulted_paths_recovered(hits: &[Hit], ctx: &str) {
    for (i, h) in hits.iter().enumerate() {
        if h.fault.is_none() || h.path.contains("/blobs/uploads/") {
            continue;
        }
        assert!(
            hits[i + 1..].iter().any(|l| l.path == h.path
                && l.fault.is_none()
                && (200..300).contains(&l.status) | (l.status == 404)),
            "{} {} was faulted ({:?}) and never served afterwards\n{ctx}",
            h.method,
            h.path,
            h.fault
        );
    }
}

// =============================================================================================
// 1. Fault matrix: sync of 10 repositories × 2 tags
// =============================================================================================

/// Transient faults, all at once, through a FaultProxy in front of the upstream: every
/// manifest path answers 429 (`Retry-After: 1`) once; every blob path is reset halfway through
/// its body, then answers a burst of two 503s; and every 5th request of any kind is a 503. The
/// run must mirror everything and exit 0.
#[tokio::test(flavor = "multi_thread")]
async fn matrix_transient_429_503_and_resets_together_mirror_everything() {
    transient_matrix(Pair::Plain).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn matrix_transient_faults_hub_to_ecr() {
    transient_matrix(Pair::HubToEcr).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn matrix_transient_faults_k8s_to_ecr() {
    transient_matrix(Pair::K8sToEcr).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn matrix_transient_faults_quay_to_ecr() {
    transient_matrix(Pair::QuayToEcr).await;
}

async fn transient_matrix(pair: Pair) {
    let s = Services::start();
    let estate = Estate::new(10, 48 * 1024, 96 * 1024, 10_000);
    estate.push_upstream(&s.up).await;
    let proxy = FaultProxy::start(
        &s.up.url(),
        vec![
            Rule::new(
                "/manifests/",
                Fault::Status {
                    code: 429,
                    retry_after: Some("1".into()),
                },
                Schedule::FirstN(1),
            ),
            Rule::new("/blobs/", Fault::ResetMidBody, Schedule::FirstN(1)).method("GET"),
            // With the reset, each blob GET's first 3 answers are: reset, 503, 503.
            Rule::new(
                "/blobs/",
                Fault::Status {
                    code: 503,
                    retry_after: None,
                },
                Schedule::FirstN(3),
            )
            .method("GET"),
            Rule::new(
                "",
                Fault::Status {
                    code: 503,
                    retry_after: None,
                },
                Schedule::EveryNth(5),
            ),
        ],
    )
    .await;
    let fronts = Fronts::start(pair, &proxy.url(), &s.ecr).await;
    estate
        .mark(&s.moto, &fronts.upstream_host(&proxy.host))
        .await;

    // One retry budget covers a whole blob transfer (issue 12): the source GET, the POST and
    // the upload together, as ggcr's `retry.Never` inner calls do. A blob's burst (reset, 503,
    // 503) plus the every-5th 503 on a later attempt can take more than the default 5 retries;
    // before, the GET's own loop ran inside the transfer's, which gave it up to 36 attempts.
    let run = product(
        &sync_args(&["--parallel", "8", "--retry-times", "8"]),
        &fronts.env(&s.moto, &s.ecr),
    )
    .await;
    let ctx = format!("{pair:?}\n{}", run.ctx());
    run.assert_code(0);
    fronts.assert_no_credentials_leaked(&ctx);
    let hits = proxy.hit_log();
    let injected = |want: &dyn Fn(&Fault) -> bool| {
        hits.iter()
            .filter(|h| h.fault.as_ref().is_some_and(want))
            .count()
    };
    let n429 = injected(&|f| matches!(f, Fault::Status { code: 429, .. }));
    let n503 = injected(&|f| matches!(f, Fault::Status { code: 503, .. }));
    let resets = injected(&|f| *f == Fault::ResetMidBody);
    assert!(
        n429 >= 20 && n503 > 0 && resets > 0,
        "faults injected: 429 x{n429}, 503 x{n503}, resets x{resets}\n{ctx}"
    );
    assert_faulted_paths_recovered(&hits, &ctx);
    let summary = run.summary();
    assert_eq!(summary["copied"], 20, "{summary}\n{ctx}");
    assert_eq!(summary["failed"], 0, "{summary}\n{ctx}");
    let retries = u(&summary["retries"]);
    assert!(
        retries >= (n429 + n503 + resets) as u64,
        "summary.retries = {retries}, but {} faults were injected\n{ctx}",
        n429 + n503 + resets
    );
    let all: Vec<&Item> = estate.items.iter().collect();
    assert_mirrored(&s.up, &s.ecr, &all, &ctx).await;
}

/// A permanent corruption (every blob of one repository has a flipped byte): that
/// repository's tags fail with a digest-mismatch reason and stay absent in ECR; the other nine
/// repositories are mirrored; exit 1.
#[tokio::test(flavor = "multi_thread")]
async fn matrix_permanent_corruption_fails_only_that_repository() {
    let s = Services::start();
    let estate = Estate::new(10, 48 * 1024, 96 * 1024, 11_000);
    estate.push_upstream(&s.up).await;
    let proxy = FaultProxy::start(
        &s.up.url(),
        vec![Rule::new("/v2/up/r03/blobs/", Fault::FlipByte, Schedule::Always).method("GET")],
    )
    .await;
    estate.mark(&s.moto, &proxy.host).await;
    s.ecr.mark();

    let run = product(&sync_args(&["--parallel", "8"]), &s.env()).await;
    let ctx = run.ctx();
    run.assert_code(1);
    assert!(proxy.faults_injected() > 0, "nothing was flipped\n{ctx}");
    let mut fine = vec![];
    for it in &estate.items {
        let item = run.item(&it.repo, it.tag);
        if it.repo == "mirror/r03" {
            assert_eq!(item["outcome"], "failed", "{item}\n{ctx}");
            let err = item["error"].as_str().unwrap_or_default();
            assert!(
                err.contains("digest mismatch"),
                "{}: the reason must be a digest mismatch, got {err:?}\n{ctx}",
                it.name()
            );
            assert_eq!(
                head_manifest(&s.ecr.url(), &it.repo, it.tag, s.ecr.auth(), None).await,
                None,
                "{} was written although its blobs are corrupt",
                it.name()
            );
        } else {
            assert_eq!(item["outcome"], "copied", "{item}\n{ctx}");
            fine.push(it);
        }
    }
    assert_eq!(run.summary()["copied"], 18, "{ctx}");
    assert_eq!(run.summary()["failed"], 2, "{ctx}");
    assert_mirrored(&s.up, &s.ecr, &fine, &ctx).await;
    let reqs = s.ecr.requests();
    let r03_manifests: Vec<Request> = reqs
        .iter()
        .filter(|r| r.repo().as_deref() == Some("mirror/r03"))
        .filter(|r| r.method == "PUT" && r.kind() == Kind::Manifest)
        .cloned()
        .collect();
    assert!(
        r03_manifests.is_empty(),
        "manifests were written for the corrupt repository:\n{}",
        show(&r03_manifests)
    );
}

/// Starts a FaultProxy with `rules` in front of the ECR registry, syncs a 10 × 2 estate
/// through it, and returns the run, how long it took, and the proxy's hits.
async fn sync_through_ecr_proxy(
    s: &Services,
    estate: &Estate,
    rules: Vec<Rule>,
    extra: &[&str],
) -> (Run, Duration, Vec<Hit>) {
    estate.push_upstream(&s.up).await;
    estate.mark(&s.moto, &s.up.host).await;
    let ecr_proxy = FaultProxy::start(&s.ecr.url(), rules).await;
    let env = env_for(&s.moto, &ecr_proxy.url());
    let mut args = vec!["--parallel", "8"];
    args.extend_from_slice(extra);
    let started = Instant::now();
    let run = product(&sync_args(&args), &env).await;
    (run, started.elapsed(), ecr_proxy.hit_log())
}

/// The ECR token "expires" mid-run: a FaultProxy in front of the ECR registry answers 401 (with
/// the registry's own Basic challenge) to the first HEAD and the first PUT of each manifest path
/// (tags, and an index's children by digest, which a cold mirror PUTs without a HEAD) of one
/// repository, and to the first HEAD of each
/// blob of another. The
/// run re-authenticates (a fresh `GetAuthorizationToken`), repeats the request, and mirrors
/// everything: exit 0.
#[tokio::test(flavor = "multi_thread")]
async fn matrix_expired_ecr_token_mid_run_reauthenticates() {
    let s = Services::start();
    let estate = Estate::new(10, 48 * 1024, 96 * 1024, 12_000);
    let rules = vec![
        Rule::new(
            "/v2/mirror/r00/manifests/",
            Fault::Unauthorized,
            Schedule::FirstN(1),
        )
        .method("HEAD"),
        Rule::new(
            "/v2/mirror/r00/manifests/",
            Fault::Unauthorized,
            Schedule::FirstN(1),
        )
        .method("PUT"),
        Rule::new(
            "/v2/mirror/r04/blobs/sha256:",
            Fault::Unauthorized,
            Schedule::FirstN(1),
        )
        .method("HEAD"),
    ];
    let (run, _, hits) = sync_through_ecr_proxy(&s, &estate, rules, &[]).await;
    let ctx = run.ctx();
    run.assert_code(0);
    // r00:v2 is an index: its two children and both tags are PUT (4 paths); the tags are
    // HEADed first (observe). The children are not: the tags are absent, a cold mirror.
    for (method, prefix, at_least) in [
        ("PUT", "/v2/mirror/r00/manifests/", 4),
        ("HEAD", "/v2/mirror/r00/manifests/", 2),
        ("HEAD", "/v2/mirror/r04/blobs/", 3),
    ] {
        let n = hits
            .iter()
            .filter(|h| h.fault.is_some() && h.method == method && h.path.starts_with(prefix))
            .count();
        assert!(
            n >= at_least,
            "expected at least {at_least} injected 401s on {method} {prefix}, got {n}\n{ctx}"
        );
    }
    assert_faulted_paths_recovered(&hits, &ctx);
    assert_eq!(run.summary()["copied"], 20, "{ctx}");
    assert_eq!(run.summary()["failed"], 0, "{ctx}");
    let all: Vec<&Item> = estate.items.iter().collect();
    assert_mirrored(&s.up, &s.ecr, &all, &ctx).await;
}

/// The token expires while a blob is being streamed: every 3rd upload PUT of one repository
/// (the blobs here are under 1 MiB, so the PUT carries the body) is answered 401 (after the
/// proxy read the whole body). The stream cannot be replayed, so
/// the transfer must be retried at once (new session, new GET), and the run must not wait for
/// the read timeout (`--read-timeout 30` here) on a request that can never complete.
#[tokio::test(flavor = "multi_thread")]
async fn matrix_expired_ecr_token_during_blob_upload_does_not_stall() {
    let s = Services::start();
    let estate = Estate::new(10, 48 * 1024, 96 * 1024, 12_500);
    let rules = vec![Rule::new(
        "/v2/mirror/r07/blobs/uploads/",
        Fault::Unauthorized,
        Schedule::EveryNth(3),
    )
    .method("PUT")];
    let (run, took, hits) =
        sync_through_ecr_proxy(&s, &estate, rules, &["--read-timeout", "30"]).await;
    let ctx = run.ctx();
    let n = hits.iter().filter(|h| h.fault.is_some()).count();
    assert!(n >= 1, "no 401 was injected into an upload\n{ctx}");
    run.assert_code(0);
    assert_eq!(run.summary()["copied"], 20, "{ctx}");
    let all: Vec<&Item> = estate.items.iter().collect();
    assert_mirrored(&s.up, &s.ecr, &all, &ctx).await;
    assert!(
        took < Duration::from_secs(20),
        "{n} upload PUTs answered 401 stalled the run for {took:?}: after a 401 the upload is sent \
         again without its (consumed) body but with `Content-Length` of the blob, and waits for \
         the read timeout\n{ctx}"
    );
}

/// A slow body: blob bodies held back longer than `--read-timeout 2`. Every blob of `r07` is
/// always slow (its tags fail with a timeout error after `--retry-times 2`); every other blob
/// is slow on its first GET only (retried, then mirrored). The run ends well within its bound.
#[tokio::test(flavor = "multi_thread")]
async fn matrix_slow_body_times_out_and_never_hangs() {
    let s = Services::start();
    let estate = Estate::new(10, 48 * 1024, 96 * 1024, 13_000);
    estate.push_upstream(&s.up).await;
    let slow = Fault::SlowBody {
        delay: Duration::from_secs(8),
    };
    let proxy = FaultProxy::start(
        &s.up.url(),
        vec![
            Rule::new("/v2/up/r07/blobs/", slow.clone(), Schedule::Always).method("GET"),
            Rule::new("/blobs/", slow, Schedule::FirstN(1)).method("GET"),
        ],
    )
    .await;
    estate.mark(&s.moto, &proxy.host).await;

    let started = Instant::now();
    let args = sync_args(&[
        "--parallel",
        "10",
        "--read-timeout",
        "2",
        "--retry-times",
        "2",
    ]);
    let run = product(&args, &s.env()).await;
    let took = started.elapsed();
    let ctx = run.ctx();
    run.assert_code(1);
    assert!(
        took < Duration::from_secs(75),
        "a 2 s read timeout with 2 retries must bound the run; it took {took:?}\n{ctx}"
    );
    let mut fine = vec![];
    for it in &estate.items {
        let item = run.item(&it.repo, it.tag);
        if it.repo == "mirror/r07" {
            assert_eq!(item["outcome"], "failed", "{item}\n{ctx}");
            let err = item["error"].as_str().unwrap_or_default().to_lowercase();
            assert!(
                err.contains("timeout") || err.contains("timed out"),
                "{}: the reason must be a timeout, got {err:?}\n{ctx}",
                it.name()
            );
            assert_eq!(
                head_manifest(&s.ecr.url(), &it.repo, it.tag, s.ecr.auth(), None).await,
                None
            );
        } else {
            assert_eq!(item["outcome"], "copied", "{item}\n{ctx}");
            fine.push(it);
        }
    }
    assert!(u(&run.summary()["retries"]) > 0, "{ctx}");
    assert_mirrored(&s.up, &s.ecr, &fine, &ctx).await;
}

// =============================================================================================
// 2. Crash consistency
// =============================================================================================

/// SplitMix64: the kill delay of a seed, stable across platforms and crate versions.
fn splitmix(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// SIGKILL at seeded points of a `sync` of 6 repositories × 2 tags with 0.7–2 MiB layers (31 MiB
/// in all), each time into a fresh, empty ECR registry. A first, complete sync measures how
/// long a run takes (T); each seed then kills at a seeded point between 5 % and 95 % of T, so
/// the kill points spread over discovery, uploads and tag writes whatever the machine's speed.
/// A last kill lands when the first tag appears (polled): tag writes cluster at the end of a
/// run, and on a loaded machine the seeded points may all miss them.
/// After each kill, every tag present in ECR holds the upstream digest and resolves completely
/// (index, children, every blob HEAD 200); a rerun exits 0 and converges to the full mirror.
#[tokio::test(flavor = "multi_thread")]
async fn crash_sigkill_at_seeded_points_never_leaves_an_incomplete_tag() {
    let moto = Moto::start();
    let up = Registry::start();
    let estate = Estate::new(6, 2 << 20, 2 << 20, 20_000);
    estate.push_upstream(&up).await;
    estate.mark(&moto, &up.host).await;
    let total = estate.items.len();
    let all: Vec<&Item> = estate.items.iter().collect();

    // The reference run: how long a whole sync takes here and now.
    let reference = {
        let ecr = Registry::start_htpasswd(MOTO_ECR_USER, MOTO_ECR_PASSWORD);
        let started = Instant::now();
        let run = product(&sync_args(&[]), &env_for(&moto, &ecr.url())).await;
        let took = started.elapsed();
        run.assert_code(0);
        assert_mirrored(&up, &ecr, &all, &run.ctx()).await;
        took
    };

    let mut killed_running = 0;
    let mut partial = 0;
    let mut log = vec![format!("a full sync takes {reference:?}")];
    // Five seeded points, then one more: right after the first item is reported done (its
    // JSON Lines record), when its tag is written and the others are still in flight. Tag
    // writes cluster at the end of a run, and on a loaded machine the seeded points may all
    // miss them.
    for seed in [11u64, 23, 37, 41, 53, 0] {
        let ecr = Registry::start_htpasswd(MOTO_ECR_USER, MOTO_ECR_PASSWORD);
        let env = env_for(&moto, &ecr.url());
        let permille = 50 + splitmix(seed) % 901;
        let started = Instant::now();
        let mut cmd = tokio::process::Command::from(product_command(&sync_args(&[]), &env));
        if seed == 0 {
            cmd.stdout(std::process::Stdio::piped());
        }
        let mut child = cmd.kill_on_drop(true).spawn().expect("spawn the product");
        if seed != 0 {
            tokio::time::sleep(reference * permille as u32 / 1000).await;
        } else {
            use tokio::io::AsyncBufReadExt as _;
            let out = child.stdout.take().expect("piped stdout");
            let mut lines = tokio::io::BufReader::new(out).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if line.contains(r#""type":"item""#) {
                    break;
                }
            }
        }
        let delay = started.elapsed();
        let running = child.try_wait().unwrap().is_none();
        child.start_kill().expect("SIGKILL");
        let status = child.wait().await.unwrap();
        if running {
            assert_eq!(
                status.signal(),
                Some(9),
                "seed {seed}: not killed by SIGKILL"
            );
            killed_running += 1;
        }

        // Whatever the kill point: no tag references anything incomplete.
        let mut present = 0;
        for it in &estate.items {
            let Some(d) = head_manifest(&ecr.url(), &it.repo, it.tag, ecr.auth(), None).await
            else {
                continue;
            };
            assert_eq!(
                d,
                it.top.digest(),
                "seed {seed}: {} holds a digest that is not upstream's",
                it.name()
            );
            if let Err(e) = resolve(&ecr, &it.repo, &d).await {
                panic!(
                    "seed {seed} (killed after {delay:?}): {} is present but incomplete: {e}",
                    it.name()
                );
            }
            present += 1;
        }
        if running && present > 0 && present < total {
            partial += 1;
        }
        log.push(format!(
            "{}: killed after {delay:?} (still running: {running}), {present}/{total} tags \
             present, all complete",
            if seed == 0 {
                "at the first tag".to_string()
            } else {
                format!("seed {seed} ({permille}/1000 of T)")
            }
        ));

        // A rerun converges.
        let run = product(&sync_args(&[]), &env).await;
        let ctx = format!("{}\n{}", log.join("\n"), run.ctx());
        run.assert_code(0);
        assert_eq!(
            u(&run.summary()["copied"]),
            (total - present) as u64,
            "{ctx}"
        );
        assert_mirrored(&up, &ecr, &all, &ctx).await;
    }
    eprintln!("{}", log.join("\n"));
    assert!(
        killed_running >= 3 && partial >= 1,
        "at least 3 of the 6 kills must land while the sync runs, one of them with some tags \
         written:\n{}",
        log.join("\n")
    );
}

/// SIGKILL over the real registries' manners (issue 13, section 3): Hub → ECR, registry.k8s.io →
/// ECR and quay → ECR. The kill lands right after the first item is reported done (its JSON
/// Lines record), when its tag is written and the others are still in flight, the point the
/// seeded test above shows is the likeliest to catch a half-written tag. After it, every tag
/// present in ECR holds the upstream digest and resolves completely; a rerun exits 0, copies
/// exactly what is missing, and converges; no credentials ever reached a redirect target.
#[tokio::test(flavor = "multi_thread")]
async fn crash_sigkill_hub_to_ecr() {
    sigkill_at_first_tag(Pair::HubToEcr).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn crash_sigkill_k8s_to_ecr() {
    sigkill_at_first_tag(Pair::K8sToEcr).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn crash_sigkill_quay_to_ecr() {
    sigkill_at_first_tag(Pair::QuayToEcr).await;
}

async fn sigkill_at_first_tag(pair: Pair) {
    use tokio::io::AsyncBufReadExt as _;
    let s = Services::start();
    let estate = Estate::new(6, 1 << 20, 1 << 20, 24_000);
    estate.push_upstream(&s.up).await;
    let fronts = Fronts::start(pair, &s.up.url(), &s.ecr).await;
    estate
        .mark(&s.moto, &fronts.upstream_host(&s.up.host))
        .await;
    let env = fronts.env(&s.moto, &s.ecr);
    let total = estate.items.len();
    let all: Vec<&Item> = estate.items.iter().collect();

    // Two images at a time: when the first tag is written, most of the run is still ahead.
    let args = sync_args(&["--parallel", "2"]);
    let mut child = tokio::process::Command::from(product_command(&args, &env))
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn the product");
    let out = child.stdout.take().expect("piped stdout");
    let mut lines = tokio::io::BufReader::new(out).lines();
    let mut first = None;
    while let Ok(Some(line)) = lines.next_line().await {
        if line.contains(r#""type":"item""#) {
            first = Some(line);
            break;
        }
    }
    let running = child.try_wait().unwrap().is_none();
    child.start_kill().expect("SIGKILL");
    let status = child.wait().await.unwrap();
    assert!(
        running,
        "{pair:?}: the sync ended before its first item was reported ({first:?})"
    );
    assert_eq!(status.signal(), Some(9), "{pair:?}: not killed by SIGKILL");

    let mut present = 0;
    for it in &estate.items {
        let Some(d) = head_manifest(&s.ecr.url(), &it.repo, it.tag, s.ecr.auth(), None).await
        else {
            continue;
        };
        assert_eq!(
            d,
            it.top.digest(),
            "{pair:?}: {} holds a digest that is not upstream's",
            it.name()
        );
        if let Err(e) = resolve(&s.ecr, &it.repo, &d).await {
            panic!("{pair:?}: {} is present but incomplete: {e}", it.name());
        }
        present += 1;
    }
    assert!(
        present >= 1 && present < total,
        "{pair:?}: killed at the first tag, {present}/{total} tags present ({first:?})"
    );

    let run = product(&sync_args(&[]), &env).await;
    let ctx = format!(
        "{pair:?}: {present}/{total} present after the kill\n{}",
        run.ctx()
    );
    run.assert_code(0);
    assert_eq!(
        u(&run.summary()["copied"]),
        (total - present) as u64,
        "{ctx}"
    );
    assert_mirrored(&s.up, &s.ecr, &all, &ctx).await;
    fronts.assert_no_credentials_leaked(&ctx);
}

/// SIGTERM mid-run. Three repositories are slow (their blob bodies are held back for 60 s)
/// and three are fast. ECR is pre-seeded with older images for two slow tags and two fast
/// tags. Once the fast tags are mirrored and the slow transfers are in flight, `kill -TERM`:
///
/// * the process exits within 5 s, with exit code 1 (not killed by the signal);
/// * the pre-seeded slow tags still hold their old image, complete; the other slow tags are
///   absent; no manifest at all was written for the slow repositories (nothing moved);
/// * the fast tags (pre-seeded or not) hold the upstream image, complete;
/// * every tag present in ECR resolves completely;
/// * a rerun exits 0 and converges to the full mirror.
#[tokio::test(flavor = "multi_thread")]
async fn crash_sigterm_stops_within_5s_and_moves_no_tag() {
    sigterm_mid_run(Pair::Plain).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn crash_sigterm_hub_to_ecr() {
    sigterm_mid_run(Pair::HubToEcr).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn crash_sigterm_k8s_to_ecr() {
    sigterm_mid_run(Pair::K8sToEcr).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn crash_sigterm_quay_to_ecr() {
    sigterm_mid_run(Pair::QuayToEcr).await;
}

async fn sigterm_mid_run(pair: Pair) {
    let s = Services::start();
    // No shared base layer: a slow repository uploading it would (by design) hold back every
    // other repository waiting to mount it.
    let estate = Estate::new(6, 0, 256 * 1024, 30_000);
    estate.push_upstream(&s.up).await;
    let slow_repos = ["mirror/r00", "mirror/r01", "mirror/r02"];
    let is_slow = |it: &Item| slow_repos.contains(&it.repo.as_str());
    let preseeded = [
        ("mirror/r00", "v1"),
        ("mirror/r01", "v2"),
        ("mirror/r03", "v1"),
        ("mirror/r04", "v2"),
    ];
    let mut old = vec![];
    for (i, (repo, tag)) in preseeded.iter().enumerate() {
        let img = random_image(31_000 + i as u64, &[8192], "linux/amd64", Format::Oci);
        push_image(&s.ecr.url(), repo, tag, &img, s.ecr.auth(), None).await;
        old.push((repo.to_string(), tag.to_string(), img));
    }
    let held = Fault::SlowBody {
        delay: Duration::from_secs(60),
    };
    let proxy = FaultProxy::start(
        &s.up.url(),
        slow_repos
            .iter()
            .map(|r| {
                let up_repo = r.replace("mirror/", "up/");
                Rule::new(
                    &format!("/v2/{up_repo}/blobs/"),
                    held.clone(),
                    Schedule::Always,
                )
                .method("GET")
            })
            .collect(),
    )
    .await;
    let fronts = Fronts::start(pair, &proxy.url(), &s.ecr).await;
    estate
        .mark(&s.moto, &fronts.upstream_host(&proxy.host))
        .await;
    let env = fronts.env(&s.moto, &s.ecr);
    s.ecr.mark();

    // 17 transfers of the slow repositories stay open; room for the fast ones besides them.
    let args = sync_args(&["--parallel", "12", "--max-requests", "64"]);
    let mut child = tokio::process::Command::from(product_command(&args, &env))
        .kill_on_drop(true)
        .spawn()
        .expect("spawn the product");
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out_task = tokio::spawn(async move {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s).await;
        s
    });
    let err_task = tokio::spawn(async move {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s).await;
        s
    });

    // Wait until the fast tags are mirrored and every slow repository has a transfer held.
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "the sync ended ({status}) before SIGTERM\nstdout:\n{}\nstderr:\n{}",
                out_task.await.unwrap(),
                err_task.await.unwrap()
            );
        }
        let mut fast_done = true;
        for it in estate.items.iter().filter(|i| !is_slow(i)) {
            let d = head_manifest(&s.ecr.url(), &it.repo, it.tag, s.ecr.auth(), None).await;
            fast_done &= d.as_deref() == Some(it.top.digest());
        }
        let hits = proxy.hit_log();
        let held_repos = slow_repos
            .iter()
            .filter(|r| {
                let prefix = format!("/v2/{}/blobs/", r.replace("mirror/", "up/"));
                hits.iter()
                    .any(|h| h.fault.is_some() && h.path.starts_with(&prefix))
            })
            .count();
        if fast_done && held_repos == slow_repos.len() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "fast tags not mirrored / slow transfers not in flight within 40 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let pid = child.id().expect("running").to_string();
    let signalled = Instant::now();
    let kill = tokio::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .expect("run kill");
    assert!(kill.success(), "kill -TERM {pid} failed");
    let status = match tokio::time::timeout(Duration::from_secs(5), child.wait()).await {
        Ok(s) => s.unwrap(),
        Err(_) => {
            let _ = child.start_kill();
            panic!("the sync did not exit within 5 s of SIGTERM");
        }
    };
    let took = signalled.elapsed();
    let stdout = out_task.await.unwrap();
    let stderr = err_task.await.unwrap();
    let ctx = format!("status: {status} after {took:?}\nstdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(
        !status.success(),
        "SIGTERM must give a non-zero exit\n{ctx}"
    );
    assert_eq!(
        status.code(),
        Some(1),
        "a cancelled run exits 1 (after cleaning up), not by the signal\n{ctx}"
    );

    // No tag moved: every slow tag is as it was; every present tag is complete.
    for it in &estate.items {
        let got = head_manifest(&s.ecr.url(), &it.repo, it.tag, s.ecr.auth(), None).await;
        let before = old
            .iter()
            .find(|(r, t, _)| *r == it.repo && t == it.tag)
            .map(|(_, _, i)| i);
        if is_slow(it) {
            assert_eq!(
                got.as_deref(),
                before.map(|i| i.digest.as_str()),
                "{} moved although its copy was cancelled\n{ctx}",
                it.name()
            );
        } else {
            assert_eq!(
                got.as_deref(),
                Some(it.top.digest()),
                "{}\n{ctx}",
                it.name()
            );
        }
        if let Some(d) = got {
            if let Err(e) = resolve(&s.ecr, &it.repo, &d).await {
                panic!("{} is present but incomplete: {e}\n{ctx}", it.name());
            }
        }
    }
    let reqs = s.ecr.requests();
    let slow_writes: Vec<Request> = reqs
        .iter()
        .filter(|r| r.method == "PUT" && r.kind() == Kind::Manifest)
        .filter(|r| {
            r.repo()
                .is_some_and(|repo| slow_repos.contains(&repo.as_str()))
        })
        .cloned()
        .collect();
    assert!(
        slow_writes.is_empty(),
        "manifests were written for cancelled copies:\n{}",
        show(&slow_writes)
    );

    // A rerun without faults converges.
    proxy.set_rules(vec![]);
    let run = product(&args, &env).await;
    fronts.assert_no_credentials_leaked(&run.ctx());
    let ctx = run.ctx();
    run.assert_code(0);
    let all: Vec<&Item> = estate.items.iter().collect();
    assert_mirrored(&s.up, &s.ecr, &all, &ctx).await;
}

// =============================================================================================
// 3. Hostile input (copy from a scripted registry)
// =============================================================================================

/// `copy --src SRC --dest DST EXTRA...` over plain HTTP, no trust policy.
fn copy_args_plain(src: &str, dst: &str, extra: &[&str]) -> Vec<String> {
    let mut a = strings(&[
        "copy",
        "--src",
        src,
        "--dest",
        dst,
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        "--insecure-policy",
    ]);
    a.extend(strings(extra));
    a
}

/// [`copy_args_plain`] with JSON output.
fn copy_args(src: &str, dst: &str, extra: &[&str]) -> Vec<String> {
    let mut a = copy_args_plain(src, dst, &["--output", "json"]);
    a.extend(strings(extra));
    a
}

/// Asserts the copy into `dst`/`repo`:v1 failed (exit 1) with a message containing every one
/// of `needles`, and that `dst` got no manifest for `repo`.
async fn assert_refused(run: &Run, dst: &Registry, repo: &str, needles: &[&str]) {
    let ctx = run.ctx();
    run.assert_code(1);
    let msg = run.error_message();
    for n in needles {
        assert!(
            msg.contains(n),
            "the error should mention {n:?}: {msg}\n{ctx}"
        );
    }
    assert_eq!(
        head_manifest(&dst.url(), repo, "v1", None, None).await,
        None,
        "{repo}:v1 was written\n{ctx}"
    );
}

/// An image manifest padded (with an annotation) to `size` bytes.
fn padded_manifest(img: &Image, size: usize) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(&img.manifest).unwrap();
    let base = serde_json::to_vec(&v).unwrap().len();
    v["annotations"] = json!({"pad": "x".repeat(size - base - 20)});
    let out = serde_json::to_vec(&v).unwrap();
    assert!(out.len() > 4 * 1024 * 1024);
    out
}

fn index_json(children: &[(&str, &str, usize)]) -> Vec<u8> {
    let manifests: Vec<Value> = children
        .iter()
        .map(|(mt, d, size)| json!({"mediaType": mt, "digest": d, "size": size}))
        .collect();
    serde_json::to_vec(
        &json!({"schemaVersion": 2, "mediaType": MT_OCI_INDEX, "manifests": manifests}),
    )
    .unwrap()
}

/// Manifests no honest registry serves: each copy fails with a clear error and writes no tag.
/// - 5 MiB manifest, with `Content-Length` and chunked: "larger than" the 4 MiB limit;
/// - `Content-Type` index but the body's `mediaType` says image manifest;
/// - a body whose `mediaType` (index) disagrees with its own structure (config and layers);
/// - indexes nested 6 deep (the limit is 4);
/// - an index whose child is itself: with content addressing a real loop cannot be written,
///   so the registry serves, under digest D, an index listing D (and claims D in
///   `Docker-Content-Digest`); the copy must end (no endless recursion) with a digest mismatch.
#[tokio::test(flavor = "multi_thread")]
async fn hostile_manifests_are_refused_clearly_and_write_no_tag() {
    let h = Hostile::start(HostileAuth::None).await;
    let dst = Registry::start();
    let img = random_image(40_000, &[4096], "linux/amd64", Format::Oci);
    for repo in ["big", "bigchunked", "liar", "shape", "deep", "loop"] {
        h.serve_image(repo, "", &img);
    }
    let big = padded_manifest(&img, 5 * 1024 * 1024);
    h.route(
        "/v2/big/manifests/v1",
        Reply::manifest(big.clone(), MT_OCI_MANIFEST),
    );
    h.route(
        "/v2/bigchunked/manifests/v1",
        Reply::manifest(big, MT_OCI_MANIFEST).chunked(),
    );
    h.route(
        "/v2/liar/manifests/v1",
        Reply::manifest(img.manifest.clone(), MT_OCI_INDEX),
    );
    let mut shape: Value = serde_json::from_slice(&img.manifest).unwrap();
    shape["mediaType"] = json!(MT_OCI_INDEX);
    h.route(
        "/v2/shape/manifests/v1",
        Reply::manifest(serde_json::to_vec(&shape).unwrap(), MT_OCI_INDEX),
    );

    // deep: v1 -> index 1 -> ... -> index 5 -> the image: six indexes in a chain.
    let mut child = (MT_OCI_MANIFEST, img.digest.clone(), img.manifest.len());
    for level in (0..6).rev() {
        let bytes = index_json(&[(child.0, &child.1, child.2)]);
        let digest = sha256_digest(&bytes);
        let reply = Reply::manifest(bytes.clone(), MT_OCI_INDEX);
        h.route(&format!("/v2/deep/manifests/{digest}"), reply.clone());
        if level == 0 {
            h.route("/v2/deep/manifests/v1", reply);
        }
        child = (MT_OCI_INDEX, digest, bytes.len());
    }

    // loop: v1 lists D; under D the registry serves an index that lists D again.
    let d = sha256_digest(b"an index that contains itself");
    let looped = index_json(&[(MT_OCI_INDEX, &d, 200)]);
    h.route(
        &format!("/v2/loop/manifests/{d}"),
        Reply::manifest(looped, MT_OCI_INDEX).header("docker-content-digest", &d),
    );
    h.route(
        "/v2/loop/manifests/v1",
        Reply::manifest(index_json(&[(MT_OCI_INDEX, &d, 200)]), MT_OCI_INDEX),
    );

    let cases: Vec<(&str, Vec<&str>)> = vec![
        ("big", vec!["larger than", "4194304"]),
        ("bigchunked", vec!["larger than"]),
        ("liar", vec!["media type", MT_OCI_INDEX, MT_OCI_MANIFEST]),
        ("shape", vec![MT_OCI_INDEX, "\"manifests\""]),
        ("deep", vec!["nest deeper than 4"]),
        ("loop", vec!["digest mismatch", &d]),
    ];
    let runs = futures::future::join_all(cases.iter().map(|(repo, _)| {
        let args = copy_args(
            &format!("{}/{repo}:v1", h.host),
            &format!("{}/{repo}:v1", dst.host),
            &[],
        );
        async move { product(&args, &[]).await }
    }))
    .await;
    for ((repo, needles), run) in cases.iter().zip(&runs) {
        assert_refused(run, &dst, repo, needles).await;
    }
    let reqs = dst.requests();
    let puts: Vec<Request> = reqs
        .iter()
        .filter(|r| r.method == "PUT" && r.kind() == Kind::Manifest)
        .cloned()
        .collect();
    assert!(puts.is_empty(), "manifests were written:\n{}", show(&puts));
    // The deep chain was refused at the limit: levels past it were never even fetched.
    let fetched_deep = h
        .seen()
        .iter()
        .filter(|s| s.method == "GET" && s.path.starts_with("/v2/deep/manifests/sha256:"))
        .count();
    assert!(
        fetched_deep <= 4,
        "{fetched_deep} nested indexes fetched past the depth limit"
    );
}

/// Blobs whose served size disagrees with their descriptor, shorter and longer, with and
/// without `Content-Length`, small (200 kB) and big (3 MiB, one streamed PUT): a size-mismatch
/// error, the blob is not committed, no tag.
#[tokio::test(flavor = "multi_thread")]
async fn hostile_blob_size_disagreeing_with_descriptor_is_refused() {
    let h = Hostile::start(HostileAuth::None).await;
    let dst = Registry::start();
    let cases = [
        ("short", -1000i64, false, 200_000),
        ("long", 1000, false, 200_000),
        ("shortchunked", -1000, true, 200_000),
        ("longchunked", 1000, true, 200_000),
        ("shortbig", -1000, false, 3 << 20),
        ("shortbigchunked", -1000, true, 3 << 20),
    ];
    let mut layers = vec![];
    for (i, (repo, delta, chunked, size)) in cases.iter().enumerate() {
        let layer = random_blob(41_000 + i as u64, *size, MT_OCI_LAYER);
        let img = image_with_layers(vec![layer.clone()], "linux/amd64", Format::Oci);
        h.serve_image(repo, "v1", &img);
        let mut served = layer.data.clone();
        if *delta < 0 {
            served.truncate(served.len() - delta.unsigned_abs() as usize);
        } else {
            served.extend(std::iter::repeat_n(0x5a, *delta as usize));
        }
        let mut reply = Reply::blob(served);
        if *chunked {
            reply = reply.chunked();
        }
        h.route(&format!("/v2/{repo}/blobs/{}", layer.digest), reply);
        layers.push(layer);
    }
    let runs = futures::future::join_all(cases.iter().map(|(repo, _, _, _)| {
        let args = copy_args(
            &format!("{}/{repo}:v1", h.host),
            &format!("{}/{repo}:v1", dst.host),
            &[],
        );
        async move { product(&args, &[]).await }
    }))
    .await;
    for (((repo, _, _, _), run), layer) in cases.iter().zip(&runs).zip(&layers) {
        assert_refused(run, &dst, repo, &["size mismatch", &layer.digest]).await;
        assert!(
            !head_blob(&dst.url(), repo, &layer.digest, None, None).await,
            "{repo}: the mis-sized blob was committed"
        );
    }
}

/// A source that 307-redirects blob GETs to other hosts (as registries do with CDNs): the
/// config to another port on 127.0.0.1, the layer to 127.0.0.2. The copy succeeds, and the
/// redirect targets never see the source's `Authorization` header (the source itself does get
/// it, from `--src-creds`).
#[tokio::test(flavor = "multi_thread")]
async fn hostile_blob_redirect_to_another_host_succeeds_without_leaking_credentials() {
    let src = Hostile::start(HostileAuth::Basic {
        user: USER.into(),
        pass: PASS.into(),
    })
    .await;
    let cdn_port = Hostile::start(HostileAuth::None).await;
    let cdn_host = Hostile::start_on("127.0.0.2", HostileAuth::None).await;
    let dst = Registry::start();
    let img = random_image(42_000, &[300_000], "linux/amd64", Format::Oci);
    src.serve_image("lib/app", "v1", &img);
    let targets = [(&img.config, &cdn_port), (&img.layers[0], &cdn_host)];
    for (blob, cdn) in targets {
        let path = format!("/cdn/{}", blob.digest.trim_start_matches("sha256:"));
        cdn.route(&path, Reply::blob(blob.data.clone()));
        src.route(
            &format!("/v2/lib/app/blobs/{}", blob.digest),
            Reply::redirect(&format!("{}{path}?X-Amz-Signature=0123abcd", cdn.url())),
        );
    }
    let creds = format!("{USER}:{PASS}");
    let args = copy_args(
        &format!("{}/lib/app:v1", src.host),
        &format!("{}/mirror/app:v1", dst.host),
        &["--src-creds", &creds, "--debug"],
    );
    let run = product(&args, &[]).await;
    let ctx = run.ctx();
    run.assert_code(0);
    assert_eq!(
        head_manifest(&dst.url(), "mirror/app", "v1", None, None)
            .await
            .as_deref(),
        Some(img.digest.as_str()),
        "{ctx}"
    );
    resolve(&dst, "mirror/app", &img.digest)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{ctx}"));
    assert_no_secrets(&run);

    let expected_auth = format!("Basic {}", b64(&creds));
    for (blob, cdn) in targets {
        let at_src = src.seen_at(&format!("/v2/lib/app/blobs/{}", blob.digest));
        assert!(
            at_src.iter().any(|s| s.method == "GET" && s.status == 307),
            "the source never redirected {}",
            blob.digest
        );
        assert!(
            at_src
                .iter()
                .all(|s| s.header("authorization") == Some(expected_auth.as_str())),
            "the source registry should get the credentials: {at_src:?}"
        );
        let at_cdn = cdn.seen();
        assert!(
            at_cdn.iter().any(|s| s.method == "GET" && s.status == 200),
            "{} never fetched from {}",
            blob.digest,
            cdn.host
        );
        for s in &at_cdn {
            for h in ["authorization", "proxy-authorization", "cookie"] {
                assert!(
                    s.header(h).is_none(),
                    "the redirect target {} received {h}: {:?}",
                    cdn.host,
                    s.headers
                );
            }
        }
    }
}

// =============================================================================================
// 4. Secrets
// =============================================================================================

const USER: &str = "alice";
/// The password the tests give the product.
const PASS: &str = "S3cr3t-P4ss-XYZ";
/// The password of registries the product must fail against (never given to the product).
const OTHER_PASS: &str = "0ther-S3cr3t-QRS";
/// The bearer token given with `--src-registry-token`, and issued by the token service.
const TOKEN: &str = "T0k3n-S3cr3t-JKL";
const OTHER_TOKEN: &str = "0ther-T0k3n-MNO";

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// Every secret and every base64 form of it (padded or not, standard or URL-safe alphabet),
/// including `base64("alice:PASSWORD")` and `base64("AWS:123456789012-auth-token")`.
fn forbidden() -> Vec<String> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let plain = [
        PASS.to_string(),
        OTHER_PASS.to_string(),
        TOKEN.to_string(),
        OTHER_TOKEN.to_string(),
        MOTO_ECR_PASSWORD.to_string(),
        format!("{USER}:{PASS}"),
        format!("{USER}:{OTHER_PASS}"),
        format!("{MOTO_ECR_USER}:{MOTO_ECR_PASSWORD}"),
    ];
    let mut out: Vec<String> = plain.to_vec();
    for p in &plain {
        for e in [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD] {
            out.push(e.encode(p));
        }
    }
    out.sort();
    out.dedup();
    out
}

fn assert_no_secrets(run: &Run) {
    let text = run.text();
    for s in forbidden() {
        assert!(
            !text.contains(&s),
            "the secret {s:?} appears in the output\n{}",
            run.ctx()
        );
    }
}

/// How the source credentials are given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Way {
    /// `--src-creds alice:PASS`
    Creds,
    /// `--src-username alice --src-password PASS`
    UserPass,
    /// `--src-authfile FILE` (docker config.json with `auths.<host>.auth`)
    Authfile,
    /// `ECR_MIRROR_SYNC_SRC_CREDS=alice:PASS` in the environment
    Env,
    /// `--src-registry-token TOKEN`
    Token,
}

const WAYS: [Way; 5] = [
    Way::Creds,
    Way::UserPass,
    Way::Authfile,
    Way::Env,
    Way::Token,
];

/// Output settings each run is repeated with.
const FORMATS: [&[&str]; 2] = [
    &["--debug", "--log-format", "json", "--output", "json"],
    &["--debug"],
];

impl Way {
    fn args(self, authfile: &str) -> (Vec<String>, Vec<(String, String)>) {
        let creds = format!("{USER}:{PASS}");
        match self {
            Way::Creds => (strings(&["--src-creds", &creds]), vec![]),
            Way::UserPass => (
                strings(&["--src-username", USER, "--src-password", PASS]),
                vec![],
            ),
            Way::Authfile => (strings(&["--src-authfile", authfile]), vec![]),
            Way::Env => (
                vec![],
                vec![("ECR_MIRROR_SYNC_SRC_CREDS".to_string(), creds)],
            ),
            Way::Token => (strings(&["--src-registry-token", TOKEN]), vec![]),
        }
    }

    /// The user an error message must name.
    fn user(self) -> Option<&'static str> {
        (self != Way::Token).then_some(USER)
    }
}

/// The source registries of the secrets tests, each holding `lib/app:v1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Src {
    /// htpasswd registry with alice:PASS.
    BasicOk,
    /// htpasswd registry with alice:OTHER_PASS (every given credential fails).
    BasicBad,
    /// Bearer registry: accepts TOKEN; its token service issues TOKEN to alice:PASS.
    BearerOk,
    /// Bearer registry: accepts OTHER_TOKEN, issued to alice:OTHER_PASS only.
    BearerBad,
}

const SRCS: [Src; 4] = [Src::BasicOk, Src::BasicBad, Src::BearerOk, Src::BearerBad];

impl Src {
    fn slug(self) -> &'static str {
        match self {
            Src::BasicOk => "basic-ok",
            Src::BasicBad => "basic-bad",
            Src::BearerOk => "bearer-ok",
            Src::BearerBad => "bearer-bad",
        }
    }

    /// Whether credentials given `way` get in.
    fn admits(self, way: Way) -> bool {
        match self {
            Src::BasicOk => way != Way::Token,
            Src::BearerOk => true,
            Src::BasicBad | Src::BearerBad => false,
        }
    }
}

/// moto, two "ECR" registries (one accepting moto's token, one not), and the four sources.
struct SecretWorld {
    moto: Moto,
    ecr_ok: Registry,
    ecr_bad: Registry,
    basic_ok: Registry,
    basic_bad: Registry,
    bearer_ok: Hostile,
    bearer_bad: Hostile,
    _dir: tempfile::TempDir,
    authfile: String,
    img: Image,
}

impl SecretWorld {
    async fn start() -> SecretWorld {
        let moto = Moto::start();
        let ecr_ok = Registry::start_htpasswd(MOTO_ECR_USER, MOTO_ECR_PASSWORD);
        let ecr_bad = Registry::start_htpasswd(MOTO_ECR_USER, OTHER_PASS);
        let basic_ok = Registry::start_htpasswd(USER, PASS);
        let basic_bad = Registry::start_htpasswd(USER, OTHER_PASS);
        let bearer_ok = Hostile::start(HostileAuth::Bearer {
            token: TOKEN.into(),
            issuer: Some((USER.into(), PASS.into())),
        })
        .await;
        let bearer_bad = Hostile::start(HostileAuth::Bearer {
            token: OTHER_TOKEN.into(),
            issuer: Some((USER.into(), OTHER_PASS.into())),
        })
        .await;
        let img = random_image(43_000, &[20_000], "linux/amd64", Format::Oci);
        push_image(
            &basic_ok.url(),
            "lib/app",
            "v1",
            &img,
            basic_ok.auth(),
            None,
        )
        .await;
        push_image(
            &basic_bad.url(),
            "lib/app",
            "v1",
            &img,
            basic_bad.auth(),
            None,
        )
        .await;
        bearer_ok.serve_image("lib/app", "v1", &img);
        bearer_bad.serve_image("lib/app", "v1", &img);
        let dir = tempfile::tempdir().unwrap();
        let authfile = dir.path().join("auth.json");
        let auth = b64(&format!("{USER}:{PASS}"));
        let auths: serde_json::Map<String, Value> = [
            &basic_ok.host,
            &basic_bad.host,
            &bearer_ok.host,
            &bearer_bad.host,
        ]
        .iter()
        .map(|h| (h.to_string(), json!({"auth": auth})))
        .collect();
        std::fs::write(&authfile, json!({"auths": auths}).to_string()).unwrap();
        SecretWorld {
            moto,
            ecr_ok,
            ecr_bad,
            basic_ok,
            basic_bad,
            bearer_ok,
            bearer_bad,
            authfile: authfile.to_str().unwrap().to_string(),
            _dir: dir,
            img,
        }
    }

    fn host(&self, src: Src) -> &str {
        match src {
            Src::BasicOk => &self.basic_ok.host,
            Src::BasicBad => &self.basic_bad.host,
            Src::BearerOk => &self.bearer_ok.host,
            Src::BearerBad => &self.bearer_bad.host,
        }
    }

    fn ecr_host() -> String {
        format!("{MOTO_ACCOUNT_ID}.dkr.ecr.{REGION}.amazonaws.com")
    }
}

/// Asserts a failure message names `registry` and, when known, `user`, and says "auth".
fn assert_names(msg: &str, registry: &str, user: Option<&str>, ctx: &str) {
    assert!(
        msg.contains(registry),
        "the error must name the registry {registry}: {msg}\n{ctx}"
    );
    if let Some(u) = user {
        assert!(
            msg.contains(u),
            "the error must name the user {u}: {msg}\n{ctx}"
        );
    }
    assert!(
        msg.to_lowercase().contains("auth"),
        "the error must say it is about authentication: {msg}\n{ctx}"
    );
}

/// `copy` with the source credentials given every way, against sources that accept and
/// refuse them, into ECR (moto's token), with `--debug` + JSON logs + JSON output and with
/// `--debug` + text; then against an ECR registry refusing moto's token; then
/// `--show-settings`. No secret, nor its base64, ever appears on stdout or stderr; failures
/// name the registry and the user.
#[tokio::test(flavor = "multi_thread")]
async fn secrets_copy_with_every_credential_source_never_leak() {
    let w = SecretWorld::start().await;
    let ecr_host = SecretWorld::ecr_host();
    let mut cases = vec![];
    for (fi, fmt) in FORMATS.iter().enumerate() {
        for way in WAYS {
            for src in SRCS {
                cases.push((fi, *fmt, way, src));
            }
        }
    }
    let env_base = w.moto.env();
    let endpoint = w.ecr_ok.url();
    let runs = {
        let mut out = vec![];
        for chunk in cases.chunks(4) {
            let batch = futures::future::join_all(chunk.iter().map(|(fi, fmt, way, src)| {
                let (mut extra, way_env) = way.args(&w.authfile);
                extra.extend(strings(fmt));
                extra.extend(strings(&["--registry-endpoint", &endpoint]));
                let dest =
                    format!("{ecr_host}/sec/{}-{:?}-{fi}:v1", src.slug(), way).to_lowercase();
                let extra_refs: Vec<&str> = extra.iter().map(String::as_str).collect();
                let args =
                    copy_args_plain(&format!("{}/lib/app:v1", w.host(*src)), &dest, &extra_refs);
                let mut env = env_base.clone();
                env.extend(way_env);
                async move { product(&args, &env).await }
            }))
            .await;
            out.extend(batch);
        }
        out
    };
    for ((_, _, way, src), run) in cases.iter().zip(&runs) {
        assert_no_secrets(run);
        let ctx = run.ctx();
        if src.admits(*way) {
            run.assert_code(0);
        } else {
            run.assert_code(1);
            assert_names(&run.error_message(), w.host(*src), way.user(), &ctx);
        }
    }
    // Every admitted copy really landed in ECR.
    let landed = head_manifest(
        &w.ecr_ok.url(),
        "sec/bearer-ok-token-0",
        "v1",
        w.ecr_ok.auth(),
        None,
    )
    .await;
    assert_eq!(landed.as_deref(), Some(w.img.digest.as_str()));

    // ECR refusing moto's token: the error names the ECR registry and the user AWS.
    let bad_endpoint = w.ecr_bad.url();
    for fmt in FORMATS {
        let mut extra = strings(&["--src-creds", &format!("{USER}:{PASS}")]);
        extra.extend(strings(fmt));
        extra.extend(strings(&["--registry-endpoint", &bad_endpoint]));
        let extra_refs: Vec<&str> = extra.iter().map(String::as_str).collect();
        let args = copy_args_plain(
            &format!("{}/lib/app:v1", w.basic_ok.host),
            &format!("{ecr_host}/sec/ecr-bad:v1"),
            &extra_refs,
        );
        let run = product(&args, &w.moto.env()).await;
        assert_no_secrets(&run);
        run.assert_code(1);
        assert_names(&run.error_message(), &ecr_host, Some("AWS"), &run.ctx());
    }

    // --show-settings: every way, secrets redacted.
    for way in WAYS {
        let (mut extra, way_env) = way.args(&w.authfile);
        extra.push("--show-settings".into());
        let extra_refs: Vec<&str> = extra.iter().map(String::as_str).collect();
        let args = copy_args_plain(
            &format!("{}/lib/app:v1", w.basic_ok.host),
            &format!("{ecr_host}/sec/show:v1"),
            &extra_refs,
        );
        let mut env = w.moto.env();
        env.extend(way_env);
        let run = product(&args, &env).await;
        run.assert_code(0);
        assert_no_secrets(&run);
    }
}

/// `sync` and `list --check` with the source credentials given every way, over four marked
/// repositories (one per source kind: two accept the credentials, two refuse them), with
/// `--debug` + JSON logs + JSON output and with `--debug` + text; then against an ECR registry
/// refusing moto's token; then `--show-settings`. No secret leaks; failures name the registry
/// and the user.
#[tokio::test(flavor = "multi_thread")]
async fn secrets_sync_and_list_with_every_credential_source_never_leak() {
    let w = SecretWorld::start().await;
    for src in SRCS {
        let image = format!("{}/lib/app", w.host(src));
        create_repo(
            &w.moto,
            &format!("sec/{}", src.slug()),
            &[("upstream-image", &image), ("upstream-tags", "v1")],
        )
        .await;
    }
    let env_ok = env_for(&w.moto, &w.ecr_ok.url());
    for way in WAYS {
        for fmt in FORMATS {
            let (mut extra, way_env) = way.args(&w.authfile);
            extra.extend(strings(fmt));
            let mut env = env_ok.clone();
            env.extend(way_env);

            let mut args = strings(&["sync", "--insecure-policy"]);
            args.extend(extra.iter().cloned());
            let run = product(&args, &env).await;
            assert_no_secrets(&run);
            run.assert_code(1);
            if fmt.contains(&"json") {
                for src in SRCS {
                    let item = run.item(&format!("sec/{}", src.slug()), "v1");
                    let ctx = run.ctx();
                    if src.admits(way) {
                        assert!(
                            item["outcome"] == "copied" || item["outcome"] == "skipped",
                            "{item}\n{ctx}"
                        );
                    } else {
                        assert_eq!(item["outcome"], "failed", "{item}\n{ctx}");
                        let reason = item["error"]
                            .as_str()
                            .or(item["reason"].as_str())
                            .unwrap_or_default();
                        assert_names(reason, w.host(src), way.user(), &ctx);
                    }
                }
            }

            let mut args = strings(&["list", "--check"]);
            args.extend(extra.iter().cloned());
            let run = product(&args, &env).await;
            assert_no_secrets(&run);
            assert!(
                matches!(run.code(), Some(0 | 1)),
                "list --check must finish with 0 or 1\n{}",
                run.ctx()
            );
        }
    }
    // The admitted repositories are mirrored.
    for src in [Src::BasicOk, Src::BearerOk] {
        let d = head_manifest(
            &w.ecr_ok.url(),
            &format!("sec/{}", src.slug()),
            "v1",
            w.ecr_ok.auth(),
            None,
        )
        .await;
        assert_eq!(d.as_deref(), Some(w.img.digest.as_str()), "{src:?}");
    }

    // ECR refusing moto's token.
    let env_bad = env_for(&w.moto, &w.ecr_bad.url());
    let ecr_host = SecretWorld::ecr_host();
    for fmt in FORMATS {
        for cmd in [&["sync", "--insecure-policy"][..], &["list", "--check"]] {
            let mut args = strings(cmd);
            args.extend(strings(&["--src-creds", &format!("{USER}:{PASS}")]));
            args.extend(strings(fmt));
            let run = product(&args, &env_bad).await;
            assert_no_secrets(&run);
            if cmd[0] == "sync" {
                run.assert_code(1);
                if fmt.contains(&"json") {
                    let item = run.item("sec/basic-ok", "v1");
                    let reason = item["error"]
                        .as_str()
                        .or(item["reason"].as_str())
                        .unwrap_or_default();
                    assert_names(reason, &ecr_host, Some("AWS"), &run.ctx());
                }
            }
        }
    }

    // --show-settings for both commands, every way.
    for way in WAYS {
        for cmd in ["sync", "list"] {
            let (extra, way_env) = way.args(&w.authfile);
            let mut args = strings(&[cmd, "--show-settings"]);
            args.extend(extra);
            let mut env = env_ok.clone();
            env.extend(way_env);
            let run = product(&args, &env).await;
            run.assert_code(0);
            assert_no_secrets(&run);
        }
    }
}

// =============================================================================================
// 5. Fuzz regressions
// =============================================================================================
// The seed corpus is replayed on every `cargo test`; an input that crashed a target in
// tests/fuzz gets its own test here, calling the same function, which must return (Ok or Err)
// instead of panicking. Fuzzing so far (see docs/reliability.md) found no crash.

/// Every file of the seed corpus in `tests/fuzz/corpus/<target>/` goes through the functions
/// its fuzz target calls, so `cargo test` (stable, no cargo-fuzz) keeps replaying the corpus.
#[test]
fn fuzz_seed_corpus_replays_without_panics() {
    use ecr_mirror_sync::mirror::tags::{spec_from_tags, TagKeys};
    use ecr_mirror_sync::oci::manifest::{classify, sha256_digest as digest, Manifest};

    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz/corpus");
    let files = |target: &str| -> Vec<Vec<u8>> {
        let dir = root.join(target);
        let mut out: Vec<Vec<u8>> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| std::fs::read(e.unwrap().path()).unwrap())
            .collect();
        assert!(!out.is_empty(), "empty corpus {}", dir.display());
        out.sort();
        out
    };
    for data in files("policy_parse") {
        let _ = ecr_mirror_sync::policy::Policy::from_slice(&data, "fuzz");
    }
    for data in files("resource_tags") {
        let text = String::from_utf8_lossy(&data);
        let mut lines = text.split('\n');
        let repository = lines.next().unwrap_or_default();
        let tags: Vec<(String, String)> = lines
            .map(|l| match l.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (l.to_string(), String::new()),
            })
            .collect();
        let _ = spec_from_tags(repository, &tags, &TagKeys::default());
    }
    for data in files("reference_parse") {
        let s = String::from_utf8_lossy(&data);
        if let Ok(r) = ecr_mirror_sync::oci::TaggedRef::parse(&s) {
            assert_eq!(
                ecr_mirror_sync::oci::TaggedRef::parse(&r.to_string()),
                Ok(r)
            );
        }
        let _ = ecr_mirror_sync::oci::ImageRef::parse(&s);
        let _ = ecr_mirror_sync::policy::ImageName::parse(&s);
    }
    for data in files("manifest_parse") {
        let Some((_, body)) = data.split_first() else {
            continue;
        };
        for header in [None, Some(MT_OCI_INDEX), Some(MT_OCI_MANIFEST)] {
            if let Ok(media_type) = classify(body, header, "fuzz") {
                let m = Manifest {
                    bytes: body.to_vec().into(),
                    media_type,
                    digest: digest(body),
                };
                let _ = m.parse("fuzz");
            }
        }
    }
}

/// Found by the `resource_tags` fuzz target (minimised): a Docker Hub short name of 240
/// characters is a valid `upstream-image` (AWS allows 256), but `spec_from_tags` normalises it
/// to `docker.io/library/<name>` (258 characters), and `spec_to_tags`, documented as its
/// inverse and used to write tags, writes that back: a value AWS refuses and that
/// `spec_from_tags` itself rejects as too long. The round trip must hold (either the long name
/// is refused up front, or the tags are written in a form that fits).
#[test]
fn fuzz_regression_resource_tags_round_trip_of_a_long_docker_hub_name() {
    use ecr_mirror_sync::mirror::tags::{spec_from_tags, spec_to_tags, TagKeys};
    let keys = TagKeys::default();
    let tags = vec![
        ("upstream-image".to_string(), "a".repeat(240)),
        ("upstream-tags".to_string(), "v1".to_string()),
    ];
    let parsed = spec_from_tags("mirror/a", &tags, &keys);
    if let Some(Ok(spec)) = parsed.spec {
        let written = spec_to_tags(&spec, &keys);
        let again = spec_from_tags("mirror/a", &written, &keys);
        assert_eq!(
            again.spec,
            Some(Ok(spec)),
            "spec_to_tags wrote {written:?}, which does not read back"
        );
    }
}
