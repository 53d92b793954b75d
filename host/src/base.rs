//! The built-in `base` producer: the reference's `LoveProducerBase` as the factory creates it
//! for a name that is not a known CSC (spec section g, "base": no SAL; sends subscriptions;
//! stored samples and replies in the old `stream` form).
//!
//! What it does:
//!
//! - [`Input::Register`]: the initial_state subscriptions for `all`, then its name.
//! - [`Input::Connected`]: every stored sample, in first-stored order, as
//!   `{"category": "event", "data": [SAMPLE], "producer_snd": now}`.
//! - Generic data ([`BaseProducer::handle_data`], the reference's
//!   `handle_asynchronous_data_callback`): a JSON object with a `name` key is stored under that
//!   name and sent at once as `{"category": "event", "data": [OBJECT], "producer_snd": now}`.
//!   A SAL sample, should the host ever route one to a base producer, is turned into such an
//!   object (`{"name": topic, field: value, …}`) and handled the same way (category
//!   `telemetry` for telemetry topics).
//! - initial_state requests in the old form `{"data": [{"csc": …, "salindex": …, "stream":
//!   {"event_name": NAME}}]}`: answered with the stored sample NAME when `data[0].csc` (if
//!   present) is the producer's name, `stream` is an object and every value of it is a stored
//!   name (the reference's `has_matched_metadata` + `is_data_stream_stored`; `salindex` is not
//!   compared because a factory-made producer's metadata holds only `csc`).
//!
//! Deliberate differences from the reference (golden `base.jsonl`):
//!
//! - **Quirk 1, the crash**: the reference indexes `data[0]["stream"]` and raises `KeyError` on
//!   the manager's real request form (`data[0].data.event_name`), which ends its process. Here
//!   any request that is not in the old form (or is malformed in any way) gets no reply and no
//!   error, only a debug log line.
//! - **Quirk 1, the metadata leak**: the reference's `has_matched_metadata` writes
//!   `csc = <name>` into the message builder's metadata dict while examining the first request,
//!   so from then on every data message it sends carries a top-level `"csc"` (golden step 3),
//!   including the very reply to that first request (step 1), while messages sent before any
//!   request do not. We never add metadata: every message has exactly the keys `category`,
//!   `data`, `producer_snd`, like the messages of every other producer type made by the
//!   factory (their metadata is empty, spec section b). We chose this over "always add `csc`"
//!   because the manager routes on `category` and `data[0]` only, so the extra key carries no
//!   information; because the output must not depend on whether some request has been seen
//!   (which a restart or hot reload would change); and because it keeps one envelope shape for
//!   all producers.

use love_plugin_api::abi::{Category, LogLevel, Sample, TopicKind};
use love_plugin_api::json::{write_f64, write_str, write_value};
use love_plugin_api::message::{self, OutMessage};
use love_plugin_api::sdk::{Actions, Input, PluginError, ProducerConfig, ProducerLogic};
use serde_json::Value as J;

/// The snapshot format version.
const SNAPSHOT_VERSION: u64 = 1;

/// The built-in `base` producer. See the [module documentation](self).
#[derive(Debug, Clone)]
pub struct BaseProducer {
    name: String,
    /// Stored samples (JSON text) by name, in first-stored order (replacing keeps the
    /// position). Kept as text so that non-finite floats stay `NaN`/`Infinity` on the wire.
    samples: Vec<(String, String)>,
}

/// Build a base producer from its configuration (only the component name is used).
pub fn create(cfg: ProducerConfig) -> Result<BaseProducer, PluginError> {
    BaseProducer::new(&cfg.component)
}

impl BaseProducer {
    /// A base producer for `name`.
    pub fn new(name: &str) -> Result<Self, PluginError> {
        if name.is_empty() {
            return Err(PluginError::new("the base producer needs a component name"));
        }
        Ok(BaseProducer { name: name.to_string(), samples: Vec::new() })
    }

