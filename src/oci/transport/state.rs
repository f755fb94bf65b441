//! What a [`super::Registry`] remembers for the rest of a run: the pull budget it has seen, and
//! the tag lists it has read.

use std::sync::Arc;

use std::time::Instant;

use super::auth::Secret;
use crate::oci::RegistryError;

/// A registry's pull budget, as its `RateLimit-Remaining: N;w=SECS` headers show it. A manifest
/// GET is a pull (Docker's definition); HEADs, blobs and tag lists are not.
#[derive(Debug, Default)]
pub(in crate::oci) struct PullBudget {
    /// The last `RateLimit-Remaining` seen, when the registry sends one.
    pub(in crate::oci) remaining: Option<i64>,
    /// The window, `w=SECS`, when sent.
    pub(in crate::oci) window_secs: Option<u64>,
    /// Manifest GETs sent and not answered yet (each may spend one pull).
    pub(in crate::oci) in_flight: i64,
    /// Set at the first 429 on a manifest GET, or when no pull is left: no manifest GET is
    /// sent again in this run.
    pub(in crate::oci) exhausted: bool,
}

/// A pull reserved by [`Registry::reserve_pull`]; released when the GET is answered.
pub(in crate::oci) struct PullGuard<'a>(pub(in crate::oci) &'a std::sync::Mutex<PullBudget>);

impl Drop for PullGuard<'_> {
    fn drop(&mut self) {
        self.0.lock().expect("not poisoned").in_flight -= 1;
    }
}

/// A repository's tags, as one listing returned them.
pub type TagSet = Arc<std::collections::HashSet<String>>;

/// A repository's complete tag list, in the order the registry returned it.
pub type AllTags = Arc<Vec<String>>;

/// The cached outcome of one listing (an error is shared too: a repository is listed once).
pub(in crate::oci) type TagListCell =
    Arc<tokio::sync::OnceCell<Result<AllTags, Arc<RegistryError>>>>;

/// One scope's bearer token and when it stops being used; `None` until fetched (or after a
/// 401 invalidated it). The async lock is held while the token is fetched, so concurrent
/// requests for the same scope wait for that one fetch instead of each fetching.
pub(in crate::oci) type TokenCell = Arc<tokio::sync::Mutex<Option<(Secret, Instant)>>>;
