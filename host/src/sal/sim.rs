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
//! Stopping a heartbeat (for tests of lost heartbeats): [`SimSource::stop_heartbeat`], or
//! `LOVE_SIM_STOP_HEARTBEAT="NAME[:index]@SECONDS,..."` (read by [`SimSource::new`]; `@SECONDS`
//! is counted from the component's start and defaults to 0).

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use abi_stable::std_types::RVec;
use love_plugin_api::abi::{Field, PrivateStamps, Sample, TopicKind, Value};
use love_plugin_api::catalog::{ComponentCatalog, FieldInfo, ScalarKind, TopicInfo};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::sync::{mpsc, oneshot};

use super::bus::Bus;
use super::catalog::TopicCatalog;
use super::{ack, next_seq, sample_msg, CommandAck, SalCommand, SalError, SalSource, SampleTx};
use crate::clock::unix_now;
use crate::locks::lock;
use crate::shutdown::Shutdown;

/// The environment variable with heartbeat stops (`NAME[:index]@SECONDS`, comma-separated).
pub const STOP_HEARTBEAT_ENV: &str = "LOVE_SIM_STOP_HEARTBEAT";

/// Components whose samples come from another component's simulation (scripts are run by a
/// simulated ScriptQueue), so subscribing to them starts nothing.
const DRIVEN: &[&str] = &["Script"];

/// SAL summary states (salobj `State`).
mod state {
    pub const DISABLED: i64 = 1;
    pub const ENABLED: i64 = 2;
    pub const OFFLINE: i64 = 4;
    pub const STANDBY: i64 = 5;
}

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

/// FNV-1a, for seeds and revision codes that must not change between Rust versions.
fn fnv(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for p in parts {
        for b in p.iter().chain([0xffu8].iter()) {
            h ^= *b as u64;
            h = h.wrapping_mul(0x100000001b3);
        }
    }
    h
}

/// What one simulated component's task works with.
struct Ctx {
    inner: Arc<Inner>,
    cat: ComponentCatalog,
    name: String,
    index: i64,
    rng: SmallRng,
    seq_nums: HashMap<(String, i64, String), i64>,
    walks: HashMap<(String, usize), Vec<f64>>,
    summary_state: i64,
}

impl Ctx {
    fn new(inner: Arc<Inner>, cat: ComponentCatalog, index: i64) -> Ctx {
        let name = cat.name.clone();
        let seed = inner.seed ^ fnv(&[name.as_bytes(), &index.to_le_bytes()]);
        Ctx {
            inner,
            cat,
            name,
            index,
            rng: SmallRng::seed_from_u64(seed),
            seq_nums: HashMap::new(),
            walks: HashMap::new(),
            summary_state: state::ENABLED,
        }
    }

    /// Publish a sample of `component`:`index` with the fields of its catalog topic, in catalog
    /// order: `values` by name, the rest zero/empty. Returns false (and publishes nothing) when
    /// the catalog lacks the topic.
    fn publish_to(
        &mut self,
        component: &str,
        index: i64,
        kind: TopicKind,
        topic: &str,
        values: Vec<(&str, Value)>,
    ) -> bool {
        let info = {
            let cat = if component == self.name { Some(&self.cat) } else { self.inner.catalog.component(component) };
            let Some(cat) = cat else { return false };
            let t = match kind {
                TopicKind::TELEMETRY => cat.telemetry_topic(topic),
                _ => cat.event(topic),
            };
            match t {
                Some(t) => t.clone(),
                None => return false,
            }
        };
        let mut values = values;
        let fields: Vec<Field> = info
            .fields
            .iter()
            .map(|f| {
                let v = match values.iter().position(|(n, _)| *n == f.name) {
                    Some(i) => conform(f, values.swap_remove(i).1),
                    None => default_value(f),
                };
                Field { name: f.name.as_str().into(), value: v }
            })
            .collect();
        self.send(component, index, kind, &info, fields);
        true
    }

    fn send(&mut self, component: &str, index: i64, kind: TopicKind, info: &TopicInfo, fields: Vec<Field>) {
        let now = unix_now();
        let key = (component.to_string(), index, info.name.clone());
        let seq_num = {
            let n = self.seq_nums.entry(key).or_insert(0);
            *n += 1;
            *n
        };
        let rev =
            fnv(&[info.name.as_bytes(), info.fields.iter().map(|f| f.name.as_str()).collect::<String>().as_bytes()]);
        let identity = if index != 0 { format!("{component}:{index}") } else { component.to_string() };
        let sample = Sample {
            component: component.into(),
            sal_index: index,
            topic: info.name.as_str().into(),
            kind,
            stamps: PrivateStamps {
                snd_stamp: now,
                rcv_stamp: now,
                efd_stamp: now,
                kafka_stamp: now,
                seq_num,
                rev_code: format!("{:08x}", rev as u32).into(),
                identity: identity.into(),
                origin: self.inner.origin,
            },
            fields: fields.into(),
            received: now,
            seq: next_seq(),
        };
        self.inner.bus.publish(sample_msg(sample));
    }

