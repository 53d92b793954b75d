//! The per-sample path through the plugin boundary: the host calling a LOADED `.so`.
//!
//! Cases (each: one `InputMsg` in, `RVec<ActionMsg>` back across the boundary, every action
//! decoded on the host side as `runtime.rs` does, so the JSON text ends up in host `String`s):
//!
//! - `watcher_alarm`: a Watcher `alarm` event (the built-in catalog's 18 fields plus the 8
//!   private fields) into the watcher plugin: the alarm event message out, plus the alarms
//!   stream the plugin pushes when an alarm changes (one alarm in the table);
//! - `telemetry_tick`: a telemetry sample of 30 floats plus a 156-float array (synthetic
//!   catalog `BenchCSC`) into the csc plugin, then the telemetry tick that converts and sends
//!   it (the default path: telemetry is kept and sent on the 2-s cadence);
//! - `telemetry_on_arrival`: the same sample with the topic listed in `asynchronous_data`,
//!   forwarded on arrival (the path `love-bench` loads);
//! - `*_floor`: bare `serde_json::to_string` of the same final message(s), parsed beforehand
//!   into `serde_json::Value`s from the text the plugin produced.
//!
//! The plugins are built (release) by the bench itself, as the integration tests do, into the
//! target directory the bench was built in; `LOVE_BENCH_PLUGIN_DIR` overrides (a directory
//! holding `liblove_plugin_{csc,watcher}.so`). After criterion, a summary times each case and
//! its floor in one run with `Instant` loops and prints the ratios (`LOVE_BENCH_QUICK=1`
//! shortens it). Never asserts times.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use love_host::plugin::{load_plugin, LoadedPlugin};
use love_plugin_api::abi::{
    ActionKind, Field, InputKind, InputMsg, PrivateStamps, ProducerBox, Sample, TopicKind, Value,
};
use love_plugin_api::catalog::{ComponentCatalog, FieldInfo, TopicInfo};
use love_plugin_api::sdk::{Action, ProducerConfig};

/// `<target>/<profile>` of this bench binary (`<target>/<profile>/deps/boundary-…`).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    exe.parent().and_then(Path::parent).expect("profile dir").to_path_buf()
}

/// The directory holding the release-built plugins (built here unless given).
fn plugin_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("LOVE_BENCH_PLUGIN_DIR") {
        return PathBuf::from(d);
    }
    let dir = profile_dir();
    let profile = dir.file_name().unwrap().to_string_lossy().to_string();
    let target = dir.parent().expect("target dir").to_path_buf();
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf();
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(&repo)
        .args(["build", "-p", "love-plugin-csc", "-p", "love-plugin-watcher"])
        .env("CARGO_TARGET_DIR", &target);
    match profile.as_str() {
        "debug" => {}
        "release" => {
            cmd.arg("--release");
        }
        other => {
            cmd.args(["--profile", other]);
        }
    }
    let out = cmd.output().expect("running cargo to build the plugins");
    assert!(out.status.success(), "building the plugins failed:\n{}", String::from_utf8_lossy(&out.stderr));
    dir
}

fn load(dir: &Path, name: &str) -> LoadedPlugin {
    let path = dir.join(format!("liblove_plugin_{name}.so"));
    load_plugin(&path).unwrap_or_else(|e| panic!("loading {}: {e}", path.display()))
}

fn create(plugin: &LoadedPlugin, cfg: &ProducerConfig) -> ProducerBox {
    plugin.create(&serde_json::to_string(cfg).unwrap()).expect("create producer")
}

fn stamps(identity: &str) -> PrivateStamps {
    PrivateStamps {
        snd_stamp: 1_700_000_000.123456,
        rcv_stamp: 1_700_000_000.125,
        efd_stamp: 1_700_000_000.123456 - 37.0,
        kafka_stamp: 1_700_000_000.124,
        seq_num: 12345,
        rev_code: "1a2b3c4d".into(),
        identity: identity.into(),
        origin: 4242,
    }
}

fn input(kind: InputKind) -> InputMsg {
    InputMsg { kind, ..Default::default() }
}

fn sample_input(sample: Sample) -> InputMsg {
    InputMsg { kind: InputKind::SAMPLE, sample, ..Default::default() }
}

