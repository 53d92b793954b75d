//! Property-based fuzzing of the three inputs love-host takes from outside: frames from the
//! LOVE-manager, Avro records (with their writer schemas) from Kafka, and replay lines. Each
//! property: no panic, and bad input is an error (not a wrong success). Case counts are kept
//! modest so the suite stays a few seconds in CI; raise them with `PROPTEST_CASES` for a longer
//! run.

use love_host::manager::{classify_frame, Frame};
use love_host::sal::kafka::avro::DecodePlan;
use love_host::sal::replay::decode_line;
use love_plugin_api::abi::Value;
use love_plugin_api::json::{validate_with_depth, MAX_VALUE_DEPTH};
use proptest::prelude::*;
use serde_json::json;

fn config() -> ProptestConfig {
    // 256 cases (proptest's default), or `PROPTEST_CASES`.
    ProptestConfig { failure_persistence: None, ..ProptestConfig::default() }
}

/// Any JSON value, a few levels deep.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(serde_json::Value::from),
        ".{0,12}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
            prop::collection::btree_map("[a-z_]{1,8}", inner, 0..4)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

/// The manager's initial_state request, with any of its parts replaced by anything.
fn request_form() -> impl Strategy<Value = serde_json::Value> {
    (json_value(), json_value(), json_value(), 0u8..8).prop_map(|(a, b, c, which)| {
        let mut v = json!({
            "category": "initial_state",
            "data": [{"csc": "ATDome", "salindex": 0, "data": {"event_name": "summaryState"}}],
            "subscription": "initial_state-ATDome-all-all",
            "tracing": {"manager_rcv_from_group": 1.5},
        });
        match which {
            0 => v["category"] = a,
            1 => v["data"] = a,
            2 => v["data"][0] = a,
            3 => v["data"][0]["data"] = a,
            4 => v["data"][0]["csc"] = a,
            5 => v["data"][0]["salindex"] = a,
            6 => v = a,
            _ => {
                v["tracing"] = a;
                v["extra"] = b;
                v["data"][0]["more"] = c;
            }
        }
        v
    })
}

/// What a request must be for the link to hand it to the producers.
fn is_request_shape(v: &serde_json::Value) -> bool {
    v.get("category").and_then(|c| c.as_str()) == Some("initial_state")
        && v.get("data").and_then(|d| d.as_array()).and_then(|a| a.first()).is_some_and(|f| f.is_object())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn manager_frames_of_any_text_are_classified_without_panic(text in ".{0,200}") {
        let frame = classify_frame(&text);
        if serde_json::from_str::<serde_json::Value>(&text).is_err() {
            prop_assert!(matches!(frame, Frame::Bad(_)), "{text:?}: {frame:?}");
        }
    }

    #[test]
    fn manager_requests_pass_only_in_their_shape(v in request_form()) {
        let text = v.to_string();
        let frame = classify_frame(&text);
        prop_assert_eq!(frame == Frame::Request, is_request_shape(&v), "{}: {:?}", text, frame);
        // Truncated anywhere, it is malformed JSON (or a smaller valid value), never a panic.
        for cut in [text.len() / 3, text.len() / 2, text.len().saturating_sub(1)] {
            if text.is_char_boundary(cut) {
                let _ = classify_frame(&text[..cut]);
            }
        }
    }
}

// ---- Avro ----

#[derive(Debug, Clone, Copy)]
enum Prim {
    Boolean,
    Int,
    Long,
    Float,
    Double,
    String,
}

#[derive(Debug, Clone)]
enum Ty {
    Prim(Prim),
    Array(Prim),
    /// `["null", prim]`: decoded by the generic reader.
    Nullable(Prim),
    /// An enum: generic reader.
    Enum(u8),
    /// A map of prim: generic reader.
    Map(Prim),
}

fn prim() -> impl Strategy<Value = Prim> {
    prop_oneof![
        Just(Prim::Boolean),
        Just(Prim::Int),
        Just(Prim::Long),
        Just(Prim::Float),
        Just(Prim::Double),
        Just(Prim::String)
    ]
}

fn ty() -> impl Strategy<Value = Ty> {
    prop_oneof![
        4 => prim().prop_map(Ty::Prim),
        2 => prim().prop_map(Ty::Array),
        1 => prim().prop_map(Ty::Nullable),
        1 => (1u8..5).prop_map(Ty::Enum),
        1 => prim().prop_map(Ty::Map),
    ]
}

fn prim_name(p: Prim) -> &'static str {
    match p {
        Prim::Boolean => "boolean",
        Prim::Int => "int",
        Prim::Long => "long",
        Prim::Float => "float",
        Prim::Double => "double",
        Prim::String => "string",
    }
}

