//! Sessions and users.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// What a user may do. Checked on every call.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum Role {
    /// Read everything, change nothing.
    ReadOnly,
    /// Operate VMs and hosts.
    Operator,
    /// Everything, including users.
    Admin,
}

impl Role {
    /// Stable lower-case name (as stored).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::ReadOnly => "readOnly",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
    /// Parses [`Role::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        [Role::ReadOnly, Role::Operator, Role::Admin]
            .into_iter()
            .find(|r| r.as_str() == s)
    }
}

/// `session.login` params.
#[derive(Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LoginParams {
    /// User name.
    pub username: String,
    /// Password.
    pub password: String,
}

impl std::fmt::Debug for LoginParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginParams")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// `session.resume` params: continue a session on a new connection.
#[derive(Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ResumeParams {
    /// The token `session.login` returned.
    pub token: String,
}

impl std::fmt::Debug for ResumeParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ResumeParams { token: <redacted> }")
    }
}

/// A session.
#[derive(Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionInfo {
    /// Bearer token for `session.resume`.
    pub token: String,
    /// User name.
    pub username: String,
    /// Role.
    pub role: Role,
    /// When the token stops working, Unix ms.
    pub expires_ms: i64,
}

impl std::fmt::Debug for SessionInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionInfo")
            .field("username", &self.username)
            .field("role", &self.role)
            .field("expires_ms", &self.expires_ms)
            .finish_non_exhaustive()
    }
}

/// Which daemon answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ServerKind {
    /// strata-server.
    Manager,
    /// strata-hostagent.
    HostAgent,
}

/// `server.info` result (no session needed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServerInfo {
    /// "Strata".
    pub product: String,
    /// Version.
    pub version: String,
    /// Manager or host agent.
    pub kind: ServerKind,
    /// The daemon's id.
    pub id: Uuid,
}

/// A user (`user.list`, `user.create`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserInfo {
    /// User name.
    pub username: String,
    /// Role.
    pub role: Role,
}

/// `user.create` params.
#[derive(Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UserCreateParams {
    /// User name.
    pub username: String,
    /// Password (at least 8 characters).
    pub password: String,
    /// Role.
    pub role: Role,
}

impl std::fmt::Debug for UserCreateParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserCreateParams")
            .field("username", &self.username)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}
