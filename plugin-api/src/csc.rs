//! [`CscCore`]: the generic CSC producer logic, reusable by every producer that serves a SAL
//! component (the `csc` plugin itself, `watcher`, `scriptqueue`, third-party producers).
//!
//! It is sans-IO like every producer: it never reads the clock (`now` comes with each call) and
//! returns [`Actions`]. It implements spec sections b, c and d for one component:
//!
//! - **events** (the *asynchronous* topics): converted to `FIELDS` at once, stored as the
//!   topic's last sample under `evt_<name>` and sent as `category: "event"` with a one-element
//!   list payload;
//! - **telemetry** (the *periodic* topics): the latest sample of each topic is kept (unconverted
//!   until it is sent) and sent every `telemetry_period` seconds, counted from the producer's
//!   start, as `category: "telemetry"` with a bare-object payload. A topic whose latest sample
//!   arrived more than `telemetry_stale_after` seconds ago is no longer re-sent (the deliberate
//!   fix of the reference's quirk 7; the reference re-sends the last sample forever);
//! - the **Heartbeat stream** (spec section c), see "Timers" below;
//! - **initial data** on [`Input::Connected`]: the special streams first (in the order they were
//!   first stored), then the stored samples in first-stored order;
//! - **subscriptions** on [`Input::Register`]: `all`, then the component name, then any names
//!   added with [`CscCore::add_subscription`];
//! - **initial_state replies** by the csc rule of spec section d, for the csc names given with
//!   [`CscCore::reply_rules_for`] (default: the component name). A malformed request never
//!   produces a reply or an error.
//!
//! Samples are identified by the topic they arrive on ([`Sample::topic`] and [`Sample::kind`]),
//! not by `private_revCode` (quirk 24 fixed). Messages are labelled with the producer's
//! configured index, not the sample's `salIndex` (so index 0 on an indexed component labels
//! every index 0, as the reference does: quirk 19 kept).
//!
//! # Settings
//!
//! From [`ProducerConfig::settings`] (text values; unparsable or non-positive values fall back to
//! the default with a warning):
//!
//! | setting | default | meaning |
//! | --- | --- | --- |
//! | `telemetry_period` | 2.0 | seconds between telemetry sends |
//! | `heartbeat_timeout` | 2.0 | the Heartbeat stream's wait and send period |
//! | `telemetry_stale_after` | 30.0 | stop re-sending a telemetry topic silent this long; `inf` (or any value ≤ 0) never stops, as the reference |
//!
//! # Topic filters
//!
//! `periodic_data` / `asynchronous_data` hold names with `tel_`/`evt_` prefixes, as the
//! reference's `--periodic-data` / `--asynchronous-data`. With neither given: periodic = every
//! telemetry topic of the catalog, asynchronous = every event except `heartbeat`, and the
//! Heartbeat stream runs when the component has a `heartbeat` event. With either given, the
//! reference's SAL remote only subscribes to the listed topics (both lists), so a given option's
//! set is exactly its list and an absent option's set is every topic of its kind among the
//! listed ones (a `tel_` listed only as asynchronous is also periodic; an `evt_` listed only as
//! periodic is also asynchronous); a name without a known prefix is dropped with a
//! warning, a name the component lacks is skipped with a warning, and the Heartbeat stream runs
//! only when `evt_heartbeat` is listed. `heartbeat` itself is never forwarded as an event
//! (it feeds the Heartbeat stream). A periodic event is polled and sent with category `event`
//! and a bare-object payload; an asynchronous telemetry topic is forwarded on arrival with
//! category `telemetry` and a one-element list, stored under `tel_<name>` and replayed as an
//! event (all as the reference does). Warnings are emitted as log actions on the first call.
//!
//! # Timers (the sans-IO form of the reference's loops)
//!
//! The core keeps two deadlines and, at the end of every [`CscCore::handle`] call, pushes
//! [`Actions::wake_at`] with the earlier one ([`CscCore::next_wake`]). Timers only fire on
//! [`Input::Tick`], so every other input is handled exactly as it arrives.
//!
//! - Telemetry: ticks at `start + k * telemetry_period`. A late tick sends once and the next
//!   deadline is the next multiple after `now` (no burst of catch-up sends).
//! - Heartbeat: the reference loops "wait at most `heartbeat_timeout` for the next heartbeat;
//!   on timeout `lost += 1`; after each wait, send if `heartbeat_timeout` has passed since the
//!   previous send". Here a *wait deadline* plays the wait: a heartbeat sample ends the wait
//!   (`lost = 0`, timestamp = `now`, new deadline `now + timeout`); a tick at or after the
//!   deadline ends it by timeout (`lost += 1` per elapsed wait, deadline moved on by whole
//!   timeouts). After either, the message is sent if at least `timeout` (less 1 %, so host
//!   wake-up jitter never skips a period) has passed since the previous send, with
//!   `producer_snd = now`. The first wait and the send timer start at [`Input::Start`] (or the
//!   first input, if the host sends no Start). Cadence: a healthy 1-Hz CSC gives a message every
//!   2–3 s with `lost: 0`; a silent one a message every 2 s with `lost` growing by one.
//!
//! # Composing
//!
//! A producer built on the core calls [`CscCore::handle`] for every input and looks at the
//! returned [`Handled`]: the converted `FIELDS` of an event of its component, samples of other
//! components (which the core ignores), the parsed initial_state request and whether the core
//! answered it. It adds its own special streams with [`CscCore::store_special`] /
//! [`CscCore::push_special`] (they become part of initial data and of the reply rules under
//! `_<name>`), extra subscriptions with [`CscCore::add_subscription`] and extra reply csc names
//! with [`CscCore::reply_rules_for`]. A producer with its own timers pushes its own
//! `wake_at(min(own, core.next_wake()))` after calling `handle` (the latest wake-up request
//! replaces earlier ones); [`CscCore::push_wake_with`] does exactly that. Its snapshot embeds
//! [`CscCore::snapshot_value`] and its restore calls [`CscCore::restore_value`].
//!
//! ```
//! use love_plugin_api::csc::{CscCore, Handled};
//! use love_plugin_api::sdk::{Actions, Input, ProducerConfig};
//!
//! let mut core = CscCore::new(&ProducerConfig { component: "Watcher".into(), ..Default::default() }).unwrap();
//! core.store_special("stream", r#"{"alarms": {}}"#.to_string());
//! let mut out = Actions::new();
//! let handled = core.handle(Input::Connected, 1.5, &mut out).unwrap();
//! assert_eq!(handled, Handled::Done);
//! // (The first action is a warning: this configuration has no topic catalog.)
//! assert!(out.as_slice().iter().any(|a| a.text.as_str().contains(r#""stream": {"alarms": {}}"#)));
//! ```

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::abi::{LogLevel, Sample, TopicKind};
use crate::catalog::{ComponentCatalog, TopicInfo};
use crate::convert::TopicConverter;
use crate::message::{self, data_message, DataCategory, Payload};
use crate::sdk::{Actions, Input, PluginError, ProducerConfig};
use crate::store::{LastSampleStore, Stored};

