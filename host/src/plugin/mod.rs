//! Plugins: loading `.so` files and the registry of producer types they provide.

pub mod copies;
pub mod listing;
pub mod loader;
pub mod quarantine;
pub mod startup;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use loader::{load_plugin, Descriptor, LoadError, LoadedPlugin};

/// Problems with the plugin directory itself.
#[derive(Debug, thiserror::Error)]
pub enum PluginDirError {
    /// It does not exist or cannot be read.
    #[error("plugin directory {path}: {reason}")]
    Unreadable {
        /// The directory.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Anyone could put code into it.
    #[error(
        "plugin directory {path} is writable by others (mode {mode:o}); refusing to load code from it (chmod o-w)"
    )]
    WorldWritable {
        /// The directory.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
}

/// The result of scanning a plugin directory.
#[derive(Debug, Default)]
pub struct ScanReport {
    /// Plugins that loaded.
    pub loaded: Vec<Arc<LoadedPlugin>>,
    /// Files that did not, with the reason.
    pub refused: Vec<LoadError>,
    /// Files not loaded because they crashed the process before, with the crash.
    pub quarantined: Vec<(PathBuf, quarantine::Entry)>,
}

/// Whether a file name looks like a deployed plugin (not a temporary or hidden file).
pub fn is_plugin_file_name(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else { return false };
    name.ends_with(".so") && !name.starts_with('.')
}

/// What a directory entry named like a plugin (`*.so`, not hidden) turns out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A regular file, or a symlink to one inside the plugin directory: a candidate to load.
    File,
    /// Refused, with the reason: a symlink to a file outside the plugin directory (whoever
    /// controls the target controls the host's code, and the directory's checks say nothing
    /// about it).
    Refused(String),
    /// Not a file (a directory, FIFO, socket, device, dangling symlink or symlink loop):
    /// skipped, and said once at debug level (see [`note_skipped`]).
    NotAFile(String),
}

/// Look at one entry of the plugin directory `dir` without opening it.
pub fn screen_entry(dir: &Path, path: &Path) -> Entry {
    use std::os::unix::fs::FileTypeExt;
    let Ok(link_meta) = std::fs::symlink_metadata(path) else {
        return Entry::NotAFile("gone".into());
    };
    let meta = if link_meta.file_type().is_symlink() {
        let target = match std::fs::canonicalize(path) {
            Ok(t) => t,
            Err(e) => return Entry::NotAFile(format!("a dangling symlink or a symlink loop ({e})")),
        };
        let home = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
        if !target.starts_with(&home) {
            return Entry::Refused(format!(
                "a symlink to {}, outside the plugin directory {}: copy the file into the directory instead",
                target.display(),
                home.display()
            ));
        }
        match std::fs::metadata(&target) {
            Ok(m) => m,
            Err(e) => return Entry::NotAFile(format!("a symlink to an unreadable target ({e})")),
        }
    } else {
        link_meta
    };
    let t = meta.file_type();
    let what = if t.is_file() {
        return Entry::File;
    } else if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_block_device() || t.is_char_device() {
        "a device"
    } else {
        "not a regular file"
    };
    Entry::NotAFile(what.into())
}

/// Log a skipped entry at debug level, once per path and reason for the life of the process
/// (the directory is rescanned on every change and SIGHUP; one line is enough).
pub fn note_skipped(path: &Path, what: &str) {
    use std::collections::HashSet;
    use std::sync::Mutex;
    static SEEN: Mutex<Option<HashSet<(PathBuf, String)>>> = Mutex::new(None);
    let mut seen = crate::locks::lock(&SEEN);
    if seen.get_or_insert_with(HashSet::new).insert((path.to_path_buf(), what.to_string())) {
        tracing::debug!(file = %path.display(), "plugin directory: {} skipped: {what}", path.display());
    }
}

