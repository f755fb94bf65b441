//! Test images generated in code, the way ggcr's `random.Image` does it: each layer is a
//! gzipped tar holding one file of random bytes, a config lists the layers' diff IDs and the
//! platform, and a manifest ties them together. Everything is deterministic by seed.
//!
//! Manifests are serialised from structs (fixed field order, pretty-printed), so the bytes do
//! not depend on serde_json's `preserve_order` feature being unified in by another crate, and
//! any re-serialisation by a copier would show as a changed digest.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use std::sync::{Mutex, OnceLock};

use serde::Serialize;
use sha2::{Digest, Sha256};

pub const MT_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MT_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MT_OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const MT_OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
pub const MT_OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const MT_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const MT_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const MT_DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const MT_DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// A content-addressed blob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blob {
    /// `sha256:<hex>` of `data`.
    pub digest: String,
    pub media_type: String,
    pub data: Vec<u8>,
}

impl Blob {
    pub fn new(data: Vec<u8>, media_type: &str) -> Blob {
        Blob {
            digest: sha256_digest(&data),
            media_type: media_type.to_string(),
            data,
        }
    }

    /// The uncompressed digest (diff ID): sha256 of the gunzipped data for gzip media types
    /// (falling back to `digest` if the data is not gzip), else `digest`. Known at once for
    /// layers made by [`random_layer`].
    pub fn diff_id(&self) -> String {
        if let Some(d) = diff_ids().lock().unwrap().get(&self.digest) {
            return d.clone();
        }
        if self.media_type.ends_with("gzip") {
            let mut d = flate2::read::GzDecoder::new(&self.data[..]);
            let mut h = Sha256::new();
            let mut buf = vec![0u8; 1 << 16];
            loop {
                match d.read(&mut buf) {
                    Ok(0) => return format!("sha256:{}", hex::encode(h.finalize())),
                    Ok(n) => h.update(&buf[..n]),
                    Err(_) => return self.digest.clone(),
                }
            }
        }
        self.digest.clone()
    }

    pub fn size(&self) -> u64 {
        self.data.len() as u64
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Oci,
    DockerV2,
}

/// A single-platform image.
#[derive(Clone, Debug)]
pub struct Image {
    /// The exact manifest bytes.
    pub manifest: Vec<u8>,
    /// `sha256:` of `manifest`.
    pub digest: String,
    pub media_type: String,
    pub config: Blob,
    pub layers: Vec<Blob>,
    /// (os, architecture, variant)
    pub platform: (String, String, Option<String>),
}

impl Image {
    /// Config then layers.
    pub fn blobs(&self) -> impl Iterator<Item = &Blob> {
        std::iter::once(&self.config).chain(self.layers.iter())
    }
}

/// An OCI image index or a Docker manifest list.
#[derive(Clone, Debug)]
pub struct Index {
    pub manifest: Vec<u8>,
    pub digest: String,
    pub media_type: String,
    pub images: Vec<Image>,
}

/// `sha256:<hex>` of `data`.
pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// digest -> diff ID of the layers `random_layer` made (computed while generating them).
fn diff_ids() -> &'static Mutex<HashMap<String, String>> {
    static M: OnceLock<Mutex<HashMap<String, String>>> = OnceLock::new();
    M.get_or_init(Default::default)
}

/// A deterministic byte stream (SplitMix64): stable across crate versions, and fast even in
/// unoptimised test builds (rand's ChaCha runs at ~15 MB/s there). Any chunking of `fill`
/// yields the same bytes.
struct RandomStream {
    state: u64,
    buf: [u8; 8],
    used: usize,
}

