//! Client authentication (RFC 6749 §2.3.1) and what a client may ask for:
//! its grant types (O3) and scopes (O2).

use super::Engine;
use crate::app_error::AppError;
use crate::client_auth::{PresentedClient, secret_matches};
use crate::clients::GrantType;
use crate::config::ClientCredentials;
use crate::store::ClientRecord;

/// The `sub` of a `client_credentials` token: `client:{client_id}`. Users
/// may not have names with this prefix, so a client's token can never pass
/// for a user's.
pub(crate) const CLIENT_SUBJECT_PREFIX: &str = "client:";

impl Engine {
    /// Authenticates the client of a request (credentials from HTTP Basic
    /// or the form): a confidential client by its secret, a public one by
    /// its id alone (with no secret, or an empty one). `401 invalid_client`
    /// otherwise.
    pub(crate) async fn authenticate_client(
        &self,
        presented: PresentedClient,
    ) -> Result<ClientRecord, AppError> {
        let id = presented.client_id.as_str();
        let Some(client) = self.repo.find_client(id).await? else {
            crate::audit::client_auth_failed(id, "unknown client");
            return Err(AppError::InvalidClient);
        };
        let secret = presented
            .client_secret
            .as_ref()
            .map(|s| s.expose())
            .filter(|s| !s.is_empty());
        if client.public {
            if secret.is_some() {
                crate::audit::client_auth_failed(id, "a secret was sent for a public client");
                return Err(AppError::InvalidClient);
            }
            return Ok(client);
        }
        let Some(secret) = secret else {
            crate::audit::client_auth_failed(id, "no secret");
            return Err(AppError::InvalidClient);
        };
        if self.is_disabled_demo_secret(secret) {
            crate::audit::client_auth_failed(id, "the demo secret while the demo client is off");
            return Err(AppError::InvalidClient);
        }
        if !secret_matches(self.keys.client_pepper(), secret, &client.secret_mac) {
            crate::audit::client_auth_failed(id, "wrong secret");
            return Err(AppError::InvalidClient);
        }
        Ok(client)
    }

    /// The demo client's secret is public: it authenticates nobody unless
    /// the demo client is switched on (an earlier run may have stored it).
    fn is_disabled_demo_secret(&self, secret: &str) -> bool {
        let demo = ClientCredentials::demo();
        let enabled = self
            .config
            .demo_client
            .as_ref()
            .is_some_and(|c| c.client_secret == demo.client_secret);
        !enabled && secret == demo.client_secret.expose()
    }
}

/// `400 unauthorized_client` unless `client` may use `grant`.
pub(crate) fn check_grant(client: &ClientRecord, grant: GrantType) -> Result<(), AppError> {
    if client.allows(grant) {
        Ok(())
    } else {
        Err(AppError::UnauthorizedClient(
            "the client may not use this grant type",
        ))
    }
}

/// The scope to grant `client` for a request asking for `requested`: its
/// default scope when it asks for none; `invalid_scope` when it asks for a
/// scope it may not have. Repeated tokens are dropped.
pub(crate) fn grant_scope(
    client: &ClientRecord,
    requested: Option<&str>,
) -> Result<Option<String>, AppError> {
    let tokens: Vec<&str> = match requested {
        None => client.default_scope.iter().map(String::as_str).collect(),
        Some(requested) => {
            let mut tokens: Vec<&str> = Vec::new();
            for token in requested.split(' ').filter(|t| !t.is_empty()) {
                if !client.scopes.iter().any(|s| s == token) {
                    return Err(AppError::InvalidScope);
                }
                if !tokens.contains(&token) {
                    tokens.push(token);
                }
            }
            tokens
        }
    };
    Ok((!tokens.is_empty()).then(|| tokens.join(" ")))
}

/// `scope` without the tokens `client` may no longer have (an operator may
/// have narrowed the client since the grant). First-party sessions
/// (`client` = `None`) keep their scope.
pub(crate) fn still_allowed(scope: Option<&str>, client: Option<&ClientRecord>) -> Option<String> {
    let scope = scope?;
    let Some(client) = client else {
        return Some(scope.to_owned());
    };
    let kept: Vec<&str> = scope
        .split(' ')
        .filter(|t| client.scopes.iter().any(|s| s == t))
        .collect();
    (!kept.is_empty()).then(|| kept.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clients::ClientSpec;

    fn client(scopes: &[&str], default: &[&str]) -> ClientRecord {
        let mut spec = ClientSpec::confidential("c");
        spec.scopes = scopes.iter().map(|s| (*s).to_owned()).collect();
        spec.default_scope = Some(default.iter().map(|s| (*s).to_owned()).collect());
        let new = spec.validate().unwrap();
        ClientRecord {
            client_id: new.client_id,
            secret_mac: String::new(),
            public: false,
            grant_types: new.grant_types,
            scopes: new.scopes,
            default_scope: new.default_scope,
            redirect_uris: new.redirect_uris,
            introspection: false,
            created_at: 0,
        }
    }

    #[test]
    fn o2_scopes_are_granted_within_the_clients_list() {
        let c = client(&["read", "write", "admin"], &["read"]);
        assert_eq!(grant_scope(&c, None).unwrap().as_deref(), Some("read"));
        assert_eq!(
            grant_scope(&c, Some("write read write"))
                .unwrap()
                .as_deref(),
            Some("write read")
        );
        assert!(matches!(
            grant_scope(&c, Some("read delete")),
            Err(AppError::InvalidScope)
        ));
        let none = client(&[], &[]);
        assert_eq!(grant_scope(&none, None).unwrap(), None);
        assert!(grant_scope(&none, Some("read")).is_err());
        // A client narrowed after the grant loses the scopes it no longer has.
        let narrowed = client(&["read"], &["read"]);
        assert_eq!(
            still_allowed(Some("read write"), Some(&narrowed)).as_deref(),
            Some("read")
        );
        assert_eq!(still_allowed(Some("write"), Some(&narrowed)), None);
        assert_eq!(
            still_allowed(Some("read write"), None).as_deref(),
            Some("read write")
        );
    }
}
