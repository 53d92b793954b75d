//! The link to the LOVE-manager (or to standard output).
//!
//! Producers hand their messages to a [`ManagerHandle`]; link events (connected, disconnected,
//! time to re-subscribe, an initial_state request) come back on a broadcast channel.

use std::sync::Arc;

use love_plugin_api::abi::Category;

/// One message for the manager, with the stream it is about.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// Coalescing category (event, telemetry, other).
    pub category: Category,
    /// Envelope `csc`.
    pub csc: String,
    /// Envelope `salindex`.
    pub salindex: i64,
    /// Stream name.
    pub stream: String,
    /// The JSON text.
    pub text: String,
    /// When the sample behind it was received (Unix seconds), 0 when not applicable.
    pub created: f64,
}

/// What the link tells the producers.
#[derive(Debug, Clone)]
pub enum LinkEvent {
    /// A (real) connection is up: send initial data, then subscriptions.
    Connected,
    /// The connection is down.
    Disconnected,
    /// Time to re-send the initial_state subscriptions (periodic).
    Resubscribe,
    /// An initial_state request from the manager (the JSON text, already checked to parse and
    /// to have `category == "initial_state"`).
    Request(Arc<str>),
}
