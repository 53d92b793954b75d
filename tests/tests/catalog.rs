//! The built-in topic catalog as an operator meets it: `love-host catalog`, any CSC on the
//! simulator with no other file, and log lines free of colour escapes when not at a terminal.

mod common;

use std::process::{Command, Output};
use std::time::Duration;

use common::*;

const T: Duration = Duration::from_secs(30);

fn host(args: &[&str]) -> Output {
    Command::new(&built().host).args(args).env_remove("TS_XML_DIR").output().expect("run love-host")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn catalog_lists_components_topics_and_fields() {
    let out = host(&["catalog"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listing = text(&out.stdout);
    assert!(listing.starts_with("topic catalog: built-in ts_xml "), "{listing}");
    for name in ["ATDome", "MTMount", "MTM1M3", "Watcher", "ScriptQueue"] {
        assert!(listing.lines().any(|l| l.split_whitespace().next() == Some(name)), "{name} missing:\n{listing}");
    }

    let out = host(&["catalog", "MTM1M3"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let topics = text(&out.stdout);
    for (kind, topic) in [("telemetry", "forceActuatorData"), ("event", "summaryState"), ("command", "enable")] {
        assert!(topics.lines().any(|l| l.split_whitespace().take(2).eq([kind, topic])), "no {kind} {topic}:\n{topics}");
    }

    let out = host(&["catalog", "ATDome", "position"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let fields = text(&out.stdout);
    let az = fields.lines().find(|l| l.starts_with("azimuthPosition ")).unwrap_or_else(|| panic!("{fields}"));
    assert_eq!(az.split_whitespace().collect::<Vec<_>>(), ["azimuthPosition", "double", "1", "deg"]);
}

#[test]
fn catalog_names_an_unknown_component_or_topic() {
    let out = host(&["catalog", "NoSuchCsc"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("component \"NoSuchCsc\" is not in the topic catalog"), "{}", text(&out.stderr));
    let out = host(&["catalog", "ATDome", "noSuchTopic"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("ATDome has no topic \"noSuchTopic\""), "{}", text(&out.stderr));
}

#[test]
fn any_catalog_csc_streams_with_units_and_the_log_has_no_escapes() {
    let dir = plugin_dir("catalog", &[plugin_so("csc")]);
    let mut host =
        HostProcess::start(&["--plugin-dir", dir.to_str().unwrap(), "--components", "MTMount", "--sim-seed", "3"]);
    let line = host.wait_log(T, "topic catalog:");
    assert!(line.contains("built-in ts_xml 28.0.1"), "{line}");
    assert!(host.wait_log(T, "MTMount:0 served by csc").contains("known CSC"));
    host.wait_stdout(T, "MTMount azimuth telemetry with units", |msgs| {
        msgs.iter().any(|m| {
            m["category"] == "telemetry"
                && m["data"][0]["csc"] == "MTMount"
                && m["data"][0]["data"]["azimuth"]["actualPosition"]["units"] == "deg"
        })
    });
    host.wait_stdout(T, "an MTMount event", |msgs| {
        msgs.iter().any(|m| m["category"] == "event" && m["data"][0]["csc"] == "MTMount")
    });
    host.signal("TERM");
    assert!(host.wait_exit(Duration::from_secs(15)).success());
    // Standard error is a pipe here, as with a log file or the journal: no colour.
    let log = host.stderr();
    assert!(log.len() > 3, "{log:?}");
    for l in &log {
        assert!(!l.contains('\u{1b}'), "escape sequence in a log line: {l:?}");
    }
}

#[test]
fn json_logs_are_plain_json() {
    let dir = plugin_dir("catalog-json", &[plugin_so("csc")]);
    let mut host = HostProcess::start(&["--plugin-dir", dir.to_str().unwrap(), "--log-format", "json", "ATDome"]);
    host.wait_log(T, "topic catalog");
    host.signal("TERM");
    assert!(host.wait_exit(Duration::from_secs(15)).success());
    for l in host.stderr() {
        let v: serde_json::Value = serde_json::from_str(&l).unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}"));
        assert!(!l.contains('\u{1b}'), "{l:?}");
        assert!(v["message"].is_string(), "{l}");
    }
}
