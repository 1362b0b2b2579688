//! strata-server, the manager: inventory, users, tasks, events, alarms, and the links to host
//! agents.
//! The binary is thin; [`start`] is what it and the tests drive.

pub mod alarms;
pub mod api;
pub mod app;
pub mod cli;
pub mod config;
pub mod console;
pub mod db;
pub mod hosts;
pub mod pools;
pub mod stats;
pub mod tasks;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use strata_shared::model::Role;
use strata_shared::service::{serve, ServiceLimits};
use tracing::{info, warn};
use uuid::Uuid;

pub use config::ServerConfig;

/// What a started manager reports before serving.
#[derive(Debug, Clone)]
pub struct Started {
    /// Bound address.
    pub address: SocketAddr,
    /// Certificate thumbprint.
    pub thumbprint: String,
    /// Manager id.
    pub id: Uuid,
    /// Password of the `admin` user, when this start generated it (print once).
    pub generated_admin_password: Option<String>,
}

/// Errors starting the manager.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// Data directory problems.
    #[error("data directory {0}")]
    DataDir(String),
    /// TLS setup failed.
    #[error(transparent)]
    Tls(#[from] strata_shared::tls::TlsError),
    /// The database failed.
    #[error(transparent)]
    Db(#[from] db::DbError),
    /// Binding failed.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// Cause.
        source: std::io::Error,
    },
    /// Hashing the admin password failed.
    #[error(transparent)]
    Hash(#[from] strata_shared::password::HashError),
}

/// Starts the manager: returns what it bound and a future that serves until `shutdown`,
/// then stops host links, waits for tasks and closes the database.
pub async fn start(
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(Started, impl Future<Output = ()>), StartError> {
    config.validate()?;
    strata_shared::state_dir::create(&config.data_dir)
        .map_err(|e| StartError::DataDir(format!("{}: {e}", config.data_dir.display())))?;
    let identity = strata_shared::tls::load_or_create_identity(
        &config.data_dir.join("tls"),
        &["localhost".into(), "127.0.0.1".into()],
    )?;
    let tls = strata_shared::tls::server_config(&identity)?;
    let db = db::Db::open(config.effective_database_url().expose()).await?;
    let interrupted = db.fail_unfinished_tasks(&tasks::interrupted()).await?;
    if interrupted > 0 {
        warn!(
            count = interrupted,
            "tasks interrupted by the previous stop were marked failed"
        );
    }
    let id = match db.setting("manager_id").await? {
        Some(s) => s
            .parse()
            .map_err(|_| db::DbError::Corrupt("manager_id".into()))?,
        None => {
            let id = Uuid::new_v4();
            db.set_setting("manager_id", &id.to_string()).await?;
            id
        }
    };
    db.default_datacenter().await?;
    db.reset_host_states("the manager is reconnecting").await?;
    let mut generated_admin_password = None;
    if db.user_count().await? == 0 {
        let pw = if config.admin_password.is_empty() {
            let p = strata_shared::password::random_secret(9);
            generated_admin_password = Some(p.clone());
            p
        } else {
            config.admin_password.expose().to_string()
        };
        let hash = tokio::task::spawn_blocking(move || strata_shared::password::hash(&pw))
            .await
            .map_err(|e| StartError::DataDir(e.to_string()))??;
        db.insert_user("admin", &hash, Role::Admin).await?;
        info!("created the first administrator, user admin");
    }
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
    let (notes, _) = tokio::sync::broadcast::channel(4096);
    let grace = Duration::from_secs(config.shutdown_grace_secs);
    let app = Arc::new(app::App {
        id,
        config,
        db,
        notes,
        hosts: hosts::HostLinks::default(),
        tasks: tasks::Tasks::default(),
        admission: pools::Admission::default(),
        vm_ops: app::VmOps::default(),
        stats: stats::Sampler::default(),
        alarms: alarms::Alarms::default(),
    });
    alarms::resume(&app).await;
    for h in app.db.hosts().await? {
        app.hosts.start(&app, h.info.id);
    }
    let service = Arc::new(api::ManagerService { app: app.clone() });
    let started = Started {
        address,
        thumbprint: identity.thumbprint.clone(),
        id,
        generated_admin_password,
    };
    info!(%address, thumbprint = %identity.thumbprint, "manager listening");
    let run = async move {
        serve(listener, tls, service, ServiceLimits::default(), shutdown).await;
        info!("shutting down: stopping host links and waiting for tasks");
        app.hosts.stop_all().await;
        let left = app.tasks.drain(grace).await;
        if left > 0 {
            warn!(
                count = left,
                "tasks still running at shutdown were marked failed"
            );
            let _ = app.db.fail_unfinished_tasks(&tasks::interrupted()).await;
        }
        app.db.close().await;
        info!("manager stopped");
    };
    Ok((started, run))
}
