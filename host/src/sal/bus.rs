//! In-process sample routing with late-joiner history, shared by the sim and replay sources.
//!
//! Every subscriber gets its own unbounded queue drained into its [`SampleTx`] by a small task:
//! publishing never blocks or drops, and a new subscriber's history is queued under the same
//! lock as its registration, so it always arrives before any live sample, with no gap and no
//! duplicate.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use love_plugin_api::abi::{InputMsg, TopicKind};
use tokio::sync::mpsc;

use super::{route_matches, SalError, SampleTx};

/// Routes published samples to matching subscribers and keeps the latest sample of each event.
#[derive(Debug, Default)]
pub struct Bus {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    subs: Vec<Sub>,
    /// Latest event sample per (component, index, topic).
    history: HashMap<(String, i64, String), Arc<InputMsg>>,
}

#[derive(Debug)]
struct Sub {
    component: String,
    index: i64,
    queue: mpsc::UnboundedSender<Arc<InputMsg>>,
}

impl Bus {
    /// An empty bus.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        crate::locks::lock(&self.state)
    }

    /// Deliver matching samples to `tx`: with `history` first the latest event of each topic
    /// published so far (oldest first), then every new one. Must run inside a tokio runtime.
    pub fn subscribe(&self, component: &str, index: i64, history: bool, tx: SampleTx) -> Result<(), SalError> {
        let handle = tokio::runtime::Handle::try_current()
            .map_err(|_| SalError::Other(format!("subscribing {component}:{index}: no tokio runtime")))?;
        let (queue, mut rx) = mpsc::unbounded_channel::<Arc<InputMsg>>();
        {
            let mut st = self.lock();
            let mut hist: Vec<&Arc<InputMsg>> = st
                .history
                .values()
                .filter(|m| history && route_matches(component, index, &m.sample.component, m.sample.sal_index))
                .collect();
            hist.sort_by_key(|m| m.sample.seq);
            for m in hist {
                let _ = queue.send(m.clone());
            }
            st.subs.push(Sub { component: component.to_string(), index, queue });
        }
        handle.spawn(async move {
            while let Some(m) = rx.recv().await {
                if tx.send(m).await.is_err() {
                    break;
                }
            }
        });
        Ok(())
    }

    /// Route a sample to every matching subscriber; an event also becomes its topic's history.
    pub fn publish(&self, msg: Arc<InputMsg>) {
        let mut st = self.lock();
        let s = &msg.sample;
        if s.kind == TopicKind::EVENT {
            st.history.insert((s.component.to_string(), s.sal_index, s.topic.to_string()), msg.clone());
        }
        st.subs.retain(|sub| {
            if route_matches(&sub.component, sub.index, &s.component, s.sal_index) {
                sub.queue.send(msg.clone()).is_ok()
            } else {
                !sub.queue.is_closed()
            }
        });
    }

    /// Drop the history of `component`:`index` (a script that has finished, say), so it is not
    /// replayed to late joiners and memory stays bounded.
    pub fn forget(&self, component: &str, index: i64) {
        self.lock().history.retain(|(c, i, _), _| !(c == component && *i == index));
    }

    /// Number of live subscriptions.
    pub fn subscriber_count(&self) -> usize {
        let mut st = self.lock();
        st.subs.retain(|s| !s.queue.is_closed());
        st.subs.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sal::{next_seq, sample_msg};
    use love_plugin_api::abi::Sample;

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
