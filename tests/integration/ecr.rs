//! The ECR control-plane adapter (`ecr::SdkEcr`) and discovery, against a real moto server.
//!
//! Each test starts its own moto, so tests can run in parallel without sharing state.
//! moto quirks these tests rely on or guard against (see TESTING.md):
//! - tag values are not validated by moto (real AWS refuses `,`): the tool validates them;
//! - `GetAuthorizationToken`'s `expiresAt` is in 2015: the token cache must not loop on it;
//! - `proxyEndpoint` is the real AWS host name, not moto's address;
//! - `DescribeRepositories` is never paginated by moto: [`PagingShim`] pages it as ECR does.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use ecr_mirror_sync::ecr::{
    parse_ecr_host, EcrApi, EcrError, EcrToken, Encryption, RepoSettings, Repository, SdkEcr,
    TokenCache,
};
use ecr_mirror_sync::mirror::discover::discover;
use ecr_mirror_sync::mirror::tags::{TagError, TagKeys};
use futures::stream::{self, StreamExt as _, TryStreamExt as _};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

use crate::support::Moto;

const REGION: &str = "us-east-1";

fn kv(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn marked(image: &str, tags: &str) -> Vec<(String, String)> {
    kv(&[("upstream-image", image), ("upstream-tags", tags)])
}

async fn client(moto: &Moto) -> SdkEcr {
    SdkEcr::with_endpoint(&moto.url, REGION).await
}

async fn create(ecr: &SdkEcr, name: &str, tags: &[(String, String)]) -> Repository {
    ecr.create_repository(name, &RepoSettings::default(), tags)
        .await
        .unwrap_or_else(|e| panic!("create {name}: {e}"))
}

/// A paginating shim in front of moto, for `DescribeRepositories` only.
///
/// moto does not paginate `DescribeRepositories` at all ("maxResults and nextToken not
/// implemented" in `moto/ecr/models.py`): it returns every repository in one page with no
/// `nextToken`. Against bare moto, a client that reads only the first page (the original
/// tool's bug) would pass. This shim forwards each request to moto and cuts the repository
/// list into pages the way ECR does (default 100 per page, `nextToken` to continue), so the
/// discovery test fails unless every page is read. Everything else passes through unchanged.
struct PagingShim {
    url: String,
    describe_calls: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for PagingShim {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl PagingShim {
    async fn start(moto_url: &str) -> PagingShim {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let upstream = moto_url.trim_start_matches("http://").to_string();
        let describe_calls = Arc::new(AtomicUsize::new(0));
        let calls = describe_calls.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((conn, _)) = listener.accept().await else {
                    return;
                };
                let (upstream, calls) = (upstream.clone(), calls.clone());
                tokio::spawn(async move {
                    let _ = Self::serve(conn, &upstream, &calls).await;
                });
            }
        });
        PagingShim {
            url,
            describe_calls,
            task,
        }
    }

    /// One request per connection (answered with `Connection: close`).
    async fn serve(
        mut conn: TcpStream,
        upstream: &str,
        calls: &AtomicUsize,
    ) -> std::io::Result<()> {
        let (head, mut body) = read_message(&mut conn).await?;
        let paged = head.contains("DescribeRepositories");
        let mut page = (0usize, 100usize);
        if paged {
            calls.fetch_add(1, Ordering::SeqCst);
            let mut req: serde_json::Value = serde_json::from_slice(&body).unwrap();
            let obj = req.as_object_mut().unwrap();
            if let Some(n) = obj.remove("maxResults") {
                page.1 = n.as_u64().unwrap() as usize;
            }
            if let Some(t) = obj.remove("nextToken") {
                page.0 = t
                    .as_str()
                    .unwrap()
                    .trim_start_matches("from-")
                    .parse()
                    .unwrap();
            }
            body = serde_json::to_vec(&req).unwrap();
        }
        let mut up = TcpStream::connect(upstream).await?;
        up.write_all(&with_body(&head, &body)).await?;
        let (resp_head, mut resp_body) = read_message(&mut up).await?;
        if paged && resp_head.starts_with("HTTP/1.1 200") {
            let mut v: serde_json::Value = serde_json::from_slice(&resp_body).unwrap();
            let all = v["repositories"].as_array().unwrap().clone();
            let (start, size) = page;
            let end = (start + size).min(all.len());
            v["repositories"] = serde_json::Value::Array(all[start.min(end)..end].to_vec());
            if end < all.len() {
                v["nextToken"] = format!("from-{end}").into();
            }
            resp_body = serde_json::to_vec(&v).unwrap();
        }
        conn.write_all(&with_body(&resp_head, &resp_body)).await?;
        conn.shutdown().await
    }
}

