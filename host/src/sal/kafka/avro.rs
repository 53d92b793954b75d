//! Avro for SAL topics, as ts_salobj writes them.
//!
//! - [`topic_schema`] builds the writer schema salobj registers for a topic (record name =
//!   sal_name, namespace `lsst.sal.<Component>`, `salIndex` for indexed components, the eight
//!   private fields, then the topic's fields in ts_xml order, each with `units` and
//!   `description`).
//! - [`DecodePlan`] decodes a value written with a given writer schema into the plugin API's
//!   typed sample parts. The schema is parsed with apache-avro; the plan is compiled once per
//!   schema id, and every field type salobj uses (boolean, int, long, float, double, string and
//!   arrays of them) is decoded by a straight walk over the bytes, without building an
//!   intermediate Avro value or a string per field name. A schema with anything else (unions,
//!   enums, maps, nested records…) is decoded with apache-avro's generic reader instead, and
//!   such values become JSON text.
//! - [`encode`] writes a value with apache-avro's own encoder (used by the salobj-style
//!   writer), so the reader's decoder is checked against an independent implementation.
//!
//! Types: SAL `float` is read as f32 and widened to f64 (as salobj's Python does); every
//! integer type travels as i64.

use std::collections::BTreeMap;

use abi_stable::std_types::{RString, RVec};
use apache_avro::schema::{RecordField, Schema};
use apache_avro::types::Value as AvroValue;
use love_plugin_api::abi::{Field, PrivateStamps, Value};
use love_plugin_api::catalog::{FieldInfo, ScalarKind, TopicInfo};
use serde_json::json;

/// A decode failure (the caller logs it with topic and offset).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct DecodeError(pub String);

/// What a record field is, for the sample being built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    SalIndex,
    SndStamp,
    RcvStamp,
    EfdStamp,
    KafkaStamp,
    SeqNum,
    RevCode,
    Identity,
    Origin,
    Field,
}

fn role_of(name: &str) -> Role {
    match name {
        "salIndex" => Role::SalIndex,
        "private_sndStamp" => Role::SndStamp,
        "private_rcvStamp" => Role::RcvStamp,
        "private_efdStamp" => Role::EfdStamp,
        "private_kafkaStamp" => Role::KafkaStamp,
        "private_seqNum" => Role::SeqNum,
        "private_revCode" => Role::RevCode,
        "private_identity" => Role::Identity,
        "private_origin" => Role::Origin,
        _ => Role::Field,
    }
}

/// A primitive type of the fast path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Prim {
    Bool,
    Int,
    Float,
    Double,
    Str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ty {
    Scalar(Prim),
    Array(Prim),
}

#[derive(Debug, Clone)]
struct PlanField {
    name: RString,
    role: Role,
    ty: Ty,
}

/// The decoded parts of one SAL sample.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Decoded {
    /// `salIndex` (0 when the topic has none).
    pub sal_index: i64,
    /// The private fields.
    pub stamps: PrivateStamps,
    /// The topic's own fields, in the writer's order.
    pub fields: RVec<Field>,
}

/// How to decode values written with one writer schema.
#[derive(Debug, Clone)]
pub struct DecodePlan {
    /// The record name (the sal_name: `logevent_heartbeat`, `ackcmd`…).
    pub record_name: String,
    /// The record namespace (`lsst.sal.ATDome`).
    pub namespace: String,
    fast: Option<Vec<PlanField>>,
    /// Only for a schema the fast path cannot decode.
    generic: Option<Generic>,
    roles: Vec<Role>,
}

/// What apache-avro's generic reader needs. A fast plan does not keep it: a parsed SAL schema
/// holds every field's description, units and default (an array's default has one JSON value
/// per element), 36 KB on average for the summit's 628 schemas, and only the generic path reads it.
#[derive(Debug, Clone)]
struct Generic {
    schema: Schema,
    field_names: Vec<RString>,
}

fn prim_of(schema: &Schema) -> Option<Prim> {
    match schema {
        Schema::Boolean => Some(Prim::Bool),
        Schema::Int | Schema::Long => Some(Prim::Int),
        Schema::Float => Some(Prim::Float),
        Schema::Double => Some(Prim::Double),
        Schema::String => Some(Prim::Str),
        _ => None,
    }
}

