//! The command line: clap types only. `settings` turns them into typed settings.
//!
//! Every flag can also be set from the environment as `ECR_MIRROR_SYNC_<FLAG>` (upper snake
//! case), except `--region`, which reads `AWS_REGION` like every AWS tool. Flags win over the
//! environment. Secret-bearing flags never show their environment value in `--help`.

use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};

use ecr_mirror_sync::oci::transport::auth::Secret;

// Secret-bearing flags parse straight into [`Secret`] (it implements `FromStr`), so no `Debug`
// print of the settings (e.g. `--show-settings`) can show them.

/// Keep a private Amazon ECR registry in sync with public upstream images.
#[derive(Debug, Parser)]
#[command(name = "ecr-mirror-sync", version, about, long_about = None, max_term_width = 110)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "ECR_MIRROR_SYNC_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// Debug logging (secrets are still redacted).
    #[arg(long, global = true, env = "ECR_MIRROR_SYNC_DEBUG")]
    pub debug: bool,
    /// Print the effective settings (flags and environment, secrets redacted) and exit.
    #[arg(long, global = true)]
    pub show_settings: bool,
    /// Result format on stdout: human text/tables, or JSON Lines (see docs/output.md).
    #[arg(long, global = true, value_enum, default_value_t = OutputFormat::Text, env = "ECR_MIRROR_SYNC_OUTPUT")]
    pub output: OutputFormat,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Log formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Text and tables.
    Text,
    /// JSON Lines: one object per item, then a summary object.
    Json,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Copy one image between any two registries (blobs first, the tag last).
    Copy(Box<CopyArgs>),
    /// Mirror every tagged ECR repository: compare digests, copy what is missing or stale.
    Sync(Box<SyncArgs>),
    /// Show the ECR repositories marked for mirroring (and, with --check, their status).
    List(Box<ListArgs>),
    /// Compare every platform's digest upstream and in ECR; exit 1 on any mismatch.
    Verify(Box<VerifyArgs>),
    /// Push a `docker save` tarball, an oci-archive or an OCI layout directory to a registry
    /// (no Docker daemon; layers stream out of the file; the tag goes last).
    Push(Box<PushArgs>),
    /// Turn an image list (images.yaml or a one-reference-per-line list) into tagged ECR
    /// repositories: create what is missing, merge the upstream tags (idempotent).
    Import(Box<ImportArgs>),
}

/// Source registry access (the same flags as skopeo's `--src-*`).
#[derive(Debug, Clone, Args, Default)]
pub struct SrcAccess {
    /// Source credentials USER[:PASSWORD].
    #[arg(
        long,
        value_name = "USER[:PASS]",
        env = "ECR_MIRROR_SYNC_SRC_CREDS",
        hide_env_values = true
    )]
    pub src_creds: Option<Secret>,
    /// Source user name (with --src-password).
    #[arg(long, env = "ECR_MIRROR_SYNC_SRC_USERNAME")]
    pub src_username: Option<String>,
    /// Source password (with --src-username).
    #[arg(long, env = "ECR_MIRROR_SYNC_SRC_PASSWORD", hide_env_values = true)]
    pub src_password: Option<Secret>,
    /// A bearer token for the source registry.
    #[arg(
        long,
        env = "ECR_MIRROR_SYNC_SRC_REGISTRY_TOKEN",
        hide_env_values = true
    )]
    pub src_registry_token: Option<Secret>,
    /// Access the source anonymously, ignoring auth files.
    #[arg(long, env = "ECR_MIRROR_SYNC_SRC_NO_CREDS")]
    pub src_no_creds: bool,
    /// Auth file for the source (default: $REGISTRY_AUTH_FILE, then
    /// $XDG_RUNTIME_DIR/containers/auth.json, then ~/.docker/config.json).
    #[arg(long, env = "ECR_MIRROR_SYNC_SRC_AUTHFILE")]
    pub src_authfile: Option<PathBuf>,
    /// Directory with ca.crt (and client.cert/client.key) for the source.
    #[arg(long, env = "ECR_MIRROR_SYNC_SRC_CERT_DIR")]
    pub src_cert_dir: Option<PathBuf>,
    /// Verify the source's TLS certificate; false also allows plain HTTP.
    #[arg(long, env = "ECR_MIRROR_SYNC_SRC_TLS_VERIFY", default_value_t = true, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub src_tls_verify: bool,
}

