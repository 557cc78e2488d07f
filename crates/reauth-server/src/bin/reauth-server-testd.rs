//! A minimal stand-alone reauth server used by the crash-restart test (S8)
//! and benchmarks: serves on `127.0.0.1:0` (or `--addr`) and prints
//! `LISTENING <addr>` on stdout once it accepts connections.
//!
//! ```text
//! reauth-server-testd --db sqlite:///tmp/r.db --keys /tmp/keys.json \
//!     [--user NAME:PASSWORD] [--grace-secs N] [--addr 127.0.0.1:0] [--fast-hash]
//! ```
//! The real command line is `reauth serve` (the CLI crate).

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use reauth_server::{ClientCredentials, KeySource, PasswordHashing, Server, ServerConfig};

fn usage() -> ExitCode {
    eprintln!(
        "usage: reauth-server-testd --db URL [--keys PATH] [--user NAME:PASSWORD] [--grace-secs N] [--addr ADDR] [--fast-hash]"
    );
    ExitCode::from(2)
}

#[tokio::main]
async fn main() -> ExitCode {
    let mut config = ServerConfig::default();
    // A test daemon: the crash test introspects with the demo client.
    config.demo_client = Some(ClientCredentials::demo());
    // Its tests log in through /auth/login.
    config.first_party_endpoints = true;
    let mut addr = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut users = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next();
        match arg.as_str() {
            "--db" => match value() {
                Some(v) => config.database_url = v,
                None => return usage(),
            },
            "--keys" => match value() {
                Some(v) => config.keys = KeySource::File(v.into()),
                None => return usage(),
            },
            "--user" => match value()
                .and_then(|v| v.split_once(':').map(|(u, p)| (u.to_owned(), p.to_owned())))
            {
                Some(pair) => users.push(pair),
                None => return usage(),
            },
            "--grace-secs" => match value().and_then(|v| v.parse().ok()) {
                Some(secs) => config.grace_window = Duration::from_secs(secs),
                None => return usage(),
            },
            "--addr" => match value().and_then(|v| v.parse().ok()) {
                Some(a) => addr = a,
                None => return usage(),
            },
            "--fast-hash" => config.password_hashing = PasswordHashing::InsecureFast,
            _ => return usage(),
        }
    }
    let server = match Server::new(config).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("reauth-server-testd: {e}");
            return ExitCode::FAILURE;
        }
    };
    for (user, password) in users {
        match server.add_user(&user, &password).await {
            Ok(()) | Err(reauth_server::ServerError::UserExists(_)) => {}
            Err(e) => {
                eprintln!("reauth-server-testd: add user: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("reauth-server-testd: bind {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let local = listener
        .local_addr()
        .map_or_else(|_| addr.to_string(), |a| a.to_string());
    let mut stdout = std::io::stdout();
    let _ = writeln!(stdout, "LISTENING {local}");
    let _ = stdout.flush();
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    match server.serve(listener, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("reauth-server-testd: {e}");
            ExitCode::FAILURE
        }
    }
}
