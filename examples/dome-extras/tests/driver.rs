//! dome-extras driven through the SDK's test driver: the same stable boundary the host uses
//! (encode, call through the ABI trait object, decode), without the host.

use love_plugin_api::abi::{Field, Sample, TopicKind, Value};
use love_plugin_api::catalog::{ComponentCatalog, FieldInfo, TopicInfo};
use love_plugin_api::driver::TestDriver;
use love_plugin_api::json::parse_lenient;
use love_plugin_api::sdk::{Input, ProducerConfig};

use dome_extras::{azimuth_error, DomeExtras};

const T: f64 = 1_700_000_000.5;

/// The part of ATDome's interface this plugin uses (field names as in ts_xml).
fn catalog() -> ComponentCatalog {
    let topic = |name: &str, fields: Vec<FieldInfo>| TopicInfo { name: name.into(), fields, rate_hz: None };
    ComponentCatalog {
        name: "ATDome".into(),
        indexed: false,
        events: vec![
            topic("heartbeat", vec![FieldInfo::new("heartbeat", "boolean", 1, "unitless")]),
            topic("summaryState", vec![FieldInfo::new("summaryState", "long", 1, "unitless")]),
            topic(
                "azimuthCommandedState",
                vec![FieldInfo::new("commandedState", "long", 1, "unitless"), FieldInfo::new("azimuth", "float", 1, "deg")],
            ),
        ],
        telemetry: vec![topic(
            "position",
            vec![
                FieldInfo::new("dropoutDoorOpeningPercentage", "float", 1, "unitless"),
                FieldInfo::new("mainDoorOpeningPercentage", "float", 1, "unitless"),
                FieldInfo::new("azimuthPosition", "double", 1, "deg"),
                FieldInfo::new("azimuthEncoderPosition", "long long", 1, "unitless"),
            ],
        )],
        ..Default::default()
    }
}

fn config() -> ProducerConfig {
    ProducerConfig {
        component: "ATDome".into(),
        producer_type: "dome-extras".into(),
        catalog: Some(catalog()),
        ..Default::default()
    }
}

fn driver() -> TestDriver {
    let mut d = TestDriver::create(DomeExtras::create, &config()).expect("create");
    d.input(Input::Start, T).unwrap();
    d
}

fn sample(kind: TopicKind, topic: &str, fields: &[(&str, Value)]) -> Sample {
    Sample {
        component: "ATDome".into(),
        topic: topic.into(),
        kind,
        fields: fields.iter().map(|(n, v)| Field::new(n, v.clone())).collect::<Vec<_>>().into(),
        ..Default::default()
    }
}

fn position(az: f64) -> Sample {
    sample(TopicKind::TELEMETRY, "position", &[("azimuthPosition", Value::Float(az))])
}

fn commanded(az: f64) -> Sample {
    sample(
        TopicKind::EVENT,
        "azimuthCommandedState",
        &[("commandedState", Value::Int(2)), ("azimuth", Value::Float(az))],
    )
}

fn parse(texts: &[String]) -> Vec<serde_json::Value> {
    texts.iter().map(|t| parse_lenient(t).expect("JSON")).collect()
}

/// The `azimuthError` stream messages among `msgs`.
fn error_streams(msgs: &[serde_json::Value]) -> Vec<serde_json::Value> {
    msgs.iter()
        .filter(|m| m["data"][0]["csc"] == "ATDome")
        .filter_map(|m| m["data"][0]["data"].get("azimuthError").cloned())
        .collect()
}

fn request(name: &str) -> String {
    format!(r#"{{"category": "initial_state", "data": [{{"csc": "ATDome", "salindex": 0, "data": {{"event_name": "{name}"}}}}]}}"#)
}

#[test]
fn error_is_wrapped_to_half_a_turn() {
    assert_eq!(azimuth_error(12.5, 10.0), 2.5);
    assert_eq!(azimuth_error(10.0, 12.5), -2.5);
    assert_eq!(azimuth_error(1.0, 359.0), 2.0);
    assert_eq!(azimuth_error(359.0, 1.0), -2.0);
    assert_eq!(azimuth_error(180.0, 0.0), 180.0);
    assert_eq!(azimuth_error(0.0, 180.0), 180.0);
}

#[test]
fn forwards_what_csc_forwards() {
    let mut d = driver();
    let sent = parse(&d.sample(&sample(TopicKind::EVENT, "summaryState", &[("summaryState", Value::Int(2))]), T).unwrap());
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["category"], "event");
    assert_eq!(sent[0]["data"][0]["data"]["summaryState"][0]["summaryState"]["value"], 2);
    // Telemetry goes out on the core's ticks, as csc sends it.
    d.sample(&position(10.0), T + 0.5).unwrap();
    let tick = d.last_wake().expect("a wake-up");
    let sent = parse(&d.sent(Input::Tick, tick).unwrap());
    let tel: Vec<_> = sent.iter().filter(|m| m["category"] == "telemetry").collect();
    assert_eq!(tel.len(), 1);
    assert_eq!(tel[0]["data"][0]["data"]["position"]["azimuthPosition"]["value"], 10.0);
}