/// Reads one HTTP/1.1 message with a `Content-Length` body: (head without the length and
/// connection headers, body).
async fn read_message(s: &mut TcpStream) -> std::io::Result<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = s.read(&mut chunk).await?;
        assert!(n > 0, "connection closed before the end of the headers");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8(buf[..head_end].to_vec()).unwrap();
    let mut len = 0;
    let mut kept = Vec::new();
    for line in head.split("\r\n") {
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            len = v.trim().parse().unwrap();
        } else if lower.starts_with("transfer-encoding:") {
            panic!("the shim does not speak chunked encoding: {line}");
        } else if !lower.starts_with("connection:") {
            kept.push(line);
        }
    }
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < len {
        let n = s.read(&mut chunk).await?;
        assert!(n > 0, "connection closed before the end of the body");
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(len);
    Ok((kept.join("\r\n"), body))
}

fn with_body(head: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "{head}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

#[tokio::test]
async fn discovery_reads_every_page() {
    let moto = Moto::start();
    let ecr = client(&moto).await;
    // ECR returns 100 repositories per page by default: 121 need two pages.
    let names: Vec<String> = (0..120).map(|i| format!("page/r{i:03}")).collect();
    stream::iter(&names)
        .map(|n| {
            let ecr = &ecr;
            async move {
                ecr.create_repository(n, &RepoSettings::default(), &marked("nginx", "1.25"))
                    .await
            }
        })
        .buffer_unordered(8)
        .try_collect::<Vec<_>>()
        .await
        .unwrap();
    create(&ecr, "page/unmarked", &kv(&[("team", "x")])).await;

    let shim = PagingShim::start(&moto.url).await;
    let paged = SdkEcr::with_endpoint(&shim.url, REGION).await;
    // The shim really pages: one plain call sees the first 100 and a token.
    let first = paged.client().describe_repositories().send().await.unwrap();
    assert_eq!(first.repositories().len(), 100);
    assert!(first.next_token().is_some());
    shim.describe_calls.store(0, Ordering::SeqCst);

    let d = discover(&paged, None, &TagKeys::default(), 8)
        .await
        .unwrap();
    assert_eq!(shim.describe_calls.load(Ordering::SeqCst), 2, "two pages");
    assert_eq!(d.scanned, 121);
    let got: Vec<&str> = d.items.iter().map(|i| i.repository.name.as_str()).collect();
    assert_eq!(got, names.iter().map(String::as_str).collect::<Vec<_>>());
    for item in &d.items {
        let spec = item.spec.as_ref().unwrap();
        assert_eq!(spec.upstream.to_string(), "docker.io/library/nginx");
        assert_eq!(spec.tags, ["1.25"]);
        assert!(item
            .repository
            .arn
            .ends_with(&format!(":repository/{}", item.repository.name)));
    }
    assert!(d.warnings.is_empty(), "{:?}", d.warnings);
}

#[tokio::test]
async fn prefix_limits_discovery_to_whole_path_components() {
    let moto = Moto::start();
    let ecr = client(&moto).await;
    for name in [
        "mirror/a",
        "mirror/b/c",
        "mirrors/x",
        "other/mirror/y",
        "mirror",
    ] {
        create(&ecr, name, &marked("nginx", "1")).await;
    }
    for prefix in ["mirror", "mirror/"] {
        let d = discover(&ecr, Some(prefix), &TagKeys::default(), 4)
            .await
            .unwrap();
        let got: Vec<&str> = d.items.iter().map(|i| i.repository.name.as_str()).collect();
        assert_eq!(got, ["mirror/a", "mirror/b/c"], "prefix {prefix:?}");
        assert_eq!(d.scanned, 2);
    }
    let all = discover(&ecr, None, &TagKeys::default(), 4).await.unwrap();
    assert_eq!(all.items.len(), 5);
}

#[tokio::test]
async fn near_miss_keys_warn_and_name_the_repository() {
    let moto = Moto::start();
    let ecr = client(&moto).await;
    create(
        &ecr,
        "mirror/typo",
        &kv(&[("Upstream-Image", "nginx"), ("upstream_tags", "1.25")]),
    )
    .await;
    create(&ecr, "mirror/ok", &marked("nginx", "1.25")).await;
    let d = discover(&ecr, None, &TagKeys::default(), 4).await.unwrap();
    assert_eq!(d.items.len(), 1, "the misspelt repository is not marked");
    assert_eq!(d.items[0].repository.name, "mirror/ok");
    assert_eq!(d.warnings.len(), 2, "{:?}", d.warnings);
    for (w, key) in d.warnings.iter().zip(["Upstream-Image", "upstream_tags"]) {
        assert!(w.contains("mirror/typo") && w.contains(key), "{w}");
    }
}

#[tokio::test]
async fn a_bad_repository_does_not_stop_the_others() {
    let moto = Moto::start();
    let ecr = client(&moto).await;
    create(
        &ecr,
        "mirror/good-1",
        &marked("ghcr.io/kedacore/keda", "2.4.0 / 2.5.0"),
    )
    .await;
    // moto accepts a ',' in a tag value; real AWS would refuse it. The parser must catch it.
    create(&ecr, "mirror/comma", &marked("nginx", "1.0,2.0")).await;
    create(&ecr, "mirror/empty-item", &marked("nginx", "1.0//2.0")).await;
    create(&ecr, "mirror/half", &kv(&[("upstream-image", "nginx")])).await;
    create(&ecr, "mirror/good-2", &marked("bitnami/redis", "7.2")).await;
    create(
        &ecr,
        "mirror/platforms",
        &kv(&[
            ("upstream-image", "nginx"),
            ("upstream-tags", "1"),
            ("upstream-platforms", "linux/amd64 linux/arm64"),
        ]),
    )
    .await;

    let d = discover(&ecr, Some("mirror"), &TagKeys::default(), 4)
        .await
        .unwrap();
    let by_name: BTreeMap<&str, _> = d
        .items
        .iter()
        .map(|i| (i.repository.name.as_str(), &i.spec))
        .collect();
    assert_eq!(by_name.len(), 6);
    assert_eq!(
        by_name["mirror/good-1"].as_ref().unwrap().tags,
        ["2.4.0", "2.5.0"]
    );
    assert_eq!(
        by_name["mirror/good-2"]
            .as_ref()
            .unwrap()
            .upstream
            .to_string(),
        "docker.io/bitnami/redis"
    );
    assert_eq!(
        by_name["mirror/platforms"]
            .as_ref()
            .unwrap()
            .platforms
            .to_string(),
        "linux/amd64 linux/arm64"
    );
    assert!(matches!(
        by_name["mirror/comma"],
        Err(TagError::BadCharacter { character: ',', .. })
    ));
    assert!(matches!(
        by_name["mirror/empty-item"],
        Err(TagError::EmptyItem { position: 2, .. })
    ));
    assert!(matches!(
        by_name["mirror/half"],
        Err(TagError::NoTags { .. })
    ));
    for e in d.errors() {
        assert!(e.to_string().contains(e.repository()), "{e}");
    }
}

#[tokio::test]
async fn custom_keys_are_used_for_discovery() {
    let moto = Moto::start();
    let ecr = client(&moto).await;
    create(&ecr, "a", &kv(&[("src", "nginx"), ("versions", "1/2")])).await;
    create(&ecr, "b", &marked("nginx", "1")).await;
    let keys = TagKeys {
        image: "src".into(),
        tags: "versions".into(),
        ..TagKeys::default()
    };
    let d = discover(&ecr, None, &keys, 2).await.unwrap();
    assert_eq!(d.items.len(), 1);
    assert_eq!(d.items[0].spec.as_ref().unwrap().tags, ["1", "2"]);
}

#[tokio::test]
async fn auth_token_decodes() {
    let moto = Moto::start();
    let ecr = client(&moto).await;
    let t = ecr.auth_token().await.unwrap();
    assert_eq!(t.username, "AWS");
    assert!(!t.password.is_empty());
    assert!(!format!("{t:?}").contains(&t.password), "Debug must redact");
    // moto's proxyEndpoint is a real ECR host name (not moto's address).
    let host = parse_ecr_host(t.registry_host()).expect("an ECR host");
    assert_eq!(host.region, REGION);
    assert_eq!(host.account.len(), 12);
    assert!(t.expires_at.is_some());
}

/// Counts `GetAuthorizationToken` calls through to the real adapter.
struct CountingTokens {
    inner: SdkEcr,
    calls: AtomicUsize,
}

impl EcrApi for CountingTokens {
    async fn repositories(&self, p: Option<&str>) -> Result<Vec<Repository>, EcrError> {
        self.inner.repositories(p).await
    }
    async fn tags(&self, arn: &str) -> Result<Vec<(String, String)>, EcrError> {
        self.inner.tags(arn).await
    }
    async fn auth_token(&self) -> Result<EcrToken, EcrError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.auth_token().await
    }
    async fn create_repository(
        &self,
        n: &str,
        s: &RepoSettings,
        t: &[(String, String)],
    ) -> Result<Repository, EcrError> {
        self.inner.create_repository(n, s, t).await
    }
    async fn tag_resource(&self, a: &str, t: &[(String, String)]) -> Result<(), EcrError> {
        self.inner.tag_resource(a, t).await
    }
}

