//! Plugin files that crashed the process, kept out of the next start.
//!
//! The crash handler ([`crate::crash`]) appends one JSON line per crash to
//! `<state dir>/plugin-quarantine.jsonl`: the deployed file, its size and content hash, the
//! plugin, the component and the call. A file listed there with the same contents is not
//! loaded again (its components are served by the previous version or the fallback producer),
//! until the operator clears the record (`love-host plugins --clear-quarantine`) or deploys
//! different contents under any name.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The quarantine file's name in the state directory.
pub const FILE_NAME: &str = "plugin-quarantine.jsonl";

/// Where the state directory is when `--state-dir` is not given: systemd's `StateDirectory=`
/// (`$STATE_DIRECTORY`), else `/var/lib/love-host` for root, else `$XDG_STATE_HOME/love-host`
/// or `~/.local/state/love-host`, else under the temporary directory.
pub fn default_state_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("STATE_DIRECTORY").filter(|d| !d.is_empty()) {
        // systemd lists one directory per StateDirectory= entry, colon-separated.
        let first = d.to_string_lossy().split(':').next().unwrap_or_default().to_string();
        return PathBuf::from(first);
    }
    if love_host_sys::effective_uid() == 0 {
        return PathBuf::from("/var/lib/love-host");
    }
    if let Some(d) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("love-host");
    }
    if let Some(h) = std::env::var_os("HOME").filter(|h| !h.is_empty() && Path::new(h).is_dir()) {
        return PathBuf::from(h).join(".local/state/love-host");
    }
    std::env::temp_dir().join(format!("love-host-state-{}", love_host_sys::effective_uid()))
}

/// The identity of a file's contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileIdentity {
    /// Size in bytes.
    pub size: u64,
    /// FNV-1a (64 bits) of the contents: a new build is a new hash.
    pub hash: u64,
}

impl FileIdentity {
    /// The hash as written in the record.
    pub fn hash_text(&self) -> String {
        format!("fnv1a64:{:016x}", self.hash)
    }
}

/// Size and content hash of `path` (read in chunks; a plugin is a few megabytes).
pub fn file_identity(path: &Path) -> std::io::Result<FileIdentity> {
    let mut f = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 64 * 1024];
    let (mut hash, mut size) = (0xcbf2_9ce4_8422_2325u64, 0u64);
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(FileIdentity { size, hash });
        }
        size += n as u64;
        for b in &buf[..n] {
            hash = (hash ^ *b as u64).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// [`file_identity`], remembered per file version (device, inode, size, modification time):
/// every producer of a plugin names the same file, and hashing it once per producer would cost
/// seconds with a hundred producers.
pub fn file_identity_cached(path: &Path) -> std::io::Result<FileIdentity> {
    use std::collections::HashMap;
    use std::os::unix::fs::MetadataExt;
    use std::sync::{Mutex, OnceLock};
    type Key = (PathBuf, u64, u64, u64, i64, i64);
    static CACHE: OnceLock<Mutex<HashMap<Key, FileIdentity>>> = OnceLock::new();
    let m = std::fs::metadata(path)?;
    let key = (path.to_path_buf(), m.dev(), m.ino(), m.size(), m.mtime(), m.mtime_nsec());
    let cache = CACHE.get_or_init(Default::default);
    if let Some(id) = crate::locks::lock(cache).get(&key) {
        return Ok(*id);
    }
    let id = file_identity(path)?;
    crate::locks::lock(cache).insert(key, id);
    Ok(id)
}

/// One crash, as the handler recorded it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The deployed plugin file.
    pub file: PathBuf,
    /// Its size then.
    pub size: u64,
    /// Its content hash then ([`FileIdentity::hash_text`]).
    pub hash: String,
    /// Plugin name.
    pub plugin: String,
    /// Plugin version.
    pub version: String,
    /// The component whose call crashed.
    pub component: String,
    /// The signal.
    pub signal: String,
    /// The call (`handle(SAL sample)`, `restore`, …).
    pub call: String,
    /// When (Unix seconds).
    pub unix_time: u64,
}

impl Entry {
    /// One sentence for logs and listings.
    pub fn describe(&self) -> String {
        let when = chrono::DateTime::from_timestamp(self.unix_time as i64, 0)
            .map(|t| format!("{:?}", t.naive_utc()))
            .unwrap_or_else(|| self.unix_time.to_string());
        format!(
            "plugin {} {} crashed love-host with {} during {} serving {} at {when} UTC",
            self.plugin, self.version, self.signal, self.call, self.component
        )
    }
}

/// The quarantine records of a state directory.
#[derive(Debug, Clone, Default)]
pub struct Quarantine {
    entries: Vec<Entry>,
}

