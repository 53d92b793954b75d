//! Property tests of the sample conversion (`FIELDS`): for every IDL type, scalars and arrays,
//! any value (NaN and infinities, empty and unicode strings) converts to JSON that parses back
//! to the value, labelled with the declared type's `dataType` and units, in catalog order.

use love_plugin_api::abi::{Field, PrivateStamps, Sample, TopicKind, Value};
use love_plugin_api::catalog::{FieldInfo, TopicInfo};
use love_plugin_api::convert::TopicConverter;
use love_plugin_api::json::parse_lenient;
use proptest::prelude::*;
use serde_json::Value as J;

const IDL: [&str; 10] =
    ["boolean", "byte", "short", "int", "long", "long long", "unsigned short", "unsigned int", "float", "double"];

fn any_f64() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(0.0),
        Just(-0.0),
        Just(f64::MIN_POSITIVE),
        Just(f64::MAX),
        any::<f32>().prop_map(|f| f as f64),
        any::<f64>(),
    ]
}

/// A declared field and a value of its type.
fn field() -> impl Strategy<Value = (FieldInfo, Value)> {
    let name = "[a-zA-Z][a-zA-Z0-9_]{0,12}";
    let units = prop_oneof![Just("unitless".to_string()), Just("deg".to_string()), "\\PC{0,6}"];
    (name, units, 0..IDL.len() + 1, 1u32..6).prop_flat_map(|(name, units, t, count)| {
        let (idl, count) = if t == IDL.len() { ("string", 1) } else { (IDL[t], count) };
        let info = FieldInfo::new(&name, idl, count, &units);
        let n = count as usize;
        let value: BoxedStrategy<Value> = match (idl, count > 1) {
            ("string", _) => "\\PC{0,20}".prop_map(|s: String| Value::Str(s.into())).boxed(),
            ("boolean", false) => any::<bool>().prop_map(Value::Bool).boxed(),
            ("boolean", true) => {
                prop::collection::vec(any::<bool>(), n).prop_map(|v| Value::BoolArray(v.into())).boxed()
            }
            ("float" | "double", false) => any_f64().prop_map(Value::Float).boxed(),
            ("float" | "double", true) => {
                prop::collection::vec(any_f64(), n).prop_map(|v| Value::FloatArray(v.into())).boxed()
            }
            (_, false) => any::<i64>().prop_map(Value::Int).boxed(),
            (_, true) => prop::collection::vec(any::<i64>(), n).prop_map(|v| Value::IntArray(v.into())).boxed(),
        };
        value.prop_map(move |v| (info.clone(), v))
    })
}

fn float_matches(got: &J, want: f64) -> bool {
    if want.is_nan() {
        got == "NaN"
    } else if want.is_infinite() {
        got == if want > 0.0 { "Infinity" } else { "-Infinity" }
    } else {
        got.is_f64() && got.as_f64() == Some(want)
    }
}

