//! Builders for the LOVE messages a producer sends (spec section b), so that no plugin writes
//! JSON envelopes by hand.

use crate::abi::Category;
use crate::json::{write_f64, write_i64, write_str};

/// A message ready for the manager, with the stream it is about (used by the host to keep only
/// the latest message per stream while the link is down).
#[derive(Debug, Clone, PartialEq)]
pub struct OutMessage {
    /// Coalescing category.
    pub category: Category,
    /// The envelope's `csc`.
    pub csc: String,
    /// The envelope's `salindex`.
    pub salindex: i64,
    /// The stream name inside `data`.
    pub stream: String,
    /// The JSON text.
    pub text: String,
}

/// How a data payload is wrapped: events are one-element lists, periodic data bare objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Payload {
    /// `[FIELDS]`
    List,
    /// `FIELDS`
    Object,
}

/// The `category` names of data messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataCategory {
    /// `"event"`
    Event,
    /// `"telemetry"`
    Telemetry,
}

impl DataCategory {
    fn name(self) -> &'static str {
        match self {
            DataCategory::Event => "event",
            DataCategory::Telemetry => "telemetry",
        }
    }

    fn coalescing(self) -> Category {
        match self {
            DataCategory::Event => Category::EVENT,
            DataCategory::Telemetry => Category::TELEMETRY,
        }
    }
}

/// The initial_state subscription message (`csc` is a component name or `"all"`).
pub fn subscription(csc: &str, now: f64) -> OutMessage {
    let mut text = String::with_capacity(140);
    text.push_str("{\"option\": \"subscribe\", \"category\": \"initial_state\", \"csc\": ");
    write_str(&mut text, csc);
    text.push_str(", \"salindex\": \"all\", \"stream\": \"all\", \"producer_snd\": ");
    write_f64(&mut text, now);
    text.push('}');
    OutMessage { category: Category::OTHER, csc: csc.to_string(), salindex: 0, stream: "initial_state".into(), text }
}

/// A data message: `{"category": C, "data": [{"csc": csc, "salindex": i, "data": {stream: P}}],
/// "producer_snd": now}` where `P` is `payload_json`, wrapped in a list for [`Payload::List`].
/// `metadata` (already JSON-encoded values) is appended at the top level, as the reference's
/// message builder does.
#[allow(clippy::too_many_arguments)]
pub fn data_message(
    category: DataCategory,
    csc: &str,
    salindex: i64,
    stream: &str,
    payload_json: &str,
    payload: Payload,
    now: f64,
    metadata: &[(String, String)],
) -> OutMessage {
    let mut text = String::with_capacity(payload_json.len() + 120);
    text.push_str("{\"category\": \"");
    text.push_str(category.name());
    text.push_str("\", \"data\": [{\"csc\": ");
    write_str(&mut text, csc);
    text.push_str(", \"salindex\": ");
    write_i64(&mut text, salindex);
    text.push_str(", \"data\": {");
    write_str(&mut text, stream);
    text.push_str(": ");
    if payload == Payload::List {
        text.push('[');
        text.push_str(payload_json);
        text.push(']');
    } else {
        text.push_str(payload_json);
    }
    text.push_str("}}], \"producer_snd\": ");
    write_f64(&mut text, now);
    for (k, v) in metadata {
        text.push_str(", ");
        write_str(&mut text, k);
        text.push_str(": ");
        text.push_str(v);
    }
    text.push('}');
    OutMessage { category: category.coalescing(), csc: csc.to_string(), salindex, stream: stream.to_string(), text }
}

/// An event message with a one-element list payload and no metadata: the common case.
pub fn event(csc: &str, salindex: i64, stream: &str, fields_json: &str, now: f64) -> OutMessage {
    data_message(DataCategory::Event, csc, salindex, stream, fields_json, Payload::List, now, &[])
}

