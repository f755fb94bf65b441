//! Wiring between the control plane and the data plane: registry clients for the sources and
//! for ECR, with ECR credentials from `GetAuthorizationToken`.
//!
//! This is the one module that knows both `ecr` and `registry`, so neither depends on the other.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::Mutex;

use crate::cli::{NetArgs, SrcAccess};
use crate::ecr::sdk::SdkEcr;
use crate::ecr::token::TokenCache;
use crate::error::{RegistryError, Result};
use crate::registry::auth::{BasicCreds, BoxFuture, Credentials, Secret, TokenSource};
use crate::registry::{Registry, RegistryConfig};
use crate::settings;

/// ECR credentials for the data plane, refreshed through the token cache.
pub struct EcrCredentials {
    cache: TokenCache<SdkEcr>,
    registry: String,
}

impl EcrCredentials {
    /// Wraps a token cache for `registry` (named in errors).
    pub fn new(cache: TokenCache<SdkEcr>, registry: &str) -> EcrCredentials {
        EcrCredentials {
            cache,
            registry: registry.to_string(),
        }
    }
}

impl TokenSource for EcrCredentials {
    fn current(&self) -> BoxFuture<'_, Result<BasicCreds, RegistryError>> {
        Box::pin(async move {
            let t = self.cache.get().await.map_err(|e| RegistryError::Auth {
                registry: self.registry.clone(),
                user: Some("AWS".into()),
                reason: format!("cannot get an ECR authorization token: {e}"),
            })?;
            Ok(BasicCreds {
                username: t.username.clone(),
                password: Secret::new(t.password.clone()),
            })
        })
    }
    fn invalidate(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.cache.invalidate())
    }
}

/// Builds the data-plane client for an ECR registry host: token auth, and requests sent to
/// `endpoint` when given, else to the token's `proxyEndpoint`.
pub async fn ecr_registry(
    api: SdkEcr,
    host: &str,
    endpoint: Option<String>,
    tls_verify: bool,
    net: &NetArgs,
) -> Result<RegistryConfig> {
    let cache = TokenCache::new(api);
    let endpoint = match endpoint {
        Some(e) => e,
        None => {
            let t = cache.get().await?;
            t.proxy_endpoint.trim_end_matches('/').to_string()
        }
    };
    let mut c = settings::registry_config(host, net, tls_verify);
    c.endpoint = Some(endpoint);
    c.credentials = Credentials::Dynamic(Arc::new(EcrCredentials::new(cache, host)));
    Ok(c)
}

/// Source registry clients, one per upstream host, created on first use and shared by every
/// copy of the run (so their auth tokens, limits and retry counters are shared too).
pub struct Sources {
    access: SrcAccess,
    net: NetArgs,
    clients: Mutex<HashMap<String, Arc<Registry>>>,
}