/// Destination registry access (the same flags as skopeo's `--dest-*`).
#[derive(Debug, Clone, Args, Default)]
pub struct DestAccess {
    /// Destination credentials USER[:PASSWORD] (not needed for ECR).
    #[arg(
        long,
        value_name = "USER[:PASS]",
        env = "ECR_MIRROR_SYNC_DEST_CREDS",
        hide_env_values = true
    )]
    pub dest_creds: Option<Secret>,
    /// Destination user name (with --dest-password).
    #[arg(long, env = "ECR_MIRROR_SYNC_DEST_USERNAME")]
    pub dest_username: Option<String>,
    /// Destination password (with --dest-username).
    #[arg(long, env = "ECR_MIRROR_SYNC_DEST_PASSWORD", hide_env_values = true)]
    pub dest_password: Option<Secret>,
    /// A bearer token for the destination registry.
    #[arg(
        long,
        env = "ECR_MIRROR_SYNC_DEST_REGISTRY_TOKEN",
        hide_env_values = true
    )]
    pub dest_registry_token: Option<Secret>,
    /// Access the destination anonymously, ignoring auth files.
    #[arg(long, env = "ECR_MIRROR_SYNC_DEST_NO_CREDS")]
    pub dest_no_creds: bool,
    /// Auth file for the destination (same lookup as --src-authfile).
    #[arg(long, env = "ECR_MIRROR_SYNC_DEST_AUTHFILE")]
    pub dest_authfile: Option<PathBuf>,
    /// Directory with ca.crt (and client.cert/client.key) for the destination.
    #[arg(long, env = "ECR_MIRROR_SYNC_DEST_CERT_DIR")]
    pub dest_cert_dir: Option<PathBuf>,
    /// Verify the destination's TLS certificate; false also allows plain HTTP.
    #[arg(long, env = "ECR_MIRROR_SYNC_DEST_TLS_VERIFY", default_value_t = true, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub dest_tls_verify: bool,
}

/// AWS settings for the ECR control plane and data plane.
#[derive(Debug, Clone, Args, Default)]
pub struct AwsArgs {
    /// AWS region (default: the AWS SDK's chain, e.g. AWS_REGION or the profile).
    #[arg(long, env = "AWS_REGION")]
    pub region: Option<String>,
    /// Send ECR data-plane (registry) requests here instead of the token's proxyEndpoint,
    /// e.g. http://127.0.0.1:5000 for a local registry paired with moto.
    #[arg(long, value_name = "URL", env = "ECR_MIRROR_SYNC_REGISTRY_ENDPOINT")]
    pub registry_endpoint: Option<String>,
}

/// Which platforms to copy.
#[derive(Debug, Clone, Args, Default)]
pub struct PlatformArgs {
    /// Copy every platform; the index stays byte-identical (the default).
    #[arg(long, conflicts_with_all = ["platform", "override_os", "override_arch", "override_variant"])]
    pub all: bool,
    /// Copy only this platform (repeatable): OS/ARCH[/VARIANT]. Children keep their digests;
    /// a new index lists them.
    #[arg(
        long,
        value_name = "OS/ARCH[/VARIANT]",
        env = "ECR_MIRROR_SYNC_PLATFORM",
        value_delimiter = ','
    )]
    pub platform: Vec<String>,
    /// skopeo-style alias: the OS of a one-platform filter.
    #[arg(long, conflicts_with = "platform")]
    pub override_os: Option<String>,
    /// skopeo-style alias: the architecture of a one-platform filter.
    #[arg(long, conflicts_with = "platform")]
    pub override_arch: Option<String>,
    /// skopeo-style alias: the variant of a one-platform filter.
    #[arg(long, conflicts_with = "platform")]
    pub override_variant: Option<String>,
}

