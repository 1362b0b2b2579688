//! The manager's (strata-server's) API.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::api_methods;
use crate::model::*;

/// `vm.create` params (manager).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct VmCreateParams {
    /// Name, unique in the datacenter.
    pub name: String,
    /// Host to place it on.
    pub host: Uuid,
    /// Datastore name on that host; the host's first datastore when missing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datastore: Option<String>,
    /// Configuration.
    pub spec: VmSpec,
}

/// `vm.powerOff` params.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PowerOffParams {
    /// The VM.
    pub id: Uuid,
    /// Skip the guest shutdown and stop at once.
    #[serde(default)]
    pub hard: bool,
    /// Seconds to wait for the guest to shut down before stopping it hard (default 60).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u32>,
}

/// `vm.diskCreate` params: a new, empty disk in the VM's directory, attached as its last disk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DiskCreateParams {
    /// The VM (powered off).
    pub id: Uuid,
    /// Size, MiB (1..=64 TiB).
    pub size_mib: u64,
    /// File format (default raw).
    #[serde(default)]
    pub format: DiskFormat,
    /// Thin (sparse, default) or thick (preallocated).
    #[serde(default)]
    pub provisioning: Provisioning,
    /// Attach it read-only.
    #[serde(default)]
    pub read_only: bool,
    /// File name; `NAME.raw`, `NAME_1.raw`, … when missing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
}

/// `vm.diskGrow` params.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DiskGrowParams {
    /// The VM (powered off).
    pub id: Uuid,
    /// The disk's file name.
    pub file: String,
    /// New size, MiB; must not be smaller than the current one.
    pub size_mib: u64,
}

/// `vm.diskRemove` params.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DiskRemoveParams {
    /// The VM (powered off).
    pub id: Uuid,
    /// The disk's file name.
    pub file: String,
    /// Also delete the file (otherwise it stays in the VM's directory, detached).
    #[serde(default)]
    pub delete_file: bool,
}

/// `vm.diskMapDevice` params: a raw device mapping (a host block device seen as a disk).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DiskMapDeviceParams {
    /// The VM (powered off).
    pub id: Uuid,
    /// Host block device, e.g. `/dev/disk/by-id/wwn-…` or `/dev/loop3`.
    pub device: String,
    /// The guest may only read it.
    #[serde(default)]
    pub read_only: bool,
}

/// `vm.diskAttach` params: attaches a disk file already in the VM's directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DiskAttachParams {
    /// The VM (powered off).
    pub id: Uuid,
    /// The disk's file name and format.
    pub disk: DiskSpec,
}

/// `vm.snapshotCreate` params.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SnapshotCreateParams {
    /// The VM (powered off).
    pub id: Uuid,
    /// Name, unique within the VM.
    pub name: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
}

/// `vm.snapshotRevert` / `vm.snapshotDelete` params.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SnapshotParams {
    /// The VM (powered off).
    pub id: Uuid,
    /// The snapshot.
    pub snapshot: Uuid,
}

/// `vm.clone` params: a new VM from an existing one (or a template).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct VmCloneParams {
    /// The source VM (powered off).
    pub id: Uuid,
    /// The new VM's name.
    pub name: String,
    /// Linked clone: the new disks are overlays reading through a snapshot of the source
    /// (fast, small); otherwise every disk is copied whole.
    #[serde(default)]
    pub linked: bool,
    /// Snapshot to clone from; the source's current snapshot when missing (required for a
    /// linked clone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<Uuid>,
    /// Guest host name, passed on the new VM's kernel command line (`strata.hostname=`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Make the new VM a template.
    #[serde(default)]
    pub template: bool,
}

/// `vm.setTemplate` params.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SetTemplateParams {
    /// The VM (powered off).
    pub id: Uuid,
    /// Template (true) or ordinary VM (false).
    pub template: bool,
}

