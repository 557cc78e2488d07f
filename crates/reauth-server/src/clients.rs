//! OAuth clients as an operator registers them (DESIGN.md O1–O3): what a
//! client may ask for, and the checks a registration must pass.
//!
//! | field | meaning | default |
//! |---|---|---|
//! | `public` | no secret, `token_endpoint_auth_method=none` (a browser or native app) | confidential |
//! | `grant_types` | grants it may use; `client_credentials` only when listed (and never for a public client); `password` only when listed for a public client (RFC 9700 §2.4) | confidential: `password`, `refresh_token`; public: `refresh_token`; both plus `authorization_code` when it has redirect URIs |
//! | `scopes` | scopes it may ask for; anything else is `invalid_scope` | none |
//! | `default_scope` | granted when it asks for none | all its scopes |
//! | `redirect_uris` | exact redirect URIs of the authorization-code grant (`https`, loopback `http` with any port, or a private-use scheme) | none |
//! | `introspection` | a resource server: may introspect every token, not only its own | no |

use std::fmt;

use crate::store::{ClientRecord, NewClient};

/// An OAuth 2.0 grant type the server implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum GrantType {
    /// `authorization_code` (RFC 6749 §4.1), always with PKCE S256 (RFC 7636).
    AuthorizationCode,
    /// `refresh_token` (RFC 6749 §6).
    RefreshToken,
    /// `password` (RFC 6749 §4.3).
    Password,
    /// `client_credentials` (RFC 6749 §4.4): tokens for the client itself.
    ClientCredentials,
}

impl GrantType {
    /// Every grant type, in the order the metadata lists them.
    pub const ALL: [Self; 4] = [
        Self::AuthorizationCode,
        Self::RefreshToken,
        Self::Password,
        Self::ClientCredentials,
    ];

    /// The `grant_type` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AuthorizationCode => "authorization_code",
            Self::RefreshToken => "refresh_token",
            Self::Password => "password",
            Self::ClientCredentials => "client_credentials",
        }
    }

    /// Parses a `grant_type` value.
    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|g| g.as_str() == value)
    }
}

impl fmt::Display for GrantType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A client to register with [`Server::register_client`](crate::Server::register_client).
///
/// ```
/// use reauth_server::{ClientSpec, GrantType};
/// let mut spec = ClientSpec::confidential("billing-service");
/// spec.grant_types = vec![GrantType::ClientCredentials];
/// spec.scopes = vec!["invoices:read".into()];
/// let mut spa = ClientSpec::public("web-app");
/// spa.redirect_uris = vec!["https://app.example.com/callback".into()];
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientSpec {
    /// The `client_id`: 1–128 RFC 3986 unreserved characters (letters,
    /// digits, `-`, `.`, `_`, `~`).
    pub client_id: String,
    /// No secret (`token_endpoint_auth_method=none`).
    pub public: bool,
    /// Allowed grant types; empty means the defaults (see the module docs:
    /// a public client gets no `password` grant unless it is listed here).
    pub grant_types: Vec<GrantType>,
    /// Allowed scopes.
    pub scopes: Vec<String>,
    /// Granted when the client asks for no scope; `None` means all of
    /// [`scopes`](Self::scopes).
    pub default_scope: Option<Vec<String>>,
    /// Redirect URIs for the authorization-code grant.
    pub redirect_uris: Vec<String>,
    /// May introspect any token (a resource server).
    pub introspection: bool,
}

impl ClientSpec {
    /// A confidential client (it gets a secret) with the defaults.
    pub fn confidential(client_id: impl Into<String>) -> Self {
        Self {
            client_id: client_id.into(),
            public: false,
            grant_types: Vec::new(),
            scopes: Vec::new(),
            default_scope: None,
            redirect_uris: Vec::new(),
            introspection: false,
        }
    }

    /// A public client (no secret) with the defaults.
    pub fn public(client_id: impl Into<String>) -> Self {
        Self {
            public: true,
            ..Self::confidential(client_id)
        }
    }

