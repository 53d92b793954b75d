//! `love-bench`: end-to-end load bench of the love-host library.
//!
//! Two modes, both sending through the real manager link (`love_host::manager::start`, the
//! websocket client the binary uses) to a websocket sink on 127.0.0.1 that this process starts
//! on a thread of its own (a tokio-tungstenite server) and that timestamps every frame:
//!
//! - **load** (default): `--producers N` csc producers, loaded from the `.so` in
//!   `--plugin-dir`, each serving a synthetic component (`Bench000`…) with `--topics T` event
//!   topics of `--fields F` fields. A load generator (a `SalSource` of its own, on its own
//!   thread) publishes samples at a precise aggregate rate of `N × T × --rate` per second,
//!   round-robin over producers and topics, with `Sample.received` and `private_sndStamp` set
//!   to the creation time. Events are forwarded on arrival (CscCore's asynchronous path: one
//!   sample in, one `event` message out), so throughput is not capped by the 2-s telemetry
//!   cadence. The host runtime gets `--threads` worker threads (default 1: "one core").
//! - **summit** (`--summit`): the ~104 components of the summit (issue 10) on the embedded
//!   simulator (`SimSource`, the built-in ts_xml catalog or `--xml-dir`'s) with the plugins of
//!   `--plugin-dir` chosen by the factory as the binary does, plus MTM1M3 telemetry at
//!   `--m1m3-hz` (50 Hz) from a generator of this bench (the simulator publishes every
//!   telemetry topic at 1 Hz). Runtime: as the binary (`--threads` default: all cores).
//!
//! Figures, over a measurement window of `--duration` seconds after `--warmup` seconds:
//! messages/s arriving at the sink; latency from sample creation (`private_sndStamp`) to the
//! frame arriving at the sink, for event messages that carry a sample (list payload), and from
//! `producer_snd` to arrival for every message; CPU seconds of the process minus the
//! generator's and the sink's threads (their own CPU clocks), per 10k messages and as % of one
//! core; peak RSS (VmHWM, whole process). Prints; never asserts.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use futures_util::StreamExt;
use love_host::clock::unix_now;
use love_host::component::ComponentName;
use love_host::factory::{assign, ProducerSource};
use love_host::manager::{LinkConfig, ManagerHandle, ManagerUrl, SinkKind};
use love_host::plugin::{load_plugin, scan_dir, PluginRegistry};
use love_host::runtime::{spawn_producer, ProducerHandle, ProducerSpec, RuntimeContext, RuntimeSettings};
use love_host::sal::sim::SimSource;
use love_host::sal::{ack, CommandAck, SalCommand, SalError, SalSource, SampleTx};
use love_plugin_api::abi::{Field, InputKind, InputMsg, PrivateStamps, Sample, TopicKind, Value};
use love_plugin_api::catalog::{ComponentCatalog, FieldInfo, ScalarKind, TopicInfo};
use love_plugin_api::sdk::ProducerConfig;
use tokio_tungstenite::tungstenite::Message;

/// The summit's producer components (issue 10), ranges as written there.
const SUMMIT: &str = "ATAOS ATBuilding ATCamera ATDome ATDomeTrajectory ATHeaderService ATHexapod ATMCS \
    ATMonochromator OCPS:1 OCPS:2 OCPS:3 OCPS:101 ATOODS ATPneumatics ATPtg Scheduler:1 Scheduler:2 \
    Scheduler:3 ScriptQueue:1 ScriptQueue:2 ScriptQueue:3 ATSpectrograph ATWhiteLight ESS:1 ESS:104-113 \
    ESS:201-204 ESS:301-306 MTHexapod:1 MTHexapod:2 CCCamera CCHeaderService CCOODS CBP DREAM DIMM:1 \
    DIMM:2 DSM:1 DSM:2 EAS Electrometer:101-103 Electrometer:201 FiberSpectrograph:3 \
    FiberSpectrograph:101 FiberSpectrograph:102 GCHeaderService:1 GCHeaderService:101-103 \
    GenericCamera:1 GenericCamera:101-103 GIS HVAC LaserTracker:1 LEDProjector LinearStage:101-104 LOVE \
    MTVMS:1 MTVMS:2 MTHeaderService MTAirCompressor:1 MTAirCompressor:2 MTAOS MTCamera MTDome \
    MTDomeTrajectory MTM1M3 MTM1M3TS MTM2 MTMount MTOODS MTPtg MTRotator PMD:1 TunableLaser Watcher \
    WeatherForecast";

