//! Retries with one budget per request: exponential backoff with jitter, `Retry-After`.

use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use super::super::RegistryError;
use super::Registry;

/// Retry settings, shared by every request of a run.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// How many times a failed request is repeated (`--retry-times`). Default 5.
    pub times: u32,
    /// The first wait. Default 500 ms; doubles each time, ±50 % jitter.
    pub initial: Duration,
    /// The longest wait between attempts. Default 30 s.
    pub max_interval: Duration,
    /// The longest `Retry-After` we honour; longer requests are capped. Default 120 s.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            times: 5,
            initial: Duration::from_millis(500),
            max_interval: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(120),
        }
    }
}

tokio::task_local! {
    /// Set while a [`Registry::retrying`] loop runs its operation: nested loops run once.
    static IN_RETRY: ();
}

/// Parses `Retry-After`: delta-seconds or an HTTP-date.
pub fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(
        when.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// Parses Docker Hub's `RateLimit-Remaining: 76;w=21600`.
pub fn parse_rate_limit(v: &str) -> Option<i64> {
    v.split(';').next()?.trim().parse().ok()
}

/// The window of Docker Hub's `RateLimit-Remaining: 76;w=21600`, in seconds (`21600`).
pub fn parse_rate_limit_window(v: &str) -> Option<u64> {
    v.split(';')
        .skip(1)
        .filter_map(|p| p.trim().strip_prefix("w="))
        .find_map(|w| w.trim().parse().ok())
}

impl Registry {
    /// Runs `op` with the run's retry policy: transient errors are repeated with exponential
    /// backoff and jitter, `Retry-After` sets the wait, anything else fails at once.
    ///
    /// **One retry budget per request.** Inside an outer `retrying` (of this or any registry,
    /// on the same task), `op` runs exactly once: the outer loop owns the budget. A blob
    /// transfer retries as a whole (its stream cannot be replayed), so the POST that opens the
    /// session and the source GET inside it must not retry on their own, or `--retry-times N`
    /// would send up to (N+1)² requests. This is ggcr's `retry.Never(ctx)` for the inner calls
    /// of an upload (`pkg/v1/remote/write.go`).
    pub async fn retrying<T, F, Fut>(&self, what: &str, mut op: F) -> Result<T, RegistryError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, RegistryError>>,
    {
        if IN_RETRY.try_with(|_| ()).is_ok() {
            return op().await;
        }
        let p = &self.cfg.retry;
        let policy = backoff::ExponentialBackoffBuilder::new()
            .with_initial_interval(p.initial)
            .with_multiplier(2.0)
            .with_randomization_factor(0.5)
            .with_max_interval(p.max_interval)
            .with_max_elapsed_time(None)
            .build();
        let attempts = std::sync::atomic::AtomicU32::new(0);
        backoff::future::retry_notify(
            policy,
            || {
                let fut = IN_RETRY.scope((), op());
                let attempts = &attempts;
                async move {
                    match fut.await {
                        Ok(v) => Ok(v),
                        Err(e)
                            if e.is_retryable()
                                && attempts.fetch_add(1, Ordering::Relaxed) < p.times =>
                        {
                            match e.retry_after() {
                                Some(d) => Err(backoff::Error::retry_after(e, d)),
                                None => Err(backoff::Error::transient(e)),
                            }
                        }
                        Err(e) => Err(backoff::Error::permanent(e)),
                    }
                }
            },
            |e: RegistryError, wait: Duration| {
                self.stats.retries.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(registry = %self.cfg.registry, what, error = %e, ?wait, "retrying");
            },
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::RegistryConfig;

    #[test]
    fn retry_after_parses_seconds_and_dates() {
        assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
        let future = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(30));
        let d = parse_retry_after(&future).unwrap();
        assert!(
            d <= Duration::from_secs(30) && d >= Duration::from_secs(28),
            "{d:?}"
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn rate_limit_header() {
        assert_eq!(parse_rate_limit("76;w=21600"), Some(76));
        assert_eq!(parse_rate_limit("0"), Some(0));
        assert_eq!(parse_rate_limit("x"), None);
        assert_eq!(parse_rate_limit_window("76;w=21600"), Some(21600));
        assert_eq!(parse_rate_limit_window("76"), None);
    }

    #[tokio::test]
    async fn nested_retrying_shares_one_budget() {
        let mut cfg = RegistryConfig::new("r");
        cfg.retry.times = 2;
        cfg.retry.initial = Duration::from_millis(1);
        let reg = Registry::new(cfg).unwrap();
        let inner_calls = std::sync::atomic::AtomicU32::new(0);
        let unavailable = || RegistryError::Status {
            registry: "r".into(),
            method: "POST".into(),
            what: "x".into(),
            status: 503,
            code: None,
            message: String::new(),
            retry_after: Some(Duration::from_millis(1)),
        };
        let r: Result<(), _> = reg
            .retrying("outer", || async {
                reg.retrying("inner", || async {
                    inner_calls.fetch_add(1, Ordering::Relaxed);
                    Err::<(), _>(unavailable())
                })
                .await
            })
            .await;
        assert!(r.is_err());
        // 1 try + 2 retries of the outer loop, each running the inner call once: 3, not 9.
        assert_eq!(inner_calls.load(Ordering::Relaxed), 3);
        // The budget is back once the outer loop is done.
        let calls = std::sync::atomic::AtomicU32::new(0);
        let _ = reg
            .retrying("again", || async {
                calls.fetch_add(1, Ordering::Relaxed);
                Err::<(), _>(unavailable())
            })
            .await;
        assert_eq!(calls.load(Ordering::Relaxed), 3);
    }

    #[tokio::test]
    async fn retrying_counts_and_gives_up() {
        let mut cfg = RegistryConfig::new("r");
        cfg.retry.times = 2;
        cfg.retry.initial = Duration::from_millis(1);
        let reg = Registry::new(cfg).unwrap();
        let calls = std::sync::atomic::AtomicU32::new(0);
        let r: Result<(), _> = reg
            .retrying("x", || async {
                calls.fetch_add(1, Ordering::Relaxed);
                Err(RegistryError::Status {
                    registry: "r".into(),
                    method: "GET".into(),
                    what: "x".into(),
                    status: 503,
                    code: None,
                    message: String::new(),
                    retry_after: Some(Duration::from_millis(1)),
                })
            })
            .await;
        assert!(r.is_err());
        assert_eq!(calls.load(Ordering::Relaxed), 3, "1 try + 2 retries");
        assert_eq!(reg.retries(), 2);
        let calls = std::sync::atomic::AtomicU32::new(0);
        let r: Result<(), _> = reg
            .retrying("x", || async {
                calls.fetch_add(1, Ordering::Relaxed);
                Err(RegistryError::DigestMismatch {
                    what: "b".into(),
                    expected: "e".into(),
                    actual: "a".into(),
                })
            })
            .await;
        assert!(r.is_err());
        assert_eq!(
            calls.load(Ordering::Relaxed),
            1,
            "permanent errors are not retried"
        );
    }
}
