//! Logs: `tracing` events to stderr, filtered by `RUST_LOG`, as text or JSON.
//!
//! Audit events (target `reauth::audit`: logins that succeeded or failed,
//! sessions started, tokens issued, failed client authentication, reuse
//! detected, families revoked, clients and users changed) are on by default for the server and the administration
//! commands. No secret is ever a field of an event: the server logs short
//! family ids, usernames and client ids, never tokens, passwords or keys.

use std::io::IsTerminal as _;

use tracing_subscriber::EnvFilter;

/// The format of log lines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per line, its fields at the top level.
    Json,
}

/// Installs the global subscriber. `default` is the filter used when
/// `RUST_LOG` is unset (or invalid: then the problem is reported once).
pub(crate) fn init(format: LogFormat, default: &str) {
    let (filter, bad_rust_log) = match std::env::var("RUST_LOG") {
        Ok(value) if !value.trim().is_empty() => match EnvFilter::try_new(&value) {
            Ok(filter) => (filter, None),
            Err(e) => (EnvFilter::new(default), Some(format!("{value:?}: {e}"))),
        },
        _ => (EnvFilter::new(default), None),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let installed = match format {
        LogFormat::Text => {
            let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
            builder.with_ansi(ansi).try_init()
        }
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
    };
    if installed.is_err() {
        return;
    }
    if let Some(problem) = bad_rust_log {
        tracing::warn!("RUST_LOG ignored, using {default:?}: {problem}");
    }
}