impl RandomStream {
    fn new(seed: u64) -> Self {
        RandomStream {
            state: seed,
            buf: [0; 8],
            used: 8,
        }
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn fill(&mut self, mut out: &mut [u8]) {
        while self.used < 8 && !out.is_empty() {
            out[0] = self.buf[self.used];
            self.used += 1;
            out = &mut out[1..];
        }
        let mut words = out.chunks_exact_mut(8);
        for w in &mut words {
            w.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        let rest = words.into_remainder();
        if !rest.is_empty() {
            self.buf = self.next_u64().to_le_bytes();
            rest.copy_from_slice(&self.buf[..rest.len()]);
            self.used = rest.len();
        }
    }
}

/// `size` random bytes, deterministic by `seed`.
pub fn random_bytes(seed: u64, size: usize) -> Vec<u8> {
    let mut data = vec![0u8; size];
    RandomStream::new(seed).fill(&mut data);
    data
}

/// A blob of `size` random bytes (registries do not inspect blob contents).
pub fn random_blob(seed: u64, size: usize, media_type: &str) -> Blob {
    Blob::new(random_bytes(seed, size), media_type)
}

/// A real layer: a gzip of a tar holding one file of `size` random bytes (the bytes of
/// `random_bytes(seed, size)`). The gzip uses stored (level 0) deflate blocks, written
/// directly: random data does not compress, and this keeps 512 MiB layers cheap. The blob is a
/// little larger than `size` (tar header, padding and trailer; 5 bytes per 64 KiB; gzip
/// framing). Only the finished blob is held in memory; its diff ID is computed on the way.
pub fn random_layer(seed: u64, size: usize, format: Format) -> Blob {
    const BLOCK: usize = 65_535;
    let header = tar_header(&format!("harness/layer-{seed:016x}.bin"), size);
    let total = 512 + size.div_ceil(512) * 512 + 1024;
    let mut out = Vec::with_capacity(10 + total + 5 * total.div_ceil(BLOCK) + 8);
    // gzip header: magic, deflate, no flags, mtime 0, no extra flags, OS unknown.
    out.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255]);
    let mut crc = crc32fast::Hasher::new();
    let mut sha = Sha256::new();
    let mut rng = RandomStream::new(seed);
    let mut pos = 0;
    while pos < total {
        let n = BLOCK.min(total - pos);
        let last = pos + n == total;
        out.push(u8::from(last)); // BFINAL, BTYPE=00 (stored)
        out.extend_from_slice(&(n as u16).to_le_bytes());
        out.extend_from_slice(&(!(n as u16)).to_le_bytes());
        let start = out.len();
        out.resize(start + n, 0);
        let block = &mut out[start..];
        // The tar stream: header [0, 512), content [512, 512 + size), then zeros.
        for (i, b) in block
            .iter_mut()
            .enumerate()
            .take(512usize.saturating_sub(pos))
        {
            *b = header[pos + i];
        }
        let c0 = pos.max(512);
        let c1 = (pos + n).min(512 + size);
        if c0 < c1 {
            rng.fill(&mut block[c0 - pos..c1 - pos]);
        }
        crc.update(block);
        sha.update(&*block);
        pos += n;
    }
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out.extend_from_slice(&(total as u32).to_le_bytes());
    let mt = match format {
        Format::Oci => MT_OCI_LAYER_GZIP,
        Format::DockerV2 => MT_DOCKER_LAYER_GZIP,
    };
    let blob = Blob::new(out, mt);
    let diff_id = format!("sha256:{}", hex::encode(sha.finalize()));
    diff_ids()
        .lock()
        .unwrap()
        .insert(blob.digest.clone(), diff_id);
    blob
}

/// A ustar header for one regular file (mode 0644, mtime 0, root-owned). The archive is this
/// header, the content padded to 512 bytes, and two zero blocks.
fn tar_header(name: &str, size: usize) -> [u8; 512] {
    assert!(name.len() < 100, "tar name too long");
    let mut h = [0u8; 512];
    let mut field = |off: usize, len: usize, val: &str| {
        assert!(val.len() <= len);
        h[off..off + val.len()].copy_from_slice(val.as_bytes());
    };
    field(0, 100, name);
    field(100, 8, "0000644");
    field(108, 8, "0000000");
    field(116, 8, "0000000");
    field(124, 12, &format!("{size:011o}"));
    field(136, 12, "00000000000");
    field(156, 1, "0");
    field(257, 6, "ustar");
    field(263, 2, "00");
    field(265, 32, "root");
    field(297, 32, "root");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| b as u32).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    h
}

/// Parses `os/arch[/variant]`.
pub fn parse_platform(platform: &str) -> (String, String, Option<String>) {
    let parts: Vec<&str> = platform.split('/').collect();
    match parts.as_slice() {
        [os, arch] => (os.to_string(), arch.to_string(), None),
        [os, arch, variant] => (os.to_string(), arch.to_string(), Some(variant.to_string())),
        _ => panic!("platform must be os/arch[/variant], got {platform:?}"),
    }
}

#[derive(Serialize)]
struct Descriptor<'a> {
    #[serde(rename = "mediaType")]
    media_type: &'a str,
    digest: &'a str,
    size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    platform: Option<PlatformJson<'a>>,
}

#[derive(Serialize)]
struct PlatformJson<'a> {
    architecture: &'a str,
    os: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    variant: Option<&'a str>,
}

#[derive(Serialize)]
struct ManifestJson<'a> {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    #[serde(rename = "mediaType")]
    media_type: &'a str,
    config: Descriptor<'a>,
    layers: Vec<Descriptor<'a>>,
}

#[derive(Serialize)]
struct IndexJson<'a> {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    #[serde(rename = "mediaType")]
    media_type: &'a str,
    manifests: Vec<Descriptor<'a>>,
}

#[derive(Serialize)]
struct ConfigJson<'a> {
    architecture: &'a str,
    os: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    variant: Option<&'a str>,
    created: &'a str,
    config: ConfigInner,
    rootfs: RootFs,
    history: Vec<History>,
}

#[derive(Serialize)]
struct ConfigInner {
    #[serde(rename = "Labels", skip_serializing_if = "Option::is_none")]
    labels: Option<std::collections::BTreeMap<String, String>>,
}

#[derive(Serialize)]
struct RootFs {
    #[serde(rename = "type")]
    kind: &'static str,
    diff_ids: Vec<String>,
}

