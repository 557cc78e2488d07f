//! An OAuth2 server (RFC 6749 §6, form-encoded `refresh_token` grant): our
//! auth server, started in-process on 127.0.0.1, logged into with the password
//! grant; the session refreshes with `OAuth2Refresher` and revokes on logout
//! (RFC 7009).
//!
//! Run: `cargo run -p reauth-examples --example oauth2_form`

use reauth::{AccessToken, Session};
use reauth_reqwest::{AuthMiddleware, OAuth2Refresher};
use reauth_server::{ClientCredentials, PasswordHashing, Server, ServerConfig};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut config = ServerConfig::default();
    config.database_url = "sqlite::memory:".to_owned();
    config.password_hashing = PasswordHashing::InsecureFast; // a demo, not a deployment
    config.demo_client = Some(ClientCredentials::demo());
    let server = Server::new(config).await?;
    server.add_user("alice", "wonderland").await?;
    let running = server.spawn_local().await?;
    let base = running.url();
    let demo = ClientCredentials::demo();

    let refresher = OAuth2Refresher::new(format!("{base}/oauth/token").parse()?, demo.client_id)
        .client_secret(demo.client_secret.expose())
        .revocation_url(format!("{base}/oauth/revoke").parse()?);
    let mut tokens = refresher.password_grant("alice", "wonderland").await?;
    tokens.access_token = AccessToken::from("expired-on-purpose");

    let session = Session::builder(refresher).build();
    session.start(tokens).await?;
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(AuthMiddleware::new(session.clone(), base.parse()?))
        .build();
    let response = client.get(format!("{base}/api/resources")).send().await?;
    println!(
        "{} after one refresh (generation {:?})",
        response.status(),
        session.generation()
    );
    session.logout().await?;
    println!("logged out; the refresh token was revoked at the server");
    running.shutdown().await?;
    Ok(())
}