/// Check that a plugin directory exists, is a directory, and is not writable by others.
pub fn check_plugin_dir(dir: &Path) -> Result<(), PluginDirError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(dir)
        .map_err(|e| PluginDirError::Unreadable { path: dir.to_path_buf(), reason: e.to_string() })?;
    if !meta.is_dir() {
        return Err(PluginDirError::Unreadable { path: dir.to_path_buf(), reason: "not a directory".into() });
    }
    let mode = meta.permissions().mode() & 0o7777;
    // World-writable without the sticky bit lets anyone replace a plugin; with it (like /tmp)
    // anyone can still add one.
    if mode & 0o002 != 0 {
        return Err(PluginDirError::WorldWritable { path: dir.to_path_buf(), mode });
    }
    Ok(())
}

/// Load every `*.so` in `dir` (sorted by name). Files that fail are reported, not fatal.
pub fn scan_dir(dir: &Path) -> Result<ScanReport, PluginDirError> {
    scan_dir_with(dir, None, |file, _| load_plugin(file))
}

/// [`scan_dir`] without the files `quarantine` keeps out (reported in
/// [`ScanReport::quarantined`]).
pub fn scan_dir_checked(dir: &Path, quarantine: &quarantine::Quarantine) -> Result<ScanReport, PluginDirError> {
    scan_dir_with(dir, Some(quarantine), |file, _| load_plugin(file))
}

/// [`scan_dir`] for a host that keeps running: each file is loaded from a private copy in
/// `copies_dir` (see [`loader::load_plugin_copy`]), named after the process and `file`; files
/// `quarantine` keeps out are not loaded.
pub fn scan_dir_private(
    dir: &Path,
    copies_dir: &Path,
    quarantine: &quarantine::Quarantine,
) -> Result<ScanReport, PluginDirError> {
    scan_dir_with(dir, Some(quarantine), |file, n| {
        let name = file.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
        let copy = copies_dir.join(format!("{}-start-{n}-{name}", std::process::id()));
        loader::load_plugin_copy(file, &copy)
    })
}

fn scan_dir_with(
    dir: &Path,
    quarantine: Option<&quarantine::Quarantine>,
    load: impl Fn(&Path, usize) -> Result<LoadedPlugin, LoadError>,
) -> Result<ScanReport, PluginDirError> {
    check_plugin_dir(dir)?;
    let entries = std::fs::read_dir(dir)
        .map_err(|e| PluginDirError::Unreadable { path: dir.to_path_buf(), reason: e.to_string() })?;
    let mut names: Vec<PathBuf> =
        entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| is_plugin_file_name(p)).collect();
    names.sort();
    let mut report = ScanReport::default();
    let mut files = Vec::with_capacity(names.len());
    for path in names {
        match screen_entry(dir, &path) {
            Entry::File => files.push(path),
            Entry::Refused(reason) => report.refused.push(LoadError::Refused { path, reason }),
            Entry::NotAFile(what) => note_skipped(&path, &what),
        }
    }
    for (n, file) in files.iter().enumerate() {
        if let Some(entry) = quarantine.and_then(|q| q.check(file)) {
            report.quarantined.push((file.clone(), entry.clone()));
            continue;
        }
        match load(file, n) {
            Ok(p) => report.loaded.push(Arc::new(p)),
            Err(e) => report.refused.push(e),
        }
    }
    Ok(report)
}

