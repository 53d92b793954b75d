//! Graceful shutdown: one trigger, any number of listeners.

use tokio::sync::watch;

/// Fires once, when the host is asked to stop.
#[derive(Debug)]
pub struct ShutdownTrigger {
    tx: watch::Sender<bool>,
}

/// Tells a task that the host is stopping (or, for a [`Shutdown::child`], that its own part
/// is).
#[derive(Debug, Clone)]
pub struct Shutdown {
    rx: watch::Receiver<bool>,
    /// The listeners this one was made from: any of them stopping stops this one too.
    parents: Vec<watch::Receiver<bool>>,
}

/// A connected trigger and listener.
pub fn channel() -> (ShutdownTrigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (ShutdownTrigger { tx }, Shutdown { rx, parents: Vec::new() })
}

impl ShutdownTrigger {
    /// Ask every listener to stop.
    pub fn trigger(&self) {
        let _ = self.tx.send(true);
    }

    /// A new listener.
    pub fn subscribe(&self) -> Shutdown {
        Shutdown { rx: self.tx.subscribe(), parents: Vec::new() }
    }
}

impl Shutdown {
    /// Whether stopping has been asked for.
    pub fn is_triggered(&self) -> bool {
        *self.rx.borrow() || self.parents.iter().any(|p| *p.borrow())
    }

    /// Wait until stopping is asked for (returns at once if it already was).
    pub async fn wait(&mut self) {
        let mut all: Vec<&mut watch::Receiver<bool>> = Vec::with_capacity(1 + self.parents.len());
        all.push(&mut self.rx);
        all.extend(self.parents.iter_mut());
        let waits = all.into_iter().map(|rx| Box::pin(async move { rx.wait_for(|v| *v).await.is_ok() }));
        // A listener whose trigger is gone never fires: wait for one that does.
        let mut waits: Vec<_> = waits.collect();
        while !waits.is_empty() {
            let (fired, _, rest) = futures_util::future::select_all(waits).await;
            if fired {
                return;
            }
            waits = rest;
        }
        std::future::pending::<()>().await
    }

    /// A listener stopped by this one or by its own trigger (one component's producer, stopped
    /// alone when the component moves to another host).
    pub fn child(&self) -> (ShutdownTrigger, Shutdown) {
        let (tx, rx) = watch::channel(false);
        let mut parents = self.parents.clone();
        parents.push(self.rx.clone());
        (ShutdownTrigger { tx }, Shutdown { rx, parents })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_child_stops_with_its_parent_or_alone() {
        let (host, root) = channel();
        let (one, mut first) = root.child();
        let (_two, mut second) = root.child();
        one.trigger();
        first.wait().await;
        assert!(first.is_triggered() && !second.is_triggered() && !root.is_triggered());
        host.trigger();
        second.wait().await;
        assert!(second.is_triggered());
    }

    #[tokio::test]
    async fn a_dropped_trigger_does_not_wake_a_child() {
        let (host, root) = channel();
        let (child_trigger, mut child) = root.child();
        drop(child_trigger);
        let waited = tokio::time::timeout(std::time::Duration::from_millis(50), child.wait()).await;
        assert!(waited.is_err(), "woken without a trigger");
        host.trigger();
        child.wait().await;
    }
}
