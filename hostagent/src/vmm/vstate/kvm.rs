//! Opening /dev/kvm and checking what the VMM needs from it.

use kvm_ioctls::{Cap, Kvm};

/// Why KVM cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KvmError {
    /// /dev/kvm cannot be opened.
    #[error("cannot open /dev/kvm (is KVM loaded and are we allowed to use it?): {0}")]
    Open(#[source] kvm_ioctls::Error),
    /// Wrong API version.
    #[error("KVM API version {0} is not the expected 12")]
    ApiVersion(i32),
    /// A required capability is missing.
    #[error("KVM lacks a capability strata-vmx needs: {0}")]
    MissingCap(&'static str),
}

/// An open KVM handle and the limits it reports.
pub struct KvmContext {
    /// The handle.
    pub kvm: Kvm,
    /// Most vCPUs one VM may have.
    pub max_vcpus: u32,
}

impl KvmContext {
    /// Opens /dev/kvm and checks the API version and capabilities.
    pub fn open() -> Result<Self, KvmError> {
        let kvm = Kvm::new().map_err(KvmError::Open)?;
        let v = kvm.get_api_version();
        if v != 12 {
            return Err(KvmError::ApiVersion(v));
        }
        for (cap, name) in [
            (Cap::Irqchip, "in-kernel irqchip"),
            (Cap::UserMemory, "user memory regions"),
            (Cap::Pit2, "in-kernel PIT"),
            (Cap::Irqfd, "irqfd"),
            (Cap::SetTssAddr, "TSS address"),
            (Cap::ExtCpuid, "CPUID"),
        ] {
            if !kvm.check_extension(cap) {
                return Err(KvmError::MissingCap(name));
            }
        }
        let max_vcpus = u32::try_from(kvm.get_max_vcpus()).unwrap_or(u32::MAX);
        Ok(Self { kvm, max_vcpus })
    }
}

/// True when /dev/kvm can be opened read-write by this process.
pub fn usable() -> bool {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok()
}
