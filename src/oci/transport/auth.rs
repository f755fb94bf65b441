//! Registry credentials: where they come from and how they are kept out of logs.
//!
//! A side's credentials are resolved once into a [`CredentialSource`]: fixed credentials, or an
//! auth file looked up per registry (the application decides which from its flags, in the order
//! skopeo uses; see `default_authfile` for the file lookup). For an ECR destination the
//! credentials come from `GetAuthorizationToken` instead, through a [`TokenSource`] that can
//! refresh them.
//!
//! Every secret lives in a [`Secret`], whose `Debug` and `Display` print `<redacted>`, so a
//! secret cannot reach a log line or an error message by accident.

use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use base64::Engine as _;

use crate::oci::RegistryError;

/// A string that must never be printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }
    /// The secret value, for building an `Authorization` header only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret::new(s))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A user name and password (or ECR token).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BasicCreds {
    /// The user name (not secret; it appears in error messages).
    pub username: String,
    /// The password or token.
    pub password: Secret,
}

/// A boxed future, for the object-safe [`TokenSource`].
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Credentials that can change during a run (the ECR token, valid 12 h).
pub trait TokenSource: Send + Sync {
    /// Current credentials, refreshing them when they are about to expire.
    fn current(&self) -> BoxFuture<'_, Result<BasicCreds, RegistryError>>;
    /// Called after the registry refused the current credentials (401), so the next
    /// `current()` fetches new ones.
    fn invalidate(&self) -> BoxFuture<'_, ()>;
}

/// How to authenticate to one registry.
#[derive(Clone, Default)]
pub enum Credentials {
    /// No credentials; anonymous bearer tokens are still fetched when challenged.
    #[default]
    Anonymous,
    /// User name and password, for Basic auth or for the token endpoint.
    Basic(BasicCreds),
    /// A bearer token given directly (`--src-registry-token`).
    Bearer(Secret),
    /// Refreshable credentials (ECR).
    Dynamic(Arc<dyn TokenSource>),
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::Anonymous => write!(f, "Anonymous"),
            Credentials::Basic(b) => write!(f, "Basic({:?}, <redacted>)", b.username),
            Credentials::Bearer(_) => write!(f, "Bearer(<redacted>)"),
            Credentials::Dynamic(_) => write!(f, "Dynamic(<ecr token>)"),
        }
    }
}

impl Credentials {
    /// The user name, for error messages.
    pub fn username(&self) -> Option<String> {
        match self {
            Credentials::Basic(b) => Some(b.username.clone()),
            Credentials::Dynamic(_) => Some("AWS".into()),
            _ => None,
        }
    }
}

/// Where one side's credentials come from. Resolved once, from settings, before any request;
/// [`CredentialSource::for_registry`] then gives the credentials for each registry.
#[derive(Clone, Debug, Default)]
pub enum CredentialSource {
    /// The same credentials for every registry (including [`Credentials::Anonymous`]).
    Fixed(Credentials),
    /// Looked up per registry in an auth file (already read and parsed); a registry without an
    /// entry is accessed anonymously.
    AuthFile(Arc<AuthFile>),
    /// No explicit credentials and no auth file: anonymous.
    #[default]
    None,
}

impl CredentialSource {
    /// The credentials for `registry` (`host[:port]`, `docker.io` for Docker Hub).
    pub fn for_registry(&self, registry: &str) -> Result<Credentials, RegistryError> {
        match self {
            CredentialSource::Fixed(c) => Ok(c.clone()),
            CredentialSource::AuthFile(f) => Ok(f.lookup(registry)?.unwrap_or_default()),
            CredentialSource::None => Ok(Credentials::Anonymous),
        }
    }
}

/// The first auth file that exists: `$REGISTRY_AUTH_FILE`,
/// `${XDG_RUNTIME_DIR}/containers/auth.json`, `~/.docker/config.json`.
pub fn default_authfile() -> Option<PathBuf> {
    let mut candidates = Vec::new();
    if let Some(p) = std::env::var_os("REGISTRY_AUTH_FILE") {
        candidates.push(PathBuf::from(p));
    }
    if let Some(p) = std::env::var_os("XDG_RUNTIME_DIR") {
        candidates.push(PathBuf::from(p).join("containers/auth.json"));
    }
    if let Some(home) = std::env::var_os("HOME") {
        candidates.push(PathBuf::from(home).join(".docker/config.json"));
    }
    candidates.into_iter().find(|p| p.is_file())
}

/// Docker Hub is stored under several keys in auth files.
const DOCKER_HUB_KEYS: &[&str] = &[
    "docker.io",
    "index.docker.io",
    "registry-1.docker.io",
    "https://index.docker.io/v1/",
    "https://index.docker.io/v1",
    "https://registry-1.docker.io",
];

/// A Docker/containers auth file, read and parsed once.
pub struct AuthFile {
    path: PathBuf,
    auths: serde_json::Map<String, serde_json::Value>,
}

impl fmt::Debug for AuthFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The entries hold secrets: show only where the file is.
        write!(f, "AuthFile({})", self.path.display())
    }
}

