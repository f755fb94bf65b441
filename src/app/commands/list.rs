//! `ecr-mirror-sync list`: the marked repositories, and with `--check` each tag's status.

use crate::app::cli::ListArgs;
use crate::app::report;
use crate::app::settings;
use crate::app::Context;
use ecr_mirror_sync::mirror::error::Result;
use ecr_mirror_sync::mirror::estate::{self, ObserveWith};
use ecr_mirror_sync::mirror::plan;
use ecr_mirror_sync::mirror::sources::Sources;
use ecr_mirror_sync::oci::PlatformFilter;
use ecr_mirror_sync::policy::Policy;

/// Runs `list`.
pub async fn run(ctx: &Context, a: &ListArgs) -> Result<u8> {
    let (opts, src) = settings::estate(&a.estate, PlatformFilter::All)?;
    let sources = Sources::new(src);
    // `list --check` reports status; it does not judge signatures.
    let accept = Policy::insecure_accept_anything();
    let observe = a.check.then_some(ObserveWith {
        sources: &sources,
        policy: &accept,
    });
    let (mut estate, observation) = estate::load_observing(&opts, observe).await?;
    if !a.check {
        report::list::repositories(ctx.output, a.render_table, &estate.repositories);
        return Ok(u8::from(!estate.repo_errors.is_empty()));
    }
    // ECR tags that a rule no longer selects: reported, never deleted.
    if let Some((dest, _)) = &observation {
        estate::find_unselected(&mut estate, dest).await;
    }
    let actions = estate::plan_of(&estate, &observation);
    report::rules::rules(ctx.output, &estate.rules);
    report::list::status(ctx.output, &actions);
    report::list::unselected(ctx.output, &estate.rules);
    let c = plan::counts(&actions);
    Ok(u8::from(c.error + c.blocked + c.deferred > 0))
}
