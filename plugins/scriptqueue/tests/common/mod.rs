//! Helpers shared by the scriptqueue tests: the built-in ts_xml catalogs, samples built from golden
//! records or by hand, and JSON comparison that keeps key order and int vs float.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::OnceLock;

use love_catalog::TopicCatalog;
use love_plugin_api::abi::{Field, PrivateStamps, Sample, TopicKind, Value};
use love_plugin_api::catalog::{ComponentCatalog, FieldInfo, ScalarKind};
use love_plugin_api::sdk::{Action, ProducerConfig};
use serde_json::Value as J;

/// The reference harness's frozen clock.
pub const T0: f64 = 1_700_000_000.5;

/// A golden vector file of the reference (`tests/golden` of the repository).
pub fn golden_path(name: &str) -> PathBuf {
    love_plugin_api::driver::golden::golden_dir(env!("CARGO_MANIFEST_DIR")).join(name)
}

/// The catalog of every ts_xml component (the built-in one).
pub fn catalog() -> &'static TopicCatalog {
    static CAT: OnceLock<TopicCatalog> = OnceLock::new();
    CAT.get_or_init(TopicCatalog::builtin)
}

/// One component's catalog.
pub fn component(name: &str) -> &'static ComponentCatalog {
    catalog().component(name).unwrap_or_else(|| panic!("{name} not in the ts_xml catalog"))
}

/// The Script catalog as the host hands it over (JSON of a `Catalog` input).
pub fn script_catalog_json() -> String {
    serde_json::to_string(component("Script")).unwrap()
}

/// A producer configuration for `ScriptQueue:1` with the given extra settings.
pub fn config(settings: &[(&str, &str)]) -> ProducerConfig {
    ProducerConfig {
        component: "ScriptQueue".into(),
        index: 1,
        producer_type: "scriptqueue".into(),
        settings: settings.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        catalog: Some(component("ScriptQueue").clone()),
        ..Default::default()
    }
}

fn num(v: &J) -> Option<f64> {
    match v {
        J::Number(n) => n.as_f64(),
        J::Object(o) => match o.get("$float")?.as_str()? {
            "NaN" => Some(f64::NAN),
            "Infinity" => Some(f64::INFINITY),
            "-Infinity" => Some(f64::NEG_INFINITY),
            _ => None,
        },
        _ => None,
    }
}

/// A JSON value as a SAL value of the declared field (`None`: unknown field, typed by value).
pub fn to_value(info: Option<&FieldInfo>, v: &J) -> Value {
    let kind = info.map(|f| f.scalar_kind());
    match v {
        J::Bool(b) => Value::Bool(*b),
        J::String(s) => Value::Str(s.as_str().into()),
        J::Array(items) => match kind {
            Some(ScalarKind::Bool) => Value::BoolArray(items.iter().map(|x| x.as_bool().unwrap_or(false)).collect()),
            Some(ScalarKind::Float) => Value::FloatArray(items.iter().map(|x| num(x).unwrap_or(0.0)).collect()),
            Some(ScalarKind::Int) => Value::IntArray(items.iter().map(|x| x.as_i64().unwrap_or(0)).collect()),
            _ => {
                if items.iter().all(|x| x.is_i64()) {
                    Value::IntArray(items.iter().map(|x| x.as_i64().unwrap()).collect())
                } else {
                    Value::FloatArray(items.iter().map(|x| num(x).unwrap_or(0.0)).collect())
                }
            }
        },
        _ => match kind {
            Some(ScalarKind::Float) => Value::Float(num(v).unwrap_or(0.0)),
            Some(ScalarKind::Int) => Value::Int(v.as_i64().unwrap_or(0)),
            Some(ScalarKind::Bool) => Value::Bool(v.as_i64().unwrap_or(0) != 0),
            _ => match v.as_i64() {
                Some(i) => Value::Int(i),
                None => Value::Float(num(v).unwrap_or(0.0)),
            },
        },
    }
}

/// A sample from a golden `sal_samples` record (`component`, `topic` with `evt_`/`tel_`,
/// `fields` with salIndex and the private fields).
pub fn golden_sample(rec: &J) -> Sample {
    let comp = rec["component"].as_str().unwrap();
    let topic = rec["topic"].as_str().unwrap();
    let (kind, name) = match topic.strip_prefix("evt_") {
        Some(n) => (TopicKind::EVENT, n),
        None => (TopicKind::TELEMETRY, topic.strip_prefix("tel_").unwrap()),
    };
    let fields: Vec<(String, J)> =
        rec["fields"].as_object().unwrap().iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    build_sample(comp, kind, name, &fields)
}

