//! The private copies plugins are loaded from (the dynamic loader caches libraries by path and
//! by inode, so each load needs a file of its own), and their removal: at exit, and at start for
//! what processes that no longer run left behind.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use tracing::info;

/// Create the private copy directory, readable by this user only.
pub fn prepare_copies_dir(copies_dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(copies_dir)?;
    std::fs::set_permissions(copies_dir, std::fs::Permissions::from_mode(0o700))
}

/// At exit: remove this process's private copies (named `<pid>-…`), and the directory when
/// nothing else is left in it. The libraries stay mapped until the process ends anyway.
pub fn remove_private_copies(copies_dir: &Path) {
    let prefix = format!("{}-", std::process::id());
    if let Ok(entries) = std::fs::read_dir(copies_dir) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    let _ = std::fs::remove_dir(copies_dir);
}

/// This process's private copies, removed when dropped: on a normal exit, a fatal start-up
/// error returned from anywhere after the copies were made, and a panic that unwinds to `main`.
/// A crash or SIGKILL leaves them; [`remove_stale_copies`] clears those at the next start.
pub struct CopiesGuard {
    dir: PathBuf,
}

impl CopiesGuard {
    /// Guard the copies this process will make in `copies_dir`.
    pub fn new(copies_dir: &Path) -> CopiesGuard {
        CopiesGuard { dir: copies_dir.to_path_buf() }
    }
}

impl Drop for CopiesGuard {
    fn drop(&mut self) {
        remove_private_copies(&self.dir);
    }
}

/// At start: remove what processes that no longer run left behind (a crash or SIGKILL skips
/// every exit path): the default copy directories `love-host-<pid>-plugins` under `tmp`, and
/// the `<pid>-…` copies in `copies_dir` (a `--plugin-copies-dir` shared across runs). Only
/// entries of this user whose pid is not alive (or is this process's: it must run before the
/// first copy is made) are touched. Returns how many were removed.
pub fn remove_stale_copies(tmp: &Path, copies_dir: &Path) -> usize {
    let uid = love_host_sys::effective_uid();
    let mine = |m: &std::fs::Metadata| m.uid() == uid;
    // This process's own pid counts as dead: it has made no copies yet, so any are a previous
    // process's (in a container every start has the same pid).
    let me = std::process::id() as i32;
    let dead = |pid: &str| pid.parse::<i32>().is_ok_and(|p| p == me || !love_host_sys::process_exists(p));
    let mut removed = 0;
    if let Ok(entries) = std::fs::read_dir(tmp) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            let Some(pid) = name.strip_prefix("love-host-").and_then(|r| r.strip_suffix("-plugins")) else { continue };
            let is_own_dir = std::fs::symlink_metadata(e.path()).is_ok_and(|m| m.is_dir() && mine(&m));
            if is_own_dir && dead(pid) && std::fs::remove_dir_all(e.path()).is_ok() {
                info!("removed {}, the plugin copies of process {pid}, which no longer runs", e.path().display());
                removed += 1;
            }
        }
    }
    if let Ok(entries) = std::fs::read_dir(copies_dir) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            let Some((pid, _)) = name.split_once('-') else { continue };
            let is_own_file = std::fs::symlink_metadata(e.path()).is_ok_and(|m| m.is_file() && mine(&m));
            if is_own_file && dead(pid) && std::fs::remove_file(e.path()).is_ok() {
                info!("removed {}, a plugin copy of process {pid}, which no longer runs", e.path().display());
                removed += 1;
            }
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_copies_of_dead_processes_and_of_this_pid_are_removed() {
        let base = std::env::temp_dir().join(format!("love-host-stale-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let (tmp, copies) = (base.join("tmp"), base.join("copies"));
        std::fs::create_dir_all(&tmp).unwrap();
        std::fs::create_dir_all(&copies).unwrap();
        let me = std::process::id();
        // The parent (the test runner) is alive and not this process.
        let parent = std::os::unix::process::parent_id();
        for name in ["love-host-99999999-plugins".to_string(), format!("love-host-{parent}-plugins")] {
            std::fs::create_dir_all(tmp.join(&name)).unwrap();
            std::fs::write(tmp.join(&name).join("x.so"), b"copy").unwrap();
        }
        for name in
            ["99999999-1-a.so".to_string(), format!("{me}-start-0-b.so"), format!("{parent}-1-c.so"), "notes".into()]
        {
            std::fs::write(copies.join(name), b"copy").unwrap();
        }
        assert_eq!(remove_stale_copies(&tmp, &copies), 3);
        let left = |d: &Path| {
            let mut v: Vec<String> =
                std::fs::read_dir(d).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into()).collect();
            v.sort();
            v
        };
        assert_eq!(left(&tmp), vec![format!("love-host-{parent}-plugins")]);
        assert_eq!(left(&copies), vec![format!("{parent}-1-c.so"), "notes".to_string()]);
        std::fs::remove_dir_all(&base).unwrap();
    }
}
