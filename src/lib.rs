//! ecr-mirror-sync keeps a private Amazon ECR registry in sync with public upstream images.
//!
//! ECR repositories are marked with resource tags (`upstream-image`, `upstream-tags`); a run
//! discovers them through the ECR API (control plane), compares digests with HEAD requests on
//! both sides (data plane), plans, and copies only what is missing or stale — blobs first, the
//! tag last, so a tag never points at something incomplete.
//!
//! Layers, with dependencies pointing one way:
//! `cli → settings → {ecr, registry, policy} → plan → exec → report`.
#![deny(missing_docs)]
// Errors carry the registry, the request and the OCI error code so messages are actionable;
// they sit on the failure path, where their size costs nothing worth boxing for.
#![allow(clippy::result_large_err)]

pub mod archive;
pub mod cli;
pub mod commands;
pub mod connect;
pub mod ecr;
pub mod error;
pub mod import;
#[cfg(feature = "k8s")]
pub mod k8s;
pub mod metrics;
pub mod plan;
pub mod policy;
pub mod registry;
pub mod report;
pub mod report_files;
pub mod settings;
pub mod shard;
pub mod spec;
pub mod sync;
pub mod telemetry;
pub mod trust;
pub mod verify;

pub use error::{Error, Result};
