//! The Watcher model: raises, escalates, acknowledges and clears a fixed set of alarms, and
//! answers `acknowledge` and `showAlarms`.

use love_plugin_api::abi::Value;
use rand::Rng;

use super::generic::{done, field_str, float, int, s, Ctx};
use super::Model;
use crate::clock::unix_now;
use crate::sal::{ack, CommandAck, SalCommand};

/// AlarmSeverity (ts_xml Watcher): NONE 1, WARNING 2, SERIOUS 3, CRITICAL 4.
pub(super) mod severity {
    pub const NONE: i64 = 1;
    pub const WARNING: i64 = 2;
    pub const SERIOUS: i64 = 3;
    pub const CRITICAL: i64 = 4;
}

pub(super) const ALARMS: &[(&str, &str)] = &[
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

pub(super) struct WatcherSim {
    alarms: Vec<Alarm>,
    escalations: u64,
}

impl WatcherSim {
    pub(super) fn new() -> Self {
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
}

impl Model for WatcherSim {
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
