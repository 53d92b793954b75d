//! Behaviour beyond the golden vectors: the quirk fixes, settings, the schema update, timers,
//! snapshots, and a long run showing memory stays bounded.

mod common;

use common::*;
use love_plugin_api::abi::{Field, Sample, Value};
use love_plugin_api::driver::TestDriver;
use love_plugin_api::sdk::{Action, Actions, Input, ProducerLogic};
use love_plugin_scriptqueue::{ScriptQueueProducer, MAX_LOG_MESSAGES, MAX_ORPHAN_SCRIPTS};
use serde_json::{json, Value as J};

fn run(p: &mut ScriptQueueProducer, input: Input<'_>, now: f64) -> Vec<Action> {
    let mut out = Actions::new();
    p.handle(input, now, &mut out).unwrap();
    out.into_vec().iter().map(Action::decode).collect()
}

fn sent(p: &mut ScriptQueueProducer, input: Input<'_>, now: f64) -> Vec<J> {
    sends(&run(p, input, now)).iter().map(|t| parse(t)).collect()
}

fn sample(p: &mut ScriptQueueProducer, s: &Sample, now: f64) -> Vec<J> {
    sent(p, Input::Sample(s), now)
}

fn producer(settings: &[(&str, &str)]) -> ScriptQueueProducer {
    let mut all = vec![("heartbeat_timeout", "3600")];
    all.extend_from_slice(settings);
    let mut p = ScriptQueueProducer::create(config(&all)).unwrap();
    run(&mut p, Input::Start, T0);
    let cat = script_catalog_json();
    run(&mut p, Input::Catalog(&cat), T0);
    p
}

fn streams(msgs: &[J]) -> Vec<(String, String)> {
    msgs.iter().map(stream_of).collect()
}

fn pair(csc: &str, stream: &str) -> (String, String) {
    (csc.to_string(), stream.to_string())
}

fn request(csc: &str, salindex: J, event_name: &str) -> String {
    json!({"category": "initial_state", "data": [{"csc": csc, "salindex": salindex, "data": {"event_name": event_name}}],
           "subscription": "initial_state-all-all-all"})
    .to_string()
}

