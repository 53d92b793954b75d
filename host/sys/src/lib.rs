//! The few system calls of love-host that need `unsafe` code, behind safe functions, so that
//! the host's library can forbid `unsafe`: the fatal-signal handler that names the plugin a
//! crash came from, the allocators' start-up settings, and two process queries libc has no
//! safe form of.

pub mod allocator;
pub mod fatal_signal;

/// The effective user id of this process.
pub fn effective_uid() -> u32 {
    // SAFETY: geteuid(2) takes nothing and cannot fail.
    unsafe { libc::geteuid() }
}

/// Whether process `pid` exists (alive, or belonging to someone else). A `pid` that is not a
/// positive process id is reported as existing: kill(2) would read it as a process group.
pub fn process_exists(pid: i32) -> bool {
    if pid <= 0 {
        return true;
    }
    // SAFETY: signal 0 only checks that the process exists; nothing is sent.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_exists_and_a_free_pid_does_not() {
        assert!(process_exists(std::process::id() as i32));
        assert!(process_exists(0), "not a process id");
        assert!(!process_exists(i32::MAX));
    }
}
