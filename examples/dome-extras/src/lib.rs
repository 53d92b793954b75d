//! `dome-extras`: a third-party love-host producer for ATDome.
//!
//! It serves `ATDome` exactly as the generic `csc` producer does (it wraps
//! [`CscCore`], so the frontend gets every event, telemetry topic, the Heartbeat stream, initial
//! data and initial_state replies as before) and adds one derived stream, `azimuthError`
//! (frontend subscription `event-ATDome-0-azimuthError`):
//!
//! ```text
//! {"azimuthError":     {"value": -1.25, "dataType": "Float", "units": "deg"},
//!  "azimuthPosition":  {"value": 10.0,  "dataType": "Float", "units": "deg"},
//!  "azimuthCommanded": {"value": 11.25, "dataType": "Float", "units": "deg"}}
//! ```
//!
//! - `azimuthPosition` is the latest `position.azimuthPosition` telemetry,
//!   `azimuthCommanded` the latest `azimuthCommandedState.azimuth` event (NaN when the CSC
//!   starts or homes), and `azimuthError` their difference wrapped to (-180, 180] degrees.
//!   A value that is not known yet is NaN.
//! - The stream is sent when the error changes by at least `azimuth_error_resolution` degrees
//!   (setting, default 0.01), when it becomes known or unknown, and when the commanded azimuth
//!   changes. It is stored as a special stream of the core, so it is part of initial data
//!   (sent first) and answers initial_state requests for `azimuthError`.
//! - Snapshots carry a version; restore refuses a version it does not know.

use love_plugin_api::abi::{Sample, TopicKind};
use love_plugin_api::convert::field;
use love_plugin_api::csc::CscCore;
use love_plugin_api::json::{write_f64, write_str};
use love_plugin_api::sdk::{Actions, Input, PluginError, ProducerConfig, ProducerLogic};

/// The component this plugin claims.
pub const COMPONENT: &str = "ATDome";

/// The name of the derived stream.
pub const STREAM: &str = "azimuthError";

/// The snapshot format written by this version of the plugin. Bump it when the format
/// changes, and keep reading the older ones.
pub const SNAPSHOT_VERSION: u64 = 1;

/// Default for the `azimuth_error_resolution` setting, in degrees.
pub const DEFAULT_RESOLUTION: f64 = 0.01;

/// `position - commanded` in degrees, wrapped to (-180, 180].
pub fn azimuth_error(position: f64, commanded: f64) -> f64 {
    let d = (position - commanded).rem_euclid(360.0);
    if d > 180.0 {
        d - 360.0
    } else {
        d
    }
}

/// The ATDome producer: the generic CSC logic plus the `azimuthError` stream.
#[derive(Debug, Clone)]
pub struct DomeExtras {
    core: CscCore,
    /// Minimum change of the error that is sent (degrees).
    resolution: f64,
    /// Latest `position.azimuthPosition` (None: not seen yet, or not finite).
    position: Option<f64>,
    /// Latest `azimuthCommandedState.azimuth` (None: not seen yet, or NaN).
    commanded: Option<f64>,
    /// The error in the last stream stored and sent.
    sent_error: Option<f64>,
    /// The commanded azimuth in the last stream stored and sent.
    sent_commanded: Option<f64>,
}

fn finite(v: Option<f64>) -> Option<f64> {
    v.filter(|x| x.is_finite())
}

impl DomeExtras {
    /// Build the producer from the configuration the host gives it.
    pub fn create(cfg: ProducerConfig) -> Result<Self, PluginError> {
        let resolution = cfg.setting("azimuth_error_resolution", DEFAULT_RESOLUTION);
        if !(resolution.is_finite() && resolution >= 0.0) {
            return Err(PluginError::new(format!(
                "setting azimuth_error_resolution must be a non-negative number, not {resolution}"
            )));
        }
        let mut p = DomeExtras {
            core: CscCore::new(&cfg)?,
            resolution,
            position: None,
            commanded: None,
            sent_error: None,
            sent_commanded: None,
        };
        // Stored from the start, so initial data always has the stream (all NaN until known).
        p.core.store_special(STREAM, p.payload(None));
        Ok(p)
    }

    /// The generic core, for inspection.
    pub fn core(&self) -> &CscCore {
        &self.core
    }

    /// The current azimuth error, when both the position and the target are known.
    pub fn error(&self) -> Option<f64> {
        Some(azimuth_error(self.position?, self.commanded?))
    }

