//! The grammar of a rule: space-separated `key=value` words, each given at most once.

use crate::mirror::near_miss::edit_distance;
use std::fmt;
use std::num::NonZeroUsize;

use super::version::{is_prerelease_suffix, parse_tag, Num, TagVersion, Version, VersionError};

/// The default name of the resource tag that holds a rule. The name is configurable; see
/// [`RuleError::with_key`].
pub const DEFAULT_KEY: &str = "upstream-tag-rule";

/// The words of a rule, in the order [`TagRule`]'s `Display` writes them.
pub const WORDS: [&str; 7] = [
    "semver",
    "min",
    "below",
    "newest",
    "prerelease",
    "variant",
    "exclude",
];

/// The longest value AWS accepts for a resource tag, in characters.
const MAX_VALUE_CHARS: usize = 256;

/// The longest image tag (OCI distribution spec).
const MAX_IMAGE_TAG_LEN: usize = 128;

/// A parsed `upstream-tag-rule`: which of an upstream repository's tags to mirror.
///
/// Build it with [`TagRule::parse`]; apply it with [`TagRule::select`]. Its `Display` is the
/// canonical form of the value (words in the order of [`WORDS`], versions without `v`), which
/// parses back to an equal rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TagRule {
    pub(super) semver: Option<SemverRange>,
    pub(super) min: Option<Version>,
    pub(super) below: Option<Version>,
    pub(super) newest: Option<NonZeroUsize>,
    pub(super) prerelease: Option<bool>,
    pub(super) variant: Option<String>,
    pub(super) exclude: Vec<ExcludeItem>,
}

/// `semver=x`, `semver=1.x` or `semver=1.2.x`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum SemverRange {
    Any,
    Major(Num),
    MajorMinor(Num, Num),
}

impl SemverRange {
    pub(super) fn contains(&self, v: &Version) -> bool {
        match self {
            SemverRange::Any => true,
            SemverRange::Major(m) => v.major == *m,
            SemverRange::MajorMinor(m, n) => v.major == *m && v.minor == *n,
        }
    }
}

impl fmt::Display for SemverRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SemverRange::Any => f.write_str("x"),
            SemverRange::Major(m) => write!(f, "{m}.x"),
            SemverRange::MajorMinor(m, n) => write!(f, "{m}.{n}.x"),
        }
    }
}

/// One item of `exclude=`: the text as written, and its version if it is one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct ExcludeItem {
    pub(super) text: String,
    pub(super) version: Option<TagVersion>,
}

impl ExcludeItem {
    /// An item matches the tag written the same way, and, when the item is a version, every tag
    /// of that version: with or without `v`, and in every variant unless the item names one.
    pub(super) fn matches(&self, tag: &str, parsed: &TagVersion) -> bool {
        self.text == tag
            || self.version.as_ref().is_some_and(|item| {
                item.version == parsed.version
                    && (item.variant.is_none() || item.variant == parsed.variant)
            })
    }
}

/// A rule that cannot be used: which word is wrong, and what to write instead.
///
/// `Display`: `upstream-tag-rule word "newst=3": unknown word; did you mean "newest=3"? ...`,
/// or `upstream-tag-rule: ...` for a fault of the whole value (empty, too long). The message
/// does not name the repository: the caller adds it, as for every per-repository error. The key
/// is [`DEFAULT_KEY`] until the caller sets the configured one with [`RuleError::with_key`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleError {
    key: String,
    word: Option<String>,
    message: String,
}

impl RuleError {
    fn word(word: &str, message: impl Into<String>) -> Self {
        RuleError {
            key: DEFAULT_KEY.to_owned(),
            word: Some(word.to_owned()),
            message: message.into(),
        }
    }

    fn value(message: impl Into<String>) -> Self {
        RuleError {
            key: DEFAULT_KEY.to_owned(),
            word: None,
            message: message.into(),
        }
    }

    /// Names the configured key (e.g. from `--tag-rule-key`) in the message.
    pub fn with_key(mut self, key: impl Into<String>) -> Self {
        self.key = key.into();
        self
    }

    /// The word at fault, as written; `None` when the fault is the whole value.
    pub fn faulty_word(&self) -> Option<&str> {
        self.word.as_deref()
    }

    /// What is wrong and what to write instead, without the key and the word.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.word {
            Some(word) => write!(f, "{} word {:?}: {}", self.key, word, self.message),
            None => write!(f, "{}: {}", self.key, self.message),
        }
    }
}

impl std::error::Error for RuleError {}

fn word_list() -> String {
    WORDS.join(", ")
}

/// Whether AWS allows `c` in a tag value (letters, digits, spaces and `+ - = . _ : / @`).
fn aws_allows(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, ' ' | '+' | '-' | '=' | '.' | '_' | ':' | '/' | '@')
}