#[tokio::test]
async fn token_cache_does_not_loop_on_motos_expired_token() {
    let moto = Moto::start();
    let api = CountingTokens {
        inner: client(&moto).await,
        calls: AtomicUsize::new(0),
    };
    let cache = TokenCache::new(api);
    let first = cache.get().await.unwrap();
    // moto's token says it expired in 2015; it must still be served from the cache.
    assert!(
        first.expires_at.unwrap() < SystemTime::now(),
        "moto's expiresAt is in the past"
    );
    for _ in 0..50 {
        assert_eq!(cache.get().await.unwrap(), first);
    }
    assert_eq!(cache.api().calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn create_repository_applies_settings() {
    let moto = Moto::start();
    let ecr = client(&moto).await;
    let policy = r#"{"rules":[{"rulePriority":1,"description":"expire untagged","selection":{"tagStatus":"untagged","countType":"sinceImagePushed","countUnit":"days","countNumber":14},"action":{"type":"expire"}}]}"#;
    let settings = RepoSettings {
        scan_on_push: true,
        immutable: true,
        encryption: Some(Encryption::Kms {
            key: Some("arn:aws:kms:us-east-1:123456789012:key/test-key".into()),
        }),
        lifecycle_policy: Some(policy.into()),
    };
    let repo = ecr
        .create_repository("made/full", &settings, &marked("nginx", "1.25"))
        .await
        .unwrap();
    assert_eq!(repo.name, "made/full");
    assert_eq!(
        repo.tag_mutability,
        ecr_mirror_sync::ecr::TagMutability::Immutable
    );
    assert!(repo.uri.ends_with("/made/full"), "{}", repo.uri);

    let out = ecr
        .client()
        .describe_repositories()
        .repository_names("made/full")
        .send()
        .await
        .unwrap();
    let r = &out.repositories()[0];
    assert_eq!(r.image_tag_mutability().unwrap().as_str(), "IMMUTABLE");
    assert!(r.image_scanning_configuration().unwrap().scan_on_push());
    let enc = r.encryption_configuration().unwrap();
    assert_eq!(enc.encryption_type().as_str(), "KMS");
    assert_eq!(
        enc.kms_key(),
        Some("arn:aws:kms:us-east-1:123456789012:key/test-key")
    );
    let lp = ecr
        .client()
        .get_lifecycle_policy()
        .repository_name("made/full")
        .send()
        .await
        .unwrap();
    let got: serde_json::Value = serde_json::from_str(lp.lifecycle_policy_text().unwrap()).unwrap();
    assert_eq!(
        got,
        serde_json::from_str::<serde_json::Value>(policy).unwrap()
    );
    assert_eq!(ecr.tags(&repo.arn).await.unwrap(), marked("nginx", "1.25"));

    // Defaults: mutable, no scan, AES256.
    let plain = create(&ecr, "made/plain", &[]).await;
    assert_eq!(
        plain.tag_mutability,
        ecr_mirror_sync::ecr::TagMutability::Mutable
    );
    let out = ecr
        .client()
        .describe_repositories()
        .repository_names("made/plain")
        .send()
        .await
        .unwrap();
    let r = &out.repositories()[0];
    assert_eq!(r.image_tag_mutability().unwrap().as_str(), "MUTABLE");
    assert!(!r.image_scanning_configuration().unwrap().scan_on_push());
    assert_eq!(
        r.encryption_configuration()
            .unwrap()
            .encryption_type()
            .as_str(),
        "AES256"
    );

    // A second create is AlreadyExists, naming the repository.
    let e = ecr
        .create_repository("made/full", &RepoSettings::default(), &[])
        .await
        .unwrap_err();
    assert_eq!(
        e,
        EcrError::AlreadyExists {
            op: "CreateRepository",
            repository: "made/full".into()
        }
    );

    // A lifecycle policy that is not JSON is refused before anything is created.
    let bad = RepoSettings {
        lifecycle_policy: Some("{not json".into()),
        ..RepoSettings::default()
    };
    let e = ecr
        .create_repository("made/bad", &bad, &[])
        .await
        .unwrap_err();
    assert!(e.to_string().contains("made/bad"), "{e}");
    assert_eq!(ecr.repository("made/bad").await.unwrap(), None);
}

#[tokio::test]
async fn lookups_and_not_found() {
    let moto = Moto::start();
    let ecr = client(&moto).await;
    let repo = create(&ecr, "look/here", &[]).await;
    assert_eq!(
        ecr.repository("look/here").await.unwrap(),
        Some(repo.clone())
    );
    assert_eq!(ecr.repository("look/missing").await.unwrap(), None);
    let missing_arn = repo.arn.replace("look/here", "look/missing");
    match ecr.tag_resource(&missing_arn, &kv(&[("a", "1")])).await {
        Err(EcrError::NotFound { op, repository }) => {
            assert_eq!((op, repository.as_str()), ("TagResource", "look/missing"));
        }
        other => panic!("expected NotFound, got {other:?}"),
    }
    let e = ecr.tags(&missing_arn).await.unwrap_err();
    assert!(matches!(e, EcrError::NotFound { .. }), "{e:?}");
    assert!(e.to_string().contains("look/missing"), "{e}");
}

#[tokio::test]
async fn tag_resource_merges() {
    let moto = Moto::start();
    let ecr = client(&moto).await;
    let repo = create(&ecr, "merge/me", &kv(&[("a", "1"), ("b", "2")])).await;
    ecr.tag_resource(&repo.arn, &kv(&[("b", "3"), ("c", "4")]))
        .await
        .unwrap();
    ecr.tag_resource(&repo.arn, &[]).await.unwrap();
    let mut got = ecr.tags(&repo.arn).await.unwrap();
    got.sort();
    assert_eq!(got, kv(&[("a", "1"), ("b", "3"), ("c", "4")]));
}

/// The binary's AWS client (aws-config's default chain) must honour the standard
/// `AWS_ENDPOINT_URL`, and `--region` must override `AWS_REGION`. Run through the product
/// binary, so no test changes this process's environment.
#[tokio::test]
async fn from_env_honours_aws_endpoint_url() {
    let moto = Moto::start();
    let seed = client(&moto).await;
    create(&seed, "env/visible", &marked("nginx", "1")).await;
    let out = crate::support::run(&["list", "--output", "json"], &moto.env());
    assert!(out.status.success(), "{}", crate::support::describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let names: Vec<String> = stdout
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["type"] == "repository")
        .map(|v| v["data"]["repository"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["env/visible"], "{stdout}");
    // moto keeps regions apart, so eu-west-1 has no repositories.
    let out = crate::support::run(
        &["list", "--output", "json", "--region", "eu-west-1"],
        &moto.env(),
    );
    assert!(out.status.success(), "{}", crate::support::describe(&out));
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("env/visible"),
        "--region must override AWS_REGION"
    );
}

#[tokio::test]
async fn exclusion_filters_and_the_blob_mounting_setting_as_moto_serves_them() {
    use aws_sdk_ecr::types::{
        ImageTagMutability, ImageTagMutabilityExclusionFilter,
        ImageTagMutabilityExclusionFilterType,
    };
    use ecr_mirror_sync::ecr::TagMutability;
    let moto = Moto::start();
    let ecr = client(&moto).await;
    ecr.client()
        .create_repository()
        .repository_name("made/excl")
        .image_tag_mutability(ImageTagMutability::ImmutableWithExclusion)
        .image_tag_mutability_exclusion_filters(
            ImageTagMutabilityExclusionFilter::builder()
                .filter_type(ImageTagMutabilityExclusionFilterType::Wildcard)
                .filter("latest*")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let repo = ecr.repository("made/excl").await.unwrap().unwrap();
    assert_eq!(
        repo.tag_mutability,
        TagMutability::ImmutableWithExclusion(vec!["latest*".into()])
    );
    assert!(!repo.tag_mutability.is_immutable("latest-arm64"));
    assert!(repo.tag_mutability.is_immutable("1.2.3"));
    // moto 5.2 does not implement GetAccountSetting (HTTP 500): the adapter reports an error,
    // which the pipeline treats as "unknown, ask one mount".
    let e = ecr.blob_mounting().await.unwrap_err();
    assert_eq!(e.op(), "GetAccountSetting", "{e}");
}
