//! Discovery: which ECR repositories are marked for mirroring, and what their tags say.
//!
//! `DescribeRepositories` (every page) and then `ListTagsForResource` per repository, with
//! bounded concurrency. The Resource Groups Tagging API (`tag:GetResources`) would be one call,
//! but moto does not serve it for ECR and the original tool that used it skipped pagination;
//! per-repository calls are what both AWS and moto answer the same way (DESIGN.md §2).
//!
//! Failure isolation: failing to *list* repositories fails discovery (nothing can be said);
//! failing to read one repository's tags, or bad tags, is an error for that repository only,
//! and the others go on. The result is sorted by repository name, so output and plans are
//! stable from run to run.

use futures::stream::{self, StreamExt as _};

use super::tags::{spec_from_tags, TagError, TagKeys};
use crate::ecr::{EcrApi, EcrError, Repository};
use crate::mirror::spec::MirrorSpec;

/// One repository that is marked for mirroring (or whose tags could not be read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovered {
    /// The ECR repository.
    pub repository: Repository,
    /// What to mirror into it, or why that cannot be known
    /// ([`TagError::Unreadable`] when its tags could not be read).
    pub spec: Result<MirrorSpec, TagError>,
}

/// The result of [`discover`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Discovery {
    /// Marked repositories (and those whose tags could not be read), sorted by name.
    pub items: Vec<Discovered>,
    /// Warnings (near-miss keys, duplicate tags, ...), in repository order. Each names its
    /// repository; each was also logged.
    pub warnings: Vec<String>,
    /// How many repositories were examined (after the prefix filter), marked or not.
    pub scanned: usize,
}

impl Discovery {
    /// The valid specs, in repository order.
    pub fn specs(&self) -> impl Iterator<Item = &MirrorSpec> {
        self.items.iter().filter_map(|d| d.spec.as_ref().ok())
    }

    /// The per-repository errors, in repository order.
    pub fn errors(&self) -> impl Iterator<Item = &TagError> {
        self.items.iter().filter_map(|d| d.spec.as_ref().err())
    }
}

/// Lists the repositories (only `prefix/...` when a prefix is given), reads each one's tags
/// with at most `concurrency` calls in flight (`0` counts as 1), and parses them with `keys`.
///
/// Fails only when the repositories cannot be listed.
pub async fn discover<A: EcrApi>(
    api: &A,
    prefix: Option<&str>,
    keys: &TagKeys,
    concurrency: usize,
) -> Result<Discovery, EcrError> {
    let repositories = candidates(api, prefix).await?;
    Ok(read_specs(api, repositories, keys, concurrency, &|_| {}).await)
}

/// The repositories discovery looks at (`DescribeRepositories`, every page), sorted by name.
pub async fn candidates<A: EcrApi>(
    api: &A,
    prefix: Option<&str>,
) -> Result<Vec<Repository>, EcrError> {
    let mut repositories = api.repositories(prefix).await?;
    repositories.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(repositories)
}

