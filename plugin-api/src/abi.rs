#![allow(non_local_definitions)] // emitted by #[sabi_trait] on current rustc

//! The stable boundary between love-host and a producer plugin.
//!
//! Everything in this module crosses the FFI boundary and is checked by abi_stable when a plugin
//! loads. Its layout is fixed for the whole 1.x line of the interface: new kinds of input and
//! action are new *kind numbers* in the fixed-layout [`InputMsg`] and [`ActionMsg`] structs, never
//! new fields, variants or trait methods. A side that does not know a kind ignores it, so an older
//! plugin keeps loading in a newer host and a newer plugin in an older host.
//!
//! Plugin authors rarely touch these types directly: the SDK ([`crate::sdk`]) decodes them into
//! ordinary Rust enums and back.

use abi_stable::{
    declare_root_module_statics,
    library::RootModule,
    package_version_strings, sabi_trait,
    sabi_types::VersionStrings,
    std_types::{RBox, RBoxError, RResult, RStr, RString, RVec},
    StableAbi,
};

/// A typed SAL field value. SAL `float` is widened to `F64` where the sample is read, as salobj
/// does; every integer type travels as `I64`.
#[repr(C, u8)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
pub enum Value {
    /// A boolean.
    Bool(bool),
    /// Any SAL integer type.
    Int(i64),
    /// SAL `float` or `double`.
    Float(f64),
    /// A string.
    Str(RString),
    /// An array of booleans.
    BoolArray(RVec<bool>),
    /// An array of integers.
    IntArray(RVec<i64>),
    /// An array of floats.
    FloatArray(RVec<f64>),
    /// A JSON text, for payloads that none of the variants above fits.
    Json(RString),
}

/// One named field of a sample or command.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
pub struct Field {
    /// The field name as in ts_xml (`EFDB_Name`).
    pub name: RString,
    /// Its value.
    pub value: Value,
}

/// The private fields salobj adds to every topic.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Default)]
pub struct PrivateStamps {
    /// `private_sndStamp`, TAI seconds.
    pub snd_stamp: f64,
    /// `private_rcvStamp`.
    pub rcv_stamp: f64,
    /// `private_efdStamp`.
    pub efd_stamp: f64,
    /// `private_kafkaStamp`.
    pub kafka_stamp: f64,
    /// `private_seqNum`.
    pub seq_num: i64,
    /// `private_revCode`.
    pub rev_code: RString,
    /// `private_identity`.
    pub identity: RString,
    /// `private_origin`.
    pub origin: i64,
}

/// Which kind of SAL topic a sample or catalog entry belongs to.
#[repr(transparent)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TopicKind(pub u32);

impl TopicKind {
    /// Not a SAL topic (an empty sample).
    pub const NONE: TopicKind = TopicKind(0);
    /// An event (`logevent_<name>`).
    pub const EVENT: TopicKind = TopicKind(1);
    /// A telemetry topic.
    pub const TELEMETRY: TopicKind = TopicKind(2);
    /// A command (`command_<name>`).
    pub const COMMAND: TopicKind = TopicKind(3);
    /// A command acknowledgement (`ackcmd`).
    pub const ACK: TopicKind = TopicKind(4);
}

/// A SAL sample as a producer receives it.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Default)]
pub struct Sample {
    /// The SAL component (`ATDome`, `Script`…).
    pub component: RString,
    /// The sample's `salIndex` (0 for non-indexed components).
    pub sal_index: i64,
    /// The topic name without prefix (`summaryState`, `position`).
    pub topic: RString,
    /// Event or telemetry.
    pub kind: TopicKind,
    /// salobj's private fields.
    pub stamps: PrivateStamps,
    /// The topic's own fields (without salIndex and the private ones), in ts_xml order.
    pub fields: RVec<Field>,
    /// When the host received the sample (Unix seconds), for latency accounting.
    pub received: f64,
    /// A host-assigned sequence number, unique per host run.
    pub seq: u64,
}

/// The kind number of an [`InputMsg`]. A kind a plugin does not know is ignored.
#[repr(transparent)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct InputKind(pub u32);

