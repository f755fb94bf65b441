//! The mirror pipeline as library code, with no command-line types:
//! discover → observe → plan (pure) → execute, plus verify and import.

pub mod discover;
pub mod error;
pub mod estate;
pub mod exec;
pub mod import;
mod near_miss;
pub mod observe;
pub mod plan;
pub mod referrers;
pub mod shard;
pub mod sources;
pub mod spec;
pub mod tag_rule;
pub mod tags;
pub mod trust;
pub mod verify;

pub use error::{Error, Failure, Label, Result};
