//! `ecr-mirror-sync import FILE`: an image list → tagged ECR repositories (see
//! [`ecr_mirror_sync::mirror::import`] and docs/import.md).

use crate::app::cli::{ImportArgs, ImportFormat, OutputFormat};
use crate::app::report;
use ecr_mirror_sync::ecr::sdk::SdkEcr;
use ecr_mirror_sync::mirror::error::{Error, Result};
use ecr_mirror_sync::mirror::import::{
    self, ApplyOptions, Change, Counts, EntryError, Format, Naming,
};
use ecr_mirror_sync::mirror::tags::TagKeys;

use crate::app::Context;

/// Runs `import`; returns the exit code.
pub async fn run(ctx: &Context, a: &ImportArgs) -> Result<u8> {
    let settings = crate::app::settings::repo_settings(&a.settings)?;
    crate::app::settings::tag_keys_distinct(&[
        ("--image-key", &a.image_key),
        ("--tag-key", &a.tag_key),
        ("--tag-rule-key", &a.tag_rule_key),
    ])?;
    let keys = TagKeys {
        image: a.image_key.clone(),
        tags: a.tag_key.clone(),
        rule: a.tag_rule_key.clone(),
        ..TagKeys::default()
    };
    let naming = Naming::new(a.scoped, &a.prefix).map_err(Error::Usage)?;
    let file = a.file.display();
    let text = std::fs::read_to_string(&a.file)
        .map_err(|e| Error::Usage(format!("{file}: cannot read it: {e}")))?;
    let format = a.format.map(|f| match f {
        ImportFormat::Yaml => Format::Yaml,
        ImportFormat::List => Format::List,
    });
    let parsed = import::parse(&text, format).map_err(|e| {
        Error::Usage(format!(
            "{file} (read as {}): {e}",
            format.unwrap_or_else(|| import::detect_format(&text))
        ))
    })?;
    let plan = import::plan(&parsed, &naming, &keys);
    if parsed.entries.is_empty() {
        print_entry_errors(ctx, &plan.entry_errors);
        return Err(Error::Usage(if parsed.errors.is_empty() {
            format!(
                "{file}: no image references in it ({} format)",
                parsed.format
            )
        } else {
            format!(
                "{file}: no valid image reference in it ({} invalid; {} format)",
                parsed.errors.len(),
                parsed.format
            )
        }));
    }
    print_entry_errors(ctx, &plan.entry_errors);
    let api = SdkEcr::from_env(a.aws.region.clone()).await;
    let opts = ApplyOptions {
        force: a.force,
        dry_run: a.dry_run,
    };
    let changes = import::apply(&api, &plan, &settings, &keys, opts).await?;
    let counts = Counts::of(&changes, &plan.entry_errors, a.dry_run);
    match ctx.output {
        OutputFormat::Json => {
            for c in &changes {
                report::emit("import", c.to_json());
            }
            report::emit(
                "summary",
                serde_json::to_value(&counts).expect("serialisable"),
            );
        }
        OutputFormat::Text => {
            println!("{}", table(&changes, &keys));
            let (c, u, n, e) = (counts.create, counts.update, counts.unchanged, counts.error);
            if a.dry_run {
                println!(
                    "dry run: {c} to create, {u} to update, {n} unchanged, {e} errors; nothing was written"
                );
            } else {
                println!("import: {c} created, {u} updated, {n} unchanged, {e} errors");
            }
        }
    }
    Ok(counts.exit_code())
}

fn print_entry_errors(ctx: &Context, errors: &[EntryError]) {
    for e in errors {
        match ctx.output {
            OutputFormat::Json => report::emit("import", import::entry_error_json(e)),
            OutputFormat::Text => println!("invalid  {e}"),
        }
    }
}