    fn event(&mut self, topic: &str, values: Vec<(&str, Value)>) -> bool {
        let (name, index) = (self.name.clone(), self.index);
        self.publish_to(&name, index, TopicKind::EVENT, topic, values)
    }

    fn generic_start(&mut self) {
        let ss = self.summary_state;
        self.event("summaryState", vec![("summaryState", int(ss))]);
        self.event("logLevel", vec![("level", int(20)), ("subsystem", s(""))]);
        self.event(
            "softwareVersions",
            vec![
                ("salVersion", s("8.0.0")),
                ("xmlVersion", s("22.1.0")),
                ("cscVersion", s("love-host-sim")),
                ("subsystemVersions", s("")),
            ],
        );
    }

    /// Publish every telemetry topic once; `overrides` gives model values by (topic, field).
    fn telemetry(&mut self, overrides: &[(&str, &str, Value)]) {
        let topics = self.cat.telemetry.clone();
        for t in &topics {
            let mut fields = Vec::with_capacity(t.fields.len());
            for (fi, f) in t.fields.iter().enumerate() {
                let v = match overrides.iter().find(|(tn, fname, _)| *tn == t.name && *fname == f.name) {
                    Some((_, _, v)) => conform(f, v.clone()),
                    None => self.walk(&t.name, fi, f),
                };
                fields.push(Field { name: f.name.as_str().into(), value: v });
            }
            let (name, index) = (self.name.clone(), self.index);
            self.send(&name, index, TopicKind::TELEMETRY, t, fields);
        }
    }

    /// The next value of a bounded random walk for one telemetry field.
    fn walk(&mut self, topic: &str, fi: usize, f: &FieldInfo) -> Value {
        let n = if f.is_array() { f.count as usize } else { 1 };
        let kind = f.scalar_kind();
        let (lo, hi, wrap) = range_of(f);
        let key = (topic.to_string(), fi);
        if !self.walks.contains_key(&key) {
            let init: Vec<f64> = (0..n)
                .map(|_| match kind {
                    ScalarKind::Bool => self.rng.gen_range(0..2) as f64,
                    _ => self.rng.gen_range(lo..hi),
                })
                .collect();
            self.walks.insert(key.clone(), init);
        }
        let mut state = self.walks.remove(&key).expect("inserted");
        for x in state.iter_mut() {
            match kind {
                ScalarKind::Bool => {
                    if self.rng.gen_bool(0.02) {
                        *x = 1.0 - *x;
                    }
                }
                ScalarKind::Str | ScalarKind::Other => {}
                _ => {
                    let step = (hi - lo) * 0.02 * self.rng.gen_range(-1.0..1.0);
                    let mut y = *x + step;
                    if wrap {
                        y = lo + (y - lo).rem_euclid(hi - lo);
                    } else if y < lo {
                        y = 2.0 * lo - y;
                    } else if y > hi {
                        y = 2.0 * hi - y;
                    }
                    *x = y.clamp(lo, hi);
                }
            }
        }
        let v = match (kind, f.is_array()) {
            (ScalarKind::Bool, false) => Value::Bool(state[0] >= 0.5),
            (ScalarKind::Bool, true) => Value::BoolArray(state.iter().map(|x| *x >= 0.5).collect()),
            (ScalarKind::Int, false) => Value::Int(state[0].round() as i64),
            (ScalarKind::Int, true) => Value::IntArray(state.iter().map(|x| x.round() as i64).collect()),
            (ScalarKind::Float, false) => Value::Float(state[0]),
            (ScalarKind::Float, true) => Value::FloatArray(state.iter().copied().collect()),
            _ => Value::Str("sim".into()),
        };
        self.walks.insert(key, state);
        conform(f, v)
    }

    /// Generic command handling: state commands, setLogLevel, else COMPLETE if known.
    fn generic_command(&mut self, cmd: &SalCommand) -> CommandAck {
        if self.cat.command(&cmd.name).is_none() {
            return CommandAck { code: ack::FAILED, result: format!("{} has no command {}", self.name, cmd.name) };
        }
        let new_state = match cmd.name.as_str() {
            "enable" => Some(state::ENABLED),
            "disable" | "start" => Some(state::DISABLED),
            "standby" => Some(state::STANDBY),
            "exitControl" => Some(state::OFFLINE),
            _ => None,
        };
        if let Some(st) = new_state {
            self.summary_state = st;
            self.event("summaryState", vec![("summaryState", int(st))]);
        }
        if cmd.name == "setLogLevel" {
            let level = field_int(cmd, "level").unwrap_or(20);
            self.event("logLevel", vec![("level", int(level)), ("subsystem", s(""))]);
        }
        done()
    }
}