fn log_texts(msgs: &[J]) -> Vec<(i64, String)> {
    msgs.iter()
        .map(|m| {
            let d = &m["data"][0];
            assert_eq!(d["csc"], "Script");
            assert_eq!(m["producer_snd"], 0);
            (
                d["salindex"].as_i64().unwrap(),
                d["data"]["logMessage"][0]["message"]["value"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn quirk_11_fixed_reply_is_the_requested_scripts_buffer() {
    let mut p = producer(&[]);
    sample(&mut p, &queue_event(true, true, 10, &[11], &[9]), T0);
    for (i, m) in [(10, "current"), (11, "waiting"), (9, "finished"), (10, "current 2")] {
        sample(&mut p, &log_event(i, m), T0);
    }
    let r = |p: &mut ScriptQueueProducer, idx: J| {
        log_texts(&sent(p, Input::ManagerMessage(&request("Script", idx, "logMessage")), T0))
    };
    assert_eq!(r(&mut p, json!(10)), vec![(10, "current".into()), (10, "current 2".into())]);
    assert_eq!(r(&mut p, json!(11)), vec![(11, "waiting".into())]);
    assert_eq!(r(&mut p, json!(9)), vec![(9, "finished".into())], "a finished script's buffer is answered");
    assert!(r(&mut p, json!(12345)).is_empty(), "unknown script: nothing");
    assert_eq!(
        r(&mut p, json!("all")),
        vec![(10, "current".into()), (10, "current 2".into())],
        "all: the current script"
    );
    assert_eq!(
        r(&mut p, json!(0)),
        vec![(10, "current".into()), (10, "current 2".into())],
        "0 (salobj's any index, the reference test's request): the current script"
    );
    // A finished script's messages are stored but not sent live.
    assert!(sample(&mut p, &log_event(9, "late"), T0).is_empty());
    assert_eq!(r(&mut p, json!(9)).len(), 2);
}

#[test]
fn quirk_2_fixed_malformed_requests_are_ignored() {
    let mut p = producer(&[]);
    for bad in [
        r#"{"category": "initial_state", "data": [{"csc": "ScriptQueue", "salindex": 1, "stream": {"event_name": "queue"}}]}"#,
        r#"{"category": "initial_state", "data": [{"csc": "Script", "salindex": 1}]}"#,
        r#"{"category": "initial_state", "data": [{"csc": "Script", "salindex": 1, "data": {}}]}"#,
        r#"{"category": "initial_state", "data": []}"#,
        r#"{"category": "initial_state"}"#,
        "not json",
        r#"{"data": "Successfully subscribed to initial_state-ScriptQueue-all-all"}"#,
    ] {
        assert!(sent(&mut p, Input::ManagerMessage(bad), T0).is_empty(), "{bad}");
    }
}

#[test]
fn quirk_13_fixed_queue_event_always_sends_its_streams() {
    let mut p = producer(&[]);
    // Known only from a script event (e.g. the last historical one read at start-up).
    let got = sample(&mut p, &script_event(555, true, "a.py", 3, 3), T0);
    assert_eq!(streams(&got), vec![pair("ScriptQueue", "script"), pair("ScriptQueueState", "scriptsStream")]);
    assert!(p.script_heartbeat(555).is_none() && p.log_buffer(555).is_none());
    // It becomes current: the records are created even though the object existed.
    let got = sample(&mut p, &queue_event(true, true, 555, &[556], &[]), T0);
    assert_eq!(
        streams(&got),
        vec![
            pair("ScriptQueue", "queue"),
            pair("ScriptQueueState", "stateStream"),
            pair("ScriptQueueState", "scriptsStream")
        ]
    );
    assert!(p.script_heartbeat(555).is_some() && p.log_buffer(555).is_some());
    assert_eq!(got[2]["data"][0]["data"]["scriptsStream"]["current_scripts"][0]["path"], "a.py");
    // Another script known only from a script event, dropped by the next queue event: the
    // reference's handler failed deleting its missing records and sent nothing.
    sample(&mut p, &script_event(777, false, "x.py", 1, 1), T0);
    let got = sample(&mut p, &queue_event(true, false, 556, &[], &[555]), T0);
    assert_eq!(
        streams(&got)[1..],
        [pair("ScriptQueueState", "stateStream"), pair("ScriptQueueState", "scriptsStream")]
    );
    assert_eq!(got[1]["data"][0]["data"]["stateStream"], json!({"enabled": true, "running": false}));
    assert!(p.script(777).is_none());
    assert_eq!(p.queue().finished, vec![555]);
}

#[test]
fn quirk_14_fixed_no_empty_paths() {
    let mut p = producer(&[]);
    let got = sample(
        &mut p,
        &event("ScriptQueue", "availableScripts", 1, json!({"standard": "", "external": "e.py::f.py"})),
        T0,
    );
    assert_eq!(
        got[1]["data"][0]["data"]["availableScriptsStream"]["available_scripts"],
        json!([{"type": "external", "path": "e.py", "configSchema": ""}, {"type": "external", "path": "f.py", "configSchema": ""}])
    );
    let got = sample(
        &mut p,
        &event("ScriptQueue", "configSchema", 1, json!({"isStandard": true, "path": "", "configSchema": "x"})),
        T0,
    );
    assert_eq!(streams(&got), vec![pair("ScriptQueue", "configSchema")], "ignored, only forwarded");
    assert_eq!(p.sizes().available, 2);
}

#[test]
fn state_names_come_from_the_catalog_and_unknown_values_send_nothing() {
    let mut p = producer(&[]);
    sample(&mut p, &queue_event(true, true, 10, &[], &[]), T0);
    let got = sample(&mut p, &script_event(10, true, "a.py", 7, 9), T0);
    let obj = &got[1]["data"][0]["data"]["scriptsStream"]["current_scripts"][0];
    assert_eq!((obj["process_state"].as_str(), obj["script_state"].as_str()), (Some("TERMINATED"), Some("STOPPED")));
    // Process state 99 does not exist: logged, type/path updated, nothing sent.
    let actions = run(&mut p, Input::Sample(&script_event(10, false, "b.py", 99, 3)), T0);
    assert_eq!(
        streams(&sends(&actions).iter().map(|t| parse(t)).collect::<Vec<_>>()),
        vec![pair("ScriptQueue", "script")]
    );
    assert!(actions.iter().any(|a| matches!(a, Action::Log { level: 40, text } if text.contains("99"))));
    let s = p.script(10).unwrap();
    assert_eq!((s.path.as_str(), s.process_state.as_str(), s.script_state.as_str()), ("b.py", "TERMINATED", "STOPPED"));
    // Script state 42 on a Script state event: nothing sent, checkpoint untouched.
    let got = sample(&mut p, &event("Script", "state", 10, json!({"state": 42, "lastCheckpoint": "cp"})), T0);
    assert!(got.is_empty());
    assert_eq!(p.script(10).unwrap().last_checkpoint, "");
    // Without any catalog enumeration the names cannot be made: logged, nothing sent.
    let mut cfg = config(&[]);
    cfg.catalog.as_mut().unwrap().enums.clear();
    let mut bare = ScriptQueueProducer::create(cfg).unwrap();
    sample(&mut bare, &queue_event(true, true, 10, &[], &[]), T0);
    let actions = run(&mut bare, Input::Sample(&script_event(10, true, "a.py", 1, 1)), T0);
    assert_eq!(sends(&actions).len(), 1, "only the generic event");
}

#[test]
fn finished_scripts_list_size_setting() {
    let past: Vec<i64> = (1..=30).rev().collect();
    let mut p = producer(&[]);
    sample(&mut p, &queue_event(true, true, 31, &[], &past), T0);
    assert_eq!(p.queue().finished, (21..=30).rev().collect::<Vec<_>>(), "default 10");
    let mut p = producer(&[("FINISHED_SCRIPTS_LIST_SIZE", "3")]);
    let got = sample(&mut p, &queue_event(true, true, 31, &[], &past), T0);
    let finished = &got[2]["data"][0]["data"]["scriptsStream"]["finished_scripts"];
    assert_eq!(
        finished.as_array().unwrap().iter().map(|s| s["index"].as_i64().unwrap()).collect::<Vec<_>>(),
        vec![30, 29, 28]
    );
    assert_eq!(p.sizes().scripts, 4);
    let p = ScriptQueueProducer::create(config(&[("FINISHED_SCRIPTS_LIST_SIZE", "lots")])).unwrap();
    assert_eq!(p.settings().finished_scripts_list_size, 10);
}

fn commands(actions: &[Action]) -> Vec<(u64, bool, String)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Command { id, component, index, name, fields, timeout } => {
                assert_eq!(
                    (component.as_str(), *index, name.as_str(), *timeout),
                    ("ScriptQueue", 1, "showSchema", 5.0)
                );
                assert_eq!(fields.len(), 2);
                assert_eq!(fields[0].name.as_str(), "isStandard");
                assert_eq!(fields[1].name.as_str(), "path");
                let std = matches!(fields[0].value, Value::Bool(true));
                let path = fields[1].value.as_str().unwrap().to_string();
                Some((*id, std, path))
            }
            _ => None,
        })
        .collect()
}

fn available(msgs: &[J]) -> Vec<J> {
    msgs.iter()
        .filter(|m| stream_of(m).1 == "availableScriptsStream")
        .map(|m| m["data"][0]["data"]["availableScriptsStream"]["available_scripts"].clone())
        .collect()
}

#[test]
fn update_scripts_schema_on_start() {
    let mut p = producer(&[("UPDATE_SCRIPTS_SCHEMA_ON_START", "True")]);
    let avail = event("ScriptQueue", "availableScripts", 1, json!({"standard": "s1.py:s2.py", "external": "e1.py"}));
    let actions = run(&mut p, Input::Sample(&avail), T0);
    let msgs: Vec<J> = sends(&actions).iter().map(|t| parse(t)).collect();
    assert_eq!(available(&msgs).len(), 1, "sent once at the event");
    // One command at a time: standard paths first, then external.
    let c = commands(&actions);
    assert_eq!(c.iter().map(|(_, s, p)| (*s, p.as_str())).collect::<Vec<_>>(), vec![(true, "s1.py")]);
    let first = c[0].0;

    // The ScriptQueue answers with configSchema: stored silently while the update runs.
    let schema = |std: bool, path: &str, text: &str| {
        event("ScriptQueue", "configSchema", 1, json!({"isStandard": std, "path": path, "configSchema": text}))
    };
    let got = sample(&mut p, &schema(true, "s1.py", "type: object\n"), T0 + 0.1);
    assert!(available(&got).is_empty());
    // Intermediate acks and other ids do not advance.
    for (id, code) in [(first, 301), (first + 100, 303)] {
        let a = run(&mut p, Input::CommandAck { id, code, result: "" }, T0 + 0.2);
        assert!(commands(&a).is_empty());
    }
    let a = run(&mut p, Input::CommandAck { id: first, code: 303, result: "Done" }, T0 + 0.3);
    let c = commands(&a);
    assert_eq!(c.iter().map(|(_, s, p)| (*s, p.as_str())).collect::<Vec<_>>(), vec![(true, "s2.py")]);
    // A failed command is logged and skipped.
    let a = run(&mut p, Input::CommandAck { id: c[0].0, code: -302, result: "no such script" }, T0 + 0.4);
    assert!(a.iter().any(|x| matches!(x, Action::Log { level: 40, text } if text.contains("s2.py"))));
    let c = commands(&a);
    assert_eq!(c.iter().map(|(_, s, p)| (*s, p.as_str())).collect::<Vec<_>>(), vec![(false, "e1.py")]);
    // No ack at all: the producer asked to be woken at the deadline and moves on (here: done).
    let wake = a.iter().rev().find_map(|x| if let Action::WakeAt(t) = x { Some(*t) } else { None }).unwrap();
    assert!(wake <= T0 + 0.4 + 6.0 + 1e-9);
    sample(&mut p, &schema(false, "e1.py", ""), T0 + 1.0);
    assert!(commands(&run(&mut p, Input::Tick, T0 + 3.0)).is_empty());
    assert!(p.schema_update().is_some(), "still waiting");
    let a = run(&mut p, Input::Tick, T0 + 0.4 + 6.0);
    assert!(a.iter().any(|x| matches!(x, Action::Log { level: 40, text } if text.contains("e1.py"))));
    assert!(p.schema_update().is_none());
    let msgs: Vec<J> = sends(&a).iter().map(|t| parse(t)).collect();
    assert_eq!(
        available(&msgs),
        vec![json!([
            {"type": "standard", "path": "s1.py", "configSchema": "type: object\n"},
            {"type": "standard", "path": "s2.py", "configSchema": ""},
            {"type": "external", "path": "e1.py", "configSchema": "# empty schema"},
        ])],
        "sent once when all are done"
    );
    // After the update, configSchema events are sent again.
    let got = sample(&mut p, &schema(true, "s2.py", "a: 1"), T0 + 7.0);
    assert_eq!(available(&got).len(), 1);
}

#[test]
fn schema_update_restarts_on_a_new_available_scripts_event() {
    let mut p = producer(&[("UPDATE_SCRIPTS_SCHEMA_ON_START", "1")]);
    let a = run(
        &mut p,
        Input::Sample(&event("ScriptQueue", "availableScripts", 1, json!({"standard": "a.py:b.py", "external": ""}))),
        T0,
    );
    let old = commands(&a)[0].0;
    let a = run(
        &mut p,
        Input::Sample(&event("ScriptQueue", "availableScripts", 1, json!({"standard": "c.py", "external": ""}))),
        T0 + 1.0,
    );
    // All known paths again, from the first.
    let c = commands(&a);
    assert_eq!(c.iter().map(|(_, _, p)| p.as_str()).collect::<Vec<_>>(), vec!["a.py"]);
    assert_ne!(c[0].0, old);
    // The abandoned command's ack is ignored.
    assert!(commands(&run(&mut p, Input::CommandAck { id: old, code: 303, result: "" }, T0 + 1.1)).is_empty());
    let mut id = c[0].0;
    let mut order = vec!["a.py".to_string()];
    loop {
        let a = run(&mut p, Input::CommandAck { id, code: 303, result: "" }, T0 + 2.0);
        match commands(&a).first() {
            Some((next, _, path)) => {
                id = *next;
                order.push(path.clone());
            }
            None => {
                assert_eq!(available(&sends(&a).iter().map(|t| parse(t)).collect::<Vec<_>>()).len(), 1);
                break;
            }
        }
    }
    assert_eq!(order, ["a.py", "b.py", "c.py"]);
    // Off by default: no commands.
    let mut p = producer(&[]);
    let a = run(
        &mut p,
        Input::Sample(&event("ScriptQueue", "availableScripts", 1, json!({"standard": "a.py", "external": ""}))),
        T0,
    );
    assert!(commands(&a).is_empty());
}

#[test]
fn script_heartbeat_rounds_every_two_seconds() {
    let mut p = producer(&[]);
    sample(&mut p, &queue_event(true, true, 10, &[11], &[9]), T0);
    let a = run(&mut p, Input::Tick, T0);
    let msgs: Vec<J> = sends(&a).iter().map(|t| parse(t)).collect();
    // Current then waiting; finished scripts get none.
    let idx: Vec<i64> =
        msgs.iter().map(|m| m["data"][0]["data"]["stream"]["script_heartbeat"]["salindex"].as_i64().unwrap()).collect();
    assert_eq!(idx, vec![10, 11]);
    assert!(msgs
        .iter()
        .all(|m| m["producer_snd"] == 0 && m["data"][0]["csc"] == "ScriptHeartbeats" && m["data"][0]["salindex"] == 1));
    assert_eq!(p.core().next_wake().map(|t| t > T0 + 2.0), Some(true), "the core is silenced in these tests");
    let wake = a.iter().rev().find_map(|x| if let Action::WakeAt(t) = x { Some(*t) } else { None });
    assert_eq!(wake, Some(T0 + 2.0));
    assert!(sent(&mut p, Input::Tick, T0 + 1.0).is_empty(), "not due");
    assert_eq!(sent(&mut p, Input::Tick, T0 + 2.0).len(), 2);
    // Heartbeats from a script reset its count; 7 s exactly is not lost (strict rule).
    sample(&mut p, &event("Script", "heartbeat", 10, json!({"heartbeat": true})), T0 + 3.0);
    let lost = |p: &mut ScriptQueueProducer, t: f64| -> Vec<i64> {
        sent(p, Input::Tick, t)
            .iter()
            .map(|m| m["data"][0]["data"]["stream"]["script_heartbeat"]["lost"].as_i64().unwrap())
            .collect()
    };
    assert_eq!(lost(&mut p, T0 + 10.0), vec![0, 3]);
    assert_eq!(lost(&mut p, T0 + 12.0), vec![1, 4]);
    // Heartbeats of unknown scripts are ignored.
    sample(&mut p, &event("Script", "heartbeat", 4242, json!({"heartbeat": true})), T0 + 12.5);
    assert!(p.script_heartbeat(4242).is_none());
}

#[test]
fn initial_data_and_subscriptions() {
    let mut p = producer(&[]);
    let subs: Vec<String> =
        sent(&mut p, Input::Register, T0).iter().map(|m| m["csc"].as_str().unwrap().to_string()).collect();
    assert_eq!(subs, ["all", "ScriptQueue", "ScriptQueueState", "Script"]);
    sample(&mut p, &event("ScriptQueue", "summaryState", 1, json!({"summaryState": 2})), T0);
    let got = sent(&mut p, Input::Connected, T0);
    assert_eq!(
        streams(&got),
        vec![
            pair("ScriptQueueState", "stateStream"),
            pair("ScriptQueueState", "scriptsStream"),
            pair("ScriptQueueState", "availableScriptsStream"),
            pair("ScriptQueue", "summaryState"),
        ]
    );
    // Requests the reference answers (quirk 12 kept) and does not.
    let r = |p: &mut ScriptQueueProducer, csc: &str, idx: i64, name: &str| {
        streams(&sent(p, Input::ManagerMessage(&request(csc, json!(idx), name)), T0))
    };
    assert_eq!(r(&mut p, "Script", 1, "summaryState"), vec![pair("ScriptQueue", "summaryState")]);
    assert_eq!(r(&mut p, "ScriptQueue", 1, "scriptsStream"), vec![pair("ScriptQueueState", "scriptsStream")]);
    assert!(r(&mut p, "ScriptQueue", 2, "summaryState").is_empty());
    assert!(r(&mut p, "ScriptHeartbeats", 1, "stream").is_empty());
}

#[test]
fn snapshot_restore_roundtrip() {
    let cfg = config(&[("heartbeat_timeout", "3600")]);
    let mut a = TestDriver::create(ScriptQueueProducer::create, &cfg).unwrap();
    a.input(Input::Start, T0).unwrap();
    a.input(Input::Catalog(&script_catalog_json()), T0).unwrap();
    a.sample(&queue_event(true, true, 10, &[11, 12], &[9]), T0).unwrap();
    a.sample(&script_event(10, true, "a.py", 3, 3), T0).unwrap();
    let mut nan = event("Script", "metadata", 10, json!({}));
    nan.fields = vec![Field::new("duration", Value::Float(f64::NAN))].into();
    a.sample(&nan, T0).unwrap();
    a.sample(&event("Script", "heartbeat", 10, json!({"heartbeat": true})), T0 + 1.0).unwrap();
    a.sample(&log_event(10, "hello"), T0).unwrap();
    a.sample(&event("ScriptQueue", "availableScripts", 1, json!({"standard": "s.py", "external": "e.py"})), T0)
        .unwrap();
    a.sent(Input::Tick, T0 + 2.0).unwrap();
    let snap = a.snapshot().unwrap();
    let v: J = serde_json::from_str(&snap).unwrap();
    assert_eq!(v["version"], 1);

    // Into a fresh producer: no Start, no Catalog input needed to continue.
    let mut b = TestDriver::create(ScriptQueueProducer::create, &cfg).unwrap();
    b.restore(&snap).unwrap();
    assert_eq!(b.snapshot().unwrap(), snap);
    for (input, t) in [(Input::Connected, T0 + 3.0), (Input::Tick, T0 + 4.0), (Input::Tick, T0 + 12.0)] {
        let x: Vec<J> = a.sent(input, t).unwrap().iter().map(|s| parse(s)).collect();
        let y: Vec<J> = b.sent(input, t).unwrap().iter().map(|s| parse(s)).collect();
        assert_eq!(x.len(), y.len());
        assert!(x.iter().zip(&y).all(|(p, q)| same(p, q)), "{x:?}\n{y:?}");
    }
    let req = request("Script", json!(10), "logMessage");
    assert_eq!(a.manager(&req, T0).unwrap(), b.manager(&req, T0).unwrap());
    let l = log_event(10, "after");
    assert_eq!(a.sample(&l, T0).unwrap(), b.sample(&l, T0).unwrap(), "log conversion from the restored catalog");

    // Newer versions, garbage and other queues are refused, leaving the state unchanged.
    let mut newer = v.clone();
    newer["version"] = 2.into();
    assert!(b.restore(&newer.to_string()).is_err());
    assert!(b.restore("{}").is_err());
    assert!(b.restore("nonsense").is_err());
    let mut other = TestDriver::create(ScriptQueueProducer::create, &config(&[])).unwrap();
    let mut other_cfg = config(&[]);
    other_cfg.index = 2;
    let other_snap = TestDriver::create(ScriptQueueProducer::create, &other_cfg).unwrap().snapshot().unwrap();
    assert!(other.restore(&other_snap).is_err());
    assert_eq!(a.snapshot().unwrap(), b.snapshot().unwrap());
}

/// Thousands of scripts through the queue: every table stays bounded.
#[test]
fn long_run_memory_stays_bounded() {
    let mut p = producer(&[]);
    // Outputs are not parsed here (the other tests check them); only the tables are looked at.
    let feed = |p: &mut ScriptQueueProducer, s: &Sample, now: f64| {
        run(p, Input::Sample(s), now);
    };
    let base = 100_000i64;
    let n = 3_000i64;
    let waiting_len = 5i64;
    let mut now = T0;
    let mut snapshot_sizes = Vec::new();
    for i in 0..n {
        now += 1.0;
        let cur = base + i;
        let waiting: Vec<i64> = (1..=waiting_len).map(|k| cur + k).collect();
        // The real queue keeps up to 400 past scripts; the producer shows 10.
        let past: Vec<i64> = (1..=400.min(i)).map(|k| cur - k).collect();
        // The new last waiting script appears first through its script event (object only).
        feed(&mut p, &script_event(cur + waiting_len, true, "w.py", 1, 1), now);
        // Bursts of script events for scripts the queue never lists: kept for a later queue
        // event, but at most MAX_ORPHAN_SCRIPTS of them.
        if i % 500 == 250 {
            for k in 0..(3 * MAX_ORPHAN_SCRIPTS as i64) {
                feed(&mut p, &script_event(10_000_000 + i * 1000 + k, false, "ghost.py", 1, 1), now);
            }
            assert!(p.sizes().scripts <= 1 + waiting_len as usize + 10 + MAX_ORPHAN_SCRIPTS, "{:?}", p.sizes());
        }
        feed(&mut p, &queue_event(true, true, cur, &waiting, &past), now);
        feed(&mut p, &script_event(cur, true, "run.py", 3, 3), now);
        feed(&mut p, &event("Script", "state", cur, json!({"state": 3, "lastCheckpoint": format!("cp{i}")})), now);
        feed(
            &mut p,
            &event("Script", "description", cur, json!({"description": "d", "classname": "C", "remotes": "R"})),
            now,
        );
        feed(&mut p, &event("Script", "heartbeat", cur, json!({"heartbeat": true})), now);
        for k in 0..(MAX_LOG_MESSAGES + 2) {
            feed(&mut p, &log_event(cur, &format!("message {k}")), now);
        }
        // A finished script keeps logging for a while.
        feed(&mut p, &log_event(cur - 1, "after the end"), now);
        run(&mut p, Input::Tick, now);
        let s = p.sizes();
        let listed = 1 + waiting_len as usize + s.finished;
        assert!(s.finished <= 10);
        assert!(s.scripts <= listed + 1, "step {i}: {s:?}");
        assert!(s.heartbeats <= listed && s.log_buffers <= listed, "step {i}: {s:?}");
        assert!(s.max_log_buffer <= MAX_LOG_MESSAGES, "step {i}: {s:?}");
        assert!(s.log_messages <= listed * MAX_LOG_MESSAGES);
        if i % 500 == 499 {
            snapshot_sizes.push(p.snapshot().unwrap().len());
        }
    }
    let s = p.sizes();
    assert_eq!((s.finished, s.heartbeats, s.log_buffers), (10, 16, 16));
    assert_eq!(p.log_buffer(base + n - 1).unwrap().messages.len(), MAX_LOG_MESSAGES);
    assert_eq!(p.log_buffer(base + n - 2).unwrap().messages.len(), MAX_LOG_MESSAGES, "capped after the end too");
    // The snapshot (the whole state) does not grow with the number of scripts seen.
    let (min, max) = (snapshot_sizes.iter().min().unwrap(), snapshot_sizes.iter().max().unwrap());
    assert!(*max < *min + *min / 10, "{snapshot_sizes:?}");
}

/// reference-tests.md, scriptqueue `test_heartbeat`: with the queue's heartbeat arriving at 1 Hz,
/// Heartbeat messages come every 2-3 s and the last says ScriptQueue:1, lost 0, max 5.
#[test]
fn the_queues_heartbeat_stream_as_the_reference_test_sees_it() {
    let mut p = ScriptQueueProducer::create(config(&[])).unwrap();
    run(&mut p, Input::Start, T0);
    let mut msgs = Vec::new();
    for step in 0..=20 {
        let now = T0 + step as f64 * 0.5;
        if step % 2 == 0 {
            msgs.extend(sample(&mut p, &event("ScriptQueue", "heartbeat", 1, json!({})), now));
        }
        msgs.extend(sent(&mut p, Input::Tick, now));
    }
    let beats: Vec<&J> = msgs.iter().filter(|m| m["data"][0]["csc"] == "Heartbeat").collect();
    assert!(beats.len() >= 3, "{beats:?}");
    for m in &beats {
        assert_eq!((m["category"].as_str(), m["data"][0]["salindex"].as_i64()), (Some("event"), Some(0)));
    }
    let last = &beats.last().unwrap()["data"][0]["data"]["stream"];
    assert_eq!(last["csc"], "ScriptQueue");
    assert_eq!(last["salindex"], 1);
    assert_eq!(last["lost"], 0);
    assert_eq!(last["max_lost_heartbeats"], 5);
    assert!(last["last_heartbeat_timestamp"].as_f64().unwrap() > T0);
}
