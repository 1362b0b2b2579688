//! The panels, one per file, each a [`super::View`].

pub mod add_host;
pub mod alarms;
pub mod allocation;
pub mod connect;
pub mod events;
pub mod form;
pub mod new_vm;
pub mod performance;
pub mod pool_editor;
pub mod recent_tasks;
pub mod summary;
pub mod tasks;
pub mod tree;
pub mod vm_dialogs;
pub mod vm_table;