/// The snapshot format version written by [`CscCore::snapshot_value`].
pub const SNAPSHOT_VERSION: u64 = 1;

/// Default seconds between telemetry sends (the reference's polling period).
pub const DEFAULT_TELEMETRY_PERIOD: f64 = 2.0;
/// Default Heartbeat wait/send period (the reference's `heartbeat_timeout`).
pub const DEFAULT_HEARTBEAT_TIMEOUT: f64 = 2.0;
/// Default seconds after which a silent telemetry topic is no longer re-sent.
pub const DEFAULT_TELEMETRY_STALE_AFTER: f64 = 30.0;

/// The two kinds of topics the core forwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Kind {
    /// An event (`evt_` prefix).
    #[serde(rename = "evt")]
    Event,
    /// A telemetry topic (`tel_` prefix).
    #[serde(rename = "tel")]
    Telemetry,
}

impl Kind {
    /// `"evt_"` or `"tel_"`.
    pub fn prefix(self) -> &'static str {
        match self {
            Kind::Event => "evt_",
            Kind::Telemetry => "tel_",
        }
    }

    fn category(self) -> DataCategory {
        match self {
            Kind::Event => DataCategory::Event,
            Kind::Telemetry => DataCategory::Telemetry,
        }
    }

    /// The store key of a topic of this kind (`evt_summaryState`).
    pub fn key(self, name: &str) -> String {
        let mut k = String::with_capacity(name.len() + 4);
        k.push_str(self.prefix());
        k.push_str(name);
        k
    }
}

/// What [`CscCore::handle`] did with an input, for the producer composing it.
#[derive(Debug, Clone, PartialEq)]
pub enum Handled {
    /// Nothing more for the caller: the core handled the input completely (or it needed nothing).
    Done,
    /// An asynchronous event sample of the core's component was converted, stored and sent.
    Event {
        /// The topic name without prefix (`alarm`).
        name: String,
        /// The converted `FIELDS` JSON object (as stored and sent).
        fields: String,
    },
    /// An input the core does not handle: a sample of another component, a command ack, a
    /// catalog, an unknown input kind. The caller may handle it.
    NotMine,
    /// A well-formed initial_state request.
    Request {
        /// The parsed request.
        request: InitialStateRequest,
        /// Whether the core sent a reply.
        replied: bool,
    },
    /// A manager message that is not a well-formed initial_state request (ignored, no error).
    Malformed,
}

/// The `salindex` of an initial_state request.
#[derive(Debug, Clone, PartialEq)]
pub enum RequestIndex {
    /// A number with an integral value (a missing key counts as 0, as in the reference).
    Index(i64),
    /// Anything else (`"all"`, `"0"`, `0.5`, `true`, `null`): never matches an index.
    Other(serde_json::Value),
}

/// An initial_state request in the manager's form:
/// `{"category": "initial_state", "data": [{"csc": C, "salindex": I, "data": {"event_name": N}}]}`.
#[derive(Debug, Clone, PartialEq)]
pub struct InitialStateRequest {
    /// `data[0].csc`.
    pub csc: String,
    /// `data[0].salindex`.
    pub salindex: RequestIndex,
    /// `data[0].data.event_name`.
    pub event_name: String,
}

impl InitialStateRequest {
    /// Whether the request's salindex is the integer `index` (`"all"` never matches).
    pub fn index_is(&self, index: i64) -> bool {
        matches!(self.salindex, RequestIndex::Index(i) if i == index)
    }
}

/// Parse an initial_state request in the manager's form. Anything else (invalid JSON, another
/// category, missing or mistyped keys, the old `stream` form) gives `None`.
pub fn parse_request(text: &str) -> Option<InitialStateRequest> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    parse_request_value(&v)
}

/// [`parse_request`] on an already parsed message.
pub fn parse_request_value(v: &serde_json::Value) -> Option<InitialStateRequest> {
    if v.get("category")?.as_str()? != "initial_state" {
        return None;
    }
    let d0 = v.get("data")?.as_array()?.first()?.as_object()?;
    let csc = d0.get("csc")?.as_str()?.to_string();
    let salindex = match d0.get("salindex") {
        None => RequestIndex::Index(0),
        Some(serde_json::Value::Number(n)) => match n.as_i64() {
            Some(i) => RequestIndex::Index(i),
            // Python compares 0.0 == 0 as equal.
            None => match n.as_f64() {
                Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => RequestIndex::Index(f as i64),
                _ => RequestIndex::Other(serde_json::Value::Number(n.clone())),
            },
        },
        Some(other) => RequestIndex::Other(other.clone()),
    };
    let event_name = d0.get("data")?.as_object()?.get("event_name")?.as_str()?.to_string();
    Some(InitialStateRequest { csc, salindex, event_name })
}

/// The derived topic sets (for logs, tests and the admin endpoint).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TopicSets {
    /// Periodic topics with prefixes, in send order.
    pub periodic: Vec<String>,
    /// Asynchronous topics with prefixes.
    pub asynchronous: Vec<String>,
    /// Whether the Heartbeat stream runs.
    pub heartbeat_monitor: bool,
}