fn ty_of(schema: &Schema) -> Option<Ty> {
    match schema {
        Schema::Array(a) => match prim_of(&a.items)? {
            Prim::Str => None,
            p => Some(Ty::Array(p)),
        },
        s => prim_of(s).map(Ty::Scalar),
    }
}

impl DecodePlan {
    /// Compile the plan for a writer schema (JSON text, as the registry returns it).
    pub fn from_schema_text(text: &str) -> Result<DecodePlan, DecodeError> {
        let schema = Schema::parse_str(text).map_err(|e| DecodeError(format!("schema does not parse: {e}")))?;
        Self::from_schema(schema)
    }

    /// Compile the plan for a parsed writer schema (a record).
    pub fn from_schema(schema: Schema) -> Result<DecodePlan, DecodeError> {
        Self::compile(schema, true)
    }

    /// The plan, with the fast path if `fast` and every field allows it.
    fn compile(schema: Schema, fast: bool) -> Result<DecodePlan, DecodeError> {
        let Schema::Record(rec) = &schema else {
            return Err(DecodeError("schema is not a record".into()));
        };
        let mut fast = fast.then(|| Vec::with_capacity(rec.fields.len()));
        let mut field_names = Vec::with_capacity(rec.fields.len());
        let mut roles = Vec::with_capacity(rec.fields.len());
        for f in &rec.fields {
            let role = role_of(&f.name);
            field_names.push(RString::from(f.name.as_str()));
            roles.push(role);
            match (ty_of(&f.schema), fast.as_mut()) {
                (Some(ty), Some(v)) => v.push(PlanField { name: f.name.as_str().into(), role, ty }),
                _ => fast = None,
            }
        }
        let (record_name, namespace) = (rec.name.name.clone(), rec.name.namespace.clone().unwrap_or_default());
        let generic = fast.is_none().then(|| Generic { schema, field_names });
        Ok(DecodePlan { record_name, namespace, fast, generic, roles })
    }

    /// Whether values are decoded by the fast path.
    pub fn is_fast(&self) -> bool {
        self.fast.is_some()
    }

    /// Whether the record's first field is `salIndex` (an indexed component).
    pub fn has_sal_index(&self) -> bool {
        self.roles.first() == Some(&Role::SalIndex)
    }

    /// The `salIndex` of an Avro body without decoding the rest (0 if the topic has none).
    pub fn peek_sal_index(&self, body: &[u8]) -> Result<i64, DecodeError> {
        if !self.has_sal_index() {
            return Ok(0);
        }
        let mut pos = 0;
        read_long(body, &mut pos)
    }

    /// Decode an Avro body (the bytes after the 5-byte Confluent header).
    ///
    /// Never panics: a panic inside a decoder (a bug here, or in apache-avro on a hostile
    /// value) becomes a [`DecodeError`], so one bad record cannot stop a topic's reader.
    pub fn decode(&self, body: &[u8]) -> Result<Decoded, DecodeError> {
        let run = || match &self.fast {
            Some(plan) => decode_fast(plan, body),
            None => self.decode_generic(body),
        };
        // Nothing is shared or left half-updated: `self` is only read, the output is dropped.
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)).unwrap_or_else(|p| {
            let why = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown".into());
            Err(DecodeError(format!("decoder panicked: {why}")))
        })
    }

    fn decode_generic(&self, body: &[u8]) -> Result<Decoded, DecodeError> {
        let mut reader = body;
        let Some(g) = &self.generic else {
            return Err(DecodeError("no generic decoder for this schema".into()));
        };
        let value = apache_avro::from_avro_datum(&g.schema, &mut reader, None)
            .map_err(|e| DecodeError(format!("value does not decode: {e}")))?;
        if !reader.is_empty() {
            return Err(DecodeError(format!("{} bytes left after the record", reader.len())));
        }
        let AvroValue::Record(items) = value else {
            return Err(DecodeError("value is not a record".into()));
        };
        let mut out = Decoded { fields: RVec::with_capacity(items.len()), ..Default::default() };
        for (i, (_, v)) in items.into_iter().enumerate() {
            let role = self.roles.get(i).copied().unwrap_or(Role::Field);
            let value = generic_value(v);
            let Some(name) = g.field_names.get(i) else {
                return Err(DecodeError("more values than fields in the record".into()));
            };
            set(&mut out, role, name, value);
        }
        Ok(out)
    }
}

