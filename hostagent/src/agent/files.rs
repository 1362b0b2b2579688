//! The `datastore.*` file methods: browse, upload and download on this host's datastores.

use strata_shared::model::{
    BrowseParams, DatastoreEntry, DownloadParams, FileChunk, UploadParams, UploadProgress,
};
use strata_shared::rpc::{ErrorCode, RpcError};

use super::Agent;
use crate::datastore::files::{self, FileError};

fn file_err(e: FileError) -> RpcError {
    match e {
        FileError::Invalid(m) => RpcError::invalid(m),
        FileError::NotFound(_) => RpcError::new(ErrorCode::NotFound, e.to_string()),
        FileError::Exists(_) => RpcError::new(ErrorCode::Conflict, e.to_string()),
        FileError::NoSpace(_) => RpcError::new(ErrorCode::InsufficientResources, e.to_string()),
        FileError::Io(m) => RpcError::internal(m),
    }
}

impl Agent {
    /// The root of a reachable datastore.
    fn datastore_root(&self, name: &str) -> Result<std::path::PathBuf, RpcError> {
        let ds = self.datastore(Some(name))?;
        if let Some(problem) = ds.health().problem {
            return Err(RpcError::new(
                ErrorCode::Unavailable,
                format!("datastore {name} is inaccessible: {problem}"),
            ));
        }
        Ok(ds.root.clone())
    }

    /// Lists a datastore directory.
    pub async fn browse(&self, p: BrowseParams) -> Result<Vec<DatastoreEntry>, RpcError> {
        let root = self.datastore_root(&p.datastore)?;
        blocking(move || files::browse(&root, &p.path)).await
    }

    /// Takes one upload chunk.
    pub async fn upload(&self, p: UploadParams) -> Result<UploadProgress, RpcError> {
        let root = self.datastore_root(&p.datastore)?;
        blocking(move || files::upload(&root, &p)).await
    }

    /// Reads one download chunk.
    pub async fn download(&self, p: DownloadParams) -> Result<FileChunk, RpcError> {
        let root = self.datastore_root(&p.datastore)?;
        blocking(move || files::download(&root, &p)).await
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, FileError> + Send + 'static,
) -> Result<T, RpcError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| RpcError::internal(format!("file operation stopped: {e}")))?
        .map_err(file_err)
}
