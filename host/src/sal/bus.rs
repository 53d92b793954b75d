//! In-process sample routing with late-joiner history, for the sim and replay sources: one
//! [`ComponentRouter`] per component (the same routing as the Kafka source's: bounded queues,
//! telemetry dropped first for a subscriber that does not keep up, the latest event of each
//! topic and index for later subscribers). A new subscriber's history is queued under the same
//! lock as its registration, so it always arrives before any live sample, with no gap and no
//! duplicate.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use love_plugin_api::abi::InputMsg;

use super::router::ComponentRouter;
use super::{SalError, SampleTx};

/// Routes published samples to matching subscribers and keeps the latest sample of each event.
#[derive(Default)]
pub struct Bus {
    routers: Mutex<HashMap<String, ComponentRouter>>,
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bus").field("components", &self.lock().len()).finish()
    }
}

impl Bus {
    /// An empty bus.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, ComponentRouter>> {
        crate::locks::lock(&self.routers)
    }

    /// Deliver matching samples to `tx`: with `history` first the latest event of each topic
    /// published so far (oldest first), then every new one. Must run inside a tokio runtime.
    pub fn subscribe(&self, component: &str, index: i64, history: bool, tx: SampleTx) -> Result<(), SalError> {
        let handle = tokio::runtime::Handle::try_current()
            .map_err(|_| SalError::Other(format!("subscribing {component}:{index}: no tokio runtime")))?;
        self.lock().entry(component.to_string()).or_default().subscribe(index, history, tx, &handle);
        Ok(())
    }

    /// Route a sample to every matching subscriber; an event also becomes its topic's history.
    pub fn publish(&self, msg: Arc<InputMsg>) {
        let mut routers = self.lock();
        let comp = msg.sample.component.as_str();
        let router = match routers.get_mut(comp) {
            Some(r) => r,
            None => routers.entry(comp.to_string()).or_default(),
        };
        router.publish(comp, &msg, false, false, Instant::now());
    }

    /// Drop the history of `component`:`index` (a script that has finished, say), so it is not
    /// replayed to late joiners and memory stays bounded.
    pub fn forget(&self, component: &str, index: i64) {
        if let Some(r) = self.lock().get_mut(component) {
            r.forget(index);
        }
    }

    /// Number of live subscriptions.
    pub fn subscriber_count(&self) -> usize {
        self.lock().values_mut().map(|r| r.subscriber_count()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sal::{next_seq, sample_msg};
    use love_plugin_api::abi::{Sample, TopicKind};
    use tokio::sync::mpsc;

    fn msg(component: &str, index: i64, topic: &str, kind: TopicKind) -> Arc<InputMsg> {
        sample_msg(Sample {
            component: component.into(),
            sal_index: index,
            topic: topic.into(),
            kind,
            seq: next_seq(),
            ..Default::default()
        })
    }

    #[tokio::test]
    async fn history_first_then_live_with_index_routing() {
        let bus = Bus::new();
        bus.publish(msg("Script", 100001, "state", TopicKind::EVENT));
        bus.publish(msg("Script", 100002, "state", TopicKind::EVENT));
        bus.publish(msg("Script", 100001, "state", TopicKind::EVENT)); // replaces the first
        bus.publish(msg("Script", 100001, "tel", TopicKind::TELEMETRY)); // not history
        let (tx_all, mut all) = mpsc::channel(16);
        let (tx_one, mut one) = mpsc::channel(16);
        let (tx_other, mut other) = mpsc::channel(16);
        bus.subscribe("Script", 0, true, tx_all).unwrap();
        bus.subscribe("Script", 100002, true, tx_one).unwrap();
        bus.subscribe("ATDome", 0, true, tx_other).unwrap();
        bus.publish(msg("Script", 100002, "heartbeat", TopicKind::EVENT));

        let got: Vec<(i64, String)> = [all.recv().await, all.recv().await, all.recv().await]
            .into_iter()
            .map(|m| m.unwrap())
            .map(|m| (m.sample.sal_index, m.sample.topic.to_string()))
            .collect();
        assert_eq!(got, [(100002, "state".into()), (100001, "state".into()), (100002, "heartbeat".into())]);
        assert_eq!(one.recv().await.unwrap().sample.topic.as_str(), "state");
        assert_eq!(one.recv().await.unwrap().sample.topic.as_str(), "heartbeat");
        assert!(other.try_recv().is_err());

        bus.forget("Script", 100002);
        let (tx_late, mut late) = mpsc::channel(16);
        bus.subscribe("Script", 0, true, tx_late).unwrap();
        assert_eq!(late.recv().await.unwrap().sample.sal_index, 100001);
        tokio::task::yield_now().await;
        assert!(late.try_recv().is_err());

        // Without history: only what is published from now on.
        let (tx_live, mut live) = mpsc::channel(16);
        bus.subscribe("Script", 0, false, tx_live).unwrap();
        bus.publish(msg("Script", 100003, "logMessage", TopicKind::EVENT));
        assert_eq!(live.recv().await.unwrap().sample.sal_index, 100003);
        tokio::task::yield_now().await;
        assert!(live.try_recv().is_err());
    }

    #[tokio::test]
    async fn closed_subscribers_are_dropped() {
        let bus = Bus::new();
        let (tx, rx) = mpsc::channel(1);
        bus.subscribe("ATDome", 0, true, tx).unwrap();
        assert_eq!(bus.subscriber_count(), 1);
        drop(rx);
        bus.publish(msg("ATDome", 0, "heartbeat", TopicKind::EVENT));
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        bus.publish(msg("ATDome", 0, "heartbeat", TopicKind::EVENT));
        assert_eq!(bus.subscriber_count(), 0);
    }
}
