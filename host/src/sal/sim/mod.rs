//! The embedded simulator: the default SAL source, so that `love-host --components Watcher
//! ScriptQueue:1 ATDome` shows live data with nothing else running. Any component of the topic
//! catalog can be simulated (the built-in catalog holds every ts_xml component), from its
//! catalog entry alone.
//!
//! Each subscribed component (index 0 on an indexed component simulates index 1) runs as one
//! task with its own random generator seeded from `--sim-seed`, the component name and index, so
//! a component's sequence of samples depends only on the seed (and on the commands it gets),
//! never on how tasks interleave. Per component:
//! - `heartbeat` at 1 Hz of real time (not scaled: lost-heartbeat detection is timed in seconds);
//! - `summaryState` (ENABLED), `logLevel` (INFO) and `softwareVersions` at start, which late
//!   subscribers get as history (salobj's late-joiner read);
//! - every telemetry topic once per tick, one tick per second divided by `--sim-rate` (ts_xml
//!   has no rates; 1 Hz is the default), as bounded random walks; SAL `float` values are
//!   rounded to f32 and widened, as they would arrive;
//! - state commands (`enable`, `disable`, `standby`, `start`, `exitControl`) change
//!   `summaryState`, `setLogLevel` changes `logLevel`; any other command the catalog has is
//!   acknowledged COMPLETE, one it lacks FAILED.
//!
//! Watcher raises, escalates, acknowledges and clears a set of alarms; ScriptQueue runs a queue
//! of scripts through their process and script states, publishing the `Script` events of each
//! script (component `Script`, index = the script's index), and answers `showSchema` with
//! `configSchema` and an ack; ATDome moves its azimuth and opens and closes its doors.
//!
//! Layout: this file is the source (one task per component, commands, heartbeat stops) and the
//! `Model` trait; `generic.rs` the model every component runs; `watcher.rs`,
//! `script_queue.rs` and `dome.rs` the component models.
//!
//! Stopping a heartbeat (for tests of lost heartbeats): [`SimSource::stop_heartbeat`], or
//! `LOVE_SIM_STOP_HEARTBEAT="NAME[:index]@SECONDS,..."` (read by [`SimSource::new`]; `@SECONDS`
//! is counted from the component's start and defaults to 0).

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use love_plugin_api::abi::Value;
use tokio::sync::{mpsc, oneshot};

use super::bus::Bus;
use super::catalog::TopicCatalog;
use super::{ack, CommandAck, SalCommand, SalError, SalSource, SampleTx};
use crate::locks::lock;
use crate::shutdown::Shutdown;
use dome::DomeSim;
use generic::Ctx;
use script_queue::QueueSim;
use watcher::WatcherSim;

mod dome;
mod generic;
mod script_queue;
mod watcher;

/// The environment variable with heartbeat stops (`NAME[:index]@SECONDS`, comma-separated).
pub const STOP_HEARTBEAT_ENV: &str = "LOVE_SIM_STOP_HEARTBEAT";

/// Components whose samples come from another component's simulation (scripts are run by a
/// simulated ScriptQueue), so subscribing to them starts nothing.
const DRIVEN: &[&str] = &["Script"];

/// Stop a component's heartbeat some seconds after it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct HeartbeatStop {
    /// Component name.
    pub component: String,
    /// Index as given (0 on an indexed component means the simulated index 1).
    pub index: i64,
    /// Seconds after the component's start.
    pub after: f64,
}

impl HeartbeatStop {
    /// Parse `NAME[:index][@SECONDS]`.
    pub fn parse(spec: &str) -> Result<HeartbeatStop, SalError> {
        let bad =
            |why: &str| SalError::Other(format!("bad heartbeat stop {spec:?} ({why}); expected NAME[:index]@SECONDS"));
        let (name, after) = match spec.trim().split_once('@') {
            Some((n, s)) => (n, s.trim().parse::<f64>().map_err(|_| bad("seconds"))?),
            None => (spec.trim(), 0.0),
        };
        let (component, index) = match name.split_once(':') {
            Some((c, i)) => (c, i.trim().parse::<i64>().map_err(|_| bad("index"))?),
            None => (name, 0),
        };
        if component.trim().is_empty() || after.is_nan() || after < 0.0 {
            return Err(bad("name"));
        }
        Ok(HeartbeatStop { component: component.trim().to_string(), index, after })
    }

