//! Loading producer plugins from `.so` files.
//!
//! Each file goes through `lib_header_from_path(..).init_root_module()`: abi_stable's
//! `RootModule::load_from_file` keeps one module per root-module type in a static, so a second
//! plugin would silently return the first. The layout check happens there; its error walks the
//! whole type tree (about 1,500 lines), so only the lines that name the mismatch are kept.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use abi_stable::library::{lib_header_from_path, LibraryError, RootModule};
use abi_stable::std_types::RResult;
use love_plugin_api::abi::{PluginModRef, ProducerBox};

/// What a plugin says about itself, as plain Rust values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    /// Plugin name (upgrades match on it).
    pub name: String,
    /// Plugin version.
    pub version: String,
    /// Producer type it provides.
    pub producer_type: String,
    /// Component names it claims.
    pub claims: Vec<String>,
    /// love-plugin-api version it was built against.
    pub api_version: String,
}

/// A plugin that loaded and passed every check.
pub struct LoadedPlugin {
    /// Its descriptor.
    pub descriptor: Descriptor,
    /// The file it was loaded from.
    pub path: PathBuf,
    module: PluginModRef,
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin").field("descriptor", &self.descriptor).field("path", &self.path).finish()
    }
}

impl LoadedPlugin {
    /// The same plugin reported under another path (a private copy reported as the deployed
    /// file it came from).
    pub fn with_path(self, path: PathBuf) -> Self {
        LoadedPlugin { path, ..self }
    }

    /// Create a producer from its configuration (JSON text).
    pub fn create(&self, config_json: &str) -> Result<ProducerBox, String> {
        match (self.module.create())(config_json.into()) {
            RResult::ROk(p) => Ok(p),
            RResult::RErr(e) => Err(e.to_string()),
        }
    }
}

/// Why a file was not loaded.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LoadError {
    /// The dynamic loader could not open it.
    #[error("{path}: not a loadable shared library: {reason}")]
    NotALibrary {
        /// The file.
        path: PathBuf,
        /// The loader's reason.
        reason: String,
    },
    /// It is a shared library without a love-host root module.
    #[error("{path}: not a love-host plugin (no abi_stable root module): {reason}")]
    NotAPlugin {
        /// The file.
        path: PathBuf,
        /// Details.
        reason: String,
    },
    /// Built against an incompatible plugin interface.
    #[error("{path}: incompatible plugin interface (host has love-plugin-api {host_api}): {reason}")]
    Incompatible {
        /// The file.
        path: PathBuf,
        /// The host's interface version.
        host_api: String,
        /// The mismatch, shortened.
        reason: String,
    },
    /// Refused before it was opened as a library (a symlink leaving the plugin directory).
    #[error("{path}: refused: {reason}")]
    Refused {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The plugin's own code failed (descriptor).
    #[error("{path}: plugin failed to describe itself: {reason}")]
    Failed {
        /// The file.
        path: PathBuf,
        /// Its error.
        reason: String,
    },
}

impl LoadError {
    /// The same error reported about `file` (a private copy's error reported as the deployed
    /// file it came from), with the copy's path taken out of the reason.
    pub fn reported_as(self, file: &Path) -> LoadError {
        let scrub =
            |copy: &Path, reason: String| reason.replace(&copy.display().to_string(), &file.display().to_string());
        let path = file.to_path_buf();
        match self {
            LoadError::NotALibrary { path: copy, reason } => {
                LoadError::NotALibrary { reason: scrub(&copy, reason), path }
            }
            LoadError::NotAPlugin { path: copy, reason } => {
                LoadError::NotAPlugin { reason: scrub(&copy, reason), path }
            }
            LoadError::Incompatible { path: copy, host_api, reason } => {
                LoadError::Incompatible { reason: scrub(&copy, reason), host_api, path }
            }
            LoadError::Failed { path: copy, reason } => LoadError::Failed { reason: scrub(&copy, reason), path },
            LoadError::Refused { path: copy, reason } => LoadError::Refused { reason: scrub(&copy, reason), path },
        }
    }

    /// The file the error is about.
    pub fn path(&self) -> &Path {
        match self {
            LoadError::NotALibrary { path, .. }
            | LoadError::NotAPlugin { path, .. }
            | LoadError::Incompatible { path, .. }
            | LoadError::Failed { path, .. }
            | LoadError::Refused { path, .. } => path,
        }
    }
}

/// The love-plugin-api version this host was built with.
pub fn host_api_version() -> String {
    love_plugin_api::sdk::API_VERSION.to_string()
}

/// The default bound on a plugin file's size (`--max-plugin-size`): a release plugin is about
/// 10 MB, a debug build with full debug information a few hundred; anything larger is refused
/// before it is read or copied.
pub const DEFAULT_MAX_PLUGIN_SIZE: u64 = 512 * 1024 * 1024;