#[derive(Debug, Clone)]
struct Latest {
    /// The latest sample, not yet converted (`None` after a restore).
    sample: Option<Sample>,
    /// Its converted FIELDS, once converted.
    fields: Option<String>,
    /// Local time it arrived.
    received: f64,
}

#[derive(Debug, Clone)]
struct Topic {
    kind: Kind,
    name: String,
    converter: TopicConverter,
    periodic: bool,
    asynchronous: bool,
    latest: Option<Latest>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct HeartbeatState {
    lost: u64,
    /// Local time of the last heartbeat, `None` before the first (sent as `-1`).
    last: Option<f64>,
    /// End of the current wait.
    deadline: f64,
    /// When the last Heartbeat message was sent (or the loop started).
    last_send: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Timers {
    start: f64,
    next_telemetry: f64,
    heartbeat: Option<HeartbeatState>,
}

#[derive(Debug, Serialize, Deserialize)]
struct TelemetrySnap {
    kind: Kind,
    name: String,
    fields: String,
    received: f64,
}

#[derive(Debug, Serialize, Deserialize)]
struct CoreSnapshot {
    version: u64,
    component: String,
    index: i64,
    timers: Option<Timers>,
    specials: LastSampleStore,
    stored: LastSampleStore,
    telemetry: Vec<TelemetrySnap>,
}

/// The generic CSC producer state machine. See the [module documentation](self).
#[derive(Debug, Clone)]
pub struct CscCore {
    component: String,
    index: i64,
    catalog: Option<ComponentCatalog>,
    indexed: bool,
    telemetry_period: f64,
    heartbeat_timeout: f64,
    stale_after: f64,
    /// Filters given: only listed topics are forwarded.
    filtered: bool,
    heartbeat_monitor: bool,
    topics: Vec<Topic>,
    by_key: HashMap<(Kind, String), usize>,
    subscriptions: Vec<String>,
    reply_cscs: Vec<String>,
    specials: LastSampleStore,
    stored: LastSampleStore,
    timers: Option<Timers>,
    pending_logs: Vec<(LogLevel, String)>,
}

fn positive_setting(cfg: &ProducerConfig, name: &str, default: f64, logs: &mut Vec<(LogLevel, String)>) -> f64 {
    match cfg.settings.get(name) {
        None => default,
        Some(text) => match text.trim().parse::<f64>() {
            Ok(v) if v > 0.0 && v.is_finite() => v,
            _ => {
                logs.push((
                    LogLevel::WARNING,
                    format!("setting {name}={text:?} is not a positive number; using {default}"),
                ));
                default
            }
        },
    }
}

impl CscCore {
    /// Build the core from a producer configuration (component, index, filters, settings,
    /// catalog). Works without a catalog (every event is asynchronous, every telemetry topic
    /// periodic, fields labelled from their values), but warns.
    pub fn new(cfg: &ProducerConfig) -> Result<Self, PluginError> {
        if cfg.component.is_empty() {
            return Err(PluginError::new("the producer configuration has no component name"));
        }
        let mut logs = Vec::new();
        let telemetry_period = positive_setting(cfg, "telemetry_period", DEFAULT_TELEMETRY_PERIOD, &mut logs);
        let heartbeat_timeout = positive_setting(cfg, "heartbeat_timeout", DEFAULT_HEARTBEAT_TIMEOUT, &mut logs);
        let stale_after = match cfg.settings.get("telemetry_stale_after") {
            None => DEFAULT_TELEMETRY_STALE_AFTER,
            Some(text) => match text.trim().parse::<f64>() {
                Ok(v) if v > 0.0 && !v.is_nan() => v,
                Ok(v) if v <= 0.0 => f64::INFINITY,
                _ => {
                    logs.push((
                        LogLevel::WARNING,
                        format!(
                            "setting telemetry_stale_after={text:?} is not a number; using {DEFAULT_TELEMETRY_STALE_AFTER}"
                        ),
                    ));
                    DEFAULT_TELEMETRY_STALE_AFTER
                }
            },
        };
        let catalog = cfg.catalog.clone();
        if catalog.is_none() {
            logs.push((
                LogLevel::WARNING,
                format!("no topic catalog for {}: fields are labelled from their values", cfg.component),
            ));
        }
        let indexed = catalog.as_ref().is_some_and(|c| c.indexed);
        let filtered = cfg.periodic_data.is_some() || cfg.asynchronous_data.is_some();
        let mut core = CscCore {
            component: cfg.component.clone(),
            index: cfg.index,
            catalog,
            indexed,
            telemetry_period,
            heartbeat_timeout,
            stale_after,
            filtered,
            heartbeat_monitor: false,
            topics: Vec::new(),
            by_key: HashMap::new(),
            subscriptions: vec!["all".to_string(), cfg.component.clone()],
            reply_cscs: vec![cfg.component.clone()],
            specials: LastSampleStore::new(),
            stored: LastSampleStore::new(),
            timers: None,
            pending_logs: Vec::new(),
        };
        if filtered {
            let mut heartbeat = false;
            for (list, periodic) in [(&cfg.periodic_data, true), (&cfg.asynchronous_data, false)] {
                let option = if periodic { "periodic_data" } else { "asynchronous_data" };
                for full in list.iter().flatten() {
                    let (kind, name) = if let Some(n) = full.strip_prefix("tel_") {
                        (Kind::Telemetry, n)
                    } else if let Some(n) = full.strip_prefix("evt_") {
                        (Kind::Event, n)
                    } else {
                        logs.push((
                            LogLevel::WARNING,
                            format!("{option}: {full:?} has neither a tel_ nor an evt_ prefix; ignored"),
                        ));
                        continue;
                    };
                    if kind == Kind::Event && name == "heartbeat" {
                        heartbeat = true;
                        continue;
                    }
                    let info = match &core.catalog {
                        Some(cat) => {
                            let found = match kind {
                                Kind::Event => cat.event(name),
                                Kind::Telemetry => cat.telemetry_topic(name),
                            };
                            match found {
                                Some(t) => t.clone(),
                                None => {
                                    logs.push((
                                        LogLevel::WARNING,
                                        format!("{option}: {} has no topic {full}; ignored", core.component),
                                    ));
                                    continue;
                                }
                            }
                        }
                        None => TopicInfo { name: name.to_string(), ..Default::default() },
                    };
                    let i = core.topic_index_or_insert(kind, &info);
                    if periodic {
                        core.topics[i].periodic = true;
                    } else {
                        core.topics[i].asynchronous = true;
                    }
                }
            }
            // An absent option means every topic of its kind the remote has, and the remote
            // has only the listed topics: telemetry listed only as asynchronous is also
            // periodic, events listed only as periodic are also asynchronous.
            for t in &mut core.topics {
                match t.kind {
                    Kind::Telemetry if cfg.periodic_data.is_none() => t.periodic = true,
                    Kind::Event if cfg.asynchronous_data.is_none() => t.asynchronous = true,
                    _ => {}
                }
            }
            core.heartbeat_monitor = heartbeat;
        } else {
            match core.catalog.clone() {
                Some(cat) => {
                    for t in &cat.telemetry {
                        let i = core.topic_index_or_insert(Kind::Telemetry, t);
                        core.topics[i].periodic = true;
                    }
                    for t in &cat.events {
                        if t.name == "heartbeat" {
                            continue;
                        }
                        let i = core.topic_index_or_insert(Kind::Event, t);
                        core.topics[i].asynchronous = true;
                    }
                    core.heartbeat_monitor = cat.event("heartbeat").is_some();
                }
                None => core.heartbeat_monitor = true,
            }
        }
        core.pending_logs = logs;
        Ok(core)
    }

    fn topic_index_or_insert(&mut self, kind: Kind, info: &TopicInfo) -> usize {
        if let Some(&i) = self.by_key.get(&(kind, info.name.clone())) {
            return i;
        }
        self.topics.push(Topic {
            kind,
            name: info.name.clone(),
            converter: TopicConverter::new(info, self.indexed),
            periodic: false,
            asynchronous: false,
            latest: None,
        });
        let i = self.topics.len() - 1;
        self.by_key.insert((kind, info.name.clone()), i);
        i
    }

    /// The component name.
    pub fn component(&self) -> &str {
        &self.component
    }

    /// The configured SAL index (the `salindex` of every message).
    pub fn index(&self) -> i64 {
        self.index
    }

    /// The component's catalog, when the configuration had one.
    pub fn catalog(&self) -> Option<&ComponentCatalog> {
        self.catalog.as_ref()
    }

    /// The derived topic sets.
    pub fn topic_sets(&self) -> TopicSets {
        TopicSets {
            periodic: self.topics.iter().filter(|t| t.periodic).map(|t| t.kind.key(&t.name)).collect(),
            asynchronous: self.topics.iter().filter(|t| t.asynchronous).map(|t| t.kind.key(&t.name)).collect(),
            heartbeat_monitor: self.heartbeat_monitor,
        }
    }

    /// Also subscribe to initial_state requests for `csc` (sent after `all` and the component).
    pub fn add_subscription(&mut self, csc: &str) {
        if !self.subscriptions.iter().any(|s| s == csc) {
            self.subscriptions.push(csc.to_string());
        }
    }

    /// The csc values initial_state subscriptions are sent for, in order.
    pub fn subscriptions(&self) -> &[String] {
        &self.subscriptions
    }

    /// Answer initial_state requests whose `csc` is any of `cscs` (by the csc rule: index, then
    /// the stored key). Replaces the default (the component name only).
    pub fn reply_rules_for<S: AsRef<str>>(&mut self, cscs: &[S]) {
        self.reply_cscs = cscs.iter().map(|s| s.as_ref().to_string()).collect();
    }

    /// The csc values answered.
    pub fn reply_cscs(&self) -> &[String] {
        &self.reply_cscs
    }

    /// Store a special stream `name` (key `_<name>`), labelled with the component and index,
    /// as a bare-object payload. Special streams are sent first in initial data, in the order
    /// they were first stored, and answer requests for `name`.
    pub fn store_special(&mut self, name: &str, payload: String) {
        let csc = self.component.clone();
        self.store_special_for(&csc, name, payload);
    }

    /// [`CscCore::store_special`] with another envelope `csc` (`ScriptQueueState`).
    pub fn store_special_for(&mut self, csc: &str, name: &str, payload: String) {
        let key = special_key(name);
        self.specials.put(
            &key,
            Stored { csc: csc.to_string(), salindex: self.index, stream: name.to_string(), payload, as_list: false },
        );
    }

    /// Send the stored special stream `name` (category event). Returns false if none is stored.
    pub fn send_special(&self, name: &str, now: f64, out: &mut Actions) -> bool {
        match self.specials.get(&special_key(name)) {
            Some(s) => {
                out.send(s.to_event(now));
                true
            }
            None => false,
        }
    }

    /// Store a special stream and send it at once.
    pub fn push_special(&mut self, name: &str, payload: String, now: f64, out: &mut Actions) {
        self.store_special(name, payload);
        self.send_special(name, now, out);
    }

    /// The stored special stream `name`.
    pub fn special(&self, name: &str) -> Option<&Stored> {
        self.specials.get(&special_key(name))
    }

    /// The stored last sample under `key` (`evt_summaryState`).
    pub fn stored(&self, key: &str) -> Option<&Stored> {
        self.stored.get(key)
    }

    /// Store an entry under `key` among the ordinary stored samples (sent in initial data after
    /// the special streams, and by the reply rules).
    pub fn store(&mut self, key: &str, value: Stored) {
        self.stored.put(key, value);
    }

    /// When the core next needs an [`Input::Tick`], if ever.
    pub fn next_wake(&self) -> Option<f64> {
        let t = self.timers.as_ref()?;
        let mut next = if self.has_periodic() { Some(t.next_telemetry) } else { None };
        if let Some(hb) = &t.heartbeat {
            next = Some(next.map_or(hb.deadline, |n: f64| n.min(hb.deadline)));
        }
        next
    }

    /// Push a wake-up for the earlier of the core's next deadline and `own`.
    pub fn push_wake_with(&self, out: &mut Actions, own: Option<f64>) {
        let t = match (self.next_wake(), own) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if let Some(t) = t {
            out.wake_at(t);
        }
    }

    fn has_periodic(&self) -> bool {
        (!self.filtered && self.catalog.is_none()) || self.topics.iter().any(|t| t.periodic)
    }

    fn start_timers(&mut self, now: f64) {
        if self.timers.is_none() {
            let heartbeat = self.heartbeat_monitor.then_some(HeartbeatState {
                lost: 0,
                last: None,
                deadline: now + self.heartbeat_timeout,
                last_send: now,
            });
            self.timers = Some(Timers { start: now, next_telemetry: now + self.telemetry_period, heartbeat });
        }
    }

    /// Handle one input at `now`. See [`Handled`] for what the caller gets back. Pushes a
    /// wake-up for the core's next deadline at the end of every call.
    pub fn handle(&mut self, input: Input<'_>, now: f64, out: &mut Actions) -> Result<Handled, PluginError> {
        for (level, text) in self.pending_logs.drain(..) {
            out.log(level, text);
        }
        self.start_timers(now);
        let handled = match input {
            Input::Start | Input::Disconnected => Handled::Done,
            Input::Sample(s) => self.on_sample(s, now, out),
            Input::ManagerMessage(text) => match parse_request(text) {
                Some(request) => {
                    let replied = self.reply_to(&request, now, out);
                    Handled::Request { request, replied }
                }
                None => Handled::Malformed,
            },
            Input::Connected => {
                self.send_initial_data(now, out);
                Handled::Done
            }
            Input::Register => {
                self.send_subscriptions(now, out);
                Handled::Done
            }
            Input::Tick => {
                self.on_tick(now, out);
                Handled::Done
            }
            Input::CommandAck { .. } | Input::Catalog(_) | Input::Unknown(_) => Handled::NotMine,
        };
        if let Some(t) = self.next_wake() {
            out.wake_at(t);
        }
        Ok(handled)
    }

    /// Send the initial_state subscriptions.
    pub fn send_subscriptions(&self, now: f64, out: &mut Actions) {
        for csc in &self.subscriptions {
            out.send(message::subscription(csc, now));
        }
    }

    /// Send initial data: special streams, then stored samples, all as events.
    pub fn send_initial_data(&self, now: f64, out: &mut Actions) {
        for (_, s) in self.specials.iter().chain(self.stored.iter()) {
            out.send(s.to_event(now));
        }
    }

    /// The store key a request's `event_name` maps to, by the reference's order: a special
    /// stream (`_<name>`), an event (`evt_<name>`), a telemetry topic (`tel_<name>`). `None`
    /// when the component has no such topic.
    pub fn request_key(&self, event_name: &str) -> Option<String> {
        let special = special_key(event_name);
        if self.specials.contains(&special) {
            return Some(special);
        }
        match &self.catalog {
            Some(cat) => {
                if cat.event(event_name).is_some() {
                    Some(Kind::Event.key(event_name))
                } else if cat.telemetry_topic(event_name).is_some() {
                    Some(Kind::Telemetry.key(event_name))
                } else {
                    None
                }
            }
            None => {
                let evt = Kind::Event.key(event_name);
                if self.stored.contains(&evt) {
                    Some(evt)
                } else {
                    Some(Kind::Telemetry.key(event_name))
                }
            }
        }
    }

    /// Whether the csc rule answers `request`, and with which stored entry.
    pub fn reply_for(&self, request: &InitialStateRequest) -> Option<&Stored> {
        if !self.reply_cscs.contains(&request.csc) || !request.index_is(self.index) {
            return None;
        }
        let key = self.request_key(&request.event_name)?;
        if key.starts_with('_') {
            self.specials.get(&key)
        } else {
            self.stored.get(&key)
        }
    }

    /// Answer `request` by the csc rule; returns whether a reply was sent.
    pub fn reply_to(&self, request: &InitialStateRequest, now: f64, out: &mut Actions) -> bool {
        match self.reply_for(request) {
            Some(s) => {
                out.send(s.to_event(now));
                true
            }
            None => false,
        }
    }

    fn lookup(&mut self, sample: &Sample) -> Option<usize> {
        let name = sample.topic.as_str();
        let kind = match sample.kind {
            TopicKind::EVENT => Kind::Event,
            TopicKind::TELEMETRY => Kind::Telemetry,
            _ => {
                if self.by_key.contains_key(&(Kind::Event, name.to_string())) {
                    Kind::Event
                } else if self.by_key.contains_key(&(Kind::Telemetry, name.to_string())) {
                    Kind::Telemetry
                } else {
                    return None;
                }
            }
        };
        if let Some(&i) = self.by_key.get(&(kind, name.to_string())) {
            return Some(i);
        }
        if self.filtered {
            return None;
        }
        // Not in the catalog (a newer interface on the writer's side, or no catalog): forward
        // it with the default sets, fields labelled from their values.
        if self.catalog.as_ref().is_some_and(|c| match kind {
            Kind::Event => c.event(name).is_some(),
            Kind::Telemetry => c.telemetry_topic(name).is_some(),
        }) {
            return None;
        }
        let info = TopicInfo { name: name.to_string(), ..Default::default() };
        let i = self.topic_index_or_insert(kind, &info);
        match kind {
            Kind::Event => self.topics[i].asynchronous = true,
            Kind::Telemetry => self.topics[i].periodic = true,
        }
        Some(i)
    }

    fn on_sample(&mut self, sample: &Sample, now: f64, out: &mut Actions) -> Handled {
        if sample.component.as_str() != self.component {
            return Handled::NotMine;
        }
        if sample.topic.as_str() == "heartbeat" && sample.kind != TopicKind::TELEMETRY {
            self.on_heartbeat(now, out);
            return Handled::Done;
        }
        let Some(i) = self.lookup(sample) else {
            return Handled::Done;
        };
        let topic = &mut self.topics[i];
        if topic.periodic {
            topic.latest = Some(Latest { sample: Some(sample.clone()), fields: None, received: now });
        }
        if !topic.asynchronous {
            return Handled::Done;
        }
        let fields = topic.converter.fields_json(sample);
        let payload = if topic.periodic { Payload::Object } else { Payload::List };
        let (kind, name) = (topic.kind, topic.name.clone());
        out.send(data_message(kind.category(), &self.component, self.index, &name, &fields, payload, now, &[]));
        let key = kind.key(&name);
        self.stored.put(
            &key,
            Stored {
                csc: self.component.clone(),
                salindex: self.index,
                stream: name.clone(),
                payload: fields.clone(),
                as_list: payload == Payload::List,
            },
        );
        if kind == Kind::Event {
            Handled::Event { name, fields }
        } else {
            Handled::Done
        }
    }

    fn heartbeat_tolerance(&self) -> f64 {
        (self.heartbeat_timeout * 0.01).min(0.05)
    }

    fn on_heartbeat(&mut self, now: f64, out: &mut Actions) {
        let timeout = self.heartbeat_timeout;
        let tol = self.heartbeat_tolerance();
        let component = self.component.clone();
        let index = self.index;
        let Some(hb) = self.timers.as_mut().and_then(|t| t.heartbeat.as_mut()) else {
            return;
        };
        hb.lost = 0;
        hb.last = Some(now);
        hb.deadline = now + timeout;
        if now - hb.last_send >= timeout - tol {
            out.heartbeat(&component, index, hb.lost, hb.last, now);
            hb.last_send = now;
        }
    }

    fn on_tick(&mut self, now: f64, out: &mut Actions) {
        const EARLY: f64 = 1e-3;
        let period = self.telemetry_period;
        let timeout = self.heartbeat_timeout;
        let tol = self.heartbeat_tolerance();
        let periodic = self.has_periodic();
        let Some(timers) = self.timers.as_mut() else {
            return;
        };
        let mut send_telemetry = false;
        if periodic && timers.next_telemetry <= now + EARLY {
            send_telemetry = true;
            let k = ((now + EARLY - timers.start) / period).floor() + 1.0;
            timers.next_telemetry = timers.start + k * period;
            if timers.next_telemetry <= now {
                timers.next_telemetry += period;
            }
        }
        if let Some(hb) = timers.heartbeat.as_mut() {
            if hb.deadline <= now + EARLY {
                let missed = ((now + EARLY - hb.deadline) / timeout).floor() + 1.0;
                hb.lost += missed as u64;
                hb.deadline += missed * timeout;
                if now - hb.last_send >= timeout - tol {
                    out.heartbeat(&self.component, self.index, hb.lost, hb.last, now);
                    hb.last_send = now;
                }
            }
        }
        if send_telemetry {
            self.send_telemetry(now, out);
        }
    }

    fn send_telemetry(&mut self, now: f64, out: &mut Actions) {
        let stale_after = self.stale_after;
        for topic in self.topics.iter_mut().filter(|t| t.periodic) {
            let Some(latest) = topic.latest.as_mut() else {
                continue;
            };
            if now - latest.received > stale_after {
                // Quirk 7 fixed: a topic silent this long is no longer re-sent. Drop the sample
                // so the memory goes too; a new sample starts it again.
                topic.latest = None;
                continue;
            }
            if latest.fields.is_none() {
                if let Some(s) = latest.sample.take() {
                    latest.fields = Some(topic.converter.fields_json(&s));
                }
            }
            if let Some(fields) = &latest.fields {
                out.send(data_message(
                    topic.kind.category(),
                    &self.component,
                    self.index,
                    &topic.name,
                    fields,
                    Payload::Object,
                    now,
                    &[],
                ));
            }
        }
    }

    /// The whole state as a JSON value `{"version": 1, ...}` (stored samples, special streams,
    /// latest telemetry as converted FIELDS, timers and heartbeat accounting).
    pub fn snapshot_value(&self) -> serde_json::Value {
        let telemetry = self
            .topics
            .iter()
            .filter_map(|t| {
                let l = t.latest.as_ref()?;
                let fields = match (&l.fields, &l.sample) {
                    (Some(f), _) => f.clone(),
                    (None, Some(s)) => t.converter.fields_json(s),
                    (None, None) => return None,
                };
                Some(TelemetrySnap { kind: t.kind, name: t.name.clone(), fields, received: l.received })
            })
            .collect();
        let snap = CoreSnapshot {
            version: SNAPSHOT_VERSION,
            component: self.component.clone(),
            index: self.index,
            timers: self.timers.clone(),
            specials: self.specials.clone(),
            stored: self.stored.clone(),
            telemetry,
        };
        serde_json::to_value(snap).unwrap_or(serde_json::Value::Null)
    }

    /// [`CscCore::snapshot_value`] as text.
    pub fn snapshot(&self) -> String {
        self.snapshot_value().to_string()
    }

    /// Restore a state written by [`CscCore::snapshot_value`] (this or an older version).
    /// Refuses a newer version, a snapshot of another component or index, and malformed data,
    /// leaving the state unchanged.
    pub fn restore_value(&mut self, v: &serde_json::Value) -> Result<(), PluginError> {
        crate::snapshot::check_version("csc", v, SNAPSHOT_VERSION)?;
        let snap: CoreSnapshot =
            serde_json::from_value(v.clone()).map_err(|e| PluginError::new(format!("invalid csc snapshot: {e}")))?;
        if snap.component != self.component || snap.index != self.index {
            return Err(PluginError::new(format!(
                "snapshot of {}:{} cannot be restored into {}:{}",
                snap.component, snap.index, self.component, self.index
            )));
        }
        let mut timers = snap.timers;
        if let Some(t) = timers.as_mut() {
            // The heartbeat setting may have changed between versions; follow the config.
            match (&t.heartbeat, self.heartbeat_monitor) {
                (Some(_), false) => t.heartbeat = None,
                (None, true) => {
                    t.heartbeat = Some(HeartbeatState {
                        lost: 0,
                        last: None,
                        deadline: t.start + self.heartbeat_timeout,
                        last_send: t.start,
                    })
                }
                _ => {}
            }
        }
        for t in &mut self.topics {
            t.latest = None;
        }
        for tel in snap.telemetry {
            if let Some(&i) = self.by_key.get(&(tel.kind, tel.name.clone())) {
                if self.topics[i].periodic {
                    self.topics[i].latest =
                        Some(Latest { sample: None, fields: Some(tel.fields), received: tel.received });
                }
            }
        }
        self.timers = timers;
        self.specials = snap.specials;
        self.stored = snap.stored;
        Ok(())
    }

    /// [`CscCore::restore_value`] from text.
    pub fn restore(&mut self, text: &str) -> Result<(), PluginError> {
        let v: serde_json::Value =
            serde_json::from_str(text).map_err(|e| PluginError::new(format!("invalid csc snapshot: {e}")))?;
        self.restore_value(&v)
    }
}

fn special_key(name: &str) -> String {
    let mut k = String::with_capacity(name.len() + 1);
    k.push('_');
    k.push_str(name);
    k
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi::{Field, Value};
    use crate::catalog::FieldInfo;
    use crate::sdk::Action;

    const T: f64 = 1_700_000_000.5;

    fn catalog() -> ComponentCatalog {
        let topic = |name: &str, fields: Vec<FieldInfo>| TopicInfo { name: name.into(), fields, rate_hz: None };
        ComponentCatalog {
            name: "Dome".into(),
            indexed: false,
            events: vec![
                topic("heartbeat", vec![FieldInfo::new("heartbeat", "boolean", 1, "unitless")]),
                topic("summaryState", vec![FieldInfo::new("summaryState", "int", 1, "unitless")]),
                topic("mainDoorState", vec![FieldInfo::new("state", "int", 1, "unitless")]),
            ],
            telemetry: vec![topic("position", vec![FieldInfo::new("azimuth", "double", 1, "deg")])],
            ..Default::default()
        }
    }

    fn config() -> ProducerConfig {
        ProducerConfig { component: "Dome".into(), catalog: Some(catalog()), ..Default::default() }
    }

    fn sample(kind: TopicKind, topic: &str, fields: Vec<(&str, Value)>) -> Sample {
        Sample {
            component: "Dome".into(),
            topic: topic.into(),
            kind,
            fields: fields.into_iter().map(|(n, v)| Field::new(n, v)).collect::<Vec<_>>().into(),
            ..Default::default()
        }
    }

    fn sends(out: Actions) -> Vec<serde_json::Value> {
        out.into_vec()
            .iter()
            .filter_map(|a| match Action::decode(a) {
                Action::Send(m) => Some(crate::json::parse_lenient(&m.text).unwrap()),
                _ => None,
            })
            .collect()
    }

    fn run(core: &mut CscCore, input: Input<'_>, now: f64) -> (Handled, Vec<serde_json::Value>) {
        let mut out = Actions::new();
        let h = core.handle(input, now, &mut out).unwrap();
        (h, sends(out))
    }

    #[test]
    fn event_is_sent_stored_and_returned() {
        let mut core = CscCore::new(&config()).unwrap();
        let s = sample(TopicKind::EVENT, "summaryState", vec![("summaryState", Value::Int(2))]);
        let (h, sent) = run(&mut core, Input::Sample(&s), T);
        assert!(matches!(&h, Handled::Event { name, .. } if name == "summaryState"));
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0]["data"][0]["data"]["summaryState"][0]["summaryState"]["value"], 2);
        assert!(core.stored("evt_summaryState").is_some());
    }

