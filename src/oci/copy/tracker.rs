//! The run-wide state of a destination registry: which repository got each blob, which
//! manifests are committed (where a mount may come from), and whether the registry mounts.

use super::*;

/// (repository, digest).
pub(super) type RepoBlob = (String, String);

/// Remembers, per destination registry, which repository got each blob during this run, and
/// makes concurrent copies of the same blob wait for the first one.
///
/// Two levels: per digest (the run's single upload; later repositories mount from the
/// holder) and per (repository, digest) (a blob placed in a repository once is not HEADed or
/// mounted there again). The second level is what keeps a layer shared by every tag of a
/// repository at one HEAD and at most one mount per repository, however many of its tags and
/// platforms are copied at once.
#[derive(Default)]
pub struct BlobTracker {
    cells: Mutex<HashMap<String, Arc<OnceCell<String>>>>,
    placed: Mutex<HashMap<RepoBlob, Arc<OnceCell<()>>>>,
    /// Child manifests put (or found) per (repository, digest) in this run.
    manifests: Mutex<HashMap<RepoBlob, Arc<OnceCell<()>>>>,
    /// Child manifests fetched, with their blobs placed, per (repository, digest).
    prepared: Mutex<HashMap<RepoBlob, Arc<OnceCell<Arc<Prepared>>>>>,
    /// Which repositories hold a committed manifest referencing each blob, and who waits.
    commits: Mutex<Commits>,
    /// Woken whenever `commits` changes.
    changed: tokio::sync::Notify,
}

/// The commit bookkeeping of a [`BlobTracker`].
#[derive(Default)]
pub(super) struct Commits {
    /// digest → repositories where a manifest referencing it was committed (PUT) in this run.
    committed: HashMap<String, BTreeSet<String>>,
    /// (repository, digest) uploaded by a copy still running, whose manifest is not committed
    /// yet: a commit may still come.
    pending: HashMap<RepoBlob, usize>,
    /// (waiting repository, holder repository) → copies waiting for a commit there.
    waits: HashMap<(String, String), usize>,
}

impl Commits {
    /// Whether `from` waits, directly or through others, for a commit in `to`.
    pub(super) fn reaches(&self, from: &str, to: &str) -> bool {
        let mut stack = vec![from.to_string()];
        let mut seen = BTreeSet::new();
        while let Some(r) = stack.pop() {
            if r == to {
                return true;
            }
            if !seen.insert(r.clone()) {
                continue;
            }
            for ((w, h), n) in &self.waits {
                if *n > 0 && *w == r {
                    stack.push(h.clone());
                }
            }
        }
        false
    }

    pub(super) fn committed_in(&self, digest: &str, prefer: &str) -> Option<String> {
        let repos = self.committed.get(digest)?;
        if repos.contains(prefer) {
            return Some(prefer.to_string());
        }
        repos.iter().next().cloned()
    }
}

/// Whether the destination registry mounts blobs across repositories.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MountPolicy {
    /// Not known (a registry that is not ECR, or ECR's `GetAccountSetting` failed): ask once;
    /// the answer decides for the rest of the run.
    Unknown,
    /// Mounts work (ECR's `BLOB_MOUNTING` is `ENABLED`): mount from committed repositories.
    Enabled,
    /// Mounts do not work (ECR's `BLOB_MOUNTING` is `DISABLED`, or a mount was refused in
    /// this run): never ask; every repository uploads its own copy.
    Disabled,
}

/// The blobs a copy uploaded whose manifest it has not committed yet; released (and waiters
/// woken) when the copy ends, however it ends.
pub(in crate::oci) struct Session<'t> {
    tracker: &'t BlobTracker,
    pending: Mutex<Vec<RepoBlob>>,
}

