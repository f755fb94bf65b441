//! Table tests of the grammar and the selection, and property tests of the selection.

use super::version::parse_tag;
use super::*;

/// Selected tags, and left-out tags with their labels.
fn run(rule: &str, tags: &[&str]) -> (Vec<String>, Vec<(String, &'static str)>) {
    let rule = TagRule::parse(rule).unwrap_or_else(|e| panic!("{rule:?} should parse: {e}"));
    let s = rule.select(tags);
    let left = s
        .left_out
        .iter()
        .map(|(t, r)| (t.clone(), r.label()))
        .collect();
    (s.selected, left)
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

fn pairs(v: &[(&str, &'static str)]) -> Vec<(String, &'static str)> {
    v.iter().map(|(t, r)| ((*t).to_owned(), *r)).collect()
}

/// A listing with everything that trips a rule up.
const MIXED: &[&str] = &[
    "latest",
    "1.25",
    "20240101",
    "2024.01.01",
    "1.024.0",
    "0.9.9",
    "1.24.0",
    "v1.24.0",
    "1.25.0",
    "1.25.1",
    "v1.25.2",
    "1.25.3",
    "1.26.0",
    "2.0.0",
    "v2.1.0",
    "1.25.3-alpine",
    "1.25.2-alpine",
    "1.26.0-alpine",
    "1.25.3-slim",
    "1.30.0-rc.1",
    "1.30.0-RC.2",
    "1.30.0-beta",
    "2.0.0-rc.1",
];

const NOT_VERSIONS: [(&str, &str); 5] = [
    ("1.024.0", "not-a-version"),
    ("1.25", "not-a-version"),
    ("2024.01.01", "not-a-version"),
    ("20240101", "not-a-version"),
    ("latest", "not-a-version"),
];

#[test]
fn newest_three_of_a_major() {
    let (selected, left) = run("semver=1.x newest=3", MIXED);
    assert_eq!(selected, strings(&["1.26.0", "1.25.3", "v1.25.2"]));
    let mut expected = pairs(&[
        ("v2.1.0", "outside-semver"),
        ("2.0.0", "outside-semver"),
        ("2.0.0-rc.1", "prerelease"),
        ("1.30.0-rc.1", "prerelease"),
        ("1.30.0-beta", "prerelease"),
        ("1.30.0-RC.2", "prerelease"),
        ("1.26.0-alpine", "other-variant"),
        ("1.25.3-alpine", "other-variant"),
        ("1.25.3-slim", "other-variant"),
        ("1.25.2-alpine", "other-variant"),
        ("1.25.1", "beyond-newest"),
        ("1.25.0", "beyond-newest"),
        ("1.24.0", "beyond-newest"),
        ("v1.24.0", "beyond-newest"),
        ("0.9.9", "outside-semver"),
    ]);
    expected.extend(pairs(&NOT_VERSIONS));
    assert_eq!(left, expected);
}

#[test]
fn a_variant_within_a_minor() {
    let (selected, left) = run("variant=alpine semver=1.25.x", MIXED);
    assert_eq!(selected, strings(&["1.25.3-alpine", "1.25.2-alpine"]));
    let reason = |tag: &str| left.iter().find(|(t, _)| t == tag).map(|(_, r)| *r);
    assert_eq!(reason("1.26.0-alpine"), Some("outside-semver"));
    assert_eq!(reason("1.25.3-slim"), Some("other-variant"));
    assert_eq!(
        reason("1.25.3"),
        Some("other-variant"),
        "bare tags are another variant"
    );
    assert_eq!(reason("1.30.0-rc.1"), Some("other-variant"));
    assert_eq!(reason("latest"), Some("not-a-version"));
    assert_eq!(left.len() + selected.len(), MIXED.len());
}

#[test]
fn min_below_exclude() {
    let tags = [
        "1.19.9",
        "1.20.0",
        "1.21.5",
        "1.22.3",
        "v1.22.3",
        "1.22.3-alpine",
        "1.22.4",
        "1.99.0",
        "2.0.0",
        "2.0.0-rc.1",
    ];
    let (selected, left) = run("min=1.20.0 below=2.0.0 exclude=1.22.3", &tags);
    assert_eq!(selected, strings(&["1.99.0", "1.22.4", "1.21.5", "1.20.0"]));
    assert_eq!(
        left,
        pairs(&[
            ("2.0.0", "not-below"),
            ("2.0.0-rc.1", "prerelease"),
            ("1.22.3", "excluded"),
            // Another variant comes before excluded in the order of reasons.
            ("1.22.3-alpine", "other-variant"),
            ("v1.22.3", "excluded"),
            ("1.19.9", "below-min"),
        ])
    );
}

#[test]
fn exclude_matches_versions_and_exact_tags() {
    let tags = ["1.2.3", "v1.2.3", "1.2.4", "1.2.3-alpine", "1.2.4-alpine"];
    // A version item matches the version in every spelling and variant ...
    let (selected, _) = run("variant=alpine exclude=v1.2.3", &tags);
    assert_eq!(selected, strings(&["1.2.4-alpine"]));
    // ... a variant item only that variant ...
    let (selected, _) = run("exclude=1.2.3-alpine", &tags);
    assert_eq!(selected, strings(&["1.2.4", "1.2.3", "v1.2.3"]));
    // ... and a tag that is not a version only itself.
    let (selected, left) = run("exclude=latest/1.2.4", &["latest", "1.2.4", "1.2.5"]);
    assert_eq!(selected, strings(&["1.2.5"]));
    assert_eq!(
        left,
        pairs(&[("1.2.4", "excluded"), ("latest", "not-a-version")])
    );
}

#[test]
fn exclude_is_applied_before_newest() {
    let (selected, left) = run(
        "newest=2 exclude=1.3.0",
        &["1.0.0", "1.1.0", "1.2.0", "1.3.0"],
    );
    assert_eq!(selected, strings(&["1.2.0", "1.1.0"]));
    assert_eq!(
        left,
        pairs(&[("1.3.0", "excluded"), ("1.0.0", "beyond-newest")])
    );
}

#[test]
fn newest_across_majors_orders_numerically() {
    let tags = [
        "1.9.0",
        "2.0.0",
        "2.1.0",
        "3.0.0-rc.1",
        "10.0.0",
        "9.10.0",
        "9.9.10",
    ];
    let (selected, left) = run("newest=3", &tags);
    assert_eq!(selected, strings(&["10.0.0", "9.10.0", "9.9.10"]));
    assert_eq!(
        left,
        pairs(&[
            ("3.0.0-rc.1", "prerelease"),
            ("2.1.0", "beyond-newest"),
            ("2.0.0", "beyond-newest"),
            ("1.9.0", "beyond-newest"),
        ])
    );
    let (selected, _) = run("semver=x newest=1 prerelease=yes", &["2.9.9", "3.0.0-rc.1"]);
    assert_eq!(selected, strings(&["3.0.0-rc.1"]));
}

#[test]
fn v_and_bare_spellings_tie() {
    let tags = ["v1.2.3", "1.2.2", "1.2.3", "v1.2.1"];
    let (selected, left) = run("newest=1", &tags);
    assert_eq!(
        selected,
        strings(&["1.2.3", "v1.2.3"]),
        "both, in byte order"
    );
    assert_eq!(
        left,
        pairs(&[("1.2.2", "beyond-newest"), ("v1.2.1", "beyond-newest")])
    );
    // They count once: newest=2 is two versions, three tags.
    let (selected, _) = run("newest=2", &tags);
    assert_eq!(selected, strings(&["1.2.3", "v1.2.3", "1.2.2"]));
}

#[test]
fn prereleases_order_as_semver() {
    // SemVer 2.0.0 section 11's example, ascending.
    let ascending = [
        "1.0.0-alpha",
        "1.0.0-alpha.1",
        "1.0.0-alpha.beta",
        "1.0.0-beta",
        "1.0.0-beta.2",
        "1.0.0-beta.11",
        "1.0.0-rc.1",
        "1.0.0",
    ];
    let mut shuffled = ascending;
    shuffled.reverse();
    shuffled.swap(1, 5);
    let (selected, left) = run("semver=1.0.x prerelease=yes", &shuffled);
    let mut descending = strings(&ascending);
    descending.reverse();
    assert_eq!(selected, descending);
    assert!(left.is_empty());
    // Upper case sorts first in ASCII: RC.2 < beta < rc.1 < rc.10 (numerically) < release.
    let (selected, _) = run(
        "semver=1.30.x prerelease=yes",
        &[
            "1.30.0-rc.1",
            "1.30.0-RC.2",
            "1.30.0-beta",
            "1.30.0-rc.10",
            "1.30.0",
        ],
    );
    assert_eq!(
        selected,
        strings(&[
            "1.30.0",
            "1.30.0-rc.10",
            "1.30.0-rc.1",
            "1.30.0-beta",
            "1.30.0-RC.2"
        ])
    );
}

#[test]
fn prerelease_bounds_follow_precedence() {
    let tags = ["1.9.0", "2.0.0-rc.1", "2.0.0", "1.30.0-rc.1"];
    // 2.0.0-rc.1 is below 2.0.0, so below=2.0.0 keeps it; semver=1.x keeps 1.x.
    let (selected, _) = run("below=2.0.0 prerelease=yes", &tags);
    assert_eq!(selected, strings(&["2.0.0-rc.1", "1.30.0-rc.1", "1.9.0"]));
    let (selected, _) = run("semver=1.x prerelease=yes", &tags);
    assert_eq!(selected, strings(&["1.30.0-rc.1", "1.9.0"]));
    // min=2.0.0 leaves its own pre-releases out; min=2.0.0-rc.1 keeps them.
    let (_, left) = run("min=2.0.0 prerelease=yes", &tags);
    assert!(left.contains(&("2.0.0-rc.1".to_owned(), "below-min")));
    let (selected, _) = run("min=2.0.0-rc.1 prerelease=yes", &tags);
    assert_eq!(selected, strings(&["2.0.0", "2.0.0-rc.1"]));
}

/// Which strings are versions, and what kind.
#[test]
fn version_model() {
    // (tag, Some(variant) / None for a release or pre-release, is a pre-release) or not a version.
    let versions: &[(&str, Option<&str>, bool)] = &[
        ("1.2.3", None, false),
        ("v1.2.3", None, false),
        ("0.0.0", None, false),
        ("1.2.3-alpine", Some("alpine"), false),
        ("1.2.3-slim", Some("slim"), false),
        ("1.2.3-alpine3.19", Some("alpine3.19"), false),
        ("1.2.3-dev", Some("dev"), false),
        ("1.2.3-1", Some("1"), false),
        ("1.2.3-slim-bookworm", Some("slim-bookworm"), false),
        ("1.2.3-slim_bookworm", Some("slim_bookworm"), false),
        ("1.2.3-rc.1", None, true),
        ("1.2.3-RC.2", None, true),
        ("1.2.3-rc1", None, true),
        ("1.2.3-Beta.1", None, true),
        ("1.2.3-alpha", None, true),
        ("1.2.3-PREVIEW", None, true),
        ("1.2.3-Snapshot", None, true),
        ("1.2.3-nightly.20240101", None, true),
        ("1.2.3-rc-1", None, true),
        ("v1.2.3-rc.0", None, true),
        // A date without leading zeros is indistinguishable from a version.
        ("2024.1.1", None, false),
        ("1.18446744073709551616.0", None, false),
        ("99999999999999999999999999999999.0.0", None, false),
    ];
    for (tag, variant, pre) in versions {
        let parsed = parse_tag(tag).unwrap_or_else(|e| panic!("{tag} should be a version: {e:?}"));
        assert_eq!(parsed.variant.as_deref(), *variant, "{tag}");
        assert_eq!(parsed.version.is_prerelease(), *pre, "{tag}");
    }
    let not_versions = [
        "latest",
        "stable",
        "1",
        "1.25",
        "v1.25",
        "1.2.3.4",
        "1.024.0",
        "01.2.3",
        "1.2.03",
        "2024.01.01",
        "20240101",
        "V1.2.3",
        "vv1.2.3",
        "v",
        "",
        "1.2.3-",
        "1.2.3+build.1",
        "1.2.3-alpine+1",
        "1.2.3-rc.01",
        "1.2.3-rc_1",
        "1.2.3-rc..1",
        "1.2.3-rc.",
        "1.2.3_1",
        "1.2.3alpine",
        "1..3",
        "1.2.x",
        "-1.2.3",
        "1.-2.3",
        "１.２.３",
    ];
    for tag in not_versions {
        assert!(parse_tag(tag).is_err(), "{tag:?} should not be a version");
    }
}

#[test]
fn numbers_of_any_length() {
    let tags = [
        "1.18446744073709551615.0",
        "1.18446744073709551616.0",
        "1.99999999999999999999999999999.0",
        "1.9.0",
        "1.100000000000000000000000000000.0",
    ];
    let (selected, left) = run("newest=3", &tags);
    assert_eq!(
        selected,
        strings(&[
            "1.100000000000000000000000000000.0",
            "1.99999999999999999999999999999.0",
            "1.18446744073709551616.0"
        ])
    );
    assert_eq!(
        left,
        pairs(&[
            ("1.18446744073709551615.0", "beyond-newest"),
            ("1.9.0", "beyond-newest")
        ])
    );
    let (selected, _) = run("min=1.18446744073709551616.0", &tags);
    assert_eq!(selected.len(), 3);
    let (selected, _) = run(
        "semver=18446744073709551616.x",
        &["18446744073709551616.0.1", "0.0.1"],
    );
    assert_eq!(selected, strings(&["18446744073709551616.0.1"]));
}

#[test]
fn order_and_duplicates_do_not_matter() {
    let rule = TagRule::parse("semver=1.x newest=3").unwrap();
    let a = rule.select(MIXED);
    let mut reversed: Vec<&str> = MIXED.iter().rev().copied().collect();
    reversed.extend_from_slice(&MIXED[..5]);
    assert_eq!(rule.select(&reversed), a);
    assert_eq!(rule.select(&[] as &[&str]), Selection::default());
}

#[test]
fn hiding_tags_that_are_not_versions() {
    let s = TagRule::parse("newest=1").unwrap().select(MIXED);
    assert!(s
        .left_out_versions()
        .all(|(_, r)| *r != Reason::NotAVersion));
    assert_eq!(
        s.left_out_versions().count() + NOT_VERSIONS.len(),
        s.left_out.len()
    );
    assert_eq!(s.reason("latest"), Some(Reason::NotAVersion));
    assert_eq!(s.reason("1.25.3"), Some(Reason::BeyondNewest));
    assert_eq!(s.reason("v2.1.0"), None, "selected");
    assert_eq!(s.reason("nope"), None, "not listed");
}

#[test]
fn reason_labels_are_stable() {
    let labels: Vec<&str> = Reason::ALL.iter().map(|r| r.label()).collect();
    assert_eq!(
        labels,
        [
            "not-a-version",
            "other-variant",
            "prerelease",
            "outside-semver",
            "below-min",
            "not-below",
            "excluded",
            "beyond-newest"
        ]
    );
    for r in Reason::ALL {
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            format!("\"{}\"", r.label())
        );
        assert!(!r.to_string().is_empty());
    }
    assert_eq!(Reason::BelowMin.to_string(), "below min");
}

#[test]
fn merging_with_explicit_tags() {
    let explicit = strings(&["2.4.0", "latest", "2.4.0", "stable"]);
    let selected = strings(&["2.5.0", "2.4.0", "2.3.0", "2.5.0"]);
    assert_eq!(
        merge_tags(&explicit, &selected),
        strings(&["2.4.0", "latest", "stable", "2.5.0", "2.3.0"])
    );
    assert_eq!(
        merge_tags::<String, _>(&[], &selected),
        strings(&["2.5.0", "2.4.0", "2.3.0"])
    );
    assert_eq!(
        merge_tags::<_, String>(&explicit, &[]),
        strings(&["2.4.0", "latest", "stable"])
    );
}

#[test]
fn canonical_form() {
    let cases = [
        ("semver=1.x newest=3", "semver=1.x newest=3"),
        ("  newest=3    semver=v1.x ", "semver=1.x newest=3"),
        (
            "exclude=1.2.3/latest variant=alpine newest=2 below=v2.0.0 min=1.20.0 semver=x \
             prerelease=no",
            "semver=x min=1.20.0 below=2.0.0 newest=2 prerelease=no variant=alpine \
             exclude=1.2.3/latest",
        ),
        (
            "min=1.30.0-rc.1 prerelease=yes",
            "min=1.30.0-rc.1 prerelease=yes",
        ),
        ("semver=1.2.x", "semver=1.2.x"),
        ("newest=1000", "newest=1000"),
    ];
    for (value, canonical) in cases {
        let rule = TagRule::parse(value).unwrap_or_else(|e| panic!("{value:?}: {e}"));
        assert_eq!(rule.to_string(), canonical, "{value:?}");
        assert_eq!(TagRule::parse(canonical).unwrap(), rule, "{canonical:?}");
    }
}

/// (value, the word the error names or None for the whole value, a part of the message).
const BAD_RULES: &[(&str, Option<&str>, &str)] = &[
    ("", None, "the value is empty"),
    ("   ", None, "the value is empty"),
    (
        "newst=3",
        Some("newst=3"),
        "unknown word; did you mean \"newest=3\"? the words are semver, min, below, newest, \
         prerelease, variant, exclude",
    ),
    (
        "Semver=1.x",
        Some("Semver=1.x"),
        "did you mean \"semver=1.x\"",
    ),
    ("new_est=3", Some("new_est=3"), "did you mean \"newest=3\""),
    ("latest=3", Some("latest=3"), "did you mean \"newest=3\""),
    (
        "max=2.0.0",
        Some("max=2.0.0"),
        "did you mean \"below=2.0.0\"",
    ),
    (
        "foo=1",
        Some("foo=1"),
        "unknown word; the words are semver, min",
    ),
    ("semver=1.x 1.2.3", Some("1.2.3"), "not key=value"),
    (
        "newest",
        Some("newest"),
        "needs a value, with no spaces around '='",
    ),
    ("newest =3", Some("newest"), "no spaces around '='"),
    ("newest=", Some("newest="), "needs a value: e.g. newest=3"),
    ("newest=0", Some("newest=0"), "newest=0 selects nothing"),
    ("newest=03", Some("newest=03"), "e.g. newest=3"),
    ("newest=three", Some("newest=three"), "whole number"),
    ("newest=-1", Some("newest=-1"), "whole number"),
    ("newest=1.5", Some("newest=1.5"), "whole number"),
    (
        "newest=99999999999999999999999",
        Some("newest=99999999999999999999999"),
        "too large",
    ),
    (
        "newest=3 newest=5",
        Some("newest=5"),
        "given twice (also \"newest=3\")",
    ),
    (
        "exclude=1.0.0 exclude=2.0.0",
        Some("exclude=2.0.0"),
        "given twice",
    ),
    ("semver=1", Some("semver=1"), "write semver=1.x"),
    ("semver=1.2", Some("semver=1.2"), "write semver=1.2.x"),
    (
        "semver=1.2.3",
        Some("semver=1.2.3"),
        "list it in upstream-tags, or write semver=1.2.x",
    ),
    ("semver=1.X", Some("semver=1.X"), "in lower case"),
    (
        "semver=1.x.x",
        Some("semver=1.x.x"),
        "only the last part is x",
    ),
    ("semver=x.1", Some("semver=x.1"), "only the last part is x"),
    ("semver=01.x", Some("semver=01.x"), "leading zeros"),
    (
        "semver=latest",
        Some("semver=latest"),
        "not a version range",
    ),
    ("semver==1.x", Some("semver==1.x"), "not a version range"),
    (
        "semver=1.*",
        Some("semver=1.*"),
        "contains '*', which AWS does not allow",
    ),
    (
        "semver>=1.0",
        Some("semver>=1.0"),
        "the rule has no operators",
    ),
    ("semver=^1.2", Some("semver=^1.2"), "contains '^'"),
    ("exclude=1.0,2.0", Some("exclude=1.0,2.0"), "contains ','"),
    (
        "semver=1.x\tnewest=3",
        Some("semver=1.x\tnewest=3"),
        "contains '\\t'",
    ),
    ("min=1.20", Some("min=1.20"), "write min=1.20.0"),
    ("below=2", Some("below=2"), "write below=2.0.0"),
    ("min=1.024.0", Some("min=1.024.0"), "no leading zeros"),
    ("min=1.2.3+build", Some("min=1.2.3+build"), "build metadata"),
    (
        "min=latest",
        Some("min=latest"),
        "not a version; write MAJOR.MINOR.PATCH",
    ),
    ("min=1.2.3-", Some("min=1.2.3-"), "nothing after '-'"),
    ("min=1.2.3-rc.01", Some("min=1.2.3-rc.01"), "not SemVer"),
    (
        "below=2.0.0-alpine",
        Some("below=2.0.0-alpine"),
        "write below=2.0.0 variant=alpine",
    ),
    (
        "min=2.0.0 below=1.0.0",
        Some("below=1.0.0"),
        "is not above min=2.0.0",
    ),
    (
        "below=1.0.0 min=1.0.0",
        Some("below=1.0.0"),
        "is not above min=1.0.0",
    ),
    (
        "semver=1.x min=2.0.0",
        Some("min=2.0.0"),
        "above every version of semver=1.x",
    ),
    (
        "semver=1.2.x min=1.3.0",
        Some("min=1.3.0"),
        "above every version of semver=1.2.x",
    ),
    (
        "semver=2.x below=2.0.0",
        Some("below=2.0.0"),
        "not above any version of semver=2.x",
    ),
    (
        "semver=2.x below=1.9.0 prerelease=yes",
        Some("below=1.9.0"),
        "not above any version of semver=2.x",
    ),
    (
        "prerelease=maybe",
        Some("prerelease=maybe"),
        "write prerelease=yes or prerelease=no",
    ),
    (
        "variant=alpine prerelease=yes",
        Some("prerelease=yes"),
        "has no effect with variant=alpine",
    ),
    (
        "variant=-alpine",
        Some("variant=-alpine"),
        "write variant=alpine, without the '-'",
    ),
    (
        "variant=rc1",
        Some("variant=rc1"),
        "is a pre-release, not a variant",
    ),
    (
        "variant=al:pine",
        Some("variant=al:pine"),
        "a variant is the part of a tag",
    ),
    (
        "variant=älpine",
        Some("variant=älpine"),
        "a variant is the part of a tag",
    ),
    (
        "exclude=1.0//2.0",
        Some("exclude=1.0//2.0"),
        "item 2 is empty",
    ),
    ("exclude=1.0/", Some("exclude=1.0/"), "item 2 is empty"),
    (
        "exclude=.hidden",
        Some("exclude=.hidden"),
        "item 1 (\".hidden\") is not an image tag",
    ),
    ("exclude=a@b", Some("exclude=a@b"), "is not an image tag"),
];

#[test]
fn parse_errors_name_the_word() {
    for (value, word, part) in BAD_RULES {
        let err = match TagRule::parse(value) {
            Ok(rule) => panic!("{value:?} should not parse, got {rule}"),
            Err(e) => e,
        };
        assert_eq!(err.faulty_word(), *word, "{value:?}: {err}");
        let shown = err.to_string();
        assert!(
            shown.contains(part),
            "{value:?}: {shown:?} should contain {part:?}"
        );
        let prefix = match word {
            Some(w) => format!("upstream-tag-rule word {w:?}: "),
            None => "upstream-tag-rule: ".to_owned(),
        };
        assert!(shown.starts_with(&prefix), "{shown:?}");
        assert_eq!(shown, format!("{prefix}{}", err.message()));
    }
}

#[test]
fn parse_error_display() {
    let err = TagRule::parse("semver=1.x newst=3").unwrap_err();
    assert_eq!(
        err.to_string(),
        "upstream-tag-rule word \"newst=3\": unknown word; did you mean \"newest=3\"? the words \
         are semver, min, below, newest, prerelease, variant, exclude"
    );
    assert_eq!(
        err.with_key("team-a-rule").to_string(),
        "team-a-rule word \"newst=3\": unknown word; did you mean \"newest=3\"? the words are \
         semver, min, below, newest, prerelease, variant, exclude"
    );
    let long = format!("exclude={}", vec!["1.2.3"; 50].join("/"));
    let err = TagRule::parse(&long).unwrap_err();
    assert_eq!(
        err.to_string(),
        "upstream-tag-rule: the value is 307 characters long; AWS allows at most 256"
    );
}

#[test]
fn valid_edge_rules_parse() {
    for value in [
        "semver=x",
        "prerelease=no",
        "semver=2.x below=2.0.0-rc.1 prerelease=yes",
        "semver=1.x below=2.0.0",
        "semver=1.2.x min=1.2.0 below=1.3.0",
        "variant=1",
        "variant=alpine3.19",
        "exclude=latest",
        "min=0.0.0",
    ] {
        assert!(
            TagRule::parse(value).is_ok(),
            "{value:?}: {:?}",
            TagRule::parse(value)
        );
    }
}

mod properties {
    use super::super::version::parse_tag;
    use super::super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn tag() -> impl Strategy<Value = String> {
        let n = || 0u8..4;
        prop_oneof![
            (n(), n(), n(), any::<bool>())
                .prop_map(|(a, b, c, v)| format!("{}{a}.{b}.{c}", if v { "v" } else { "" })),
            (
                n(),
                n(),
                n(),
                prop::sample::select(vec!["alpine", "slim", "1"])
            )
                .prop_map(|(a, b, c, s)| format!("{a}.{b}.{c}-{s}")),
            (
                n(),
                n(),
                n(),
                prop::sample::select(vec!["rc.1", "RC.2", "rc.10", "beta", "alpha.1", "pre"])
            )
                .prop_map(|(a, b, c, s)| format!("{a}.{b}.{c}-{s}")),
            prop::sample::select(vec!["latest", "1.25", "1.024.0", "20240101", "stable"])
                .prop_map(str::to_owned),
            "[a-z0-9.-]{1,8}",
        ]
    }

    fn rule() -> impl Strategy<Value = String> {
        let opt = |v: Vec<&'static str>| prop::option::of(prop::sample::select(v));
        (
            opt(vec![
                "semver=x",
                "semver=0.x",
                "semver=1.x",
                "semver=1.2.x",
                "semver=3.x",
            ]),
            opt(vec![
                "min=0.1.0",
                "min=1.0.0",
                "min=1.2.0-rc.1",
                "min=v2.0.0",
            ]),
            opt(vec!["below=1.3.0", "below=2.0.0", "below=3.0.0-beta"]),
            opt(vec!["newest=1", "newest=2", "newest=5"]),
            opt(vec!["prerelease=yes", "prerelease=no"]),
            opt(vec!["variant=alpine", "variant=slim"]),
            opt(vec![
                "exclude=1.2.3",
                "exclude=v2.0.0/latest",
                "exclude=1.1.1-alpine",
            ]),
        )
            .prop_map(|(a, b, c, d, e, f, g)| {
                [a, b, c, d, e, f, g]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(" ")
            })
    }

    /// A list, and the same list shuffled with some of its tags repeated.
    fn lists() -> impl Strategy<Value = (Vec<String>, Vec<String>)> {
        prop::collection::vec(tag(), 0..40).prop_flat_map(|tags| {
            let n = tags.len().max(1);
            (Just(tags), prop::collection::vec(0..n, 0..10)).prop_flat_map(|(tags, dups)| {
                let mut more = tags.clone();
                if !tags.is_empty() {
                    more.extend(dups.iter().map(|&i| tags[i].clone()));
                }
                (Just(tags), Just(more).prop_shuffle())
            })
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn selection_is_deterministic_and_order_independent(
            value in rule(),
            (tags, shuffled) in lists(),
        ) {
            let Ok(rule) = TagRule::parse(&value) else {
                // Contradictory combinations (e.g. prerelease=yes with variant=) are errors.
                return Ok(());
            };
            let a = rule.select(&tags);
            prop_assert_eq!(&a, &rule.select(&tags));
            prop_assert_eq!(&a, &rule.select(&shuffled));

            // Every distinct tag is in exactly one list.
            let unique: BTreeSet<&str> = tags.iter().map(String::as_str).collect();
            let mut seen: Vec<&str> = a.selected.iter().map(String::as_str).collect();
            seen.extend(a.left_out.iter().map(|(t, _)| t.as_str()));
            prop_assert_eq!(seen.len(), unique.len());
            prop_assert_eq!(seen.into_iter().collect::<BTreeSet<_>>(), unique);

            // Selected: newest first, at most `newest` distinct versions, all above the
            // ones left out for `newest`.
            let versions: Vec<_> = a.selected.iter().map(|t| parse_tag(t).unwrap().version).collect();
            prop_assert!(versions.windows(2).all(|w| w[0] >= w[1]));
            let distinct: BTreeSet<_> = versions.iter().map(ToString::to_string).collect();
            if let Some(n) = value.split(' ').find_map(|w| w.strip_prefix("newest=")) {
                prop_assert!(distinct.len() <= n.parse::<usize>().unwrap());
            }
            for (t, r) in &a.left_out {
                if *r == Reason::BeyondNewest {
                    let v = parse_tag(t).unwrap().version;
                    prop_assert!(versions.iter().all(|s| *s > v), "{} beyond newest", t);
                }
                prop_assert_eq!(*r == Reason::NotAVersion, parse_tag(t).is_err());
            }

            // The canonical form means the same rule.
            let again = TagRule::parse(&rule.to_string()).unwrap();
            prop_assert_eq!(&again, &rule);
        }

        #[test]
        fn merge_keeps_explicit_first_without_duplicates(
            explicit in prop::collection::vec(tag(), 0..10),
            selected in prop::collection::vec(tag(), 0..10),
        ) {
            let merged = merge_tags(&explicit, &selected);
            let unique: BTreeSet<&String> = merged.iter().collect();
            prop_assert_eq!(unique.len(), merged.len());
            let explicit_unique: Vec<&String> = {
                let mut seen = BTreeSet::new();
                explicit.iter().filter(|t| seen.insert(*t)).collect()
            };
            prop_assert_eq!(merged.iter().take(explicit_unique.len()).collect::<Vec<_>>(), explicit_unique);
            prop_assert!(selected.iter().all(|t| merged.contains(t)));
        }
    }
}

/// The examples and error messages in docs/ecr-tags.md are what the code does.
#[test]
fn docs_examples_hold() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/ecr-tags.md");
    let doc = std::fs::read_to_string(path).expect("docs/ecr-tags.md");
    let section = doc
        .split("### Examples\n")
        .nth(1)
        .expect("an Examples section under the rule");
    let mut rows = 0;
    for line in section.lines().skip(2).take_while(|l| l.starts_with('|')) {
        let cells: Vec<&str> = line
            .split('|')
            .map(|c| c.trim().trim_matches('`'))
            .collect();
        let (rule, tags, expected) = (cells[1], cells[2], cells[3]);
        let tags: Vec<&str> = tags.split(' ').collect();
        let (selected, _) = run(rule, &tags);
        assert_eq!(selected.join(" "), expected, "docs example {rule:?}");
        rows += 1;
    }
    assert!(rows >= 5, "{rows} example rows");

    let prefix = "repository \"mirror/keda\": upstream-tag-rule word \"";
    let mut errors = 0;
    for line in doc.lines().filter(|l| l.starts_with(prefix)) {
        let word = &line[prefix.len()..line[prefix.len()..].find('"').unwrap() + prefix.len()];
        let err = TagRule::parse(word).expect_err(word);
        assert_eq!(line, format!("repository \"mirror/keda\": {err}"));
        errors += 1;
    }
    assert!(errors >= 5, "{errors} documented errors");
}
