//! The authorization-code grant (RFC 6749 §4.1), always with PKCE S256
//! (RFC 7636) — the grant strict metadata validators and browser or native
//! apps expect (DESIGN.md O10).
//!
//! # Codes
//!
//! A code is stateless and opaque: `ac2.` + base64url(nonce ‖
//! ChaCha20-Poly1305(key, nonce, JSON payload)), under a key derived from the
//! server's refresh-token key and a random 96-bit nonce. The payload binds
//! the client, the redirect URI, the PKCE challenge, the user, the scope,
//! the expiry ([`CODE_LIFETIME`]) and the id of the session family the code
//! will start. Whoever sees a code (a browser history, a proxy log, a
//! `Referer`) learns none of these, and cannot forge or alter one.
//!
//! A code is used once: redeeming it creates its family, whose id is the
//! primary key, so a second redemption finds the family already there — it
//! is refused with `invalid_grant` and the family the first redemption
//! started is revoked (RFC 6749 §4.1.2). This holds across replicas without
//! any table of codes.

use std::collections::HashMap;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::clients::{check_grant, grant_scope};
use super::{Engine, TokenResponse};
use crate::app_error::AppError;
use crate::clients::{GrantType, is_loopback_host};
use crate::refresh_token::FamilyId;
use crate::store::{ClientRecord, NewFamily};

/// How long a code may be redeemed after it was issued.
pub(crate) const CODE_LIFETIME: Duration = Duration::from_secs(60);

const CODE_PREFIX: &str = "ac2.";
/// Derives the code key from the refresh-token key, and is the AEAD's
/// associated data.
const KEY_LABEL: &[u8] = b"reauth/authorization-code/v2";
const MAX_CODE_LEN: usize = 4096;

#[derive(Serialize, Deserialize)]
struct CodePayload {
    /// The family the code starts (32 hex digits).
    f: String,
    /// Client id.
    c: String,
    /// The redirect URI the code was sent to.
    r: String,
    /// Whether the authorization request named it (then the token request
    /// must repeat it, RFC 6749 §4.1.3).
    rn: bool,
    /// PKCE S256 challenge.
    h: String,
    /// Subject (the user).
    s: String,
    /// Granted scope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sc: Option<String>,
    /// Expiry, ms since the Unix epoch (this server's clock).
    e: i64,
}

/// A checked authorization request (`GET`/`POST /oauth/authorize`).
#[derive(Debug, Clone)]
pub(crate) struct AuthorizationRequest {
    pub(crate) client: ClientRecord,
    /// Where the answer goes.
    pub(crate) redirect_uri: String,
    redirect_uri_named: bool,
    pub(crate) state: Option<String>,
    pub(crate) scope: Option<String>,
    code_challenge: String,
}

