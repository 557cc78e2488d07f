//! S6: malformed requests get RFC 6749 error bodies with the right status,
//! nothing panics and nothing is written.

use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};

use crate::common::{CLIENT_ID, CLIENT_SECRET, TestServer};

struct Case {
    name: &'static str,
    path: &'static str,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    basic: Option<(&'static str, &'static str)>,
    raw_authorization: Option<&'static str>,
    status: StatusCode,
    error: &'static str,
}

fn case(
    name: &'static str,
    path: &'static str,
    content_type: Option<&'static str>,
    body: &str,
) -> Case {
    Case {
        name,
        path,
        content_type,
        body: body.as_bytes().to_vec(),
        basic: Some((CLIENT_ID, CLIENT_SECRET)),
        raw_authorization: None,
        status: StatusCode::BAD_REQUEST,
        error: "invalid_request",
    }
}

impl Case {
    fn status(mut self, status: StatusCode, error: &'static str) -> Self {
        self.status = status;
        self.error = error;
        self
    }
    fn no_client(mut self) -> Self {
        self.basic = None;
        self
    }
    fn basic(mut self, id: &'static str, secret: &'static str) -> Self {
        self.basic = Some((id, secret));
        self
    }
    fn raw_authorization(mut self, value: &'static str) -> Self {
        self.basic = None;
        self.raw_authorization = Some(value);
        self
    }
    fn body(mut self, body: Vec<u8>) -> Self {
        self.body = body;
        self
    }
}

const FORM: Option<&str> = Some("application/x-www-form-urlencoded");
const JSON: Option<&str> = Some("application/json");

