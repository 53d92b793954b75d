//! What the outside world can throw at the built host (issue 18): malformed `Json` values in a
//! replayed recording, a password at trace level, a fatal start-up error after the plugins are
//! copied, stale copies of dead processes, a panicking plugin under `--log-format json`.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use love_host_tests::FakeManager;
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(60);

fn recorded(t: f64, seq: i64, state: i64, note: &str) -> String {
    json!({"t": t, "sample": {
        "component": "ATDome", "sal_index": 0, "topic": "summaryState", "kind": "event",
        "stamps": {"snd_stamp": 1.5, "rcv_stamp": 1.5, "efd_stamp": 1.5, "kafka_stamp": 1.5, "seq_num": seq,
                   "rev_code": "abc", "identity": "ATDome", "origin": 1},
        "fields": {"summaryState": {"Int": state}, "note": {"Json": note}},
    }})
    .to_string()
}

fn summary_states(mgr: &FakeManager) -> Vec<(i64, Value)> {
    // Leniently: the valid value holds NaN, as the reference sends it.
    mgr.frames()
        .iter()
        .filter_map(|f| f.text().and_then(|t| love_plugin_api::json::parse_lenient(t).ok()).map(|v| (f.conn, v)))
        .filter(|(_, m)| m["category"] == "event" && m["data"][0]["csc"] == "ATDome")
        .filter_map(|(_, m)| {
            let s = &m["data"][0]["data"]["summaryState"][0];
            Some((s["summaryState"]["value"].as_i64()?, s["note"]["value"].clone()))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_json_fields_replayed_to_the_manager_never_break_the_link() {
    let mgr = FakeManager::start("pw").await;
    // As the real LOVE-manager: a frame json.loads refuses ends the connection.
    mgr.set_strict(true);
    let dir = plugin_dir("badjson", &[plugin_so("csc")]);
    let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    let notes = ["{{{not json", r#"1, "injected": {}"#, deep.as_str(), r#"{"fine": [1, NaN]}"#];
    let rec = std::env::temp_dir().join(format!("love-host-badjson-{}.jsonl", std::process::id()));
    let lines: Vec<String> =
        notes.iter().enumerate().map(|(i, n)| recorded(i as f64 * 0.01, i as i64, i as i64 + 1, n)).collect();
    std::fs::write(&rec, lines.join("\n") + "\n").unwrap();
    let mut host = start_host_with_manager(
        &mgr,
        &dir,
        "pw",
        &["--components", "ATDome", "--replay", rec.to_str().unwrap(), "--replay-speed", "0"],
    );
    wait_manager(&mgr, &host, "the four replayed summaryState events", |m| {
        let got: Vec<i64> = summary_states(m).iter().map(|(s, _)| *s).collect();
        (1..=4).all(|s| got.contains(&s))
    })
    .await;
    let states = summary_states(&mgr);
    for (i, note) in notes.iter().enumerate().take(3) {
        let (_, v) = states.iter().find(|(s, _)| *s == i as i64 + 1).unwrap();
        assert_eq!(v, &Value::String(note.to_string()), "a malformed value is carried as a JSON string");
    }
    let (_, fine) = states.iter().find(|(s, _)| *s == 4).unwrap();
    assert!(fine["fine"].is_array(), "a valid value is pasted as JSON: {fine}");
    assert_eq!(mgr.connections(), 1, "one connection: the manager never got a frame it could not parse");
    host.signal("TERM");
    assert!(host.wait_exit(Duration::from_secs(20)).success());
    let _ = std::fs::remove_file(&rec);
}

#[tokio::test(flavor = "multi_thread")]
async fn no_password_in_the_log_at_trace_level() {
    const PASSWORD: &str = "Tr4ce p@ss&word";
    let mgr = FakeManager::start(PASSWORD).await;
    let mut host = HostProcess::start_with_env(
        &["--components", "ATDome", "--manager-url", &mgr.url(), "--sim-rate", "5"],
        &[("PROCESS_CONNECTION_PASS", PASSWORD), ("LOVE_LOG", "trace")],
    );
    wait_manager(&mgr, &host, "a connection with the password", |m| {
        m.handshakes().iter().any(|h| h.status == 101) && !m.json_frames().is_empty()
    })
    .await;
    host.signal("TERM");
    assert!(host.wait_exit(Duration::from_secs(20)).success());
    let log = host.stderr();
    // Trace was on: tungstenite's handshake request line is there, redacted.
    let request = log.iter().find(|l| l.contains("Request:") && l.contains("/manager/ws/subscription"));
    let request = request.unwrap_or_else(|| panic!("no trace line of the handshake request\n{}", log.join("\n")));
    assert!(request.contains("password=***"), "{request}");
    let encoded: String = form_urlencoded::byte_serialize(PASSWORD.as_bytes()).collect();
    for secret in [PASSWORD, "p@ss", "p%40ss", encoded.as_str(), "Tr4ce%20p"] {
        let leaks: Vec<&String> = log.iter().filter(|l| l.contains(secret)).collect();
        assert!(leaks.is_empty(), "{secret:?} in {} log lines, e.g. {}", leaks.len(), leaks[0]);
    }
}

/// A fresh directory to serve as the child's TMPDIR.
fn temp_root(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("love-host-tmp-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).unwrap().flatten().map(|e| e.file_name().to_string_lossy().to_string()).collect();
    v.sort();
    v
}

#[test]
fn a_fatal_start_up_error_leaves_no_plugin_copies_and_stale_ones_are_removed() {
    let tmp = temp_root("copies");
    // Left by a process that no longer runs (no pid reaches 99,999,999) and by a live one.
    let stale = tmp.join("love-host-99999999-plugins");
    std::fs::create_dir_all(&stale).unwrap();
    std::fs::write(stale.join("99999999-start-0-liblove_plugin_csc.so"), b"old copy").unwrap();
    let live = tmp.join(format!("love-host-{}-plugins", std::process::id()));
    std::fs::create_dir_all(&live).unwrap();
    let dir = plugin_dir("copies", &[plugin_so("csc")]);
    let env = [("TMPDIR", tmp.to_str().unwrap())];
    // Bad configuration is refused before anything is loaded or copied.
    let args = ["--plugin-dir", dir.to_str().unwrap(), "--components", "ATDome", "--manager-url", "ftp://nowhere/"];
    let mut host = HostProcess::start_with_env(&args, &env);
    let status = host.wait_exit(Duration::from_secs(30));
    let log = host.stderr().join("\n");
    assert!(!status.success(), "{log}");
    assert!(log.contains("ftp://nowhere"), "{log}");
    assert!(!log.contains("loaded plugin"), "refused before the plugins are loaded\n{log}");
    // An error found once the plugins are copied and loaded (a type no plugin provides).
    let args = ["--plugin-dir", dir.to_str().unwrap(), "--components", "ATDome", "--producer-type", "ATDome=m1m3"];
    let mut host = HostProcess::start_with_env(&args, &env);
    let status = host.wait_exit(Duration::from_secs(30));
    let log = host.stderr().join("\n");
    assert!(!status.success(), "{log}");
    assert!(log.contains("loaded plugin csc"), "the plugins were copied and loaded before the error\n{log}");
    assert!(log.contains("\"m1m3\""), "{log}");
    let left = entries(&tmp);
    assert_eq!(left, vec![format!("love-host-{}-plugins", std::process::id())], "only the live process's dir is left");
    let _ = std::fs::remove_dir_all(&tmp);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_panic_goes_through_the_logger_without_a_backtrace() {
    let mgr = FakeManager::start("pw").await;
    let dir = plugin_dir("panics", &[plugin_so("csc")]);
    let create_panics = csc_next_so(Some("create-panics"));
    let args = ["--log-format", "json", "--components", "ATDome", "--sim-rate", "10"];
    let url = mgr.url();
    let mut host = HostProcess::start_with_env(
        &[&["--plugin-dir", dir.to_str().unwrap(), "--manager-url", url.as_str()][..], &args[..]].concat(),
        &[("PROCESS_CONNECTION_PASS", "pw"), ("RUST_BACKTRACE", "1")],
    );
    wait_manager(&mgr, &host, "ATDome events", |m| !m.json_frames().is_empty()).await;
    let rss_before = rss_kb(host.child.id());
    deploy(&dir, &create_panics, "liblove_plugin_csc_create_panics.so");
    let line = host.wait_log(T, "panic in create");
    let rss_after = rss_kb(host.child.id());
    eprintln!("love-host RSS: {rss_before} kB before the plugin panic, {rss_after} kB after");
    // A symbolized backtrace kept the plugin's debug information mapped: ~170 MB for good.
    assert!(rss_after.saturating_sub(rss_before) < 50_000, "RSS grew from {rss_before} kB to {rss_after} kB");
    let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
    let text = v.to_string();
    assert!(text.contains("(at src/lib.rs:"), "the panic's location is in the line: {text}");
    host.signal("TERM");
    assert!(host.wait_exit(Duration::from_secs(20)).success());
    // Every line is JSON: no raw "thread '…' panicked at" text, no backtrace from the plugin's
    // own std (symbolizing it kept the plugin's debug information in memory for good).
    for l in host.stderr() {
        assert!(serde_json::from_str::<Value>(&l).is_ok(), "a log line that is not JSON: {l}");
        assert!(!l.contains("stack backtrace"), "{l}");
    }
}

fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}
