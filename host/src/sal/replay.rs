//! Recording and replaying SAL samples as JSON lines.
//!
//! A recording (`--record FILE`) has one line per distinct sample delivered by any source:
//! `{"t": <seconds since the recording started>, "sample": {...}}`, where the sample keeps its
//! typed values (`{"Float": 0.5}`, `{"IntArray": [1, 2]}`…) and field order, so a replay hands
//! producers exactly the samples they saw: the same topics, fields, values and private stamps.
//! Floats that JSON cannot hold are written as the strings "NaN", "Infinity" and "-Infinity".
//! Only `received` and `seq` are new on replay (they describe this run).
//!
//! [`ReplaySource`] reads the whole file when opened (a bad line is reported with its number:
//! an error in strict mode, else skipped with a warning) and starts playing `start_delay`
//! seconds after the first subscription, so that every producer has subscribed by then. Commands
//! are not executed: they are acknowledged COMPLETE, since the recording already holds whatever
//! events the original command caused.

use std::collections::{HashSet, VecDeque};
use std::future::Future;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use love_plugin_api::abi::{Field, InputMsg, PrivateStamps, Sample, TopicKind, Value};
use serde::{de, Deserialize, Deserializer, Serialize, Serializer};
use tokio::sync::{mpsc, watch};

use super::bus::Bus;
use super::{ack, next_seq, sample_msg, CommandAck, SalCommand, SalError, SalSource, SampleTx};
use crate::clock::unix_now;
use crate::locks::lock;
use crate::shutdown::Shutdown;

/// Problems with a recording file. Each names the file (and line).
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The file could not be opened, read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A line is not a recorded sample.
    #[error("{path}:{line}: {message}")]
    BadLine {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
}

/// Largest time in seconds accepted from a recording or used for a wait (about 31 years): far
/// longer than any recording, and far below where `Duration` and `Instant` arithmetic panics.
const MAX_SECONDS: f64 = 1e9;

/// A float as recorded. JSON has no NaN or infinities (serde_json writes them as `null`, which
/// then fails to decode) but real SAL data holds them, so they are written as the strings "NaN",
/// "Infinity" and "-Infinity"; finite values stay JSON numbers, as in older recordings.
#[derive(Debug, Clone, Copy, PartialEq)]
struct RecFloat(f64);

impl Serialize for RecFloat {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            f if f.is_finite() => s.serialize_f64(f),
            f if f.is_nan() => s.serialize_str("NaN"),
            f if f > 0.0 => s.serialize_str("Infinity"),
            _ => s.serialize_str("-Infinity"),
        }
    }
}

