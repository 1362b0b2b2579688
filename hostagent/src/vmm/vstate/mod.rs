//! KVM state: the KVM handle, guest memory, the VM and its vCPUs.

pub mod kvm;
pub mod memory;
pub mod vcpu;
pub mod vm;
