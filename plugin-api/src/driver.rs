//! A test driver that runs any producer in-process, without the host, from a list of inputs.
//!
//! ```
//! use love_plugin_api::driver::TestDriver;
//! use love_plugin_api::sdk::{Actions, Input, PluginError, ProducerConfig, ProducerLogic};
//!
//! struct Echo;
//! impl ProducerLogic for Echo {
//!     fn handle(&mut self, input: Input<'_>, now: f64, out: &mut Actions) -> Result<(), PluginError> {
//!         if let Input::Register = input {
//!             out.send(love_plugin_api::message::subscription("Echo", now));
//!         }
//!         Ok(())
//!     }
//!     fn snapshot(&self) -> Result<String, PluginError> { Ok(String::new()) }
//!     fn restore(&mut self, _: &str) -> Result<(), PluginError> { Ok(()) }
//! }
//!
//! let mut driver = TestDriver::new(Echo);
//! let sent = driver.sent(love_plugin_api::sdk::Input::Register, 1.5).unwrap();
//! assert_eq!(sent.len(), 1);
//! assert!(sent[0].contains("\"csc\": \"Echo\""));
//! ```

use abi_stable::std_types::{RResult, RStr};

use crate::abi::{ProducerBox, Sample};
use crate::sdk::{into_producer_box, Action, Input, PluginError, ProducerConfig, ProducerLogic};

/// Drives one producer through the same stable boundary the host uses (encode, call, decode),
/// so a test exercises exactly what runs in production, panics caught included.
pub struct TestDriver {
    producer: ProducerBox,
    /// The time of the last input.
    pub now: f64,
    /// Every action returned so far, in order.
    pub history: Vec<Action>,
}

impl TestDriver {
    /// Drive a producer value.
    pub fn new<P: ProducerLogic>(producer: P) -> Self {
        Self::from_box(into_producer_box(producer))
    }

    /// Drive a producer built by a plugin's create function from `config`.
    pub fn create<P: ProducerLogic>(
        create: fn(ProducerConfig) -> Result<P, PluginError>,
        config: &ProducerConfig,
    ) -> Result<Self, PluginError> {
        let text = serde_json::to_string(config)?;
        match crate::sdk::create_guarded(RStr::from(text.as_str()), create) {
            RResult::ROk(b) => Ok(Self::from_box(b)),
            RResult::RErr(e) => Err(PluginError(e.to_string())),
        }
    }

    /// Drive an already boxed producer (for example one created by a loaded plugin).
    pub fn from_box(producer: ProducerBox) -> Self {
        TestDriver { producer, now: 0.0, history: Vec::new() }
    }

    /// Feed one input at time `now`; returns its decoded actions.
    pub fn input(&mut self, input: Input<'_>, now: f64) -> Result<Vec<Action>, PluginError> {
        self.now = now;
        let msg = input.encode();
        match self.producer.handle(&msg, now) {
            RResult::ROk(actions) => {
                let decoded: Vec<Action> = actions.iter().map(Action::decode).collect();
                self.history.extend(decoded.iter().cloned());
                Ok(decoded)
            }
            RResult::RErr(e) => Err(PluginError(e.to_string())),
        }
    }

