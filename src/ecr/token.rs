//! A cache for the ECR authorization token, refreshed before it expires.
//!
//! An ECR token is valid for 12 hours, and a long sync (or a CronJob that runs into a slow
//! upstream) can outlive it. Every data-plane user asks [`TokenCache::get`], which returns the
//! cached token, or fetches a new one when the cached one expires within [`REFRESH_BEFORE`].
//!
//! Refreshes are rate-limited to one per [`MIN_REFRESH_INTERVAL`], whatever the expiry says.
//! moto returns an `expiresAt` in 2015 (already expired when issued), and its token still
//! works against the test registry; without the limit, every `get` would call
//! `GetAuthorizationToken` again, forever. A clock that is badly off, or a service that hands
//! out short-lived tokens, would loop the same way. Within the interval the cached token is
//! returned as it is, and the registry is the judge of whether it still works.
//!
//! The cache holds an async mutex across the fetch, so concurrent callers share one refresh
//! instead of stampeding the API.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::Mutex;

use super::{EcrApi, EcrError, EcrToken};

/// Refresh when the token expires within this long (30 minutes).
pub const REFRESH_BEFORE: Duration = Duration::from_secs(30 * 60);

/// Never refresh more often than this (60 seconds); see the module docs for why.
pub const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(60);

/// The validity assumed when the service gives no expiry: ECR's documented 12 hours.
pub const ASSUMED_VALIDITY: Duration = Duration::from_secs(12 * 60 * 60);

/// A source of the current time, injectable for tests.
pub type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// Caches the last [`EcrToken`] and refreshes it through [`EcrApi::auth_token`].
pub struct TokenCache<A> {
    api: A,
    clock: Clock,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    token: Option<EcrToken>,
    /// When the token was fetched; the expiry when the service gave none is counted from here.
    fetched_at: Option<SystemTime>,
    /// When the last fetch was attempted, successful or not (the rate limit counts both).
    attempted_at: Option<SystemTime>,
    /// Set by [`TokenCache::invalidate`].
    invalid: bool,
}

impl<A: EcrApi> TokenCache<A> {
    /// A cache over `api`, using the system clock. Nothing is fetched until [`get`](Self::get).
    pub fn new(api: A) -> Self {
        Self::with_clock(api, Arc::new(SystemTime::now))
    }

    /// A cache over `api` with an injected clock (tests).
    pub fn with_clock(api: A, clock: Clock) -> Self {
        TokenCache {
            api,
            clock,
            state: Mutex::new(State::default()),
        }
    }

    /// The API the cache fetches from.
    pub fn api(&self) -> &A {
        &self.api
    }

    /// The current token, refreshed first when it expires within [`REFRESH_BEFORE`] (or was
    /// [invalidated](Self::invalidate)) and the last attempt is at least
    /// [`MIN_REFRESH_INTERVAL`] old.
    ///
    /// Fails only when there is no token at all. When a refresh fails but a token is cached,
    /// the cached token is returned (with a warning): it may still be accepted, and if not,
    /// the registry's 401 says so more precisely than a second error would.
    pub async fn get(&self) -> Result<EcrToken, EcrError> {
        let mut state = self.state.lock().await;
        let now = (self.clock)();
        let Some(token) = &state.token else {
            return self.fetch(&mut state, now).await;
        };
        let expires = token
            .expires_at
            .or_else(|| state.fetched_at.map(|t| t + ASSUMED_VALIDITY))
            .unwrap_or(now);
        let due = state.invalid || expires <= now + REFRESH_BEFORE;
        let recently = state
            .attempted_at
            .is_some_and(|t| now.duration_since(t).unwrap_or_default() < MIN_REFRESH_INTERVAL);
        if !due || recently {
            return Ok(token.clone());
        }
        let cached = token.clone();
        match self.fetch(&mut state, now).await {
            Ok(t) => Ok(t),
            Err(e) => {
                tracing::warn!(error = %e, "cannot refresh the ECR token; using the cached one");
                Ok(cached)
            }
        }
    }