static MAX_PLUGIN_SIZE: AtomicU64 = AtomicU64::new(DEFAULT_MAX_PLUGIN_SIZE);

/// Set the plugin file size bound for every later load (once, at start).
pub fn set_max_plugin_size(bytes: u64) {
    MAX_PLUGIN_SIZE.store(bytes, Ordering::Relaxed);
}

/// The plugin file size bound in force.
pub fn max_plugin_size() -> u64 {
    MAX_PLUGIN_SIZE.load(Ordering::Relaxed)
}

/// Refuse a file over the size bound, from its metadata alone (nothing is read).
fn check_size(meta: &std::fs::Metadata) -> Result<(), String> {
    let max = max_plugin_size();
    if meta.len() > max {
        return Err(format!(
            "{} bytes, over the plugin size bound of {max} bytes (--max-plugin-size); not read",
            meta.len()
        ));
    }
    Ok(())
}

/// Check that an ELF file is complete: its program and section header tables and every
/// loadable segment lie inside the file. The dynamic loader happily maps a truncated library (a
/// copy still in progress) and faults later, so this is checked before `dlopen`.
pub fn check_elf_complete(path: &Path) -> Result<(), String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    check_elf_file(&file)
}

/// [`check_elf_complete`] on an open file: reads the ELF header and the program header table
/// only (at most 64 + 65535 x 56 bytes), never the whole file.
fn check_elf_file(file: &std::fs::File) -> Result<(), String> {
    use std::os::unix::fs::FileExt;
    let len = file.metadata().map_err(|e| e.to_string())?.len();
    let mut header = [0u8; 64];
    if len < 64 || file.read_exact_at(&mut header, 0).is_err() || &header[..4] != b"\x7fELF" {
        return Err("not an ELF file".into());
    }
    if header[4] != 2 || header[5] != 1 {
        return Err("not a 64-bit little-endian ELF file".into());
    }
    let u16_at = |d: &[u8], o: usize| u16::from_le_bytes([d[o], d[o + 1]]) as u64;
    let u64_at = |d: &[u8], o: usize| u64::from_le_bytes(d[o..o + 8].try_into().expect("8 bytes"));
    let (phoff, shoff) = (u64_at(&header, 0x20), u64_at(&header, 0x28));
    let (phentsize, phnum) = (u16_at(&header, 0x36), u16_at(&header, 0x38));
    let (shentsize, shnum) = (u16_at(&header, 0x3A), u16_at(&header, 0x3C));
    let truncated = || {
        Err(format!(
            "truncated ELF file ({len} bytes): still being written? Deploy by renaming a complete file into place"
        ))
    };
    // Entries smaller than the ELF64 structures would make the reads below leave the file.
    if (phnum > 0 && phentsize < 0x38) || (shnum > 0 && shentsize < 0x40) {
        return Err("corrupt ELF file: header table entries smaller than ELF64's".into());
    }
    if phoff.saturating_add(phentsize * phnum) > len || shoff.saturating_add(shentsize * shnum) > len {
        return truncated();
    }
    let mut table = vec![0u8; (phentsize * phnum) as usize];
    file.read_exact_at(&mut table, phoff).map_err(|e| format!("cannot read the program headers: {e}"))?;
    let mut dynamic = None;
    for i in 0..phnum {
        let base = (i * phentsize) as usize;
        let (offset, filesz) = (u64_at(&table, base + 0x08), u64_at(&table, base + 0x20));
        if offset.saturating_add(filesz) > len {
            return truncated();
        }
        if u32::from_le_bytes(table[base..base + 4].try_into().expect("4 bytes")) == PT_DYNAMIC {
            dynamic = Some((offset, filesz));
        }
    }
    // A file of the right length can still be unwritten: a writer that preallocates (or a
    // sparse file) leaves zeros after the header, and the dynamic loader faults on them. The
    // section header table is written last and the dynamic segment near the end: both must
    // hold real entries. Both are small, so this stays a header-sized read.
    let unwritten = |what: &str| {
        Err(format!(
            "its {what} is all zeros: the file is not completely written (preallocated or sparse?). \
             Deploy by renaming a complete file into place"
        ))
    };
    let Some((dyn_offset, dyn_size)) = dynamic else {
        return Err("not a shared library: no dynamic segment".into());
    };
    let mut entries = vec![0u8; dyn_size.min(MAX_HEADER_READ) as usize];
    file.read_exact_at(&mut entries, dyn_offset).map_err(|e| format!("cannot read the dynamic segment: {e}"))?;
    // Entries are (tag, value) pairs of 8 bytes each; a library's list never starts with DT_NULL.
    if entries.len() < 16 || u64_at(&entries, 0) == 0 {
        return unwritten("dynamic segment");
    }
    let sh_size = shentsize * shnum;
    if shnum > 1 && sh_size <= MAX_HEADER_READ {
        let mut sections = vec![0u8; sh_size as usize];
        file.read_exact_at(&mut sections, shoff).map_err(|e| format!("cannot read the section headers: {e}"))?;
        // Entry 0 is null by definition; every real section has a non-zero type.
        let typed = (1..shnum).any(|i| sections[(i * shentsize) as usize + 4..][..4] != [0u8; 4]);
        if !typed {
            return unwritten("section header table");
        }
    }
    Ok(())
}

