//! How a call into a producer failed, decoded once at the boundary.

use abi_stable::std_types::RBoxError;
use love_plugin_api::sdk::PANIC_PREFIX;

/// A producer call's error: a panic (the producer is rebuilt) or an error it returned (logged).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum CallError {
    /// The producer panicked (caught by the SDK's guard).
    #[error("{0}")]
    Panicked(String),
    /// The producer returned an error.
    #[error("{0}")]
    Failed(String),
}

impl CallError {
    pub(super) fn from_abi(e: &RBoxError) -> CallError {
        let text = e.to_string();
        // The SDK marks a caught panic with this prefix; every plugin since ABI v1 does.
        if text.starts_with(PANIC_PREFIX) {
            CallError::Panicked(text)
        } else {
            CallError::Failed(text)
        }
    }
}
