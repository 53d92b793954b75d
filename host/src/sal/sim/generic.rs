//! The generic model every simulated component runs, from its catalog entry alone: the start
//! events, bounded random walks for telemetry, state commands and `setLogLevel`; and [`Ctx`],
//! what a component's task publishes through (the component models build on it).

use std::collections::HashMap;
use std::sync::Arc;

use abi_stable::std_types::RVec;
use love_plugin_api::abi::{Field, PrivateStamps, Sample, TopicKind, Value};
use love_plugin_api::catalog::{ComponentCatalog, FieldInfo, ScalarKind, TopicInfo};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::Inner;
use crate::clock::unix_now;
use crate::sal::{ack, next_seq, sample_msg, CommandAck, SalCommand};

/// SAL summary states (salobj `State`).
pub(super) mod state {
    pub const DISABLED: i64 = 1;
    pub const ENABLED: i64 = 2;
    pub const OFFLINE: i64 = 4;
    pub const STANDBY: i64 = 5;
}

/// FNV-1a, for seeds and revision codes that must not change between Rust versions.
fn fnv(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for p in parts {
        for b in p.iter().chain([0xffu8].iter()) {
            h ^= *b as u64;
            h = h.wrapping_mul(0x100000001b3);
        }
    }
    h
}

/// What one simulated component's task works with.
pub(super) struct Ctx {
    pub(super) inner: Arc<Inner>,
    pub(super) cat: ComponentCatalog,
    pub(super) name: String,
    pub(super) index: i64,
    pub(super) rng: SmallRng,
    pub(super) seq_nums: HashMap<(String, i64, String), i64>,
    pub(super) walks: HashMap<(String, usize), Vec<f64>>,
    pub(super) summary_state: i64,
}

impl Ctx {
    pub(super) fn new(inner: Arc<Inner>, cat: ComponentCatalog, index: i64) -> Ctx {
        let name = cat.name.clone();
        let seed = inner.seed ^ fnv(&[name.as_bytes(), &index.to_le_bytes()]);
        Ctx {
            inner,
            cat,
            name,
            index,
            rng: SmallRng::seed_from_u64(seed),
            seq_nums: HashMap::new(),
            walks: HashMap::new(),
            summary_state: state::ENABLED,
        }
    }

    /// Publish a sample of `component`:`index` with the fields of its catalog topic, in catalog
    /// order: `values` by name, the rest zero/empty. Returns false (and publishes nothing) when
    /// the catalog lacks the topic.
    pub(super) fn publish_to(
        &mut self,
        component: &str,
        index: i64,
        kind: TopicKind,
        topic: &str,
        values: Vec<(&str, Value)>,
    ) -> bool {
        let info = {
            let cat = if component == self.name { Some(&self.cat) } else { self.inner.catalog.component(component) };
            let Some(cat) = cat else { return false };
            let t = match kind {
                TopicKind::TELEMETRY => cat.telemetry_topic(topic),
                _ => cat.event(topic),
            };
            match t {
                Some(t) => t.clone(),
                None => return false,
            }
        };
        let mut values = values;
        let fields: Vec<Field> = info
            .fields
            .iter()
            .map(|f| {
                let v = match values.iter().position(|(n, _)| *n == f.name) {
                    Some(i) => conform(f, values.swap_remove(i).1),
                    None => default_value(f),
                };
                Field { name: f.name.as_str().into(), value: v }
            })
            .collect();
        self.send(component, index, kind, &info, fields);
        true
    }

    pub(super) fn send(&mut self, component: &str, index: i64, kind: TopicKind, info: &TopicInfo, fields: Vec<Field>) {
        let now = unix_now();
        let key = (component.to_string(), index, info.name.clone());
        let seq_num = {
            let n = self.seq_nums.entry(key).or_insert(0);
            *n += 1;
            *n
        };
        let rev =
            fnv(&[info.name.as_bytes(), info.fields.iter().map(|f| f.name.as_str()).collect::<String>().as_bytes()]);
        let identity = if index != 0 { format!("{component}:{index}") } else { component.to_string() };
        let sample = Sample {
            component: component.into(),
            sal_index: index,
            topic: info.name.as_str().into(),
            kind,
            stamps: PrivateStamps {
                snd_stamp: now,
                rcv_stamp: now,
                efd_stamp: now,
                kafka_stamp: now,
                seq_num,
                rev_code: format!("{:08x}", rev as u32).into(),
                identity: identity.into(),
                origin: self.inner.origin,
            },
            fields: fields.into(),
            received: now,
            seq: next_seq(),
        };
        self.inner.bus.publish(sample_msg(sample));
    }