    /// Checks the spec and fills in the defaults: the record to store
    /// (without a secret MAC).
    pub(crate) fn validate(&self) -> Result<NewClient, String> {
        let id = &self.client_id;
        if id.is_empty() || id.len() > 128 || !id.bytes().all(is_unreserved) {
            return Err(format!(
                "client id {id:?} must be 1 to 128 letters, digits, '-', '.', '_' or '~' (RFC 3986 unreserved)"
            ));
        }
        let mut grants = self.grant_types.clone();
        if grants.is_empty() {
            // A public client cannot keep a secret, so anyone may pose as
            // it: it gets the password grant only when it asks for it
            // (RFC 9700 §2.4 says not at all; old native apps still do).
            grants = if self.public {
                vec![GrantType::RefreshToken]
            } else {
                vec![GrantType::Password, GrantType::RefreshToken]
            };
            if !self.redirect_uris.is_empty() {
                grants.insert(0, GrantType::AuthorizationCode);
            }
        }
        dedup(&mut grants);
        if self.public && grants.contains(&GrantType::ClientCredentials) {
            return Err("a public client cannot use client_credentials (it has no secret)".into());
        }
        if self.public && self.introspection {
            return Err("a public client cannot introspect (it has no secret)".into());
        }
        let mut scopes = self.scopes.clone();
        dedup(&mut scopes);
        if scopes.len() > 64 {
            return Err("at most 64 scopes".into());
        }
        for scope in &scopes {
            check_scope_token(scope)?;
        }
        let mut default_scope = self.default_scope.clone().unwrap_or_else(|| scopes.clone());
        dedup(&mut default_scope);
        if let Some(extra) = default_scope.iter().find(|s| !scopes.contains(s)) {
            return Err(format!(
                "default scope {extra:?} is not one of the client's scopes"
            ));
        }
        let mut redirect_uris = self.redirect_uris.clone();
        dedup(&mut redirect_uris);
        for uri in &redirect_uris {
            check_redirect_uri(uri)?;
        }
        if grants.contains(&GrantType::AuthorizationCode) && redirect_uris.is_empty() {
            return Err("the authorization_code grant needs at least one redirect URI".into());
        }
        Ok(NewClient {
            client_id: id.clone(),
            secret_mac: String::new(),
            public: self.public,
            grant_types: grants.iter().map(|g| g.as_str().to_owned()).collect(),
            scopes,
            default_scope,
            redirect_uris,
            introspection: self.introspection,
        })
    }
}

/// RFC 3986 §2.3 `unreserved`: a client id made of these reads the same
/// in a URL, a form, HTTP Basic (which URL-decodes it, RFC 6749 §2.3.1),
/// a log line and a shell, with no escaping to get wrong.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Drops repeated elements, keeping the first of each in order.
fn dedup<T: PartialEq>(list: &mut Vec<T>) {
    let mut kept: Vec<T> = Vec::with_capacity(list.len());
    for item in list.drain(..) {
        if !kept.contains(&item) {
            kept.push(item);
        }
    }
    *list = kept;
}

/// RFC 6749 §3.3: `scope-token = 1*( %x21 / %x23-5B / %x5D-7E )`.
pub(crate) fn is_scope_token(token: &str) -> bool {
    !token.is_empty()
        && token.len() <= 128
        && token
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
}

fn check_scope_token(scope: &str) -> Result<(), String> {
    if is_scope_token(scope) {
        Ok(())
    } else {
        Err(format!(
            "scope {scope:?} must be 1 to 128 visible ASCII characters other than \" and \\"
        ))
    }
}

/// Loopback hosts whose `http` redirect URIs are allowed (RFC 8252 §7.3).
pub(crate) fn is_loopback_host(host: &url::Host<&str>) -> bool {
    match host {
        url::Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => ip.is_loopback(),
    }
}

/// A redirect URI: absolute, no fragment (RFC 6749 §3.1.2), and `https`, a
/// loopback `http`, or a private-use scheme with a dot (RFC 8252 §7.1).
///
/// It must be written exactly as a URL parser writes it back (no space or
/// control character, a lower-case host, no default port, no `..`, a `/`
/// path for `https://host`): requests are compared with it as strings
/// (RFC 9700 §4.1), so what is registered is what will be matched.
fn check_redirect_uri(uri: &str) -> Result<(), String> {
    if uri.len() > 512 {
        return Err(format!("redirect URI {uri:?} is longer than 512 bytes"));
    }
    if uri.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "redirect URI {uri:?} must not contain spaces or control characters"
        ));
    }
    if uri.contains('#') {
        return Err(format!("redirect URI {uri:?} must have no fragment"));
    }
    let url = url::Url::parse(uri).map_err(|e| format!("redirect URI {uri:?}: {e}"))?;
    let ok = match url.scheme() {
        "https" => url.host().is_some(),
        "http" => url.host().as_ref().is_some_and(is_loopback_host),
        scheme => scheme.contains('.'),
    };
    if !ok {
        return Err(format!(
            "redirect URI {uri:?} must be https, http on a loopback address, or a private-use scheme such as com.example.app:/callback"
        ));
    }
    if url.as_str() != uri {
        return Err(format!(
            "redirect URI {uri:?} must be written in normal form: {:?}",
            url.as_str()
        ));
    }
    Ok(())
}

