//! The script objects of `scriptsStream` and the other small records the producer keeps per
//! script, with their wire text.

use std::collections::VecDeque;

use love_plugin_api::abi::Value;
use love_plugin_api::json::{write_f64, write_i64, write_str};
use serde::{Deserialize, Serialize};

/// A number that keeps the reference's int/float distinction on the wire: a script object's
/// timestamps start as the integer `0` and become floats once a `script` event sets them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(into = "NumRepr", from = "NumRepr")]
pub enum Num {
    /// Written without a decimal point.
    Int(i64),
    /// Written as Python's float repr (`0.0`, `12.5`, `NaN`).
    Float(f64),
}

/// Snapshot form of [`Num`]: JSON numbers keep int vs float (serde_json writes `1.0` for a
/// float), non-finite floats become strings (JSON has no NaN).
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum NumRepr {
    Int(i64),
    Float(f64),
    Text(String),
}

impl From<Num> for NumRepr {
    fn from(n: Num) -> Self {
        match n {
            Num::Int(i) => NumRepr::Int(i),
            Num::Float(f) if f.is_finite() => NumRepr::Float(f),
            Num::Float(f) => NumRepr::Text(
                if f.is_nan() {
                    "NaN"
                } else if f > 0.0 {
                    "Infinity"
                } else {
                    "-Infinity"
                }
                .to_string(),
            ),
        }
    }
}

impl From<NumRepr> for Num {
    fn from(r: NumRepr) -> Self {
        match r {
            NumRepr::Int(i) => Num::Int(i),
            NumRepr::Float(f) => Num::Float(f),
            NumRepr::Text(t) => Num::Float(match t.as_str() {
                "Infinity" => f64::INFINITY,
                "-Infinity" => f64::NEG_INFINITY,
                _ => f64::NAN,
            }),
        }
    }
}

impl Num {
    /// Append as JSON.
    pub fn write(&self, out: &mut String) {
        match self {
            Num::Int(i) => write_i64(out, *i),
            Num::Float(f) => write_f64(out, *f),
        }
    }

    /// A declared `double`/`float` field: always a float, as the reference's dataclass holds it.
    pub fn float_of(v: Option<&Value>) -> Num {
        Num::Float(v.and_then(Value::as_f64).unwrap_or(0.0))
    }

    /// A declared integer field: an integer.
    pub fn int_of(v: Option<&Value>) -> Num {
        Num::Int(v.and_then(Value::as_i64).unwrap_or(0))
    }
}

/// The `UNKNOWN` placeholder of a fresh script object.
pub const UNKNOWN: &str = "UNKNOWN";

/// One script object of `scriptsStream`. The fields the reference never updates (`remote`,
/// `setup`, `last_heartbeat_timestamp`, `lost_heartbeats`; quirk 16) are written as constants.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScriptInfo {
    /// The script's SAL index.
    pub index: i64,
    /// Script path.
    pub path: String,
    /// `standard` / `external` (or `UNKNOWN`).
    pub script_type: String,
    /// ScriptProcessState name.
    pub process_state: String,
    /// ScriptState name.
    pub script_state: String,
    /// `timestampConfigureEnd`.
    pub timestamp_configure_end: Num,
    /// `timestampConfigureStart`.
    pub timestamp_configure_start: Num,
    /// `timestampProcessEnd`.
    pub timestamp_process_end: Num,
    /// `timestampProcessStart`.
    pub timestamp_process_start: Num,
    /// `timestampRunStart`.
    pub timestamp_run_start: Num,
    /// From Script `metadata.duration`.
    pub expected_duration: Num,
    /// From Script `state.lastCheckpoint`.
    pub last_checkpoint: String,
    /// From Script `description`.
    pub description: String,
    /// From Script `description`.
    pub classname: String,
    /// From Script `description`.
    pub remotes: String,
    /// From Script `checkpoints.pause`.
    pub pause_checkpoints: String,
    /// From Script `checkpoints.stop`.
    pub stop_checkpoints: String,
    /// From Script `logLevel.level` (20 = INFO before any).
    pub log_level: Num,
}

impl ScriptInfo {
    /// The object the reference creates before any information arrives.
    pub fn empty(index: i64) -> Self {
        ScriptInfo {
            index,
            path: UNKNOWN.into(),
            script_type: UNKNOWN.into(),
            process_state: UNKNOWN.into(),
            script_state: UNKNOWN.into(),
            timestamp_configure_end: Num::Int(0),
            timestamp_configure_start: Num::Int(0),
            timestamp_process_end: Num::Int(0),
            timestamp_process_start: Num::Int(0),
            timestamp_run_start: Num::Int(0),
            expected_duration: Num::Int(0),
            last_checkpoint: String::new(),
            description: String::new(),
            classname: String::new(),
            remotes: String::new(),
            pause_checkpoints: String::new(),
            stop_checkpoints: String::new(),
            log_level: Num::Int(20),
        }
    }

