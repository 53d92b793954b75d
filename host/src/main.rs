//! The `love-host` binary: resolve the configuration, then hand over to the library.

use love_host::config::Config;

fn main() -> std::process::ExitCode {
    let result = Config::from_env().map_err(anyhow::Error::from).and_then(run);
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // A listing piped into `head` stops being read: not an error.
        Err(e) if is_broken_pipe(&e) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("love-host: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(config: Config) -> anyhow::Result<()> {
    match config {
        Config::Catalog(c) => Ok(love_host::topics::show(
            c.xml_dir.as_deref(),
            c.component.as_deref(),
            c.topic.as_deref(),
            &mut std::io::stdout(),
            &mut std::io::stderr(),
        )?),
        Config::Plugins(p) => {
            love_host::plugin::loader::set_max_plugin_size(p.max_plugin_size);
            let out = &mut std::io::stdout();
            Ok(love_host::plugin::listing::plugins_command(&p.plugin_dir, &p.state_dir, p.clear_quarantine, out)?)
        }
        Config::Run(r) => Ok(love_host::app::run(*r)?),
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe))
}
