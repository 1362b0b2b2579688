//! The host agent's (strata-hostagent's) API: the same envelope, synchronous VM operations.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::api_methods;
pub use super::manager::{
    ConsoleReadParams, ConsoleSendParams, DiskAttachParams, DiskCreateParams, DiskGrowParams,
    DiskMapDeviceParams, DiskRemoveParams, PowerOffParams, SetTemplateParams, SnapshotCreateParams,
    SnapshotParams, VmReconfigureParams,
};
use crate::model::*;

/// `vm.create` params (agent).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AgentVmCreateParams {
    /// Id to give the VM (the manager's); a new one when missing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Uuid>,
    /// Name: also the VM's directory name on the datastore.
    pub name: String,
    /// Datastore; the first one when missing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datastore: Option<String>,
    /// Configuration.
    pub spec: VmSpec,
}

/// `vm.clone` params (agent).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AgentVmCloneParams {
    /// What to clone and how.
    pub clone: super::manager::VmCloneParams,
    /// Id to give the new VM (the manager's); a new one when missing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_id: Option<Uuid>,
}

/// `vm.powerOff` result (agent): the VM and how it went down.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PowerOffResult {
    /// The VM, powered off.
    pub vm: VmInfo,
    /// True when the guest shut itself down; false when it was stopped hard.
    pub graceful: bool,
    /// What happened, in words.
    pub reason: String,
}

/// `vm.consoleTicket` params (agent): the VM and the user the ticket is for (the manager
/// names its own user; a direct login to the agent gets tickets in its own name).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ConsoleTicketParams {
    /// The VM.
    pub id: Uuid,
    /// The user; the session's own user when missing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

api_methods! {
    /// Describes the daemon; needs no session.
    ServerInfoMethod = "server.info" (Empty) -> ServerInfo;
    /// Logs in (root, or a manager's registered credential).
    SessionLogin = "session.login" (LoginParams) -> SessionInfo;
    /// Authenticates this connection with an existing session's token.
    SessionResume = "session.resume" (ResumeParams) -> SessionInfo;
    /// Ends the session.
    SessionLogout = "session.logout" (Empty) -> Empty;
    /// Facts about this host.
    HostInfoMethod = "host.info" (Empty) -> HostFacts;
    /// Issues a credential for a manager that takes over this host (root only).
    HostRegisterManager = "host.registerManager" (RegisterManagerParams) -> ManagerCredential;
    /// Replaces this host's part of the resource-pool tree and enforces it on running VMs.
    HostApplyResources = "host.applyResources" (HostResources) -> Empty;
    /// Raw CPU and memory counters of the running VMs.
    HostStats = "host.stats" (Empty) -> HostCounters;
    /// Subscribes this connection to `vm.powerStateChanged` notifications.
    HostSubscribe = "host.subscribe" (Empty) -> Empty;
    /// VMs on this host.
    VmList = "vm.list" (Empty) -> Vec<VmInfo>;
    /// One VM.
    VmGet = "vm.get" (IdParams) -> VmInfo;
    /// Creates a VM directory with its configuration.
    VmCreate = "vm.create" (AgentVmCreateParams) -> VmInfo;
    /// Starts the VM's process.
    VmPowerOn = "vm.powerOn" (IdParams) -> VmInfo;
    /// Shuts the guest down, then stops it hard after the timeout.
    VmPowerOff = "vm.powerOff" (PowerOffParams) -> PowerOffResult;
    /// Resets a running VM.
    VmReset = "vm.reset" (IdParams) -> VmInfo;
    /// Saves a running or paused VM's full state into NAME/suspend/ and ends its process;
    /// `vm.powerOn` resumes it from there.
    VmSuspend = "vm.suspend" (IdParams) -> VmInfo;
    /// Stops a running VM's vCPUs (the process stays).
    VmPause = "vm.pause" (IdParams) -> VmInfo;
    /// Lets a paused VM's vCPUs run again.
    VmUnpause = "vm.unpause" (IdParams) -> VmInfo;
    /// Deletes a powered-off VM's directory.
    VmDestroy = "vm.destroy" (IdParams) -> Empty;
    /// Reads the serial console log.
    VmConsoleRead = "vm.consoleRead" (ConsoleReadParams) -> ConsoleChunk;
    /// Types into the serial console.
    VmConsoleSend = "vm.consoleSend" (ConsoleSendParams) -> Empty;
    /// Issues a single-use, 30-second console ticket for a running VM, bound to `user`.
    VmConsoleTicket = "vm.consoleTicket" (ConsoleTicketParams) -> ConsoleTicket;
    /// Lists a VM's disks with their sizes.
    VmDiskList = "vm.diskList" (IdParams) -> Vec<DiskInfo>;
    /// Creates a disk in the VM's directory and attaches it (VM powered off).
    VmDiskCreate = "vm.diskCreate" (DiskCreateParams) -> VmInfo;
    /// Grows a disk (VM powered off).
    VmDiskGrow = "vm.diskGrow" (DiskGrowParams) -> VmInfo;
    /// Attaches a disk file from the VM's directory (VM powered off).
    VmDiskAttach = "vm.diskAttach" (DiskAttachParams) -> VmInfo;
    /// Detaches a disk, optionally deleting its file (VM powered off).
    VmDiskRemove = "vm.diskRemove" (DiskRemoveParams) -> VmInfo;
    /// Maps a host block device into a VM as its last disk (VM powered off).
    VmDiskMapDevice = "vm.diskMapDevice" (DiskMapDeviceParams) -> VmInfo;
    /// Lists a directory of a datastore.
    DatastoreBrowse = "datastore.browse" (BrowseParams) -> Vec<DatastoreEntry>;
    /// Uploads one chunk of a file to a datastore.
    DatastoreUpload = "datastore.upload" (UploadParams) -> UploadProgress;
    /// Downloads one chunk of a file from a datastore.
    DatastoreDownload = "datastore.download" (DownloadParams) -> FileChunk;
    /// A VM's snapshot tree.
    VmSnapshotList = "vm.snapshotList" (IdParams) -> SnapshotTree;
    /// Takes a snapshot of a powered-off VM's disks.
    VmSnapshotCreate = "vm.snapshotCreate" (SnapshotCreateParams) -> SnapshotTree;
    /// Returns a powered-off VM's disks to a snapshot.
    VmSnapshotRevert = "vm.snapshotRevert" (SnapshotParams) -> VmInfo;
    /// Deletes a snapshot, merging its data into what depends on it.
    VmSnapshotDelete = "vm.snapshotDelete" (SnapshotParams) -> SnapshotTree;
    /// Clones a powered-off VM on this host's datastore.
    VmClone = "vm.clone" (AgentVmCloneParams) -> VmInfo;
    /// Marks a powered-off VM as a template or back.
    VmSetTemplate = "vm.setTemplate" (SetTemplateParams) -> VmInfo;
    /// Renames a VM (its directory stays) and/or changes its vCPUs and memory (no process)
    /// and kernel command line.
    VmReconfigure = "vm.reconfigure" (VmReconfigureParams) -> VmInfo;
}
