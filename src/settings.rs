//! Flags and environment → typed settings. Conflicts are rejected here, with messages that
//! name the flags, so the commands only see valid combinations.

use std::str::FromStr;

use crate::cli::{DestAccess, NetArgs, PlatformArgs, SrcAccess};
use crate::error::{Error, Result};
use crate::registry::auth::CredentialFlags;
use crate::registry::{RegistryConfig, RetryPolicy};
use crate::spec::{Platform, PlatformFilter};

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

/// A registry config with the run's network settings.
pub fn registry_config(registry: &str, net: &NetArgs, tls_verify: bool) -> RegistryConfig {
    let mut c = RegistryConfig::new(registry);
    c.tls_verify = tls_verify;
    c.max_in_flight = net.max_requests as usize;
    c.connect_timeout = std::time::Duration::from_secs(net.connect_timeout);
    c.read_timeout = std::time::Duration::from_secs(net.read_timeout);
    c.retry = RetryPolicy {
        times: net.retry_times,
        ..RetryPolicy::default()
    };
    c
}

/// The source registry config for `registry`.
pub fn src_registry(registry: &str, a: &SrcAccess, net: &NetArgs) -> Result<RegistryConfig> {
    let mut c = registry_config(registry, net, a.src_tls_verify);
    c.cert_dir = a.src_cert_dir.clone();
    c.credentials = src_credentials(a).resolve(registry, "src")?;
    Ok(c)
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
