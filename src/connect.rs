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