/// Why an authorization request is refused.
#[derive(Debug)]
pub(crate) enum AuthorizeError {
    /// The client or redirect URI cannot be trusted: show the error to the
    /// user, never redirect (RFC 6749 §4.1.2.1).
    Show(&'static str),
    /// Redirect the error to the client.
    Redirect {
        redirect_uri: String,
        state: Option<String>,
        error: &'static str,
        description: &'static str,
    },
    /// The database is unavailable or failed.
    Server(AppError),
}

impl From<AppError> for AuthorizeError {
    fn from(e: AppError) -> Self {
        Self::Server(e)
    }
}

/// `redirect_uri` is one of `client`'s, compared as strings, exactly
/// (RFC 9700 §4.1) — except that a loopback `http` URI may name any port
/// (RFC 8252 §7.3). Even then the rest must match character for character:
/// the presented URI must already be in the parser's normal form, so no
/// case, encoding, `..`, or address-spelling trick (`http://2130706433/`)
/// reaches a registered URI it does not spell.
fn registered_redirect(client: &ClientRecord, redirect_uri: &str) -> bool {
    client.redirect_uris.iter().any(|registered| {
        if registered == redirect_uri {
            return true;
        }
        let (Ok(mut a), Ok(mut b)) = (url::Url::parse(registered), url::Url::parse(redirect_uri))
        else {
            return false;
        };
        let loopback = a.scheme() == "http" && a.host().as_ref().is_some_and(is_loopback_host);
        loopback
            && a.as_str() == registered
            && b.as_str() == redirect_uri
            && a.set_port(None).is_ok()
            && b.set_port(None).is_ok()
            && a.as_str() == b.as_str()
    })
}

/// `43*128unreserved` (RFC 7636 §4.1 and §4.2 use the same alphabet).
fn is_pkce_value(value: &str) -> bool {
    (43..=128).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// `BASE64URL(SHA256(verifier)) == challenge`, in constant time.
fn pkce_matches(verifier: &str, challenge: &str) -> bool {
    let computed = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    computed.as_bytes().ct_eq(challenge.as_bytes()).into()
}

impl Engine {
    /// Checks the parameters of an authorization request (RFC 6749 §4.1.1
    /// with RFC 7636 §4.3). Client and redirect URI first: until both are
    /// known good, errors are shown, not redirected.
    pub(crate) async fn check_authorization_request(
        &self,
        params: &HashMap<String, String>,
    ) -> Result<AuthorizationRequest, AuthorizeError> {
        let get = |name: &str| params.get(name).map(String::as_str);
        let client_id = get("client_id").ok_or(AuthorizeError::Show("client_id is missing"))?;
        let client = self
            .repo
            .find_client(client_id)
            .await
            .map_err(AppError::from)?
            .ok_or(AuthorizeError::Show("unknown client"))?;
        let (redirect_uri, named) = match get("redirect_uri") {
            Some(uri) if registered_redirect(&client, uri) => (uri.to_owned(), true),
            Some(_) => {
                return Err(AuthorizeError::Show(
                    "redirect_uri is not registered for this client",
                ));
            }
            None => match client.redirect_uris.as_slice() {
                [only] => (only.clone(), false),
                _ => return Err(AuthorizeError::Show("redirect_uri is missing")),
            },
        };
        let state = get("state").map(str::to_owned);
        let refuse = |error: &'static str, description: &'static str| AuthorizeError::Redirect {
            redirect_uri: redirect_uri.clone(),
            state: state.clone(),
            error,
            description,
        };
        match get("response_type") {
            Some("code") => {}
            Some(_) => {
                return Err(refuse(
                    "unsupported_response_type",
                    "only response_type=code is supported",
                ));
            }
            None => return Err(refuse("invalid_request", "response_type is missing")),
        }
        if check_grant(&client, GrantType::AuthorizationCode).is_err() {
            return Err(refuse(
                "unauthorized_client",
                "the client may not use the authorization_code grant",
            ));
        }
        let code_challenge = match get("code_challenge") {
            Some(c) if is_pkce_value(c) => c.to_owned(),
            Some(_) => return Err(refuse("invalid_request", "malformed code_challenge")),
            None => {
                return Err(refuse(
                    "invalid_request",
                    "code_challenge is required (PKCE, S256)",
                ));
            }
        };
        if get("code_challenge_method") != Some("S256") {
            return Err(refuse(
                "invalid_request",
                "code_challenge_method must be S256",
            ));
        }
        let scope = grant_scope(&client, get("scope"))
            .map_err(|_| refuse("invalid_scope", "a requested scope is not allowed here"))?;
        Ok(AuthorizationRequest {
            client,
            redirect_uri,
            redirect_uri_named: named,
            state,
            scope,
            code_challenge,
        })
    }

    /// A code for `subject`, who just authenticated, answering `request`.
    pub(crate) fn issue_code(&self, request: &AuthorizationRequest, subject: &str) -> String {
        let payload = CodePayload {
            f: FamilyId::random().to_hex(),
            c: request.client.client_id.clone(),
            r: request.redirect_uri.clone(),
            rn: request.redirect_uri_named,
            h: request.code_challenge.clone(),
            s: subject.to_owned(),
            sc: request.scope.clone(),
            e: self
                .now_ms()
                .saturating_add(crate::clock::duration_millis(CODE_LIFETIME)),
        };
        let mut sealed = serde_json::to_vec(&payload).unwrap_or_default();
        let nonce: [u8; NONCE_LEN] = crate::keys::random_bytes();
        let key = self.code_key();
        // Sealing fails only for a payload longer than ChaCha20 can count.
        if key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(KEY_LABEL),
                &mut sealed,
            )
            .is_err()
        {
            sealed.clear();
        }
        let mut code = nonce.to_vec();
        code.extend_from_slice(&sealed);
        format!("{CODE_PREFIX}{}", URL_SAFE_NO_PAD.encode(code))
    }

    /// The AEAD key of codes: HMAC-SHA256(refresh-token key, label).
    fn code_key(&self) -> LessSafeKey {
        #[allow(clippy::expect_used)]
        let mut mac = Hmac::<Sha256>::new_from_slice(self.keys.refresh_mac_key())
            .expect("HMAC takes any key length");
        mac.update(KEY_LABEL);
        let key: [u8; 32] = mac.finalize().into_bytes().into();
        #[allow(clippy::expect_used)]
        LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, &key).expect("a 256-bit ChaCha20 key"))
    }

    fn open_code(&self, code: &str) -> Option<CodePayload> {
        if code.len() > MAX_CODE_LEN {
            return None;
        }
        let mut bytes = URL_SAFE_NO_PAD
            .decode(code.strip_prefix(CODE_PREFIX)?)
            .ok()?;
        if bytes.len() < NONCE_LEN {
            return None;
        }
        let mut sealed = bytes.split_off(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(&bytes).ok()?;
        let payload = self
            .code_key()
            .open_in_place(nonce, Aad::from(KEY_LABEL), &mut sealed)
            .ok()?;
        serde_json::from_slice(payload).ok()
    }

    /// Redeems a code at the token endpoint (RFC 6749 §4.1.3, RFC 7636 §4.6):
    /// starts its session family and answers its first tokens.
    pub(crate) async fn redeem_code(
        &self,
        client: &ClientRecord,
        code: &str,
        redirect_uri: Option<&str>,
        code_verifier: &str,
    ) -> Result<TokenResponse, AppError> {
        let invalid = AppError::InvalidGrant;
        let payload = self
            .open_code(code)
            .ok_or(invalid("invalid authorization code"))?;
        if payload.c != client.client_id {
            return Err(invalid("the code was issued to another client"));
        }
        if self.now_ms() >= payload.e {
            return Err(invalid("the authorization code expired"));
        }
        let redirect_ok = match redirect_uri {
            Some(uri) => uri == payload.r,
            None => !payload.rn,
        };
        if !redirect_ok {
            return Err(invalid(
                "redirect_uri differs from the authorization request",
            ));
        }
        if !is_pkce_value(code_verifier) || !pkce_matches(code_verifier, &payload.h) {
            return Err(invalid("PKCE verification failed"));
        }
        let created = self
            .repo
            .create_family(&NewFamily {
                id: &payload.f,
                subject: &payload.s,
                client_id: Some(&client.client_id),
                scope: payload.sc.as_deref(),
                generation: 1,
            })
            .await?;
        if !created {
            // The code was redeemed before: whoever holds it now may have
            // stolen it. Revoke what the first redemption started.
            self.revoke(
                &payload.f,
                "code_reused",
                Some("authorization code redeemed twice"),
            )
            .await?;
            return Err(invalid("the authorization code was already used"));
        }
        let family = FamilyId::from_hex(&payload.f)
            .ok_or(AppError::Internal("malformed family id in a code".into()))?;
        crate::audit::session_started(&payload.f, &payload.s, Some(&client.client_id));
        Ok(self.token_response(
            &family,
            &payload.s,
            1,
            payload.sc.as_deref(),
            Some(&client.client_id),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_s256_matches_the_rfc_7636_example() {
        // RFC 7636 Appendix B.
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert!(is_pkce_value(verifier) && is_pkce_value(challenge));
        assert!(pkce_matches(verifier, challenge));
        assert!(!pkce_matches(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXK",
            challenge
        ));
        assert!(!is_pkce_value("short"));
        assert!(!is_pkce_value(&"a".repeat(129)));
        assert!(!is_pkce_value(&format!("{}+", "a".repeat(43))));
    }

    #[test]
    fn loopback_redirects_match_on_any_port_others_exactly() {
        let mut client = ClientRecord {
            client_id: "c".into(),
            secret_mac: String::new(),
            public: true,
            grant_types: vec!["authorization_code".into()],
            scopes: vec![],
            default_scope: vec![],
            redirect_uris: vec![
                "http://127.0.0.1/callback".into(),
                "https://app.example/cb".into(),
            ],
            introspection: false,
            created_at: 0,
        };
        assert!(registered_redirect(
            &client,
            "http://127.0.0.1:51234/callback"
        ));
        assert!(registered_redirect(&client, "https://app.example/cb"));
        assert!(!registered_redirect(&client, "https://app.example:8443/cb"));
        assert!(!registered_redirect(&client, "https://app.example/cb/"));
        assert!(!registered_redirect(&client, "http://127.0.0.1:5/other"));
        assert!(!registered_redirect(
            &client,
            "http://evil.example/callback"
        ));
        // RFC 9700 §4.1: exact match — no normalisation trick matches.
        for trick in [
            " https://app.example/cb",
            "https://app.example/cb ",
            "https://APP.example/cb",
            "https://app.example/c%62",
            "https://app.example/x/../cb",
            " http://127.0.0.1:5000/callback",
            "http://127.0.0.1:5000/callback\t",
            "http://127.0.0.1:5000/x/../callback",
            "http://127.0.0.1:5000/%63allback",
            "http://2130706433:5000/callback",
            "http://0x7f.1:5000/callback",
            "HTTP://127.0.0.1:5000/callback",
        ] {
            assert!(!registered_redirect(&client, trick), "{trick:?}");
        }
        client.redirect_uris.clear();
        assert!(!registered_redirect(&client, "https://app.example/cb"));
    }
}