fn set(out: &mut Decoded, role: Role, name: &RString, value: Value) {
    let st = &mut out.stamps;
    match (role, value) {
        (Role::SalIndex, Value::Int(i)) => out.sal_index = i,
        (Role::SndStamp, Value::Float(f)) => st.snd_stamp = f,
        (Role::RcvStamp, Value::Float(f)) => st.rcv_stamp = f,
        (Role::EfdStamp, Value::Float(f)) => st.efd_stamp = f,
        (Role::KafkaStamp, Value::Float(f)) => st.kafka_stamp = f,
        (Role::SeqNum, Value::Int(i)) => st.seq_num = i,
        (Role::RevCode, Value::Str(s)) => st.rev_code = s,
        (Role::Identity, Value::Str(s)) => st.identity = s,
        (Role::Origin, Value::Int(i)) => st.origin = i,
        (_, value) => out.fields.push(Field { name: name.clone(), value }),
    }
}

/// Avro long / int: zigzag varint.
#[inline]
pub(crate) fn read_long(buf: &[u8], pos: &mut usize) -> Result<i64, DecodeError> {
    let mut n: u64 = 0;
    let mut shift = 0u32;
    loop {
        let Some(&b) = buf.get(*pos) else {
            return Err(DecodeError("value ends early".into()));
        };
        *pos += 1;
        n |= ((b & 0x7f) as u64) << shift;
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 63 {
            return Err(DecodeError("varint too long".into()));
        }
    }
    Ok(((n >> 1) as i64) ^ -((n & 1) as i64))
}

#[inline]
fn take<'a>(buf: &'a [u8], pos: &mut usize, n: usize) -> Result<&'a [u8], DecodeError> {
    let end = pos.checked_add(n).filter(|e| *e <= buf.len()).ok_or_else(|| DecodeError("value ends early".into()))?;
    let s = &buf[*pos..end];
    *pos = end;
    Ok(s)
}

#[inline]
fn read_f32(buf: &[u8], pos: &mut usize) -> Result<f64, DecodeError> {
    let b = take(buf, pos, 4)?;
    Ok(f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64)
}

#[inline]
fn read_f64(buf: &[u8], pos: &mut usize) -> Result<f64, DecodeError> {
    let b = take(buf, pos, 8)?;
    Ok(f64::from_le_bytes(b.try_into().expect("8 bytes")))
}

#[inline]
fn read_bool(buf: &[u8], pos: &mut usize) -> Result<bool, DecodeError> {
    match take(buf, pos, 1)?[0] {
        0 => Ok(false),
        1 => Ok(true),
        b => Err(DecodeError(format!("invalid boolean byte {b}"))),
    }
}

#[inline]
fn read_str(buf: &[u8], pos: &mut usize) -> Result<RString, DecodeError> {
    let n = read_long(buf, pos)?;
    if n < 0 {
        return Err(DecodeError("negative string length".into()));
    }
    let b = take(buf, pos, n as usize)?;
    std::str::from_utf8(b).map(RString::from).map_err(|_| DecodeError("string is not UTF-8".into()))
}

/// Read an array's blocks into a vector, reserving each block's count up front.
#[inline]
fn read_vec<T>(
    buf: &[u8],
    pos: &mut usize,
    item: fn(&[u8], &mut usize) -> Result<T, DecodeError>,
) -> Result<RVec<T>, DecodeError> {
    let mut v = RVec::new();
    loop {
        let mut count = read_long(buf, pos)?;
        if count == 0 {
            return Ok(v);
        }
        if count < 0 {
            // A negative count is followed by the block's size in bytes. i64::MIN has no
            // positive counterpart: a corrupt value, not a panic.
            count = count.checked_neg().ok_or_else(|| DecodeError("array block count out of range".into()))?;
            let _size = read_long(buf, pos)?;
        }
        // Every item takes at least one byte: a larger count is a corrupt value.
        if count as usize > buf.len().saturating_sub(*pos) {
            return Err(DecodeError("array count larger than the value".into()));
        }
        v.reserve(count as usize);
        for _ in 0..count {
            v.push(item(buf, pos)?);
        }
    }
}

