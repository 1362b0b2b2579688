//! The JSON-RPC 2.0 envelope: requests, responses, notifications and stable error codes.

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

/// A request id: JSON-RPC allows numbers and strings; `None` makes the request a notification.
pub type RequestId = Value;

/// A request as it arrives on the wire (lenient: validated by [`Request::check`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Request {
    /// Always "2.0".
    pub jsonrpc: String,
    /// Echoed back in the response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<RequestId>,
    /// `noun.verb` method name.
    pub method: String,
    /// Parameters object; missing means `{}`.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub params: Value,
}

impl Request {
    /// Checks the envelope fields that serde cannot.
    pub fn check(&self) -> Result<(), RpcError> {
        if self.jsonrpc != "2.0" {
            return Err(RpcError::new(
                ErrorCode::InvalidRequest,
                "the \"jsonrpc\" member must be exactly \"2.0\"",
            ));
        }
        match &self.id {
            None | Some(Value::Number(_)) | Some(Value::String(_)) => Ok(()),
            Some(_) => Err(RpcError::new(
                ErrorCode::InvalidRequest,
                "the request id must be a number or a string",
            )),
        }
    }
}

/// A response to one request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Response {
    /// Always "2.0".
    pub jsonrpc: String,
    /// The request's id, or null when the request could not be read.
    pub id: Value,
    /// Present on success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// Present on failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<RpcError>,
}

impl Response {
    /// A successful response.
    pub fn ok(id: Value, result: Value) -> Self {
        Self {
            jsonrpc: "2.0".into(),
            id,
            result: Some(result),
            error: None,
        }
    }
    /// A failed response.
    pub fn err(id: Value, error: RpcError) -> Self {
        Self {
            jsonrpc: "2.0".into(),
            id,
            result: None,
            error: Some(error),
        }
    }
}

/// A server-pushed message without an id (task progress, inventory changes...).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Notification {
    /// Always "2.0".
    pub jsonrpc: String,
    /// Notification name, e.g. `task.done`.
    pub method: String,
    /// Payload.
    #[serde(default)]
    pub params: Value,
}

impl Notification {
    /// Builds a notification from a typed payload.
    pub fn new(method: &str, params: impl Serialize) -> Self {
        Self {
            jsonrpc: "2.0".into(),
            method: method.to_string(),
            params: serde_json::to_value(params).unwrap_or(Value::Null),
        }
    }
}

/// Stable error codes. The numeric value is on the wire in `error.code`, the name in
/// `error.data.kind`; both never change meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, JsonSchema)]
pub enum ErrorCode {
    /// The message was not valid JSON.
    ParseError,
    /// The message was JSON but not a valid request.
    InvalidRequest,
    /// No such method.
    MethodNotFound,
    /// The params did not match the method's types.
    InvalidParams,
    /// A fault inside the server.
    Internal,
    /// No session, or an expired or invalid token or credential.
    NotAuthenticated,
    /// The session's role does not allow the call.
    NoPermission,
    /// The named object does not exist.
    NotFound,
    /// A value is out of range or otherwise unacceptable.
    InvalidArgument,
    /// Not enough CPU, memory or disk for the request.
    InsufficientResources,
    /// The object is in the wrong state (e.g. powering on a running VM).
    InvalidState,
    /// The request conflicts with an existing object (duplicate name...).
    Conflict,
    /// A needed peer (host agent, engine, datastore) cannot be reached.
    Unavailable,
    /// A peer's certificate is not the trusted one.
    NotTrusted,
    /// The operation did not finish in time.
    Timeout,
}

