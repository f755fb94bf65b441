//! Flags and environment → typed settings. Conflicts are rejected here, with messages that
//! name the flags, so the commands only see valid combinations.

use std::str::FromStr;

use std::path::PathBuf;

use std::path::Path;

use crate::app::cli::{
    AwsArgs, DestAccess, EncryptionKind, EstateArgs, NetArgs, PlatformArgs, RepoSettingsArgs,
    SrcAccess, TagMutability,
};
use ecr_mirror_sync::ecr::{Encryption, RepoSettings};
use ecr_mirror_sync::mirror::error::{Error, Result};
use ecr_mirror_sync::mirror::estate::EstateOptions;
use ecr_mirror_sync::mirror::shard::{self, Shard};
use ecr_mirror_sync::mirror::sources::Access;
use ecr_mirror_sync::mirror::tags::TagKeys;
use ecr_mirror_sync::oci::transport::auth::default_authfile;
use ecr_mirror_sync::oci::{
    AuthFile, BasicCreds, CredentialSource, Credentials, Network, Platform, PlatformFilter,
    RetryPolicy, Secret,
};

/// The platform filter from `--all`, `--platform` and the `--override-*` aliases.
/// `None` means the user said nothing (a per-repository setting may then apply).
pub fn platform_filter(a: &PlatformArgs) -> Result<Option<PlatformFilter>> {
    if a.all {
        return Ok(Some(PlatformFilter::All));
    }
    if a.override_os.is_some() || a.override_arch.is_some() || a.override_variant.is_some() {
        let (Some(os), Some(arch)) = (&a.override_os, &a.override_arch) else {
            return Err(Error::Usage(
                "--override-os and --override-arch must be given together (--override-variant is optional)".into(),
            ));
        };
        let mut s = format!("{os}/{arch}");
        if let Some(v) = &a.override_variant {
            s = format!("{s}/{v}");
        }
        return Ok(Some(PlatformFilter::Only(vec![Platform::from_str(&s)?])));
    }
    if a.platform.is_empty() {
        return Ok(None);
    }
    let list = a
        .platform
        .iter()
        .map(|p| Platform::from_str(p))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(Some(PlatformFilter::from_list(list)))
}

/// The credential flags of one side (`--src-*` or `--dest-*`), before resolution.
#[derive(Clone, Debug, Default)]
pub struct CredentialFlags {
    /// `--X-creds USER[:PASS]`.
    pub creds: Option<Secret>,
    /// `--X-username`.
    pub username: Option<String>,
    /// `--X-password`.
    pub password: Option<Secret>,
    /// `--X-registry-token`.
    pub registry_token: Option<Secret>,
    /// `--X-no-creds`.
    pub no_creds: bool,
    /// `--X-authfile`.
    pub authfile: Option<PathBuf>,
}