fn decode_fast(plan: &[PlanField], buf: &[u8]) -> Result<Decoded, DecodeError> {
    let mut pos = 0usize;
    let mut out = Decoded { fields: RVec::with_capacity(plan.len().saturating_sub(8)), ..Default::default() };
    for f in plan {
        let value = match f.ty {
            Ty::Scalar(Prim::Bool) => Value::Bool(read_bool(buf, &mut pos)?),
            Ty::Scalar(Prim::Int) => Value::Int(read_long(buf, &mut pos)?),
            Ty::Scalar(Prim::Float) => Value::Float(read_f32(buf, &mut pos)?),
            Ty::Scalar(Prim::Double) => Value::Float(read_f64(buf, &mut pos)?),
            Ty::Scalar(Prim::Str) => Value::Str(read_str(buf, &mut pos)?),
            Ty::Array(Prim::Bool) => Value::BoolArray(read_vec(buf, &mut pos, read_bool)?),
            Ty::Array(Prim::Int) => Value::IntArray(read_vec(buf, &mut pos, read_long)?),
            Ty::Array(Prim::Float) => Value::FloatArray(read_vec(buf, &mut pos, read_f32)?),
            Ty::Array(Prim::Double) => Value::FloatArray(read_vec(buf, &mut pos, read_f64)?),
            Ty::Array(Prim::Str) => unreachable!("string arrays take the generic path"),
        };
        set(&mut out, f.role, &f.name, value);
    }
    if pos != buf.len() {
        return Err(DecodeError(format!("{} bytes left after the record", buf.len() - pos)));
    }
    Ok(out)
}

/// An apache-avro value as a plugin API value (generic path).
fn generic_value(v: AvroValue) -> Value {
    match v {
        AvroValue::Boolean(b) => Value::Bool(b),
        AvroValue::Int(i) => Value::Int(i as i64),
        AvroValue::Long(i) => Value::Int(i),
        AvroValue::Float(f) => Value::Float(f as f64),
        AvroValue::Double(f) => Value::Float(f),
        AvroValue::String(s) => Value::Str(s.into()),
        AvroValue::Enum(_, s) => Value::Str(s.into()),
        AvroValue::Union(_, inner) => generic_value(*inner),
        AvroValue::Array(items) => {
            if items.iter().all(|i| matches!(i, AvroValue::Boolean(_))) && !items.is_empty() {
                Value::BoolArray(items.into_iter().map(|i| matches!(i, AvroValue::Boolean(true))).collect())
            } else if items.iter().all(|i| matches!(i, AvroValue::Int(_) | AvroValue::Long(_))) {
                Value::IntArray(
                    items
                        .into_iter()
                        .map(|i| match i {
                            AvroValue::Int(x) => x as i64,
                            AvroValue::Long(x) => x,
                            _ => 0,
                        })
                        .collect(),
                )
            } else if items.iter().all(|i| matches!(i, AvroValue::Float(_) | AvroValue::Double(_))) {
                Value::FloatArray(
                    items
                        .into_iter()
                        .map(|i| match i {
                            AvroValue::Float(x) => x as f64,
                            AvroValue::Double(x) => x,
                            _ => 0.0,
                        })
                        .collect(),
                )
            } else {
                Value::Json(avro_to_json(&AvroValue::Array(items)).to_string().into())
            }
        }
        other => Value::Json(avro_to_json(&other).to_string().into()),
    }
}

fn avro_to_json(v: &AvroValue) -> serde_json::Value {
    match v {
        AvroValue::Null => serde_json::Value::Null,
        AvroValue::Boolean(b) => json!(b),
        AvroValue::Int(i) => json!(i),
        AvroValue::Long(i) => json!(i),
        AvroValue::Float(f) => json!(*f as f64),
        AvroValue::Double(f) => json!(f),
        AvroValue::String(s) | AvroValue::Enum(_, s) => json!(s),
        AvroValue::Bytes(b) | AvroValue::Fixed(_, b) => json!(b),
        AvroValue::Union(_, inner) => avro_to_json(inner),
        AvroValue::Array(items) => serde_json::Value::Array(items.iter().map(avro_to_json).collect()),
        AvroValue::Map(m) => serde_json::Value::Object(m.iter().map(|(k, v)| (k.clone(), avro_to_json(v))).collect()),
        AvroValue::Record(items) => {
            serde_json::Value::Object(items.iter().map(|(k, v)| (k.clone(), avro_to_json(v))).collect())
        }
        other => json!(format!("{other:?}")),
    }
}