    /// The component name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Store `sample` under `name` without sending it (the reference's `store_samples`).
    pub fn store_sample(&mut self, name: &str, sample: J) {
        let mut text = String::new();
        write_value(&mut text, &sample);
        self.store_text(name, text);
    }

    fn store_text(&mut self, name: &str, sample: String) {
        match self.samples.iter_mut().find(|(k, _)| k == name) {
            Some((_, v)) => *v = sample,
            None => self.samples.push((name.to_string(), sample)),
        }
    }

    /// The stored sample `name` (JSON text).
    pub fn sample(&self, name: &str) -> Option<&str> {
        self.samples.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// Generic data (the reference's `handle_asynchronous_data_callback`): an object with a
    /// string `name` is stored under it and sent with `category`. Anything else is refused.
    pub fn handle_data(&mut self, data: J, category: &str, now: f64, out: &mut Actions) -> Result<(), PluginError> {
        let name = match data.get("name") {
            Some(J::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => return Err(PluginError::new("base producer data must be an object with a \"name\" key")),
        };
        if !data.is_object() {
            return Err(PluginError::new("base producer data must be an object"));
        }
        let mut text = String::new();
        write_value(&mut text, &data);
        self.send_text(category, name, text, now, out);
        Ok(())
    }

    fn send_text(&mut self, category: &str, name: String, data: String, now: f64, out: &mut Actions) {
        out.send(self.message(category, &name, &data, now));
        self.store_text(&name, data);
    }

    fn message(&self, category: &str, stream: &str, data: &str, now: f64) -> OutMessage {
        let mut text = String::with_capacity(128);
        text.push_str("{\"category\": ");
        write_str(&mut text, category);
        text.push_str(", \"data\": [");
        text.push_str(data);
        text.push_str("], \"producer_snd\": ");
        write_f64(&mut text, now);
        text.push('}');
        let coalesce = match category {
            "event" => Category::EVENT,
            "telemetry" => Category::TELEMETRY,
            _ => Category::OTHER,
        };
        OutMessage { category: coalesce, csc: self.name.clone(), salindex: 0, stream: stream.to_string(), text }
    }

    /// The reply to an initial_state request in the old `stream` form, if the reference would
    /// answer it; `None` for every other message (quirk 1 fixed: never an error).
    pub fn reply_to(&self, text: &str) -> Option<(&str, &str)> {
        let v: J = serde_json::from_str(text).ok()?;
        let d0 = v.get("data")?.as_array()?.first()?.as_object()?;
        if let Some(csc) = d0.get("csc") {
            if csc.as_str() != Some(self.name.as_str()) {
                return None;
            }
        }
        let stream = d0.get("stream")?.as_object()?;
        let mut names = stream.values().map(|n| n.as_str());
        let first = names.next()??;
        if !stream.values().all(|n| n.as_str().is_some_and(|n| self.sample(n).is_some())) {
            return None;
        }
        self.samples.iter().find(|(k, _)| k == first).map(|(k, v)| (k.as_str(), v.as_str()))
    }

    fn sample_as_data(sample: &Sample) -> String {
        let mut text = String::from("{\"name\": ");
        write_str(&mut text, &sample.topic);
        for f in sample.fields.iter() {
            text.push_str(", ");
            write_str(&mut text, &f.name);
            text.push_str(": ");
            love_plugin_api::convert::write_value(&mut text, &f.value);
        }
        text.push('}');
        text
    }
}

impl ProducerLogic for BaseProducer {
    fn handle(&mut self, input: Input<'_>, now: f64, out: &mut Actions) -> Result<(), PluginError> {
        match input {
            Input::Register => {
                out.send(message::subscription("all", now));
                out.send(message::subscription(&self.name, now));
            }
            Input::Connected => {
                for (name, data) in &self.samples {
                    out.send(self.message("event", name, data, now));
                }
            }
            Input::ManagerMessage(text) => match self.reply_to(text) {
                Some((name, sample)) => out.send(self.message("event", name, sample, now)),
                None => out.log(LogLevel::DEBUG, format!("{}: no reply to {text}", self.name)),
            },
            Input::Sample(s) => {
                let category = if s.kind == TopicKind::TELEMETRY { "telemetry" } else { "event" };
                self.send_text(category, s.topic.to_string(), Self::sample_as_data(s), now, out);
            }
            _ => {}
        }
        Ok(())
    }

    fn snapshot(&self) -> Result<String, PluginError> {
        let samples: Vec<J> =
            self.samples.iter().map(|(k, v)| J::Array(vec![J::String(k.clone()), J::String(v.clone())])).collect();
        Ok(serde_json::json!({"version": SNAPSHOT_VERSION, "name": self.name, "samples": samples}).to_string())
    }

    fn restore(&mut self, snapshot: &str) -> Result<(), PluginError> {
        let (_, v) = love_plugin_api::snapshot::parse_versioned("base", snapshot, SNAPSHOT_VERSION)?;
        let mut samples = Vec::new();
        for entry in
            v.get("samples").and_then(J::as_array).ok_or_else(|| PluginError::new("base snapshot without samples"))?
        {
            match entry.as_array().map(|a| a.as_slice()) {
                Some([J::String(k), J::String(data)]) => samples.push((k.clone(), data.clone())),
                _ => return Err(PluginError::new("invalid base snapshot entry")),
            }
        }
        self.samples = samples;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    //! Conformance with golden `base.jsonl` (and the builder cases of `message.jsonl`), through
    //! the SDK's test driver.
    use super::*;
    use love_plugin_api::driver::TestDriver;

    const CLOCK: f64 = 1_700_000_000.5;

    fn golden(file: &str) -> Vec<J> {
        let path = crate::testutil::golden_path(file);
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Parse an output text, replacing the `"<producer_snd>"` placeholder with the clock.
    fn expected(text: &str) -> J {
        let mut v = love_plugin_api::json::parse_lenient(text).unwrap();
        if let Some(m) = v.as_object_mut() {
            if m.get("producer_snd") == Some(&J::String("<producer_snd>".into())) {
                m.insert("producer_snd".into(), serde_json::json!(CLOCK));
            }
        }
        v
    }

    fn parsed(texts: &[String]) -> Vec<J> {
        texts.iter().map(|t| love_plugin_api::json::parse_lenient(t).unwrap()).collect()
    }

    fn keys(v: &J) -> Vec<String> {
        v.as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default()
    }

    fn outputs(step: &J) -> Vec<J> {
        step["outputs"].as_array().unwrap().iter().map(|o| expected(o.as_str().unwrap())).collect()
    }

    fn driver() -> (TestDriver, BaseProducer) {
        let mut p = create(ProducerConfig { component: "UnitTest1".into(), ..Default::default() }).unwrap();
        // The harness stored this sample directly, as the reference's unit tests do.
        p.store_sample("summaryState", serde_json::json!({"summaryState": 4}));
        (TestDriver::new(p.clone()), p)
    }

    #[test]
    fn golden_base_jsonl() {
        let steps = golden("base.jsonl");
        assert_eq!(steps.len(), 5);
        let (mut d, mut direct) = driver();

        // Step 0: subscriptions, `all` then the name, same keys in the same order.
        let sent = parsed(&d.sent(Input::Register, CLOCK).unwrap());
        let want = outputs(&steps[0]);
        assert_eq!(sent, want);
        for (a, b) in sent.iter().zip(&want) {
            assert_eq!(keys(a), keys(b));
        }

        // Step 1: old `stream` form request. Reply content identical; quirk 1 (metadata leak)
        // fixed: no top-level `csc`.
        let msg = steps[1]["input"]["manager_message"].to_string();
        let sent = parsed(&d.manager(&msg, CLOCK).unwrap());
        let mut want = outputs(&steps[1]);
        assert_eq!(want[0]["csc"], "UnitTest1", "the reference leaks csc into metadata");
        want[0].as_object_mut().unwrap().remove("csc");
        assert_eq!(sent, want);
        assert_eq!(keys(&sent[0]), ["category", "data", "producer_snd"]);

        // Step 2: the reference's metadata after the request is {"csc": "UnitTest1"}; ours
        // stays empty (quirk 1), which step 3 shows on the wire.
        assert_eq!(outputs(&steps[2]), vec![serde_json::json!({"csc": "UnitTest1"})]);

        // Step 3: generic data after that: same message minus the leaked `csc`.
        let mut out = Actions::new();
        direct.handle_data(serde_json::json!({"name": "x", "value": 1}), "event", CLOCK, &mut out).unwrap();
        let sent: Vec<J> =
            out.into_vec().iter().map(|a| love_plugin_api::json::parse_lenient(a.text.as_str()).unwrap()).collect();
        let mut want = outputs(&steps[3]);
        want[0].as_object_mut().unwrap().remove("csc");
        assert_eq!(sent, want);
        assert_eq!(keys(&sent[0]), ["category", "data", "producer_snd"]);

        // Step 4: the manager's real form crashed the reference (KeyError: 'stream', quirk 1).
        // Ours: no reply and no error.
        assert_eq!(steps[4]["error"], "KeyError: 'stream'");
        let msg = steps[4]["input"]["manager_message"].to_string();
        assert_eq!(d.manager(&msg, CLOCK).unwrap(), Vec::<String>::new());
        // And the producer keeps working.
        assert_eq!(d.manager(&steps[1]["input"]["manager_message"].to_string(), CLOCK).unwrap().len(), 1);
    }

    #[test]
    fn old_form_rules_and_malformed_requests() {
        let (mut d, _) = driver();
        let req = |d0: &str| format!(r#"{{"category": "initial_state", "data": [{d0}]}}"#);
        for (text, replies) in [
            (req(r#"{"csc": "UnitTest1", "salindex": 0, "stream": {"event_name": "summaryState"}}"#), 1),
            (req(r#"{"csc": "UnitTest1", "salindex": 5, "stream": {"event_name": "summaryState"}}"#), 1),
            (req(r#"{"stream": {"event_name": "summaryState"}}"#), 1),
            (req(r#"{"csc": "NotTest", "salindex": 0, "stream": {"event_name": "summaryState"}}"#), 0),
            (req(r#"{"csc": "UnitTest1", "stream": {"event_name": "notSummaryState"}}"#), 0),
            (req(r#"{"csc": "UnitTest1", "stream": {"a": "summaryState", "b": "nope"}}"#), 0),
            (req(r#"{"csc": "UnitTest1", "stream": {}}"#), 0),
            (req(r#"{"csc": "UnitTest1", "stream": "summaryState"}"#), 0),
            (req(r#"{"csc": "UnitTest1", "stream": {"event_name": ["summaryState"]}}"#), 0),
            (req(r#"{"csc": "UnitTest1", "data": {"event_name": "summaryState"}}"#), 0),
            (req("1"), 0),
            (r#"{"category": "initial_state"}"#.to_string(), 0),
            ("not json at all".to_string(), 0),
            (String::new(), 0),
        ] {
            assert_eq!(d.manager(&text, CLOCK).unwrap().len(), replies, "{text}");
        }
    }

    #[test]
    fn initial_data_snapshot_and_samples() {
        let (mut d, _) = driver();
        let sent = parsed(&d.sent(Input::Connected, CLOCK).unwrap());
        assert_eq!(
            sent,
            vec![serde_json::json!({"category": "event", "data": [{"summaryState": 4}], "producer_snd": CLOCK})]
        );
        let sample = Sample {
            component: "UnitTest1".into(),
            topic: "position".into(),
            kind: TopicKind::TELEMETRY,
            fields: vec![love_plugin_api::abi::Field::new("x", love_plugin_api::abi::Value::Float(f64::NAN))].into(),
            ..Default::default()
        };
        let sent = d.sample(&sample, CLOCK).unwrap();
        assert_eq!(
            sent,
            vec![
                r#"{"category": "telemetry", "data": [{"name": "position", "x": NaN}], "producer_snd": 1700000000.5}"#
            ]
        );
        let snap = d.snapshot().unwrap();
        let mut fresh = TestDriver::new(BaseProducer::new("UnitTest1").unwrap());
        fresh.restore(&snap).unwrap();
        assert_eq!(fresh.sent(Input::Connected, CLOCK).unwrap().len(), 2);
        assert!(fresh.restore(r#"{"version": 2, "samples": []}"#).is_err());
        assert!(create(ProducerConfig::default()).is_err());
    }

    /// message.jsonl: the subscription builder, the NumpyEncoder value rendering and the
    /// dispatch decisions (a message without `category: "initial_state"` never gets a reply).
    #[test]
    fn golden_message_jsonl_applicable_cases() {
        let steps = golden("message.jsonl");
        let step = |n: usize| steps.iter().find(|s| s["step"] == n).unwrap();
        for (n, csc) in [(0, "ATDome"), (1, "all"), (2, "ScriptQueueState")] {
            let m = message::subscription(csc, CLOCK);
            let got = love_plugin_api::json::parse_lenient(&m.text).unwrap();
            let want = outputs(step(n));
            assert_eq!(vec![got.clone()], want);
            assert_eq!(keys(&got), keys(&want[0]));
        }
        // Step 3/4: data envelopes; step 4 carries metadata, appended after producer_snd.
        let m = message::data_message(
            message::DataCategory::Telemetry,
            "x",
            0,
            "s",
            "{}",
            message::Payload::List,
            CLOCK,
            &[],
        );
        assert_eq!(keys(&love_plugin_api::json::parse_lenient(&m.text).unwrap()), keys(&outputs(step(3))[0]));
        let mut text = String::from("{\"category\": \"event\", \"data\": [{\"a\": 1}], \"producer_snd\": ");
        write_f64(&mut text, CLOCK);
        for (k, v) in [("new_metadata", "\"test_value\""), ("salindex", "3")] {
            text.push_str(", ");
            write_str(&mut text, k);
            text.push_str(": ");
            text.push_str(v);
        }
        text.push('}');
        let got = love_plugin_api::json::parse_lenient(&text).unwrap();
        assert_eq!(vec![got.clone()], outputs(step(4)));
        assert_eq!(keys(&got), keys(&outputs(step(4))[0]));
        // Step 5: values as the NumpyEncoder writes them, byte for byte.
        use love_plugin_api::abi::Value;
        let mut text = String::from("{");
        for (i, (k, v)) in [
            ("arr", Value::FloatArray(vec![1.5, 2.0].into())),
            ("i", Value::Int(7)),
            ("b", Value::Bool(true)),
            ("nan", Value::Float(f64::NAN)),
            ("inf", Value::Float(f64::INFINITY)),
            ("u", Value::Str("café".into())),
        ]
        .into_iter()
        .enumerate()
        {
            if i > 0 {
                text.push_str(", ");
            }
            write_str(&mut text, k);
            text.push_str(": ");
            love_plugin_api::convert::write_value(&mut text, &v);
        }
        text.push('}');
        assert_eq!(text, step(5)["outputs"][0].as_str().unwrap());
        // Steps 9-13: only `category: "initial_state"` needs a reply; the others are ignored
        // (and a bare initial_state without data gets no reply and no error).
        let (mut d, _) = driver();
        for n in 9..=13 {
            let msg = step(n)["input"]["manager_message"].to_string();
            assert_eq!(d.manager(&msg, CLOCK).unwrap(), Vec::<String>::new(), "step {n}");
        }
    }
}
