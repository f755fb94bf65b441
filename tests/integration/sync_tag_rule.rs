//! Tag rules (`upstream-tag-rule`) end to end: the product binary against moto, a real
//! docker-registry upstream holding 300 tags behind a front that paginates its tag list
//! ([`PagingRegistry`]: 100 tags a page, `Link` relative and absolute), and the "ECR"
//! docker-registry. A child module of `sync`, for its harness.

use serde_json::{json, Value};

use super::{assert_fields, assert_text, img, Services};
use crate::support::{push_manifest, Format, PagingRegistry};

/// `1.M.P` for M in 0..30 and P in 0..10, except 1.29.7-9, plus `latest`, `1.18.4-rc.1` and
/// `1.18.5-alpine`: 300 tags. In lexical order (the order a paginating registry pages in) the
/// first page of 100 ends at `1.17.9`.
fn three_hundred_tags() -> Vec<String> {
    let mut tags: Vec<String> = (0..30)
        .flat_map(|m| (0..10).map(move |p| format!("1.{m}.{p}")))
        .filter(|t| !matches!(t.as_str(), "1.29.7" | "1.29.8" | "1.29.9"))
        .collect();
    tags.extend(["latest", "1.18.4-rc.1", "1.18.5-alpine"].map(String::from));
    assert_eq!(tags.len(), 300);
    tags
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect()
}

fn rule_record<'a>(run: &'a super::Run, repo: &str) -> &'a Value {
    let found: Vec<&Value> = run
        .all("rule")
        .into_iter()
        .filter(|d| d["repository"] == repo)
        .collect();
    assert_eq!(found.len(), 1, "one rule record for {repo}\n{}", run.ctx());
    found[0]
}

