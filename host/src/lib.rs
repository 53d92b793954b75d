//! love-host: one process that hosts LOVE producers as plugins and owns the link to the
//! LOVE-manager. The binary (`src/main.rs`) is a thin layer over this library.
//!
//! What each module owns:
//! - [`admin`]: the admin HTTP endpoint (`/healthz`, `/readyz`, `/metrics`, `/producers`).
//! - [`app`]: the binary's commands, wiring the modules below together.
//! - [`base`]: the built-in `base` producer, for a name that is not a known CSC.
//! - [`cli`]: the command line (clap).
//! - [`clock`]: the wall clock (`unix_now`), the one source of Unix time in the host.
//! - [`component`]: component names (`Name` or `Name:index`), parsed as salobj does.
//! - [`config`]: the configuration file (`--config`), merged with the command line.
//! - [`crash`]: the crash record a fault inside plugin code leaves behind.
//! - [`deploy`]: hot deployment: plugins added, upgraded and removed while the host runs.
//! - [`factory`]: which producer type serves each configured component, and why.
//! - [`locks`]: poison-tolerant locking, the one way the host takes a `Mutex` or `RwLock`.
//! - [`manager`]: the link to the LOVE-manager (websocket or standard output).
//! - [`plugin`]: loading plugin `.so` files, screening and quarantining them, and the registry
//!   of producer types they provide.
//! - [`runtime`]: the producer runtime: one thread per producer, its supervisor, snapshots and
//!   the swap on a hot upgrade.
//! - [`sal`]: SAL sources (the simulator, Kafka, replay), the catalog of topics and the bus
//!   that fans samples out to producers.
//! - [`shutdown`]: graceful shutdown: one trigger, any number of listeners.
//! - [`topics`]: the topic catalog in force and `love-host catalog`, which shows it.
//! - [`watchdog`]: the producer call watchdog (which plugin call runs, since when, for how long).

pub mod admin;
pub mod app;
pub mod base;
pub mod cli;
pub mod clock;
pub mod component;
pub mod config;
pub mod crash;
pub mod deploy;
pub mod factory;
pub mod links;
pub mod locks;
pub mod logging;
pub mod manager;
pub mod metrics;
pub mod plugin;
pub mod producers;
pub mod runtime;
pub mod sal;
pub mod shutdown;
pub mod source;
#[cfg(test)]
mod testutil;
pub mod topics;
pub mod watchdog;

/// The allocator of every program built on this library (the binaries, the benches, the
/// tests). Samples are allocated by the SAL reader's thread and freed by the producers'; glibc's
/// malloc serializes such frees on its arena locks, which the load bench's profile showed.
/// Plugins keep their own allocator: everything crossing the boundary carries its own vtable.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