/// Compare two plugin versions as semantic versions: dotted numbers (`1.10.0` > `1.9.3`,
/// missing parts are 0), a pre-release below its release (`2.0.0-rc.1` < `2.0.0`), pre-release
/// identifiers numerically when both are numbers and as text otherwise, build metadata
/// (`+…`) ignored.
pub fn compare_versions(a: &str, b: &str) -> std::cmp::Ordering {
    use std::cmp::Ordering::{Equal, Greater, Less};
    fn split(v: &str) -> (&str, Option<&str>) {
        let v = v.split_once('+').map_or(v, |(core, _build)| core);
        match v.split_once('-') {
            Some((core, pre)) => (core, Some(pre)),
            None => (v, None),
        }
    }
    fn identifiers(x: &str, y: &str) -> std::cmp::Ordering {
        let (xs, ys): (Vec<&str>, Vec<&str>) = (x.split('.').collect(), y.split('.').collect());
        for (p, q) in xs.iter().zip(&ys) {
            let ord = match (p.parse::<u64>(), q.parse::<u64>()) {
                (Ok(m), Ok(n)) => m.cmp(&n),
                (Ok(_), Err(_)) => Less,
                (Err(_), Ok(_)) => Greater,
                (Err(_), Err(_)) => p.cmp(q),
            };
            if ord != Equal {
                return ord;
            }
        }
        xs.len().cmp(&ys.len())
    }
    let ((core_a, pre_a), (core_b, pre_b)) = (split(a), split(b));
    let (na, nb): (Vec<&str>, Vec<&str>) = (core_a.split('.').collect(), core_b.split('.').collect());
    for i in 0..na.len().max(nb.len()) {
        let (p, q) = (na.get(i).copied().unwrap_or("0"), nb.get(i).copied().unwrap_or("0"));
        let ord = match (p.parse::<u64>(), q.parse::<u64>()) {
            (Ok(m), Ok(n)) => m.cmp(&n),
            _ => identifiers(p, q),
        };
        if ord != Equal {
            return ord;
        }
    }
    match (pre_a, pre_b) {
        (None, None) => Equal,
        (Some(_), None) => Less,
        (None, Some(_)) => Greater,
        (Some(x), Some(y)) => identifiers(x, y),
    }
}

/// The producer types available to the factory, from the loaded plugins.
#[derive(Debug, Default, Clone)]
pub struct PluginRegistry {
    plugins: Vec<Arc<LoadedPlugin>>,
}

impl PluginRegistry {
    /// A registry of these plugins. When two plugins have the same name, the higher version is
    /// kept (with a warning).
    pub fn new(plugins: Vec<Arc<LoadedPlugin>>) -> Self {
        let mut reg = PluginRegistry::default();
        for p in plugins {
            reg.add(p);
        }
        reg
    }

    /// Add a plugin; returns the plugin it replaced, if any.
    pub fn add(&mut self, plugin: Arc<LoadedPlugin>) -> Option<Arc<LoadedPlugin>> {
        let name = plugin.descriptor.name.clone();
        if let Some(pos) = self.plugins.iter().position(|p| p.descriptor.name == name) {
            let old = &self.plugins[pos];
            if compare_versions(&plugin.descriptor.version, &old.descriptor.version).is_gt() {
                tracing::warn!(
                    plugin = %name,
                    kept = %plugin.descriptor.version,
                    ignored = %old.descriptor.version,
                    "two files provide plugin {name}; using the higher version ({} from {})",
                    plugin.descriptor.version,
                    plugin.path.display()
                );
                return Some(std::mem::replace(&mut self.plugins[pos], plugin));
            }
            tracing::warn!(
                plugin = %name,
                "two files provide plugin {name}; ignoring version {} from {} (keeping {})",
                plugin.descriptor.version,
                plugin.path.display(),
                old.descriptor.version
            );
            return None;
        }
        self.plugins.push(plugin);
        None
    }

    /// Put `plugin` in place of any plugin of the same name, whatever the versions (hot
    /// deployment decided already).
    pub fn replace(&mut self, plugin: Arc<LoadedPlugin>) {
        self.plugins.retain(|p| p.descriptor.name != plugin.descriptor.name);
        self.plugins.push(plugin);
    }

    /// Remove the plugin named `name`.
    pub fn remove(&mut self, name: &str) {
        self.plugins.retain(|p| p.descriptor.name != name);
    }

    /// Every plugin.
    pub fn plugins(&self) -> &[Arc<LoadedPlugin>] {
        &self.plugins
    }

    /// The plugin providing a producer type (highest version when several do).
    pub fn by_type(&self, producer_type: &str) -> Option<Arc<LoadedPlugin>> {
        self.plugins
            .iter()
            .filter(|p| p.descriptor.producer_type == producer_type)
            .max_by(|a, b| compare_versions(&a.descriptor.version, &b.descriptor.version))
            .cloned()
    }

