//! Inventory objects for the client's unit tests.

use strata_shared::model::{
    BootSpec, ConnectionState, Engine, HostInfo, Machine, PowerState, VmInfo, VmSpec,
};
use uuid::Uuid;

/// A powered-off 1-vCPU, 128 MiB QEMU microvm VM named `name` on `host`, in no pool, on
/// datastore1.
pub fn vm(name: &str, host: Uuid) -> VmInfo {
    VmInfo {
        id: Uuid::new_v4(),
        name: name.into(),
        host: Some(host),
        pool: None,
        datastore: "datastore1".into(),
        spec: VmSpec {
            vcpus: 1,
            memory_mib: 128,
            engine: Engine::Qemu,
            machine: Machine::Microvm,
            boot: BootSpec {
                kernel: "k".into(),
                initrd: None,
                cmdline: String::new(),
            },
            allocation: Default::default(),
            disks: Vec::new(),
            template: false,
            nics: Vec::new(),
        },
        power_state: PowerState::PoweredOff,
        running_engine: None,
        pid: None,
        created_ms: 0,
    }
}

/// A connected standalone host named host1 in datacenter `dc`.
pub fn host(dc: Uuid) -> HostInfo {
    HostInfo {
        id: Uuid::new_v4(),
        name: "host1".into(),
        address: "127.0.0.1:9443".into(),
        datacenter: dc,
        cluster: None,
        thumbprint: String::new(),
        connection_state: ConnectionState::Connected,
        state_reason: None,
        facts: None,
    }
}
