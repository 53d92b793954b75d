//! Shared helpers for the end-to-end tests: build the host binary and the plugins once (cargo
//! test does not build cdylib members as `.so` files), and stage plugin directories.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// `<repo>/../shared`, or `$LOVE_SHARED_DIR`.
pub fn shared_dir() -> PathBuf {
    std::env::var_os("LOVE_SHARED_DIR").map(PathBuf::from).unwrap_or_else(|| repo_root().join("../shared"))
}

/// The ts_xml interface directory.
pub fn xml_dir() -> PathBuf {
    shared_dir().join("ts_xml/sal_interfaces")
}

/// The target directory and profile directory name this test binary was built into.
fn target_and_profile() -> (PathBuf, String) {
    // <target>/<profile>/deps/<test-binary>
    let exe = std::env::current_exe().expect("current exe");
    let profile_dir = exe.parent().and_then(Path::parent).expect("profile dir").to_path_buf();
    let profile = profile_dir.file_name().unwrap().to_string_lossy().to_string();
    let target = profile_dir.parent().expect("target dir").to_path_buf();
    (target, profile)
}

fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

fn profile_args(profile: &str) -> Vec<String> {
    match profile {
        "debug" => vec![],
        "release" => vec!["--release".into()],
        other => vec!["--profile".into(), other.into()],
    }
}

fn run_cargo(mut cmd: Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run cargo for {what}: {e}"));
    if !out.status.success() {
        panic!("building {what} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    }
}

/// Paths of the built host binary and the workspace plugins.
pub struct Built {
    /// `love-host` binary.
    pub host: PathBuf,
    /// The profile directory holding `liblove_plugin_*.so`.
    pub profile_dir: PathBuf,
}

/// Build the host binary and the workspace plugins once per test process.
pub fn built() -> &'static Built {
    static BUILT: OnceLock<Built> = OnceLock::new();
    BUILT.get_or_init(|| {
        let (target, profile) = target_and_profile();
        let mut cmd = cargo();
        cmd.current_dir(repo_root())
            .args(["build", "-p", "love-host", "--bin", "love-host"])
            .args(["-p", "love-plugin-csc", "-p", "love-plugin-scriptqueue", "-p", "love-plugin-watcher"])
            .args(profile_args(&profile))
            .env("CARGO_TARGET_DIR", &target);
        run_cargo(cmd, "the host and plugins");
        let profile_dir = target.join(&profile);
        Built { host: profile_dir.join("love-host"), profile_dir }
    })
}

/// The path of a built workspace plugin, by crate suffix (`csc`, `watcher`, `scriptqueue`).
pub fn plugin_so(name: &str) -> PathBuf {
    let p = built().profile_dir.join(format!("liblove_plugin_{name}.so"));
    assert!(p.exists(), "plugin {} was not built", p.display());
    p
}

/// Build a fixture plugin (`v1` or `skewed`, see tests/fixtures/README.txt) once; each gets its
/// own target directory because both contain a package named love-plugin-api 1.0.0.
pub fn fixture_so(which: &str) -> PathBuf {
    static V1: OnceLock<PathBuf> = OnceLock::new();
    static SKEWED: OnceLock<PathBuf> = OnceLock::new();
    let cell = match which {
        "v1" => &V1,
        "skewed" => &SKEWED,
        other => panic!("no fixture {other}"),
    };
    cell.get_or_init(|| {
        let (target, profile) = target_and_profile();
        let fx_target = target.join(format!("fixture-{which}"));
        let mut cmd = cargo();
        cmd.current_dir(repo_root().join("tests/fixtures").join(which))
            .arg("build")
            .args(profile_args(&profile))
            .env("CARGO_TARGET_DIR", &fx_target);
        run_cargo(cmd, &format!("fixture {which}"));
        fx_target.join(&profile).join(format!("liblove_fixture_{which}.so"))
    })
    .clone()
}

/// A fresh private plugin directory (mode 0755) holding copies of `files`.
pub fn plugin_dir(tag: &str, files: &[PathBuf]) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("love-host-test-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    for f in files {
        std::fs::copy(f, dir.join(f.file_name().unwrap())).unwrap();
    }
    dir
}
