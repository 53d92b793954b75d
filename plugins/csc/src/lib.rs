//! The `csc` producer plugin: the generic producer for any CSC of the topic catalog (spec
//! sections b, c and d), a thin shell over [`love_plugin_api::csc::CscCore`].
//!
//! It forwards every event at once (one-element list, stored as the topic's last sample),
//! every telemetry topic every `telemetry_period` seconds (bare object; a topic silent for
//! `telemetry_stale_after` seconds, default 30, is no longer re-sent: quirk 7 fixed), runs the
//! Heartbeat stream, sends initial data on connect and answers initial_state requests by the
//! csc rule. It claims no component name: the host picks it for any known CSC that no other
//! plugin claims.

use love_plugin_api::csc::CscCore;
use love_plugin_api::sdk::{Actions, Input, PluginError, ProducerConfig, ProducerLogic};

/// The generic CSC producer.
#[derive(Debug, Clone)]
pub struct CscProducer {
    core: CscCore,
}

impl CscProducer {
    /// Build the producer from its configuration.
    pub fn create(cfg: ProducerConfig) -> Result<Self, PluginError> {
        Ok(CscProducer { core: CscCore::new(&cfg)? })
    }

    /// The core, for inspection (tests, tools).
    pub fn core(&self) -> &CscCore {
        &self.core
    }
}

impl ProducerLogic for CscProducer {
    fn handle(&mut self, input: Input<'_>, now: f64, out: &mut Actions) -> Result<(), PluginError> {
        self.core.handle(input, now, out).map(|_| ())
    }

    fn snapshot(&self) -> Result<String, PluginError> {
        Ok(self.core.snapshot())
    }

    fn restore(&mut self, snapshot: &str) -> Result<(), PluginError> {
        self.core.restore(snapshot)
    }
}

#[cfg(feature = "export")]
love_plugin_api::export_plugin! {
    name: "csc",
    version: env!("CARGO_PKG_VERSION"),
    producer_type: "csc",
    claims: [],
    create: CscProducer::create,
}
