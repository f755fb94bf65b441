//! ECR resource tags → [`MirrorSpec`]: the tag schema, v1. Pure: no I/O.
//!
//! The ECR repository's own resource tags are the single source of truth for what to mirror
//! (DESIGN.md §2), so this parser is the product's configuration parser, and is strict in the
//! same way: a repository whose tags are wrong gets an error *for that repository only*, and a
//! tag key that is almost right gets a warning, because a silently ignored `Upstream-Image`
//! means an image that quietly stops being mirrored.
//!
//! Schema v1 (documented for users in `docs/ecr-tags.md`):
//! * `upstream-image`: the upstream repository without a tag, Docker-normalised
//!   (`nginx` → `docker.io/library/nginx`);
//! * `upstream-tags`: tags separated by `/`, each trimmed; duplicates are dropped;
//! * `upstream-platforms` (optional): space-separated `os/arch[/variant]`; absent means all;
//! * `upstream-tag-rule` (optional): a [`TagRule`], e.g. `semver=1.x newest=3`.
//!
//! A repository is *marked* when it has the image key, the tags key or the rule key; it then
//! needs the image key and at least one of the tags and rule keys, or it is an error. Key names are configurable ([`TagKeys`]). Values must use only the characters AWS
//! accepts in tag values: moto accepts anything, real AWS does not, so we check ourselves.

#[cfg(test)]
use crate::mirror::near_miss::edit_distance;
use crate::mirror::near_miss::near_miss;
use crate::mirror::spec::MirrorSpec;
use crate::mirror::tag_rule::{RuleError, TagRule};
use crate::oci::{validate_tag, ImageRef, PlatformFilter, SpecError};

use crate::ecr::EcrError;

/// The version of the tag schema this module reads and writes.
pub const TAG_SCHEMA_VERSION: u32 = 1;

/// The longest tag value AWS accepts, in characters.
pub const MAX_TAG_VALUE_CHARS: usize = 256;

/// The tag key names (`--image-key`, `--tag-key`, `--platforms-key`, `--tag-rule-key`). Field
/// docs give the defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagKeys {
    /// The key holding the upstream repository. Default `upstream-image`.
    pub image: String,
    /// The key holding the `/`-separated tags. Default `upstream-tags`.
    pub tags: String,
    /// The key holding the optional space-separated platform list. Default
    /// `upstream-platforms`.
    pub platforms: String,
    /// The key holding the optional tag rule. Default `upstream-tag-rule`.
    pub rule: String,
    /// The key holding the optional referrer selection (`all`, `none`, or space-separated
    /// artifact types and short names). Default `upstream-referrers`.
    pub referrers: String,
}

impl Default for TagKeys {
    fn default() -> Self {
        TagKeys {
            image: "upstream-image".into(),
            tags: "upstream-tags".into(),
            platforms: "upstream-platforms".into(),
            rule: crate::mirror::tag_rule::DEFAULT_KEY.into(),
            referrers: "upstream-referrers".into(),
        }
    }
}

impl TagKeys {
    fn all(&self) -> [&str; 5] {
        [
            &self.image,
            &self.tags,
            &self.platforms,
            &self.rule,
            &self.referrers,
        ]
    }
}

/// The outcome of reading one repository's tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagParse {
    /// `None` when the repository is not marked for mirroring; otherwise its spec or the
    /// reason it is unusable.
    pub spec: Option<Result<MirrorSpec, TagError>>,
    /// Things worth telling the user that do not stop the repository (near-miss keys,
    /// duplicate tags, ...). Each names the repository.
    pub warnings: Vec<String>,
}

