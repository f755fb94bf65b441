//! Tag rules (`upstream-tag-rule`): choose upstream tags by version instead of by list.
//!
//! A rule is the value of one resource tag, e.g. `semver=1.x newest=3`: space-separated
//! `key=value` words, each at most once, using only the characters AWS allows in tag values
//! (so no `*`, `>`, `^` or `~`). The words, in the order the canonical form writes them:
//!
//! | word | meaning |
//! |---|---|
//! | `semver=x`, `semver=1.x`, `semver=1.2.x` | any version, or those of that major, or major.minor |
//! | `min=1.20.0` | versions at or above this one |
//! | `below=2.0.0` | versions strictly below this one |
//! | `newest=N` | the N highest distinct versions of what matches the other words (N ≥ 1) |
//! | `prerelease=yes` / `no` | also count pre-releases (`1.30.0-rc.1`); default `no` |
//! | `variant=alpine` | only tags `<version>-alpine`, ordered by `<version>`; default: no suffix |
//! | `exclude=1.2.3/1.2.4` | never these tags (a version item also matches `v1.2.3`, `1.2.3-alpine`) |
//!
//! A version is `MAJOR.MINOR.PATCH` with an optional lower-case `v`, numbers without leading
//! zeros and of any length, and an optional `-SUFFIX`. A suffix that begins (in any case) with
//! `rc`, `alpha`, `beta`, `pre`, `snapshot` or `nightly` is a pre-release and must be a SemVer
//! 2.0.0 pre-release; any other suffix is a variant. Versions order by SemVer 2.0.0 precedence.
//! The details are in the private module `version`.
//!
//! This module is pure: no I/O, no dependency on the rest of the crate (only std and `serde`
//! for [`Reason`]'s JSON form). The caller lists the upstream tags, calls [`TagRule::select`],
//! mirrors [`merge_tags`] of the explicit `upstream-tags` and [`Selection::selected`], and shows
//! [`Selection::left_out`] in `list --check` and `sync --dry-run`.
//!
//! Errors ([`RuleError`]) are per repository and name the faulty word; the caller prefixes the
//! repository and sets the configured key name with [`RuleError::with_key`].
//!
//! Decisions (documented for users in `docs/ecr-tags.md`, "Tag rules"):
//! - Numbers of any length are versions and compare by value (no overflow, no `u64` limit).
//! - `+` (build metadata) never occurs in an image tag; a string with `+` is not a version, and
//!   `min=`/`below=` with `+` is an error.
//! - `1.2.3` and `v1.2.3` are the same version: both are selected or both left out, and they
//!   count once for `newest=`; in the output they sort in byte order (`1.2.3` first).
//! - Order of [`Selection::selected`]: newest version first.
//! - `min=`/`below=` compare by SemVer precedence, so `below=2.0.0 prerelease=yes` keeps
//!   `2.0.0-rc.1` (it is below 2.0.0); `semver=1.x` is the way to stay in 1.x.
//! - A variant's pre-releases (`1.30.0-rc.1-alpine`) are not recognised: that suffix begins with
//!   `rc`, so the tag is a pre-release whose identifiers end in `1-alpine`; `prerelease=yes`
//!   together with `variant=` is therefore an error rather than a silent no-op.

mod grammar;
mod select;
mod version;

#[cfg(test)]
mod tests;

pub use grammar::{RuleError, TagRule, DEFAULT_KEY, WORDS};
pub use select::{merge_tags, Reason, Selection};
