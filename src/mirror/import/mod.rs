//! `import`: a declarative image list → tagged ECR repositories.
//!
//! The seed scripts kept their images in files: an `images.yaml`
//! (`images: [{chart, source, dest}]`) or a `source-images.list` (one reference per line).
//! `import` turns such a file into ECR repositories carrying the `upstream-image` and
//! `upstream-tags` resource tags, after which the tags are the single source of truth and
//! `sync` does the rest.
//!
//! Three steps, the first two pure:
//! 1. [`parse`]: the file → [`Entry`]s (upstream references with a tag), and [`EntryError`]s
//!    that name the line (for YAML, the entry and, where it can be found, the line);
//! 2. [`plan`]: entries → one [`Desired`] repository per ECR name (tags grouped, sorted,
//!    de-duplicated), with the naming rules of [`Naming`] and the AWS limits checked;
//! 3. [`apply`]: through any [`EcrApi`], create what is missing and merge tags into what exists
//!    ([`merge_tags`], pure), so a second run changes nothing.
//!
//! User documentation: `docs/import.md`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use futures::stream::{self, StreamExt as _};
use serde_json::{json, Value};

use crate::ecr::{EcrApi, EcrError, RepoSettings, Repository};
use crate::mirror::tag_rule::TagRule;
use crate::mirror::tags::{disallowed_tag_value_char, MAX_TAG_VALUE_CHARS};
use crate::mirror::tags::{spec_from_tags, TagKeys};
use crate::oci::{validate_tag, ImageRef, TaggedRef};

/// The longest ECR repository name AWS accepts.
pub const MAX_REPOSITORY_NAME_CHARS: usize = 256;

/// Repositories read and written at once by [`apply`].
const APPLY_CONCURRENCY: usize = 8;

mod naming;
mod parse;

pub use naming::{validate_repository_name, Naming};
pub use parse::{detect_format, parse, parse_source, Entry, EntryError, Format, Location, Parsed};

/// One ECR repository as the file wants it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    /// The ECR repository name.
    pub repository: String,
    /// The upstream repository.
    pub upstream: ImageRef,
    /// The tags, sorted and de-duplicated (empty when a rule alone says which).
    pub tags: Vec<String>,
    /// The tag rule, if any.
    pub rule: Option<TagRule>,
    /// The entries that asked for it.
    pub locations: Vec<Location>,
}

impl Desired {
    /// The resource tags describing it (schema v1, no platforms): the tags key when there are
    /// tags, the rule key (canonical form) when there is a rule.
    pub fn resource_tags(&self, keys: &TagKeys) -> Vec<(String, String)> {
        let mut out = vec![(keys.image.clone(), self.upstream.to_string())];
        if !self.tags.is_empty() {
            out.push((keys.tags.clone(), self.tags.join("/")));
        }
        if let Some(rule) = &self.rule {
            out.push((keys.rule.clone(), rule.to_string()));
        }
        out
    }
}

/// A repository the file asks for that cannot be made (two upstreams, a value too long, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoProblem {
    /// The ECR repository name.
    pub repository: String,
    /// Why, naming the entries.
    pub message: String,
    /// The entries that asked for it.
    pub locations: Vec<Location>,
}

/// What the file asks for, before looking at ECR.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    /// Repositories to create or merge into, sorted by name.
    pub repositories: Vec<Desired>,
    /// Repositories that cannot be made, sorted by name.
    pub problems: Vec<RepoProblem>,
    /// Invalid lines or entries (the file's and the naming's), in file order.
    pub entry_errors: Vec<EntryError>,
}