fn done() -> CommandAck {
    CommandAck { code: ack::COMPLETE, result: "Done".into() }
}

fn int(v: i64) -> Value {
    Value::Int(v)
}

fn s(v: &str) -> Value {
    Value::Str(v.into())
}

fn float(v: f64) -> Value {
    Value::Float(v)
}

fn field_int(cmd: &SalCommand, name: &str) -> Option<i64> {
    cmd.fields.iter().find(|f| f.name.as_str() == name).and_then(|f| match &f.value {
        Value::Int(i) => Some(*i),
        Value::Bool(b) => Some(*b as i64),
        _ => None,
    })
}

fn field_str(cmd: &SalCommand, name: &str) -> Option<String> {
    cmd.fields.iter().find(|f| f.name.as_str() == name).and_then(|f| match &f.value {
        Value::Str(v) => Some(v.to_string()),
        _ => None,
    })
}

fn field_bool(cmd: &SalCommand, name: &str) -> Option<bool> {
    cmd.fields.iter().find(|f| f.name.as_str() == name).and_then(|f| match &f.value {
        Value::Bool(b) => Some(*b),
        Value::Int(i) => Some(*i != 0),
        _ => None,
    })
}

/// Make a value fit its declared field: SAL `float` is rounded to f32 and widened, as salobj
/// delivers it.
fn conform(f: &FieldInfo, v: Value) -> Value {
    if f.idl_type != "float" {
        return v;
    }
    match v {
        Value::Float(x) => Value::Float(x as f32 as f64),
        Value::FloatArray(a) => Value::FloatArray(a.iter().map(|x| *x as f32 as f64).collect()),
        other => other,
    }
}

/// The zero value of a declared field.
fn default_value(f: &FieldInfo) -> Value {
    let n = f.count.max(1) as usize;
    match (f.scalar_kind(), f.is_array()) {
        (ScalarKind::Bool, false) => Value::Bool(false),
        (ScalarKind::Bool, true) => Value::BoolArray(RVec::from(vec![false; n])),
        (ScalarKind::Int, false) => Value::Int(0),
        (ScalarKind::Int, true) => Value::IntArray(RVec::from(vec![0; n])),
        (ScalarKind::Float, false) => Value::Float(0.0),
        (ScalarKind::Float, true) => Value::FloatArray(RVec::from(vec![0.0; n])),
        _ => Value::Str("".into()),
    }
}

/// Plausible bounds for a telemetry field, from its name, type and units: (low, high, wraps).
fn range_of(f: &FieldInfo) -> (f64, f64, bool) {
    let lname = f.name.to_ascii_lowercase();
    let unsigned = f.idl_type.starts_with("unsigned") || f.idl_type == "byte";
    match f.units.as_str() {
        _ if lname.contains("percent") || f.units == "%" => (0.0, 100.0, false),
        "deg" | "degree" if lname.contains("azimuth") => (0.0, 360.0, true),
        "deg" | "degree" => (-90.0, 90.0, false),
        "deg_C" | "C" => (-10.0, 30.0, false),
        _ if lname.contains("temperature") => (-10.0, 30.0, false),
        _ if f.idl_type == "byte" => (0.0, 100.0, false),
        _ if unsigned => (0.0, 1000.0, false),
        _ => match f.scalar_kind() {
            ScalarKind::Int => (0.0, 1000.0, false),
            _ => (-100.0, 100.0, false),
        },
    }
}

/// What makes a component more than generic.
enum Behaviour {
    Generic,
    Watcher(WatcherSim),
    ScriptQueue(QueueSim),
    Dome(DomeSim),
}

