//! The planner: a pure function from what is wanted and what was observed to what to do.
//!
//! `plan(items, repo_errors, observed) -> Vec<Action>` does no I/O and is deterministic: the
//! output is sorted by (repository, tag), so plans diff cleanly and `--dry-run` shows exactly
//! what `sync` would do. Observation (HEAD on both sides) happens before, in `sync::observe`;
//! execution after, in `sync::execute`.

use std::collections::BTreeMap;

use crate::mirror::error::{Failure, Label};
use crate::oci::{PlatformFilter, TaggedRef};

/// One (repository, tag) to keep in sync.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    /// ECR repository name.
    pub repository: String,
    /// Tag (the same upstream and in ECR).
    pub tag: String,
    /// The upstream reference, with the tag.
    pub source: TaggedRef,
    /// Which platforms are mirrored.
    pub platforms: PlatformFilter,
    /// Whether ECR refuses to move this tag once it exists (`IMMUTABLE`, or
    /// `IMMUTABLE_WITH_EXCLUSION` and the tag matches no exclusion filter).
    pub immutable: bool,
}

/// What HEAD requests found for one item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    /// Upstream digest: `Ok(None)` when the tag does not exist upstream (404).
    pub source: Result<Option<String>, Failure>,
    /// ECR digest: `Ok(None)` when the tag does not exist in ECR yet.
    pub dest: Result<Option<String>, Failure>,
    /// For a platform-filtered mirror: the upstream digest recorded in the ECR index.
    pub dest_recorded_source: Option<String>,
    /// Why the trust policy refuses the upstream image, when it does (evaluated only for
    /// items that would be copied).
    pub blocked: Option<String>,
}

/// What to do about one item.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum ActionKind {
    /// In sync: nothing to do.
    #[default]
    Skip,
    /// The tag is missing in ECR: copy.
    CopyMissing,
    /// ECR holds another digest: copy (the old and new digests are in the action).
    CopyStale,
    /// The trust policy refuses the upstream image.
    Blocked(Failure),
    /// Something is wrong with this item or repository; it fails, the others go on.
    Error(Failure),
    /// The upstream could not be read for want of rate-limit budget (label `rate-limited`):
    /// left for the next run, and reported as `deferred`.
    Deferred(Failure),
}

impl ActionKind {
    /// A short stable name: `skip`, `copy`, `blocked`, `error`.
    pub fn name(&self) -> &'static str {
        match self {
            ActionKind::Skip => "skip",
            ActionKind::CopyMissing | ActionKind::CopyStale => "copy",
            ActionKind::Blocked(_) => "blocked",
            ActionKind::Error(_) => "error",
            ActionKind::Deferred(_) => "deferred",
        }
    }

    /// Why: `in-sync`, `missing`, `stale`, or the error/block reason.
    pub fn reason(&self) -> String {
        match self {
            ActionKind::Skip => "in-sync".into(),
            ActionKind::CopyMissing => "missing".into(),
            ActionKind::CopyStale => "stale".into(),
            ActionKind::Blocked(r) | ActionKind::Error(r) | ActionKind::Deferred(r) => {
                r.message.clone()
            }
        }
    }

    /// Whether this action copies.
    pub fn is_copy(&self) -> bool {
        matches!(self, ActionKind::CopyMissing | ActionKind::CopyStale)
    }
}

/// One planned action.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Action {
    /// ECR repository.
    pub repository: String,
    /// Tag; `None` for an error about the whole repository (e.g. bad resource tags).
    pub tag: Option<String>,
    /// Upstream reference, when known.
    pub source: Option<String>,
    /// The platform filter, when known.
    pub platforms: PlatformFilter,
    /// What to do.
    pub kind: ActionKind,
    /// Upstream digest (HEAD).
    pub source_digest: Option<String>,
    /// ECR digest before the action (HEAD).
    pub dest_digest: Option<String>,
}

/// Plans every item. `repo_errors` are (repository, reason) pairs for repositories whose
/// resource tags could not be turned into a spec. Items without an observation are errors
/// (the observer always records one; this keeps the function total).
pub fn plan(
    items: &[Item],
    repo_errors: &[(String, String)],
    observed: &BTreeMap<(String, String), Observed>,
) -> Vec<Action> {
    let mut out: Vec<Action> = repo_errors
        .iter()
        .map(|(repo, reason)| Action {
            repository: repo.clone(),
            kind: ActionKind::Error(Failure::new(Label::InvalidSpec, reason.clone())),
            ..Action::default()
        })
        .collect();
    for item in items {
        let key = (item.repository.clone(), item.tag.clone());
        let mut a = Action {
            repository: item.repository.clone(),
            tag: Some(item.tag.clone()),
            source: Some(item.source.to_string()),
            platforms: item.platforms.clone(),
            ..Action::default()
        };
        a.kind = match observed.get(&key) {
            None => ActionKind::Error(Failure::new(Label::RegistryError, "not observed")),
            Some(o) => decide(item, o, &mut a),
        };
        out.push(a);
    }
    out.sort_by(|x, y| (&x.repository, &x.tag).cmp(&(&y.repository, &y.tag)));
    out
}

