//! Rendering results: comfy-table tables for people, JSON Lines for machines.
//!
//! JSON Lines schema (documented in docs/output.md): every line is
//! `{"type": <kind>, "data": {...}}` with kind `repository`, `tag`, `rule`, `plan`, `item`,
//! `copy`, `summary` or `error`. Digests are always full `sha256:<hex>`.

pub mod files;
pub mod list;
pub mod metrics;
pub mod progress;
pub mod rules;
pub mod verify;

use crate::app::cli::OutputFormat;
use comfy_table::{presets::UTF8_FULL_CONDENSED, ContentArrangement, Table};
use serde_json::{json, Value};

use ecr_mirror_sync::mirror::exec::{Executed, Outcome};
use ecr_mirror_sync::mirror::plan::{Action, ActionKind};
use ecr_mirror_sync::mirror::Label;

/// Renders a dry run's plan and its one-line summary.
pub fn dry_run(output: OutputFormat, actions: &[Action]) {
    let c = ecr_mirror_sync::mirror::plan::counts(actions);
    match output {
        OutputFormat::Json => {
            for act in actions {
                emit("plan", action_json(act));
            }
            emit("summary", serde_json::to_value(&c).expect("serialisable"));
        }
        OutputFormat::Text => {
            println!("{}", plan_table(actions));
            println!(
                "dry run: {} to copy, {} in sync, {} blocked, {} errors, {} deferred; nothing was written",
                c.copy, c.skip, c.blocked, c.error, c.deferred
            );
        }
    }
}

/// A table with the house style.
pub fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(header.to_vec());
    t
}

fn opt(s: &Option<String>) -> String {
    s.clone().unwrap_or_else(|| "-".into())
}

/// The plan as a table (for `sync --dry-run`).
pub fn plan_table(actions: &[Action]) -> Table {
    let mut t = table(&[
        "REPOSITORY",
        "TAG",
        "SOURCE",
        "ACTION",
        "REASON",
        "UPSTREAM DIGEST",
        "ECR DIGEST",
    ]);
    for a in actions {
        t.add_row(vec![
            a.repository.clone(),
            opt(&a.tag),
            opt(&a.source),
            a.kind.name().to_string(),
            a.kind.reason(),
            opt(&a.source_digest),
            opt(&a.dest_digest),
        ]);
    }
    t
}

/// One planned action as JSON (`"type": "plan"`).
pub fn action_json(a: &Action) -> Value {
    json!({
        "repository": a.repository,
        "tag": a.tag,
        "source": a.source,
        "platforms": a.platforms.to_string(),
        "action": a.kind.name(),
        "reason": a.kind.reason(),
        "label": label_of(a).map(|l| l.as_str()),
        "source_digest": a.source_digest,
        "dest_digest": a.dest_digest,
    })
}

/// One executed item as JSON (`"type": "item"`).
pub fn item_json(a: &Action, o: &Outcome, secs: f64) -> Value {
    let mut v = action_json(a);
    let m = v.as_object_mut().expect("object");
    m.insert("outcome".into(), json!(o.name()));
    m.insert("duration_secs".into(), json!(secs));
    match o {
        Outcome::Copied(r) => {
            m.insert("previous_digest".into(), json!(a.dest_digest));
            m.insert("dest_digest".into(), json!(r.digest));
            m.insert("bytes".into(), json!(r.bytes));
            m.insert("blobs_uploaded".into(), json!(r.blobs_uploaded));
            m.insert("blobs_mounted".into(), json!(r.blobs_mounted));
            m.insert("blobs_skipped".into(), json!(r.blobs_skipped));
            m.insert("platform_digests".into(), json!(r.platforms));
            m.insert("referrers".into(), referrers_json(&r.referrers));
        }
        Outcome::Failed(e) | Outcome::Blocked(e) | Outcome::Deferred(e) => {
            m.insert("error".into(), json!(e.message));
            m.insert("label".into(), json!(e.label.as_str()));
        }
        Outcome::Skipped => {}
    }
    v
}

/// The referrers of a copied item as JSON: each with `subject`, `digest`, `artifact_type`,
/// `via`, `outcome` and, for a failure, `message` and `label`.
pub fn referrers_json(rs: &[ecr_mirror_sync::oci::referrers::ReferrerReport]) -> Value {
    Value::Array(
        rs.iter()
            .map(ecr_mirror_sync::mirror::referrers::to_json)
            .collect(),
    )
}

