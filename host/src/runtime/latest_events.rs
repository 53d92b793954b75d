//! The latest sample of each event of a producer's own component: what a producer that
//! replaces it without its state is handed, as a SAL source hands its history to a new
//! subscriber.

use std::collections::HashMap;
use std::sync::Arc;

use love_plugin_api::abi::{InputMsg, TopicKind};

/// The latest event samples of one component, by topic and SAL index.
#[derive(Debug, Default)]
pub(super) struct LatestEvents {
    component: String,
    by_topic: HashMap<String, HashMap<i64, Arc<InputMsg>>>,
}

impl LatestEvents {
    pub(super) fn new(component: &str) -> Self {
        LatestEvents { component: component.to_string(), by_topic: HashMap::new() }
    }

    /// Keep `msg` if it is an event of the component (telemetry and other components' samples
    /// are not history a new producer needs).
    pub(super) fn record(&mut self, msg: &Arc<InputMsg>) {
        let s = &msg.sample;
        if s.kind != TopicKind::EVENT || s.component.as_str() != self.component {
            return;
        }
        match self.by_topic.get_mut(s.topic.as_str()) {
            Some(by_index) => {
                by_index.insert(s.sal_index, msg.clone());
            }
            None => {
                self.by_topic.entry(s.topic.to_string()).or_default().insert(s.sal_index, msg.clone());
            }
        }
    }

    /// The kept samples in the order they arrived (the source's sequence numbers).
    pub(super) fn in_arrival_order(&self) -> Vec<Arc<InputMsg>> {
        let mut kept: Vec<Arc<InputMsg>> = self.by_topic.values().flat_map(|m| m.values().cloned()).collect();
        kept.sort_by_key(|m| m.sample.seq);
        kept
    }
}
