//! strata-hostagent: runs VMs on one KVM host and serves the host API. The binary is thin;
//! [`run`] is what it and the tests drive.

pub mod agent;
pub mod atomic_file;
pub mod auth;
pub mod cgroups;
pub mod cli;
pub mod config;
pub mod console;
pub mod datastore;
pub mod engine;
pub mod facts;
pub mod guest_image;
pub mod net;
pub mod registry;
pub mod rfb;
pub mod service;
pub mod vmm;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use strata_shared::service::{serve, ServiceLimits};
use tracing::info;
use uuid::Uuid;

pub use config::AgentConfig;

/// What a started agent reports before serving.
#[derive(Debug, Clone)]
pub struct Started {
    /// Bound address.
    pub address: SocketAddr,
    /// Certificate thumbprint.
    pub thumbprint: String,
    /// Host id.
    pub id: Uuid,
    /// Root password, when this start generated it (print once).
    pub generated_root_password: Option<String>,
}

/// Errors starting the agent.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// Data directory problems.
    #[error("data directory {path}: {message}")]
    DataDir {
        /// Directory.
        path: String,
        /// What failed.
        message: String,
    },
    /// TLS setup failed.
    #[error(transparent)]
    Tls(#[from] strata_shared::tls::TlsError),
    /// Credentials failed.
    #[error(transparent)]
    Auth(#[from] auth::AuthError),
    /// Binding the port failed.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// Cause.
        source: std::io::Error,
    },
    /// Agent setup failed.
    #[error("{0}")]
    Setup(String),
}

fn host_id(data_dir: &std::path::Path) -> Result<Uuid, StartError> {
    let path = data_dir.join("host-id");
    let err = |m: String| StartError::DataDir {
        path: data_dir.display().to_string(),
        message: m,
    };
    if let Ok(text) = std::fs::read_to_string(&path) {
        return text
            .trim()
            .parse()
            .map_err(|_| err(format!("{} is corrupt", path.display())));
    }
    let id = Uuid::new_v4();
    atomic_file::write(&path, id.to_string().as_bytes()).map_err(|e| err(e.to_string()))?;
    Ok(id)
}

/// Starts the agent: returns what it bound and a future that serves until `shutdown`.
pub async fn start(
    config: AgentConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(Started, impl Future<Output = ()>), StartError> {
    config.validate()?;
    strata_shared::state_dir::create(&config.data_dir).map_err(|e| StartError::DataDir {
        path: config.data_dir.display().to_string(),
        message: e.to_string(),
    })?;
    let id = host_id(&config.data_dir)?;
    let hostname = facts::MachineFacts::read().hostname;
    let identity = strata_shared::tls::load_or_create_identity(
        &config.data_dir.join("tls"),
        &[hostname, "localhost".into(), "127.0.0.1".into()],
    )?;
    let tls = strata_shared::tls::server_config(&identity)?;
    let (auth, first) = auth::Auth::open(
        &config.data_dir,
        config.root_password.expose(),
        config.session_ttl_secs,
    )?;
    let generated_root_password = match first {
        auth::FirstStart::Generated(p) => Some(p),
        _ => None,
    };
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| StartError::Bind {
            addr: config.listen,
            source,
        })?;
    let address = listener.local_addr().map_err(|source| StartError::Bind {
        addr: config.listen,
        source,
    })?;
    let console_listener = tokio::net::TcpListener::bind(config.console_listen)
        .await
        .map_err(|source| StartError::Bind {
            addr: config.console_listen,
            source,
        })?;
    let console_address = console_listener
        .local_addr()
        .map_err(|source| StartError::Bind {
            addr: config.console_listen,
            source,
        })?;
    let advertised = |ip: std::net::IpAddr| {
        if ip.is_unspecified() {
            facts::MachineFacts::read().hostname
        } else {
            ip.to_string()
        }
    };
    let endpoints = console::Endpoints {
        ws_host: advertised(address.ip()),
        ws_port: address.port(),
        thumbprint: identity.thumbprint.clone(),
        vnc_host: advertised(console_address.ip()),
        vnc_port: console_address.port(),
    };
    let console_ticket_secs = config.console_ticket_secs;
    let agent = agent::Agent::new(id, config, auth)
        .await
        .map_err(StartError::Setup)?;
    let serial_lookup: console::SerialLookup = {
        let agent = Arc::downgrade(&agent);
        Box::new(move |vm| agent.upgrade().and_then(|a| a.serial_only_console(vm)))
    };
    let console = Arc::new(console::ConsoleGateway::new(
        agent.run_dir().to_path_buf(),
        endpoints,
        agent.notifier(),
        serial_lookup,
        console_ticket_secs,
    ));
    let console_task = tokio::spawn(console.clone().serve_vnc(console_listener));
    let watcher = tokio::spawn(agent.clone().watch_processes());
    let ds_watcher = tokio::spawn(agent.clone().watch_datastores());
    let service = Arc::new(service::AgentService { agent, console });
    let started = Started {
        address,
        thumbprint: identity.thumbprint.clone(),
        id,
        generated_root_password,
    };
    info!(%address, thumbprint = %identity.thumbprint, console = %console_address, "host agent listening");
    let run = async move {
        serve(listener, tls, service, ServiceLimits::default(), shutdown).await;
        watcher.abort();
        ds_watcher.abort();
        console_task.abort();
        info!("host agent stopped; VMs keep running");
    };
    Ok((started, run))
}