/// Retry and concurrency knobs.
#[derive(Debug, Clone, Args)]
pub struct NetArgs {
    /// Times a failed request is retried (connect/reset errors, 408, 429, 5xx).
    #[arg(long, default_value_t = 5, env = "ECR_MIRROR_SYNC_RETRY_TIMES")]
    pub retry_times: u32,
    /// Requests in flight per registry. 32 keeps a far registry's round trips overlapped (one
    /// 100 ms round trip per tag); 429s and throttling are retried (docs/registries.md).
    #[arg(long, default_value_t = 32, env = "ECR_MIRROR_SYNC_MAX_REQUESTS", value_parser = clap::value_parser!(u32).range(1..=256))]
    pub max_requests: u32,
    /// Seconds to wait for a TCP/TLS connection.
    #[arg(long, default_value_t = 30, env = "ECR_MIRROR_SYNC_CONNECT_TIMEOUT", value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub connect_timeout: u64,
    /// Seconds a response may stay silent (no bytes) before the request fails and is retried.
    #[arg(long, default_value_t = 120, env = "ECR_MIRROR_SYNC_READ_TIMEOUT", value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub read_timeout: u64,
}

/// The signature trust policy.
#[derive(Debug, Clone, Args, Default)]
pub struct PolicyArgs {
    /// containers-policy.json to apply (default: $HOME/.config/containers/policy.json, then
    /// /etc/containers/policy.json).
    #[arg(long, env = "ECR_MIRROR_SYNC_POLICY", value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Accept any image without checking signatures. Unsafe; must be explicit.
    #[arg(
        long,
        env = "ECR_MIRROR_SYNC_INSECURE_POLICY",
        conflicts_with = "policy"
    )]
    pub insecure_policy: bool,
    /// Do not copy signatures along with the images: the cosign `.sig` tags, cosign's
    /// signature artifacts and sigstore bundles (SBOMs and attestations still travel).
    #[arg(long, env = "ECR_MIRROR_SYNC_REMOVE_SIGNATURES")]
    pub remove_signatures: bool,
    /// Which referrers travel with the images: `all`, `none`, or artifact types and the short
    /// names `sig`, `sbom`, `att`, `bundle`, separated by commas. A repository's
    /// `upstream-referrers` resource tag overrides it.
    #[arg(long, env = "ECR_MIRROR_SYNC_REFERRERS", value_name = "all|none|TYPES")]
    pub referrers: Option<String>,
    /// Check the referrers of images that are already in sync again (a new signature or SBOM
    /// on an unchanged image), at the cost of a referrers lookup per manifest.
    #[arg(long, env = "ECR_MIRROR_SYNC_REFRESH_REFERRERS")]
    pub refresh_referrers: bool,
}

/// `copy`.
#[derive(Debug, Args)]
pub struct CopyArgs {
    /// Source image: [REGISTRY/]REPO[:TAG|@DIGEST].
    #[arg(long, env = "ECR_MIRROR_SYNC_SRC")]
    pub src: String,
    /// Destination: REGISTRY/REPO[:TAG]; without a tag the source tag is kept.
    #[arg(long, env = "ECR_MIRROR_SYNC_DEST")]
    pub dest: String,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub platforms: PlatformArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub policy: PolicyArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub src_access: SrcAccess,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub dest_access: DestAccess,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub aws: AwsArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub net: NetArgs,
    /// Create the destination ECR repository when it does not exist (with the
    /// --scan-on-push, --image-tag-mutability, --encryption, --lifecycle-policy settings).
    #[arg(long, env = "ECR_MIRROR_SYNC_CREATE_MISSING")]
    pub create_missing: bool,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub repo_settings: RepoSettingsArgs,
}

