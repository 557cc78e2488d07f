//! A command-line tool keeps its session in a file between runs, and several
//! of its processes may run at once: `FileStore` (atomic writes, mode 0600,
//! a lease under an advisory lock) makes them refresh once between them.
//! Here two "runs" of the tool follow each other: the first logs in and
//! stores the session, the second restores it from the file — no login — and
//! goes on with it (refreshing, when it comes to that, once for every process
//! that shares the file).
//!
//! Run: `cargo run -p reauth-examples --example cli_file_store`

use std::path::Path;

use reauth::{FileStore, Session};
use reauth_reqwest::{AuthMiddleware, OAuth2Refresher};
use reauth_server::{ClientCredentials, PasswordHashing, Server, ServerConfig};

/// One run of the tool: restore the session from `tokens`, or log in.
async fn run(base: &str, tokens: &Path) -> anyhow::Result<()> {
    let demo = ClientCredentials::demo();
    let refresher = OAuth2Refresher::new(format!("{base}/oauth/token").parse()?, demo.client_id)
        .client_secret(demo.client_secret.expose());
    let session = Session::builder(refresher.clone())
        .store(FileStore::new(tokens))
        .build();
    if session.restore().await? {
        println!(
            "restored generation {:?} from {}",
            session.generation(),
            tokens.display()
        );
    } else {
        session
            .start(refresher.password_grant("alice", "wonderland").await?)
            .await?;
        println!("logged in; the session is in {}", tokens.display());
    }
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(AuthMiddleware::new(session, base.parse()?))
        .build();
    let response = client.get(format!("{base}/api/resources")).send().await?;
    println!("GET /api/resources → {}", response.status());
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut config = ServerConfig::default();
    config.database_url = "sqlite::memory:".to_owned();
    config.password_hashing = PasswordHashing::InsecureFast; // a demo, not a deployment
    config.demo_client = Some(ClientCredentials::demo());
    let server = Server::new(config).await?;
    server.add_user("alice", "wonderland").await?;
    let running = server.spawn_local().await?;

    let dir = tempfile::tempdir()?; // a real tool: its config directory
    let tokens = dir.path().join("tokens.json");
    run(&running.url(), &tokens).await?;
    run(&running.url(), &tokens).await?;
    running.shutdown().await?;
    Ok(())
}
