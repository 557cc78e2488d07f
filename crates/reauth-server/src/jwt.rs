//! EdDSA (Ed25519) JWT access tokens: signing, and verification that pins the
//! algorithm (RFC 8725 §3.1).
//!
//! Verification accepts exactly `alg: "EdDSA"` with a known `kid`; `none`,
//! every HMAC/RSA/ECDSA algorithm (so HS256-with-the-public-key confusion),
//! a tampered header, payload or signature, a wrong `iss` or `aud`, a missing
//! claim and an expired token are all refused.
//!
//! Signature checks are cached by the SHA-256 digest of the exact token text
//! (the cache holds no bearer token): a token seen before is re-checked only
//! for expiry (and, by the caller, revocation). A token that differs in any
//! byte misses the cache and is verified in full. The cache is bounded in
//! bytes (keys, claims and bookkeeping, [`CACHE_BYTES`] in all): a full shard
//! drops its expired entries, and everything if that is not enough.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signature, Signer, VerifyingKey};
use serde::{Deserialize, Serialize};

use sha2::Digest as _;

use crate::keys::ServerKeys;

/// The claims of an access token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AccessClaims {
    /// Issuer.
    pub iss: String,
    /// Audience.
    pub aud: Audience,
    /// Subject: the username, or the client id for `client_credentials`.
    pub sub: String,
    /// Expiry, seconds since the Unix epoch.
    pub exp: i64,
    /// Issued at, seconds since the Unix epoch.
    pub iat: i64,
    /// Not before, seconds since the Unix epoch (optional).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// Unique token id.
    pub jti: String,
    /// The session family this token belongs to.
    pub sid: String,
    /// Granted scope, space separated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// The OAuth client the token was issued to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
}

/// The `aud` claim: one string or a list (RFC 7519 §4.1.3).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum Audience {
    /// A single audience.
    One(String),
    /// Several audiences.
    Many(Vec<String>),
}

impl Audience {
    fn contains(&self, audience: &str) -> bool {
        match self {
            Self::One(a) => a == audience,
            Self::Many(list) => list.iter().any(|a| a == audience),
        }
    }

    /// Bytes its strings take (for the cache's budget).
    fn byte_len(&self) -> usize {
        match self {
            Self::One(a) => a.len(),
            Self::Many(list) => list.iter().map(|a| a.len() + 24).sum(),
        }
    }
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    typ: Option<String>,
    #[serde(default)]
    crit: Option<serde_json::Value>,
}

const MAX_TOKEN_LEN: usize = 8 * 1024;
const CACHE_SHARDS: usize = 16;
/// Bytes the verified-token cache may hold, all shards together.
const CACHE_BYTES: usize = 16 << 20;

/// The SHA-256 digest of a token: the cache's key.
type Digest = [u8; 32];

/// One shard of the verified-token cache and the bytes it holds.
#[derive(Default)]
struct Shard {
    map: HashMap<Digest, Arc<AccessClaims>>,
    bytes: usize,
}

impl Shard {
    /// Adds `claims` (costing `cost` bytes) within `budget` bytes.
    fn insert(
        &mut self,
        key: Digest,
        claims: Arc<AccessClaims>,
        cost: usize,
        budget: usize,
        now_secs: i64,
    ) {
        if self.bytes + cost > budget {
            self.map.retain(|_, c| c.exp > now_secs);
            self.bytes = self.map.values().map(|c| entry_cost(c)).sum();
            if self.bytes + cost > budget {
                self.map.clear();
                self.bytes = 0;
            }
        }
        if cost <= budget && self.map.insert(key, claims).is_none() {
            self.bytes += cost;
        }
    }
}

/// What one cache entry holds: its key, the claims with their strings, and
/// the map's and the `Arc`'s bookkeeping.
fn entry_cost(claims: &AccessClaims) -> usize {
    let strings = claims.iss.len()
        + claims.sub.len()
        + claims.jti.len()
        + claims.sid.len()
        + claims.scope.as_ref().map_or(0, String::len)
        + claims.client_id.as_ref().map_or(0, String::len)
        + claims.aud.byte_len();
    std::mem::size_of::<Digest>() + std::mem::size_of::<AccessClaims>() + strings + 64
}

