//! The data plane: the OCI distribution API. It knows nothing of ECR, policy or the command line.
//!
//! * [`transport`]: how requests reach one registry: credentials, bearer tokens, TLS, one retry
//!   budget per request, the per-registry bound on requests in flight.
//! * [`Registry`] (`client`): the distribution verbs (HEAD/GET/PUT manifests, blobs, uploads,
//!   mounts, tag lists) over the transport; [`tag_list`]: a repository's complete, paginated
//!   tag list.
//! * [`manifest`]: media types, strict parsing, limits, the platform-filtered index.
//! * [`reference`] and [`platform`]: the reference grammar and platform filters (pure).
//! * [`copy`]: one bottom-up writer (blobs, children, index, tag last) over an [`copy::ImageSource`]:
//!   a registry or an archive ([`archive`]).

pub mod archive;
mod body;
mod client;
pub mod copy;
mod error;
pub mod manifest;
pub mod platform;
mod pull_budget;
pub mod reference;
pub mod referrers;
pub mod tag_list;
pub mod transport;

pub use client::{ByteStream, ManifestHead, Mount, Sent};
pub use error::{RegistryError, TransportKind};
pub use platform::{Platform, PlatformFilter, SOURCE_DIGEST_ANNOTATION};
pub use reference::{validate_tag, ImageRef, SpecError, TaggedRef};
pub use transport::auth::{
    AuthFile, BasicCreds, CredentialSource, Credentials, Secret, TokenSource,
};
pub use transport::{Network, Registry, RegistryConfig, RetryPolicy, TagSet};
