//! `reauth`: see the 401 storm and its fix (`demo`), run the auth server
//! (`serve`), manage its users, OAuth clients and keys (`user`, `client`,
//! `keys`), and prove the client scenarios end to end against our server or
//! yours (`lab`).
//!
//! ```text
//! cargo run --release -p reauth-cli -- demo
//! ```

#[macro_use]
mod style;
mod burst;
mod client;
mod demo;
mod duration;
mod keys;
mod lab;
mod local;
mod logging;
mod netlog;
mod serve;
mod serve_limits;
mod user;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Race-free access-token refresh: the demo, the server and the lab.
#[derive(Debug, Parser)]
#[command(name = "reauth", version, about, long_about = None)]
struct Cli {
    /// Log lines on stderr as `text` or `json` (filtered by `RUST_LOG`).
    #[arg(
        long,
        global = true,
        env = "REAUTH_LOG_FORMAT",
        value_enum,
        default_value_t
    )]
    log_format: logging::LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Break the access token, fire N concurrent requests, and watch one
    /// refresh serve them all — then the same burst without coordination.
    Demo(demo::DemoArgs),
    /// Run the auth server.
    Serve(serve::ServeArgs),
    /// Add, remove or list the server's users.
    #[command(subcommand)]
    User(user::UserCommand),
    /// Add, update, list, remove OAuth clients, or rotate their secrets.
    #[command(subcommand)]
    Client(client::ClientCommand),
    /// List, stage or rotate the server's signing keys.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Drive the client scenarios (C1…C10, C15, C16) end to end and compare
    /// each with the ideal outcome.
    Lab(lab::LabArgs),
    /// One process of `reauth lab`'s C15/C16; the lab starts these itself.
    #[command(name = "__lab-child", hide = true)]
    LabChild(lab::ChildArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::LabChild(args) = &cli.command {
        // Builds a runtime of its own: must not run inside ours.
        return lab::child(args);
    }
    logging::init(
        cli.log_format,
        match &cli.command {
            // sqlx reports Postgres notices ("already exists, skipping") at info.
            Command::Serve(_) => "info,sqlx=warn",
            Command::User(_) | Command::Client(_) | Command::Keys(_) => "warn,reauth::audit=info",
            Command::Demo(_) | Command::Lab(_) | Command::LabChild(_) => "error",
        },
    );
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("reauth: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Demo(args) => demo::run(args).await,
            Command::Serve(args) => serve::run(args).await,
            Command::User(cmd) => user::run(cmd).await,
            Command::Client(cmd) => client::run(cmd).await,
            Command::Keys(cmd) => keys::run(cmd),
            Command::Lab(args) => lab::run(args).await,
            Command::LabChild(_) => Ok(ExitCode::SUCCESS), // handled above
        }
    });
    // Background tasks (servers, timers) must not keep the process alive.
    runtime.shutdown_background();
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("reauth: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, leaving out a cause that only
/// repeats the text before it (database drivers often do).
pub(crate) fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string().replace('\n', " ");
        if line.ends_with(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::one_line;

    /// A database URL may carry a password: no command's parsed arguments
    /// show it in `Debug`.
    #[test]
    fn o6_debug_output_of_commands_holds_no_database_password() {
        let db = "postgres://reauth:db-SECRET@db.internal/reauth";
        for args in [
            &["reauth", "serve", "--db", db][..],
            &["reauth", "user", "list", "--db", db][..],
            &["reauth", "client", "list", "--db", db][..],
            &["reauth", "client", "add", "x", "--db", db][..],
        ] {
            let cli = <super::Cli as clap::Parser>::parse_from(args);
            let printed = format!("{cli:?}");
            assert!(!printed.contains("SECRET"), "{printed}");
            assert!(printed.contains("reauth:***@db.internal"), "{printed}");
        }
    }

    #[test]
    fn errors_print_on_one_line_without_repeats() {
        let e = anyhow::anyhow!("unable to open database file")
            .context("error returned from database: unable to open database file")
            .context("cannot open database sqlite://x.db");
        assert_eq!(
            one_line(&e),
            "cannot open database sqlite://x.db: error returned from database: unable to open database file"
        );
    }
}
