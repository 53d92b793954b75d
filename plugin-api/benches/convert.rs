//! Per-sample conversion + encoding cost (issue 5): a SAL sample to the final LOVE message text.
//!
//! - `event13`: one event with 13 fields of the Watcher `alarm` shape (strings, ints, a boolean,
//!   doubles), converted to FIELDS and wrapped in the event envelope;
//! - `telemetry30+156`: one telemetry topic with 30 doubles and a 156-double array, converted and
//!   wrapped in the telemetry envelope;
//! - `core_event13`: the same event through `CscCore::handle` (convert, store, send action);
//! - `validate`: the host's check of a finished message (`json::validate`, run once as each
//!   message is queued for the manager), to compare with the conversion itself;
//! - `floor_*`: bare `serde_json` encoding of the same final messages from a
//!   `serde_json::Value` built beforehand (what encoding alone costs, with no conversion).

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use love_plugin_api::abi::{Field, PrivateStamps, Sample, TopicKind, Value};
use love_plugin_api::catalog::{ComponentCatalog, FieldInfo, TopicInfo};
use love_plugin_api::convert::TopicConverter;
use love_plugin_api::csc::CscCore;
use love_plugin_api::message;
use love_plugin_api::sdk::{Actions, Input, ProducerConfig};

const NOW: f64 = 1_700_000_000.5;

fn stamps() -> PrivateStamps {
    PrivateStamps {
        snd_stamp: 1_700_000_000.123_456,
        rcv_stamp: 1_700_000_000.124_789,
        efd_stamp: 1_700_000_000.125_001,
        kafka_stamp: 1_700_000_000.123_999,
        seq_num: 123_456,
        rev_code: "78344afc".into(),
        identity: "Watcher".into(),
        origin: 4242,
    }
}

fn alarm() -> (TopicInfo, Sample) {
    let decl: [(&str, &str, Value); 13] = [
        ("name", "string", Value::Str("Enabled.ATDome".into())),
        ("severity", "int", Value::Int(3)),
        ("reason", "string", Value::Str("ATDome in FAULT state: motor drive error".into())),
        ("maxSeverity", "int", Value::Int(3)),
        ("acknowledged", "boolean", Value::Bool(false)),
        ("acknowledgedBy", "string", Value::Str("".into())),
        ("escalatedId", "string", Value::Str("".into())),
        ("escalateTo", "string", Value::Str("".into())),
        ("mutedSeverity", "long", Value::Int(0)),
        ("mutedBy", "string", Value::Str("".into())),
        ("timestampSeverityOldest", "double", Value::Float(1_700_000_000.123_456)),
        ("timestampSeverityNewest", "double", Value::Float(1_700_000_012.654_321)),
        ("timestampMaxSeverity", "double", Value::Float(1_700_000_000.123_456)),
    ];
    let topic = TopicInfo {
        name: "alarm".into(),
        fields: decl.iter().map(|(n, t, _)| FieldInfo::new(n, t, 1, "unitless")).collect(),
        rate_hz: None,
    };
    let sample = Sample {
        component: "Watcher".into(),
        topic: "alarm".into(),
        kind: TopicKind::EVENT,
        stamps: stamps(),
        fields: decl.iter().map(|(n, _, v)| Field::new(n, v.clone())).collect::<Vec<_>>().into(),
        ..Default::default()
    };
    (topic, sample)
}

fn telemetry() -> (TopicInfo, Sample) {
    let mut fields_info: Vec<FieldInfo> =
        (0..30).map(|i| FieldInfo::new(&format!("value{i}"), "double", 1, "deg")).collect();
    fields_info.push(FieldInfo::new("forces", "float", 156, "N"));
    let mut fields: Vec<Field> =
        (0..30).map(|i| Field::new(&format!("value{i}"), Value::Float(i as f64 * 1.234_567_89 - 17.5))).collect();
    fields.push(Field::new(
        "forces",
        Value::FloatArray((0..156).map(|i| ((i as f32) * 0.731 - 40.2) as f64).collect::<Vec<_>>().into()),
    ));
    let topic = TopicInfo { name: "forceActuatorData".into(), fields: fields_info, rate_hz: Some(50.0) };
    let sample = Sample {
        component: "MTM1M3".into(),
        topic: "forceActuatorData".into(),
        kind: TopicKind::TELEMETRY,
        stamps: stamps(),
        fields: fields.into(),
        ..Default::default()
    };
    (topic, sample)
}

fn bench(c: &mut Criterion) {
    let (alarm_topic, alarm_sample) = alarm();
    let conv = TopicConverter::new(&alarm_topic, false);
    c.bench_function("event13: convert + encode", |b| {
        b.iter(|| {
            let fields = conv.fields_json(black_box(&alarm_sample));
            black_box(message::event("Watcher", 0, "alarm", &fields, NOW))
        })
    });
    let text = message::event("Watcher", 0, "alarm", &conv.fields_json(&alarm_sample), NOW).text;
    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
    c.bench_function("event13: floor (serde_json::to_string of a prebuilt Value)", |b| {
        b.iter(|| black_box(serde_json::to_string(black_box(&value)).unwrap()))
    });
    c.bench_function("event13: validate the message", |b| {
        b.iter(|| black_box(love_plugin_api::json::validate(black_box(&text))))
    });

    let cfg = ProducerConfig {
        component: "Watcher".into(),
        catalog: Some(ComponentCatalog {
            name: "Watcher".into(),
            events: vec![alarm_topic.clone()],
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut core = CscCore::new(&cfg).unwrap();
    core.handle(Input::Start, NOW, &mut Actions::new()).unwrap();
    c.bench_function("event13: CscCore::handle (convert, store, send action)", |b| {
        b.iter(|| {
            let mut out = Actions::new();
            black_box(core.handle(Input::Sample(black_box(&alarm_sample)), NOW, &mut out).unwrap());
            black_box(out)
        })
    });

    let (tel_topic, tel_sample) = telemetry();
    let conv = TopicConverter::new(&tel_topic, false);
    c.bench_function("telemetry30+156: convert + encode", |b| {
        b.iter(|| {
            let fields = conv.fields_json(black_box(&tel_sample));
            black_box(message::telemetry("MTM1M3", 0, "forceActuatorData", &fields, NOW))
        })
    });
    let text = message::telemetry("MTM1M3", 0, "forceActuatorData", &conv.fields_json(&tel_sample), NOW).text;
    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
    c.bench_function("telemetry30+156: floor (serde_json::to_string of a prebuilt Value)", |b| {
        b.iter(|| black_box(serde_json::to_string(black_box(&value)).unwrap()))
    });
    c.bench_function("telemetry30+156: validate the message", |b| {
        b.iter(|| black_box(love_plugin_api::json::validate(black_box(&text))))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
