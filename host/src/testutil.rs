//! Paths to the shared specification data used by unit tests.
#![cfg(test)]

use std::path::PathBuf;

/// `<repo>/../shared`, or `$LOVE_SHARED_DIR`.
pub fn shared_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("LOVE_SHARED_DIR") {
        return PathBuf::from(dir);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared")
}

/// A golden vector file.
pub fn golden_path(name: &str) -> PathBuf {
    shared_dir().join("spec/golden").join(name)
}
