//! PLUGINS.md, run. Every shell block of the guide is executed exactly as written, in order,
//! from the repository root, on the example plugin (examples/dome-extras); the one change is the
//! plugin directory, `/opt/love/plugins` in the guide, which becomes a private temporary
//! directory. `love-host` on the PATH is the host built by this test suite, and
//! CARGO_TARGET_DIR points under this suite's target directory so that the guide's builds leave
//! nothing in the source tree. The guide's `love-host --plugin-dir … --components …` command runs
//! a host that is stopped once it has served the component. Its toml blocks must be copies of
//! the example's Cargo.toml; its Rust blocks are doc tests of love-plugin-api (see the
//! `plugin_guide` module in plugin-api/src/lib.rs).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;

/// The plugin directory as the guide writes it.
const GUIDE_PLUGIN_DIR: &str = "/opt/love/plugins";

/// One fenced code block of the guide.
#[derive(Debug)]
struct Block {
    lang: String,
    text: String,
    line: usize,
}

fn guide() -> String {
    let path = repo_root().join("PLUGINS.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn blocks(markdown: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut open: Option<Block> = None;
    for (i, line) in markdown.lines().enumerate() {
        match (&mut open, line.strip_prefix("```")) {
            (None, Some(lang)) => {
                open = Some(Block { lang: lang.trim().to_string(), text: String::new(), line: i + 1 })
            }
            (Some(_), Some(rest)) if rest.trim().is_empty() => out.push(open.take().unwrap()),
            (Some(b), _) => {
                b.text.push_str(line);
                b.text.push('\n');
            }
            (None, None) => {}
        }
    }
    assert!(open.is_none(), "PLUGINS.md: unclosed code block at line {}", open.unwrap().line);
    out
}

/// `<target>` of this test binary (`<target>/<profile>/deps/<exe>`).
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().and_then(Path::parent).and_then(Path::parent).expect("target dir").to_path_buf()
}

/// Run one shell block with bash from the repository root.
fn run_block(script: &str, path: &str, cargo_target: &Path) -> (String, String) {
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", script])
        .current_dir(repo_root())
        .env("PATH", path)
        .env("CARGO_TARGET_DIR", cargo_target)
        .env_remove("LOVE_CSC_PRODUCER")
        .env_remove("LOVE_PLUGIN_DIR")
        .env_remove("LOVE_MANAGER_URL")
        .env_remove("WEBSOCKET_HOST")
        .env_remove("PROCESS_CONNECTION_PASS")
        .env_remove("LSST_KAFKA_BROKER_ADDR")
        .env_remove("TS_XML_DIR")
        .output()
        .expect("run bash");
    let (stdout, stderr) =
        (String::from_utf8_lossy(&out.stdout).to_string(), String::from_utf8_lossy(&out.stderr).to_string());
    assert!(
        out.status.success(),
        "guide command failed ({}):\n{script}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
        out.status
    );
    (stdout, stderr)
}

#[test]
fn every_code_block_of_the_guide_is_checked() {
    let text = guide();
    let all = blocks(&text);
    assert!(all.len() >= 10, "PLUGINS.md has only {} code blocks", all.len());
    let cargo_toml = std::fs::read_to_string(repo_root().join("examples/dome-extras/Cargo.toml")).unwrap();
    for b in &all {
        match b.lang.as_str() {
            // Compiled and run by `cargo test -p love-plugin-api --doc`.
            "rust" => {}
            "toml" => assert!(
                cargo_toml.contains(&b.text),
                "PLUGINS.md line {}: this toml block is not a copy of examples/dome-extras/Cargo.toml:\n{}",
                b.line,
                b.text
            ),
            // Run by the next test.
            "sh" => assert!(!b.text.contains('\\'), "PLUGINS.md line {}: one command per line, please", b.line),
            other => panic!("PLUGINS.md line {}: code block of language {other:?} is checked by no test", b.line),
        }
    }
    let lib = std::fs::read_to_string(repo_root().join("plugin-api/src/lib.rs")).unwrap();
    assert!(
        lib.contains("#[cfg(doctest)]") && lib.contains("include_str!(\"../../PLUGINS.md\")"),
        "plugin-api/src/lib.rs no longer runs the guide's Rust blocks as doc tests"
    );
}

