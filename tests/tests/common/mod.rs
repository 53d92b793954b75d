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

/// A golden vector file of the reference (`tests/golden`).
pub fn golden_path(name: &str) -> PathBuf {
    repo_root().join("tests/golden").join(name)
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
        // Two invocations: `--bin` would restrict every selected package to its binaries, and
        // the plugins have none.
        let mut cmd = cargo();
        cmd.current_dir(repo_root())
            .args(["build", "-p", "love-host", "--bin", "love-host", "--bin", "love-sal-writer"])
            .args(profile_args(&profile))
            .env("CARGO_TARGET_DIR", &target);
        run_cargo(cmd, "the host");
        let mut cmd = cargo();
        cmd.current_dir(repo_root())
            .args(["build", "-p", "love-plugin-csc", "-p", "love-plugin-scriptqueue", "-p", "love-plugin-watcher"])
            .args(profile_args(&profile))
            .env("CARGO_TARGET_DIR", &target);
        run_cargo(cmd, "the plugins");
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
        // v1 and skewed both hold a package `love-plugin-api 1.0.0` at `api`, which cargo hashes
        // alike: they need separate target directories. csc-next shares v1's.
        let fx_target = target.join(if which == "v1" { "fixtures-a" } else { "fixtures-b" });
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

/// A running `love-host` process with its output collected in the background.
pub struct HostProcess {
    /// The child.
    pub child: std::process::Child,
    stdout: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    stderr: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl HostProcess {
    /// Start the built host with `args` (stdout and stderr piped; env cleaned of the original's
    /// variables so the test decides).
    pub fn start(args: &[&str]) -> HostProcess {
        Self::start_with_env(args, &[])
    }

    /// Like [`HostProcess::start`] with extra environment variables.
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> HostProcess {
        use std::io::BufRead;
        use std::process::Stdio;
        let mut cmd = Command::new(&built().host);
        cmd.args(args)
            .env_remove("LOVE_CSC_PRODUCER")
            .env_remove("WEBSOCKET_HOST")
            .env_remove("PROCESS_CONNECTION_PASS")
            .env_remove("LOVE_MANAGER_URL")
            .env_remove("LSST_KAFKA_BROKER_ADDR")
            .env_remove("TS_XML_DIR")
            .env_remove("LOVE_PLUGIN_DIR")
            .env_remove("MALLOC_ARENA_MAX")
            .env_remove("GLIBC_TUNABLES")
            .env_remove("MIMALLOC_PURGE_DELAY")
            .env_remove("MIMALLOC_RESET_DELAY")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start love-host");
        let stdout = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (o, e) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
        let (so, se) = (stdout.clone(), stderr.clone());
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(o).lines().map_while(Result::ok) {
                so.lock().unwrap().push(line);
            }
        });
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(e).lines().map_while(Result::ok) {
                se.lock().unwrap().push(line);
            }
        });
        HostProcess { child, stdout, stderr }
    }

    /// Lines written to stdout so far.
    pub fn stdout(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    /// Lines written to stderr (the log) so far.
    pub fn stderr(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }

    /// Wait until `cond` holds for the stdout lines (parsed leniently as JSON), or panic with
    /// the log after `timeout`.
    pub fn wait_stdout(
        &self,
        timeout: std::time::Duration,
        what: &str,
        mut cond: impl FnMut(&[serde_json::Value]) -> bool,
    ) {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let parsed: Vec<serde_json::Value> =
                self.stdout().iter().filter_map(|l| love_plugin_api::json::parse_lenient(l).ok()).collect();
            if cond(&parsed) {
                return;
            }
            if std::time::Instant::now() > deadline {
                panic!("timed out waiting for {what}\n--- log ---\n{}", self.stderr().join("\n"));
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// Wait until a log line contains `needle`.
    pub fn wait_log(&self, timeout: std::time::Duration, needle: &str) -> String {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(l) = self.stderr().into_iter().find(|l| l.contains(needle)) {
                return l;
            }
            if std::time::Instant::now() > deadline {
                panic!("timed out waiting for log line with {needle:?}\n--- log ---\n{}", self.stderr().join("\n"));
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// Send a signal (`TERM`, `INT`, `HUP`).
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill").arg(format!("-{sig}")).arg(self.child.id().to_string()).status().unwrap();
        assert!(ok.success());
    }

    /// Wait for the process to exit (at most `timeout`); returns its status.
    pub fn wait_exit(&mut self, timeout: std::time::Duration) -> std::process::ExitStatus {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                // Let the reader threads drain.
                std::thread::sleep(std::time::Duration::from_millis(100));
                return st;
            }
            if std::time::Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("love-host did not exit within {timeout:?}\n--- log ---\n{}", self.stderr().join("\n"));
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

impl Drop for HostProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `data[0]` stream names of data messages for a given envelope csc.
pub fn streams_of(msgs: &[serde_json::Value], csc: &str) -> Vec<String> {
    msgs.iter()
        .filter(|m| m["data"][0]["csc"] == csc)
        .filter_map(|m| m["data"][0]["data"].as_object().and_then(|o| o.keys().next().cloned()))
        .collect()
}

/// Build the `csc` re-export at a higher version (tests/fixtures/csc-next) with an optional
/// feature (`restore-fails`, `create-panics`); returns a uniquely named copy of the `.so`.
pub fn csc_next_so(feature: Option<&str>) -> PathBuf {
    static CACHE: OnceLock<std::sync::Mutex<std::collections::HashMap<String, PathBuf>>> = OnceLock::new();
    let key = feature.unwrap_or("plain").to_string();
    let mut cache = CACHE.get_or_init(Default::default).lock().unwrap_or_else(|p| p.into_inner());
    if let Some(p) = cache.get(&key) {
        return p.clone();
    }
    let (target, profile) = target_and_profile();
    let fx_target = target.join("fixtures-a");
    let mut cmd = cargo();
    cmd.current_dir(repo_root().join("tests/fixtures/csc-next"))
        .arg("build")
        .args(profile_args(&profile))
        .env("CARGO_TARGET_DIR", &fx_target);
    if let Some(f) = feature {
        cmd.args(["--features", f]);
    }
    run_cargo(cmd, &format!("fixture csc-next ({key})"));
    let built = fx_target.join(&profile).join("liblove_fixture_csc_next.so");
    let copy = target.join(format!("liblove_csc_next_{}.so", key.replace('-', "_")));
    std::fs::copy(&built, &copy).unwrap();
    cache.insert(key, copy.clone());
    copy
}

/// Deploy a plugin the documented way: copy under a temporary (hidden) name, then rename into
/// place as `name`.
pub fn deploy(dir: &Path, so: &Path, name: &str) {
    let tmp = dir.join(format!(".{name}.part"));
    std::fs::copy(so, &tmp).unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}

/// The admin endpoint address a host logged (`--admin-addr 127.0.0.1:0`).
pub fn admin_addr(host: &HostProcess) -> String {
    let line = host.wait_log(std::time::Duration::from_secs(30), "admin endpoint on http://");
    let rest = &line[line.find("http://").unwrap() + 7..];
    rest.split_whitespace().next().unwrap().to_string()
}

/// A plain HTTP GET on 127.0.0.1 (status, body).
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).unwrap();
    let status: u16 = buf.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = buf.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

/// Start the built host against a fake LOVE-manager with the admin endpoint on a free port:
/// `--plugin-dir DIR --manager-url URL --admin-addr 127.0.0.1:0` plus `extra`, the manager
/// password in `PROCESS_CONNECTION_PASS`.
pub fn start_host_with_manager(
    mgr: &love_host_tests::FakeManager,
    dir: &Path,
    password: &str,
    extra: &[&str],
) -> HostProcess {
    let url = mgr.url();
    let mut args =
        vec!["--plugin-dir", dir.to_str().unwrap(), "--manager-url", url.as_str(), "--admin-addr", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    HostProcess::start_with_env(&args, &[("PROCESS_CONNECTION_PASS", password)])
}

/// Wait (60 s at most) until the fake manager's state satisfies `cond`, or fail with the log.
pub async fn wait_manager(
    mgr: &love_host_tests::FakeManager,
    host: &HostProcess,
    what: &str,
    cond: impl Fn(&love_host_tests::FakeManager) -> bool,
) {
    if !mgr.wait_until(std::time::Duration::from_secs(60), |m| cond(m)).await {
        panic!("timed out waiting for {what}\n--- log ---\n{}", host.stderr().join("\n"));
    }
}

/// Build the misbehaving fixture plugin (tests/fixtures/misbehaving) with `feature` (`hang`,
/// `segfault`) once; returns a uniquely named copy of the `.so`.
pub fn misbehaving_so(feature: &str) -> PathBuf {
    static CACHE: OnceLock<std::sync::Mutex<std::collections::HashMap<String, PathBuf>>> = OnceLock::new();
    let mut cache = CACHE.get_or_init(Default::default).lock().unwrap_or_else(|p| p.into_inner());
    if let Some(p) = cache.get(feature) {
        return p.clone();
    }
    let (target, profile) = target_and_profile();
    let fx_target = target.join("fixtures-a");
    let mut cmd = cargo();
    cmd.current_dir(repo_root().join("tests/fixtures/misbehaving"))
        .args(["build", "--features", feature])
        .args(profile_args(&profile))
        .env("CARGO_TARGET_DIR", &fx_target);
    run_cargo(cmd, &format!("fixture misbehaving ({feature})"));
    let built = fx_target.join(&profile).join("liblove_fixture_misbehaving.so");
    let copy = target.join(format!("liblove_misbehaving_{feature}.so"));
    std::fs::copy(&built, &copy).unwrap();
    cache.insert(feature.to_string(), copy.clone());
    copy
}