impl Sources {
    /// A pool with the run's `--src-*` and network flags.
    pub fn new(access: SrcAccess, net: NetArgs) -> Sources {
        Sources {
            access,
            net,
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// The client for `registry`.
    pub async fn get(&self, registry: &str) -> Result<Arc<Registry>> {
        let mut m = self.clients.lock().await;
        if let Some(r) = m.get(registry) {
            return Ok(r.clone());
        }
        let cfg = settings::src_registry(registry, &self.access, &self.net)?;
        let r = Arc::new(Registry::new(cfg)?);
        m.insert(registry.to_string(), r.clone());
        Ok(r)
    }

    /// Every client created so far.
    pub async fn all(&self) -> Vec<Arc<Registry>> {
        self.clients.lock().await.values().cloned().collect()
    }
}

/// What [`ensure_repository`] found or did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ensured {
    /// The repository was already there; nothing was changed.
    Existed,
    /// It was created with the settings.
    Created,
}

/// `--create-missing`: makes sure the ECR repository `name` exists, creating it with
/// `settings` (and no resource tags: a repository made for a copy is not marked for
/// mirroring) when `DescribeRepositories` does not find it. A concurrent creation counts as
/// existing.
pub async fn ensure_repository<A: crate::ecr::EcrApi>(
    api: &A,
    name: &str,
    settings: &crate::ecr::RepoSettings,
) -> Result<Ensured, crate::ecr::EcrError> {
    if api.repository(name).await?.is_some() {
        return Ok(Ensured::Existed);
    }
    match api.create_repository(name, settings, &[]).await {
        Ok(_) => Ok(Ensured::Created),
        Err(crate::ecr::EcrError::AlreadyExists { .. }) => Ok(Ensured::Existed),
        Err(e) => Err(e),
    }
}

/// The message of a failed copy into an ECR repository that does not exist.
pub fn missing_repository_message(repository: &str) -> String {
    format!("repository {repository:?} does not exist in ECR; create it or pass --create-missing")
}

/// Explains a failed copy into ECR: when the destination registry (`registry`) answered 404
/// (ECR says `NAME_UNKNOWN` for a repository that does not exist) and `DescribeRepositories`
/// confirms the repository is missing, the error's message says so and names
/// `--create-missing`. Any other error, or a failed check, leaves the error as it was.
pub async fn explain_missing_repository<A: crate::ecr::EcrApi>(
    api: &A,
    registry: &str,
    repository: &str,
    err: RegistryError,
) -> RegistryError {
    match err {
        RegistryError::Status {
            registry: r,
            method,
            what,
            status: 404,
            code,
            message: _,
            retry_after,
        } if r == registry && matches!(api.repository(repository).await, Ok(None)) => {
            RegistryError::Status {
                registry: r,
                method,
                what,
                status: 404,
                code,
                message: missing_repository_message(repository),
                retry_after,
            }
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ecr::memory::MemoryEcr;
    use crate::ecr::RepoSettings;

    fn status(registry: &str, code: u16) -> RegistryError {
        RegistryError::Status {
            registry: registry.into(),
            method: "POST".into(),
            what: "blob upload".into(),
            status: code,
            code: Some("NAME_UNKNOWN".into()),
            message: "repository name not known to registry".into(),
            retry_after: None,
        }
    }

    #[tokio::test]
    async fn ensure_creates_once_with_the_settings() {
        let ecr = MemoryEcr::new();
        let s = RepoSettings {
            scan_on_push: true,
            immutable: true,
            ..RepoSettings::default()
        };
        assert_eq!(
            ensure_repository(&ecr, "mirror/app", &s).await.unwrap(),
            Ensured::Created
        );
        assert_eq!(
            ensure_repository(&ecr, "mirror/app", &s).await.unwrap(),
            Ensured::Existed
        );
        assert_eq!(ecr.calls("CreateRepository"), 1);
        assert_eq!(ecr.settings_of("mirror/app").unwrap(), s);
        assert_eq!(ecr.tags_of("mirror/app").unwrap(), vec![]);
    }

    #[tokio::test]
    async fn a_missing_repository_is_explained() {
        let ecr = MemoryEcr::new();
        ecr.add("mirror/there", &[]);
        let host = "123456789012.dkr.ecr.us-east-1.amazonaws.com";
        let e = explain_missing_repository(&ecr, host, "mirror/gone", status(host, 404)).await;
        let msg = e.to_string();
        assert!(
            msg.contains(
                "\"mirror/gone\" does not exist in ECR; create it or pass --create-missing"
            ) && msg.contains("NAME_UNKNOWN"),
            "{msg}"
        );
        // Unchanged: the repository exists, another status, or another registry's 404.
        for (repo, err) in [
            ("mirror/there", status(host, 404)),
            ("mirror/gone", status(host, 500)),
            ("mirror/gone", status("ghcr.io", 404)),
        ] {
            let before = err.to_string();
            let after = explain_missing_repository(&ecr, host, repo, err).await;
            assert_eq!(after.to_string(), before);
        }
    }
}
