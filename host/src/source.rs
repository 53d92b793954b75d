//! The SAL source of a run: the one the configuration chooses, wrapped in a recorder with
//! `--record`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tracing::{info, warn};

use crate::config::SalChoice;
use crate::sal::catalog::TopicCatalog;
use crate::sal::kafka::{KafkaConfig, KafkaError, KafkaSource};
use crate::sal::replay::{Recorder, RecordingSource, ReplayError, ReplaySource};
use crate::sal::sim::SimSource;
use crate::sal::SalSource;
use crate::shutdown::Shutdown;

/// Why the source did not open.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// Kafka's environment variables.
    #[error("Kafka configuration (LSST_TOPIC_SUBNAME, LSST_KAFKA_BROKER_ADDR, LSST_SCHEMA_REGISTRY_URL, ...)")]
    KafkaConfig(#[source] KafkaError),
    /// Kafka itself.
    #[error("starting the Kafka SAL source")]
    Kafka(#[source] KafkaError),
    /// The replayed file.
    #[error("opening the replay file {path}")]
    Replay {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: ReplayError,
    },
    /// The recording.
    #[error("creating the recording {path}")]
    Record {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: ReplayError,
    },
}

/// An open source, and the recorder to finish at shutdown (with `--record`).
pub struct OpenSource {
    /// The source the producers read.
    pub source: Arc<dyn SalSource>,
    /// What records it.
    pub recorder: Option<Arc<Recorder>>,
}

/// Open the source `choice` names.
pub async fn open(
    choice: &SalChoice,
    record: Option<&Path>,
    catalog: Arc<TopicCatalog>,
    shutdown: Shutdown,
) -> Result<OpenSource, SourceError> {
    let source: Arc<dyn SalSource> = match choice {
        SalChoice::Kafka => {
            let config = KafkaConfig::from_env().map_err(SourceError::KafkaConfig)?;
            KafkaSource::start(config, catalog, shutdown).await.map_err(SourceError::Kafka)?
        }
        SalChoice::Replay { path, options } => {
            let replay = ReplaySource::open(path, options.clone(), shutdown)
                .map_err(|source| SourceError::Replay { path: path.clone(), source })?;
            for skipped in replay.skipped() {
                warn!("replay: skipped {skipped}");
            }
            info!("replaying {} at speed {}", path.display(), options.speed);
            Arc::new(replay)
        }
        SalChoice::Sim { seed, rate, heartbeat_stops } => {
            let sim = SimSource::new(catalog, *seed, *rate, shutdown).with_heartbeat_stops(heartbeat_stops.clone());
            info!(seed = sim.seed(), "simulator seed {} (repeat a run with --sim-seed {})", sim.seed(), sim.seed());
            Arc::new(sim)
        }
    };
    info!(source = source.name(), "SAL source: {}", source.name());
    let Some(path) = record else { return Ok(OpenSource { source, recorder: None }) };
    let recorder =
        Arc::new(Recorder::create(path).map_err(|source| SourceError::Record { path: path.to_path_buf(), source })?);
    info!("recording every SAL sample to {}", path.display());
    Ok(OpenSource { source: Arc::new(RecordingSource::new(source, recorder.clone())), recorder: Some(recorder) })
}
