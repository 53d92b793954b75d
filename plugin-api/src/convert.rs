//! Conversion of SAL samples into the reference's `FIELDS` object.
//!
//! Every field becomes `{"value": V, "dataType": D, "units": U}` in the reference's order:
//! `salIndex` (indexed components only), the eight private fields, then the topic's fields in
//! ts_xml order. `dataType` and `units` come from the declared field, so the text around each
//! value is computed once per topic ([`TopicConverter`]) and a sample costs one pass over its
//! values.

use crate::abi::{Field, Sample, Value};
use crate::catalog::{FieldInfo, ScalarKind, TopicInfo};
use crate::json::{write_f64, write_i64, write_str};

/// Precomputed text for converting samples of one topic.
#[derive(Debug, Clone)]
pub struct TopicConverter {
    indexed: bool,
    fields: Vec<FieldText>,
}

#[derive(Debug, Clone)]
struct FieldText {
    name: String,
    /// `"name": {"value": `
    head: String,
    /// `, "dataType": "Int", "units": "unitless"}`
    tail: String,
    default: Value,
}

const PRIVATE_HEADS: [(&str, &str, &str); 8] = [
    ("private_sndStamp", "Float", "second"),
    ("private_rcvStamp", "Float", "second"),
    ("private_efdStamp", "Float", "second"),
    ("private_kafkaStamp", "Float", "second"),
    ("private_seqNum", "Int", "unitless"),
    ("private_revCode", "String", "unitless"),
    ("private_identity", "String", "unitless"),
    ("private_origin", "Int", "unitless"),
];

fn head_of(name: &str) -> String {
    let mut s = String::with_capacity(name.len() + 16);
    write_str(&mut s, name);
    s.push_str(": {\"value\": ");
    s
}

fn tail_of(data_type: &str, units: &str) -> String {
    let mut s = String::with_capacity(units.len() + 40);
    s.push_str(", \"dataType\": \"");
    s.push_str(data_type);
    s.push_str("\", \"units\": ");
    write_str(&mut s, units);
    s.push('}');
    s
}

/// The value a field has when a sample does not carry it (salobj's defaults).
pub fn default_value(info: &FieldInfo) -> Value {
    let n = info.count.max(1) as usize;
    match (info.scalar_kind(), info.is_array()) {
        (ScalarKind::Bool, false) => Value::Bool(false),
        (ScalarKind::Bool, true) => Value::BoolArray(vec![false; n].into()),
        (ScalarKind::Int, false) => Value::Int(0),
        (ScalarKind::Int, true) => Value::IntArray(vec![0; n].into()),
        (ScalarKind::Float, false) => Value::Float(0.0),
        (ScalarKind::Float, true) => Value::FloatArray(vec![0.0; n].into()),
        (ScalarKind::Str, _) | (ScalarKind::Other, _) => Value::Str("".into()),
    }
}

impl TopicConverter {
    /// Prepare the conversion of `topic` of a component that is (or is not) indexed.
    pub fn new(topic: &TopicInfo, indexed: bool) -> Self {
        let fields = topic
            .fields
            .iter()
            .map(|f| FieldText {
                name: f.name.clone(),
                head: head_of(&f.name),
                tail: tail_of(f.data_type(), &f.units),
                default: default_value(f),
            })
            .collect();
        TopicConverter { indexed, fields }
    }