#[derive(Parser, Debug)]
#[command(name = "love-bench", about = "End-to-end load bench of love-host (prints figures, never asserts)")]
struct Args {
    /// Directory of the plugin `.so` files (`liblove_plugin_csc.so`, …).
    #[arg(long, default_value = "target/release")]
    plugin_dir: PathBuf,
    /// Load mode: number of producers (components).
    #[arg(long, default_value_t = 10)]
    producers: usize,
    /// Load mode: event topics per producer.
    #[arg(long, default_value_t = 10)]
    topics: usize,
    /// Load mode: samples per second per topic (aggregate = producers × topics × rate).
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// Load mode: fields per event topic (mixed double, long, boolean, string, float).
    #[arg(long, default_value_t = 10)]
    fields: usize,
    /// Measurement window in seconds (default 10; summit 60; --quick: 1 / 2).
    #[arg(long)]
    duration: Option<f64>,
    /// Seconds of warm-up before the window (default 1; summit 5; --quick: 0.3 / 0.5).
    #[arg(long)]
    warmup: Option<f64>,
    /// A short run (CI): short defaults for --duration and --warmup.
    #[arg(long)]
    quick: bool,
    /// Run the summit's component set on the simulator instead of the load generator.
    #[arg(long)]
    summit: bool,
    /// Print the summit's component set (ranges expanded), one name a line, and exit (the
    /// Kafka bench reads it).
    #[arg(long)]
    list_summit: bool,
    /// Summit mode: a ts_xml interface directory (default: the built-in catalog).
    #[arg(long)]
    xml_dir: Option<PathBuf>,
    /// Summit mode: MTM1M3 telemetry rate (Hz) added to the simulator's 1 Hz; 0 = off.
    #[arg(long, default_value_t = 50.0)]
    m1m3_hz: f64,
    /// Summit mode: simulator seed.
    #[arg(long, default_value_t = 1)]
    sim_seed: u64,
    /// Load mode: the generator wakes at most once per this many milliseconds and publishes
    /// what is due (0: at each sample's due time). Samples are stamped when published.
    #[arg(long, default_value_t = 0.0)]
    batch_ms: f64,
    /// Worker threads of the host's tokio runtime (default: 1 in load mode, all cores in summit).
    #[arg(long)]
    threads: Option<usize>,
}

// ---- process and thread resources ------------------------------------------------------------

fn process_cpu() -> f64 {
    // SAFETY: getrusage fills the struct we hand it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// CPU seconds of another thread of this process.
fn thread_cpu(thread: libc::pthread_t) -> f64 {
    let mut clock: libc::clockid_t = 0;
    // SAFETY: the thread is alive (joined only after the last call) and the out-pointers valid.
    unsafe {
        if libc::pthread_getcpuclockid(thread, &mut clock) != 0 {
            return 0.0;
        }
        let mut ts: libc::timespec = std::mem::zeroed();
        if libc::clock_gettime(clock, &mut ts) != 0 {
            return 0.0;
        }
        ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
    }
}

fn status_kib(key: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with(key))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

// ---- latency histogram -----------------------------------------------------------------------

/// Log-linear histogram of microseconds (128 sub-buckets per power of two: < 0.8 % error).
#[derive(Clone)]
struct Hist {
    counts: Vec<u64>,
    n: u64,
    max: u64,
    negative: u64,
}

impl Hist {
    fn new() -> Hist {
        Hist { counts: vec![0; 128 + 58 * 128], n: 0, max: 0, negative: 0 }
    }

    fn index(v: u64) -> usize {
        if v < 128 {
            return v as usize;
        }
        let e = 63 - v.leading_zeros() as u64; // >= 7
        let m = (v >> (e - 7)) & 127;
        (128 + (e - 7) * 128 + m) as usize
    }

    fn lower(i: usize) -> u64 {
        if i < 128 {
            return i as u64;
        }
        let e = (i as u64 - 128) / 128 + 7;
        let m = (i as u64 - 128) % 128;
        (128 + m) << (e - 7)
    }

    fn record_secs(&mut self, secs: f64) {
        if secs < 0.0 {
            // Clock steps or rounding: count as 0.
            self.negative += 1;
        }
        let us = (secs.max(0.0) * 1e6).round() as u64;
        let last = self.counts.len() - 1;
        self.counts[Self::index(us).min(last)] += 1;
        self.n += 1;
        self.max = self.max.max(us);
    }

    fn quantile(&self, q: f64) -> u64 {
        if self.n == 0 {
            return 0;
        }
        let rank = ((q * self.n as f64).ceil() as u64).clamp(1, self.n);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Self::lower(i).min(self.max);
            }
        }
        self.max
    }

    fn line(&self) -> String {
        if self.n == 0 {
            return "no samples".into();
        }
        format!(
            "p50 {} µs, p99 {} µs, p99.9 {} µs, max {} µs ({} messages)",
            self.quantile(0.50),
            self.quantile(0.99),
            self.quantile(0.999),
            self.max,
            self.n
        )
    }
}

