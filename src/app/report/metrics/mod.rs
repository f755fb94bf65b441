//! Prometheus metrics of one `sync` run: rendered in the Prometheus text format (0.0.4) with the official
//! `prometheus-client` crate, written atomically for node-exporter's textfile collector (`--metrics-file`), or
//! pushed to a Pushgateway (`--pushgateway`).
//!
//! The input is plain data, [`RunMetrics`], filled in by the caller at the end of a run (or on SIGTERM). Every
//! metric and label is described in `docs/metrics.md`.
//!
//! Label values are bounded and carry no secrets:
//! - `outcome` is one of five fixed values ([`Outcome`]);
//! - a failure `label` is a short slug such as `auth` or `rate-limited`; anything else (an error message, say)
//!   becomes `other`, and at most [`MAX_FAILURE_LABELS`] distinct slugs are kept;
//! - `registry` is a host name (with port), with any scheme, path and `user:password@` stripped; at most
//!   [`MAX_REGISTRIES`] distinct hosts are kept, the rest are summed under `other`;
//! - `method` is an HTTP method from a fixed list, else `OTHER`;
//! - `repository` and `tag` must be valid ECR names and are exported for at most [`MAX_TAG_SERIES`] pairs per run
//!   (out-of-sync pairs first); the number of pairs left out is `ecr_mirror_sync_tag_in_sync_omitted`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

/// The prefix of every metric name.
pub const PREFIX: &str = "ecr_mirror_sync";
/// The Pushgateway `job` used when the caller has no better name.
pub const DEFAULT_JOB: &str = "ecr-mirror-sync";
/// At most this many `(repository, tag)` series of `ecr_mirror_sync_tag_in_sync` per run (per shard when sharded).
/// Beyond it, out-of-sync pairs are kept first, then in-sync pairs in name order; the rest are only counted, in
/// `ecr_mirror_sync_tag_in_sync_omitted`. The per-outcome totals always count every item.
pub const MAX_TAG_SERIES: usize = 1000;
/// At most this many distinct `registry` label values; the registries with the fewest requests beyond it are
/// summed under `registry="other"`.
pub const MAX_REGISTRIES: usize = 32;
/// At most this many distinct failure `label` values; the rarest beyond it are summed under `label="other"`.
pub const MAX_FAILURE_LABELS: usize = 32;
/// How long a push may take, connection included (it also runs on SIGTERM, within the pod's grace period).
pub const PUSH_TIMEOUT: Duration = Duration::from_secs(10);
/// The Content-Type of what [`render`] returns.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

const LAST_SUCCESS: &str = "last_success_timestamp_seconds";

/// What happened to one item (one repository and tag).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outcome {
    /// Copied (it was missing or stale); the tag is now in sync.
    Copied,
    /// Already in sync: nothing to do.
    InSync,
    /// Failed (an error: network, auth, not found, ...).
    Failed,
    /// Refused by the trust policy.
    Blocked,
    /// Not attempted in this run (a dry run, a budget or the run was stopped first); it will be tried next time.
    Deferred,
}

impl Outcome {
    /// Every outcome, in the order they are rendered.
    pub const ALL: [Outcome; 5] = [
        Outcome::Copied,
        Outcome::InSync,
        Outcome::Failed,
        Outcome::Blocked,
        Outcome::Deferred,
    ];

    /// The `outcome` label value: `copied`, `in-sync`, `failed`, `blocked` or `deferred`.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Copied => "copied",
            Outcome::InSync => "in-sync",
            Outcome::Failed => "failed",
            Outcome::Blocked => "blocked",
            Outcome::Deferred => "deferred",
        }
    }

    /// Whether the destination tag matches upstream after the run.
    pub fn is_in_sync(self) -> bool {
        matches!(self, Outcome::Copied | Outcome::InSync)
    }
}

/// One item of a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ItemMetric {
    /// The ECR repository, e.g. `mirror/library/nginx`.
    pub repository: String,
    /// The tag, e.g. `1.27`.
    pub tag: String,
    /// What happened.
    pub outcome: Outcome,
    /// For a failed or blocked item, its failure label (`auth`, `rate-limited`, `not-found`, ...). Never an
    /// error message: anything that is not a short slug is exported as `other`. Ignored for other outcomes.
    pub label: Option<String>,
}

/// Everything the metrics of one run are made of. Plain data: the caller fills it in.
#[derive(Clone, Debug)]
pub struct RunMetrics {
    /// The Pushgateway grouping key `job` (e.g. [`DEFAULT_JOB`]). Not rendered as a label: the Pushgateway adds
    /// it, and a textfile collector has its own.
    pub job: String,
    /// `Some((index, count))` when sharded (`--shard I/N`): the push goes to `.../shard/<index>`.
    pub shard: Option<(u32, u32)>,
    /// One entry per item.
    pub outcomes: Vec<ItemMetric>,
    /// Bytes uploaded to the destination (blobs and manifests).
    pub bytes_copied: u64,
    /// Wall time of the run.
    pub duration_secs: f64,
    /// Requests retried (each retry counts once).
    pub retries: u64,
    /// `(registry host, HTTP method, count)`; the same pair may appear more than once (the counts are added).
    pub requests: Vec<(String, String, u64)>,
    /// `(registry host, last RateLimit-Remaining seen)`; the last entry of a registry wins.
    pub rate_limit_remaining: Vec<(String, u64)>,
    /// When the run ended.
    pub finished_at: SystemTime,
    /// The run succeeded: it finished and no item failed or was blocked (exit code 0). Only then is
    /// `ecr_mirror_sync_last_success_timestamp_seconds` set to `finished_at`.
    pub success: bool,
}

