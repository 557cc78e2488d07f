//! argon2id password hashing, bounded (DESIGN.md S12).
//!
//! A hash costs ~19 MiB and tens of milliseconds of one core. [`Hashing`] is
//! a pool of `password_hash_concurrency` threads of its own (default: the
//! number of cores), fed by a queue of at most `password_hash_queue` jobs;
//! a job that finds the queue full is turned away at once with [`Busy`]
//! (`503` + `Retry-After`). Each thread verifies into one argon2 memory
//! buffer it keeps and reuses, so the hashing memory is the pool's size
//! times the memory cost, allocated once — not one fresh 19 MiB allocation
//! per login spread over the blocking pool's threads and malloc arenas,
//! which the allocator keeps long after the flood.

use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, PoisonError};

use argon2::password_hash::{PasswordHash, PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use subtle::ConstantTimeEq;
use tokio::sync::oneshot;

use crate::config::{Limits, PasswordHashing};
use crate::faults::Faults;

/// The hashing queue is full (or the pool is gone); nothing was computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("password hashing is saturated")]
pub(crate) struct Busy;

/// A job: runs on a pool thread with its reusable argon2 memory.
type Job = Box<dyn FnOnce(&mut Vec<Block>) + Send>;

/// The bounded password-hashing pool of one server. The threads stop when
/// it is dropped.
#[derive(Debug)]
pub(crate) struct Hashing {
    cost: PasswordHashing,
    /// Admission: at most `queue` jobs wait.
    jobs: SyncSender<Job>,
    faults: Faults,
}

fn worker(jobs: &Mutex<Receiver<Job>>) {
    let mut memory: Vec<Block> = Vec::new();
    loop {
        // One thread waits in `recv` holding the lock, the others for it.
        let job = jobs.lock().unwrap_or_else(PoisonError::into_inner).recv();
        let Ok(job) = job else { return };
        job(&mut memory);
    }
}

impl Hashing {
    pub(crate) fn new(cost: PasswordHashing, limits: &Limits, faults: Faults) -> Self {
        let (jobs, queue) = sync_channel::<Job>(limits.password_hash_queue);
        let queue = Arc::new(Mutex::new(queue));
        for i in 0..limits.password_hash_concurrency.max(1) {
            let queue = queue.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("reauth-hash-{i}"))
                .spawn(move || worker(&queue));
            if let Err(e) = spawned {
                tracing::error!(error = %e, "could not start a password-hashing thread");
            }
        }
        Self { cost, jobs, faults }
    }

    /// Queues `f`, or [`Busy`] when the queue is full; its result comes back.
    async fn run<R: Send + 'static>(
        &self,
        check: bool,
        f: impl FnOnce(&mut Vec<Block>) -> R + Send + 'static,
    ) -> Result<R, Busy> {
        let (reply, answer) = oneshot::channel();
        let faults = self.faults.clone();
        let job: Job = Box::new(move |memory| {
            if reply.is_closed() {
                return; // The caller went away: spend no CPU for nobody.
            }
            faults.hashing_started(check);
            let result = f(memory);
            faults.hashing_finished();
            let _ = reply.send(result);
        });
        self.jobs.try_send(job).map_err(|e| match e {
            TrySendError::Full(_) | TrySendError::Disconnected(_) => Busy,
        })?;
        answer.await.map_err(|_| Busy)
    }

    /// Whether `password` matches `phc`, or [`Busy`].
    pub(crate) async fn verify(&self, password: String, phc: String) -> Result<bool, Busy> {
        self.run(true, move |memory| verify_with(&password, &phc, memory))
            .await
    }

    /// A new hash of `password` (administration), or [`Busy`].
    pub(crate) async fn hash(&self, password: String) -> Result<String, String> {
        let cost = self.cost;
        self.run(false, move |_| hash(&password, cost))
            .await
            .map_err(|e| e.to_string())?
    }
}

/// Verifies `password` against the PHC string `phc`, computing argon2 in
/// `memory` (grown once to the hash's memory cost, then reused).
fn verify_with(password: &str, phc: &str, memory: &mut Vec<Block>) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(parsed.algorithm) else {
        return false;
    };
    let Ok(version) = parsed
        .version
        .map_or(Ok(Version::default()), Version::try_from)
    else {
        return false;
    };
    let (Ok(params), Some(expected), Some(salt)) =
        (Params::try_from(&parsed), parsed.hash, parsed.salt)
    else {
        return false;
    };
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else {
        return false;
    };
    let blocks = params.block_count();
    if memory.len() < blocks {
        memory.resize(blocks, Block::default());
    }
    let mut out = vec![0u8; expected.len()];
    Argon2::new(algorithm, version, params)
        .hash_password_into_with_memory(password.as_bytes(), salt, &mut out, &mut memory[..blocks])
        .is_ok()
        && bool::from(out.as_slice().ct_eq(expected.as_bytes()))
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

/// Whether `password` matches `phc` (parameters taken from the hash), the
/// argon2 crate's own way (the reference [`verify_with`] is tested against).
#[cfg(test)]
pub(crate) fn verify(password: &str, phc: &str) -> bool {
    use argon2::password_hash::PasswordVerifier as _;
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
    fn s12_verifying_in_reused_memory_agrees_with_argon2() {
        let mut memory = Vec::new();
        for cost in [PasswordHashing::InsecureFast, PasswordHashing::Default] {
            let h = hash("correct horse", cost).unwrap();
            for (password, right) in [("correct horse", true), ("wrong", false), ("", false)] {
                assert_eq!(verify(password, &h), right);
                assert_eq!(verify_with(password, &h, &mut memory), right, "{password}");
            }
        }
        assert!(!verify_with("x", "not a hash", &mut memory));
        assert!(!verify_with(
            "x",
            "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ",
            &mut memory
        ));
    }

    #[test]
    fn hash_verifies_only_the_right_password() {
        let h = hash("correct horse", PasswordHashing::InsecureFast).unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify("correct horse", &h));
        assert!(!verify("wrong", &h));
        assert!(!verify("correct horse", "not a hash"));
    }
}
