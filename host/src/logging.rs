//! Logging: lines on standard error (standard output may carry the messages), redacted of
//! passwords, as text or JSON; panics through the logger.

use std::io::IsTerminal;

use tracing::error;

use crate::cli::{LogFormat, LogLevel};

/// Set up the logger and the panic hook.
pub fn init(level: LogLevel, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("LOVE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level.directive()));
    let colour = log_colour(format, std::io::stderr().is_terminal(), std::env::var_os("NO_COLOR"));
    // Redacted whatever the filter lets through (tungstenite logs the handshake at trace).
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(crate::manager::redact::RedactingStderr)
        .with_ansi(colour);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    std::panic::set_hook(Box::new(log_panic));
}

/// The host's panic hook: the panic through the logger (one JSON line under `--log-format
/// json`), not raw text on standard error. A backtrace only when `RUST_BACKTRACE` asks for one:
/// symbolizing it keeps the debug information in memory for the rest of the run. Panics inside
/// producers are caught by the SDK's own quiet hook and reported by the runtime instead.
fn log_panic(info: &std::panic::PanicHookInfo<'_>) {
    let message = love_plugin_api::sdk::panic_text(info.payload());
    let location = info.location().map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column())).unwrap_or_default();
    let thread = std::thread::current().name().unwrap_or("unnamed").to_string();
    let backtrace = std::backtrace::Backtrace::capture();
    if backtrace.status() == std::backtrace::BacktraceStatus::Captured {
        error!(target: "love_host::panic", thread, location, "panic: {message}\n{backtrace}");
    } else {
        error!(target: "love_host::panic", thread, location, "panic: {message}");
    }
}

/// Whether log lines get ANSI colours: only text lines for a person at a terminal, so a file,
/// a pipe or the journal never gets escape sequences; `NO_COLOR` set to anything but the empty
/// string turns them off (no-color.org).
pub fn log_colour(format: LogFormat, stderr_is_terminal: bool, no_color: Option<std::ffi::OsString>) -> bool {
    format == LogFormat::Text && stderr_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_for_text_at_a_terminal_without_no_color() {
        assert!(log_colour(LogFormat::Text, true, None));
        assert!(log_colour(LogFormat::Text, true, Some("".into())), "an empty NO_COLOR does not count");
        assert!(!log_colour(LogFormat::Text, true, Some("1".into())));
        assert!(!log_colour(LogFormat::Text, false, None), "a pipe, file or journal");
        assert!(!log_colour(LogFormat::Json, true, None));
    }
}