/// One call across the boundary, and the host-side decoding of its actions (as `runtime.rs`
/// does: every SEND's text copied into a host `String`). Returns the number of SENDs.
fn call(p: &mut ProducerBox, msg: &InputMsg, now: f64) -> usize {
    let actions = p.handle(msg, now).into_result().expect("handle");
    let mut sends = 0;
    for a in actions.iter() {
        if let Action::Send(m) = Action::decode(a) {
            black_box(&m.text);
            sends += 1;
        }
    }
    sends
}

/// The SEND texts of one call.
fn sends_of(p: &mut ProducerBox, msg: &InputMsg, now: f64) -> Vec<String> {
    let actions = p.handle(msg, now).into_result().expect("handle");
    actions.iter().filter(|a| a.kind == ActionKind::SEND).map(|a| a.text.to_string()).collect()
}

/// A benchmark case: a closure that runs the per-sample path once, and the final messages.
struct Case {
    name: &'static str,
    run: Box<dyn FnMut() -> usize>,
    /// The messages produced, parsed (the floor encodes these).
    floor: Vec<serde_json::Value>,
    bytes: usize,
}

fn parse_all(texts: &[String]) -> Vec<serde_json::Value> {
    texts.iter().map(|t| serde_json::from_str(t).expect("the plugin's output parses as JSON")).collect()
}

// ---- Watcher alarm ---------------------------------------------------------------------------

fn watcher_case(dir: &Path) -> Case {
    let plugin = load(dir, "watcher");
    let cat = love_host::sal::catalog::TopicCatalog::builtin();
    let catalog = cat.component("Watcher").expect("built-in Watcher catalog").clone();
    let alarm = catalog.event("alarm").expect("alarm event").clone();
    let cfg = ProducerConfig {
        component: "Watcher".into(),
        producer_type: "watcher".into(),
        catalog: Some(catalog),
        ..Default::default()
    };
    let mut p = create(&plugin, &cfg);
    p.handle(&input(InputKind::START), 1.0).into_result().unwrap();
    let fields: Vec<Field> = alarm
        .fields
        .iter()
        .map(|f| {
            let value = match (f.name.as_str(), f.idl_type.as_str()) {
                ("name", _) => Value::Str("Enabled.ATDome".into()),
                ("reason", _) => Value::Str("ATDome summaryState is FAULT: the dome drive reported a fault".into()),
                ("escalateTo", _) => Value::Str("auxtel-oncall".into()),
                (_, "string") => Value::Str("".into()),
                (_, "boolean") => Value::Bool(false),
                (_, "double" | "float") => Value::Float(1_700_000_000.25),
                _ => Value::Int(3),
            };
            Field { name: f.name.as_str().into(), value }
        })
        .collect();
    let sample = Sample {
        component: "Watcher".into(),
        sal_index: 0,
        topic: "alarm".into(),
        kind: TopicKind::EVENT,
        stamps: stamps("Watcher"),
        fields: fields.into(),
        received: 1_700_000_000.126,
        seq: 1,
    };
    let mut msg = sample_input(sample);
    let texts = sends_of(&mut p, &msg, 2.0);
    assert_eq!(texts.len(), 2, "an alarm that changes gives the alarm event and the alarms stream");
    let floor = parse_all(&texts);
    let bytes = texts.iter().map(|t| t.len()).sum();
    let mut now = 2.0;
    let run = Box::new(move || {
        // A new sndStamp each time, so the alarm changes and the stream is pushed, as live.
        msg.sample.stamps.snd_stamp += 1.0;
        msg.sample.stamps.seq_num += 1;
        now += 1e-3;
        call(&mut p, &msg, now)
    });
    Case { name: "watcher_alarm", run, floor, bytes }
}

// ---- Telemetry: 30 floats + a 156-float array ------------------------------------------------

fn bench_catalog() -> ComponentCatalog {
    let mut fields: Vec<FieldInfo> = (0..30).map(|i| FieldInfo::new(&format!("value{i}"), "double", 1, "N")).collect();
    fields.push(FieldInfo::new("forces", "float", 156, "N"));
    ComponentCatalog {
        name: "BenchCSC".into(),
        indexed: false,
        telemetry: vec![TopicInfo { name: "forceActuatorData".into(), fields, rate_hz: Some(50.0) }],
        ..Default::default()
    }
}