impl CredentialFlags {
    /// Resolves the flags of one side into where its credentials come from. `side` is `src` or
    /// `dest`, used to name flags in errors. Conflicts and an unreadable auth file are usage
    /// errors (exit 2), found here, before any request.
    pub fn resolve(&self, side: &str) -> Result<CredentialSource> {
        // Name exactly the flags that were given, so the user knows which to drop.
        let mut given: Vec<String> = Vec::new();
        if self.creds.is_some() {
            given.push(format!("--{side}-creds"));
        }
        if self.username.is_some() {
            given.push(format!("--{side}-username"));
        }
        if self.password.is_some() {
            given.push(format!("--{side}-password"));
        }
        if self.registry_token.is_some() {
            given.push(format!("--{side}-registry-token"));
        }
        let ways = usize::from(self.creds.is_some())
            + usize::from(self.username.is_some() || self.password.is_some())
            + usize::from(self.registry_token.is_some());
        if ways > 1 || (self.no_creds && ways > 0) {
            if self.no_creds {
                given.push(format!("--{side}-no-creds"));
            }
            return Err(Error::Usage(format!(
                "{} cannot be used together; give one way to authenticate",
                given.join(" and ")
            )));
        }
        if self.no_creds {
            return Ok(CredentialSource::Fixed(Credentials::Anonymous));
        }
        if let Some(c) = &self.creds {
            let (user, pass) = match c.expose().split_once(':') {
                Some((u, p)) => (u.to_string(), p.to_string()),
                None => (c.expose().to_string(), String::new()),
            };
            if user.is_empty() {
                return Err(Error::Usage(format!(
                    "--{side}-creds: the user name is empty; write USER[:PASSWORD]"
                )));
            }
            return Ok(CredentialSource::Fixed(Credentials::Basic(BasicCreds {
                username: user,
                password: Secret::new(pass),
            })));
        }
        match (&self.username, &self.password) {
            (Some(u), Some(p)) => {
                return Ok(CredentialSource::Fixed(Credentials::Basic(BasicCreds {
                    username: u.clone(),
                    password: p.clone(),
                })))
            }
            (Some(_), None) => {
                return Err(Error::Usage(format!(
                    "--{side}-username needs --{side}-password"
                )))
            }
            (None, Some(_)) => {
                return Err(Error::Usage(format!(
                    "--{side}-password needs --{side}-username"
                )))
            }
            (None, None) => {}
        }
        if let Some(t) = &self.registry_token {
            return Ok(CredentialSource::Fixed(Credentials::Bearer(t.clone())));
        }
        let file = match &self.authfile {
            Some(p) => {
                if !p.exists() {
                    return Err(Error::Usage(format!(
                        "--{side}-authfile {}: no such file",
                        p.display()
                    )));
                }
                Some(p.clone())
            }
            None => default_authfile(),
        };
        match file {
            Some(path) => {
                let f = AuthFile::load(&path).map_err(|e| Error::Usage(e.to_string()))?;
                Ok(CredentialSource::AuthFile(std::sync::Arc::new(f)))
            }
            None => Ok(CredentialSource::None),
        }
    }
}

/// Credential flags of the source side.
pub fn src_credentials(a: &SrcAccess) -> CredentialFlags {
    CredentialFlags {
        creds: a.src_creds.clone(),
        username: a.src_username.clone(),
        password: a.src_password.clone(),
        registry_token: a.src_registry_token.clone(),
        no_creds: a.src_no_creds,
        authfile: a.src_authfile.clone(),
    }
}

/// Credential flags of the destination side.
pub fn dest_credentials(a: &DestAccess) -> CredentialFlags {
    CredentialFlags {
        creds: a.dest_creds.clone(),
        username: a.dest_username.clone(),
        password: a.dest_password.clone(),
        registry_token: a.dest_registry_token.clone(),
        no_creds: a.dest_no_creds,
        authfile: a.dest_authfile.clone(),
    }
}

/// The run's network settings.
pub fn network(net: &NetArgs) -> Network {
    Network {
        retry: RetryPolicy {
            times: net.retry_times,
            ..RetryPolicy::default()
        },
        max_in_flight: net.max_requests as usize,
        connect_timeout: std::time::Duration::from_secs(net.connect_timeout),
        read_timeout: std::time::Duration::from_secs(net.read_timeout),
    }
}

/// How to reach the source registries: credentials resolved, conflicts rejected.
pub fn src_access(a: &SrcAccess, net: &NetArgs) -> Result<Access> {
    Ok(Access {
        credentials: src_credentials(a).resolve("src")?,
        tls_verify: a.src_tls_verify,
        cert_dir: a.src_cert_dir.clone(),
        network: network(net),
    })
}

/// How to reach the destination registry.
#[derive(Clone, Debug)]
pub struct Dest {
    /// TLS, cert dir, network; and the `--dest-*` credentials when no ECR token is used.
    pub access: Access,
    /// `Some(region)` when the credentials come from ECR's `GetAuthorizationToken` (an ECR
    /// host without explicit `--dest-*` credentials); the region is `--region`, else the host's.
    pub ecr_region: Option<Option<String>>,
    /// `--registry-endpoint`.
    pub endpoint: Option<String>,
}