/// The Avro type name salobj uses for a ts_xml IDL type.
pub fn avro_type_of_idl(idl: &str) -> &'static str {
    match idl {
        "boolean" | "bool" => "boolean",
        "byte" | "octet" | "short" | "int" | "long" | "unsigned short" | "int8" | "int16" | "int32" | "uint8"
        | "uint16" => "int",
        "long long" | "unsigned int" | "unsigned long" | "unsigned long long" | "int64" | "uint32" | "uint64" => "long",
        "float" => "float",
        "double" => "double",
        _ => "string",
    }
}

fn default_json(avro: &str) -> serde_json::Value {
    match avro {
        "boolean" => json!(false),
        "int" | "long" => json!(0),
        "float" | "double" => json!(0.0),
        _ => json!(""),
    }
}

const PRIVATE_FIELDS: [(&str, &str, &str, &str); 8] = [
    ("private_sndStamp", "double", "second", "Time of instance publication"),
    ("private_rcvStamp", "double", "second", "Time of instance reception"),
    ("private_efdStamp", "double", "second", "UTC time for EFD"),
    ("private_kafkaStamp", "double", "second", "TAI time at which the Kafka message was created."),
    ("private_seqNum", "int", "unitless", "Sequence number"),
    ("private_revCode", "string", "unitless", "Revision hashcode"),
    (
        "private_identity",
        "string",
        "unitless",
        "Identity of publisher: SAL component name for a CSC or user@host for a user",
    ),
    ("private_origin", "int", "unitless", "Process ID of publisher"),
];

/// The fields of the `ackcmd` topic, as ts_xml's SALGenerics defines them.
pub fn ackcmd_topic() -> TopicInfo {
    TopicInfo {
        name: "ackcmd".into(),
        fields: vec![
            FieldInfo::new("ack", "int", 1, "unitless"),
            FieldInfo::new("error", "int", 1, "unitless"),
            FieldInfo::new("result", "string", 1, "unitless"),
            FieldInfo::new("identity", "string", 1, "unitless"),
            FieldInfo::new("origin", "int", 1, "unitless"),
            FieldInfo::new("cmdtype", "int", 1, "unitless"),
            FieldInfo::new("timeout", "double", 1, "second"),
        ],
        rate_hz: None,
    }
}

/// The writer schema salobj registers for `sal_name` (`logevent_heartbeat`, `command_start`,
/// `ackcmd`, a telemetry name) of `component`, as JSON.
pub fn topic_schema(component: &str, sal_name: &str, indexed: bool, fields: &[FieldInfo]) -> serde_json::Value {
    let mut out = Vec::with_capacity(fields.len() + 9);
    if indexed {
        out.push(json!({"name": "salIndex", "type": "int", "default": 0, "description": "SAL index (only present for indexed SAL components)", "units": "unitless"}));
    }
    for (name, ty, units, description) in PRIVATE_FIELDS {
        out.push(
            json!({"name": name, "type": ty, "default": default_json(ty), "description": description, "units": units}),
        );
    }
    for f in fields {
        let avro = avro_type_of_idl(&f.idl_type);
        let array = f.count > 1 && f.scalar_kind() != ScalarKind::Str;
        let (ty, default) = if array {
            (
                json!({"type": "array", "items": avro}),
                serde_json::Value::Array(vec![default_json(avro); f.count as usize]),
            )
        } else {
            (json!(avro), default_json(avro))
        };
        out.push(
            json!({"name": f.name, "type": ty, "default": default, "description": f.description, "units": f.units}),
        );
    }
    json!({
        "type": "record",
        "name": sal_name,
        "namespace": format!("lsst.sal.{component}"),
        "fields": out,
    })
}

/// A short revision code for a schema (salobj uses a hash of the topic definition).
pub fn rev_code(schema_text: &str) -> String {
    // FNV-1a, 32 bits: stable across runs and platforms.
    let mut h: u32 = 0x811c_9dc5;
    for b in schema_text.bytes() {
        h ^= b as u32;
        h = h.wrapping_mul(0x0100_0193);
    }
    format!("{h:08x}")
}

