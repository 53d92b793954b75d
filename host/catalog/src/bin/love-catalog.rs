//! `love-catalog generate`: regenerate the built-in topic catalog from a ts_xml checkout.
//!
//! ```sh
//! cargo run -p love-catalog -- generate /path/to/ts_xml --ts-xml-version 29.0.0
//! ```
//!
//! reads every component of the checkout (or of a `sal_interfaces` directory), refuses on any
//! parse problem, and writes `host/catalog/data/ts_xml.catalog.zz` and `ts_xml.version`; the
//! next build compiles them in.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use love_catalog::{compact, TopicCatalog};

const USAGE: &str = "\
usage: love-catalog generate TS_XML_DIR [--ts-xml-version VERSION] [--out DIR]

Regenerate love-host's built-in topic catalog from a ts_xml checkout.

  TS_XML_DIR          a ts_xml checkout, or its python/lsst/ts/xml/data/sal_interfaces directory
  --ts-xml-version V  the ts_xml release (default: the checkout's version.py, else its
                      `git describe --tags`)
  --out DIR           where to write ts_xml.catalog.zz and ts_xml.version
                      (default: the love-catalog crate's data/ directory)";

/// Where a ts_xml checkout keeps its interface files.
const IN_CHECKOUT: &str = "python/lsst/ts/xml/data/sal_interfaces";

struct Args {
    dir: PathBuf,
    version: Option<String>,
    out: PathBuf,
}

fn parse_args(argv: &[String]) -> Result<Args, String> {
    let mut it = argv.iter();
    match it.next().map(String::as_str) {
        Some("generate") => {}
        Some("-h" | "--help") => return Err(String::new()),
        Some(other) => return Err(format!("unknown command {other:?}")),
        None => return Err("no command given".into()),
    }
    let mut dir = None;
    let mut version = None;
    let mut out = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data");
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().cloned().ok_or_else(|| format!("{name} needs a value"));
        match a.as_str() {
            "--ts-xml-version" => version = Some(value(a)?),
            "--out" => out = PathBuf::from(value(a)?),
            "-h" | "--help" => return Err(String::new()),
            flag if flag.starts_with('-') => return Err(format!("unknown option {flag:?}")),
            path if dir.is_none() => dir = Some(PathBuf::from(path)),
            extra => return Err(format!("unexpected argument {extra:?}")),
        }
    }
    let dir = dir.ok_or("no ts_xml directory given")?;
    Ok(Args { dir, version, out })
}

/// The checkout's release from its git tags (`v28.0.1` -> `28.0.1`).
fn git_version(dir: &Path) -> Option<String> {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["describe", "--tags", "--abbrev=0"])
        .output()
        .ok()?;
    let tag = String::from_utf8(out.stdout).ok()?;
    let tag = tag.trim();
    (out.status.success() && !tag.is_empty()).then(|| tag.trim_start_matches('v').to_string())
}

fn generate(args: &Args) -> Result<String, String> {
    let interfaces = if args.dir.join(IN_CHECKOUT).is_dir() { args.dir.join(IN_CHECKOUT) } else { args.dir.clone() };
    if !interfaces.join("SALSubsystems.xml").is_file() {
        return Err(format!(
            "{}: no SALSubsystems.xml (give a ts_xml checkout or its {IN_CHECKOUT} directory)",
            interfaces.display()
        ));
    }
    let version = match &args.version {
        Some(v) => v.clone(),
        None => love_catalog::ts_xml_version_of(&interfaces).or_else(|| git_version(&args.dir)).ok_or_else(|| {
            format!("cannot tell which ts_xml release {} is (no git tag); pass --ts-xml-version", args.dir.display())
        })?,
    };
    let (catalog, errors) = TopicCatalog::load_dir(&interfaces).map_err(|e| e.to_string())?;
    if !errors.is_empty() {
        let list: Vec<String> = errors.iter().map(|e| format!("  {e}")).collect();
        return Err(format!(
            "{} problems in {}; nothing written:\n{}",
            errors.len(),
            interfaces.display(),
            list.join("\n")
        ));
    }
    let text = compact::encode_text(&catalog, &version).map_err(|e| e.to_string())?;
    let bytes = compact::encode(&catalog, &version).map_err(|e| e.to_string())?;
    std::fs::create_dir_all(&args.out).map_err(|e| format!("{}: {e}", args.out.display()))?;
    let data = args.out.join("ts_xml.catalog.zz");
    let version_file = args.out.join("ts_xml.version");
    std::fs::write(&data, &bytes).map_err(|e| format!("{}: {e}", data.display()))?;
    // No trailing newline: the file is the constant BUILTIN_TS_XML_VERSION.
    std::fs::write(&version_file, &version).map_err(|e| format!("{}: {e}", version_file.display()))?;
    let names = catalog.names();
    let comps = names.iter().filter_map(|n| catalog.component(n));
    let (topics, fields) = comps.fold((0, 0), |(t, f), c| {
        let all = c.events.iter().chain(&c.telemetry).chain(&c.commands);
        (t + c.events.len() + c.telemetry.len() + c.commands.len(), f + all.map(|t| t.fields.len()).sum::<usize>())
    });
    Ok(format!(
        "wrote {}: ts_xml {version} from {}: {} components, {topics} topics, {fields} fields; {} bytes ({} uncompressed)",
        data.display(),
        interfaces.display(),
        names.len(),
        bytes.len(),
        text.len()
    ))
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let args = match parse_args(&argv) {
        Ok(a) => a,
        Err(e) if e.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("love-catalog: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match generate(&args) {
        Ok(summary) => {
            println!("{summary}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("love-catalog: error: {e}");
            ExitCode::FAILURE
        }
    }
}