fn locations_text(locations: &[Location]) -> String {
    locations
        .iter()
        .map(Location::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Groups the entries per ECR repository (one `upstream-tags` list each, sorted and
/// de-duplicated), and checks names, conflicts and the AWS tag-value limits. Pure.
pub fn plan(parsed: &Parsed, naming: &Naming, keys: &TagKeys) -> Plan {
    #[derive(Default)]
    struct Group {
        upstreams: BTreeMap<ImageRef, Vec<Location>>,
        tags: BTreeSet<String>,
        rules: BTreeMap<String, (TagRule, Vec<Location>)>,
        locations: Vec<Location>,
    }
    let mut out = Plan {
        entry_errors: parsed.errors.clone(),
        ..Plan::default()
    };
    let mut groups: BTreeMap<String, Group> = BTreeMap::new();
    for e in &parsed.entries {
        match naming.repository_for(e) {
            Ok(name) => {
                let g = groups.entry(name).or_default();
                g.upstreams
                    .entry(e.source.image.clone())
                    .or_default()
                    .push(e.location);
                if let Some(tag) = e.explicit_tag() {
                    g.tags.insert(tag.to_string());
                }
                if let Some(rule) = &e.rule {
                    g.rules
                        .entry(rule.to_string())
                        .or_insert_with(|| (rule.clone(), vec![]))
                        .1
                        .push(e.location);
                }
                g.locations.push(e.location);
            }
            Err(message) => out.entry_errors.push(EntryError {
                location: e.location,
                message: format!("{}: {message}", e.source),
            }),
        }
    }
    out.entry_errors.sort_by_key(|e| e.location);
    for (repository, g) in groups {
        if g.upstreams.len() > 1 {
            let which: Vec<String> = g
                .upstreams
                .iter()
                .map(|(u, locs)| format!("{u} ({})", locations_text(locs)))
                .collect();
            out.problems.push(RepoProblem {
                message: format!(
                    "repository {repository:?}: different upstream images map to it: {}; give them different `dest` values or use --scoped",
                    which.join(" and ")
                ),
                repository,
                locations: g.locations,
            });
            continue;
        }
        if g.rules.len() > 1 {
            let which: Vec<String> = g
                .rules
                .iter()
                .map(|(r, (_, locs))| format!("{r:?} ({})", locations_text(locs)))
                .collect();
            out.problems.push(RepoProblem {
                message: format!(
                    "repository {repository:?}: different tag rules for it: {}; a repository has one rule",
                    which.join(" and ")
                ),
                repository,
                locations: g.locations,
            });
            continue;
        }
        let upstream = g.upstreams.into_keys().next().expect("one upstream");
        let desired = Desired {
            repository,
            upstream,
            tags: g.tags.into_iter().collect(),
            rule: g.rules.into_values().next().map(|(r, _)| r),
            locations: g.locations,
        };
        match check_values(&desired.repository, &desired.resource_tags(keys)) {
            Ok(()) => out.repositories.push(desired),
            Err(message) => out.problems.push(RepoProblem {
                repository: desired.repository,
                message,
                locations: desired.locations,
            }),
        }
    }
    out
}

/// Checks tag values against what AWS accepts: the allowed characters and 256 characters.
fn check_values(repository: &str, tags: &[(String, String)]) -> Result<(), String> {
    for (k, v) in tags {
        if let Some(c) = disallowed_tag_value_char(v) {
            return Err(format!(
                "repository {repository:?}: tag {k:?} would contain {c:?}, which AWS does not allow in tag values"
            ));
        }
        let n = v.chars().count();
        if n > MAX_TAG_VALUE_CHARS {
            return Err(format!(
                "repository {repository:?}: tag {k:?} would be {n} characters long; AWS allows at most {MAX_TAG_VALUE_CHARS} (mirror fewer tags into this repository)"
            ));
        }
    }
    Ok(())
}

/// The outcome of merging the file's wishes into a repository's existing tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merged {
    /// The tags to write with `TagResource` (only the keys that change); empty = unchanged.
    pub write: Vec<(String, String)>,
    /// The image, tags and rule keys after the write.
    pub after: BTreeMap<String, String>,
}

/// The image, tags and rule keys of `tags`, as a map (absent keys are absent).
pub fn our_tags(tags: &[(String, String)], keys: &TagKeys) -> BTreeMap<String, String> {
    tags.iter()
        .filter(|(k, _)| *k == keys.image || *k == keys.tags || *k == keys.rule)
        .cloned()
        .collect()
}

/// Merges `desired` into a repository's existing tags. Pure.
///
/// * `upstream-image` must name the same upstream (after normalisation: `nginx` equals
///   `docker.io/library/nginx`); a different one is an error unless `force`, which overwrites
///   it. A missing one is set.
/// * `upstream-tags` becomes the union: the existing tags in their order, then the new ones.
///   Tags are never removed. An unchanged list is not rewritten (even if spaced differently).
///   A repository with neither tags nor tags wanted (a rule alone) gets no tags key.
/// * `upstream-tag-rule`: set when missing; an existing rule that selects differently (compared
///   in canonical form, so word order and spacing do not matter) is an error unless `force`.
pub fn merge_tags(
    repository: &str,
    existing: &[(String, String)],
    desired: &Desired,
    keys: &TagKeys,
    force: bool,
) -> Result<Merged, String> {
    let before = our_tags(existing, keys);
    let want_image = desired.upstream.to_string();
    let mut write = vec![];
    match before.get(&keys.image) {
        None => write.push((keys.image.clone(), want_image.clone())),
        Some(v) => {
            let same = ImageRef::parse(v).is_ok_and(|r| r == desired.upstream);
            if !same {
                if !force {
                    return Err(format!(
                        "repository {repository:?}: tag {:?} is {v:?}, but the file ({}) maps {want_image} to it; not changed (pass --force to overwrite it)",
                        keys.image,
                        locations_text(&desired.locations)
                    ));
                }
                write.push((keys.image.clone(), want_image.clone()));
            }
        }
    }
    let mut list: Vec<String> = vec![];
    if let Some(v) = before.get(&keys.tags) {
        for t in v.split('/').map(str::trim).filter(|t| !t.is_empty()) {
            if !list.iter().any(|x| x == t) {
                list.push(t.to_string());
            }
        }
    }
    let existing_count = list.len();
    for t in &desired.tags {
        if !list.contains(t) {
            list.push(t.clone());
        }
    }
    if (!before.contains_key(&keys.tags) && !list.is_empty()) || list.len() != existing_count {
        write.push((keys.tags.clone(), list.join("/")));
    }
    if let Some(want) = &desired.rule {
        let want_text = want.to_string();
        match before.get(&keys.rule) {
            None => write.push((keys.rule.clone(), want_text)),
            Some(v) => {
                let same = TagRule::parse(v).is_ok_and(|r| r == *want);
                if !same {
                    if !force {
                        return Err(format!(
                            "repository {repository:?}: tag {:?} is {v:?}, but the file ({}) gives the rule {want_text:?}; not changed (pass --force to overwrite it)",
                            keys.rule,
                            locations_text(&desired.locations)
                        ));
                    }
                    write.push((keys.rule.clone(), want_text));
                }
            }
        }
    }
    check_values(repository, &write)?;
    let mut after = before;
    for (k, v) in &write {
        after.insert(k.clone(), v.clone());
    }
    Ok(Merged { write, after })
}

/// What [`apply`] did (or, in a dry run, would do) to a repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeAction {
    /// Created, with the tags.
    Create,
    /// Tags added or changed.
    Update,
    /// Already as the file wants it; nothing written.
    Unchanged,
    /// Not done; see [`Change::error`].
    Error,
}

impl ChangeAction {
    /// `create`, `update`, `unchanged` or `error`.
    pub fn name(self) -> &'static str {
        match self {
            ChangeAction::Create => "create",
            ChangeAction::Update => "update",
            ChangeAction::Unchanged => "unchanged",
            ChangeAction::Error => "error",
        }
    }
}

/// One repository's change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The ECR repository.
    pub repository: String,
    /// What was done.
    pub action: ChangeAction,
    /// The upstream image, when the file gives one.
    pub upstream: Option<String>,
    /// The image and tags keys before; `None` when the repository did not exist (or could not
    /// be read).
    pub tags_before: Option<BTreeMap<String, String>>,
    /// The image and tags keys after; `None` on error.
    pub tags_after: Option<BTreeMap<String, String>>,
    /// Why it failed.
    pub error: Option<String>,
    /// The entries that asked for it.
    pub locations: Vec<Location>,
}

