//! The policy model: what a `containers-policy.json` file says, after strict parsing.

use std::collections::BTreeMap;
use std::fmt;

pub use super::error::PolicyError;
use super::fulcio::FulcioTrustRoot;
use super::keys::PublicKey;
use super::pki::PkiTrustRoot;
use super::reference::ImageName;

/// The transport whose scopes this tool uses (images are always pulled from registries).
pub const DOCKER_TRANSPORT: &str = "docker";

/// A parsed trust policy.
///
/// Invariant: every requirement list is non-empty, and every `sigstoreSigned` requirement that
/// names public keys has them loaded and parsed (see [`SigstoreSigned::keys`]).
#[derive(Debug, Clone)]
pub struct Policy {
    /// The requirements used when no scope of the transport matches.
    pub default: Vec<Requirement>,
    /// Scopes per transport name (`docker`, `docker-daemon`, `oci`, …): scope → requirements.
    /// Only the `docker` transport is consulted by this tool; the others are kept as parsed.
    pub transports: BTreeMap<String, BTreeMap<String, Vec<Requirement>>>,
}

/// One policy requirement. All requirements of the selected scope must accept an image.
#[derive(Debug, Clone)]
pub enum Requirement {
    /// `insecureAcceptAnything`: accepts every image, signed or not.
    InsecureAcceptAnything,
    /// `reject`: rejects every image.
    Reject,
    /// `signedBy` (GPG "simple signing"): parsed, but not supported yet, so it always rejects.
    SignedBy(SignedBy),
    /// `signedBaseLayer`: parsed, but not supported yet (nor by containers/image), so it always rejects.
    SignedBaseLayer {
        /// The identity the base layer must be signed for.
        base_layer_identity: SignedIdentity,
    },
    /// `sigstoreSigned`: at least one cosign-format signature must verify with a trusted key.
    SigstoreSigned(SigstoreSigned),
}

impl Requirement {
    /// The requirement's `type` as written in the policy file.
    pub fn type_name(&self) -> &'static str {
        match self {
            Requirement::InsecureAcceptAnything => "insecureAcceptAnything",
            Requirement::Reject => "reject",
            Requirement::SignedBy(_) => "signedBy",
            Requirement::SignedBaseLayer { .. } => "signedBaseLayer",
            Requirement::SigstoreSigned(_) => "sigstoreSigned",
        }
    }
}

/// Which identities a signature may claim (`signedIdentity`); semantics of containers/image's
/// `policy_reference_match.go`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignedIdentity {
    /// The default: the signed reference must equal the image's `host/repo:tag`, or, when the
    /// image is referenced by digest, name the same repository (with any tag or digest).
    MatchRepoDigestOrExact,
    /// The signed reference must equal the image's reference exactly (tag or digest included).
    MatchExact,
    /// The signed reference must name the same repository; its tag or digest does not matter.
    MatchRepository,
    /// The signed reference must be exactly this reference (which has a tag or a digest).
    ExactReference {
        /// The reference the signature must claim.
        docker_reference: String,
    },
    /// The signed reference must name this repository.
    ExactRepository {
        /// The repository the signature must claim.
        docker_repository: String,
    },
    /// Like `MatchRepoDigestOrExact`, after replacing `prefix` in the image's reference by
    /// `signed_prefix` (e.g. a mirror's name by the upstream's).
    RemapIdentity {
        /// The prefix of the image's (mirror's) name to replace.
        prefix: String,
        /// What the prefix stands for in signed references (the upstream's name).
        signed_prefix: String,
    },
}

/// The GPG `signedBy` requirement, kept as parsed.
#[derive(Debug, Clone)]
pub struct SignedBy {
    /// `keyType` (e.g. `GPGKeys`).
    pub key_type: String,
    /// Where the GPG keys come from.
    pub key_source: SignedByKeySource,
    /// Which identities a signature may claim.
    pub signed_identity: SignedIdentity,
}

/// The key source of a `signedBy` requirement.
#[derive(Debug, Clone)]
pub enum SignedByKeySource {
    /// `keyPath`.
    KeyPath(String),
    /// `keyPaths`.
    KeyPaths(Vec<String>),
    /// `keyData` (decoded from base64).
    KeyData(Vec<u8>),
}

/// The `sigstoreSigned` requirement.
#[derive(Debug, Clone)]
pub struct SigstoreSigned {
    /// Where the trusted keys (or certificate roots) come from.
    pub key_source: SigstoreKeySource,
    /// A Rekor public key source, if the signatures must be in the Rekor log.
    pub rekor: Option<RekorKeySource>,
    /// Which identities a signature may claim.
    pub signed_identity: SignedIdentity,
    /// The trusted public keys, loaded when the policy was loaded (empty for `fulcio`/`pki`).
    pub(super) keys: Vec<PublicKey>,
    /// The Rekor public keys (ECDSA), loaded with the policy (empty without a Rekor source).
    pub(super) rekor_keys: Vec<PublicKey>,
    /// The loaded `fulcio` CA and identity.
    pub(super) fulcio: Option<Box<FulcioTrustRoot>>,
    /// The loaded `pki` roots, intermediates and identity.
    pub(super) pki: Option<Box<PkiTrustRoot>>,
}

