//! Where an image comes from, for the one bottom-up writer.

use super::*;

/// Where an image comes from: a registry repository, or an archive on disk. The one
/// bottom-up writer ([`Copy`]) reads manifests and blobs through it, so `copy`, `sync` and
/// `push --archive` share every rule of the writer (the order, de-duplication, verification).
pub trait ImageSource: Send + Sync {
    /// A name for messages: `registry/repository`, or the archive.
    fn name(&self) -> String;
    /// The manifest that `reference` (a tag or a digest) names, bytes as stored.
    fn manifest<'a>(
        &'a self,
        reference: &'a str,
    ) -> futures::future::BoxFuture<'a, Result<Manifest, RegistryError>>;
    /// Opens the blob `digest` of `size` bytes as a stream. Called again for each retry.
    fn blob<'a>(
        &'a self,
        digest: &'a str,
        size: u64,
    ) -> futures::future::BoxFuture<'a, Result<ByteStream, RegistryError>>;
    /// The registry and repository behind this source, when it is one: signature tags are
    /// looked up there. `None` for an archive.
    fn registry(&self) -> Option<(&Registry, &str)> {
        None
    }
    /// Whether the destination often holds this image's child manifests even where the tag
    /// is absent, so that they are HEADed before they are written. `false` for a registry
    /// mirror, whose absent tag means a cold mirror.
    fn children_often_present(&self) -> bool {
        false
    }
}

/// An image in a repository of a registry.
pub struct RegistryImage<'a> {
    /// The registry.
    pub registry: &'a Registry,
    /// The repository.
    pub repo: &'a str,
}

impl ImageSource for RegistryImage<'_> {
    fn name(&self) -> String {
        format!("{}/{}", self.registry.name(), self.repo)
    }
    fn manifest<'a>(
        &'a self,
        reference: &'a str,
    ) -> futures::future::BoxFuture<'a, Result<Manifest, RegistryError>> {
        Box::pin(self.registry.get_manifest(self.repo, reference))
    }
    fn blob<'a>(
        &'a self,
        digest: &'a str,
        size: u64,
    ) -> futures::future::BoxFuture<'a, Result<ByteStream, RegistryError>> {
        Box::pin(self.registry.blob_stream(self.repo, digest, size))
    }
    fn registry(&self) -> Option<(&Registry, &str)> {
        Some((self.registry, self.repo))
    }
}
