//! Seed 002's backend: `POST /authorization/refresh {refreshToken}` →
//! `{authorizationToken, refreshToken}`, one refresh token per user (a spent
//! one is refused), the expiry in the JWT. Three requests with a broken token:
//! three 401s, **one** refresh, three 200s — the article's network tab.
//!
//! Run: `cargo run -p reauth-examples --example seed_002_json_body`

use reauth::{AccessToken, Session};
use reauth_examples::seed_backend::{SeedBackend, Shape};
use reauth_reqwest::{AuthMiddleware, JsonRefresher, RefreshTokenIn};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let backend = SeedBackend::start(Shape::JsonBody).await;

    let refresher = JsonRefresher::new(backend.url("/authorization/refresh").parse()?)
        .refresh_token_in(RefreshTokenIn::JsonField("refreshToken".into()))
        .access_token_field("authorizationToken")
        .refresh_token_field("refreshToken");
    let mut tokens = refresher
        .login(
            backend.url("/auth/login").parse()?,
            &serde_json::json!({"username": "alice", "password": "wonderland"}),
        )
        .await?;
    tokens.access_token = AccessToken::from("sdf"); // localStorage.setItem("token", "sdf")

    let session = Session::builder(refresher)
        .on_session_ended(|reason| println!("logged out: {reason}"))
        .build();
    session.start(tokens).await?;
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(AuthMiddleware::new(session, backend.url("/").parse()?))
        .build();
    let url = backend.url("/api/resources");
    let (a, b, c) = tokio::join!(
        client.get(&url).send(),
        client.get(&url).send(),
        client.get(&url).send()
    );
    for (name, response) in ["first", "second", "third"].into_iter().zip([a?, b?, c?]) {
        println!(
            "{name} resp: {} {}",
            response.status(),
            response.text().await?
        );
    }
    println!("refreshes at the backend: {}", backend.refreshes());
    Ok(())
}