impl<'de> Deserialize<'de> for RecFloat {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = RecFloat;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a number, \"NaN\", \"Infinity\" or \"-Infinity\"")
            }
            fn visit_f64<E>(self, v: f64) -> Result<RecFloat, E> {
                Ok(RecFloat(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<RecFloat, E> {
                Ok(RecFloat(v as f64))
            }
            fn visit_u64<E>(self, v: u64) -> Result<RecFloat, E> {
                Ok(RecFloat(v as f64))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RecFloat, E> {
                match v {
                    "NaN" => Ok(RecFloat(f64::NAN)),
                    "Infinity" => Ok(RecFloat(f64::INFINITY)),
                    "-Infinity" => Ok(RecFloat(f64::NEG_INFINITY)),
                    _ => Err(E::invalid_value(de::Unexpected::Str(v), &self)),
                }
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// A typed value as recorded (externally tagged, so the type survives the round trip).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum RecValue {
    Bool(bool),
    Int(i64),
    Float(RecFloat),
    Str(String),
    BoolArray(Vec<bool>),
    IntArray(Vec<i64>),
    FloatArray(Vec<RecFloat>),
    Json(String),
}

impl From<&Value> for RecValue {
    fn from(v: &Value) -> Self {
        match v {
            Value::Bool(b) => RecValue::Bool(*b),
            Value::Int(i) => RecValue::Int(*i),
            Value::Float(f) => RecValue::Float(RecFloat(*f)),
            Value::Str(s) => RecValue::Str(s.to_string()),
            Value::BoolArray(a) => RecValue::BoolArray(a.to_vec()),
            Value::IntArray(a) => RecValue::IntArray(a.to_vec()),
            Value::FloatArray(a) => RecValue::FloatArray(a.iter().copied().map(RecFloat).collect()),
            Value::Json(s) => RecValue::Json(s.to_string()),
        }
    }
}

impl From<RecValue> for Value {
    fn from(v: RecValue) -> Self {
        match v {
            RecValue::Bool(b) => Value::Bool(b),
            RecValue::Int(i) => Value::Int(i),
            RecValue::Float(f) => Value::Float(f.0),
            RecValue::Str(s) => Value::Str(s.into()),
            RecValue::BoolArray(a) => Value::BoolArray(a.into()),
            RecValue::IntArray(a) => Value::IntArray(a.into()),
            RecValue::FloatArray(a) => Value::FloatArray(a.into_iter().map(|f| f.0).collect::<Vec<_>>().into()),
            // Checked as it enters: a malformed or too deep value is carried as a string.
            RecValue::Json(s) => Value::json_checked(s),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct RecStamps {
    snd_stamp: RecFloat,
    rcv_stamp: RecFloat,
    efd_stamp: RecFloat,
    kafka_stamp: RecFloat,
    seq_num: i64,
    rev_code: String,
    identity: String,
    origin: i64,
}

/// A recorded sample. Fields are a JSON object in topic order (serde_json keeps insertion order
/// in this workspace: feature `preserve_order`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct RecSample {
    component: String,
    sal_index: i64,
    topic: String,
    kind: String,
    stamps: RecStamps,
    fields: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Serialize, Deserialize)]
struct RecLine {
    t: f64,
    sample: RecSample,
}

fn kind_name(k: TopicKind) -> String {
    match k {
        TopicKind::EVENT => "event".into(),
        TopicKind::TELEMETRY => "telemetry".into(),
        TopicKind::COMMAND => "command".into(),
        TopicKind::ACK => "ack".into(),
        TopicKind::NONE => "none".into(),
        TopicKind(n) => n.to_string(),
    }
}

fn kind_of(s: &str) -> Result<TopicKind, String> {
    Ok(match s {
        "event" => TopicKind::EVENT,
        "telemetry" => TopicKind::TELEMETRY,
        "command" => TopicKind::COMMAND,
        "ack" => TopicKind::ACK,
        "none" => TopicKind::NONE,
        n => TopicKind(n.parse().map_err(|_| format!("unknown topic kind {n:?}"))?),
    })
}

/// One recording line (without the newline) for a sample seen `t` seconds into the recording.
pub fn encode_line(t: f64, s: &Sample) -> String {
    let fields = s
        .fields
        .iter()
        .map(|f| {
            (f.name.to_string(), serde_json::to_value(RecValue::from(&f.value)).unwrap_or(serde_json::Value::Null))
        })
        .collect();
    let line = RecLine {
        t,
        sample: RecSample {
            component: s.component.to_string(),
            sal_index: s.sal_index,
            topic: s.topic.to_string(),
            kind: kind_name(s.kind),
            stamps: RecStamps {
                snd_stamp: RecFloat(s.stamps.snd_stamp),
                rcv_stamp: RecFloat(s.stamps.rcv_stamp),
                efd_stamp: RecFloat(s.stamps.efd_stamp),
                kafka_stamp: RecFloat(s.stamps.kafka_stamp),
                seq_num: s.stamps.seq_num,
                rev_code: s.stamps.rev_code.to_string(),
                identity: s.stamps.identity.to_string(),
                origin: s.stamps.origin,
            },
            fields,
        },
    };
    serde_json::to_string(&line).expect("a recorded sample serializes")
}

/// Parse one recording line into (t, sample); `received` and `seq` are left 0. `t` must be within
/// ±[`MAX_SECONDS`], so that playback can schedule it.
pub fn decode_line(text: &str) -> Result<(f64, Sample), String> {
    let line: RecLine = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let r = line.sample;
    let mut fields = Vec::with_capacity(r.fields.len());
    for (name, v) in r.fields {
        let v: RecValue = serde_json::from_value(v).map_err(|e| format!("field {name}: {e}"))?;
        fields.push(Field { name: name.into(), value: v.into() });
    }
    if !line.t.is_finite() || line.t.abs() > MAX_SECONDS {
        return Err(format!("t: {} is out of range (at most {MAX_SECONDS:e} seconds)", line.t));
    }
    Ok((
        line.t,
        Sample {
            component: r.component.into(),
            sal_index: r.sal_index,
            topic: r.topic.into(),
            kind: kind_of(&r.kind)?,
            stamps: PrivateStamps {
                snd_stamp: r.stamps.snd_stamp.0,
                rcv_stamp: r.stamps.rcv_stamp.0,
                efd_stamp: r.stamps.efd_stamp.0,
                kafka_stamp: r.stamps.kafka_stamp.0,
                seq_num: r.stamps.seq_num,
                rev_code: r.stamps.rev_code.into(),
                identity: r.stamps.identity.into(),
                origin: r.stamps.origin,
            },
            fields: fields.into(),
            received: 0.0,
            seq: 0,
        },
    ))
}

/// How many recent sample sequence numbers the recorder remembers to write each sample once
/// (a sample reaches several subscribers, and late joiners get history again).
const DEDUP_WINDOW: usize = 100_000;

/// Writes samples to a recording file, each distinct sample once, from a writer thread (file
/// I/O never blocks the runtime).
pub struct Recorder {
    path: PathBuf,
    tx: Mutex<Option<std::sync::mpsc::Sender<String>>>,
    seen: Mutex<(HashSet<u64>, VecDeque<u64>)>,
    start: tokio::time::Instant,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder").field("path", &self.path).finish()
    }
}

impl Recorder {
    /// Create (truncate) the recording file.
    pub fn create(path: &Path) -> Result<Recorder, ReplayError> {
        let file =
            std::fs::File::create(path).map_err(|source| ReplayError::Io { path: path.to_path_buf(), source })?;
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let p = path.to_path_buf();
        let writer = std::thread::Builder::new()
            .name("sal-recorder".into())
            .spawn(move || {
                let mut out = std::io::BufWriter::new(file);
                let mut failed = false;
                while let Ok(line) = rx.recv() {
                    let mut res = writeln!(out, "{line}");
                    // Flush whenever the queue is drained, so the file is current.
                    while let (true, Ok(more)) = (res.is_ok(), rx.try_recv()) {
                        res = writeln!(out, "{more}");
                    }
                    if let Err(e) = res.and_then(|_| out.flush()) {
                        if !failed {
                            tracing::error!("recording {}: {e}", p.display());
                            failed = true;
                        }
                    }
                }
                let _ = out.flush();
            })
            .map_err(|source| ReplayError::Io { path: path.to_path_buf(), source })?;
        Ok(Recorder {
            path: path.to_path_buf(),
            tx: Mutex::new(Some(tx)),
            seen: Mutex::new((HashSet::new(), VecDeque::new())),
            start: tokio::time::Instant::now(),
            writer: Mutex::new(Some(writer)),
        })
    }

    /// The recording file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Record a sample unless it was recorded already (same `seq`).
    pub fn record(&self, msg: &InputMsg) {
        {
            let mut seen = lock(&self.seen);
            let (set, order) = &mut *seen;
            if !set.insert(msg.sample.seq) {
                return;
            }
            order.push_back(msg.sample.seq);
            if order.len() > DEDUP_WINDOW {
                if let Some(old) = order.pop_front() {
                    set.remove(&old);
                }
            }
        }
        let line = encode_line(self.start.elapsed().as_secs_f64(), &msg.sample);
        if let Some(tx) = lock(&self.tx).as_ref() {
            let _ = tx.send(line);
        }
    }

    /// Write out everything recorded so far and close the file; later samples are ignored.
    pub fn finish(&self) {
        lock(&self.tx).take();
        if let Some(w) = lock(&self.writer).take() {
            let _ = w.join();
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Wraps any source and records every sample it delivers.
pub struct RecordingSource<S> {
    inner: S,
    recorder: Arc<Recorder>,
}

impl<S> std::fmt::Debug for RecordingSource<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordingSource").field("recorder", &self.recorder).finish()
    }
}

impl<S: SalSource> RecordingSource<S> {
    /// Record what `inner` delivers into `recorder`.
    pub fn new(inner: S, recorder: Arc<Recorder>) -> Self {
        RecordingSource { inner, recorder }
    }

    /// The recorder (call [`Recorder::finish`] at shutdown to flush and close the file).
    pub fn recorder(&self) -> &Arc<Recorder> {
        &self.recorder
    }

    /// The wrapped source.
    pub fn inner(&self) -> &S {
        &self.inner
    }
}

impl<S: SalSource> SalSource for RecordingSource<S> {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn subscribe(&self, component: &str, index: i64, history: bool, tx: SampleTx) -> Result<(), SalError> {
        let handle = tokio::runtime::Handle::try_current()
            .map_err(|_| SalError::Other(format!("recording {component}:{index}: no tokio runtime")))?;
        let (tap, mut rx) = mpsc::channel::<Arc<InputMsg>>(1024);
        self.inner.subscribe(component, index, history, tap)?;
        let recorder = self.recorder.clone();
        handle.spawn(async move {
            while let Some(m) = rx.recv().await {
                recorder.record(&m);
                if tx.send(m).await.is_err() {
                    break;
                }
            }
        });
        Ok(())
    }

    fn command(&self, cmd: SalCommand) -> Pin<Box<dyn Future<Output = CommandAck> + Send + 'static>> {
        self.inner.command(cmd)
    }

    fn flush_telemetry(&self, component: &str, index: i64) -> Option<u64> {
        self.inner.flush_telemetry(component, index)
    }

    fn is_ready(&self) -> bool {
        self.inner.is_ready()
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        self.inner.counters()
    }
}

/// How to replay.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayOptions {
    /// Speed factor: 1 = recorded speed, 2 = twice as fast, 0 = as fast as possible.
    pub speed: f64,
    /// Stop at the first bad line (an error from [`ReplaySource::open`]) instead of skipping it.
    pub strict: bool,
    /// Seconds between the first subscription and the first sample.
    pub start_delay: f64,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        ReplayOptions { speed: 1.0, strict: false, start_delay: 1.0 }
    }
}

struct ReplayInner {
    path: PathBuf,
    opts: ReplayOptions,
    bus: Bus,
    records: Mutex<Option<Vec<(f64, Sample)>>>,
    skipped: Vec<ReplayError>,
    shutdown: Shutdown,
    /// true once every sample has been published (or the replay was stopped).
    done: watch::Sender<bool>,
}

/// Replays a recording to subscribers whose component and index match.
#[derive(Clone)]
pub struct ReplaySource {
    inner: Arc<ReplayInner>,
}

impl std::fmt::Debug for ReplaySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplaySource").field("path", &self.inner.path).field("opts", &self.inner.opts).finish()
    }
}

