//! `love-host plugins` and the refusals of bad plugin directories, files and component names,
//! run as a user runs them: the built binary on built plugins.

mod common;

use std::process::{Command, Output};

use common::*;

fn host(args: &[&str]) -> Output {
    Command::new(&built().host)
        .args(args)
        .env_remove("LOVE_CSC_PRODUCER")
        .env_remove("WEBSOCKET_HOST")
        .env_remove("LSST_KAFKA_BROKER_ADDR")
        .output()
        .expect("run love-host")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn lists_the_three_plugins_and_refuses_the_bad_files_with_one_line_each() {
    let junk = std::env::temp_dir().join(format!("junk-{}.so", std::process::id()));
    std::fs::write(&junk, b"this is not an ELF file").unwrap();
    // A real shared library that is not a plugin.
    let not_plugin = std::env::temp_dir().join(format!("libnotaplugin-{}.so", std::process::id()));
    let src = std::env::temp_dir().join(format!("notaplugin-{}.c", std::process::id()));
    std::fs::write(&src, "int answer(void) { return 42; }\n").unwrap();
    let cc = Command::new("cc").args(["-shared", "-fPIC", "-o"]).arg(&not_plugin).arg(&src).status().unwrap();
    assert!(cc.success(), "cc failed");
    let dir = plugin_dir(
        "list",
        &[
            plugin_so("csc"),
            plugin_so("scriptqueue"),
            plugin_so("watcher"),
            fixture_so("v1"),
            fixture_so("skewed"),
            junk,
            not_plugin,
        ],
    );
    let out = host(&["plugins", "--plugin-dir", dir.to_str().unwrap()]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    let line = |needle: &str| {
        t.lines().find(|l| l.contains(needle)).unwrap_or_else(|| panic!("no line with {needle}:\n{t}")).to_string()
    };
    let csc = line("liblove_plugin_csc.so");
    assert!(csc.starts_with("csc ") && csc.contains(" csc "), "{csc}");
    assert!(line("liblove_plugin_scriptqueue.so").contains("ScriptQueue"));
    assert!(line("liblove_plugin_watcher.so").contains("Watcher"));
    assert!(line("liblove_fixture_v1.so").contains("FixtureV1"));
    let skewed = line("liblove_fixture_skewed.so");
    assert!(skewed.starts_with("REFUSED"), "{skewed}");
    assert!(
        skewed.contains("layout of InputMsg differs") && skewed.contains("expected") && skewed.contains("found"),
        "{skewed}"
    );
    assert!(skewed.len() < 600, "layout error not shortened: {} chars", skewed.len());
    let junk_line = line("junk-");
    assert!(junk_line.starts_with("REFUSED") && junk_line.contains("not a loadable shared library"), "{junk_line}");
    let np = line("libnotaplugin-");
    assert!(np.starts_with("REFUSED") && np.contains("not a love-host plugin"), "{np}");
    // One line per refused file, not a type tree.
    assert!(t.lines().count() < 15, "{t}");
}

#[test]
fn refuses_missing_and_world_writable_plugin_directories() {
    let out = host(&["plugins", "--plugin-dir", "/nonexistent/love-plugins"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("/nonexistent/love-plugins"), "{}", text(&out));

    use std::os::unix::fs::PermissionsExt;
    let dir = plugin_dir("ww", &[]);
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = host(&["plugins", "--plugin-dir", dir.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(text(&out).contains("writable by others"), "{}", text(&out));
    let out = host(&["--plugin-dir", dir.to_str().unwrap(), "--components", "ATDome"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("writable by others"), "{}", text(&out));
}

#[test]
fn malformed_component_names_are_refused_before_anything_starts() {
    for bad in ["ATDome:x", ":1", "ATDome:-1", "1ATDome", "Script:*"] {
        let out = host(&["--components", bad]);
        assert!(!out.status.success(), "{bad} accepted");
        let t = text(&out);
        assert!(t.contains(bad.split(':').next().unwrap_or(bad)) || t.contains(bad), "{bad}: {t}");
        assert!(!t.contains("connected"), "{bad}: started anyway: {t}");
    }
    let out = host(&["--components", ""]);
    assert!(!out.status.success());
    let out = host(&[]);
    assert!(!out.status.success());
    assert!(text(&out).contains("At least one component"), "{}", text(&out));
}
