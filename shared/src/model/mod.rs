//! The objects the API talks about: VMs, hosts, tasks, events, alarms, inventory, sessions.

pub mod alarm;
pub mod console;
pub mod disk;
pub mod event;
pub mod files;
pub mod host;
pub mod inventory;
pub mod pool;
pub mod session;
pub mod snapshot;
pub mod stats;
pub mod task;
pub mod vm;

pub use alarm::*;
pub use console::*;
pub use disk::*;
pub use event::*;
pub use files::*;
pub use host::*;
pub use inventory::*;
pub use pool::*;
pub use session::*;
pub use snapshot::*;
pub use stats::*;
pub use task::*;
pub use vm::*;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Params or result with no fields: `{}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Empty {}

/// Names one object by id (most methods take this).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IdParams {
    /// The object's id.
    pub id: uuid::Uuid,
}

/// Validates an object name: 1..=80 characters, no path separators or control characters,
/// not starting with a dot (names become directory names on datastores).
pub fn validate_name(kind: &str, name: &str) -> Result<(), String> {
    if name.is_empty() || name.chars().count() > 80 {
        return Err(format!("{kind} name must be 1 to 80 characters long"));
    }
    if name.starts_with('.') || name.starts_with('-') {
        return Err(format!("{kind} name must not start with '.' or '-'"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| c.is_control() || matches!(c, '/' | '\\' | ':' | '[' | ']'))
    {
        return Err(format!("{kind} name must not contain {c:?}"));
    }
    if name.trim() != name {
        return Err(format!("{kind} name must not start or end with spaces"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::validate_name;

    #[test]
    fn names_that_would_escape_a_directory_are_refused() {
        assert!(validate_name("VM", "web-01").is_ok());
        assert!(validate_name("VM", "Web server 01").is_ok());
        for bad in [
            "",
            "..",
            "a/b",
            ".hidden",
            "a\nb",
            " x",
            "x ",
            "-rf",
            &"x".repeat(81),
        ] {
            assert!(validate_name("VM", bad).is_err(), "{bad:?} accepted");
        }
    }
}
