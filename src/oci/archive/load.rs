//! Building the image to push out of an opened archive: OCI manifests checked and pushed byte
//! for byte; a docker-archive's manifest built from its config and layers.

use super::*;

impl Archive {
    /// Reads image `which` (from [`Archive::select`]): checks the manifests, locates every
    /// blob, and for a docker-archive hashes each layer once to build the manifest.
    pub fn load(&self, which: usize) -> Result<ArchiveImage, ArchiveError> {
        let c = self
            .candidates
            .get(which)
            .ok_or_else(|| self.corrupt(format!("no image #{which} in the archive")))?;
        let tag = candidate_tags(c).into_iter().next();
        match c {
            Candidate::Docker { config, layers, .. } => {
                let mut img = self.load_docker(config, layers)?;
                img.tag = tag;
                Ok(img)
            }
            Candidate::Oci {
                media_type,
                digest,
                size,
                ..
            } => {
                let mut img = self.load_oci(media_type.as_deref(), digest, *size)?;
                img.tag = tag;
                Ok(img)
            }
        }
    }

    pub(super) fn read_docker_manifest(&mut self) -> Result<(), ArchiveError> {
        let bytes = self.read_small("manifest.json", MAX_MANIFEST_BYTES)?;
        let items: Vec<DockerManifestItem> = serde_json::from_slice(&bytes)
            .map_err(|e| self.corrupt(format!("manifest.json is not valid: {e}")))?;
        for item in items {
            if item.layer_sources.as_ref().is_some_and(|m| !m.is_empty()) {
                return Err(ArchiveError::Unsupported {
                    path: display(&self.path),
                    reason: "the image has foreign layers (manifest.json LayerSources), which \
                             this tool does not push"
                        .into(),
                });
            }
            self.candidates.push(Candidate::Docker {
                config: item.config,
                layers: item.layers,
                repo_tags: item.repo_tags.unwrap_or_default(),
            });
        }
        Ok(())
    }

    pub(super) fn read_layout(&mut self) -> Result<(), ArchiveError> {
        let layout = self.read_small("oci-layout", MAX_MANIFEST_BYTES)?;
        let v: serde_json::Value = serde_json::from_slice(&layout)
            .map_err(|e| self.corrupt(format!("oci-layout is not valid JSON: {e}")))?;
        if v.get("imageLayoutVersion").is_none() {
            return Err(self.corrupt("oci-layout has no imageLayoutVersion".into()));
        }
        let bytes = self.read_small("index.json", MAX_MANIFEST_BYTES)?;
        let idx: LayoutIndex = serde_json::from_slice(&bytes)
            .map_err(|e| self.corrupt(format!("index.json is not valid: {e}")))?;
        for m in idx.manifests {
            let ref_name = m
                .annotations
                .as_ref()
                .and_then(|a| a.get(REF_NAME_ANNOTATION))
                .cloned();
            self.candidates.push(Candidate::Oci {
                media_type: m.media_type,
                digest: m.digest,
                size: m.size,
                ref_name,
            });
        }
        Ok(())
    }

