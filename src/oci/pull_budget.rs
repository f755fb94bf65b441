//! Docker Hub's pull budget, as the run has seen it: a manifest GET is a pull (Docker's
//! definition; HEADs, blobs and tag lists are not). From the first 429, or when no pull is
//! left, no manifest GET is sent to that registry for the rest of the run.

use super::transport::{PullGuard, Registry};
use super::RegistryError;

impl Registry {
    /// Whether this run has stopped sending manifest GETs to this registry, its pull budget
    /// being used up.
    pub fn pulls_exhausted(&self) -> bool {
        self.budget.lock().expect("not poisoned").exhausted
    }

    /// Reserves one pull for a manifest GET, or refuses without a request when the budget is
    /// known to be used up: after a 429 on a manifest GET, or when the last
    /// `RateLimit-Remaining` cannot cover this GET besides those already in flight.
    pub(in crate::oci) fn reserve_pull(&self, what: &str) -> Result<PullGuard<'_>, RegistryError> {
        let mut b = self.budget.lock().expect("not poisoned");
        if !b.exhausted {
            if let Some(left) = b.remaining {
                if left - b.in_flight <= 0 {
                    b.exhausted = true;
                    tracing::warn!(registry = %self.cfg.registry, remaining = left,
                        "the pull budget is used up; no more manifest GETs to this registry in this run");
                }
            }
        }
        if b.exhausted {
            return Err(RegistryError::PullBudget {
                registry: self.cfg.registry.clone(),
                what: what.to_string(),
                window_secs: b.window_secs,
            });
        }
        b.in_flight += 1;
        Ok(PullGuard(&self.budget))
    }

    /// A manifest GET answered 429 by a registry whose `RateLimit-Remaining` is now 0 (Docker
    /// Hub's `TOOMANYREQUESTS`): the budget is used up for the run, so this is not retried.
    /// Any other 429 stays a retryable status.
    pub(in crate::oci) fn pull_refused(&self, e: RegistryError, what: &str) -> RegistryError {
        let RegistryError::Status { status: 429, .. } = &e else {
            return e;
        };
        let mut b = self.budget.lock().expect("not poisoned");
        if b.remaining.is_some_and(|r| r <= 0) {
            if !b.exhausted {
                tracing::warn!(registry = %self.cfg.registry, what,
                    "429: the pull budget is used up; no more manifest GETs to this registry in this run");
            }
            b.exhausted = true;
            return RegistryError::PullBudget {
                registry: self.cfg.registry.clone(),
                what: what.to_string(),
                window_secs: b.window_secs,
            };
        }
        e
    }
}