fn to_avro(schema: &Schema, v: Option<&Value>) -> Result<AvroValue, String> {
    fn scalar(prim: &Schema, v: Option<&Value>) -> Result<AvroValue, String> {
        Ok(match (prim, v) {
            (Schema::Boolean, None) => AvroValue::Boolean(false),
            (Schema::Boolean, Some(Value::Bool(b))) => AvroValue::Boolean(*b),
            (Schema::Boolean, Some(Value::Int(i))) => AvroValue::Boolean(*i != 0),
            (Schema::Int, None) => AvroValue::Int(0),
            (Schema::Int, Some(Value::Int(i))) => {
                AvroValue::Int(i32::try_from(*i).map_err(|_| format!("{i} does not fit an Avro int"))?)
            }
            (Schema::Int, Some(Value::Bool(b))) => AvroValue::Int(*b as i32),
            (Schema::Long, None) => AvroValue::Long(0),
            (Schema::Long, Some(Value::Int(i))) => AvroValue::Long(*i),
            (Schema::Long, Some(Value::Bool(b))) => AvroValue::Long(*b as i64),
            (Schema::Float, None) => AvroValue::Float(0.0),
            (Schema::Float, Some(Value::Float(f))) => AvroValue::Float(*f as f32),
            (Schema::Float, Some(Value::Int(i))) => AvroValue::Float(*i as f32),
            (Schema::Double, None) => AvroValue::Double(0.0),
            (Schema::Double, Some(Value::Float(f))) => AvroValue::Double(*f),
            (Schema::Double, Some(Value::Int(i))) => AvroValue::Double(*i as f64),
            (Schema::String, None) => AvroValue::String(String::new()),
            (Schema::String, Some(Value::Str(s) | Value::Json(s))) => AvroValue::String(s.to_string()),
            (s, Some(v)) => return Err(format!("a {v:?} cannot be written as {s:?}")),
            (s, None) => return Err(format!("no default for {s:?}")),
        })
    }
    match schema {
        Schema::Array(a) => {
            let items: Vec<AvroValue> = match v {
                None => Vec::new(),
                Some(Value::BoolArray(xs)) => {
                    xs.iter().map(|x| scalar(&a.items, Some(&Value::Bool(*x)))).collect::<Result<_, _>>()?
                }
                Some(Value::IntArray(xs)) => {
                    xs.iter().map(|x| scalar(&a.items, Some(&Value::Int(*x)))).collect::<Result<_, _>>()?
                }
                Some(Value::FloatArray(xs)) => {
                    xs.iter().map(|x| scalar(&a.items, Some(&Value::Float(*x)))).collect::<Result<_, _>>()?
                }
                Some(other) => vec![scalar(&a.items, Some(other))?],
            };
            Ok(AvroValue::Array(items))
        }
        s => scalar(s, v),
    }
}

/// Encode a sample with the writer schema `schema` (a record as [`topic_schema`] makes):
/// `salIndex` and the private fields from `sal_index` and `stamps`, every other field by name
/// from `fields` (salobj's default when missing). Returns the Avro body (no header).
pub fn encode(schema: &Schema, sal_index: i64, stamps: &PrivateStamps, fields: &[Field]) -> Result<Vec<u8>, String> {
    let Schema::Record(rec) = schema else {
        return Err("schema is not a record".into());
    };
    let by_name: BTreeMap<&str, &Value> = fields.iter().map(|f| (f.name.as_str(), &f.value)).collect();
    let mut items = Vec::with_capacity(rec.fields.len());
    for RecordField { name, schema: fs, default, .. } in &rec.fields {
        let v = match role_of(name) {
            Role::SalIndex => Value::Int(sal_index),
            Role::SndStamp => Value::Float(stamps.snd_stamp),
            Role::RcvStamp => Value::Float(stamps.rcv_stamp),
            Role::EfdStamp => Value::Float(stamps.efd_stamp),
            Role::KafkaStamp => Value::Float(stamps.kafka_stamp),
            Role::SeqNum => Value::Int(stamps.seq_num),
            Role::RevCode => Value::Str(stamps.rev_code.clone()),
            Role::Identity => Value::Str(stamps.identity.clone()),
            Role::Origin => Value::Int(stamps.origin),
            Role::Field => {
                let given = by_name.get(name.as_str()).copied();
                let value = match (given, fs, default) {
                    // A missing array takes the schema's default length (salobj: `count` zeros).
                    (None, Schema::Array(a), Some(serde_json::Value::Array(d))) => AvroValue::Array(
                        (0..d.len())
                            .map(|_| to_avro(&a.items, None))
                            .collect::<Result<_, _>>()
                            .map_err(|e| format!("field {name}: {e}"))?,
                    ),
                    _ => to_avro(fs, given).map_err(|e| format!("field {name}: {e}"))?,
                };
                items.push((name.clone(), value));
                continue;
            }
        };
        items.push((name.clone(), to_avro(fs, Some(&v)).map_err(|e| format!("field {name}: {e}"))?));
    }
    apache_avro::to_avro_datum(schema, AvroValue::Record(items)).map_err(|e| e.to_string())
}

