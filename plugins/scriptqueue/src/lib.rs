//! The `scriptqueue` producer plugin (spec section e): the generic CSC producer for a
//! `ScriptQueue` ([`CscCore`]: every ScriptQueue event forwarded as `csc: "ScriptQueue"`, the
//! Heartbeat stream, initial data, the csc reply rule) plus what the LOVE ScriptQueue panel
//! needs:
//!
//! - the `ScriptQueueState` streams `stateStream` (`{enabled, running}`), `scriptsStream`
//!   (`current_scripts`, `waiting_scripts`, `finished_scripts`: script objects with every key
//!   of the reference, in its order) and `availableScriptsStream` (`available_scripts`), which
//!   exist from construction, are part of initial data (first, in that order) and answer
//!   initial_state requests;
//! - `ScriptHeartbeats` (one message per current then waiting script, every
//!   `script_heartbeat_period` seconds, `producer_snd: 0`) with the reference's strict 7-s lost
//!   rule;
//! - Script log messages (`csc: "Script"`, salindex = the script, `producer_snd: 0`): kept per
//!   script (at most 20), sent live for current and waiting scripts, re-sent on request;
//! - the subscriptions `all`, `ScriptQueue`, `ScriptQueueState`, `Script`;
//! - `UPDATE_SCRIPTS_SCHEMA_ON_START`: `showSchema` for every known script, one at a time.
//!
//! It listens to the `Script` component (index 0: every script) through
//! [`Actions::subscribe_sal`]; the host answers with the Script topic catalog, used to convert
//! log messages and to name script states.
//!
//! # Settings
//!
//! | setting | default | meaning |
//! | --- | --- | --- |
//! | `FINISHED_SCRIPTS_LIST_SIZE` | 10 | finished scripts kept and shown |
//! | `UPDATE_SCRIPTS_SCHEMA_ON_START` | off | `true`/`1` (any case): query every script's schema after each availableScripts event |
//! | `script_heartbeat_period` | 2.0 | seconds between two ScriptHeartbeats rounds (the reference's loop sleeps `heartbeat_timeout` = 2 s) |
//! | `script_heartbeat_timeout` | 2.0 | the slack of the lost rule: a script is lost when its last heartbeat is older than 5 s (ts_salobj's script heartbeat interval) + this |
//! | `heartbeat_timeout`, `telemetry_period`, `telemetry_stale_after` | | the core's (ScriptQueue Heartbeat stream) |
//!
//! # Deliberate differences from the reference (spec section h)
//!
//! - **Quirk 2 fixed**: an initial_state request without `data[0].data.event_name` (or any
//!   malformed request) gets no reply and raises no error; the reference's KeyError ended the
//!   process.
//! - **Quirk 11 fixed**: a `Script`/`logMessage` request is answered with the buffered log
//!   messages of the *requested* script (`salindex`), finished scripts included (their buffers
//!   live as long as they are in the finished list); an index without a buffer gets nothing.
//!   A request with salindex `"all"` or 0 gets the current script(s)' messages, as the reference
//!   answered every request. The reference always answered with the current script's buffer.
//! - **Quirk 13 fixed**: a `queue` event always updates the lists and sends stateStream then
//!   scriptsStream. Every script in the new lists gets its object, heartbeat record and log
//!   buffer if it lacks any (a script known only from a `script` event no longer aborts the
//!   handler), and removing a script that lacks a record is not an error.
//! - **Quirk 14 fixed**: empty paths (an empty `standard`/`external` text, or `a::b`) are not
//!   added to the available scripts; a `configSchema` event with an empty path is ignored with
//!   a warning.
//! - A schema update interrupted by a new availableScripts event is abandoned (the in-flight
//!   command's ack is ignored) and a new one starts; the reference swallows the cancellation
//!   and finishes the old update first.
//! - Bounds: scripts known only from `script` events (not in any list) are kept for a later
//!   `queue` event as the reference does, but at most [`MAX_ORPHAN_SCRIPTS`] of them (the
//!   lowest indices go first).
//!
//! Kept as the reference: quirk 12 (`ScriptQueueState`/`Script` requests for ScriptQueue
//! events are answered with the ScriptQueue event), 15 (`producer_snd: 0`, `-1.0`), 16
//! (placeholder script fields), 19 (messages labelled with the configured index). Script and
//! process state names come from the catalog enumerations `ScriptState` and
//! `ScriptProcessState`; a value the enumeration lacks is logged and the event sends nothing
//! (fields set before the failing one stay set, as in the reference).

pub mod script;

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use love_plugin_api::abi::{Field, LogLevel, Sample, TopicKind, Value};
use love_plugin_api::catalog::{ComponentCatalog, TopicInfo};
use love_plugin_api::convert::{field, TopicConverter};
use love_plugin_api::csc::{parse_request, CscCore, InitialStateRequest, RequestIndex};
use love_plugin_api::json::write_str;
use love_plugin_api::message::{event_snd_first, SndStamp};
use love_plugin_api::sdk::{Actions, Input, PluginError, ProducerConfig, ProducerLogic};
use serde::{Deserialize, Serialize};

