//! The `watcher` producer plugin (spec section f): the generic CSC producer for `Watcher`
//! ([`CscCore`]) plus the alarms stream.
//!
//! - Every `alarm` event is forwarded generically (`csc: "Watcher"`, stream `alarm`, a
//!   one-element list of FIELDS), stored as the last `evt_alarm`, and its FIELDS object is put
//!   into a table keyed by the alarm name (`FIELDS.name.value`): a later alarm with the same
//!   name replaces its entry in place (keeping its position); entries are never removed (the
//!   set of alarm names is bounded by the Watcher's rules).
//! - The alarms stream `{"alarms": {NAME: FIELDS, …}}` (csc `Watcher`, salindex 0, stream
//!   `stream`, bare object) is sent first in initial data, as the reply to a request for
//!   `stream`, and, **unlike the reference** (quirk 10 fixed), pushed right after every alarm
//!   event that changed it, so a frontend subscribed to `event-Watcher-0-stream` sees alarms
//!   change without re-subscribing (the LOVE-frontend replaces its list with each stream
//!   message, so the push is compatible). Before any alarm it is `{"alarms": {}}`.
//! - The Heartbeat stream, the other Watcher events, initial data and the reply rules are the
//!   core's.

use love_plugin_api::convert::field;
use love_plugin_api::csc::{CscCore, Handled};
use love_plugin_api::json::write_str;
use love_plugin_api::sdk::{Actions, Input, PluginError, ProducerConfig, ProducerLogic};
use serde_json::Value as J;

/// The snapshot format version of this plugin.
const SNAPSHOT_VERSION: u64 = 1;

/// The name of the special stream.
pub const STREAM: &str = "stream";

/// The Watcher producer.
#[derive(Debug, Clone)]
pub struct WatcherProducer {
    core: CscCore,
    /// (alarm name, FIELDS JSON) in first-seen order.
    alarms: Vec<(String, String)>,
}

impl WatcherProducer {
    /// Build the producer from its configuration (component `Watcher`).
    pub fn create(cfg: ProducerConfig) -> Result<Self, PluginError> {
        let core = CscCore::new(&cfg)?;
        let mut p = WatcherProducer { core, alarms: Vec::new() };
        p.store_stream();
        Ok(p)
    }

    /// The core, for inspection.
    pub fn core(&self) -> &CscCore {
        &self.core
    }

    /// The alarms table: (name, FIELDS JSON) in first-seen order.
    pub fn alarms(&self) -> &[(String, String)] {
        &self.alarms
    }

    /// The alarms stream payload `{"alarms": {…}}`.
    pub fn stream_payload(&self) -> String {
        let mut s = String::with_capacity(16 + self.alarms.iter().map(|(n, f)| n.len() + f.len() + 6).sum::<usize>());
        s.push_str("{\"alarms\": {");
        for (i, (name, fields)) in self.alarms.iter().enumerate() {
            if i > 0 {
                s.push_str(", ");
            }
            write_str(&mut s, name);
            s.push_str(": ");
            s.push_str(fields);
        }
        s.push_str("}}");
        s
    }

    fn store_stream(&mut self) {
        let payload = self.stream_payload();
        self.core.store_special(STREAM, payload);
    }

    /// Record an alarm's FIELDS under its name; returns whether the table changed.
    fn record(&mut self, name: &str, fields: String) -> bool {
        match self.alarms.iter_mut().find(|(n, _)| n == name) {
            Some((_, f)) if *f == fields => false,
            Some((_, f)) => {
                *f = fields;
                true
            }
            None => {
                self.alarms.push((name.to_string(), fields));
                true
            }
        }
    }
}

impl ProducerLogic for WatcherProducer {
    fn handle(&mut self, input: Input<'_>, now: f64, out: &mut Actions) -> Result<(), PluginError> {
        let handled = self.core.handle(input, now, out)?;
        if let (Handled::Event { name, fields }, Input::Sample(sample)) = (handled, input) {
            if name == "alarm" {
                match field(sample, "name").and_then(|v| v.as_str()) {
                    Some(alarm) => {
                        if self.record(alarm, fields) {
                            self.store_stream();
                            // Quirk 10 fixed: push the alarms stream when it changes.
                            self.core.send_special(STREAM, now, out);
                        }
                    }
                    None => out.log(
                        love_plugin_api::abi::LogLevel::WARNING,
                        "Watcher alarm event without a name field; not added to the alarms stream",
                    ),
                }
            }
        }
        Ok(())
    }

    fn snapshot(&self) -> Result<String, PluginError> {
        let alarms: Vec<J> =
            self.alarms.iter().map(|(n, f)| J::Array(vec![J::String(n.clone()), J::String(f.clone())])).collect();
        Ok(serde_json::json!({"version": SNAPSHOT_VERSION, "core": self.core.snapshot_value(), "alarms": alarms})
            .to_string())
    }

    fn restore(&mut self, snapshot: &str) -> Result<(), PluginError> {
        let (_, v) = love_plugin_api::snapshot::parse_versioned("watcher", snapshot, SNAPSHOT_VERSION)?;
        let mut alarms = Vec::new();
        for entry in
            v.get("alarms").and_then(J::as_array).ok_or_else(|| PluginError::new("watcher snapshot without alarms"))?
        {
            match entry.as_array().map(|a| a.as_slice()) {
                Some([J::String(n), J::String(f)]) => alarms.push((n.clone(), f.clone())),
                _ => return Err(PluginError::new("invalid watcher snapshot alarm entry")),
            }
        }
        let core = v.get("core").ok_or_else(|| PluginError::new("watcher snapshot without core"))?;
        let mut restored = self.core.clone();
        restored.restore_value(core)?;
        self.core = restored;
        self.alarms = alarms;
        self.store_stream();
        Ok(())
    }
}

love_plugin_api::export_plugin! {
    name: "watcher",
    version: env!("CARGO_PKG_VERSION"),
    producer_type: "watcher",
    claims: ["Watcher"],
    create: WatcherProducer::create,
}