fn reason_of(rule: &Value, tag: &str) -> Option<String> {
    rule["left_out"]
        .as_array()?
        .iter()
        .find(|l| l["tag"] == tag)
        .map(|l| l["reason"].as_str().unwrap().to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn rule_selects_across_pages_syncs_and_shows_why() {
    let s = Services::start();
    let image = img(1601, Format::Oci);
    let tags = three_hundred_tags();
    s.push_up("up/app", &tags[0], &image).await;
    for t in &tags[1..] {
        push_manifest(
            &s.up.url(),
            "up/app",
            t,
            &image.manifest,
            &image.media_type,
            None,
            None,
        )
        .await;
    }
    s.push_up("up/other", "v1", &img(1602, Format::Oci)).await;
    let paging = PagingRegistry::start(&s.up.url(), 100).await;
    let upstream = format!("{}/up/app", paging.host);

    // 1.17.5-1.17.9 (page 1) and 1.18.x (page 2), without the excluded 1.18.3.
    let rule = "min=1.17.5 below=1.19.0 exclude=1.18.3";
    let mut want: Vec<String> = (5..10).map(|p| format!("1.17.{p}")).collect();
    want.extend((0..10).filter(|p| *p != 3).map(|p| format!("1.18.{p}")));
    s.create_repo(
        "mirror/app",
        &[
            ("upstream-image", &upstream),
            ("upstream-tags", "latest"),
            ("upstream-tag-rule", rule),
        ],
    )
    .await;
    // The same upstream again, with a rule alone: its tag list is still read once.
    s.create_repo(
        "mirror/app-newest",
        &[
            ("upstream-image", &upstream),
            ("upstream-tag-rule", "semver=1.x newest=2"),
        ],
    )
    .await;
    // A bad rule fails its repository only.
    s.create_repo(
        "mirror/bad",
        &[
            ("upstream-image", &upstream),
            ("upstream-tag-rule", "semver=1.x newst=3"),
        ],
    )
    .await;
    s.create_repo(
        "mirror/other",
        &[
            ("upstream-image", &s.upstream("up/other")),
            ("upstream-tags", "v1"),
        ],
    )
    .await;

    // --- sync ------------------------------------------------------------------------------
    let run = s.run(&["sync", "--output", "json"]).await;
    let ctx = run.ctx();
    run.assert_code(1);
    let pages = paging.tag_list_requests();
    assert_eq!(
        pages.len(),
        3,
        "300 tags, 100 a page: three requests, once for both repositories of that upstream: {pages:?}\n{ctx}"
    );
    assert_eq!(pages[0], "/v2/up/app/tags/list?n=1000", "{ctx}");
    assert!(pages[1].contains("last=1.17.9"), "{pages:?}");
    assert!(pages[2].contains("last="), "{pages:?}");
    let copied: Vec<String> = run
        .all("item")
        .into_iter()
        .filter(|d| d["repository"] == "mirror/app" && d["outcome"] == "copied")
        .map(|d| d["tag"].as_str().unwrap().to_string())
        .collect();
    let mut expect: Vec<String> = want.clone();
    expect.push("latest".into());
    expect.sort();
    let mut got = copied.clone();
    got.sort();
    assert_eq!(got, expect, "the explicit tag and the rule's 14\n{ctx}");
    for t in &expect {
        assert_eq!(
            s.ecr_digest("mirror/app", t).await,
            Some(image.digest.clone()),
            "mirror/app:{t}"
        );
    }
    assert_eq!(s.ecr_digest("mirror/app", "1.18.3").await, None);
    assert_eq!(s.ecr_digest("mirror/app", "1.16.9").await, None);
    let newest: Vec<&str> = run
        .all("item")
        .into_iter()
        .filter(|d| d["repository"] == "mirror/app-newest" && d["outcome"] == "copied")
        .map(|d| d["tag"].as_str().unwrap())
        .collect();
    assert_eq!(newest.len(), 2, "{ctx}");
    assert!(
        newest.contains(&"1.29.6") && newest.contains(&"1.29.5"),
        "{newest:?}"
    );
    let bad = run.one("item", "mirror/bad", None);
    assert_fields(
        bad,
        json!({"outcome": "failed", "label": "invalid-spec"}),
        &ctx,
    );
    assert_text(
        bad,
        "error",
        &[
            "mirror/bad",
            "upstream-tag-rule word \"newst=3\"",
            "did you mean",
        ],
        &ctx,
    );
    assert_fields(
        run.one("item", "mirror/other", Some("v1")),
        json!({"outcome": "copied"}),
        &ctx,
    );
    assert_fields(
        run.summary(),
        json!({"copied": 18, "failed": 1, "blocked": 0}),
        &ctx,
    );

    // --- sync --dry-run: in sync now; the rule record says what it chose and why ------------
    paging.clear();
    let run = s.run(&["sync", "--dry-run", "--output", "json"]).await;
    let ctx = run.ctx();
    run.assert_code(1); // the bad rule is still an error
    let r = rule_record(&run, "mirror/app");
    assert_eq!(r["rule"], rule, "{ctx}");
    assert_eq!(r["upstream_tags"], 300, "{ctx}");
    let mut selected = strings(&r["selected"]);
    assert_eq!(selected[0], "1.18.9", "newest first\n{ctx}");
    selected.sort();
    let mut w = want.clone();
    w.sort();
    assert_eq!(selected, w, "{ctx}");
    for (tag, reason) in [
        ("1.18.3", "excluded"),
        ("1.17.4", "below-min"),
        ("1.19.0", "not-below"),
        ("1.18.4-rc.1", "prerelease"),
        ("1.18.5-alpine", "other-variant"),
    ] {
        assert_eq!(reason_of(r, tag).as_deref(), Some(reason), "{tag}\n{ctx}");
    }
    assert_eq!(r["not_versions"], 1, "latest\n{ctx}");
    assert_eq!(
        reason_of(rule_record(&run, "mirror/app-newest"), "1.29.4").as_deref(),
        Some("beyond-newest"),
        "{ctx}"
    );
    assert!(
        run.all("rule")
            .iter()
            .all(|d| d["repository"] != "mirror/bad"),
        "a rule that does not parse has no selection\n{ctx}"
    );
    let plans: Vec<&Value> = run
        .all("plan")
        .into_iter()
        .filter(|d| d["repository"] == "mirror/app")
        .collect();
    assert_eq!(plans.len(), 15, "{ctx}");
    assert!(plans.iter().all(|p| p["action"] == "skip"), "{ctx}");
    assert_eq!(paging.tag_list_requests().len(), 3, "{ctx}");

    // The table says the same for people.
    let run = s.run(&["sync", "--dry-run"]).await;
    let out = run.stdout();
    for needle in [
        "left out: excluded",
        "left out: below min",
        "left out: at or above below",
        "left out: a pre-release",
        "left out: another variant",
        "left out: beyond newest",
        "left out: 1 upstream tags that are not versions",
    ] {
        assert!(out.contains(needle), "{needle:?}\n{}", run.ctx());
    }

    // --- the rule moves on: list --check reports what it no longer selects, nothing deleted -
    s.set_tags(
        "mirror/app",
        &[(
            "upstream-tag-rule",
            "min=1.18.0 below=1.19.0 exclude=1.18.3",
        )],
    )
    .await;
    let run = s.run(&["list", "--check", "--output", "json"]).await;
    let ctx = run.ctx();
    let r = rule_record(&run, "mirror/app");
    let unselected: Vec<String> = strings(&r["unselected"]);
    let gone: Vec<String> = (5..10).map(|p| format!("1.17.{p}")).collect();
    assert_eq!(unselected, gone, "{ctx}");
    let tag_lines: Vec<String> = run
        .all("tag")
        .into_iter()
        .filter(|d| d["repository"] == "mirror/app" && d["status"] == "unselected")
        .map(|d| d["tag"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(tag_lines, gone, "{ctx}");
    assert!(
        rule_record(&run, "mirror/app-newest")["unselected"]
            .as_array()
            .unwrap()
            .is_empty(),
        "{ctx}"
    );
    for t in &gone {
        assert_eq!(
            s.ecr_digest("mirror/app", t).await,
            Some(image.digest.clone()),
            "{t} stays in ECR"
        );
    }
    let run = s.run(&["list", "--check"]).await;
    assert!(
        run.stdout()
            .contains("unselected: in ECR, no longer selected (kept)"),
        "{}",
        run.ctx()
    );
    // Plain `list` shows the rule without reading upstream.
    paging.clear();
    let run = s.run(&["list", "--output", "json"]).await;
    let repo = run
        .all("repository")
        .into_iter()
        .find(|d| d["repository"] == "mirror/app")
        .cloned()
        .expect("mirror/app listed");
    assert_eq!(
        repo["rule"],
        "min=1.18.0 below=1.19.0 exclude=1.18.3",
        "{}",
        run.ctx()
    );
    assert!(paging.tag_list_requests().is_empty());
}

/// A rule whose upstream tags cannot be listed fails that repository's rule (with the
/// registry's label), and its explicit tags are still mirrored.
#[tokio::test(flavor = "multi_thread")]
async fn unlistable_upstream_fails_the_rule_only() {
    let s = Services::start();
    let image = img(1611, Format::Oci);
    s.push_up("up/app", "stable", &image).await;
    let upstream = s.upstream("up/app");
    s.create_repo(
        "mirror/app",
        &[
            ("upstream-image", &upstream),
            ("upstream-tags", "stable"),
            ("upstream-tag-rule", "newest=1"),
        ],
    )
    .await;
    // Its upstream repository does not exist: the listing is a 404.
    s.create_repo(
        "mirror/missing",
        &[
            ("upstream-image", &s.upstream("up/missing")),
            ("upstream-tag-rule", "newest=1"),
        ],
    )
    .await;
    let run = s.run(&["sync", "--output", "json"]).await;
    let ctx = run.ctx();
    run.assert_code(1);
    assert_fields(
        run.one("item", "mirror/app", Some("stable")),
        json!({"outcome": "copied"}),
        &ctx,
    );
    let f = run.one("item", "mirror/missing", None);
    assert_fields(f, json!({"outcome": "failed", "label": "not-found"}), &ctx);
    assert_text(
        f,
        "error",
        &["mirror/missing", "tag rule", "tag list"],
        &ctx,
    );
}
