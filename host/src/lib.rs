//! love-host: one process that hosts LOVE producers as plugins and owns the link to the
//! LOVE-manager. The binary (`src/main.rs`) is a thin layer over this library.
//!
//! No `unsafe` code: the calls that need it live behind safe functions in two small crates,
//! `love-host-sys` (the crash handler, process queries) and `love-kafka-partitions`
//! (librdkafka's partition consumer).
//!
//! What each module owns:
//! - [`admin`]: the admin HTTP endpoint (`/healthz`, `/readyz`, `/metrics`, `/producers`).
//! - [`app`]: a run of the producers, wiring the modules below together (nothing else).
//! - [`base`]: the built-in `base` producer, for a name that is not a known CSC.
//! - [`cli`]: the command line's syntax (clap): options, subcommands, their help.
//! - [`clock`]: the wall clock (`unix_now`), the one source of Unix time in the host.
//! - [`component`]: component names (`Name` or `Name:index`), parsed as salobj does.
//! - [`config`]: the configuration in force, resolved once from the command line, the
//!   environment and the `--config` file, and validated.
//! - [`crash`]: the crash record a fault inside plugin code leaves behind.
//! - [`deploy`]: hot deployment: the directory watched, changes turned into actions, producers
//!   swapped, failed upgrades undone.
//! - [`factory`]: which producer type serves each configured component, and why; how it is made.
//! - [`group`]: `--group`: the components shared with other hosts through a Kafka consumer
//!   group, their producers started and stopped as the group assigns them.
//! - [`links`]: the manager links of a run, each component routed to its own.
//! - [`locks`]: poison-tolerant locking, the one way the host takes a `Mutex` or `RwLock`.
//! - [`logging`]: log lines (text or JSON, redacted) and the panic hook.
//! - [`manager`]: the link to the LOVE-manager (websocket or standard output).
//! - [`metrics`]: the `/metrics` registry: every owner's metrics, registered once.
//! - [`plugin`]: loading plugin `.so` files (from private copies), screening and quarantining
//!   them, the registry of producer types they provide, and `love-host plugins`.
//! - [`producers`]: the running producers, started from the factory's decisions and stopped
//!   together.
//! - [`runtime`]: the producer runtime: one thread per producer, driven by its sans-IO
//!   supervisor (restarts, the swap on a hot upgrade and its undo, initial data, snapshots).
//! - [`sal`]: SAL sources (the simulator, Kafka, replay), the catalog of topics and the bus
//!   that fans samples out to producers.
//! - [`shutdown`]: graceful shutdown: one trigger (SIGINT, SIGTERM), any number of listeners.
//! - [`source`]: the SAL source a run's configuration chooses, recorded with `--record`.
//! - [`topics`]: the topic catalog in force and `love-host catalog`, which shows it.
//! - [`watchdog`]: the producer call watchdog (which plugin call runs, since when, for how long).

#![forbid(unsafe_code)]

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
pub mod group;
pub mod links;
pub mod locks;
pub mod logging;
pub mod manager;
pub mod memory;
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
#[cfg(not(feature = "system-alloc"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
