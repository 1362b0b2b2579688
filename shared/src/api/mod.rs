//! Every API method as a type: its wire name, params type and result type. The manager and
//! the host agent each have their own method set over the same envelope.

pub mod agent;
pub mod manager;

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// One API method.
pub trait Method {
    /// Wire name, `noun.verb`.
    const NAME: &'static str;
    /// Params type.
    type Params: Serialize + DeserializeOwned + JsonSchema + Send + Sync;
    /// Result type.
    type Result: Serialize + DeserializeOwned + JsonSchema + Send;
}

/// Describes one method for the schema document.
pub struct MethodDoc {
    /// Wire name.
    pub name: &'static str,
    /// One-line description.
    pub doc: &'static str,
    /// Builds the params schema.
    pub params: fn(&mut schemars::SchemaGenerator) -> schemars::Schema,
    /// Builds the result schema.
    pub result: fn(&mut schemars::SchemaGenerator) -> schemars::Schema,
}

/// Defines unit types implementing [`Method`] and a `METHODS` table listing them.
macro_rules! api_methods {
    ($( $(#[doc = $doc:literal])+ $ty:ident = $name:literal ($params:ty) -> $result:ty; )*) => {
        $(
            $(#[doc = $doc])+
            #[derive(Debug, Clone, Copy)]
            pub struct $ty;
            impl $crate::api::Method for $ty {
                const NAME: &'static str = $name;
                type Params = $params;
                type Result = $result;
            }
        )*
        /// Every method of this API, for the schema and for dispatch tables.
        pub const METHODS: &[$crate::api::MethodDoc] = &[
            $( $crate::api::MethodDoc {
                name: $name,
                doc: concat!($($doc),+),
                params: |g| g.subschema_for::<$params>(),
                result: |g| g.subschema_for::<$result>(),
            }, )*
        ];
    };
}
pub(crate) use api_methods;

/// Notifications a server may push, with their payload types.
pub mod notifications {
    /// `task.progress`: a task's state or progress changed (payload: TaskInfo).
    pub const TASK_PROGRESS: &str = "task.progress";
    /// `task.done`: a task finished (payload: TaskInfo).
    pub const TASK_DONE: &str = "task.done";
    /// `inventory.changed`: an object was created, updated or removed (payload: InventoryChange).
    pub const INVENTORY_CHANGED: &str = "inventory.changed";
    /// `event.new`: an event was recorded (payload: EventInfo).
    pub const EVENT_NEW: &str = "event.new";
    /// `alarm.changed`: an alarm was triggered, changed (severity, message or
    /// acknowledgement) or cleared (payload: AlarmChange).
    pub const ALARM_CHANGED: &str = "alarm.changed";
    /// `vm.powerStateChanged` (host agent → manager; payload: PowerStateChange).
    pub const VM_POWER_STATE_CHANGED: &str = "vm.powerStateChanged";
    /// `host.datastoreChanged` (host agent → manager; payload: DatastoreChange): a datastore
    /// became inaccessible or accessible again.
    pub const DATASTORE_CHANGED: &str = "host.datastoreChanged";
    /// `vm.consoleEvent` (host agent → manager; payload: ConsoleEvent): a console opened,
    /// closed or was refused.
    pub const CONSOLE_EVENT: &str = "vm.consoleEvent";
}