    /// Parse a comma-separated list.
    pub fn parse_list(specs: &str) -> Result<Vec<HeartbeatStop>, SalError> {
        specs.split(',').filter(|s| !s.trim().is_empty()).map(HeartbeatStop::parse).collect()
    }
}

/// A command on its way to a simulated component.
struct CmdReq {
    cmd: SalCommand,
    reply: oneshot::Sender<CommandAck>,
}

struct Inner {
    catalog: Arc<TopicCatalog>,
    seed: u64,
    rate: f64,
    shutdown: Shutdown,
    bus: Bus,
    comps: Mutex<HashMap<(String, i64), mpsc::UnboundedSender<CmdReq>>>,
    /// Simulated (component, index) whose heartbeat is stopped.
    hb_stopped: Mutex<HashSet<(String, i64)>>,
    stops: Mutex<Vec<HeartbeatStop>>,
    origin: i64,
}

/// The simulator source. Cheap to clone (shared state).
#[derive(Clone)]
pub struct SimSource {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SimSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimSource").field("seed", &self.inner.seed).field("rate", &self.inner.rate).finish()
    }
}

impl SimSource {
    /// A simulator over `catalog`. `seed` None picks one from the clock (see [`Self::seed`]);
    /// `rate` scales telemetry and behaviour rates (not heartbeats); non-positive means 1.
    /// Heartbeat stops from `LOVE_SIM_STOP_HEARTBEAT` apply (a bad value is logged and ignored).
    pub fn new(catalog: Arc<TopicCatalog>, seed: Option<u64>, rate: f64, shutdown: Shutdown) -> SimSource {
        let seed = seed.unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1)
        });
        let rate = if rate.is_finite() && rate > 0.0 { rate.clamp(0.001, 1000.0) } else { 1.0 };
        let stops = match std::env::var(STOP_HEARTBEAT_ENV) {
            Ok(v) => HeartbeatStop::parse_list(&v).unwrap_or_else(|e| {
                tracing::warn!("{STOP_HEARTBEAT_ENV}: {e}");
                Vec::new()
            }),
            Err(_) => Vec::new(),
        };
        SimSource {
            inner: Arc::new(Inner {
                catalog,
                seed,
                rate,
                shutdown,
                bus: Bus::new(),
                comps: Mutex::new(HashMap::new()),
                hb_stopped: Mutex::new(HashSet::new()),
                stops: Mutex::new(stops),
                origin: std::process::id() as i64,
            }),
        }
    }

    /// Also stop these heartbeats (each counted from its component's start).
    pub fn with_heartbeat_stops(self, stops: Vec<HeartbeatStop>) -> SimSource {
        lock(&self.inner.stops).extend(stops);
        self
    }

    /// The seed in use (log it to reproduce a run).
    pub fn seed(&self) -> u64 {
        self.inner.seed
    }

    /// The index actually simulated for a subscription to `component`:`index`.
    pub fn sim_index(&self, component: &str, index: i64) -> i64 {
        if index == 0 && self.inner.catalog.is_indexed(component) {
            1
        } else {
            index
        }
    }

    /// Stop publishing the heartbeat of `component`:`index` from now on.
    pub fn stop_heartbeat(&self, component: &str, index: i64) {
        let i = self.sim_index(component, index);
        lock(&self.inner.hb_stopped).insert((component.to_string(), i));
    }

    /// Publish the heartbeat of `component`:`index` again.
    pub fn resume_heartbeat(&self, component: &str, index: i64) {
        let i = self.sim_index(component, index);
        lock(&self.inner.hb_stopped).remove(&(component.to_string(), i));
    }

    /// The (component, index) pairs being simulated, sorted.
    pub fn simulated(&self) -> Vec<(String, i64)> {
        let mut v: Vec<_> = lock(&self.inner.comps).keys().cloned().collect();
        v.sort();
        v
    }

    fn ensure_running(&self, component: &str, index: i64) -> Result<(), SalError> {
        let Some(cat) = self.inner.catalog.component(component) else {
            return Err(SalError::UnknownComponent(component.to_string()));
        };
        if DRIVEN.contains(&component) {
            return Ok(());
        }
        let index = self.sim_index(component, index);
        let mut comps = lock(&self.inner.comps);
        if comps.contains_key(&(component.to_string(), index)) {
            return Ok(());
        }
        let handle = tokio::runtime::Handle::try_current()
            .map_err(|_| SalError::Other(format!("simulating {component}:{index}: no tokio runtime")))?;
        let (tx, rx) = mpsc::unbounded_channel();
        comps.insert((component.to_string(), index), tx);
        let stop_after = lock(&self.inner.stops)
            .iter()
            .filter(|s| s.component == component && self.sim_index(component, s.index) == index)
            .map(|s| s.after)
            .reduce(f64::min);
        let ctx = Ctx::new(self.inner.clone(), cat.clone(), index);
        handle.spawn(run_component(ctx, rx, stop_after));
        Ok(())
    }
}

