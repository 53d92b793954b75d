//! Paths to the test data the repository carries.
#![cfg(test)]

use std::path::PathBuf;

/// A golden vector file of the reference (`tests/golden`).
pub fn golden_path(name: &str) -> PathBuf {
    love_plugin_api::driver::golden::golden_dir(env!("CARGO_MANIFEST_DIR")).join(name)
}