/// Which ECR repositories are marked, and how.
#[derive(Debug, Clone, Args)]
pub struct DiscoverArgs {
    /// Only repositories named PREFIX/...
    #[arg(long, env = "ECR_MIRROR_SYNC_PREFIX")]
    pub prefix: Option<String>,
    /// The resource-tag key holding the upstream image.
    #[arg(
        long,
        default_value = "upstream-image",
        env = "ECR_MIRROR_SYNC_IMAGE_KEY"
    )]
    pub image_key: String,
    /// The resource-tag key holding the `/`-separated upstream tags.
    #[arg(long, default_value = "upstream-tags", env = "ECR_MIRROR_SYNC_TAG_KEY")]
    pub tag_key: String,
    /// The resource-tag key holding an optional space-separated platform list.
    #[arg(
        long,
        default_value = "upstream-platforms",
        env = "ECR_MIRROR_SYNC_PLATFORMS_KEY"
    )]
    pub platforms_key: String,
    /// The resource-tag key holding an optional tag rule, e.g. `semver=1.x newest=3`
    /// (docs/ecr-tags.md).
    #[arg(
        long,
        default_value = "upstream-tag-rule",
        env = "ECR_MIRROR_SYNC_TAG_RULE_KEY"
    )]
    pub tag_rule_key: String,
    /// The resource-tag key holding an optional referrer selection (`all`, `none`, or
    /// space-separated artifact types and `sig`, `sbom`, `att`, `bundle`).
    #[arg(
        long,
        default_value = "upstream-referrers",
        env = "ECR_MIRROR_SYNC_REFERRERS_KEY"
    )]
    pub referrers_key: String,
    /// Only this shard of the repositories: I/N (default: $JOB_COMPLETION_INDEX of
    /// $ECR_MIRROR_SYNC_SHARD_COUNT, for Indexed Jobs).
    #[arg(long, value_name = "I/N", env = "ECR_MIRROR_SYNC_SHARD")]
    pub shard: Option<String>,
}

/// What `sync`, `list` and `verify` share: which ECR repositories, and how to reach both sides.
#[derive(Debug, Clone, Args)]
pub struct EstateArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub discover: DiscoverArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub src_access: SrcAccess,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub aws: AwsArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub net: NetArgs,
    /// Plain HTTP / unverified TLS for the ECR data plane (only for local test registries).
    #[arg(long, env = "ECR_MIRROR_SYNC_DEST_TLS_VERIFY", default_value_t = true, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub dest_tls_verify: bool,
}

/// `sync`.
#[derive(Debug, Args)]
pub struct SyncArgs {
    /// Show the plan (with both digests) and write nothing.
    #[arg(long, env = "ECR_MIRROR_SYNC_DRY_RUN")]
    pub dry_run: bool,
    /// Also write images_<UTC timestamp>.csv, .md and .json (one row per tag) into DIR.
    #[arg(long, value_name = "DIR", env = "ECR_MIRROR_SYNC_REPORT_DIR")]
    pub report_dir: Option<PathBuf>,
    /// Images copied at once (alias --batch, from the original tool). Each image's copy waits on
    /// round trips most of the time, so 16 of them share the registries' `--max-requests` slots.
    #[arg(long, visible_alias = "batch", default_value_t = 16, env = "ECR_MIRROR_SYNC_PARALLEL", value_parser = clap::value_parser!(u32).range(1..=256))]
    pub parallel: u32,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub platforms: PlatformArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub policy: PolicyArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub estate: EstateArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub metrics: MetricsArgs,
}

/// Prometheus metrics of a run (docs/metrics.md).
#[derive(Debug, Clone, Args, Default)]
pub struct MetricsArgs {
    /// Write the run's metrics in the Prometheus text format to FILE (atomically), for
    /// node-exporter's textfile collector.
    #[arg(long, value_name = "FILE", env = "ECR_MIRROR_SYNC_METRICS_FILE")]
    pub metrics_file: Option<PathBuf>,
    /// Push the run's metrics to this Prometheus Pushgateway at the end of the run (also after
    /// SIGTERM). A failed push is a warning, not a failed run.
    #[arg(long, value_name = "URL", env = "ECR_MIRROR_SYNC_PUSHGATEWAY")]
    pub pushgateway: Option<String>,
    /// The Pushgateway grouping key `job` (the shard is added when sharded).
    #[arg(
        long,
        value_name = "NAME",
        default_value = "ecr-mirror-sync",
        env = "ECR_MIRROR_SYNC_METRICS_JOB"
    )]
    pub metrics_job: String,
}

