//! Commands: written as a salobj remote writes them, acknowledged through the component's
//! `ackcmd`, which the read loop reads ([`super::read`]) and hands to the waiting command.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use love_plugin_api::abi::TopicKind;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::{read, Comp, Inner, WriteOptions};
use crate::locks::lock;
use crate::sal::{ack, CommandAck, SalCommand};

pub(super) struct AckMsg {
    pub(super) code: i64,
    pub(super) result: String,
    pub(super) timeout: f64,
}

type AckKey = (i64, String, i64);

#[derive(Default)]
pub(super) struct AckWaiters {
    pub(super) map: Mutex<HashMap<AckKey, mpsc::UnboundedSender<AckMsg>>>,
}

/// Start (once per component) the reading of `..ackcmd`; returns when a command written after
/// it cannot miss its ack.
pub(super) async fn ack_waiters(inner: &Arc<Inner>, comp: &Arc<Comp>) -> Arc<AckWaiters> {
    comp.acks
        .get_or_init(|| async {
            let waiters = Arc::new(AckWaiters::default());
            let (done, ready) = tokio::sync::oneshot::channel();
            let asked = read::Control::Acks { comp: comp.clone(), waiters: waiters.clone(), done };
            if lock(&inner.control).send(asked).is_ok() {
                let _ = tokio::time::timeout(Duration::from_secs(10), ready).await;
            }
            waiters
        })
        .await
        .clone()
}

struct WaiterGuard<'a> {
    waiters: &'a AckWaiters,
    key: AckKey,
}

impl Drop for WaiterGuard<'_> {
    fn drop(&mut self) {
        lock(&self.waiters.map).remove(&self.key);
    }
}

/// The wait for a command's final ack when the caller gave none that can be used.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(5);

/// How long to wait for a command's final ack: its timeout in seconds, capped at 1e6 s; not a
/// number, infinite, zero or negative: [`DEFAULT_COMMAND_TIMEOUT`] (as the host runtime does).
fn command_wait(timeout: f64) -> Duration {
    if timeout.is_finite() && timeout > 0.0 {
        Duration::from_secs_f64(timeout.min(1e6))
    } else {
        DEFAULT_COMMAND_TIMEOUT
    }
}

pub(super) async fn run_command(inner: Arc<Inner>, cmd: SalCommand) -> CommandAck {
    let comp = inner.comp(&cmd.component);
    let waiters = ack_waiters(&inner, &comp).await;
    let sal = format!("command_{}", cmd.name);
    let full = inner.config.topic_name(&cmd.component, &sal);
    let seq = inner.next_cmd_seq(&full);
    let identity = inner.writer.identity().to_string();
    let key = (seq, identity.clone(), inner.writer.origin());
    let (tx, mut rx) = mpsc::unbounded_channel();
    lock(&waiters.map).insert(key.clone(), tx);
    let _guard = WaiterGuard { waiters: &waiters, key };
    let opts = WriteOptions { seq_num: Some(seq), ..Default::default() };
    if let Err(e) =
        inner.writer.write_with(&cmd.component, cmd.index, TopicKind::COMMAND, &cmd.name, &cmd.fields, opts).await
    {
        warn!(topic = %full, "kafka: command not sent: {e}");
        return CommandAck { code: ack::FAILED, result: format!("Command not sent: {e}") };
    }
    debug!(topic = %full, seq, "kafka: command sent");
    let mut deadline = tokio::time::Instant::now() + command_wait(cmd.timeout);
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(a)) => match a.code {
                ack::INPROGRESS => {
                    if a.timeout > 0.0 {
                        deadline =
                            deadline.max(tokio::time::Instant::now() + Duration::from_secs_f64(a.timeout.min(1e6)));
                    }
                }
                ack::ACK | ack::STALLED => {}
                _ => return CommandAck { code: a.code, result: a.result },
            },
            Ok(None) => return CommandAck { code: ack::NOACK, result: "The ack reader stopped".into() },
            Err(_) => {
                return CommandAck {
                    code: ack::TIMEOUT,
                    result: format!("No final acknowledgement of {} within the timeout", cmd.name),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_timeouts_that_are_not_usable_get_the_default() {
        for t in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -1.0, 0.0, -0.0] {
            assert_eq!(command_wait(t), DEFAULT_COMMAND_TIMEOUT, "{t}");
        }
        assert_eq!(command_wait(2.5), Duration::from_millis(2500));
        assert_eq!(command_wait(1e300), Duration::from_secs(1_000_000));
    }
}