/// Why a marked repository's tags cannot be used. Each variant names the repository.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TagError {
    /// One of the image and tags keys is set and the other is not.
    #[error("repository {repository:?}: tag {present:?} is set but {missing:?} is missing; set both to mirror this repository")]
    MissingKey {
        /// The repository.
        repository: String,
        /// The key that is set.
        present: String,
        /// The key that is missing.
        missing: String,
    },
    /// The image key is set, and neither the tags key nor the rule key.
    #[error("repository {repository:?}: tag {image:?} is set but neither {tags:?} nor {rule:?}; set one of them (or both) to say which tags to mirror")]
    NoTags {
        /// The repository.
        repository: String,
        /// The image key.
        image: String,
        /// The tags key.
        tags: String,
        /// The rule key.
        rule: String,
    },
    /// The tag rule cannot be used (it names the word at fault).
    #[error("repository {repository:?}: {source}")]
    Rule {
        /// The repository.
        repository: String,
        /// What is wrong with the rule; it names the configured key.
        #[source]
        source: RuleError,
    },
    /// The same key appears more than once in the input.
    #[error("repository {repository:?}: tag {key:?} appears more than once")]
    DuplicateKey {
        /// The repository.
        repository: String,
        /// The key.
        key: String,
    },
    /// A value is empty (or only spaces).
    #[error("repository {repository:?}: tag {key:?} has an empty value")]
    EmptyValue {
        /// The repository.
        repository: String,
        /// The key.
        key: String,
    },
    /// A value holds a character AWS does not allow in tag values.
    #[error("repository {repository:?}: tag {key:?} contains {character:?}, which AWS does not allow in tag values (allowed: letters, digits, spaces and + - = . _ : / @)")]
    BadCharacter {
        /// The repository.
        repository: String,
        /// The key.
        key: String,
        /// The first offending character.
        character: char,
    },
    /// A value is longer than AWS allows.
    #[error("repository {repository:?}: tag {key:?} is {chars} characters long; AWS allows at most {MAX_TAG_VALUE_CHARS}")]
    TooLong {
        /// The repository.
        repository: String,
        /// The key.
        key: String,
        /// The value's length in characters.
        chars: usize,
    },
    /// The upstream reference is not a valid repository reference (or carries a tag).
    #[error("repository {repository:?}: tag {key:?}: {source}")]
    Image {
        /// The repository.
        repository: String,
        /// The key.
        key: String,
        /// What is wrong with the reference.
        #[source]
        source: SpecError,
    },
    /// An item of the tag list is empty, e.g. `1.0//2.0`.
    #[error("repository {repository:?}: tag {key:?} = {value:?}: item {position} is empty")]
    EmptyItem {
        /// The repository.
        repository: String,
        /// The key.
        key: String,
        /// The whole value.
        value: String,
        /// The 1-based position of the empty item.
        position: usize,
    },
    /// An item of the tag list is not a valid image tag.
    #[error("repository {repository:?}: tag {key:?}, item {position}: {source}")]
    InvalidTag {
        /// The repository.
        repository: String,
        /// The key.
        key: String,
        /// The 1-based position of the item.
        position: usize,
        /// What is wrong with it.
        #[source]
        source: SpecError,
    },
    /// The platform list does not parse.
    #[error("repository {repository:?}: tag {key:?}: {source}")]
    Platforms {
        /// The repository.
        repository: String,
        /// The key.
        key: String,
        /// What is wrong with it.
        #[source]
        source: SpecError,
    },
    /// The referrer selection does not parse.
    #[error("repository {repository:?}: tag {key:?}: {message}")]
    Referrers {
        /// The repository.
        repository: String,
        /// The key.
        key: String,
        /// What is wrong with it.
        message: String,
    },
    /// The repository's tags could not be read (discovery only).
    #[error("repository {repository:?}: cannot read its tags: {source}")]
    Unreadable {
        /// The repository.
        repository: String,
        /// The control-plane error.
        #[source]
        source: EcrError,
    },
}

impl TagError {
    /// The repository the error is about.
    pub fn repository(&self) -> &str {
        match self {
            TagError::MissingKey { repository, .. }
            | TagError::NoTags { repository, .. }
            | TagError::Rule { repository, .. }
            | TagError::DuplicateKey { repository, .. }
            | TagError::EmptyValue { repository, .. }
            | TagError::BadCharacter { repository, .. }
            | TagError::TooLong { repository, .. }
            | TagError::Image { repository, .. }
            | TagError::EmptyItem { repository, .. }
            | TagError::InvalidTag { repository, .. }
            | TagError::Platforms { repository, .. }
            | TagError::Referrers { repository, .. }
            | TagError::Unreadable { repository, .. } => repository,
        }
    }
}

/// The first character AWS would refuse in a tag value, if any.
///
/// AWS allows Unicode letters and digits, spaces, and `+ - = . _ : / @`. We accept only the
/// ASCII space as a space (AWS also takes other Unicode space separators; none can be useful
/// in this schema).
pub fn disallowed_tag_value_char(value: &str) -> Option<char> {
    value.chars().find(|&c| {
        !(c.is_alphanumeric() || matches!(c, ' ' | '+' | '-' | '=' | '.' | '_' | ':' | '/' | '@'))
    })
}

