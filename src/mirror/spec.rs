//! What to mirror: the pure model the pipeline works on.

use crate::mirror::tag_rule::TagRule;
use crate::oci::{ImageRef, PlatformFilter};

/// One ECR repository marked for mirroring: where its images come from and which tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorSpec {
    /// The ECR repository name, e.g. `mirror/keda`.
    pub repository: String,
    /// The normalised upstream repository.
    pub upstream: ImageRef,
    /// The explicit tags to mirror (`upstream-tags`), in the order given, without duplicates.
    /// Empty when the repository has only a rule.
    pub tags: Vec<String>,
    /// The `upstream-tag-rule`, if any: more tags, chosen from upstream's tag list.
    pub rule: Option<TagRule>,
    /// Which platforms to copy.
    pub platforms: PlatformFilter,
    /// Which referrers travel (`upstream-referrers`, validated): `None` for the run's default.
    pub referrers: Option<String>,
}
