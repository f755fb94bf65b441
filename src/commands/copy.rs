//! `ecr-mirror-sync copy`: one image, any two registries.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::cli::{CopyArgs, OutputFormat};
use crate::error::{Error, Result};
use crate::registry::copy::{
    in_sync, BlobOutcome, Copy, CopyReport, Destination, NoProgress, Progress,
};
use crate::registry::Registry;
use crate::settings;
use crate::spec::{PlatformFilter, TaggedRef};

use super::Context;

/// An indicatif bar for bytes, with blob counts in its message.
pub(crate) struct Bar {
    pub(crate) bar: indicatif::ProgressBar,
    done: AtomicU64,
    total: AtomicU64,
}

impl Bar {
    pub(crate) fn new() -> Bar {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} {msg}",
            )
            .expect("valid template"),
        );
        Bar {
            bar,
            done: AtomicU64::new(0),
            total: AtomicU64::new(0),
        }
    }
    fn message(&self) {
        self.bar.set_message(format!(
            "blobs {}/{}",
            self.done.load(Ordering::Relaxed),
            self.total.load(Ordering::Relaxed)
        ));
    }
}

impl Progress for Bar {
    fn blob_started(&self, size: u64) {
        self.bar.inc_length(size);
        self.total.fetch_add(1, Ordering::Relaxed);
        self.message();
    }
    fn bytes(&self, n: u64) {
        self.bar.inc(n);
    }
    fn blob_done(&self, how: BlobOutcome) {
        if how != BlobOutcome::Uploaded {
            self.total.fetch_add(1, Ordering::Relaxed);
        }
        self.done.fetch_add(1, Ordering::Relaxed);
        self.message();
    }
}

/// Runs `copy`; returns the exit code.
pub async fn run(ctx: &Context, a: &CopyArgs, cancel: &CancellationToken) -> Result<u8> {
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
    let src_reference = src.reference().to_string();
    let dst_tag = dest.tag.clone().expect("set above");
    let filter = settings::platform_filter(&a.platforms)?.unwrap_or(PlatformFilter::All);
    let policy = crate::trust::load(&a.policy.policy, a.policy.insecure_policy)?;
    // --create-missing: checked (settings, lifecycle policy file) before any request.
    let ecr_host = crate::ecr::parse_ecr_host(&dest.image.registry);
    let create_settings = if a.create_missing {
        if ecr_host.is_none() {
            return Err(Error::Usage(format!(
                "--create-missing creates ECR repositories, but --dest {:?} is not an ECR registry (<account>.dkr.ecr.<region>.amazonaws.com/REPO)",
                a.dest
            )));
        }
        Some(super::import::repo_settings(&a.repo_settings)?)
    } else {
        None
    };
    let ecr_api = || {
        let region = a
            .aws
            .region
            .clone()
            .or_else(|| ecr_host.as_ref().map(|h| h.region.clone()));
        crate::ecr::sdk::SdkEcr::from_env(region)
    };

    let src_reg = Arc::new(Registry::new(settings::src_registry(
        &src.image.registry,
        &a.src_access,
        &a.net,
    )?)?);
    let dst_cfg =
        super::dest_registry_config(ctx, &dest.image.registry, &a.dest_access, &a.aws, &a.net)
            .await?;
    let dst = Destination::new(Arc::new(Registry::new(dst_cfg)?));

    let what = format!("{src} -> {}", dest.image.at_tag(&dst_tag));
    // Idempotence: HEAD both sides first; nothing is written when they already agree.
    let src_head = src_reg
        .head_manifest(&src.image.repository, &src_reference)
        .await?
        .ok_or_else(|| crate::error::RegistryError::Status {
            registry: src.image.registry.clone(),
            method: "HEAD".into(),
            what: format!("manifest {}:{}", src.image.repository, src_reference),
            status: 404,
            code: Some("MANIFEST_UNKNOWN".into()),
            message: "the source image does not exist".into(),
            retry_after: None,
        })?;
    let dst_head = dst
        .registry
        .head_manifest(&dest.image.repository, &dst_tag)
        .await?;
    if in_sync(
        &dst.registry,
        &dest.image.repository,
        dst_head.as_ref().map(|h| h.digest.as_str()),
        &src_head.digest,
        &filter,
    )
    .await?
    {
        let report = CopyReport {
            source_digest: src_head.digest.clone(),
            digest: dst_head.map(|h| h.digest).unwrap_or_default(),
            blobs_uploaded: 0,
            blobs_mounted: 0,
            blobs_skipped: 0,
            bytes: 0,
            manifests_put: 0,
            platforms: vec![],
            unchanged: true,
            duration: std::time::Duration::ZERO,
        };
        print_report(ctx, &what, &report);
        return Ok(0);
    }

    if let Some(reason) = crate::trust::check(&policy, &src_reg, &src, &filter).await? {
        return Err(Error::Blocked(format!(
            "{src}: blocked by the trust policy: {reason}"
        )));
    }

    if let Some(settings) = &create_settings {
        // After the trust check, so a refused image leaves no empty repository behind.
        let api = ecr_api().await;
        let repo = &dest.image.repository;
        if crate::connect::ensure_repository(&api, repo, settings).await?
            == crate::connect::Ensured::Created
        {
            tracing::info!(repository = %repo, "created the ECR repository (--create-missing)");
        }
    }

    let show_bar = ctx.output == OutputFormat::Text && std::io::stderr().is_terminal();
    let bar = show_bar.then(|| Arc::new(Bar::new()));
    let progress: Arc<dyn Progress> = match &bar {
        Some(b) => b.clone(),
        None => Arc::new(NoProgress),
    };
    let job = Copy {
        src: &src_reg,
        src_repo: &src.image.repository,
        src_reference: &src_reference,
        dst: &dst,
        dst_repo: &dest.image.repository,
        dst_tag: &dst_tag,
        platforms: &filter,
        progress,
        cancel,
        signatures: !a.policy.remove_signatures,
        dst_current: None,
    };
    let result = tokio::select! {
        r = job.run() => r,
        _ = cancel.cancelled() => Err(crate::error::RegistryError::Cancelled),
    };
    if let Some(b) = &bar {
        b.bar.finish_and_clear();
    }
    let report = match result {
        Ok(r) => r,
        // Into ECR without --create-missing: say so when the repository is missing.
        Err(e) if ecr_host.is_some() && create_settings.is_none() && e.is_not_found() => {
            let api = ecr_api().await;
            return Err(crate::connect::explain_missing_repository(
                &api,
                &dest.image.registry,
                &dest.image.repository,
                e,
            )
            .await
            .into());
        }
        Err(e) => return Err(e.into()),
    };
    print_report(ctx, &what, &report);
    Ok(0)
}

fn print_report(ctx: &Context, what: &str, r: &CopyReport) {
    match ctx.output {
        OutputFormat::Json => {
            let v = serde_json::json!({"type": "copy", "data": {"image": what, "report": r}});
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
                    human_bytes(r.bytes),
                    r.duration.as_secs_f64()
                );
            }
        }
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
