//! Strata's protocol crate: JSON-RPC 2.0 envelope, typed API methods and models, TLS with
//! certificate pinning, the WebSocket service loop both daemons use, and the async SDK client
//! that the CLI, the desktop client and the tests use.

pub mod api;
pub mod client;
pub mod config_file;
pub mod model;
pub mod password;
pub mod rpc;
pub mod schema;
pub mod service;
pub mod state_dir;
pub mod tls;

pub use client::{Client, ClientError, Trust};
pub use rpc::{ErrorCode, RpcError};

/// Strata's version, reported by `server.info` on both daemons.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Current time as Unix milliseconds (the protocol's timestamp unit).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
