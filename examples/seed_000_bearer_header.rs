//! Seed 000's backend: the refresh token goes in an `Authorization: Bearer`
//! header (`GET /auth/refresh`), the answer is `{accessToken, refreshToken}`
//! and the expiry is only in the access token's JWT `exp`. A built-in
//! refresher serves it by configuration alone.
//!
//! Run: `cargo run -p reauth-examples --example seed_000_bearer_header`

use reauth::{AccessToken, Session};
use reauth_examples::seed_backend::{SeedBackend, Shape};
use reauth_reqwest::{AuthMiddleware, JsonRefresher, RefreshTokenIn};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let backend = SeedBackend::start(Shape::BearerHeader).await;

    let refresher = JsonRefresher::new(backend.url("/auth/refresh").parse()?)
        .method(reqwest::Method::GET)
        .refresh_token_in(RefreshTokenIn::BearerHeader)
        .access_token_field("accessToken")
        .refresh_token_field("refreshToken");
    // (Expiry: the default reads `expires_in`, absent here, so the JWT `exp`.)
    let mut tokens = refresher
        .login(
            backend.url("/auth/login").parse()?,
            &serde_json::json!({"username": "alice", "password": "wonderland"}),
        )
        .await?;
    println!(
        "logged in; the access token expires at {:?}",
        tokens.expires_at
    );

    // Break the access token, as the article does, then fire three requests at once.
    tokens.access_token = AccessToken::from("broken");
    let session = Session::builder(refresher).build();
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
    for response in [a?, b?, c?] {
        println!("{} {}", response.status(), response.text().await?);
    }
    println!("refreshes at the backend: {}", backend.refreshes());
    Ok(())
}
