//! love-host: one process that hosts LOVE producers as plugins and owns the link to the
//! LOVE-manager. The binary (`src/main.rs`) is a thin layer over this library.

pub mod base;
pub mod manager;
pub mod sal;
pub mod shutdown;