/// ELF program header type of the dynamic segment.
const PT_DYNAMIC: u32 = 2;
/// The most [`check_elf_file`] reads of the dynamic segment or the section header table.
const MAX_HEADER_READ: u64 = 4 << 20;

/// A library anyone may write is code anyone may run in the host: refused, as a plugin
/// directory writable by others is.
fn refuse_world_writable(path: &Path) -> Result<(), LoadError> {
    use std::os::unix::fs::PermissionsExt;
    let not_loaded = |reason: String| LoadError::NotALibrary { path: path.to_path_buf(), reason };
    let mode = std::fs::metadata(path).map_err(|e| not_loaded(e.to_string()))?.permissions().mode() & 0o7777;
    if mode & 0o002 != 0 {
        return Err(not_loaded(format!(
            "writable by others (mode {mode:o}): anyone could replace its code; chmod o-w it"
        )));
    }
    Ok(())
}

/// Load `file` from a private copy at `copy`, reported as `file`. The dynamic loader maps the
/// file it opens: a deployed file overwritten in place (rather than replaced by a rename) would
/// fault the running host, and a path or inode the loader has seen returns the old library.
/// The size bound and the ELF headers are checked on the open file before anything is copied,
/// and the copy stops at the bound, so a huge (or growing) file costs neither memory nor disk.
pub fn load_plugin_copy(file: &Path, copy: &Path) -> Result<LoadedPlugin, LoadError> {
    let refused = |reason: String| LoadError::NotALibrary { path: file.to_path_buf(), reason };
    let src = open_nonblocking(file).map_err(|e| refused(e.to_string()))?;
    let meta = src.metadata().map_err(|e| refused(e.to_string()))?;
    if !meta.is_file() {
        return Err(refused("not a regular file".into()));
    }
    check_size(&meta).map_err(refused)?;
    check_elf_file(&src).map_err(refused)?;
    if let Err(e) = copy_bounded(&src, &meta, copy) {
        let _ = std::fs::remove_file(copy);
        return Err(refused(format!("cannot make its private copy {}: {e}", copy.display())));
    }
    match load_plugin(copy) {
        Ok(p) => Ok(p.with_path(file.to_path_buf())),
        Err(e) => {
            let _ = std::fs::remove_file(copy);
            Err(e.reported_as(file))
        }
    }
}

/// Open for reading without blocking: a FIFO that slipped past the directory scan (renamed in
/// between) must not hang the loader waiting for a writer.
fn open_nonblocking(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(path)
}

/// Copy `src` to a new file `copy` with the source's permission bits, at most the size bound.
fn copy_bounded(src: &std::fs::File, meta: &std::fs::Metadata, copy: &Path) -> std::io::Result<()> {
    use std::io::Read;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let max = max_plugin_size();
    let mode = meta.permissions().mode() & 0o777;
    let mut out = std::fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(copy)?;
    let copied = std::io::copy(&mut src.take(max + 1), &mut out)?;
    if copied > max {
        return Err(std::io::Error::other(format!("the file grew over the plugin size bound of {max} bytes")));
    }
    // The umask may have narrowed the mode at creation.
    out.set_permissions(std::fs::Permissions::from_mode(mode))
}

/// Load one plugin file.
pub fn load_plugin(path: &Path) -> Result<LoadedPlugin, LoadError> {
    refuse_world_writable(path)?;
    let not_loaded = |reason: String| LoadError::NotALibrary { path: path.to_path_buf(), reason };
    let file = open_nonblocking(path).map_err(|e| not_loaded(e.to_string()))?;
    check_size(&file.metadata().map_err(|e| not_loaded(e.to_string()))?).map_err(not_loaded)?;
    check_elf_file(&file).map_err(not_loaded)?;
    let header = lib_header_from_path(path).map_err(|e| classify(path, e))?;
    let module = header.init_root_module::<PluginModRef>().map_err(|e| classify(path, e))?;
    let d = match (module.descriptor())() {
        RResult::ROk(d) => d,
        RResult::RErr(e) => return Err(LoadError::Failed { path: path.to_path_buf(), reason: e.to_string() }),
    };
    let descriptor = Descriptor {
        name: d.name.into(),
        version: d.version.into(),
        producer_type: d.producer_type.into(),
        claims: d.claims.iter().map(|c| c.to_string()).collect(),
        api_version: d.api_version.into(),
    };
    if descriptor.name.is_empty() || descriptor.producer_type.is_empty() {
        return Err(LoadError::Failed {
            path: path.to_path_buf(),
            reason: "descriptor has an empty plugin name or producer type".into(),
        });
    }
    Ok(LoadedPlugin { descriptor, path: path.to_path_buf(), module })
}

