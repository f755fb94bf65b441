//! Where a run's metrics go: a textfile collector's file (written atomically) or a Pushgateway.

use super::*;

/// The value of `ecr_mirror_sync_last_success_timestamp_seconds` in a file this module wrote, if any.
pub(super) fn previous_last_success(path: &Path) -> Option<f64> {
    let text = std::fs::read_to_string(path).ok()?;
    let name = format!("{PREFIX}_{LAST_SUCCESS} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&name))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|v| v.is_finite() && *v > 0.0)
}

/// Writes [`render`]'s text to `path` atomically, for node-exporter's textfile collector (which reads only
/// `*.prom` files): the text goes to a hidden temporary file in the same directory (`.<name>.tmp-<pid>-<n>`, which
/// the collector ignores), is flushed to disk, then renamed over `path`. A reader sees the old file or the new
/// one, never a partial one; on error the temporary file is removed.
///
/// After a failed run the file keeps the `ecr_mirror_sync_last_success_timestamp_seconds` of the file it
/// replaces, so that "last success too old" alerts measure from the real last success.
pub fn write_file_atomic(path: &Path, m: &RunMetrics) -> std::io::Result<()> {
    let last_success = if m.success {
        Some(unix_secs(m.finished_at))
    } else {
        previous_last_success(path)
    };
    let text = render_with(m, last_success);
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name().ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{} is not a file path", path.display()),
        )
    })?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}-{}",
        name.to_string_lossy(),
        std::process::id(),
        rand::random::<u32>()
    ));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result?;
    // Make the rename itself durable; not all filesystems allow syncing a directory, so this is best effort.
    if let Ok(d) = std::fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// A push that did not happen. Its text names the Pushgateway without any credentials.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// The `--pushgateway` value is not an http(s) URL.
    #[error("invalid Pushgateway URL: {0}")]
    InvalidUrl(String),
    /// No answer (connection refused, timeout, TLS, ...).
    #[error("pushing metrics to {url}: {source}")]
    Request {
        /// The URL, without credentials.
        url: String,
        /// The transport error.
        #[source]
        source: reqwest::Error,
    },
    /// The Pushgateway answered with an error status.
    #[error("pushing metrics to {url}: HTTP {status}: {body}")]
    Status {
        /// The URL, without credentials.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The start of the answer's body.
        body: String,
    },
}

/// One grouping-key path segment pair: `/<name>/<value>`, or `/<name>@base64/<base64url>` when the value is
/// empty or has characters a path segment cannot carry as they are (the Pushgateway's own encoding).
pub(super) fn grouping_segment(name: &str, value: &str) -> String {
    let plain = !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
    if plain {
        format!("/{name}/{value}")
    } else if value.is_empty() {
        format!("/{name}@base64/=")
    } else {
        format!(
            "/{name}@base64/{}",
            base64::engine::general_purpose::URL_SAFE.encode(value)
        )
    }
}

/// The push URL (without credentials) and the credentials, for a Pushgateway base URL and a run.
pub(super) fn push_target(
    base: &str,
    m: &RunMetrics,
) -> Result<(url::Url, Option<(String, String)>), PushError> {
    let mut u = url::Url::parse(base.trim()).map_err(|e| PushError::InvalidUrl(e.to_string()))?;
    if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() {
        return Err(PushError::InvalidUrl(format!(
            "{}: expected http:// or https:// and a host",
            redact(&u)
        )));
    }
    let creds = if u.username().is_empty() && u.password().is_none() {
        None
    } else {
        let user = percent_decode(u.username());
        let pass = u.password().map(percent_decode).unwrap_or_default();
        let _ = u.set_username("");
        let _ = u.set_password(None);
        Some((user, pass))
    };
    let job = if m.job.is_empty() {
        DEFAULT_JOB
    } else {
        &m.job
    };
    let mut path = u.path().trim_end_matches('/').to_owned();
    path.push_str("/metrics");
    path.push_str(&grouping_segment("job", job));
    if let Some((i, _)) = m.shard {
        path.push_str(&grouping_segment("shard", &i.to_string()));
    }
    u.set_path(&path);
    u.set_query(None);
    u.set_fragment(None);
    Ok((u, creds))
}

pub(super) fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

pub(super) fn redact(u: &url::Url) -> String {
    let mut u = u.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.to_string()
}

/// Pushes the run's metrics to the Pushgateway at `url` (e.g. `http://pushgateway.monitoring:9091`), under the
/// grouping key `job` (`m.job`), plus `shard` (the index) when sharded: `<url>/metrics/job/<job>[/shard/<i>]`.
/// Credentials in the URL (`https://user:password@host`) are sent as HTTP basic auth, never in the path or an
/// error.
///
/// A successful run is `PUT`: it replaces the whole group. A failed run is `POST`ed without
/// `ecr_mirror_sync_last_success_timestamp_seconds`, so the Pushgateway keeps the last success's timestamp and
/// replaces every other metric. It gives up after [`PUSH_TIMEOUT`]. The caller logs an error as a warning: a
/// failed push never fails the run.
pub async fn push(url: &str, m: &RunMetrics) -> Result<(), PushError> {
    let (target, creds) = push_target(url, m)?;
    let shown = target.to_string();
    let body = render(m);
    let client = reqwest::Client::builder()
        .timeout(PUSH_TIMEOUT)
        .connect_timeout(PUSH_TIMEOUT)
        .user_agent(concat!("ecr-mirror-sync/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|source| PushError::Request {
            url: shown.clone(),
            source,
        })?;
    let method = if m.success {
        reqwest::Method::PUT
    } else {
        reqwest::Method::POST
    };
    let mut req = client
        .request(method, target)
        .header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE)
        .body(body);
    if let Some((user, pass)) = creds {
        req = req.basic_auth(user, Some(pass));
    }
    let resp = req.send().await.map_err(|e| PushError::Request {
        url: shown.clone(),
        source: e.without_url(),
    })?;
    let status = resp.status();
    if status.is_success() {
        return Ok(());
    }
    let text = resp.text().await.unwrap_or_default();
    Err(PushError::Status {
        url: shown,
        status: status.as_u16(),
        body: text.chars().take(300).collect::<String>().trim().to_owned(),
    })
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
