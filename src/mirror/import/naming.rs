//! How file entries are named in ECR (`--scoped`, `--prefix`), and ECR's repository-name rules.

use super::*;

/// Whether `name` is a valid ECR repository name: 2 to 256 characters matching
/// `(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*`. `Err` says why not.
pub fn validate_repository_name(name: &str) -> Result<(), String> {
    let chars = name.chars().count();
    if chars < 2 {
        return Err(format!(
            "ECR repository name {name:?} is too short (at least 2 characters)"
        ));
    }
    if chars > MAX_REPOSITORY_NAME_CHARS {
        return Err(format!(
            "ECR repository name {name:?} is {chars} characters long; AWS allows at most {MAX_REPOSITORY_NAME_CHARS}"
        ));
    }
    if let Some(bad) = name.split('/').find(|c| !valid_name_component(c)) {
        return Err(format!(
            "{name:?} is not a valid ECR repository name: component {bad:?} must be lowercase letters and digits, separated by single '.', '_' or '-', between single '/'"
        ));
    }
    Ok(())
}

/// `[a-z0-9]+(?:[._-][a-z0-9]+)*`
fn valid_name_component(c: &str) -> bool {
    let mut after_separator = true;
    for ch in c.chars() {
        if ch.is_ascii_lowercase() || ch.is_ascii_digit() {
            after_separator = false;
        } else if matches!(ch, '.' | '_' | '-') && !after_separator {
            after_separator = true;
        } else {
            return false;
        }
    }
    !after_separator
}

/// How entries are named in ECR (`--scoped`, `--prefix`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Naming {
    /// `<prefix>/<registry>/<path>` for every entry, ignoring `dest`.
    pub scoped: bool,
    /// The prefix; empty for none.
    pub prefix: String,
}

impl Naming {
    /// Checks the prefix: empty, or a valid repository path without leading or trailing `/`.
    pub fn new(scoped: bool, prefix: &str) -> Result<Naming, String> {
        if !prefix.is_empty() {
            if prefix.starts_with('/') || prefix.ends_with('/') {
                return Err(format!(
                    "--prefix {prefix:?}: give a repository path prefix without leading or trailing '/', e.g. mirror (or '' for none)"
                ));
            }
            if let Some(bad) = prefix.split('/').find(|c| !valid_name_component(c)) {
                return Err(format!(
                    "--prefix {prefix:?}: component {bad:?} is not valid in an ECR repository name (lowercase letters and digits, separated by single '.', '_' or '-')"
                ));
            }
        }
        Ok(Naming {
            scoped,
            prefix: prefix.to_string(),
        })
    }

    fn join(&self, rest: &str) -> String {
        if self.prefix.is_empty() {
            rest.to_string()
        } else {
            format!("{}/{rest}", self.prefix)
        }
    }

    /// The ECR repository for an entry:
    /// * scoped: `<prefix>/<registry>/<path>`; a port's `:` becomes `-` (ECR names cannot hold
    ///   `:`), e.g. `mirror/127.0.0.1-5000/team/app`;
    /// * else the repository part of `dest` when given (its tag, if any, must equal the
    ///   source tag);
    /// * else `<prefix>/<path>`, e.g. `mirror/library/rockylinux`.
    pub fn repository_for(&self, entry: &Entry) -> Result<String, String> {
        let image = &entry.source.image;
        let name = if self.scoped {
            let registry = image.registry.to_ascii_lowercase().replace(':', "-");
            self.join(&format!("{registry}/{}", image.repository))
        } else if let Some(dest) = &entry.dest {
            let (repository, tag) = parse_dest(dest)?;
            if let Some(tag) = tag {
                if tag != entry.tag() {
                    return Err(format!(
                        "dest {dest:?} has tag {tag:?} but source {} has tag {:?}; a mirror keeps the upstream tag, so they must be equal",
                        entry.source,
                        entry.tag()
                    ));
                }
            }
            repository
        } else {
            self.join(&image.repository)
        };
        validate_repository_name(&name)?;
        Ok(name)
    }
}

/// A `dest` value → (repository, tag). A leading registry host (a first component with `.`
/// or `:`, or `localhost`) is dropped: the repository part is what names the ECR repository.
fn parse_dest(raw: &str) -> Result<(String, Option<String>), String> {
    let s = raw.trim();
    if s.is_empty() {
        return Err("`dest` is empty".into());
    }
    if s.contains("://") {
        return Err(format!("dest {raw:?}: write it without a URL scheme"));
    }
    if s.contains('@') {
        return Err(format!(
            "dest {raw:?}: a destination cannot be a digest; give REPOSITORY[:TAG]"
        ));
    }
    let (name, tag) = match s.rsplit_once('/') {
        Some((head, last)) => match last.split_once(':') {
            Some((repo, tag)) => (format!("{head}/{repo}"), Some(tag.to_string())),
            None => (s.to_string(), None),
        },
        None => match s.split_once(':') {
            Some((repo, tag)) => (repo.to_string(), Some(tag.to_string())),
            None => (s.to_string(), None),
        },
    };
    if let Some(t) = &tag {
        validate_tag(t).map_err(|e| format!("dest {raw:?}: {e}"))?;
    }
    let name = match name.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            rest.to_string()
        }
        _ => name,
    };
    Ok((name, tag))
}