impl InputKind {
    /// The producer has been created (or restored) and is about to receive data.
    pub const START: InputKind = InputKind(1);
    /// A SAL sample in `sample`.
    pub const SAMPLE: InputKind = InputKind(2);
    /// A message from the manager; its JSON text in `text`.
    pub const MANAGER_MESSAGE: InputKind = InputKind(3);
    /// The manager link came up: send initial data.
    pub const CONNECTED: InputKind = InputKind(4);
    /// The manager link went down.
    pub const DISCONNECTED: InputKind = InputKind(5);
    /// Time to (re-)send the initial_state subscriptions.
    pub const REGISTER: InputKind = InputKind(6);
    /// A wake-up the producer asked for with [`ActionKind::WAKE_AT`].
    pub const TICK: InputKind = InputKind(7);
    /// The acknowledgement of a SAL command: `id` the correlation id, `code` the ack code,
    /// `number` the timeout in seconds, `text` the result text.
    pub const COMMAND_ACK: InputKind = InputKind(8);
    /// The topic catalog of another component, as JSON in `text` (answers a SAL subscription).
    pub const CATALOG: InputKind = InputKind(9);
}

/// One input to a producer. The layout is fixed; the meaning of each payload field depends on
/// `kind`, and unused fields are empty.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Default)]
pub struct InputMsg {
    /// What this input is.
    pub kind: InputKind,
    /// A correlation id (command acks).
    pub id: u64,
    /// An integer payload (ack code…).
    pub code: i64,
    /// A number payload (timeouts…).
    pub number: f64,
    /// A name payload.
    pub name: RString,
    /// A text payload (manager message JSON, catalog JSON, ack result).
    pub text: RString,
    /// The SAL sample, for [`InputKind::SAMPLE`].
    pub sample: Sample,
    /// Extra payload as JSON text, for kinds added later.
    pub extra: RString,
}

/// The kind number of an [`ActionMsg`]. A kind the host does not know is logged and ignored.
#[repr(transparent)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ActionKind(pub u32);

impl ActionKind {
    /// Send `text` (a LOVE JSON message) to the manager. `code` is the [`Category`] number and
    /// `component`, `index`, `name` the (csc, salindex, stream) the message is about: the host
    /// uses them to keep only the latest message per stream while the link is down.
    pub const SEND: ActionKind = ActionKind(1);
    /// Send the SAL command `name` to `component`:`index` with `fields` as parameters, `id` as the
    /// correlation id and `number` as the timeout in seconds.
    pub const SAL_COMMAND: ActionKind = ActionKind(2);
    /// Log `text` at level `code` (see [`LogLevel`]).
    pub const LOG: ActionKind = ActionKind(3);
    /// Call the producer with [`InputKind::TICK`] at time `number` (Unix seconds). The latest
    /// request replaces earlier ones.
    pub const WAKE_AT: ActionKind = ActionKind(4);
    /// Deliver samples of `component`:`index` (index 0 on an indexed component: every index)
    /// to this producer too. The host answers with [`InputKind::CATALOG`] first.
    pub const SUBSCRIBE_SAL: ActionKind = ActionKind(5);
    /// The Heartbeat stream message just sent for `component`:`index` counts `code` lost
    /// heartbeats: the host's metrics read the count here rather than from the message's JSON.
    /// A host that does not know this kind ignores it; a plugin built before it still loads
    /// and serves, its count simply not reported.
    pub const HEARTBEAT_LOST: ActionKind = ActionKind(6);
}

/// Message categories for [`ActionKind::SEND`], carried in `code`.
#[repr(transparent)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Category(pub u32);

impl Category {
    /// Anything that must never be coalesced (subscriptions, replies).
    pub const OTHER: Category = Category(0);
    /// An `event` data message.
    pub const EVENT: Category = Category(1);
    /// A `telemetry` data message.
    pub const TELEMETRY: Category = Category(2);
}

