//! The JSON Schema document of the whole API, generated from the types. The committed copy
//! is `shared/api-schema.json`; a test fails when it is stale (regenerate with
//! `STRATA_UPDATE_SCHEMA=1 cargo test -p strata-shared schema`).

use schemars::generate::SchemaSettings;
use serde_json::{json, Map, Value};

use crate::api::{agent, manager, notifications, MethodDoc};
use crate::rpc::ErrorCode;

fn methods(g: &mut schemars::SchemaGenerator, list: &[MethodDoc]) -> Value {
    let mut out = Map::new();
    for m in list {
        out.insert(
            m.name.to_string(),
            json!({
                "description": m.doc.trim(),
                "params": (m.params)(g),
                "result": (m.result)(g),
            }),
        );
    }
    Value::Object(out)
}

/// Builds the API schema document.
pub fn api_schema() -> Value {
    let mut g = SchemaSettings::draft2020_12().into_generator();
    let manager = methods(&mut g, manager::METHODS);
    let agent = methods(&mut g, agent::METHODS);
    let notes = json!({
        notifications::TASK_PROGRESS: g.subschema_for::<crate::model::TaskInfo>(),
        notifications::TASK_DONE: g.subschema_for::<crate::model::TaskInfo>(),
        notifications::INVENTORY_CHANGED: g.subschema_for::<crate::model::InventoryChange>(),
        notifications::EVENT_NEW: g.subschema_for::<crate::model::EventInfo>(),
        notifications::ALARM_CHANGED: g.subschema_for::<crate::model::AlarmChange>(),
        notifications::VM_POWER_STATE_CHANGED: g.subschema_for::<crate::model::PowerStateChange>(),
    });
    let errors: Vec<Value> = [
        ErrorCode::ParseError,
        ErrorCode::InvalidRequest,
        ErrorCode::MethodNotFound,
        ErrorCode::InvalidParams,
        ErrorCode::Internal,
        ErrorCode::NotAuthenticated,
        ErrorCode::NoPermission,
        ErrorCode::NotFound,
        ErrorCode::InvalidArgument,
        ErrorCode::InsufficientResources,
        ErrorCode::InvalidState,
        ErrorCode::Conflict,
        ErrorCode::Unavailable,
        ErrorCode::NotTrusted,
        ErrorCode::Timeout,
    ]
    .iter()
    .map(|c| json!({"code": c.number(), "kind": c.name()}))
    .collect();
    let defs: Map<String, Value> = g.take_definitions(true).into_iter().collect();
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Strata API",
        "description": "JSON-RPC 2.0 over WebSocket (TLS). Errors carry `code` and `data.kind` from `errors`.",
        "version": crate::VERSION,
        "manager": manager,
        "agent": agent,
        "notifications": notes,
        "errors": errors,
        "$defs": defs,
    })
}

/// The schema document as the committed file holds it (pretty JSON, trailing newline).
pub fn api_schema_text() -> String {
    let mut s = serde_json::to_string_pretty(&api_schema()).unwrap_or_default();
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_schema_is_current() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("api-schema.json");
        let fresh = api_schema_text();
        if std::env::var_os("STRATA_UPDATE_SCHEMA").is_some() {
            std::fs::write(&path, &fresh).unwrap();
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == fresh,
            "shared/api-schema.json is stale: run `STRATA_UPDATE_SCHEMA=1 cargo test -p strata-shared schema` and commit it"
        );
    }

    #[test]
    fn schema_lists_every_method_with_resolvable_refs() {
        let s = api_schema();
        for m in manager::METHODS {
            assert!(s["manager"][m.name]["params"].is_object(), "{}", m.name);
        }
        for m in agent::METHODS {
            assert!(s["agent"][m.name]["result"].is_object(), "{}", m.name);
        }
        let text = s.to_string();
        let defs = s["$defs"].as_object().unwrap();
        for part in text.split("\"$ref\":\"#/$defs/").skip(1) {
            let name = part.split('"').next().unwrap();
            assert!(defs.contains_key(name), "dangling $ref {name}");
        }
    }
}