impl ReplaySource {
    /// Read a recording. In strict mode the first bad line is an error; otherwise bad lines are
    /// logged, skipped and listed in [`Self::skipped`].
    pub fn open(path: &Path, opts: ReplayOptions, shutdown: Shutdown) -> Result<ReplaySource, ReplayError> {
        let io = |source| ReplayError::Io { path: path.to_path_buf(), source };
        let file = std::fs::File::open(path).map_err(io)?;
        let mut records = Vec::new();
        let mut skipped = Vec::new();
        // Lines are read as bytes so that one that is not UTF-8 is a bad line like any other.
        for (i, line) in std::io::BufReader::new(file).split(b'\n').enumerate() {
            let decoded = match String::from_utf8(line.map_err(io)?) {
                Ok(text) if text.trim().is_empty() => continue,
                Ok(text) => decode_line(&text),
                Err(e) => Err(format!("not UTF-8: {}", e.utf8_error())),
            };
            match decoded {
                Ok(r) => records.push(r),
                Err(message) => {
                    let err = ReplayError::BadLine { path: path.to_path_buf(), line: i + 1, message };
                    if opts.strict {
                        return Err(err);
                    }
                    tracing::warn!("replay: skipping {err}");
                    skipped.push(err);
                }
            }
        }
        let (done, _) = watch::channel(false);
        Ok(ReplaySource {
            inner: Arc::new(ReplayInner {
                path: path.to_path_buf(),
                opts,
                bus: Bus::new(),
                records: Mutex::new(Some(records)),
                skipped,
                shutdown,
                done,
            }),
        })
    }

