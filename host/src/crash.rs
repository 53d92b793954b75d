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

use std::cell::Cell;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

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

/// Everything the signal handler writes, formatted in advance. The signal name, the call and
/// the time go between the parts.
#[derive(Debug)]
pub struct CrashRecord {
    /// `love-host: FATAL: ` + signal name follows.
    line_start: Vec<u8>,
    /// ` in plugin … during ` + call name follows.
    line_middle: Vec<u8>,
    /// The end of the line.
    line_end: Vec<u8>,
    /// The quarantine JSON line up to the signal name.
    json_start: Vec<u8>,
}

impl CrashRecord {
    /// The record for calls into `origin`'s code made for `component`.
    pub fn new(origin: &PluginOrigin, component: &ComponentName) -> Arc<CrashRecord> {
        let quarantine = QUARANTINE_FILE.get();
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
                q.path.display()
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
        Arc::new(CrashRecord {
            line_start: b"love-host: FATAL: ".to_vec(),
            line_middle: line_middle.into_bytes(),
            line_end: line_end.into_bytes(),
            json_start: if origin.identity.is_some() { json_start } else { Vec::new() },
        })
    }
}

thread_local! {
    /// The record of the plugin whose code this thread is running now (null: none).
    static RECORD: Cell<*const CrashRecord> = const { Cell::new(std::ptr::null()) };
    /// The call being made.
    static CALL: Cell<&'static str> = const { Cell::new("") };
}

/// Mark this thread as running `record`'s plugin code for `call` (until [`leave`]). The record
/// must outlive the call: the caller holds its `Arc`.
pub fn enter(record: Option<&Arc<CrashRecord>>, call: CallKind) {
    if let Some(r) = record {
        CALL.with(|c| c.set(call.describe()));
        RECORD.with(|c| c.set(Arc::as_ptr(r)));
    }
}

/// The call into the plugin has returned.
pub fn leave() {
    RECORD.with(|c| c.set(std::ptr::null()));
}

struct QuarantineFile {
    path: PathBuf,
    c_path: CString,
}

static QUARANTINE_FILE: OnceLock<QuarantineFile> = OnceLock::new();

const SIGNALS: [(libc::c_int, &str); 5] = [
    (libc::SIGSEGV, "SIGSEGV"),
    (libc::SIGBUS, "SIGBUS"),
    (libc::SIGILL, "SIGILL"),
    (libc::SIGFPE, "SIGFPE"),
    (libc::SIGABRT, "SIGABRT"),
];

/// The handlers that were installed before ours, by the index in [`SIGNALS`]; written once,
/// before our handlers are installed.
static mut PREVIOUS: [Option<libc::sigaction>; 5] = [None; 5];

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
    if let Some(p) = quarantine_file {
        if let Ok(c_path) = CString::new(p.as_os_str().as_bytes()) {
            let _ = QUARANTINE_FILE.set(QuarantineFile { path: p.to_path_buf(), c_path });
        }
    }
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| unsafe {
        for (i, (sig, _)) in SIGNALS.iter().enumerate() {
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(*sig, std::ptr::null(), &mut old) == 0 {
                (*std::ptr::addr_of_mut!(PREVIOUS))[i] = Some(old);
            }
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_fatal_signal as *const () as usize;
            action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(*sig, &action, std::ptr::null_mut());
        }
    });
}

/// Write `parts` to `fd` in one `writev(2)`, so that the line is not interleaved with a log
/// line another thread writes meanwhile (a pipe takes a write of up to `PIPE_BUF` bytes whole).
/// What a short write leaves is written after. Async-signal-safe: no allocation.
fn write_parts(fd: libc::c_int, parts: &[&[u8]]) {
    const MAX: usize = 8;
    let mut iov = [libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 }; MAX];
    let n = parts.len().min(MAX);
    for (v, p) in iov.iter_mut().zip(parts) {
        *v = libc::iovec { iov_base: p.as_ptr() as *mut libc::c_void, iov_len: p.len() };
    }
    let mut written = unsafe { libc::writev(fd, iov.as_ptr(), n as libc::c_int) };
    if written < 0 {
        return;
    }
    for p in &parts[..n] {
        let skip = (written as usize).min(p.len());
        written -= skip as isize;
        let mut rest = &p[skip..];
        while !rest.is_empty() {
            let w = unsafe { libc::write(fd, rest.as_ptr().cast(), rest.len()) };
            if w <= 0 {
                return;
            }
            rest = &rest[w as usize..];
        }
    }
}

