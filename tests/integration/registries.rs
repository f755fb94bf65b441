//! The tool against the real registries' manners: Amazon ECR's data plane, Docker Hub,
//! registry.k8s.io and quay.io, each a [`Personality`] in front of a real `docker-registry`
//! (see `support/personality.rs`; sources in `docs/registries.md`).
//!
//! Two groups:
//! - `personality_*`: the harness itself, driven with plain HTTP, so that a failure of the
//!   tool below is known to be the tool's and not the proxy's;
//! - the rest run the product binary (`copy`, `sync`) against moto plus the personalities
//!   and assert what a correct tool must do. They all run: each one that waited for an
//!   issue-13 fix was un-ignored with its fix. The one ignored function,
//!   `serve_personality_for_benchmarks`, is not a test but a server for `bench/` and
//!   `make demo`.
//!
//! Every claim about the wire comes from the personalities' hit logs and counters or the
//! backing registries' access logs, never from the product's report alone.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::personality::{
    wildcard_match, Listener, Manners, PHit, Personality, TagMutability, ECR_MANIFEST_MAX,
    K8S_BACKEND_PREFIX,
};
use crate::support::{
    describe, head_manifest, index_of, push_image, push_index, random_image, run_async,
    sha256_digest, Format, Image, Index, Kind, Moto, Registry, MOTO_ECR_PASSWORD, MOTO_ECR_USER,
};

// ---------------------------------------------------------------------------------------------
// Setup
// ---------------------------------------------------------------------------------------------

/// moto, an upstream registry behind a personality, and an "ECR" registry (moto's token user)
/// behind the ECR personality.
struct Estate {
    moto: Moto,
    up: Registry,
    ecr_reg: Registry,
    src: Personality,
    ecr: Personality,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Upstream {
    Plain,
    Hub { budget: u64 },
    K8s,
    Quay { page: usize },
}

impl Estate {
    async fn start(upstream: Upstream) -> Estate {
        let up = Registry::start();
        let ecr_reg = Registry::start_htpasswd(MOTO_ECR_USER, MOTO_ECR_PASSWORD);
        let src = match upstream {
            Upstream::Plain => Personality::start(&up.url(), Manners::default()).await,
            Upstream::Hub { budget } => Personality::docker_hub(&up, budget).await,
            Upstream::K8s => Personality::k8s(&up).await,
            Upstream::Quay { page } => Personality::quay(&up, page).await,
        };
        let ecr = Personality::ecr(&ecr_reg).await;
        Estate {
            moto: Moto::start(),
            up,
            ecr_reg,
            src,
            ecr,
        }
    }

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

    /// `HOST/<repo>` on the upstream personality.
    fn upstream(&self, repo: &str) -> String {
        format!("{}/{repo}", self.src.host)
    }

    async fn create_repo(&self, name: &str, upstream_repo: &str, tags: &str) {
        self.create_repo_with(name, upstream_repo, tags, json!({}))
            .await;
    }

    /// CreateRepository with the mirror tags and `extra` fields (e.g. mutability).
    async fn create_repo_with(&self, name: &str, upstream_repo: &str, tags: &str, extra: Value) {
        let mut body = json!({
            "repositoryName": name,
            "tags": [
                {"Key": "upstream-image", "Value": self.upstream(upstream_repo)},
                {"Key": "upstream-tags", "Value": tags},
            ],
        });
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        let r = self.moto.ecr_api("CreateRepository", body).await;
        assert_eq!(r["repository"]["repositoryName"], name, "{r}");
    }

    async fn push_up(&self, repo: &str, tag: &str, img: &Image) {
        push_image(&self.up.url(), repo, tag, img, None, None).await;
    }

    async fn push_up_index(&self, repo: &str, tag: &str, idx: &Index) {
        push_index(&self.up.url(), repo, tag, idx, None, None).await;
    }

    /// The digest ECR holds for a tag, read from the backing registry (around the proxy).
    async fn ecr_digest(&self, repo: &str, reference: &str) -> Option<String> {
        head_manifest(
            &self.ecr_reg.url(),
            repo,
            reference,
            self.ecr_reg.auth(),
            None,
        )
        .await
    }

    async fn sync(&self, extra: &[&str]) -> Run {
        self.run(
            &[&["sync", "--output", "json"], extra].concat(),
            &self.env(),
        )
        .await
    }

    async fn run(&self, args: &[&str], env: &[(String, String)]) -> Run {
        Run::new(args, run_async(args, env).await)
    }
}

/// One finished run of the product, with its JSON Lines records.
struct Run {
    args: Vec<String>,
    out: std::process::Output,
    records: Vec<(String, Value)>,
}

impl Run {
    fn new(args: &[&str], out: std::process::Output) -> Run {
        let records = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter_map(|v| Some((v["type"].as_str()?.to_string(), v["data"].clone())))
            .collect();
        Run {
            args: args.iter().map(|a| a.to_string()).collect(),
            out,
            records,
        }
    }

