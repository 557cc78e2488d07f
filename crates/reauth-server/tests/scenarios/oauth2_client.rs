//! An off-the-shelf OAuth2 client (the `oauth2` crate) completes the password
//! and refresh_token grants against `/oauth/token`, with both client
//! authentication methods, and reads `invalid_grant` on reuse.
//! (The crate refuses non-HTTPS revocation URLs, so RFC 7009 is covered by S4.)

use std::time::Duration;

use oauth2::basic::{BasicClient, BasicErrorResponseType};
use oauth2::{
    AuthType, ClientId, ClientSecret, HttpRequest, HttpResponse, RequestTokenError,
    ResourceOwnerPassword, ResourceOwnerUsername, TokenResponse, TokenUrl,
};
use reqwest::StatusCode;

use crate::common::{CLIENT_ID, CLIENT_SECRET, PASSWORD, TestServer, USER, http_client};

async fn send(http: reqwest::Client, request: HttpRequest) -> Result<HttpResponse, reqwest::Error> {
    let (parts, body) = request.into_parts();
    let response = http
        .request(parts.method, parts.uri.to_string())
        .headers(parts.headers)
        .body(body)
        .send()
        .await?;
    let mut builder = http::Response::builder().status(response.status());
    for (name, value) in response.headers() {
        builder = builder.header(name, value);
    }
    let bytes = response.bytes().await?;
    Ok(builder.body(bytes.to_vec()).expect("valid response"))
}

#[tokio::test]
async fn oauth2_crate_password_and_refresh_grants() {
    let server = TestServer::start().await;
    let http = http_client();
    let http_fn = |request: HttpRequest| send(http.clone(), request);

    for auth_type in [AuthType::BasicAuth, AuthType::RequestBody] {
        let client = BasicClient::new(ClientId::new(CLIENT_ID.to_owned()))
            .set_client_secret(ClientSecret::new(CLIENT_SECRET.to_owned()))
            .set_auth_type(auth_type.clone())
            .set_token_uri(TokenUrl::new(format!("{}/oauth/token", server.url)).unwrap());

        let first = client
            .exchange_password(
                &ResourceOwnerUsername::new(USER.to_owned()),
                &ResourceOwnerPassword::new(PASSWORD.to_owned()),
            )
            .request_async(&http_fn)
            .await
            .expect("password grant");
        assert_eq!(first.expires_in(), Some(Duration::from_secs(300)));
        let first_refresh = first.refresh_token().expect("refresh token").clone();

        let second = client
            .exchange_refresh_token(&first_refresh)
            .request_async(&http_fn)
            .await
            .expect("refresh grant");
        let second_refresh = second
            .refresh_token()
            .expect("rotated refresh token")
            .clone();
        assert_ne!(second_refresh.secret(), first_refresh.secret());
        let response = server.resource(second.access_token().secret()).await;
        assert_eq!(response.status(), StatusCode::OK, "{auth_type:?}");

        // The rotated-away token after the grace window: invalid_grant, parsed by the crate.
        server.clock.advance(Duration::from_secs(11));
        let reused = client
            .exchange_refresh_token(&first_refresh)
            .request_async(&http_fn)
            .await;
        match reused {
            Err(RequestTokenError::ServerResponse(e)) => {
                assert_eq!(
                    *e.error(),
                    BasicErrorResponseType::InvalidGrant,
                    "{auth_type:?}"
                );
            }
            other => panic!("expected invalid_grant, got {other:?}"),
        }

        // Bad client credentials: invalid_client.
        let bad = BasicClient::new(ClientId::new(CLIENT_ID.to_owned()))
            .set_client_secret(ClientSecret::new("wrong".to_owned()))
            .set_auth_type(auth_type.clone())
            .set_token_uri(TokenUrl::new(format!("{}/oauth/token", server.url)).unwrap());
        let refused = bad
            .exchange_password(
                &ResourceOwnerUsername::new(USER.to_owned()),
                &ResourceOwnerPassword::new(PASSWORD.to_owned()),
            )
            .request_async(&http_fn)
            .await;
        match refused {
            Err(RequestTokenError::ServerResponse(e)) => {
                assert_eq!(*e.error(), BasicErrorResponseType::InvalidClient);
            }
            other => panic!("expected invalid_client, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn rfc8414_metadata_names_the_endpoints() {
    let server = TestServer::start().await;
    let metadata: serde_json::Value = server
        .http
        .get(format!(
            "{}/.well-known/oauth-authorization-server",
            server.url
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(metadata["issuer"], server.url.as_str());
    assert_eq!(
        metadata["token_endpoint"],
        format!("{}/oauth/token", server.url)
    );
    assert_eq!(
        metadata["revocation_endpoint"],
        format!("{}/oauth/revoke", server.url)
    );
    assert_eq!(
        metadata["introspection_endpoint"],
        format!("{}/oauth/introspect", server.url)
    );
    assert!(metadata["response_types_supported"].is_array());
    for grant in ["password", "refresh_token", "client_credentials"] {
        assert!(
            metadata["grant_types_supported"]
                .as_array()
                .unwrap()
                .iter()
                .any(|g| g == grant)
        );
    }
    for key in [
        "token_endpoint_auth_methods_supported",
        "revocation_endpoint_auth_methods_supported",
        "introspection_endpoint_auth_methods_supported",
    ] {
        let methods = metadata[key].as_array().unwrap();
        assert!(methods.iter().any(|m| m == "client_secret_basic"), "{key}");
        assert!(methods.iter().any(|m| m == "client_secret_post"), "{key}");
    }
    // The issuer of issued tokens is the same.
    let tokens = server.login().await;
    assert_eq!(
        crate::common::claims(&tokens.access_token)["iss"],
        server.url.as_str()
    );
    // client_credentials: an access token and no refresh token.
    let (status, body) = server
        .oauth_form("/oauth/token", &[("grant_type", "client_credentials")])
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.get("refresh_token").is_none());
    assert_eq!(body["token_type"], "Bearer");
    let response = server
        .resource(body["access_token"].as_str().unwrap())
        .await;
    assert_eq!(response.status(), StatusCode::OK);
}