    /// Append the `FIELDS` object of `sample` to `out`.
    pub fn write_fields(&self, out: &mut String, sample: &Sample) {
        out.push('{');
        if self.indexed {
            out.push_str("\"salIndex\": {\"value\": ");
            write_i64(out, sample.sal_index);
            out.push_str(", \"dataType\": \"Int\", \"units\": \"unitless\"}, ");
        }
        let st = &sample.stamps;
        for (i, (name, dtype, units)) in PRIVATE_HEADS.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            out.push('"');
            out.push_str(name);
            out.push_str("\": {\"value\": ");
            match i {
                0 => write_f64(out, st.snd_stamp),
                1 => write_f64(out, st.rcv_stamp),
                2 => write_f64(out, st.efd_stamp),
                3 => write_f64(out, st.kafka_stamp),
                4 => write_i64(out, st.seq_num),
                5 => write_str(out, &st.rev_code),
                6 => write_str(out, &st.identity),
                _ => write_i64(out, st.origin),
            }
            out.push_str(", \"dataType\": \"");
            out.push_str(dtype);
            out.push_str("\", \"units\": \"");
            out.push_str(units);
            out.push_str("\"}");
        }
        let given = sample.fields.as_slice();
        let mut used = 0usize;
        for (pos, ft) in self.fields.iter().enumerate() {
            let value = match given.get(pos) {
                Some(f) if f.name.as_str() == ft.name => {
                    used += 1;
                    &f.value
                }
                _ => match given.iter().find(|f| f.name.as_str() == ft.name) {
                    Some(f) => {
                        used += 1;
                        &f.value
                    }
                    None => &ft.default,
                },
            };
            out.push_str(", ");
            out.push_str(&ft.head);
            write_value(out, value);
            out.push_str(&ft.tail);
        }
        if used < given.len() {
            // Fields the catalog does not know (a newer ts_xml on the writer's side): keep them,
            // labelled from their values.
            for f in given.iter().filter(|f| !self.fields.iter().any(|ft| ft.name == f.name.as_str())) {
                out.push_str(", ");
                out.push_str(&head_of(&f.name));
                write_value(out, &f.value);
                out.push_str(&tail_of(value_data_type(&f.value), "unitless"));
            }
        }
        out.push('}');
    }

    /// The `FIELDS` object of `sample` as a new string.
    pub fn fields_json(&self, sample: &Sample) -> String {
        let mut out = String::with_capacity(64 + self.fields.len() * 72);
        self.write_fields(&mut out, sample);
        out
    }
}

/// The `dataType` label for a value whose declaration is unknown.
pub fn value_data_type(v: &Value) -> &'static str {
    match v {
        Value::Bool(_) | Value::Int(_) => "Int",
        Value::Float(_) => "Float",
        Value::Str(_) => "String",
        Value::BoolArray(_) | Value::IntArray(_) => "Array<Int>",
        Value::FloatArray(_) => "Array<Float>",
        Value::Json(_) => "None",
    }
}

/// Append one value as JSON.
pub fn write_value(out: &mut String, v: &Value) {
    match v {
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(i) => write_i64(out, *i),
        Value::Float(f) => write_f64(out, *f),
        Value::Str(s) => write_str(out, s),
        Value::BoolArray(a) => write_list(out, a.as_slice(), |o, b| o.push_str(if *b { "true" } else { "false" })),
        Value::IntArray(a) => write_list(out, a.as_slice(), |o, i| write_i64(o, *i)),
        Value::FloatArray(a) => write_list(out, a.as_slice(), |o, f| write_f64(o, *f)),
        Value::Json(text) => crate::json::write_json_value(out, text),
    }
}

fn write_list<T>(out: &mut String, items: &[T], mut each: impl FnMut(&mut String, &T)) {
    out.push('[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        each(out, item);
    }
    out.push(']');
}

/// Look up a field of a sample by name.
pub fn field<'a>(sample: &'a Sample, name: &str) -> Option<&'a Value> {
    sample.fields.iter().find(|f| f.name.as_str() == name).map(|f| &f.value)
}

impl Value {
    /// A [`Value::Json`] for `text` when it is JSON the LOVE-manager can parse (nested at most
    /// [`MAX_VALUE_DEPTH`](crate::json::MAX_VALUE_DEPTH) deep), else a [`Value::Str`] carrying
    /// the text: where a JSON value enters (a recording, a decoder), so that it is checked once
    /// rather than at every message built from it.
    pub fn json_checked(text: impl Into<abi_stable::std_types::RString>) -> Value {
        let text = text.into();
        match crate::json::validate_with_depth(&text, crate::json::MAX_VALUE_DEPTH) {
            Ok(()) => Value::Json(text),
            Err(_) => Value::Str(text),
        }
    }

    /// The value as an integer (booleans as 0/1, floats truncated).
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Bool(b) => Some(*b as i64),
            Value::Int(i) => Some(*i),
            Value::Float(f) if f.is_finite() => Some(*f as i64),
            _ => None,
        }
    }

    /// The value as a float.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Bool(b) => Some(*b as i64 as f64),
            Value::Int(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            _ => None,
        }
    }

    /// The value as a string slice.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s.as_str()),
            _ => None,
        }
    }

    /// The value as a boolean (non-zero numbers are true).
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            Value::Int(i) => Some(*i != 0),
            Value::Float(f) => Some(*f != 0.0),
            _ => None,
        }
    }
}

impl Field {
    /// A field with a name and value.
    pub fn new(name: &str, value: Value) -> Self {
        Field { name: name.into(), value }
    }
}
