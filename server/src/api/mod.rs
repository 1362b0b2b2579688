//! The manager's API: authentication and permission checks for every call, then one file
//! per area.

mod alarm;
mod disk;
mod files;
mod host;
mod inventory;
mod pool;
mod session;
mod snapshot;
mod stats;
mod task;
mod vm;

use std::sync::Arc;

use serde_json::Value;
use strata_shared::api::manager as m;
use strata_shared::api::Method;
use strata_shared::model::Role;
use strata_shared::rpc::{ErrorCode, RpcError};
use strata_shared::service::{Connection, Service};

use crate::app::App;

/// A logged-in connection's identity.
#[derive(Debug, Clone)]
pub struct Session {
    /// User.
    pub username: String,
    /// Role.
    pub role: Role,
    /// Token digest (for logout).
    pub digest: String,
    /// Expiry, Unix ms.
    pub expires_ms: i64,
}

/// The manager's API front.
pub struct ManagerService {
    /// The manager.
    pub app: Arc<App>,
}

/// The role a method needs; `None` = no session needed. Unknown methods are not listed.
pub fn required_role(method: &str) -> Option<Option<Role>> {
    let r = match method {
        m::ServerInfoMethod::NAME | m::SessionLogin::NAME | m::SessionResume::NAME => None,
        m::SessionLogout::NAME
        | m::InventoryGet::NAME
        | m::InventorySubscribe::NAME
        | m::DatacenterList::NAME
        | m::ClusterList::NAME
        | m::HostList::NAME
        | m::HostGet::NAME
        | m::VmList::NAME
        | m::VmGet::NAME
        | m::VmConsoleRead::NAME
        | m::VmDiskList::NAME
        | m::VmSnapshotList::NAME
        | m::StatsQuery::NAME
        | m::DatastoreBrowse::NAME
        | m::TaskGet::NAME
        | m::TaskList::NAME
        | m::EventList::NAME
        | m::AlarmList::NAME
        | m::PoolList::NAME
        | m::PoolUsageGet::NAME => Some(Role::ReadOnly),
        m::VmCreate::NAME
        | m::VmPowerOn::NAME
        | m::VmPowerOff::NAME
        | m::VmReset::NAME
        | m::VmSuspend::NAME
        | m::VmPause::NAME
        | m::VmUnpause::NAME
        | m::VmDestroy::NAME
        | m::VmConsoleSend::NAME
        | m::VmConsoleTicket::NAME
        | m::VmSetAllocation::NAME
        | m::VmMove::NAME
        | m::VmDiskCreate::NAME
        | m::VmDiskGrow::NAME
        | m::VmDiskAttach::NAME
        | m::VmDiskRemove::NAME
        | m::DatastoreUpload::NAME
        | m::DatastoreDownload::NAME
        | m::VmSnapshotCreate::NAME
        | m::VmSnapshotRevert::NAME
        | m::VmSnapshotDelete::NAME
        | m::VmClone::NAME
        | m::VmSetTemplate::NAME
        | m::VmReconfigure::NAME
        | m::PoolCreate::NAME
        | m::PoolUpdate::NAME
        | m::PoolMove::NAME
        | m::PoolDelete::NAME
        | m::AlarmAcknowledge::NAME => Some(Role::Operator),
        m::UserCreate::NAME
        | m::UserList::NAME
        | m::HostAdd::NAME
        | m::HostRemove::NAME
        | m::ClusterCreate::NAME
        // A host's block devices are the host's: only administrators map them into VMs.
        | m::VmDiskMapDevice::NAME => Some(Role::Admin),
        _ => return None,
    };
    Some(r)
}

impl Service for ManagerService {
    type Session = Session;