// ---- the websocket sink ----------------------------------------------------------------------

#[derive(Default)]
struct SinkData {
    frames_total: u64,
    frames_window: u64,
    bytes_window: u64,
    connections: u64,
    event_latency: Option<Hist>,
    send_latency: Option<Hist>,
}

struct SinkShared {
    /// Unix seconds (f64 bits) of the window's start and end; frames arriving inside count.
    win_start: AtomicU64,
    win_end: AtomicU64,
    data: Mutex<SinkData>,
}

/// The number after `key` in `text` (up to `,` or `}`).
fn number_after(text: &str, at: usize) -> Option<f64> {
    let rest = &text[at..];
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    rest[..end].trim().parse().ok()
}

const SND_KEY: &str = "\"private_sndStamp\": {\"value\": ";
const PRODUCER_SND_KEY: &str = "\"producer_snd\": ";

/// A data message carrying one sample as a list payload (an event forwarded on arrival):
/// `{"category": "event", … "data": {"<stream>": [{"salIndex"|"private_sndStamp"…`.
fn sample_stamp(text: &str) -> Option<f64> {
    if !text.starts_with("{\"category\": \"event\"") {
        return None;
    }
    let at = text.find(SND_KEY)?;
    let before = &text[..at];
    // Non-indexed: `…": [{"private_sndStamp"`; indexed: `…": [{"salIndex": {…}, "private_sndStamp"`.
    let tail = before.get(before.len().saturating_sub(100)..).unwrap_or("");
    let list = before.ends_with("\": [{")
        || (before.ends_with("\"units\": \"unitless\"}, ") && tail.contains("\": [{\"salIndex\": {\"value\": "));
    if !list {
        return None;
    }
    number_after(text, at + SND_KEY.len())
}

fn on_frame(shared: &SinkShared, data: &mut SinkData, text: &str) {
    let arrival = unix_now();
    data.frames_total += 1;
    let ws = f64::from_bits(shared.win_start.load(Ordering::Relaxed));
    let we = f64::from_bits(shared.win_end.load(Ordering::Relaxed));
    if arrival < ws || arrival >= we {
        return;
    }
    data.frames_window += 1;
    data.bytes_window += text.len() as u64;
    if let Some(at) = text.rfind(PRODUCER_SND_KEY) {
        if let Some(snd) = number_after(text, at + PRODUCER_SND_KEY.len()) {
            if snd > 0.0 {
                data.send_latency.get_or_insert_with(Hist::new).record_secs(arrival - snd);
            }
        }
    }
    if let Some(created) = sample_stamp(text) {
        data.event_latency.get_or_insert_with(Hist::new).record_secs(arrival - created);
    }
}

struct Sink {
    port: u16,
    shared: Arc<SinkShared>,
    thread: std::thread::JoinHandle<()>,
    stop: Arc<tokio::sync::Notify>,
}

fn start_sink() -> anyhow::Result<Sink> {
    let shared = Arc::new(SinkShared {
        win_start: AtomicU64::new(f64::INFINITY.to_bits()),
        win_end: AtomicU64::new(f64::INFINITY.to_bits()),
        data: Mutex::new(SinkData::default()),
    });
    let stop = Arc::new(tokio::sync::Notify::new());
    let (port_tx, port_rx) = std::sync::mpsc::channel();
    let (sh, st) = (shared.clone(), stop.clone());
    let thread = std::thread::Builder::new().name("bench-sink".into()).spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("sink runtime");
        rt.block_on(async move {
            let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
                Ok(l) => l,
                Err(e) => {
                    let _ = port_tx.send(Err(e.to_string()));
                    return;
                }
            };
            let _ = port_tx.send(Ok(listener.local_addr().expect("local addr").port()));
            loop {
                tokio::select! {
                    _ = st.notified() => break,
                    accepted = listener.accept() => {
                        let Ok((tcp, _)) = accepted else { continue };
                        let _ = tcp.set_nodelay(true);
                        let shared = sh.clone();
                        tokio::spawn(async move {
                            let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else { return };
                            shared.data.lock().unwrap().connections += 1;
                            while let Some(Ok(msg)) = ws.next().await {
                                if let Message::Text(text) = msg {
                                    let mut d = shared.data.lock().unwrap();
                                    on_frame(&shared, &mut d, &text);
                                }
                            }
                        });
                    }
                }
            }
        });
    })?;
    let port = port_rx.recv().context("sink thread")?.map_err(|e| anyhow::anyhow!("sink bind: {e}"))?;
    Ok(Sink { port, shared, thread, stop })
}

