//! Step 1 of `import`, pure: the file (images.yaml or source-images.list) → entries, and
//! errors that name the line.

use super::*;

/// The two file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `images.yaml`: a mapping with an `images` list of `{source, dest, chart}`.
    Yaml,
    /// `source-images.list`: one reference per line, `#` comments, blank lines.
    List,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Yaml => "yaml",
            Format::List => "list",
        })
    }
}

/// Where an entry is in the file: a line (1-based) for the list format; the entry number
/// (1-based) and, when it could be found, its line for YAML.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Location {
    /// The 1-based line, when known.
    pub line: Option<usize>,
    /// The 1-based position in the YAML `images` list; `None` for the list format.
    pub entry: Option<usize>,
}

impl Location {
    /// A line of a list file.
    pub fn line(line: usize) -> Location {
        Location {
            line: Some(line),
            entry: None,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.entry, self.line) {
            (Some(e), Some(l)) => write!(f, "entry {e} (line {l})"),
            (Some(e), None) => write!(f, "entry {e}"),
            (None, Some(l)) => write!(f, "line {l}"),
            (None, None) => f.write_str("the file"),
        }
    }
}

/// One valid entry of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Where it is.
    pub location: Location,
    /// The upstream reference, Docker-normalised, with a tag (or, with a `rule`, maybe
    /// without one) and no digest.
    pub source: TaggedRef,
    /// A tag rule (`rule:` in YAML, rule words after the reference in a list), if any.
    pub rule: Option<TagRule>,
    /// The YAML `dest` as written (`grafana/grafana:11.4.0`), if any.
    pub dest: Option<String>,
    /// The YAML `chart`, if any (informational).
    pub chart: Option<String>,
}

impl Entry {
    /// The source tag (present in a parsed entry unless it has a rule).
    pub fn tag(&self) -> &str {
        self.source.tag.as_deref().unwrap_or("latest")
    }

    /// The explicit tag to mirror: the source's, if written (an entry with a rule may have none).
    pub fn explicit_tag(&self) -> Option<&str> {
        match (&self.source.tag, &self.rule) {
            (None, Some(_)) => None,
            _ => Some(self.tag()),
        }
    }
}

/// An invalid line or entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryError {
    /// Where it is.
    pub location: Location,
    /// What is wrong, naming the input.
    pub message: String,
}

impl fmt::Display for EntryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location, self.message)
    }
}

/// A parsed file: the valid entries and the invalid ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// The format that was read.
    pub format: Format,
    /// Valid entries, in file order.
    pub entries: Vec<Entry>,
    /// Invalid lines or entries, in file order.
    pub errors: Vec<EntryError>,
}

/// Guesses the format from the content: YAML when a line at the left margin starts with
/// `images:` (or the text is a JSON/YAML flow mapping), else the list format. A list file
/// never has such a line: `images:` is not an image reference.
pub fn detect_format(text: &str) -> Format {
    let first = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#') && *l != "---");
    if first.is_some_and(|l| l.starts_with('{')) {
        return Format::Yaml;
    }
    if text.lines().any(|l| images_key(l).is_some()) {
        return Format::Yaml;
    }
    Format::List
}

/// For a line `images:` at the left margin (a YAML key: the `:` ends the line or is followed
/// by a space), what follows the `:`. `images:1` is an image reference, not a key.
fn images_key(line: &str) -> Option<&str> {
    let rest = line
        .strip_prefix("images")?
        .trim_start()
        .strip_prefix(':')?;
    (rest.is_empty() || rest.starts_with(char::is_whitespace)).then(|| rest.trim())
}

/// Parses the file. `format` `None` detects it ([`detect_format`]).
///
/// `Err` is a problem with the file as a whole (YAML that does not parse, no `images` list),
/// with the line where known; problems with single entries are in [`Parsed::errors`].
pub fn parse(text: &str, format: Option<Format>) -> Result<Parsed, String> {
    let format = format.unwrap_or_else(|| detect_format(text));
    match format {
        Format::List => Ok(parse_list(text)),
        Format::Yaml => parse_yaml(text),
    }
}

fn parse_list(text: &str) -> Parsed {
    let mut entries = vec![];
    let mut errors = vec![];
    for (i, raw) in text.lines().enumerate() {
        let location = Location::line(i + 1);
        // A reference never holds '#', so everything after one is a comment.
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        // A reference, optionally followed by the words of a tag rule (`key=value` each; a
        // reference never holds '='): `ghcr.io/kedacore/keda semver=2.x newest=3`.
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.len() > 1 && !words[1..].iter().all(|w| w.contains('=')) {
            errors.push(EntryError {
                location,
                message: format!(
                    "{line:?}: expected one image reference per line, optionally followed by tag-rule words (key=value), found {} words",
                    words.len()
                ),
            });
            continue;
        }
        let rule = (words.len() > 1).then(|| words[1..].join(" "));
        match source_and_rule(words[0], rule.as_deref()) {
            Ok((source, rule)) => entries.push(Entry {
                location,
                source,
                rule,
                dest: None,
                chart: None,
            }),
            Err(message) => errors.push(EntryError { location, message }),
        }
    }
    Parsed {
        format: Format::List,
        entries,
        errors,
    }
}

