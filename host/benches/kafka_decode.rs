//! Avro decode rate of the Kafka source (samples/s on one core): a 13-field event and a
//! telemetry sample of 30 floats plus a 156-float array, both written as salobj writes them.
//! `criterion` reports time per sample; samples/s/core = 1 / that time. Throughput is also
//! reported as elements (samples) per second.

use std::hint::black_box;

use apache_avro::Schema;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use love_host::sal::kafka::avro::{encode, topic_schema, DecodePlan};
use love_plugin_api::abi::{Field, PrivateStamps, Value};
use love_plugin_api::catalog::FieldInfo;

fn stamps() -> PrivateStamps {
    PrivateStamps {
        snd_stamp: 1.7e9,
        rcv_stamp: 0.0,
        efd_stamp: 1.7e9 - 37.0,
        kafka_stamp: 1.7e9,
        seq_num: 12345,
        rev_code: "1a2b3c4d".into(),
        identity: "ATDome".into(),
        origin: 4242,
    }
}

fn event() -> (DecodePlan, Schema, Vec<u8>) {
    // 13 fields of mixed types, like a typical CSC event.
    let types = [
        ("state", "int", 1),
        ("homing", "boolean", 1),
        ("homed", "boolean", 1),
        ("homeSwitch", "boolean", 1),
        ("azimuth", "float", 1),
        ("commandedAzimuth", "double", 1),
        ("count", "long long", 1),
        ("mode", "short", 1),
        ("name", "string", 1),
        ("detail", "string", 1),
        ("limit", "double", 1),
        ("enabled", "boolean", 1),
        ("code", "int", 1),
    ];
    let info: Vec<FieldInfo> = types.iter().map(|(n, t, c)| FieldInfo::new(n, t, *c, "unitless")).collect();
    let schema = topic_schema("ATDome", "logevent_azimuthState", false, &info).to_string();
    let plan = DecodePlan::from_schema_text(&schema).unwrap();
    // The plan keeps no parsed schema (the fast path needs none): the encoder and the generic
    // reader get their own.
    let schema = Schema::parse_str(&schema).unwrap();
    let fields: Vec<Field> = info
        .iter()
        .enumerate()
        .map(|(i, f)| Field {
            name: f.name.as_str().into(),
            value: match f.idl_type.as_str() {
                "boolean" => Value::Bool(i % 2 == 0),
                "float" | "double" => Value::Float(i as f64 * 1.25),
                "string" => Value::Str("an ordinary status text".into()),
                _ => Value::Int(i as i64 * 1000),
            },
        })
        .collect();
    let body = encode(&schema, 0, &stamps(), &fields).unwrap();
    (plan, schema, body)
}

fn telemetry() -> (DecodePlan, Schema, Vec<u8>) {
    let mut info: Vec<FieldInfo> = (0..30).map(|i| FieldInfo::new(&format!("value{i}"), "float", 1, "N")).collect();
    info.push(FieldInfo::new("forces", "float", 156, "N"));
    let schema = topic_schema("MTM1M3", "forceActuatorData", false, &info).to_string();
    let plan = DecodePlan::from_schema_text(&schema).unwrap();
    // The plan keeps no parsed schema (the fast path needs none): the encoder and the generic
    // reader get their own.
    let schema = Schema::parse_str(&schema).unwrap();
    let mut fields: Vec<Field> = (0..30)
        .map(|i| Field { name: format!("value{i}").as_str().into(), value: Value::Float(i as f64 * 0.5) })
        .collect();
    fields.push(Field { name: "forces".into(), value: Value::FloatArray((0..156).map(|i| i as f64 * 0.25).collect()) });
    let body = encode(&schema, 0, &stamps(), &fields).unwrap();
    (plan, schema, body)
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("kafka_decode");
    g.throughput(Throughput::Elements(1));
    let (plan, schema, body) = event();
    assert!(plan.is_fast());
    g.bench_function("event_13_fields", |b| b.iter(|| black_box(plan.decode(black_box(&body)).unwrap())));
    g.bench_function("event_13_fields_apache_avro_generic", |b| {
        b.iter(|| {
            let mut r = black_box(&body[..]);
            black_box(apache_avro::from_avro_datum(&schema, &mut r, None).unwrap())
        })
    });
    let (plan, schema, body) = telemetry();
    g.bench_function("telemetry_30_floats_156_array", |b| b.iter(|| black_box(plan.decode(black_box(&body)).unwrap())));
    g.bench_function("telemetry_30_floats_156_array_apache_avro_generic", |b| {
        b.iter(|| {
            let mut r = black_box(&body[..]);
            black_box(apache_avro::from_avro_datum(&schema, &mut r, None).unwrap())
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