fn decide(item: &Item, o: &Observed, a: &mut Action) -> ActionKind {
    if let Ok(Some(d)) = &o.dest {
        a.dest_digest = Some(d.clone());
    }
    let src = match &o.source {
        Err(e) if e.label == Label::RateLimited => return ActionKind::Deferred(e.clone()),
        Err(e) => return ActionKind::Error(e.clone()),
        Ok(None) => {
            return ActionKind::Error(Failure::new(
                Label::UpstreamNotFound,
                format!("upstream tag not found: {}", item.source),
            ));
        }
        Ok(Some(d)) => d.clone(),
    };
    a.source_digest = Some(src.clone());
    let in_sync = matches!(&o.dest, Ok(Some(d)) if *d == src)
        || (matches!(&o.dest, Ok(Some(_)))
            && o.dest_recorded_source.as_deref() == Some(src.as_str()));
    if let (false, Some(reason)) = (in_sync, &o.blocked) {
        return ActionKind::Blocked(Failure::new(Label::PolicyBlocked, reason.clone()));
    }
    match &o.dest {
        Err(e) => ActionKind::Error(e.clone()),
        Ok(None) => ActionKind::CopyMissing,
        Ok(Some(d)) if *d == src => ActionKind::Skip,
        Ok(Some(_)) if o.dest_recorded_source.as_deref() == Some(src.as_str()) => ActionKind::Skip,
        Ok(Some(d)) if item.immutable => ActionKind::Error(Failure::new(
            Label::ImmutableTag,
            format!(
                "tag {} is IMMUTABLE in ECR repository {} and holds {d}, but upstream is now {src}; \
                 delete the ECR image or mirror a new tag",
                item.tag, item.repository
            ),
        )),
        Ok(Some(_)) => ActionKind::CopyStale,
    }
}

/// Counts per kind, for summaries.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    /// In sync.
    pub skip: usize,
    /// To copy.
    pub copy: usize,
    /// Blocked by policy.
    pub blocked: usize,
    /// Errors.
    pub error: usize,
    /// Deferred for want of rate-limit budget.
    pub deferred: usize,
}

