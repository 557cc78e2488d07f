//! DESIGN.md §4.7 at the library level: per-client scopes (O2) and grant
//! types (O3), client-bound and durable revocation and introspection (O4),
//! readiness (O7), the key fingerprint (O8), the demo client (O9) and the
//! RFC 8414 metadata (O10). The binary's side of these rows is in
//! `crates/reauth-cli/tests/ops.rs`.

use std::sync::Arc;
use std::time::Duration;

use reauth_server::store::{Repository, StoreError};
use reauth_server::{
    ClientSpec, GrantType, KeySource, ManualClock, Server, ServerError, ServerKeys,
};
use reqwest::StatusCode;
use serde_json::Value;

use crate::common::{PASSWORD, TestServer, Tokens, USER, assert_error, claims, test_config};

/// A registered client and its secret.
struct Client {
    id: String,
    secret: Option<String>,
}

async fn register(server: &TestServer, spec: ClientSpec) -> Client {
    let secret = server
        .server()
        .register_client(&spec)
        .await
        .expect("client registered");
    Client {
        id: spec.client_id,
        secret: secret.map(|s| s.expose().to_owned()),
    }
}

fn confidential(id: &str, grants: &[GrantType], scopes: &[&str]) -> ClientSpec {
    let mut spec = ClientSpec::confidential(id);
    spec.grant_types = grants.to_vec();
    spec.scopes = scopes.iter().map(|s| (*s).to_owned()).collect();
    spec
}

/// POSTs a form to `path` as `client` (HTTP Basic, or `client_id` in the
/// form for a public client).
async fn post(
    server: &TestServer,
    client: &Client,
    path: &str,
    form: &[(&str, &str)],
) -> (StatusCode, Value) {
    let mut request = server.http.post(format!("{}{path}", server.url));
    let mut form: Vec<(&str, &str)> = form.to_vec();
    match &client.secret {
        Some(secret) => request = request.basic_auth(&client.id, Some(secret)),
        None => form.push(("client_id", &client.id)),
    }
    let response = request.form(&form).send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn password_grant(
    server: &TestServer,
    client: &Client,
    scope: Option<&str>,
) -> (StatusCode, Value) {
    let mut form = vec![
        ("grant_type", "password"),
        ("username", USER),
        ("password", PASSWORD),
    ];
    if let Some(scope) = scope {
        form.push(("scope", scope));
    }
    post(server, client, "/oauth/token", &form).await
}

async fn refresh(
    server: &TestServer,
    client: &Client,
    refresh_token: &str,
    scope: Option<&str>,
) -> (StatusCode, Value) {
    let mut form = vec![
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token),
    ];
    if let Some(scope) = scope {
        form.push(("scope", scope));
    }
    post(server, client, "/oauth/token", &form).await
}

fn scope_of(body: &Value) -> Option<String> {
    let claimed = claims(body["access_token"].as_str().unwrap())["scope"]
        .as_str()
        .map(str::to_owned);
    assert_eq!(
        claimed.as_deref(),
        body["scope"].as_str(),
        "the token and the response agree"
    );
    claimed
}

