//! `ecr-mirror-sync copy`: one image, any two registries.

use std::io::IsTerminal;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::app::cli::{CopyArgs, OutputFormat};
use crate::app::report;
use crate::app::settings;
use ecr_mirror_sync::mirror::error::{Error, Failure, Result};
use ecr_mirror_sync::mirror::exec;
use ecr_mirror_sync::mirror::plan::{Action, ActionKind, Item};
use ecr_mirror_sync::mirror::sources::{
    ensure_repository, explain_missing_repository_failure, Ensured, Sources,
};
use ecr_mirror_sync::mirror::trust;
use ecr_mirror_sync::oci::copy::{CopyReport, Destination, NoProgress, Progress};
use ecr_mirror_sync::oci::Registry;
use ecr_mirror_sync::oci::{PlatformFilter, TaggedRef};

use crate::app::Context;

/// What `copy` was asked to do, every flag checked before any request.
struct CopySettings {
    item: Item,
    dest: TaggedRef,
    ecr_host: Option<ecr_mirror_sync::ecr::EcrHost>,
    create: Option<ecr_mirror_sync::ecr::RepoSettings>,
    policy: ecr_mirror_sync::policy::Policy,
    referrers: ecr_mirror_sync::mirror::referrers::Referrers,
    src_access: ecr_mirror_sync::mirror::sources::Access,
    dest_settings: settings::Dest,
}

fn copy_settings(a: &CopyArgs) -> Result<CopySettings> {
    let src = TaggedRef::parse(&a.src)?;
    let mut dest = TaggedRef::parse(&a.dest)?;
    if dest.digest.is_some() {
        return Err(Error::Usage(format!(
            "--dest {:?}: a destination cannot be a digest; give REGISTRY/REPO[:TAG]",
            a.dest
        )));
    }
    if dest.tag.is_none() {
        dest.tag = match (&src.tag, &src.digest) {
            (Some(t), _) => Some(t.clone()),
            (None, None) => Some("latest".into()),
            (None, Some(_)) => {
                return Err(Error::Usage(format!(
                    "--src {:?} names a digest, so --dest needs a tag (REGISTRY/REPO:TAG)",
                    a.src
                )))
            }
        };
    }
    let filter = settings::platform_filter(&a.platforms)?.unwrap_or(PlatformFilter::All);
    let policy = trust::load(&a.policy.policy, a.policy.insecure_policy)?;
    // --create-missing: checked (settings, lifecycle policy file) before any request.
    let ecr_host = ecr_mirror_sync::ecr::parse_ecr_host(&dest.image.registry);
    let create = match (a.create_missing, &ecr_host) {
        (false, _) => None,
        (true, None) => {
            return Err(Error::Usage(format!(
                "--create-missing creates ECR repositories, but --dest {:?} is not an ECR registry (<account>.dkr.ecr.<region>.amazonaws.com/REPO)",
                a.dest
            )))
        }
        (true, Some(_)) => Some(settings::repo_settings(&a.repo_settings)?),
    };
    let item = Item {
        repository: dest.image.repository.clone(),
        tag: dest.tag.clone().expect("set above"),
        source: src,
        platforms: filter,
        immutable: false,
    };
    Ok(CopySettings {
        item,
        src_access: settings::src_access(&a.src_access, &a.net)?,
        dest_settings: settings::dest(&dest.image.registry, &a.dest_access, &a.aws, &a.net)?,
        dest,
        ecr_host,
        create,
        policy,
        referrers: settings::referrers(&a.policy)?,
    })
}

