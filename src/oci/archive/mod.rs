//! Images stored in files: a `docker save` tarball (docker-archive), an OCI image layout
//! directory, or an oci-archive (a tar of an OCI layout). Used by `push --archive`.
//!
//! Nothing is extracted. A tarball is read in two passes at most:
//! 1. [`Archive::open`] walks the tar *headers* only (seeking over the data) and records, for
//!    every entry, where its data starts in the file and how long it is. It then reads the
//!    small metadata files (`manifest.json`, `index.json`) from those offsets.
//! 2. [`Archive::load`] builds the image to push. For an OCI layout the manifests are read
//!    and checked (they are pushed byte for byte); the layers are only located. For a
//!    docker-archive there is no registry manifest in the file, so one is built: each layer
//!    entry is streamed once to learn its size and sha256 (the bytes *as stored*), and
//!    uncompressed layers are checked against the config's `rootfs.diff_ids`.
//!
//! The upload then streams each blob straight from its offset in the file
//! ([`ArchiveImage`] is an [`ImageSource`]), so memory stays bounded whatever the layer size and a
//! retry simply reopens the file. Content that does not hash to its digest is caught by the
//! copy engine's verifying upload and never committed.
//!
//! Hostile or broken input is refused with a clear message: entry names that escape the
//! archive (`..`, absolute paths), metadata larger than [`MAX_MANIFEST_BYTES`], entries whose
//! data runs past the end of the file (a truncated tar), bad headers, references to files
//! that are not there, manifests that do not hash to their names, and sizes that disagree.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Component, Path, PathBuf};

use bytes::Bytes;
use futures::TryStreamExt as _;
use oci_client::manifest::OciDescriptor;
use sha2::{Digest as _, Sha256};

use crate::oci::client::ByteStream;
use crate::oci::copy::ImageSource;
use crate::oci::manifest::{
    blobs_of, classify, is_valid_digest, sha256_digest, Manifest, Parsed, MAX_INDEX_DEPTH,
    MAX_MANIFEST_BYTES,
};
use crate::oci::RegistryError;

mod entries;
mod load;

pub use entries::tag_of_reference;
use entries::{display, index_tar, normalise, read_up_to, truncated_error};
use load::candidate_tags;

/// Docker v2 schema 2 image manifest.
pub const DOCKER_MANIFEST_MEDIA_TYPE: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker image config.
pub const DOCKER_CONFIG_MEDIA_TYPE: &str = "application/vnd.docker.container.image.v1+json";
/// Docker layer, uncompressed tar.
pub const DOCKER_LAYER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";
/// Docker layer, gzip-compressed tar.
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// The OCI annotation naming a manifest in an image layout's `index.json`.
pub const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";

/// How many symbolic/hard links are followed to find an entry's data.
const MAX_LINK_DEPTH: usize = 8;
/// Read buffer for hashing layers.
const HASH_BUF: usize = 1 << 20;
/// Chunk size of the upload stream.
const STREAM_CHUNK: usize = 256 * 1024;

/// Why an archive cannot be pushed.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The input cannot be used as given (missing file, compressed tarball, ambiguous
    /// selection, unknown format): a usage error, exit code 2.
    #[error("{path}: {reason}")]
    Unusable {
        /// The archive.
        path: String,
        /// What is wrong, and what to do.
        reason: String,
    },
    /// The archive is malformed, truncated, or disagrees with itself: a failed item, exit 1.
    #[error("{path}: {reason}")]
    Corrupt {
        /// The archive.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// Well-formed content this tool does not push (e.g. foreign layers): exit 1.
    #[error("{path}: {reason}")]
    Unsupported {
        /// The archive.
        path: String,
        /// Why.
        reason: String,
    },
}

impl ArchiveError {
    /// Whether the archive cannot be used at all as given (a usage error: exit 2), as opposed
    /// to one that is corrupt or holds something unsupported (a failed push: exit 1).
    pub fn is_usage(&self) -> bool {
        matches!(self, ArchiveError::Unusable { .. })
    }
}

/// The kind of archive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// `docker save` output: `manifest.json` with Config, RepoTags and Layers.
    DockerArchive,
    /// A tar of an OCI image layout.
    OciArchive,
    /// An OCI image layout directory.
    OciLayout,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::DockerArchive => "docker-archive",
            Format::OciArchive => "oci-archive",
            Format::OciLayout => "oci-layout",
        })
    }
}

/// Where a blob's bytes are: `size` bytes at `offset` of `file`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlobLocation {
    /// The tarball, or the blob file of a layout directory.
    pub file: PathBuf,
    /// Offset of the first byte.
    pub offset: u64,
    /// Length in bytes.
    pub size: u64,
}