fn schema_of(fields: &[Ty]) -> String {
    let mut out = vec![
        json!({"name": "salIndex", "type": "int"}),
        json!({"name": "private_sndStamp", "type": "double"}),
        json!({"name": "private_seqNum", "type": "long"}),
        json!({"name": "private_identity", "type": "string"}),
    ];
    for (i, t) in fields.iter().enumerate() {
        let ty = match t {
            Ty::Prim(p) => json!(prim_name(*p)),
            Ty::Array(p) => json!({"type": "array", "items": prim_name(*p)}),
            Ty::Nullable(p) => json!(["null", prim_name(*p)]),
            Ty::Enum(n) => {
                json!({"type": "enum", "name": format!("E{i}"), "symbols": (0..*n).map(|k| format!("S{k}")).collect::<Vec<_>>()})
            }
            Ty::Map(p) => json!({"type": "map", "values": prim_name(*p)}),
        };
        out.push(json!({"name": format!("f{i}"), "type": ty}));
    }
    json!({"type": "record", "name": "logevent_fuzz", "namespace": "lsst.sal.Test", "fields": out}).to_string()
}

fn zigzag(out: &mut Vec<u8>, v: i64) {
    let mut n = ((v << 1) ^ (v >> 63)) as u64;
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

/// A value of `p` drawn from `seed`.
fn put_prim(out: &mut Vec<u8>, p: Prim, seed: i64) {
    match p {
        Prim::Boolean => out.push((seed & 1) as u8),
        Prim::Int => zigzag(out, seed as i32 as i64),
        Prim::Long => zigzag(out, seed),
        Prim::Float => out.extend_from_slice(&(seed as f32 / 7.0).to_le_bytes()),
        Prim::Double => out.extend_from_slice(&(seed as f64 / 7.0).to_le_bytes()),
        Prim::String => {
            let s = format!("s{seed}\"\\é");
            zigzag(out, s.len() as i64);
            out.extend_from_slice(s.as_bytes());
        }
    }
}

/// A valid body for `fields`.
fn body_of(fields: &[Ty], seeds: &[i64]) -> Vec<u8> {
    let mut out = Vec::new();
    zigzag(&mut out, 1); // salIndex
    out.extend_from_slice(&1.5f64.to_le_bytes());
    zigzag(&mut out, 7);
    put_prim(&mut out, Prim::String, 3);
    for (i, t) in fields.iter().enumerate() {
        let seed = seeds.get(i).copied().unwrap_or(i as i64);
        match t {
            Ty::Prim(p) => put_prim(&mut out, *p, seed),
            Ty::Array(p) | Ty::Map(p) => {
                let n = (seed.unsigned_abs() % 4) as i64;
                if n > 0 {
                    zigzag(&mut out, n);
                    for k in 0..n {
                        if matches!(t, Ty::Map(_)) {
                            put_prim(&mut out, Prim::String, k);
                        }
                        put_prim(&mut out, *p, seed ^ k);
                    }
                }
                zigzag(&mut out, 0);
            }
            Ty::Nullable(p) => {
                if seed & 1 == 0 {
                    zigzag(&mut out, 0);
                } else {
                    zigzag(&mut out, 1);
                    put_prim(&mut out, *p, seed);
                }
            }
            Ty::Enum(n) => zigzag(&mut out, seed.rem_euclid(*n as i64)),
        }
    }
    out
}

fn no_inner_panic(r: &Result<love_host::sal::kafka::avro::Decoded, love_host::sal::kafka::avro::DecodeError>) -> bool {
    !matches!(r, Err(e) if e.0.contains("panicked"))
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn avro_records_decode_and_json_values_are_valid(
        fields in prop::collection::vec(ty(), 0..8),
        seeds in prop::collection::vec(any::<i64>(), 8),
    ) {
        let schema = schema_of(&fields);
        let plan = DecodePlan::from_schema_text(&schema).map_err(|e| TestCaseError::fail(format!("{e}: {schema}")))?;
        let body = body_of(&fields, &seeds);
        let decoded = plan.decode(&body).map_err(|e| TestCaseError::fail(format!("{e}: {schema}")))?;
        prop_assert_eq!(decoded.fields.len(), fields.len(), "the fields after salIndex and the stamps");
        for f in decoded.fields.iter() {
            if let Value::Json(text) = &f.value {
                prop_assert!(validate_with_depth(text, MAX_VALUE_DEPTH).is_ok(), "{}: {}", f.name, text);
            }
        }
    }

    #[test]
    fn damaged_avro_records_are_errors_not_panics(
        fields in prop::collection::vec(ty(), 1..8),
        seeds in prop::collection::vec(any::<i64>(), 8),
        damage in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
        tail in prop::collection::vec(any::<u8>(), 0..16),
    ) {
        let plan = DecodePlan::from_schema_text(&schema_of(&fields)).unwrap();
        let body = body_of(&fields, &seeds);
        let mut flipped = body.clone();
        for (at, byte) in &damage {
            let i = at.index(flipped.len());
            flipped[i] = *byte;
        }
        prop_assert!(no_inner_panic(&plan.decode(&flipped)));
        let truncated = &body[..cut.index(body.len())];
        let r = plan.decode(truncated);
        prop_assert!(no_inner_panic(&r));
        // The generic reader (apache-avro) takes some truncated records for complete ones
        // (missing values read as null): asserted for the fast path only.
        if plan.is_fast() {
            prop_assert!(r.is_err(), "a truncated record is an error: {} of {} bytes -> {:?}", truncated.len(), body.len(), r);
        }
        let mut longer = body.clone();
        longer.extend_from_slice(&tail);
        let r = plan.decode(&longer);
        prop_assert!(no_inner_panic(&r));
        if !tail.is_empty() && !plan.is_fast() {
            prop_assert!(r.is_err(), "bytes after the record are an error");
        }
    }

    #[test]
    fn avro_schemas_of_any_text_are_errors_not_panics(text in ".{0,120}", v in json_value()) {
        let _ = DecodePlan::from_schema_text(&text);
        let _ = DecodePlan::from_schema_text(&v.to_string());
        let _ = DecodePlan::from_schema_text(&json!({"type": "record", "name": "r", "fields": [{"name": "a", "type": v}]}).to_string());
    }
}

// ---- Replay lines ----

fn line_form() -> impl Strategy<Value = serde_json::Value> {
    let value = prop_oneof![
        any::<bool>().prop_map(|b| json!({"Bool": b})),
        any::<i64>().prop_map(|i| json!({"Int": i})),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| json!({"Float": f})),
        Just(json!({"Float": "NaN"})),
        ".{0,16}".prop_map(|s| json!({"Str": s})),
        prop::collection::vec(any::<i64>(), 0..4).prop_map(|a| json!({"IntArray": a})),
        ".{0,24}".prop_map(|s| json!({"Json": s})),
        json_value().prop_map(|v| json!({"Json": v.to_string()})),
        (1usize..400).prop_map(|n| json!({"Json": format!("{}{}", "[".repeat(n), "]".repeat(n))})),
    ];
    (prop::collection::vec(("[a-z]{1,6}", value), 0..5), any::<f64>(), 0u8..6, json_value()).prop_map(
        |(fields, t, which, junk)| {
            let fields: serde_json::Map<String, serde_json::Value> = fields.into_iter().collect();
            let mut v = json!({"t": if t.is_finite() { json!(t.rem_euclid(1e6)) } else { json!(0.0) }, "sample": {
                "component": "ATDome", "sal_index": 0, "topic": "summaryState", "kind": "event",
                "stamps": {"snd_stamp": 1.5, "rcv_stamp": "NaN", "efd_stamp": 1.5, "kafka_stamp": 1.5, "seq_num": 1,
                           "rev_code": "abc", "identity": "ATDome", "origin": 1},
                "fields": fields,
            }});
            match which {
                0 => v["t"] = junk,
                1 => v["sample"]["kind"] = junk,
                2 => v["sample"]["stamps"] = junk,
                3 => v["sample"]["fields"]["x"] = junk,
                _ => {}
            }
            v
        },
    )
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn replay_lines_of_any_text_are_errors_not_panics(text in ".{0,200}") {
        if serde_json::from_str::<serde_json::Value>(&text).is_err() {
            prop_assert!(decode_line(&text).is_err());
        }
    }

    #[test]
    fn replay_lines_decode_with_only_valid_json_values(v in line_form()) {
        let text = v.to_string();
        if let Ok((t, sample)) = decode_line(&text) {
            prop_assert!(t.is_finite());
            for f in sample.fields.iter() {
                if let Value::Json(j) = &f.value {
                    prop_assert!(validate_with_depth(j, MAX_VALUE_DEPTH).is_ok(), "{}: {:.80}", f.name, j);
                }
            }
        }
        for cut in [text.len() / 2, text.len().saturating_sub(1)] {
            if text.is_char_boundary(cut) {
                prop_assert!(decode_line(&text[..cut]).is_err(), "a truncated line is an error");
            }
        }
    }
}