/// Decimal digits of `v` into `buf`, without allocating.
fn decimal(mut v: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            return &buf[i..];
        }
    }
}

extern "C" fn on_fatal_signal(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    let slot = SIGNALS.iter().position(|(s, _)| *s == sig);
    let name = slot.map(|i| SIGNALS[i].1).unwrap_or("fatal signal");
    // `try_with`: never panic inside a signal handler, even during thread teardown.
    let record = RECORD.try_with(|c| c.get()).unwrap_or(std::ptr::null());
    if !record.is_null() {
        let record = unsafe { &*record };
        let call = CALL.try_with(|c| c.get()).unwrap_or("");
        write_parts(
            2,
            &[&record.line_start[..], name.as_bytes(), &record.line_middle, call.as_bytes(), &record.line_end],
        );
        if let (Some(q), false) = (QUARANTINE_FILE.get(), record.json_start.is_empty()) {
            let fd = unsafe {
                libc::open(q.c_path.as_ptr(), libc::O_WRONLY | libc::O_CREAT | libc::O_APPEND | libc::O_CLOEXEC, 0o600)
            };
            if fd >= 0 {
                let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
                unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
                let mut digits = [0u8; 20];
                let time = decimal(ts.tv_sec.max(0) as u64, &mut digits);
                write_parts(
                    fd,
                    &[
                        &record.json_start[..],
                        name.as_bytes(),
                        b"\",\"call\":\"",
                        call.as_bytes(),
                        b"\",\"unix_time\":",
                        time,
                        b"}\n",
                    ],
                );
                unsafe {
                    libc::fsync(fd);
                    libc::close(fd);
                }
            }
        }
    }
    // The handler that was there before (Rust's stack-overflow report), then the default
    // action: the process ends as the signal would have ended it.
    unsafe {
        if let Some(Some(prev)) = slot.map(|i| (*std::ptr::addr_of!(PREVIOUS))[i]) {
            let h = prev.sa_sigaction;
            if h != libc::SIG_DFL && h != libc::SIG_IGN && prev.sa_flags & libc::SA_SIGINFO != 0 {
                let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) = std::mem::transmute(h);
                f(sig, info, ctx);
            }
        }
        let mut dfl: libc::sigaction = std::mem::zeroed();
        dfl.sa_sigaction = libc::SIG_DFL;
        libc::sigemptyset(&mut dfl.sa_mask);
        libc::sigaction(sig, &dfl, std::ptr::null_mut());
        // Delivered when the handler returns (the signal is blocked while it runs); a fault
        // would also recur at the faulting instruction.
        libc::raise(sig);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_digits_without_allocation() {
        let mut b = [0u8; 20];
        assert_eq!(decimal(0, &mut b), b"0");
        assert_eq!(decimal(1_764_750_000, &mut b), b"1764750000");
        assert_eq!(decimal(u64::MAX, &mut b), b"18446744073709551615");
    }

    #[test]
    fn the_record_is_valid_json_once_the_handler_closes_it() {
        let origin = PluginOrigin {
            name: "csc".into(),
            version: "2.0.0".into(),
            file: PathBuf::from("/opt/love/plugins/lib \"odd\".so"),
            identity: Some(FileIdentity { size: 42, hash: 0xabc }),
        };
        let r = CrashRecord::new(&origin, &ComponentName { name: "ATDome".into(), index: 0 });
        let mut line = r.json_start.clone();
        line.extend_from_slice(b"SIGSEGV\",\"call\":\"handle(SAL sample)\",\"unix_time\":12}");
        let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(v["file"], "/opt/love/plugins/lib \"odd\".so");
        assert_eq!(v["signal"], "SIGSEGV");
        assert_eq!(v["size"], 42);
        assert_eq!(v["component"], "ATDome:0");
        let text = String::from_utf8(r.line_middle.clone()).unwrap();
        assert!(text.contains("plugin csc 2.0.0") && text.contains("serving ATDome:0"), "{text}");
    }
}
