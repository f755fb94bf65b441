//! Manifest-sized response bodies, read with a limit ([`MAX_MANIFEST_BYTES`]), for manifests
//! and referrers listings alike.

use futures::StreamExt;

use super::manifest::MAX_MANIFEST_BYTES;
use super::transport::{transport_err, Registry};
use super::RegistryError;

impl Registry {
    /// A manifest-sized response body: at most [`MAX_MANIFEST_BYTES`], checked against
    /// `Content-Length` first and then as it streams in (a lying or absent header).
    pub(in crate::oci) async fn read_limited(
        &self,
        res: reqwest::Response,
        what: &str,
    ) -> Result<Vec<u8>, RegistryError> {
        self.read_at_most(res, what, MAX_MANIFEST_BYTES)
            .await?
            .ok_or_else(|| too_large(what))
    }

    /// A response body of at most `max` bytes, `None` when it is longer (by `Content-Length`
    /// or as it streams in); what a longer body means is the caller's to say.
    pub(in crate::oci) async fn read_at_most(
        &self,
        res: reqwest::Response,
        what: &str,
        max: usize,
    ) -> Result<Option<Vec<u8>>, RegistryError> {
        if res.content_length().is_some_and(|l| l > max as u64) {
            return Ok(None);
        }
        let mut body = Vec::new();
        let mut stream = res.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| transport_err(&self.cfg.registry, what, &e))?;
            if body.len() + chunk.len() > max {
                return Ok(None);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Some(body))
    }
}

fn too_large(what: &str) -> RegistryError {
    RegistryError::Invalid {
        what: what.to_string(),
        reason: format!("manifest is larger than the {MAX_MANIFEST_BYTES}-byte limit"),
    }
}