#[tokio::test]
async fn s6_malformed_requests_get_rfc6749_errors_and_write_nothing() {
    let server = TestServer::start().await;
    let tokens = server.login().await;
    let big = vec![b'a'; 64 * 1024];
    let mut big_form = b"grant_type=password&username=".to_vec();
    big_form.extend_from_slice(&big);
    let mut big_json = br#"{"username":"alice","password":""#.to_vec();
    big_json.extend_from_slice(&big);
    big_json.extend_from_slice(br#""}"#);
    // A token of the client the requests authenticate as: its scope is
    // judged (another client's token is refused before its scope is).
    let oauth_tokens = server.oauth_login().await;
    let refresh_with_scope = format!(
        "grant_type=refresh_token&refresh_token={}&scope=admin",
        oauth_tokens.refresh_token
    );
    let refresh_no_client = format!(
        "grant_type=refresh_token&refresh_token={}",
        tokens.refresh_token
    );

    let cases = vec![
        case(
            "token: no content type",
            "/oauth/token",
            None,
            "grant_type=password",
        ),
        case(
            "token: JSON body",
            "/oauth/token",
            JSON,
            r#"{"grant_type":"password"}"#,
        ),
        case(
            "token: repeated parameter",
            "/oauth/token",
            FORM,
            "grant_type=password&grant_type=password",
        ),
        case("token: oversized body", "/oauth/token", FORM, "")
            .body(big_form)
            .status(StatusCode::PAYLOAD_TOO_LARGE, "invalid_request"),
        case(
            "token: missing grant_type",
            "/oauth/token",
            FORM,
            "username=alice",
        ),
        case(
            "token: unknown grant",
            "/oauth/token",
            FORM,
            "grant_type=urn:example:magic",
        )
        .status(StatusCode::BAD_REQUEST, "unsupported_grant_type"),
        case(
            "token: authorization_code without its PKCE verifier",
            "/oauth/token",
            FORM,
            "grant_type=authorization_code&code=x",
        )
        .status(StatusCode::BAD_REQUEST, "invalid_request"),
        case(
            "token: authorization_code with a forged code",
            "/oauth/token",
            FORM,
            "grant_type=authorization_code&code=ac1.e30.AAAA&code_verifier=dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
        )
        .status(StatusCode::BAD_REQUEST, "invalid_grant"),
        case(
            "token: missing password",
            "/oauth/token",
            FORM,
            "grant_type=password&username=alice",
        ),
        case(
            "token: missing refresh_token",
            "/oauth/token",
            FORM,
            "grant_type=refresh_token",
        ),
        case("token: scope beyond the grant", "/oauth/token", FORM, "")
            .body(refresh_with_scope.into_bytes())
            .status(StatusCode::BAD_REQUEST, "invalid_scope"),
        case("token: no client authentication", "/oauth/token", FORM, "")
            .body(refresh_no_client.clone().into_bytes())
            .no_client()
            .status(StatusCode::UNAUTHORIZED, "invalid_client"),
        case("token: wrong client secret", "/oauth/token", FORM, "")
            .body(refresh_no_client.clone().into_bytes())
            .basic(CLIENT_ID, "wrong")
            .status(StatusCode::UNAUTHORIZED, "invalid_client"),
        case("token: unknown client", "/oauth/token", FORM, "")
            .body(refresh_no_client.into_bytes())
            .basic("nobody", "x")
            .status(StatusCode::UNAUTHORIZED, "invalid_client"),
        case(
            "token: malformed Basic header",
            "/oauth/token",
            FORM,
            "grant_type=client_credentials",
        )
        .raw_authorization("Basic !!!not-base64")
        .status(StatusCode::UNAUTHORIZED, "invalid_client"),
        case(
            "token: two client auth methods",
            "/oauth/token",
            FORM,
            "grant_type=client_credentials&client_secret=x",
        ),
        case("token: non-UTF-8 body", "/oauth/token", FORM, "")
            .body(vec![0xff, 0xfe, b'=', 0x80])
            .status(StatusCode::BAD_REQUEST, "invalid_request"),
        case("login: malformed JSON", "/auth/login", JSON, "{").no_client(),
        case(
            "login: wrong content type",
            "/auth/login",
            Some("text/plain"),
            r#"{"username":"alice","password":"x"}"#,
        )
        .no_client(),
        case(
            "login: form instead of JSON",
            "/auth/login",
            FORM,
            "username=alice&password=x",
        )
        .no_client(),
        case(
            "login: missing field",
            "/auth/login",
            JSON,
            r#"{"username":"alice"}"#,
        )
        .no_client(),
        case(
            "login: wrong types",
            "/auth/login",
            JSON,
            r#"{"username":1,"password":[]}"#,
        )
        .no_client(),
        case("login: oversized body", "/auth/login", JSON, "")
            .body(big_json)
            .no_client()
            .status(StatusCode::PAYLOAD_TOO_LARGE, "invalid_request"),
        case(
            "login: wrong password",
            "/auth/login",
            JSON,
            r#"{"username":"alice","password":"nope"}"#,
        )
        .no_client()
        .status(StatusCode::BAD_REQUEST, "invalid_grant"),
        case("refresh: no body", "/auth/refresh", JSON, "").no_client(),
        case(
            "refresh: wrong type",
            "/auth/refresh",
            JSON,
            r#"{"refresh_token":5}"#,
        )
        .no_client(),
        case(
            "refresh: unknown token",
            "/auth/refresh",
            JSON,
            r#"{"refresh_token":"rt1_x"}"#,
        )
        .no_client()
        .status(StatusCode::BAD_REQUEST, "invalid_grant"),
        case(
            "revoke: missing token",
            "/oauth/revoke",
            FORM,
            "token_type_hint=refresh_token",
        ),
        case("revoke: no client", "/oauth/revoke", FORM, "token=abc")
            .no_client()
            .status(StatusCode::UNAUTHORIZED, "invalid_client"),
        case("introspect: missing token", "/oauth/introspect", FORM, ""),
        case(
            "introspect: no client",
            "/oauth/introspect",
            FORM,
            "token=abc",
        )
        .no_client()
        .status(StatusCode::UNAUTHORIZED, "invalid_client"),
        case("logout: malformed JSON", "/auth/logout", JSON, "[1,2").no_client(),
    ];

    let before = server.server().repository().counts().await.unwrap();
    for case in cases {
        let mut request = server
            .http
            .post(format!("{}{}", server.url, case.path))
            .body(case.body.clone());
        if let Some(ct) = case.content_type {
            request = request.header(CONTENT_TYPE, ct);
        }
        if let Some((id, secret)) = case.basic {
            request = request.basic_auth(id, Some(secret));
        }
        if let Some(raw) = case.raw_authorization {
            request = request.header(AUTHORIZATION, raw);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        let body: serde_json::Value = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("{}: body is not JSON: {text:?}", case.name));
        assert_eq!(status, case.status, "{}: {body}", case.name);
        assert_eq!(body["error"], case.error, "{}: {body}", case.name);
        assert_eq!(headers["cache-control"], "no-store", "{}", case.name);
        if status == StatusCode::UNAUTHORIZED {
            let challenge = headers["www-authenticate"].to_str().unwrap();
            assert!(challenge.starts_with("Basic"), "{}: {challenge}", case.name);
        }
    }
    let after = server.server().repository().counts().await.unwrap();
    assert_eq!(before, after, "nothing written");
    // The session that was probed is intact.
    let next = server.refresh_ok(&tokens.refresh_token).await;
    assert_eq!(
        server.resource(&next.access_token).await.status(),
        StatusCode::OK
    );
}
