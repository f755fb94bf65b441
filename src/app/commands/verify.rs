//! `ecr-mirror-sync verify`: compare every platform's digest upstream and in ECR.

use crate::app::cli::VerifyArgs;
use crate::app::commands::sync::write_report_files;
use crate::app::report;
use crate::app::settings;
use crate::app::Context;
use ecr_mirror_sync::mirror::error::{Error, Result};
use ecr_mirror_sync::mirror::referrers::parse_selection;
use ecr_mirror_sync::mirror::sources::Sources;
use ecr_mirror_sync::mirror::verify::verify_estate;
use ecr_mirror_sync::oci::referrers::ReferrerFilter;
use ecr_mirror_sync::oci::PlatformFilter;

/// Runs `verify`.
pub async fn run(ctx: &Context, a: &VerifyArgs) -> Result<u8> {
    let (opts, src) = settings::estate(&a.estate, PlatformFilter::All)?;
    let sources = Sources::new(src);
    let referrers = ecr_mirror_sync::mirror::referrers::Referrers {
        default: match &a.referrers {
            None => ReferrerFilter::All,
            Some(v) => {
                parse_selection(v).map_err(|e| Error::Usage(format!("--referrers {v:?}: {e}")))?
            }
        },
        ..Default::default()
    };
    let Some(run) = verify_estate(&opts, &sources, a.repository.as_deref(), &referrers).await?
    else {
        return Err(Error::Usage(format!(
            "--repository {:?}: no such repository is marked for mirroring (see `ecr-mirror-sync list`)",
            a.repository.as_deref().unwrap_or_default()
        )));
    };
    report::verify::render(ctx.output, a.render_table, &run);
    if let Some(dir) = &a.report_dir {
        write_report_files(dir, &report::verify::file_rows(&run))?;
    }
    let bad = run.repo_errors.len() + run.checks.iter().filter(|(c, _)| !c.ok()).count();
    Ok(u8::from(bad > 0))
}