pub use script::{AvailableList, AvailableScript, LogBuffer, Num, ScriptHeartbeat, ScriptInfo};

/// The envelope `csc` of the three state streams.
pub const STATE_CSC: &str = "ScriptQueueState";
/// The component scripts publish on.
pub const SCRIPT: &str = "Script";
/// The envelope `csc` of script heartbeat messages.
pub const SCRIPT_HEARTBEATS: &str = "ScriptHeartbeats";
/// stateStream.
pub const STATE_STREAM: &str = "stateStream";
/// scriptsStream.
pub const SCRIPTS_STREAM: &str = "scriptsStream";
/// availableScriptsStream.
pub const AVAILABLE_STREAM: &str = "availableScriptsStream";
/// Log messages kept per script.
pub const MAX_LOG_MESSAGES: usize = 20;
/// ts_salobj's `base_script.HEARTBEAT_INTERVAL`.
pub const SCRIPT_HEARTBEAT_INTERVAL: f64 = 5.0;
/// Timeout of each `showSchema` command.
pub const SHOW_SCHEMA_TIMEOUT: f64 = 5.0;
/// Extra wait after a command's timeout for the host's TIMEOUT ack before moving on.
pub const COMMAND_GRACE: f64 = 1.0;
/// Default `FINISHED_SCRIPTS_LIST_SIZE`.
pub const DEFAULT_FINISHED_SCRIPTS_LIST_SIZE: usize = 10;
/// Default `script_heartbeat_period` and `script_heartbeat_timeout`.
pub const DEFAULT_SCRIPT_HEARTBEAT: f64 = 2.0;
/// Scripts known only from `script` events that are kept until a `queue` event.
pub const MAX_ORPHAN_SCRIPTS: usize = 100;
/// The snapshot format version of this plugin.
pub const SNAPSHOT_VERSION: u64 = 1;

/// Ack codes that are not final (ACK, INPROGRESS, STALLED).
const NON_FINAL_ACKS: [i64; 3] = [300, 301, 302];
/// Tolerance for host wake-up jitter.
const EARLY: f64 = 1e-3;

/// The settings of the producer, from [`ProducerConfig::settings`].
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// `FINISHED_SCRIPTS_LIST_SIZE`.
    pub finished_scripts_list_size: usize,
    /// `UPDATE_SCRIPTS_SCHEMA_ON_START`.
    pub update_scripts_schema_on_start: bool,
    /// `script_heartbeat_period`.
    pub script_heartbeat_period: f64,
    /// `script_heartbeat_timeout`.
    pub script_heartbeat_timeout: f64,
}

impl Settings {
    fn from_config(cfg: &ProducerConfig, logs: &mut Vec<(LogLevel, String)>) -> Self {
        let finished_scripts_list_size = match cfg.settings.get("FINISHED_SCRIPTS_LIST_SIZE") {
            None => DEFAULT_FINISHED_SCRIPTS_LIST_SIZE,
            Some(t) => match t.trim().parse::<usize>() {
                Ok(n) => n,
                Err(_) => {
                    logs.push((
                        LogLevel::WARNING,
                        format!(
                            "setting FINISHED_SCRIPTS_LIST_SIZE={t:?} is not a non-negative integer; using {DEFAULT_FINISHED_SCRIPTS_LIST_SIZE}"
                        ),
                    ));
                    DEFAULT_FINISHED_SCRIPTS_LIST_SIZE
                }
            },
        };
        let update_scripts_schema_on_start = cfg
            .settings
            .get("UPDATE_SCRIPTS_SCHEMA_ON_START")
            .is_some_and(|v| matches!(v.trim().to_lowercase().as_str(), "true" | "1"));
        let mut positive = |name: &str| match cfg.settings.get(name) {
            None => DEFAULT_SCRIPT_HEARTBEAT,
            Some(t) => match t.trim().parse::<f64>() {
                Ok(v) if v > 0.0 && v.is_finite() => v,
                _ => {
                    logs.push((
                        LogLevel::WARNING,
                        format!("setting {name}={t:?} is not a positive number; using {DEFAULT_SCRIPT_HEARTBEAT}"),
                    ));
                    DEFAULT_SCRIPT_HEARTBEAT
                }
            },
        };
        let script_heartbeat_period = positive("script_heartbeat_period");
        let script_heartbeat_timeout = positive("script_heartbeat_timeout");
        Settings {
            finished_scripts_list_size,
            update_scripts_schema_on_start,
            script_heartbeat_period,
            script_heartbeat_timeout,
        }
    }
}