impl SalSource for SimSource {
    fn name(&self) -> &str {
        "sim"
    }

    fn subscribe(&self, component: &str, index: i64, history: bool, tx: SampleTx) -> Result<(), SalError> {
        self.ensure_running(component, index)?;
        self.inner.bus.subscribe(component, index, history, tx)
    }

    fn command(&self, cmd: SalCommand) -> Pin<Box<dyn Future<Output = CommandAck> + Send + 'static>> {
        let index = self.sim_index(&cmd.component, cmd.index);
        let target = lock(&self.inner.comps).get(&(cmd.component.clone(), index)).cloned();
        Box::pin(async move {
            let Some(tx) = target else {
                return CommandAck {
                    code: ack::NOACK,
                    result: format!("{}:{} is not simulated", cmd.component, index),
                };
            };
            let timeout = if cmd.timeout.is_finite() && cmd.timeout > 0.0 { cmd.timeout.min(86_400.0) } else { 60.0 };
            let (reply, rx) = oneshot::channel();
            if tx.send(CmdReq { cmd, reply }).is_err() {
                return CommandAck { code: ack::NOACK, result: "simulator stopped".into() };
            }
            match tokio::time::timeout(Duration::from_secs_f64(timeout), rx).await {
                Ok(Ok(a)) => a,
                Ok(Err(_)) => CommandAck { code: ack::NOACK, result: "simulator stopped".into() },
                Err(_) => CommandAck { code: ack::TIMEOUT, result: "timed out".into() },
            }
        })
    }
}

/// What makes a component more than generic: a model adds its own events, telemetry values
/// and commands on top of the generic model (which always runs: start events, state commands,
/// random walks for the telemetry a model does not set).
trait Model: Send {
    /// After the generic start events.
    fn start(&mut self, ctx: &mut Ctx);
    /// One simulation tick, before the telemetry is published.
    fn tick(&mut self, ctx: &mut Ctx);
    /// Telemetry values this model sets, by (topic, field), for the tick just taken.
    fn overrides(&self) -> Vec<Override> {
        Vec::new()
    }
    /// A command, or `None` to leave it to the generic model.
    fn command(&mut self, _ctx: &mut Ctx, _cmd: &SalCommand) -> Option<CommandAck> {
        None
    }
    /// Once per (real) second, after the component's heartbeat; `beat` counts from 0.
    fn heartbeat(&mut self, _ctx: &mut Ctx, _beat: u64) {}
}

/// A telemetry value a model sets: (topic, field, value).
type Override = (&'static str, &'static str, Value);

/// The model of a component, `None` for the generic model alone.
fn model_for(name: &str, index: i64) -> Option<Box<dyn Model>> {
    match name {
        "Watcher" => Some(Box::new(WatcherSim::new())),
        "ScriptQueue" => Some(Box::new(QueueSim::new(index))),
        "ATDome" => Some(Box::new(DomeSim::default())),
        _ => None,
    }
}

