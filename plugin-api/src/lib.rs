//! # love-plugin-api
//!
//! The stable interface between `love-host` and producer plugins, and the SDK plugin authors
//! build on. See `PLUGINS.md` at the repository root for the guide.
//!
//! - [`abi`]: the types that cross the `.so` boundary (fixed layouts, checked at load).
//! - [`sdk`]: decoded inputs and actions, the [`ProducerLogic`](sdk::ProducerLogic) trait, and
//!   the [`export_plugin!`] macro.
//! - [`catalog`]: the topic catalog a producer receives with its configuration.
//! - [`convert`], [`message`], [`store`], [`json`]: sample conversion, LOVE message builders, the
//!   last-sample store and the wire-compatible JSON writer.
//! - [`csc`]: [`CscCore`](csc::CscCore), the generic CSC producer logic that the csc, watcher
//!   and scriptqueue producers compose.
//! - [`driver`]: run a producer in a test without the host.
//! - [`snapshot`]: the version check every producer's `restore` starts with.
#![deny(missing_docs)]

pub mod abi;
pub mod catalog;
pub mod convert;
pub mod csc;
pub mod driver;
pub mod json;
pub mod message;
pub mod sdk;
pub mod snapshot;
pub mod store;

#[doc(hidden)]
pub use abi_stable;

/// The guide's Rust blocks, compiled and run as doc tests so that PLUGINS.md never rots.
#[cfg(doctest)]
mod plugin_guide {
    #![doc = include_str!("../../PLUGINS.md")]
}
