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
        Some(Command::Plugins { plugin_dir, state_dir, clear_quarantine }) => {
            love_host::app::plugins_command(plugin_dir, state_dir.as_deref(), *clear_quarantine, &mut std::io::stdout())
        }
        None => love_host::app::run(cli.run),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("love-host: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