/// A telemetry message with a bare-object payload and no metadata: the common case.
pub fn telemetry(csc: &str, salindex: i64, stream: &str, fields_json: &str, now: f64) -> OutMessage {
    data_message(DataCategory::Telemetry, csc, salindex, stream, fields_json, Payload::Object, now, &[])
}

/// The key order used by the Heartbeat stream, ScriptHeartbeats and Script log messages:
/// `{"category": "event", "producer_snd": snd, "data": [{"csc", "salindex", "data": {stream: P}}]}`.
/// `producer_snd` is written as an integer when `snd_int` is given (the reference's constant 0).
pub fn event_snd_first(csc: &str, salindex: i64, stream: &str, payload_json: &str, snd: SndStamp) -> OutMessage {
    let mut text = String::with_capacity(payload_json.len() + 120);
    text.push_str("{\"category\": \"event\", \"producer_snd\": ");
    match snd {
        SndStamp::Now(now) => write_f64(&mut text, now),
        SndStamp::Zero => text.push('0'),
    }
    text.push_str(", \"data\": [{\"csc\": ");
    write_str(&mut text, csc);
    text.push_str(", \"salindex\": ");
    write_i64(&mut text, salindex);
    text.push_str(", \"data\": {");
    write_str(&mut text, stream);
    text.push_str(": ");
    text.push_str(payload_json);
    text.push_str("}}]}");
    OutMessage { category: Category::EVENT, csc: csc.to_string(), salindex, stream: stream.to_string(), text }
}

/// The `producer_snd` of [`event_snd_first`] messages.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SndStamp {
    /// The current time.
    Now(f64),
    /// The integer 0 (ScriptHeartbeats, Script log messages).
    Zero,
}

/// The Heartbeat stream message for a monitored component (spec section c).
/// `last_heartbeat` is `None` before any heartbeat (written as the integer `-1`).
pub fn heartbeat(csc: &str, salindex: i64, lost: u64, last_heartbeat: Option<f64>, now: f64) -> OutMessage {
    let mut payload = String::with_capacity(120);
    payload.push_str("{\"csc\": ");
    write_str(&mut payload, csc);
    payload.push_str(", \"salindex\": ");
    write_i64(&mut payload, salindex);
    payload.push_str(", \"lost\": ");
    write_i64(&mut payload, lost as i64);
    payload.push_str(", \"last_heartbeat_timestamp\": ");
    match last_heartbeat {
        Some(t) => write_f64(&mut payload, t),
        None => payload.push_str("-1"),
    }
    payload.push_str(", \"max_lost_heartbeats\": 5}");
    let mut msg = event_snd_first("Heartbeat", 0, "stream", &payload, SndStamp::Now(now));
    // Coalesce per monitored component, not on the shared Heartbeat stream.
    msg.stream = format!("stream:{csc}:{salindex}");
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscription_matches_reference_text() {
        let m = subscription("ATDome", 1700000000.5);
        assert_eq!(
            m.text,
            r#"{"option": "subscribe", "category": "initial_state", "csc": "ATDome", "salindex": "all", "stream": "all", "producer_snd": 1700000000.5}"#
        );
    }

    #[test]
    fn event_envelope_matches_reference_text() {
        let m = event("ATDome", 0, "summaryState", "{}", 1.5);
        assert_eq!(
            m.text,
            r#"{"category": "event", "data": [{"csc": "ATDome", "salindex": 0, "data": {"summaryState": [{}]}}], "producer_snd": 1.5}"#
        );
        assert_eq!(m.category, Category::EVENT);
    }

    #[test]
    fn heartbeat_matches_reference_shape() {
        let m = heartbeat("ATDome", 0, 1, None, 2.5);
        assert_eq!(
            m.text,
            r#"{"category": "event", "producer_snd": 2.5, "data": [{"csc": "Heartbeat", "salindex": 0, "data": {"stream": {"csc": "ATDome", "salindex": 0, "lost": 1, "last_heartbeat_timestamp": -1, "max_lost_heartbeats": 5}}}]}"#
        );
    }
}