/// The queue as the last `queue` event described it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct QueueState {
    /// `enabled == 1`.
    pub enabled: bool,
    /// `running == 1`.
    pub running: bool,
    /// `[currentSalIndex]` if > 0.
    pub current: Vec<i64>,
    /// `salIndices[:length]`.
    pub waiting: Vec<i64>,
    /// `pastSalIndices[:min(pastLength, FINISHED_SCRIPTS_LIST_SIZE)]`.
    pub finished: Vec<i64>,
}

impl QueueState {
    fn listed(&self) -> BTreeSet<i64> {
        self.current.iter().chain(&self.waiting).chain(&self.finished).copied().collect()
    }

    fn contains(&self, index: i64) -> bool {
        self.current.contains(&index) || self.waiting.contains(&index) || self.finished.contains(&index)
    }
}

/// A `showSchema` command sent and not yet acknowledged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InFlight {
    /// Correlation id.
    pub id: u64,
    /// `isStandard`.
    pub is_standard: bool,
    /// `path`.
    pub path: String,
    /// When to give up waiting for the ack.
    pub deadline: f64,
}

/// A running schema update: the commands still to send and the one in flight.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SchemaUpdate {
    /// (isStandard, path) still to send, in order.
    pub todo: VecDeque<(bool, String)>,
    /// The command awaiting its ack.
    pub in_flight: Option<InFlight>,
}

/// Sizes of the internal tables (for tests and metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Sizes {
    /// Script objects.
    pub scripts: usize,
    /// Heartbeat records.
    pub heartbeats: usize,
    /// Log buffers.
    pub log_buffers: usize,
    /// Log messages over all buffers.
    pub log_messages: usize,
    /// The largest buffer.
    pub max_log_buffer: usize,
    /// Finished scripts listed.
    pub finished: usize,
    /// Available scripts (standard + external).
    pub available: usize,
}