/// Reads one repository's resource tags into a [`MirrorSpec`] (schema v1; see the module
/// docs). Never fails as a whole: problems are in [`TagParse::spec`] and warnings.
pub fn spec_from_tags(repository: &str, tags: &[(String, String)], keys: &TagKeys) -> TagParse {
    let mut warnings = near_miss_warnings(repository, tags, keys);
    let spec = parse_marked(repository, tags, keys, &mut warnings);
    TagParse { spec, warnings }
}

/// The tags that describe `spec` in schema v1: the inverse of [`spec_from_tags`]. The
/// platforms key is included only for a platform filter, the tags key only when there are
/// explicit tags (or no rule), and the rule key only with a rule (in its canonical form). Use
/// it to write tags (`import`).
pub fn spec_to_tags(spec: &MirrorSpec, keys: &TagKeys) -> Vec<(String, String)> {
    let mut out = vec![(keys.image.clone(), spec.upstream.to_string())];
    if !spec.tags.is_empty() || spec.rule.is_none() {
        out.push((keys.tags.clone(), spec.tags.join("/")));
    }
    if let PlatformFilter::Only(_) = spec.platforms {
        out.push((keys.platforms.clone(), spec.platforms.to_string()));
    }
    if let Some(rule) = &spec.rule {
        out.push((keys.rule.clone(), rule.to_string()));
    }
    if let Some(r) = &spec.referrers {
        out.push((keys.referrers.clone(), r.clone()));
    }
    out
}

fn parse_marked(
    repository: &str,
    tags: &[(String, String)],
    keys: &TagKeys,
    warnings: &mut Vec<String>,
) -> Option<Result<MirrorSpec, TagError>> {
    let find = |key: &str| -> Result<Option<&str>, TagError> {
        let mut hits = tags.iter().filter(|(k, _)| k == key);
        match (hits.next(), hits.next()) {
            (None, _) => Ok(None),
            (Some((_, v)), None) => Ok(Some(v.as_str())),
            (Some(_), Some(_)) => Err(TagError::DuplicateKey {
                repository: repository.to_string(),
                key: key.to_string(),
            }),
        }
    };
    let found = [
        find(&keys.image),
        find(&keys.tags),
        find(&keys.platforms),
        find(&keys.rule),
    ];
    let [image, list, platforms, rule] = match found {
        [Ok(i), Ok(t), Ok(p), Ok(r)] => [i, t, p, r],
        [Err(e), ..] | [_, Err(e), ..] | [_, _, Err(e), _] | [.., Err(e)] => return Some(Err(e)),
    };
    let referrers = match find(&keys.referrers) {
        Ok(r) => r,
        Err(e) => return Some(Err(e)),
    };
    if image.is_none() && list.is_none() && rule.is_none() {
        if platforms.is_some() {
            warnings.push(format!(
                "repository {repository:?}: tag {:?} is set but the repository is not marked for mirroring (no {:?}, {:?} or {:?}); it is ignored",
                keys.platforms, keys.image, keys.tags, keys.rule
            ));
        }
        return None;
    }
    Some(
        parse_spec(
            repository,
            Given {
                image,
                list,
                platforms,
                rule,
            },
            keys,
            warnings,
        )
        .and_then(|mut spec| {
            spec.referrers = parse_referrers(repository, referrers, keys)?;
            Ok(spec)
        }),
    )
}

/// The `upstream-referrers` value: AWS's characters and length, then the selection grammar
/// ([`crate::mirror::referrers::parse_selection`]; a comma is not an AWS tag character, so
/// the list is space-separated here). Kept as written, trimmed.
fn parse_referrers(
    repository: &str,
    value: Option<&str>,
    keys: &TagKeys,
) -> Result<Option<String>, TagError> {
    let Some(value) = value else { return Ok(None) };
    let key = || keys.referrers.clone();
    if let Some(character) = disallowed_tag_value_char(value) {
        return Err(TagError::BadCharacter {
            repository: repository.to_string(),
            key: key(),
            character,
        });
    }
    let chars = value.chars().count();
    if chars > MAX_TAG_VALUE_CHARS {
        return Err(TagError::TooLong {
            repository: repository.to_string(),
            key: key(),
            chars,
        });
    }
    crate::mirror::referrers::parse_selection(value).map_err(|message| TagError::Referrers {
        repository: repository.to_string(),
        key: key(),
        message,
    })?;
    Ok(Some(value.trim().to_string()))
}

