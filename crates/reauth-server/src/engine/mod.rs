//! The engine: sessions, rotation, revocation and token checks, apart from
//! HTTP. Routes parse requests and render answers; everything they decide
//! with is here, on an [`Engine`] shared by every request.
//!
//! | file | holds |
//! |---|---|
//! | `clients.rs` | client authentication, grant types and scopes per client |
//! | `authorization.rs` | the authorization-code grant with PKCE: codes, redirect URIs, redemption |
//! | `login.rs` | password checks (limiter, hashing) and new session families |
//! | `rotation.rs` | the rotation algorithm: compare-and-set, grace window, reuse detection |
//! | `revocation.rs` | revocation, the access-token denylist and its poller |
//! | `tokens.rs` | access-token signing and verification, token responses, introspection |

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};

use crate::clock::Clock;
use crate::config::ServerConfig;
use crate::faults::Faults;
use crate::jwt::JwtCodec;
use crate::keys::ServerKeys;
use crate::password::Hashing;
use crate::rate_limit::LoginLimiter;
use crate::store::Repository;

mod authorization;
mod clients;
mod login;
mod revocation;
mod rotation;
mod tokens;

pub(crate) use authorization::{AuthorizationRequest, AuthorizeError};
pub(crate) use clients::{CLIENT_SUBJECT_PREFIX, check_grant, grant_scope};
pub(crate) use revocation::spawn_revocation_poller;
pub(crate) use tokens::TokenResponse;

/// Shared state of one server instance and the rules it applies.
pub(crate) struct Engine {
    pub(crate) config: ServerConfig,
    pub(crate) repo: Arc<dyn Repository>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) keys: ServerKeys,
    pub(crate) jwt: JwtCodec,
    pub(crate) faults: Faults,
    pub(crate) limiter: LoginLimiter,
    pub(crate) hashing: Hashing,
    /// Revoked families whose access tokens may still be unexpired: id →
    /// when this process learned of it (ms, this process's clock).
    pub(crate) denylist: RwLock<HashMap<String, i64>>,
    pub(crate) dummy_hash: String,
    pub(crate) issuer: OnceLock<String>,
}

impl Engine {
    /// This process's clock (ms): access-token times, the limiter, the
    /// denylist. Rules about stored rows use the database's clock instead.
    pub(crate) fn now_ms(&self) -> i64 {
        self.clock.now_millis()
    }

    /// The issuer: configured, or derived from the first listener.
    pub(crate) fn issuer(&self) -> &str {
        if let Some(issuer) = &self.config.issuer {
            return issuer;
        }
        self.issuer.get_or_init(|| "http://localhost".to_owned())
    }
}

/// The first 8 characters of a family id, for logs.
fn short(id: &str) -> &str {
    &id[..id.len().min(8)]
}