/// Everything of the plugin's own state that a snapshot carries.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
struct State {
    queue: QueueState,
    scripts: BTreeMap<i64, ScriptInfo>,
    heartbeats: BTreeMap<i64, ScriptHeartbeat>,
    logs: BTreeMap<i64, LogBuffer>,
    standard: AvailableList,
    external: AvailableList,
    schema_update: Option<SchemaUpdate>,
    next_command_id: u64,
    next_script_heartbeat: Option<f64>,
    script_catalog: Option<ComponentCatalog>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Snapshot {
    version: u64,
    core: serde_json::Value,
    state: State,
}

/// The ScriptQueue producer.
#[derive(Debug, Clone)]
pub struct ScriptQueueProducer {
    core: CscCore,
    settings: Settings,
    state: State,
    /// Converter of Script `logMessage` samples (from the Script catalog once it arrives).
    log_converter: TopicConverter,
    /// Whether this instance asked for the Script samples (not snapshotted: a restored
    /// instance asks again).
    subscribed: bool,
    warned_no_script_catalog: bool,
    pending_logs: Vec<(LogLevel, String)>,
}

fn fallback_log_converter() -> TopicConverter {
    TopicConverter::new(&TopicInfo { name: "logMessage".into(), ..Default::default() }, true)
}

fn log_converter_for(cat: Option<&ComponentCatalog>) -> TopicConverter {
    match cat.and_then(|c| c.event("logMessage").map(|t| (t, c.indexed))) {
        Some((topic, indexed)) => TopicConverter::new(topic, indexed),
        None => fallback_log_converter(),
    }
}

/// `x == 1` as Python compares a SAL boolean or integer.
fn eq_one(v: Option<&Value>) -> bool {
    match v {
        Some(Value::Bool(b)) => *b,
        Some(Value::Int(i)) => *i == 1,
        Some(Value::Float(f)) => *f == 1.0,
        _ => false,
    }
}

fn str_of(v: Option<&Value>) -> String {
    v.and_then(Value::as_str).unwrap_or("").to_string()
}

fn int_of(v: Option<&Value>) -> i64 {
    v.and_then(Value::as_i64).unwrap_or(0)
}

fn ints_of(v: Option<&Value>) -> Vec<i64> {
    match v {
        Some(Value::IntArray(a)) => a.to_vec(),
        Some(Value::FloatArray(a)) => a.iter().map(|f| *f as i64).collect(),
        Some(Value::BoolArray(a)) => a.iter().map(|b| *b as i64).collect(),
        Some(Value::Json(t)) => serde_json::from_str::<Vec<i64>>(t).unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// Python's `list[:n]` for the non-negative `n` the ScriptQueue sends (a negative one gives
/// nothing here).
fn prefix(v: Vec<i64>, n: i64) -> Vec<i64> {
    let n = n.clamp(0, v.len() as i64) as usize;
    let mut v = v;
    v.truncate(n);
    v
}

impl ScriptQueueProducer {
    /// Build the producer from its configuration (component `ScriptQueue`, the queue's index).
    pub fn create(cfg: ProducerConfig) -> Result<Self, PluginError> {
        let mut core = CscCore::new(&cfg)?;
        let component = core.component().to_string();
        core.add_subscription(STATE_CSC);
        core.add_subscription(SCRIPT);
        core.reply_rules_for(&[component.as_str(), STATE_CSC, SCRIPT]);
        let mut logs = Vec::new();
        let settings = Settings::from_config(&cfg, &mut logs);
        let mut p = ScriptQueueProducer {
            core,
            settings,
            state: State::default(),
            log_converter: fallback_log_converter(),
            subscribed: false,
            warned_no_script_catalog: false,
            pending_logs: logs,
        };
        p.store_state_stream();
        p.store_scripts_stream();
        p.store_available_stream();
        Ok(p)
    }

    /// The core, for inspection.
    pub fn core(&self) -> &CscCore {
        &self.core
    }

    /// The settings in force.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The queue lists and flags.
    pub fn queue(&self) -> &QueueState {
        &self.state.queue
    }

    /// A script object.
    pub fn script(&self, index: i64) -> Option<&ScriptInfo> {
        self.state.scripts.get(&index)
    }

    /// The heartbeat record of a script.
    pub fn script_heartbeat(&self, index: i64) -> Option<&ScriptHeartbeat> {
        self.state.heartbeats.get(&index)
    }

    /// The buffered log messages (FIELDS JSON) of a script.
    pub fn log_buffer(&self, index: i64) -> Option<&LogBuffer> {
        self.state.logs.get(&index)
    }

    /// The running schema update, if any.
    pub fn schema_update(&self) -> Option<&SchemaUpdate> {
        self.state.schema_update.as_ref()
    }

    /// Sizes of the internal tables.
    pub fn sizes(&self) -> Sizes {
        Sizes {
            scripts: self.state.scripts.len(),
            heartbeats: self.state.heartbeats.len(),
            log_buffers: self.state.logs.len(),
            log_messages: self.state.logs.values().map(|b| b.messages.len()).sum(),
            max_log_buffer: self.state.logs.values().map(|b| b.messages.len()).max().unwrap_or(0),
            finished: self.state.queue.finished.len(),
            available: self.state.standard.scripts.len() + self.state.external.scripts.len(),
        }
    }

    // ----- stream payloads -------------------------------------------------------------

    /// The stateStream payload.
    pub fn state_payload(&self) -> String {
        format!("{{\"enabled\": {}, \"running\": {}}}", self.state.queue.enabled, self.state.queue.running)
    }

    /// The scriptsStream payload.
    pub fn scripts_payload(&self) -> String {
        let q = &self.state.queue;
        let mut out = String::with_capacity(64 + 600 * (q.current.len() + q.waiting.len() + q.finished.len()));
        for (i, (key, list)) in
            [("current_scripts", &q.current), ("waiting_scripts", &q.waiting), ("finished_scripts", &q.finished)]
                .into_iter()
                .enumerate()
        {
            out.push_str(if i == 0 { "{\"" } else { ", \"" });
            out.push_str(key);
            out.push_str("\": [");
            let mut first = true;
            for index in list {
                // Every listed script has an object (the queue handler creates them); a missing
                // one is shown empty rather than failing.
                if !first {
                    out.push_str(", ");
                }
                first = false;
                match self.state.scripts.get(index) {
                    Some(s) => s.write(&mut out),
                    None => ScriptInfo::empty(*index).write(&mut out),
                }
            }
            out.push(']');
        }
        out.push('}');
        out
    }

    /// The availableScriptsStream payload.
    pub fn available_payload(&self) -> String {
        let mut out = String::from("{\"available_scripts\": [");
        let mut first = true;
        for (kind, list) in [("standard", &self.state.standard), ("external", &self.state.external)] {
            for s in &list.scripts {
                if !first {
                    out.push_str(", ");
                }
                first = false;
                out.push_str("{\"type\": \"");
                out.push_str(kind);
                out.push_str("\", \"path\": ");
                write_str(&mut out, &s.path);
                out.push_str(", \"configSchema\": ");
                write_str(&mut out, &s.schema);
                out.push('}');
            }
        }
        out.push_str("]}");
        out
    }

    fn store_state_stream(&mut self) {
        let p = self.state_payload();
        self.core.store_special_for(STATE_CSC, STATE_STREAM, p);
    }

    fn store_scripts_stream(&mut self) {
        let p = self.scripts_payload();
        self.core.store_special_for(STATE_CSC, SCRIPTS_STREAM, p);
    }

    fn store_available_stream(&mut self) {
        let p = self.available_payload();
        self.core.store_special_for(STATE_CSC, AVAILABLE_STREAM, p);
    }

    fn push_scripts_stream(&mut self, now: f64, out: &mut Actions) {
        self.store_scripts_stream();
        self.core.send_special(SCRIPTS_STREAM, now, out);
    }

    fn push_available_stream(&mut self, now: f64, out: &mut Actions) {
        self.store_available_stream();
        self.core.send_special(AVAILABLE_STREAM, now, out);
    }

    // ----- enumerations ----------------------------------------------------------------

    /// The name of `value` in the enumeration `name`, from the Script catalog or the
    /// ScriptQueue catalog.
    fn enum_name(&self, name: &str, value: i64) -> Result<String, String> {
        let found = self
            .state
            .script_catalog
            .as_ref()
            .and_then(|c| c.enumeration(name))
            .or_else(|| self.core.catalog().and_then(|c| c.enumeration(name)));
        match found {
            Some(e) => e.name_of(value).map(str::to_string).ok_or_else(|| format!("{value} is not a valid {name}")),
            None => Err(format!("no enumeration {name} in the topic catalog; cannot name the value {value}")),
        }
    }

    // ----- ScriptQueue events ----------------------------------------------------------

    fn on_queue_sample(&mut self, s: &Sample, now: f64, out: &mut Actions) {
        match s.topic.as_str() {
            "queue" => self.on_queue(s, now, out),
            "script" => self.on_script(s, now, out),
            "availableScripts" => self.on_available_scripts(s, now, out),
            "configSchema" => self.on_config_schema(s, now, out),
            _ => {}
        }
    }

    /// `queue`: the lists. Quirk 13 fixed: this handler cannot fail half-way.
    fn on_queue(&mut self, s: &Sample, now: f64, out: &mut Actions) {
        let q = QueueState {
            enabled: eq_one(field(s, "enabled")),
            running: eq_one(field(s, "running")),
            current: {
                let c = int_of(field(s, "currentSalIndex"));
                if c > 0 {
                    vec![c]
                } else {
                    Vec::new()
                }
            },
            finished: {
                let n = int_of(field(s, "pastLength")).min(self.settings.finished_scripts_list_size as i64);
                prefix(ints_of(field(s, "pastSalIndices")), n)
            },
            waiting: prefix(ints_of(field(s, "salIndices")), int_of(field(s, "length"))),
        };
        let listed = q.listed();
        self.state.scripts.retain(|k, _| listed.contains(k));
        self.state.heartbeats.retain(|k, _| listed.contains(k));
        self.state.logs.retain(|k, _| listed.contains(k));
        for &index in &listed {
            self.state.scripts.entry(index).or_insert_with(|| ScriptInfo::empty(index));
            self.state.heartbeats.entry(index).or_default();
            self.state.logs.entry(index).or_default();
        }
        self.state.queue = q;
        self.store_state_stream();
        self.core.send_special(STATE_STREAM, now, out);
        self.push_scripts_stream(now, out);
    }

    /// `script`: creates the object if absent (object only), sets type, path, states and the
    /// five timestamps, sends scriptsStream.
    fn on_script(&mut self, s: &Sample, now: f64, out: &mut Actions) {
        let index = int_of(field(s, "scriptSalIndex"));
        if let std::collections::btree_map::Entry::Vacant(e) = self.state.scripts.entry(index) {
            e.insert(ScriptInfo::empty(index));
            self.bound_orphans(index);
        }
        let process = self.enum_name("ScriptProcessState", int_of(field(s, "processState")));
        let state = self.enum_name("ScriptState", int_of(field(s, "scriptState")));
        let Some(obj) = self.state.scripts.get_mut(&index) else {
            return;
        };
        obj.script_type =
            if field(s, "isStandard").and_then(Value::as_bool).unwrap_or(false) { "standard" } else { "external" }
                .to_string();
        obj.path = str_of(field(s, "path"));
        let (process, state) = match (process, state) {
            (Ok(p), Ok(st)) => (p, st),
            (Err(e), _) => {
                out.log(LogLevel::ERROR, format!("ScriptQueue script event for script {index}: {e}; nothing sent"));
                return;
            }
            (Ok(p), Err(e)) => {
                obj.process_state = p;
                out.log(LogLevel::ERROR, format!("ScriptQueue script event for script {index}: {e}; nothing sent"));
                return;
            }
        };
        obj.process_state = process;
        obj.script_state = state;
        obj.timestamp_configure_end = Num::float_of(field(s, "timestampConfigureEnd"));
        obj.timestamp_configure_start = Num::float_of(field(s, "timestampConfigureStart"));
        obj.timestamp_process_end = Num::float_of(field(s, "timestampProcessEnd"));
        obj.timestamp_process_start = Num::float_of(field(s, "timestampProcessStart"));
        obj.timestamp_run_start = Num::float_of(field(s, "timestampRunStart"));
        self.push_scripts_stream(now, out);
    }

    /// Keep at most [`MAX_ORPHAN_SCRIPTS`] script objects that are in no list (never `keep`).
    fn bound_orphans(&mut self, keep: i64) {
        let q = &self.state.queue;
        let orphans: Vec<i64> = self.state.scripts.keys().copied().filter(|k| !q.contains(*k)).collect();
        if orphans.len() <= MAX_ORPHAN_SCRIPTS {
            return;
        }
        let excess = orphans.len() - MAX_ORPHAN_SCRIPTS;
        for k in orphans.into_iter().filter(|k| *k != keep).take(excess) {
            self.state.scripts.remove(&k);
            self.state.heartbeats.remove(&k);
            self.state.logs.remove(&k);
        }
    }

    /// `availableScripts`: abandons a running schema update, adds unknown paths (never an empty
    /// one: quirk 14 fixed), sends availableScriptsStream, starts a schema update if enabled.
    fn on_available_scripts(&mut self, s: &Sample, now: f64, out: &mut Actions) {
        if self.state.schema_update.take().is_some() {
            out.log(LogLevel::DEBUG, "Cancelling ongoing script schema query.");
        }
        let standard = str_of(field(s, "standard"));
        let external = str_of(field(s, "external"));
        for p in standard.split(':').filter(|p| !p.is_empty()) {
            self.state.standard.add(p);
        }
        for p in external.split(':').filter(|p| !p.is_empty()) {
            self.state.external.add(p);
        }
        self.push_available_stream(now, out);
        if self.settings.update_scripts_schema_on_start {
            let todo = self
                .state
                .standard
                .scripts
                .iter()
                .map(|s| (true, s.path.clone()))
                .chain(self.state.external.scripts.iter().map(|s| (false, s.path.clone())))
                .collect();
            self.state.schema_update = Some(SchemaUpdate { todo, in_flight: None });
            self.advance_schema_update(now, out);
        }
    }

    /// `configSchema`: stores the schema (`# empty schema` when empty), adding the path if
    /// unknown; sends availableScriptsStream unless a schema update is running.
    fn on_config_schema(&mut self, s: &Sample, now: f64, out: &mut Actions) {
        let standard = field(s, "isStandard").and_then(Value::as_bool).unwrap_or(false);
        let path = str_of(field(s, "path"));
        let kind = if standard { "standard" } else { "external" };
        if path.is_empty() {
            out.log(LogLevel::WARNING, format!("configSchema event for an empty {kind} script path; ignored"));
            return;
        }
        let schema = match str_of(field(s, "configSchema")) {
            t if t.is_empty() => "# empty schema".to_string(),
            t => t,
        };
        let list = if standard { &mut self.state.standard } else { &mut self.state.external };
        if !list.set_schema(&path, schema) {
            out.log(LogLevel::WARNING, format!("Script {path} not in {kind} available scripts database. Adding..."));
        }
        if self.state.schema_update.is_none() {
            self.push_available_stream(now, out);
        }
    }

    /// Send the next `showSchema` command, or finish the update (store and send
    /// availableScriptsStream once).
    fn advance_schema_update(&mut self, now: f64, out: &mut Actions) {
        let component = self.core.component().to_string();
        let index = self.core.index();
        let Some(update) = self.state.schema_update.as_mut() else {
            return;
        };
        match update.todo.pop_front() {
            Some((is_standard, path)) => {
                self.state.next_command_id += 1;
                let id = self.state.next_command_id;
                out.command(
                    id,
                    &component,
                    index,
                    "showSchema",
                    vec![
                        Field::new("isStandard", Value::Bool(is_standard)),
                        Field::new("path", Value::Str(path.as_str().into())),
                    ],
                    SHOW_SCHEMA_TIMEOUT,
                );
                update.in_flight =
                    Some(InFlight { id, is_standard, path, deadline: now + SHOW_SCHEMA_TIMEOUT + COMMAND_GRACE });
            }
            None => {
                self.state.schema_update = None;
                self.push_available_stream(now, out);
            }
        }
    }

    fn on_command_ack(&mut self, id: u64, code: i64, result: &str, now: f64, out: &mut Actions) {
        let Some(in_flight) = self.state.schema_update.as_ref().and_then(|u| u.in_flight.as_ref()) else {
            return;
        };
        if in_flight.id != id || NON_FINAL_ACKS.contains(&code) {
            return;
        }
        if code != 303 {
            out.log(
                LogLevel::ERROR,
                format!(
                    "showSchema command for {} script {:?} rejected with {code}: {result}.",
                    if in_flight.is_standard { "standard" } else { "external" },
                    in_flight.path
                ),
            );
        }
        if let Some(u) = self.state.schema_update.as_mut() {
            u.in_flight = None;
        }
        self.advance_schema_update(now, out);
    }

    // ----- Script events ---------------------------------------------------------------

    fn on_script_sample(&mut self, s: &Sample, now: f64, out: &mut Actions) {
        let index = s.sal_index;
        match s.topic.as_str() {
            "heartbeat" => {
                if let Some(hb) = self.state.heartbeats.get_mut(&index) {
                    hb.last = now;
                }
            }
            "logMessage" => self.on_log_message(s, out),
            "state" => {
                if !self.state.scripts.contains_key(&index) {
                    return;
                }
                let name = match self.enum_name("ScriptState", int_of(field(s, "state"))) {
                    Ok(n) => n,
                    Err(e) => {
                        out.log(LogLevel::ERROR, format!("Script state event for script {index}: {e}; nothing sent"));
                        return;
                    }
                };
                if let Some(obj) = self.state.scripts.get_mut(&index) {
                    obj.script_state = name;
                    obj.last_checkpoint = str_of(field(s, "lastCheckpoint"));
                }
                self.push_scripts_stream(now, out);
            }
            "metadata" | "description" | "checkpoints" | "logLevel" => {
                let Some(obj) = self.state.scripts.get_mut(&index) else {
                    return;
                };
                match s.topic.as_str() {
                    "metadata" => obj.expected_duration = Num::float_of(field(s, "duration")),
                    "description" => {
                        obj.description = str_of(field(s, "description"));
                        obj.classname = str_of(field(s, "classname"));
                        obj.remotes = str_of(field(s, "remotes"));
                    }
                    "checkpoints" => {
                        obj.pause_checkpoints = str_of(field(s, "pause"));
                        obj.stop_checkpoints = str_of(field(s, "stop"));
                    }
                    _ => obj.log_level = Num::int_of(field(s, "level")),
                }
                self.push_scripts_stream(now, out);
            }
            _ => {}
        }
    }

    fn on_log_message(&mut self, s: &Sample, out: &mut Actions) {
        let index = s.sal_index;
        if !self.state.logs.contains_key(&index) {
            return;
        }
        if self.state.script_catalog.is_none() && !self.warned_no_script_catalog {
            self.warned_no_script_catalog = true;
            out.log(
                LogLevel::WARNING,
                "no Script topic catalog yet: script log messages are labelled from their values",
            );
        }
        let fields = self.log_converter.fields_json(s);
        let q = &self.state.queue;
        if q.current.contains(&index) || q.waiting.contains(&index) {
            out.send(log_message(index, &fields));
        }
        if let Some(buf) = self.state.logs.get_mut(&index) {
            buf.push(fields, MAX_LOG_MESSAGES);
        }
    }

    // ----- requests --------------------------------------------------------------------

    /// Whether `request` is the Script log message request this producer answers itself.
    fn is_script_log_request(&self, request: &InitialStateRequest) -> bool {
        request.csc == SCRIPT && self.core.request_key(&request.event_name).as_deref() == Some("evt_logMessage")
    }

    /// Quirk 11 fixed: the requested script's buffer (`"all"` or 0, salobj's "any index": the
    /// current scripts', as the reference answers them).
    fn reply_script_logs(&self, request: &InitialStateRequest, out: &mut Actions) {
        let indices: Vec<i64> = match &request.salindex {
            RequestIndex::Index(0) => self.state.queue.current.clone(),
            RequestIndex::Index(i) => vec![*i],
            RequestIndex::Other(serde_json::Value::String(s)) if s == "all" => self.state.queue.current.clone(),
            RequestIndex::Other(_) => Vec::new(),
        };
        for index in indices {
            if let Some(buf) = self.state.logs.get(&index) {
                for fields in &buf.messages {
                    out.send(log_message(index, fields));
                }
            }
        }
    }

    // ----- timers ----------------------------------------------------------------------

    fn own_wake(&self) -> Option<f64> {
        let hb = self.state.next_script_heartbeat;
        let cmd = self.state.schema_update.as_ref().and_then(|u| u.in_flight.as_ref()).map(|f| f.deadline);
        match (hb, cmd) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn run_timers(&mut self, now: f64, out: &mut Actions) {
        if let Some(t) = self.state.next_script_heartbeat {
            if t <= now + EARLY {
                self.script_heartbeat_round(now, out);
                self.state.next_script_heartbeat = Some(now + self.settings.script_heartbeat_period);
            }
        }
        let expired = self
            .state
            .schema_update
            .as_ref()
            .and_then(|u| u.in_flight.as_ref())
            .filter(|f| f.deadline <= now + EARLY)
            .map(|f| (f.is_standard, f.path.clone()));
        if let Some((is_standard, path)) = expired {
            out.log(
                LogLevel::ERROR,
                format!(
                    "showSchema command for {} script {path:?}: no acknowledgement within {SHOW_SCHEMA_TIMEOUT} s",
                    if is_standard { "standard" } else { "external" }
                ),
            );
            if let Some(u) = self.state.schema_update.as_mut() {
                u.in_flight = None;
            }
            self.advance_schema_update(now, out);
        }
    }

    /// One round of the reference's script heartbeat loop: current then waiting scripts.
    fn script_heartbeat_round(&mut self, now: f64, out: &mut Actions) {
        let limit = now - SCRIPT_HEARTBEAT_INTERVAL - self.settings.script_heartbeat_timeout;
        let indices: Vec<i64> = self.state.queue.current.iter().chain(&self.state.queue.waiting).copied().collect();
        for index in indices {
            let hb = self.state.heartbeats.entry(index).or_default();
            if hb.last < limit {
                hb.lost += 1;
            } else {
                hb.lost = 0;
            }
            let mut msg =
                event_snd_first(SCRIPT_HEARTBEATS, self.core.index(), "stream", &hb.payload(index), SndStamp::Zero);
            // Coalesce per script, not on the shared stream.
            msg.stream = format!("stream:{index}");
            out.send(msg);
        }
    }

    fn on_start(&mut self, now: f64, out: &mut Actions) {
        if !self.subscribed {
            self.subscribed = true;
            out.subscribe_sal_live(SCRIPT, 0);
        }
        if self.state.next_script_heartbeat.is_none() {
            self.state.next_script_heartbeat = Some(now);
        }
    }

    fn on_catalog(&mut self, text: &str, out: &mut Actions) {
        match serde_json::from_str::<ComponentCatalog>(text) {
            Ok(cat) if cat.name == SCRIPT => {
                self.log_converter = log_converter_for(Some(&cat));
                self.state.script_catalog = Some(cat);
            }
            Ok(cat) => out.log(LogLevel::WARNING, format!("unexpected catalog for {:?}; ignored", cat.name)),
            Err(e) => out.log(LogLevel::WARNING, format!("invalid Script catalog: {e}")),
        }
    }

    /// One input. Manager messages: a `Script`/`logMessage` request is answered here (quirk 11
    /// fixed, [`Self::reply_script_logs`]); every other message goes to the core's csc rule,
    /// which ignores a malformed request (no `data[0].data.event_name`, not JSON, ...) without
    /// an error: quirk 2 fixed (the reference's KeyError ended the process).
    fn handle_input(&mut self, input: Input<'_>, now: f64, out: &mut Actions) -> Result<(), PluginError> {
        for (level, text) in self.pending_logs.drain(..) {
            out.log(level, text);
        }
        self.on_start(now, out);
        if let Input::ManagerMessage(text) = input {
            if let Some(request) = parse_request(text) {
                if self.is_script_log_request(&request) {
                    self.reply_script_logs(&request, out);
                    return Ok(());
                }
            }
        }
        self.core.handle(input, now, out)?;
        match input {
            Input::Sample(s) if s.kind != TopicKind::TELEMETRY => {
                if s.component.as_str() == self.core.component() {
                    self.on_queue_sample(s, now, out);
                } else if s.component.as_str() == SCRIPT {
                    self.on_script_sample(s, now, out);
                }
            }
            Input::CommandAck { id, code, result } => self.on_command_ack(id, code, result, now, out),
            Input::Catalog(text) => self.on_catalog(text, out),
            Input::Tick => self.run_timers(now, out),
            _ => {}
        }
        Ok(())
    }
}

/// A Script log message: `{"category": "event", "producer_snd": 0, "data": [{"csc": "Script",
/// "salindex": i, "data": {"logMessage": [FIELDS]}}]}`.
fn log_message(index: i64, fields: &str) -> love_plugin_api::message::OutMessage {
    let mut payload = String::with_capacity(fields.len() + 2);
    payload.push('[');
    payload.push_str(fields);
    payload.push(']');
    event_snd_first(SCRIPT, index, "logMessage", &payload, SndStamp::Zero)
}

impl ProducerLogic for ScriptQueueProducer {
    fn handle(&mut self, input: Input<'_>, now: f64, out: &mut Actions) -> Result<(), PluginError> {
        let r = self.handle_input(input, now, out);
        self.core.push_wake_with(out, self.own_wake());
        r
    }

    fn snapshot(&self) -> Result<String, PluginError> {
        let snap = Snapshot { version: SNAPSHOT_VERSION, core: self.core.snapshot_value(), state: self.state.clone() };
        Ok(serde_json::to_string(&snap)?)
    }

    fn restore(&mut self, text: &str) -> Result<(), PluginError> {
        let (_, v) = love_plugin_api::snapshot::parse_versioned("scriptqueue", text, SNAPSHOT_VERSION)?;
        let snap: Snapshot =
            serde_json::from_value(v).map_err(|e| PluginError::new(format!("invalid scriptqueue snapshot: {e}")))?;
        let mut core = self.core.clone();
        core.restore_value(&snap.core)?;
        self.core = core;
        self.log_converter = log_converter_for(snap.state.script_catalog.as_ref());
        self.state = snap.state;
        Ok(())
    }
}

love_plugin_api::export_plugin! {
    name: "scriptqueue",
    version: env!("CARGO_PKG_VERSION"),
    producer_type: "scriptqueue",
    claims: ["ScriptQueue"],
    create: ScriptQueueProducer::create,
}