/// The values of the schema's keys on one repository.
struct Given<'a> {
    image: Option<&'a str>,
    list: Option<&'a str>,
    platforms: Option<&'a str>,
    rule: Option<&'a str>,
}

fn parse_spec(
    repository: &str,
    given: Given<'_>,
    keys: &TagKeys,
    warnings: &mut Vec<String>,
) -> Result<MirrorSpec, TagError> {
    let repo = || repository.to_string();
    let Given {
        image,
        list,
        platforms,
        rule,
    } = given;
    let image = match (image, list, rule) {
        (Some(i), Some(_), _) | (Some(i), _, Some(_)) => i,
        (Some(_), None, None) => {
            return Err(TagError::NoTags {
                repository: repo(),
                image: keys.image.clone(),
                tags: keys.tags.clone(),
                rule: keys.rule.clone(),
            })
        }
        (None, l, _) => {
            return Err(TagError::MissingKey {
                repository: repo(),
                present: if l.is_some() {
                    keys.tags.clone()
                } else {
                    keys.rule.clone()
                },
                missing: keys.image.clone(),
            })
        }
    };
    // Character and length checks first, so the error names the key and the character.
    for (key, value) in [
        (&keys.image, Some(image)),
        (&keys.tags, list),
        (&keys.platforms, platforms),
        (&keys.rule, rule),
    ] {
        let Some(value) = value else { continue };
        if let Some(character) = disallowed_tag_value_char(value) {
            return Err(TagError::BadCharacter {
                repository: repo(),
                key: key.clone(),
                character,
            });
        }
        let chars = value.chars().count();
        if chars > MAX_TAG_VALUE_CHARS {
            return Err(TagError::TooLong {
                repository: repo(),
                key: key.clone(),
                chars,
            });
        }
    }

    let image = image.trim();
    if image.is_empty() {
        return Err(TagError::EmptyValue {
            repository: repo(),
            key: keys.image.clone(),
        });
    }
    let upstream = ImageRef::parse(image).map_err(|source| TagError::Image {
        repository: repo(),
        key: keys.image.clone(),
        source,
    })?;
    // The normalised form (`docker.io/library/...`) is what `import` writes back; it must fit
    // an AWS tag value too, or the spec could not round-trip (found by fuzzing).
    let normalised = upstream.to_string().chars().count();
    if normalised > MAX_TAG_VALUE_CHARS {
        return Err(TagError::TooLong {
            repository: repo(),
            key: keys.image.clone(),
            chars: normalised,
        });
    }

    let rule = match rule {
        None => None,
        Some(r) => Some(TagRule::parse(r).map_err(|e| TagError::Rule {
            repository: repo(),
            source: e.with_key(keys.rule.clone()),
        })?),
    };

    let mut mirrored: Vec<String> = Vec::new();
    if let Some(list) = list {
        if list.trim().is_empty() {
            return Err(TagError::EmptyValue {
                repository: repo(),
                key: keys.tags.clone(),
            });
        }
        parse_list(repository, list, keys, warnings, &mut mirrored)?;
    }

    let platforms = match platforms {
        None => PlatformFilter::All,
        Some(p) if p.trim().is_empty() => {
            warnings.push(format!(
                "repository {repository:?}: tag {:?} is empty; all platforms are mirrored",
                keys.platforms
            ));
            PlatformFilter::All
        }
        Some(p) => PlatformFilter::parse_list(p).map_err(|source| TagError::Platforms {
            repository: repo(),
            key: keys.platforms.clone(),
            source,
        })?,
    };

    Ok(MirrorSpec {
        repository: repository.to_string(),
        upstream,
        tags: mirrored,
        rule,
        platforms,
        referrers: None,
    })
}

/// The items of `upstream-tags`, checked, into `mirrored` (duplicates dropped, with a warning).
fn parse_list(
    repository: &str,
    list: &str,
    keys: &TagKeys,
    warnings: &mut Vec<String>,
    mirrored: &mut Vec<String>,
) -> Result<(), TagError> {
    let repo = || repository.to_string();
    for (i, item) in list.split('/').enumerate() {
        let tag = item.trim();
        if tag.is_empty() {
            return Err(TagError::EmptyItem {
                repository: repo(),
                key: keys.tags.clone(),
                value: list.to_string(),
                position: i + 1,
            });
        }
        validate_tag(tag).map_err(|source| TagError::InvalidTag {
            repository: repo(),
            key: keys.tags.clone(),
            position: i + 1,
            source,
        })?;
        if mirrored.iter().any(|t| t == tag) {
            warnings.push(format!(
                "repository {repository:?}: tag {:?} lists {tag:?} more than once; it is mirrored once",
                keys.tags
            ));
        } else {
            mirrored.push(tag.to_string());
        }
    }
    Ok(())
}

