//! The last word of a process that a plugin crashed.
//!
//! A fault inside plugin code (SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT) cannot be contained:
//! the process dies. What it can do first is say which plugin did it. Every producer runs on a
//! thread of its own and, around each call into its plugin, points a thread-local at a record
//! formatted in advance (plugin, version, file, component) and names the call. The signal
//! handler only reads those, `write(2)`s the line to standard error and appends the record to
//! the quarantine file (`open`/`write`/`close`: async-signal-safe, nothing allocated or
//! locked), then hands the signal to the handler that was there before (Rust's stack-overflow
//! report) or to the default action, which ends the process as the signal would have.
//!
//! The next start reads the quarantine file and does not load the file that crashed
//! ([`crate::plugin::quarantine`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use love_host_sys::fatal_signal;

use crate::component::ComponentName;
use crate::plugin::quarantine::FileIdentity;
use crate::watchdog::CallKind;

/// The plugin file a producer's code comes from, as a crash record names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginOrigin {
    /// Plugin name.
    pub name: String,
    /// Plugin version.
    pub version: String,
    /// The deployed file.
    pub file: PathBuf,
    /// Its contents' identity (`None`: the file could not be read any more).
    pub identity: Option<FileIdentity>,
}

/// Everything the signal handler writes about calls into one plugin for one component,
/// formatted in advance.
#[derive(Debug)]
pub struct CrashRecord(Arc<fatal_signal::CrashRecord>);

impl CrashRecord {
    /// The record for calls into `origin`'s code made for `component`.
    pub fn new(origin: &PluginOrigin, component: &ComponentName) -> Arc<CrashRecord> {
        let quarantine = fatal_signal::quarantine_file();
        let line_middle = format!(
            " in plugin {} {} (file {}) serving {component}, during ",
            origin.name,
            origin.version,
            origin.file.display()
        );
        let line_end = match (quarantine, &origin.identity) {
            (Some(q), Some(_)) => format!(
                "; the file is quarantined at the next start (record in {}; clear with \
                 `love-host plugins --clear-quarantine --plugin-dir DIR`)\n",
                q.display()
            ),
            (None, _) => "; not quarantined (no state directory)\n".to_string(),
            (_, None) => "; not quarantined (the plugin file could not be read)\n".to_string(),
        };
        let mut json = serde_json::json!({
            "file": origin.file,
            "plugin": origin.name,
            "version": origin.version,
            "component": component.to_string(),
        });
        if let Some(id) = &origin.identity {
            json["size"] = id.size.into();
            json["hash"] = id.hash_text().into();
        }
        // `{"component":…,"version":…` then `,"signal":"` — the handler closes it.
        let mut json_start = serde_json::to_string(&json).unwrap_or_else(|_| "{".into()).into_bytes();
        json_start.pop();
        json_start.extend_from_slice(b",\"signal\":\"");
        Arc::new(CrashRecord(Arc::new(fatal_signal::CrashRecord {
            line_start: b"love-host: FATAL: ".to_vec(),
            line_middle: line_middle.into_bytes(),
            line_end: line_end.into_bytes(),
            json_start: if origin.identity.is_some() { json_start } else { Vec::new() },
        })))
    }
}

/// Mark this thread as running `record`'s plugin code for `call` (until [`leave`]).
pub fn enter(record: Option<&Arc<CrashRecord>>, call: CallKind) {
    if let Some(r) = record {
        fatal_signal::enter(&r.0, call.describe());
    }
}

/// The call into the plugin has returned.
pub fn leave() {
    fatal_signal::leave();
}

/// Install the crash handler, recording into `state_dir`'s quarantine file (without one, if
/// the directory cannot be made: crashes are then only reported on standard error).
pub fn install_in(state_dir: &Path) {
    match crate::plugin::quarantine::prepare_state_dir(state_dir) {
        Ok(file) => {
            tracing::info!("state directory {} (crash quarantine: {})", state_dir.display(), file.display());
            install(Some(&file));
        }
        Err(e) => {
            tracing::warn!(
                "state directory {}: {e}; a plugin that crashes the process will not be quarantined (set --state-dir)",
                state_dir.display()
            );
            install(None);
        }
    }
}

/// Install the fatal-signal handlers (once per process); `quarantine_file` is where crash
/// records are appended (`None`: crashes are only reported on standard error).
pub fn install(quarantine_file: Option<&Path>) {
    fatal_signal::install(quarantine_file);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_record_is_valid_json_once_the_handler_closes_it() {
        let origin = PluginOrigin {
            name: "csc".into(),
            version: "2.0.0".into(),
            file: PathBuf::from("/opt/love/plugins/lib \"odd\".so"),
            identity: Some(FileIdentity { size: 42, hash: 0xabc }),
        };
        let r = CrashRecord::new(&origin, &ComponentName { name: "ATDome".into(), index: 0 });
        let mut line = r.0.json_start.clone();
        line.extend_from_slice(b"SIGSEGV\",\"call\":\"handle(SAL sample)\",\"unix_time\":12}");
        let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(v["file"], "/opt/love/plugins/lib \"odd\".so");
        assert_eq!(v["signal"], "SIGSEGV");
        assert_eq!(v["size"], 42);
        assert_eq!(v["component"], "ATDome:0");
        let text = String::from_utf8(r.0.line_middle.clone()).unwrap();
        assert!(text.contains("plugin csc 2.0.0") && text.contains("serving ATDome:0"), "{text}");
    }
}