/// `vm.reconfigure` params: renames a VM and/or changes its vCPUs, memory and kernel command
/// line. Fields left out stay as they are. vCPUs and memory change only while the VM has no
/// process (powered off); the name and the command line may change at any time (the command
/// line takes effect at the next boot). A rename does not move the VM's directory.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct VmReconfigureParams {
    /// The VM.
    pub id: Uuid,
    /// New name, unique in the datacenter (manager) or on the datastore (host agent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// New number of virtual CPUs (1..=64; VM powered off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vcpus: Option<u32>,
    /// New guest memory, MiB (16..=1048576; VM powered off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mib: Option<u64>,
    /// New extra kernel command line (replaces the old one; empty clears it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmdline: Option<String>,
}

impl VmReconfigureParams {
    /// True when no field asks for a change.
    pub fn is_empty(&self) -> bool {
        self.name.is_none()
            && self.vcpus.is_none()
            && self.memory_mib.is_none()
            && self.cmdline.is_none()
    }

    /// Whether it changes what only a VM without a process may change (vCPUs or memory)
    /// compared with `spec`.
    pub fn changes_hardware(&self, spec: &VmSpec) -> bool {
        self.vcpus.is_some_and(|v| v != spec.vcpus)
            || self.memory_mib.is_some_and(|m| m != spec.memory_mib)
    }

    /// Checks the name (when given) and applies the other fields to `spec`, then checks the
    /// whole spec; `spec` is left unchanged on error.
    pub fn apply(&self, spec: &mut VmSpec) -> Result<(), String> {
        if self.is_empty() {
            return Err("nothing to change: give a name, vcpus, memoryMib or cmdline".into());
        }
        if let Some(n) = &self.name {
            validate_name("VM", n)?;
        }
        let mut new = spec.clone();
        if let Some(v) = self.vcpus {
            new.vcpus = v;
        }
        if let Some(m) = self.memory_mib {
            new.memory_mib = m;
        }
        if let Some(c) = &self.cmdline {
            new.boot.cmdline.clone_from(c);
        }
        new.validate()?;
        *spec = new;
        Ok(())
    }
}

/// `vm.consoleRead` params.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ConsoleReadParams {
    /// The VM.
    pub id: Uuid,
    /// Byte offset to read from; negative counts from the end.
    #[serde(default)]
    pub offset: i64,
    /// At most this many bytes (default and max 1 MiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<u32>,
}

/// `vm.consoleSend` params: types into the serial console.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ConsoleSendParams {
    /// The VM.
    pub id: Uuid,
    /// Text to send (at most 64 KiB); include "\n" to press Enter.
    pub data: String,
}

/// `vm.list` params.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct VmListParams {
    /// Only VMs on this host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<Uuid>,
}