    fn ctx(&self) -> String {
        format!(
            "$ ecr-mirror-sync {}\n{}",
            self.args.join(" "),
            describe(&self.out)
        )
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

    fn outcome(&self, repo: &str, tag: &str) -> String {
        self.item(repo, tag)["outcome"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

/// A small single-platform image plus one layer over 1 MiB (the tool streams it, like every
/// blob, in the one PUT that commits it).
fn img_with_big_layer(seed: u64) -> Image {
    random_image(seed, &[1_600_000, 900], "linux/amd64", Format::Oci)
}

fn small_img(seed: u64) -> Image {
    random_image(seed, &[1500, 700], "linux/amd64", Format::Oci)
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

fn show(hits: &[PHit]) -> String {
    hits.iter()
        .map(|h| {
            format!(
                "  {:?} {} {}{} -> {}{}\n",
                h.listener,
                h.method,
                h.path,
                h.query
                    .as_deref()
                    .map(|q| format!("?{q}"))
                    .unwrap_or_default(),
                h.status,
                if h.authorization.is_some() {
                    " (Authorization)"
                } else {
                    ""
                }
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The harness itself, with plain HTTP
// ---------------------------------------------------------------------------------------------

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json, \
    application/vnd.docker.distribution.manifest.list.v2+json";

#[test]
fn personality_wildcard_filters_match_like_ecr() {
    for (pat, tag, want) in [
        ("latest", "latest", true),
        ("latest", "latest2", false),
        ("dev-*", "dev-1", true),
        ("dev-*", "dev-", true),
        ("dev-*", "prod-1", false),
        ("*-rc", "1.2-rc", true),
        ("v*.*-beta", "v1.2-beta", true),
        ("v*.*-beta", "v12-beta", false),
        ("*", "anything", true),
    ] {
        assert_eq!(wildcard_match(pat, tag), want, "{pat} vs {tag}");
    }
    let m = TagMutability::ImmutableWithExclusion(vec!["latest".into(), "dev-*".into()]);
    assert!(!m.refuses_overwrite("latest"));
    assert!(!m.refuses_overwrite("dev-7"));
    assert!(m.refuses_overwrite("v1"));
    assert!(TagMutability::Immutable.refuses_overwrite("latest"));
    assert!(!TagMutability::Mutable.refuses_overwrite("v1"));
}

#[tokio::test(flavor = "multi_thread")]
async fn personality_ecr_manners() {
    let reg = Registry::start_htpasswd(MOTO_ECR_USER, MOTO_ECR_PASSWORD);
    let ecr = Personality::ecr(&reg).await;
    let c = client();
    let base = ecr.url();
    let auth = (MOTO_ECR_USER, Some(MOTO_ECR_PASSWORD));

    // Basic auth passes through to the registry.
    let r = c.get(format!("{base}/v2/")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = c
        .get(format!("{base}/v2/"))
        .basic_auth(auth.0, auth.1)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // PATCH answers 201; the closing PUT commits.
    let data = vec![7u8; 4096];
    let digest = sha256_digest(&data);
    let post = c
        .post(format!("{base}/v2/a/app/blobs/uploads/"))
        .basic_auth(auth.0, auth.1)
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 202);
    let loc = post.headers()["location"].to_str().unwrap().to_string();
    assert!(
        loc.starts_with(&base),
        "Location rewritten to the proxy: {loc}"
    );
    let patch = c
        .patch(&loc)
        .basic_auth(auth.0, auth.1)
        .header("content-type", "application/octet-stream")
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(patch.status(), 201, "ECR answers a PATCH with 201");
    let loc = patch.headers()["location"].to_str().unwrap().to_string();
    let sep = if loc.contains('?') { '&' } else { '?' };
    let put = c
        .put(format!("{loc}{sep}digest={digest}"))
        .basic_auth(auth.0, auth.1)
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 201);

    // DELETE of an upload session: 405.
    let post = c
        .post(format!("{base}/v2/a/app/blobs/uploads/"))
        .basic_auth(auth.0, auth.1)
        .send()
        .await
        .unwrap();
    let loc = post.headers()["location"].to_str().unwrap().to_string();
    let del = c
        .delete(&loc)
        .basic_auth(auth.0, auth.1)
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), 405);

    // An image pushed through the proxy commits its blobs; GET lacks the digest, HEAD has it.
    let img = small_img(11);
    push_image(&base, "a/app", "v1", &img, reg.auth(), None).await;
    let get = c
        .get(format!("{base}/v2/a/app/manifests/v1"))
        .basic_auth(auth.0, auth.1)
        .header("accept", ACCEPT)
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 200);
    assert!(get.headers().get("docker-content-digest").is_none());
    let head = c
        .head(format!("{base}/v2/a/app/manifests/v1"))
        .basic_auth(auth.0, auth.1)
        .header("accept", ACCEPT)
        .send()
        .await
        .unwrap();
    assert_eq!(head.headers()["docker-content-digest"], img.digest.as_str());

    // Mounts: refused (202, a fresh session) with BLOB_MOUNTING off, even from a repository
    // whose committed manifest references the blob; with it on, only from such a repository.
    let layer = &img.layers[0].digest;
    let mount = |from: &str| {
        c.post(format!(
            "{base}/v2/b/app/blobs/uploads/?mount={layer}&from={from}"
        ))
        .basic_auth(auth.0, auth.1)
        .send()
    };
    assert_eq!(mount("a/app").await.unwrap().status(), 202);
    ecr.set_manners(|m| m.blob_mounting = true);
    assert_eq!(mount("a/app").await.unwrap().status(), 201);
    // `digest` was uploaded to a/app but no manifest references it: not mountable.
    let r = c
        .post(format!(
            "{base}/v2/c/app/blobs/uploads/?mount={digest}&from=a/app"
        ))
        .basic_auth(auth.0, auth.1)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(ecr.counters().mounts_refused, 2);
    assert_eq!(ecr.counters().mounts_forwarded, 1);

    // Immutable tags.
    let img2 = small_img(12);
    ecr.set_mutability("a/app", TagMutability::Immutable);
    let put = c
        .put(format!("{base}/v2/a/app/manifests/v1"))
        .basic_auth(auth.0, auth.1)
        .header("content-type", &img2.media_type)
        .body(img2.manifest.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 400);
    let body: Value = put.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], "TAG_INVALID", "{body}");
    let msg = body["errors"][0]["message"].as_str().unwrap();
    assert!(
        msg.contains("'v1' already exists in the 'a/app' repository"),
        "{msg}"
    );
    ecr.set_mutability(
        "a/app",
        TagMutability::ImmutableWithExclusion(vec!["v*".into()]),
    );
    push_image(&base, "a/app", "v1", &img2, reg.auth(), None).await;
    assert_eq!(
        head_manifest(&reg.url(), "a/app", "v1", reg.auth(), None).await,
        Some(img2.digest.clone())
    );
    assert_eq!(ecr.counters().immutable_refusals, 1);

    // Manifests over 4 MiB.
    let big = format!(
        "{{\"schemaVersion\":2,\"annotations\":{{\"x\":\"{}\"}}}}",
        "a".repeat(ECR_MANIFEST_MAX)
    );
    let put = c
        .put(format!("{base}/v2/a/app/manifests/big"))
        .basic_auth(auth.0, auth.1)
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 405);
    let body: Value = put.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], "UNSUPPORTED", "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn personality_hub_manners() {
    let up = Registry::start();
    let img = small_img(21);
    push_image(&up.url(), "library/app", "v1", &img, None, None).await;
    let hub = Personality::docker_hub(&up, 2).await;
    let c = client();
    let base = hub.url();

    // Anonymous: a challenge naming the realm and the scope.
    let r = c
        .head(format!("{base}/v2/library/app/manifests/v1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let ch = r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        ch.starts_with(&format!("Bearer realm=\"{base}/token\"")),
        "{ch}"
    );
    assert!(ch.contains("scope=\"repository:library/app:pull\""), "{ch}");
    let tok: Value = c
        .get(format!(
            "{base}/token?service=registry.docker.io&scope=repository:library/app:pull"
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(tok["expires_in"], 300);
    let issued = tok["issued_at"].as_str().unwrap_or_default();
    assert!(
        time::OffsetDateTime::parse(issued, &time::format_description::well_known::Rfc3339).is_ok(),
        "issued_at is not RFC 3339: {tok}"
    );
    let bearer = format!("Bearer {}", tok["token"].as_str().unwrap());

    // A token for one repository does not open another.
    let r = c
        .head(format!("{base}/v2/library/other/manifests/v1"))
        .header("authorization", &bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // HEAD spends nothing, GET one pull; both carry the headers.
    let head = |c: &reqwest::Client| {
        c.head(format!("{base}/v2/library/app/manifests/v1"))
            .header("authorization", &bearer)
            .header("accept", ACCEPT)
            .send()
    };
    let get = |c: &reqwest::Client| {
        c.get(format!("{base}/v2/library/app/manifests/v1"))
            .header("authorization", &bearer)
            .header("accept", ACCEPT)
            .send()
    };
    let r = head(&c).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["ratelimit-limit"], "100;w=21600");
    assert_eq!(r.headers()["ratelimit-remaining"], "2;w=21600");
    assert_eq!(r.headers()["docker-content-digest"], img.digest.as_str());
    for left in [1, 0] {
        let r = get(&c).await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.headers()["ratelimit-remaining"],
            format!("{left};w=21600").as_str()
        );
    }
    let r = get(&c).await.unwrap();
    assert_eq!(r.status(), 429);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], "TOOMANYREQUESTS");
    assert_eq!(head(&c).await.unwrap().status(), 200, "HEAD works at zero");
    let n = hub.counters();
    assert_eq!((n.pulls_spent, n.rate_limited), (2, 1));