    /// The plugin claiming a component name (highest version; a warning when several do).
    pub fn claimant(&self, component: &str) -> Option<Arc<LoadedPlugin>> {
        let claimants: Vec<&Arc<LoadedPlugin>> =
            self.plugins.iter().filter(|p| p.descriptor.claims.iter().any(|c| c == component)).collect();
        let best = claimants
            .iter()
            .max_by(|a, b| compare_versions(&a.descriptor.version, &b.descriptor.version))
            .map(|p| (*p).clone());
        if claimants.len() > 1 {
            if let Some(b) = &best {
                tracing::warn!(
                    component,
                    "{} plugins claim {component}; using {} {} (highest version)",
                    claimants.len(),
                    b.descriptor.name,
                    b.descriptor.version
                );
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncated_libraries_are_refused_before_dlopen() {
        // Any shared library of the system will do as a complete ELF file.
        let exe = std::env::current_exe().unwrap();
        assert_eq!(loader::check_elf_complete(&exe), Ok(()));
        let data = std::fs::read(&exe).unwrap();
        let half = std::env::temp_dir().join(format!("love-host-half-{}.so", std::process::id()));
        std::fs::write(&half, &data[..data.len() / 2]).unwrap();
        let err = load_plugin(&half).unwrap_err().to_string();
        assert!(err.contains("truncated ELF file"), "{err}");
        std::fs::write(&half, b"\x7fELF").unwrap();
        assert!(load_plugin(&half).is_err());
        // A corrupt header whose program header entries are 0 bytes long, table at the file's
        // end: refused, not a read past the end.
        let mut corrupt = data[..4096].to_vec();
        corrupt[0x20..0x28].copy_from_slice(&(4090u64).to_le_bytes());
        corrupt[0x36..0x38].copy_from_slice(&0u16.to_le_bytes());
        corrupt[0x38..0x3A].copy_from_slice(&3u16.to_le_bytes());
        corrupt[0x3C..0x3E].copy_from_slice(&0u16.to_le_bytes());
        std::fs::write(&half, &corrupt).unwrap();
        let err = load_plugin(&half).unwrap_err().to_string();
        assert!(err.contains("corrupt ELF file"), "{err}");
        let _ = std::fs::remove_file(&half);
    }

    #[test]
    fn a_library_writable_by_others_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let exe = std::env::current_exe().unwrap();
        let file = std::env::temp_dir().join(format!("love-host-open-{}.so", std::process::id()));
        std::fs::copy(&exe, &file).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o666)).unwrap();
        let err = load_plugin(&file).unwrap_err().to_string();
        assert!(err.contains("writable by others (mode 666)") && err.contains(&*file.to_string_lossy()), "{err}");
        let _ = std::fs::remove_file(&file);
    }

    #[test]
    fn versions_compare_numerically() {
        use std::cmp::Ordering::*;
        assert_eq!(compare_versions("1.10.0", "1.9.3"), Greater);
        assert_eq!(compare_versions("1.0.0", "1.0.0"), Equal);
        assert_eq!(compare_versions("1.0", "1.0.1"), Less);
        assert_eq!(compare_versions("1.0", "1.0.0"), Equal);
        assert_eq!(compare_versions("2.0.0-rc1", "2.0.0"), Less, "a pre-release comes before its release");
        assert_eq!(compare_versions("2.0.0-rc.2", "2.0.0-rc.10"), Less);
        assert_eq!(compare_versions("2.0.0-alpha", "2.0.0-alpha.1"), Less);
        assert_eq!(compare_versions("2.0.0-1", "2.0.0-alpha"), Less);
        assert_eq!(compare_versions("2.0.0-rc1", "1.9.9"), Greater);
        assert_eq!(compare_versions("1.2.3+build.5", "1.2.3"), Equal);
    }