impl Change {
    fn new(d: &Desired) -> Change {
        Change {
            repository: d.repository.clone(),
            action: ChangeAction::Unchanged,
            upstream: Some(d.upstream.to_string()),
            tags_before: None,
            tags_after: None,
            error: None,
            locations: d.locations.clone(),
        }
    }

    fn failed(mut self, error: String) -> Change {
        self.action = ChangeAction::Error;
        self.tags_after = None;
        self.error = Some(error);
        self
    }

    /// The JSON of an `import` record (docs/import.md).
    pub fn to_json(&self) -> Value {
        json!({
            "repository": self.repository,
            "action": self.action.name(),
            "upstream": self.upstream,
            "tags_before": self.tags_before,
            "tags_after": self.tags_after,
            "error": self.error,
            "lines": self.locations.iter().filter_map(|l| l.line).collect::<Vec<_>>(),
            "entries": self.locations.iter().filter_map(|l| l.entry).collect::<Vec<_>>(),
        })
    }
}

/// The JSON of an `import` record for an invalid line or entry.
pub fn entry_error_json(e: &EntryError) -> Value {
    json!({
        "repository": null,
        "action": "error",
        "upstream": null,
        "tags_before": null,
        "tags_after": null,
        "error": e.to_string(),
        "line": e.location.line,
        "entry": e.location.entry,
    })
}

/// Totals of an import, by action.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    /// Repositories created (or to create, in a dry run).
    pub create: usize,
    /// Repositories whose tags changed.
    pub update: usize,
    /// Repositories already as wanted.
    pub unchanged: usize,
    /// Failed repositories plus invalid lines/entries.
    pub error: usize,
    /// Whether nothing was written.
    pub dry_run: bool,
}

impl Counts {
    /// Counts `changes` and the invalid entries.
    pub fn of(changes: &[Change], entry_errors: &[EntryError], dry_run: bool) -> Counts {
        let mut c = Counts {
            error: entry_errors.len(),
            dry_run,
            ..Counts::default()
        };
        for ch in changes {
            match ch.action {
                ChangeAction::Create => c.create += 1,
                ChangeAction::Update => c.update += 1,
                ChangeAction::Unchanged => c.unchanged += 1,
                ChangeAction::Error => c.error += 1,
            }
        }
        c
    }

    /// 1 when anything failed, else 0.
    pub fn exit_code(&self) -> u8 {
        u8::from(self.error > 0)
    }
}

/// Options of [`apply`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApplyOptions {
    /// Overwrite a different `upstream-image`.
    pub force: bool,
    /// Read only: report what would change, call neither create nor tag.
    pub dry_run: bool,
}

/// Makes ECR match the plan: creates missing repositories (with `settings` and the tags) and
/// merges tags into existing ones ([`merge_tags`]); `TagResource` only when something
/// changes, so a second run makes no write at all. The plan's problems come back as errors.
///
/// The registry's repositories are listed once (`DescribeRepositories`, every page); a failure
/// there (no credentials, no permission) fails the whole run, as it would fail every
/// repository. After that, one repository's failure never stops the others. Sorted by
/// repository.
pub async fn apply<A: EcrApi>(
    api: &A,
    plan: &Plan,
    settings: &RepoSettings,
    keys: &TagKeys,
    opts: ApplyOptions,
) -> Result<Vec<Change>, EcrError> {
    let existing: BTreeMap<String, Repository> = if plan.repositories.is_empty() {
        BTreeMap::new()
    } else {
        api.repositories(None)
            .await?
            .into_iter()
            .map(|r| (r.name.clone(), r))
            .collect()
    };
    let mut changes: Vec<Change> = stream::iter(&plan.repositories)
        .map(|d| {
            let found = existing.get(&d.repository).cloned();
            apply_one(api, d, found, settings, keys, opts)
        })
        .buffered(APPLY_CONCURRENCY)
        .collect()
        .await;
    for p in &plan.problems {
        changes.push(Change {
            repository: p.repository.clone(),
            action: ChangeAction::Error,
            upstream: None,
            tags_before: None,
            tags_after: None,
            error: Some(p.message.clone()),
            locations: p.locations.clone(),
        });
    }
    changes.sort_by(|a, b| a.repository.cmp(&b.repository));
    Ok(changes)
}