    fn load_docker(&self, config: &str, layers: &[String]) -> Result<ArchiveImage, ArchiveError> {
        let config_bytes = self.read_small(config, MAX_MANIFEST_BYTES)?;
        #[derive(serde::Deserialize)]
        struct RootFs {
            #[serde(default)]
            diff_ids: Vec<String>,
        }
        #[derive(serde::Deserialize)]
        struct Config {
            rootfs: Option<RootFs>,
        }
        let cfg: Config = serde_json::from_slice(&config_bytes)
            .map_err(|e| self.corrupt(format!("image config {config} is not valid: {e}")))?;
        let diff_ids = cfg.rootfs.map(|r| r.diff_ids).unwrap_or_default();
        if diff_ids.len() != layers.len() {
            return Err(self.corrupt(format!(
                "manifest.json lists {} layers but the image config {config} records {} diff_ids",
                layers.len(),
                diff_ids.len()
            )));
        }
        let config_digest = sha256_digest(&config_bytes);
        let mut source = ArchiveBlobs::default();
        source
            .locations
            .insert(config_digest.clone(), self.locate(config)?);
        let mut descs = Vec::with_capacity(layers.len());
        for (name, diff_id) in layers.iter().zip(&diff_ids) {
            let loc = self.locate(name)?;
            let (digest, gzip) = self.hash_layer(name, &loc)?;
            if !gzip && &digest != diff_id {
                return Err(self.corrupt(format!(
                    "layer {name} is corrupted: its sha256 is {digest}, but the image config \
                     records {diff_id}"
                )));
            }
            let media_type = if gzip {
                DOCKER_LAYER_GZIP
            } else {
                DOCKER_LAYER_TAR
            };
            descs.push((media_type, loc.size as i64, digest.clone()));
            source.locations.insert(digest, loc);
        }
        let manifest = DockerManifestJson {
            schema_version: 2,
            media_type: DOCKER_MANIFEST_MEDIA_TYPE,
            config: DescriptorJson {
                media_type: DOCKER_CONFIG_MEDIA_TYPE,
                size: config_bytes.len() as i64,
                digest: &config_digest,
            },
            layers: descs
                .iter()
                .map(|(mt, size, digest)| DescriptorJson {
                    media_type: mt,
                    size: *size,
                    digest,
                })
                .collect(),
        };
        let bytes = serde_json::to_vec_pretty(&manifest).expect("a manifest always serialises");
        let top = Manifest {
            digest: sha256_digest(&bytes),
            bytes: Bytes::from(bytes),
            media_type: DOCKER_MANIFEST_MEDIA_TYPE.to_string(),
        };
        let Parsed::Image(m) = top
            .parse(&display(&self.path))
            .map_err(|e| self.corrupt(e.to_string()))?
        else {
            unreachable!("a v2s2 manifest parses as an image");
        };
        Ok(ArchiveImage {
            format: self.format,
            top,
            children: Vec::new(),
            blobs: blobs_of(&m),
            tag: None,
            source,
        })
    }