/// The destination settings for `registry`.
pub fn dest(registry: &str, a: &DestAccess, aws: &AwsArgs, net: &NetArgs) -> Result<Dest> {
    let flags = dest_credentials(a);
    let credentials = flags.resolve("dest")?;
    let explicit =
        flags.creds.is_some() || flags.username.is_some() || flags.registry_token.is_some();
    let ecr_region = match ecr_mirror_sync::ecr::parse_ecr_host(registry) {
        Some(host) if !explicit && !flags.no_creds => {
            Some(aws.region.clone().or(Some(host.region.clone())))
        }
        _ => None,
    };
    Ok(Dest {
        access: Access {
            credentials,
            tls_verify: a.dest_tls_verify,
            cert_dir: a.dest_cert_dir.clone(),
            network: network(net),
        },
        ecr_region,
        endpoint: endpoint(&aws.registry_endpoint)?,
    })
}

/// The ECR data plane of an estate (`sync`, `list`, `verify`): token auth, TLS and network.
pub fn ecr_dest(tls_verify: bool, aws: &AwsArgs, net: &NetArgs) -> Result<Dest> {
    Ok(Dest {
        access: Access {
            credentials: CredentialSource::None,
            tls_verify,
            cert_dir: None,
            network: network(net),
        },
        ecr_region: Some(aws.region.clone()),
        endpoint: endpoint(&aws.registry_endpoint)?,
    })
}

/// The estate settings of `sync`, `list` and `verify`, and the source access: every flag checked
/// here, before any request.
pub fn estate(
    e: &EstateArgs,
    default_platforms: PlatformFilter,
) -> Result<(EstateOptions, Access)> {
    let d = &e.discover;
    if let Some(p) = &d.prefix {
        if p.is_empty() || p.starts_with('/') || p.ends_with('/') {
            return Err(Error::Usage(format!(
                "--prefix {p:?}: give a repository path prefix without leading or trailing '/', e.g. mirror"
            )));
        }
    }
    let keys = TagKeys {
        image: d.image_key.clone(),
        tags: d.tag_key.clone(),
        platforms: d.platforms_key.clone(),
        rule: d.tag_rule_key.clone(),
        referrers: d.referrers_key.clone(),
    };
    tag_keys_distinct(&[
        ("--image-key", &keys.image),
        ("--tag-key", &keys.tags),
        ("--platforms-key", &keys.platforms),
        ("--tag-rule-key", &keys.rule),
        ("--referrers-key", &keys.referrers),
    ])?;
    let ecr = ecr_dest(e.dest_tls_verify, &e.aws, &e.net)?;
    let opts = EstateOptions {
        keys,
        prefix: d.prefix.clone(),
        shard: shard_of(d.shard.as_deref())?,
        default_platforms,
        region: e.aws.region.clone(),
        endpoint: ecr.endpoint,
        ecr_access: ecr.access,
    };
    Ok((opts, src_access(&e.src_access, &e.net)?))
}

/// The resource-tag key flags: none empty, no two the same (one key cannot mean two things).
pub fn tag_keys_distinct(flags: &[(&str, &String)]) -> Result<()> {
    for (i, (flag, key)) in flags.iter().enumerate() {
        if key.trim().is_empty() {
            return Err(Error::Usage(format!("{flag}: the key cannot be empty")));
        }
        if let Some((other, _)) = flags[..i].iter().find(|(_, k)| k == key) {
            return Err(Error::Usage(format!(
                "{other} and {flag} are both {key:?}; they must differ"
            )));
        }
    }
    Ok(())
}