    #[test]
    fn plugin_dir_checks() {
        use std::os::unix::fs::PermissionsExt;
        let base = std::env::temp_dir().join(format!("love-host-dircheck-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(&base).unwrap();
        // Missing.
        let missing = base.join("nope");
        let err = scan_dir(&missing).unwrap_err().to_string();
        assert!(err.contains("nope"), "{err}");
        // Empty: fine, nothing loaded.
        std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o755)).unwrap();
        let report = scan_dir(&base).unwrap();
        assert!(report.loaded.is_empty() && report.refused.is_empty());
        // Not a shared library.
        std::fs::write(base.join("junk.so"), b"not an ELF file").unwrap();
        std::fs::write(base.join(".hidden.so"), b"ignored").unwrap();
        std::fs::write(base.join("notes.txt"), b"ignored").unwrap();
        let report = scan_dir(&base).unwrap();
        assert_eq!(report.refused.len(), 1);
        let msg = report.refused[0].to_string();
        assert!(msg.contains("junk.so") && msg.contains("not a loadable shared library"), "{msg}");
        // World-writable.
        std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = scan_dir(&base).unwrap_err().to_string();
        assert!(err.contains("writable by others"), "{err}");
        std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::remove_dir_all(&base).unwrap();
    }

    /// The process's peak resident set (VmHWM), in kB.
    fn peak_rss_kb() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    fn fresh_dir(tag: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let base = std::env::temp_dir().join(format!("love-host-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(&base).unwrap();
        std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o755)).unwrap();
        base
    }

