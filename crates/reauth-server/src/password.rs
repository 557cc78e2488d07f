//! argon2id password hashing, bounded (DESIGN.md S12).
//!
//! A hash costs ~19 MiB and tens of milliseconds of one core. [`Hashing`]
//! runs at most `password_hash_concurrency` of them at once (default: the
//! number of cores) on blocking threads, lets at most `password_hash_queue`
//! more wait, and turns everyone beyond away at once with [`Busy`] (`503` +
//! `Retry-After`): a flood of logins costs bounded memory and CPU, and the
//! rest of the server keeps its cores.

use std::sync::Arc;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;

use crate::config::{Limits, PasswordHashing};
use crate::faults::Faults;

/// The hashing queue is full; nothing was computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("password hashing is saturated")]
pub(crate) struct Busy;

/// The bounded password-hashing pool of one server.
#[derive(Debug)]
pub(crate) struct Hashing {
    cost: PasswordHashing,
    /// Hashes running.
    running: Arc<Semaphore>,
    /// Hashes running or waiting.
    admitted: Arc<Semaphore>,
    faults: Faults,
}

impl Hashing {
    pub(crate) fn new(cost: PasswordHashing, limits: &Limits, faults: Faults) -> Self {
        let concurrency = limits.password_hash_concurrency.max(1);
        Self {
            cost,
            running: Arc::new(Semaphore::new(concurrency)),
            admitted: Arc::new(Semaphore::new(
                concurrency.saturating_add(limits.password_hash_queue),
            )),
            faults,
        }
    }

    /// Runs `f` on a blocking thread under the concurrency bound; waits for
    /// a slot only if `queue` (else [`Busy`] when the queue is full).
    async fn run<R: Send + 'static>(
        &self,
        queue: bool,
        check: bool,
        f: impl FnOnce() -> R + Send + 'static,
    ) -> Result<R, Busy> {
        let admission = if queue {
            None
        } else {
            Some(
                self.admitted
                    .clone()
                    .try_acquire_owned()
                    .map_err(|_| Busy)?,
            )
        };
        let permit = self
            .running
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Busy)?;
        let faults = self.faults.clone();
        // The permits move into the blocking task: a caller that goes away
        // does not free a slot whose hash is still running.
        tokio::task::spawn_blocking(move || {
            faults.hashing_started(check);
            let result = f();
            faults.hashing_finished();
            drop((permit, admission));
            result
        })
        .await
        .map_err(|_| Busy)
    }

    /// Whether `password` matches `phc`, or [`Busy`].
    pub(crate) async fn verify(&self, password: String, phc: String) -> Result<bool, Busy> {
        self.run(false, true, move || verify(&password, &phc)).await
    }

    /// A new hash of `password`; waits for a slot (administration is not
    /// turned away).
    pub(crate) async fn hash(&self, password: String) -> Result<String, String> {
        let cost = self.cost;
        self.run(true, false, move || hash(&password, cost))
            .await
            .map_err(|e| e.to_string())?
    }
}

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