impl AuthFile {
    /// Reads and parses `path`. The error names the file but never its contents.
    pub fn load(path: &Path) -> Result<AuthFile, RegistryError> {
        let text = std::fs::read(path).map_err(|e| {
            RegistryError::Config(format!("cannot read auth file {}: {e}", path.display()))
        })?;
        let doc: serde_json::Value = serde_json::from_slice(&text).map_err(|e| {
            RegistryError::Config(format!(
                "auth file {} is not valid JSON (line {}, column {})",
                path.display(),
                e.line(),
                e.column()
            ))
        })?;
        let auths = doc
            .get("auths")
            .and_then(|a| a.as_object())
            .cloned()
            .unwrap_or_default();
        Ok(AuthFile {
            path: path.to_path_buf(),
            auths,
        })
    }

    /// Looks up `registry`. Returns `None` when the file has no entry for it.
    pub fn lookup(&self, registry: &str) -> Result<Option<Credentials>, RegistryError> {
        let path = &self.path;
        let auths = &self.auths;
        let keys: Vec<String> = if registry == "docker.io" {
            DOCKER_HUB_KEYS.iter().map(|s| s.to_string()).collect()
        } else {
            vec![
                registry.to_string(),
                format!("https://{registry}"),
                format!("http://{registry}"),
            ]
        };
        for (k, v) in auths {
            let normal = k.trim_end_matches('/');
            if !keys.iter().any(|key| key.trim_end_matches('/') == normal) {
                continue;
            }
            if let Some(auth) = v.get("auth").and_then(|a| a.as_str()) {
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(auth.trim())
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .ok_or_else(|| {
                        RegistryError::Config(format!(
                            "auth file {}: the entry for {k} has an \"auth\" value that is not base64 of USER:PASSWORD",
                            path.display()
                        ))
                    })?;
                let (u, p) = decoded.split_once(':').ok_or_else(|| {
                    RegistryError::Config(format!(
                        "auth file {}: the entry for {k} does not decode to USER:PASSWORD",
                        path.display()
                    ))
                })?;
                return Ok(Some(Credentials::Basic(BasicCreds {
                    username: u.to_string(),
                    password: Secret::new(p),
                })));
            }
            if let (Some(u), Some(p)) = (
                v.get("username").and_then(|x| x.as_str()),
                v.get("password").and_then(|x| x.as_str()),
            ) {
                return Ok(Some(Credentials::Basic(BasicCreds {
                    username: u.to_string(),
                    password: Secret::new(p),
                })));
            }
            if v.get("identitytoken").is_some() {
                tracing::warn!(registry, file = %path.display(), "auth file entry holds an identitytoken, which is not supported; using anonymous access");
            }
        }
        Ok(None)
    }
}

/// Encodes `user:pass` for a Basic `Authorization` header.
pub fn basic_header(c: &BasicCreds) -> String {
    let raw = format!("{}:{}", c.username, c.password.expose());
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

/// A parsed `WWW-Authenticate` challenge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Challenge {
    /// No authentication needed.
    None,
    /// HTTP Basic.
    Basic,
    /// The distribution token flow.
    Bearer {
        /// Token endpoint.
        realm: String,
        /// `service` parameter.
        service: Option<String>,
    },
}

/// Parses a `WWW-Authenticate` header with the `http-auth` crate.
pub fn parse_challenge(header: &str) -> Challenge {
    let Ok(list) = http_auth::parse_challenges(header) else {
        return Challenge::Basic;
    };
    for c in &list {
        if c.scheme.eq_ignore_ascii_case("bearer") {
            let get = |name: &str| {
                c.params
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.to_unescaped())
            };
            if let Some(realm) = get("realm") {
                return Challenge::Bearer {
                    realm,
                    service: get("service"),
                };
            }
        }
    }
    Challenge::Basic
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "<redacted> <redacted>");
        let c = Credentials::Basic(BasicCreds {
            username: "bob".into(),
            password: s,
        });
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("hunter2") && dbg.contains("bob"), "{dbg}");
    }

    #[test]
    fn authfile_lookup_with_docker_hub_aliases() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.json");
        let enc = base64::engine::general_purpose::STANDARD.encode("alice:s3cret");
        std::fs::write(
            &p,
            format!(r#"{{"auths":{{"https://index.docker.io/v1/":{{"auth":"{enc}"}},"127.0.0.1:5000":{{"auth":"{enc}"}}}}}}"#),
        )
        .unwrap();
        for reg in ["docker.io", "127.0.0.1:5000"] {
            match AuthFile::load(&p).unwrap().lookup(reg).unwrap() {
                Some(Credentials::Basic(b)) => assert_eq!(b.username, "alice"),
                other => panic!("{reg}: {other:?}"),
            }
        }
        assert!(AuthFile::load(&p)
            .unwrap()
            .lookup("ghcr.io")
            .unwrap()
            .is_none());
        std::fs::write(&p, "{not json").unwrap();
        let e = AuthFile::load(&p).unwrap_err().to_string();
        assert!(e.contains("config.json"), "{e}");
    }

    #[test]
    fn challenges() {
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io""#
            ),
            Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into())
            }
        );
        assert_eq!(parse_challenge(r#"Basic realm="test""#), Challenge::Basic);
    }
}