async fn apply_one<A: EcrApi>(
    api: &A,
    d: &Desired,
    found: Option<Repository>,
    settings: &RepoSettings,
    keys: &TagKeys,
    opts: ApplyOptions,
) -> Change {
    let mut change = Change::new(d);
    let want = d.resource_tags(keys);
    let repo: Repository = match found {
        Some(r) => r,
        None => {
            change.action = ChangeAction::Create;
            change.tags_after = Some(want.iter().cloned().collect());
            if opts.dry_run {
                return change;
            }
            match api.create_repository(&d.repository, settings, &want).await {
                Ok(_) => return change,
                // Created by someone else since we looked: merge into it instead.
                Err(EcrError::AlreadyExists { .. }) => {
                    match api.repository(&d.repository).await {
                        Ok(Some(r)) => r,
                        Ok(None) => {
                            return change.failed(format!(
                                "repository {:?}: CreateRepository said it exists, DescribeRepositories does not find it",
                                d.repository
                            ))
                        }
                        Err(e) => return change.failed(e.to_string()),
                    }
                }
                Err(e) => return change.failed(e.to_string()),
            }
        }
    };
    let existing = match api.tags(&repo.arn).await {
        Ok(t) => t,
        Err(e) => return change.failed(e.to_string()),
    };
    for w in spec_from_tags(&d.repository, &existing, keys).warnings {
        tracing::warn!("{w}");
    }
    change.action = ChangeAction::Unchanged;
    change.tags_before = Some(our_tags(&existing, keys));
    let merged = match merge_tags(&d.repository, &existing, d, keys, opts.force) {
        Ok(m) => m,
        Err(e) => return change.failed(e),
    };
    change.tags_after = Some(merged.after.clone());
    if merged.write.is_empty() {
        return change;
    }
    change.action = ChangeAction::Update;
    if opts.dry_run {
        return change;
    }
    match api.tag_resource(&repo.arn, &merged.write).await {
        Ok(()) => change,
        Err(e) => change.failed(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ecr::memory::MemoryEcr;
    use crate::ecr::Encryption;

    fn keys() -> TagKeys {
        TagKeys::default()
    }

    fn naming(scoped: bool, prefix: &str) -> Naming {
        Naming::new(scoped, prefix).unwrap()
    }

    fn list(text: &str) -> Parsed {
        parse(text, Some(Format::List)).unwrap()
    }

    fn kv(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv(pairs).into_iter().collect()
    }

    #[test]
    fn detects_the_format_by_content() {
        let cases = [
            ("images:\n- source: nginx:1\n", Format::Yaml),
            ("# mirror list\n---\nimages: []\n", Format::Yaml),
            ("version: 1\nimages:\n  - source: a:1\n", Format::Yaml),
            ("{\"images\": []}", Format::Yaml),
            ("images :\n", Format::Yaml),
            ("images:1\nimages:2\n", Format::List),
            (
                "docker/dockerfile:1.4.3\nrockylinux:9.0.20220720\n",
                Format::List,
            ),
            ("# only comments\n\n", Format::List),
            ("", Format::List),
            ("  images: not at the margin\n", Format::List),
        ];
        for (text, want) in cases {
            assert_eq!(detect_format(text), want, "{text:?}");
        }
    }

    #[test]
    fn tag_rules_in_both_formats() {
        let p = list(
            "ghcr.io/kedacore/keda semver=2.x   newest=3 # the three newest 2.x\n\
             nginx:stable newest=1\n\
             nginx semver=1.x junk\n\
             redis newst=2\n\
             redis\n",
        );
        let got: Vec<(String, Option<String>, Option<&str>)> = p
            .entries
            .iter()
            .map(|e| {
                (
                    e.source.to_string(),
                    e.rule.as_ref().map(ToString::to_string),
                    e.explicit_tag(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    "ghcr.io/kedacore/keda".to_string(),
                    Some("semver=2.x newest=3".to_string()),
                    None
                ),
                (
                    "docker.io/library/nginx:stable".to_string(),
                    Some("newest=1".to_string()),
                    Some("stable")
                ),
            ]
        );
        let errors: Vec<String> = p.errors.iter().map(ToString::to_string).collect();
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(
            errors[0].contains("line 3") && errors[0].contains("tag-rule words"),
            "{errors:?}"
        );
        assert!(
            errors[1].contains("line 4") && errors[1].contains("\"newst=2\""),
            "{errors:?}"
        );
        assert!(
            errors[2].contains("line 5") && errors[2].contains("no tag"),
            "{errors:?}"
        );

        let y = parse(
            "images:\n- {source: nginx, rule: 'newest=2'}\n- {source: nginx, rule: 3}\n",
            None,
        )
        .unwrap();
        assert_eq!(y.entries.len(), 1);
        assert_eq!(y.entries[0].rule.as_ref().unwrap().to_string(), "newest=2");
        assert!(y.errors[0].message.contains("`rule` must be a string"));

        // One repository, one rule: two different ones conflict; the same one (in any
        // spelling) is fine, and the tags key is written only with explicit tags.
        let same = list("nginx newest=2 semver=1.x\nnginx semver=1.x newest=2\n");
        let plan1 = plan(&same, &naming(false, "m"), &keys());
        assert!(plan1.problems.is_empty(), "{:?}", plan1.problems);
        assert_eq!(
            plan1.repositories[0].resource_tags(&keys()),
            kv(&[
                ("upstream-image", "docker.io/library/nginx"),
                ("upstream-tag-rule", "semver=1.x newest=2")
            ])
        );
        let differ = list("nginx newest=2\nnginx:1.25 newest=3\n");
        let plan2 = plan(&differ, &naming(false, "m"), &keys());
        assert_eq!(plan2.problems.len(), 1);
        assert!(plan2.problems[0].message.contains("different tag rules"));
    }

    #[test]
    fn list_format_with_comments_short_names_and_errors() {
        let text = "\
# seed list
docker/dockerfile:1.4.3
rockylinux:9.0.20220720   # trailing comment

ghcr.io/kedacore/keda:2.4.0\r
nginx
nginx@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa
Upper/Case:1
two words:1
nginx:1.25@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa
";
        let p = list(text);
        let got: Vec<(usize, String)> = p
            .entries
            .iter()
            .map(|e| (e.location.line.unwrap(), e.source.to_string()))
            .collect();
        assert_eq!(
            got,
            vec![
                (2, "docker.io/docker/dockerfile:1.4.3".to_string()),
                (3, "docker.io/library/rockylinux:9.0.20220720".to_string()),
                (5, "ghcr.io/kedacore/keda:2.4.0".to_string()),
            ]
        );
        // (line, substrings)
        let want: &[(usize, &[&str])] = &[
            (6, &["line 6", "\"nginx\"", "no tag"]),
            (7, &["line 7", "digest only", "ECR tags need a tag"]),
            (8, &["line 8", "Upper/Case"]),
            (9, &["line 9", "one image reference per line"]),
            (10, &["line 10", "pins a digest"]),
        ];
        assert_eq!(p.errors.len(), want.len(), "{:#?}", p.errors);
        for (e, (line, needles)) in p.errors.iter().zip(want) {
            assert_eq!(e.location, Location::line(*line));
            let msg = e.to_string();
            for n in *needles {
                assert!(msg.contains(n), "{msg:?} lacks {n:?}");
            }
        }
    }

    #[test]
    fn yaml_format_with_entry_lines() {
        let text = "\
# charts and their images
images:
  - chart: grafana
    source: docker.io/grafana/grafana:11.4.0
    dest: grafana/grafana:11.4.0

  - chart: keda
    source: ghcr.io/kedacore/keda:2.4.0
  - source: nginx
  - {chart: x}
  - docker.io/library/redis:7
  - source: [1, 2]
other: value
";
        let p = parse(text, None).unwrap();
        assert_eq!(p.format, Format::Yaml);
        let got: Vec<(Location, String, Option<String>, Option<String>)> = p
            .entries
            .iter()
            .map(|e| {
                (
                    e.location,
                    e.source.to_string(),
                    e.dest.clone(),
                    e.chart.clone(),
                )
            })
            .collect();
        let loc = |entry, line| Location {
            entry: Some(entry),
            line: Some(line),
        };
        assert_eq!(
            got,
            vec![
                (
                    loc(1, 3),
                    "docker.io/grafana/grafana:11.4.0".into(),
                    Some("grafana/grafana:11.4.0".into()),
                    Some("grafana".into())
                ),
                (
                    loc(2, 7),
                    "ghcr.io/kedacore/keda:2.4.0".into(),
                    None,
                    Some("keda".into())
                ),
                (loc(5, 11), "docker.io/library/redis:7".into(), None, None),
            ]
        );
        let errs: Vec<String> = p.errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(errs.len(), 3, "{errs:#?}");
        assert!(
            errs[0].starts_with("entry 3 (line 9): ") && errs[0].contains("no tag"),
            "{errs:?}"
        );
        assert!(
            errs[1].starts_with("entry 4 (line 10): ") && errs[1].contains("no `source`"),
            "{errs:?}"
        );
        assert!(
            errs[2].starts_with("entry 6 (line 12): ") && errs[2].contains("string"),
            "{errs:?}"
        );
    }

    #[test]
    fn yaml_flow_style_names_entries_without_lines() {
        let p = parse(
            "images: [{source: 'nginx:1'}, {source: 'redis'}]",
            Some(Format::Yaml),
        )
        .unwrap();
        assert_eq!(p.entries.len(), 1);
        assert_eq!(
            p.errors[0].location,
            Location {
                entry: Some(2),
                line: None
            }
        );
        assert!(p.errors[0].to_string().starts_with("entry 2: "));
    }

    #[test]
    fn yaml_items_at_the_margin() {
        let p = parse(
            "images:\n- source: a/b:1\n  dest: x/y\n- source: c/d:2\nkey: 1\n",
            None,
        )
        .unwrap();
        let lines: Vec<Option<usize>> = p.entries.iter().map(|e| e.location.line).collect();
        assert_eq!(lines, vec![Some(2), Some(4)]);
    }

    #[test]
    fn yaml_file_level_errors() {
        let cases: &[(&str, &str)] = &[
            ("images:\n  - source: a:1\n   bad: [\n", "not valid YAML"),
            ("something: else\n", "no `images` key"),
            ("images: 3\n", "must be a list"),
            ("- a:1\n", "expected a mapping"),
        ];
        for (text, needle) in cases {
            let e = parse(text, Some(Format::Yaml)).unwrap_err();
            assert!(e.contains(needle), "{text:?}: {e}");
        }
        let e = parse("images:\n  - source: a:1\n   bad: [\n", None).unwrap_err();
        assert!(e.contains("line"), "{e}");
        // Empty: no entries, no error (the command reports "no image references").
        let p = parse("images:\n", None).unwrap();
        assert!(p.entries.is_empty() && p.errors.is_empty());
    }

    #[test]
    fn repository_names() {
        for ok in [
            "ab",
            "mirror/library/rockylinux",
            "a.b_c-d/e",
            "mirror/127.0.0.1-5000/x",
        ] {
            assert_eq!(validate_repository_name(ok), Ok(()), "{ok}");
        }
        for bad in [
            "a",
            "Mirror/x",
            "mirror//x",
            "/x",
            "x/",
            "a..b",
            "a-",
            "-a",
            "a:b",
            "a b",
            &"a".repeat(257),
        ] {
            assert!(validate_repository_name(bad).is_err(), "{bad:?}");
        }
        assert!(validate_repository_name(&"a".repeat(256)).is_ok());
    }

    #[test]
    fn naming_rules() {
        let p = parse(
            "images:\n\
             - source: rockylinux:9.0.20220720\n\
             - source: docker.io/grafana/grafana:11.4.0\n  dest: grafana/grafana:11.4.0\n\
             - source: 127.0.0.1:5000/team/app:v1\n\
             - source: ghcr.io/a/b:1\n  dest: 123456789012.dkr.ecr.us-east-1.amazonaws.com/apps/b\n",
            None,
        )
        .unwrap();
        assert!(p.errors.is_empty(), "{:?}", p.errors);
        // (scoped, prefix, names in entry order)
        let cases: &[(bool, &str, [&str; 4])] = &[
            (
                false,
                "mirror",
                [
                    "mirror/library/rockylinux",
                    "grafana/grafana",
                    "mirror/team/app",
                    "apps/b",
                ],
            ),
            (
                false,
                "",
                [
                    "library/rockylinux",
                    "grafana/grafana",
                    "team/app",
                    "apps/b",
                ],
            ),
            (
                true,
                "mirror",
                [
                    "mirror/docker.io/library/rockylinux",
                    "mirror/docker.io/grafana/grafana",
                    "mirror/127.0.0.1-5000/team/app",
                    "mirror/ghcr.io/a/b",
                ],
            ),
            (
                true,
                "",
                [
                    "docker.io/library/rockylinux",
                    "docker.io/grafana/grafana",
                    "127.0.0.1-5000/team/app",
                    "ghcr.io/a/b",
                ],
            ),
            (
                true,
                "org/mirror",
                [
                    "org/mirror/docker.io/library/rockylinux",
                    "org/mirror/docker.io/grafana/grafana",
                    "org/mirror/127.0.0.1-5000/team/app",
                    "org/mirror/ghcr.io/a/b",
                ],
            ),
        ];
        for (scoped, prefix, want) in cases {
            let n = naming(*scoped, prefix);
            let got: Vec<String> = p
                .entries
                .iter()
                .map(|e| n.repository_for(e).unwrap())
                .collect();
            assert_eq!(got, want, "scoped={scoped} prefix={prefix:?}");
        }
    }

    #[test]
    fn bad_prefixes_and_dests() {
        for bad in ["/mirror", "mirror/", "Mirror", "a//b", "a b"] {
            assert!(Naming::new(false, bad).is_err(), "{bad:?}");
        }
        let p = parse(
            "images:\n\
             - source: a/b:1\n  dest: x/y:2\n\
             - source: a/c:1\n  dest: x/Y\n\
             - source: a/d:1\n  dest: x/z@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n\
             - source: a/e:1\n  dest: ''\n",
            None,
        )
        .unwrap();
        let n = naming(false, "mirror");
        let errs: Vec<String> = p
            .entries
            .iter()
            .map(|e| n.repository_for(e).unwrap_err())
            .collect();
        assert!(
            errs[0].contains("tag \"2\"") && errs[0].contains("equal"),
            "{errs:?}"
        );
        assert!(
            errs[1].contains("not a valid ECR repository name"),
            "{errs:?}"
        );
        assert!(errs[2].contains("digest"), "{errs:?}");
        assert!(errs[3].contains("empty"), "{errs:?}");
        // Scoped naming ignores dest.
        let n = naming(true, "mirror");
        assert!(p.entries.iter().all(|e| n.repository_for(e).is_ok()));
    }

    #[test]
    fn grouping_sorts_dedups_and_reports_conflicts() {
        let p = list(
            "nginx:1.27\nnginx:1.25\ndocker.io/library/nginx:1.25\nghcr.io/x/nginx:1\n\
             ghcr.io/library/nginx:2\nredis:7\n",
        );
        let plan = plan(&p, &naming(false, "mirror"), &keys());
        let repos: Vec<(&str, String, Vec<String>)> = plan
            .repositories
            .iter()
            .map(|d| {
                (
                    d.repository.as_str(),
                    d.upstream.to_string(),
                    d.tags.clone(),
                )
            })
            .collect();
        assert_eq!(
            repos,
            vec![
                (
                    "mirror/library/redis",
                    "docker.io/library/redis".to_string(),
                    vec!["7".to_string()]
                ),
                (
                    "mirror/x/nginx",
                    "ghcr.io/x/nginx".to_string(),
                    vec!["1".to_string()]
                ),
            ]
        );
        assert_eq!(plan.problems.len(), 1, "{:?}", plan.problems);
        let pr = &plan.problems[0];
        assert_eq!(pr.repository, "mirror/library/nginx");
        for n in [
            "docker.io/library/nginx (line 1, line 2, line 3)",
            "ghcr.io/library/nginx (line 5)",
            "--scoped",
        ] {
            assert!(pr.message.contains(n), "{} lacks {n}", pr.message);
        }
        // Scoped: no conflict, tags sorted and de-duplicated.
        let plan2 = super::plan(&p, &naming(true, "mirror"), &keys());
        assert!(plan2.problems.is_empty());
        let nginx = plan2
            .repositories
            .iter()
            .find(|d| d.repository == "mirror/docker.io/library/nginx")
            .unwrap();
        assert_eq!(nginx.tags, ["1.25", "1.27"]);
        assert_eq!(nginx.locations.len(), 3);
        assert_eq!(
            nginx.resource_tags(&keys()),
            kv(&[
                ("upstream-image", "docker.io/library/nginx"),
                ("upstream-tags", "1.25/1.27")
            ])
        );
    }

    #[test]
    fn naming_errors_become_entry_errors_and_values_are_limited() {
        let mut text = String::from("Bad/Name:1\n");
        text.push_str("images-are-fine:1\n");
        let p = list(&text);
        assert_eq!(p.errors.len(), 1);
        // 130 distinct tags of 2+ chars: the joined value exceeds 256 characters.
        let many: String = (0..130).map(|i| format!("nginx:t{i:03}\n")).collect();
        let plan = plan(&list(&many), &naming(false, "m"), &keys());
        assert!(plan.repositories.is_empty());
        assert_eq!(plan.problems.len(), 1);
        assert!(
            plan.problems[0].message.contains("AWS allows at most 256"),
            "{}",
            plan.problems[0].message
        );
        // A dest naming an invalid repository is an error for that entry.
        let p = parse("images:\n- source: a:1\n  dest: UP/x\n", None).unwrap();
        let plan = super::plan(&p, &naming(false, "m"), &keys());
        assert_eq!(plan.entry_errors.len(), 1);
        let e = plan.entry_errors[0].to_string();
        assert!(
            e.starts_with("entry 1 (line 2): docker.io/library/a:1: "),
            "{e}"
        );
    }

    fn desired(repo: &str, upstream: &str, tags: &[&str]) -> Desired {
        Desired {
            repository: repo.into(),
            upstream: ImageRef::parse(upstream).unwrap(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            rule: None,
            locations: vec![Location::line(1)],
        }
    }

    #[test]
    fn merging_tags() {
        let d = desired("m/nginx", "nginx", &["1.25", "1.27"]);
        // (name, existing, force, Ok(write) | Err(substring))
        type Case<'a> = (
            &'a str,
            &'a [(&'a str, &'a str)],
            bool,
            Result<&'a [(&'a str, &'a str)], &'a str>,
        );
        let cases: &[Case] = &[
            (
                "nothing yet: set both",
                &[("team", "x")],
                false,
                Ok(&[
                    ("upstream-image", "docker.io/library/nginx"),
                    ("upstream-tags", "1.25/1.27"),
                ]),
            ),
            (
                "same, short form, spaced: unchanged",
                &[
                    ("upstream-image", "nginx"),
                    ("upstream-tags", "1.27 / 1.25"),
                ],
                false,
                Ok(&[]),
            ),
            (
                "superset: unchanged",
                &[
                    ("upstream-image", "docker.io/library/nginx"),
                    ("upstream-tags", "stable/1.25/1.27"),
                ],
                false,
                Ok(&[]),
            ),
            (
                "union keeps existing order, appends new",
                &[
                    ("upstream-image", "docker.io/library/nginx"),
                    ("upstream-tags", "stable/1.27"),
                ],
                false,
                Ok(&[("upstream-tags", "stable/1.27/1.25")]),
            ),
            (
                "tags missing",
                &[("upstream-image", "nginx")],
                false,
                Ok(&[("upstream-tags", "1.25/1.27")]),
            ),
            (
                "image missing",
                &[("upstream-tags", "1.25/1.27")],
                false,
                Ok(&[("upstream-image", "docker.io/library/nginx")]),
            ),
            (
                "different image: error",
                &[
                    ("upstream-image", "ghcr.io/x/nginx"),
                    ("upstream-tags", "1"),
                ],
                false,
                Err("pass --force"),
            ),
            (
                "unparseable image: error",
                &[("upstream-image", "Not A Ref"), ("upstream-tags", "1")],
                false,
                Err("\"Not A Ref\""),
            ),
            (
                "different image, forced: overwrite, union",
                &[
                    ("upstream-image", "ghcr.io/x/nginx"),
                    ("upstream-tags", "1"),
                ],
                true,
                Ok(&[
                    ("upstream-image", "docker.io/library/nginx"),
                    ("upstream-tags", "1/1.25/1.27"),
                ]),
            ),
            (
                "union too long",
                &[
                    ("upstream-image", "nginx"),
                    ("upstream-tags", &*"x".repeat(250)),
                ],
                false,
                Err("at most 256"),
            ),
        ];
        for (name, existing, force, want) in cases {
            let got = merge_tags("m/nginx", &kv(existing), &d, &keys(), *force);
            match (got, want) {
                (Ok(m), Ok(w)) => {
                    assert_eq!(m.write, kv(w), "{name}");
                    let mut after = our_tags(&kv(existing), &keys());
                    after.extend(kv(w));
                    assert_eq!(m.after, after, "{name}");
                }
                (Err(e), Err(n)) => {
                    assert!(e.contains(n) && e.contains("m/nginx"), "{name}: {e}")
                }
                (got, want) => panic!("{name}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn merge_uses_the_configured_keys() {
        let k = TagKeys {
            image: "src".into(),
            tags: "tags".into(),
            platforms: "arch".into(),
            rule: "rule".into(),
            ..TagKeys::default()
        };
        let d = desired("r", "nginx", &["1"]);
        let m = merge_tags(
            "r",
            &kv(&[("upstream-image", "redis"), ("arch", "linux/amd64")]),
            &d,
            &k,
            false,
        )
        .unwrap();
        assert_eq!(
            m.write,
            kv(&[("src", "docker.io/library/nginx"), ("tags", "1")])
        );
        assert_eq!(
            d.resource_tags(&k),
            kv(&[("src", "docker.io/library/nginx"), ("tags", "1")])
        );
    }

    fn settings() -> RepoSettings {
        RepoSettings {
            scan_on_push: true,
            immutable: true,
            encryption: Some(Encryption::Kms { key: None }),
            lifecycle_policy: Some("{\"rules\":[]}".into()),
        }
    }

    #[tokio::test]
    async fn apply_creates_merges_and_is_idempotent() {
        let ecr = MemoryEcr::new();
        ecr.add(
            "mirror/library/nginx",
            &[
                ("team", "web"),
                ("upstream-image", "nginx"),
                ("upstream-tags", "stable"),
            ],
        );
        ecr.add(
            "mirror/library/redis",
            &[
                ("upstream-image", "docker.io/library/redis"),
                ("upstream-tags", "7"),
            ],
        );
        ecr.add("mirror/x/app", &[("upstream-image", "ghcr.io/other/app")]);
        let parsed = list(
            "nginx:1.25\nredis:7\nrockylinux:9.0.20220720\nrockylinux:8\nghcr.io/x/app:1\nbad\n",
        );
        let plan = plan(&parsed, &naming(false, "mirror"), &keys());
        let opts = ApplyOptions::default();
        let changes = apply(&ecr, &plan, &settings(), &keys(), opts)
            .await
            .unwrap();
        let summary: Vec<(&str, &str)> = changes
            .iter()
            .map(|c| (c.repository.as_str(), c.action.name()))
            .collect();
        assert_eq!(
            summary,
            vec![
                ("mirror/library/nginx", "update"),
                ("mirror/library/redis", "unchanged"),
                ("mirror/library/rockylinux", "create"),
                ("mirror/x/app", "error"),
            ]
        );
        assert_eq!(ecr.calls("CreateRepository"), 1);
        assert_eq!(ecr.calls("TagResource"), 1);
        assert_eq!(
            ecr.tags_of("mirror/library/nginx").unwrap(),
            kv(&[
                ("team", "web"),
                ("upstream-image", "nginx"),
                ("upstream-tags", "stable/1.25"),
            ])
        );
        assert_eq!(
            ecr.tags_of("mirror/library/rockylinux").unwrap(),
            kv(&[
                ("upstream-image", "docker.io/library/rockylinux"),
                ("upstream-tags", "8/9.0.20220720"),
            ])
        );
        assert_eq!(
            ecr.settings_of("mirror/library/rockylinux").unwrap(),
            settings()
        );
        let nginx = &changes[0];
        assert_eq!(
            nginx.tags_before,
            Some(map(&[
                ("upstream-image", "nginx"),
                ("upstream-tags", "stable")
            ]))
        );
        assert_eq!(
            nginx.tags_after,
            Some(map(&[
                ("upstream-image", "nginx"),
                ("upstream-tags", "stable/1.25")
            ]))
        );
        let rocky = &changes[2];
        assert_eq!(rocky.tags_before, None);
        assert_eq!(rocky.locations, vec![Location::line(3), Location::line(4)]);
        let app = &changes[3];
        assert!(
            app.error.as_deref().unwrap().contains("ghcr.io/other/app"),
            "{app:?}"
        );
        assert_eq!(app.tags_after, None);
        assert_eq!(
            ecr.tags_of("mirror/x/app").unwrap(),
            kv(&[("upstream-image", "ghcr.io/other/app")]),
            "a conflicting repository is not touched"
        );
        let counts = Counts::of(&changes, &plan.entry_errors, false);
        assert_eq!(
            counts,
            Counts {
                create: 1,
                update: 1,
                unchanged: 1,
                error: 2,
                dry_run: false
            }
        );
        assert_eq!(counts.exit_code(), 1);

        // Second run: no writes at all.
        let again = apply(&ecr, &plan, &settings(), &keys(), opts)
            .await
            .unwrap();
        assert_eq!(ecr.calls("CreateRepository"), 1);
        assert_eq!(ecr.calls("TagResource"), 1);
        let actions: Vec<&str> = again.iter().map(|c| c.action.name()).collect();
        assert_eq!(actions, ["unchanged", "unchanged", "unchanged", "error"]);

        // --force resolves the conflict.
        let forced = apply(
            &ecr,
            &plan,
            &settings(),
            &keys(),
            ApplyOptions {
                force: true,
                dry_run: false,
            },
        )
        .await
        .unwrap();
        assert_eq!(forced[3].action, ChangeAction::Update);
        assert_eq!(
            ecr.tags_of("mirror/x/app").unwrap(),
            kv(&[("upstream-image", "ghcr.io/x/app"), ("upstream-tags", "1")])
        );
    }

    #[tokio::test]
    async fn dry_run_reads_only() {
        let ecr = MemoryEcr::new();
        ecr.add(
            "m/library/a",
            &[("upstream-image", "a"), ("upstream-tags", "1")],
        );
        let plan = plan(&list("a:2\nb:1\n"), &naming(false, "m"), &keys());
        let changes = apply(
            &ecr,
            &plan,
            &RepoSettings::default(),
            &keys(),
            ApplyOptions {
                force: false,
                dry_run: true,
            },
        )
        .await
        .unwrap();
        let actions: Vec<&str> = changes.iter().map(|c| c.action.name()).collect();
        assert_eq!(actions, ["update", "create"]);
        assert_eq!(
            changes[0].tags_after,
            Some(map(&[("upstream-image", "a"), ("upstream-tags", "1/2")]))
        );
        assert_eq!(ecr.calls("CreateRepository") + ecr.calls("TagResource"), 0);
        assert!(ecr.tags_of("m/library/b").is_none());
        let c = Counts::of(&changes, &[], true);
        assert!(c.dry_run && c.create == 1 && c.update == 1);
    }

    #[tokio::test]
    async fn read_failures_are_per_repository() {
        let ecr = MemoryEcr::new();
        ecr.add("m/library/a", &[]);
        ecr.fail_tags(
            "m/library/a",
            EcrError::AccessDenied {
                op: "ListTagsForResource",
                repository: Some("m/library/a".into()),
                message: "no".into(),
            },
        );
        let plan = plan(&list("a:1\nb:1\n"), &naming(false, "m"), &keys());
        let changes = apply(
            &ecr,
            &plan,
            &RepoSettings::default(),
            &keys(),
            ApplyOptions::default(),
        )
        .await
        .unwrap();
        assert_eq!(changes[0].action, ChangeAction::Error);
        assert!(changes[0]
            .error
            .as_deref()
            .unwrap()
            .contains("access denied"));
        assert_eq!(changes[1].action, ChangeAction::Create);
    }

    /// An ECR whose every call is refused.
    struct Denied;

    impl EcrApi for Denied {
        async fn repositories(&self, _: Option<&str>) -> Result<Vec<Repository>, EcrError> {
            Err(EcrError::AccessDenied {
                op: "DescribeRepositories",
                repository: None,
                message: "no".into(),
            })
        }
        async fn tags(&self, _: &str) -> Result<Vec<(String, String)>, EcrError> {
            unreachable!()
        }
        async fn auth_token(&self) -> Result<crate::ecr::EcrToken, EcrError> {
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

    #[tokio::test]
    async fn a_failed_listing_fails_the_run_and_writes_nothing() {
        let plan = plan(&list("a:1\n"), &naming(false, "m"), &keys());
        let e = apply(
            &Denied,
            &plan,
            &RepoSettings::default(),
            &keys(),
            ApplyOptions::default(),
        )
        .await
        .unwrap_err();
        assert!(matches!(e, EcrError::AccessDenied { .. }), "{e}");
        // Nothing valid to apply: ECR is not even asked.
        let empty = apply(
            &Denied,
            &Plan::default(),
            &RepoSettings::default(),
            &keys(),
            ApplyOptions::default(),
        )
        .await
        .unwrap();
        assert!(empty.is_empty());
    }

    #[test]
    fn json_records() {
        let c = Change {
            repository: "m/a".into(),
            action: ChangeAction::Create,
            upstream: Some("docker.io/library/a".into()),
            tags_before: None,
            tags_after: Some(map(&[("upstream-tags", "1")])),
            error: None,
            locations: vec![
                Location::line(3),
                Location {
                    entry: Some(2),
                    line: None,
                },
            ],
        };
        let v = c.to_json();
        assert_eq!(v["action"], "create");
        assert_eq!(v["tags_before"], Value::Null);
        assert_eq!(v["tags_after"]["upstream-tags"], "1");
        assert_eq!(v["lines"], json!([3]));
        assert_eq!(v["entries"], json!([2]));
        let e = entry_error_json(&EntryError {
            location: Location::line(4),
            message: "bad".into(),
        });
        assert_eq!(e["line"], 4);
        assert_eq!(e["error"], "line 4: bad");
        assert_eq!(e["repository"], Value::Null);
    }
}
