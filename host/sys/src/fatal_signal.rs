//! The handler of the fatal signals a fault inside plugin code raises (SIGSEGV, SIGBUS, SIGILL,
//! SIGFPE, SIGABRT).
//!
//! Around each call into a plugin, the calling thread points a thread-local at a record
//! formatted in advance ([`enter`], [`leave`]). The handler only reads it, `write(2)`s the line
//! to standard error and appends the record to the quarantine file (`open`/`write`/`close`:
//! async-signal-safe, nothing allocated or locked), then hands the signal to the handler that
//! was there before (Rust's stack-overflow report) or to the default action, which ends the
//! process as the signal would have.

use std::cell::{Cell, RefCell};
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

/// Everything the handler writes about the plugin whose code a thread runs, formatted in
/// advance. The signal name, the call and the time go between the parts.
#[derive(Debug, Clone, Default)]
pub struct CrashRecord {
    /// The line up to the signal name (`love-host: FATAL: `).
    pub line_start: Vec<u8>,
    /// The line between the signal name and the call's name (` in plugin … during `).
    pub line_middle: Vec<u8>,
    /// The end of the line, newline included.
    pub line_end: Vec<u8>,
    /// The quarantine file's JSON line up to the signal name (empty: nothing is recorded).
    pub json_start: Vec<u8>,
}

thread_local! {
    /// The record of the plugin whose code this thread is running now (null: none). It points
    /// into `OWNER`'s record, so that it never outlives it: the handler reads only this.
    static RECORD: Cell<*const CrashRecord> = const { Cell::new(std::ptr::null()) };
    /// Keeps the record `RECORD` points to alive (it stays after [`leave`], so that the calls
    /// of one producer do not touch its reference count).
    static OWNER: RefCell<Option<Arc<CrashRecord>>> = const { RefCell::new(None) };
    /// The call being made.
    static CALL: Cell<&'static str> = const { Cell::new("") };
}

/// Mark this thread as running `record`'s plugin code for `call` (until [`leave`]).
pub fn enter(record: &Arc<CrashRecord>, call: &'static str) {
    CALL.with(|c| c.set(call));
    OWNER.with(|o| {
        let mut owner = o.borrow_mut();
        RECORD.with(|c| c.set(Arc::as_ptr(record)));
        if !owner.as_ref().is_some_and(|held| Arc::ptr_eq(held, record)) {
            *owner = Some(record.clone());
        }
    });
}

/// The call into the plugin has returned.
pub fn leave() {
    RECORD.with(|c| c.set(std::ptr::null()));
}

/// The quarantine file [`install`] was given.
pub fn quarantine_file() -> Option<&'static Path> {
    QUARANTINE_FILE.get().map(|q| q.path.as_path())
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
    fn the_record_lives_until_leave() {
        let record = Arc::new(CrashRecord { line_start: b"x".to_vec(), ..Default::default() });
        enter(&record, "handle");
        drop(record);
        let held = RECORD.with(|c| c.get());
        assert!(!held.is_null());
        assert_eq!(unsafe { &*held }.line_start, b"x", "the thread keeps the record it runs");
        leave();
        assert!(RECORD.with(|c| c.get()).is_null());
        let other = Arc::new(CrashRecord::default());
        enter(&other, "snapshot");
        assert!(OWNER.with(|o| o.borrow().as_ref().is_some_and(|held| Arc::ptr_eq(held, &other))));
        leave();
    }
}