    pub(super) fn event(&mut self, topic: &str, values: Vec<(&str, Value)>) -> bool {
        let (name, index) = (self.name.clone(), self.index);
        self.publish_to(&name, index, TopicKind::EVENT, topic, values)
    }

    pub(super) fn generic_start(&mut self) {
        let ss = self.summary_state;
        self.event("summaryState", vec![("summaryState", int(ss))]);
        self.event("logLevel", vec![("level", int(20)), ("subsystem", s(""))]);
        self.event(
            "softwareVersions",
            vec![
                ("salVersion", s("8.0.0")),
                ("xmlVersion", s("22.1.0")),
                ("cscVersion", s("love-host-sim")),
                ("subsystemVersions", s("")),
            ],
        );
    }

    /// Publish every telemetry topic once; `overrides` gives model values by (topic, field).
    pub(super) fn telemetry(&mut self, overrides: &[(&str, &str, Value)]) {
        let topics = self.cat.telemetry.clone();
        for t in &topics {
            let mut fields = Vec::with_capacity(t.fields.len());
            for (fi, f) in t.fields.iter().enumerate() {
                let v = match overrides.iter().find(|(tn, fname, _)| *tn == t.name && *fname == f.name) {
                    Some((_, _, v)) => conform(f, v.clone()),
                    None => self.walk(&t.name, fi, f),
                };
                fields.push(Field { name: f.name.as_str().into(), value: v });
            }
            let (name, index) = (self.name.clone(), self.index);
            self.send(&name, index, TopicKind::TELEMETRY, t, fields);
        }
    }

    /// The next value of a bounded random walk for one telemetry field.
    fn walk(&mut self, topic: &str, fi: usize, f: &FieldInfo) -> Value {
        let n = if f.is_array() { f.count as usize } else { 1 };
        let kind = f.scalar_kind();
        let (lo, hi, wrap) = range_of(f);
        let key = (topic.to_string(), fi);
        if !self.walks.contains_key(&key) {
            let init: Vec<f64> = (0..n)
                .map(|_| match kind {
                    ScalarKind::Bool => self.rng.gen_range(0..2) as f64,
                    _ => self.rng.gen_range(lo..hi),
                })
                .collect();
            self.walks.insert(key.clone(), init);
        }
        let mut state = self.walks.remove(&key).expect("inserted");
        for x in state.iter_mut() {
            match kind {
                ScalarKind::Bool => {
                    if self.rng.gen_bool(0.02) {
                        *x = 1.0 - *x;
                    }
                }
                ScalarKind::Str | ScalarKind::Other => {}
                _ => {
                    let step = (hi - lo) * 0.02 * self.rng.gen_range(-1.0..1.0);
                    let mut y = *x + step;
                    if wrap {
                        y = lo + (y - lo).rem_euclid(hi - lo);
                    } else if y < lo {
                        y = 2.0 * lo - y;
                    } else if y > hi {
                        y = 2.0 * hi - y;
                    }
                    *x = y.clamp(lo, hi);
                }
            }
        }
        let v = match (kind, f.is_array()) {
            (ScalarKind::Bool, false) => Value::Bool(state[0] >= 0.5),
            (ScalarKind::Bool, true) => Value::BoolArray(state.iter().map(|x| *x >= 0.5).collect()),
            (ScalarKind::Int, false) => Value::Int(state[0].round() as i64),
            (ScalarKind::Int, true) => Value::IntArray(state.iter().map(|x| x.round() as i64).collect()),
            (ScalarKind::Float, false) => Value::Float(state[0]),
            (ScalarKind::Float, true) => Value::FloatArray(state.iter().copied().collect()),
            _ => Value::Str("sim".into()),
        };
        self.walks.insert(key, state);
        conform(f, v)
    }

