//! A test driver that runs any producer in-process, without the host, from a list of inputs.
//!
//! ```
//! use love_plugin_api::driver::TestDriver;
//! use love_plugin_api::sdk::{Actions, Input, PluginError, ProducerConfig, ProducerLogic};
//!
//! struct Echo;
//! impl ProducerLogic for Echo {
//!     fn handle(&mut self, input: Input<'_>, now: f64, out: &mut Actions) -> Result<(), PluginError> {
//!         if let Input::Register = input {
//!             out.send(love_plugin_api::message::subscription("Echo", now));
//!         }
//!         Ok(())
//!     }
//!     fn snapshot(&self) -> Result<String, PluginError> { Ok(String::new()) }
//!     fn restore(&mut self, _: &str) -> Result<(), PluginError> { Ok(()) }
//! }
//!
//! let mut driver = TestDriver::new(Echo);
//! let sent = driver.sent(love_plugin_api::sdk::Input::Register, 1.5).unwrap();
//! assert_eq!(sent.len(), 1);
//! assert!(sent[0].contains("\"csc\": \"Echo\""));
//! ```

use abi_stable::std_types::{RResult, RStr};

use crate::abi::{ProducerBox, Sample};
use crate::sdk::{into_producer_box, Action, Input, PluginError, ProducerConfig, ProducerLogic};

/// Drives one producer through the same stable boundary the host uses (encode, call, decode),
/// so a test exercises exactly what runs in production, panics caught included.
pub struct TestDriver {
    producer: ProducerBox,
    /// The time of the last input.
    pub now: f64,
    /// Every action returned so far, in order.
    pub history: Vec<Action>,
}

impl TestDriver {
    /// Drive a producer value.
    pub fn new<P: ProducerLogic>(producer: P) -> Self {
        Self::from_box(into_producer_box(producer))
    }

    /// Drive a producer built by a plugin's create function from `config`.
    pub fn create<P: ProducerLogic>(
        create: fn(ProducerConfig) -> Result<P, PluginError>,
        config: &ProducerConfig,
    ) -> Result<Self, PluginError> {
        let text = serde_json::to_string(config)?;
        match crate::sdk::create_guarded(RStr::from(text.as_str()), create) {
            RResult::ROk(b) => Ok(Self::from_box(b)),
            RResult::RErr(e) => Err(PluginError(e.to_string())),
        }
    }

    /// Drive an already boxed producer (for example one created by a loaded plugin).
    pub fn from_box(producer: ProducerBox) -> Self {
        TestDriver { producer, now: 0.0, history: Vec::new() }
    }

    /// Feed one input at time `now`; returns its decoded actions.
    pub fn input(&mut self, input: Input<'_>, now: f64) -> Result<Vec<Action>, PluginError> {
        self.now = now;
        let msg = input.encode();
        match self.producer.handle(&msg, now) {
            RResult::ROk(actions) => {
                let decoded: Vec<Action> = actions.iter().map(Action::decode).collect();
                self.history.extend(decoded.iter().cloned());
                Ok(decoded)
            }
            RResult::RErr(e) => Err(PluginError(e.to_string())),
        }
    }

    /// Feed one input and return only the texts of the messages sent.
    pub fn sent(&mut self, input: Input<'_>, now: f64) -> Result<Vec<String>, PluginError> {
        Ok(self
            .input(input, now)?
            .into_iter()
            .filter_map(|a| match a {
                Action::Send(m) => Some(m.text),
                _ => None,
            })
            .collect())
    }

    /// Feed a SAL sample.
    pub fn sample(&mut self, sample: &Sample, now: f64) -> Result<Vec<String>, PluginError> {
        self.sent(Input::Sample(sample), now)
    }

    /// Feed a manager message.
    pub fn manager(&mut self, text: &str, now: f64) -> Result<Vec<String>, PluginError> {
        self.sent(Input::ManagerMessage(text), now)
    }

    /// The producer's snapshot.
    pub fn snapshot(&self) -> Result<String, PluginError> {
        match self.producer.snapshot() {
            RResult::ROk(s) => Ok(s.into()),
            RResult::RErr(e) => Err(PluginError(e.to_string())),
        }
    }

    /// Restore a snapshot into the producer.
    pub fn restore(&mut self, snapshot: &str) -> Result<(), PluginError> {
        match self.producer.restore(RStr::from(snapshot)) {
            RResult::ROk(()) => Ok(()),
            RResult::RErr(e) => Err(PluginError(e.to_string())),
        }
    }

    /// The time of the latest wake-up the producer asked for, if any.
    pub fn last_wake(&self) -> Option<f64> {
        self.history.iter().rev().find_map(|a| match a {
            Action::WakeAt(t) => Some(*t),
            _ => None,
        })
    }
}
