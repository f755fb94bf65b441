//! `ecr-mirror-sync sync`: discover → observe → plan → execute → report.

use std::time::Instant;

use tokio_util::sync::CancellationToken;

use crate::app::cli::{OutputFormat, SyncArgs};
use crate::app::report::{self, Summary};
use crate::app::settings;
use crate::app::Context;
use ecr_mirror_sync::mirror::error::{Error, Result};
use ecr_mirror_sync::mirror::exec::{self, Executed, Outcome, SyncOptions};
use ecr_mirror_sync::mirror::plan::{self, Action};
use ecr_mirror_sync::mirror::sources::Sources;
use ecr_mirror_sync::mirror::trust;

/// Runs `sync`.
pub async fn run_sync(ctx: &Context, a: &SyncArgs, cancel: &CancellationToken) -> Result<u8> {
    let started = Instant::now();
    let default_platforms = settings::platform_filter(&a.platforms)?.unwrap_or_default();
    let (estate, src) = settings::estate(&a.estate, default_platforms)?;
    let policy = trust::load(&a.policy.policy, a.policy.insecure_policy)?;
    let metrics = settings::metrics(&a.metrics)?;
    let shard = estate.shard.map(|s| (s.index, s.count));
    let publish = |run: Option<&exec::SyncRun>, code: u8| {
        let m = report::metrics::of_sync(
            &metrics.job,
            shard,
            run,
            started.elapsed().as_secs_f64(),
            code,
        );
        let (file, url) = (metrics.file.clone(), metrics.pushgateway.clone());
        async move { report::metrics::publish(file.as_deref(), url.as_deref(), &m).await }
    };
    let opts = SyncOptions {
        parallel: a.parallel as usize,
        referrers: settings::referrers(&a.policy)?,
        dry_run: a.dry_run,
    };
    let output = ctx.output;
    let on_done = move |act: &Action, o: &Outcome, secs: f64| match output {
        OutputFormat::Json => report::emit("item", report::item_json(act, o, secs)),
        OutputFormat::Text if !matches!(o, Outcome::Skipped) => {
            println!("{}", report::item_line(act, o, secs))
        }
        OutputFormat::Text => {}
    };
    let sources = Sources::new(src);
    let run = match exec::sync(&estate, &sources, &policy, &opts, cancel, &on_done).await {
        Ok(run) => run,
        Err(e) => {
            if !a.dry_run {
                publish(None, e.exit_code()).await;
            }
            return Err(e);
        }
    };
    if a.dry_run {
        report::rules::rules(ctx.output, &run.rules);
        report::dry_run(ctx.output, &run.actions);
        let c = plan::counts(&run.actions);
        return Ok(u8::from(c.error + c.blocked + c.deferred > 0));
    }
    let mut summary = Summary::of(&run.results);
    summary.retries = run.retries;
    summary.rate_limit_remaining = run.rate_limit_remaining;
    summary.duration_secs = started.elapsed().as_secs_f64();
    match ctx.output {
        OutputFormat::Json => report::emit(
            "summary",
            serde_json::to_value(&summary).expect("serialisable"),
        ),
        OutputFormat::Text => println!("{}", summary.table()),
    }
    if let Some(dir) = &a.report_dir {
        let rows: Vec<_> = run.results.iter().map(report::file_row).collect();
        write_report_files(dir, &rows)?;
    }
    post_events(&summary, &run.results).await;
    // After SIGTERM too: the run stops new work, finishes its report and pushes.
    let code = if cancel.is_cancelled() {
        1
    } else {
        summary.exit_code()
    };
    publish(Some(&run), code).await;
    Ok(code)
}

#[cfg(feature = "k8s")]
async fn post_events(summary: &Summary, results: &[Executed]) {
    use crate::app::k8s::{publish_from_env, ItemProblem, RunSummary};
    let problems: Vec<ItemProblem> = results
        .iter()
        .map(|e| (&e.action, &e.outcome))
        .filter_map(|(a, o)| match o {
            Outcome::Failed(r) | Outcome::Blocked(r) | Outcome::Deferred(r) => Some(ItemProblem {
                image: format!("{}:{}", a.repository, a.tag.as_deref().unwrap_or("*")),
                source: a.source.clone().unwrap_or_default(),
                reason: r.message.clone(),
                label: r.label.as_str().to_string(),
                blocked: matches!(o, Outcome::Blocked(_)),
                deferred: matches!(o, Outcome::Deferred(_)),
            }),
            _ => None,
        })
        .collect();
    let rs = RunSummary {
        copied: summary.copied,
        skipped: summary.skipped,
        failed: summary.failed,
        blocked: summary.blocked,
        deferred: summary.deferred,
    };
    if let Err(e) = publish_from_env(&rs, &problems).await {
        tracing::warn!(error = %e, "could not post Kubernetes events");
    }
}

#[cfg(not(feature = "k8s"))]
async fn post_events(_: &Summary, _: &[Executed]) {}

/// Writes the `--report-dir` files and logs where they went.
pub fn write_report_files(
    dir: &std::path::Path,
    rows: &[crate::app::report::files::Row],
) -> Result<()> {
    let paths =
        crate::app::report::files::write(dir, rows, std::time::SystemTime::now()).map_err(|e| {
            Error::Usage(format!(
                "--report-dir {}: cannot write the report: {e}",
                dir.display()
            ))
        })?;
    for p in paths {
        tracing::info!(file = %p.display(), "report written");
    }
    Ok(())
}