    /// Feed a list of inputs, each with its `now`, in order, and return all their actions in
    /// order. Stops at the first error.
    ///
    /// ```
    /// # use love_plugin_api::sdk::{Actions, Input, PluginError, ProducerLogic, Action};
    /// # use love_plugin_api::driver::TestDriver;
    /// # struct Echo;
    /// # impl ProducerLogic for Echo {
    /// #     fn handle(&mut self, input: Input<'_>, now: f64, out: &mut Actions) -> Result<(), PluginError> {
    /// #         if let Input::Tick = input { out.wake_at(now + 1.0) }
    /// #         Ok(())
    /// #     }
    /// #     fn snapshot(&self) -> Result<String, PluginError> { Ok(String::new()) }
    /// #     fn restore(&mut self, _: &str) -> Result<(), PluginError> { Ok(()) }
    /// # }
    /// let mut driver = TestDriver::new(Echo);
    /// let actions = driver.run([(Input::Start, 0.0), (Input::Tick, 1.0), (Input::Tick, 2.0)]).unwrap();
    /// assert_eq!(actions, [Action::WakeAt(2.0), Action::WakeAt(3.0)]);
    /// ```
    pub fn run<'a>(&mut self, inputs: impl IntoIterator<Item = (Input<'a>, f64)>) -> Result<Vec<Action>, PluginError> {
        let mut all = Vec::new();
        for (input, now) in inputs {
            all.extend(self.input(input, now)?);
        }
        Ok(all)
    }

    /// Feed one input and return only the texts of the messages sent.
    pub fn sent(&mut self, input: Input<'_>, now: f64) -> Result<Vec<String>, PluginError> {
        Ok(self
            .input(input, now)?
            .into_iter()
            .filter_map(|a| match a {
                Action::Send(m) => Some(m.text),
                _ => None,
            })
            .collect())
    }

    /// Feed a SAL sample.
    pub fn sample(&mut self, sample: &Sample, now: f64) -> Result<Vec<String>, PluginError> {
        self.sent(Input::Sample(sample), now)
    }

    /// Feed a manager message.
    pub fn manager(&mut self, text: &str, now: f64) -> Result<Vec<String>, PluginError> {
        self.sent(Input::ManagerMessage(text), now)
    }

    /// The producer's snapshot.
    pub fn snapshot(&self) -> Result<String, PluginError> {
        match self.producer.snapshot() {
            RResult::ROk(s) => Ok(s.into()),
            RResult::RErr(e) => Err(PluginError(e.to_string())),
        }
    }

    /// Restore a snapshot into the producer.
    pub fn restore(&mut self, snapshot: &str) -> Result<(), PluginError> {
        match self.producer.restore(RStr::from(snapshot)) {
            RResult::ROk(()) => Ok(()),
            RResult::RErr(e) => Err(PluginError(e.to_string())),
        }
    }

    /// The time of the latest wake-up the producer asked for, if any.
    pub fn last_wake(&self) -> Option<f64> {
        self.history.iter().rev().find_map(|a| match a {
            Action::WakeAt(t) => Some(*t),
            _ => None,
        })
    }
}

/// Helpers for conformance tests against the reference's golden vectors
/// (`tests/golden/*.jsonl` of the love-host repository, see its README): turning a record's `sal_samples` into
/// [`Sample`]s typed by the topic catalog, its `outputs` into parsed JSON with the
/// `"<producer_snd>"` placeholder replaced, and a strict comparison that keeps int vs float
/// distinct and checks key order.
pub mod golden {
    use serde_json::Value as J;

    use crate::abi::{Field, PrivateStamps, Sample, TopicKind, Value};
    use crate::catalog::{ComponentCatalog, FieldInfo, ScalarKind};

    /// The reference harness's frozen clock.
    pub const CLOCK: f64 = 1_700_000_000.5;

    /// The reference's golden vectors in the love-host repository (`tests/golden`): the first
    /// ancestor of `manifest_dir` (pass `env!("CARGO_MANIFEST_DIR")`) that holds them.
    pub fn golden_dir(manifest_dir: &str) -> std::path::PathBuf {
        std::path::Path::new(manifest_dir)
            .ancestors()
            .map(|a| a.join("tests/golden"))
            .find(|g| g.join("README.md").is_file())
            .unwrap_or_else(|| panic!("no tests/golden (the reference's golden vectors) above {manifest_dir}"))
    }

    /// The project's former `shared/` directory: `$LOVE_SHARED_DIR`, else the first `shared/`
    /// with `spec/golden` beside an ancestor of `manifest_dir`.
    #[deprecated(note = "the golden vectors live in the repository: use golden_dir")]
    pub fn shared_dir(manifest_dir: &str) -> std::path::PathBuf {
        if let Some(dir) = std::env::var_os("LOVE_SHARED_DIR") {
            return dir.into();
        }
        std::path::Path::new(manifest_dir)
            .ancestors()
            .map(|a| a.join("shared"))
            .find(|s| s.join("spec/golden").is_dir())
            .unwrap_or_else(|| panic!("no shared/spec/golden above {manifest_dir}; set LOVE_SHARED_DIR"))
    }

    /// Read a golden JSON-lines file.
    pub fn load(path: &std::path::Path) -> Vec<J> {
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
            .collect()
    }