fn telemetry_sample(catalog: &ComponentCatalog) -> Sample {
    let topic = &catalog.telemetry[0];
    let fields: Vec<Field> = topic
        .fields
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let value = if f.count > 1 {
                // SAL float rounded to f32 and widened, as salobj delivers it.
                Value::FloatArray((0..f.count).map(|k| ((k as f64) * 12.345 - 900.0) as f32 as f64).collect())
            } else {
                Value::Float(1234.5678 + i as f64 * 0.1234567)
            };
            Field { name: f.name.as_str().into(), value }
        })
        .collect();
    Sample {
        component: "BenchCSC".into(),
        sal_index: 0,
        topic: topic.name.as_str().into(),
        kind: TopicKind::TELEMETRY,
        stamps: stamps("BenchCSC"),
        fields: fields.into(),
        received: 1_700_000_000.126,
        seq: 1,
    }
}

fn telemetry_tick_case(dir: &Path) -> Case {
    let plugin = load(dir, "csc");
    let catalog = bench_catalog();
    let sample = telemetry_sample(&catalog);
    let cfg = ProducerConfig {
        component: "BenchCSC".into(),
        producer_type: "csc".into(),
        catalog: Some(catalog),
        ..Default::default()
    };
    let mut p = create(&plugin, &cfg);
    // Timers start at the first input: telemetry is due at 2, 4, 6…
    p.handle(&input(InputKind::START), 0.0).into_result().unwrap();
    let mut msg = sample_input(sample);
    let tick = input(InputKind::TICK);
    assert!(sends_of(&mut p, &msg, 2.0).is_empty(), "telemetry waits for its tick");
    let texts = sends_of(&mut p, &tick, 2.0);
    assert_eq!(texts.len(), 1, "the tick sends the telemetry topic");
    let floor = parse_all(&texts);
    let bytes = texts[0].len();
    let mut now = 2.0;
    let run = Box::new(move || {
        now += 2.0;
        msg.sample.stamps.seq_num += 1;
        let a = call(&mut p, &msg, now);
        a + call(&mut p, &tick, now)
    });
    Case { name: "telemetry_tick", run, floor, bytes }
}

fn telemetry_on_arrival_case(dir: &Path) -> Case {
    let plugin = load(dir, "csc");
    let catalog = bench_catalog();
    let sample = telemetry_sample(&catalog);
    let cfg = ProducerConfig {
        component: "BenchCSC".into(),
        producer_type: "csc".into(),
        asynchronous_data: Some(vec!["tel_forceActuatorData".into()]),
        catalog: Some(catalog),
        ..Default::default()
    };
    let mut p = create(&plugin, &cfg);
    p.handle(&input(InputKind::START), 0.0).into_result().unwrap();
    let mut msg = sample_input(sample);
    let texts = sends_of(&mut p, &msg, 1.0);
    assert_eq!(texts.len(), 1, "an asynchronous telemetry topic is forwarded on arrival");
    let floor = parse_all(&texts);
    let bytes = texts[0].len();
    let mut now = 1.0;
    let run = Box::new(move || {
        now += 0.02;
        msg.sample.stamps.seq_num += 1;
        call(&mut p, &msg, now)
    });
    Case { name: "telemetry_on_arrival", run, floor, bytes }
}

/// The event love-bench's load mode sends (10 mixed fields: double, long, boolean, string,
/// float), forwarded on arrival by the csc plugin: the per-message work of that bench.
fn load_event_case(dir: &Path) -> Case {
    let plugin = load(dir, "csc");
    let kinds =
        [("double", "deg"), ("long", "unitless"), ("boolean", "unitless"), ("string", "unitless"), ("float", "m")];
    let fields: Vec<FieldInfo> =
        (0..10).map(|f| FieldInfo::new(&format!("field{f}"), kinds[f % 5].0, 1, kinds[f % 5].1)).collect();
    let topic = TopicInfo { name: "event0".into(), fields, rate_hz: None };
    let values: Vec<Field> = topic
        .fields
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let value = match f.idl_type.as_str() {
                "boolean" => Value::Bool(i % 2 == 0),
                "long" => Value::Int(1000 + i as i64),
                "string" => Value::Str(format!("value of {}", f.name).into()),
                _ => Value::Float((12.345678 * (i + 1) as f64) as f32 as f64),
            };
            Field { name: f.name.as_str().into(), value }
        })
        .collect();
    let catalog = ComponentCatalog { name: "Bench000".into(), events: vec![topic], ..Default::default() };
    let cfg = ProducerConfig {
        component: "Bench000".into(),
        producer_type: "csc".into(),
        catalog: Some(catalog),
        ..Default::default()
    };
    let mut p = create(&plugin, &cfg);
    p.handle(&input(InputKind::START), 0.0).into_result().unwrap();
    let mut msg = sample_input(Sample {
        component: "Bench000".into(),
        sal_index: 0,
        topic: "event0".into(),
        kind: TopicKind::EVENT,
        stamps: stamps("Bench000"),
        fields: values.into(),
        received: 1_700_000_000.126,
        seq: 1,
    });
    let texts = sends_of(&mut p, &msg, 1.0);
    assert_eq!(texts.len(), 1, "an event is forwarded on arrival");
    let floor = parse_all(&texts);
    let bytes = texts[0].len();
    let mut now = 1.0;
    let run = Box::new(move || {
        now += 1e-4;
        msg.sample.stamps.snd_stamp += 1e-4;
        msg.sample.stamps.seq_num += 1;
        call(&mut p, &msg, now)
    });
    Case { name: "love_bench_event", run, floor, bytes }
}

