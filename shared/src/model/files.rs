//! Files on datastores: browsing, and moving them in and out in chunks over the API (ISO
//! images, kernels, disk images). Chunk data travels base64-encoded in the JSON messages.

use base64::Engine as _;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Largest chunk of file data one upload or download call carries, bytes.
pub const MAX_CHUNK: usize = 512 << 10;

/// What a datastore entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum EntryKind {
    /// A directory.
    Directory,
    /// A file.
    File,
}

/// One entry of a datastore directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatastoreEntry {
    /// Name inside the directory.
    pub name: String,
    /// File or directory.
    pub kind: EntryKind,
    /// Size, bytes (files).
    pub size_bytes: u64,
    /// Last modification, Unix ms.
    pub modified_ms: i64,
}

/// `datastore.browse` params.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BrowseParams {
    /// Datastore name (or id, on the manager).
    pub datastore: String,
    /// Directory inside it ("" for its root).
    #[serde(default)]
    pub path: String,
}

/// `datastore.upload` params: one chunk of a file being uploaded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UploadParams {
    /// Datastore name (or id, on the manager).
    pub datastore: String,
    /// File path inside it; its directory must exist.
    pub path: String,
    /// Where this chunk goes: 0 starts the upload, later chunks continue where the last one
    /// ended.
    pub offset: u64,
    /// The bytes, base64 (at most [`MAX_CHUNK`] decoded).
    pub data: String,
    /// This is the last chunk: the file appears under its name.
    #[serde(default)]
    pub done: bool,
    /// Replace an existing file.
    #[serde(default)]
    pub overwrite: bool,
}

/// What an upload call did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UploadProgress {
    /// Bytes received so far.
    pub received_bytes: u64,
    /// The file is complete and in place.
    pub done: bool,
}

/// `datastore.download` params.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DownloadParams {
    /// Datastore name (or id, on the manager).
    pub datastore: String,
    /// File path inside it.
    pub path: String,
    /// First byte to read.
    #[serde(default)]
    pub offset: u64,
    /// At most this many bytes (default and most [`MAX_CHUNK`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<u32>,
}

/// A piece of a file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FileChunk {
    /// Where `data` starts in the file.
    pub offset: u64,
    /// The bytes, base64.
    pub data: String,
    /// The whole file's size, bytes.
    pub size_bytes: u64,
}

/// Encodes chunk data for the wire.
pub fn encode_chunk(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Decodes chunk data from the wire, refusing more than [`MAX_CHUNK`] bytes.
pub fn decode_chunk(text: &str) -> Result<Vec<u8>, String> {
    if text.len() > MAX_CHUNK / 3 * 4 + 8 {
        return Err(format!("a chunk may carry at most {MAX_CHUNK} bytes"));
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| format!("chunk data is not base64: {e}"))?;
    if bytes.len() > MAX_CHUNK {
        return Err(format!("a chunk may carry at most {MAX_CHUNK} bytes"));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_round_trip_and_oversize_or_garbage_is_refused() {
        let data: Vec<u8> = (0..=255u8).cycle().take(MAX_CHUNK).collect();
        assert_eq!(decode_chunk(&encode_chunk(&data)).unwrap(), data);
        let big = vec![0u8; MAX_CHUNK + 3];
        assert!(decode_chunk(&encode_chunk(&big)).is_err());
        assert!(decode_chunk("not base64 !").is_err());
    }
}
