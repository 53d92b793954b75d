//! Conformance of the csc producer with the reference's golden vectors (`csc.jsonl`), fed
//! through the SDK's test driver with the ATDome catalog of the built-in ts_xml catalog. Outputs are
//! compared as parsed JSON, int vs float distinct, key order included. Deliberate differences
//! are named by quirk.

use love_catalog::TopicCatalog;
use love_plugin_api::catalog::ComponentCatalog;
use love_plugin_api::csc::CscCore;
use love_plugin_api::driver::golden::{self, assert_all_same, parse_all, CLOCK};
use love_plugin_api::driver::TestDriver;
use love_plugin_api::sdk::{Input, ProducerConfig};
use love_plugin_csc::CscProducer;
use serde_json::Value as J;

fn atdome() -> ComponentCatalog {
    TopicCatalog::builtin().component("ATDome").expect("ATDome").clone()
}

fn records() -> Vec<J> {
    golden::load(&golden::golden_dir(env!("CARGO_MANIFEST_DIR")).join("csc.jsonl"))
}

fn config(settings: &[(&str, &str)]) -> ProducerConfig {
    ProducerConfig {
        component: "ATDome".into(),
        index: 0,
        producer_type: "csc".into(),
        catalog: Some(atdome()),
        settings: settings.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        ..Default::default()
    }
}

/// Feed one golden step's inputs and return what was sent (parsed).
fn run_step(d: &mut TestDriver, step: &J, now: f64) -> Vec<J> {
    parse_all(&golden::run_step(d, step, now, Some(&atdome())))
}

#[test]
fn atdome_events_telemetry_initial_data_and_replies() {
    let recs = records();
    let steps = golden::case(&recs, "ATDome:0");
    assert_eq!(steps.len(), 15);
    // The harness kept the heartbeat loop silent (timeout 3600 s). The producer starts one
    // telemetry period before the frozen clock, so the periodic tick of step 4 falls on it.
    let mut d = TestDriver::create(CscProducer::create, &config(&[("heartbeat_timeout", "3600")])).unwrap();
    d.input(Input::Start, CLOCK - 2.0).unwrap();
    for step in steps {
        let got = run_step(&mut d, step, CLOCK);
        let want = golden::outputs(step, CLOCK);
        let ctx = format!("step {} ({})", step["step"], step["input"]["what"]);
        assert_all_same(&got, &want, &ctx);
        if step["should_reply"].is_boolean() {
            assert_eq!(step["should_reply"].as_bool().unwrap(), !got.is_empty(), "{ctx}");
        }
    }
}

#[test]
fn heartbeat_stream_lost_and_received() {
    let recs = records();
    let steps = golden::case(&recs, "ATDome:0 Heartbeat");
    assert_eq!(steps.len(), 5);
    let mut d = TestDriver::create(CscProducer::create, &config(&[])).unwrap();
    d.input(Input::Start, CLOCK).unwrap();
    assert_eq!(d.last_wake(), Some(CLOCK + 2.0), "the first wait ends one heartbeat_timeout after start");
    let template = &golden::outputs(steps[0], CLOCK)[0];
    for step in &steps[1..] {
        let now = golden::clock(step);
        let got = if step["sal_samples"].is_array() {
            run_step(&mut d, step, now)
        } else {
            parse_all(&d.sent(Input::Tick, now).unwrap())
        };
        let want = golden::outputs(step, now);
        assert_all_same(&got, &want, &format!("step {} ({})", step["step"], step["input"]["what"]));
        // Same shape as the reference's template (step 0), only lost/timestamp/snd differ.
        let mut shaped = got[0].clone();
        shaped["producer_snd"] = 0.into();
        let stream = &mut shaped["data"][0]["data"]["stream"];
        stream["lost"] = 0.into();
        stream["last_heartbeat_timestamp"] = (-1).into();
        golden::assert_same(&shaped, template, "template shape");
    }
    // Silent CSC: one message per timeout, lost growing; never stored, never initial data.
    let got = parse_all(&d.sent(Input::Tick, CLOCK + 10.0).unwrap());
    assert_eq!(got[0]["data"][0]["data"]["stream"]["lost"], 2);
    assert!(d.sent(Input::Connected, CLOCK + 10.5).unwrap().is_empty());
}