    /// Marks the cached token as due for refresh (e.g. after the registry rejected it). The
    /// next [`get`](Self::get) refreshes, subject to [`MIN_REFRESH_INTERVAL`].
    pub async fn invalidate(&self) {
        self.state.lock().await.invalid = true;
    }

    async fn fetch(&self, state: &mut State, now: SystemTime) -> Result<EcrToken, EcrError> {
        state.attempted_at = Some(now);
        let token = self.api.auth_token().await?;
        if token.expires_at.is_some_and(|t| t <= now) {
            // moto does this on every call (expiresAt in 2015). Say it once per refresh, at
            // debug level: it is expected in tests and harmless thanks to the rate limit.
            tracing::debug!(expires_at = ?token.expires_at, "the new ECR token is already expired");
        }
        state.token = Some(token.clone());
        state.fetched_at = Some(now);
        state.invalid = false;
        Ok(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ecr::{RepoSettings, Repository};
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
    use std::sync::Mutex as StdMutex;

    const T0: u64 = 1_700_000_000;

    /// A fake EcrApi whose tokens expire `validity` after the fake clock's now (or at a fixed
    /// time), counting calls.
    struct FakeApi {
        calls: AtomicUsize,
        now: Arc<AtomicU64>,
        expiry: StdMutex<Expiry>,
        fail: StdMutex<bool>,
    }

    #[derive(Clone, Copy)]
    enum Expiry {
        After(u64),
        At(u64),
        Never,
    }

    impl FakeApi {
        fn new(now: Arc<AtomicU64>, expiry: Expiry) -> Self {
            FakeApi {
                calls: AtomicUsize::new(0),
                now,
                expiry: StdMutex::new(expiry),
                fail: StdMutex::new(false),
            }
        }
        fn calls(&self) -> usize {
            self.calls.load(Ordering::SeqCst)
        }
    }

    fn secs(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(s)
    }

    /// The token cache must call nothing but GetAuthorizationToken; any other call fails the
    /// test through this error.
    fn not_for_the_cache(op: &'static str) -> EcrError {
        EcrError::Other {
            op,
            message: "the token cache must only call GetAuthorizationToken".into(),
        }
    }

    impl EcrApi for FakeApi {
        async fn repositories(&self, _: Option<&str>) -> Result<Vec<Repository>, EcrError> {
            Err(not_for_the_cache("DescribeRepositories"))
        }
        async fn tags(&self, _: &str) -> Result<Vec<(String, String)>, EcrError> {
            Err(not_for_the_cache("ListTagsForResource"))
        }
        async fn auth_token(&self) -> Result<EcrToken, EcrError> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
            if *self.fail.lock().unwrap() {
                return Err(EcrError::Other {
                    op: "GetAuthorizationToken",
                    message: "boom".into(),
                });
            }
            let now = self.now.load(Ordering::SeqCst);
            let expires_at = match *self.expiry.lock().unwrap() {
                Expiry::After(v) => Some(secs(now + v)),
                Expiry::At(t) => Some(secs(t)),
                Expiry::Never => None,
            };
            Ok(EcrToken {
                username: "AWS".into(),
                password: format!("pw{n}"),
                proxy_endpoint: "https://123456789012.dkr.ecr.us-east-1.amazonaws.com".into(),
                expires_at,
            })
        }
        async fn create_repository(
            &self,
            _: &str,
            _: &RepoSettings,
            _: &[(String, String)],
        ) -> Result<Repository, EcrError> {
            Err(not_for_the_cache("CreateRepository"))
        }
        async fn tag_resource(&self, _: &str, _: &[(String, String)]) -> Result<(), EcrError> {
            Err(not_for_the_cache("TagResource"))
        }
    }

    fn setup(expiry: Expiry) -> (Arc<AtomicU64>, TokenCache<Arc<FakeApi>>, Arc<FakeApi>) {
        let now = Arc::new(AtomicU64::new(T0));
        let api = Arc::new(FakeApi::new(now.clone(), expiry));
        let clock_now = now.clone();
        let cache = TokenCache::with_clock(
            api.clone(),
            Arc::new(move || secs(clock_now.load(Ordering::SeqCst))),
        );
        (now, cache, api)
    }

    #[tokio::test]
    async fn caches_until_thirty_minutes_before_expiry() {
        let (now, cache, api) = setup(Expiry::After(12 * 3600));
        assert_eq!(cache.get().await.unwrap().password, "pw1");
        assert_eq!(cache.get().await.unwrap().password, "pw1");
        assert_eq!(api.calls(), 1);
        // 11 h later: 1 h left, still fine.
        now.store(T0 + 11 * 3600, Ordering::SeqCst);
        assert_eq!(cache.get().await.unwrap().password, "pw1");
        assert_eq!(api.calls(), 1);
        // 11 h 31 min later: 29 min left, refresh.
        now.store(T0 + 11 * 3600 + 31 * 60, Ordering::SeqCst);
        assert_eq!(cache.get().await.unwrap().password, "pw2");
        assert_eq!(api.calls(), 2);
        assert_eq!(cache.get().await.unwrap().password, "pw2");
        assert_eq!(api.calls(), 2);
    }

    #[tokio::test]
    async fn an_already_expired_token_does_not_loop() {
        // moto: expiresAt = 2015-01-01, long before "now".
        let (now, cache, api) = setup(Expiry::At(1_420_070_400));
        for _ in 0..100 {
            assert_eq!(cache.get().await.unwrap().password, "pw1");
        }
        assert_eq!(api.calls(), 1, "at most one fetch per interval");
        now.store(T0 + 59, Ordering::SeqCst);
        cache.get().await.unwrap();
        assert_eq!(api.calls(), 1);
        now.store(T0 + 60, Ordering::SeqCst);
        for _ in 0..100 {
            assert_eq!(cache.get().await.unwrap().password, "pw2");
        }
        assert_eq!(api.calls(), 2);
    }

    #[tokio::test]
    async fn concurrent_callers_share_one_fetch() {
        let (_, cache, api) = setup(Expiry::After(12 * 3600));
        let cache = Arc::new(cache);
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let c = cache.clone();
                tokio::spawn(async move { c.get().await.unwrap().password })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap(), "pw1");
        }
        assert_eq!(api.calls(), 1);
    }

    #[tokio::test]
    async fn no_expiry_assumes_twelve_hours() {
        let (now, cache, api) = setup(Expiry::Never);
        cache.get().await.unwrap();
        now.store(T0 + 11 * 3600, Ordering::SeqCst);
        cache.get().await.unwrap();
        assert_eq!(api.calls(), 1);
        now.store(T0 + 11 * 3600 + 31 * 60, Ordering::SeqCst);
        cache.get().await.unwrap();
        assert_eq!(api.calls(), 2);
    }

    #[tokio::test]
    async fn invalidate_refreshes_but_respects_the_interval() {
        let (now, cache, api) = setup(Expiry::After(12 * 3600));
        cache.get().await.unwrap();
        cache.invalidate().await;
        cache.get().await.unwrap();
        assert_eq!(api.calls(), 1, "within the interval");
        now.store(T0 + 61, Ordering::SeqCst);
        assert_eq!(cache.get().await.unwrap().password, "pw2");
        assert_eq!(api.calls(), 2);
        cache.get().await.unwrap();
        assert_eq!(api.calls(), 2, "fresh again");
    }

    #[tokio::test]
    async fn failures() {
        let (now, cache, api) = setup(Expiry::After(3600));
        *api.fail.lock().unwrap() = true;
        // No token at all: the error comes through, and every call tries again.
        assert!(cache.get().await.is_err());
        assert!(cache.get().await.is_err());
        assert_eq!(api.calls(), 2);
        *api.fail.lock().unwrap() = false;
        assert_eq!(cache.get().await.unwrap().password, "pw3");
        // Due for refresh (1 h validity < 30 min after 31 min), refresh fails: the cached
        // token is returned, and the failed attempt counts for the rate limit.
        *api.fail.lock().unwrap() = true;
        now.store(T0 + 31 * 60, Ordering::SeqCst);
        assert_eq!(cache.get().await.unwrap().password, "pw3");
        assert_eq!(cache.get().await.unwrap().password, "pw3");
        assert_eq!(api.calls(), 4);
    }
}
