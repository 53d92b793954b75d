//! love-host: one process that hosts LOVE producers as plugins and owns the link to the
//! LOVE-manager. The binary (`src/main.rs`) is a thin layer over this library.

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
pub mod locks;
pub mod manager;
pub mod plugin;
pub mod runtime;
pub mod sal;
pub mod shutdown;
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