fn table(changes: &[Change], keys: &TagKeys) -> comfy_table::Table {
    let mut t = report::table(&[
        "REPOSITORY",
        "ACTION",
        "UPSTREAM",
        "TAGS BEFORE",
        "TAGS AFTER",
        "ERROR",
    ]);
    let tags = |m: &Option<std::collections::BTreeMap<String, String>>| match m {
        None => "-".to_string(),
        Some(m) => m.get(&keys.tags).cloned().unwrap_or_else(|| "-".into()),
    };
    for c in changes {
        t.add_row(vec![
            c.repository.clone(),
            c.action.name().to_string(),
            c.upstream.clone().unwrap_or_else(|| "-".into()),
            tags(&c.tags_before),
            tags(&c.tags_after),
            c.error.clone().unwrap_or_default(),
        ]);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::cli::{Cli, Command, EncryptionKind, RepoSettingsArgs, TagMutability};
    use crate::app::settings::repo_settings;
    use clap::Parser;
    use ecr_mirror_sync::ecr::{Encryption, RepoSettings};
    use std::path::Path;

    fn import_args(args: &[&str]) -> Result<ImportArgs, clap::Error> {
        let mut all = vec!["x", "import"];
        all.extend_from_slice(args);
        match Cli::try_parse_from(all)?.command {
            Command::Import(a) => Ok(*a),
            _ => unreachable!(),
        }
    }

    #[test]
    fn flags_parse() {
        let a = import_args(&["f.list"]).unwrap();
        assert_eq!(a.prefix, "mirror");
        assert!(!a.scoped && !a.force && !a.dry_run && a.format.is_none());
        assert_eq!(a.settings.image_tag_mutability, TagMutability::Mutable);
        let a = import_args(&[
            "f.yaml",
            "--prefix",
            "",
            "--scoped",
            "--format",
            "yaml",
            "--image-tag-mutability",
            "IMMUTABLE",
            "--encryption",
            "kms",
            "--kms-key",
            "arn:aws:kms:eu-west-1:1:key/k",
            "--scan-on-push",
        ])
        .unwrap();
        assert_eq!(a.prefix, "");
        assert_eq!(a.format, Some(ImportFormat::Yaml));
        let s = repo_settings(&a.settings).unwrap();
        assert_eq!(
            s,
            RepoSettings {
                scan_on_push: true,
                immutable: true,
                encryption: Some(Encryption::Kms {
                    key: Some("arn:aws:kms:eu-west-1:1:key/k".into())
                }),
                lifecycle_policy: None,
            }
        );
        assert!(import_args(&["f", "--image-tag-mutability", "SOMETIMES"]).is_err());
        // copy and sync take --create-missing and the same settings.
        let c = Cli::try_parse_from([
            "x",
            "copy",
            "--src",
            "a:1",
            "--dest",
            "b",
            "--create-missing",
            "--encryption",
            "AES256",
        ])
        .unwrap();
        match c.command {
            Command::Copy(c) => {
                assert!(c.create_missing);
                assert_eq!(c.repo_settings.encryption, Some(EncryptionKind::Aes256));
            }
            _ => panic!(),
        }
        // `sync` creates nothing (discovered repositories exist), so it refuses the flags
        // instead of ignoring them.
        for flag in ["--create-missing", "--scan-on-push"] {
            let e = Cli::try_parse_from(["x", "sync", flag]).unwrap_err();
            assert_eq!(e.kind(), clap::error::ErrorKind::UnknownArgument, "{flag}");
        }
    }

    #[test]
    fn settings_are_checked() {
        let base = RepoSettingsArgs::default();
        assert_eq!(repo_settings(&base).unwrap(), RepoSettings::default());
        for (enc, want) in [
            (None, "no --encryption"),
            (Some(EncryptionKind::Aes256), "--encryption AES256"),
        ] {
            let a = RepoSettingsArgs {
                encryption: enc,
                kms_key: Some("k".into()),
                ..RepoSettingsArgs::default()
            };
            let e = repo_settings(&a).unwrap_err().to_string();
            assert!(
                e.contains("--kms-key needs --encryption KMS") && e.contains(want),
                "{e}"
            );
        }
        let a = RepoSettingsArgs {
            encryption: Some(EncryptionKind::Kms),
            ..RepoSettingsArgs::default()
        };
        assert_eq!(
            repo_settings(&a).unwrap().encryption,
            Some(Encryption::Kms { key: None })
        );

        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.json");
        std::fs::write(&good, r#"{"rules": []}"#).unwrap();
        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, "{rules").unwrap();
        let array = dir.path().join("array.json");
        std::fs::write(&array, "[]").unwrap();
        let missing = dir.path().join("missing.json");
        let with = |p: &Path| RepoSettingsArgs {
            lifecycle_policy: Some(p.to_path_buf()),
            ..RepoSettingsArgs::default()
        };
        assert_eq!(
            repo_settings(&with(&good))
                .unwrap()
                .lifecycle_policy
                .as_deref(),
            Some(r#"{"rules": []}"#)
        );
        for (p, needle) in [
            (&bad, "not valid JSON"),
            (&array, "JSON object"),
            (&missing, "cannot read"),
        ] {
            let e = repo_settings(&with(p)).unwrap_err();
            assert_eq!(e.exit_code(), 2);
            let e = e.to_string();
            assert!(
                e.contains(needle) && e.contains(&p.display().to_string()),
                "{e}"
            );
        }
    }
}