fn value_matches(got: &J, want: &Value) -> bool {
    match want {
        Value::Bool(b) => got.as_bool() == Some(*b),
        Value::Int(i) => got.is_i64() && got.as_i64() == Some(*i),
        Value::Float(f) => float_matches(got, *f),
        Value::Str(s) => got.as_str() == Some(s.as_str()),
        Value::BoolArray(a) => got
            .as_array()
            .is_some_and(|g| g.len() == a.len() && g.iter().zip(a.iter()).all(|(x, y)| x.as_bool() == Some(*y))),
        Value::IntArray(a) => got.as_array().is_some_and(|g| {
            g.len() == a.len() && g.iter().zip(a.iter()).all(|(x, y)| x.is_i64() && x.as_i64() == Some(*y))
        }),
        Value::FloatArray(a) => got
            .as_array()
            .is_some_and(|g| g.len() == a.len() && g.iter().zip(a.iter()).all(|(x, y)| float_matches(x, *y))),
        Value::Json(_) => true,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn fields_roundtrip(
        mut fields in prop::collection::vec(field(), 0..12),
        indexed in any::<bool>(),
        sal_index in any::<i64>(),
        snd in any_f64(),
        rev in "\\PC{0,10}",
        identity in "\\PC{0,10}",
    ) {
        // ts_xml field names are unique within a topic.
        let mut seen = std::collections::HashSet::new();
        fields.retain(|(f, _)| seen.insert(f.name.clone()));
        let topic = TopicInfo { name: "t".into(), fields: fields.iter().map(|(f, _)| f.clone()).collect(), rate_hz: None };
        let conv = TopicConverter::new(&topic, indexed);
        let sample = Sample {
            component: "C".into(),
            sal_index,
            topic: "t".into(),
            kind: TopicKind::EVENT,
            stamps: PrivateStamps { snd_stamp: snd, rev_code: rev.as_str().into(), identity: identity.as_str().into(), ..Default::default() },
            fields: fields.iter().map(|(f, v)| Field::new(&f.name, v.clone())).collect::<Vec<_>>().into(),
            received: 0.0,
            seq: 0,
        };
        let text = conv.fields_json(&sample);
        prop_assert!(text.is_ascii(), "non-ASCII escaped like json.dumps: {}", text);
        let parsed = parse_lenient(&text).unwrap();
        let obj = parsed.as_object().unwrap();
        let keys: Vec<&str> = obj.keys().map(|k| k.as_str()).collect();
        let mut want_keys: Vec<&str> = Vec::new();
        if indexed { want_keys.push("salIndex"); }
        want_keys.extend(["private_sndStamp", "private_rcvStamp", "private_efdStamp", "private_kafkaStamp",
            "private_seqNum", "private_revCode", "private_identity", "private_origin"]);
        want_keys.extend(fields.iter().map(|(f, _)| f.name.as_str()));
        prop_assert_eq!(keys, want_keys);
        if indexed {
            prop_assert_eq!(obj["salIndex"]["value"].as_i64(), Some(sal_index));
        }
        prop_assert!(float_matches(&obj["private_sndStamp"]["value"], snd));
        prop_assert_eq!(obj["private_revCode"]["value"].as_str(), Some(rev.as_str()));
        prop_assert_eq!(obj["private_identity"]["value"].as_str(), Some(identity.as_str()));
        for (info, value) in &fields {
            let entry = &obj[&info.name];
            prop_assert_eq!(entry.as_object().unwrap().keys().collect::<Vec<_>>(), vec!["value", "dataType", "units"]);
            prop_assert!(value_matches(&entry["value"], value), "{} = {:?} written as {}", info.name, value, entry["value"]);
            prop_assert_eq!(entry["dataType"].as_str(), Some(info.data_type()));
            prop_assert_eq!(entry["units"].as_str(), Some(info.units.as_str()));
        }
    }

    /// The dataType table of spec section b: booleans are "Int" (quirk 8 kept), Count > 1 makes
    /// an array type except for strings.
    #[test]
    fn data_type_table(t in 0..IDL.len() + 1, count in 1u32..200) {
        let idl = if t == IDL.len() { "string" } else { IDL[t] };
        let f = FieldInfo::new("x", idl, count, "unitless");
        let want = match (idl, count > 1) {
            ("string", _) => "String",
            ("float" | "double", false) => "Float",
            ("float" | "double", true) => "Array<Float>",
            (_, false) => "Int",
            (_, true) => "Array<Int>",
        };
        prop_assert_eq!(f.data_type(), want);
    }

    /// Python's float repr: shortest round trip, `.0` on integral values, `e+XX` exponents.
    #[test]
    fn floats_round_trip(v in any::<f64>().prop_filter("finite", |v| v.is_finite())) {
        let mut s = String::new();
        love_plugin_api::json::write_f64(&mut s, v);
        let back: f64 = s.parse().unwrap();
        prop_assert_eq!(back.to_bits(), v.to_bits());
        prop_assert!(s.contains('.') || s.contains('e'), "{}", s);
        if let Some(pos) = s.find('e') {
            let exp = &s[pos + 1..];
            prop_assert!(exp.starts_with('+') || exp.starts_with('-'));
            prop_assert!(exp.len() >= 3);
        }
    }
}

/// A sample missing a declared field gets salobj's default for it; a field the catalog does not
/// know is kept, labelled from its value.
#[test]
fn missing_and_unknown_fields() {
    let topic = TopicInfo {
        name: "t".into(),
        fields: vec![
            FieldInfo::new("a", "double", 3, "m"),
            FieldInfo::new("b", "boolean", 1, "unitless"),
            FieldInfo::new("s", "string", 1, "unitless"),
        ],
        rate_hz: None,
    };
    let conv = TopicConverter::new(&topic, false);
    let sample = Sample {
        fields: vec![Field::new("extra", Value::Str("é".into())), Field::new("b", Value::Bool(true))].into(),
        ..Default::default()
    };
    let v = parse_lenient(&conv.fields_json(&sample)).unwrap();
    assert_eq!(v["a"], serde_json::json!({"value": [0.0, 0.0, 0.0], "dataType": "Array<Float>", "units": "m"}));
    assert_eq!(v["b"], serde_json::json!({"value": true, "dataType": "Int", "units": "unitless"}));
    assert_eq!(v["s"], serde_json::json!({"value": "", "dataType": "String", "units": "unitless"}));
    assert_eq!(v["extra"], serde_json::json!({"value": "é", "dataType": "String", "units": "unitless"}));
    assert_eq!(v.as_object().unwrap().keys().next_back().unwrap(), "extra");
}