/// Whether `s` is a valid image tag: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
fn is_image_tag(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_IMAGE_TAG_LEN
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

impl TagRule {
    /// Parses the value of the rule tag.
    ///
    /// Words are separated by spaces (any number; leading and trailing ones are ignored). Each
    /// of [`WORDS`] may be given once. Errors name the first faulty word in the order written;
    /// contradictions between words (`min=` not below `below=`, bounds outside `semver=`) are
    /// checked after every word has parsed.
    pub fn parse(value: &str) -> Result<TagRule, RuleError> {
        let chars = value.chars().count();
        if chars > MAX_VALUE_CHARS {
            return Err(RuleError::value(format!(
                "the value is {chars} characters long; AWS allows at most {MAX_VALUE_CHARS}"
            )));
        }
        let mut rule = TagRule {
            semver: None,
            min: None,
            below: None,
            newest: None,
            prerelease: None,
            variant: None,
            exclude: Vec::new(),
        };
        // The word that set each key, for "given twice" and the cross-checks.
        let mut seen: Vec<(&str, &str)> = Vec::new();
        let find = |seen: &Vec<(&str, &str)>, key: &str| {
            seen.iter()
                .find(|(k, _)| *k == key)
                .map(|(_, w)| (*w).to_owned())
        };

        for word in value.split(' ').filter(|w| !w.is_empty()) {
            if let Some(c) = word.chars().find(|&c| !aws_allows(c)) {
                let hint = if matches!(c, '*' | '>' | '<' | '^' | '~' | '|' | ',') {
                    "; the rule has no operators: use semver=1.x, min=, below= and newest="
                } else {
                    ""
                };
                return Err(RuleError::word(
                    word,
                    format!(
                        "contains {c:?}, which AWS does not allow in tag values (allowed: letters, \
                         digits, spaces and + - = . _ : / @){hint}"
                    ),
                ));
            }
            let Some((key, val)) = word.split_once('=') else {
                let message = if WORDS.contains(&word) {
                    format!(
                        "{word} needs a value, with no spaces around '=': e.g. {}",
                        example(word)
                    )
                } else {
                    format!("not key=value; the words are {}", word_list())
                };
                return Err(RuleError::word(word, message));
            };
            if !WORDS.contains(&key) {
                let message = match near_miss(key) {
                    Some(known) => format!(
                        "unknown word; did you mean \"{known}={val}\"? the words are {}",
                        word_list()
                    ),
                    None => format!("unknown word; the words are {}", word_list()),
                };
                return Err(RuleError::word(word, message));
            }
            if let Some(first) = find(&seen, key) {
                return Err(RuleError::word(
                    word,
                    format!("{key} is given twice (also \"{first}\"); give it once"),
                ));
            }
            if val.is_empty() {
                return Err(RuleError::word(
                    word,
                    format!("{key} needs a value: e.g. {}", example(key)),
                ));
            }
            seen.push((key, word));
            let bad = |message: String| RuleError::word(word, message);
            match key {
                "semver" => rule.semver = Some(parse_semver(val).map_err(bad)?),
                "min" | "below" => {
                    let v = parse_bound(key, val).map_err(bad)?;
                    if key == "min" {
                        rule.min = Some(v);
                    } else {
                        rule.below = Some(v);
                    }
                }
                "newest" => rule.newest = Some(parse_newest(val).map_err(bad)?),
                "prerelease" => {
                    rule.prerelease = Some(match val {
                        "yes" => true,
                        "no" => false,
                        _ => return Err(bad("write prerelease=yes or prerelease=no".into())),
                    })
                }
                "variant" => rule.variant = Some(parse_variant(val).map_err(bad)?),
                "exclude" => rule.exclude = parse_exclude(val).map_err(bad)?,
                _ => unreachable!("every word is matched"),
            }
        }
        if seen.is_empty() {
            return Err(RuleError::value(format!(
                "the value is empty; write words such as \"semver=1.x newest=3\" (the words are {})",
                word_list()
            )));
        }
        rule.check_contradictions(|key| find(&seen, key).unwrap_or_default())?;
        Ok(rule)
    }

    /// Rejects rules whose words cannot select anything together.
    fn check_contradictions(&self, word_of: impl Fn(&str) -> String) -> Result<(), RuleError> {
        if let (Some(min), Some(below)) = (&self.min, &self.below) {
            if min >= below {
                return Err(RuleError::word(
                    &word_of("below"),
                    format!(
                        "is not above min={min}, so nothing can be selected (min= is the lowest \
                         version kept, below= the first one left out)"
                    ),
                ));
            }
        }
        let with_pre = self.prerelease == Some(true);
        if with_pre && self.variant.is_some() {
            return Err(RuleError::word(
                &word_of("prerelease"),
                format!(
                    "has no effect with variant={}: a tag with a variant suffix is never a \
                     pre-release; leave prerelease out",
                    self.variant.as_deref().unwrap_or_default()
                ),
            ));
        }
        let Some(range) = &self.semver else {
            return Ok(());
        };
        let (low, above_range) = match range {
            SemverRange::Any => return Ok(()),
            SemverRange::Major(m) => (
                release(m, &zero(), &zero()),
                self.min.as_ref().is_some_and(|v| v.major > *m),
            ),
            SemverRange::MajorMinor(m, n) => (
                release(m, n, &zero()),
                self.min
                    .as_ref()
                    .is_some_and(|v| (&v.major, &v.minor) > (m, n)),
            ),
        };
        if above_range {
            return Err(RuleError::word(
                &word_of("min"),
                format!("is above every version of semver={range}, so nothing can be selected"),
            ));
        }
        if let Some(below) = &self.below {
            // Below the range's lowest release: only pre-releases of it could be left, and only
            // when pre-releases are asked for.
            let empty = if with_pre {
                below.cmp_core(&low).is_lt()
            } else {
                *below <= low
            };
            if empty {
                return Err(RuleError::word(
                    &word_of("below"),
                    format!(
                        "is not above any version of semver={range}, so nothing can be selected"
                    ),
                ));
            }
        }
        Ok(())
    }
}

fn zero() -> Num {
    Num::parse("0").expect("0 is a number")
}

fn release(major: &Num, minor: &Num, patch: &Num) -> Version {
    let text = format!("{major}.{minor}.{patch}");
    parse_tag(&text)
        .expect("three numbers form a version")
        .version
}

fn example(key: &str) -> &'static str {
    match key {
        "semver" => "semver=1.x, semver=1.2.x or semver=x",
        "min" => "min=1.20.0",
        "below" => "below=2.0.0",
        "newest" => "newest=3",
        "prerelease" => "prerelease=yes",
        "variant" => "variant=alpine",
        _ => "exclude=1.2.3/1.2.4",
    }
}