impl<'t> Session<'t> {
    pub(in crate::oci) fn new(tracker: &'t BlobTracker) -> Session<'t> {
        Session {
            tracker,
            pending: Mutex::new(Vec::new()),
        }
    }

    /// This copy uploaded `digest` into `repo`, and will commit a manifest referencing it.
    pub(super) fn uploaded(&self, repo: &str, digest: &str) {
        let key = (repo.to_string(), digest.to_string());
        *self
            .tracker
            .commits
            .lock()
            .expect("not poisoned")
            .pending
            .entry(key.clone())
            .or_default() += 1;
        self.pending.lock().expect("not poisoned").push(key);
    }
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        let keys = std::mem::take(&mut *self.pending.lock().expect("not poisoned"));
        if keys.is_empty() {
            return;
        }
        let mut c = self.tracker.commits.lock().expect("not poisoned");
        for k in keys {
            if let Some(n) = c.pending.get_mut(&k) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    c.pending.remove(&k);
                }
            }
        }
        drop(c);
        self.tracker.changed.notify_waiters();
    }
}

/// A registered wait of `waiter` on `holder`; removed on drop (also when cancelled).
pub(super) struct WaitEdge<'t> {
    tracker: &'t BlobTracker,
    key: (String, String),
}

impl Drop for WaitEdge<'_> {
    fn drop(&mut self) {
        let mut c = self.tracker.commits.lock().expect("not poisoned");
        if let Some(n) = c.waits.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                c.waits.remove(&self.key);
            }
        }
        drop(c);
        self.tracker.changed.notify_waiters();
    }
}

/// A child manifest after the first phase of a copy: fetched, with every blob under it placed
/// and verified, and waiting to be written; or found already present.
pub(super) enum Prepared {
    /// The destination has it (a HEAD said so).
    Present,
    /// To write, after its own children (for a nested index). Taken when written, so the run
    /// does not keep every manifest it copied.
    Write {
        manifest: Mutex<Option<Manifest>>,
        children: Vec<String>,
    },
}

impl BlobTracker {
    pub(super) fn cell(&self, digest: &str) -> Arc<OnceCell<String>> {
        self.cells
            .lock()
            .expect("not poisoned")
            .entry(digest.to_string())
            .or_default()
            .clone()
    }

    pub(super) fn placed(&self, repo: &str, digest: &str) -> Arc<OnceCell<()>> {
        Self::entry(&self.placed, repo, digest)
    }

    pub(super) fn manifest_placed(&self, repo: &str, digest: &str) -> Arc<OnceCell<()>> {
        Self::entry(&self.manifests, repo, digest)
    }

    pub(super) fn prepared(&self, repo: &str, digest: &str) -> Arc<OnceCell<Arc<Prepared>>> {
        self.prepared
            .lock()
            .expect("not poisoned")
            .entry((repo.to_string(), digest.to_string()))
            .or_default()
            .clone()
    }

    pub(super) fn entry(
        map: &Mutex<HashMap<RepoBlob, Arc<OnceCell<()>>>>,
        repo: &str,
        digest: &str,
    ) -> Arc<OnceCell<()>> {
        map.lock()
            .expect("not poisoned")
            .entry((repo.to_string(), digest.to_string()))
            .or_default()
            .clone()
    }

    pub(super) fn note(&self, digest: &str, repo: &str) {
        let _ = self.cell(digest).set(repo.to_string());
    }

    /// A manifest referencing `blobs` was committed in `repo`: other repositories may mount
    /// them from there.
    pub(super) fn committed(&self, repo: &str, blobs: impl IntoIterator<Item = String>) {
        let mut c = self.commits.lock().expect("not poisoned");
        let mut any = false;
        for d in blobs {
            any |= c.committed.entry(d).or_default().insert(repo.to_string());
        }
        drop(c);
        if any {
            self.changed.notify_waiters();
        }
    }

    /// A repository where a manifest referencing `digest` is committed, waiting for the one
    /// `holder`'s copy will commit when it may. `None` when none is committed and none will be
    /// (the holder's copy ended without a commit), or when waiting could deadlock (`holder`
    /// already waits, directly or not, for `waiter`).
    pub(super) async fn committed_source(
        &self,
        waiter: &str,
        holder: &str,
        digest: &str,
    ) -> Option<String> {
        let mut edge = None;
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut c = self.commits.lock().expect("not poisoned");
                if let Some(r) = c.committed_in(digest, holder) {
                    return Some(r);
                }
                let pending = c
                    .pending
                    .get(&(holder.to_string(), digest.to_string()))
                    .is_some_and(|n| *n > 0);
                if !pending {
                    return None;
                }
                if edge.is_none() {
                    if c.reaches(holder, waiter) {
                        return None;
                    }
                    let key = (waiter.to_string(), holder.to_string());
                    *c.waits.entry(key.clone()).or_default() += 1;
                    edge = Some(WaitEdge { tracker: self, key });
                }
            }
            notified.await;
        }
    }
}

