//! The topic catalog lives in its own crate, `love-catalog` (`host/catalog`), so the plugins'
//! tests can use it without the host; this keeps `love_host::sal::catalog::...` paths working.

pub use love_catalog::*;
