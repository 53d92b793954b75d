//! What the producer's thread does on the SAL side: samples in (fresh telemetry first at a
//! tick), subscriptions, commands and the catalogs that answer a subscription.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use love_plugin_api::abi::{InputKind, InputMsg};
use tokio::sync::mpsc;
use tracing::warn;

use super::ProducerTask;
use crate::clock::unix_now;
use crate::runtime::FRESH_TELEMETRY_WAIT;
use crate::sal::SalCommand;

/// The longest command timeout a plugin can ask for (a day): keeps every source's timer finite.
const MAX_COMMAND_TIMEOUT: f64 = 86_400.0;

impl ProducerTask {
    pub(super) fn take_sample(&mut self, sample: Arc<InputMsg>) {
        self.status.last_sample.store(unix_now().to_bits(), Ordering::Relaxed);
        self.status.samples.inc();
        self.sup.sample(sample);
    }

    /// Before a tick (when a producer sends its telemetry): the telemetry of its own component
    /// that the source holds back to bound its decoding (Kafka) is routed now and read first,
    /// so that what the producer sends is the newest sample received. Waits at most
    /// [`FRESH_TELEMETRY_WAIT`] (a sample dropped on the way must not hold the tick).
    pub(super) async fn read_fresh_telemetry(&mut self, samples: &mut mpsc::Receiver<Arc<InputMsg>>) {
        if !self.sup.subscribes_own() {
            return;
        }
        let Some(newest) = self.ctx.sal.flush_telemetry(&self.component.name, self.component.index) else {
            return;
        };
        let deadline = tokio::time::Instant::now() + FRESH_TELEMETRY_WAIT;
        while let Ok(Some(sample)) = tokio::time::timeout_at(deadline, samples.recv()).await {
            let last = sample.sample.seq >= newest;
            self.take_sample(sample);
            if last {
                break;
            }
        }
    }

    pub(super) fn subscribe_sal(&mut self, component: String, index: i64, history: bool) {
        if !self.subscribed.insert((component.clone(), index)) {
            return;
        }
        // On the shared runtime: the source's forwarding tasks must not depend on this thread.
        let _in_main = self.main.enter();
        if let Err(e) = self.ctx.sal.subscribe(&component, index, history, self.senders.intake.clone()) {
            warn!(
                component = %self.component.name,
                index = self.component.index,
                "cannot subscribe to SAL {component}:{index}: {e}"
            );
        }
    }

    /// The catalog of `component` as the input that answers a subscription to it.
    pub(super) fn catalog_input(&self, component: &str, index: i64) -> Option<InputMsg> {
        let (c, i) = (&self.component.name, self.component.index);
        let Some(catalog) = (self.ctx.catalog)(component) else {
            warn!(component = %c, index = i, "producer subscribed to {component}:{index}, which the topic catalog does not know");
            return None;
        };
        match serde_json::to_string(&catalog) {
            Ok(json) => Some(InputMsg {
                kind: InputKind::CATALOG,
                name: component.into(),
                text: json.into(),
                ..Default::default()
            }),
            Err(e) => {
                warn!(component = %c, index = i, "catalog of {component}: {e}");
                None
            }
        }
    }

    /// Send a SAL command on the shared runtime; its ack comes back as an input.
    pub(super) fn command(&self, id: u64, mut cmd: SalCommand) {
        // The plugin's number, made safe for every source's timer.
        cmd.timeout =
            if cmd.timeout.is_finite() && cmd.timeout > 0.0 { cmd.timeout.min(MAX_COMMAND_TIMEOUT) } else { 5.0 };
        let sal = self.ctx.sal.clone();
        let tx = self.senders.acks.clone();
        self.main.spawn(async move {
            let ack = sal.command(cmd).await;
            let _ = tx.send((id, ack));
        });
    }
}