/// A known word that `key` is probably meant to be: another case, `_` for `-`, a one-character
/// typo, or a peer tool's name for it.
fn near_miss(key: &str) -> Option<&'static str> {
    let lower = key.to_ascii_lowercase().replace(['_', '-'], "");
    let alias = match lower.as_str() {
        "latest" | "keep" | "maxtags" | "last" | "top" | "count" => Some("newest"),
        "max" | "lt" | "upto" | "until" | "before" => Some("below"),
        "from" | "gte" | "since" | "minimum" => Some("min"),
        "version" | "versions" | "range" | "semverrange" => Some("semver"),
        "prereleases" | "pre" | "rc" | "unstable" => Some("prerelease"),
        "suffix" | "flavor" | "flavour" => Some("variant"),
        "skip" | "deny" | "ignore" | "except" | "excludes" => Some("exclude"),
        _ => None,
    };
    alias.or_else(|| {
        WORDS
            .iter()
            .find(|w| lower == **w || edit_distance(&lower, w) <= 1)
            .copied()
    })
}

fn parse_semver(val: &str) -> Result<SemverRange, String> {
    let body = val.strip_prefix('v').unwrap_or(val);
    let parts: Vec<&str> = body.split('.').collect();
    let hint = "write semver=1.x (a major), semver=1.2.x (a major.minor) or semver=x (any)";
    let mut nums = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        if i + 1 == parts.len() && *part == "x" {
            break;
        }
        match Num::parse(part) {
            Ok(n) => nums.push(n),
            Err(true) => return Err(format!("numbers have no leading zeros; {hint}")),
            Err(false) if part.eq_ignore_ascii_case("x") => {
                return Err(format!("only the last part is x, in lower case; {hint}"))
            }
            Err(false) => return Err(format!("not a version range; {hint}")),
        }
    }
    let ends_in_x = parts.last() == Some(&"x");
    let mut nums = nums.into_iter();
    match (ends_in_x, nums.len()) {
        (true, 0) => Ok(SemverRange::Any),
        (true, 1) => Ok(SemverRange::Major(nums.next().expect("one"))),
        (true, 2) => {
            let major = nums.next().expect("two");
            Ok(SemverRange::MajorMinor(major, nums.next().expect("two")))
        }
        (false, 1) => Err(format!("write semver={body}.x for every {body}.y.z")),
        (false, 2) => Err(format!("write semver={body}.x for every {body}.z")),
        (false, 3) => Err(format!(
            "semver= chooses a major or a major.minor; for the one version {body}, list it in \
             upstream-tags, or write semver={}.x",
            body.rsplit_once('.').map_or(body, |(head, _)| head)
        )),
        _ => Err(format!("not a version range; {hint}")),
    }
}