/// The blobs an image manifest references (config and layers); none for an index.
pub(super) fn referenced_blobs(m: &Manifest) -> Vec<String> {
    #[derive(serde::Deserialize)]
    struct D {
        digest: String,
    }
    #[derive(serde::Deserialize)]
    struct M {
        config: Option<D>,
        #[serde(default)]
        layers: Vec<D>,
    }
    match serde_json::from_slice::<M>(&m.bytes) {
        Ok(v) => v
            .config
            .into_iter()
            .chain(v.layers)
            .map(|d| d.digest)
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// A destination registry with the run-wide blob tracker.
pub struct Destination {
    /// The registry client.
    pub registry: Arc<Registry>,
    /// Which repository got which blob in this run.
    pub tracker: BlobTracker,
    /// Whether the registry mounts: [`MountPolicy`] as an integer, learnt during the run.
    mounts: std::sync::atomic::AtomicU8,
    /// Held while the first mount of a run whose policy is `Unknown` is asked, so that one
    /// refused mount, not one per copy in flight, teaches the run.
    probe: tokio::sync::Mutex<()>,
}

impl Destination {
    /// Wraps a registry client whose mount behaviour is not known: the first mount asked
    /// decides.
    pub fn new(registry: Arc<Registry>) -> Destination {
        Destination::with_mounts(registry, MountPolicy::Unknown)
    }

    /// Wraps a registry client whose mount behaviour is known (ECR's `BLOB_MOUNTING`).
    pub fn with_mounts(registry: Arc<Registry>, mounts: MountPolicy) -> Destination {
        Destination {
            registry,
            tracker: BlobTracker::default(),
            mounts: std::sync::atomic::AtomicU8::new(mounts as u8),
            probe: tokio::sync::Mutex::new(()),
        }
    }

    /// What the run knows now about mounting.
    pub fn mount_policy(&self) -> MountPolicy {
        match self.mounts.load(Ordering::Relaxed) {
            x if x == MountPolicy::Enabled as u8 => MountPolicy::Enabled,
            x if x == MountPolicy::Disabled as u8 => MountPolicy::Disabled,
            _ => MountPolicy::Unknown,
        }
    }

    pub(super) fn set_mount_policy(&self, p: MountPolicy) {
        self.mounts.store(p as u8, Ordering::Relaxed);
    }

    /// Asks for a mount under the run's policy: `None` when mounting is off (nothing is
    /// asked). A refusal switches it off for the rest of the run.
    pub(super) async fn mount(
        &self,
        repo: &str,
        digest: &str,
        from: &str,
    ) -> Result<Option<Mount>, RegistryError> {
        let _probe = match self.mount_policy() {
            MountPolicy::Disabled => return Ok(None),
            MountPolicy::Enabled => None,
            MountPolicy::Unknown => {
                let g = self.probe.lock().await;
                match self.mount_policy() {
                    MountPolicy::Disabled => return Ok(None),
                    MountPolicy::Enabled => None,
                    MountPolicy::Unknown => Some(g),
                }
            }
        };
        let m = self.registry.mount_blob(repo, digest, from).await?;
        match &m {
            Mount::Mounted => {
                if self.mount_policy() == MountPolicy::Unknown {
                    self.set_mount_policy(MountPolicy::Enabled);
                }
            }
            Mount::Upload(_) => {
                if self.mount_policy() != MountPolicy::Disabled {
                    tracing::info!(registry = %self.registry.name(), from, repo,
                        "the registry refused a mount; not asking again in this run");
                }
                self.set_mount_policy(MountPolicy::Disabled);
            }
        }
        Ok(Some(m))
    }
}