/// A registered client as listed (no secret).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientInfo {
    /// The `client_id`.
    pub client_id: String,
    /// No secret (`token_endpoint_auth_method=none`).
    pub public: bool,
    /// Allowed grant types.
    pub grant_types: Vec<String>,
    /// Allowed scopes.
    pub scopes: Vec<String>,
    /// Granted when it asks for none.
    pub default_scope: Vec<String>,
    /// Redirect URIs.
    pub redirect_uris: Vec<String>,
    /// May introspect any token.
    pub introspection: bool,
    /// Registration time (ms since the Unix epoch).
    pub created_at: i64,
}

impl ClientInfo {
    /// `none` for a public client, else `client_secret_basic` (the form's
    /// `client_secret_post` works too).
    pub fn token_endpoint_auth_method(&self) -> &'static str {
        if self.public {
            "none"
        } else {
            "client_secret_basic"
        }
    }
}

impl From<ClientRecord> for ClientInfo {
    fn from(c: ClientRecord) -> Self {
        Self {
            client_id: c.client_id,
            public: c.public,
            grant_types: c.grant_types,
            scopes: c.scopes,
            default_scope: c.default_scope,
            redirect_uris: c.redirect_uris,
            introspection: c.introspection,
            created_at: c.created_at,
        }
    }
}

impl ClientRecord {
    /// Whether the client may use `grant`.
    pub(crate) fn allows(&self, grant: GrantType) -> bool {
        self.grant_types.iter().any(|g| g == grant.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_checks() {
        let c = ClientSpec::confidential("app").validate().unwrap();
        assert_eq!(c.grant_types, ["password", "refresh_token"]);
        assert!(c.scopes.is_empty() && c.default_scope.is_empty());

        let mut spec = ClientSpec::public("spa");
        spec.redirect_uris = vec![
            "https://app.example/cb".into(),
            "http://127.0.0.1/cb".into(),
        ];
        spec.scopes = vec!["read".into(), "write".into(), "read".into()];
        let c = spec.validate().unwrap();
        assert_eq!(c.grant_types, ["authorization_code", "refresh_token"]);
        assert_eq!(c.scopes, ["read", "write"]);
        assert_eq!(c.default_scope, ["read", "write"]);

        let refused = |spec: ClientSpec| spec.validate().unwrap_err();
        let mut spec = ClientSpec::public("spa");
        spec.grant_types = vec![GrantType::ClientCredentials];
        assert!(refused(spec).contains("client_credentials"));
        let mut spec = ClientSpec::confidential("x");
        spec.grant_types = vec![GrantType::AuthorizationCode];
        assert!(refused(spec).contains("redirect URI"));
        for bad in [
            "http://app.example/cb",
            "https://app.example/cb#x",
            "https://app.example/cb#",
            "https://app.example/cb x",
            " https://app.example/cb",
            "https://app.example/cb\t",
            "https://App.example/cb",
            "https://app.example:443/cb",
            "https://app.example/a/../cb",
            "https://app.example",
            "nodot:/cb",
            "not a uri",
        ] {
            let mut spec = ClientSpec::confidential("x");
            spec.redirect_uris = vec![bad.into()];
            assert!(refused(spec).contains("redirect URI"), "{bad}");
        }
        let mut spec = ClientSpec::confidential("x");
        spec.redirect_uris = vec!["com.example.app:/callback".into()];
        assert!(spec.validate().is_ok());
        let mut spec = ClientSpec::confidential("x");
        spec.scopes = vec!["a\"b".into()];
        assert!(refused(spec).contains("scope"));
        let mut spec = ClientSpec::confidential("x");
        spec.scopes = vec!["a".into()];
        spec.default_scope = Some(vec!["b".into()]);
        assert!(refused(spec).contains("default scope"));
        assert!(refused(ClientSpec::confidential("has space")).contains("client id"));
        for bad in ["a:b", "a%41", "a+b", "a/b", "a@b", "a?b", "a&b", "é"] {
            assert!(
                refused(ClientSpec::confidential(bad)).contains("client id"),
                "{bad:?}"
            );
        }
        for good in ["my-app", "app.v2", "a_b~c", "Z9"] {
            assert!(ClientSpec::confidential(good).validate().is_ok(), "{good}");
        }
        assert!(refused(ClientSpec::confidential("")).contains("client id"));
    }
}