fn floor_encode(values: &[serde_json::Value]) -> usize {
    values.iter().map(|v| serde_json::to_string(black_box(v)).expect("encode").len()).sum()
}

fn cases() -> Vec<Case> {
    let dir = plugin_dir();
    vec![watcher_case(&dir), telemetry_tick_case(&dir), telemetry_on_arrival_case(&dir), load_event_case(&dir)]
}

fn criterion_benches(c: &mut Criterion, cases: &mut [Case]) {
    for case in cases.iter_mut() {
        let mut g = c.benchmark_group(case.name);
        g.throughput(Throughput::Elements(1));
        g.bench_function("plugin", |b| b.iter(|| black_box((case.run)())));
        let floor = case.floor.clone();
        g.bench_function("serde_json_floor", |b| b.iter(|| black_box(floor_encode(&floor))));
        g.finish();
    }
}

/// (best 1-ms batch, mean) ns per call of `f` over about `budget`.
fn time_ns(budget: Duration, mut f: impl FnMut() -> usize) -> (f64, f64) {
    // Warm up and size a batch of about 1 ms.
    let t = Instant::now();
    let mut n = 0u64;
    while t.elapsed() < budget / 10 {
        black_box(f());
        n += 1;
    }
    let batch = ((n as f64 / (budget.as_secs_f64() / 10.0)) / 1000.0).max(1.0) as u64;
    // Best of several batches of ~1 ms, then the mean over the budget: the best is the least
    // disturbed by other load on the machine; both are printed.
    let mut best = f64::INFINITY;
    let mut total = 0u64;
    let t = Instant::now();
    while t.elapsed() < budget {
        let b = Instant::now();
        for _ in 0..batch {
            black_box(f());
        }
        let ns = b.elapsed().as_nanos() as f64 / batch as f64;
        best = best.min(ns);
        total += batch;
    }
    let mean = t.elapsed().as_nanos() as f64 / total as f64;
    (best, mean)
}

fn summary(cases: &mut [Case]) {
    let quick = std::env::var_os("LOVE_BENCH_QUICK").is_some();
    let budget = if quick { Duration::from_millis(150) } else { Duration::from_secs(3) };
    println!();
    println!("== boundary summary: per-sample path through the loaded plugin vs bare serde_json encode");
    println!("   ({:?} of loops per figure; best = fastest 1-ms batch, the least disturbed by other load;", budget);
    println!("    ratio = plugin path / serde_json::to_string floor of the same message(s); target <= 3x)");
    println!(
        "{:<22} {:>10} {:>10} {:>10} {:>10} {:>8} {:>8} {:>9}",
        "case", "plugin", "(mean)", "floor", "(mean)", "ratio", "(mean)", "out bytes"
    );
    for case in cases.iter_mut() {
        let (pb, pm) = time_ns(budget, &mut case.run);
        let floor = case.floor.clone();
        let (fb, fm) = time_ns(budget, || floor_encode(&floor));
        println!(
            "{:<22} {:>8.0}ns {:>8.0}ns {:>8.0}ns {:>8.0}ns {:>7.2}x {:>7.2}x {:>9}",
            case.name,
            pb,
            pm,
            fb,
            fm,
            pb / fb,
            pm / fm,
            case.bytes
        );
    }
    println!("load average at the end: {}", std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim());
}

fn main() {
    let mut cases = cases();
    let mut c = Criterion::default().configure_from_args();
    criterion_benches(&mut c, &mut cases);
    c.final_summary();
    // `cargo bench` passes --bench; `cargo test --benches` does not: run the summary only when
    // benchmarking.
    if std::env::args().any(|a| a == "--bench") {
        summary(&mut cases);
    }
}
