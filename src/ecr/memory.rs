//! An in-memory [`EcrApi`], for unit tests of code built on the trait (discovery, planner,
//! executor, `import`). No network, deterministic, with failure injection and call counts.
//!
//! It follows real ECR where that matters to callers: `TagResource` merges by key,
//! `CreateRepository` on an existing name is [`EcrError::AlreadyExists`], unknown ARNs are
//! [`EcrError::NotFound`]. It does not validate tag values (neither does moto); callers check
//! them with [`tags::disallowed_tag_value_char`](super::tags::disallowed_tag_value_char).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use super::{EcrApi, EcrError, EcrToken, RepoSettings, Repository};

/// The fake account id used in ARNs and URIs (moto's default too).
pub const ACCOUNT: &str = "123456789012";
/// The fake region.
pub const REGION: &str = "us-east-1";

/// An in-memory ECR registry. See the module docs.
#[derive(Debug, Default)]
pub struct MemoryEcr {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    repos: BTreeMap<String, Stored>,
    tag_failures: HashMap<String, EcrError>,
    calls: BTreeMap<&'static str, usize>,
    /// The account setting `BLOB_MOUNTING` (`None`: the call fails, as against moto).
    blob_mounting: Option<bool>,
}

#[derive(Debug, Clone)]
struct Stored {
    repo: Repository,
    settings: RepoSettings,
    tags: Vec<(String, String)>,
}

impl MemoryEcr {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the account setting `BLOB_MOUNTING`; `None` makes `GetAccountSetting` fail.
    pub fn set_blob_mounting(&self, v: Option<bool>) {
        self.inner.lock().expect("not poisoned").blob_mounting = v;
    }

    /// Adds a repository with tags (mutable, default settings) and returns it.
    pub fn add(&self, name: &str, tags: &[(&str, &str)]) -> Repository {
        let tags: Vec<(String, String)> = tags
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut inner = self.inner.lock().expect("poisoned");
        let repo = make_repository(name, false);
        inner.repos.insert(
            name.to_string(),
            Stored {
                repo: repo.clone(),
                settings: RepoSettings::default(),
                tags,
            },
        );
        repo
    }

    /// Makes `ListTagsForResource` for this repository fail with `error`.
    pub fn fail_tags(&self, name: &str, error: EcrError) {
        let mut inner = self.inner.lock().expect("poisoned");
        inner.tag_failures.insert(name.to_string(), error);
    }

    /// The current tags of a repository, if it exists.
    pub fn tags_of(&self, name: &str) -> Option<Vec<(String, String)>> {
        let inner = self.inner.lock().expect("poisoned");
        inner.repos.get(name).map(|s| s.tags.clone())
    }

    /// The settings a repository was created with, if it exists.
    pub fn settings_of(&self, name: &str) -> Option<RepoSettings> {
        let inner = self.inner.lock().expect("poisoned");
        inner.repos.get(name).map(|s| s.settings.clone())
    }

    /// How many times an operation (`"DescribeRepositories"`, `"ListTagsForResource"`,
    /// `"GetAuthorizationToken"`, `"CreateRepository"`, `"TagResource"`) was called.
    pub fn calls(&self, op: &str) -> usize {
        let inner = self.inner.lock().expect("poisoned");
        inner.calls.get(op).copied().unwrap_or(0)
    }

    fn count(&self, op: &'static str) -> std::sync::MutexGuard<'_, Inner> {
        let mut inner = self.inner.lock().expect("poisoned");
        *inner.calls.entry(op).or_default() += 1;
        inner
    }
}

fn make_repository(name: &str, immutable: bool) -> Repository {
    Repository {
        name: name.to_string(),
        arn: format!("arn:aws:ecr:{REGION}:{ACCOUNT}:repository/{name}"),
        uri: format!("{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{name}"),
        tag_mutability: if immutable {
            crate::ecr::TagMutability::Immutable
        } else {
            crate::ecr::TagMutability::Mutable
        },
    }
}

fn by_arn<'a>(
    inner: &'a mut Inner,
    op: &'static str,
    arn: &str,
) -> Result<&'a mut Stored, EcrError> {
    inner
        .repos
        .values_mut()
        .find(|s| s.repo.arn == arn)
        .ok_or_else(|| EcrError::NotFound {
            op,
            repository: super::repository_name_from_arn(arn).to_string(),
        })
}

