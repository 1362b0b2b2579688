//! Boot structures written into guest memory before the first vCPU runs.

pub mod gdt;
pub mod mptable;
pub mod pvh;