/// Warnings for keys that are almost, but not exactly, a configured key.
fn near_miss_warnings(repository: &str, tags: &[(String, String)], keys: &TagKeys) -> Vec<String> {
    let configured = keys.all();
    let mut out = Vec::new();
    for (key, _) in tags {
        if configured.contains(&key.as_str()) {
            continue;
        }
        for want in configured {
            if let Some(why) = near_miss(key, want) {
                out.push(format!(
                    "repository {repository:?}: tag key {key:?} is not {want:?} ({why}); it is ignored"
                ));
                break;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::Platform;

    fn tags(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn parse(pairs: &[(&str, &str)]) -> TagParse {
        spec_from_tags("mirror/x", &tags(pairs), &TagKeys::default())
    }

    fn ok(pairs: &[(&str, &str)]) -> MirrorSpec {
        match parse(pairs).spec {
            Some(Ok(s)) => s,
            other => panic!("{pairs:?}: expected a spec, got {other:?}"),
        }
    }

    fn err(pairs: &[(&str, &str)]) -> TagError {
        match parse(pairs).spec {
            Some(Err(e)) => e,
            other => panic!("{pairs:?}: expected an error, got {other:?}"),
        }
    }

    #[test]
    fn valid_specs() {
        // (name, tags, upstream, tags, platforms)
        type Case<'a> = (
            &'a str,
            &'a [(&'a str, &'a str)],
            &'a str,
            &'a [&'a str],
            &'a str,
        );
        let cases: &[Case] = &[
            (
                "docker hub short name",
                &[("upstream-image", "nginx"), ("upstream-tags", "1.25")],
                "docker.io/library/nginx",
                &["1.25"],
                "all",
            ),
            (
                "org on docker hub",
                &[
                    ("upstream-image", "bitnami/redis"),
                    ("upstream-tags", "7.2"),
                ],
                "docker.io/bitnami/redis",
                &["7.2"],
                "all",
            ),
            (
                "trimmed, several, other tags ignored",
                &[
                    ("team", "platform"),
                    ("upstream-image", " ghcr.io/kedacore/keda "),
                    ("upstream-tags", " 2.4.0 / 2.5.0/latest "),
                ],
                "ghcr.io/kedacore/keda",
                &["2.4.0", "2.5.0", "latest"],
                "all",
            ),
            (
                "duplicates dropped, order kept",
                &[("upstream-image", "nginx"), ("upstream-tags", "b/a/b/c/a")],
                "docker.io/library/nginx",
                &["b", "a", "c"],
                "all",
            ),
            (
                "platforms",
                &[
                    ("upstream-image", "127.0.0.1:5000/up/app"),
                    ("upstream-tags", "v1"),
                    ("upstream-platforms", "linux/arm64/v8  linux/amd64"),
                ],
                "127.0.0.1:5000/up/app",
                &["v1"],
                "linux/amd64 linux/arm64/v8",
            ),
            (
                "empty platforms means all",
                &[
                    ("upstream-image", "nginx"),
                    ("upstream-tags", "1"),
                    ("upstream-platforms", ""),
                ],
                "docker.io/library/nginx",
                &["1"],
                "all",
            ),
        ];
        for (name, input, upstream, want_tags, platforms) in cases {
            let s = ok(input);
            assert_eq!(s.repository, "mirror/x", "{name}");
            assert_eq!(s.upstream.to_string(), *upstream, "{name}");
            assert_eq!(s.tags, *want_tags, "{name}");
            assert_eq!(s.platforms.to_string(), *platforms, "{name}");
        }
    }

    #[test]
    fn rules_mark_and_round_trip() {
        // A rule alone (with the image) marks a repository; its tags are the rule's.
        let s = ok(&[
            ("upstream-image", "ghcr.io/kedacore/keda"),
            ("upstream-tag-rule", "newest=3  semver=v2.x"),
        ]);
        assert!(s.tags.is_empty());
        let rule = s.rule.clone().expect("a rule");
        assert_eq!(rule.to_string(), "semver=2.x newest=3");
        let back = spec_to_tags(&s, &TagKeys::default());
        assert_eq!(
            back,
            [
                (
                    "upstream-image".to_string(),
                    "ghcr.io/kedacore/keda".to_string()
                ),
                (
                    "upstream-tag-rule".to_string(),
                    "semver=2.x newest=3".to_string()
                ),
            ]
        );
        assert_eq!(
            spec_from_tags("mirror/x", &back, &TagKeys::default()).spec,
            Some(Ok(s))
        );
        // Both: the explicit tags stay, the rule is kept next to them.
        let s = ok(&[
            ("upstream-image", "nginx"),
            ("upstream-tags", "stable"),
            ("upstream-tag-rule", "newest=1"),
        ]);
        assert_eq!(s.tags, ["stable"]);
        assert!(s.rule.is_some());
        // The configured key is the one read, and named in errors.
        let keys = TagKeys {
            rule: "pick".into(),
            ..TagKeys::default()
        };
        let p = spec_from_tags(
            "r",
            &tags(&[("upstream-image", "nginx"), ("pick", "newest=0")]),
            &keys,
        );
        let e = p.spec.expect("marked").expect_err("bad rule").to_string();
        assert!(
            e.starts_with("repository \"r\": pick word \"newest=0\""),
            "{e}"
        );
        // A near miss of the rule key warns.
        let p = parse(&[
            ("upstream-image", "nginx"),
            ("upstream-tags", "1"),
            ("upstream-tag-rules", "newest=1"),
        ]);
        assert_eq!(p.warnings.len(), 1, "{:?}", p.warnings);
        assert!(p.warnings[0].contains("upstream-tag-rule"));
    }

    #[test]
    fn unmarked_repositories() {
        assert_eq!(parse(&[]).spec, None);
        assert_eq!(parse(&[("team", "x")]).spec, None);
        let p = parse(&[("upstream-platforms", "linux/amd64")]);
        assert_eq!(p.spec, None);
        assert_eq!(p.warnings.len(), 1, "{:?}", p.warnings);
        assert!(p.warnings[0].contains("mirror/x"));
    }

    #[test]
    fn errors() {
        // (name, tags, expected variant, substrings of the message)
        type Case<'a> = (
            &'a str,
            &'a [(&'a str, &'a str)],
            fn(&TagError) -> bool,
            &'a [&'a str],
        );
        let cases: &[Case] = &[
            (
                "image without tags",
                &[("upstream-image", "nginx")],
                |e| matches!(e, TagError::NoTags { .. }),
                &[
                    "upstream-image",
                    "upstream-tags",
                    "upstream-tag-rule",
                    "neither",
                ],
            ),
            (
                "rule without image",
                &[("upstream-tag-rule", "newest=3")],
                |e| matches!(e, TagError::MissingKey { .. }),
                &["upstream-tag-rule", "upstream-image", "missing"],
            ),
            (
                "bad rule word, named",
                &[
                    ("upstream-image", "nginx"),
                    ("upstream-tag-rule", "semver=1.x newst=3"),
                ],
                |e| matches!(e, TagError::Rule { .. }),
                &[
                    "mirror/x",
                    "upstream-tag-rule word \"newst=3\"",
                    "did you mean",
                ],
            ),
            (
                "empty rule",
                &[
                    ("upstream-image", "nginx"),
                    ("upstream-tags", "1"),
                    ("upstream-tag-rule", " "),
                ],
                |e| matches!(e, TagError::Rule { .. }),
                &["upstream-tag-rule"],
            ),
            (
                "rule outside the AWS charset",
                &[
                    ("upstream-image", "nginx"),
                    ("upstream-tag-rule", "semver=1.* newest=2"),
                ],
                |e| matches!(e, TagError::BadCharacter { character: '*', .. }),
                &["upstream-tag-rule", "'*'"],
            ),
            (
                "tags without image",
                &[("upstream-tags", "1.0")],
                |e| matches!(e, TagError::MissingKey { .. }),
                &["upstream-image"],
            ),
            (
                "tag inside upstream-image",
                &[("upstream-image", "nginx:1.25"), ("upstream-tags", "1.25")],
                |e| matches!(e, TagError::Image { .. }),
                &["nginx:1.25", "upstream-image"],
            ),
            (
                "bad reference",
                &[("upstream-image", "Upper/Case"), ("upstream-tags", "1")],
                |e| matches!(e, TagError::Image { .. }),
                &["Upper/Case"],
            ),
            (
                "empty image",
                &[("upstream-image", "  "), ("upstream-tags", "1")],
                |e| matches!(e, TagError::EmptyValue { .. }),
                &["upstream-image", "empty"],
            ),
            (
                "empty tags value",
                &[("upstream-image", "nginx"), ("upstream-tags", "")],
                |e| matches!(e, TagError::EmptyValue { .. }),
                &["upstream-tags", "empty"],
            ),
            (
                "empty middle item",
                &[("upstream-image", "nginx"), ("upstream-tags", "1.0/ /2.0")],
                |e| matches!(e, TagError::EmptyItem { position: 2, .. }),
                &["item 2", "upstream-tags"],
            ),
            (
                "trailing slash",
                &[("upstream-image", "nginx"), ("upstream-tags", "1.0/")],
                |e| matches!(e, TagError::EmptyItem { position: 2, .. }),
                &["item 2"],
            ),
            (
                "invalid tag",
                &[
                    ("upstream-image", "nginx"),
                    ("upstream-tags", "1.0/.hidden"),
                ],
                |e| matches!(e, TagError::InvalidTag { position: 2, .. }),
                &[".hidden", "item 2"],
            ),
            (
                "comma is not allowed by AWS",
                &[("upstream-image", "nginx"), ("upstream-tags", "1.0,2.0")],
                |e| matches!(e, TagError::BadCharacter { character: ',', .. }),
                &["upstream-tags", "','"],
            ),
            (
                "star in image",
                &[("upstream-image", "ngi*nx"), ("upstream-tags", "1")],
                |e| matches!(e, TagError::BadCharacter { character: '*', .. }),
                &["upstream-image", "'*'"],
            ),
            (
                "semicolon in platforms",
                &[
                    ("upstream-image", "nginx"),
                    ("upstream-tags", "1"),
                    ("upstream-platforms", "linux/amd64;linux/arm64"),
                ],
                |e| matches!(e, TagError::BadCharacter { character: ';', .. }),
                &["upstream-platforms"],
            ),
            (
                "bad platform",
                &[
                    ("upstream-image", "nginx"),
                    ("upstream-tags", "1"),
                    ("upstream-platforms", "linux"),
                ],
                |e| matches!(e, TagError::Platforms { .. }),
                &["upstream-platforms", "linux"],
            ),
            (
                "too long",
                &[
                    ("upstream-image", "nginx"),
                    ("upstream-tags", &*"a/".repeat(129)),
                ],
                |e| matches!(e, TagError::TooLong { chars: 258, .. }),
                &["258"],
            ),
            (
                "duplicate key",
                &[
                    ("upstream-image", "nginx"),
                    ("upstream-image", "redis"),
                    ("upstream-tags", "1"),
                ],
                |e| matches!(e, TagError::DuplicateKey { .. }),
                &["more than once"],
            ),
        ];
        for (name, input, is_variant, needles) in cases {
            let e = err(input);
            assert!(is_variant(&e), "{name}: wrong variant {e:?}");
            assert_eq!(e.repository(), "mirror/x", "{name}");
            let msg = e.to_string();
            assert!(msg.contains("mirror/x"), "{name}: {msg}");
            for n in *needles {
                assert!(msg.contains(n), "{name}: {msg:?} lacks {n:?}");
            }
        }
    }

    #[test]
    fn near_miss_keys_warn() {
        let cases: &[(&str, Option<&str>)] = &[
            ("Upstream-Image", Some("upstream-image")),
            ("UPSTREAM-TAGS", Some("upstream-tags")),
            ("upstream_image", Some("upstream-image")),
            ("Upstream_Tags", Some("upstream-tags")),
            ("upstream-tag", Some("upstream-tags")),
            ("upstream-imag", Some("upstream-image")),
            ("upstream-imagee", Some("upstream-image")),
            ("upstraem-image", Some("upstream-image")),
            ("upstream-platform", Some("upstream-platforms")),
            ("upstream-image", None),
            ("team", None),
            ("upstream", None),
            ("upstream-im", None),
        ];
        for (key, want) in cases {
            let p = spec_from_tags("mirror/x", &tags(&[(key, "v")]), &TagKeys::default());
            match want {
                Some(want) => {
                    assert_eq!(p.warnings.len(), 1, "{key}: {:?}", p.warnings);
                    let w = &p.warnings[0];
                    assert!(
                        w.contains("mirror/x") && w.contains(key) && w.contains(want),
                        "{w}"
                    );
                }
                None => assert!(
                    p.warnings.iter().all(|w| !w.contains("is not")),
                    "{key}: {:?}",
                    p.warnings
                ),
            }
        }
        // A near miss next to the real keys still warns, and the repository still parses.
        let p = spec_from_tags(
            "mirror/y",
            &tags(&[
                ("upstream-image", "nginx"),
                ("upstream-tags", "1"),
                ("Upstream-Tags", "2"),
            ]),
            &TagKeys::default(),
        );
        assert!(matches!(p.spec, Some(Ok(_))));
        assert_eq!(p.warnings.len(), 1);
    }

    #[test]
    fn configured_keys_are_honoured() {
        let keys = TagKeys {
            image: "mirror.src".into(),
            tags: "mirror.tags".into(),
            platforms: "mirror.arch".into(),
            rule: "mirror.rule".into(),
            referrers: "mirror.referrers".into(),
        };
        let input = tags(&[
            ("mirror.src", "nginx"),
            ("mirror.tags", "1/2"),
            ("mirror.arch", "linux/amd64"),
        ]);
        let p = spec_from_tags("r", &input, &keys);
        let s = p.spec.expect("marked").expect("valid");
        assert_eq!(s.tags, ["1", "2"]);
        assert_eq!(
            s.platforms,
            PlatformFilter::Only(vec!["linux/amd64".parse::<Platform>().unwrap()])
        );
        // The defaults are not keys any more: a repository using them is not marked.
        let p = spec_from_tags(
            "r",
            &tags(&[("upstream-image", "nginx"), ("upstream-tags", "1")]),
            &keys,
        );
        assert_eq!(p.spec, None);
        // Near misses are computed against the configured keys.
        let p = spec_from_tags("r", &tags(&[("Mirror.Src", "nginx")]), &keys);
        assert_eq!(p.warnings.len(), 1, "{:?}", p.warnings);
        assert!(p.warnings[0].contains("mirror.src"));
    }

    #[test]
    fn duplicate_tags_warn() {
        let p = parse(&[("upstream-image", "nginx"), ("upstream-tags", "1/1")]);
        assert_eq!(p.spec.unwrap().unwrap().tags, ["1"]);
        assert_eq!(p.warnings.len(), 1);
        assert!(p.warnings[0].contains("mirror/x"));
    }

    #[test]
    fn allowed_characters() {
        assert_eq!(disallowed_tag_value_char("aZ09 +-=._:/@"), None);
        assert_eq!(disallowed_tag_value_char("ünïcödé"), None);
        for (v, c) in [
            ("a,b", ','),
            ("a*b", '*'),
            ("a\tb", '\t'),
            ("a#b", '#'),
            ("a;b", ';'),
        ] {
            assert_eq!(disallowed_tag_value_char(v), Some(c), "{v:?}");
        }
    }

    #[test]
    fn round_trip_through_tags() {
        let keys = TagKeys::default();
        for input in [
            tags(&[
                ("upstream-image", "nginx"),
                ("upstream-tags", "1.25/latest"),
            ]),
            tags(&[
                ("upstream-image", "ghcr.io/a/b"),
                ("upstream-tags", "v1"),
                ("upstream-platforms", "linux/arm64 linux/amd64"),
            ]),
        ] {
            let spec = spec_from_tags("r", &input, &keys).spec.unwrap().unwrap();
            let written = spec_to_tags(&spec, &keys);
            for (_, v) in &written {
                assert_eq!(disallowed_tag_value_char(v), None, "{v}");
            }
            let again = spec_from_tags("r", &written, &keys).spec.unwrap().unwrap();
            assert_eq!(again, spec);
        }
        let spec = spec_from_tags(
            "r",
            &tags(&[("upstream-image", "nginx"), ("upstream-tags", "1")]),
            &keys,
        )
        .spec
        .unwrap()
        .unwrap();
        assert_eq!(
            spec_to_tags(&spec, &keys),
            tags(&[
                ("upstream-image", "docker.io/library/nginx"),
                ("upstream-tags", "1")
            ])
        );
    }

    #[test]
    fn edit_distances() {
        for (a, b, d) in [
            ("", "", 0),
            ("abc", "abc", 0),
            ("abc", "abd", 1),
            ("abc", "ab", 1),
            ("ab", "ba", 1),
            ("abc", "cba", 2),
        ] {
            assert_eq!(edit_distance(a, b), d, "{a} {b}");
        }
    }
}
