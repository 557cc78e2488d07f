//! argon2id password hashing. Both functions are CPU-heavy: call them on a
//! blocking thread.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

use crate::config::PasswordHashing;

fn hasher(cost: PasswordHashing) -> Argon2<'static> {
    let params = match cost {
        PasswordHashing::Default => Params::default(),
        PasswordHashing::InsecureFast => Params::new(8, 1, 1, None).unwrap_or_default(),
    };
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// A PHC-format argon2id hash of `password` with a fresh salt.
pub(crate) fn hash(password: &str, cost: PasswordHashing) -> Result<String, String> {
    let salt =
        SaltString::encode_b64(&crate::keys::random_bytes::<16>()).map_err(|e| e.to_string())?;
    hasher(cost)
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Whether `password` matches `phc` (parameters taken from the hash).
pub(crate) fn verify(password: &str, phc: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok()
}

/// A hash to verify against when the user does not exist, so that unknown and
/// known usernames cost the same time.
pub(crate) fn dummy_hash(cost: PasswordHashing) -> String {
    hash("reauth-dummy-password", cost).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_verifies_only_the_right_password() {
        let h = hash("correct horse", PasswordHashing::InsecureFast).unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify("correct horse", &h));
        assert!(!verify("wrong", &h));
        assert!(!verify("correct horse", "not a hash"));
    }
}
