//! What evaluating a policy answers: a verdict, or a rejection with its kind, and the signature
//! blobs it reads.

use std::fmt;

/// The annotation of a cosign signature layer that holds the base64 signature.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";

/// The media type of a cosign signature layer (the "simple signing" payload).
pub const SIGNATURE_LAYER_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";

/// The media types of a sigstore bundle, as the artifact type of a referrer and the media type
/// of its layer: v0.3 as cosign v3 writes it, and the older forms with a version parameter.
pub const SIGSTORE_BUNDLE_MEDIA_TYPES: [&str; 4] = [
    "application/vnd.dev.sigstore.bundle.v0.3+json",
    "application/vnd.dev.sigstore.bundle+json;version=0.3",
    "application/vnd.dev.sigstore.bundle+json;version=0.2",
    "application/vnd.dev.sigstore.bundle+json;version=0.1",
];

/// Whether `media_type` is one of [`SIGSTORE_BUNDLE_MEDIA_TYPES`] (spaces around the parameter
/// ignored).
pub fn is_sigstore_bundle_type(media_type: &str) -> bool {
    let normal: String = media_type.chars().filter(|c| !c.is_whitespace()).collect();
    SIGSTORE_BUNDLE_MEDIA_TYPES.contains(&normal.as_str())
}

/// One cosign signature: a layer of the `sha256-<hex>.sig` manifest, or a sigstore bundle (the
/// layer of a referrer of artifact type [`SIGSTORE_BUNDLE_MEDIA_TYPES`], see
/// [`SignatureBlob::from_bundle`]).
///
/// Pass only layers whose media type is [`SIGNATURE_LAYER_MEDIA_TYPE`] (containers/image skips
/// other attachments). A layer without the [`SIGNATURE_ANNOTATION`] annotation should be passed
/// with an empty `signature_b64`; it is then rejected as containers/image rejects it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SignatureBlob {
    /// The exact bytes of the layer blob: these are the signed bytes.
    pub payload: Vec<u8>,
    /// The value of the `dev.cosignproject.cosign/signature` annotation (base64).
    pub signature_b64: String,
    /// The `dev.sigstore.cosign/certificate` annotation (PEM leaf), if present.
    pub certificate: Option<String>,
    /// The `dev.sigstore.cosign/chain` annotation (PEM intermediates and root), if present.
    pub chain: Option<String>,
    /// The `dev.sigstore.cosign/bundle` annotation (the Rekor SET as JSON), if present.
    pub bundle: Option<String>,
    /// A sigstore bundle (the exact bytes of the referrer's layer). When set, the bundle alone is
    /// verified and the other fields are ignored.
    pub sigstore_bundle: Option<Vec<u8>>,
}

impl SignatureBlob {
    /// A signature that is a sigstore bundle (cosign v3): `json` is the referrer's layer blob.
    pub fn from_bundle(json: Vec<u8>) -> SignatureBlob {
        SignatureBlob {
            sigstore_bundle: Some(json),
            ..SignatureBlob::default()
        }
    }
}

/// The outcome of evaluating a policy for one manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every requirement accepted the image.
    Accepted,
    /// A requirement rejected the image (the first one that did).
    Rejected(Rejection),
}

impl Verdict {
    /// Whether the image was accepted.
    pub fn is_accepted(&self) -> bool {
        matches!(self, Verdict::Accepted)
    }
}

/// Why an image was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The category of the rejection.
    pub kind: RejectionKind,
    /// The detailed reason, in containers/image's words where it has them.
    pub message: String,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.reason(), self.message)
    }
}

impl std::error::Error for Rejection {}

/// The category of a rejection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectionKind {
    /// A `reject` requirement (or an empty requirement list).
    Reject,
    /// A signature was required, but the image has none.
    NoSignature,
    /// Cryptographic verification failed with every trusted key.
    UntrustedKey,
    /// A trusted key signed the image, but for an identity the requirement does not accept.
    IdentityMismatch,
    /// A malformed signature or payload, a wrong payload type, or a payload for another digest.
    InvalidSignature,
    /// The requirement (`signedBy`, `signedBaseLayer`) is not supported yet, so it rejects every
    /// image.
    NotSupported,
}

impl RejectionKind {
    /// A short reason for plans and reports, e.g. `signature by an untrusted key`.
    pub fn reason(&self) -> &'static str {
        match self {
            RejectionKind::Reject => "rejected by policy",
            RejectionKind::NoSignature => "no signature",
            RejectionKind::UntrustedKey => "signature by an untrusted key",
            RejectionKind::IdentityMismatch => "identity mismatch",
            RejectionKind::InvalidSignature => "invalid signature",
            RejectionKind::NotSupported => "requirement not supported",
        }
    }

    /// When several signatures fail for different reasons, the one reported is the one that got
    /// furthest: a trusted signature for the wrong identity says more than an unknown key.
    pub(super) fn rank(self) -> u8 {
        match self {
            RejectionKind::IdentityMismatch => 3,
            RejectionKind::InvalidSignature => 2,
            RejectionKind::UntrustedKey => 1,
            _ => 0,
        }
    }
}

pub(super) fn rejection(kind: RejectionKind, message: impl Into<String>) -> Rejection {
    Rejection {
        kind,
        message: message.into(),
    }
}