impl ErrorCode {
    const TABLE: [(ErrorCode, i64, &'static str); 15] = [
        (ErrorCode::ParseError, -32700, "ParseError"),
        (ErrorCode::InvalidRequest, -32600, "InvalidRequest"),
        (ErrorCode::MethodNotFound, -32601, "MethodNotFound"),
        (ErrorCode::InvalidParams, -32602, "InvalidParams"),
        (ErrorCode::Internal, -32603, "Internal"),
        (ErrorCode::NotAuthenticated, -32001, "NotAuthenticated"),
        (ErrorCode::NoPermission, -32002, "NoPermission"),
        (ErrorCode::NotFound, -32003, "NotFound"),
        (ErrorCode::InvalidArgument, -32004, "InvalidArgument"),
        (
            ErrorCode::InsufficientResources,
            -32005,
            "InsufficientResources",
        ),
        (ErrorCode::InvalidState, -32006, "InvalidState"),
        (ErrorCode::Conflict, -32007, "Conflict"),
        (ErrorCode::Unavailable, -32008, "Unavailable"),
        (ErrorCode::NotTrusted, -32009, "NotTrusted"),
        (ErrorCode::Timeout, -32010, "Timeout"),
    ];

    /// The numeric wire code.
    pub fn number(self) -> i64 {
        Self::TABLE
            .iter()
            .find(|e| e.0 == self)
            .map(|e| e.1)
            .unwrap_or(-32603)
    }
    /// The stable name.
    pub fn name(self) -> &'static str {
        Self::TABLE
            .iter()
            .find(|e| e.0 == self)
            .map(|e| e.2)
            .unwrap_or("Internal")
    }
    /// Looks a code up by its number; unknown numbers are `Internal`.
    pub fn from_number(n: i64) -> Self {
        Self::TABLE
            .iter()
            .find(|e| e.1 == n)
            .map(|e| e.0)
            .unwrap_or(ErrorCode::Internal)
    }
    /// Looks a code up by its name.
    pub fn from_name(s: &str) -> Option<Self> {
        Self::TABLE.iter().find(|e| e.2 == s).map(|e| e.0)
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// An error as carried in a response or a failed task.
#[derive(Debug, Clone, PartialEq, thiserror::Error, JsonSchema)]
#[error("{message}")]
pub struct RpcError {
    /// Stable code.
    pub code: ErrorCode,
    /// Human-readable sentence.
    pub message: String,
    /// Extra machine-readable details (e.g. the thumbprint a host presented).
    pub data: Option<Value>,
}

impl RpcError {
    /// An error with a code and a message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            data: None,
        }
    }
    /// Attaches machine-readable details.
    pub fn with_data(mut self, data: Value) -> Self {
        self.data = Some(data);
        self
    }
    /// `NotFound` for a kind of object and how it was named.
    pub fn not_found(what: &str, name: impl std::fmt::Display) -> Self {
        Self::new(ErrorCode::NotFound, format!("{what} {name} was not found"))
    }
    /// `InvalidArgument`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidArgument, message)
    }
    /// `Internal` for a fault the caller cannot fix.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Internal, message)
    }
}

#[derive(Serialize, Deserialize)]
struct WireError {
    code: i64,
    message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    data: Option<Value>,
}

impl Serialize for RpcError {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut data = match &self.data {
            Some(Value::Object(m)) => m.clone(),
            Some(other) => {
                let mut m = serde_json::Map::new();
                m.insert("detail".into(), other.clone());
                m
            }
            None => serde_json::Map::new(),
        };
        data.insert("kind".into(), Value::String(self.code.name().into()));
        WireError {
            code: self.code.number(),
            message: self.message.clone(),
            data: Some(Value::Object(data)),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for RpcError {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w = WireError::deserialize(d)?;
        let by_name = w
            .data
            .as_ref()
            .and_then(|d| d.get("kind"))
            .and_then(Value::as_str)
            .and_then(ErrorCode::from_name);
        let code = by_name.unwrap_or_else(|| ErrorCode::from_number(w.code));
        let data = match w.data {
            Some(Value::Object(mut m)) => {
                m.remove("kind");
                if m.is_empty() {
                    None
                } else {
                    Some(Value::Object(m))
                }
            }
            other => other,
        };
        Ok(RpcError {
            code,
            message: w.message,
            data,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_round_trips_with_code_and_kind() {
        let e = RpcError::new(ErrorCode::NotTrusted, "bad cert")
            .with_data(serde_json::json!({"thumbprint": "AA:BB"}));
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["code"], -32009);
        assert_eq!(v["data"]["kind"], "NotTrusted");
        let back: RpcError = serde_json::from_value(v).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn every_code_has_a_unique_number_and_name() {
        for (c, n, s) in ErrorCode::TABLE {
            assert_eq!(ErrorCode::from_number(n), c);
            assert_eq!(ErrorCode::from_name(s), Some(c));
        }
        let mut nums: Vec<i64> = ErrorCode::TABLE.iter().map(|e| e.1).collect();
        nums.sort();
        nums.dedup();
        assert_eq!(nums.len(), ErrorCode::TABLE.len());
    }

    #[test]
    fn request_check_rejects_bad_version_and_ids() {
        let r: Request = serde_json::from_str(r#"{"jsonrpc":"1.0","id":1,"method":"a"}"#).unwrap();
        assert_eq!(r.check().unwrap_err().code, ErrorCode::InvalidRequest);
        let r: Request =
            serde_json::from_str(r#"{"jsonrpc":"2.0","id":[1],"method":"a"}"#).unwrap();
        assert_eq!(r.check().unwrap_err().code, ErrorCode::InvalidRequest);
        let r: Request =
            serde_json::from_str(r#"{"jsonrpc":"2.0","id":"x","method":"a"}"#).unwrap();
        assert!(r.check().is_ok());
    }
}