// ---- the load generator (a SalSource) --------------------------------------------------------

/// A SAL source whose samples come from [`generate`]: it only records subscriptions.
#[derive(Default)]
struct LoadSource {
    subs: Mutex<HashMap<String, SampleTx>>,
}

impl SalSource for LoadSource {
    fn name(&self) -> &str {
        "love-bench load generator"
    }

    fn subscribe(&self, component: &str, _index: i64, _history: bool, tx: SampleTx) -> Result<(), SalError> {
        self.subs.lock().unwrap().insert(component.to_string(), tx);
        Ok(())
    }

    fn command(
        &self,
        _cmd: SalCommand,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = CommandAck> + Send + 'static>> {
        Box::pin(async { CommandAck { code: ack::NOACK, result: "love-bench has no commands".into() } })
    }
}

fn load_catalog(name: &str, topics: usize, fields: usize) -> ComponentCatalog {
    let kinds =
        [("double", "deg"), ("long", "unitless"), ("boolean", "unitless"), ("string", "unitless"), ("float", "m")];
    let events = (0..topics)
        .map(|t| TopicInfo {
            name: format!("event{t}"),
            fields: (0..fields)
                .map(|f| {
                    let (ty, units) = kinds[f % kinds.len()];
                    FieldInfo::new(&format!("field{f}"), ty, 1, units)
                })
                .collect(),
            rate_hz: None,
        })
        .collect();
    ComponentCatalog { name: name.to_string(), indexed: false, events, ..Default::default() }
}

fn template(component: &str, topic: &TopicInfo, kind: TopicKind) -> Sample {
    let fields: Vec<Field> = topic
        .fields
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let n = f.count.max(1) as usize;
            let value = match (f.scalar_kind(), f.is_array()) {
                (ScalarKind::Bool, false) => Value::Bool(i % 2 == 0),
                (ScalarKind::Bool, true) => Value::BoolArray((0..n).map(|k| k % 3 == 0).collect()),
                (ScalarKind::Int, false) => Value::Int(1000 + i as i64),
                (ScalarKind::Int, true) => Value::IntArray((0..n as i64).collect()),
                (ScalarKind::Float, false) => Value::Float((12.345678 * (i + 1) as f64) as f32 as f64),
                (ScalarKind::Float, true) => {
                    Value::FloatArray((0..n).map(|k| (k as f64 * 0.731 - 40.0) as f32 as f64).collect())
                }
                _ => Value::Str(format!("value of {}", f.name).into()),
            };
            Field { name: f.name.as_str().into(), value }
        })
        .collect();
    Sample {
        component: component.into(),
        sal_index: 0,
        topic: topic.name.as_str().into(),
        kind,
        stamps: PrivateStamps {
            rev_code: "be1c4a00".into(),
            identity: component.into(),
            origin: std::process::id() as i64,
            ..Default::default()
        },
        fields: fields.into(),
        received: 0.0,
        seq: 0,
    }
}

/// A fresh sample from a template, stamped now (creation time = `received` = `private_sndStamp`).
fn stamped(t: &Sample, seq: u64) -> Arc<InputMsg> {
    let mut sample = t.clone();
    let now = unix_now();
    sample.stamps.snd_stamp = now;
    sample.stamps.rcv_stamp = now;
    sample.stamps.kafka_stamp = now;
    sample.stamps.efd_stamp = now - 37.0;
    sample.stamps.seq_num = seq as i64;
    sample.received = now;
    sample.seq = seq;
    Arc::new(InputMsg { kind: InputKind::SAMPLE, sample, ..Default::default() })
}

#[derive(Default)]
struct GenStats {
    sent: AtomicU64,
    /// Largest delay behind the schedule, in microseconds (the host pushing back).
    max_behind_us: AtomicU64,
}

/// Publish `rate` samples/s in total, round-robin over producers then topics, until `stop`.
fn generate(targets: Vec<(SampleTx, Vec<Sample>)>, rate: f64, batch: f64, stop: Arc<AtomicBool>, stats: Arc<GenStats>) {
    let n = targets.len() as u64;
    let t0 = Instant::now();
    let mut k: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        let elapsed = t0.elapsed().as_secs_f64();
        let due = (elapsed * rate) as u64;
        if k >= due {
            let next = (k + 1) as f64 / rate;
            std::thread::sleep(Duration::from_secs_f64((next - elapsed).max(batch)));
            continue;
        }
        let behind = ((elapsed - k as f64 / rate) * 1e6) as u64;
        stats.max_behind_us.fetch_max(behind, Ordering::Relaxed);
        let end = due.min(k + 1024);
        while k < end {
            let (tx, topics) = &targets[(k % n) as usize];
            let t = &topics[((k / n) % topics.len() as u64) as usize];
            if tx.blocking_send(stamped(t, k + 1)).is_err() {
                return;
            }
            k += 1;
        }
        stats.sent.store(k, Ordering::Relaxed);
    }
}

