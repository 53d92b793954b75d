//! The steps of a swap (hot upgrade) as the supervisor orders them: what the thread holds
//! while a replacement is prepared, installed, and committed or undone.

use std::sync::Arc;
use std::time::Instant;

use abi_stable::std_types::RResult;
use love_plugin_api::abi::ProducerBox;
use love_plugin_api::sdk::ProducerConfig;
use tokio::sync::oneshot;
use tracing::{info, warn};

use super::ProducerTask;
use crate::crash::CrashRecord;
use crate::locks::lock;
use crate::runtime::call_error::CallError;
use crate::runtime::supervisor::{Replacement, SwapOutcome};
use crate::runtime::{Control, CreateFn, ReplaceRequest, Serving, SwapError, SwapReport};

/// A swap under way.
pub(super) struct SwapInProgress {
    create: CreateFn,
    record: Option<Arc<CrashRecord>>,
    serving: Serving,
    config_json: String,
    reply: oneshot::Sender<Result<SwapReport, SwapError>>,
    began: Instant,
    /// The old producer's state, when it is carried over.
    snapshot: Option<String>,
    /// Created, not yet installed.
    replacement: Option<ProducerBox>,
    /// Installed: what an undo puts back.
    undo: Option<Undo>,
    /// The producer type it replaced, for the log.
    was: String,
}

/// What a swap puts back when the new producer panics while starting.
struct Undo {
    producer: ProducerBox,
    producer_type: String,
    create: CreateFn,
    config_json: String,
    crash: Option<Arc<CrashRecord>>,
    serving: Serving,
}

impl ProducerTask {
    pub(super) fn control(&mut self, ctrl: Control) {
        let Control::Replace { request, reply } = ctrl;
        if reply.is_closed() {
            // The deployer gave up waiting (this producer was stuck): a late swap would
            // surprise everyone.
            let label = &request.serving.label;
            warn!(component = %self.component.name, index = self.component.index, "replacement by {label} abandoned by the deployer; not done");
            return;
        }
        let began = Instant::now();
        let config_json = match self.replacement_config(&request.serving.producer_type) {
            Ok(json) => json,
            Err(e) => {
                let _ = reply.send(Err(SwapError::Failed(format!("{}: {e}", self.component))));
                return;
            }
        };
        let ReplaceRequest { create, origin, serving, state, subscribe_own } = request;
        self.swap = Some(SwapInProgress {
            create,
            record: origin.as_ref().map(|o| CrashRecord::new(o, &self.component)),
            serving,
            config_json,
            reply,
            began,
            snapshot: None,
            replacement: None,
            undo: None,
            was: String::new(),
        });
        self.sup.swap(state, subscribe_own, self.link());
    }

    /// The running producer's configuration with the new producer type.
    fn replacement_config(&self, producer_type: &str) -> Result<String, serde_json::Error> {
        let mut config: ProducerConfig = serde_json::from_str(&self.config_json)?;
        config.producer_type = producer_type.to_string();
        serde_json::to_string(&config)
    }

    fn swap_mut(&mut self) -> &mut SwapInProgress {
        self.swap.as_mut().expect("a swap is under way")
    }

    pub(super) fn snapshot_for_swap(&mut self) {
        let result = match self.snapshot_call() {
            RResult::ROk(s) => {
                self.swap_mut().snapshot = Some(s.into());
                Ok(())
            }
            RResult::RErr(e) => Err(CallError::from_abi(&e).to_string()),
        };
        self.sup.swap_snapshot(result);
    }

    /// Create the replacement (restoring the old state into it when `restore`); a refused or
    /// failed one is dropped at once.
    pub(super) fn create_replacement(&mut self, restore: bool) {
        let mut swap = self.swap.take().expect("a swap is under way");
        let record = swap.record.clone();
        let outcome = match self.create_call(&swap.create, &swap.config_json, record.as_ref()) {
            Err(e) => Replacement::CreateFailed(e),
            Ok(mut fresh) => {
                let restored = match swap.snapshot.as_deref().filter(|_| restore) {
                    Some(snap) => self.restore_call(&mut fresh, snap, record.as_ref()),
                    None => RResult::ROk(()),
                };
                match restored {
                    RResult::ROk(()) => {
                        swap.replacement = Some(fresh);
                        Replacement::Ready
                    }
                    RResult::RErr(e) => {
                        self.drop_producer(fresh, record.as_ref());
                        match CallError::from_abi(&e) {
                            CallError::Panicked(text) => Replacement::RestorePanicked(text),
                            CallError::Failed(text) => Replacement::RestoreRefused(text),
                        }
                    }
                }
            }
        };
        self.swap = Some(swap);
        self.sup.replacement(outcome);
    }

    /// Put the replacement in place; the watchdog and the crash handler name the new plugin
    /// from here on.
    pub(super) fn install(&mut self) {
        let swap = self.swap.as_mut().expect("a swap is under way");
        let fresh = swap.replacement.take().expect("a replacement is ready");
        let serving = std::mem::replace(&mut *lock(&self.current), swap.serving.clone());
        swap.was = self.producer_type.clone();
        swap.undo = Some(Undo {
            producer: self.producer.replace(fresh).expect("the producer exists while its task runs"),
            producer_type: std::mem::replace(&mut self.producer_type, swap.serving.producer_type.clone()),
            create: std::mem::replace(&mut self.create, swap.create.clone()),
            config_json: std::mem::replace(&mut self.config_json, swap.config_json.clone()),
            crash: std::mem::replace(&mut self.crash, swap.record.clone()),
            serving,
        });
    }

    pub(super) fn commit(&mut self) {
        let undo = self.swap_mut().undo.take().expect("the replacement is installed");
        self.drop_producer(undo.producer, undo.crash.as_ref());
    }

    pub(super) fn undo(&mut self) {
        let undo = self.swap_mut().undo.take().expect("the replacement is installed");
        let failed = self.producer.replace(undo.producer);
        let failed_record = std::mem::replace(&mut self.crash, undo.crash);
        self.producer_type = undo.producer_type;
        self.create = undo.create;
        self.config_json = undo.config_json;
        *lock(&self.current) = undo.serving;
        if let Some(f) = failed {
            self.drop_producer(f, failed_record.as_ref());
        }
    }

    pub(super) fn finish_swap(&mut self, result: Result<SwapOutcome, SwapError>) {
        let swap = self.swap.take().expect("a swap is under way");
        let report = result.map(|outcome| {
            let (c, i) = (&self.component.name, self.component.index);
            let Serving { producer_type, label } = &swap.serving;
            let state = if outcome.started_fresh || swap.snapshot.is_none() { "started fresh" } else { "carried over" };
            info!(component = %c, index = i, producer_type = %producer_type, plugin = %label, "{c}:{i} now served by {producer_type} ({label}), was {}; state {state}", swap.was);
            SwapReport {
                duration: swap.began.elapsed(),
                snapshot_bytes: swap.snapshot.as_ref().map(|s| s.len()).unwrap_or(0),
                started_fresh: outcome.started_fresh,
            }
        });
        let _ = swap.reply.send(report);
    }
}