    #[test]
    fn a_huge_sparse_file_is_refused_unread_and_uncopied() {
        let base = fresh_dir("sparse");
        let (dir, copies) = (base.join("plugins"), base.join("copies"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::create_dir_all(&copies).unwrap();
        // 1 GiB that starts like a complete ELF file (the test binary's first 4 KiB).
        let big = dir.join("libbig.so");
        let head = std::fs::read(std::env::current_exe().unwrap()).unwrap()[..4096].to_vec();
        std::fs::write(&big, &head).unwrap();
        std::fs::OpenOptions::new().write(true).open(&big).unwrap().set_len(1 << 30).unwrap();
        let before = peak_rss_kb();
        let report = scan_dir_private(&dir, &copies, &quarantine::Quarantine::default()).unwrap();
        let grown_mb = (peak_rss_kb() - before) / 1024;
        assert!(report.loaded.is_empty());
        let msg = report.refused[0].to_string();
        assert!(msg.contains("libbig.so") && msg.contains("over the plugin size bound"), "{msg}");
        assert_eq!(std::fs::read_dir(&copies).unwrap().count(), 0, "no copy written");
        // The old check read the whole file: 1 GiB. Other tests share the process, so the
        // bound is loose.
        assert!(grown_mb < 200, "peak RSS grew by {grown_mb} MB");
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn the_completeness_check_reads_headers_only() {
        // Under the bound, large and sparse: a complete library (the test binary) followed by
        // 300 MiB of holes passes after reading a few kilobytes (the old check read it all).
        let base = fresh_dir("headers");
        let file = base.join("libsparse.so");
        std::fs::copy(std::env::current_exe().unwrap(), &file).unwrap();
        std::fs::OpenOptions::new().write(true).open(&file).unwrap().set_len(300 << 20).unwrap();
        let before = peak_rss_kb();
        let result = loader::check_elf_complete(&file);
        let grown_mb = (peak_rss_kb() - before) / 1024;
        assert_eq!(result, Ok(()));
        assert!(grown_mb < 100, "peak RSS grew by {grown_mb} MB");

        // The same length with only the first page written (a preallocating writer, or a sparse
        // file): the dynamic loader would fault on the zeros, so it is refused.
        let exe = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let unwritten = base.join("libunwritten.so");
        std::fs::write(&unwritten, &exe[..4096]).unwrap();
        std::fs::OpenOptions::new().write(true).open(&unwritten).unwrap().set_len(exe.len() as u64).unwrap();
        let err = loader::check_elf_complete(&unwritten).unwrap_err();
        assert!(err.contains("not completely written"), "{err}");
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn symlinks_leaving_the_directory_are_refused_and_non_files_skipped() {
        let base = fresh_dir("links");
        let (dir, outside) = (base.join("plugins"), base.join("elsewhere"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        let exe = std::env::current_exe().unwrap();
        std::fs::copy(&exe, outside.join("libout.so")).unwrap();
        std::fs::copy(&exe, dir.join("libinside.so")).unwrap();
        std::os::unix::fs::symlink(outside.join("libout.so"), dir.join("libout.so")).unwrap();
        std::os::unix::fs::symlink(dir.join("libinside.so"), dir.join("libalias.so")).unwrap();
        std::os::unix::fs::symlink(dir.join("libloop.so"), dir.join("libloop.so")).unwrap();
        std::fs::create_dir(dir.join("libdir.so")).unwrap();
        let mkfifo = std::process::Command::new("mkfifo").arg(dir.join("libfifo.so")).status().unwrap();
        assert!(mkfifo.success());

        assert_eq!(screen_entry(&dir, &dir.join("libinside.so")), Entry::File);
        assert_eq!(screen_entry(&dir, &dir.join("libalias.so")), Entry::File, "a link inside the directory");
        assert_eq!(screen_entry(&dir, &dir.join("libdir.so")), Entry::NotAFile("a directory".into()));
        assert_eq!(screen_entry(&dir, &dir.join("libfifo.so")), Entry::NotAFile("a FIFO".into()));
        assert!(matches!(screen_entry(&dir, &dir.join("libloop.so")), Entry::NotAFile(w) if w.contains("loop")));

        let report = scan_dir(&dir).unwrap();
        let refused: Vec<String> = report.refused.iter().map(|e| e.to_string()).collect();
        let out = refused.iter().find(|r| r.contains("libout.so")).expect("the outside link is refused");
        assert!(out.contains("outside the plugin directory") && out.contains("elsewhere"), "{out}");
        // The test binary is no plugin: refused for that, not skipped; the non-files are not in
        // the report at all (and the FIFO did not hang the scan).
        assert!(
            refused.iter().any(|r| r.contains("libinside.so") && r.contains("not a loadable shared library")),
            "{refused:?}"
        );
        for skipped in ["libdir.so", "libfifo.so", "libloop.so"] {
            assert!(!refused.iter().any(|r| r.contains(skipped)), "{skipped}: {refused:?}");
        }
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn skipped_entries_are_logged_once_at_debug() {
        use std::sync::{Arc, Mutex};
        #[derive(Clone, Default)]
        struct Buf(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buf = Buf::default();
        let writer = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_writer(move || writer.clone())
            .finish();
        let base = fresh_dir("skiplog");
        std::fs::create_dir(base.join("libdir.so")).unwrap();
        tracing::subscriber::with_default(subscriber, || {
            for _ in 0..3 {
                scan_dir(&base).unwrap();
            }
        });
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().filter(|l| l.contains("libdir.so")).collect();
        assert_eq!(lines.len(), 1, "{text}");
        assert!(lines[0].contains("DEBUG") && lines[0].contains("a directory"), "{}", lines[0]);
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn layout_errors_are_summarized() {
        // The shape of abi_stable 0.11's report, with the bulk of the type tree elided.
        let mut text = String::from("Compared <this>:\n    --- Type Layout ---\n");
        for i in 0..1500 {
            text.push_str(&format!("        field_{i}: some type tree line\n"));
        }
        text.push_str("0 error(s)inside:\n    <other>\n\n2 error(s)inside:\n    <other>\n\n    field_name:0\n    type:PluginMod\n\n    field_name:layout_anchor\n    type:AFunctionPointer\n\n    field_name:__returns\n    type:LayoutAnchor\n\n    field_name:input\n    type:InputMsg\n\nLayout of expected type:\n    type:InputMsg\n\nError:incompatible type size\nExpected:\n    368\nFound:\n    376\n\nError:too many fields\nExpected:\n    8\nFound:\n    9\n");
        let s = summarize_layout_error(&text);
        assert_eq!(
            s,
            "layout of InputMsg differs (reached through PluginMod -> layout_anchor -> LayoutAnchor -> input): \
             incompatible type size (expected 368, found 376); too many fields (expected 8, found 9)"
        );
    }

    use loader::summarize_layout_error;
}
