//! The stdout sink: every message as one line of JSON text.

use std::sync::Arc;

use tokio::io::{AsyncWrite, AsyncWriteExt, BufWriter};
use tracing::{debug, info};

use super::{LinkConfig, LinkError, LinkEvent, Shared};
use crate::shutdown::Shutdown;

async fn drain<W: AsyncWrite + Unpin>(out: &mut BufWriter<W>, shared: &Shared) -> Result<(), LinkError> {
    while let Some(msg) = shared.pop() {
        out.write_all(msg.text.as_bytes()).await.map_err(LinkError::Stdout)?;
        out.write_all(b"\n").await.map_err(LinkError::Stdout)?;
        shared.count_sent(msg.category);
    }
    out.flush().await.map_err(LinkError::Stdout)
}

pub(super) async fn run<W>(
    writer: W,
    config: LinkConfig,
    shared: Arc<Shared>,
    mut shutdown: Shutdown,
) -> Result<(), LinkError>
where
    W: AsyncWrite + Unpin,
{
    let mut out = BufWriter::new(writer);
    info!("no LOVE-manager link: writing the messages to standard output, one JSON object per line");
    shared.up();
    let period = config.resubscribe_period.max(std::time::Duration::from_millis(10));
    let mut resubscribe = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    loop {
        drain(&mut out, &shared).await?;
        tokio::select! {
            _ = shutdown.wait() => break,
            _ = shared.notify.notified() => {}
            _ = resubscribe.tick() => shared.emit(LinkEvent::Resubscribe),
        }
    }
    // Flush what is queued, bounded in time.
    match tokio::time::timeout(config.shutdown_flush, drain(&mut out, &shared)).await {
        Ok(r) => r?,
        Err(_) => debug!("stdout flush timed out after {:?}", config.shutdown_flush),
    }
    shared.set_connected(false);
    Ok(())
}
