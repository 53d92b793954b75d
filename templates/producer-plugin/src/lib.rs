//! `my-producer`: a love-host producer plugin (template; see PLUGINS.md at the root of the
//! love-host repository).
//!
//! As written it serves `MyComponent` exactly as the generic `csc` producer does (through
//! [`CscCore`]) and counts the samples it has seen, in a special stream `sampleCount`
//! (frontend subscription `event-MyComponent-0-sampleCount`). Replace the counting with what
//! your team needs; keep the shape: the core first, your own state next, a versioned snapshot.
//!
//! Rules (the host relies on them): no I/O, no threads, no clock (`now` comes with every call),
//! no global state. Every output is an action pushed into `out`.

use love_plugin_api::csc::CscCore;
use love_plugin_api::snapshot::parse_versioned;
use love_plugin_api::sdk::{Actions, Input, PluginError, ProducerConfig, ProducerLogic};

// RENAME: the plugin's name, its producer type and the components it claims.
/// The plugin name (upgrades match on it).
pub const PLUGIN_NAME: &str = "my-producer";
/// The producer type (what `--producer-type NAME=TYPE` selects).
pub const PRODUCER_TYPE: &str = "my-producer";
/// The name of this producer's special stream.
pub const STREAM: &str = "sampleCount";
/// The snapshot format version. Bump it when the format changes; keep reading older ones.
pub const SNAPSHOT_VERSION: u64 = 1;

/// The producer.
#[derive(Debug, Clone)]
pub struct MyProducer {
    core: CscCore,
    samples: u64,
}

impl MyProducer {
    /// Build the producer from the configuration the host gives it.
    pub fn create(cfg: ProducerConfig) -> Result<Self, PluginError> {
        let mut p = MyProducer { core: CscCore::new(&cfg)?, samples: 0 };
        p.core.store_special(STREAM, p.payload());
        Ok(p)
    }

    fn payload(&self) -> String {
        format!("{{\"count\": {{\"value\": {}, \"dataType\": \"Int\", \"units\": \"unitless\"}}}}", self.samples)
    }
}

impl ProducerLogic for MyProducer {
    fn handle(&mut self, input: Input<'_>, now: f64, out: &mut Actions) -> Result<(), PluginError> {
        // The generic CSC behaviour. START needs nothing: after a restore it must not reset state.
        self.core.handle(input, now, out)?;
        if let Input::Sample(sample) = input {
            if sample.component.as_str() == self.core.component() {
                self.samples += 1;
                let payload = self.payload();
                self.core.push_special(STREAM, payload, now, out);
            }
        }
        Ok(())
    }

    fn snapshot(&self) -> Result<String, PluginError> {
        Ok(format!("{{\"version\": {SNAPSHOT_VERSION}, \"samples\": {}, \"core\": {}}}", self.samples, self.core.snapshot()))
    }

    fn restore(&mut self, snapshot: &str) -> Result<(), PluginError> {
        // Refuses garbage, a missing version and a newer one; branch on the version returned to
        // read older formats.
        let (_version, v) = parse_versioned(PLUGIN_NAME, snapshot, SNAPSHOT_VERSION)?;
        let samples = v.get("samples").and_then(|x| x.as_u64()).ok_or_else(|| PluginError::new("snapshot without samples"))?;
        let core = v.get("core").ok_or_else(|| PluginError::new("snapshot without core"))?;
        // Restore into a copy: on any error the current state stays as it was.
        let mut restored = self.core.clone();
        restored.restore_value(core)?;
        self.core = restored;
        self.samples = samples;
        Ok(())
    }
}

love_plugin_api::export_plugin! {
    name: PLUGIN_NAME,
    version: env!("CARGO_PKG_VERSION"),
    producer_type: PRODUCER_TYPE,
    claims: ["MyComponent"], // RENAME: the components this producer serves
    create: MyProducer::create,
}
