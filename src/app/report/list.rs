//! `list`: the marked repositories, and with `--check` each tag's status.

use ecr_mirror_sync::mirror::estate::{RepoView, RuleView};
use ecr_mirror_sync::mirror::plan::{self, Action};

use super::{action_json, emit, table};
use crate::app::cli::OutputFormat;

/// Renders the marked repositories.
pub fn repositories(output: OutputFormat, render_table: bool, repositories: &[RepoView]) {
    let ctx_output = output;
    let a_render_table = render_table;
    match ctx_output {
        OutputFormat::Json => {
            for r in repositories {
                emit(
                    "repository",
                    serde_json::json!({"repository": r.name, "upstream": r.upstream, "tags": r.tags, "rule": r.rule, "platforms": r.platforms, "error": r.error}),
                );
            }
        }
        OutputFormat::Text if a_render_table => {
            let mut t = table(&[
                "REPOSITORY",
                "UPSTREAM",
                "TAGS",
                "RULE",
                "PLATFORMS",
                "ERROR",
            ]);
            for r in repositories {
                t.add_row(vec![
                    r.name.clone(),
                    r.upstream.clone(),
                    r.tags.join(" "),
                    r.rule.clone().unwrap_or_else(|| "-".into()),
                    r.platforms.clone(),
                    r.error.clone().unwrap_or_default(),
                ]);
            }
            println!("{t}");
        }
        OutputFormat::Text => {
            for r in repositories {
                match &r.error {
                    None => println!(
                        "{}\t{}\t{}\t{}{}",
                        r.name,
                        r.upstream,
                        r.tags.join("/"),
                        r.platforms,
                        r.rule
                            .as_ref()
                            .map(|rule| format!("\trule: {rule}"))
                            .unwrap_or_default()
                    ),
                    Some(e) => println!("{}\terror: {e}", r.name),
                }
            }
        }
    }
}

/// Renders each tag's status, with both digests.
pub fn status(output: OutputFormat, actions: &[Action]) {
    let ctx_output = output;
    let status = |act: &Action| match &act.kind {
        plan::ActionKind::Skip => "in-sync".to_string(),
        plan::ActionKind::CopyMissing => "missing".into(),
        plan::ActionKind::CopyStale => "stale".into(),
        plan::ActionKind::Blocked(r) => format!("blocked: {r}"),
        plan::ActionKind::Error(r) => format!("error: {r}"),
        plan::ActionKind::Deferred(r) => format!("deferred: {r}"),
    };
    match ctx_output {
        OutputFormat::Json => {
            for act in actions {
                let mut v = action_json(act);
                v["status"] = serde_json::json!(status(act));
                emit("tag", v);
            }
        }
        OutputFormat::Text => {
            let mut t = table(&[
                "REPOSITORY",
                "TAG",
                "UPSTREAM",
                "STATUS",
                "UPSTREAM DIGEST",
                "ECR DIGEST",
            ]);
            for act in actions {
                t.add_row(vec![
                    act.repository.clone(),
                    act.tag.clone().unwrap_or_else(|| "-".into()),
                    act.source.clone().unwrap_or_else(|| "-".into()),
                    status(act),
                    act.source_digest.clone().unwrap_or_else(|| "-".into()),
                    act.dest_digest.clone().unwrap_or_else(|| "-".into()),
                ]);
            }
            println!("{t}");
        }
    }
}

/// Renders the ECR tags that a rule no longer selects (`list --check`) in JSON Lines: one
/// `tag` record each with `"status": "unselected"` (they stay in ECR). The text output shows
/// them in the rules table ([`super::rules::rules_table`]).
pub fn unselected(output: OutputFormat, rules: &[RuleView]) {
    if output != OutputFormat::Json {
        return;
    }
    for r in rules {
        let Some(Ok(tags)) = &r.unselected else {
            continue;
        };
        for tag in tags {
            emit(
                "tag",
                serde_json::json!({
                    "repository": r.repository,
                    "tag": tag,
                    "source": null,
                    "status": "unselected",
                    "rule": r.rule,
                }),
            );
        }
    }
}