async fn run_component(mut ctx: Ctx, mut cmds: mpsc::UnboundedReceiver<CmdReq>, stop_after: Option<f64>) {
    let mut shutdown = ctx.inner.shutdown.clone();
    let start = tokio::time::Instant::now();
    let key = (ctx.name.clone(), ctx.index);
    let mut model = model_for(&ctx.name, ctx.index);
    ctx.generic_start();
    if let Some(m) = model.as_mut() {
        m.start(&mut ctx);
    }
    let mut heartbeat = tokio::time::interval(Duration::from_secs(1));
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / ctx.inner.rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut beats: u64 = 0;
    loop {
        tokio::select! {
            biased;
            _ = shutdown.wait() => break,
            req = cmds.recv() => {
                let Some(req) = req else { break };
                let ack = model
                    .as_mut()
                    .and_then(|m| m.command(&mut ctx, &req.cmd))
                    .unwrap_or_else(|| ctx.generic_command(&req.cmd));
                let _ = req.reply.send(ack);
            }
            _ = heartbeat.tick() => {
                if let Some(after) = stop_after {
                    if start.elapsed().as_secs_f64() >= after {
                        lock(&ctx.inner.hb_stopped).insert(key.clone());
                    }
                }
                let stopped = lock(&ctx.inner.hb_stopped).contains(&key);
                if !stopped {
                    ctx.event("heartbeat", vec![("heartbeat", Value::Bool(true))]);
                }
                if let Some(m) = model.as_mut() {
                    m.heartbeat(&mut ctx, beats);
                }
                beats += 1;
            }
            _ = tick.tick() => {
                let overrides = match model.as_mut() {
                    Some(m) => {
                        m.tick(&mut ctx);
                        m.overrides()
                    }
                    None => Vec::new(),
                };
                ctx.telemetry(&overrides);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::generic::{s, state};
    use super::watcher::{severity, ALARMS};
    use super::*;
    use crate::shutdown;
    use love_plugin_api::abi::InputMsg;
    use love_plugin_api::abi::{Field, Sample, TopicKind};
    use love_plugin_api::catalog::ScalarKind;

    fn sim(seed: u64) -> (SimSource, shutdown::ShutdownTrigger) {
        let (trigger, listener) = shutdown::channel();
        (SimSource::new(Arc::new(TopicCatalog::builtin()), Some(seed), 1.0, listener), trigger)
    }

    async fn collect(rx: &mut mpsc::Receiver<Arc<InputMsg>>, n: usize) -> Vec<Arc<InputMsg>> {
        let mut v = Vec::new();
        while v.len() < n {
            v.push(rx.recv().await.expect("sample"));
        }
        v
    }

    /// (component, index, topic, fields without timestamps) of a sample.
    fn essence(m: &InputMsg) -> String {
        let s = &m.sample;
        let fields: Vec<String> = s
            .fields
            .iter()
            .filter(|f| !f.name.as_str().to_ascii_lowercase().contains("timestamp"))
            .map(|f| format!("{}={:?}", f.name, f.value))
            .collect();
        format!("{}:{} {} {}", s.component, s.sal_index, s.topic, fields.join(","))
    }

    #[tokio::test(start_paused = true)]
    async fn start_events_heartbeat_and_stamps() {
        let (sim, _t) = sim(1);
        let (tx, mut rx) = mpsc::channel(1000);
        sim.subscribe("ATDome", 0, true, tx).unwrap();
        let got = collect(&mut rx, 30).await;
        let topics: Vec<&str> = got.iter().map(|m| m.sample.topic.as_str()).collect();
        assert_eq!(&topics[..3], ["summaryState", "logLevel", "softwareVersions"]);
        assert!(topics.contains(&"heartbeat"));
        assert!(topics.contains(&"position"));
        let ss = &got[0].sample;
        assert_eq!(ss.kind, TopicKind::EVENT);
        assert_eq!(ss.fields[0].value, Value::Int(2));
        assert_eq!(ss.stamps.identity.as_str(), "ATDome");
        assert!(ss.stamps.snd_stamp > 1.6e9 && ss.received > 1.6e9);
        assert_eq!(ss.stamps.seq_num, 1);
        // unique, increasing host sequence numbers
        assert!(got.windows(2).all(|w| w[0].sample.seq < w[1].sample.seq));
        let pos = got.iter().find(|m| m.sample.topic.as_str() == "position").unwrap();
        assert_eq!(pos.sample.kind, TopicKind::TELEMETRY);
        let names: Vec<&str> = pos.sample.fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            ["dropoutDoorOpeningPercentage", "mainDoorOpeningPercentage", "azimuthPosition", "azimuthEncoderPosition"]
        );
        // float32 fields arrive widened from f32
        for m in got.iter().filter(|m| m.sample.topic.as_str() == "position") {
            let Value::Float(x) = m.sample.fields[1].value else { panic!("float") };
            assert_eq!(x, x as f32 as f64);
            assert!((0.0..=100.0).contains(&x));
            let Value::Float(az) = m.sample.fields[2].value else { panic!("float") };
            assert!((0.0..360.0).contains(&az));
        }
        // a late subscriber gets the start events as history
        let (tx2, mut rx2) = mpsc::channel(1000);
        sim.subscribe("ATDome", 0, true, tx2).unwrap();
        let hist = collect(&mut rx2, 3).await;
        let topics: Vec<&str> = hist.iter().map(|m| m.sample.topic.as_str()).collect();
        assert!(
            topics.contains(&"summaryState") && topics.contains(&"logLevel") && topics.contains(&"softwareVersions")
        );
        assert_eq!(sim.simulated(), [("ATDome".to_string(), 0)]);
    }

    #[tokio::test(start_paused = true)]
    async fn deterministic_under_a_seed() {
        let mut runs = Vec::new();
        for seed in [7, 7, 8] {
            let (sim, t) = sim(seed);
            let (tx, mut rx) = mpsc::channel(10_000);
            sim.subscribe("ScriptQueue", 1, true, tx.clone()).unwrap();
            sim.subscribe("Script", 0, true, tx.clone()).unwrap();
            let (wtx, mut wrx) = mpsc::channel(10_000);
            sim.subscribe("Watcher", 0, true, wtx).unwrap();
            let sq: Vec<String> = collect(&mut rx, 300).await.iter().map(|m| essence(m)).collect();
            let w: Vec<String> = collect(&mut wrx, 60).await.iter().map(|m| essence(m)).collect();
            t.trigger();
            runs.push((sq, w));
        }
        assert_eq!(runs[0], runs[1]);
        assert_ne!(runs[0], runs[2]);
    }

    #[tokio::test(start_paused = true)]
    async fn watcher_alarms_change() {
        let (sim, _t) = sim(3);
        let (tx, mut rx) = mpsc::channel(10_000);
        sim.subscribe("Watcher", 0, true, tx).unwrap();
        let got = collect(&mut rx, 400).await;
        let alarms: Vec<&Sample> = got.iter().map(|m| &m.sample).filter(|s| s.topic.as_str() == "alarm").collect();
        let get = |s: &Sample, n: &str| s.fields.iter().find(|f| f.name.as_str() == n).unwrap().value.clone();
        let names: HashSet<String> = alarms.iter().map(|s| format!("{:?}", get(s, "name"))).collect();
        assert_eq!(names.len(), ALARMS.len());
        let sev: HashSet<String> = alarms.iter().map(|s| format!("{:?}", get(s, "severity"))).collect();
        assert!(sev.len() >= 3, "severities seen: {sev:?}");
        assert!(alarms.iter().any(|s| get(s, "acknowledged") == Value::Bool(true)));
        // a cleared alarm: severity back to NONE after having been raised
        assert!(alarms
            .iter()
            .any(|s| get(s, "severity") == Value::Int(severity::NONE)
                && get(s, "maxSeverity") != Value::Int(severity::NONE)));
        assert_eq!(alarms[0].fields.len(), 18);
    }

    #[tokio::test(start_paused = true)]
    async fn script_queue_runs_scripts_and_answers_show_schema() {
        let (sim, _t) = sim(5);
        let (tx, mut rx) = mpsc::channel(100_000);
        sim.subscribe("ScriptQueue", 0, true, tx.clone()).unwrap();
        sim.subscribe("Script", 0, true, tx).unwrap();
        assert_eq!(sim.simulated(), [("ScriptQueue".to_string(), 1)]);
        let got = collect(&mut rx, 1500).await;
        let sq: Vec<&Sample> =
            got.iter().map(|m| &m.sample).filter(|s| s.component.as_str() == "ScriptQueue").collect();
        assert!(sq.iter().all(|s| s.sal_index == 1));
        assert!(sq.iter().any(|s| s.topic.as_str() == "availableScripts"));
        let scripts: Vec<&&Sample> = sq.iter().filter(|s| s.topic.as_str() == "script").collect();
        let pstates: HashSet<String> = scripts.iter().map(|s| format!("{:?}", s.fields[9].value)).collect();
        assert!(pstates.len() >= 4, "process states {pstates:?}"); // loading, configured, running, done
        let script_samples: Vec<&Sample> =
            got.iter().map(|m| &m.sample).filter(|s| s.component.as_str() == "Script").collect();
        assert!(script_samples.iter().all(|s| s.sal_index >= 100_000 && s.sal_index < 200_000));
        for t in ["state", "metadata", "description", "checkpoints", "logLevel", "heartbeat", "logMessage"] {
            assert!(script_samples.iter().any(|s| s.topic.as_str() == t), "no Script {t}");
        }
        let past = sq
            .iter()
            .filter(|s| s.topic.as_str() == "queue")
            .filter_map(|s| match s.fields[5].value {
                Value::Int(n) => Some(n),
                _ => None,
            })
            .max()
            .unwrap();
        assert!(past > 0, "no script finished");

        // showSchema: configSchema event then COMPLETE; an unknown path fails.
        let (tx2, mut rx2) = mpsc::channel(1000);
        sim.subscribe("ScriptQueue", 1, true, tx2).unwrap();
        let cmd = |path: &str| SalCommand {
            component: "ScriptQueue".into(),
            index: 1,
            name: "showSchema".into(),
            fields: vec![
                Field { name: "isStandard".into(), value: Value::Bool(true) },
                Field { name: "path".into(), value: s(path) },
            ],
            timeout: 5.0,
        };
        let a = sim.command(cmd("sleep.py")).await;
        assert_eq!(a.code, ack::COMPLETE);
        let mut found = false;
        while let Ok(m) = rx2.try_recv() {
            if m.sample.topic.as_str() == "configSchema" && m.sample.fields[1].value == s("sleep.py") {
                let Value::Str(text) = &m.sample.fields[2].value else { panic!() };
                assert!(text.contains("type: object"));
                found = true;
            }
        }
        assert!(found, "no configSchema after showSchema");
        assert_eq!(sim.command(cmd("nope.py")).await.code, ack::FAILED);
        let mut c = cmd("x");
        c.component = "ATDome".into();
        assert_eq!(sim.command(c).await.code, ack::NOACK);
    }

    #[tokio::test(start_paused = true)]
    async fn state_commands_and_unknown_components() {
        let (sim, _t) = sim(9);
        let (tx, mut rx) = mpsc::channel(10_000);
        sim.subscribe("MTHexapod", 1, true, tx).unwrap();
        collect(&mut rx, 3).await;
        let cmd = |name: &str| SalCommand {
            component: "MTHexapod".into(),
            index: 1,
            name: name.into(),
            fields: vec![],
            timeout: 1.0,
        };
        assert_eq!(sim.command(cmd("disable")).await.code, ack::COMPLETE);
        assert_eq!(sim.command(cmd("flyAway")).await.code, ack::FAILED);
        let mut saw = false;
        while let Ok(m) = rx.try_recv() {
            if m.sample.topic.as_str() == "summaryState" {
                assert_eq!(m.sample.fields[0].value, Value::Int(state::DISABLED));
                assert_eq!(m.sample.stamps.identity.as_str(), "MTHexapod:1");
                saw = true;
            }
        }
        assert!(saw);
        let (tx, _rx) = mpsc::channel(10);
        assert!(matches!(sim.subscribe("NoSuchCsc", 0, true, tx), Err(SalError::UnknownComponent(_))));
    }

    #[tokio::test(start_paused = true)]
    async fn heartbeat_stops_on_request() {
        let (sim, _t) = sim(2);
        let sim = sim.with_heartbeat_stops(vec![HeartbeatStop::parse("Test@3").unwrap()]);
        let (tx, mut rx) = mpsc::channel(100_000);
        sim.subscribe("Test", 0, true, tx).unwrap();
        tokio::time::sleep(Duration::from_secs_f64(10.5)).await;
        let mut beats = 0;
        while let Ok(m) = rx.try_recv() {
            if m.sample.topic.as_str() == "heartbeat" {
                assert_eq!(m.sample.sal_index, 1);
                beats += 1;
            }
        }
        assert_eq!(beats, 3); // t = 0, 1, 2
        sim.resume_heartbeat("Test", 1);
        // stop/resume by API
        let (tx, mut rx) = mpsc::channel(100_000);
        let (sim2, _t2) = self::sim(2);
        sim2.subscribe("Watcher", 0, true, tx).unwrap();
        tokio::time::sleep(Duration::from_millis(2500)).await;
        sim2.stop_heartbeat("Watcher", 0);
        tokio::time::sleep(Duration::from_secs(5)).await;
        let beats =
            std::iter::from_fn(|| rx.try_recv().ok()).filter(|m| m.sample.topic.as_str() == "heartbeat").count();
        assert_eq!(beats, 3);
    }

    #[tokio::test(start_paused = true)]
    async fn every_catalog_component_simulates() {
        let xml = Arc::new(TopicCatalog::builtin());
        let (_trigger, listener) = shutdown::channel();
        let sim = SimSource::new(xml.clone(), Some(1), 1.0, listener);
        for name in xml.names() {
            if DRIVEN.contains(&name) {
                continue;
            }
            let (tx, mut rx) = mpsc::channel(100_000);
            sim.subscribe(name, 0, true, tx).unwrap();
            let cat = xml.component(name).unwrap();
            let want = 2 + cat.telemetry.len();
            for m in collect(&mut rx, want).await {
                let s = &m.sample;
                let t =
                    if s.kind == TopicKind::TELEMETRY { cat.telemetry_topic(&s.topic) } else { cat.event(&s.topic) };
                let t = t.unwrap_or_else(|| panic!("{name} {}", s.topic));
                assert_eq!(s.fields.len(), t.fields.len(), "{name} {}", s.topic);
                for (f, info) in s.fields.iter().zip(&t.fields) {
                    assert_eq!(f.name.as_str(), info.name);
                    let ok = match (&f.value, info.scalar_kind(), info.is_array()) {
                        (Value::Bool(_), ScalarKind::Bool, false) => true,
                        (Value::BoolArray(a), ScalarKind::Bool, true) => a.len() == info.count as usize,
                        (Value::Int(_), ScalarKind::Int, false) => true,
                        (Value::IntArray(a), ScalarKind::Int, true) => a.len() == info.count as usize,
                        (Value::Float(_), ScalarKind::Float, false) => true,
                        (Value::FloatArray(a), ScalarKind::Float, true) => a.len() == info.count as usize,
                        (Value::Str(_), ScalarKind::Str, _) => true,
                        _ => false,
                    };
                    assert!(
                        ok,
                        "{name} {} {}: {:?} for {} x{}",
                        s.topic, info.name, f.value, info.idl_type, info.count
                    );
                }
            }
        }
    }

    #[test]
    fn heartbeat_stop_specs() {
        assert_eq!(
            HeartbeatStop::parse("ATDome@5").unwrap(),
            HeartbeatStop { component: "ATDome".into(), index: 0, after: 5.0 }
        );
        assert_eq!(HeartbeatStop::parse("ScriptQueue:2@0.5").unwrap().index, 2);
        assert_eq!(HeartbeatStop::parse("Watcher").unwrap().after, 0.0);
        assert!(HeartbeatStop::parse("ATDome@soon").is_err());
        assert!(HeartbeatStop::parse(":1@2").is_err());
        assert_eq!(HeartbeatStop::parse_list("A@1, B:2@3").unwrap().len(), 2);
    }
}