/// The referrers of a copied item as one report-file cell.
fn referrers_cell(rs: &[ecr_mirror_sync::oci::referrers::ReferrerReport]) -> String {
    rs.iter()
        .map(|r| {
            let outcome = serde_json::to_value(r.outcome).expect("serialises");
            let mut s = format!("{}:{}", outcome.as_str().unwrap_or_default(), r.digest);
            if let Some(l) = ecr_mirror_sync::mirror::referrers::label_of(r) {
                s = format!("{s}:{}", l.as_str());
            }
            s
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The failure label of a planned action (`None` for skips and copies).
pub fn label_of(a: &Action) -> Option<Label> {
    match &a.kind {
        ActionKind::Blocked(f) | ActionKind::Error(f) | ActionKind::Deferred(f) => Some(f.label),
        _ => None,
    }
}

/// Prints one JSON Lines record.
pub fn emit(kind: &str, data: Value) {
    println!("{}", json!({"type": kind, "data": data}));
}

/// The one-line human log of a finished item.
pub fn item_line(a: &Action, o: &Outcome, secs: f64) -> String {
    let target = format!("{}:{}", a.repository, a.tag.as_deref().unwrap_or("*"));
    let src = a.source.as_deref().unwrap_or("-");
    match o {
        Outcome::Skipped => format!("in sync  {target} = {src} ({})", opt(&a.source_digest)),
        Outcome::Copied(r) => format!(
            "copied   {target} <- {src} {} ({}; blobs {} copied, {} mounted, {} skipped; {} in {secs:.1}s)",
            r.digest,
            a.kind.reason(),
            r.blobs_uploaded,
            r.blobs_mounted,
            r.blobs_skipped,
            human_bytes(r.bytes),
        ),
        Outcome::Blocked(e) => format!("blocked  {target} <- {src}: [{}] {e}", e.label),
        Outcome::Failed(e) => format!("FAILED   {target} <- {src}: [{}] {e}", e.label),
        Outcome::Deferred(e) => format!("deferred {target} <- {src}: [{}] {e}", e.label),
    }
}

/// Totals of a run.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Summary {
    /// Items copied.
    pub copied: usize,
    /// Items already in sync.
    pub skipped: usize,
    /// Items failed (including repository-level errors).
    pub failed: usize,
    /// Items blocked by the trust policy.
    pub blocked: usize,
    /// Items left for the next run: a registry's pull budget was used up (label `rate-limited`).
    pub deferred: usize,
    /// Bytes streamed.
    pub bytes: u64,
    /// Requests retried.
    pub retries: u64,
    /// Docker Hub's last `RateLimit-Remaining`, when seen.
    pub rate_limit_remaining: Option<i64>,
    /// Wall time.
    pub duration_secs: f64,
    /// Referrers copied with the items.
    pub referrers_copied: usize,
    /// Referrers the destination refused (reported per artifact; the items were copied).
    pub referrers_failed: usize,
}

impl Summary {
    /// Totals of executed items.
    pub fn of(results: &[Executed]) -> Summary {
        let mut s = Summary::default();
        for o in results.iter().map(|e| &e.outcome) {
            match o {
                Outcome::Skipped => s.skipped += 1,
                Outcome::Copied(r) => {
                    s.copied += 1;
                    s.bytes += r.bytes;
                    let (copied, _, _, failed) =
                        ecr_mirror_sync::mirror::referrers::counts(&r.referrers);
                    s.referrers_copied += copied;
                    s.referrers_failed += failed;
                }
                Outcome::Blocked(_) => s.blocked += 1,
                Outcome::Failed(_) => s.failed += 1,
                Outcome::Deferred(_) => s.deferred += 1,
            }
        }
        s
    }

    /// 0 when every item is fine, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        u8::from(self.failed + self.blocked + self.deferred > 0)
    }

    /// A one-row table.
    pub fn table(&self) -> Table {
        let mut t = table(&[
            "COPIED",
            "IN SYNC",
            "FAILED",
            "BLOCKED",
            "DEFERRED",
            "BYTES",
            "RETRIES",
            "RATE LIMIT LEFT",
            "TIME",
        ]);
        t.add_row(vec![
            self.copied.to_string(),
            self.skipped.to_string(),
            self.failed.to_string(),
            self.blocked.to_string(),
            self.deferred.to_string(),
            human_bytes(self.bytes),
            self.retries.to_string(),
            self.rate_limit_remaining
                .map(|v| v.to_string())
                .unwrap_or_else(|| "-".into()),
            format!("{:.1}s", self.duration_secs),
        ]);
        t
    }
}

/// A report-file row for an executed sync item.
pub fn file_row(e: &Executed) -> crate::app::report::files::Row {
    let a = &e.action;
    let referrers = match &e.outcome {
        Outcome::Copied(r) => referrers_cell(&r.referrers),
        _ => String::new(),
    };
    let (dest_digest, platforms, bytes, reason, label) = match &e.outcome {
        Outcome::Copied(r) => (
            r.digest.clone(),
            r.platforms
                .iter()
                .map(|(p, d)| format!("{p}={d}"))
                .collect::<Vec<_>>()
                .join(" "),
            r.bytes,
            a.kind.reason(),
            String::new(),
        ),
        Outcome::Skipped => (
            a.dest_digest.clone().unwrap_or_default(),
            String::new(),
            0,
            a.kind.reason(),
            String::new(),
        ),
        Outcome::Failed(r) | Outcome::Blocked(r) | Outcome::Deferred(r) => (
            a.dest_digest.clone().unwrap_or_default(),
            String::new(),
            0,
            r.message.clone(),
            r.label.as_str().to_string(),
        ),
    };
    crate::app::report::files::Row {
        source: a.source.clone().unwrap_or_default(),
        destination: format!("{}:{}", a.repository, a.tag.as_deref().unwrap_or("*")),
        source_digest: a.source_digest.clone().unwrap_or_default(),
        dest_digest,
        platform_digests: platforms,
        action: a.kind.name().to_string(),
        outcome: e.outcome.name().to_string(),
        reason,
        label,
        bytes,
        duration_secs: e.secs,
        referrers,
    }
}

/// `1.5 MiB`-style sizes.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}
