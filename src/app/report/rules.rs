//! Tag rules: which upstream tags a rule selected, which it left out and why, and (for `list
//! --check`) which ECR tags it no longer selects. Shown by `list --check` and `sync --dry-run`.

use serde_json::{json, Value};

use ecr_mirror_sync::mirror::estate::RuleView;
use ecr_mirror_sync::mirror::tag_rule::Reason;

use super::{emit, table};
use crate::app::cli::OutputFormat;

/// Renders every rule: one `rule` JSON Lines record each, or one table of tags and verdicts.
pub fn rules(output: OutputFormat, rules: &[RuleView]) {
    if rules.is_empty() {
        return;
    }
    match output {
        OutputFormat::Json => {
            for r in rules {
                emit("rule", rule_json(r));
            }
        }
        OutputFormat::Text => println!("{}", rules_table(rules)),
    }
}

/// One rule as JSON (`"type": "rule"`): `selected` newest first, `left_out` the versions the
/// rule did not select with the reason's label (tags that are not versions are only counted,
/// in `not_versions`), `unselected` the ECR tags no longer selected (`null` unless checked).
pub fn rule_json(r: &RuleView) -> Value {
    let mut v = json!({
        "repository": r.repository,
        "upstream": r.upstream,
        "rule": r.rule,
        "upstream_tags": r.upstream_tags,
        "selected": null,
        "left_out": null,
        "not_versions": null,
        "unselected": null,
        "error": null,
        "label": null,
    });
    match &r.selection {
        Some(Ok(s)) => {
            v["selected"] = json!(s.selected);
            v["left_out"] = s
                .left_out_versions()
                .map(|(tag, reason)| json!({"tag": tag, "reason": reason}))
                .collect();
            v["not_versions"] = json!(not_versions(s));
        }
        Some(Err(e)) => {
            v["error"] = json!(e.message);
            v["label"] = json!(e.label.as_str());
        }
        None => {}
    }
    match &r.unselected {
        Some(Ok(u)) => v["unselected"] = json!(u),
        Some(Err(e)) => {
            v["unselected_error"] = json!(e.message);
        }
        None => {}
    }
    v
}

fn not_versions(s: &ecr_mirror_sync::mirror::tag_rule::Selection) -> usize {
    s.left_out
        .iter()
        .filter(|(_, r)| *r == Reason::NotAVersion)
        .count()
}

/// The rules as a table: one row per tag, with what the rule made of it.
pub fn rules_table(rules: &[RuleView]) -> comfy_table::Table {
    let mut t = table(&["REPOSITORY", "RULE", "TAG", "VERDICT"]);
    for r in rules {
        let mut row = |tag: &str, verdict: String| {
            t.add_row(vec![
                r.repository.clone(),
                r.rule.clone(),
                tag.to_string(),
                verdict,
            ]);
        };
        match &r.selection {
            Some(Ok(s)) => {
                for tag in &s.selected {
                    row(tag, "selected".into());
                }
                for (tag, reason) in s.left_out_versions() {
                    row(tag, format!("left out: {reason}"));
                }
                let n = not_versions(s);
                if n > 0 {
                    row(
                        "-",
                        format!("left out: {n} upstream tags that are not versions"),
                    );
                }
            }
            Some(Err(e)) => row("-", format!("error: {e}")),
            None => row("-", "not applied (upstream not listed)".into()),
        }
        match &r.unselected {
            Some(Ok(u)) => {
                for tag in u {
                    row(tag, "unselected: in ECR, no longer selected (kept)".into());
                }
            }
            Some(Err(e)) => row("-", format!("unselected: cannot list ECR tags: {e}")),
            None => {}
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use ecr_mirror_sync::mirror::tag_rule::TagRule;

    #[test]
    fn json_and_table_show_selected_left_out_and_unselected() {
        let rule = TagRule::parse("semver=1.x newest=2").unwrap();
        let s = rule.select(&["1.0.0", "1.1.0", "1.2.0", "2.0.0", "1.3.0-rc.1", "latest"]);
        let r = RuleView {
            repository: "mirror/a".into(),
            upstream: "docker.io/library/a".into(),
            rule: rule.to_string(),
            selection: Some(Ok(s)),
            upstream_tags: 6,
            unselected: Some(Ok(vec!["1.0.0".into()])),
        };
        let v = rule_json(&r);
        assert_eq!(v["selected"], json!(["1.2.0", "1.1.0"]));
        assert_eq!(
            v["left_out"],
            json!([
                {"tag": "2.0.0", "reason": "outside-semver"},
                {"tag": "1.3.0-rc.1", "reason": "prerelease"},
                {"tag": "1.0.0", "reason": "beyond-newest"},
            ])
        );
        assert_eq!(v["not_versions"], json!(1));
        assert_eq!(v["unselected"], json!(["1.0.0"]));
        let t = rules_table(std::slice::from_ref(&r)).to_string();
        for want in [
            "selected",
            "left out: beyond newest",
            "left out: a pre-release",
            "left out: outside semver",
            "left out: 1 upstream tags that are not versions",
            "unselected",
        ] {
            assert!(t.contains(want), "{want} in\n{t}");
        }
    }
}