/// Log levels for [`ActionKind::LOG`], carried in `code` (Python's numbers).
#[repr(transparent)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct LogLevel(pub u32);

impl LogLevel {
    /// Debug.
    pub const DEBUG: LogLevel = LogLevel(10);
    /// Info.
    pub const INFO: LogLevel = LogLevel(20);
    /// Warning.
    pub const WARNING: LogLevel = LogLevel(30);
    /// Error.
    pub const ERROR: LogLevel = LogLevel(40);
}

/// One action returned by a producer. Layout fixed, like [`InputMsg`].
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Default)]
pub struct ActionMsg {
    /// What this action is.
    pub kind: ActionKind,
    /// A correlation id (commands).
    pub id: u64,
    /// An integer payload (category, log level).
    pub code: i64,
    /// A number payload (timeouts, wake-up time).
    pub number: f64,
    /// A SAL index or LOVE salindex.
    pub index: i64,
    /// A component or csc name.
    pub component: RString,
    /// A stream, command or topic name.
    pub name: RString,
    /// A text payload (the JSON message, the log line).
    pub text: RString,
    /// Command parameters.
    pub fields: RVec<Field>,
    /// Extra payload as JSON text, for kinds added later.
    pub extra: RString,
}

/// What a plugin says about itself.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
pub struct PluginDescriptor {
    /// The plugin's name (`csc`, `scriptqueue`, `dome-extras`…); upgrades match on it.
    pub name: RString,
    /// The plugin's own version (semver).
    pub version: RString,
    /// The producer type it provides (`csc`, `scriptqueue`, a third-party name).
    pub producer_type: RString,
    /// The component names it claims (`ScriptQueue`); empty for generic producers.
    pub claims: RVec<RString>,
    /// The version of `love-plugin-api` it was built against.
    pub api_version: RString,
    /// Extra descriptor data as JSON text, for fields added later.
    pub extra: RString,
}

/// A running producer: a sans-IO state machine the host drives synchronously.
#[sabi_trait]
pub trait Producer: Send {
    /// Handle one input at time `now` (Unix seconds) and return the actions to carry out.
    fn handle(&mut self, input: &InputMsg, now: f64) -> RResult<RVec<ActionMsg>, RBoxError>;

    /// The producer's whole state as a versioned text, for hot replacement and restarts.
    fn snapshot(&self) -> RResult<RString, RBoxError>;

    /// Replace the producer's state with a snapshot taken from a producer of the same plugin
    /// (possibly an older version).
    #[sabi(last_prefix_field)]
    fn restore(&mut self, snapshot: RStr<'_>) -> RResult<(), RBoxError>;
}

/// An owned producer behind the stable trait object.
pub type ProducerBox = Producer_TO<'static, RBox<()>>;

/// Every type that crosses the boundary inside a producer call, by value, so that the load-time
/// layout check of the root module reaches them (see [`PluginMod::layout_anchor`]).
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Default)]
pub struct LayoutAnchor {
    /// An input.
    pub input: InputMsg,
    /// An action.
    pub action: ActionMsg,
}

/// The root module every plugin exports.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginModRef)))]
#[sabi(missing_field(panic))]
pub struct PluginMod {
    /// Never called. It names every type that crosses the boundary inside a producer call, so
    /// that the load-time layout check of the root module covers them directly, whatever route
    /// the trait object's vtable check takes.
    pub layout_anchor: extern "C" fn() -> LayoutAnchor,

    /// The plugin's descriptor.
    pub descriptor: extern "C" fn() -> RResult<PluginDescriptor, RBoxError>,

    /// Create a producer from its configuration (JSON text, see [`crate::sdk::ProducerConfig`]).
    #[sabi(last_prefix_field)]
    pub create: extern "C" fn(config: RStr<'_>) -> RResult<ProducerBox, RBoxError>,
}

impl RootModule for PluginModRef {
    declare_root_module_statics! {PluginModRef}
    const BASE_NAME: &'static str = "love_plugin";
    const NAME: &'static str = "love_plugin";
    const VERSION_STRINGS: VersionStrings = package_version_strings!();
}
