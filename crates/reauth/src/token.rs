//! The token set a session holds, its generation, and the bearer handed to requests.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::secret::{AccessToken, RefreshToken};

/// The position of a [`TokenSet`] in the sequence of token sets a session has held.
///
/// Every token set the session publishes gets a strictly greater generation than
/// the one it replaces. Generations are persisted with the tokens, so that other
/// processes sharing a store can tell which copy is newer.
///
/// ```
/// use reauth::Generation;
/// assert!(Generation::new(2) > Generation::new(1));
/// assert_eq!(Generation::new(1).next(), Generation::new(2));
/// ```
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Generation(u64);

impl Generation {
    /// A generation with the given number.
    pub const fn new(n: u64) -> Self {
        Self(n)
    }

    /// The number.
    pub const fn get(self) -> u64 {
        self.0
    }

    /// The generation after this one.
    #[must_use]
    pub const fn next(self) -> Self {
        Self(self.0.saturating_add(1))
    }
}

impl fmt::Display for Generation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Which login a [`TokenSet`] descends from.
///
/// [`Session::start`](crate::Session::start) gives every login a fresh random
/// lineage; a refresh keeps it. Processes sharing a store compare lineages
/// before adopting a stored set: a set of another lineage is another login
/// (another user, or a new login of the same user), never a rotation of
/// theirs (C19). Not a secret: 128 random bits, hex.
///
/// ```
/// use reauth::Lineage;
/// let a = Lineage::generate();
/// assert_ne!(a, Lineage::generate());
/// assert_eq!(a.as_str().len(), 32);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Lineage(String);

impl Lineage {
    /// A fresh random lineage.
    pub fn generate() -> Self {
        Self(format!(
            "{:016x}{:016x}",
            fastrand::u64(..),
            fastrand::u64(..)
        ))
    }

    /// A lineage with the given id, as a store read it back.
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    /// The id. Empty for a set persisted before lineages existed.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for Lineage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The identity of a stored [`TokenSet`]: its generation and lineage. A
/// coordinated store's compare-and-set compares both
/// ([`Coordinator::compare_and_swap`](crate::coord::Coordinator::compare_and_swap)).
///
/// ```
/// use reauth::{Generation, Lineage, Stamp, TokenSet};
/// let t = TokenSet::new("a").with_generation(Generation::new(3)).with_lineage(Lineage::new("l1"));
/// assert_eq!(t.stamp(), Stamp::new(Generation::new(3), Lineage::new("l1")));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Stamp {
    /// The generation.
    pub generation: Generation,
    /// The lineage.
    pub lineage: Lineage,
}

impl Stamp {
    /// A stamp from its parts.
    pub fn new(generation: Generation, lineage: Lineage) -> Self {
        Self {
            generation,
            lineage,
        }
    }
}

impl fmt::Display for Stamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "g{} of {}", self.generation, self.lineage)
    }
}

/// An access token, an optional refresh token and what is known about them.
///
/// Secrets are redacted in `Debug` output. Build one with [`TokenSet::new`] and
/// the `with_*` methods; a [`Refresher`](crate::Refresher) returns one.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use reauth::TokenSet;
///
/// let now = SystemTime::now();
/// let tokens = TokenSet::new("access")
///     .with_refresh_token("refresh")
///     .with_expires_in(now, Duration::from_secs(300));
/// assert_eq!(tokens.expires_at, Some(now + Duration::from_secs(300)));
/// assert!(!format!("{tokens:?}").contains("access\""));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TokenSet {
    /// The bearer credential.
    pub access_token: AccessToken,
    /// The credential that buys the next access token, if the server issued one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<RefreshToken>,
    /// When the access token stops being accepted, if known.
    #[serde(default, with = "unix_millis", skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<SystemTime>,
    /// When this set was obtained; the refresh-ahead timer uses it to know the
    /// token's lifetime. The session fills it in when it publishes a set.
    #[serde(default, with = "unix_millis", skip_serializing_if = "Option::is_none")]
    pub obtained_at: Option<SystemTime>,
    /// The token type, normally `Bearer`.
    #[serde(default = "bearer")]
    pub token_type: String,
    /// The granted scope, if the server said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// The generation; assigned by the session when the set is published.
    #[serde(default)]
    pub generation: Generation,
    /// The login this set descends from; assigned by the session.
    #[serde(default, skip_serializing_if = "lineage_is_empty")]
    pub lineage: Lineage,
}

fn lineage_is_empty(l: &Lineage) -> bool {
    l.0.is_empty()
}

fn bearer() -> String {
    "Bearer".to_owned()
}

impl TokenSet {
    /// A token set holding only an access token of type `Bearer`.
    pub fn new(access_token: impl Into<AccessToken>) -> Self {
        Self {
            access_token: access_token.into(),
            refresh_token: None,
            expires_at: None,
            obtained_at: None,
            token_type: bearer(),
            scope: None,
            generation: Generation::default(),
            lineage: Lineage::default(),
        }
    }