impl RunMetrics {
    /// An empty, successful run for `job`, finished now.
    pub fn new(job: impl Into<String>) -> Self {
        Self {
            job: job.into(),
            shard: None,
            outcomes: Vec::new(),
            bytes_copied: 0,
            duration_secs: 0.0,
            retries: 0,
            requests: Vec::new(),
            rate_limit_remaining: Vec::new(),
            finished_at: SystemTime::now(),
            success: true,
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailureLabels {
    outcome: &'static str,
    label: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    registry: String,
    method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RegistryLabels {
    registry: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TagLabels {
    repository: String,
    tag: String,
}

type IntGauge = Gauge<i64, AtomicI64>;
type FloatGauge = Gauge<f64, AtomicU64>;

fn int_gauge(v: u64) -> IntGauge {
    let g = IntGauge::default();
    g.set(i64::try_from(v).unwrap_or(i64::MAX));
    g
}

fn float_gauge(v: f64) -> FloatGauge {
    let g = FloatGauge::default();
    g.set(v);
    g
}

fn unix_secs(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The metrics of a run in the Prometheus text format (version 0.0.4, [`CONTENT_TYPE`]).
///
/// `ecr_mirror_sync_last_success_timestamp_seconds` is present only when `m.success`; see [`write_file_atomic`]
/// and [`push`] for how an earlier success is kept after a failed run.
pub fn render(m: &RunMetrics) -> String {
    render_with(
        m,
        if m.success {
            Some(unix_secs(m.finished_at))
        } else {
            None
        },
    )
}

fn render_with(m: &RunMetrics, last_success: Option<f64>) -> String {
    let mut reg = Registry::with_prefix(PREFIX);

    reg.register(
        "build",
        "The ecr-mirror-sync version that ran",
        Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
    );

    let items = Family::<OutcomeLabels, IntGauge>::default();
    let mut counts: BTreeMap<Outcome, u64> = Outcome::ALL.iter().map(|o| (*o, 0)).collect();
    for it in &m.outcomes {
        *counts.entry(it.outcome).or_default() += 1;
    }
    for (o, n) in &counts {
        items
            .get_or_create(&OutcomeLabels {
                outcome: o.as_str(),
            })
            .set(i64::try_from(*n).unwrap_or(i64::MAX));
    }
    reg.register(
        "items",
        "Items (repository and tag) of the last run, by outcome: copied, in-sync, failed, blocked, deferred",
        items,
    );

    let failures = Family::<FailureLabels, IntGauge>::default();
    let mut by_label: BTreeMap<(&'static str, String), u64> = BTreeMap::new();
    for it in m
        .outcomes
        .iter()
        .filter(|i| matches!(i.outcome, Outcome::Failed | Outcome::Blocked))
    {
        let label = failure_label(it.label.as_deref());
        *by_label.entry((it.outcome.as_str(), label)).or_default() += 1;
    }
    for ((outcome, label), n) in
        cap_by_count(by_label, MAX_FAILURE_LABELS, |(o, _)| (*o, "other".into()))
    {
        failures
            .get_or_create(&FailureLabels { outcome, label })
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }
    reg.register(
        "failures",
        "Failed and blocked items of the last run, by outcome and failure label (auth, rate-limited, ...)",
        failures,
    );

    reg.register_with_unit(
        "copied",
        "Bytes uploaded to the destination in the last run",
        Unit::Bytes,
        int_gauge(m.bytes_copied),
    );
    reg.register_with_unit(
        "run_duration",
        "Wall time of the last run",
        Unit::Seconds,
        float_gauge(m.duration_secs),
    );
    reg.register(
        "retries",
        "Requests retried in the last run",
        int_gauge(m.retries),
    );

    let requests = Family::<RequestLabels, IntGauge>::default();
    let mut req: BTreeMap<(String, &'static str), u64> = BTreeMap::new();
    for (registry, method, n) in &m.requests {
        *req.entry((registry_label(registry), method_label(method)))
            .or_default() += n;
    }
    let kept = kept_registries(req.iter().map(|((r, _), n)| (r.clone(), *n)));
    let mut capped: BTreeMap<(String, &'static str), u64> = BTreeMap::new();
    for ((r, meth), n) in req {
        let r = if kept.contains(&r) { r } else { "other".into() };
        *capped.entry((r, meth)).or_default() += n;
    }
    for ((registry, method), n) in capped {
        requests
            .get_or_create(&RequestLabels { registry, method })
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }
    reg.register(
        "requests",
        "HTTP requests sent in the last run, by registry host and method",
        requests,
    );

    let remaining = Family::<RegistryLabels, IntGauge>::default();
    let mut last: BTreeMap<String, u64> = BTreeMap::new();
    for (registry, v) in &m.rate_limit_remaining {
        last.insert(registry_label(registry), *v);
    }
    let kept = kept_registries(last.keys().map(|r| (r.clone(), 1)));
    for (registry, v) in last.into_iter().filter(|(r, _)| kept.contains(r)) {
        remaining
            .get_or_create(&RegistryLabels { registry })
            .set(i64::try_from(v).unwrap_or(i64::MAX));
    }
    reg.register(
        "rate_limit_remaining",
        "The last RateLimit-Remaining a registry sent in the last run (pulls left in its window)",
        remaining,
    );

    let (series, omitted) = tag_series(&m.outcomes);
    let in_sync = Family::<TagLabels, IntGauge>::default();
    for ((repository, tag), ok) in series {
        in_sync
            .get_or_create(&TagLabels { repository, tag })
            .set(i64::from(ok));
    }
    reg.register(
        "tag_in_sync",
        format!(
            "1 when the repository's tag matched upstream after the last run, else 0 (at most {MAX_TAG_SERIES} \
             series, out-of-sync first)"
        ),
        in_sync,
    );
    reg.register(
        "tag_in_sync_omitted",
        "Repository and tag pairs of the last run left out of tag_in_sync (over its bound, or not valid names)",
        int_gauge(omitted),
    );

    reg.register(
        "shards",
        "Number of shards the run is split into (1 when not sharded)",
        int_gauge(u64::from(m.shard.map_or(1, |(_, n)| n.max(1)))),
    );
    reg.register(
        "last_run_timestamp_seconds",
        "Unix time the last run ended",
        float_gauge(unix_secs(m.finished_at)),
    );
    reg.register(
        "last_run_success",
        "1 when the last run succeeded (no failed or blocked item), else 0",
        int_gauge(u64::from(m.success)),
    );
    if let Some(t) = last_success {
        reg.register(
            LAST_SUCCESS,
            "Unix time the last successful run ended",
            float_gauge(t),
        );
    }

    let mut out = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut out, &reg)
        .expect("writing to a String cannot fail");
    out
}

/// Keeps the `max` entries with the highest counts (ties by key order); the rest are added under `other(key)`.
fn cap_by_count<K: Ord + Clone>(
    m: BTreeMap<K, u64>,
    max: usize,
    other: impl Fn(&K) -> K,
) -> BTreeMap<K, u64> {
    if m.len() <= max {
        return m;
    }
    let mut v: Vec<(K, u64)> = m.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let mut out = BTreeMap::new();
    for (i, (k, n)) in v.into_iter().enumerate() {
        let k = if i < max.saturating_sub(1) {
            k
        } else {
            other(&k)
        };
        *out.entry(k).or_default() += n;
    }
    out
}

/// The registries kept as label values: the [`MAX_REGISTRIES`] - 1 with the most requests when there are more
/// than [`MAX_REGISTRIES`] (the last slot is `other`).
fn kept_registries(counts: impl Iterator<Item = (String, u64)>) -> BTreeSet<String> {
    let mut total: BTreeMap<String, u64> = BTreeMap::new();
    for (r, n) in counts {
        *total.entry(r).or_default() += n;
    }
    if total.len() <= MAX_REGISTRIES {
        return total.into_keys().collect();
    }
    let mut v: Vec<(String, u64)> = total.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v.into_iter()
        .take(MAX_REGISTRIES - 1)
        .map(|(r, _)| r)
        .collect()
}

/// The bounded `(repository, tag) → in sync` series, and how many pairs were left out.
/// `((repository, tag), in sync)`.
type TagSeries = ((String, String), bool);

fn tag_series(items: &[ItemMetric]) -> (Vec<TagSeries>, u64) {
    let mut omitted = 0u64;
    let mut pairs: BTreeMap<(String, String), bool> = BTreeMap::new();
    let mut invalid: BTreeSet<(&str, &str)> = BTreeSet::new();
    for it in items {
        if !valid_repository(&it.repository) || !valid_tag(&it.tag) {
            invalid.insert((&it.repository, &it.tag));
            continue;
        }
        let e = pairs
            .entry((it.repository.clone(), it.tag.clone()))
            .or_insert(true);
        *e &= it.outcome.is_in_sync();
    }
    omitted += invalid.len() as u64;
    let mut v: Vec<TagSeries> = pairs.into_iter().collect();
    // Out-of-sync first (false < true), then by name: a stable choice, and the actionable series survive.
    v.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
    if v.len() > MAX_TAG_SERIES {
        omitted += (v.len() - MAX_TAG_SERIES) as u64;
        v.truncate(MAX_TAG_SERIES);
    }
    (v, omitted)
}

/// An ECR repository name: lowercase letters, digits, `.`, `_`, `-` and `/`, at most 256 characters.
fn valid_repository(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 256
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-/".contains(&b))
        && s.split('/')
            .all(|c| c.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric()))
}

/// An OCI tag: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
fn valid_tag(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphanumeric() || c == b'_')
        && s.len() <= 128
        && b.all(|c| c.is_ascii_alphanumeric() || b"._-".contains(&c))
}

/// A failure label as exported: a lowercase slug of at most 40 characters (`auth`, `rate-limited`), `unknown`
/// when there is none, and `other` for anything else (an error message is never exported).
fn failure_label(label: Option<&str>) -> String {
    let Some(l) = label.map(str::trim) else {
        return "unknown".into();
    };
    let ok = !l.is_empty()
        && l.len() <= 40
        && l.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
        && l.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        l.to_owned()
    } else {
        "other".into()
    }
}

/// A registry as exported: its host name and port, lowercase, without scheme, `user:password@` or path.
/// Anything that is not a host name becomes `other`.
fn registry_label(s: &str) -> String {
    let s = s.trim();
    let s = s.split_once("://").map_or(s, |(_, rest)| rest);
    let host = s.split(['/', '?', '#']).next().unwrap_or("");
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    let host = host.to_ascii_lowercase();
    let ok = !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b));
    if ok {
        host
    } else {
        "other".into()
    }
}

fn method_label(m: &str) -> &'static str {
    const METHODS: [&str; 7] = ["GET", "HEAD", "PUT", "POST", "PATCH", "DELETE", "OPTIONS"];
    METHODS
        .iter()
        .find(|k| k.eq_ignore_ascii_case(m.trim()))
        .copied()
        .unwrap_or("OTHER")
}

mod push;
pub use push::{push, write_file_atomic};
#[cfg(test)]
use push::{push_target, PushError};

use ecr_mirror_sync::mirror::exec::{Executed, Outcome as ItemOutcome, SyncRun};

/// The metrics of a `sync`: `run` is `None` when the run stopped before it had a plan (a failed
/// discovery), which is a failed run with no items.
pub fn of_sync(
    job: &str,
    shard: Option<(u32, u32)>,
    run: Option<&SyncRun>,
    duration_secs: f64,
    exit_code: u8,
) -> RunMetrics {
    let mut m = RunMetrics::new(job);
    m.shard = shard;
    m.duration_secs = duration_secs;
    m.success = exit_code == 0;
    let Some(run) = run else {
        m.success = false;
        return m;
    };
    m.retries = run.retries;
    m.outcomes = run.results.iter().filter_map(item_metric).collect();
    m.bytes_copied = run
        .results
        .iter()
        .map(|e| match &e.outcome {
            ItemOutcome::Copied(r) => r.bytes,
            _ => 0,
        })
        .sum();
    for r in &run.registries {
        for (method, n) in &r.requests {
            m.requests
                .push((r.registry.clone(), method.to_string(), *n));
        }
        if let Some(v) = r.rate_limit_remaining {
            m.rate_limit_remaining
                .push((r.registry.clone(), u64::try_from(v).unwrap_or(0)));
        }
    }
    m
}

/// One executed item as a metric; repository-level errors (no tag) count under tag `*`.
fn item_metric(e: &Executed) -> Option<ItemMetric> {
    let (outcome, label) = match &e.outcome {
        ItemOutcome::Skipped => (Outcome::InSync, None),
        ItemOutcome::Copied(_) => (Outcome::Copied, None),
        ItemOutcome::Failed(f) => (Outcome::Failed, Some(f.label.as_str().to_string())),
        ItemOutcome::Blocked(f) => (Outcome::Blocked, Some(f.label.as_str().to_string())),
        ItemOutcome::Deferred(f) => (Outcome::Deferred, Some(f.label.as_str().to_string())),
    };
    Some(ItemMetric {
        repository: e.action.repository.clone(),
        tag: e.action.tag.clone().unwrap_or_else(|| "*".into()),
        outcome,
        label,
    })
}

/// Writes the metrics file and pushes to the Pushgateway, as configured. Failures are warnings:
/// metrics never fail a run.
pub async fn publish(file: Option<&Path>, pushgateway: Option<&str>, m: &RunMetrics) {
    if let Some(path) = file {
        match write_file_atomic(path, m) {
            Ok(()) => tracing::info!(file = %path.display(), "metrics written"),
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "could not write the metrics file")
            }
        }
    }
    if let Some(url) = pushgateway {
        match push(url, m).await {
            Ok(()) => tracing::info!("metrics pushed to the Pushgateway"),
            // PushError never shows the URL's credentials.
            Err(e) => tracing::warn!(error = %e, "could not push the metrics"),
        }
    }
}