api_methods! {
    /// Describes the daemon; needs no session.
    ServerInfoMethod = "server.info" (Empty) -> ServerInfo;
    /// Logs in with a user name and password; the connection is then authenticated.
    SessionLogin = "session.login" (LoginParams) -> SessionInfo;
    /// Authenticates this connection with an existing session's token.
    SessionResume = "session.resume" (ResumeParams) -> SessionInfo;
    /// Ends the session; its token stops working.
    SessionLogout = "session.logout" (Empty) -> Empty;
    /// Creates a user (admin).
    UserCreate = "user.create" (UserCreateParams) -> UserInfo;
    /// Lists users (admin).
    UserList = "user.list" (Empty) -> Vec<UserInfo>;
    /// The whole inventory at once.
    InventoryGet = "inventory.get" (Empty) -> Inventory;
    /// Subscribes this connection to `inventory.changed`, `task.*`, `event.new` and
    /// `alarm.changed` notifications.
    InventorySubscribe = "inventory.subscribe" (Empty) -> Empty;
    /// Lists datacenters.
    DatacenterList = "datacenter.list" (Empty) -> Vec<DatacenterInfo>;
    /// Creates a cluster.
    ClusterCreate = "cluster.create" (ClusterCreateParams) -> ClusterInfo;
    /// Lists clusters.
    ClusterList = "cluster.list" (Empty) -> Vec<ClusterInfo>;
    /// Adds a host agent: pins its certificate, registers this manager with it (task).
    HostAdd = "host.add" (HostAddParams) -> TaskInfo;
    /// Lists hosts.
    HostList = "host.list" (Empty) -> Vec<HostInfo>;
    /// One host.
    HostGet = "host.get" (IdParams) -> HostInfo;
    /// Removes a host without VMs from the inventory (task).
    HostRemove = "host.remove" (IdParams) -> TaskInfo;
    /// Creates a VM on a host (task; result: VmInfo).
    VmCreate = "vm.create" (VmCreateParams) -> TaskInfo;
    /// Lists VMs.
    VmList = "vm.list" (VmListParams) -> Vec<VmInfo>;
    /// One VM.
    VmGet = "vm.get" (IdParams) -> VmInfo;
    /// Powers a VM on (task).
    VmPowerOn = "vm.powerOn" (IdParams) -> TaskInfo;
    /// Shuts the guest down, then stops it hard after the timeout (task).
    VmPowerOff = "vm.powerOff" (PowerOffParams) -> TaskInfo;
    /// Resets a running VM (task).
    VmReset = "vm.reset" (IdParams) -> TaskInfo;
    /// Saves a running or paused VM's full state into its directory and ends its process
    /// (task; the VM becomes suspended, and `vm.powerOn` resumes it).
    VmSuspend = "vm.suspend" (IdParams) -> TaskInfo;
    /// Stops a running VM's vCPUs; the process stays (task; the VM becomes paused).
    VmPause = "vm.pause" (IdParams) -> TaskInfo;
    /// Lets a paused VM's vCPUs run again (task).
    VmUnpause = "vm.unpause" (IdParams) -> TaskInfo;
    /// Deletes a powered-off VM and its files (task).
    VmDestroy = "vm.destroy" (IdParams) -> TaskInfo;
    /// Reads the VM's serial console log.
    VmConsoleRead = "vm.consoleRead" (ConsoleReadParams) -> ConsoleChunk;
    /// Types into the VM's serial console.
    VmConsoleSend = "vm.consoleSend" (ConsoleSendParams) -> Empty;
    /// Issues a single-use, 30-second console ticket for a running VM, bound to this user.
    VmConsoleTicket = "vm.consoleTicket" (IdParams) -> ConsoleTicket;
    /// Changes a VM's CPU/memory reservation, limit and shares; applies to a running VM live.
    VmSetAllocation = "vm.setAllocation" (VmAllocationParams) -> VmInfo;
    /// Renames a VM and/or changes its vCPUs, memory (powered off) and kernel command line
    /// (task; result: VmInfo).
    VmReconfigure = "vm.reconfigure" (VmReconfigureParams) -> TaskInfo;
    /// Moves a VM into a resource pool (or to the root).
    VmMove = "vm.move" (VmMoveParams) -> VmInfo;
    /// Lists a VM's disks with their sizes.
    VmDiskList = "vm.diskList" (IdParams) -> Vec<DiskInfo>;
    /// Creates a disk and attaches it to a powered-off VM.
    VmDiskCreate = "vm.diskCreate" (DiskCreateParams) -> TaskInfo;
    /// Grows a powered-off VM's disk.
    VmDiskGrow = "vm.diskGrow" (DiskGrowParams) -> TaskInfo;
    /// Attaches a disk file from the VM's directory to a powered-off VM.
    VmDiskAttach = "vm.diskAttach" (DiskAttachParams) -> TaskInfo;
    /// Detaches (and optionally deletes) a powered-off VM's disk.
    VmDiskRemove = "vm.diskRemove" (DiskRemoveParams) -> TaskInfo;
    /// Maps a host block device into a powered-off VM as its last disk.
    VmDiskMapDevice = "vm.diskMapDevice" (DiskMapDeviceParams) -> TaskInfo;
    /// Lists a directory of a datastore.
    DatastoreBrowse = "datastore.browse" (BrowseParams) -> Vec<DatastoreEntry>;
    /// Uploads one chunk of a file to a datastore.
    DatastoreUpload = "datastore.upload" (UploadParams) -> UploadProgress;
    /// Downloads one chunk of a file from a datastore.
    DatastoreDownload = "datastore.download" (DownloadParams) -> FileChunk;
    /// Performance samples of a VM or host (oldest first).
    StatsQuery = "stats.query" (StatsQueryParams) -> Vec<StatSample>;
    /// A VM's snapshot tree.
    VmSnapshotList = "vm.snapshotList" (IdParams) -> SnapshotTree;
    /// Takes a snapshot of a powered-off VM's disks.
    VmSnapshotCreate = "vm.snapshotCreate" (SnapshotCreateParams) -> TaskInfo;
    /// Returns a powered-off VM's disks to a snapshot (changes since are discarded).
    VmSnapshotRevert = "vm.snapshotRevert" (SnapshotParams) -> TaskInfo;
    /// Deletes a snapshot, merging its data into what depends on it.
    VmSnapshotDelete = "vm.snapshotDelete" (SnapshotParams) -> TaskInfo;
    /// Clones a powered-off VM or template on the same host and datastore.
    VmClone = "vm.clone" (VmCloneParams) -> TaskInfo;
    /// Marks a powered-off VM as a template, or a template as a VM.
    VmSetTemplate = "vm.setTemplate" (SetTemplateParams) -> VmInfo;
    /// Creates a resource pool (admission-checked).
    PoolCreate = "pool.create" (PoolCreateParams) -> PoolInfo;
    /// Renames a pool or changes its allocation (admission-checked, applies live).
    PoolUpdate = "pool.update" (PoolUpdateParams) -> PoolInfo;
    /// Moves a pool under another parent of the same tree.
    PoolMove = "pool.move" (PoolMoveParams) -> PoolInfo;
    /// Deletes a pool (refused while it has children unless they move to its parent).
    PoolDelete = "pool.delete" (PoolDeleteParams) -> Empty;
    /// Lists pools.
    PoolList = "pool.list" (PoolListParams) -> Vec<PoolInfo>;
    /// Reserved and unreserved capacity of every pool of a standalone host or cluster.
    PoolUsageGet = "pool.usage" (IdParams) -> Vec<PoolUsage>;
    /// One task.
    TaskGet = "task.get" (IdParams) -> TaskInfo;
    /// Recent tasks.
    TaskList = "task.list" (TaskListParams) -> Vec<TaskInfo>;
    /// Recent events.
    EventList = "event.list" (EventListParams) -> Vec<EventInfo>;
    /// Active alarms, most severe then newest first.
    AlarmList = "alarm.list" (AlarmListParams) -> Vec<AlarmInfo>;
    /// Acknowledges an active alarm: it stays active, with who acknowledged it and when
    /// (until its severity changes).
    AlarmAcknowledge = "alarm.acknowledge" (IdParams) -> AlarmInfo;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> VmSpec {
        VmSpec {
            vcpus: 1,
            memory_mib: 256,
            engine: Engine::Qemu,
            machine: Machine::Microvm,
            boot: BootSpec {
                kernel: "/k".into(),
                initrd: None,
                cmdline: "quiet".into(),
            },
            allocation: Default::default(),
            disks: Vec::new(),
            template: false,
            nics: Vec::new(),
        }
    }

    #[test]
    fn reconfigure_changes_only_what_it_names_and_refuses_bad_values_whole() {
        let mut s = spec();
        let p = VmReconfigureParams {
            vcpus: Some(2),
            cmdline: Some(String::new()),
            ..Default::default()
        };
        assert!(p.changes_hardware(&s));
        p.apply(&mut s).unwrap();
        assert_eq!(
            (s.vcpus, s.memory_mib, s.boot.cmdline.as_str()),
            (2, 256, "")
        );
        // The same value again is no hardware change.
        assert!(!p.changes_hardware(&s));

        let before = s.clone();
        for bad in [
            VmReconfigureParams::default(),
            VmReconfigureParams {
                name: Some("a/b".into()),
                ..Default::default()
            },
            VmReconfigureParams {
                vcpus: Some(0),
                cmdline: Some("x".into()),
                ..Default::default()
            },
            VmReconfigureParams {
                memory_mib: Some(8),
                ..Default::default()
            },
            VmReconfigureParams {
                cmdline: Some("a\nb".into()),
                ..Default::default()
            },
        ] {
            assert!(bad.apply(&mut s).is_err(), "{bad:?} accepted");
            assert_eq!(s, before, "{bad:?} changed the spec");
        }
        // Omitted fields stay off the wire.
        let text = serde_json::to_string(&VmReconfigureParams {
            name: Some("web".into()),
            ..Default::default()
        })
        .unwrap();
        assert!(!text.contains("vcpus"), "{text}");
    }
}