/// Reads the tags of `repositories` (`ListTagsForResource`, at most `concurrency` in flight)
/// and parses them with `keys`. `on_found` sees each marked repository as soon as its tags are
/// parsed, in completion order, so that a caller can start work on it (`sync` observes its
/// tags) while the other repositories are still being read. The result is sorted by name.
pub async fn read_specs<A: EcrApi>(
    api: &A,
    repositories: Vec<Repository>,
    keys: &TagKeys,
    concurrency: usize,
    on_found: &(dyn Fn(&Discovered) + Sync),
) -> Discovery {
    let scanned = repositories.len();
    type Read = (String, Option<Discovered>, Vec<String>);
    let mut read: Vec<Read> = stream::iter(repositories)
        .map(|repository| async move {
            let name = repository.name.clone();
            let (found, warnings) = match api.tags(&repository.arn).await {
                Ok(tags) => {
                    let parsed = spec_from_tags(&repository.name, &tags, keys);
                    let found = parsed.spec.map(|spec| Discovered { repository, spec });
                    (found, parsed.warnings)
                }
                Err(source) => {
                    tracing::warn!(repo = %repository.name, error = %source, "cannot read the repository's tags");
                    let spec = Err(TagError::Unreadable {
                        repository: repository.name.clone(),
                        source,
                    });
                    (Some(Discovered { repository, spec }), vec![])
                }
            };
            if let Some(d) = &found {
                on_found(d);
            }
            (name, found, warnings)
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    read.sort_by(|a, b| a.0.cmp(&b.0));
    let mut discovery = Discovery {
        scanned,
        ..Discovery::default()
    };
    for (name, found, warnings) in read {
        for w in &warnings {
            tracing::warn!(repo = %name, "{w}");
        }
        discovery.warnings.extend(warnings);
        discovery.items.extend(found);
    }
    discovery
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ecr::memory::MemoryEcr;
    use crate::ecr::{EcrToken, RepoSettings};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test]
    async fn marked_repositories_sorted_with_per_repo_errors() {
        let ecr = MemoryEcr::new();
        ecr.add(
            "mirror/zz",
            &[("upstream-image", "nginx"), ("upstream-tags", "1.25/1.26")],
        );
        ecr.add(
            "mirror/bad",
            &[("upstream-image", "nginx"), ("upstream-tags", "1.0//2")],
        );
        ecr.add("mirror/unmarked", &[("team", "x")]);
        ecr.add("mirror/typo", &[("Upstream-Image", "nginx")]);
        ecr.add(
            "mirror/aa",
            &[("upstream-image", "ghcr.io/a/b"), ("upstream-tags", "v1")],
        );
        ecr.add(
            "mirror/denied",
            &[("upstream-image", "nginx"), ("upstream-tags", "1")],
        );
        ecr.add(
            "elsewhere/x",
            &[("upstream-image", "nginx"), ("upstream-tags", "1")],
        );
        ecr.fail_tags(
            "mirror/denied",
            EcrError::AccessDenied {
                op: "ListTagsForResource",
                repository: Some("mirror/denied".into()),
                message: "no".into(),
            },
        );

        let d = discover(&ecr, Some("mirror"), &TagKeys::default(), 3)
            .await
            .unwrap();
        let names: Vec<&str> = d.items.iter().map(|i| i.repository.name.as_str()).collect();
        assert_eq!(
            names,
            ["mirror/aa", "mirror/bad", "mirror/denied", "mirror/zz"]
        );
        assert_eq!(d.scanned, 6);
        assert_eq!(d.specs().count(), 2);
        assert!(matches!(
            d.items[1].spec,
            Err(TagError::EmptyItem { position: 2, .. })
        ));
        assert!(matches!(
            d.items[2].spec,
            Err(TagError::Unreadable {
                source: EcrError::AccessDenied { .. },
                ..
            })
        ));
        assert_eq!(d.items[3].spec.as_ref().unwrap().tags, ["1.25", "1.26"]);
        assert_eq!(d.warnings.len(), 1, "{:?}", d.warnings);
        assert!(d.warnings[0].contains("mirror/typo"));
        assert_eq!(ecr.calls("ListTagsForResource"), 6);
    }

    /// `on_found` sees every repository the result lists (marked, with bad tags, or with
    /// unreadable tags), each once, and nothing else: `sync` observes exactly what it plans.
    #[tokio::test]
    async fn read_specs_reports_each_listed_repository_once() {
        let ecr = MemoryEcr::new();
        for i in 0..12 {
            ecr.add(
                &format!("mirror/r{i:02}"),
                &[("upstream-image", "nginx"), ("upstream-tags", "1")],
            );
        }
        ecr.add(
            "mirror/bad",
            &[("upstream-image", "nginx"), ("upstream-tags", "1//2")],
        );
        ecr.add("mirror/unmarked", &[("team", "x")]);
        ecr.fail_tags(
            "mirror/r05",
            EcrError::AccessDenied {
                op: "ListTagsForResource",
                repository: Some("mirror/r05".into()),
                message: "no".into(),
            },
        );
        let seen = std::sync::Mutex::new(Vec::new());
        let repos = candidates(&ecr, None).await.unwrap();
        let d = read_specs(&ecr, repos, &TagKeys::default(), 4, &|f| {
            seen.lock().unwrap().push(f.repository.name.clone())
        })
        .await;
        let mut seen = seen.into_inner().unwrap();
        seen.sort();
        let listed: Vec<String> = d.items.iter().map(|i| i.repository.name.clone()).collect();
        assert_eq!(seen, listed);
        assert_eq!(listed.len(), 13, "12 marked + 1 with bad tags: {listed:?}");
        assert!(!listed.contains(&"mirror/unmarked".to_string()));
        assert_eq!(d.scanned, 14);
    }

    #[tokio::test]
    async fn listing_failure_fails_discovery() {
        struct Broken;
        impl EcrApi for Broken {
            async fn repositories(&self, _: Option<&str>) -> Result<Vec<Repository>, EcrError> {
                Err(EcrError::Throttled {
                    op: "DescribeRepositories",
                    repository: None,
                    message: "slow down".into(),
                })
            }
            async fn tags(&self, _: &str) -> Result<Vec<(String, String)>, EcrError> {
                unreachable!()
            }
            async fn auth_token(&self) -> Result<EcrToken, EcrError> {
                unreachable!()
            }
            async fn create_repository(
                &self,
                _: &str,
                _: &RepoSettings,
                _: &[(String, String)],
            ) -> Result<Repository, EcrError> {
                unreachable!()
            }
            async fn tag_resource(&self, _: &str, _: &[(String, String)]) -> Result<(), EcrError> {
                unreachable!()
            }
        }
        let e = discover(&Broken, None, &TagKeys::default(), 4)
            .await
            .unwrap_err();
        assert!(e.is_retryable());
    }

    /// Counts the tag reads in flight, to check the bound.
    struct Slow {
        inner: MemoryEcr,
        in_flight: AtomicUsize,
        max: AtomicUsize,
    }

    impl EcrApi for Slow {
        async fn repositories(&self, p: Option<&str>) -> Result<Vec<Repository>, EcrError> {
            self.inner.repositories(p).await
        }
        async fn tags(&self, arn: &str) -> Result<Vec<(String, String)>, EcrError> {
            let n = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.max.fetch_max(n, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(5)).await;
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            self.inner.tags(arn).await
        }
        async fn auth_token(&self) -> Result<EcrToken, EcrError> {
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
    async fn concurrency_is_bounded() {
        let slow = Slow {
            inner: MemoryEcr::new(),
            in_flight: AtomicUsize::new(0),
            max: AtomicUsize::new(0),
        };
        for i in 0..40 {
            slow.inner.add(
                &format!("r{i:02}"),
                &[("upstream-image", "nginx"), ("upstream-tags", "1")],
            );
        }
        let d = discover(&slow, None, &TagKeys::default(), 4).await.unwrap();
        assert_eq!(d.items.len(), 40);
        assert!(d
            .items
            .windows(2)
            .all(|w| w[0].repository.name < w[1].repository.name));
        let max = slow.max.load(Ordering::SeqCst);
        assert!((2..=4).contains(&max), "max in flight {max}");
        // 0 means 1, not a stall.
        let d = discover(&slow, None, &TagKeys::default(), 0).await.unwrap();
        assert_eq!(d.items.len(), 40);
    }
}
