//! Wiring between the control plane and the data plane: registry clients for the sources and
//! for ECR, with ECR credentials from `GetAuthorizationToken`.
//!
//! This is the one module that knows both `ecr` and `registry`, so neither depends on the other.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::Mutex;

use crate::ecr::sdk::SdkEcr;
use crate::ecr::token::TokenCache;
use crate::mirror::error::Result;
use crate::oci::transport::auth::{BasicCreds, BoxFuture, TokenSource};
use crate::oci::{
    CredentialSource, Credentials, Network, Registry, RegistryConfig, RegistryError, Secret,
};

/// How to reach one side's registries: resolved from settings before any request.
#[derive(Clone, Debug)]
pub struct Access {
    /// Where the credentials come from.
    pub credentials: CredentialSource,
    /// Verify TLS certificates; `false` also allows plain HTTP.
    pub tls_verify: bool,
    /// A directory with CA files and optionally a client certificate.
    pub cert_dir: Option<PathBuf>,
    /// Retries, timeouts and the per-registry request bound.
    pub network: Network,
}

impl Default for Access {
    fn default() -> Self {
        Access {
            credentials: CredentialSource::None,
            tls_verify: true,
            cert_dir: None,
            network: Network::default(),
        }
    }
}

impl Access {
    /// The client config for `registry`, without credentials.
    pub fn config(&self, registry: &str) -> RegistryConfig {
        let mut c = RegistryConfig::with_network(registry, &self.network);
        c.tls_verify = self.tls_verify;
        c.cert_dir = self.cert_dir.clone();
        c
    }

    /// The client config for `registry`, with its credentials.
    pub fn config_with_credentials(&self, registry: &str) -> Result<RegistryConfig, RegistryError> {
        let mut c = self.config(registry);
        c.credentials = self.credentials.for_registry(registry)?;
        Ok(c)
    }
}

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
    access: &Access,
) -> Result<RegistryConfig> {
    let cache = TokenCache::new(api);
    let endpoint = match endpoint {
        Some(e) => e,
        None => {
            let t = cache.get().await?;
            t.proxy_endpoint.trim_end_matches('/').to_string()
        }
    };
    let mut c = access.config(host);
    c.endpoint = Some(endpoint);
    c.credentials = Credentials::Dynamic(Arc::new(EcrCredentials::new(cache, host)));
    Ok(c)
}

/// Source registry clients, one per upstream host, created on first use and shared by every
/// copy of the run (so their auth tokens, limits and retry counters are shared too).
pub struct Sources {
    access: Access,
    clients: Mutex<HashMap<String, Arc<Registry>>>,
}

impl Sources {
    /// A pool that reaches every upstream registry with `access`.
    pub fn new(access: Access) -> Sources {
        Sources {
            access,
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// The client for `registry`.
    pub async fn get(&self, registry: &str) -> Result<Arc<Registry>> {
        let mut m = self.clients.lock().await;
        if let Some(r) = m.get(registry) {
            return Ok(r.clone());
        }
        let cfg = self.access.config_with_credentials(registry)?;
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

/// [`explain_missing_repository`] for a labelled failure: a `not-found` failure into an ECR
/// repository that `DescribeRepositories` confirms is missing says so, naming
/// `--create-missing`.
pub async fn explain_missing_repository_failure<A: crate::ecr::EcrApi>(
    api: &A,
    repository: &str,
    f: crate::mirror::Failure,
) -> crate::mirror::Failure {
    if f.label == crate::mirror::Label::NotFound
        && matches!(api.repository(repository).await, Ok(None))
    {
        return crate::mirror::Failure::new(
            f.label,
            format!("{}: {}", missing_repository_message(repository), f.message),
        );
    }
    f
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