/// Signs and verifies access tokens.
pub(crate) struct JwtCodec {
    keys: ServerKeys,
    encoded_header: String,
    /// `kid` → key, for the active key and the retired ones.
    verifying: HashMap<String, VerifyingKey>,
    /// The JWKS order: active first.
    kids: Vec<String>,
    cache: Vec<Mutex<Shard>>,
    /// Bytes one shard may hold.
    shard_budget: usize,
}

impl JwtCodec {
    pub(crate) fn new(keys: ServerKeys) -> Self {
        Self::with_cache_budget(keys, CACHE_BYTES)
    }

    /// A codec whose verified-token cache holds at most `cache_bytes`.
    pub(crate) fn with_cache_budget(keys: ServerKeys, cache_bytes: usize) -> Self {
        let header = serde_json::json!({"alg": "EdDSA", "typ": "JWT", "kid": keys.kid()});
        let encoded_header = URL_SAFE_NO_PAD.encode(header.to_string());
        // The active key and every retired one still verify (key rotation
        // with overlap): tokens signed before a rotation stay valid.
        let verifying = keys
            .verifying_keys()
            .map(|(kid, key)| (kid.to_owned(), key))
            .collect();
        let kids = keys
            .verifying_keys()
            .map(|(kid, _)| kid.to_owned())
            .collect();
        Self {
            keys,
            encoded_header,
            kids,
            verifying,
            cache: (0..CACHE_SHARDS).map(|_| Mutex::default()).collect(),
            shard_budget: cache_bytes / CACHE_SHARDS,
        }
    }

    /// The JWKS document (RFC 7517) of the verification keys.
    pub(crate) fn jwks(&self) -> serde_json::Value {
        let keys: Vec<_> = self
            .kids
            .iter()
            .filter_map(|kid| self.verifying.get_key_value(kid))
            .map(|(kid, key)| {
                serde_json::json!({
                    "kty": "OKP",
                    "crv": "Ed25519",
                    "alg": "EdDSA",
                    "use": "sig",
                    "kid": kid,
                    "x": URL_SAFE_NO_PAD.encode(key.as_bytes()),
                })
            })
            .collect();
        serde_json::json!({ "keys": keys })
    }

    pub(crate) fn sign(&self, claims: &AccessClaims) -> String {
        let payload = serde_json::to_vec(claims).unwrap_or_default();
        let mut token = String::with_capacity(self.encoded_header.len() + payload.len() * 2 + 90);
        token.push_str(&self.encoded_header);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(payload, &mut token);
        let signature = self.keys.signing_key().sign(token.as_bytes());
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(signature.to_bytes(), &mut token);
        token
    }