#[test]
fn derived_stream_is_sent_when_the_error_changes() {
    let mut d = driver();
    // Position alone: no error yet, nothing derived.
    let sent = parse(&d.sample(&position(12.5), T).unwrap());
    assert!(error_streams(&sent).is_empty());
    // The target arrives: the event is forwarded and the error is sent.
    let sent = parse(&d.sample(&commanded(10.0), T + 1.0).unwrap());
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert!(sent[0]["data"][0]["data"]["azimuthCommandedState"].is_array());
    let s = &error_streams(&sent)[0];
    assert_eq!(s["azimuthError"]["value"], 2.5);
    assert_eq!(s["azimuthError"]["units"], "deg");
    assert_eq!(s["azimuthPosition"]["value"], 12.5);
    assert_eq!(s["azimuthCommanded"]["value"], 10.0);
    assert_eq!(sent[1]["category"], "event");
    // Same error: nothing; a change below the resolution (0.01 deg): nothing.
    assert!(error_streams(&parse(&d.sample(&position(12.5), T + 2.0).unwrap())).is_empty());
    assert!(error_streams(&parse(&d.sample(&position(12.505), T + 3.0).unwrap())).is_empty());
    // Across north, wrapped.
    d.sample(&commanded(359.0), T + 4.0).unwrap();
    let s = error_streams(&parse(&d.sample(&position(1.0), T + 5.0).unwrap()));
    assert_eq!(s[0]["azimuthError"]["value"], 2.0);
    // Homing: the target becomes NaN, the error unknown (sent as NaN).
    let s = error_streams(&parse(&d.sample(&commanded(f64::NAN), T + 6.0).unwrap()));
    assert_eq!(s[0]["azimuthError"]["value"], "NaN");
}

#[test]
fn stream_is_in_initial_data_and_answers_requests() {
    let mut d = driver();
    // Before any data: present, all NaN, sent first.
    let sent = parse(&d.sent(Input::Connected, T).unwrap());
    assert_eq!(sent[0]["data"][0]["data"]["azimuthError"]["azimuthError"]["value"], "NaN");
    d.sample(&commanded(10.0), T).unwrap();
    d.sample(&position(11.0), T).unwrap();
    let sent = parse(&d.sent(Input::Connected, T + 1.0).unwrap());
    assert_eq!(sent[0]["data"][0]["data"]["azimuthError"]["azimuthError"]["value"], 1.0);
    assert!(sent.iter().any(|m| m["data"][0]["data"].get("azimuthCommandedState").is_some()));
    let reply = parse(&d.manager(&request("azimuthError"), T + 2.0).unwrap());
    assert_eq!(reply.len(), 1);
    assert_eq!(reply[0]["data"][0]["data"]["azimuthError"]["azimuthError"]["value"], 1.0);
    assert_eq!(reply[0]["producer_snd"], T + 2.0);
    // The core's own replies still work.
    assert_eq!(d.manager(&request("azimuthCommandedState"), T + 2.0).unwrap().len(), 1);
}

#[test]
fn snapshot_restores_into_a_new_producer_and_start_does_not_reset_it() {
    let mut old = driver();
    old.sample(&commanded(10.0), T).unwrap();
    old.sample(&position(12.0), T + 1.0).unwrap();
    let snap = old.snapshot().unwrap();
    assert!(snap.starts_with("{\"version\": 1"), "{snap}");

    // What the host does on a hot upgrade: create, restore, then START.
    let mut new = TestDriver::create(DomeExtras::create, &config()).unwrap();
    new.restore(&snap).unwrap();
    new.input(Input::Start, T + 2.0).unwrap();
    assert_eq!(new.snapshot().unwrap(), snap);
    let a = old.sent(Input::Connected, T + 3.0).unwrap();
    let b = new.sent(Input::Connected, T + 3.0).unwrap();
    assert_eq!(a, b);
    // It carries on from the restored values: the same position sends nothing, a new one does.
    assert!(error_streams(&parse(&new.sample(&position(12.0), T + 4.0).unwrap())).is_empty());
    let s = error_streams(&parse(&new.sample(&position(11.0), T + 5.0).unwrap()));
    assert_eq!(s[0]["azimuthError"]["value"], 1.0);
}

#[test]
fn restore_refuses_future_versions_and_garbage_and_keeps_its_state() {
    let mut d = driver();
    d.sample(&commanded(10.0), T).unwrap();
    d.sample(&position(12.0), T).unwrap();
    let before = d.snapshot().unwrap();
    let future = before.replacen("{\"version\": 1", "{\"version\": 2", 1);
    let err = d.restore(&future).unwrap_err().to_string();
    assert!(err.contains("version 2"), "{err}");
    assert!(d.restore("not json").is_err());
    assert!(d.restore("{\"position\": 1.0}").is_err(), "no version");
    assert!(d.restore(&before.replacen("\"ATDome\"", "\"Other\"", 1)).is_err(), "another component");
    assert_eq!(d.snapshot().unwrap(), before);
}

#[test]
fn a_bad_setting_is_refused_at_creation() {
    let mut cfg = config();
    cfg.settings.insert("azimuth_error_resolution".into(), "-1".into());
    let err = TestDriver::create(DomeExtras::create, &cfg).err().expect("refused");
    assert!(err.to_string().contains("azimuth_error_resolution"), "{err}");
}