#[tokio::test]
async fn o2_each_client_has_allowed_scopes_and_a_default() {
    let server = TestServer::start().await;
    let mut spec = confidential(
        "app",
        &[GrantType::Password, GrantType::RefreshToken],
        &["read", "write", "admin"],
    );
    spec.default_scope = Some(vec!["read".into()]);
    let app = register(&server, spec).await;

    // No scope asked: the default.
    let (status, body) = password_grant(&server, &app, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(scope_of(&body).as_deref(), Some("read"));
    // Within the list: granted as asked.
    let (status, body) = password_grant(&server, &app, Some("read write")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(scope_of(&body).as_deref(), Some("read write"));
    let granted = Tokens::from_json(&body);
    // Outside the list: invalid_scope, and nothing issued.
    for scope in ["read delete", "admin superuser delete-everything"] {
        let (status, body) = password_grant(&server, &app, Some(scope)).await;
        assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_scope");
    }

    // A refresh may narrow the grant, never widen it.
    let (status, body) = refresh(&server, &app, &granted.refresh_token, Some("read")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(scope_of(&body).as_deref(), Some("read"));
    let narrowed = Tokens::from_json(&body);
    for wider in ["read write admin", "admin"] {
        let (status, body) = refresh(&server, &app, &narrowed.refresh_token, Some(wider)).await;
        assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_scope");
    }
    // Asking for no scope is asking for the original grant (RFC 6749 §6).
    let (status, body) = refresh(&server, &app, &narrowed.refresh_token, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(scope_of(&body).as_deref(), Some("read write"));

    // A client registered with no scopes gets none and may ask for none.
    let bare = register(&server, confidential("bare", &[GrantType::Password], &[])).await;
    let (status, body) = password_grant(&server, &bare, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(scope_of(&body), None);
    let (status, body) = password_grant(&server, &bare, Some("admin")).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_scope");
}

#[tokio::test]
async fn o3_each_client_has_allowed_grant_types_and_client_credentials_is_opt_in() {
    let server = TestServer::start().await;
    let app = register(
        &server,
        confidential("app", &[GrantType::Password, GrantType::RefreshToken], &[]),
    )
    .await;
    let (status, body) = post(
        &server,
        &app,
        "/oauth/token",
        &[("grant_type", "client_credentials")],
    )
    .await;
    assert_error(
        status,
        &body,
        StatusCode::BAD_REQUEST,
        "unauthorized_client",
    );

    // Defaults leave client_credentials out too.
    let default = register(&server, ClientSpec::confidential("default")).await;
    let (status, body) = post(
        &server,
        &default,
        "/oauth/token",
        &[("grant_type", "client_credentials")],
    )
    .await;
    assert_error(
        status,
        &body,
        StatusCode::BAD_REQUEST,
        "unauthorized_client",
    );

    // A client named like a user, with client_credentials only.
    server
        .server()
        .add_user("svc", "svc-password")
        .await
        .unwrap();
    let svc = register(
        &server,
        confidential("svc", &[GrantType::ClientCredentials], &["jobs"]),
    )
    .await;
    let (status, body) = password_grant(&server, &svc, None).await;
    assert_error(
        status,
        &body,
        StatusCode::BAD_REQUEST,
        "unauthorized_client",
    );
    let (status, body) = post(
        &server,
        &svc,
        "/oauth/token",
        &[("grant_type", "client_credentials")],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.get("refresh_token").is_none(), "{body}");
    let token = body["access_token"].as_str().unwrap();
    let sub = claims(token)["sub"].as_str().unwrap().to_owned();
    assert_eq!(sub, "client:svc");
    assert_ne!(sub, "svc", "a client's token never passes for the user svc");
    let resource: Value = server.resource(token).await.json().await.unwrap();
    assert_eq!(resource["subject"], "client:svc");
    // No user can take a client's subject.
    assert!(matches!(
        server.server().add_user("client:svc", "x").await,
        Err(ServerError::InvalidUsername)
    ));

    // A public client: no secret, never client_credentials.
    let mut spec = ClientSpec::public("spa");
    spec.grant_types = vec![GrantType::ClientCredentials];
    assert!(matches!(
        server.server().register_client(&spec).await,
        Err(ServerError::InvalidClient(_))
    ));
    let spa = register(&server, ClientSpec::public("spa")).await;
    assert!(spa.secret.is_none());
    let (status, body) = password_grant(&server, &spa, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // A secret sent for a public client, or none for a confidential one.
    let with_secret = Client {
        id: "spa".into(),
        secret: Some("guess".into()),
    };
    let (status, body) = password_grant(&server, &with_secret, None).await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "invalid_client");
    let without = Client {
        id: "app".into(),
        secret: None,
    };
    let (status, body) = password_grant(&server, &without, None).await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "invalid_client");
    // An unknown grant type is unsupported, whoever asks.
    let (status, body) = post(
        &server,
        &app,
        "/oauth/token",
        &[("grant_type", "urn:ietf:params:oauth:grant-type:device_code")],
    )
    .await;
    assert_error(
        status,
        &body,
        StatusCode::BAD_REQUEST,
        "unsupported_grant_type",
    );
}

#[tokio::test]
async fn o4_a_client_revokes_and_introspects_only_its_own_tokens() {
    let server = TestServer::start().await;
    let grants = [GrantType::Password, GrantType::RefreshToken];
    let a = register(&server, confidential("a", &grants, &[])).await;
    let b = register(&server, confidential("b", &grants, &[])).await;
    let mut rs = ClientSpec::confidential("resource-server");
    rs.grant_types = vec![GrantType::ClientCredentials];
    rs.introspection = true;
    let rs = register(&server, rs).await;
    let public = register(&server, ClientSpec::public("spa")).await;

    let (_, body) = password_grant(&server, &a, None).await;
    let of_a = Tokens::from_json(&body);
    let first_party = server.login().await;

    // B may neither revoke nor see A's tokens (RFC 7009 §2.1, RFC 7662 §2.2).
    for token in [&of_a.refresh_token, &of_a.access_token] {
        let (status, body) = post(&server, &b, "/oauth/revoke", &[("token", token)]).await;
        assert_error(
            status,
            &body,
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
        );
        let (status, body) = post(&server, &b, "/oauth/introspect", &[("token", token)]).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, serde_json::json!({"active": false}));
    }
    // Nor may A touch a first-party session.
    let (status, body) = post(
        &server,
        &a,
        "/oauth/revoke",
        &[("token", &first_party.refresh_token)],
    )
    .await;
    assert_error(
        status,
        &body,
        StatusCode::BAD_REQUEST,
        "unauthorized_client",
    );
    assert_eq!(
        server.resource(&first_party.access_token).await.status(),
        StatusCode::OK
    );
    // The refused revocations changed nothing.
    assert_eq!(
        server.resource(&of_a.access_token).await.status(),
        StatusCode::OK
    );
    let (status, body) = refresh(&server, &a, &of_a.refresh_token, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let of_a = Tokens::from_json(&body);

    // A sees its own; a resource server sees every token; a public client
    // cannot introspect.
    for (who, token, active) in [
        (&a, &of_a.access_token, true),
        (&a, &first_party.refresh_token, false),
        (&rs, &of_a.refresh_token, true),
        (&rs, &first_party.access_token, true),
    ] {
        let (status, body) = post(&server, who, "/oauth/introspect", &[("token", token)]).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["active"], active, "{} on {token}: {body}", who.id);
    }
    let (status, body) = post(
        &server,
        &public,
        "/oauth/introspect",
        &[("token", &of_a.access_token)],
    )
    .await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "invalid_client");

    // A revokes its own token; unknown tokens are 200 for anyone.
    let (status, _) = post(
        &server,
        &a,
        "/oauth/revoke",
        &[("token", &of_a.access_token)],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        server.resource(&of_a.access_token).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let (status, body) = refresh(&server, &a, &of_a.refresh_token, None).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_grant");
    let (status, _) = post(&server, &b, "/oauth/revoke", &[("token", "rt1_unknown")]).await;
    assert_eq!(status, StatusCode::OK);
}

/// Two servers on one database, and a third started after the revocation.
async fn replicas_see_every_revocation(database_url: &str) {
    let keys = ServerKeys::generate();
    let clock = ManualClock::new();
    let config = || {
        let mut config = test_config();
        config.database_url = database_url.to_owned();
        config.keys = KeySource::Provided(keys.clone());
        config.issuer = Some("http://reauth-replicas".to_owned());
        config
    };
    let one = TestServer::start_with_clock(config(), clock.clone()).await;
    let two = TestServer::start_with_clock(config(), clock.clone()).await;
    let svc = register(
        &one,
        confidential("svc", &[GrantType::ClientCredentials], &[]),
    )
    .await;
    let app = register(
        &one,
        confidential("app", &[GrantType::Password, GrantType::RefreshToken], &[]),
    )
    .await;
    let credentials = || async {
        let (status, body) = post(
            &two,
            &svc,
            "/oauth/token",
            &[("grant_type", "client_credentials")],
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["access_token"].as_str().unwrap().to_owned()
    };
    // Tokens of every kind, issued by replica two: client_credentials, and a
    // user session's access token.
    let cc = credentials().await;
    let (_, body) = password_grant(&two, &app, None).await;
    let session = Tokens::from_json(&body);
    for token in [&cc, &session.access_token] {
        assert_eq!(one.resource(token).await.status(), StatusCode::OK);
        assert_eq!(two.resource(token).await.status(), StatusCode::OK);
    }
    // Revoked at replica one…
    let (status, _) = post(&one, &svc, "/oauth/revoke", &[("token", &cc)]).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = post(
        &one,
        &app,
        "/oauth/revoke",
        &[("token", &session.access_token)],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    // …refused by replica two once it has polled…
    two.server().sync_revocations().await.unwrap();
    // …and by a replica started afterwards (a restart).
    let three = TestServer::start_with_clock(config(), clock.clone()).await;
    for token in [&cc, &session.access_token] {
        for replica in [&one, &two, &three] {
            assert_eq!(
                replica.resource(token).await.status(),
                StatusCode::UNAUTHORIZED,
                "{token} on {}",
                replica.url
            );
        }
        let (status, body) = post(&three, &svc, "/oauth/introspect", &[("token", token)]).await;
        assert_eq!(
            (status, body["active"].clone()),
            (StatusCode::OK, Value::Bool(false))
        );
    }
    // The other client_credentials tokens of the client are unaffected.
    let fresh = credentials().await;
    assert_eq!(three.resource(&fresh).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn o4_revoking_any_token_is_durable_and_seen_by_every_replica_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("replicas.db").display());
    replicas_see_every_revocation(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn o4_revoking_any_token_is_durable_and_seen_by_every_replica_postgres() {
    let Some(pg) =
        crate::pg::schema("o4_revoking_any_token_is_durable_and_seen_by_every_replica_postgres")
            .await
    else {
        return;
    };
    replicas_see_every_revocation(&pg.url).await;
}

/// A repository whose `ping` fails while `down` is set.
#[derive(Debug)]
struct Flaky {
    inner: Arc<dyn Repository>,
    down: Arc<std::sync::atomic::AtomicBool>,
}

#[tokio::test]
async fn o7_readiness_reports_the_database() {
    let config = test_config();
    let clock = ManualClock::new();
    let inner = reauth_server::store::connect(&config, Arc::new(clock.clone()))
        .await
        .unwrap();
    let down = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let repo = Arc::new(Flaky {
        inner,
        down: down.clone(),
    });
    let server = Server::from_parts(
        config,
        repo,
        ServerKeys::generate(),
        Arc::new(clock.clone()),
    )
    .await
    .unwrap();
    let server = TestServer::serve(server, clock).await;
    let readyz = || async {
        let response = server
            .http
            .get(format!("{}/readyz", server.url))
            .send()
            .await
            .unwrap();
        (
            response.status(),
            response.headers().get("retry-after").cloned(),
        )
    };
    assert_eq!(readyz().await.0, StatusCode::OK);
    down.store(true, std::sync::atomic::Ordering::SeqCst);
    let (status, retry_after) = readyz().await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(retry_after.is_some());
    // Liveness does not depend on the database.
    let live = server
        .http
        .get(format!("{}/healthz", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), StatusCode::OK);
    down.store(false, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(readyz().await.0, StatusCode::OK);
}

#[tokio::test]
async fn o8_a_database_refuses_keys_other_than_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("keys.db").display());
    let keys = ServerKeys::generate();
    let with = |keys: KeySource| {
        let mut config = test_config();
        config.database_url = url.clone();
        config.keys = keys;
        config
    };
    let first = Server::new(with(KeySource::Provided(keys.clone())))
        .await
        .unwrap();
    drop(first);
    let other = ServerKeys::generate();
    match Server::new(with(KeySource::Provided(other.clone()))).await {
        Err(ServerError::KeyMismatch {
            database,
            keys: given,
        }) => {
            assert_eq!(database, keys.fingerprint());
            assert_eq!(given, other.fingerprint());
        }
        other => panic!("expected a key mismatch, got {other:?}"),
    }
    // A new key file made for this database is refused and not left behind.
    let path = dir.path().join("new-keys.json");
    assert!(matches!(
        Server::new(with(KeySource::File(path.clone()))).await,
        Err(ServerError::KeyMismatch { .. })
    ));
    assert!(!path.exists());
    // A rotated signing key is the same keys for the database.
    let rotated = keys.rotated(0, Duration::from_secs(3600));
    Server::new(with(KeySource::Provided(rotated)))
        .await
        .unwrap();
}

#[tokio::test]
async fn o9_the_library_registers_no_demo_client_by_default() {
    let config = reauth_server::ServerConfig::default();
    assert!(config.demo_client.is_none());
    let mut config = config;
    config.password_hashing = reauth_server::PasswordHashing::InsecureFast;
    let server = TestServer::start_with(config).await;
    assert_eq!(server.server().list_clients().await.unwrap(), vec![]);
    let (status, body) = server
        .oauth_form("/oauth/token", &[("grant_type", "client_credentials")])
        .await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "invalid_client");
}

#[tokio::test]
async fn o10_metadata_lists_the_authorization_code_grant_with_pkce() {
    let server = TestServer::start().await;
    let metadata: Value = server
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
    let url = &server.url;
    assert_eq!(metadata["issuer"], url.as_str());
    assert_eq!(
        metadata["authorization_endpoint"],
        format!("{url}/oauth/authorize")
    );
    assert_eq!(
        metadata["response_types_supported"],
        serde_json::json!(["code"])
    );
    assert_eq!(
        metadata["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );
    let grants = metadata["grant_types_supported"].as_array().unwrap();
    for grant in [
        "authorization_code",
        "refresh_token",
        "password",
        "client_credentials",
    ] {
        assert!(grants.iter().any(|g| g == grant), "{grant}");
    }
    let methods = metadata["token_endpoint_auth_methods_supported"]
        .as_array()
        .unwrap();
    for method in ["client_secret_basic", "client_secret_post", "none"] {
        assert!(methods.iter().any(|m| m == method), "{method}");
    }
}

#[async_trait::async_trait]
impl Repository for Flaky {
    fn backend(&self) -> reauth_server::store::Backend {
        self.inner.backend()
    }
    async fn now(&self) -> Result<i64, StoreError> {
        self.inner.now().await
    }
    async fn add_user(&self, u: &str, h: &str) -> Result<bool, StoreError> {
        self.inner.add_user(u, h).await
    }
    async fn find_user(
        &self,
        u: &str,
    ) -> Result<Option<reauth_server::store::UserRecord>, StoreError> {
        self.inner.find_user(u).await
    }
    async fn remove_user(&self, u: &str) -> Result<Option<Vec<String>>, StoreError> {
        self.inner.remove_user(u).await
    }
    async fn list_users(&self) -> Result<Vec<reauth_server::UserInfo>, StoreError> {
        self.inner.list_users().await
    }
    async fn add_client(&self, c: &reauth_server::store::NewClient) -> Result<bool, StoreError> {
        self.inner.add_client(c).await
    }
    async fn upsert_client(&self, c: &reauth_server::store::NewClient) -> Result<(), StoreError> {
        self.inner.upsert_client(c).await
    }
    async fn find_client(
        &self,
        id: &str,
    ) -> Result<Option<reauth_server::store::ClientRecord>, StoreError> {
        self.inner.find_client(id).await
    }
    async fn list_clients(&self) -> Result<Vec<reauth_server::store::ClientRecord>, StoreError> {
        self.inner.list_clients().await
    }
    async fn remove_client(&self, id: &str) -> Result<Option<Vec<String>>, StoreError> {
        self.inner.remove_client(id).await
    }
    async fn set_client_secret(&self, id: &str, mac: &str) -> Result<bool, StoreError> {
        self.inner.set_client_secret(id, mac).await
    }
    async fn create_family(
        &self,
        f: &reauth_server::store::NewFamily<'_>,
    ) -> Result<bool, StoreError> {
        self.inner.create_family(f).await
    }
    async fn load_family(
        &self,
        id: &str,
    ) -> Result<Option<reauth_server::store::FamilyRecord>, StoreError> {
        self.inner.load_family(id).await
    }
    async fn rotate(
        &self,
        r: &reauth_server::store::Rotation<'_>,
    ) -> Result<reauth_server::store::RotateOutcome, StoreError> {
        self.inner.rotate(r).await
    }
    async fn revoke_family(
        &self,
        id: &str,
        kind: &str,
        detail: Option<&str>,
    ) -> Result<bool, StoreError> {
        self.inner.revoke_family(id, kind, detail).await
    }
    async fn revoke_session(
        &self,
        s: &reauth_server::store::RevokedSession<'_>,
    ) -> Result<bool, StoreError> {
        self.inner.revoke_session(s).await
    }
    async fn revoked_within(&self, w: Duration) -> Result<Vec<(String, i64)>, StoreError> {
        self.inner.revoked_within(w).await
    }
    async fn record_audit(
        &self,
        e: &reauth_server::store::NewAuditEvent<'_>,
    ) -> Result<(), StoreError> {
        self.inner.record_audit(e).await
    }
    async fn audit_events(
        &self,
        f: Option<&str>,
    ) -> Result<Vec<reauth_server::store::AuditEvent>, StoreError> {
        self.inner.audit_events(f).await
    }
    async fn counts(&self) -> Result<reauth_server::store::StoreCounts, StoreError> {
        self.inner.counts().await
    }
    async fn claim_setting(&self, name: &str, value: &str) -> Result<String, StoreError> {
        self.inner.claim_setting(name, value).await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        if self.down.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(StoreError::unavailable("the test took the database down"));
        }
        self.inner.ping().await
    }
}

#[tokio::test]
async fn o4_a_removed_or_rekeyed_client_is_refused_at_its_next_token_request_and_refresh() {
    let server = TestServer::start().await;
    let grants = [
        GrantType::Password,
        GrantType::RefreshToken,
        GrantType::ClientCredentials,
    ];
    // Re-keyed: the old secret stops working at once, for every grant.
    let rekeyed = register(&server, confidential("rekeyed", &grants, &[])).await;
    let (status, body) = password_grant(&server, &rekeyed, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let tokens = Tokens::from_json(&body);
    let fresh = server
        .server()
        .rotate_client_secret("rekeyed")
        .await
        .unwrap();
    for form in [
        &[("grant_type", "client_credentials")][..],
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &tokens.refresh_token),
        ],
    ] {
        let (status, body) = post(&server, &rekeyed, "/oauth/token", form).await;
        assert_error(status, &body, StatusCode::UNAUTHORIZED, "invalid_client");
    }
    let rekeyed = Client {
        id: rekeyed.id,
        secret: Some(fresh.expose().to_owned()),
    };
    let refresh = [
        ("grant_type", "refresh_token"),
        ("refresh_token", tokens.refresh_token.as_str()),
    ];
    let (status, body) = post(&server, &rekeyed, "/oauth/token", &refresh).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the session survives a new secret: {body}"
    );

    // Removed: refused for every grant, and its sessions are over.
    let removed = register(&server, confidential("removed", &grants, &[])).await;
    let (status, body) = post(
        &server,
        &removed,
        "/oauth/token",
        &[("grant_type", "client_credentials")],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = password_grant(&server, &removed, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let tokens = Tokens::from_json(&body);
    assert!(server.server().remove_client("removed").await.unwrap());
    for form in [
        &[("grant_type", "client_credentials")][..],
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &tokens.refresh_token),
        ],
    ] {
        let (status, body) = post(&server, &removed, "/oauth/token", form).await;
        assert_error(status, &body, StatusCode::UNAUTHORIZED, "invalid_client");
    }
    let (status, body) = password_grant(&server, &removed, None).await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "invalid_client");
    assert_eq!(
        server.resource(&tokens.access_token).await.status(),
        StatusCode::UNAUTHORIZED
    );
    // Registered again under the same id, it does not inherit the old sessions.
    let again = register(&server, confidential("removed", &grants, &[])).await;
    let refresh = [
        ("grant_type", "refresh_token"),
        ("refresh_token", tokens.refresh_token.as_str()),
    ];
    let (status, body) = post(&server, &again, "/oauth/token", &refresh).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_grant");
}