#[cfg(test)]
mod tests {
    //! The rendered text is checked by the real `promtool check metrics` (Debian `prometheus`), and pushes go to a
    //! real `prometheus-pushgateway` (Debian `prometheus-pushgateway`) on a free loopback port. `make deps`
    //! installs both; a missing tool fails the test.
    use super::*;
    use std::process::{Child, Command, Stdio};

    fn tool(name: &str, env: &str) -> PathBuf {
        if let Some(p) = std::env::var_os(env) {
            return PathBuf::from(p);
        }
        let found = std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join(name))
                .find(|p| p.is_file())
        });
        found.unwrap_or_else(|| {
            panic!(
                "{name} not found on PATH: run `make deps` (its apt-deps step installs the Debian packages \
                 prometheus and prometheus-pushgateway), or set {env}"
            )
        })
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn item(repo: &str, tag: &str, outcome: Outcome, label: Option<&str>) -> ItemMetric {
        ItemMetric {
            repository: repo.into(),
            tag: tag.into(),
            outcome,
            label: label.map(Into::into),
        }
    }

    /// A run with every kind of value, including ones that must not reach a label as they are.
    fn sample() -> RunMetrics {
        RunMetrics {
            job: "ecr-mirror-sync".into(),
            shard: None,
            outcomes: vec![
                item("mirror/library/nginx", "1.27", Outcome::Copied, None),
                item("mirror/library/nginx", "1.26", Outcome::InSync, None),
                item(
                    "mirror/kedacore/keda",
                    "2.16.0",
                    Outcome::Failed,
                    Some("auth"),
                ),
                item(
                    "mirror/kedacore/keda",
                    "2.15.0",
                    Outcome::Failed,
                    Some("rate-limited"),
                ),
                item(
                    "mirror/quay/prom",
                    "v3",
                    Outcome::Failed,
                    Some("GET https://user:hunter2@quay.io/v2/x: 500 \"oops\"\nline"),
                ),
                item(
                    "mirror/ghcr/app",
                    "v1",
                    Outcome::Blocked,
                    Some("policy-rejected"),
                ),
                item("mirror/ghcr/app", "v2", Outcome::Deferred, None),
            ],
            bytes_copied: 123_456_789,
            duration_secs: 42.5,
            retries: 3,
            requests: vec![
                ("registry-1.docker.io".into(), "HEAD".into(), 10),
                (
                    "https://bob:hunter2@Registry-1.Docker.io/v2/".into(),
                    "get".into(),
                    4,
                ),
                ("registry-1.docker.io".into(), "HEAD".into(), 5),
                (
                    "123456789012.dkr.ecr.eu-west-1.amazonaws.com".into(),
                    "PUT".into(),
                    7,
                ),
                ("quay.io".into(), "BREW".into(), 1),
            ],
            rate_limit_remaining: vec![
                ("registry-1.docker.io".into(), 99),
                ("registry-1.docker.io".into(), 97),
            ],
            finished_at: at(1_796_000_000),
            success: false,
        }
    }

    /// `name{labels} value` lines, as (name with labels, value).
    fn samples(text: &str) -> BTreeMap<String, String> {
        text.lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .map(|l| {
                let (k, v) = l.rsplit_once(' ').expect("a sample line");
                (k.to_owned(), v.to_owned())
            })
            .collect()
    }

    /// The labels of a sample key, e.g. `a{x="1",y="2"}` → {x: 1, y: 2}.
    fn labels_of(key: &str) -> BTreeMap<String, String> {
        let Some((_, rest)) = key.split_once('{') else {
            return BTreeMap::new();
        };
        rest.trim_end_matches('}')
            .split("\",")
            .map(|kv| {
                let (k, v) = kv.split_once("=\"").unwrap();
                (k.to_owned(), v.trim_end_matches('"').to_owned())
            })
            .collect()
    }

    fn value(text: &str, name: &str, want: &[(&str, &str)]) -> Option<String> {
        samples(text).into_iter().find_map(|(k, v)| {
            let base = k.split('{').next().unwrap();
            let l = labels_of(&k);
            (base == name
                && want
                    .iter()
                    .all(|(a, b)| l.get(*a).map(String::as_str) == Some(*b))
                && l.len() == want.len())
            .then_some(v)
        })
    }

    fn promtool_check(text: &str) -> (bool, String) {
        let mut child = Command::new(tool("promtool", "PROMTOOL"))
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("promtool runs");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let msg = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success() && msg.trim().is_empty(), msg)
    }

    #[test]
    fn every_metric_is_rendered_with_bounded_labels() {
        let text = render(&sample());
        let v = |n: &str, l: &[(&str, &str)]| value(&text, n, l);
        assert_eq!(
            v("ecr_mirror_sync_items", &[("outcome", "copied")]).as_deref(),
            Some("1")
        );
        assert_eq!(
            v("ecr_mirror_sync_items", &[("outcome", "in-sync")]).as_deref(),
            Some("1")
        );
        assert_eq!(
            v("ecr_mirror_sync_items", &[("outcome", "failed")]).as_deref(),
            Some("3")
        );
        assert_eq!(
            v("ecr_mirror_sync_items", &[("outcome", "blocked")]).as_deref(),
            Some("1")
        );
        assert_eq!(
            v("ecr_mirror_sync_items", &[("outcome", "deferred")]).as_deref(),
            Some("1")
        );
        let f = |o: &str, l: &str| v("ecr_mirror_sync_failures", &[("outcome", o), ("label", l)]);
        assert_eq!(f("failed", "auth").as_deref(), Some("1"));
        assert_eq!(f("failed", "rate-limited").as_deref(), Some("1"));
        assert_eq!(
            f("failed", "other").as_deref(),
            Some("1"),
            "an error message is `other`"
        );
        assert_eq!(f("blocked", "policy-rejected").as_deref(), Some("1"));
        assert_eq!(
            v("ecr_mirror_sync_copied_bytes", &[]).as_deref(),
            Some("123456789")
        );
        assert_eq!(
            v("ecr_mirror_sync_run_duration_seconds", &[]).as_deref(),
            Some("42.5")
        );
        assert_eq!(v("ecr_mirror_sync_retries", &[]).as_deref(), Some("3"));
        let r = |reg: &str, m: &str| {
            v(
                "ecr_mirror_sync_requests",
                &[("registry", reg), ("method", m)],
            )
        };
        assert_eq!(
            r("registry-1.docker.io", "HEAD").as_deref(),
            Some("15"),
            "counts add up"
        );
        assert_eq!(
            r("registry-1.docker.io", "GET").as_deref(),
            Some("4"),
            "userinfo, scheme, path gone"
        );
        assert_eq!(r("quay.io", "OTHER").as_deref(), Some("1"));
        assert_eq!(
            v(
                "ecr_mirror_sync_rate_limit_remaining",
                &[("registry", "registry-1.docker.io")]
            )
            .as_deref(),
            Some("97"),
            "the last value wins"
        );
        let t = |repo: &str, tag: &str| {
            v(
                "ecr_mirror_sync_tag_in_sync",
                &[("repository", repo), ("tag", tag)],
            )
        };
        assert_eq!(t("mirror/library/nginx", "1.27").as_deref(), Some("1"));
        assert_eq!(t("mirror/library/nginx", "1.26").as_deref(), Some("1"));
        assert_eq!(t("mirror/kedacore/keda", "2.16.0").as_deref(), Some("0"));
        assert_eq!(
            t("mirror/ghcr/app", "v2").as_deref(),
            Some("0"),
            "deferred is not in sync"
        );
        assert_eq!(
            v("ecr_mirror_sync_tag_in_sync_omitted", &[]).as_deref(),
            Some("0")
        );
        assert_eq!(
            v("ecr_mirror_sync_last_run_timestamp_seconds", &[]).as_deref(),
            Some("1796000000.0")
        );
        assert_eq!(
            v("ecr_mirror_sync_last_run_success", &[]).as_deref(),
            Some("0")
        );
        assert_eq!(v("ecr_mirror_sync_shards", &[]).as_deref(), Some("1"));
        assert!(
            v("ecr_mirror_sync_last_success_timestamp_seconds", &[]).is_none(),
            "a failed run has no success time"
        );
        assert_eq!(
            v(
                "ecr_mirror_sync_build_info",
                &[("version", env!("CARGO_PKG_VERSION"))]
            )
            .as_deref(),
            Some("1")
        );
        for secret in ["hunter2", "bob", "oops", "https://"] {
            assert!(!text.contains(secret), "{secret:?} leaked into\n{text}");
        }

        let mut ok = sample();
        ok.success = true;
        ok.shard = Some((2, 3));
        let text = render(&ok);
        assert_eq!(
            value(&text, "ecr_mirror_sync_last_success_timestamp_seconds", &[]).as_deref(),
            Some("1796000000.0")
        );
        assert_eq!(
            value(&text, "ecr_mirror_sync_shards", &[]).as_deref(),
            Some("3")
        );
        assert!(
            !text.contains("shard=\""),
            "the shard is the grouping key's, not a label in the body"
        );
    }

    #[test]
    fn promtool_accepts_the_text() {
        for m in [sample(), RunMetrics::new("empty"), {
            let mut s = sample();
            s.success = true;
            s
        }] {
            let text = render(&m);
            let (ok, msg) = promtool_check(&text);
            assert!(ok, "promtool check metrics:\n{msg}\non:\n{text}");
        }
        // The check is real: promtool rejects what a naive encoder could write.
        let (ok, _) = promtool_check("# TYPE x counter\nx{a=\"1\" 1\n");
        assert!(!ok, "promtool should reject a broken exposition");
    }

    #[test]
    fn tag_series_are_bounded_out_of_sync_first() {
        let mut m = RunMetrics::new("j");
        for i in 0..(MAX_TAG_SERIES + 500) {
            m.outcomes
                .push(item("mirror/a", &format!("t{i:05}"), Outcome::InSync, None));
        }
        m.outcomes
            .push(item("mirror/z", "broken", Outcome::Failed, Some("auth")));
        m.outcomes
            .push(item("Mirror/Bad Name", "x", Outcome::Failed, Some("auth")));
        m.outcomes
            .push(item("mirror/a", "bad tag!", Outcome::Copied, None));
        let text = render(&m);
        let series: Vec<_> = samples(&text)
            .into_iter()
            .filter(|(k, _)| k.starts_with("ecr_mirror_sync_tag_in_sync{"))
            .collect();
        assert_eq!(series.len(), MAX_TAG_SERIES);
        assert_eq!(
            value(
                &text,
                "ecr_mirror_sync_tag_in_sync",
                &[("repository", "mirror/z"), ("tag", "broken")]
            )
            .as_deref(),
            Some("0"),
            "the out-of-sync tag is kept although it sorts last by name"
        );
        assert_eq!(
            value(&text, "ecr_mirror_sync_tag_in_sync_omitted", &[]).as_deref(),
            Some("503"),
            "501 over the bound, 2 invalid names"
        );
        assert_eq!(
            value(&text, "ecr_mirror_sync_items", &[("outcome", "in-sync")]).as_deref(),
            Some("1500"),
            "the totals count every item"
        );
        assert!(!text.contains("Bad Name") && !text.contains("bad tag!"));
        // A tag failed on one platform and copied on another is not in sync.
        let mut m = RunMetrics::new("j");
        m.outcomes
            .push(item("mirror/a", "v1", Outcome::Copied, None));
        m.outcomes
            .push(item("mirror/a", "v1", Outcome::Failed, Some("transport")));
        let text = render(&m);
        assert_eq!(
            value(
                &text,
                "ecr_mirror_sync_tag_in_sync",
                &[("repository", "mirror/a"), ("tag", "v1")]
            )
            .as_deref(),
            Some("0")
        );
    }

    #[test]
    fn registries_and_failure_labels_are_capped() {
        let mut m = RunMetrics::new("j");
        for i in 0..(MAX_REGISTRIES as u64 + 10) {
            m.requests
                .push((format!("r{i:02}.example"), "GET".into(), 100 - i));
            m.rate_limit_remaining.push((format!("r{i:02}.example"), i));
        }
        for i in 0..(MAX_FAILURE_LABELS + 10) {
            m.outcomes.push(item(
                "mirror/a",
                &format!("t{i}"),
                Outcome::Failed,
                Some(&format!("l{i:02}")),
            ));
        }
        let text = render(&m);
        let count = |prefix: &str| {
            samples(&text)
                .keys()
                .filter(|k| k.starts_with(prefix))
                .count()
        };
        assert_eq!(count("ecr_mirror_sync_requests{"), MAX_REGISTRIES);
        assert_eq!(
            count("ecr_mirror_sync_rate_limit_remaining{"),
            MAX_REGISTRIES - 1
        );
        assert_eq!(count("ecr_mirror_sync_failures{"), MAX_FAILURE_LABELS);
        assert_eq!(
            value(
                &text,
                "ecr_mirror_sync_requests",
                &[("registry", "other"), ("method", "GET")]
            )
            .as_deref(),
            Some(
                ((100 - MAX_REGISTRIES as u64 - 9)..=(100 - MAX_REGISTRIES as u64 + 1))
                    .sum::<u64>()
                    .to_string()
                    .as_str()
            ),
            "the 11 smallest registries are summed under other"
        );
        assert_eq!(
            value(
                &text,
                "ecr_mirror_sync_failures",
                &[("outcome", "failed"), ("label", "other")]
            )
            .as_deref(),
            Some("11")
        );
        let (ok, msg) = promtool_check(&text);
        assert!(ok, "{msg}");
    }

    #[test]
    fn label_cleaning() {
        assert_eq!(
            registry_label("https://u:p@Quay.IO:443/v2/?x"),
            "quay.io:443"
        );
        assert_eq!(registry_label("[::1]:5000"), "[::1]:5000");
        assert_eq!(registry_label("bad host"), "other");
        assert_eq!(registry_label(""), "other");
        assert_eq!(failure_label(Some("rate-limited")), "rate-limited");
        assert_eq!(failure_label(Some("Rate limited: 429")), "other");
        assert_eq!(failure_label(Some(&"a".repeat(41))), "other");
        assert_eq!(failure_label(None), "unknown");
        assert_eq!(method_label("patch"), "PATCH");
        assert!(valid_repository("mirror/library/nginx"));
        assert!(!valid_repository("/x") && !valid_repository("x//y") && !valid_repository("X"));
        assert!(
            valid_tag("v1.2.3-rc_1")
                && valid_tag("_x")
                && !valid_tag(".x")
                && !valid_tag(&"a".repeat(129))
        );
    }

    #[test]
    fn write_file_atomic_replaces_the_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ecr_mirror_sync.prom");
        let mut ok = sample();
        ok.success = true;
        write_file_atomic(&path, &ok).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap().lines().count(),
            render(&ok).lines().count()
        );
        let names = || {
            let mut v: Vec<String> = std::fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        };
        assert_eq!(names(), ["ecr_mirror_sync.prom"]);

        // A failed run later: the file keeps the last success's time.
        let mut failed = sample();
        failed.finished_at = at(1_796_086_400);
        write_file_atomic(&path, &failed).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(names(), ["ecr_mirror_sync.prom"]);
        assert_eq!(
            value(&text, "ecr_mirror_sync_last_success_timestamp_seconds", &[]).as_deref(),
            Some("1796000000.0")
        );
        assert_eq!(
            value(&text, "ecr_mirror_sync_last_run_timestamp_seconds", &[]).as_deref(),
            Some("1796086400.0")
        );
        assert!(promtool_check(&text).0);

        // A failed first run has no success time at all.
        let fresh = dir.path().join("first.prom");
        write_file_atomic(&fresh, &failed).unwrap();
        assert!(value(
            &std::fs::read_to_string(&fresh).unwrap(),
            "ecr_mirror_sync_last_success_timestamp_seconds",
            &[]
        )
        .is_none());

        // An error (the directory is gone) leaves nothing behind and is returned.
        let gone = dir.path().join("missing/ecr.prom");
        assert!(write_file_atomic(&gone, &ok).is_err());
        assert_eq!(names(), ["ecr_mirror_sync.prom", "first.prom"]);
        // A path that is a directory: the rename fails, the temporary file is removed.
        let sub = dir.path().join("sub.prom");
        std::fs::create_dir(&sub).unwrap();
        std::fs::write(sub.join("keep"), "x").unwrap();
        assert!(write_file_atomic(&sub, &ok).is_err());
        assert_eq!(names(), ["ecr_mirror_sync.prom", "first.prom", "sub.prom"]);
    }

    #[test]
    fn push_targets() {
        let m = RunMetrics::new("ecr-mirror-sync");
        let (u, c) = push_target("http://pg.monitoring:9091", &m).unwrap();
        assert_eq!(
            u.as_str(),
            "http://pg.monitoring:9091/metrics/job/ecr-mirror-sync"
        );
        assert!(c.is_none());
        let mut s = RunMetrics::new("team a/mirror");
        s.shard = Some((0, 3));
        let (u, c) = push_target("https://me:p%40ss@pg.example/prefix/", &s).unwrap();
        assert_eq!(
            u.as_str(),
            "https://pg.example/prefix/metrics/job@base64/dGVhbSBhL21pcnJvcg==/shard/0"
        );
        assert_eq!(c, Some(("me".into(), "p@ss".into())));
        assert!(matches!(
            push_target("pg:9091", &m),
            Err(PushError::InvalidUrl(_))
        ));
        assert!(matches!(
            push_target("ftp://pg", &m),
            Err(PushError::InvalidUrl(_))
        ));
        let e = push_target("ftp://u:secret@x", &m).unwrap_err().to_string();
        assert!(!e.contains("secret"), "{e}");
    }

    /// A real server (the Pushgateway, node-exporter) on a free loopback port, stopped on drop.
    struct Server {
        child: Child,
        url: String,
    }

    impl Server {
        /// Starts `name` (found on PATH, or `$env`) with `--web.listen-address=127.0.0.1:PORT` and `args`, and
        /// waits until `ready` answers 2xx.
        async fn start(name: &str, env: &str, args: &[String], ready: &str) -> Self {
            let bin = tool(name, env);
            for _attempt in 0..5 {
                let port = std::net::TcpListener::bind("127.0.0.1:0")
                    .unwrap()
                    .local_addr()
                    .unwrap()
                    .port();
                let mut child = Command::new(&bin)
                    .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                    .args(args)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
                let url = format!("http://127.0.0.1:{port}");
                let client = reqwest::Client::new();
                for _ in 0..100 {
                    if let Ok(Some(_)) = child.try_wait() {
                        break; // the port was taken meanwhile: try another
                    }
                    if let Ok(r) = client.get(format!("{url}{ready}")).send().await {
                        if r.status().is_success() {
                            return Self { child, url };
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                let _ = child.kill();
                let _ = child.wait();
            }
            panic!("{name} did not become ready on a loopback port");
        }

        /// A Pushgateway without persistence.
        async fn pushgateway() -> Self {
            Self::start(
                "prometheus-pushgateway",
                "PUSHGATEWAY_BIN",
                &["--persistence.file=".into(), "--log.level=warn".into()],
                "/-/ready",
            )
            .await
        }

        async fn metrics(&self) -> String {
            reqwest::get(format!("{}/metrics", self.url))
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        }
    }

    impl Drop for Server {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    /// node-exporter's textfile collector reads the file as written (and would report a parse error in
    /// `node_textfile_scrape_error`), and ignores the temporary name.
    #[tokio::test]
    async fn node_exporter_reads_the_metrics_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ecr_mirror_sync.prom");
        write_file_atomic(&path, &sample()).unwrap();
        let ne = Server::start(
            "prometheus-node-exporter",
            "NODE_EXPORTER_BIN",
            &[
                "--collector.disable-defaults".into(),
                "--collector.textfile".into(),
                format!("--collector.textfile.directory={}", dir.path().display()),
                "--log.level=warn".into(),
            ],
            "/",
        )
        .await;
        let text = ne.metrics().await;
        assert_eq!(
            value(&text, "node_textfile_scrape_error", &[]).as_deref(),
            Some("0"),
            "{text}"
        );
        assert_eq!(
            value(&text, "ecr_mirror_sync_items", &[("outcome", "failed")]).as_deref(),
            Some("3"),
            "{text}"
        );
        let series = pushed(&text, "ecr_mirror_sync_tag_in_sync", &[]);
        assert_eq!(series.len(), 7, "{text}");
        // A second write while it serves: the next scrape has the new values.
        let mut ok = sample();
        ok.success = true;
        ok.outcomes.truncate(2);
        write_file_atomic(&path, &ok).unwrap();
        let text = ne.metrics().await;
        assert_eq!(
            value(&text, "node_textfile_scrape_error", &[]).as_deref(),
            Some("0")
        );
        assert_eq!(
            value(&text, "ecr_mirror_sync_items", &[("outcome", "failed")]).as_deref(),
            Some("0")
        );
        assert_eq!(
            value(&text, "ecr_mirror_sync_last_run_success", &[]).as_deref(),
            Some("1")
        );
    }

    /// Samples of `name` whose labels include `want`.
    fn pushed(
        text: &str,
        name: &str,
        want: &[(&str, &str)],
    ) -> Vec<(BTreeMap<String, String>, String)> {
        samples(text)
            .into_iter()
            .filter(|(k, _)| k.split('{').next() == Some(name))
            .map(|(k, v)| (labels_of(&k), v))
            .filter(|(l, _)| {
                want.iter()
                    .all(|(a, b)| l.get(*a).map(String::as_str) == Some(*b))
            })
            .collect()
    }

    /// The Pushgateway re-renders values (`1.23456789e+08`): compare numbers.
    fn num(v: &str) -> f64 {
        v.parse().unwrap_or_else(|_| panic!("not a number: {v}"))
    }

    #[tokio::test]
    async fn push_reaches_a_real_pushgateway() {
        let pg = Server::pushgateway().await;

        // Unsharded and successful: PUT to /metrics/job/<job>.
        let mut ok = sample();
        ok.success = true;
        push(&pg.url, &ok).await.expect("push");
        // Sharded: shard 2 of 3, its own group.
        let mut shard = sample();
        shard.success = true;
        shard.shard = Some((2, 3));
        shard.bytes_copied = 7;
        push(&pg.url, &shard).await.expect("sharded push");

        let text = pg.metrics().await;
        let job = [("job", "ecr-mirror-sync"), ("instance", "")];
        let b = pushed(&text, "ecr_mirror_sync_copied_bytes", &job);
        let mut values: Vec<(Option<String>, f64)> = b
            .into_iter()
            .map(|(l, v)| (l.get("shard").cloned(), num(&v)))
            .collect();
        values.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            values,
            [(None, 123456789.0), (Some("2".to_owned()), 7.0)],
            "{text}"
        );
        let failed = pushed(
            &text,
            "ecr_mirror_sync_failures",
            &[
                ("job", "ecr-mirror-sync"),
                ("shard", "2"),
                ("label", "rate-limited"),
            ],
        );
        assert_eq!(failed.len(), 1, "{text}");
        assert_eq!(
            num(&pushed(
                &text,
                "ecr_mirror_sync_last_success_timestamp_seconds",
                &[("shard", "2")]
            )[0]
            .1),
            1_796_000_000.0,
            "{text}"
        );

        // A failed run of shard 2 later: POSTed, the group keeps its last success and takes the new rest.
        let mut failed = shard.clone();
        failed.success = false;
        failed.finished_at = at(1_796_086_400);
        failed.outcomes = vec![item("mirror/x", "v9", Outcome::Failed, Some("transport"))];
        push(&pg.url, &failed).await.expect("push of a failed run");
        let text = pg.metrics().await;
        let s2 = [("job", "ecr-mirror-sync"), ("shard", "2")];
        let last = pushed(&text, "ecr_mirror_sync_last_success_timestamp_seconds", &s2);
        assert_eq!(last.len(), 1, "{text}");
        assert_eq!(num(&last[0].1), 1_796_000_000.0);
        assert_eq!(
            pushed(&text, "ecr_mirror_sync_last_run_success", &s2)[0].1,
            "0"
        );
        let tags = pushed(&text, "ecr_mirror_sync_tag_in_sync", &s2);
        assert_eq!(
            tags.len(),
            1,
            "the tag series are the failed run's only: {tags:?}"
        );
        assert_eq!(tags[0].0["repository"], "mirror/x");
        // The unsharded group is untouched by shard 2's pushes.
        assert_eq!(
            pushed(&text, "ecr_mirror_sync_last_run_success", &job)
                .iter()
                .filter(|(l, _)| !l.contains_key("shard"))
                .count(),
            1
        );

        // A job name that is not a plain path segment goes base64-encoded, and reads back as it was.
        let mut odd = RunMetrics::new("team a/mirror");
        odd.bytes_copied = 5;
        push(&pg.url, &odd).await.expect("push with an encoded job");
        let text = pg.metrics().await;
        assert_eq!(
            pushed(
                &text,
                "ecr_mirror_sync_copied_bytes",
                &[("job", "team a/mirror")]
            )[0]
            .1,
            "5"
        );

        // An error status is returned, not swallowed: there is no Pushgateway API under /nope.
        let e = push(&format!("{}/nope", pg.url), &RunMetrics::new("j"))
            .await
            .unwrap_err();
        assert!(matches!(e, PushError::Status { status: 404, .. }), "{e:?}");
    }

    #[tokio::test]
    async fn a_failed_push_is_an_error_without_credentials() {
        // A port nobody listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let e = push(
            &format!("http://u:topsecret@127.0.0.1:{port}"),
            &RunMetrics::new("j"),
        )
        .await
        .unwrap_err();
        assert!(matches!(e, PushError::Request { .. }), "{e:?}");
        let text = format!("{e} {e:?}");
        assert!(!text.contains("topsecret"), "{text}");
        assert!(
            text.contains(&format!("127.0.0.1:{port}/metrics/job/j")),
            "{text}"
        );
    }
}
