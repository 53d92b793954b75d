//! Versioned snapshots: the one check every producer's `restore` starts with.
//!
//! A snapshot carries a `version` so that a later plugin can read an earlier one and an earlier
//! plugin (after a downgrade) refuses a later one instead of misreading it. The check is the
//! same for every producer, and its error texts are what an operator reads in the host's log
//! when a hot upgrade starts a producer fresh, so it lives here once.

use crate::sdk::PluginError;

/// Parse a snapshot's text and check its version: `what` names the producer (or part) in the
/// error texts, `current` is the newest version this build writes and reads.
///
/// Returns the version found (a restore that reads older formats branches on it) and the parsed
/// value. Refuses text that is not JSON, a snapshot without a numeric `version`, and a version
/// newer than `current`.
pub fn parse_versioned(what: &str, text: &str, current: u64) -> Result<(u64, serde_json::Value), PluginError> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| PluginError::new(format!("invalid {what} snapshot: {e}")))?;
    let version = check_version(what, &value, current)?;
    Ok((version, value))
}

/// Check the `version` of an already parsed snapshot (for a part embedded in a larger one, such
/// as [`CscCore::restore_value`](crate::csc::CscCore::restore_value)); see [`parse_versioned`].
pub fn check_version(what: &str, value: &serde_json::Value, current: u64) -> Result<u64, PluginError> {
    let version = value
        .get("version")
        .and_then(serde_json::Value::as_u64)
        .ok_or_else(|| PluginError::new(format!("{what} snapshot without a version")))?;
    if version > current {
        return Err(PluginError::new(format!(
            "{what} snapshot version {version} is newer than this build understands ({current})"
        )));
    }
    Ok(version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn current_and_older_versions_are_restored() {
        let (version, value) = parse_versioned("demo", r#"{"version": 2, "count": 7}"#, 2).unwrap();
        assert_eq!(version, 2);
        assert_eq!(value["count"], 7);
        let (version, value) = parse_versioned("demo", r#"{"version": 1, "count": 3}"#, 2).unwrap();
        assert_eq!(version, 1);
        assert_eq!(value["count"], 3);
    }

    #[test]
    fn a_newer_version_is_refused_naming_both_versions() {
        let err = parse_versioned("demo", r#"{"version": 3}"#, 2).unwrap_err().to_string();
        assert_eq!(err, "demo snapshot version 3 is newer than this build understands (2)");
        let err = check_version("core", &serde_json::json!({"version": 9}), 1).unwrap_err().to_string();
        assert!(err.starts_with("core snapshot version 9 is newer"), "{err}");
    }

    #[test]
    fn a_missing_or_malformed_version_is_refused() {
        for text in [r#"{"count": 1}"#, r#"{"version": "1"}"#, r#"{"version": -1}"#, r#"{"version": 1.5}"#, "[1]"] {
            let err = parse_versioned("demo", text, 1).unwrap_err().to_string();
            assert_eq!(err, "demo snapshot without a version", "{text}");
        }
    }

    #[test]
    fn garbage_is_refused_as_invalid() {
        for text in ["", "not json", r#"{"version": 1"#, "\u{0}"] {
            let err = parse_versioned("demo", text, 1).unwrap_err().to_string();
            assert!(err.starts_with("invalid demo snapshot: "), "{text:?}: {err}");
        }
    }
}
