//! The `love-host` binary: parse the command line, then hand over to the library.

use love_host::cli::Command;

fn main() -> std::process::ExitCode {
    let (mut cli, links) = match love_host::config::parse_with_config(std::env::args_os().collect()) {
        Ok(parsed) => parsed,
        Err(e) => {
            eprintln!("love-host: error: {e:#}");
            return std::process::ExitCode::FAILURE;
        }
    };
    cli.run.links = links;
    let result = match &cli.command {
        Some(Command::Catalog { component, topic, xml_dir }) => love_host::topics::show(
            xml_dir.as_deref(),
            component.as_deref(),
            topic.as_deref(),
            &mut std::io::stdout(),
            &mut std::io::stderr(),
        ),
        Some(Command::Plugins { plugin_dir, state_dir, clear_quarantine, max_plugin_size }) => {
            love_host::plugin::loader::set_max_plugin_size(*max_plugin_size);
            love_host::app::plugins_command(plugin_dir, state_dir.as_deref(), *clear_quarantine, &mut std::io::stdout())
        }
        None => love_host::app::run(cli.run),
    };
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

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe))
}
