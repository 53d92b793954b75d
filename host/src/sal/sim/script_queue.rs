//! The ScriptQueue model: runs a queue of scripts through their process and script states,
//! publishing each script's `Script` events (component `Script`, index = the script's index),
//! and answers `showSchema`, `showAvailableScripts`, `showQueue`, `pause` and `resume`.

use std::collections::VecDeque;

use love_plugin_api::abi::{TopicKind, Value};
use rand::Rng;

use super::generic::{done, field_bool, field_str, float, int, s, Ctx};
use super::Model;
use crate::clock::unix_now;
use crate::sal::{ack, CommandAck, SalCommand};

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

pub(super) struct QueueSim {
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
    pub(super) fn new(index: i64) -> Self {
        QueueSim {
            enabled: true,
            running: true,
            next_index: index.max(1) * SCRIPT_INDEX_MULT,
            waiting: VecDeque::new(),
            current: None,
            past: VecDeque::new(),
        }
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
}

impl Model for QueueSim {
    fn start(&mut self, ctx: &mut Ctx) {
        self.publish_available(ctx);
        self.publish_queue(ctx);
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