fn parse_yaml(text: &str) -> Result<Parsed, String> {
    use serde_yaml_ng::Value as Y;
    let doc: Y = serde_yaml_ng::from_str(text).map_err(|e| format!("not valid YAML: {e}"))?;
    let images = match &doc {
        Y::Null => None,
        Y::Mapping(m) => match m.get("images") {
            None => {
                return Err(
                    "no `images` key: expected `images:` with a list of {source, dest} entries"
                        .into(),
                )
            }
            Some(Y::Null) => None,
            Some(Y::Sequence(s)) => Some(s),
            Some(_) => return Err("`images` must be a list of {source, dest} entries".into()),
        },
        _ => {
            return Err("expected a mapping with an `images` list of {source, dest} entries".into())
        }
    };
    let images = images.map(Vec::as_slice).unwrap_or_default();
    let lines = yaml_item_lines(text).filter(|l| l.len() == images.len());
    let mut entries = vec![];
    let mut errors = vec![];
    for (i, item) in images.iter().enumerate() {
        let location = Location {
            entry: Some(i + 1),
            line: lines.as_ref().map(|l| l[i]),
        };
        match yaml_entry(item) {
            Ok((source, rule, dest, chart)) => entries.push(Entry {
                location,
                source,
                rule,
                dest,
                chart,
            }),
            Err(message) => errors.push(EntryError { location, message }),
        }
    }
    Ok(Parsed {
        format: Format::Yaml,
        entries,
        errors,
    })
}

type YamlEntry = (TaggedRef, Option<TagRule>, Option<String>, Option<String>);

fn yaml_entry(item: &serde_yaml_ng::Value) -> Result<YamlEntry, String> {
    use serde_yaml_ng::Value as Y;
    let text = |key: &str, v: &Y| -> Result<Option<String>, String> {
        match v {
            Y::Null => Ok(None),
            Y::String(s) => Ok(Some(s.clone())),
            Y::Number(n) => Ok(Some(n.to_string())),
            Y::Bool(b) => Ok(Some(b.to_string())),
            _ => Err(format!("`{key}` must be a string")),
        }
    };
    match item {
        // A bare reference is accepted as the source.
        Y::String(s) => Ok((parse_source(s)?, None, None, None)),
        Y::Mapping(m) => {
            let source = match m.get("source") {
                None => {
                    return Err("no `source`: each entry needs `source: REGISTRY/REPO:TAG`".into())
                }
                Some(Y::Null) => return Err("`source` is empty".into()),
                Some(Y::String(s)) => s.clone(),
                Some(_) => return Err("`source` must be a string (REGISTRY/REPO:TAG)".into()),
            };
            let dest = match m.get("dest") {
                None => None,
                Some(v @ (Y::String(_) | Y::Null)) => text("dest", v)?,
                Some(_) => return Err("`dest` must be a string".into()),
            };
            let chart = m.get("chart").and_then(|v| text("chart", v).ok().flatten());
            let rule = match m.get("rule") {
                None | Some(Y::Null) => None,
                Some(Y::String(r)) => Some(r.clone()),
                Some(_) => {
                    return Err(
                        "`rule` must be a string, e.g. rule: \"semver=1.x newest=3\"".into(),
                    )
                }
            };
            let (source, rule) = source_and_rule(&source, rule.as_deref())?;
            Ok((source, rule, dest, chart))
        }
        _ => Err("expected a mapping with `source` (and optionally `dest`, `chart`)".into()),
    }
}

/// The 1-based lines where the items of the top-level `images` block sequence start
/// (`- ...` at the sequence's indent), or `None` when the layout is not a plain block
/// sequence (e.g. flow style `images: [...]`). Only used to name lines in errors; callers
/// check that the count matches the parsed list.
fn yaml_item_lines(text: &str) -> Option<Vec<usize>> {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines
        .iter()
        .position(|l| images_key(l).is_some_and(|rest| rest.is_empty() || rest.starts_with('#')))?;
    let mut dash_indent: Option<usize> = None;
    let mut found = vec![];
    for (i, l) in lines.iter().enumerate().skip(start + 1) {
        let trimmed = l.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let indent = l.len() - trimmed.len();
        let is_item = trimmed == "-" || trimmed.starts_with("- ");
        match dash_indent {
            None if is_item => {
                dash_indent = Some(indent);
                found.push(i + 1);
            }
            None => return None,
            Some(d) if indent == d && is_item => found.push(i + 1),
            Some(d) if indent <= d => break,
            Some(_) => {}
        }
    }
    Some(found)
}

/// An entry's source and tag rule: with a rule, the source may have no tag (the rule chooses
/// the tags); a tag it has is mirrored as well. A rule that does not parse names its word.
fn source_and_rule(raw: &str, rule: Option<&str>) -> Result<(TaggedRef, Option<TagRule>), String> {
    let Some(rule) = rule else {
        return Ok((parse_source(raw)?, None));
    };
    let rule = TagRule::parse(rule).map_err(|e| format!("{}: rule: {e}", raw.trim()))?;
    let r = TaggedRef::parse(raw.trim()).map_err(|e| e.to_string())?;
    if r.tag.is_none() && r.digest.is_none() {
        return Ok((r, Some(rule)));
    }
    Ok((parse_source(raw)?, Some(rule)))
}

/// An upstream reference from the file: valid, with a tag, without a digest.
pub fn parse_source(raw: &str) -> Result<TaggedRef, String> {
    let raw = raw.trim();
    let r = TaggedRef::parse(raw).map_err(|e| e.to_string())?;
    match (&r.tag, &r.digest) {
        (None, None) => Err(format!(
            "{raw:?} has no tag; the ECR tags list tags to mirror, so write one (e.g. {raw}:latest)"
        )),
        (None, Some(_)) => Err(format!(
            "{raw:?} names a digest only; ECR tags need a tag (upstream-tags lists tags), so write REPOSITORY:TAG"
        )),
        (Some(_), Some(_)) => Err(format!(
            "{raw:?} pins a digest as well as a tag; upstream-tags holds tags only, so the digest would be lost: write it without @DIGEST"
        )),
        (Some(t), None) => {
            validate_tag(t).map_err(|e| format!("{raw:?}: {e}"))?;
            Ok(r)
        }
    }
}