    /// Streams one layer entry once: sha256 of the bytes as stored, and whether it is gzip.
    fn hash_layer(&self, name: &str, loc: &BlobLocation) -> Result<(String, bool), ArchiveError> {
        let err = |e: std::io::Error| self.corrupt(format!("cannot read layer {name}: {e}"));
        let mut f = File::open(&loc.file).map_err(err)?;
        f.seek(SeekFrom::Start(loc.offset)).map_err(err)?;
        let mut r = f.take(loc.size);
        let mut h = Sha256::new();
        let mut buf = vec![0u8; HASH_BUF];
        let mut seen = 0u64;
        let mut head = [0u8; 4];
        loop {
            let n = match r.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(err(e)),
            };
            if seen < 4 {
                let k = (4 - seen as usize).min(n);
                head[seen as usize..seen as usize + k].copy_from_slice(&buf[..k]);
            }
            h.update(&buf[..n]);
            seen += n as u64;
        }
        if seen != loc.size {
            return Err(self.corrupt(format!(
                "layer {name} is truncated: {seen} of {} bytes",
                loc.size
            )));
        }
        if seen >= 4 && head == [0x28, 0xb5, 0x2f, 0xfd] {
            return Err(ArchiveError::Unsupported {
                path: display(&self.path),
                reason: format!(
                    "layer {name} is zstd-compressed, which a Docker v2s2 manifest cannot describe"
                ),
            });
        }
        let gzip = seen >= 2 && head[..2] == [0x1f, 0x8b];
        Ok((format!("sha256:{}", hex::encode(h.finalize())), gzip))
    }

    fn load_oci(
        &self,
        media_type: Option<&str>,
        digest: &str,
        size: i64,
    ) -> Result<ArchiveImage, ArchiveError> {
        let mut manifests: Vec<Manifest> = Vec::new();
        let mut blobs: Vec<OciDescriptor> = Vec::new();
        let mut source = ArchiveBlobs::default();
        let mut path = BTreeSet::new();
        self.walk(
            media_type,
            digest,
            size,
            0,
            &mut path,
            &mut manifests,
            &mut blobs,
            &mut source,
        )?;
        let top = manifests.pop().expect("walk records the top manifest last");
        Ok(ArchiveImage {
            format: self.format,
            top,
            children: manifests,
            blobs,
            tag: None,
            source,
        })
    }

    /// Reads and checks one manifest and, recursively, what it references; records manifests
    /// bottom-up (post-order) and blobs once each.
    #[allow(clippy::too_many_arguments)]
    fn walk(
        &self,
        media_type: Option<&str>,
        digest: &str,
        size: i64,
        depth: usize,
        path: &mut BTreeSet<String>,
        manifests: &mut Vec<Manifest>,
        blobs: &mut Vec<OciDescriptor>,
        source: &mut ArchiveBlobs,
    ) -> Result<(), ArchiveError> {
        if manifests.iter().any(|m| m.digest == digest) {
            return Ok(());
        }
        if !is_valid_digest(digest) {
            return Err(self.corrupt(format!("{digest:?} is not a sha256 digest")));
        }
        if depth > MAX_INDEX_DEPTH {
            return Err(self.corrupt(format!("indexes nest deeper than {MAX_INDEX_DEPTH} levels")));
        }
        if !path.insert(digest.to_string()) {
            return Err(self.corrupt(format!("index refers to {digest} in a loop")));
        }
        let name = Self::blob_path(digest);
        let bytes = self.read_small(&name, MAX_MANIFEST_BYTES)?;
        if size < 0 || bytes.len() as u64 != size as u64 {
            return Err(self.corrupt(format!(
                "manifest {digest} is {} bytes but its descriptor says {size}",
                bytes.len()
            )));
        }
        let actual = sha256_digest(&bytes);
        if actual != digest {
            return Err(self.corrupt(format!(
                "manifest {name} is corrupted: its sha256 is {actual}"
            )));
        }
        let what = format!("{} manifest {digest}", display(&self.path));
        let media_type =
            classify(&bytes, media_type, &what).map_err(|e| self.corrupt(e.to_string()))?;
        let m = Manifest {
            bytes: Bytes::from(bytes),
            media_type,
            digest: actual,
        };
        match m.parse(&what).map_err(|e| self.corrupt(e.to_string()))? {
            Parsed::Image(img) => {
                for d in blobs_of(&img) {
                    if source.locations.contains_key(&d.digest) {
                        continue;
                    }
                    if !is_valid_digest(&d.digest) {
                        return Err(self.corrupt(format!("{:?} is not a sha256 digest", d.digest)));
                    }
                    let loc = self.locate(&Self::blob_path(&d.digest))?;
                    if loc.size != d.size as u64 {
                        return Err(self.corrupt(format!(
                            "blob {} is {} bytes in the archive but its descriptor says {}",
                            d.digest, loc.size, d.size
                        )));
                    }
                    source.locations.insert(d.digest.clone(), loc);
                    blobs.push(d);
                }
            }
            Parsed::Index(idx) => {
                for c in &idx.manifests {
                    self.walk(
                        Some(&c.media_type),
                        &c.digest,
                        c.size,
                        depth + 1,
                        path,
                        manifests,
                        blobs,
                        source,
                    )?;
                }
            }
        }
        path.remove(digest);
        manifests.push(m);
        Ok(())
    }
}

pub(super) fn candidate_tags(c: &Candidate) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let refs: Vec<&String> = match c {
        Candidate::Docker { repo_tags, .. } => repo_tags.iter().collect(),
        Candidate::Oci { ref_name, .. } => ref_name.iter().collect(),
    };
    for r in refs {
        if let Some(t) = tag_of_reference(r) {
            if !out.contains(&t) {
                out.push(t);
            }
        }
    }
    out
}
