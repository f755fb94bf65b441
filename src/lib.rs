//! ecr-mirror-sync keeps a private Amazon ECR registry in sync with public upstream images.
//!
//! ECR repositories are marked with resource tags (`upstream-image`, `upstream-tags`); a run
//! discovers them through the ECR API (control plane), compares digests with HEAD requests on
//! both sides (data plane), plans, and copies only what is missing or stale — blobs first, the
//! tag last, so a tag never points at something incomplete.
//!
//! The library has four parts, and dependencies point one way (`mirror → {oci, ecr, policy}`;
//! those three do not import one another):
//! * [`oci`]: the data plane, the OCI distribution API;
//! * [`ecr`]: the control plane, the ECR API;
//! * [`policy`]: containers-policy.json, the trust policy;
//! * [`mirror`]: the pipeline that uses them.
//!
//! The command line (`src/app/`) belongs to the binary and is not part of this API.
#![deny(missing_docs)]
// Errors carry the registry, the request and the OCI error code so messages are actionable;
// they sit on the failure path, where their size costs nothing worth boxing for.
#![allow(clippy::result_large_err)]

pub mod ecr;
pub mod grammar;
pub mod mirror;
pub mod oci;
pub mod policy;
