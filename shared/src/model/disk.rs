//! Virtual disks: files in a VM's directory that the guest sees as block devices.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// On-disk format of a virtual disk. Stored in the VM's configuration and never guessed from
/// the file's contents (a guest could write a qcow2 header into a raw disk).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum DiskFormat {
    /// A plain image: byte N of the file is byte N of the disk.
    #[default]
    Raw,
    /// QEMU's copy-on-write format (qemu engine only).
    Qcow2,
    /// Raw device mapping: the file is a small mapping file naming a host block device,
    /// which the guest sees as this disk.
    Rdm,
}

impl DiskFormat {
    /// The name QEMU and file extensions use.
    pub fn as_str(self) -> &'static str {
        match self {
            DiskFormat::Raw => "raw",
            DiskFormat::Qcow2 => "qcow2",
            DiskFormat::Rdm => "rdm",
        }
    }

    /// The format an engine opens the disk's data with (a mapped device is raw).
    pub fn data_format(self) -> &'static str {
        match self {
            DiskFormat::Raw | DiskFormat::Rdm => "raw",
            DiskFormat::Qcow2 => "qcow2",
        }
    }
}

impl std::fmt::Display for DiskFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a new disk's space is claimed on the datastore.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Provisioning {
    /// Sparse: space is used as the guest writes.
    #[default]
    Thin,
    /// Preallocated: the whole size is reserved now, so the guest can never hit a full
    /// datastore.
    Thick,
}

/// One virtual disk of a VM, as its configuration holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DiskSpec {
    /// File name inside the VM's directory.
    pub file: String,
    /// Format of the file.
    #[serde(default)]
    pub format: DiskFormat,
    /// The guest may only read it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
}

/// Most disks one VM may have.
pub const MAX_DISKS: usize = 16;
/// Largest virtual disk, MiB (64 TiB).
pub const MAX_DISK_MIB: u64 = 64 << 20;

impl DiskSpec {
    /// Checks the file name: a plain name inside the VM's directory.
    pub fn validate(&self) -> Result<(), String> {
        validate_disk_file(&self.file)
    }
}

/// A disk file name must be a plain file name in the VM's directory.
pub fn validate_disk_file(file: &str) -> Result<(), String> {
    if file.is_empty() || file.len() > 120 {
        return Err("a disk file name must be 1 to 120 bytes long".into());
    }
    if file.starts_with('.') || file.starts_with('-') {
        return Err(format!(
            "disk file name {file:?} must not start with '.' or '-'"
        ));
    }
    if let Some(c) = file
        .chars()
        .find(|c| c.is_control() || matches!(c, '/' | '\\' | ':' | ','))
    {
        return Err(format!("disk file name {file:?} must not contain {c:?}"));
    }
    if file.ends_with(".toml") || file.ends_with(".log") || file.ends_with(".pid") {
        return Err(format!(
            "disk file name {file:?} would clash with the VM's own files"
        ));
    }
    Ok(())
}

/// A disk as the API reports it: its configuration plus what the file holds now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DiskInfo {
    /// File name inside the VM's directory.
    pub file: String,
    /// Format.
    pub format: DiskFormat,
    /// The guest may only read it.
    pub read_only: bool,
    /// Size the guest sees, bytes.
    pub capacity_bytes: u64,
    /// Space the file takes on the datastore, bytes.
    pub allocated_bytes: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_file_names_stay_inside_the_vm_directory() {
        assert!(validate_disk_file("web01.raw").is_ok());
        assert!(validate_disk_file("web01_1.qcow2").is_ok());
        for bad in [
            "",
            "../x.raw",
            "a/b.raw",
            ".hidden",
            "-opt",
            "x,format=qcow2",
            "web01.toml",
            "serial.log",
        ] {
            assert!(validate_disk_file(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn format_defaults_to_raw_and_read_only_is_optional() {
        let d: DiskSpec = serde_json::from_str(r#"{"file":"a.raw"}"#).unwrap();
        assert_eq!(d.format, DiskFormat::Raw);
        assert!(!d.read_only);
        assert_eq!(
            serde_json::to_string(&d).unwrap(),
            r#"{"file":"a.raw","format":"raw"}"#
        );
        assert!(serde_json::from_str::<DiskSpec>(r#"{"file":"a","size":1}"#).is_err());
    }
}