/// Files in paths that do not resolve are compared as given.
fn canonical(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

impl Quarantine {
    /// Read `<state_dir>/plugin-quarantine.jsonl` (missing: nothing quarantined). Lines that do
    /// not parse (a record cut short) are returned as warnings.
    pub fn load(state_dir: &Path) -> (Quarantine, Vec<String>) {
        let path = state_dir.join(FILE_NAME);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return (Quarantine::default(), Vec::new()),
            Err(e) => return (Quarantine::default(), vec![format!("cannot read {}: {e}", path.display())]),
        };
        let mut q = Quarantine::default();
        let mut warnings = Vec::new();
        for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            match serde_json::from_str::<Entry>(line) {
                Ok(e) => q.entries.push(e),
                Err(e) => {
                    warnings.push(format!("{} line {}: not a quarantine record ({e}); ignored", path.display(), n + 1))
                }
            }
        }
        (q, warnings)
    }

    /// Every record.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The record that keeps `file` out, if its current contents are the ones that crashed.
    pub fn check(&self, file: &Path) -> Option<&Entry> {
        let file = canonical(file);
        let mut candidates = self.entries.iter().filter(|e| canonical(&e.file) == file).peekable();
        candidates.peek()?;
        let id = file_identity(&file).ok()?;
        let hash = id.hash_text();
        candidates.find(|e| e.size == id.size && e.hash == hash)
    }

    /// Remove the records of files in `plugin_dir` from `state_dir`'s quarantine file; returns
    /// them.
    pub fn clear(state_dir: &Path, plugin_dir: &Path) -> std::io::Result<Vec<Entry>> {
        let path = state_dir.join(FILE_NAME);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let dir = canonical(plugin_dir);
        let (mut kept, mut cleared) = (String::new(), Vec::new());
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            match serde_json::from_str::<Entry>(line) {
                Ok(e) if canonical(&e.file).parent() == Some(dir.as_path()) || e.file.parent() == Some(plugin_dir) => {
                    cleared.push(e)
                }
                // Records of other directories stay; so does a line cut short by a crash
                // elsewhere: `load` reports it.
                _ => {
                    kept.push_str(line);
                    kept.push('\n');
                }
            }
        }
        if !cleared.is_empty() {
            let tmp = state_dir.join(format!(".{FILE_NAME}.{}", std::process::id()));
            std::fs::write(&tmp, kept)?;
            std::fs::rename(&tmp, &path)?;
        }
        Ok(cleared)
    }
}

/// Create the state directory (owner only) and return the quarantine file's path in it.
pub fn prepare_state_dir(state_dir: &Path) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(state_dir)?;
    // Writable, or crash records would be lost without a word.
    let probe = state_dir.join(format!(".probe-{}", std::process::id()));
    std::fs::write(&probe, b"")?;
    let _ = std::fs::remove_file(&probe);
    Ok(state_dir.join(FILE_NAME))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("love-host-quarantine-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn record(file: &Path) -> String {
        let id = file_identity(file).unwrap();
        serde_json::to_string(&Entry {
            file: file.to_path_buf(),
            size: id.size,
            hash: id.hash_text(),
            plugin: "bad".into(),
            version: "1.0.0".into(),
            component: "ATDome:0".into(),
            signal: "SIGSEGV".into(),
            call: "handle(SAL sample)".into(),
            unix_time: 1_764_750_000,
        })
        .unwrap()
    }

    #[test]
    fn a_recorded_file_is_quarantined_until_its_contents_change_or_it_is_cleared() {
        let (state, plugins) = (tmp("state"), tmp("plugins"));
        let so = plugins.join("libbad.so");
        std::fs::write(&so, b"crashing build").unwrap();
        let other = plugins.join("libgood.so");
        std::fs::write(&other, b"good build").unwrap();
        let qfile = prepare_state_dir(&state).unwrap();
        std::fs::write(&qfile, format!("{}\n{{\"file\": \"/cut/short\n", record(&so))).unwrap();
        let (q, warnings) = Quarantine::load(&state);
        assert_eq!(warnings.len(), 1, "the cut-short line is reported: {warnings:?}");
        let e = q.check(&so).expect("quarantined");
        assert!(e.describe().contains("plugin bad 1.0.0 crashed love-host with SIGSEGV during handle(SAL sample)"));
        assert!(e.describe().contains("2025-12-03T08:20:00"), "{}", e.describe());
        assert!(q.check(&other).is_none());
        // The same path through another spelling.
        assert!(q.check(&plugins.join(".").join("libbad.so")).is_some());
        // A new build under the same name is not quarantined.
        std::fs::write(&so, b"fixed build").unwrap();
        assert!(q.check(&so).is_none());
        std::fs::write(&so, b"crashing build").unwrap();
        assert!(q.check(&so).is_some(), "the crashing contents again");
        // Cleared by directory: the record goes, the unparsable line stays.
        let cleared = Quarantine::clear(&state, &plugins).unwrap();
        assert_eq!(cleared.len(), 1);
        let (q, _) = Quarantine::load(&state);
        assert!(q.check(&so).is_none() && q.entries().is_empty());
        assert!(Quarantine::clear(&state, &plugins).unwrap().is_empty());
        let _ = std::fs::remove_dir_all(&state);
        let _ = std::fs::remove_dir_all(&plugins);
    }

    #[test]
    fn identity_is_size_and_content() {
        let d = tmp("identity");
        let (a, b) = (d.join("a"), d.join("b"));
        std::fs::write(&a, b"abc").unwrap();
        std::fs::write(&b, b"abd").unwrap();
        let (ia, ib) = (file_identity(&a).unwrap(), file_identity(&b).unwrap());
        assert_eq!(ia.size, 3);
        assert_ne!(ia.hash, ib.hash);
        // FNV-1a 64 of "abc", as published.
        assert_eq!(ia.hash, 0xe71fa2190541574b);
        let _ = std::fs::remove_dir_all(&d);
    }
}
