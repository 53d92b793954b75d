//! Graceful shutdown: one trigger, any number of listeners.

use tokio::sync::watch;

/// Fires once, when the host is asked to stop.
#[derive(Debug)]
pub struct ShutdownTrigger {
    tx: watch::Sender<bool>,
}

/// Tells a task that the host is stopping.
#[derive(Debug, Clone)]
pub struct Shutdown {
    rx: watch::Receiver<bool>,
}

/// A connected trigger and listener.
pub fn channel() -> (ShutdownTrigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (ShutdownTrigger { tx }, Shutdown { rx })
}

impl ShutdownTrigger {
    /// Ask every listener to stop.
    pub fn trigger(&self) {
        let _ = self.tx.send(true);
    }

    /// A new listener.
    pub fn subscribe(&self) -> Shutdown {
        Shutdown { rx: self.tx.subscribe() }
    }
}

impl Shutdown {
    /// Whether stopping has been asked for.
    pub fn is_triggered(&self) -> bool {
        *self.rx.borrow()
    }

    /// Wait until stopping is asked for (returns at once if it already was).
    pub async fn wait(&mut self) {
        let _ = self.rx.wait_for(|v| *v).await;
    }
}

/// Trigger `trigger` on SIGTERM or SIGINT.
pub fn on_signals(trigger: std::sync::Arc<ShutdownTrigger>) -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received: stopping"),
            _ = int.recv() => tracing::info!("SIGINT received: stopping"),
        }
        trigger.trigger();
    });
    Ok(())
}