/// A sample of `component`/`topic` from (name, JSON value) pairs; `salIndex` and private fields
/// go to their places, the rest are typed from the catalog.
pub fn build_sample(comp: &str, kind: TopicKind, name: &str, fields: &[(String, J)]) -> Sample {
    let cat = component(comp);
    let info = if kind == TopicKind::EVENT { cat.event(name) } else { cat.telemetry_topic(name) };
    let mut s = Sample { component: comp.into(), topic: name.into(), kind, ..Default::default() };
    let mut st = PrivateStamps::default();
    let mut out = Vec::new();
    for (k, v) in fields {
        match k.as_str() {
            "salIndex" => s.sal_index = v.as_i64().unwrap(),
            "private_sndStamp" => st.snd_stamp = num(v).unwrap(),
            "private_rcvStamp" => st.rcv_stamp = num(v).unwrap(),
            "private_efdStamp" => st.efd_stamp = num(v).unwrap(),
            "private_kafkaStamp" => st.kafka_stamp = num(v).unwrap(),
            "private_seqNum" => st.seq_num = v.as_i64().unwrap(),
            "private_revCode" => st.rev_code = v.as_str().unwrap().into(),
            "private_identity" => st.identity = v.as_str().unwrap().into(),
            "private_origin" => st.origin = v.as_i64().unwrap(),
            _ => {
                let fi = info.and_then(|t| t.fields.iter().find(|f| f.name == *k));
                out.push(Field::new(k, to_value(fi, v)));
            }
        }
    }
    s.stamps = st;
    s.fields = out.into();
    s
}

/// A hand-written event sample: `build_sample` with `serde_json::json!` values.
pub fn event(comp: &str, name: &str, sal_index: i64, fields: J) -> Sample {
    let mut pairs = vec![("salIndex".to_string(), J::from(sal_index))];
    pairs.extend(fields.as_object().unwrap().iter().map(|(k, v)| (k.clone(), v.clone())));
    build_sample(comp, TopicKind::EVENT, name, &pairs)
}

/// A `queue` event for queue 1.
pub fn queue_event(enabled: bool, running: bool, current: i64, waiting: &[i64], past: &[i64]) -> Sample {
    let pad = |v: &[i64]| {
        let mut a = v.to_vec();
        a.resize(400.max(v.len()), 0);
        a
    };
    event(
        "ScriptQueue",
        "queue",
        1,
        serde_json::json!({
            "enabled": enabled, "running": running, "currentSalIndex": current,
            "length": waiting.len(), "salIndices": pad(waiting),
            "pastLength": past.len(), "pastSalIndices": pad(past),
        }),
    )
}

/// A ScriptQueue `script` event.
pub fn script_event(index: i64, standard: bool, path: &str, process_state: i64, script_state: i64) -> Sample {
    event(
        "ScriptQueue",
        "script",
        1,
        serde_json::json!({
            "scriptSalIndex": index, "isStandard": standard, "path": path,
            "processState": process_state, "scriptState": script_state,
            "timestampProcessStart": 1.5,
        }),
    )
}

/// A Script `logMessage`.
pub fn log_event(index: i64, message: &str) -> Sample {
    event("Script", "logMessage", index, serde_json::json!({"name": "S", "level": 20, "message": message}))
}

/// Parse a message the way the tests compare them (the reference's NaN tokens allowed).
pub fn parse(text: &str) -> J {
    love_plugin_api::json::parse_lenient(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// Deep equality that also requires the same key order and keeps int vs float distinct
/// (NaN equals NaN).
pub fn same(a: &J, b: &J) -> bool {
    match (a, b) {
        (J::Object(x), J::Object(y)) => {
            x.len() == y.len() && x.iter().zip(y.iter()).all(|((ka, va), (kb, vb))| ka == kb && same(va, vb))
        }
        (J::Array(x), J::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same(p, q)),
        (J::Number(x), J::Number(y)) => {
            if x.is_f64() != y.is_f64() {
                return false;
            }
            match (x.as_f64(), y.as_f64()) {
                (Some(p), Some(q)) if p.is_nan() && q.is_nan() => true,
                _ => x == y,
            }
        }
        _ => a == b,
    }
}

/// The texts of the Send actions.
pub fn sends(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send(m) => Some(m.text.clone()),
            _ => None,
        })
        .collect()
}

/// The stream name of a data message (`data[0].data`'s only key) and its envelope csc.
pub fn stream_of(msg: &J) -> (String, String) {
    let d = &msg["data"][0];
    let stream = d["data"].as_object().and_then(|o| o.keys().next().cloned()).unwrap_or_default();
    (d["csc"].as_str().unwrap_or("").to_string(), stream)
}