impl EcrApi for MemoryEcr {
    async fn repositories(&self, prefix: Option<&str>) -> Result<Vec<Repository>, EcrError> {
        let inner = self.count("DescribeRepositories");
        Ok(inner
            .repos
            .values()
            .filter(|s| super::in_prefix(&s.repo.name, prefix))
            .map(|s| s.repo.clone())
            .collect())
    }

    async fn repository(&self, name: &str) -> Result<Option<Repository>, EcrError> {
        let inner = self.count("DescribeRepositories");
        Ok(inner.repos.get(name).map(|s| s.repo.clone()))
    }

    async fn tags(&self, arn: &str) -> Result<Vec<(String, String)>, EcrError> {
        const OP: &str = "ListTagsForResource";
        let mut inner = self.count(OP);
        let name = super::repository_name_from_arn(arn).to_string();
        if let Some(e) = inner.tag_failures.get(&name) {
            return Err(e.clone());
        }
        Ok(by_arn(&mut inner, OP, arn)?.tags.clone())
    }

    async fn auth_token(&self) -> Result<EcrToken, EcrError> {
        let _inner = self.count("GetAuthorizationToken");
        Ok(EcrToken {
            username: "AWS".into(),
            password: format!("{ACCOUNT}-auth-token"),
            proxy_endpoint: format!("https://{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"),
            expires_at: None,
        })
    }

    async fn create_repository(
        &self,
        name: &str,
        settings: &RepoSettings,
        tags: &[(String, String)],
    ) -> Result<Repository, EcrError> {
        const OP: &str = "CreateRepository";
        let mut inner = self.count(OP);
        if inner.repos.contains_key(name) {
            return Err(EcrError::AlreadyExists {
                op: OP,
                repository: name.to_string(),
            });
        }
        let repo = make_repository(name, settings.immutable);
        inner.repos.insert(
            name.to_string(),
            Stored {
                repo: repo.clone(),
                settings: settings.clone(),
                tags: merge(Vec::new(), tags),
            },
        );
        Ok(repo)
    }

    async fn tag_resource(&self, arn: &str, tags: &[(String, String)]) -> Result<(), EcrError> {
        const OP: &str = "TagResource";
        let mut inner = self.count(OP);
        let stored = by_arn(&mut inner, OP, arn)?;
        stored.tags = merge(std::mem::take(&mut stored.tags), tags);
        Ok(())
    }

    async fn blob_mounting(&self) -> Result<bool, EcrError> {
        const OP: &str = "GetAccountSetting";
        let inner = self.count(OP);
        inner.blob_mounting.ok_or_else(|| EcrError::Other {
            op: OP,
            message: "HTTP 500 (as moto answers)".into(),
        })
    }
}

/// `TagResource` semantics: each new key overwrites or appends; other keys stay.
fn merge(mut old: Vec<(String, String)>, new: &[(String, String)]) -> Vec<(String, String)> {
    for (k, v) in new {
        match old.iter_mut().find(|(ok, _)| ok == k) {
            Some(slot) => slot.1 = v.clone(),
            None => old.push((k.clone(), v.clone())),
        }
    }
    old
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn behaves_like_ecr() {
        let ecr = MemoryEcr::new();
        let r = ecr.add("mirror/a", &[("team", "x")]);
        ecr.add("other/b", &[]);
        assert_eq!(
            ecr.repositories(Some("mirror")).await.unwrap(),
            vec![r.clone()]
        );
        assert_eq!(ecr.repositories(None).await.unwrap().len(), 2);
        ecr.tag_resource(
            &r.arn,
            &[("team".into(), "y".into()), ("k".into(), "v".into())],
        )
        .await
        .unwrap();
        assert_eq!(
            ecr.tags(&r.arn).await.unwrap(),
            vec![("team".into(), "y".into()), ("k".into(), "v".into())]
        );
        let e = ecr
            .create_repository("mirror/a", &RepoSettings::default(), &[])
            .await
            .unwrap_err();
        assert!(matches!(e, EcrError::AlreadyExists { .. }), "{e}");
        let e = ecr
            .tags("arn:aws:ecr:us-east-1:1:repository/nope")
            .await
            .unwrap_err();
        assert_eq!(
            e,
            EcrError::NotFound {
                op: "ListTagsForResource",
                repository: "nope".into()
            }
        );
        assert_eq!(ecr.repository("nope").await.unwrap(), None);
        assert_eq!(ecr.calls("TagResource"), 1);
        assert_eq!(ecr.calls("ListTagsForResource"), 2);
    }
}