#[derive(Serialize)]
struct History {
    created: &'static str,
    created_by: String,
}

/// A random image: one layer per entry of `layer_sizes` (see [`random_layer`]), platform
/// `os/arch[/variant]`. Different seeds give different layers and configs.
pub fn random_image(seed: u64, layer_sizes: &[usize], platform: &str, format: Format) -> Image {
    let mut seeds = RandomStream::new(seed);
    let layers = layer_sizes
        .iter()
        .map(|&size| random_layer(seeds.next_u64(), size, format))
        .collect();
    build_image(layers, platform, format, Some(seed))
}

/// An image over given layers, e.g. to share a base layer between images. Same layers and
/// platform give the same image.
pub fn image_with_layers(layers: Vec<Blob>, platform: &str, format: Format) -> Image {
    build_image(layers, platform, format, None)
}

fn build_image(layers: Vec<Blob>, platform: &str, format: Format, seed: Option<u64>) -> Image {
    let (os, arch, variant) = parse_platform(platform);
    let (manifest_mt, config_mt) = match format {
        Format::Oci => (MT_OCI_MANIFEST, MT_OCI_CONFIG),
        Format::DockerV2 => (MT_DOCKER_MANIFEST, MT_DOCKER_CONFIG),
    };
    let config = ConfigJson {
        architecture: &arch,
        os: &os,
        variant: variant.as_deref(),
        created: "1970-01-01T00:00:00Z",
        config: ConfigInner {
            labels: seed.map(|s| [("dev.harness.seed".to_string(), s.to_string())].into()),
        },
        rootfs: RootFs {
            kind: "layers",
            diff_ids: layers.iter().map(Blob::diff_id).collect(),
        },
        history: (0..layers.len())
            .map(|i| History {
                created: "1970-01-01T00:00:00Z",
                created_by: format!("harness layer {i}"),
            })
            .collect(),
    };
    let config = Blob::new(serde_json::to_vec(&config).unwrap(), config_mt);
    let manifest = ManifestJson {
        schema_version: 2,
        media_type: manifest_mt,
        config: Descriptor {
            media_type: &config.media_type,
            digest: &config.digest,
            size: config.size(),
            platform: None,
        },
        layers: layers
            .iter()
            .map(|l| Descriptor {
                media_type: &l.media_type,
                digest: &l.digest,
                size: l.size(),
                platform: None,
            })
            .collect(),
    };
    let manifest = serde_json::to_vec_pretty(&manifest).unwrap();
    Image {
        digest: sha256_digest(&manifest),
        manifest,
        media_type: manifest_mt.to_string(),
        config,
        layers,
        platform: (os, arch, variant),
    }
}

/// An OCI image index (`Format::Oci`) or a Docker manifest list (`Format::DockerV2`) over the
/// images, each entry with its platform. Children keep their own media types.
pub fn index_of(images: Vec<Image>, format: Format) -> Index {
    let mt = match format {
        Format::Oci => MT_OCI_INDEX,
        Format::DockerV2 => MT_DOCKER_LIST,
    };
    let idx = IndexJson {
        schema_version: 2,
        media_type: mt,
        manifests: images
            .iter()
            .map(|i| Descriptor {
                media_type: &i.media_type,
                digest: &i.digest,
                size: i.manifest.len() as u64,
                platform: Some(PlatformJson {
                    architecture: &i.platform.1,
                    os: &i.platform.0,
                    variant: i.platform.2.as_deref(),
                }),
            })
            .collect(),
    };
    let manifest = serde_json::to_vec_pretty(&idx).unwrap();
    Index {
        digest: sha256_digest(&manifest),
        manifest,
        media_type: mt.to_string(),
        images,
    }
}

/// Writes an OCI image layout at `dir` holding the index and its images under ref name `tag`,
/// for `skopeo copy --all oci:DIR:TAG docker://...`.
pub fn write_oci_layout_index(dir: &Path, tag: &str, idx: &Index) {
    let images: Vec<&Image> = idx.images.iter().collect();
    write_oci_layout(dir, tag, &idx.manifest, &idx.media_type, &images);
}

/// Writes an OCI image layout at `dir` holding one image under ref name `tag`.
pub fn write_oci_layout_image(dir: &Path, tag: &str, img: &Image) {
    write_oci_layout(dir, tag, &img.manifest, &img.media_type, &[img]);
}

fn write_oci_layout(dir: &Path, tag: &str, top: &[u8], top_media_type: &str, images: &[&Image]) {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |digest: &str, data: &[u8]| {
        std::fs::write(blobs.join(digest.strip_prefix("sha256:").unwrap()), data).unwrap();
    };
    for img in images {
        for b in img.blobs() {
            put(&b.digest, &b.data);
        }
        put(&img.digest, &img.manifest);
    }
    let top_digest = sha256_digest(top);
    put(&top_digest, top);
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": top_media_type,
            "digest": top_digest,
            "size": top.len(),
            "annotations": {"org.opencontainers.image.ref.name": tag}
        }]
    });
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
}
