//! The `love-host` binary: parse the command line, then hand over to the library.

use clap::Parser;
use love_host::cli::{Cli, Command};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Some(Command::Plugins { plugin_dir }) => love_host::app::list_plugins(plugin_dir, &mut std::io::stdout()),
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