async fn run_component(mut ctx: Ctx, mut cmds: mpsc::UnboundedReceiver<CmdReq>, stop_after: Option<f64>) {
    let mut shutdown = ctx.inner.shutdown.clone();
    let start = tokio::time::Instant::now();
    let key = (ctx.name.clone(), ctx.index);
    let mut behaviour = match ctx.name.as_str() {
        "Watcher" => Behaviour::Watcher(WatcherSim::new()),
        "ScriptQueue" => Behaviour::ScriptQueue(QueueSim::new(ctx.index)),
        "ATDome" => Behaviour::Dome(DomeSim::default()),
        _ => Behaviour::Generic,
    };
    ctx.generic_start();
    match &mut behaviour {
        Behaviour::Watcher(w) => w.start(&mut ctx),
        Behaviour::ScriptQueue(q) => q.start(&mut ctx),
        Behaviour::Dome(d) => d.start(&mut ctx),
        Behaviour::Generic => {}
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
                let ack = match &mut behaviour {
                    Behaviour::Watcher(w) => w.command(&mut ctx, &req.cmd),
                    Behaviour::ScriptQueue(q) => q.command(&mut ctx, &req.cmd),
                    _ => None,
                }
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
                if let Behaviour::ScriptQueue(q) = &mut behaviour {
                    q.heartbeat(&mut ctx, beats);
                }
                beats += 1;
            }
            _ = tick.tick() => {
                let overrides = match &mut behaviour {
                    Behaviour::Watcher(w) => { w.tick(&mut ctx); Vec::new() }
                    Behaviour::ScriptQueue(q) => { q.tick(&mut ctx); Vec::new() }
                    Behaviour::Dome(d) => d.tick(&mut ctx),
                    Behaviour::Generic => Vec::new(),
                };
                ctx.telemetry(&overrides);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Watcher

/// AlarmSeverity (ts_xml Watcher): NONE 1, WARNING 2, SERIOUS 3, CRITICAL 4.
mod severity {
    pub const NONE: i64 = 1;
    pub const WARNING: i64 = 2;
    pub const SERIOUS: i64 = 3;
    pub const CRITICAL: i64 = 4;
}

const ALARMS: &[(&str, &str)] = &[
    ("Enabled.ATDome", ""),
    ("Heartbeat.ATDome", "auxtel-oncall"),
    ("Enabled.ScriptQueue:1", ""),
    ("Heartbeat.ScriptQueue:2", ""),
    ("Enabled.MTHexapod:1", "maintel-oncall"),
    ("Weather.WindSpeed", "weather-oncall"),
    ("ESS.Temperature.AuxTel", ""),
    ("Power.UPS.Summit", "facilities-oncall"),
];

#[derive(Debug, Clone)]
struct Alarm {
    name: &'static str,
    escalate_to: &'static str,
    severity: i64,
    max_severity: i64,
    acknowledged: bool,
    acknowledged_by: String,
    escalated_id: String,
    reason: String,
    ts_oldest: f64,
    ts_newest: f64,
    ts_max: f64,
    ts_ack: f64,
    ts_escalate: f64,
}

struct WatcherSim {
    alarms: Vec<Alarm>,
    escalations: u64,
}

impl WatcherSim {
    fn new() -> Self {
        let alarms = ALARMS
            .iter()
            .map(|(name, to)| Alarm {
                name,
                escalate_to: to,
                severity: severity::NONE,
                max_severity: severity::NONE,
                acknowledged: false,
                acknowledged_by: String::new(),
                escalated_id: String::new(),
                reason: String::new(),
                ts_oldest: 0.0,
                ts_newest: 0.0,
                ts_max: 0.0,
                ts_ack: 0.0,
                ts_escalate: 0.0,
            })
            .collect();
        WatcherSim { alarms, escalations: 0 }
    }

    fn publish(ctx: &mut Ctx, a: &Alarm) {
        ctx.event(
            "alarm",
            vec![
                ("name", s(a.name)),
                ("severity", int(a.severity)),
                ("reason", s(&a.reason)),
                ("maxSeverity", int(a.max_severity)),
                ("acknowledged", Value::Bool(a.acknowledged)),
                ("acknowledgedBy", s(&a.acknowledged_by)),
                ("escalatedId", s(&a.escalated_id)),
                ("escalateTo", s(a.escalate_to)),
                ("mutedSeverity", int(severity::NONE)),
                ("mutedBy", s("")),
                ("timestampSeverityOldest", float(a.ts_oldest)),
                ("timestampSeverityNewest", float(a.ts_newest)),
                ("timestampMaxSeverity", float(a.ts_max)),
                ("timestampAcknowledged", float(a.ts_ack)),
                ("timestampAutoAcknowledge", float(0.0)),
                ("timestampAutoUnacknowledge", float(0.0)),
                ("timestampEscalate", float(a.ts_escalate)),
                ("timestampUnmute", float(0.0)),
            ],
        );
    }

    fn start(&mut self, ctx: &mut Ctx) {
        for a in &self.alarms {
            Self::publish(ctx, a);
        }
    }

    /// One step: maybe move one alarm along raise -> escalate -> acknowledge -> clear.
    fn tick(&mut self, ctx: &mut Ctx) {
        if !ctx.rng.gen_bool(0.3) {
            return;
        }
        let i = ctx.rng.gen_range(0..self.alarms.len());
        let now = unix_now();
        let roll: f64 = ctx.rng.gen();
        let a = &mut self.alarms[i];
        let raise = |a: &mut Alarm, sev: i64| {
            if a.severity == severity::NONE {
                a.ts_oldest = now;
            }
            a.severity = sev;
            a.ts_newest = now;
            if sev > a.max_severity {
                a.max_severity = sev;
                a.ts_max = now;
                a.acknowledged = false;
                a.acknowledged_by.clear();
            }
            a.reason = match sev {
                severity::WARNING => format!("{}: value outside the warning range (simulated)", a.name),
                severity::SERIOUS => format!("{}: value outside the serious range (simulated)", a.name),
                _ => format!("{}: critical condition (simulated)", a.name),
            };
        };
        if a.severity == severity::NONE && a.max_severity == severity::NONE {
            let sev = if roll < 0.7 { severity::WARNING } else { severity::SERIOUS };
            raise(a, sev);
        } else if a.severity > severity::NONE && !a.acknowledged && roll < 0.4 && a.severity < severity::CRITICAL {
            let sev = a.severity + 1;
            raise(a, sev);
            if sev == severity::CRITICAL && !a.escalate_to.is_empty() && a.escalated_id.is_empty() {
                self.escalations += 1;
                a.escalated_id = format!("sim-alert-{}", self.escalations);
                a.ts_escalate = now;
            }
        } else if !a.acknowledged {
            a.acknowledged = true;
            a.acknowledged_by = "sim-operator".into();
            a.ts_ack = now;
            if a.severity == severity::NONE {
                // Acknowledged while clear: the alarm resets.
                a.max_severity = severity::NONE;
                a.acknowledged = false;
                a.escalated_id.clear();
                a.reason.clear();
            }
        } else {
            // Acknowledged and still active: the condition clears.
            a.severity = severity::NONE;
            a.ts_newest = now;
            a.reason = format!("{}: back to normal (simulated)", a.name);
        }
        let a = a.clone();
        Self::publish(ctx, &a);
    }

    fn command(&mut self, ctx: &mut Ctx, cmd: &SalCommand) -> Option<CommandAck> {
        match cmd.name.as_str() {
            "acknowledge" => {
                let name = field_str(cmd, "name").unwrap_or_default();
                let by = field_str(cmd, "acknowledgedBy").unwrap_or_default();
                let Some(a) = self.alarms.iter_mut().find(|a| a.name == name) else {
                    return Some(CommandAck { code: ack::FAILED, result: format!("Watcher: no alarm {name:?}") });
                };
                a.acknowledged = true;
                a.acknowledged_by = by;
                a.ts_ack = unix_now();
                if a.severity == severity::NONE {
                    a.max_severity = severity::NONE;
                    a.acknowledged = false;
                }
                let a = a.clone();
                Self::publish(ctx, &a);
                Some(done())
            }
            "showAlarms" => {
                for a in &self.alarms {
                    Self::publish(ctx, a);
                }
                Some(done())
            }
            _ => None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// ScriptQueue

/// ScriptProcessState values.
mod process {
    pub const LOADING: i64 = 1;
    pub const CONFIGURED: i64 = 2;
    pub const RUNNING: i64 = 3;
    pub const DONE: i64 = 4;
}

/// ScriptState values.
mod script_state {
    pub const UNCONFIGURED: i64 = 1;
    pub const CONFIGURED: i64 = 2;
    pub const RUNNING: i64 = 3;
    pub const ENDING: i64 = 5;
    pub const DONE: i64 = 8;
    pub const FAILED: i64 = 10;
}

const STANDARD_SCRIPTS: &[&str] = &[
    "auxtel/prepare_for/onsky.py",
    "auxtel/take_image_latiss.py",
    "auxtel/track_target.py",
    "maintel/offset_camera_hexapod.py",
    "maintel/take_image_comcam.py",
    "run_command.py",
    "sleep.py",
];
const EXTERNAL_SCRIPTS: &[&str] = &["auxtel/calibrations/power_on_atcalsys.py", "maintel/m1m3/check_actuators.py"];
/// ts_scriptqueue numbers scripts from index * 100000.
const SCRIPT_INDEX_MULT: i64 = 100_000;
/// Finished scripts the queue remembers.
const PAST_MAX: usize = 10;
/// salobj `BaseScript` heartbeat interval, in (real) seconds.
const SCRIPT_HEARTBEAT_INTERVAL: u64 = 5;

#[derive(Debug, Clone)]
struct SimScript {
    index: i64,
    path: &'static str,
    standard: bool,
    process_state: i64,
    script_state: i64,
    ts_process_start: f64,
    ts_configure_start: f64,
    ts_configure_end: f64,
    ts_run_start: f64,
    ts_process_end: f64,
    /// Ticks left while running.
    remaining: u32,
    checkpoint: u32,
    fails: bool,
}

struct QueueSim {
    enabled: bool,
    running: bool,
    next_index: i64,
    waiting: VecDeque<SimScript>,
    current: Option<SimScript>,
    past: VecDeque<i64>,
}

fn schema_for(path: &str) -> String {
    format!(
        "$schema: http://json-schema.org/draft-07/schema#\n$id: https://github.com/lsst-ts/ts_standardscripts/{path}\ntitle: {path} v1\ndescription: Configuration for {path} (simulated).\ntype: object\nproperties:\n  wait_time:\n    description: Time to wait, in seconds.\n    type: number\n    default: 1\nadditionalProperties: false\n"
    )
}

impl QueueSim {
    fn new(index: i64) -> Self {
        QueueSim {
            enabled: true,
            running: true,
            next_index: index.max(1) * SCRIPT_INDEX_MULT,
            waiting: VecDeque::new(),
            current: None,
            past: VecDeque::new(),
        }
    }

    fn start(&mut self, ctx: &mut Ctx) {
        self.publish_available(ctx);
        self.publish_queue(ctx);
    }

    fn publish_available(&self, ctx: &mut Ctx) {
        ctx.event(
            "availableScripts",
            vec![("standard", s(&STANDARD_SCRIPTS.join(":"))), ("external", s(&EXTERNAL_SCRIPTS.join(":")))],
        );
    }

    fn publish_queue(&self, ctx: &mut Ctx) {
        let mut waiting: Vec<i64> = self.waiting.iter().map(|s| s.index).collect();
        let length = waiting.len() as i64;
        waiting.resize(400, 0);
        let mut past: Vec<i64> = self.past.iter().copied().collect();
        let past_length = past.len() as i64;
        past.resize(400, 0);
        ctx.event(
            "queue",
            vec![
                ("enabled", Value::Bool(self.enabled)),
                ("running", Value::Bool(self.running)),
                ("currentSalIndex", int(self.current.as_ref().map(|s| s.index).unwrap_or(0))),
                ("length", int(length)),
                ("salIndices", Value::IntArray(waiting.into())),
                ("pastLength", int(past_length)),
                ("pastSalIndices", Value::IntArray(past.into())),
            ],
        );
    }

    fn publish_script(ctx: &mut Ctx, sc: &SimScript) {
        ctx.event(
            "script",
            vec![
                ("cmdId", int(sc.index % SCRIPT_INDEX_MULT)),
                ("scriptSalIndex", int(sc.index)),
                ("isStandard", Value::Bool(sc.standard)),
                ("path", s(sc.path)),
                ("timestampProcessStart", float(sc.ts_process_start)),
                ("timestampConfigureStart", float(sc.ts_configure_start)),
                ("timestampConfigureEnd", float(sc.ts_configure_end)),
                ("timestampRunStart", float(sc.ts_run_start)),
                ("timestampProcessEnd", float(sc.ts_process_end)),
                ("processState", int(sc.process_state)),
                ("scriptState", int(sc.script_state)),
            ],
        );
    }

    fn script_event(ctx: &mut Ctx, index: i64, topic: &str, values: Vec<(&str, Value)>) {
        ctx.publish_to("Script", index, TopicKind::EVENT, topic, values);
    }

    fn script_state(ctx: &mut Ctx, sc: &SimScript, reason: &str) {
        let last = if sc.checkpoint > 0 { format!("step_{}", sc.checkpoint) } else { String::new() };
        Self::script_event(
            ctx,
            sc.index,
            "state",
            vec![
                ("state", int(sc.script_state)),
                ("reason", s(reason)),
                ("lastCheckpoint", s(&last)),
                ("numCheckpoints", int(sc.checkpoint as i64)),
            ],
        );
    }

    fn log(ctx: &mut Ctx, index: i64, level: i64, message: &str) {
        Self::script_event(
            ctx,
            index,
            "logMessage",
            vec![
                ("name", s(&format!("Script:{index}"))),
                ("level", int(level)),
                ("message", s(message)),
                ("filePath", s("base_script.py")),
                ("functionName", s("run")),
                ("lineNumber", int(42)),
                ("process", int(ctx.inner.origin)),
                ("timestamp", float(unix_now())),
            ],
        );
    }

    /// Add a new script to the end of the queue: loaded and unconfigured.
    fn add_script(&mut self, ctx: &mut Ctx) {
        let standard = ctx.rng.gen_bool(0.8);
        let path = if standard {
            STANDARD_SCRIPTS[ctx.rng.gen_range(0..STANDARD_SCRIPTS.len())]
        } else {
            EXTERNAL_SCRIPTS[ctx.rng.gen_range(0..EXTERNAL_SCRIPTS.len())]
        };
        let now = unix_now();
        let sc = SimScript {
            index: self.next_index,
            path,
            standard,
            process_state: process::LOADING,
            script_state: script_state::UNCONFIGURED,
            ts_process_start: now,
            ts_configure_start: 0.0,
            ts_configure_end: 0.0,
            ts_run_start: 0.0,
            ts_process_end: 0.0,
            remaining: ctx.rng.gen_range(3..10),
            checkpoint: 0,
            fails: ctx.rng.gen_bool(0.1),
        };
        self.next_index += 1;
        self.waiting.push_back(sc.clone());
        Self::publish_script(ctx, &sc);
        self.publish_queue(ctx);
        let class = path.trim_end_matches(".py").rsplit('/').next().unwrap_or(path).to_string();
        Self::script_event(
            ctx,
            sc.index,
            "description",
            vec![
                ("classname", s(&class)),
                ("description", s(&format!("Simulated {path}"))),
                ("help", s("")),
                ("remotes", s(if path.starts_with("auxtel") { "ATDome,ATMCS" } else { "MTHexapod" })),
            ],
        );
        Self::script_event(ctx, sc.index, "logLevel", vec![("level", int(20)), ("subsystem", s(""))]);
        Self::script_state(ctx, &sc, "");
    }

    /// Configure the first loaded script.
    fn configure_one(&mut self, ctx: &mut Ctx) {
        let Some(sc) = self.waiting.iter_mut().find(|s| s.process_state == process::LOADING) else { return };
        let now = unix_now();
        sc.ts_configure_start = now;
        sc.ts_configure_end = now;
        sc.process_state = process::CONFIGURED;
        sc.script_state = script_state::CONFIGURED;
        let sc = sc.clone();
        let duration = ctx.rng.gen_range(10.0..300.0);
        Self::script_event(ctx, sc.index, "checkpoints", vec![("pause", s("")), ("stop", s(""))]);
        Self::script_event(
            ctx,
            sc.index,
            "metadata",
            vec![("duration", float(duration)), ("nimages", int(0)), ("totalCheckpoints", int(sc.remaining as i64))],
        );
        Self::script_state(ctx, &sc, "");
        Self::publish_script(ctx, &sc);
    }

    fn tick(&mut self, ctx: &mut Ctx) {
        // Finish or advance the current script.
        if let Some(cur) = &mut self.current {
            if cur.remaining > 0 {
                cur.remaining -= 1;
                cur.checkpoint += 1;
                let cur = cur.clone();
                Self::script_state(ctx, &cur, "");
                Self::log(ctx, cur.index, 20, &format!("{}: step {} done", cur.path, cur.checkpoint));
            } else {
                let mut cur = self.current.take().expect("current");
                if cur.fails {
                    cur.script_state = script_state::FAILED;
                    Self::log(ctx, cur.index, 40, &format!("{}: simulated failure", cur.path));
                    Self::script_state(ctx, &cur, "Simulated failure");
                } else {
                    cur.script_state = script_state::ENDING;
                    Self::script_state(ctx, &cur, "");
                    cur.script_state = script_state::DONE;
                    Self::script_state(ctx, &cur, "");
                }
                cur.process_state = process::DONE;
                cur.ts_process_end = unix_now();
                Self::publish_script(ctx, &cur);
                self.past.push_front(cur.index);
                if self.past.len() > PAST_MAX {
                    self.past.pop_back();
                }
                ctx.inner.bus.forget("Script", cur.index);
                self.publish_queue(ctx);
            }
        }
        // Start the next configured script.
        let next_ready = self.waiting.front().map(|s| s.process_state == process::CONFIGURED).unwrap_or(false);
        if self.current.is_none() && self.running && self.enabled && next_ready {
            let mut sc = self.waiting.pop_front().expect("front");
            sc.process_state = process::RUNNING;
            sc.script_state = script_state::RUNNING;
            sc.ts_run_start = unix_now();
            Self::script_state(ctx, &sc, "");
            Self::log(ctx, sc.index, 20, &format!("{}: running", sc.path));
            Self::publish_script(ctx, &sc);
            self.current = Some(sc);
            self.publish_queue(ctx);
        }
        self.configure_one(ctx);
        if self.waiting.len() < 3 && ctx.rng.gen_bool(0.25) {
            self.add_script(ctx);
        }
    }

    /// Called once per (real) second: script heartbeats every 5 s for live scripts.
    fn heartbeat(&mut self, ctx: &mut Ctx, beat: u64) {
        if !beat.is_multiple_of(SCRIPT_HEARTBEAT_INTERVAL) {
            return;
        }
        let live: Vec<i64> = self.current.iter().map(|s| s.index).chain(self.waiting.iter().map(|s| s.index)).collect();
        for i in live {
            Self::script_event(ctx, i, "heartbeat", vec![("heartbeat", Value::Bool(true))]);
        }
    }

    fn command(&mut self, ctx: &mut Ctx, cmd: &SalCommand) -> Option<CommandAck> {
        match cmd.name.as_str() {
            "showSchema" => {
                let path = field_str(cmd, "path").unwrap_or_default();
                let standard = field_bool(cmd, "isStandard").unwrap_or(true);
                let list = if standard { STANDARD_SCRIPTS } else { EXTERNAL_SCRIPTS };
                if !list.contains(&path.as_str()) {
                    let kind = if standard { "standard" } else { "external" };
                    return Some(CommandAck { code: ack::FAILED, result: format!("Unknown {kind} script {path:?}") });
                }
                ctx.event(
                    "configSchema",
                    vec![
                        ("isStandard", Value::Bool(standard)),
                        ("path", s(&path)),
                        ("configSchema", s(&schema_for(&path))),
                    ],
                );
                Some(done())
            }
            "showAvailableScripts" => {
                self.publish_available(ctx);
                Some(done())
            }
            "showQueue" => {
                self.publish_queue(ctx);
                Some(done())
            }
            "pause" | "resume" => {
                self.running = cmd.name == "resume";
                self.publish_queue(ctx);
                Some(done())
            }
            _ => None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// ATDome

/// ATDome model: azimuth moves to random targets, the main door opens and closes.
#[derive(Default)]
struct DomeSim {
    azimuth: f64,
    target: f64,
    moving: bool,
    door: f64,
    /// 0 still, +1 opening, -1 closing.
    door_dir: i32,
}

/// ATDome enumerations.
mod dome {
    pub const AZ_NOT_IN_MOTION: i64 = 1;
    pub const AZ_MOVING_CW: i64 = 2;
    pub const AZ_MOVING_CCW: i64 = 3;
    pub const AZ_CMD_GO_TO_POSITION: i64 = 2;
    pub const DOOR_CLOSED: i64 = 1;
    pub const DOOR_OPENED: i64 = 2;
    pub const DOOR_OPENING: i64 = 4;
    pub const DOOR_CLOSING: i64 = 5;
}

impl DomeSim {
    fn start(&mut self, ctx: &mut Ctx) {
        self.azimuth = (ctx.rng.gen_range(0.0..360.0f64) * 10.0).round() / 10.0;
        self.target = self.azimuth;
        ctx.event("azimuthState", vec![("state", int(dome::AZ_NOT_IN_MOTION)), ("homed", Value::Bool(true))]);
        ctx.event("mainDoorState", vec![("state", int(dome::DOOR_CLOSED))]);
        ctx.event("dropoutDoorState", vec![("state", int(dome::DOOR_CLOSED))]);
        ctx.event("azimuthInPosition", vec![("inPosition", Value::Bool(true))]);
        ctx.event("shutterInPosition", vec![("inPosition", Value::Bool(true))]);
        ctx.event("emergencyStop", vec![("active", Value::Bool(false))]);
    }

    fn tick(&mut self, ctx: &mut Ctx) -> Vec<(&'static str, &'static str, Value)> {
        const SPEED: f64 = 4.0; // deg per tick
        if !self.moving && ctx.rng.gen_bool(0.05) {
            self.target = (ctx.rng.gen_range(0.0..360.0f64) * 10.0).round() / 10.0;
            self.moving = true;
            let diff = (self.target - self.azimuth + 540.0).rem_euclid(360.0) - 180.0;
            let st = if diff >= 0.0 { dome::AZ_MOVING_CW } else { dome::AZ_MOVING_CCW };
            ctx.event(
                "azimuthCommandedState",
                vec![("commandedState", int(dome::AZ_CMD_GO_TO_POSITION)), ("azimuth", float(self.target))],
            );
            ctx.event("azimuthState", vec![("state", int(st)), ("homed", Value::Bool(true))]);
            ctx.event("azimuthInPosition", vec![("inPosition", Value::Bool(false))]);
        }
        if self.moving {
            let diff = (self.target - self.azimuth + 540.0).rem_euclid(360.0) - 180.0;
            if diff.abs() <= SPEED {
                self.azimuth = self.target;
                self.moving = false;
                ctx.event("azimuthState", vec![("state", int(dome::AZ_NOT_IN_MOTION)), ("homed", Value::Bool(true))]);
                ctx.event("azimuthInPosition", vec![("inPosition", Value::Bool(true))]);
            } else {
                self.azimuth = (self.azimuth + SPEED * diff.signum()).rem_euclid(360.0);
            }
        }
        if self.door_dir == 0 && ctx.rng.gen_bool(0.03) {
            self.door_dir = if self.door > 50.0 { -1 } else { 1 };
            let st = if self.door_dir > 0 { dome::DOOR_OPENING } else { dome::DOOR_CLOSING };
            ctx.event("mainDoorState", vec![("state", int(st))]);
            ctx.event("shutterInPosition", vec![("inPosition", Value::Bool(false))]);
        } else if self.door_dir != 0 {
            self.door = (self.door + 10.0 * self.door_dir as f64).clamp(0.0, 100.0);
            if self.door <= 0.0 || self.door >= 100.0 {
                let st = if self.door >= 100.0 { dome::DOOR_OPENED } else { dome::DOOR_CLOSED };
                self.door_dir = 0;
                ctx.event("mainDoorState", vec![("state", int(st))]);
                ctx.event("shutterInPosition", vec![("inPosition", Value::Bool(true))]);
            }
        }
        vec![
            ("position", "azimuthPosition", float(self.azimuth)),
            ("position", "mainDoorOpeningPercentage", float(self.door)),
            ("position", "dropoutDoorOpeningPercentage", float(0.0)),
            ("position", "azimuthEncoderPosition", int((self.azimuth * 1000.0).round() as i64)),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shutdown;
    use love_plugin_api::abi::InputMsg;

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