/// One entry of a tarball's index.
#[derive(Clone, Debug)]
enum Node {
    /// A regular file: its data's offset and size.
    File { offset: u64, size: u64 },
    /// A symbolic link (target relative to the link's directory) or a hard link (target
    /// relative to the archive root), already normalised to an archive path.
    Link(String),
    /// Anything else (directories, devices, sparse files): not readable as a blob.
    Other(&'static str),
}

/// What the image data is stored in.
#[derive(Debug)]
enum Store {
    /// A tarball, indexed by normalised entry name.
    Tar {
        entries: HashMap<String, Node>,
        len: u64,
    },
    /// An OCI layout directory.
    Dir,
}

/// One image the archive offers.
#[derive(Clone, Debug)]
enum Candidate {
    Docker {
        config: String,
        layers: Vec<String>,
        repo_tags: Vec<String>,
    },
    Oci {
        media_type: Option<String>,
        digest: String,
        size: i64,
        ref_name: Option<String>,
    },
}

/// An image archive, opened and indexed but not yet read.
#[derive(Debug)]
pub struct Archive {
    path: PathBuf,
    format: Format,
    store: Store,
    candidates: Vec<Candidate>,
}

/// The image to push, with its blobs located in the archive.
#[derive(Debug)]
pub struct ArchiveImage {
    /// The archive format.
    pub format: Format,
    /// The manifest to tag: an image manifest or an index, pushed byte for byte.
    pub top: Manifest,
    /// Manifests the top one references (an index's children, recursively), bottom-up:
    /// each is listed after everything it references. Pushed by digest before `top`.
    pub children: Vec<Manifest>,
    /// Every blob (configs and layers) to upload, each once.
    pub blobs: Vec<OciDescriptor>,
    /// The tag the archive itself names (docker-archive `RepoTags`, OCI
    /// `org.opencontainers.image.ref.name`), if any.
    pub tag: Option<String>,
    /// Streams the blobs out of the archive.
    pub source: ArchiveBlobs,
}

/// Reads blobs at their offsets in the archive's files.
#[derive(Debug, Default)]
pub struct ArchiveBlobs {
    locations: HashMap<String, BlobLocation>,
}

impl ArchiveBlobs {
    /// Where `digest` is stored, if it is in the archive.
    pub fn location(&self, digest: &str) -> Option<&BlobLocation> {
        self.locations.get(digest)
    }
}

impl ArchiveBlobs {
    /// Opens `digest` at its offset, as a stream of at most its stored size.
    pub fn open<'a>(
        &'a self,
        digest: &'a str,
    ) -> futures::future::BoxFuture<'a, Result<ByteStream, RegistryError>> {
        Box::pin(async move {
            use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};
            let loc = self
                .locations
                .get(digest)
                .ok_or_else(|| RegistryError::Invalid {
                    what: format!("blob {digest}"),
                    reason: "not in the archive".into(),
                })?;
            let what = format!("{} (blob {digest})", loc.file.display());
            let io_err = |what: &str, e: std::io::Error| RegistryError::Invalid {
                what: what.to_string(),
                reason: format!("cannot read: {e}"),
            };
            let mut f = tokio::fs::File::open(&loc.file)
                .await
                .map_err(|e| io_err(&what, e))?;
            f.seek(SeekFrom::Start(loc.offset))
                .await
                .map_err(|e| io_err(&what, e))?;
            // A short file ends the stream early; the verifying upload reports the size.
            let reader = f.take(loc.size);
            let stream = tokio_util::io::ReaderStream::with_capacity(reader, STREAM_CHUNK)
                .map_err(move |e| io_err(&what, e));
            Ok(Box::pin(stream) as ByteStream)
        })
    }
}