    /// The records of one case, in step order.
    pub fn case<'a>(records: &'a [J], name: &str) -> Vec<&'a J> {
        let mut steps: Vec<&J> = records.iter().filter(|r| r["case"] == name).collect();
        steps.sort_by_key(|r| r["step"].as_u64());
        steps
    }

    /// The clock of a step: `input.clock` when given, else [`CLOCK`].
    pub fn clock(step: &J) -> f64 {
        step["input"]["clock"].as_f64().unwrap_or(CLOCK)
    }

    /// Feed one golden step to `driver` at `now` as the reference's harness did: its
    /// "subscriptions" as Register, its "send_initial_data" as Connected, each of its
    /// `sal_samples` (typed by `catalog`), its `manager_message`, and a Tick when its description
    /// says "tick" or "polled". Returns the texts sent.
    pub fn run_step(
        driver: &mut super::TestDriver,
        step: &J,
        now: f64,
        catalog: Option<&ComponentCatalog>,
    ) -> Vec<String> {
        use crate::sdk::Input;
        let what = step["input"]["what"].as_str().unwrap_or("");
        let mut sent = Vec::new();
        if what.contains("subscriptions") {
            sent.extend(driver.sent(Input::Register, now).expect("Register"));
        }
        if what.contains("send_initial_data") {
            sent.extend(driver.sent(Input::Connected, now).expect("Connected"));
        }
        for s in step["sal_samples"].as_array().into_iter().flatten() {
            sent.extend(driver.sample(&sample(s, catalog), now).expect("sample"));
        }
        if let Some(m) = step["input"].get("manager_message") {
            sent.extend(driver.manager(&m.to_string(), now).expect("manager message"));
        }
        if what.contains("tick") || what.contains("polled") {
            sent.extend(driver.sent(Input::Tick, now).expect("Tick"));
        }
        sent
    }

    /// The step's expected outputs, parsed (NaN tokens as strings, as
    /// [`crate::json::parse_lenient`]), with a top-level `"producer_snd": "<producer_snd>"`
    /// replaced by `snd`.
    pub fn outputs(step: &J, snd: f64) -> Vec<J> {
        step["outputs"]
            .as_array()
            .map(|a| a.as_slice())
            .unwrap_or(&[])
            .iter()
            .map(|o| {
                let mut v = crate::json::parse_lenient(o.as_str().expect("output text")).expect("output JSON");
                if let Some(m) = v.as_object_mut() {
                    if m.get("producer_snd").and_then(J::as_str) == Some("<producer_snd>") {
                        m.insert("producer_snd".into(), J::from(snd));
                    }
                }
                v
            })
            .collect()
    }

    /// Parse sent texts (NaN tokens as strings).
    pub fn parse_all(texts: &[String]) -> Vec<J> {
        texts.iter().map(|t| crate::json::parse_lenient(t).expect("sent JSON")).collect()
    }

    /// Compare two JSON values strictly: same types (an integer never equals a float), same
    /// object keys in the same order, same values. Panics with the path of the first difference.
    pub fn assert_same(got: &J, want: &J, context: &str) {
        if let Err(e) = same(got, want, "$") {
            panic!("{context}: {e}\n  got:  {got}\n  want: {want}");
        }
    }

    /// Like [`assert_same`] on two lists of messages.
    pub fn assert_all_same(got: &[J], want: &[J], context: &str) {
        if got.len() != want.len() {
            panic!(
                "{context}: {} messages, expected {}\n  got:  {}\n  want: {}",
                got.len(),
                want.len(),
                J::from(got.to_vec()),
                J::from(want.to_vec())
            );
        }
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert_same(g, w, &format!("{context}, message {i}"));
        }
    }

    fn same(a: &J, b: &J, path: &str) -> Result<(), String> {
        match (a, b) {
            (J::Number(x), J::Number(y)) => {
                let ok = if x.is_f64() || y.is_f64() {
                    x.is_f64() && y.is_f64() && x.as_f64() == y.as_f64()
                } else {
                    x.as_i64() == y.as_i64() && x.as_u64() == y.as_u64()
                };
                if ok {
                    Ok(())
                } else {
                    Err(format!("{path}: {x} vs {y}"))
                }
            }
            (J::Array(x), J::Array(y)) => {
                if x.len() != y.len() {
                    return Err(format!("{path}: array length {} vs {}", x.len(), y.len()));
                }
                for (i, (p, q)) in x.iter().zip(y).enumerate() {
                    same(p, q, &format!("{path}[{i}]"))?;
                }
                Ok(())
            }
            (J::Object(x), J::Object(y)) => {
                let kx: Vec<&String> = x.keys().collect();
                let ky: Vec<&String> = y.keys().collect();
                if kx != ky {
                    return Err(format!("{path}: keys {kx:?} vs {ky:?}"));
                }
                for (k, v) in x {
                    same(v, &y[k], &format!("{path}.{k}"))?;
                }
                Ok(())
            }
            _ if a == b => Ok(()),
            _ => Err(format!("{path}: {a} vs {b}")),
        }
    }

    fn float_of(v: &J) -> f64 {
        match v {
            J::Number(n) => n.as_f64().unwrap_or(f64::NAN),
            J::Object(m) => match m.get("$float").and_then(J::as_str) {
                Some("Infinity") => f64::INFINITY,
                Some("-Infinity") => f64::NEG_INFINITY,
                _ => f64::NAN,
            },
            J::Bool(b) => *b as i64 as f64,
            _ => f64::NAN,
        }
    }

    fn int_of(v: &J) -> i64 {
        match v {
            J::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)).unwrap_or(0),
            J::Bool(b) => *b as i64,
            _ => 0,
        }
    }

    /// A golden JSON value typed by its declared field (or by its own JSON type when the
    /// catalog does not know the field).
    pub fn value_of(v: &J, info: Option<&FieldInfo>) -> Value {
        let kind = info.map(|f| f.scalar_kind());
        match (v, kind) {
            (J::Array(items), Some(ScalarKind::Bool)) => {
                Value::BoolArray(items.iter().map(|x| int_of(x) != 0).collect())
            }
            (J::Array(items), Some(ScalarKind::Int)) => Value::IntArray(items.iter().map(int_of).collect()),
            (J::Array(items), Some(ScalarKind::Float)) => Value::FloatArray(items.iter().map(float_of).collect()),
            (J::Array(items), _) => {
                if items.iter().all(|x| x.is_boolean()) {
                    Value::BoolArray(items.iter().map(|x| x.as_bool().unwrap_or(false)).collect())
                } else if items.iter().all(|x| x.is_i64()) {
                    Value::IntArray(items.iter().map(int_of).collect())
                } else {
                    Value::FloatArray(items.iter().map(float_of).collect())
                }
            }
            (_, Some(ScalarKind::Bool)) => Value::Bool(v.as_bool().unwrap_or(int_of(v) != 0)),
            (_, Some(ScalarKind::Int)) => Value::Int(int_of(v)),
            (_, Some(ScalarKind::Float)) => Value::Float(float_of(v)),
            (J::String(s), _) => Value::Str(s.as_str().into()),
            (J::Bool(b), _) => Value::Bool(*b),
            (J::Number(n), _) if n.is_i64() || n.is_u64() => Value::Int(int_of(v)),
            (J::Number(_), _) | (J::Object(_), _) => Value::Float(float_of(v)),
            (other, _) => Value::Json(other.to_string().into()),
        }
    }

    /// Build a [`Sample`] from one entry of a record's `sal_samples`
    /// (`{component, remote_index, topic: "evt_x", fields: {...}}`), typing values by the
    /// component's catalog. The sample's `salIndex` is the `salIndex` field when present, else
    /// the remote index.
    pub fn sample(entry: &J, catalog: Option<&ComponentCatalog>) -> Sample {
        let component = entry["component"].as_str().expect("component");
        let full = entry["topic"].as_str().expect("topic");
        let (kind, name) = if let Some(n) = full.strip_prefix("evt_") {
            (TopicKind::EVENT, n)
        } else if let Some(n) = full.strip_prefix("tel_") {
            (TopicKind::TELEMETRY, n)
        } else {
            (TopicKind::NONE, full)
        };
        let topic = catalog.and_then(|c| match kind {
            TopicKind::EVENT => c.event(name),
            TopicKind::TELEMETRY => c.telemetry_topic(name),
            _ => c.event(name).or_else(|| c.telemetry_topic(name)),
        });
        let f = entry["fields"].as_object().expect("fields");
        let s = |k: &str| f.get(k).and_then(J::as_str).unwrap_or("").into();
        let stamps = PrivateStamps {
            snd_stamp: f.get("private_sndStamp").map(float_of).unwrap_or(0.0),
            rcv_stamp: f.get("private_rcvStamp").map(float_of).unwrap_or(0.0),
            efd_stamp: f.get("private_efdStamp").map(float_of).unwrap_or(0.0),
            kafka_stamp: f.get("private_kafkaStamp").map(float_of).unwrap_or(0.0),
            seq_num: f.get("private_seqNum").map(int_of).unwrap_or(0),
            rev_code: s("private_revCode"),
            identity: s("private_identity"),
            origin: f.get("private_origin").map(int_of).unwrap_or(0),
        };
        let fields: Vec<Field> = f
            .iter()
            .filter(|(k, _)| !k.starts_with("private_") && k.as_str() != "salIndex")
            .map(|(k, v)| {
                let info = topic.and_then(|t| t.fields.iter().find(|fi| fi.name == *k));
                Field::new(k, value_of(v, info))
            })
            .collect();
        Sample {
            component: component.into(),
            sal_index: f.get("salIndex").map(int_of).unwrap_or_else(|| int_of(&entry["remote_index"])),
            topic: name.into(),
            kind,
            stamps,
            fields: fields.into(),
            received: 0.0,
            seq: 0,
        }
    }
}