// ---- summit source: the simulator, plus MTM1M3 telemetry at its real rate ---------------------

struct SummitSource {
    sim: SimSource,
    fast: Vec<(String, f64, ComponentCatalog)>,
    started: Mutex<Vec<String>>,
    stop: love_host::shutdown::Shutdown,
}

impl SalSource for SummitSource {
    fn name(&self) -> &str {
        "sim + fast telemetry"
    }

    fn subscribe(&self, component: &str, index: i64, history: bool, tx: SampleTx) -> Result<(), SalError> {
        self.sim.subscribe(component, index, history, tx.clone())?;
        if let Some((name, hz, cat)) = self.fast.iter().find(|(n, _, _)| n == component) {
            let mut started = self.started.lock().unwrap();
            if !started.contains(name) {
                started.push(name.clone());
                let templates: Vec<Sample> =
                    cat.telemetry.iter().map(|t| template(name, t, TopicKind::TELEMETRY)).collect();
                let period = Duration::from_secs_f64(1.0 / hz);
                let mut stop = self.stop.clone();
                tokio::spawn(async move {
                    let mut tick = tokio::time::interval(period);
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    let mut seq = 0;
                    loop {
                        tokio::select! {
                            _ = stop.wait() => break,
                            _ = tick.tick() => {
                                for t in &templates {
                                    seq += 1;
                                    if tx.try_send(stamped(t, seq)).is_err() && tx.is_closed() {
                                        return;
                                    }
                                }
                            }
                        }
                    }
                });
            }
        }
        Ok(())
    }

    fn command(
        &self,
        cmd: SalCommand,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = CommandAck> + Send + 'static>> {
        self.sim.command(cmd)
    }
}

/// The summit's components with `Name:a-b` ranges expanded.
fn summit_components() -> anyhow::Result<Vec<ComponentName>> {
    let mut names = Vec::new();
    for item in SUMMIT.split_whitespace() {
        match item.split_once(':').and_then(|(n, r)| r.split_once('-').map(|(a, b)| (n, a, b))) {
            Some((n, a, b)) => {
                let (a, b): (i64, i64) = (a.parse()?, b.parse()?);
                for i in a..=b {
                    names.push(format!("{n}:{i}"));
                }
            }
            None => names.push(item.to_string()),
        }
    }
    Ok(ComponentName::parse_list(&names)?)
}

// ---- common --------------------------------------------------------------------------------