/// Runs `copy`: a one-item plan (observe both sides, the trust policy, the planner's in-sync
/// rule), executed with a progress bar.
pub async fn run(ctx: &Context, a: &CopyArgs, cancel: &CancellationToken) -> Result<u8> {
    let s = copy_settings(a)?;
    let ecr_api = || {
        let region = a.aws.region.clone();
        let region = region.or_else(|| s.ecr_host.as_ref().map(|h| h.region.clone()));
        ecr_mirror_sync::ecr::sdk::SdkEcr::from_env(region)
    };
    let sources = Sources::new(s.src_access.clone());
    let dst_cfg =
        crate::app::dest_registry_config(&s.dest_settings, &s.dest.image.registry).await?;
    let dst = Arc::new(Destination::new(Arc::new(Registry::new(dst_cfg)?)));
    let what = format!("{} -> {}", s.item.source, s.dest.image.at_tag(&s.item.tag));
    let action = exec::plan_one(&s.item, &sources, &dst.registry, &s.policy).await;
    match &action.kind {
        ActionKind::Skip if !s.referrers.refresh => {
            print_report(ctx, &what, &unchanged_report(&action));
            return Ok(0);
        }
        // --refresh-referrers: an image in sync still has its referrers checked.
        ActionKind::Skip => {}
        ActionKind::Blocked(f) => {
            return Err(Error::Blocked(format!(
                "{}: blocked by the trust policy: {f}",
                s.item.source
            )))
        }
        ActionKind::Error(f) | ActionKind::Deferred(f) => return Err(Error::Item(f.clone())),
        ActionKind::CopyMissing | ActionKind::CopyStale => {}
    }
    if let Some(settings) = &s.create {
        // After the trust check, so a refused image leaves no empty repository behind.
        let repo = &s.dest.image.repository;
        if ensure_repository(&ecr_api().await, repo, settings).await? == Ensured::Created {
            tracing::info!(repository = %repo, "created the ECR repository (--create-missing)");
        }
    }
    let show_bar = ctx.output == OutputFormat::Text && std::io::stderr().is_terminal();
    let bar = show_bar.then(|| Arc::new(report::progress::Bar::new()));
    let progress: Arc<dyn Progress> = match &bar {
        Some(b) => b.clone(),
        None => Arc::new(NoProgress),
    };
    let result = exec::execute_one(&action, &sources, &dst, &s.referrers, progress, cancel).await;
    if let Some(b) = &bar {
        b.bar.finish_and_clear();
    }
    match result {
        Ok(report) => {
            print_report(ctx, &what, &report);
            Ok(0)
        }
        // Into ECR without --create-missing: say so when the repository is missing.
        Err(e) if s.ecr_host.is_some() && s.create.is_none() => {
            let f = Failure::from(e);
            let repo = &s.dest.image.repository;
            Err(Error::Item(
                explain_missing_repository_failure(&ecr_api().await, repo, f).await,
            ))
        }
        Err(e) => Err(e.into()),
    }
}

/// The report of a copy that found the destination already in sync: nothing written.
fn unchanged_report(a: &Action) -> CopyReport {
    CopyReport {
        source_digest: a.source_digest.clone().unwrap_or_default(),
        digest: a.dest_digest.clone().unwrap_or_default(),
        blobs_uploaded: 0,
        blobs_mounted: 0,
        blobs_skipped: 0,
        bytes: 0,
        manifests_put: 0,
        platforms: vec![],
        referrers: vec![],
        unchanged: true,
        duration: std::time::Duration::ZERO,
    }
}

fn print_report(ctx: &Context, what: &str, r: &CopyReport) {
    match ctx.output {
        OutputFormat::Json => {
            let mut report = serde_json::to_value(r).expect("serialisable");
            report["referrers"] = crate::app::report::referrers_json(&r.referrers);
            let v = serde_json::json!({"type": "copy", "data": {"image": what, "report": report}});
            println!("{v}");
        }
        OutputFormat::Text => {
            if r.unchanged {
                println!("{what}: already up to date ({})", r.digest);
            } else {
                println!(
                    "{what}: copied {} — blobs: {} copied, {} skipped, {} mounted; {} in {:.1}s",
                    r.digest,
                    r.blobs_uploaded,
                    r.blobs_skipped,
                    r.blobs_mounted,
                    report::human_bytes(r.bytes),
                    r.duration.as_secs_f64()
                );
            }
        }
    }
}
