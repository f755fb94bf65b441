//! `ecr-mirror-sync push --archive FILE --dest REGISTRY/REPO[:TAG] [--tag T]...`: an image
//! from a `docker save` tarball, an oci-archive or an OCI layout, pushed with the copy
//! engine's blob upload (HEAD-skip, mount, verified streaming, retries), bottom-up: blobs,
//! then child manifests by digest, then the manifest under each tag, the first tag first.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::app::cli::{OutputFormat, PushArgs};
use ecr_mirror_sync::mirror::error::{Error, Result};
use ecr_mirror_sync::oci::archive::{Archive, ArchiveImage, Format};
use ecr_mirror_sync::oci::copy::{Copy, CopyReport, Destination, NoProgress, Progress};
use ecr_mirror_sync::oci::Registry;
use ecr_mirror_sync::oci::RegistryError;
use ecr_mirror_sync::oci::{validate_tag, PlatformFilter, TaggedRef};

use crate::app::report::human_bytes;
use crate::app::report::progress::Bar;
use crate::app::settings;
use crate::app::Context;

/// The result of one push.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PushReport {
    /// The archive file or directory.
    pub archive: String,
    /// Its format.
    pub format: Format,
    /// `registry/repository`.
    pub destination: String,
    /// The tags written (or already in place), the first one first.
    pub tags: Vec<String>,
    /// The digest every tag now points at.
    pub digest: String,
    /// The manifest's media type.
    pub media_type: String,
    /// Blobs streamed from the archive.
    pub blobs_uploaded: u64,
    /// Blobs mounted from another repository.
    pub blobs_mounted: u64,
    /// Blobs the destination already had.
    pub blobs_skipped: u64,
    /// Bytes streamed.
    pub bytes: u64,
    /// Manifests written (children and tags).
    pub manifests_put: u64,
    /// Whether every tag already pointed at this image, so no manifest was written.
    pub unchanged: bool,
    /// Wall time, reading the archive included.
    #[serde(serialize_with = "secs")]
    pub duration: Duration,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// The tags to write: the destination's own tag, then each `--tag`, de-duplicated, in order.
/// Each is validated. Empty when neither names one.
fn explicit_tags(dest_tag: Option<&str>, extra: &[String]) -> Result<Vec<String>> {
    let mut tags: Vec<String> = Vec::new();
    for t in dest_tag.into_iter().chain(extra.iter().map(String::as_str)) {
        let t = t.trim();
        validate_tag(t)?;
        if !tags.iter().any(|x| x == t) {
            tags.push(t.to_string());
        }
    }
    Ok(tags)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::result::Result<T, ecr_mirror_sync::oci::archive::ArchiveError>
        + Send
        + 'static,
) -> Result<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => Ok(r?),
        Err(e) => Err(Error::Registry(RegistryError::Invalid {
            what: "archive reader".into(),
            reason: e.to_string(),
        })),
    }
}

/// Runs `push`; returns the exit code.
pub async fn run(ctx: &Context, a: &PushArgs, cancel: &CancellationToken) -> Result<u8> {
    let started = Instant::now();
    let dest = TaggedRef::parse(&a.dest)?;
    if dest.digest.is_some() {
        return Err(Error::Usage(format!(
            "--dest {:?}: a destination cannot be a digest; give REGISTRY/REPO[:TAG]",
            a.dest
        )));
    }
    let mut tags = explicit_tags(dest.tag.as_deref(), &a.tags)?;
    let dest_settings = settings::dest(&dest.image.registry, &a.dest_access, &a.aws, &a.net)?;

    // Index the archive (headers and metadata only), then choose the image and its tags
    // before the possibly long read of the layers.
    let path: PathBuf = a.archive.clone();
    let archive = blocking(move || Archive::open(&path)).await?;
    let which = archive.select(&tags)?;
    if tags.is_empty() {
        match archive
            .tags()
            .into_iter()
            .nth(which)
            .and_then(|t| t.into_iter().next())
        {
            Some(t) => tags.push(t),
            None => {
                return Err(Error::Usage(format!(
                    "{}: no tag to push to: give --dest {}:TAG or --tag TAG (the {} records no \
                     tag{})",
                    a.archive.display(),
                    dest.image,
                    archive.format(),
                    match archive.format() {
                        Format::DockerArchive => " in RepoTags",
                        _ => " in an org.opencontainers.image.ref.name annotation",
                    }
                )))
            }
        }
    }
    let format = archive.format();
    let image = blocking(move || archive.load(which)).await?;

    let dst_cfg = crate::app::dest_registry_config(&dest_settings, &dest.image.registry).await?;
    let dst = Destination::new(Arc::new(Registry::new(dst_cfg)?));

    let show_bar = ctx.output == OutputFormat::Text && std::io::stderr().is_terminal();
    let bar = show_bar.then(|| Arc::new(Bar::new()));
    let progress: Arc<dyn Progress> = match &bar {
        Some(b) => b.clone(),
        None => Arc::new(NoProgress),
    };
    let mut stats = PushStats::default();
    let archive_shown = a.archive.display().to_string();
    let result = tokio::select! {
        r = write_archive_tags(&archive_shown, &dst, &dest.image.repository, &image, &tags, &progress, &mut stats, cancel) => r,
        _ = cancel.cancelled() => Err(RegistryError::Cancelled),
    };
    if let Some(b) = &bar {
        b.bar.finish_and_clear();
    }
    let unchanged = result?;
    let report = PushReport {
        archive: a.archive.display().to_string(),
        format,
        destination: dest.image.to_string(),
        tags,
        digest: image.top.digest.clone(),
        media_type: image.top.media_type.clone(),
        blobs_uploaded: stats.uploaded,
        blobs_mounted: stats.mounted,
        blobs_skipped: stats.skipped,
        bytes: stats.bytes,
        manifests_put: stats.manifests_put,
        unchanged,
        duration: started.elapsed(),
    };
    print_report(ctx, &report);
    Ok(0)
}