    /// Generic command handling: state commands, setLogLevel, else COMPLETE if known.
    pub(super) fn generic_command(&mut self, cmd: &SalCommand) -> CommandAck {
        if self.cat.command(&cmd.name).is_none() {
            return CommandAck { code: ack::FAILED, result: format!("{} has no command {}", self.name, cmd.name) };
        }
        let new_state = match cmd.name.as_str() {
            "enable" => Some(state::ENABLED),
            "disable" | "start" => Some(state::DISABLED),
            "standby" => Some(state::STANDBY),
            "exitControl" => Some(state::OFFLINE),
            _ => None,
        };
        if let Some(st) = new_state {
            self.summary_state = st;
            self.event("summaryState", vec![("summaryState", int(st))]);
        }
        if cmd.name == "setLogLevel" {
            let level = field_int(cmd, "level").unwrap_or(20);
            self.event("logLevel", vec![("level", int(level)), ("subsystem", s(""))]);
        }
        done()
    }
}

pub(super) fn done() -> CommandAck {
    CommandAck { code: ack::COMPLETE, result: "Done".into() }
}

pub(super) fn int(v: i64) -> Value {
    Value::Int(v)
}

pub(super) fn s(v: &str) -> Value {
    Value::Str(v.into())
}

pub(super) fn float(v: f64) -> Value {
    Value::Float(v)
}

pub(super) fn field_int(cmd: &SalCommand, name: &str) -> Option<i64> {
    cmd.fields.iter().find(|f| f.name.as_str() == name).and_then(|f| match &f.value {
        Value::Int(i) => Some(*i),
        Value::Bool(b) => Some(*b as i64),
        _ => None,
    })
}

pub(super) fn field_str(cmd: &SalCommand, name: &str) -> Option<String> {
    cmd.fields.iter().find(|f| f.name.as_str() == name).and_then(|f| match &f.value {
        Value::Str(v) => Some(v.to_string()),
        _ => None,
    })
}

pub(super) fn field_bool(cmd: &SalCommand, name: &str) -> Option<bool> {
    cmd.fields.iter().find(|f| f.name.as_str() == name).and_then(|f| match &f.value {
        Value::Bool(b) => Some(*b),
        Value::Int(i) => Some(*i != 0),
        _ => None,
    })
}

/// Make a value fit its declared field: SAL `float` is rounded to f32 and widened, as salobj
/// delivers it.
fn conform(f: &FieldInfo, v: Value) -> Value {
    if f.idl_type != "float" {
        return v;
    }
    match v {
        Value::Float(x) => Value::Float(x as f32 as f64),
        Value::FloatArray(a) => Value::FloatArray(a.iter().map(|x| *x as f32 as f64).collect()),
        other => other,
    }
}

/// The zero value of a declared field.
fn default_value(f: &FieldInfo) -> Value {
    let n = f.count.max(1) as usize;
    match (f.scalar_kind(), f.is_array()) {
        (ScalarKind::Bool, false) => Value::Bool(false),
        (ScalarKind::Bool, true) => Value::BoolArray(RVec::from(vec![false; n])),
        (ScalarKind::Int, false) => Value::Int(0),
        (ScalarKind::Int, true) => Value::IntArray(RVec::from(vec![0; n])),
        (ScalarKind::Float, false) => Value::Float(0.0),
        (ScalarKind::Float, true) => Value::FloatArray(RVec::from(vec![0.0; n])),
        _ => Value::Str("".into()),
    }
}

/// Plausible bounds for a telemetry field, from its name, type and units: (low, high, wraps).
fn range_of(f: &FieldInfo) -> (f64, f64, bool) {
    let lname = f.name.to_ascii_lowercase();
    let unsigned = f.idl_type.starts_with("unsigned") || f.idl_type == "byte";
    match f.units.as_str() {
        _ if lname.contains("percent") || f.units == "%" => (0.0, 100.0, false),
        "deg" | "degree" if lname.contains("azimuth") => (0.0, 360.0, true),
        "deg" | "degree" => (-90.0, 90.0, false),
        "deg_C" | "C" => (-10.0, 30.0, false),
        _ if lname.contains("temperature") => (-10.0, 30.0, false),
        _ if f.idl_type == "byte" => (0.0, 100.0, false),
        _ if unsigned => (0.0, 1000.0, false),
        _ => match f.scalar_kind() {
            ScalarKind::Int => (0.0, 1000.0, false),
            _ => (-100.0, 100.0, false),
        },
    }
}