/// Counts the actions of a plan.
pub fn counts(actions: &[Action]) -> Counts {
    let mut c = Counts::default();
    for a in actions {
        match a.kind {
            ActionKind::Skip => c.skip += 1,
            ActionKind::CopyMissing | ActionKind::CopyStale => c.copy += 1,
            ActionKind::Blocked(_) => c.blocked += 1,
            ActionKind::Error(_) => c.error += 1,
            ActionKind::Deferred(_) => c.deferred += 1,
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(repo: &str, tag: &str, immutable: bool) -> Item {
        Item {
            repository: repo.into(),
            tag: tag.into(),
            source: TaggedRef::parse(&format!("ghcr.io/up/{repo}:{tag}")).unwrap(),
            platforms: PlatformFilter::All,
            immutable,
        }
    }

    fn obs(src: Result<Option<&str>, &str>, dst: Result<Option<&str>, &str>) -> Observed {
        Observed {
            source: src
                .map(|o| o.map(str::to_string))
                .map_err(|e| Failure::new(Label::RegistryError, e)),
            dest: dst
                .map(|o| o.map(str::to_string))
                .map_err(|e| Failure::new(Label::RegistryError, e)),
            dest_recorded_source: None,
            blocked: None,
        }
    }

    #[test]
    fn a_rate_limited_upstream_is_deferred_not_failed() {
        let it = item("a", "v1", false);
        let mut o = BTreeMap::new();
        o.insert(
            ("a".to_string(), "v1".to_string()),
            Observed {
                source: Err(Failure::new(Label::RateLimited, "budget used up (w=21600)")),
                dest: Ok(None),
                dest_recorded_source: None,
                blocked: None,
            },
        );
        let p = plan(std::slice::from_ref(&it), &[], &o);
        assert!(matches!(&p[0].kind, ActionKind::Deferred(f) if f.label == Label::RateLimited));
        assert_eq!(p[0].kind.name(), "deferred");
        assert_eq!(counts(&p).deferred, 1);
        assert_eq!(counts(&p).error, 0);
    }

    #[test]
    fn decides_each_case_and_sorts() {
        let items = vec![
            item("z", "1", false),
            item("a", "stale", false),
            item("a", "missing", false),
            item("a", "same", false),
            item("a", "gone", false),
            item("a", "broken", false),
            item("b", "immutable", true),
        ];
        let mut o = BTreeMap::new();
        let k = |r: &str, t: &str| (r.to_string(), t.to_string());
        o.insert(k("z", "1"), obs(Ok(Some("sha256:1")), Ok(Some("sha256:1"))));
        o.insert(
            k("a", "stale"),
            obs(Ok(Some("sha256:new")), Ok(Some("sha256:old"))),
        );
        o.insert(k("a", "missing"), obs(Ok(Some("sha256:n")), Ok(None)));
        o.insert(
            k("a", "same"),
            obs(Ok(Some("sha256:s")), Ok(Some("sha256:s"))),
        );
        o.insert(k("a", "gone"), obs(Ok(None), Ok(Some("sha256:x"))));
        o.insert(k("a", "broken"), obs(Err("HTTP 500"), Ok(None)));
        o.insert(
            k("b", "immutable"),
            obs(Ok(Some("sha256:new")), Ok(Some("sha256:old"))),
        );
        let errs = vec![("c".to_string(), "bad upstream-tags".to_string())];
        let p = plan(&items, &errs, &o);
        let got: Vec<(String, Option<String>, &str)> = p
            .iter()
            .map(|a| (a.repository.clone(), a.tag.clone(), a.kind.name()))
            .collect();
        let s = |x: &str| Some(x.to_string());
        assert_eq!(
            got,
            vec![
                ("a".into(), s("broken"), "error"),
                ("a".into(), s("gone"), "error"),
                ("a".into(), s("missing"), "copy"),
                ("a".into(), s("same"), "skip"),
                ("a".into(), s("stale"), "copy"),
                ("b".into(), s("immutable"), "error"),
                ("c".into(), None, "error"),
                ("z".into(), s("1"), "skip"),
            ]
        );
        let stale = p
            .iter()
            .find(|a| a.tag.as_deref() == Some("stale"))
            .unwrap();
        assert_eq!(stale.kind, ActionKind::CopyStale);
        assert_eq!(stale.dest_digest.as_deref(), Some("sha256:old"));
        assert_eq!(stale.source_digest.as_deref(), Some("sha256:new"));
        let gone = p.iter().find(|a| a.tag.as_deref() == Some("gone")).unwrap();
        assert!(gone.kind.reason().contains("not found"), "{:?}", gone.kind);
        let imm = p.iter().find(|a| a.repository == "b").unwrap();
        assert!(imm.kind.reason().contains("IMMUTABLE"));
        assert_eq!(
            counts(&p),
            Counts {
                skip: 2,
                copy: 2,
                blocked: 0,
                error: 4,
                deferred: 0,
            }
        );
    }

    #[test]
    fn filtered_mirror_is_in_sync_through_the_recorded_digest() {
        let mut it = item("f", "1", false);
        it.platforms = PlatformFilter::parse_list("linux/amd64").unwrap();
        let mut o = BTreeMap::new();
        let mut ob = obs(Ok(Some("sha256:upstream")), Ok(Some("sha256:filtered")));
        ob.dest_recorded_source = Some("sha256:upstream".into());
        o.insert(("f".to_string(), "1".to_string()), ob.clone());
        assert_eq!(
            plan(std::slice::from_ref(&it), &[], &o)[0].kind,
            ActionKind::Skip
        );
        ob.dest_recorded_source = Some("sha256:older".into());
        o.insert(("f".to_string(), "1".to_string()), ob);
        assert_eq!(plan(&[it], &[], &o)[0].kind, ActionKind::CopyStale);
    }

    #[test]
    fn policy_blocks_only_what_would_be_copied() {
        let it = item("p", "1", false);
        let key = ("p".to_string(), "1".to_string());
        let mut o = BTreeMap::new();
        let mut ob = obs(Ok(Some("sha256:new")), Ok(None));
        ob.blocked = Some("no signature".into());
        o.insert(key.clone(), ob.clone());
        assert_eq!(
            plan(std::slice::from_ref(&it), &[], &o)[0].kind,
            ActionKind::Blocked(Failure::new(Label::PolicyBlocked, "no signature"))
        );
        assert_eq!(counts(&plan(std::slice::from_ref(&it), &[], &o)).blocked, 1);
        ob.dest = Ok(Some("sha256:new".into()));
        o.insert(key, ob);
        assert_eq!(
            plan(&[it], &[], &o)[0].kind,
            ActionKind::Skip,
            "in sync needs no verdict"
        );
    }

    #[test]
    fn unobserved_items_are_errors_not_panics() {
        let p = plan(&[item("a", "1", false)], &[], &BTreeMap::new());
        assert_eq!(p[0].kind.name(), "error");
    }
}