    /// The bad lines that were skipped.
    pub fn skipped(&self) -> &[ReplayError] {
        &self.inner.skipped
    }

    /// Number of samples still to be played (0 once playing has started).
    pub fn pending(&self) -> usize {
        lock(&self.inner.records).as_ref().map(|r| r.len()).unwrap_or(0)
    }

    /// Wait until every sample has been published (or the replay stopped).
    pub async fn finished(&self) {
        let mut rx = self.inner.done.subscribe();
        let _ = rx.wait_for(|d| *d).await;
    }

    fn start(&self) -> Result<(), SalError> {
        let Some(records) = lock(&self.inner.records).take() else { return Ok(()) };
        let handle =
            tokio::runtime::Handle::try_current().map_err(|_| SalError::Other("replay: no tokio runtime".into()))?;
        let inner = self.inner.clone();
        handle.spawn(async move {
            let mut shutdown = inner.shutdown.clone();
            tokio::select! {
                _ = shutdown.wait() => {}
                _ = play(&inner, records) => {}
            }
            inner.done.send_replace(true);
        });
        Ok(())
    }
}

/// `secs` (from the file or the options) as a wait, clamped to 0..=[`MAX_SECONDS`] (NaN is 0):
/// `Duration::from_secs_f64` panics on negative or huge values, and a panic would silently end
/// the playback task.
fn wait(secs: f64) -> Duration {
    Duration::try_from_secs_f64(secs.clamp(0.0, MAX_SECONDS)).unwrap_or_default()
}