fn classify(path: &Path, err: LibraryError) -> LoadError {
    let path = path.to_path_buf();
    match err {
        LibraryError::OpenError { err, .. } => LoadError::NotALibrary { path, reason: first_line(&err.to_string()) },
        LibraryError::GetSymbolError { .. } => LoadError::NotAPlugin {
            path,
            reason: "it does not export the root module symbol; build it with love_plugin_api::export_plugin!".into(),
        },
        LibraryError::IncompatibleVersionNumber { expected_version, actual_version, .. } => LoadError::Incompatible {
            path,
            host_api: host_api_version(),
            reason: format!(
                "interface version mismatch: host expects {expected_version}, plugin was built against {actual_version}"
            ),
        },
        LibraryError::AbiInstability(e) => LoadError::Incompatible {
            path,
            host_api: host_api_version(),
            reason: summarize_layout_error(&e.to_string()),
        },
        LibraryError::InvalidAbiHeader(h) => LoadError::Incompatible {
            path,
            host_api: host_api_version(),
            reason: format!("built with an incompatible abi_stable (header {h:?})"),
        },
        LibraryError::Many(errs) => {
            let mut parts: Vec<LoadError> = errs.into_iter().map(|e| classify(&path, e)).collect();
            match parts.len() {
                1 => parts.remove(0),
                _ => LoadError::Incompatible {
                    path: path.clone(),
                    host_api: host_api_version(),
                    reason: parts.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("; "),
                },
            }
        }
        other => LoadError::Incompatible {
            path,
            host_api: host_api_version(),
            reason: summarize_layout_error(&other.to_string()),
        },
    }
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").trim().to_string()
}

/// Keep the part of abi_stable's layout error a person needs: which type differs, through which
/// fields it was reached, and what was expected and found. abi_stable's text walks the whole
/// type tree (hundreds of lines); the innermost block with errors names the culprit.
pub fn summarize_layout_error(text: &str) -> String {
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    // The last "N error(s)inside:" block with N > 0 is the innermost mismatch.
    let start = lines.iter().rposition(|l| l.ends_with("error(s)inside:") && !l.starts_with("0 "));
    let Some(start) = start else {
        let tail: Vec<&str> = lines.iter().rev().filter(|l| !l.is_empty()).take(6).copied().collect();
        return tail.into_iter().rev().collect::<Vec<_>>().join(" | ");
    };
    let mut path: Vec<String> = Vec::new();
    let mut i = start + 1;
    while i < lines.len() && !lines[i].starts_with("Layout of expected type") {
        if let Some(field) = lines[i].strip_prefix("field_name:") {
            if field != "0" && field != "__returns" {
                path.push(field.to_string());
            }
        }
        if let Some(ty) = lines[i].strip_prefix("type:") {
            if ty != "AFunctionPointer" {
                path.push(ty.to_string());
            }
        }
        i += 1;
    }
    let culprit = path.last().cloned().unwrap_or_else(|| "the root module".into());
    let mut problems: Vec<String> = Vec::new();
    while i < lines.len() {
        if let Some(what) = lines[i].strip_prefix("Error:") {
            let value_after = |label: &str, from: usize| -> Option<(String, usize)> {
                let pos = (from..lines.len().min(from + 6)).find(|&k| lines[k].starts_with(label))?;
                let inline = lines[pos][label.len()..].trim();
                if !inline.is_empty() {
                    return Some((inline.to_string(), pos));
                }
                lines.get(pos + 1).map(|v| (v.to_string(), pos + 1))
            };
            let mut entry = what.trim().to_string();
            if let Some((exp, at)) = value_after("Expected:", i + 1) {
                if let Some((found, _)) = value_after("Found:", at + 1) {
                    entry = format!("{entry} (expected {exp}, found {found})");
                }
            }
            problems.push(entry);
        }
        i += 1;
    }
    let mut out = format!("layout of {culprit} differs");
    if path.len() > 1 {
        out.push_str(&format!(" (reached through {})", path[..path.len() - 1].join(" -> ")));
    }
    if !problems.is_empty() {
        out.push_str(": ");
        out.push_str(&problems.join("; "));
    }
    if out.len() > 600 {
        out.truncate(600);
        out.push('…');
    }
    out
}

/// The root module's interface version string (for `love-host plugins` output).
pub fn root_module_version() -> String {
    PluginModRef::VERSION_STRINGS.to_string()
}