/// `--shard I/N`, else `$JOB_COMPLETION_INDEX` of `$ECR_MIRROR_SYNC_SHARD_COUNT`.
fn shard_of(flag: Option<&str>) -> Result<Option<Shard>> {
    let explicit = match flag {
        Some(s) => Some(
            s.parse::<Shard>()
                .map_err(|e| Error::Usage(format!("--shard {s:?}: {e}")))?,
        ),
        None => None,
    };
    shard::from_env(
        explicit,
        std::env::var("JOB_COMPLETION_INDEX").ok().as_deref(),
        std::env::var("ECR_MIRROR_SYNC_SHARD_COUNT").ok().as_deref(),
    )
    .map_err(Error::Usage)
}

/// Where a run's metrics go, checked before any request.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    /// `--metrics-file`.
    pub file: Option<PathBuf>,
    /// `--pushgateway`, validated.
    pub pushgateway: Option<String>,
    /// `--metrics-job`.
    pub job: String,
}

/// The metrics settings: the Pushgateway must be an http(s) URL; the job a plain name; the
/// metrics file's directory must exist.
pub fn metrics(a: &crate::app::cli::MetricsArgs) -> Result<Metrics> {
    if let Some(u) = &a.pushgateway {
        // Never echo the URL itself: it may carry user:password.
        let parsed = url::Url::parse(u).map_err(|e| {
            Error::Usage(format!(
                "--pushgateway: not a URL ({e}); write e.g. http://pushgateway.monitoring:9091"
            ))
        })?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err(Error::Usage(
                "--pushgateway must be an http:// or https:// URL with a host".into(),
            ));
        }
    }
    if a.metrics_job.is_empty()
        || !a
            .metrics_job
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(Error::Usage(format!(
            "--metrics-job {:?}: use letters, digits, '-', '_' and '.'",
            a.metrics_job
        )));
    }
    if let Some(f) = &a.metrics_file {
        let dir = f.parent().filter(|d| !d.as_os_str().is_empty());
        if dir.is_some_and(|d| !d.is_dir()) || f.is_dir() {
            return Err(Error::Usage(format!(
                "--metrics-file {}: its directory does not exist, or it is a directory",
                f.display()
            )));
        }
    }
    Ok(Metrics {
        file: a.metrics_file.clone(),
        pushgateway: a.pushgateway.clone(),
        job: a.metrics_job.clone(),
    })
}

/// Validates `--registry-endpoint`.
pub fn endpoint(e: &Option<String>) -> Result<Option<String>> {
    match e {
        None => Ok(None),
        Some(s) => {
            let u = url::Url::parse(s).map_err(|err| {
                Error::Usage(format!(
                    "--registry-endpoint {s:?} is not a URL ({err}); write e.g. http://127.0.0.1:5000"
                ))
            })?;
            if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() {
                return Err(Error::Usage(format!(
                    "--registry-endpoint {s:?} must be an http:// or https:// URL with a host"
                )));
            }
            Ok(Some(s.trim_end_matches('/').to_string()))
        }
    }
}

/// The `--scan-on-push`, `--image-tag-mutability`, `--encryption`, `--kms-key` and
/// `--lifecycle-policy` flags → [`RepoSettings`]. The policy file is read and checked to be
/// JSON here, so a bad file stops the run before anything is created.
pub fn repo_settings(a: &RepoSettingsArgs) -> Result<RepoSettings> {
    let encryption = match (a.encryption, &a.kms_key) {
        (None, None) => None,
        (Some(EncryptionKind::Aes256), None) => Some(Encryption::Aes256),
        (Some(EncryptionKind::Kms), key) => Some(Encryption::Kms { key: key.clone() }),
        (other, Some(_)) => {
            return Err(Error::Usage(format!(
                "--kms-key needs --encryption KMS (got {})",
                match other {
                    Some(EncryptionKind::Aes256) => "--encryption AES256",
                    _ => "no --encryption",
                }
            )))
        }
    };
    let lifecycle_policy = match &a.lifecycle_policy {
        None => None,
        Some(path) => Some(read_policy(path)?),
    };
    Ok(RepoSettings {
        scan_on_push: a.scan_on_push,
        immutable: a.image_tag_mutability == TagMutability::Immutable,
        encryption,
        lifecycle_policy,
    })
}