async fn play(inner: &ReplayInner, records: Vec<(f64, Sample)>) {
    tokio::time::sleep(wait(inner.opts.start_delay)).await;
    let begin = tokio::time::Instant::now();
    let t0 = records.first().map(|r| r.0).unwrap_or(0.0);
    let speed = inner.opts.speed;
    let n = records.len();
    for (t, mut sample) in records {
        if speed > 0.0 && speed.is_finite() {
            tokio::time::sleep_until(begin + wait((t - t0) / speed)).await;
        }
        sample.received = unix_now();
        sample.seq = next_seq();
        inner.bus.publish(sample_msg(sample));
    }
    tracing::info!("replay of {} finished: {n} samples", inner.path.display());
}

impl SalSource for ReplaySource {
    fn name(&self) -> &str {
        "replay"
    }

    fn subscribe(&self, component: &str, index: i64, history: bool, tx: SampleTx) -> Result<(), SalError> {
        self.inner.bus.subscribe(component, index, history, tx)?;
        self.start()
    }

    fn command(&self, cmd: SalCommand) -> Pin<Box<dyn Future<Output = CommandAck> + Send + 'static>> {
        tracing::debug!("replay: command {}:{} {} not executed", cmd.component, cmd.index, cmd.name);
        Box::pin(async { CommandAck { code: ack::COMPLETE, result: "replay: command not executed".into() } })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sal::catalog::TopicCatalog;
    use crate::sal::route_matches;
    use crate::sal::sim::SimSource;
    use crate::shutdown;