    /// The stream payload with `error` and the current position and target.
    fn payload(&self, error: Option<f64>) -> String {
        let mut s = String::with_capacity(220);
        s.push('{');
        for (i, (name, value)) in
            [("azimuthError", error), ("azimuthPosition", self.position), ("azimuthCommanded", self.commanded)]
                .into_iter()
                .enumerate()
        {
            if i > 0 {
                s.push_str(", ");
            }
            write_str(&mut s, name);
            s.push_str(": {\"value\": ");
            write_f64(&mut s, value.unwrap_or(f64::NAN));
            s.push_str(", \"dataType\": \"Float\", \"units\": \"deg\"}");
        }
        s.push('}');
        s
    }

    /// Take the values this plugin derives from out of a sample; returns whether one changed.
    fn observe(&mut self, sample: &Sample) -> bool {
        if sample.component.as_str() != self.core.component() {
            return false;
        }
        match (sample.kind, sample.topic.as_str()) {
            (TopicKind::TELEMETRY, "position") => {
                let v = finite(field(sample, "azimuthPosition").and_then(|v| v.as_f64()));
                let changed = v != self.position;
                self.position = v;
                changed
            }
            (TopicKind::EVENT, "azimuthCommandedState") => {
                let v = finite(field(sample, "azimuth").and_then(|v| v.as_f64()));
                let changed = v != self.commanded;
                self.commanded = v;
                changed
            }
            _ => false,
        }
    }

    /// Whether the stream must be sent again: the error moved by at least the resolution,
    /// became known or unknown, or the target changed.
    fn stream_changed(&self) -> bool {
        let error_changed = match (self.sent_error, self.error()) {
            (None, None) => false,
            (Some(a), Some(b)) => (a - b).abs() >= self.resolution && a != b,
            _ => true,
        };
        error_changed || self.commanded != self.sent_commanded
    }
}

impl ProducerLogic for DomeExtras {
    fn handle(&mut self, input: Input<'_>, now: f64, out: &mut Actions) -> Result<(), PluginError> {
        // Everything csc does: forward, store, heartbeat, initial data, replies, wake-ups.
        // START needs nothing here: after a restore it must not reset the restored state.
        self.core.handle(input, now, out)?;
        if let Input::Sample(sample) = input {
            if self.observe(sample) && self.stream_changed() {
                let error = self.error();
                self.sent_error = error;
                self.sent_commanded = self.commanded;
                let payload = self.payload(error);
                self.core.push_special(STREAM, payload, now, out);
            }
        }
        Ok(())
    }

    fn snapshot(&self) -> Result<String, PluginError> {
        let mut s = String::with_capacity(1024);
        s.push_str("{\"version\": ");
        s.push_str(&SNAPSHOT_VERSION.to_string());
        for (name, value) in [
            ("position", self.position),
            ("commanded", self.commanded),
            ("sent_error", self.sent_error),
            ("sent_commanded", self.sent_commanded),
        ] {
            s.push_str(", ");
            write_str(&mut s, name);
            s.push_str(": ");
            match value {
                // Only finite numbers are kept, so this is plain JSON.
                Some(v) => write_f64(&mut s, v),
                None => s.push_str("null"),
            }
        }
        s.push_str(", \"core\": ");
        s.push_str(&self.core.snapshot());
        s.push('}');
        Ok(s)
    }

    fn restore(&mut self, snapshot: &str) -> Result<(), PluginError> {
        let (_, v) = love_plugin_api::snapshot::parse_versioned("dome-extras", snapshot, SNAPSHOT_VERSION)?;
        let number = |name: &str| -> Result<Option<f64>, PluginError> {
            match v.get(name) {
                None => Ok(None),
                Some(x) if x.is_null() => Ok(None),
                Some(x) => x
                    .as_f64()
                    .map(Some)
                    .ok_or_else(|| PluginError::new(format!("dome-extras snapshot: {name} is not a number"))),
            }
        };
        let (position, commanded) = (number("position")?, number("commanded")?);
        let (sent_error, sent_commanded) = (number("sent_error")?, number("sent_commanded")?);
        let core = v.get("core").ok_or_else(|| PluginError::new("dome-extras snapshot without core"))?;
        // Restore into a copy: on any error the current state stays as it was.
        let mut restored = self.core.clone();
        restored.restore_value(core)?;
        self.core = restored;
        self.position = finite(position);
        self.commanded = finite(commanded);
        self.sent_error = finite(sent_error);
        self.sent_commanded = finite(sent_commanded);
        if self.core.special(STREAM).is_none() {
            let payload = self.payload(self.sent_error);
            self.core.store_special(STREAM, payload);
        }
        Ok(())
    }
}

love_plugin_api::export_plugin! {
    name: "dome-extras",
    version: env!("CARGO_PKG_VERSION"),
    producer_type: "dome-extras",
    claims: ["ATDome"],
    create: DomeExtras::create,
}
