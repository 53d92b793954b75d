//! The producer's intake on the shared runtime: its SAL samples on their way into its inbox,
//! and the watchdog that looks at its calls.

use std::sync::Arc;
use std::time::Duration;

use love_plugin_api::abi::InputMsg;
use tokio::sync::mpsc;
use tracing::error;

use super::{ProducerStatus, Serving};
use crate::component::ComponentName;
use crate::locks::lock;
use crate::shutdown::Shutdown;
use crate::watchdog::{check_period, mono_ns};

/// Stands in front of a producer on the shared runtime: forwards its SAL samples into its inbox
/// (waiting for room while the producer is busy, dropping and counting while it is stuck) and
/// runs its watchdog.
pub(super) struct Intake {
    pub(super) component: ComponentName,
    pub(super) status: Arc<ProducerStatus>,
    pub(super) current: Arc<std::sync::Mutex<Serving>>,
    /// The watchdog's bound on a call.
    pub(super) bound: Duration,
}

impl Intake {
    pub(super) async fn run(
        self,
        mut intake: mpsc::Receiver<Arc<InputMsg>>,
        inbox: mpsc::Sender<Arc<InputMsg>>,
        mut shutdown: Shutdown,
    ) {
        let mut tick = tokio::time::interval(check_period(self.bound));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // A sample waiting for room in the inbox.
        let mut pending: Option<Arc<InputMsg>> = None;
        loop {
            tokio::select! {
                biased;
                _ = shutdown.wait() => break,
                _ = tick.tick() => {
                    self.check();
                    if self.status.clock.is_stuck() && pending.take().is_some() {
                        self.status.inputs_dropped.inc();
                    }
                }
                permit = inbox.reserve(), if pending.is_some() => match permit {
                    Ok(p) => p.send(pending.take().expect("pending sample")),
                    Err(_) => break,
                },
                m = intake.recv(), if pending.is_none() => match m {
                    None => break,
                    Some(m) if self.status.clock.is_stuck() => {
                        let _ = m;
                        self.status.inputs_dropped.inc();
                    }
                    Some(m) => match inbox.try_send(m) {
                        Ok(()) => {}
                        Err(mpsc::error::TrySendError::Full(m)) => pending = Some(m),
                        Err(mpsc::error::TrySendError::Closed(_)) => break,
                    },
                },
            }
        }
    }

    /// The watchdog's look at the producer's clock.
    fn check(&self) {
        let Some(stuck) = self.status.clock.check(mono_ns(), self.bound) else { return };
        let label = lock(&self.current).label.clone();
        let (c, i) = (&self.component.name, self.component.index);
        error!(
            component = %c, index = i, plugin = %label, call = stuck.call.describe(),
            "producer {} ({label}) is stuck: {} has not returned for {:.1} s (watchdog bound {:.1} s); \
             its inputs are dropped until it returns, the other producers keep running",
            self.component, stuck.call.describe(), stuck.elapsed.as_secs_f64(), self.bound.as_secs_f64()
        );
    }
}