#[test]
fn the_guides_commands_test_build_deploy_list_and_run_the_example() {
    let built = built();
    let plugin_dir = std::env::temp_dir().join(format!("love-host-guide-plugins-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&plugin_dir);
    let cargo_target = target_dir().join("plugin-guide");
    // `love-host` is the suite's build; `cargo` the one running this suite.
    let mut path = vec![built.profile_dir.clone()];
    if let Some(cargo_dir) =
        std::env::var_os("CARGO").map(PathBuf::from).and_then(|c| c.parent().map(Path::to_path_buf))
    {
        path.push(cargo_dir);
    }
    let path = std::env::join_paths(
        path.into_iter().chain(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())),
    )
    .unwrap()
    .to_string_lossy()
    .to_string();

    let (mut tested, mut built_so, mut listed, mut ran) = (false, false, false, false);
    for b in blocks(&guide()).into_iter().filter(|b| b.lang == "sh") {
        let script = b.text.replace(GUIDE_PLUGIN_DIR, plugin_dir.to_str().unwrap());
        let command = script.trim();
        if command.starts_with("love-host ") && !command.starts_with("love-host plugins") && !command.contains('\n') {
            // The long-running host of the walkthrough's last step.
            let args: Vec<&str> = command.split_whitespace().skip(1).collect();
            let mut host = HostProcess::start(&args);
            let t = Duration::from_secs(60);
            let line = host.wait_log(t, "ATDome:0 served by dome-extras");
            assert!(line.contains("claims ATDome"), "{line}");
            host.wait_stdout(t, "the derived azimuthError stream and csc's ATDome streams", |msgs| {
                let streams = streams_of(msgs, "ATDome");
                streams.iter().any(|s| s == "azimuthError") && streams.iter().any(|s| s == "summaryState")
            });
            // Once the simulated dome is commanded somewhere, the error is a number.
            let error_of =
                |m: &serde_json::Value| m["data"][0]["data"]["azimuthError"]["azimuthError"]["value"].as_f64();
            host.wait_stdout(t, "an azimuthError with a value", |msgs| msgs.iter().any(|m| error_of(m).is_some()));
            let derived = host
                .stdout()
                .into_iter()
                .find(|l| love_plugin_api::json::parse_lenient(l).ok().as_ref().and_then(error_of).is_some())
                .unwrap();
            eprintln!("guide line {}: {command}\n  derived stream: {derived}", b.line);
            host.signal("TERM");
            let st = host.wait_exit(Duration::from_secs(15));
            assert!(st.success(), "exit status {st:?}\n{}", host.stderr().join("\n"));
            ran = true;
            continue;
        }
        let (stdout, _stderr) = run_block(&script, &path, &cargo_target);
        eprintln!("guide line {}:\n{script}{stdout}", b.line);
        if command.contains("cd examples/dome-extras") && command.contains("cargo test") {
            tested = true;
        }
        if command.contains("cargo build --release") {
            let so = cargo_target.join("release/libdome_extras.so");
            assert!(so.is_file(), "{} was not built", so.display());
            assert!(stdout.contains("libdome_extras.so"), "ls -l printed nothing: {stdout}");
            built_so = true;
        }
        if command.starts_with("love-host plugins") {
            assert!(stdout.contains("dome-extras"), "the listing does not show the plugin:\n{stdout}");
            assert!(stdout.contains("ATDome"), "the listing does not show the claim:\n{stdout}");
            assert!(!stdout.contains("REFUSED"), "{stdout}");
            listed = true;
        }
    }
    assert!(tested, "the guide no longer tests the example with `cargo test`");
    assert!(built_so, "the guide no longer builds the example with `cargo build --release`");
    assert!(listed, "the guide no longer lists the plugin directory");
    assert!(ran, "the guide no longer runs a host on the example");
    // The deploy step left exactly the plugin, no temporary file, in a directory others cannot write.
    let names: Vec<String> =
        std::fs::read_dir(&plugin_dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().to_string()).collect();
    assert_eq!(names, ["libdome_extras.so"]);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&plugin_dir).unwrap().permissions().mode() & 0o022, 0);
    let _ = std::fs::remove_dir_all(&plugin_dir);
}