    async fn call(
        self: Arc<Self>,
        conn: Arc<Connection<Session>>,
        method: String,
        params: Value,
    ) -> Result<Value, RpcError> {
        let Some(needed) = required_role(&method) else {
            return Err(RpcError::new(
                ErrorCode::MethodNotFound,
                format!("no method {method:?}"),
            ));
        };
        let app = &self.app;
        let session = match needed {
            None => None,
            Some(role) => {
                let s = match conn.session() {
                    Some(s) if s.expires_ms > strata_shared::now_ms() => s,
                    Some(_) => {
                        conn.set_session(None);
                        return Err(RpcError::new(
                            ErrorCode::NotAuthenticated,
                            "the session has expired; log in again",
                        ));
                    }
                    None => {
                        return Err(RpcError::new(
                            ErrorCode::NotAuthenticated,
                            "log in first (session.login)",
                        ))
                    }
                };
                if s.role < role {
                    return Err(RpcError::new(
                        ErrorCode::NoPermission,
                        format!(
                            "{method} needs the {} role; {} has {}",
                            role.as_str(),
                            s.username,
                            s.role.as_str()
                        ),
                    ));
                }
                Some(s)
            }
        };
        match (method.as_str(), session) {
            (_, None) => session::public(app, &conn, &method, params).await,
            (m::SessionLogout::NAME | m::UserCreate::NAME | m::UserList::NAME, Some(s)) => {
                session::authenticated(app, &conn, &s, &method, params).await
            }
            (
                m::InventoryGet::NAME
                | m::InventorySubscribe::NAME
                | m::DatacenterList::NAME
                | m::ClusterList::NAME
                | m::ClusterCreate::NAME,
                Some(s),
            ) => inventory::call(app, &conn, &s, &method, params).await,
            (
                m::HostAdd::NAME | m::HostList::NAME | m::HostGet::NAME | m::HostRemove::NAME,
                Some(s),
            ) => host::call(app, &s, &method, params).await,
            (
                m::PoolCreate::NAME
                | m::PoolUpdate::NAME
                | m::PoolMove::NAME
                | m::PoolDelete::NAME
                | m::PoolList::NAME
                | m::PoolUsageGet::NAME
                | m::VmSetAllocation::NAME
                | m::VmMove::NAME,
                Some(s),
            ) => pool::call(app, &s, &method, params).await,
            (
                m::VmDiskList::NAME
                | m::VmDiskCreate::NAME
                | m::VmDiskGrow::NAME
                | m::VmDiskAttach::NAME
                | m::VmDiskRemove::NAME
                | m::VmDiskMapDevice::NAME,
                Some(s),
            ) => disk::call(app, &s, &method, params).await,
            (
                m::VmSnapshotList::NAME
                | m::VmSnapshotCreate::NAME
                | m::VmSnapshotRevert::NAME
                | m::VmSnapshotDelete::NAME
                | m::VmClone::NAME
                | m::VmSetTemplate::NAME,
                Some(s),
            ) => snapshot::call(app, &s, &method, params).await,
            (
                m::DatastoreBrowse::NAME | m::DatastoreUpload::NAME | m::DatastoreDownload::NAME,
                Some(_),
            ) => files::call(app, &method, params).await,
            (m::StatsQuery::NAME, Some(_)) => stats::call(app, &method, params).await,
            (m::AlarmList::NAME | m::AlarmAcknowledge::NAME, Some(s)) => {
                alarm::call(app, &s, &method, params).await
            }
            (m::TaskGet::NAME | m::TaskList::NAME | m::EventList::NAME, Some(_)) => {
                task::call(app, &method, params).await
            }
            (_, Some(s)) => vm::call(app, &s, &method, params).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_manager_method_has_a_permission() {
        for md in m::METHODS {
            assert!(
                required_role(md.name).is_some(),
                "{} has no permission entry",
                md.name
            );
        }
        assert!(required_role("vm.explode").is_none());
        assert_eq!(
            required_role(m::VmPowerOn::NAME),
            Some(Some(Role::Operator))
        );
        assert_eq!(required_role(m::SessionLogin::NAME), Some(None));
        assert_eq!(
            required_role(m::AlarmList::NAME),
            Some(Some(Role::ReadOnly)),
            "anyone logged in sees what is wrong"
        );
        assert_eq!(
            required_role(m::AlarmAcknowledge::NAME),
            Some(Some(Role::Operator))
        );
        assert_eq!(
            required_role(m::VmDiskMapDevice::NAME),
            Some(Some(Role::Admin)),
            "host devices are for administrators"
        );
    }
}