/// Split a Confluent wire-format value into (schema id, Avro body).
pub fn split_confluent(value: &[u8]) -> Result<(i32, &[u8]), DecodeError> {
    if value.len() < 5 {
        return Err(DecodeError(format!("value of {} bytes is shorter than the Confluent header", value.len())));
    }
    if value[0] != 0 {
        return Err(DecodeError(format!("magic byte {} is not 0 (not Confluent wire format)", value[0])));
    }
    Ok((i32::from_be_bytes([value[1], value[2], value[3], value[4]]), &value[5..]))
}

/// Prefix an Avro body with the Confluent header.
pub fn confluent(schema_id: i32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 5);
    out.push(0);
    out.extend_from_slice(&schema_id.to_be_bytes());
    out.extend_from_slice(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(fields: &[(&str, &str, u32)]) -> Vec<FieldInfo> {
        fields.iter().map(|(n, t, c)| FieldInfo::new(n, t, *c, "unitless")).collect()
    }

    #[test]
    fn schema_shape() {
        let s = topic_schema(
            "Test",
            "logevent_scalars",
            true,
            &info(&[
                ("boolean0", "boolean", 1),
                ("short0", "short", 1),
                ("longLong0", "long long", 1),
                ("float0", "float", 5),
                ("string0", "string", 20),
            ]),
        );
        assert_eq!(s["name"], "logevent_scalars");
        assert_eq!(s["namespace"], "lsst.sal.Test");
        let names: Vec<&str> = s["fields"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
        assert_eq!(&names[..3], &["salIndex", "private_sndStamp", "private_rcvStamp"]);
        assert_eq!(names[9..], ["boolean0", "short0", "longLong0", "float0", "string0"]);
        let f = &s["fields"].as_array().unwrap()[9 + 3];
        assert_eq!(f["type"], json!({"type": "array", "items": "float"}));
        assert_eq!(s["fields"][10]["type"], "int");
        assert_eq!(s["fields"][11]["type"], "long");
        assert_eq!(s["fields"][13]["type"], "string");
        assert_eq!(s["fields"][12]["units"], "unitless");
    }

    #[test]
    fn round_trip_fast_and_generic() {
        let fi = info(&[
            ("b", "boolean", 1),
            ("i", "int", 1),
            ("l", "long long", 1),
            ("f", "float", 1),
            ("d", "double", 1),
            ("s", "string", 1),
            ("fa", "float", 3),
            ("ia", "short", 2),
            ("ba", "boolean", 2),
            ("da", "double", 2),
        ]);
        let schema_text = topic_schema("Test", "logevent_x", true, &fi).to_string();
        let plan = DecodePlan::from_schema_text(&schema_text).unwrap();
        assert!(plan.is_fast());
        assert!(plan.has_sal_index());
        let stamps = PrivateStamps {
            snd_stamp: 1.5,
            rcv_stamp: 0.0,
            efd_stamp: 2.5,
            kafka_stamp: 3.5,
            seq_num: 7,
            rev_code: "abcd".into(),
            identity: "me@here".into(),
            origin: 42,
        };
        let fields = vec![
            Field { name: "b".into(), value: Value::Bool(true) },
            Field { name: "i".into(), value: Value::Int(-5) },
            Field { name: "l".into(), value: Value::Int(1 << 40) },
            Field { name: "f".into(), value: Value::Float(0.1) },
            Field { name: "d".into(), value: Value::Float(0.1) },
            Field { name: "s".into(), value: Value::Str("héllo".into()) },
            Field { name: "fa".into(), value: Value::FloatArray(vec![1.0, 2.5, -3.0].into()) },
            Field { name: "ia".into(), value: Value::IntArray(vec![3, -4].into()) },
            Field { name: "ba".into(), value: Value::BoolArray(vec![true, false].into()) },
            Field { name: "da".into(), value: Value::FloatArray(vec![1e300, -0.5].into()) },
        ];
        let schema = Schema::parse_str(&schema_text).unwrap();
        let body = encode(&schema, 3, &stamps, &fields).unwrap();
        assert_eq!(plan.peek_sal_index(&body).unwrap(), 3);
        let d = plan.decode(&body).unwrap();
        assert_eq!(d.sal_index, 3);
        assert_eq!(d.stamps, stamps);
        let mut expected = fields.clone();
        expected[3].value = Value::Float(0.1f32 as f64);
        assert_eq!(d.fields.as_slice(), expected.as_slice());
        let generic = DecodePlan::compile(schema, false).unwrap();
        assert!(!generic.is_fast());
        assert_eq!(generic.decode(&body).unwrap(), d);
        assert!(plan.generic.is_none(), "a fast plan keeps no parsed schema");
        // Truncated and padded values are errors, never panics.
        for n in 0..body.len() {
            assert!(plan.decode(&body[..n]).is_err());
        }
        let mut long = body.clone();
        long.push(0);
        assert!(plan.decode(&long).is_err());
    }

    #[test]
    fn unions_take_the_generic_path() {
        let text = r#"{"type":"record","name":"x","namespace":"lsst.sal.T","fields":[{"name":"private_sndStamp","type":"double"},{"name":"u","type":["null","string"]},{"name":"names","type":{"type":"array","items":"string"}}]}"#;
        let plan = DecodePlan::from_schema_text(text).unwrap();
        assert!(!plan.is_fast());
        let v = AvroValue::Record(vec![
            ("private_sndStamp".into(), AvroValue::Double(4.0)),
            ("u".into(), AvroValue::Union(1, Box::new(AvroValue::String("yes".into())))),
            ("names".into(), AvroValue::Array(vec![AvroValue::String("a".into())])),
        ]);
        let body = apache_avro::to_avro_datum(&Schema::parse_str(text).unwrap(), v).unwrap();
        let d = plan.decode(&body).unwrap();
        assert_eq!(d.stamps.snd_stamp, 4.0);
        assert_eq!(d.fields[0].value, Value::Str("yes".into()));
        assert_eq!(d.fields[1].value, Value::Json(r#"["a"]"#.into()));
    }

    #[test]
    fn array_block_count_of_i64_min_is_an_error() {
        let fi = info(&[("ia", "long long", 3)]);
        let text = topic_schema("Test", "logevent_x", false, &fi).to_string();
        let plan = DecodePlan::from_schema_text(&text).unwrap();
        assert!(plan.is_fast());
        let stamps = PrivateStamps::default();
        let ok = encode(&Schema::parse_str(&text).unwrap(), 0, &stamps, &[]).unwrap();
        // The array is the last field: replace its encoding (a block of 3 zeros, then the end)
        // with a block count of i64::MIN (zigzag: u64::MAX, ten varint bytes), a size, the end.
        let mut body = ok[..ok.len() - 5].to_vec();
        body.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0x00, 0x00]);
        let mut pos = ok.len() - 5;
        assert_eq!(read_long(&body, &mut pos), Ok(i64::MIN));
        let e = plan.decode(&body).unwrap_err();
        assert!(e.0.contains("count out of range"), "{e}");
    }

    #[test]
    fn confluent_header() {
        let v = confluent(258, &[9, 8]);
        assert_eq!(v, vec![0, 0, 0, 1, 2, 9, 8]);
        assert_eq!(split_confluent(&v).unwrap(), (258, &[9u8, 8][..]));
        assert!(split_confluent(&[1, 0, 0, 0, 1]).is_err());
        assert!(split_confluent(&[0, 0]).is_err());
    }
}