    /// Verifies `token` and returns its claims. `iat` and `nbf` may be ahead
    /// of `now_secs` by at most `leeway` (a signer whose clock runs ahead);
    /// `exp` is checked without leeway.
    ///
    /// # Errors
    ///
    /// A short, non-secret reason, answered as `invalid_token`.
    pub(crate) fn verify(
        &self,
        token: &str,
        issuer: &str,
        audience: &str,
        now_secs: i64,
        leeway: Duration,
    ) -> Result<Arc<AccessClaims>, &'static str> {
        if token.len() > MAX_TOKEN_LEN {
            return Err("token too long");
        }
        let key: Digest = sha2::Sha256::digest(token.as_bytes()).into();
        let shard = &self.cache[usize::from(key[0]) % CACHE_SHARDS];
        let cached = shard.lock().ok().and_then(|s| s.map.get(&key).cloned());
        let claims = match cached {
            Some(claims) => claims,
            None => {
                let claims = Arc::new(self.verify_signature(token)?);
                if let Ok(mut shard) = shard.lock() {
                    let cost = entry_cost(&claims);
                    shard.insert(key, claims.clone(), cost, self.shard_budget, now_secs);
                }
                claims
            }
        };
        if claims.iss != issuer {
            return Err("wrong issuer");
        }
        if !claims.aud.contains(audience) {
            return Err("wrong audience");
        }
        if now_secs >= claims.exp {
            return Err("token expired");
        }
        let latest = now_secs.saturating_add(i64::try_from(leeway.as_secs()).unwrap_or(i64::MAX));
        if claims.iat > latest {
            return Err("token issued in the future");
        }
        if claims.nbf.is_some_and(|nbf| nbf > latest) {
            return Err("token not yet valid");
        }
        Ok(claims)
    }

    fn verify_signature(&self, token: &str) -> Result<AccessClaims, &'static str> {
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err("malformed token");
        };
        let header_bytes = URL_SAFE_NO_PAD.decode(h).map_err(|_| "malformed header")?;
        let header: Header =
            serde_json::from_slice(&header_bytes).map_err(|_| "malformed header")?;
        // Pin the algorithm: the header may only confirm it, never choose it.
        if header.alg != "EdDSA" {
            return Err("unsupported algorithm");
        }
        if header.crit.is_some() {
            return Err("unsupported critical header");
        }
        if let Some(typ) = &header.typ
            && !typ.eq_ignore_ascii_case("JWT")
            && !typ.eq_ignore_ascii_case("at+jwt")
        {
            return Err("unsupported token type");
        }
        let kid = header.kid.as_deref().ok_or("missing kid")?;
        let key = self.verifying.get(kid).ok_or("unknown kid")?;
        let sig_bytes = URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| "malformed signature")?;
        let sig_bytes: [u8; 64] = sig_bytes.try_into().map_err(|_| "malformed signature")?;
        let signature = Signature::from_bytes(&sig_bytes);
        let signing_input = &token[..h.len() + 1 + p.len()];
        key.verify_strict(signing_input.as_bytes(), &signature)
            .map_err(|_| "bad signature")?;
        let payload = URL_SAFE_NO_PAD.decode(p).map_err(|_| "malformed payload")?;
        serde_json::from_slice(&payload).map_err(|_| "malformed claims")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEEWAY: Duration = Duration::from_secs(60);

    fn claims(exp: i64) -> AccessClaims {
        AccessClaims {
            iss: "iss".into(),
            aud: Audience::One("aud".into()),
            sub: "alice".into(),
            exp,
            iat: 0,
            nbf: None,
            jti: "j".into(),
            sid: "s".into(),
            scope: None,
            client_id: None,
        }
    }

    #[test]
    fn the_token_cache_stays_within_its_byte_budget_and_holds_no_token_text() {
        // 16 shards of 1 KiB: two entries each, so 200 tokens keep evicting.
        let budget = 16 * 1024;
        let codec = JwtCodec::with_cache_budget(ServerKeys::generate(), budget);
        let mut big = claims(1_000);
        big.sub = "s".repeat(200);
        for i in 0..200 {
            big.jti = format!("j{i}");
            let token = codec.sign(&big);
            assert!(codec.verify(&token, "iss", "aud", 1, LEEWAY).is_ok());
            let held: usize = codec.cache.iter().map(|s| s.lock().unwrap().bytes).sum();
            let counted: usize = codec
                .cache
                .iter()
                .flat_map(|s| {
                    let shard = s.lock().unwrap();
                    shard
                        .map
                        .values()
                        .map(|c| entry_cost(c))
                        .collect::<Vec<_>>()
                })
                .sum();
            assert_eq!(held, counted);
            assert!(held > 0 && held <= budget, "{held} bytes cached");
        }
        // A cached token still verifies (from its digest), a changed one does not.
        let token = codec.sign(&claims(1_000));
        assert!(codec.verify(&token, "iss", "aud", 1, LEEWAY).is_ok());
        assert!(codec.verify(&token, "iss", "aud", 1, LEEWAY).is_ok());
        let mut forged = token.clone();
        forged.pop();
        forged.push(if token.ends_with('A') { 'B' } else { 'A' });
        assert!(codec.verify(&forged, "iss", "aud", 1, LEEWAY).is_err());
    }

    #[test]
    fn signed_token_verifies_and_expires() {
        let codec = JwtCodec::new(ServerKeys::generate());
        let token = codec.sign(&claims(100));
        assert_eq!(
            codec.verify(&token, "iss", "aud", 99, LEEWAY).unwrap().sub,
            "alice"
        );
        // Cached path re-checks expiry, issuer and audience.
        assert_eq!(
            codec.verify(&token, "iss", "aud", 100, LEEWAY),
            Err("token expired")
        );
        assert_eq!(
            codec.verify(&token, "other", "aud", 1, LEEWAY),
            Err("wrong issuer")
        );
        assert_eq!(
            codec.verify(&token, "iss", "other", 1, LEEWAY),
            Err("wrong audience")
        );
    }

    #[test]
    fn s16_iat_and_nbf_beyond_the_leeway_are_refused() {
        let codec = JwtCodec::new(ServerKeys::generate());
        let at = |iat: i64, nbf: Option<i64>| {
            let token = codec.sign(&AccessClaims {
                iat,
                nbf,
                ..claims(10_000)
            });
            codec
                .verify(&token, "iss", "aud", 1_000, LEEWAY)
                .map(|_| ())
        };
        assert_eq!(at(1_060, None), Ok(()), "iat within the leeway");
        assert_eq!(at(1_061, None), Err("token issued in the future"));
        assert_eq!(at(900, Some(1_060)), Ok(()), "nbf within the leeway");
        assert_eq!(at(900, Some(1_061)), Err("token not yet valid"));
    }

    #[test]
    fn flipping_any_signature_byte_is_refused() {
        let codec = JwtCodec::new(ServerKeys::generate());
        let token = codec.sign(&claims(100));
        let (rest, sig) = token.rsplit_once('.').unwrap();
        let mut sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
        sig[10] ^= 1;
        let forged = format!("{rest}.{}", URL_SAFE_NO_PAD.encode(sig));
        assert_eq!(
            codec.verify(&forged, "iss", "aud", 1, LEEWAY),
            Err("bad signature")
        );
    }

    #[test]
    fn every_random_mutation_is_refused_and_nothing_panics() {
        let codec = JwtCodec::new(ServerKeys::generate());
        let token = codec.sign(&claims(100));
        let mut rng = fastrand::Rng::with_seed(7);
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ ";
        // Debug-build Ed25519 is slow: a few hundred mutations suffice.
        for _ in 0..300 {
            let mut bytes = token.clone().into_bytes();
            for _ in 0..rng.usize(1..4) {
                let i = rng.usize(..bytes.len());
                bytes[i] = alphabet[rng.usize(..alphabet.len())];
            }
            let mutated = String::from_utf8(bytes).unwrap();
            if mutated != token {
                assert!(
                    codec.verify(&mutated, "iss", "aud", 1, LEEWAY).is_err(),
                    "{mutated}"
                );
            }
        }
        for _ in 0..2_000 {
            let len = rng.usize(..300);
            let junk: String = (0..len)
                .map(|_| char::from(alphabet[rng.usize(..alphabet.len())]))
                .collect();
            assert!(codec.verify(&junk, "iss", "aud", 1, LEEWAY).is_err());
        }
    }

    #[test]
    fn o8_retired_key_still_verifies_and_stays_in_the_jwks() {
        let before = ServerKeys::generate();
        let old_token = JwtCodec::new(before.clone()).sign(&claims(100));
        let after = before.rotated(0, std::time::Duration::from_secs(3600));
        let codec = JwtCodec::new(after.clone());
        assert_eq!(
            codec
                .verify(&old_token, "iss", "aud", 1, LEEWAY)
                .unwrap()
                .sub,
            "alice"
        );
        let new_token = codec.sign(&claims(100));
        assert!(new_token.starts_with(&codec.encoded_header));
        assert_eq!(
            codec
                .verify(&new_token, "iss", "aud", 1, LEEWAY)
                .unwrap()
                .sub,
            "alice"
        );
        let jwks = codec.jwks();
        let kids: Vec<&str> = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap())
            .collect();
        assert_eq!(kids, [after.kid(), before.kid()]);
        // The server that never had the new key refuses its tokens.
        assert_eq!(
            JwtCodec::new(before).verify(&new_token, "iss", "aud", 1, LEEWAY),
            Err("unknown kid")
        );
    }

    #[test]
    fn another_servers_token_is_unknown_kid() {
        let a = JwtCodec::new(ServerKeys::generate());
        let b = JwtCodec::new(ServerKeys::generate());
        assert_eq!(
            b.verify(&a.sign(&claims(100)), "iss", "aud", 1, LEEWAY),
            Err("unknown kid")
        );
    }
}
