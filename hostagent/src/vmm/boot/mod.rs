//! Boot structures written into guest memory before the first vCPU runs.

pub mod acpi;
pub mod gdt;
pub mod linux;
pub mod mptable;
pub mod pvh;