    /// Append the object as JSON, keys in the reference's order.
    pub fn write(&self, out: &mut String) {
        out.push_str("{\"remote\": null, \"setup\": true, \"index\": ");
        write_i64(out, self.index);
        let s = |out: &mut String, key: &str, v: &str| {
            out.push_str(", \"");
            out.push_str(key);
            out.push_str("\": ");
            write_str(out, v);
        };
        let n = |out: &mut String, key: &str, v: &Num| {
            out.push_str(", \"");
            out.push_str(key);
            out.push_str("\": ");
            v.write(out);
        };
        s(out, "path", &self.path);
        s(out, "type", &self.script_type);
        s(out, "process_state", &self.process_state);
        s(out, "script_state", &self.script_state);
        n(out, "timestampConfigureEnd", &self.timestamp_configure_end);
        n(out, "timestampConfigureStart", &self.timestamp_configure_start);
        n(out, "timestampProcessEnd", &self.timestamp_process_end);
        n(out, "timestampProcessStart", &self.timestamp_process_start);
        n(out, "timestampRunStart", &self.timestamp_run_start);
        n(out, "expected_duration", &self.expected_duration);
        s(out, "last_checkpoint", &self.last_checkpoint);
        s(out, "description", &self.description);
        s(out, "classname", &self.classname);
        s(out, "remotes", &self.remotes);
        out.push_str(", \"last_heartbeat_timestamp\": 0, \"lost_heartbeats\": 0");
        s(out, "pause_checkpoints", &self.pause_checkpoints);
        s(out, "stop_checkpoints", &self.stop_checkpoints);
        n(out, "log_level", &self.log_level);
        out.push('}');
    }
}

/// The ScriptHeartbeats accounting of one script.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScriptHeartbeat {
    /// Consecutive rounds without a recent heartbeat.
    pub lost: u64,
    /// Local time of the last heartbeat sample; `-1.0` before the first (as the reference).
    pub last: f64,
}

impl Default for ScriptHeartbeat {
    fn default() -> Self {
        ScriptHeartbeat { lost: 0, last: -1.0 }
    }
}

impl ScriptHeartbeat {
    /// The `stream` payload of a ScriptHeartbeats message.
    pub fn payload(&self, script: i64) -> String {
        let mut p = String::with_capacity(96);
        p.push_str("{\"script_heartbeat\": {\"salindex\": ");
        write_i64(&mut p, script);
        p.push_str(", \"lost\": ");
        write_i64(&mut p, self.lost as i64);
        p.push_str(", \"last_heartbeat_timestamp\": ");
        write_f64(&mut p, self.last);
        p.push_str("}}");
        p
    }
}

/// The log messages kept for one script: converted FIELDS objects, oldest first, at most
/// `cap` (the oldest is dropped).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct LogBuffer {
    /// FIELDS JSON of each message, oldest first.
    pub messages: VecDeque<String>,
}

impl LogBuffer {
    /// Append, dropping the oldest beyond `cap`.
    pub fn push(&mut self, fields: String, cap: usize) {
        self.messages.push_back(fields);
        while self.messages.len() > cap {
            self.messages.pop_front();
        }
    }
}

/// One entry of the available scripts list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AvailableScript {
    /// The script path.
    pub path: String,
    /// Its configuration schema (empty until a configSchema event).
    pub schema: String,
}

/// Available scripts of one type, in first-seen order.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct AvailableList {
    /// The entries.
    pub scripts: Vec<AvailableScript>,
}

impl AvailableList {
    /// Whether `path` is known.
    pub fn contains(&self, path: &str) -> bool {
        self.scripts.iter().any(|s| s.path == path)
    }

    /// Add `path` with an empty schema if unknown.
    pub fn add(&mut self, path: &str) {
        if !self.contains(path) {
            self.scripts.push(AvailableScript { path: path.to_string(), schema: String::new() });
        }
    }

    /// Set the schema of `path`, adding it if unknown. Returns whether it was known.
    pub fn set_schema(&mut self, path: &str, schema: String) -> bool {
        match self.scripts.iter_mut().find(|s| s.path == path) {
            Some(s) => {
                s.schema = schema;
                true
            }
            None => {
                self.scripts.push(AvailableScript { path: path.to_string(), schema });
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_script_text_is_the_references() {
        let mut s = String::new();
        ScriptInfo::empty(100000).write(&mut s);
        assert_eq!(
            s,
            r#"{"remote": null, "setup": true, "index": 100000, "path": "UNKNOWN", "type": "UNKNOWN", "process_state": "UNKNOWN", "script_state": "UNKNOWN", "timestampConfigureEnd": 0, "timestampConfigureStart": 0, "timestampProcessEnd": 0, "timestampProcessStart": 0, "timestampRunStart": 0, "expected_duration": 0, "last_checkpoint": "", "description": "", "classname": "", "remotes": "", "last_heartbeat_timestamp": 0, "lost_heartbeats": 0, "pause_checkpoints": "", "stop_checkpoints": "", "log_level": 20}"#
        );
    }

    #[test]
    fn num_snapshot_keeps_int_float_and_non_finite() {
        let v = vec![Num::Int(0), Num::Float(0.0), Num::Float(12.5), Num::Float(f64::INFINITY)];
        let text = serde_json::to_string(&v).unwrap();
        assert_eq!(text, r#"[0,0.0,12.5,"Infinity"]"#);
        let back: Vec<Num> = serde_json::from_str(&text).unwrap();
        assert_eq!(back, v);
        let nan: Num = serde_json::from_str(r#""NaN""#).unwrap();
        assert!(matches!(nan, Num::Float(f) if f.is_nan()));
    }

    #[test]
    fn log_buffer_is_capped() {
        let mut b = LogBuffer::default();
        for i in 0..25 {
            b.push(i.to_string(), 20);
        }
        assert_eq!(b.messages.len(), 20);
        assert_eq!(b.messages.front().unwrap(), "5");
    }

    #[test]
    fn heartbeat_payload() {
        assert_eq!(
            ScriptHeartbeat { lost: 1, last: -1.0 }.payload(7),
            r#"{"script_heartbeat": {"salindex": 7, "lost": 1, "last_heartbeat_timestamp": -1.0}}"#
        );
    }
}
