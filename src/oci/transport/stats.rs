//! The counters a registry client keeps for the run's report and metrics.

use std::sync::atomic::{AtomicI64, AtomicU64};

use reqwest::Method;

/// Counters a run reports.
#[derive(Debug, Default)]
pub struct Stats {
    /// Requests retried after a transient failure.
    pub retries: AtomicU64,
    /// Last `RateLimit-Remaining` seen (Docker Hub), or -1.
    pub rate_limit_remaining: AtomicI64,
    /// Requests sent, by method (token requests included, as `GET`).
    pub(super) requests: std::sync::Mutex<std::collections::BTreeMap<&'static str, u64>>,
}

impl Stats {
    pub(super) fn count(&self, method: &Method) {
        let m = match *method {
            Method::GET => "GET",
            Method::HEAD => "HEAD",
            Method::PUT => "PUT",
            Method::POST => "POST",
            Method::PATCH => "PATCH",
            Method::DELETE => "DELETE",
            _ => "OTHER",
        };
        *self
            .requests
            .lock()
            .expect("not poisoned")
            .entry(m)
            .or_default() += 1;
    }

    /// Requests sent so far, by method.
    pub fn requests(&self) -> Vec<(&'static str, u64)> {
        let m = self.requests.lock().expect("not poisoned");
        m.iter().map(|(k, v)| (*k, *v)).collect()
    }
}
