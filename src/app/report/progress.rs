//! The progress bar of `copy` and `push` on a terminal.

use std::sync::atomic::{AtomicU64, Ordering};

use ecr_mirror_sync::oci::copy::{BlobOutcome, Progress};

/// An indicatif bar for bytes, with blob counts in its message.
pub struct Bar {
    pub bar: indicatif::ProgressBar,
    done: AtomicU64,
    total: AtomicU64,
}

impl Bar {
    pub fn new() -> Bar {
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