/// `list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Draw a table.
    #[arg(long)]
    pub render_table: bool,
    /// Also HEAD both sides and show each tag's status with both digests.
    #[arg(long)]
    pub check: bool,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub estate: EstateArgs,
}

/// `verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Only this ECR repository.
    #[arg(long, value_name = "NAME")]
    pub repository: Option<String>,
    /// Draw a table.
    #[arg(long)]
    pub render_table: bool,
    /// Also write images_<UTC timestamp>.csv, .md and .json (one row per tag) into DIR.
    #[arg(long, value_name = "DIR", env = "ECR_MIRROR_SYNC_REPORT_DIR")]
    pub report_dir: Option<PathBuf>,
    /// Which referrers must be in ECR too: `all` (the default, as for `sync`), `none`, or
    /// artifact types and the short names `sig`, `sbom`, `att`, `bundle`, separated by
    /// commas. A repository's `upstream-referrers` resource tag overrides it.
    #[arg(long, env = "ECR_MIRROR_SYNC_REFERRERS", value_name = "all|none|TYPES")]
    pub referrers: Option<String>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub estate: EstateArgs,
}

/// Tag mutability of a repository this tool creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum TagMutability {
    /// Tags can be moved (ECR's default).
    #[default]
    #[value(name = "MUTABLE")]
    Mutable,
    /// Tags cannot be moved once pushed.
    #[value(name = "IMMUTABLE")]
    Immutable,
}

/// Server-side encryption of a repository this tool creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EncryptionKind {
    /// Amazon S3-managed keys.
    #[value(name = "AES256")]
    Aes256,
    /// AWS KMS (--kms-key, or the AWS-managed aws/ecr key).
    #[value(name = "KMS")]
    Kms,
}

/// Settings for ECR repositories this tool creates (`import`, `--create-missing`). They apply
/// at creation only; existing repositories are not changed.
#[derive(Debug, Clone, Args, Default)]
pub struct RepoSettingsArgs {
    /// Scan images on push (basic scanning).
    #[arg(long, env = "ECR_MIRROR_SYNC_SCAN_ON_PUSH")]
    pub scan_on_push: bool,
    /// Tag mutability: MUTABLE or IMMUTABLE.
    #[arg(long, value_enum, ignore_case = true, default_value_t = TagMutability::Mutable, env = "ECR_MIRROR_SYNC_IMAGE_TAG_MUTABILITY")]
    pub image_tag_mutability: TagMutability,
    /// Encryption: AES256 or KMS (default: ECR's default, AES256). Fixed at creation.
    #[arg(
        long,
        value_enum,
        ignore_case = true,
        env = "ECR_MIRROR_SYNC_ENCRYPTION"
    )]
    pub encryption: Option<EncryptionKind>,
    /// The KMS key (ARN or id) for --encryption KMS (default: the AWS-managed aws/ecr key).
    #[arg(long, value_name = "ARN", env = "ECR_MIRROR_SYNC_KMS_KEY")]
    pub kms_key: Option<String>,
    /// A lifecycle policy (JSON file) to put on the repository.
    #[arg(long, value_name = "FILE", env = "ECR_MIRROR_SYNC_LIFECYCLE_POLICY")]
    pub lifecycle_policy: Option<PathBuf>,
}

/// The format of an `import` file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ImportFormat {
    /// `images: [{source, dest, chart}]`.
    Yaml,
    /// One reference per line; `#` comments and blank lines allowed.
    List,
}