fn producer_settings() -> BTreeMap<String, String> {
    // As the binary's defaults (app.rs).
    [("telemetry_period", "2"), ("telemetry_stale_after", "30"), ("heartbeat_timeout", "2.0")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn link_config(port: u16) -> anyhow::Result<LinkConfig> {
    Ok(LinkConfig {
        url: Some(ManagerUrl::parse(&format!("ws://127.0.0.1:{port}/manager/ws/subscription"), "bench")?),
        sink: SinkKind::Websocket,
        ..LinkConfig::default()
    })
}

async fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) -> anyhow::Result<()> {
    let t = Instant::now();
    while !cond() {
        if t.elapsed() > limit {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

/// Resource readings at one instant.
#[derive(Clone, Copy)]
struct Reading {
    at: Instant,
    unix: f64,
    process: f64,
    generator: f64,
    sink: f64,
}

fn reading(generator: Option<libc::pthread_t>, sink: libc::pthread_t) -> Reading {
    Reading {
        at: Instant::now(),
        unix: unix_now(),
        process: process_cpu(),
        generator: generator.map(thread_cpu).unwrap_or(0.0),
        sink: thread_cpu(sink),
    }
}

struct Window {
    start: Reading,
    end: Reading,
}

impl Window {
    fn secs(&self) -> f64 {
        (self.end.at - self.start.at).as_secs_f64()
    }
    fn host_cpu(&self) -> f64 {
        (self.end.process - self.start.process) - self.generator_cpu() - self.sink_cpu()
    }
    fn generator_cpu(&self) -> f64 {
        self.end.generator - self.start.generator
    }
    fn sink_cpu(&self) -> f64 {
        self.end.sink - self.start.sink
    }
}

async fn measure(sink: &Sink, generator: Option<libc::pthread_t>, warmup: f64, duration: f64) -> Window {
    use std::os::unix::thread::JoinHandleExt;
    let sink_thread = sink.thread.as_pthread_t();
    tokio::time::sleep(Duration::from_secs_f64(warmup)).await;
    let start = reading(generator, sink_thread);
    sink.shared.win_start.store(start.unix.to_bits(), Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs_f64(duration)).await;
    let end = reading(generator, sink_thread);
    sink.shared.win_end.store(end.unix.to_bits(), Ordering::Relaxed);
    Window { start, end }
}

fn report(sink: &Sink, window: &Window, link: &ManagerHandle, producers: &[ProducerHandle]) -> u64 {
    let d = sink.shared.data.lock().unwrap();
    let secs = window.secs();
    let frames = d.frames_window;
    let host = window.host_cpu();
    let samples: u64 = producers.iter().map(|p| p.status.samples.get()).sum();
    let stats = link.stats();
    println!("window            {secs:.2} s after warm-up");
    println!(
        "sustained         {:.0} messages/s at the sink ({} frames, {:.1} MB/s)",
        frames as f64 / secs,
        frames,
        d.bytes_window as f64 / secs / 1e6
    );
    println!(
        "latency           sample creation -> frame at sink (event messages): {}",
        d.event_latency.as_ref().map(Hist::line).unwrap_or_else(|| "no event messages".into())
    );
    println!(
        "                  producer_snd -> frame at sink (all messages): {}",
        d.send_latency.as_ref().map(Hist::line).unwrap_or_else(|| "none".into())
    );
    println!(
        "host CPU          {:.3} s = {:.1} % of one core; {:.4} CPU s per 10k messages (process {:.3} s - generator thread {:.3} s - sink thread {:.3} s)",
        host,
        100.0 * host / secs,
        if frames > 0 { host / (frames as f64 / 10_000.0) } else { f64::NAN },
        window.end.process - window.start.process,
        window.generator_cpu(),
        window.sink_cpu(),
    );
    println!(
        "peak RSS          {:.1} MiB (VmHWM, whole process incl. generator and sink); RSS now {:.1} MiB",
        status_kib("VmHWM:").unwrap_or(0) as f64 / 1024.0,
        status_kib("VmRSS:").unwrap_or(0) as f64 / 1024.0
    );
    println!(
        "link              sent {} (event {}, telemetry {}, other {}), coalesced {}, dropped {}, queue high water {}, connections {}, disconnections {}",
        stats.sent(),
        stats.sent_event,
        stats.sent_telemetry,
        stats.sent_other,
        stats.coalesced,
        stats.dropped_overflow + stats.dropped_disconnected,
        stats.queue_high_water,
        stats.connections,
        stats.disconnections
    );
    println!("producers         {} samples handled in total (whole run)", samples);
    println!(
        "load average      {} (nproc {})",
        loadavg(),
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
    );
    frames
}

// ---- the two modes ---------------------------------------------------------------------------

async fn run_load(args: &Args, sink: &Sink) -> anyhow::Result<()> {
    let duration = args.duration.unwrap_or(if args.quick { 1.0 } else { 10.0 });
    let warmup = args.warmup.unwrap_or(if args.quick { 0.3 } else { 1.0 });
    let so = args.plugin_dir.join("liblove_plugin_csc.so");
    let plugin = Arc::new(load_plugin(&so).with_context(|| format!("loading {}", so.display()))?);
    let rate = args.producers as f64 * args.topics as f64 * args.rate;
    if args.producers == 0 || args.topics == 0 || !(rate > 0.0) {
        bail!("--producers, --topics and --rate must be positive");
    }
    println!(
        "love-bench load: {} producers x {} event topics x {} Hz = {:.0} samples/s offered, {} fields/topic, generator batch {} ms; csc plugin {} from {}; host runtime {} worker thread(s); events forwarded on arrival",
        args.producers, args.topics, args.rate, rate, args.fields, args.batch_ms, plugin.descriptor.version, so.display(), args.threads.unwrap_or(1)
    );
    let (trigger, shutdown) = love_host::shutdown::channel();
    let (link, link_task) = love_host::manager::start(link_config(sink.port)?, shutdown.clone());
    let source = Arc::new(LoadSource::default());
    let catalogs: Vec<ComponentCatalog> =
        (0..args.producers).map(|i| load_catalog(&format!("Bench{i:03}"), args.topics, args.fields)).collect();
    let by_name: Arc<HashMap<String, ComponentCatalog>> =
        Arc::new(catalogs.iter().map(|c| (c.name.clone(), c.clone())).collect());
    let ctx = RuntimeContext {
        outbox: Arc::new(link.clone()),
        sal: source.clone(),
        catalog: Arc::new(move |n: &str| by_name.get(n).cloned()),
        settings: RuntimeSettings::default(),
        shutdown: shutdown.clone(),
    };
    let mut producers = Vec::new();
    for cat in &catalogs {
        let spec = ProducerSpec {
            component: ComponentName { name: cat.name.clone(), index: 0 },
            producer_type: "csc".into(),
            label: format!("csc {}", plugin.descriptor.version),
            create: ProducerSource::Plugin(plugin.clone()).create_fn(),
            config: ProducerConfig {
                component: cat.name.clone(),
                index: 0,
                producer_type: "csc".into(),
                settings: producer_settings(),
                catalog: Some(cat.clone()),
                ..Default::default()
            },
            origin: None,
            subscribe_own: true,
        };
        producers.push(spawn_producer(spec, ctx.clone()).map_err(|e| anyhow::anyhow!(e))?);
    }
    wait_until("the link to the sink", Duration::from_secs(10), || link.is_connected()).await?;
    let n = args.producers;
    wait_until("the producers' subscriptions", Duration::from_secs(10), || source.subs.lock().unwrap().len() == n)
        .await?;
    let targets: Vec<(SampleTx, Vec<Sample>)> = {
        let subs = source.subs.lock().unwrap();
        catalogs
            .iter()
            .map(|c| (subs[&c.name].clone(), c.events.iter().map(|t| template(&c.name, t, TopicKind::EVENT)).collect()))
            .collect()
    };
    let stop = Arc::new(AtomicBool::new(false));
    let batch = args.batch_ms.max(0.0) / 1000.0;
    let gstats = Arc::new(GenStats::default());
    let generator = {
        let (stop, gstats) = (stop.clone(), gstats.clone());
        std::thread::Builder::new()
            .name("bench-generator".into())
            .spawn(move || generate(targets, rate, batch, stop, gstats))?
    };
    let window = {
        use std::os::unix::thread::JoinHandleExt;
        measure(sink, Some(generator.as_pthread_t()), warmup, duration).await
    };
    stop.store(true, Ordering::Relaxed);
    let gen_cpu_total = window.generator_cpu();
    tokio::task::spawn_blocking(move || generator.join()).await.ok();
    let sent = gstats.sent.load(Ordering::Relaxed);
    // Let what is in flight arrive (not counted: the window is closed), then stop.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let frames = report(sink, &window, &link, &producers);
    println!(
        "generator         {} samples published in total; offered {:.0}/s, at most {:.1} ms behind schedule; its thread used {:.3} CPU s in the window",
        sent,
        rate,
        gstats.max_behind_us.load(Ordering::Relaxed) as f64 / 1000.0,
        gen_cpu_total
    );
    if (frames as f64) < 0.95 * rate * window.secs() {
        println!("note              the sink received fewer messages than offered: the host (or this machine) is saturated at this rate");
    }
    trigger.trigger();
    let _ = tokio::time::timeout(Duration::from_secs(5), link_task).await;
    Ok(())
}

async fn run_summit(args: &Args, sink: &Sink) -> anyhow::Result<()> {
    let duration = args.duration.unwrap_or(if args.quick { 2.0 } else { 60.0 });
    let warmup = args.warmup.unwrap_or(if args.quick { 0.5 } else { 5.0 });
    let components = summit_components()?;
    let t = Instant::now();
    let loaded = love_host::topics::load(args.xml_dir.as_deref())?;
    let (catalog, errors) = (Arc::new(loaded.catalog), loaded.problems);
    let report_dir =
        scan_dir(&args.plugin_dir).with_context(|| format!("plugin directory {}", args.plugin_dir.display()))?;
    for e in &report_dir.refused {
        eprintln!("love-bench: plugin refused: {e}");
    }
    let registry = PluginRegistry::new(report_dir.loaded);
    let overrides = BTreeMap::new();
    let mut assignments = Vec::new();
    for c in &components {
        assignments.push(assign(c, &overrides, &registry, catalog.component(&c.name))?);
    }
    let mut by_type: BTreeMap<String, usize> = BTreeMap::new();
    for a in &assignments {
        *by_type.entry(a.producer_type.clone()).or_default() += 1;
    }
    let unknown: Vec<String> =
        components.iter().filter(|c| catalog.component(&c.name).is_none()).map(|c| c.to_string()).collect();
    println!(
        "love-bench summit: {} components ({}) on the simulator, topic catalog {} ({} components, {} load problems, {:.1} s); MTM1M3 telemetry +{} Hz; host runtime {} worker thread(s)",
        components.len(),
        by_type.iter().map(|(t, n)| format!("{n} {t}")).collect::<Vec<_>>().join(", "),
        loaded.source,
        catalog.len(),
        errors.len(),
        t.elapsed().as_secs_f64(),
        args.m1m3_hz,
        args.threads.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)),
    );
    if !unknown.is_empty() {
        println!("not in the catalog (served by base): {}", unknown.join(" "));
    }
    let (trigger, shutdown) = love_host::shutdown::channel();
    let (link, link_task) = love_host::manager::start(link_config(sink.port)?, shutdown.clone());
    let sim = SimSource::new(catalog.clone(), Some(args.sim_seed), 1.0, shutdown.clone());
    let fast = if args.m1m3_hz > 0.0 {
        catalog.component("MTM1M3").map(|c| vec![("MTM1M3".to_string(), args.m1m3_hz, c.clone())]).unwrap_or_default()
    } else {
        Vec::new()
    };
    if let Some((_, _, c)) = fast.first() {
        let arrays: usize = c.telemetry.iter().flat_map(|t| &t.fields).filter(|f| f.is_array()).count();
        let values: u64 = c.telemetry.iter().flat_map(|t| &t.fields).map(|f| f.count.max(1) as u64).sum();
        println!(
            "MTM1M3: {} telemetry topics ({} array fields, {} values per round) at {} Hz from love-bench, plus 1 Hz from the simulator",
            c.telemetry.len(),
            arrays,
            values,
            args.m1m3_hz
        );
    }
    let source = Arc::new(SummitSource { sim, fast, started: Mutex::new(Vec::new()), stop: shutdown.clone() });
    let cat2 = catalog.clone();
    let ctx = RuntimeContext {
        outbox: Arc::new(link.clone()),
        sal: source.clone(),
        catalog: Arc::new(move |n: &str| cat2.component(n).cloned()),
        settings: RuntimeSettings::default(),
        shutdown: shutdown.clone(),
    };
    let mut producers = Vec::new();
    for a in &assignments {
        let config = ProducerConfig {
            component: a.component.name.clone(),
            index: a.component.index,
            producer_type: a.producer_type.clone(),
            settings: producer_settings(),
            catalog: catalog.component(&a.component.name).cloned(),
            ..Default::default()
        };
        let spec = ProducerSpec {
            component: a.component.clone(),
            producer_type: a.producer_type.clone(),
            label: a.source.label(),
            create: a.source.create_fn(),
            origin: None,
            subscribe_own: config.catalog.is_some() && !matches!(a.source, ProducerSource::Base),
            config,
        };
        producers.push(spawn_producer(spec, ctx.clone()).map_err(|e| anyhow::anyhow!(e))?);
    }
    wait_until("the link to the sink", Duration::from_secs(10), || link.is_connected()).await?;
    let window = measure(sink, None, warmup, duration).await;
    let samples_after: u64 = producers.iter().map(|p| p.status.samples.get()).sum();
    report(sink, &window, &link, &producers);
    println!(
        "note              host CPU includes the simulator and the MTM1M3 generator (stand-ins for the Kafka reader); samples handled by producers ~{:.0}/s over the run",
        samples_after as f64 / (window.end.at - t).as_secs_f64().max(1e-9)
    );
    trigger.trigger();
    let _ = tokio::time::timeout(Duration::from_secs(5), link_task).await;
    Ok(())
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    if args.list_summit {
        return match summit_components() {
            Ok(names) => {
                for n in names {
                    println!("{n}");
                }
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("love-bench: {e:#}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    let filter = tracing_subscriber::EnvFilter::try_from_env("LOVE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let colour = love_host::logging::log_colour(
        love_host::cli::LogFormat::Text,
        std::io::IsTerminal::is_terminal(&std::io::stderr()),
        std::env::var_os("NO_COLOR"),
    );
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(colour).try_init();
    // As the binary runs: the figures are the binary's.
    let memory = love_host::memory::apply_allocator_defaults();
    println!("allocators        {memory}");
    let result = (|| -> anyhow::Result<()> {
        let sink = start_sink()?;
        let threads = args.threads.unwrap_or(if args.summit {
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
        } else {
            1
        });
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .enable_all()
            .thread_name("love-host")
            .build()?;
        let r = rt.block_on(async {
            if args.summit {
                run_summit(&args, &sink).await
            } else {
                run_load(&args, &sink).await
            }
        });
        sink.stop.notify_one();
        drop(rt);
        r
    })();
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("love-bench: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
