//! For tests: where a ts_xml `sal_interfaces` directory is, when there is one.
//!
//! The test suite carries everything it reads; only the tests that check the built-in catalog
//! against ts_xml itself need a checkout, and they skip (saying so) without one.

use std::io::Write;
use std::path::PathBuf;

/// The environment variable naming a ts_xml `sal_interfaces` directory for tests.
pub const TS_XML_DIR_ENV: &str = "LOVE_TS_XML_DIR";

/// `$LOVE_TS_XML_DIR`, when it is set: nothing outside the repository is looked for otherwise.
/// A `LOVE_TS_XML_DIR` naming no directory panics: asked for, it must be there.
pub fn ts_xml_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(std::env::var_os(TS_XML_DIR_ENV).filter(|d| !d.is_empty())?);
    assert!(dir.is_dir(), "{TS_XML_DIR_ENV}={}: not a directory", dir.display());
    Some(dir)
}

/// [`ts_xml_dir`], or `None` after telling the person running the tests that `test` was
/// skipped. Written straight to standard error, past the test harness's output capture, so
/// the notice shows in a normal `cargo test` run.
pub fn ts_xml_dir_or_skip(test: &str) -> Option<PathBuf> {
    let dir = ts_xml_dir();
    if dir.is_none() {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED {test}: no ts_xml directory (set {TS_XML_DIR_ENV} to a ts_xml sal_interfaces directory)"
        );
    }
    dir
}