/// `import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The image list: images.yaml or a source-images.list.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// The file's format (default: detected from the content).
    #[arg(long, value_enum, env = "ECR_MIRROR_SYNC_FORMAT")]
    pub format: Option<ImportFormat>,
    /// Name repositories PREFIX/REGISTRY/PATH (e.g. mirror/docker.io/library/nginx), as
    /// `skopeo sync --scoped` does; `dest` in the file is ignored.
    #[arg(long, env = "ECR_MIRROR_SYNC_SCOPED")]
    pub scoped: bool,
    /// The repository prefix for entries without `dest` ('' for none).
    #[arg(long, default_value = "mirror", env = "ECR_MIRROR_SYNC_PREFIX")]
    pub prefix: String,
    /// The resource-tag key written with the upstream image.
    #[arg(
        long,
        default_value = "upstream-image",
        env = "ECR_MIRROR_SYNC_IMAGE_KEY"
    )]
    pub image_key: String,
    /// The resource-tag key written with the `/`-separated upstream tags.
    #[arg(long, default_value = "upstream-tags", env = "ECR_MIRROR_SYNC_TAG_KEY")]
    pub tag_key: String,
    /// The resource-tag key written with an entry's tag rule (`rule:` in images.yaml).
    #[arg(
        long,
        default_value = "upstream-tag-rule",
        env = "ECR_MIRROR_SYNC_TAG_RULE_KEY"
    )]
    pub tag_rule_key: String,
    /// Overwrite an existing, different upstream-image tag (tags are still merged).
    #[arg(long, env = "ECR_MIRROR_SYNC_FORCE")]
    pub force: bool,
    /// Print the changes; create and tag nothing.
    #[arg(long, env = "ECR_MIRROR_SYNC_DRY_RUN")]
    pub dry_run: bool,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub aws: AwsArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub settings: RepoSettingsArgs,
}

/// `push`.
#[derive(Debug, Args)]
pub struct PushArgs {
    /// The image file: a `docker save` tarball (docker-archive), an oci-archive tarball, or
    /// an OCI image layout directory. A .tar.gz must be decompressed first.
    #[arg(long, value_name = "FILE", env = "ECR_MIRROR_SYNC_ARCHIVE")]
    pub archive: PathBuf,
    /// Destination: REGISTRY/REPO[:TAG]. Without a tag (and without --tag) the tag recorded
    /// in the archive is used.
    #[arg(long, value_name = "REGISTRY/REPO[:TAG]", env = "ECR_MIRROR_SYNC_DEST")]
    pub dest: String,
    /// Another tag to write (repeatable), e.g. a version and `latest`. All tags point at the
    /// same manifest.
    #[arg(
        long = "tag",
        value_name = "TAG",
        env = "ECR_MIRROR_SYNC_TAG",
        value_delimiter = ','
    )]
    pub tags: Vec<String>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub dest_access: DestAccess,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub aws: AwsArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub net: NetArgs,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn settings_print_never_shows_secrets() {
        let c = Cli::try_parse_from([
            "x",
            "copy",
            "--src",
            "a",
            "--dest",
            "b",
            "--src-creds",
            "bob:hunter2",
            "--dest-password",
            "s3cr3t",
            "--dest-username",
            "u",
            "--src-registry-token",
            "tok3n",
        ])
        .unwrap();
        let shown = format!("{c:?} {c:#?}");
        for secret in ["hunter2", "s3cr3t", "tok3n"] {
            assert!(!shown.contains(secret), "{secret} leaked: {shown}");
        }
        assert!(shown.contains("<redacted>"));
    }

    #[test]
    fn batch_is_an_alias_and_tls_verify_takes_a_value() {
        let c =
            Cli::try_parse_from(["x", "sync", "--batch", "7", "--dest-tls-verify=false"]).unwrap();
        match c.command {
            Command::Sync(s) => {
                assert_eq!(s.parallel, 7);
                assert!(!s.estate.dest_tls_verify);
            }
            _ => panic!(),
        }
        let e = Cli::try_parse_from([
            "x",
            "copy",
            "--src",
            "a",
            "--dest",
            "b",
            "--all",
            "--platform",
            "linux/amd64",
        ]);
        assert!(e.is_err(), "--all conflicts with --platform");
    }
}
