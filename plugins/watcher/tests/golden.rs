//! Conformance of the watcher producer with the reference's golden vectors (`watcher.jsonl`),
//! through the SDK's test driver with the Watcher catalog of the built-in ts_xml catalog. Outputs are
//! compared as parsed JSON, int vs float distinct, key order included. Quirk 10 is fixed: the
//! alarms stream is also pushed after every alarm that changes it.

use love_catalog::TopicCatalog;
use love_plugin_api::catalog::ComponentCatalog;
use love_plugin_api::driver::golden::{self, assert_all_same, assert_same, parse_all, CLOCK};
use love_plugin_api::driver::TestDriver;
use love_plugin_api::sdk::{Input, ProducerConfig};
use love_plugin_watcher::WatcherProducer;
use serde_json::Value as J;

fn watcher_catalog() -> ComponentCatalog {
    TopicCatalog::builtin().component("Watcher").expect("Watcher in the catalog").clone()
}

fn driver() -> TestDriver {
    let cfg = ProducerConfig {
        component: "Watcher".into(),
        index: 0,
        producer_type: "watcher".into(),
        catalog: Some(watcher_catalog()),
        // The harness kept the heartbeat loop silent.
        settings: [("heartbeat_timeout".to_string(), "3600".to_string())].into_iter().collect(),
        ..Default::default()
    };
    let mut d = TestDriver::create(WatcherProducer::create, &cfg).unwrap();
    d.input(Input::Start, CLOCK).unwrap();
    d
}

fn run_step(d: &mut TestDriver, step: &J) -> Vec<J> {
    parse_all(&golden::run_step(d, step, CLOCK, Some(&watcher_catalog())))
}

fn stream_message(alarms: &[(&str, &J)]) -> J {
    let mut map = serde_json::Map::new();
    for (name, fields) in alarms {
        map.insert(name.to_string(), (*fields).clone());
    }
    serde_json::json!({"category": "event", "data": [{"csc": "Watcher", "salindex": 0, "data": {"stream": {"alarms": map}}}], "producer_snd": CLOCK})
}

#[test]
fn watcher_golden_cases() {
    let recs = golden::load(&golden::golden_dir(env!("CARGO_MANIFEST_DIR")).join("watcher.jsonl"));
    let steps = golden::case(&recs, "Watcher:0");
    assert_eq!(steps.len(), 9);
    let mut d = driver();
    // FIELDS of each alarm as the reference sent them, to build the expected pushes.
    let mut table: Vec<(String, J)> = Vec::new();
    for step in steps.iter().copied() {
        let n = step["step"].as_u64().unwrap();
        let ctx = format!("step {n} ({})", step["input"]["what"]);
        let got = run_step(&mut d, step);
        let want = golden::outputs(step, CLOCK);
        if step["sal_samples"].is_array() {
            // Steps 3-5: the alarm event exactly as the reference sends it, then (quirk 10
            // fixed) the alarms stream with this alarm in place.
            assert!(step["input"]["what"].as_str().unwrap().contains("evt_alarm"));
            assert_eq!(want.len(), 1, "{ctx}: the reference sends only the alarm event");
            assert_eq!(got.len(), 2, "{ctx}: alarm event + pushed alarms stream");
            assert_same(&got[0], &want[0], &ctx);
            let fields = want[0]["data"][0]["data"]["alarm"][0].clone();
            let name = fields["name"]["value"].as_str().unwrap().to_string();
            match table.iter_mut().find(|(n, _)| *n == name) {
                Some((_, f)) => *f = fields,
                None => table.push((name, fields)),
            }
            let pairs: Vec<(&str, &J)> = table.iter().map(|(n, f)| (n.as_str(), f)).collect();
            assert_same(&got[1], &stream_message(&pairs), &format!("{ctx}: pushed stream"));
        } else {
            assert_all_same(&got, &want, &ctx);
        }
        if step["should_reply"].is_boolean() {
            assert_eq!(step["should_reply"].as_bool().unwrap(), !got.is_empty(), "{ctx}");
        }
    }
    // The pushed stream after the last alarm equals the reference's reply to `stream` (step 6):
    // replace-by-name kept Enabled.ATDome first.
    let reply = &golden::outputs(steps[6], CLOCK)[0];
    let keys: Vec<&String> = reply["data"][0]["data"]["stream"]["alarms"].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["Enabled.ATDome", "Heartbeat.ATDome"]);
    assert_eq!(reply["data"][0]["data"]["stream"]["alarms"]["Enabled.ATDome"]["severity"]["value"], 1);
}

#[test]
fn other_requests_and_snapshot() {
    let recs = golden::load(&golden::golden_dir(env!("CARGO_MANIFEST_DIR")).join("watcher.jsonl"));
    let steps = golden::case(&recs, "Watcher:0");
    let mut d = driver();
    for step in &steps[..6] {
        run_step(&mut d, step);
    }
    let req = |csc: &str, idx: &str, name: &str| {
        format!(
            r#"{{"category": "initial_state", "data": [{{"csc": "{csc}", "salindex": {idx}, "data": {{"event_name": "{name}"}}}}]}}"#
        )
    };
    for text in [
        req("Watcher", "\"all\"", "stream"),
        req("Watcher", "1", "stream"),
        req("Heartbeat", "0", "stream"),
        req("Watcher", "0", "summaryState"),
    ] {
        assert!(d.manager(&text, CLOCK).unwrap().is_empty(), "{text}");
    }
    // Snapshot, restore into a fresh producer: the same initial data.
    let snap = d.snapshot().unwrap();
    let mut fresh = driver();
    fresh.restore(&snap).unwrap();
    assert_eq!(fresh.sent(Input::Connected, CLOCK).unwrap(), d.sent(Input::Connected, CLOCK).unwrap());
    let mut v: J = serde_json::from_str(&snap).unwrap();
    v["version"] = 2.into();
    assert!(fresh.restore(&v.to_string()).is_err());
    v["version"] = 1.into();
    v["core"]["version"] = 7.into();
    assert!(fresh.restore(&v.to_string()).is_err());
    // The failed restores left the state alone.
    assert_eq!(fresh.sent(Input::Connected, CLOCK).unwrap(), d.sent(Input::Connected, CLOCK).unwrap());
}
