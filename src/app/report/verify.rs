//! `verify`: per-platform rows, a verdict line per image, and report-file rows.

use ecr_mirror_sync::mirror::verify::VerifyRun;

use super::files::Row;
use super::{emit, table};
use crate::app::cli::OutputFormat;

/// Renders a verify run.
pub fn render(output: OutputFormat, render_table: bool, run: &VerifyRun) {
    let checks = &run.checks;
    let repo_errors = &run.repo_errors;
    match output {
        OutputFormat::Json => {
            for (c, _) in checks {
                let mut v = serde_json::to_value(c).expect("serialisable");
                v["ok"] = serde_json::json!(c.ok());
                emit("verify", v);
            }
            for (r, e) in repo_errors {
                emit(
                    "verify",
                    serde_json::json!({"repository": r, "tag": null, "rows": [], "error": e, "ok": false}),
                );
            }
        }
        OutputFormat::Text => {
            let mut t = table(&["IMAGE", "PLATFORM", "SOURCE DIGEST", "ECR DIGEST", "MATCH"]);
            for (c, _) in checks {
                for r in &c.rows {
                    t.add_row(vec![
                        format!("{}:{}", c.repository, c.tag),
                        r.platform.clone(),
                        r.source.clone().unwrap_or_else(|| "-".into()),
                        r.ecr.clone().unwrap_or_else(|| "-".into()),
                        match (&r.recorded_source, r.matches) {
                            (Some(rec), true) => format!("yes (records {rec})"),
                            (Some(rec), false) => format!("NO (records {rec})"),
                            (None, true) => "yes".to_string(),
                            (None, false) => "NO".to_string(),
                        },
                    ]);
                }
            }
            if render_table {
                println!("{t}");
            } else {
                for (c, _) in checks {
                    for r in &c.rows {
                        println!(
                            "{}:{}\t{}\t{}\t{}\t{}",
                            c.repository,
                            c.tag,
                            r.platform,
                            r.source.as_deref().unwrap_or("-"),
                            r.ecr.as_deref().unwrap_or("-"),
                            if r.matches { "match" } else { "MISMATCH" }
                        );
                    }
                }
            }
            for (c, _) in checks {
                let n = c.rows.iter().filter(|r| r.platform != "index").count();
                match (&c.error, c.ok()) {
                    (Some(e), _) => {
                        println!("ERROR    {}:{} <- {}: {e}", c.repository, c.tag, c.source)
                    }
                    (None, true) => println!(
                        "OK       {}:{} <- {}: {n} platform(s) match",
                        c.repository, c.tag, c.source
                    ),
                    (None, false) => {
                        let which: Vec<&str> = c
                            .rows
                            .iter()
                            .filter(|r| !r.matches)
                            .map(|r| r.platform.as_str())
                            .collect();
                        println!(
                            "MISMATCH {}:{} <- {}: {}",
                            c.repository,
                            c.tag,
                            c.source,
                            which.join(", ")
                        );
                    }
                }
            }
            for (r, e) in repo_errors {
                println!("ERROR    {r}: {e}");
            }
        }
    }
}

/// The report-file rows of a verify run.
pub fn file_rows(run: &VerifyRun) -> Vec<Row> {
    let checks = &run.checks;
    checks
        .iter()
        .map(|(c, secs)| Row {
            source: c.source.clone(),
            destination: format!("{}:{}", c.repository, c.tag),
            source_digest: c
                .rows
                .first()
                .and_then(|r| r.source.clone())
                .unwrap_or_default(),
            dest_digest: c
                .rows
                .first()
                .and_then(|r| r.ecr.clone())
                .unwrap_or_default(),
            platform_digests: c
                .rows
                .iter()
                .map(|r| format!("{}={}", r.platform, r.ecr.as_deref().unwrap_or("-")))
                .collect::<Vec<_>>()
                .join(" "),
            action: "verify".into(),
            outcome: if c.ok() { "match" } else { "mismatch" }.into(),
            reason: c.error.clone().unwrap_or_else(|| {
                c.rows
                    .iter()
                    .filter(|r| !r.matches)
                    .map(|r| r.platform.clone())
                    .collect::<Vec<_>>()
                    .join(" ")
            }),
            label: match (&c.error, c.ok()) {
                (Some(_), _) => "verify-error".into(),
                (None, false) => "digest-mismatch".into(),
                (None, true) => String::new(),
            },
            bytes: 0,
            duration_secs: *secs,
            referrers: String::new(),
        })
        .collect()
}