/// `min=` and `below=`: a version, with or without `v`, possibly a pre-release, not a variant.
fn parse_bound(key: &str, val: &str) -> Result<Version, String> {
    match parse_tag(val) {
        Ok(TagVersion {
            variant: None,
            version,
        }) => Ok(version),
        Ok(TagVersion {
            variant: Some(variant),
            version,
        }) => Err(format!(
            "{key}= takes a version without a variant suffix; write {key}={version} \
             variant={variant}"
        )),
        Err(VersionError::Shape) => {
            let body = val.strip_prefix('v').unwrap_or(val);
            let parts: Vec<&str> = body.split('.').collect();
            if parts.len() < 3 && parts.iter().all(|p| Num::parse(p).is_ok()) {
                let padded = format!("{body}{}", ".0".repeat(3 - parts.len()));
                Err(format!("a version has three numbers; write {key}={padded}"))
            } else {
                Err(format!(
                    "not a version; write MAJOR.MINOR.PATCH, e.g. {}",
                    example(key)
                ))
            }
        }
        Err(VersionError::LeadingZero) => Err(format!(
            "numbers in a version have no leading zeros (SemVer); e.g. {}",
            example(key)
        )),
        Err(VersionError::BuildMetadata) => Err(format!(
            "build metadata (+...) does not take part in ordering; write {key}= without it"
        )),
        Err(VersionError::EmptySuffix) => Err(format!(
            "nothing after '-'; write a version such as {}",
            example(key)
        )),
        Err(VersionError::BadPrerelease) => Err(
            "the pre-release is not SemVer: dot-separated letters, digits and '-', numbers \
             without leading zeros, e.g. 1.30.0-rc.1"
                .to_owned(),
        ),
    }
}

fn parse_newest(val: &str) -> Result<NonZeroUsize, String> {
    match Num::parse(val) {
        Ok(_) => match val.parse::<usize>() {
            Ok(0) => Err(
                "newest=0 selects nothing; write newest=1 or more, or leave newest \
                           out to keep every version that matches"
                    .to_owned(),
            ),
            Ok(n) => Ok(NonZeroUsize::new(n).expect("not zero")),
            Err(_) => Err(format!(
                "{val} is too large; leave newest out to keep every version that matches"
            )),
        },
        Err(true) => Err(format!(
            "write the number without leading zeros, e.g. newest={}",
            val.trim_start_matches('0')
        )),
        Err(false) => Err("write a whole number of versions, e.g. newest=3".to_owned()),
    }
}

fn parse_variant(val: &str) -> Result<String, String> {
    if let Some(rest) = val.strip_prefix('-') {
        return Err(format!("write variant={rest}, without the '-'"));
    }
    if val.len() > MAX_IMAGE_TAG_LEN || !is_image_tag(val) {
        return Err(
            "a variant is the part of a tag after the version and '-' (e.g. alpine in \
             1.25.3-alpine): letters, digits, '_', '.' and '-'"
                .to_owned(),
        );
    }
    if is_prerelease_suffix(val) {
        return Err(
            "a suffix that begins with rc, alpha, beta, pre, snapshot or nightly is a \
             pre-release, not a variant; use prerelease=yes"
                .to_owned(),
        );
    }
    Ok(val.to_owned())
}

fn parse_exclude(val: &str) -> Result<Vec<ExcludeItem>, String> {
    val.split('/')
        .enumerate()
        .map(|(i, item)| {
            if item.is_empty() {
                Err(format!(
                    "item {} is empty; separate tags with one '/', e.g. exclude=1.2.3/1.2.4",
                    i + 1
                ))
            } else if !is_image_tag(item) {
                Err(format!(
                    "item {} ({item:?}) is not an image tag: 1 to 128 letters, digits, '_', '.' \
                     and '-', not starting with '.' or '-'",
                    i + 1
                ))
            } else {
                Ok(ExcludeItem {
                    text: item.to_owned(),
                    version: parse_tag(item).ok(),
                })
            }
        })
        .collect()
}

impl fmt::Display for TagRule {
    /// The canonical value: each word given, in the order of [`WORDS`], versions without `v`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut words: Vec<String> = Vec::new();
        if let Some(s) = &self.semver {
            words.push(format!("semver={s}"));
        }
        if let Some(v) = &self.min {
            words.push(format!("min={v}"));
        }
        if let Some(v) = &self.below {
            words.push(format!("below={v}"));
        }
        if let Some(n) = self.newest {
            words.push(format!("newest={n}"));
        }
        if let Some(p) = self.prerelease {
            words.push(format!("prerelease={}", if p { "yes" } else { "no" }));
        }
        if let Some(v) = &self.variant {
            words.push(format!("variant={v}"));
        }
        if !self.exclude.is_empty() {
            let items: Vec<&str> = self.exclude.iter().map(|i| i.text.as_str()).collect();
            words.push(format!("exclude={}", items.join("/")));
        }
        f.write_str(&words.join(" "))
    }
}