#[test]
fn topic_filters() {
    let recs = records();
    let steps = golden::case(&recs, "ATDome:0 with --periodic-data / --asynchronous-data");
    assert_eq!(steps.len(), 2);
    let list = |k: &str| -> Vec<String> {
        steps[0]["input"][k].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect()
    };
    let mut cfg = config(&[("heartbeat_timeout", "3600")]);
    cfg.periodic_data = Some(list("periodic_data"));
    cfg.asynchronous_data = Some(list("asynchronous_data"));

    // Step 0: the derived sets (the reference prints them as dicts with sorted keys).
    let want = &golden::outputs(steps[0], CLOCK)[0];
    let sets = CscCore::new(&cfg).unwrap().topic_sets();
    let mut periodic = sets.periodic.clone();
    periodic.sort();
    let keys = |v: &J| -> Vec<String> { v.as_object().unwrap().keys().cloned().collect() };
    assert_eq!(periodic, keys(&want["periodic"]));
    assert_eq!(sets.asynchronous, keys(&want["asynchronous"]));
    assert_eq!(sets.heartbeat_monitor, want["heartbeat_monitor"].as_bool().unwrap());
    assert_eq!(want["metadata"], serde_json::json!({}), "factory-made producers carry no metadata");
    // (`remote_include` is the reference's SAL subscription list; love-host's source delivers
    // every topic and the core filters, so there is nothing to compare.)

    // Warnings for the dropped names (tel_bogus: no such topic).
    let mut d = TestDriver::create(CscProducer::create, &cfg).unwrap();
    let actions = d.input(Input::Start, CLOCK - 2.0).unwrap();
    let warnings: Vec<_> = actions
        .iter()
        .filter_map(|a| match a {
            love_plugin_api::sdk::Action::Log { level: 30, text } => Some(text.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("tel_bogus"));

    // Step 1: a periodic event is polled and sent as category event with a bare object.
    let got = run_step(&mut d, steps[1], CLOCK);
    assert_all_same(&got, &golden::outputs(steps[1], CLOCK), "periodic evt_mainDoorState");
    // Not stored (only asynchronous topics are), and no Heartbeat stream without evt_heartbeat.
    assert!(d.sent(Input::Connected, CLOCK).unwrap().is_empty());
    assert!(d.sent(Input::Tick, CLOCK + 3600.0).unwrap().iter().all(|m| !m.contains("Heartbeat")));
}

/// Quirk 7 fixed: a telemetry topic that stops arriving is re-sent at the cadence for
/// `telemetry_stale_after` seconds (default 30), then no more.
#[test]
fn stale_telemetry_stops_after_30_s() {
    let recs = records();
    let step4 = golden::case(&recs, "ATDome:0")[4];
    let sample = golden::sample(&step4["sal_samples"][0], Some(&atdome()));
    let mut d = TestDriver::create(CscProducer::create, &config(&[("heartbeat_timeout", "3600")])).unwrap();
    d.input(Input::Start, CLOCK).unwrap();
    d.sample(&sample, CLOCK + 0.1).unwrap();
    let mut sends = 0;
    let mut t = CLOCK;
    while t < CLOCK + 60.0 {
        t = d.last_wake().unwrap();
        let sent = d.sent(Input::Tick, t).unwrap();
        assert!(sent.len() <= 1);
        if !sent.is_empty() {
            assert!(t - (CLOCK + 0.1) <= 30.0, "sent at {}", t - CLOCK);
            sends += 1;
        }
    }
    assert_eq!(sends, 15, "ticks at +2 … +30 s");
    // A new sample starts it again.
    d.sample(&sample, t).unwrap();
    let t2 = d.last_wake().unwrap();
    assert_eq!(d.sent(Input::Tick, t2).unwrap().len(), 1);
}

/// Quirk 24 fixed: a sample is identified by the topic it arrives on, whatever its rev code.
#[test]
fn topic_identified_by_arrival_not_rev_code() {
    let recs = records();
    let step2 = golden::case(&recs, "ATDome:0")[2];
    let mut sample = golden::sample(&step2["sal_samples"][0], Some(&atdome()));
    sample.stamps.rev_code = "deadbeef".into();
    let mut d = TestDriver::create(CscProducer::create, &config(&[("heartbeat_timeout", "3600")])).unwrap();
    let got = parse_all(&d.sample(&sample, CLOCK).unwrap());
    let mut want = golden::outputs(step2, CLOCK);
    want[0]["data"][0]["data"]["summaryState"][0]["private_revCode"]["value"] = "deadbeef".into();
    assert_all_same(&got, &want, "summaryState with another rev code");
}

/// Quirk 19 kept: index 0 on an indexed component labels every sample salindex 0, and the
/// FIELDS start with the sample's own salIndex.
#[test]
fn indexed_component_index_zero_labels_zero() {
    let cat = TopicCatalog::builtin().component("MTHexapod").expect("MTHexapod").clone();
    assert!(cat.indexed);
    let cfg = ProducerConfig {
        component: "MTHexapod".into(),
        catalog: Some(cat),
        settings: [("heartbeat_timeout".to_string(), "3600".to_string())].into_iter().collect(),
        ..Default::default()
    };
    let mut d = TestDriver::create(CscProducer::create, &cfg).unwrap();
    let sample = love_plugin_api::abi::Sample {
        component: "MTHexapod".into(),
        sal_index: 2,
        topic: "summaryState".into(),
        kind: love_plugin_api::abi::TopicKind::EVENT,
        fields: vec![love_plugin_api::abi::Field::new("summaryState", love_plugin_api::abi::Value::Int(2))].into(),
        ..Default::default()
    };
    let got = parse_all(&d.sample(&sample, CLOCK).unwrap());
    assert_eq!(got[0]["data"][0]["salindex"], 0);
    let fields = &got[0]["data"][0]["data"]["summaryState"][0];
    assert_eq!(fields.as_object().unwrap().keys().next().unwrap(), "salIndex");
    assert_eq!(fields["salIndex"], serde_json::json!({"value": 2, "dataType": "Int", "units": "unitless"}));
}

#[test]
fn snapshot_restore_through_the_boundary() {
    let recs = records();
    let steps = golden::case(&recs, "ATDome:0");
    let mut d = TestDriver::create(CscProducer::create, &config(&[("heartbeat_timeout", "3600")])).unwrap();
    d.input(Input::Start, CLOCK - 2.0).unwrap();
    for step in &steps[..5] {
        run_step(&mut d, step, CLOCK);
    }
    let snap = d.snapshot().unwrap();
    assert!(snap.starts_with("{\"version\":1"), "{}", &snap[..40]);
    let mut fresh = TestDriver::create(CscProducer::create, &config(&[("heartbeat_timeout", "3600")])).unwrap();
    fresh.restore(&snap).unwrap();
    // Initial data and the next telemetry tick are the same as the original's.
    assert_eq!(fresh.sent(Input::Connected, CLOCK).unwrap(), d.sent(Input::Connected, CLOCK).unwrap());
    assert_eq!(fresh.sent(Input::Tick, CLOCK + 2.0).unwrap(), d.sent(Input::Tick, CLOCK + 2.0).unwrap());
    let mut v: J = serde_json::from_str(&snap).unwrap();
    v["version"] = 99.into();
    assert!(fresh.restore(&v.to_string()).is_err(), "a future snapshot version is refused");
}
