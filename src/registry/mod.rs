//! The data plane: the OCI distribution API.
//!
//! * [`client`]: one registry — auth (Basic, bearer-token challenge, ECR token), retries,
//!   request limits, TLS, streaming.
//! * [`manifest`]: media types, strict parsing, limits, the platform-filtered index.
//! * [`copy`]: the bottom-up image copy.
//! * [`auth`]: where credentials come from; secrets that never print.

pub mod auth;
pub mod client;
pub mod copy;
pub mod manifest;

pub use client::{Registry, RegistryConfig, RetryPolicy};