/// Writes the archive's image with the one bottom-up writer ([`Copy`]): blobs, children by
/// digest, then the manifest under each tag, the first tag first. The tags after the first
/// cost a HEAD and a PUT each: the run's tracker already placed the blobs and children.
/// Returns whether nothing had to be written.
#[allow(clippy::too_many_arguments)]
async fn write_archive_tags(
    archive: &str,
    dst: &Destination,
    repo: &str,
    image: &ArchiveImage,
    tags: &[String],
    progress: &Arc<dyn Progress>,
    stats: &mut PushStats,
    cancel: &CancellationToken,
) -> std::result::Result<bool, RegistryError> {
    let mut unchanged = true;
    for tag in tags {
        let job = Copy {
            src: image,
            src_reference: &image.top.digest,
            dst,
            dst_repo: repo,
            dst_tag: tag,
            platforms: &PlatformFilter::All,
            progress: progress.clone(),
            cancel,
            referrers: ecr_mirror_sync::oci::referrers::ReferrerFilter::None,
            dst_current: None,
        };
        let r = job.run().await.map_err(|e| match e {
            // Content that does not hash to its name was read from the archive, not the
            // network.
            RegistryError::DigestMismatch { .. } | RegistryError::SizeMismatch { .. } => {
                RegistryError::Invalid {
                    what: archive.to_string(),
                    reason: format!("the archive is corrupted: {e}"),
                }
            }
            other => other,
        })?;
        stats.add(&r);
        unchanged &= r.unchanged;
    }
    Ok(unchanged)
}

/// What the writer did, summed over the tags.
#[derive(Default)]
struct PushStats {
    uploaded: u64,
    mounted: u64,
    skipped: u64,
    bytes: u64,
    manifests_put: u64,
}

impl PushStats {
    fn add(&mut self, r: &CopyReport) {
        self.uploaded += r.blobs_uploaded;
        self.mounted += r.blobs_mounted;
        self.skipped += r.blobs_skipped;
        self.bytes += r.bytes;
        self.manifests_put += r.manifests_put;
    }
}

fn print_report(ctx: &Context, r: &PushReport) {
    match ctx.output {
        OutputFormat::Json => {
            let v = serde_json::json!({"type": "push", "data": r});
            println!("{v}");
        }
        OutputFormat::Text => {
            let dests: Vec<String> = r
                .tags
                .iter()
                .map(|t| format!("{}:{t}", r.destination))
                .collect();
            let done = if r.unchanged {
                format!("already up to date ({})", r.digest)
            } else {
                format!("pushed {}", r.digest)
            };
            let mounted = if r.blobs_mounted > 0 {
                format!(", {} mounted", r.blobs_mounted)
            } else {
                String::new()
            };
            println!(
                "{} ({}) -> {}: {done} — blobs: {} uploaded, {} skipped{mounted}; {} in {:.1}s",
                r.archive,
                r.format,
                dests.join(", "),
                r.blobs_uploaded,
                r.blobs_skipped,
                human_bytes(r.bytes),
                r.duration.as_secs_f64()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_ordered_deduplicated_and_validated() {
        let t = explicit_tags(Some("v1"), &["latest".into(), "v1".into()]).unwrap();
        assert_eq!(t, vec!["v1", "latest"]);
        assert!(explicit_tags(None, &[]).unwrap().is_empty());
        let e = explicit_tags(None, &["-bad".into()]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
    }
}