    /// Sets the refresh token.
    #[must_use]
    pub fn with_refresh_token(mut self, refresh_token: impl Into<RefreshToken>) -> Self {
        self.refresh_token = Some(refresh_token.into());
        self
    }

    /// Sets the absolute expiry.
    #[must_use]
    pub fn with_expires_at(mut self, expires_at: SystemTime) -> Self {
        self.expires_at = Some(expires_at);
        self
    }

    /// Sets the expiry from a relative lifetime (`expires_in`) received at `now`,
    /// and records `now` as the time the set was obtained.
    #[must_use]
    ///
    /// An `expires_in` too large to represent means "no known expiry".
    pub fn with_expires_in(mut self, now: SystemTime, expires_in: Duration) -> Self {
        self.expires_at = now.checked_add(expires_in);
        self.obtained_at = Some(now);
        self
    }

    /// Sets the token type.
    #[must_use]
    pub fn with_token_type(mut self, token_type: impl Into<String>) -> Self {
        self.token_type = token_type.into();
        self
    }

    /// Sets the scope.
    #[must_use]
    pub fn with_scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = Some(scope.into());
        self
    }

    /// Sets the generation. Sessions assign generations themselves; stores and
    /// coordinators use this when they rebuild a persisted set.
    #[must_use]
    pub fn with_generation(mut self, generation: Generation) -> Self {
        self.generation = generation;
        self
    }

    /// Sets the lineage. Sessions assign lineages themselves; stores and
    /// coordinators use this when they rebuild a persisted set.
    #[must_use]
    pub fn with_lineage(mut self, lineage: Lineage) -> Self {
        self.lineage = lineage;
        self
    }

    /// The set's identity in a shared store: generation and lineage.
    pub fn stamp(&self) -> Stamp {
        Stamp::new(self.generation, self.lineage.clone())
    }
}

/// The access token a request should carry, tagged with the generation it came from.
///
/// Hand it back to [`Session::invalidate`](crate::Session::invalidate) when the
/// server rejects it: the generation tells the session whether the rejection is
/// news (refresh) or stale (a newer token already exists; replay with that).
/// A bearer the session handed out also remembers the login (lineage) it
/// came from, so that a late rejection of a previous login's token is never
/// taken for one of the current login's, even at the same generation number.
///
/// ```
/// use reauth::{Bearer, AccessToken, Generation};
/// let bearer = Bearer::new(AccessToken::new("abc"), Generation::new(3));
/// assert_eq!(bearer.header_value(), "Bearer abc");
/// assert_eq!(bearer.generation(), Generation::new(3));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bearer {
    token: AccessToken,
    generation: Generation,
    /// Empty for a bearer built with [`Bearer::new`] (generation only).
    lineage: Lineage,
}

impl Bearer {
    /// A bearer for `token` of `generation`.
    pub fn new(token: AccessToken, generation: Generation) -> Self {
        Self {
            token,
            generation,
            lineage: Lineage::default(),
        }
    }

    /// The bearer of `tokens`: its access token, generation and lineage.
    pub(crate) fn of(tokens: &TokenSet) -> Self {
        Self {
            token: tokens.access_token.clone(),
            generation: tokens.generation,
            lineage: tokens.lineage.clone(),
        }
    }

    /// The login the token came from; empty if unknown.
    pub(crate) fn lineage(&self) -> &Lineage {
        &self.lineage
    }

    /// The access token.
    pub fn token(&self) -> &AccessToken {
        &self.token
    }

    /// The generation of the token set this token belongs to.
    pub fn generation(&self) -> Generation {
        self.generation
    }

    /// `Bearer <token>`, for the `Authorization` header.
    pub fn header_value(&self) -> String {
        format!("Bearer {}", self.token.secret())
    }
}

mod unix_millis {
    use super::*;
    use serde::{Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(
        t: &Option<SystemTime>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => {
                let ms = t
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_millis())
                    .unwrap_or(0);
                s.serialize_u64(u64::try_from(ms).unwrap_or(u64::MAX))
            }
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<SystemTime>, D::Error> {
        let ms: Option<u64> = Option::deserialize(d)?;
        Ok(ms.map(|ms| UNIX_EPOCH + Duration::from_millis(ms)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_set_persists_and_reloads_exactly() {
        let now = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        let t = TokenSet::new("a")
            .with_refresh_token("r")
            .with_expires_in(now, Duration::from_secs(60))
            .with_scope("read")
            .with_generation(Generation::new(7))
            .with_lineage(Lineage::generate());
        let json = serde_json::to_string(&t).unwrap();
        let back: TokenSet = serde_json::from_str(&json).unwrap();
        assert_eq!(back, t);
    }

    #[test]
    fn absurd_expires_in_means_no_known_expiry() {
        let t = TokenSet::new("a").with_expires_in(SystemTime::now(), Duration::MAX);
        assert_eq!(t.expires_at, None);
    }

    #[test]
    fn token_set_debug_is_redacted() {
        let t = TokenSet::new("access-secret").with_refresh_token("refresh-secret");
        let out = format!("{t:?}");
        assert!(!out.contains("secret"), "{out}");
    }
}
