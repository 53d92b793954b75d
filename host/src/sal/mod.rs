//! SAL sources: where samples come from and where commands go.
//!
//! The host reads SAL through [`SalSource`]. Sources deliver samples as ready-made
//! [`InputMsg`]s of kind `SAMPLE` behind an `Arc`, so one sample routed to several producers is
//! built once.

pub mod bus;
pub mod catalog;
pub mod kafka;
pub mod replay;
pub mod router;
pub mod sim;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use love_plugin_api::abi::{Field, InputKind, InputMsg, Sample};
use tokio::sync::mpsc;

/// Where a subscription's samples go.
pub type SampleTx = mpsc::Sender<Arc<InputMsg>>;

/// A SAL command a producer asked for.
#[derive(Debug, Clone)]
pub struct SalCommand {
    /// Target component.
    pub component: String,
    /// Target index.
    pub index: i64,
    /// Command name without prefix (`showSchema`).
    pub name: String,
    /// Parameters.
    pub fields: Vec<Field>,
    /// Timeout in seconds.
    pub timeout: f64,
}

/// The final acknowledgement of a command (SAL ack codes: 303 COMPLETE, -302 FAILED,
/// -304 TIMEOUT…).
#[derive(Debug, Clone, PartialEq)]
pub struct CommandAck {
    /// The ack code.
    pub code: i64,
    /// The result text.
    pub result: String,
}

/// SAL ack codes, shared with plugins (they see them in `Input::CommandAck`).
pub use love_plugin_api::sdk::ack;

/// Errors a source reports.
#[derive(Debug, thiserror::Error)]
pub enum SalError {
    /// The component is unknown to this source.
    #[error("component {0} is not known to the SAL source")]
    UnknownComponent(String),
    /// Anything else, with context.
    #[error("{0}")]
    Other(String),
}

/// A source of SAL samples and a path for SAL commands.
pub trait SalSource: Send + Sync + 'static {
    /// A short name for logs (`sim`, `replay`, `kafka`).
    fn name(&self) -> &str;

    /// Deliver the samples of `component`:`index` to `tx` from now on. Index 0 on an indexed
    /// component means every index, as salobj. With `history`, the latest historical sample of
    /// each event (salobj's late-joiner read) is delivered first; without, only what is
    /// published from now on (the scriptqueue's subscription to every script: events of
    /// scripts from before its start must not look new).
    fn subscribe(&self, component: &str, index: i64, history: bool, tx: SampleTx) -> Result<(), SalError>;

    /// Send a command and wait for its final acknowledgement (or the timeout).
    fn command(
        &self,
        cmd: SalCommand,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = CommandAck> + Send + 'static>>;

    /// Whether the source is connected and delivering (for readiness).
    fn is_ready(&self) -> bool {
        true
    }

    /// The source's own counters (name, value) for the metrics endpoint, e.g. Kafka's decoded
    /// and skipped (undecodable) records.
    fn counters(&self) -> Vec<(&'static str, u64)> {
        Vec::new()
    }

    /// Deliver now the telemetry of `component`:`index` that the source holds back to bound
    /// its decoding rate (Kafka), so that a producer about to send its telemetry sends the
    /// newest samples received. Returns the highest sample `seq` routed: the subscriber has the
    /// newest once it has read that one. `None`: nothing was held back (the default).
    fn flush_telemetry(&self, component: &str, index: i64) -> Option<u64> {
        let _ = (component, index);
        None
    }
}

/// A shared source is a source (so wrappers like `RecordingSource<Arc<dyn SalSource>>` work).
impl<T: SalSource + ?Sized> SalSource for Arc<T> {
    fn name(&self) -> &str {
        (**self).name()
    }

    fn subscribe(&self, component: &str, index: i64, history: bool, tx: SampleTx) -> Result<(), SalError> {
        (**self).subscribe(component, index, history, tx)
    }

    fn command(
        &self,
        cmd: SalCommand,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = CommandAck> + Send + 'static>> {
        (**self).command(cmd)
    }

    fn is_ready(&self) -> bool {
        (**self).is_ready()
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        (**self).counters()
    }

    fn flush_telemetry(&self, component: &str, index: i64) -> Option<u64> {
        (**self).flush_telemetry(component, index)
    }
}

static NEXT_SEQ: AtomicU64 = AtomicU64::new(1);

/// A new host-wide sample sequence number (unique per process run, increasing).
pub fn next_seq() -> u64 {
    NEXT_SEQ.fetch_add(1, Ordering::Relaxed)
}

pub use crate::clock::unix_now;

/// Wrap a sample as the input producers receive (kind `SAMPLE`).
pub fn sample_msg(sample: Sample) -> Arc<InputMsg> {
    Arc::new(InputMsg { kind: InputKind::SAMPLE, sample, ..Default::default() })
}

/// Whether a subscription to `sub_component`:`sub_index` receives a sample of
/// `component`:`index`. Index 0 subscribes to every index, as salobj does for indexed
/// components (a non-indexed component only ever has index 0, so the rule is the same).
pub fn route_matches(sub_component: &str, sub_index: i64, component: &str, index: i64) -> bool {
    sub_component == component && (sub_index == 0 || sub_index == index)
}