    // A repository that does not exist: 401, not 404 (even with a token for its scope).
    let tok: Value = c
        .get(format!(
            "{base}/token?service=registry.docker.io&scope=repository:library/nope:pull"
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let r = c
        .head(format!("{base}/v2/library/nope/manifests/v1"))
        .header(
            "authorization",
            format!("Bearer {}", tok["token"].as_str().unwrap()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("error=\"insufficient_scope\""));
    // A missing tag of an existing repository stays 404.
    let r = c
        .head(format!("{base}/v2/library/app/manifests/v404"))
        .header("authorization", &bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    // A blob GET: 307 to the CDN, which refuses Authorization and serves a signed URL.
    let layer = &img.layers[0];
    let r = c
        .get(format!("{base}/v2/library/app/blobs/{}", layer.digest))
        .header("authorization", &bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 307);
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    assert!(loc.starts_with(&hub.side_url()), "{loc}");
    let r = c
        .get(&loc)
        .header("authorization", &bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = c.get(&loc).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().as_ref(), layer.data.as_slice());
    let r = c
        .get(loc.replace("X-Amz-Signature=", "X-Amz-Signature=0"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(hub.side_hits_with_authorization().len(), 1);

    // Expired tokens are challenged again.
    hub.expire_tokens();
    assert_eq!(head(&c).await.unwrap().status(), 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn personality_k8s_and_quay_manners() {
    let up = Registry::start();
    let img = small_img(31);
    push_image(&up.url(), "pause", "3.9", &img, None, None).await;
    for t in ["a", "b", "c", "d", "e"] {
        push_image(&up.url(), "pause", t, &img, None, None).await;
    }
    let c = client();

    let k8s = Personality::k8s(&up).await;
    // `/v2/` challenges for a correlation token; nothing else needs it.
    let r = c.get(format!("{}/v2/", k8s.url())).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let ch = r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        ch.starts_with(&format!("Bearer realm=\"{}/token\"", k8s.url())),
        "{ch}"
    );
    let tok: Value = c
        .get(format!("{}/token", k8s.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(tok["expires_in"], 3600);
    let r = c
        .get(format!("{}/v2/", k8s.url()))
        .bearer_auth(tok["token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = c
        .put(format!("{}/v2/pause/manifests/x", k8s.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    for (method, path) in [
        (reqwest::Method::GET, "/v2/pause/manifests/3.9".to_string()),
        (reqwest::Method::HEAD, "/v2/pause/manifests/3.9".to_string()),
        (
            reqwest::Method::GET,
            format!("/v2/pause/blobs/{}", img.layers[0].digest),
        ),
        (
            reqwest::Method::HEAD,
            format!("/v2/pause/blobs/{}", img.config.digest),
        ),
    ] {
        let r = c
            .request(method.clone(), format!("{}{path}", k8s.url()))
            .header("accept", ACCEPT)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 307, "{method} {path}");
        let loc = r.headers()["location"].to_str().unwrap().to_string();
        let want = format!(
            "{}/v2/{K8S_BACKEND_PREFIX}/{}?rid=",
            k8s.side_url(),
            path.trim_start_matches("/v2/")
        );
        assert!(loc.starts_with(&want), "{loc} should start with {want}");
        let r = c
            .request(method.clone(), &loc)
            .header("accept", ACCEPT)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{method} {loc}");
    }
    assert_eq!(k8s.counters().redirects, 4);
    assert_eq!(k8s.side_hits().len(), 4);
    assert!(k8s.side_hits_with_authorization().is_empty());

    let quay = Personality::quay(&up, 2).await;
    let r = c
        .head(format!("{}/v2/pause/manifests/3.9", quay.url()))
        .header("accept", ACCEPT)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("docker-content-digest").is_none());
    let mut url = format!("{}/v2/pause/tags/list", quay.url());
    let mut all = vec![];
    let mut pages = 0;
    loop {
        let r = c.get(&url).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let link = r
            .headers()
            .get("link")
            .map(|l| l.to_str().unwrap().to_string());
        let v: Value = r.json().await.unwrap();
        let tags = v["tags"].as_array().unwrap();
        assert!(tags.len() <= 2, "{v}");
        all.extend(tags.iter().map(|t| t.as_str().unwrap().to_string()));
        pages += 1;
        match link {
            Some(l) => {
                let path = l.trim_start_matches('<').split('>').next().unwrap();
                assert!(path.contains("n=2&last="), "{l}");
                url = format!("{}{path}", quay.url());
            }
            None => break,
        }
    }
    assert_eq!(all, ["3.9", "a", "b", "c", "d", "e"]);
    assert_eq!(pages, 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn personality_latency_and_cpu_accounting() {
    let up = Registry::start();
    let p = Personality::start(&up.url(), Manners::default()).await;
    let c = client();
    let before = p.cpu();
    let t = Instant::now();
    for _ in 0..5 {
        assert_eq!(
            c.get(format!("{}/v2/", p.url()))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
    }
    let fast = t.elapsed();
    p.set_manners(|m| m.delay = Duration::from_millis(60));
    let t = Instant::now();
    for _ in 0..5 {
        c.get(format!("{}/v2/", p.url())).send().await.unwrap();
    }
    let slow = t.elapsed();
    assert!(slow >= Duration::from_millis(300), "{slow:?}");
    assert!(slow > fast, "{slow:?} vs {fast:?}");
    let cpu = p.cpu();
    assert_eq!(cpu.requests - before.requests, 10);
    assert!(cpu.cpu > Duration::ZERO);
    // A proxy that forwards a ping must not cost more than a few ms of CPU per request,
    // even unoptimised; otherwise it would be what a benchmark measures.
    assert!(
        cpu.per_request() < Duration::from_millis(20),
        "{:?}",
        cpu.per_request()
    );
    assert_eq!(p.counters().count("GET", Kind::Other), 10);
}

// ---------------------------------------------------------------------------------------------
// Cold syncs through each pair
// ---------------------------------------------------------------------------------------------

/// A cold sync of `library/app:v1` (one big layer) and `:v2` (two platforms), then a no-op;
/// returns the estate. The cold sync costs ECR exactly two upload requests per blob, the big
/// layer's included: the POST that opens the session and one PUT carrying the body.
async fn cold_then_noop(upstream: Upstream) -> Estate {
    let e = Estate::start(upstream).await;
    let a = img_with_big_layer(101);
    let b = two_platforms(102);
    e.push_up("library/app", "v1", &a).await;
    e.push_up_index("library/app", "v2", &b).await;
    e.create_repo("mirror/app", "library/app", "v1/v2").await;

    let run = e.sync(&[]).await;
    let ctx = run.ctx();
    run.assert_code(0);
    for (tag, digest) in [("v1", &a.digest), ("v2", &b.digest)] {
        assert_eq!(run.outcome("mirror/app", tag), "copied", "{ctx}");
        assert_eq!(
            e.ecr_digest("mirror/app", tag).await.as_ref(),
            Some(digest),
            "{ctx}"
        );
    }
    let side_auth = e.src.side_hits_with_authorization();
    assert!(
        side_auth.is_empty(),
        "credentials sent to a redirect target:\n{}",
        show(&side_auth)
    );
    let blobs: BTreeSet<&str> = a
        .blobs()
        .chain(b.images.iter().flat_map(|i| i.blobs()))
        .map(|x| x.digest.as_str())
        .collect();
    let c = e.ecr.counters();
    let ecr_hits = show(&e.ecr.hits());
    assert_eq!(c.count("POST", Kind::Upload), blobs.len(), "{ecr_hits}");
    assert_eq!(c.count("PUT", Kind::Upload), blobs.len(), "{ecr_hits}");
    assert_eq!(c.count("PATCH", Kind::Upload), 0, "{ecr_hits}");
    for d in &blobs {
        assert_eq!(upload_commits(&e.ecr.hits(), d), 1, "{d}\n{ecr_hits}");
    }

    e.src.clear();
    e.ecr.clear();
    let noop = e.sync(&[]).await;
    noop.assert_code(0);
    for tag in ["v1", "v2"] {
        assert_eq!(noop.outcome("mirror/app", tag), "skipped", "{}", noop.ctx());
    }
    let ecr_writes: Vec<PHit> = e
        .ecr
        .hits()
        .into_iter()
        .filter(|h| matches!(h.method.as_str(), "PUT" | "POST" | "PATCH" | "DELETE"))
        .collect();
    assert!(
        ecr_writes.is_empty(),
        "a no-op wrote:\n{}",
        show(&ecr_writes)
    );
    e
}

#[tokio::test(flavor = "multi_thread")]
async fn plain_upstream_to_ecr_cold_and_noop() {
    let e = cold_then_noop(Upstream::Plain).await;
    // No upload session is abandoned (ECR would answer its DELETE with 405).
    assert_eq!(e.ecr.counters().count("DELETE", Kind::Upload), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn hub_to_ecr_cold_and_noop() {
    let e = cold_then_noop(Upstream::Hub { budget: 100 }).await;
    // The no-op spends no pulls: HEADs only.
    let n = e.src.counters();
    assert_eq!(n.pulls_spent, 0, "{}", show(&e.src.hits()));
    assert_eq!(n.count("GET", Kind::Manifest), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn k8s_to_ecr_cold_and_noop() {
    let e = cold_then_noop(Upstream::K8s).await;
    // Every manifest and blob request went through a redirect.
    assert!(e.src.counters().redirects > 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn quay_to_ecr_cold_and_noop() {
    let e = cold_then_noop(Upstream::Quay { page: 1 }).await;
    // quay's HEAD has no digest: the no-op costs one GET per tag, no more.
    assert!(
        e.src.counters().count("GET", Kind::Manifest) <= 2,
        "{}",
        show(&e.src.hits())
    );
}

/// Small images only: what works against ECR's manners today, through each upstream
/// personality.
async fn cold_small(upstream: Upstream) -> Estate {
    let e = Estate::start(upstream).await;
    let a = small_img(201);
    let b = two_platforms(202);
    e.push_up("library/app", "v1", &a).await;
    e.push_up_index("library/app", "v2", &b).await;
    e.create_repo("mirror/app", "library/app", "v1/v2").await;
    let run = e.sync(&[]).await;
    let ctx = run.ctx();
    run.assert_code(0);
    for (tag, digest) in [("v1", &a.digest), ("v2", &b.digest)] {
        assert_eq!(
            e.ecr_digest("mirror/app", tag).await.as_ref(),
            Some(digest),
            "{ctx}"
        );
    }
    let side_auth = e.src.side_hits_with_authorization();
    assert!(side_auth.is_empty(), "{}", show(&side_auth));
    let noop = e.sync(&[]).await;
    noop.assert_code(0);
    e
}

#[tokio::test(flavor = "multi_thread")]
async fn k8s_to_ecr_small_images() {
    let e = cold_small(Upstream::K8s).await;
    assert!(e.src.counters().redirects > 0);
    let side = e.src.side_hits();
    assert!(
        side.iter().any(|h| h.kind() == Kind::Manifest)
            && side.iter().any(|h| h.kind() == Kind::Blob),
        "{}",
        show(&side)
    );
    // The tool took registry.k8s.io's correlation token and sent it to the main host only.
    assert!(e.src.hits().iter().any(|h| h.listener == Listener::Main
        && h.authorization
            .as_deref()
            .is_some_and(|a| a.starts_with("Bearer "))));
}

#[tokio::test(flavor = "multi_thread")]
async fn quay_to_ecr_small_images() {
    let e = cold_small(Upstream::Quay { page: 1 }).await;
    // Without a digest on HEAD, a no-op needs a GET per tag; no more than that.
    e.src.clear();
    e.sync(&[]).await.assert_code(0);
    let n = e.src.counters();
    assert!(
        n.count("GET", Kind::Manifest) <= 2,
        "{}",
        show(&e.src.hits())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn hub_to_ecr_small_images() {
    let e = cold_small(Upstream::Hub { budget: 100 }).await;
    // Blobs came from the CDN, without credentials.
    assert!(e
        .src
        .side_hits()
        .iter()
        .any(|h| h.path.starts_with("/cdn/") && h.status == 200));
}

/// A stale tag through each upstream personality: the upstream moves `v1`, the sync copies
/// it again, `v2` is untouched.
async fn stale_small(upstream: Upstream) -> Estate {
    let e = Estate::start(upstream).await;
    let (a, b, a2) = (small_img(251), small_img(252), small_img(253));
    e.push_up("library/app", "v1", &a).await;
    e.push_up("library/app", "v2", &b).await;
    e.create_repo("mirror/app", "library/app", "v1/v2").await;
    e.sync(&[]).await.assert_code(0);
    e.push_up("library/app", "v1", &a2).await;
    e.src.clear();
    let run = e.sync(&[]).await;
    let ctx = run.ctx();
    run.assert_code(0);
    assert_eq!(run.outcome("mirror/app", "v1"), "copied", "{ctx}");
    assert_eq!(run.outcome("mirror/app", "v2"), "skipped", "{ctx}");
    assert_eq!(
        e.ecr_digest("mirror/app", "v1").await,
        Some(a2.digest.clone())
    );
    assert!(e.src.side_hits_with_authorization().is_empty());
    e
}

#[tokio::test(flavor = "multi_thread")]
async fn hub_stale_tag_spends_one_pull() {
    let e = stale_small(Upstream::Hub { budget: 100 }).await;
    // Pulls only for what is stale: one single-platform manifest.
    assert_eq!(e.src.counters().pulls_spent, 1, "{}", show(&e.src.hits()));
}

#[tokio::test(flavor = "multi_thread")]
async fn k8s_stale_tag() {
    stale_small(Upstream::K8s).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn quay_stale_tag() {
    stale_small(Upstream::Quay { page: 1 }).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn hub_token_expiring_mid_run_is_renewed() {
    // Tokens that live 1 s, and a registry 150 ms away: the run outlives its first tokens.
    let e = Estate::start(Upstream::Hub { budget: 100 }).await;
    e.src.set_manners(|m| {
        m.bearer_token_ttl = Some(Duration::from_secs(1));
        m.delay = Duration::from_millis(150);
    });
    let imgs: Vec<Image> = (0..4).map(|i| small_img(270 + i)).collect();
    for (i, img) in imgs.iter().enumerate() {
        e.push_up("library/app", &format!("v{i}"), img).await;
    }
    e.create_repo("mirror/app", "library/app", "v0/v1/v2/v3")
        .await;
    let run = e.sync(&[]).await;
    let ctx = run.ctx();
    run.assert_code(0);
    for (i, img) in imgs.iter().enumerate() {
        assert_eq!(
            e.ecr_digest("mirror/app", &format!("v{i}")).await,
            Some(img.digest.clone()),
            "{ctx}"
        );
    }
    let n = e.src.counters();
    assert!(
        n.token_scopes.len() >= 2,
        "expected a renewal: {:?}\n{ctx}",
        n.token_scopes
    );
}

/// Docker Hub hands out one token per repository. Fetching one must not hold up the others:
/// with a token endpoint that takes 300 ms, the tokens of 6 repositories are requested
/// concurrently (before, one lock over all scopes was held across each fetch, so they went
/// one at a time and every request to the registry waited behind them: W6 in
/// docs/benchmarks.md). One token per repository, still.
#[tokio::test(flavor = "multi_thread")]
async fn hub_tokens_of_different_repositories_are_fetched_concurrently() {
    let e = Estate::start(Upstream::Hub { budget: 100 }).await;
    e.src
        .set_manners(|m| m.token_delay = Duration::from_millis(300));
    for i in 0..6 {
        let img = small_img(330 + i);
        e.push_up(&format!("library/app{i}"), "v1", &img).await;
        e.create_repo(&format!("mirror/app{i}"), &format!("library/app{i}"), "v1")
            .await;
    }
    let run = e.sync(&[]).await;
    let ctx = run.ctx();
    run.assert_code(0);
    let n = e.src.counters();
    assert!(
        n.tokens_in_flight_max >= 2,
        "token requests were sent one at a time (at most {} in flight)\n{ctx}",
        n.tokens_in_flight_max
    );
    let mut scopes: Vec<String> = n.token_scopes.iter().map(|s| s.join(" ")).collect();
    scopes.sort();
    scopes.dedup();
    assert_eq!(
        scopes.len(),
        n.token_scopes.len(),
        "one token per scope: {:?}\n{ctx}",
        n.token_scopes
    );
}

/// A no-op keeps as many HEADs in flight as `--max-requests` allows, and no more. With 150 ms
/// per upstream request and 80 tags already in sync, `--max-requests 48` must reach more than
/// 32 HEADs at once upstream: the observation used to hold a fixed 32 tags in flight whatever
/// the limit said (W6/W7 in docs/benchmarks.md), so this fails on that code. It must also
/// never exceed 48, the limit.
#[tokio::test(flavor = "multi_thread")]
async fn noop_keeps_max_requests_heads_in_flight() {
    let e = Estate::start(Upstream::Plain).await;
    let img = small_img(340);
    for r in 0..4 {
        let tags: Vec<String> = (0..20).map(|t| format!("t{t}")).collect();
        for t in &tags {
            e.push_up(&format!("library/app{r}"), t, &img).await;
            push_image(
                &e.ecr_reg.url(),
                &format!("mirror/app{r}"),
                t,
                &img,
                e.ecr_reg.auth(),
                None,
            )
            .await;
        }
        e.create_repo(
            &format!("mirror/app{r}"),
            &format!("library/app{r}"),
            &tags.join("/"),
        )
        .await;
    }
    e.src.set_manners(|m| m.delay = Duration::from_millis(150));
    let run = e.sync(&["--max-requests", "48"]).await;
    let ctx = run.ctx();
    run.assert_code(0);
    assert_eq!(run.summary()["skipped"], 80, "{ctx}");
    let n = e.src.counters();
    assert_eq!(n.count("HEAD", Kind::Manifest), 80, "{ctx}");
    assert!(
        n.in_flight_max > 32 && n.in_flight_max <= 48,
        "upstream requests in flight at most {}, expected 33..=48 at --max-requests 48\n{ctx}",
        n.in_flight_max
    );
}

// ---------------------------------------------------------------------------------------------
// Redirect targets never see credentials
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn redirect_targets_get_no_credentials_for_manifests_or_blobs() {
    // A private registry that redirects manifests and blobs (k8s manners plus Basic auth on
    // the main host): the tool authenticates there, and must not carry the header along.
    let e = Estate::start(Upstream::K8s).await;
    e.src.set_manners(|m| {
        m.correlation_token = false;
        m.basic_auth = Some(("mirror".to_string(), "s3cret".to_string()));
    });
    let a = small_img(301);
    e.push_up("library/app", "v1", &a).await;
    e.create_repo("mirror/app", "library/app", "v1").await;
    let mut env = e.env();
    env.push((
        "ECR_MIRROR_SYNC_SRC_CREDS".to_string(),
        "mirror:s3cret".to_string(),
    ));
    let run = e.run(&["sync", "--output", "json"], &env).await;
    let ctx = run.ctx();
    run.assert_code(0);
    assert_eq!(
        e.ecr_digest("mirror/app", "v1").await,
        Some(a.digest.clone()),
        "{ctx}"
    );
    let side = e.src.side_hits();
    assert!(
        side.iter().any(|h| h.kind() == Kind::Manifest)
            && side.iter().any(|h| h.kind() == Kind::Blob),
        "expected manifests and blobs at the redirect target:\n{}",
        show(&side)
    );
    let leaked = e.src.side_hits_with_authorization();
    assert!(
        leaked.is_empty(),
        "Authorization sent to another host:\n{}",
        show(&leaked)
    );
    // And the main host did get the credentials.
    assert!(e
        .src
        .hits()
        .iter()
        .any(|h| h.listener == Listener::Main && h.authorization.is_some()));
}

// ---------------------------------------------------------------------------------------------
// Docker Hub's pull budget
// ---------------------------------------------------------------------------------------------

/// Three tags mirrored once with a full budget.
async fn hub_mirrored() -> (Estate, Vec<Image>) {
    let e = Estate::start(Upstream::Hub { budget: 100 }).await;
    let imgs: Vec<Image> = (0..3).map(|i| small_img(400 + i)).collect();
    for (i, img) in imgs.iter().enumerate() {
        e.push_up("library/app", &format!("v{i}"), img).await;
    }
    e.create_repo("mirror/app", "library/app", "v0/v1/v2").await;
    let run = e.sync(&[]).await;
    run.assert_code(0);
    (e, imgs)
}

#[tokio::test(flavor = "multi_thread")]
async fn hub_noop_sync_succeeds_at_budget_zero() {
    let (e, _) = hub_mirrored().await;
    e.src.set_pull_budget(100, 0);
    e.src.clear();
    let run = e.sync(&[]).await;
    let ctx = run.ctx();
    run.assert_code(0);
    for t in ["v0", "v1", "v2"] {
        assert_eq!(run.outcome("mirror/app", t), "skipped", "{ctx}");
    }
    let n = e.src.counters();
    assert_eq!(n.rate_limited, 0, "{}", show(&e.src.hits()));
    assert_eq!(n.count("GET", Kind::Manifest), 0, "{}", show(&e.src.hits()));
}

#[tokio::test(flavor = "multi_thread")]
async fn hub_exhausted_budget_defers_the_rest_as_rate_limited() {
    let (e, _) = hub_mirrored().await;
    // Everything upstream moves on: three stale tags, two new ones; the budget covers one
    // manifest GET.
    for i in 0..5 {
        e.push_up("library/app", &format!("v{i}"), &small_img(450 + i))
            .await;
    }
    e.moto
        .ecr_api(
            "TagResource",
            json!({
                "resourceArn": format!(
                    "arn:aws:ecr:us-east-1:{}:repository/mirror/app",
                    crate::support::MOTO_ACCOUNT_ID
                ),
                "tags": [{"Key": "upstream-tags", "Value": "v0/v1/v2/v3/v4"}],
            }),
        )
        .await;
    e.src.set_pull_budget(100, 1);
    e.src.clear();
    let run = e.sync(&[]).await;
    let ctx = run.ctx();
    run.assert_code(1);

    // No manifest GET after the first 429, and at most one 429: the tool counts the pulls
    // left from `RateLimit-Remaining` (HEADs carry it too), so it may stop before Hub has to
    // refuse anything.
    let hits = e.src.hits();
    if let Some(first_429) = hits.iter().position(|h| h.status == 429) {
        let after: Vec<PHit> = hits[first_429 + 1..]
            .iter()
            .filter(|h| h.method == "GET" && h.kind() == Kind::Manifest)
            .cloned()
            .collect();
        assert!(
            after.is_empty(),
            "manifest GETs after the first 429:\n{}",
            show(&after)
        );
    }
    let n = e.src.counters();
    assert!(n.rate_limited <= 1, "{}", show(&hits));
    assert!(
        n.count("GET", Kind::Manifest) <= 2,
        "one pull and at most one refused GET:\n{}",
        show(&hits)
    );

    // What was not copied is deferred, labelled rate-limited; missing tags went first.
    let items = run.all("item");
    let copied: Vec<&&Value> = items.iter().filter(|i| i["outcome"] == "copied").collect();
    let deferred: Vec<&&Value> = items
        .iter()
        .filter(|i| i["outcome"] == "deferred")
        .collect();
    assert_eq!(copied.len() + deferred.len(), 5, "{ctx}");
    assert!(copied.len() <= 1, "{ctx}");
    for d in &deferred {
        assert!(d.to_string().contains("rate-limited"), "{d}\n{ctx}");
    }
    for d in &deferred {
        assert!(
            d["error"].as_str().is_some_and(|m| m.contains("w=21600")),
            "the window from the header: {d}\n{ctx}"
        );
    }
    if let Some(c) = copied.first() {
        assert!(
            c["tag"] == "v3" || c["tag"] == "v4",
            "missing tags are copied before stale ones: {c}\n{ctx}"
        );
    }
    assert_eq!(run.summary()["deferred"], deferred.len(), "{ctx}");
}

#[tokio::test(flavor = "multi_thread")]
async fn hub_missing_repository_reads_not_found_or_not_authorized() {
    let e = Estate::start(Upstream::Hub { budget: 100 }).await;
    e.push_up("library/app", "v1", &small_img(501)).await;
    e.create_repo("mirror/ghost", "library/ghost", "v1").await;
    let run = e.sync(&[]).await;
    let ctx = run.ctx();
    run.assert_code(1);
    let reference = format!("{}/library/ghost", e.src.host);
    let text = run
        .all("item")
        .iter()
        .chain(run.all("plan").iter())
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join("\n")
        + &String::from_utf8_lossy(&run.out.stderr);
    assert!(
        text.contains("not found, or not authorized") && text.contains(&reference),
        "expected \"not found, or not authorized\" naming {reference}\n{ctx}"
    );
}

// ---------------------------------------------------------------------------------------------
// ECR's immutable tags
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn ecr_immutable_with_exclusion_updates_a_tag_matching_a_filter() {
    let e = Estate::start(Upstream::Plain).await;
    let (v1, old, new) = (small_img(601), small_img(602), small_img(603));
    e.push_up("library/app", "v1", &v1).await;
    e.push_up("library/app", "latest", &old).await;
    e.create_repo_with(
        "mirror/app",
        "library/app",
        "v1/latest",
        json!({
            "imageTagMutability": "IMMUTABLE_WITH_EXCLUSION",
            "imageTagMutabilityExclusionFilters": [
                {"filterType": "WILDCARD", "filter": "latest*"}
            ],
        }),
    )
    .await;
    e.ecr.set_mutability(
        "mirror/app",
        TagMutability::ImmutableWithExclusion(vec!["latest*".to_string()]),
    );
    e.sync(&[]).await.assert_code(0);

    e.push_up("library/app", "latest", &new).await;
    let run = e.sync(&[]).await;
    let ctx = run.ctx();
    run.assert_code(0);
    assert_eq!(run.outcome("mirror/app", "latest"), "copied", "{ctx}");
    assert_eq!(run.outcome("mirror/app", "v1"), "skipped", "{ctx}");
    assert_eq!(
        e.ecr_digest("mirror/app", "latest").await,
        Some(new.digest.clone())
    );
    assert_eq!(e.ecr.counters().immutable_refusals, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn ecr_immutable_tag_that_moved_upstream_is_not_overwritten() {
    // IMMUTABLE: the stale tag is reported, and no PUT reaches ECR for it (ECR would answer
    // 400 TAG_INVALID).
    let e = Estate::start(Upstream::Plain).await;
    let (old, new) = (small_img(611), small_img(612));
    e.push_up("library/app", "v1", &old).await;
    e.create_repo_with(
        "mirror/app",
        "library/app",
        "v1",
        json!({"imageTagMutability": "IMMUTABLE"}),
    )
    .await;
    e.ecr.set_mutability("mirror/app", TagMutability::Immutable);
    e.sync(&[]).await.assert_code(0);
    e.push_up("library/app", "v1", &new).await;
    let run = e.sync(&[]).await;
    run.assert_code(1);
    assert_eq!(run.outcome("mirror/app", "v1"), "failed", "{}", run.ctx());
    assert_eq!(
        e.ecr_digest("mirror/app", "v1").await,
        Some(old.digest.clone())
    );
    assert_eq!(e.ecr.counters().immutable_refusals, 0);
}

// ---------------------------------------------------------------------------------------------
// ECR's mounts
// ---------------------------------------------------------------------------------------------

/// Three repositories whose images share one layer (200 kB); returns the estate and the shared
/// digest.
async fn shared_layer_estate() -> (Estate, String) {
    let e = Estate::start(Upstream::Plain).await;
    let shared = crate::support::random_layer(701, 200_000, Format::Oci);
    for (i, repo) in ["a", "b", "c"].iter().enumerate() {
        let img = crate::support::image_with_layers(
            vec![
                shared.clone(),
                crate::support::random_layer(710 + i as u64, 800, Format::Oci),
            ],
            "linux/amd64",
            Format::Oci,
        );
        e.push_up(&format!("library/{repo}"), "v1", &img).await;
        e.create_repo(&format!("mirror/{repo}"), &format!("library/{repo}"), "v1")
            .await;
    }
    (e, shared.digest)
}

/// Upload commits (`PUT ...?digest=D`) of `digest` that ECR accepted.
fn upload_commits(hits: &[PHit], digest: &str) -> usize {
    hits.iter()
        .filter(|h| {
            h.method == "PUT"
                && h.kind() == Kind::Upload
                && h.status == 201
                && h.query.as_deref().is_some_and(|q| {
                    q.contains(&format!("digest={digest}"))
                        || q.contains(&format!("digest={}", digest.replace(':', "%3A")))
                })
        })
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn ecr_without_blob_mounting_costs_at_most_one_refused_mount() {
    // ECR with BLOB_MOUNTING off answers every mount with a fresh session; a tool that
    // learns stops asking after the first.
    let (e, shared) = shared_layer_estate().await;
    let run = e.sync(&[]).await;
    run.assert_code(0);
    let hits = e.ecr.hits();
    assert!(e.ecr.counters().mounts_refused <= 1, "{}", show(&hits));
    assert_eq!(upload_commits(&hits, &shared), 3, "{}", show(&hits));
}

#[tokio::test(flavor = "multi_thread")]
async fn ecr_without_blob_mounting_still_copies_everything() {
    // Whatever the tool does about mounts, a refused mount must not fail the copy.
    let (e, shared) = shared_layer_estate().await;
    let run = e.sync(&[]).await;
    run.assert_code(0);
    for repo in ["a", "b", "c"] {
        assert_eq!(
            run.outcome(&format!("mirror/{repo}"), "v1"),
            "copied",
            "{}",
            run.ctx()
        );
    }
    assert!(upload_commits(&e.ecr.hits(), &shared) >= 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn ecr_with_blob_mounting_uploads_a_shared_layer_once() {
    // BLOB_MOUNTING on: one repository uploads and commits; the others mount from it.
    let (e, shared) = shared_layer_estate().await;
    e.ecr.set_manners(|m| m.blob_mounting = true);
    let run = e.sync(&[]).await;
    run.assert_code(0);
    let hits = e.ecr.hits();
    assert_eq!(upload_commits(&hits, &shared), 1, "{}", show(&hits));
    let n = e.ecr.counters();
    assert!(n.mounts_forwarded >= 2, "{}", show(&hits));
    assert_eq!(n.mounts_refused, 0, "{}", show(&hits));
}

// ---------------------------------------------------------------------------------------------
// ECR's manifest size limit
// ---------------------------------------------------------------------------------------------

/// The tool refuses manifests over 4 MiB when it reads them (as containers/image does), so
/// ECR's own refusal (405 UNSUPPORTED, see `personality_ecr_manners`) is never reached.
#[tokio::test(flavor = "multi_thread")]
async fn ecr_manifest_over_4_mib_is_reported_once_and_not_retried() {
    let e = Estate::start(Upstream::Plain).await;
    // An image manifest made big by an annotation. docker-registry 2.8 refuses to store it
    // ("http: request body too large"), so a scripted registry serves it.
    let hostile = crate::support::Hostile::start(crate::support::HostileAuth::None).await;
    let layer = crate::support::random_layer(801, 900, Format::Oci);
    let base = crate::support::image_with_layers(vec![layer], "linux/amd64", Format::Oci);
    let mut m: Value = serde_json::from_slice(&base.manifest).unwrap();
    m["annotations"] = json!({"padding": "x".repeat(ECR_MANIFEST_MAX)});
    let bytes = serde_json::to_vec(&m).unwrap();
    let big = Image {
        digest: sha256_digest(&bytes),
        manifest: bytes,
        ..base
    };
    hostile.serve_image("library/app", "v1", &big);
    let upstream = format!(
        "{}/library/app",
        hostile.url().trim_start_matches("http://")
    );
    e.moto
        .ecr_api(
            "CreateRepository",
            json!({"repositoryName": "mirror/app", "tags": [
                {"Key": "upstream-image", "Value": upstream},
                {"Key": "upstream-tags", "Value": "v1"},
            ]}),
        )
        .await;
    let run = e.sync(&[]).await;
    let ctx = run.ctx();
    run.assert_code(1);
    assert_eq!(run.outcome("mirror/app", "v1"), "failed", "{ctx}");
    let err = run.item("mirror/app", "v1")["error"].to_string();
    assert!(
        err.contains("4 MiB") || err.contains("4194304"),
        "{err}\n{ctx}"
    );
    let puts = e
        .ecr
        .hits()
        .iter()
        .filter(|h| h.method == "PUT" && h.kind() == Kind::Manifest)
        .count();
    assert!(puts <= 1, "an oversized manifest is not retried\n{ctx}");
}

// ---------------------------------------------------------------------------------------------
// copy
// ---------------------------------------------------------------------------------------------

async fn copy_to_ecr(e: &Estate, src_repo: &str, tag: &str) -> Run {
    let src = format!("{}:{tag}", e.upstream(src_repo));
    let dest = format!(
        "{}.dkr.ecr.us-east-1.amazonaws.com/mirror/app:{tag}",
        crate::support::MOTO_ACCOUNT_ID
    );
    let endpoint = e.ecr.url();
    let args = [
        "copy",
        "--src",
        &src,
        "--dest",
        &dest,
        "--output",
        "json",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        "--registry-endpoint",
        &endpoint,
    ];
    e.run(&args, &e.moto.env()).await
}

#[tokio::test(flavor = "multi_thread")]
async fn copy_hub_to_ecr_small_image() {
    let e = Estate::start(Upstream::Hub { budget: 100 }).await;
    let idx = two_platforms(901);
    e.push_up_index("library/app", "v1", &idx).await;
    e.create_repo("mirror/app", "library/app", "v1").await;
    let run = copy_to_ecr(&e, "library/app", "v1").await;
    run.assert_code(0);
    assert_eq!(
        e.ecr_digest("mirror/app", "v1").await,
        Some(idx.digest.clone()),
        "{}",
        run.ctx()
    );
    assert!(e.src.side_hits_with_authorization().is_empty());
    // An index and its two children: three pulls at most.
    assert!(e.src.counters().pulls_spent <= 3, "{}", show(&e.src.hits()));
}

#[tokio::test(flavor = "multi_thread")]
async fn copy_k8s_to_ecr_big_layer() {
    let e = Estate::start(Upstream::K8s).await;
    let img = img_with_big_layer(902);
    e.push_up("library/app", "v1", &img).await;
    e.create_repo("mirror/app", "library/app", "v1").await;
    let run = copy_to_ecr(&e, "library/app", "v1").await;
    run.assert_code(0);
    assert_eq!(
        e.ecr_digest("mirror/app", "v1").await,
        Some(img.digest.clone()),
        "{}",
        run.ctx()
    );
    assert!(e.src.side_hits_with_authorization().is_empty());
}

/// The blob digest a `PUT ...?digest=D` names.
fn put_digest(h: &PHit) -> String {
    let q = h.query.as_deref().unwrap_or("");
    q.split('&')
        .find_map(|p| p.strip_prefix("digest="))
        .unwrap_or("")
        .replace("%3A", ":")
}

/// A registry that refuses a PUT carrying the blob (415) still gets every blob, as PATCH + an
/// empty PUT: the run succeeds with no retry spent, the switch is logged once, and after the
/// first refusal no PUT with a body goes to that registry again (the blobs already in flight
/// with the first image may each be refused once; the second image, copied after it with
/// `--parallel 1`, sends none).
#[tokio::test(flavor = "multi_thread")]
async fn registry_refusing_put_with_body_gets_patch_and_put() {
    let e = Estate::start(Upstream::Plain).await;
    e.ecr.set_manners(|m| m.refuse_put_with_body = Some(415));
    let a = img_with_big_layer(301);
    let b = img_with_big_layer(302);
    e.push_up("library/app", "v1", &a).await;
    e.push_up("library/app", "v2", &b).await;
    e.create_repo("mirror/app", "library/app", "v1/v2").await;
    let run = e.sync(&["--parallel", "1"]).await;
    let ctx = run.ctx();
    run.assert_code(0);
    for (tag, img) in [("v1", &a), ("v2", &b)] {
        assert_eq!(run.outcome("mirror/app", tag), "copied", "{ctx}");
        assert_eq!(
            e.ecr_digest("mirror/app", tag).await.as_ref(),
            Some(&img.digest),
            "{ctx}"
        );
    }
    assert_eq!(run.summary()["retries"].as_u64(), Some(0), "{ctx}");
    let text = describe(&run.out);
    assert_eq!(
        text.matches("refuses a PUT carrying a blob").count(),
        1,
        "the switch is logged once\n{ctx}"
    );

    let hits = e.ecr.hits();
    let c = e.ecr.counters();
    let refusals: Vec<String> = hits
        .iter()
        .filter(|h| h.method == "PUT" && h.kind() == Kind::Upload && h.status == 415)
        .map(put_digest)
        .collect();
    assert_eq!(
        refusals.len() as u64,
        c.put_bodies_refused,
        "{}",
        show(&hits)
    );
    let refused: BTreeSet<String> = refusals.iter().cloned().collect();
    let blobs_of =
        |img: &Image| -> BTreeSet<String> { img.blobs().map(|x| x.digest.clone()).collect() };
    assert!(!refused.is_empty(), "{}", show(&hits));
    assert_eq!(
        refused.len(),
        refusals.len(),
        "a blob refused twice:\n{}",
        show(&hits)
    );
    assert!(
        refused.is_subset(&blobs_of(&a)) || refused.is_subset(&blobs_of(&b)),
        "a PUT with a body after the first image:\n{}",
        show(&hits)
    );
    let all: BTreeSet<String> = blobs_of(&a).union(&blobs_of(&b)).cloned().collect();
    for d in &all {
        assert_eq!(upload_commits(&hits, d), 1, "{d}\n{}", show(&hits));
    }
    let n = all.len();
    let r = refusals.len();
    assert_eq!(c.count("PATCH", Kind::Upload), n, "{}", show(&hits));
    assert_eq!(c.count("PUT", Kind::Upload), n + r, "{}", show(&hits));
    // A refused session is abandoned (ECR: 405) and a fresh one opened.
    assert_eq!(c.count("POST", Kind::Upload), n + r, "{}", show(&hits));
    assert_eq!(c.count("DELETE", Kind::Upload), r, "{}", show(&hits));
}

// ---------------------------------------------------------------------------------------------
// A personality as a server, for the benchmarks
// ---------------------------------------------------------------------------------------------

/// Not a test: serves one personality for `bench/` (see `bench/latency_proxy.md`).
///
/// `PERSONALITY_SERVE="KIND UPSTREAM DELAY_MS STATE_FILE"`, KIND one of `plain`, `ecr`,
/// `hub:BUDGET`, `k8s`, `quay:PAGE`, UPSTREAM a running registry (`http://127.0.0.1:PORT`).
/// Every 200 ms it rewrites STATE_FILE with one JSON object (`url`, `side_url`, `cpu_ns`,
/// `requests`, `by_kind`, `pulls_spent`, `rate_limited`, `redirects`); it stops when
/// `STATE_FILE.stop` exists, after writing the file a last time.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "a server for bench/, not a test: set PERSONALITY_SERVE (bench/latency_proxy.md)"]
async fn serve_personality_for_benchmarks() {
    let Ok(spec) = std::env::var("PERSONALITY_SERVE") else {
        eprintln!("PERSONALITY_SERVE is not set; nothing to serve");
        return;
    };
    let parts: Vec<&str> = spec.split_whitespace().collect();
    let [kind, upstream, delay_ms, state_file] = parts[..] else {
        panic!("PERSONALITY_SERVE={spec:?}: want \"KIND UPSTREAM DELAY_MS STATE_FILE\"");
    };
    let (kind, arg) = kind.split_once(':').unwrap_or((kind, ""));
    let mut m = match kind {
        "plain" => Manners::default(),
        "ecr" => Manners::ecr(),
        "hub" => Manners::docker_hub(),
        "k8s" => Manners::k8s(),
        "quay" => Manners::quay(),
        other => panic!("unknown personality {other:?}"),
    };
    if kind == "quay" && !arg.is_empty() {
        m.tags_page_size = Some(arg.parse().expect("quay:PAGE"));
    }
    m.delay = Duration::from_millis(delay_ms.parse().expect("DELAY_MS"));
    let p = Personality::start(upstream, m).await;
    if kind == "hub" {
        let budget: u64 = if arg.is_empty() {
            u64::MAX / 2
        } else {
            arg.parse().expect("hub:BUDGET")
        };
        p.set_pull_budget(budget.max(100), budget);
    }
    let stop = format!("{state_file}.stop");
    loop {
        let cpu = p.cpu();
        let c = p.counters();
        let by_kind: serde_json::Map<String, Value> = c
            .requests
            .iter()
            .map(|((m, k), n)| (format!("{m} {k:?}"), json!(n)))
            .collect();
        let state = json!({
            "url": p.url(),
            "side_url": p.side_url(),
            "cpu_ns": cpu.cpu.as_nanos() as u64,
            "requests": cpu.requests,
            "by_kind": by_kind,
            "pulls_spent": c.pulls_spent,
            "rate_limited": c.rate_limited,
            "redirects": c.redirects,
        });
        let tmp = format!("{state_file}.tmp");
        std::fs::write(&tmp, state.to_string()).expect("write state");
        std::fs::rename(&tmp, state_file).expect("rename state");
        if std::path::Path::new(&stop).exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