    #[test]
    fn telemetry_is_sent_on_ticks_and_goes_stale() {
        let mut cfg = config();
        cfg.settings.insert("heartbeat_timeout".into(), "1000".into());
        let mut core = CscCore::new(&cfg).unwrap();
        run(&mut core, Input::Start, T);
        let s = sample(TopicKind::TELEMETRY, "position", vec![("azimuth", Value::Float(1.5))]);
        let (_, sent) = run(&mut core, Input::Sample(&s), T + 0.5);
        assert!(sent.is_empty());
        let (_, sent) = run(&mut core, Input::Tick, T + 1.0);
        assert!(sent.is_empty(), "not due yet");
        let (_, sent) = run(&mut core, Input::Tick, T + 2.0);
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0]["category"], "telemetry");
        assert_eq!(sent[0]["data"][0]["data"]["position"]["azimuth"]["value"], 1.5);
        // Re-sent while fresh, at the cadence from start.
        assert_eq!(core.next_wake(), Some(T + 4.0));
        let (_, sent) = run(&mut core, Input::Tick, T + 30.0);
        assert_eq!(sent.len(), 1, "29.5 s after the sample: still fresh");
        let (_, sent) = run(&mut core, Input::Tick, T + 32.0);
        assert!(sent.is_empty(), "stale after 30 s (quirk 7 fixed)");
    }

    #[test]
    fn heartbeat_cadence_and_lost_counting() {
        let mut cfg = config();
        cfg.settings.insert("telemetry_period".into(), "1000".into());
        let mut core = CscCore::new(&cfg).unwrap();
        run(&mut core, Input::Start, T);
        assert_eq!(core.next_wake(), Some(T + 2.0));
        let (_, sent) = run(&mut core, Input::Tick, T + 2.0);
        assert_eq!(sent[0]["data"][0]["data"]["stream"]["lost"], 1);
        assert_eq!(sent[0]["data"][0]["data"]["stream"]["last_heartbeat_timestamp"], -1);
        let hb = sample(TopicKind::EVENT, "heartbeat", vec![("heartbeat", Value::Bool(true))]);
        let (_, sent) = run(&mut core, Input::Sample(&hb), T + 3.0);
        assert!(sent.is_empty(), "only 1 s since the last send");
        let (_, sent) = run(&mut core, Input::Sample(&hb), T + 4.0);
        assert_eq!(sent[0]["data"][0]["data"]["stream"]["lost"], 0);
        assert_eq!(sent[0]["data"][0]["data"]["stream"]["last_heartbeat_timestamp"], T + 4.0);
        // Host woke up 7 s late: three waits elapsed.
        let (_, sent) = run(&mut core, Input::Tick, T + 13.0);
        assert_eq!(sent[0]["data"][0]["data"]["stream"]["lost"], 4);
    }

    #[test]
    fn each_heartbeat_message_comes_with_its_lost_count_for_the_host() {
        let mut cfg = config();
        cfg.settings.insert("telemetry_period".into(), "1000".into());
        let mut core = CscCore::new(&cfg).unwrap();
        run(&mut core, Input::Start, T);
        let mut out = Actions::new();
        core.handle(Input::Tick, T + 6.0, &mut out).unwrap();
        let actions: Vec<Action> = out.into_vec().iter().map(Action::decode).collect();
        assert!(matches!(&actions[0], Action::Send(m) if m.csc == "Heartbeat"), "{actions:?}");
        assert_eq!(actions[1], Action::HeartbeatLost { component: "Dome".into(), index: 0, lost: 3 });
    }

    #[test]
    fn reply_rules() {
        let mut core = CscCore::new(&config()).unwrap();
        let s = sample(TopicKind::EVENT, "summaryState", vec![("summaryState", Value::Int(2))]);
        run(&mut core, Input::Sample(&s), T);
        let req = |csc: &str, idx: &str, name: &str| {
            format!(
                r#"{{"category": "initial_state", "data": [{{"csc": "{csc}", {idx} "data": {{"event_name": "{name}"}}}}]}}"#
            )
        };
        for (text, expect) in [
            (req("Dome", r#""salindex": 0,"#, "summaryState"), true),
            (req("Dome", "", "summaryState"), true),
            (req("Dome", r#""salindex": 0.0,"#, "summaryState"), true),
            (req("Dome", r#""salindex": "all","#, "summaryState"), false),
            (req("Dome", r#""salindex": "0","#, "summaryState"), false),
            (req("Dome", r#""salindex": 1,"#, "summaryState"), false),
            (req("Other", r#""salindex": 0,"#, "summaryState"), false),
            (req("Dome", r#""salindex": 0,"#, "mainDoorState"), false),
            (req("Dome", r#""salindex": 0,"#, "position"), false),
            (req("Dome", r#""salindex": 0,"#, "nothing"), false),
        ] {
            let (_, sent) = run(&mut core, Input::ManagerMessage(&text), T);
            assert_eq!(sent.len(), expect as usize, "{text}");
        }
        for bad in [
            "",
            "not json",
            "{}",
            r#"{"category": "initial_state"}"#,
            r#"{"category": "initial_state", "data": []}"#,
            r#"{"category": "initial_state", "data": [{"csc": "Dome", "stream": {"event_name": "summaryState"}}]}"#,
            r#"{"category": "initial_state", "data": [{"csc": "Dome", "data": {"event_name": 3}}]}"#,
        ] {
            let (h, sent) = run(&mut core, Input::ManagerMessage(bad), T);
            assert_eq!(h, Handled::Malformed, "{bad}");
            assert!(sent.is_empty());
        }
    }

    #[test]
    fn filters_and_warnings() {
        let mut cfg = config();
        cfg.periodic_data = Some(vec!["tel_position".into(), "evt_mainDoorState".into(), "bogus".into()]);
        cfg.asynchronous_data = Some(vec!["evt_summaryState".into(), "tel_nothing".into()]);
        let mut core = CscCore::new(&cfg).unwrap();
        let sets = core.topic_sets();
        assert_eq!(sets.periodic, vec!["tel_position", "evt_mainDoorState"]);
        assert_eq!(sets.asynchronous, vec!["evt_summaryState"]);
        assert!(!sets.heartbeat_monitor);
        let mut out = Actions::new();
        core.handle(Input::Start, T, &mut out).unwrap();
        let warnings =
            out.into_vec().iter().filter(|a| matches!(Action::decode(a), Action::Log { level: 30, .. })).count();
        assert_eq!(warnings, 2);
    }

    #[test]
    fn without_filters_every_telemetry_is_periodic_and_every_event_but_heartbeat_asynchronous() {
        let sets = CscCore::new(&config()).unwrap().topic_sets();
        assert_eq!(sets.periodic, vec!["tel_position"]);
        assert_eq!(sets.asynchronous, vec!["evt_summaryState", "evt_mainDoorState"]);
        assert!(sets.heartbeat_monitor);
    }

    #[test]
    fn an_absent_filter_option_means_every_listed_topic_of_its_kind() {
        let mut cfg = config();
        cfg.asynchronous_data = Some(vec!["tel_position".into(), "evt_summaryState".into()]);
        let sets = CscCore::new(&cfg).unwrap().topic_sets();
        assert_eq!(sets.periodic, vec!["tel_position"], "the remote's telemetry: only the listed");
        assert_eq!(sets.asynchronous, vec!["tel_position", "evt_summaryState"]);
        let mut cfg = config();
        cfg.periodic_data = Some(vec!["evt_mainDoorState".into(), "tel_position".into()]);
        let sets = CscCore::new(&cfg).unwrap().topic_sets();
        assert_eq!(sets.periodic, vec!["evt_mainDoorState", "tel_position"]);
        assert_eq!(sets.asynchronous, vec!["evt_mainDoorState"]);
    }

    #[test]
    fn snapshot_roundtrip_and_future_version_refused() {
        let mut core = CscCore::new(&config()).unwrap();
        run(&mut core, Input::Start, T);
        core.store_special("stream", "{\"x\": 1}".into());
        let s = sample(TopicKind::EVENT, "summaryState", vec![("summaryState", Value::Int(2))]);
        run(&mut core, Input::Sample(&s), T);
        let t = sample(TopicKind::TELEMETRY, "position", vec![("azimuth", Value::Float(f64::NAN))]);
        run(&mut core, Input::Sample(&t), T);
        let snap = core.snapshot();
        let mut other = CscCore::new(&config()).unwrap();
        other.restore(&snap).unwrap();
        assert_eq!(other.snapshot(), snap);
        let (_, a) = run(&mut core, Input::Connected, T + 1.0);
        let (_, b) = run(&mut other, Input::Connected, T + 1.0);
        assert_eq!(a, b);
        let (_, a) = run(&mut core, Input::Tick, T + 2.0);
        let (_, b) = run(&mut other, Input::Tick, T + 2.0);
        assert_eq!(a.len(), 2, "heartbeat and telemetry");
        assert_eq!(a, b);
        let mut v: serde_json::Value = serde_json::from_str(&snap).unwrap();
        v["version"] = 2.into();
        assert!(other.restore_value(&v).is_err());
        assert!(other.restore("{}").is_err());
    }
}
