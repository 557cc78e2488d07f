//! Refresh tokens derived from (family, generation) under the server's MAC key.
//!
//! `rt1_` + base64url(family id (16 bytes) ‖ generation (u64 BE) ‖
//! HMAC-SHA256(key, "reauth/refresh/v1" ‖ family id ‖ generation)).
//!
//! Nothing secret is stored: the database holds the family id and its current
//! generation, and the token for any generation can be recomputed (that is how
//! a grace replay returns the byte-identical successor) but never forged.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

const PREFIX: &str = "rt1_";
const DOMAIN: &[u8] = b"reauth/refresh/v1";
const RAW_LEN: usize = 16 + 8 + 32;

/// A session family id: 16 random bytes, shown as 32 lowercase hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct FamilyId(pub(crate) [u8; 16]);

impl FamilyId {
    pub(crate) fn random() -> Self {
        Self(crate::keys::random_bytes())
    }

    pub(crate) fn to_hex(self) -> String {
        crate::util::hex(&self.0)
    }

    /// Parses 32 lowercase hex digits.
    pub(crate) fn from_hex(hex: &str) -> Option<Self> {
        if hex.len() != 32 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return None;
        }
        let mut out = [0u8; 16];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(Self(out))
    }
}

/// A verified refresh token: which family, which generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RefreshClaims {
    pub(crate) family: FamilyId,
    pub(crate) generation: i64,
}

fn mac(key: &[u8; 32], family: &FamilyId, generation: i64) -> Hmac<Sha256> {
    #[allow(clippy::expect_used)]
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(DOMAIN);
    mac.update(&family.0);
    mac.update(&generation.to_be_bytes());
    mac
}

/// The refresh token of `generation` of `family`.
pub(crate) fn derive(key: &[u8; 32], family: &FamilyId, generation: i64) -> String {
    let tag = mac(key, family, generation).finalize().into_bytes();
    let mut raw = [0u8; RAW_LEN];
    raw[..16].copy_from_slice(&family.0);
    raw[16..24].copy_from_slice(&generation.to_be_bytes());
    raw[24..].copy_from_slice(&tag);
    let mut out = String::with_capacity(PREFIX.len() + 75);
    out.push_str(PREFIX);
    URL_SAFE_NO_PAD.encode_string(raw, &mut out);
    out
}

/// Checks a presented refresh token (constant-time MAC compare).
pub(crate) fn verify(key: &[u8; 32], token: &str) -> Option<RefreshClaims> {
    let body = token.strip_prefix(PREFIX)?;
    if body.len() > 100 {
        return None;
    }
    let raw = URL_SAFE_NO_PAD.decode(body).ok()?;
    if raw.len() != RAW_LEN {
        return None;
    }
    let family = FamilyId(raw[..16].try_into().ok()?);
    let generation = i64::from_be_bytes(raw[16..24].try_into().ok()?);
    mac(key, &family, generation)
        .verify_slice(&raw[24..])
        .ok()?;
    Some(RefreshClaims { family, generation })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derive_is_deterministic_and_verifies() {
        let key = [7u8; 32];
        let family = FamilyId([1u8; 16]);
        let a = derive(&key, &family, 5);
        assert_eq!(a, derive(&key, &family, 5));
        assert_ne!(a, derive(&key, &family, 6));
        assert_eq!(
            verify(&key, &a),
            Some(RefreshClaims {
                family,
                generation: 5
            })
        );
        assert_eq!(verify(&[8u8; 32], &a), None);
    }

    #[test]
    fn random_mutations_are_refused() {
        let key = [9u8; 32];
        let token = derive(&key, &FamilyId([2u8; 16]), 41);
        let mut rng = fastrand::Rng::with_seed(11);
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        for _ in 0..2_000 {
            let mut bytes = token.clone().into_bytes();
            let i = rng.usize(PREFIX.len()..bytes.len());
            bytes[i] = alphabet[rng.usize(..alphabet.len())];
            let mutated = String::from_utf8(bytes).unwrap();
            if mutated != token {
                assert_eq!(verify(&key, &mutated), None, "{mutated}");
            }
        }
    }

    #[test]
    fn tampered_generation_is_refused() {
        let key = [7u8; 32];
        let token = derive(&key, &FamilyId([1u8; 16]), 5);
        let mut raw = URL_SAFE_NO_PAD.decode(&token[PREFIX.len()..]).unwrap();
        raw[23] = 6;
        let forged = format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(raw));
        assert_eq!(verify(&key, &forged), None);
        assert_eq!(verify(&key, "rt1_"), None);
        assert_eq!(verify(&key, "garbage"), None);
    }
}
