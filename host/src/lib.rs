//! love-host: one process that hosts LOVE producers as plugins and owns the link to the
//! LOVE-manager. The binary (`src/main.rs`) is a thin layer over this library.

pub mod admin;
pub mod app;
pub mod base;
pub mod cli;
pub mod component;
pub mod config;
pub mod deploy;
pub mod factory;
pub mod manager;
pub mod plugin;
pub mod runtime;
pub mod sal;
pub mod shutdown;
#[cfg(test)]
mod testutil;
