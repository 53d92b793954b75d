//! Starting a producer: its thread, its channels and its intake.

use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::intake::Intake;
use super::task::{ProducerTask, Receivers, Senders};
use super::{ProducerHandle, ProducerSpec, ProducerStatus, RuntimeContext, Serving};

/// Capacity of a producer's intake (the channel its SAL subscriptions write to, in front of its
/// inbox): small, the inbox holds the backlog.
const INTAKE_CAPACITY: usize = 64;

/// Create the producer on a thread of its own and start it there (creation errors are reported
/// to the caller before anything runs; a `create` that does not return within the call timeout
/// is an error too, and its thread is abandoned). Must be called within a tokio runtime: the
/// producer's intake, its SAL subscriptions and its commands run on it.
pub fn spawn_producer(spec: ProducerSpec, ctx: RuntimeContext) -> Result<ProducerHandle, String> {
    let config_json = serde_json::to_string(&spec.config).map_err(|e| e.to_string())?;
    let main = tokio::runtime::Handle::try_current()
        .map_err(|_| format!("{}: producers must be started within a tokio runtime", spec.component))?;
    let status = Arc::new(ProducerStatus::new());
    let current = Arc::new(std::sync::Mutex::new(Serving {
        producer_type: spec.producer_type.clone(),
        label: spec.label.clone(),
    }));
    let (intake_tx, intake_rx) = mpsc::channel(INTAKE_CAPACITY);
    let (inbox_tx, inbox_rx) = mpsc::channel(ctx.settings.inbox_capacity);
    let (ack_tx, ack_rx) = mpsc::unbounded_channel();
    let (control_tx, control_rx) = mpsc::channel(4);
    let receivers = Receivers { inbox: inbox_rx, acks: ack_rx, events: ctx.outbox.events(), control: control_rx };
    let task = ProducerTask::new(
        &spec,
        config_json,
        (ctx.clone(), main.clone()),
        (status.clone(), current.clone()),
        Senders { intake: intake_tx, acks: ack_tx },
    );
    let (created_tx, created_rx) = sync_channel::<Result<(), String>>(1);
    let (done_tx, done_rx) = oneshot::channel::<()>();
    std::thread::Builder::new()
        .name(format!("p:{}", spec.component))
        .spawn(move || task.run_thread(receivers, created_tx, done_tx))
        .map_err(|e| format!("{}: cannot start its thread: {e}", spec.component))?;
    wait_created(&spec, &created_rx, ctx.settings.call_timeout)?;
    let intake = Intake {
        component: spec.component.clone(),
        status: status.clone(),
        current: current.clone(),
        bound: ctx.settings.call_timeout,
    };
    main.spawn(intake.run(intake_rx, inbox_tx, ctx.shutdown.clone()));
    let task = main.spawn(async move {
        let _ = done_rx.await;
    });
    Ok(ProducerHandle {
        component: spec.component,
        producer_type: spec.producer_type,
        label: spec.label,
        current,
        status,
        control: control_tx,
        task,
    })
}

/// Wait for the producer's thread to say it has created the producer, at most `bound`.
fn wait_created(spec: &ProducerSpec, created: &Receiver<Result<(), String>>, bound: Duration) -> Result<(), String> {
    match created.recv_timeout(bound) {
        Ok(result) => result,
        Err(RecvTimeoutError::Timeout) => Err(format!(
            "{}: creating the producer ({}) did not return within {:.1} s; abandoned",
            spec.component,
            spec.label,
            bound.as_secs_f64()
        )),
        Err(RecvTimeoutError::Disconnected) => {
            Err(format!("{}: the producer's thread ended while creating it", spec.component))
        }
    }
}