/// The archive's image, as a source for the one bottom-up writer: `manifest` answers the top
/// manifest's digest and each child's digest; blobs stream from the file.
impl ImageSource for ArchiveImage {
    fn name(&self) -> String {
        format!("{} archive", self.format)
    }
    fn manifest<'a>(
        &'a self,
        reference: &'a str,
    ) -> futures::future::BoxFuture<'a, Result<Manifest, RegistryError>> {
        Box::pin(async move {
            std::iter::once(&self.top)
                .chain(self.children.iter())
                .find(|m| m.digest == reference)
                .cloned()
                .ok_or_else(|| RegistryError::Invalid {
                    what: format!("manifest {reference}"),
                    reason: "not in the archive".into(),
                })
        })
    }
    fn blob<'a>(
        &'a self,
        digest: &'a str,
        _size: u64,
    ) -> futures::future::BoxFuture<'a, Result<ByteStream, RegistryError>> {
        self.source.open(digest)
    }
    fn children_often_present(&self) -> bool {
        true
    }
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifestItem {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    #[serde(default)]
    layers: Vec<String>,
    #[serde(default)]
    layer_sources: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct LayoutIndex {
    #[serde(default)]
    manifests: Vec<LayoutEntry>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct LayoutEntry {
    media_type: Option<String>,
    digest: String,
    size: i64,
    #[serde(default)]
    annotations: Option<HashMap<String, String>>,
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct DockerManifestJson<'a> {
    schema_version: u32,
    media_type: &'a str,
    config: DescriptorJson<'a>,
    layers: Vec<DescriptorJson<'a>>,
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct DescriptorJson<'a> {
    media_type: &'a str,
    size: i64,
    digest: &'a str,
}

impl Archive {
    /// Opens `path`: an OCI layout directory, or a docker-archive / oci-archive tarball. Reads
    /// the tar headers (not the data) and the small metadata files. A gzip/zstd-compressed
    /// tarball is refused: it cannot be read at offsets, so it must be decompressed first.
    pub fn open(path: &Path) -> Result<Archive, ArchiveError> {
        let shown = display(path);
        let unusable = |reason: String| ArchiveError::Unusable {
            path: shown.clone(),
            reason,
        };
        let meta = std::fs::metadata(path).map_err(|e| unusable(format!("cannot open: {e}")))?;
        if meta.is_dir() {
            let mut a = Archive {
                path: path.to_path_buf(),
                format: Format::OciLayout,
                store: Store::Dir,
                candidates: Vec::new(),
            };
            if !path.join("oci-layout").is_file() || !path.join("index.json").is_file() {
                return Err(unusable(
                    "a directory must be an OCI image layout (with oci-layout and index.json)"
                        .into(),
                ));
            }
            a.read_layout()?;
            return Ok(a);
        }
        let mut file = File::open(path).map_err(|e| unusable(format!("cannot open: {e}")))?;
        let mut magic = [0u8; 4];
        let n =
            read_up_to(&mut file, &mut magic).map_err(|e| unusable(format!("cannot read: {e}")))?;
        if n >= 2 && magic[..2] == [0x1f, 0x8b] {
            return Err(unusable(
                "this is a gzip-compressed tarball, which cannot be read in place; decompress it \
                 first (e.g. `gunzip -k FILE`) and push the .tar"
                    .into(),
            ));
        }
        if n == 4 && magic == [0x28, 0xb5, 0x2f, 0xfd] {
            return Err(unusable(
                "this is a zstd-compressed tarball, which cannot be read in place; decompress it \
                 first (e.g. `zstd -d FILE`) and push the .tar"
                    .into(),
            ));
        }
        file.seek(SeekFrom::Start(0))
            .map_err(|e| unusable(format!("cannot read: {e}")))?;
        let (entries, end) = index_tar(file, meta.len(), &shown)?;
        // Every tar writer ends the archive with two zero blocks; without them the file was
        // most likely cut short.
        let ends_properly = meta.len() >= end.saturating_add(1024);
        let has = |n: &str| entries.contains_key(n);
        let format = if has("manifest.json") {
            // `docker save` (including Docker 25+, whose tarball is also an OCI layout): the
            // legacy manifest.json is what every Docker version writes.
            Format::DockerArchive
        } else if has("index.json") && has("oci-layout") {
            Format::OciArchive
        } else if entries.is_empty() {
            return Err(ArchiveError::Corrupt {
                path: shown,
                reason: "not a tar archive, or an empty one".into(),
            });
        } else if !ends_properly {
            return Err(ArchiveError::Corrupt {
                path: shown,
                reason: "the tar is truncated (it has no end-of-archive marker), and neither                          manifest.json nor index.json was found before the cut"
                    .into(),
            });
        } else {
            return Err(unusable(
                "neither a docker-archive (no manifest.json) nor an oci-archive (no index.json \
                 and oci-layout); if the file was cut short, it may be truncated"
                    .into(),
            ));
        };
        let mut a = Archive {
            path: path.to_path_buf(),
            format,
            store: Store::Tar {
                entries,
                len: meta.len(),
            },
            candidates: Vec::new(),
        };
        match format {
            Format::DockerArchive => a.read_docker_manifest()?,
            _ => a.read_layout()?,
        }
        if !ends_properly {
            tracing::warn!(
                archive = %a.path.display(),
                "the tar has no end-of-archive marker; it may be truncated"
            );
        }
        Ok(a)
    }

    /// The archive's format.
    pub fn format(&self) -> Format {
        self.format
    }

    /// How many images the archive offers.
    pub fn image_count(&self) -> usize {
        self.candidates.len()
    }

    /// The tags each image is recorded under, one list per image.
    pub fn tags(&self) -> Vec<Vec<String>> {
        self.candidates.iter().map(candidate_tags).collect()
    }

    /// Picks the image to push: the only one, or, when the archive holds several, the one
    /// recorded under one of `wanted` (the tags being pushed).
    pub fn select(&self, wanted: &[String]) -> Result<usize, ArchiveError> {
        match self.candidates.len() {
            0 => Err(self.corrupt(match self.format {
                Format::DockerArchive => "manifest.json lists no image".to_string(),
                _ => "index.json lists no manifest".to_string(),
            })),
            1 => Ok(0),
            n => {
                let hits: Vec<usize> = (0..n)
                    .filter(|&i| {
                        candidate_tags(&self.candidates[i])
                            .iter()
                            .any(|t| wanted.contains(t))
                    })
                    .collect();
                match hits.as_slice() {
                    [one] => Ok(*one),
                    _ => {
                        let offered: Vec<String> = self
                            .candidates
                            .iter()
                            .map(|c| {
                                let t = candidate_tags(c);
                                if t.is_empty() {
                                    "(untagged)".to_string()
                                } else {
                                    t.join("/")
                                }
                            })
                            .collect();
                        Err(ArchiveError::Unusable {
                            path: display(&self.path),
                            reason: format!(
                                "the archive holds {n} images ({}); name exactly one of them \
                                 with the destination tag or --tag",
                                offered.join(", ")
                            ),
                        })
                    }
                }
            }
        }
    }

    fn corrupt(&self, reason: String) -> ArchiveError {
        ArchiveError::Corrupt {
            path: display(&self.path),
            reason,
        }
    }

    /// Where the data of archive path `name` is, following links.
    fn locate(&self, name: &str) -> Result<BlobLocation, ArchiveError> {
        match &self.store {
            Store::Dir => {
                let rel = normalise(Path::new(name))
                    .ok_or_else(|| self.corrupt(format!("{name:?} points outside the layout")))?;
                let file = self.path.join(&rel);
                let meta = std::fs::metadata(&file)
                    .map_err(|e| self.corrupt(format!("{rel} is missing: {e}")))?;
                if !meta.is_file() {
                    return Err(self.corrupt(format!("{rel} is not a regular file")));
                }
                Ok(BlobLocation {
                    file,
                    offset: 0,
                    size: meta.len(),
                })
            }
            Store::Tar { entries, len } => {
                let mut current = normalise(Path::new(name)).ok_or_else(|| {
                    self.corrupt(format!(
                        "{name:?} points outside the archive (path traversal)"
                    ))
                })?;
                for _ in 0..=MAX_LINK_DEPTH {
                    match entries.get(&current) {
                        None => {
                            return Err(self.corrupt(format!(
                                "{current} is missing from the archive (truncated or incomplete?)"
                            )))
                        }
                        Some(Node::Other(kind)) => {
                            return Err(self.corrupt(format!("{current} is a {kind}, not a file")))
                        }
                        Some(Node::Link(target)) => current = target.clone(),
                        Some(Node::File { offset, size }) => {
                            // The index already checked this; a second look costs nothing.
                            if offset.saturating_add(*size) > *len {
                                return Err(self.truncated(&current, *offset, *size, *len));
                            }
                            return Ok(BlobLocation {
                                file: self.path.clone(),
                                offset: *offset,
                                size: *size,
                            });
                        }
                    }
                }
                Err(self.corrupt(format!(
                    "{name}: more than {MAX_LINK_DEPTH} links, or a link loop"
                )))
            }
        }
    }

    fn truncated(&self, name: &str, offset: u64, size: u64, len: u64) -> ArchiveError {
        truncated_error(&display(&self.path), name, offset, size, len)
    }

    /// Reads a small file (metadata, a manifest or a config) whole, at most `limit` bytes.
    fn read_small(&self, name: &str, limit: usize) -> Result<Vec<u8>, ArchiveError> {
        let loc = self.locate(name)?;
        if loc.size > limit as u64 {
            return Err(self.corrupt(format!(
                "{name} is {} bytes; more than the {limit} accepted for metadata",
                loc.size
            )));
        }
        let mut f =
            File::open(&loc.file).map_err(|e| self.corrupt(format!("cannot read {name}: {e}")))?;
        f.seek(SeekFrom::Start(loc.offset))
            .map_err(|e| self.corrupt(format!("cannot read {name}: {e}")))?;
        let mut buf = vec![0u8; loc.size as usize];
        f.read_exact(&mut buf)
            .map_err(|e| self.corrupt(format!("cannot read {name} (truncated?): {e}")))?;
        Ok(buf)
    }

    fn blob_path(digest: &str) -> String {
        format!(
            "blobs/sha256/{}",
            digest.strip_prefix("sha256:").unwrap_or(digest)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::entries::resolve_link;
    use super::*;
    use std::io::Write as _;

    /// Files for a test archive: (name, bytes).
    type Files = Vec<(String, Vec<u8>)>;

    fn tar_of(files: &Files) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
            b.append_data(&mut h, name, &data[..]).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn layer_tar(seed: u8, len: usize) -> Vec<u8> {
        let data: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(seed)).collect();
        tar_of(&vec![(format!("file-{seed}"), data)])
    }

    fn config_for(layers: &[&[u8]]) -> Vec<u8> {
        let ids: Vec<String> = layers.iter().map(|l| sha256_digest(l)).collect();
        serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": ids}
        }))
        .unwrap()
    }

    /// A docker-archive in the classic layout (`<id>/layer.tar`) with a fake gzip layer
    /// whose diff_id is arbitrary.
    fn docker_files(repo_tags: serde_json::Value) -> (Files, Vec<u8>, Vec<u8>, Vec<u8>) {
        let l1 = layer_tar(3, 3000);
        let l2: Vec<u8> = [&[0x1f, 0x8b, 8, 0][..], &[7u8; 100][..]].concat();
        let mut config: serde_json::Value = serde_json::from_slice(&config_for(&[&l1])).unwrap();
        config["rootfs"]["diff_ids"]
            .as_array_mut()
            .unwrap()
            .push(format!("sha256:{}", "ab".repeat(32)).into());
        let config = serde_json::to_vec(&config).unwrap();
        let manifest = serde_json::json!([{
            "Config": "cfg.json",
            "RepoTags": repo_tags,
            "Layers": ["aaa/layer.tar", "bbb/layer.tar"]
        }]);
        let files = vec![
            ("aaa/layer.tar".to_string(), l1.clone()),
            ("bbb/layer.tar".to_string(), l2.clone()),
            ("cfg.json".to_string(), config.clone()),
            (
                "manifest.json".to_string(),
                serde_json::to_vec(&manifest).unwrap(),
            ),
        ];
        (files, config, l1, l2)
    }

    fn write(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, data).unwrap();
        p
    }

    async fn read_blob(src: &ArchiveBlobs, digest: &str) -> Vec<u8> {
        let s = src.open(digest).await.unwrap();
        let chunks: Vec<Bytes> = s.try_collect().await.unwrap();
        chunks.concat()
    }

    #[tokio::test]
    async fn docker_archive_builds_a_v2s2_manifest_and_streams_layers() {
        let dir = tempfile::tempdir().unwrap();
        let (files, config, l1, l2) =
            docker_files(serde_json::json!(["example.com:5000/team/app:1.2"]));
        let p = write(dir.path(), "img.tar", &tar_of(&files));
        let a = Archive::open(&p).unwrap();
        assert_eq!(a.format(), Format::DockerArchive);
        assert_eq!(a.tags(), vec![vec!["1.2".to_string()]]);
        let img = a.load(a.select(&[]).unwrap()).unwrap();
        assert_eq!(img.tag.as_deref(), Some("1.2"));
        assert!(img.children.is_empty());
        assert_eq!(img.top.media_type, DOCKER_MANIFEST_MEDIA_TYPE);
        assert_eq!(img.top.digest, sha256_digest(&img.top.bytes));
        let m: serde_json::Value = serde_json::from_slice(&img.top.bytes).unwrap();
        assert_eq!(m["config"]["mediaType"], DOCKER_CONFIG_MEDIA_TYPE);
        assert_eq!(m["config"]["digest"], sha256_digest(&config));
        assert_eq!(m["layers"][0]["mediaType"], DOCKER_LAYER_TAR);
        assert_eq!(m["layers"][0]["digest"], sha256_digest(&l1));
        assert_eq!(m["layers"][0]["size"], l1.len());
        assert_eq!(m["layers"][1]["mediaType"], DOCKER_LAYER_GZIP);
        assert_eq!(m["layers"][1]["digest"], sha256_digest(&l2));
        assert_eq!(img.blobs.len(), 3);
        assert_eq!(img.blobs[0].digest, sha256_digest(&config));
        // The blobs stream out of the tar at their offsets, byte for byte.
        assert_eq!(read_blob(&img.source, &sha256_digest(&l1)).await, l1);
        assert_eq!(read_blob(&img.source, &sha256_digest(&l2)).await, l2);
        assert_eq!(
            read_blob(&img.source, &sha256_digest(&config)).await,
            config
        );
        let loc = img.source.location(&sha256_digest(&l1)).unwrap();
        assert_eq!(loc.file, p);
        assert!(loc.offset > 0 && loc.offset % 512 == 0);
        // Deterministic: the same archive gives the same manifest.
        let again = Archive::open(&p).unwrap().load(0).unwrap();
        assert_eq!(again.top.digest, img.top.digest);
    }

    #[tokio::test]
    async fn newer_docker_layout_with_symlinks_and_dot_prefixes() {
        // Docker 25+ stores blobs under blobs/sha256; skopeo links <id>/layer.tar to them.
        let l1 = layer_tar(5, 1500);
        let d1 = sha256_digest(&l1);
        let config = config_for(&[&l1]);
        let dc = sha256_digest(&config);
        let hex = |d: &str| d.trim_start_matches("sha256:").to_string();
        let mut b = tar::Builder::new(Vec::new());
        let mut add = |name: &str, data: &[u8]| {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            b.append_data(&mut h, name, data).unwrap();
        };
        add(&format!("./blobs/sha256/{}", hex(&d1)), &l1);
        add(&format!("blobs/sha256/{}", hex(&dc)), &config);
        let manifest = serde_json::json!([{
            "Config": format!("blobs/sha256/{}", hex(&dc)),
            "RepoTags": null,
            "Layers": ["legacy/layer.tar"]
        }]);
        add("manifest.json", &serde_json::to_vec(&manifest).unwrap());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        b.append_link(
            &mut h,
            "legacy/layer.tar",
            format!("../blobs/sha256/{}", hex(&d1)),
        )
        .unwrap();
        let data = b.into_inner().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "new.tar", &data);
        let a = Archive::open(&p).unwrap();
        let img = a.load(0).unwrap();
        assert_eq!(img.tag, None, "RepoTags null: no tag");
        assert_eq!(img.blobs[1].digest, d1);
        assert_eq!(read_blob(&img.source, &d1).await, l1);
    }

    /// An OCI layout with a 2-platform index (one image shared layer) under `ref_name`.
    fn oci_files(ref_name: Option<&str>) -> (Files, Vec<u8>, Vec<Vec<u8>>) {
        let mut files: Files = Vec::new();
        let mut blob = |data: Vec<u8>| -> (String, usize) {
            let d = sha256_digest(&data);
            let n = data.len();
            files.push((Archive::blob_path(&d), data));
            (d, n)
        };
        let shared = layer_tar(9, 2000);
        let (ls, ls_n) = blob(shared.clone());
        let mut children = Vec::new();
        let mut child_bytes = Vec::new();
        for (i, arch) in ["amd64", "arm64"].into_iter().enumerate() {
            let own = layer_tar(20 + i as u8, 700);
            let (lo, lo_n) = blob(own.clone());
            let cfg = serde_json::to_vec(&serde_json::json!({
                "architecture": arch, "os": "linux",
                "rootfs": {"type": "layers", "diff_ids": [ls, lo]}}))
            .unwrap();
            let (dc, dc_n) = blob(cfg);
            let m = serde_json::to_vec_pretty(&serde_json::json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": dc, "size": dc_n},
                "layers": [
                    {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": ls, "size": ls_n},
                    {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": lo, "size": lo_n}
                ]})).unwrap();
            let (dm, dm_n) = blob(m.clone());
            child_bytes.push(m);
            children.push(serde_json::json!({
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": dm, "size": dm_n,
                "platform": {"os": "linux", "architecture": arch}}));
        }
        let index = serde_json::to_vec_pretty(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": children}))
        .unwrap();
        let (di, di_n) = blob(index.clone());
        let mut entry = serde_json::json!({
            "mediaType": "application/vnd.oci.image.index.v1+json", "digest": di, "size": di_n});
        if let Some(r) = ref_name {
            entry["annotations"] = serde_json::json!({REF_NAME_ANNOTATION: r});
        }
        files.push((
            "index.json".into(),
            serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "manifests": [entry]}))
                .unwrap(),
        ));
        files.push((
            "oci-layout".into(),
            br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
        ));
        (files, index, child_bytes)
    }

    fn check_oci(img: &ArchiveImage, index: &[u8], children: &[Vec<u8>]) {
        assert_eq!(
            &img.top.bytes[..],
            index,
            "the index is pushed byte for byte"
        );
        assert_eq!(img.top.digest, sha256_digest(index));
        assert_eq!(
            img.top.media_type,
            "application/vnd.oci.image.index.v1+json"
        );
        let kids: Vec<&[u8]> = img.children.iter().map(|m| &m.bytes[..]).collect();
        assert_eq!(kids, children.iter().map(|c| &c[..]).collect::<Vec<_>>());
        // shared layer once, two own layers, two configs
        assert_eq!(img.blobs.len(), 5);
        let unique: BTreeSet<&str> = img.blobs.iter().map(|b| b.digest.as_str()).collect();
        assert_eq!(unique.len(), 5);
    }

    #[tokio::test]
    async fn oci_archive_and_layout_keep_the_index_bytes() {
        let (files, index, children) = oci_files(Some("v1"));
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "oci.tar", &tar_of(&files));
        let a = Archive::open(&p).unwrap();
        assert_eq!(a.format(), Format::OciArchive);
        let img = a.load(0).unwrap();
        assert_eq!(img.tag.as_deref(), Some("v1"));
        check_oci(&img, &index, &children);
        for b in &img.blobs {
            let data = read_blob(&img.source, &b.digest).await;
            assert_eq!(sha256_digest(&data), b.digest);
        }

        let layout = dir.path().join("layout");
        for (name, data) in &files {
            let f = layout.join(name);
            std::fs::create_dir_all(f.parent().unwrap()).unwrap();
            std::fs::write(f, data).unwrap();
        }
        let a = Archive::open(&layout).unwrap();
        assert_eq!(a.format(), Format::OciLayout);
        let img = a.load(0).unwrap();
        check_oci(&img, &index, &children);
        let b = &img.blobs[1];
        assert_eq!(
            sha256_digest(&read_blob(&img.source, &b.digest).await),
            b.digest
        );
    }

    #[test]
    fn tags_from_references() {
        assert_eq!(tag_of_reference("v1").as_deref(), Some("v1"));
        assert_eq!(
            tag_of_reference("busybox:latest").as_deref(),
            Some("latest")
        );
        assert_eq!(
            tag_of_reference("localhost:5000/a/b:1.0").as_deref(),
            Some("1.0")
        );
        assert_eq!(tag_of_reference("localhost:5000/a/b"), None);
        assert_eq!(tag_of_reference("a/b@sha256:00"), None);
        assert_eq!(tag_of_reference(""), None);
        assert_eq!(tag_of_reference("bad tag!"), None);
    }

    #[test]
    fn untagged_archives_have_no_tag() {
        let (files, ..) = oci_files(None);
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "oci.tar", &tar_of(&files));
        let img = Archive::open(&p).unwrap().load(0).unwrap();
        assert_eq!(img.tag, None);
    }

    #[test]
    fn several_images_need_a_matching_tag() {
        let (mut files, ..) = docker_files(serde_json::json!(["app:one"]));
        let mut items: serde_json::Value =
            serde_json::from_slice(&files.last().unwrap().1).unwrap();
        let mut second = items[0].clone();
        second["RepoTags"] = serde_json::json!(["app:two"]);
        items.as_array_mut().unwrap().push(second);
        files.last_mut().unwrap().1 = serde_json::to_vec(&items).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "two.tar", &tar_of(&files));
        let a = Archive::open(&p).unwrap();
        assert_eq!(a.image_count(), 2);
        assert_eq!(a.select(&["two".into()]).unwrap(), 1);
        let e = a.select(&[]).unwrap_err();
        assert!(matches!(e, ArchiveError::Unusable { .. }), "{e}");
        assert!(e.to_string().contains("one, two"), "{e}");
    }

    #[test]
    fn compressed_and_missing_files_are_usage_errors() {
        let dir = tempfile::tempdir().unwrap();
        let (files, ..) = docker_files(serde_json::json!([]));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar_of(&files)).unwrap();
        let p = write(dir.path(), "img.tar.gz", &gz.finish().unwrap());
        let e = Archive::open(&p).unwrap_err();
        assert!(matches!(e, ArchiveError::Unusable { .. }), "{e}");
        assert!(e.to_string().contains("decompress it first"), "{e}");
        let e = Archive::open(&dir.path().join("nope.tar")).unwrap_err();
        assert!(matches!(e, ArchiveError::Unusable { .. }), "{e}");
        assert!(e.is_usage());
        let e = Archive::open(dir.path()).unwrap_err();
        assert!(e.to_string().contains("OCI image layout"), "{e}");
    }

    #[test]
    fn truncated_and_bad_archives_are_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        // manifest.json first, so that a cut inside the layer keeps it readable.
        let (mut files, ..) = docker_files(serde_json::json!(["a:b"]));
        files.rotate_right(1);
        assert_eq!(files[0].0, "manifest.json");
        let full = tar_of(&files);
        // The layer's header: the name at a block boundary (manifest.json also holds it).
        let layer_at = (0..full.len())
            .step_by(512)
            .find(|&i| full[i..].starts_with(b"aaa/layer.tar"))
            .unwrap();
        let cut = &full[..layer_at + 512 + 1000];
        let p = write(dir.path(), "cut.tar", cut);
        let e = Archive::open(&p).unwrap_err();
        assert!(matches!(e, ArchiveError::Corrupt { .. }), "{e}");
        assert!(e.to_string().contains("truncated"), "{e}");
        assert!(!e.is_usage());

        // A header with a broken checksum.
        let mut bad = full.clone();
        bad[layer_at + 3] ^= 0x55;
        let p = write(dir.path(), "bad.tar", &bad);
        let e = Archive::open(&p).unwrap_err();
        assert!(e.to_string().contains("not a valid tar"), "{e}");

        // A flipped byte inside an uncompressed layer: its sha256 no longer matches diff_id.
        let mut flipped = full.clone();
        flipped[layer_at + 512 + 700] ^= 0xff;
        let p = write(dir.path(), "flip.tar", &flipped);
        let e = Archive::open(&p).unwrap().load(0).unwrap_err();
        assert!(e.to_string().contains("corrupted"), "{e}");

        // A referenced file that is not there.
        let missing: Files = files
            .iter()
            .filter(|(n, _)| n != "bbb/layer.tar")
            .cloned()
            .collect();
        let p = write(dir.path(), "missing.tar", &tar_of(&missing));
        let e = Archive::open(&p).unwrap().load(0).unwrap_err();
        assert!(e.to_string().contains("bbb/layer.tar is missing"), "{e}");

        // Cut exactly between two entries, before manifest.json (as skopeo orders them):
        // no end-of-archive marker, so it is reported as truncated, not as a wrong format.
        let (mut late, ..) = docker_files(serde_json::json!(["a:b"]));
        let m = late.pop().unwrap();
        let before = tar_of(&late).len() - 1024;
        late.push(m);
        let p = write(dir.path(), "cut2.tar", &tar_of(&late)[..before]);
        let e = Archive::open(&p).unwrap_err();
        assert!(matches!(e, ArchiveError::Corrupt { .. }), "{e}");
        assert!(e.to_string().contains("truncated"), "{e}");

        // Not a tar at all.
        let p = write(dir.path(), "junk.tar", &[b'x'; 2000]);
        assert!(Archive::open(&p).is_err());
    }

    #[test]
    fn path_traversal_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (files, ..) = docker_files(serde_json::json!([]));
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in &files {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            b.append_data(&mut h, name, &data[..]).unwrap();
        }
        // The tar crate refuses to write `..`; write the raw header by hand.
        let mut h = tar::Header::new_old();
        h.as_old_mut().name[..9].copy_from_slice(b"../escape");
        h.set_size(1);
        h.set_mode(0o644);
        h.set_cksum();
        b.append(&h, &b"x"[..]).unwrap();
        let p = write(dir.path(), "evil.tar", &b.into_inner().unwrap());
        let e = Archive::open(&p).unwrap_err();
        assert!(e.to_string().contains("path traversal"), "{e}");

        // manifest.json naming a file outside the archive.
        let (mut files, ..) = docker_files(serde_json::json!([]));
        let m = serde_json::json!([{"Config": "../../etc/passwd", "Layers": []}]);
        files.last_mut().unwrap().1 = serde_json::to_vec(&m).unwrap();
        let p = write(dir.path(), "evil2.tar", &tar_of(&files));
        let e = Archive::open(&p).unwrap().load(0).unwrap_err();
        assert!(e.to_string().contains("path traversal"), "{e}");

        // A symlink escaping the archive.
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        b.append_link(&mut h, "x/layer.tar", "../../../etc/passwd")
            .unwrap();
        let p = write(dir.path(), "evil3.tar", &b.into_inner().unwrap());
        let e = Archive::open(&p).unwrap_err();
        assert!(e.to_string().contains("path traversal"), "{e}");
    }

    #[test]
    fn oversized_metadata_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (mut files, ..) = docker_files(serde_json::json!([]));
        files.last_mut().unwrap().1 = vec![b' '; MAX_MANIFEST_BYTES + 1];
        let p = write(dir.path(), "big.tar", &tar_of(&files));
        let e = Archive::open(&p).unwrap_err();
        assert!(e.to_string().contains("more than"), "{e}");
    }

    #[test]
    fn corrupt_oci_manifests_and_sizes_are_caught() {
        let dir = tempfile::tempdir().unwrap();
        // A child manifest whose bytes no longer hash to its name.
        let (mut files, _, children) = oci_files(Some("v1"));
        let child = sha256_digest(&children[0]);
        let f = files
            .iter_mut()
            .find(|(n, _)| *n == Archive::blob_path(&child))
            .unwrap();
        let i = f.1.len() / 2;
        f.1[i] ^= 0x01;
        let p = write(dir.path(), "m.tar", &tar_of(&files));
        let e = Archive::open(&p).unwrap().load(0).unwrap_err();
        assert!(e.to_string().contains("is corrupted"), "{e}");

        // A layer blob of the wrong size.
        let (mut files, ..) = oci_files(Some("v1"));
        let layer = files
            .iter_mut()
            .find(|(n, d)| n.starts_with("blobs/") && d.len() > 2000)
            .unwrap();
        layer.1.push(0);
        let p = write(dir.path(), "s.tar", &tar_of(&files));
        let e = Archive::open(&p).unwrap().load(0).unwrap_err();
        assert!(e.to_string().contains("descriptor says"), "{e}");

        // A missing blob.
        let (files, ..) = oci_files(Some("v1"));
        let missing: Files = files
            .into_iter()
            .filter(|(n, d)| !(n.starts_with("blobs/") && *d == layer_tar(21, 700)))
            .collect();
        let p = write(dir.path(), "x.tar", &tar_of(&missing));
        let e = Archive::open(&p).unwrap().load(0).unwrap_err();
        assert!(e.to_string().contains("is missing"), "{e}");
    }

    #[test]
    fn paths_normalise() {
        assert_eq!(normalise(Path::new("./a//b")).as_deref(), Some("a/b"));
        assert_eq!(normalise(Path::new("../a")), None);
        assert_eq!(normalise(Path::new("/etc/passwd")), None);
        assert_eq!(
            resolve_link("x/y/layer.tar", Path::new("../z.tar"), false).as_deref(),
            Some("x/z.tar")
        );
        assert_eq!(
            resolve_link("x/layer.tar", Path::new("blobs/a"), true).as_deref(),
            Some("blobs/a")
        );
        assert_eq!(resolve_link("x/l", Path::new("../../a"), false), None);
    }
}
