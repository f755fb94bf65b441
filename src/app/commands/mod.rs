//! One module per subcommand: settings, one library call, rendering.

pub mod copy;
pub mod import;
pub mod list;
pub mod push;
pub mod sync;
pub mod verify;