impl SigstoreSigned {
    /// The trusted public keys, loaded and parsed when the policy was loaded.
    pub fn keys(&self) -> &[PublicKey] {
        &self.keys
    }

    /// The Rekor public keys, loaded and parsed when the policy was loaded.
    pub fn rekor_keys(&self) -> &[PublicKey] {
        &self.rekor_keys
    }
}

/// Where a `sigstoreSigned` requirement's trust comes from (exactly one source).
#[derive(Debug, Clone)]
pub enum SigstoreKeySource {
    /// `keyPath`: one PEM public key file.
    KeyPath(String),
    /// `keyPaths`: several PEM public key files; a signature by any of them is accepted.
    KeyPaths(Vec<String>),
    /// `keyData`: one PEM public key (base64-encoded in the JSON).
    KeyData(Vec<u8>),
    /// `keyDatas`: several PEM public keys.
    KeyDatas(Vec<Vec<u8>>),
    /// `fulcio`: keyless signing certificates, with a Rekor key (required).
    Fulcio(Fulcio),
    /// `pki`: X.509 certificate roots (no Rekor).
    Pki(Pki),
}

/// The Rekor public key source of a `sigstoreSigned` requirement.
#[derive(Debug, Clone)]
pub enum RekorKeySource {
    /// `rekorPublicKeyPath`.
    Path(String),
    /// `rekorPublicKeyPaths`.
    Paths(Vec<String>),
    /// `rekorPublicKeyData`.
    Data(Vec<u8>),
    /// `rekorPublicKeyDatas`.
    Datas(Vec<Vec<u8>>),
}

/// The `fulcio` section of a `sigstoreSigned` requirement.
#[derive(Debug, Clone, Default)]
pub struct Fulcio {
    /// `caPath`.
    pub ca_path: Option<String>,
    /// `caData`.
    pub ca_data: Option<Vec<u8>>,
    /// `oidcIssuer`.
    pub oidc_issuer: String,
    /// `subjectEmail`.
    pub subject_email: String,
}

/// The `pki` section of a `sigstoreSigned` requirement.
#[derive(Debug, Clone, Default)]
pub struct Pki {
    /// `caRootsPath`.
    pub ca_roots_path: Option<String>,
    /// `caRootsData`.
    pub ca_roots_data: Option<Vec<u8>>,
    /// `caIntermediatesPath`.
    pub ca_intermediates_path: Option<String>,
    /// `caIntermediatesData`.
    pub ca_intermediates_data: Option<Vec<u8>>,
    /// `subjectEmail`.
    pub subject_email: Option<String>,
    /// `subjectHostname`.
    pub subject_hostname: Option<String>,
}

impl Policy {
    /// The policy of `--insecure-policy`: accept every image.
    pub fn insecure_accept_anything() -> Policy {
        Policy {
            default: vec![Requirement::InsecureAcceptAnything],
            transports: BTreeMap::new(),
        }
    }

    /// The requirements for an image pulled from a registry (the `docker` transport).
    ///
    /// The most specific scope wins and scopes are never merged: the exact `host/repo:tag` (or
    /// `host/repo@digest`), then each parent namespace, `host[:port]`, the `*.` host wildcards,
    /// the transport's `""` scope, and finally `default`.
    pub fn requirements_for(&self, image: &ImageName) -> &[Requirement] {
        match self.scope_for(image) {
            Some(scope) => &self.transports[DOCKER_TRANSPORT][scope],
            None => &self.default,
        }
    }

    /// The `docker` scope that [`Policy::requirements_for`] uses for `image`; `None` means
    /// `default`, `Some("")` the transport's default scope.
    pub fn scope_for(&self, image: &ImageName) -> Option<&str> {
        let scopes = self.transports.get(DOCKER_TRANSPORT)?;
        std::iter::once(image.policy_identity())
            .chain(image.policy_namespaces())
            .chain(std::iter::once(String::new()))
            .find_map(|name| scopes.get_key_value(&name).map(|(k, _)| k.as_str()))
    }
}

impl fmt::Display for SignedIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SignedIdentity::MatchRepoDigestOrExact => f.write_str("matchRepoDigestOrExact"),
            SignedIdentity::MatchExact => f.write_str("matchExact"),
            SignedIdentity::MatchRepository => f.write_str("matchRepository"),
            SignedIdentity::ExactReference { docker_reference } => {
                write!(f, "exactReference {docker_reference}")
            }
            SignedIdentity::ExactRepository { docker_repository } => {
                write!(f, "exactRepository {docker_repository}")
            }
            SignedIdentity::RemapIdentity {
                prefix,
                signed_prefix,
            } => write!(f, "remapIdentity {prefix} -> {signed_prefix}"),
        }
    }
}
