//! The producer driven through the SDK's test driver (the same stable boundary the host uses).

use love_plugin_api::abi::{Field, Sample, TopicKind, Value};
use love_plugin_api::catalog::{ComponentCatalog, FieldInfo, TopicInfo};
use love_plugin_api::driver::TestDriver;
use love_plugin_api::json::parse_lenient;
use love_plugin_api::sdk::{Input, ProducerConfig};

use my_producer::MyProducer;

const T: f64 = 1_700_000_000.5;

// RENAME: your component and the topics your producer uses (names as in its ts_xml).
fn config() -> ProducerConfig {
    let catalog = ComponentCatalog {
        name: "MyComponent".into(),
        events: vec![TopicInfo {
            name: "summaryState".into(),
            fields: vec![FieldInfo::new("summaryState", "long", 1, "unitless")],
            rate_hz: None,
        }],
        ..Default::default()
    };
    ProducerConfig { component: "MyComponent".into(), catalog: Some(catalog), ..Default::default() }
}

fn summary_state(state: i64) -> Sample {
    Sample {
        component: "MyComponent".into(),
        topic: "summaryState".into(),
        kind: TopicKind::EVENT,
        fields: vec![Field::new("summaryState", Value::Int(state))].into(),
        ..Default::default()
    }
}

fn parse(texts: &[String]) -> Vec<serde_json::Value> {
    texts.iter().map(|t| parse_lenient(t).expect("JSON")).collect()
}

#[test]
fn forwards_events_and_counts_samples() {
    let mut d = TestDriver::create(MyProducer::create, &config()).unwrap();
    d.input(Input::Start, T).unwrap();
    let sent = parse(&d.sample(&summary_state(2), T).unwrap());
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0]["data"][0]["data"]["summaryState"][0]["summaryState"]["value"], 2);
    assert_eq!(sent[1]["data"][0]["data"]["sampleCount"]["count"]["value"], 1);
}

#[test]
fn snapshot_survives_an_upgrade() {
    let mut old = TestDriver::create(MyProducer::create, &config()).unwrap();
    old.input(Input::Start, T).unwrap();
    old.sample(&summary_state(2), T).unwrap();
    let snap = old.snapshot().unwrap();
    // The host's order on a hot upgrade: create, restore, START.
    let mut new = TestDriver::create(MyProducer::create, &config()).unwrap();
    new.restore(&snap).unwrap();
    new.input(Input::Start, T + 1.0).unwrap();
    assert_eq!(new.sent(Input::Connected, T + 2.0).unwrap(), old.sent(Input::Connected, T + 2.0).unwrap());
    assert!(new.restore(&snap.replacen("\"version\": 1", "\"version\": 99", 1)).is_err());
}