    fn tmp(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("love-host-{}-{name}", std::process::id()))
    }

    /// A sample without the per-run `received` and `seq`.
    fn essence(s: &Sample) -> Sample {
        Sample { received: 0.0, seq: 0, ..s.clone() }
    }

    #[test]
    fn line_round_trip_keeps_types_and_order() {
        let s = Sample {
            component: "Test".into(),
            sal_index: 3,
            topic: "scalars".into(),
            kind: TopicKind::TELEMETRY,
            stamps: PrivateStamps {
                snd_stamp: 1.7e9 + 0.1,
                seq_num: 4,
                rev_code: "abcd0123".into(),
                identity: "Test:3".into(),
                origin: 77,
                ..Default::default()
            },
            fields: vec![
                Field { name: "zeta".into(), value: Value::Float(0.1f32 as f64) },
                Field { name: "alpha".into(), value: Value::Int(-5) },
                Field { name: "b".into(), value: Value::Bool(true) },
                Field { name: "s".into(), value: Value::Str("a \"quoted\"\nline".into()) },
                Field { name: "fa".into(), value: Value::FloatArray(vec![1.0, 2.5e-300, -0.0].into()) },
                Field { name: "ia".into(), value: Value::IntArray(vec![i64::MIN, i64::MAX].into()) },
                Field { name: "ba".into(), value: Value::BoolArray(vec![false, true].into()) },
                Field { name: "j".into(), value: Value::Json("{\"x\":1}".into()) },
            ]
            .into(),
            received: 5.0,
            seq: 9,
        };
        let line = encode_line(1.25, &s);
        assert!(!line.contains('\n'));
        let (t, back) = decode_line(&line).unwrap();
        assert_eq!(t, 1.25);
        assert_eq!(back, essence(&s));
        assert!(decode_line("{\"t\": 1}").is_err());
    }

    #[test]
    fn bad_lines_are_numbered_skipped_or_fatal() {
        let path = tmp("bad.jsonl");
        let good = encode_line(
            0.0,
            &Sample {
                component: "ATDome".into(),
                topic: "heartbeat".into(),
                kind: TopicKind::EVENT,
                ..Default::default()
            },
        );
        std::fs::write(&path, format!("{good}\n\nnot json\n{good}\n{{\"t\":1,\"sample\":{{}}}}\n")).unwrap();
        let (_t, l) = shutdown::channel();
        let r = ReplaySource::open(&path, ReplayOptions::default(), l.clone()).unwrap();
        assert_eq!(r.pending(), 2);
        let lines: Vec<String> = r.skipped().iter().map(|e| e.to_string()).collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].contains("bad.jsonl:3:"), "{lines:?}");
        assert!(lines[1].contains("bad.jsonl:5:"), "{lines:?}");
        let err =
            ReplaySource::open(&path, ReplayOptions { strict: true, ..Default::default() }, l.clone()).unwrap_err();
        assert!(err.to_string().contains("bad.jsonl:3:"), "{err}");
        let err = ReplaySource::open(&tmp("missing.jsonl"), ReplayOptions::default(), l).unwrap_err();
        assert!(err.to_string().contains("missing.jsonl"));
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn non_finite_floats_round_trip() {
        let s = Sample {
            component: "Test".into(),
            topic: "floats".into(),
            kind: TopicKind::TELEMETRY,
            stamps: PrivateStamps {
                snd_stamp: f64::NAN,
                rcv_stamp: f64::INFINITY,
                efd_stamp: f64::NEG_INFINITY,
                kafka_stamp: 1.5,
                ..Default::default()
            },
            fields: vec![
                Field { name: "nan".into(), value: Value::Float(f64::NAN) },
                Field { name: "inf".into(), value: Value::Float(f64::INFINITY) },
                Field { name: "half".into(), value: Value::Float(0.5) },
                Field {
                    name: "fa".into(),
                    value: Value::FloatArray(vec![f64::NAN, f64::NEG_INFINITY, 2.0, f64::INFINITY].into()),
                },
            ]
            .into(),
            ..Default::default()
        };
        let line = encode_line(0.0, &s);
        assert!(!line.contains("null"), "{line}");
        // finite values stay plain JSON numbers, as in older recordings
        assert!(line.contains(r#""half":{"Float":0.5}"#), "{line}");
        let (_, back) = decode_line(&line).unwrap();
        assert!(back.stamps.snd_stamp.is_nan());
        assert_eq!((back.stamps.rcv_stamp, back.stamps.efd_stamp), (f64::INFINITY, f64::NEG_INFINITY));
        let Value::FloatArray(fa) = &back.fields[3].value else { panic!("{back:?}") };
        assert!(fa[0].is_nan());
        assert_eq!(&fa[1..], &[f64::NEG_INFINITY, 2.0, f64::INFINITY]);
        // NaN != NaN, so compare the rest through Debug, which writes a float as "NaN" exactly
        // when it is_nan and otherwise round-trips it
        assert_eq!(format!("{back:?}"), format!("{:?}", essence(&s)));
        let bad = line.replacen("\"NaN\"", "\"nan\"", 1);
        assert!(decode_line(&bad).unwrap_err().contains("nan"), "{bad}");
    }

    #[test]
    fn non_utf8_line_is_a_numbered_bad_line() {
        let path = tmp("utf8.jsonl");
        let good = encode_line(0.0, &Sample { component: "ATDome".into(), topic: "x".into(), ..Default::default() });
        let mut bytes = format!("{good}\n").into_bytes();
        bytes.extend_from_slice(b"{\"t\": \xff\xfe}\n");
        bytes.extend_from_slice(format!("{good}\n").as_bytes());
        std::fs::write(&path, bytes).unwrap();
        let (_t, l) = shutdown::channel();
        let r = ReplaySource::open(&path, ReplayOptions::default(), l.clone()).unwrap();
        assert_eq!(r.pending(), 2);
        assert_eq!(r.skipped().len(), 1);
        let msg = r.skipped()[0].to_string();
        assert!(msg.contains("utf8.jsonl:2: not UTF-8"), "{msg}");
        let err = ReplaySource::open(&path, ReplayOptions { strict: true, ..Default::default() }, l).unwrap_err();
        assert!(err.to_string().contains("utf8.jsonl:2:"), "{err}");
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn huge_t_is_a_bad_line() {
        let line = encode_line(1e20, &Sample::default());
        let err = decode_line(&line).unwrap_err();
        assert!(err.starts_with("t: "), "{err}");
        assert!(decode_line(&encode_line(-1e20, &Sample::default())).is_err());
        assert!(decode_line(&encode_line(MAX_SECONDS, &Sample::default())).is_ok());
    }

    #[test]
    fn waits_never_panic() {
        assert_eq!(wait(1.5), Duration::from_millis(1500));
        assert_eq!(wait(-1.0), Duration::ZERO);
        assert_eq!(wait(f64::NAN), Duration::ZERO);
        assert_eq!(wait(1e20), Duration::from_secs_f64(MAX_SECONDS));
        assert_eq!(wait(f64::INFINITY), Duration::from_secs_f64(MAX_SECONDS));
    }

    /// Extreme options and times (a delay or a sample offset too large for a `Duration`) delay
    /// playback instead of killing it.
    #[tokio::test(start_paused = true)]
    async fn extreme_waits_still_play_everything() {
        let path = tmp("extreme.jsonl");
        let s = Sample { component: "ATDome".into(), topic: "x".into(), ..Default::default() };
        let lines = [-MAX_SECONDS, MAX_SECONDS].map(|t| encode_line(t, &s)).join("\n");
        std::fs::write(&path, lines).unwrap();
        let (_t, l) = shutdown::channel();
        let opts = ReplayOptions { speed: 1e-300, strict: true, start_delay: 1e20 };
        let replay = ReplaySource::open(&path, opts, l).unwrap();
        let (tx, mut rx) = mpsc::channel(10);
        replay.subscribe("ATDome", 0, true, tx).unwrap();
        tokio::time::timeout(Duration::from_secs(10 * MAX_SECONDS as u64), replay.finished())
            .await
            .expect("the replay finishes");
        assert!(rx.recv().await.is_some() && rx.recv().await.is_some());
        let _ = std::fs::remove_file(&path);
    }

    /// Record a sim run through RecordingSource, replay it, and check that every subscriber of
    /// the replay sees exactly the recorded samples that match it, in recorded order.
    #[tokio::test(start_paused = true)]
    async fn record_then_replay_gives_the_same_samples() {
        let path = tmp("run.jsonl");
        let subs = [("ScriptQueue", 1), ("Script", 0), ("Watcher", 0), ("ATDome", 0)];
        let (trigger, listener) = shutdown::channel();
        let sim = SimSource::new(Arc::new(TopicCatalog::builtin()), Some(11), 4.0, listener.clone());
        let rec = RecordingSource::new(sim, Arc::new(Recorder::create(&path).unwrap()));
        let mut rxs = Vec::new();
        for (c, i) in subs {
            let (tx, rx) = mpsc::channel(100_000);
            rec.subscribe(c, i, true, tx).unwrap();
            rxs.push(rx);
        }
        // a second, late subscriber: its history must not be recorded twice
        let (tx, mut late) = mpsc::channel(100_000);
        tokio::time::sleep(Duration::from_secs(5)).await;
        rec.subscribe("ATDome", 0, true, tx).unwrap();
        tokio::time::sleep(Duration::from_secs(15)).await;
        trigger.trigger();
        tokio::time::sleep(Duration::from_millis(10)).await;
        rec.recorder().finish();
        let mut delivered: HashSet<u64> = HashSet::new();
        for rx in rxs.iter_mut().chain(std::iter::once(&mut late)) {
            while let Ok(m) = rx.try_recv() {
                delivered.insert(m.sample.seq);
            }
        }

        let text = std::fs::read_to_string(&path).unwrap();
        let recorded: Vec<(f64, Sample)> = text.lines().map(|l| decode_line(l).unwrap()).collect();
        assert_eq!(recorded.len(), delivered.len(), "each delivered sample recorded exactly once");
        assert!(recorded.len() > 200, "only {} samples", recorded.len());
        assert!(recorded.windows(2).all(|w| w[0].0 <= w[1].0), "times increase");
        for c in ["ScriptQueue", "Script", "Watcher", "ATDome"] {
            assert!(recorded.iter().any(|(_, s)| s.component.as_str() == c), "nothing from {c}");
        }

        let (_t2, l2) = shutdown::channel();
        for speed in [1.0, 0.0] {
            let replay =
                ReplaySource::open(&path, ReplayOptions { speed, strict: true, start_delay: 0.5 }, l2.clone()).unwrap();
            let mut rxs = Vec::new();
            for (c, i) in subs {
                let (tx, rx) = mpsc::channel(100_000);
                replay.subscribe(c, i, true, tx).unwrap();
                rxs.push(rx);
            }
            let begin = tokio::time::Instant::now();
            replay.finished().await;
            let took = begin.elapsed().as_secs_f64();
            let span = recorded.last().unwrap().0 - recorded[0].0;
            if speed == 1.0 {
                assert!((took - 0.5 - span).abs() < 0.1, "took {took}, span {span}");
            } else {
                assert!(took < 0.6, "took {took}");
            }
            for ((c, i), rx) in subs.iter().zip(rxs.iter_mut()) {
                let want: Vec<Sample> = recorded
                    .iter()
                    .filter(|(_, s)| route_matches(c, *i, &s.component, s.sal_index))
                    .map(|(_, s)| essence(s))
                    .collect();
                let mut got = Vec::new();
                for _ in 0..want.len() {
                    got.push(essence(&rx.recv().await.unwrap().sample));
                }
                assert_eq!(got, want, "{c}:{i}");
                tokio::task::yield_now().await;
                assert!(rx.try_recv().is_err(), "{c}:{i}: extra samples");
            }
        }
        let _ = std::fs::remove_file(&path);
    }
}
