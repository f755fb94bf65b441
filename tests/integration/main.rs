//! Integration tests against real services: Debian's docker-registry, moto, skopeo.
//! `support` starts them on free loopback ports and stops them afterwards; it installs
//! nothing (run `make deps`).
#![allow(clippy::result_large_err)]

mod support;

mod bearer;
mod copy;
mod ecr;
mod harness;
mod import;
mod policy;
mod policy_bundles;
mod push;
mod referrers;
mod registries;
mod reliability;
mod sync;
mod usage;
