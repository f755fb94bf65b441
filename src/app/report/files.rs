//! Report files for `--report-dir`: `images_<UTC timestamp>.csv`, `.md` and `.json`, one row
//! per tag, written side by side so spreadsheets, wikis and scripts each get their format.
//!
//! Files are written to a temporary name and renamed into place, so a reader never sees half
//! a report.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// One row: one (repository, tag).
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct Row {
    /// Upstream reference.
    pub source: String,
    /// ECR `repository:tag`.
    pub destination: String,
    /// Upstream digest (index or manifest).
    pub source_digest: String,
    /// ECR digest after the run.
    pub dest_digest: String,
    /// `platform=digest` pairs separated by spaces (`index=…` for the index).
    pub platform_digests: String,
    /// What was planned: `skip`, `copy`, `blocked`, `error`, `verify`.
    pub action: String,
    /// What happened: `skipped`, `copied`, `failed`, `blocked`, `match`, `mismatch`.
    pub outcome: String,
    /// Why, for failures and mismatches.
    pub reason: String,
    /// The stable failure label (`docs/output.md`), for failed and blocked rows; else empty.
    #[serde(default)]
    pub label: String,
    /// Bytes streamed.
    pub bytes: u64,
    /// Seconds spent on this row.
    pub duration_secs: f64,
    /// The referrers of a copied item, space-separated `outcome:digest` (with `:label` for a
    /// failure), e.g. `copied:sha256:aa present:sha256:bb failed:sha256:cc:referrer-refused`.
    #[serde(default)]
    pub referrers: String,
}

/// `YYYYMMDDTHHMMSSZ` for `t` (UTC), from the civil-from-days algorithm (H. Hinnant).
pub fn utc_stamp(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn write_atomically(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

fn md_cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// Writes the three files into `dir` (created if needed) and returns their paths.
pub fn write(dir: &Path, rows: &[Row], now: SystemTime) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let base = dir.join(format!("images_{}", utc_stamp(now)));
    let csv_path = base.with_extension("csv");
    let md_path = base.with_extension("md");
    let json_path = base.with_extension("json");

    let mut w = csv::Writer::from_writer(Vec::new());
    for r in rows {
        w.serialize(r).map_err(std::io::Error::other)?;
    }
    if rows.is_empty() {
        w.write_record([
            "source",
            "destination",
            "source_digest",
            "dest_digest",
            "platform_digests",
            "action",
            "outcome",
            "reason",
            "label",
            "bytes",
            "duration_secs",
            "referrers",
        ])
        .map_err(std::io::Error::other)?;
    }
    write_atomically(
        &csv_path,
        &w.into_inner()
            .map_err(|e| std::io::Error::other(e.to_string()))?,
    )?;

    let mut md = String::from(
        "| source | destination | source digest | ECR digest | platform digests | action | outcome | reason | label | bytes | seconds | referrers |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.2} | {} |\n",
            md_cell(&r.source),
            md_cell(&r.destination),
            md_cell(&r.source_digest),
            md_cell(&r.dest_digest),
            md_cell(&r.platform_digests),
            r.action,
            r.outcome,
            md_cell(&r.reason),
            r.label,
            r.bytes,
            r.duration_secs,
            md_cell(&r.referrers),
        ));
    }
    write_atomically(&md_path, md.as_bytes())?;
    let json = serde_json::to_vec_pretty(rows).map_err(std::io::Error::other)?;
    write_atomically(&json_path, &json)?;
    Ok(vec![csv_path, md_path, json_path])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn stamps_are_utc() {
        assert_eq!(utc_stamp(SystemTime::UNIX_EPOCH), "19700101T000000Z");
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_335_300); // 2026-11-22 08:15:00
        assert_eq!(utc_stamp(t), "20261122T081500Z");
        let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(utc_stamp(leap), "20000229T000000Z");
    }

    #[test]
    fn files_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let rows = vec![Row {
            source: "ghcr.io/a/b:1".into(),
            destination: "mirror/b:1".into(),
            source_digest: "sha256:aa".into(),
            dest_digest: "sha256:aa".into(),
            platform_digests: "linux/amd64=sha256:bb".into(),
            action: "copy".into(),
            outcome: "copied".into(),
            reason: "missing | new".into(),
            label: String::new(),
            bytes: 42,
            duration_secs: 1.5,
            referrers: "copied:sha256:cc".into(),
        }];
        let paths = write(dir.path(), &rows, SystemTime::UNIX_EPOCH).unwrap();
        assert!(paths[0].ends_with("images_19700101T000000Z.csv"));
        let mut rd = csv::Reader::from_path(&paths[0]).unwrap();
        let back: Vec<Row> = rd.deserialize().map(|r| r.unwrap()).collect();
        assert_eq!(back, rows);
        let json: Vec<Row> = serde_json::from_slice(&std::fs::read(&paths[2]).unwrap()).unwrap();
        assert_eq!(json, rows);
        let md = std::fs::read_to_string(&paths[1]).unwrap();
        assert!(
            md.contains("missing \\| new") && md.lines().count() == 3,
            "{md}"
        );
    }
}