fn read_policy(path: &Path) -> Result<String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::Usage(format!(
            "--lifecycle-policy {}: cannot read it: {e}",
            path.display()
        ))
    })?;
    match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(serde_json::Value::Object(_)) => Ok(text),
        Ok(_) => Err(Error::Usage(format!(
            "--lifecycle-policy {}: expected a JSON object ({{\"rules\": [...]}})",
            path.display()
        ))),
        Err(e) => Err(Error::Usage(format!(
            "--lifecycle-policy {}: not valid JSON: {e}",
            path.display()
        ))),
    }
}

/// `--referrers`, `--remove-signatures` and `--refresh-referrers` → the run's referrer settings.
/// A bad selection, or a refresh of nothing, is an exit 2 before any request.
pub fn referrers(
    a: &crate::app::cli::PolicyArgs,
) -> Result<ecr_mirror_sync::mirror::referrers::Referrers> {
    use ecr_mirror_sync::mirror::referrers::{parse_selection, without_signatures, Referrers};
    use ecr_mirror_sync::oci::referrers::ReferrerFilter;
    let mut default = match &a.referrers {
        Some(v) => {
            parse_selection(v).map_err(|e| Error::Usage(format!("--referrers {v:?}: {e}")))?
        }
        None => ReferrerFilter::All,
    };
    if a.remove_signatures {
        default = without_signatures(&default);
    }
    if a.refresh_referrers && a.referrers.as_deref().map(str::trim) == Some("none") {
        return Err(Error::Usage(
            "--refresh-referrers with --referrers none: there is nothing to refresh".into(),
        ));
    }
    Ok(Referrers {
        default,
        per_repo: Default::default(),
        refresh: a.refresh_referrers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_flags() {
        let mut a = PlatformArgs::default();
        assert_eq!(platform_filter(&a).unwrap(), None);
        a.override_os = Some("linux".into());
        assert!(platform_filter(&a)
            .unwrap_err()
            .to_string()
            .contains("--override-arch"));
        a.override_arch = Some("arm64".into());
        a.override_variant = Some("v8".into());
        assert_eq!(
            platform_filter(&a).unwrap().unwrap().to_string(),
            "linux/arm64/v8"
        );
        let a = PlatformArgs {
            platform: vec!["linux/amd64".into(), "bad".into()],
            ..Default::default()
        };
        assert!(platform_filter(&a)
            .unwrap_err()
            .to_string()
            .contains("\"bad\""));
    }

    #[test]
    fn credential_flags_resolve_and_conflict() {
        let f = CredentialFlags {
            creds: Some(Secret::new("u:p:q")),
            no_creds: false,
            ..Default::default()
        };
        match f.resolve("src").unwrap() {
            CredentialSource::Fixed(Credentials::Basic(b)) => {
                assert_eq!(b.username, "u");
                assert_eq!(b.password.expose(), "p:q");
            }
            other => panic!("{other:?}"),
        }
        let f = CredentialFlags {
            creds: Some(Secret::new("u:p")),
            registry_token: Some(Secret::new("t")),
            ..Default::default()
        };
        let e = f.resolve("dest").unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("--dest-creds"), "{e}");
        let f = CredentialFlags {
            username: Some("u".into()),
            ..Default::default()
        };
        assert!(f
            .resolve("src")
            .unwrap_err()
            .to_string()
            .contains("--src-password"));
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("auth.json");
        std::fs::write(&bad, "{not json").unwrap();
        let f = CredentialFlags {
            authfile: Some(bad),
            ..Default::default()
        };
        let e = f.resolve("src").unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("auth.json"), "{e}");
    }

    #[test]
    fn endpoints() {
        assert!(endpoint(&Some("127.0.0.1:5000".into())).is_err());
        assert_eq!(
            endpoint(&Some("http://127.0.0.1:5000/".into()))
                .unwrap()
                .unwrap(),
            "http://127.0.0.1:5000"
        );
    }
}
