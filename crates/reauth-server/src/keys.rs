//! Server key material — the Ed25519 signing keys, the refresh-token MAC key
//! and the client-secret pepper — and the key file that persists them.
//!
//! # Signing keys and rotation
//!
//! A key file holds one *active* signing key (it signs new access tokens),
//! at most one *staged* key (it verifies and is in the JWKS, but signs
//! nothing yet) and any number of *retired* ones (they still verify, and
//! stay in the JWKS). [`ServerKeys::rotated`] makes the staged key (or, with
//! none staged, a fresh one) active and retires the previous one, so tokens
//! signed before a rotation keep verifying until they expire: nobody is
//! logged out. Retired keys are dropped once they have been retired longer
//! than the retention the operator picks (at least the access-token
//! lifetime).
//!
//! With several replicas, rotate in two phases, so that no replica ever
//! meets a token signed by a key it does not know:
//! 1. [`ServerKeys::staged`] (`reauth keys stage`): copy the file to every
//!    replica and restart them. Each now publishes and verifies the new key;
//!    all still sign with the old one. Wait until JWKS caches of resource
//!    servers have expired.
//! 2. [`ServerKeys::rotated`] (`reauth keys rotate`): copy and restart
//!    again. Replicas sign with the new key, which every replica already
//!    verifies; the old one is retired and verifies until it is dropped.
//!
//! The refresh-token MAC key and the client pepper never rotate: refresh
//! tokens and client secrets depend on them. Their [fingerprint](ServerKeys::fingerprint)
//! is what a database remembers, so a replica started with a different key
//! file is refused instead of silently re-keying the database.
//!
//! # The file
//!
//! JSON, mode `0600`; a key file that group or others may access is refused
//! with [`ServerError::KeyFile`] (it would let them mint tokens). A new file is written to a temporary file in the same
//! directory (`0600`, fsync) and then linked into place without replacing
//! anything, so a failure never leaves an empty or partial key file and two
//! replicas creating the file at once end up with one set of keys. A
//! rotation replaces the file atomically (temporary file, fsync, rename,
//! directory fsync).

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{SigningKey, VerifyingKey};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::error::ServerError;

/// The server's secret keys. `Debug` shows only the key ids. Cheap to clone.
#[derive(Clone)]
pub struct ServerKeys {
    inner: std::sync::Arc<KeysInner>,
}

struct KeysInner {
    /// The active key first, then retired ones (most recently retired first).
    signing: Vec<SigningEntry>,
    refresh_mac_key: [u8; 32],
    client_pepper: [u8; 32],
}

#[derive(Clone)]
struct SigningEntry {
    kid: String,
    key: SigningKey,
    /// Unix seconds; 0 when unknown (keys from a version 1 file).
    created_at: i64,
    /// Unix seconds since which the key no longer signs.
    retired_at: Option<i64>,
    /// Verifies and is published, but signs nothing until a rotation.
    staged: bool,
}

impl fmt::Debug for ServerKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerKeys")
            .field("kid", &self.kid())
            .field("retired", &self.retired_kids().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// A signing key as listed (no secret).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SigningKeyInfo {
    /// The `kid`.
    pub kid: String,
    /// Unix seconds (0 when unknown).
    pub created_at: i64,
    /// Unix seconds since which it no longer signs; `None` for the active
    /// and the staged key.
    pub retired_at: Option<i64>,
    /// Staged: published and verifying, and the next to sign.
    pub staged: bool,
}

#[derive(Serialize, Deserialize)]
struct KeyFileV1 {
    version: u32,
    kid: String,
    ed25519_seed: String,
    refresh_mac_key: String,
    client_pepper: String,
}

#[derive(Serialize, Deserialize)]
struct KeyFileV2 {
    version: u32,
    refresh_mac_key: String,
    client_pepper: String,
    /// Active first.
    signing_keys: Vec<SigningKeyFile>,
}

#[derive(Serialize, Deserialize)]
struct SigningKeyFile {
    kid: String,
    ed25519_seed: String,
    #[serde(default)]
    created_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    retired_at: Option<i64>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    staged: bool,
}

#[derive(Deserialize)]
struct Version {
    version: u32,
}

impl ServerKeys {
    /// Fresh random keys.
    pub fn generate() -> Self {
        Self::from_inner(KeysInner {
            signing: vec![new_signing_entry(now_secs())],
            refresh_mac_key: random_bytes(),
            client_pepper: random_bytes(),
        })
    }

    fn from_inner(inner: KeysInner) -> Self {
        Self {
            inner: std::sync::Arc::new(inner),
        }
    }

    /// Loads keys from `path`, or generates them and creates the file
    /// (atomically, mode `0600`) when it does not exist. If another process
    /// creates the file at the same moment, its keys are loaded instead.
    ///
    /// # Errors
    ///
    /// [`ServerError::KeyFile`] when the file exists but cannot be read or
    /// parsed, or cannot be created.
    pub fn load_or_create(path: &Path) -> Result<Self, ServerError> {
        Self::load_or_create_reporting(path).map(|(keys, _)| keys)
    }

    /// [`load_or_create`](Self::load_or_create), and whether this call
    /// created the file.
    pub(crate) fn load_or_create_reporting(path: &Path) -> Result<(Self, bool), ServerError> {
        match Self::load_if_exists(path)? {
            Some(keys) => Ok((keys, false)),
            None => {
                let keys = Self::generate();
                match keys.create_file(path) {
                    Ok(true) => Ok((keys, true)),
                    // Someone else created it first: theirs wins.
                    Ok(false) => Self::load(path).map(|keys| (keys, false)),
                    Err(e) => Err(key_file_error(path, e.to_string())),
                }
            }
        }
    }

    /// Loads keys from an existing key file.
    ///
    /// # Errors
    ///
    /// [`ServerError::KeyFile`] when it cannot be read or parsed.
    pub fn load(path: &Path) -> Result<Self, ServerError> {
        Self::load_if_exists(path)?.ok_or_else(|| key_file_error(path, "no such file".to_owned()))
    }

    /// `None` when the file does not exist. A file that group or others may
    /// read or write is refused: whoever reads it can mint refresh tokens
    /// and access tokens for anyone.
    fn load_if_exists(path: &Path) -> Result<Option<Self>, ServerError> {
        match std::fs::metadata(path) {
            Ok(meta) => check_private(&meta).map_err(|reason| key_file_error(path, reason))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(key_file_error(path, e.to_string())),
        }
        match std::fs::read(path) {
            Ok(bytes) => Self::from_json(&bytes)
                .map(Some)
                .map_err(|reason| key_file_error(path, reason)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(key_file_error(path, e.to_string())),
        }
    }

    /// Writes the keys to a new file at `path` without ever replacing one:
    /// `Ok(false)` if `path` already exists. A failure leaves no file behind.
    ///
    /// # Errors
    ///
    /// Any I/O error.
    pub fn create_file(&self, path: &Path) -> std::io::Result<bool> {
        let temp = TempFile::write(path, &self.to_json())?;
        // `hard_link` fails if `path` exists: no clobbering, no partial file.
        match std::fs::hard_link(&temp.path, path) {
            Ok(()) => {
                sync_parent(path)?;
                Ok(true)
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Replaces the key file at `path` atomically with these keys (temporary
    /// file, fsync, rename, directory fsync).
    ///
    /// # Errors
    ///
    /// [`ServerError::KeyFile`] when it cannot be written.
    pub fn replace_file(&self, path: &Path) -> Result<(), ServerError> {
        let write = || -> std::io::Result<()> {
            let mut temp = TempFile::write(path, &self.to_json())?;
            std::fs::rename(&temp.path, path)?;
            temp.renamed = true;
            sync_parent(path)
        };
        write().map_err(|e| key_file_error(path, e.to_string()))
    }

    /// These keys with a fresh active signing key; the active one is retired
    /// (still verifying, still in the JWKS), and keys retired longer than
    /// `keep_retired` before `now` (Unix seconds) are dropped. The MAC key
    /// and the pepper are kept.
    ///
    /// A staged key (see [`staged`](Self::staged)) becomes the active one;
    /// with none staged, a fresh key does — fine for one server, but
    /// replicas that have not loaded the new file yet refuse its tokens.
    pub fn rotated(&self, now: i64, keep_retired: std::time::Duration) -> Self {
        let keep = i64::try_from(keep_retired.as_secs()).unwrap_or(i64::MAX);
        let next = match self.inner.signing.iter().find(|e| e.staged) {
            Some(staged) => SigningEntry {
                staged: false,
                ..staged.clone()
            },
            None => new_signing_entry(now),
        };
        let mut signing = vec![next];
        for entry in self.inner.signing.iter().filter(|e| !e.staged) {
            let mut entry = entry.clone();
            let retired_at = *entry.retired_at.get_or_insert(now);
            if now.saturating_sub(retired_at) <= keep {
                signing.push(entry);
            }
        }
        Self::from_inner(KeysInner {
            signing,
            refresh_mac_key: self.inner.refresh_mac_key,
            client_pepper: self.inner.client_pepper,
        })
    }

    /// These keys with a fresh *staged* signing key (phase 1 of a rotation
    /// across replicas, see the module docs): it is published in the JWKS
    /// and verifies, but the active key keeps signing until
    /// [`rotated`](Self::rotated). Unchanged if a key is staged already.
    pub fn staged(&self, now: i64) -> Self {
        if self.staged_kid().is_some() {
            return self.clone();
        }
        let mut signing = self.inner.signing.clone();
        let mut next = new_signing_entry(now);
        next.staged = true;
        signing.insert(1, next);
        Self::from_inner(KeysInner {
            signing,
            refresh_mac_key: self.inner.refresh_mac_key,
            client_pepper: self.inner.client_pepper,
        })
    }

    /// The `kid` of the staged key, if one is.
    pub fn staged_kid(&self) -> Option<&str> {
        self.inner
            .signing
            .iter()
            .find(|e| e.staged)
            .map(|e| e.kid.as_str())
    }

    fn to_json(&self) -> Vec<u8> {
        let file = KeyFileV2 {
            version: 2,
            refresh_mac_key: URL_SAFE_NO_PAD.encode(self.inner.refresh_mac_key),
            client_pepper: URL_SAFE_NO_PAD.encode(self.inner.client_pepper),
            signing_keys: self
                .inner
                .signing
                .iter()
                .map(|e| SigningKeyFile {
                    kid: e.kid.clone(),
                    ed25519_seed: URL_SAFE_NO_PAD.encode(e.key.to_bytes()),
                    created_at: e.created_at,
                    retired_at: e.retired_at,
                    staged: e.staged,
                })
                .collect(),
        };
        let mut out = serde_json::to_vec_pretty(&file).unwrap_or_default();
        out.push(b'\n');
        out
    }

    fn from_json(bytes: &[u8]) -> Result<Self, String> {
        let not_ours = |e: serde_json::Error| format!("not a reauth key file: {e}");
        let Version { version } = serde_json::from_slice(bytes).map_err(not_ours)?;
        match version {
            1 => {
                let file: KeyFileV1 = serde_json::from_slice(bytes).map_err(not_ours)?;
                Ok(Self::from_inner(KeysInner {
                    signing: vec![signing_entry(
                        &file.kid,
                        &file.ed25519_seed,
                        0,
                        None,
                        false,
                    )?],
                    refresh_mac_key: decode32(&file.refresh_mac_key, "refresh_mac_key")?,
                    client_pepper: decode32(&file.client_pepper, "client_pepper")?,
                }))
            }
            2 => {
                let file: KeyFileV2 = serde_json::from_slice(bytes).map_err(not_ours)?;
                let signing = file
                    .signing_keys
                    .iter()
                    .map(|k| {
                        signing_entry(
                            &k.kid,
                            &k.ed25519_seed,
                            k.created_at,
                            k.retired_at,
                            k.staged,
                        )
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                match signing.first() {
                    None => return Err("no signing key".to_owned()),
                    Some(active) if active.retired_at.is_some() || active.staged => {
                        return Err("the first signing key must be the active one".to_owned());
                    }
                    Some(_) => {}
                }
                if signing
                    .iter()
                    .skip(1)
                    .any(|k| k.retired_at.is_none() && !k.staged)
                {
                    return Err("only the first signing key may be active".to_owned());
                }
                if signing.iter().any(|k| k.staged && k.retired_at.is_some()) {
                    return Err("a staged signing key cannot be retired".to_owned());
                }
                if signing.iter().filter(|k| k.staged).count() > 1 {
                    return Err("at most one signing key may be staged".to_owned());
                }
                Ok(Self::from_inner(KeysInner {
                    signing,
                    refresh_mac_key: decode32(&file.refresh_mac_key, "refresh_mac_key")?,
                    client_pepper: decode32(&file.client_pepper, "client_pepper")?,
                }))
            }
            other => Err(format!("unsupported key file version {other}")),
        }
    }

    /// The key id (`kid`) of the active signing key.
    pub fn kid(&self) -> &str {
        &self.active().kid
    }

    /// Every signing key, active first (no secrets).
    pub fn signing_keys(&self) -> Vec<SigningKeyInfo> {
        self.inner
            .signing
            .iter()
            .map(|e| SigningKeyInfo {
                kid: e.kid.clone(),
                created_at: e.created_at,
                retired_at: e.retired_at,
                staged: e.staged,
            })
            .collect()
    }

    fn retired_kids(&self) -> impl Iterator<Item = &str> {
        self.inner.signing.iter().skip(1).map(|e| e.kid.as_str())
    }

    /// Every key that verifies: `(kid, public key)`, active first.
    pub(crate) fn verifying_keys(&self) -> impl Iterator<Item = (&str, VerifyingKey)> {
        self.inner
            .signing
            .iter()
            .map(|e| (e.kid.as_str(), e.key.verifying_key()))
    }

    /// A fingerprint of the long-lived secrets (refresh MAC key and client
    /// pepper), safe to store and show: a keyed hash that reveals nothing
    /// about them. Signing keys do not enter it (they rotate).
    pub fn fingerprint(&self) -> String {
        #[allow(clippy::expect_used)]
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.inner.refresh_mac_key)
            .expect("HMAC takes any key length");
        mac.update(b"reauth/key-fingerprint/v1");
        mac.update(&self.inner.client_pepper);
        crate::util::hex(&mac.finalize().into_bytes()[..16])
    }

    fn active(&self) -> &SigningEntry {
        // Construction guarantees at least one (the active) signing key.
        &self.inner.signing[0]
    }

    pub(crate) fn signing_key(&self) -> &SigningKey {
        &self.active().key
    }

    pub(crate) fn refresh_mac_key(&self) -> &[u8; 32] {
        &self.inner.refresh_mac_key
    }

    pub(crate) fn client_pepper(&self) -> &[u8; 32] {
        &self.inner.client_pepper
    }
}

/// A key file is readable and writable by its owner only (Unix).
fn check_private(meta: &std::fs::Metadata) -> Result<(), String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(format!(
                "group or others may access it (mode {mode:04o}); it holds the server's secret keys: run `chmod 600` on it"
            ));
        }
    }
    #[cfg(not(unix))]
    let _ = meta;
    Ok(())
}

fn key_file_error(path: &Path, reason: String) -> ServerError {
    ServerError::KeyFile {
        path: path.to_owned(),
        reason,
    }
}

fn new_signing_entry(now: i64) -> SigningEntry {
    let key = SigningKey::from_bytes(&random_bytes());
    SigningEntry {
        kid: kid_for(&key.verifying_key()),
        key,
        created_at: now,
        retired_at: None,
        staged: false,
    }
}

fn signing_entry(
    kid: &str,
    seed: &str,
    created_at: i64,
    retired_at: Option<i64>,
    staged: bool,
) -> Result<SigningEntry, String> {
    let key = SigningKey::from_bytes(&decode32(seed, "ed25519_seed")?);
    if kid.is_empty() || kid.len() > 128 {
        return Err("a kid must be 1 to 128 characters".to_owned());
    }
    Ok(SigningEntry {
        kid: kid.to_owned(),
        key,
        created_at,
        retired_at,
        staged,
    })
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// A temporary file next to the key file (mode `0600`, written and fsynced),
/// removed on drop unless it was renamed into place.
struct TempFile {
    path: PathBuf,
    renamed: bool,
}

impl TempFile {
    fn write(target: &Path, contents: &[u8]) -> std::io::Result<Self> {
        let name = target
            .file_name()
            .ok_or_else(|| std::io::Error::other("the key file path names no file"))?;
        let suffix = crate::util::hex(&random_bytes::<8>());
        let mut temp_name = std::ffi::OsString::from(".");
        temp_name.push(name);
        temp_name.push(format!(".{suffix}.tmp"));
        let path = target.with_file_name(temp_name);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&path)?;
        let temp = Self {
            path,
            renamed: false,
        };
        file.write_all(contents)?;
        file.sync_all()?;
        Ok(temp)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.renamed {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Makes a new directory entry durable.
fn sync_parent(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        std::fs::File::open(parent)?.sync_all()?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

fn decode32(value: &str, field: &str) -> Result<[u8; 32], String> {
    let bytes = URL_SAFE_NO_PAD
        .decode(value)
        .map_err(|_| format!("{field} is not base64url"))?;
    bytes
        .try_into()
        .map_err(|_| format!("{field} must be 32 bytes"))
}

/// A short key id derived from the public key.
fn kid_for(key: &VerifyingKey) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(key.as_bytes());
    URL_SAFE_NO_PAD.encode(&digest[..12])
}

/// `N` bytes from the operating system's CSPRNG.
pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    // The OS RNG failing is not recoverable; no key may be made without it.
    #[allow(clippy::expect_used)]
    getrandom::getrandom(&mut out).expect("operating system random number generator failed");
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn mode(path: &Path) -> u32 {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(path).unwrap().permissions().mode() & 0o777
        }
        #[cfg(not(unix))]
        0o600
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn key_file_round_trips_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        let created = ServerKeys::load_or_create(&path).unwrap();
        let loaded = ServerKeys::load_or_create(&path).unwrap();
        assert_eq!(created.kid(), loaded.kid());
        assert_eq!(
            created.signing_key().to_bytes(),
            loaded.signing_key().to_bytes()
        );
        assert_eq!(created.inner.refresh_mac_key, loaded.inner.refresh_mac_key);
        assert_eq!(created.fingerprint(), loaded.fingerprint());
        assert_eq!(mode(&path), 0o600);
        // No temporary file is left behind.
        assert_eq!(entries(dir.path()), ["keys.json"]);
        let debug = format!("{created:?}");
        assert!(!debug.contains(&URL_SAFE_NO_PAD.encode(created.inner.refresh_mac_key)));
        assert!(!debug.contains(&URL_SAFE_NO_PAD.encode(created.signing_key().to_bytes())));
    }

    #[cfg(unix)]
    #[test]
    fn o8_a_key_file_others_may_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        let keys = ServerKeys::load_or_create(&path).unwrap();
        for loose in [0o644, 0o640, 0o604, 0o660, 0o606] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(loose)).unwrap();
            for result in [ServerKeys::load(&path), ServerKeys::load_or_create(&path)] {
                match result {
                    Err(ServerError::KeyFile { reason, .. }) => {
                        assert!(reason.contains("chmod 600"), "{reason}")
                    }
                    other => panic!("mode {loose:o}: {other:?}"),
                }
            }
        }
        for tight in [0o600, 0o400] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(tight)).unwrap();
            assert_eq!(ServerKeys::load(&path).unwrap().kid(), keys.kid());
        }
    }

    #[test]
    fn unreadable_key_file_is_a_typed_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        std::fs::write(&path, b"garbage").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let err = ServerKeys::load_or_create(&path).unwrap_err();
        assert!(matches!(err, ServerError::KeyFile { .. }), "{err}");
    }

    #[test]
    fn o8_failed_creation_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        // The directory does not exist: creation fails, nothing is left.
        let path = dir.path().join("missing").join("keys.json");
        assert!(ServerKeys::load_or_create(&path).is_err());
        assert_eq!(entries(dir.path()), Vec::<String>::new());
        // A read-only directory (unless root, who may write anyway).
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let ro = dir.path().join("ro");
            std::fs::create_dir(&ro).unwrap();
            std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o500)).unwrap();
            let path = ro.join("keys.json");
            if ServerKeys::load_or_create(&path).is_err() {
                assert_eq!(entries(&ro), Vec::<String>::new());
            }
            std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o700)).unwrap();
        }
    }

    #[test]
    fn o8_concurrent_creation_ends_with_one_set_of_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let path = path.clone();
                std::thread::spawn(move || ServerKeys::load_or_create(&path).unwrap())
            })
            .collect();
        let fingerprints: std::collections::HashSet<String> = handles
            .into_iter()
            .map(|h| h.join().unwrap().fingerprint())
            .collect();
        assert_eq!(fingerprints.len(), 1, "every creator uses the same keys");
        assert_eq!(entries(dir.path()), ["keys.json"]);
        assert_eq!(
            ServerKeys::load(&path).unwrap().fingerprint(),
            *fingerprints.iter().next().unwrap()
        );
    }

    #[test]
    fn o8_rotation_keeps_the_old_key_verifying_then_drops_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        let first = ServerKeys::load_or_create(&path).unwrap();
        let day = Duration::from_secs(86_400);
        let second = first.rotated(1_000_000, day);
        assert_ne!(second.kid(), first.kid());
        assert_eq!(
            second.fingerprint(),
            first.fingerprint(),
            "MAC key and pepper kept"
        );
        let kids: Vec<&str> = second.verifying_keys().map(|(k, _)| k).collect();
        assert_eq!(kids, [second.kid(), first.kid()]);
        second.replace_file(&path).unwrap();
        assert_eq!(mode(&path), 0o600);
        assert_eq!(entries(dir.path()), ["keys.json"]);
        let reloaded = ServerKeys::load(&path).unwrap();
        assert_eq!(reloaded.kid(), second.kid());
        assert_eq!(reloaded.signing_keys()[1].kid, first.kid());
        assert_eq!(reloaded.signing_keys()[1].retired_at, Some(1_000_000));
        // A day later the first key is still kept; past the retention it goes.
        let third = reloaded.rotated(1_000_000 + 86_400, day);
        assert_eq!(third.verifying_keys().count(), 3);
        let fourth = third.rotated(1_000_000 + 86_401, day);
        let kids: Vec<&str> = fourth.verifying_keys().map(|(k, _)| k).collect();
        assert_eq!(kids.len(), 3);
        assert!(!kids.contains(&first.kid()));
    }

    /// Two-phase rotation across replicas: a staged key is published and
    /// verifies on every replica before any replica signs with it.
    #[test]
    fn o8_a_staged_key_verifies_before_it_signs_then_rotation_activates_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        let first = ServerKeys::load_or_create(&path).unwrap();
        let day = Duration::from_secs(86_400);
        // Phase 1: staged — verifies and is listed, but does not sign.
        let staged = first.staged(1_000);
        let next = staged.staged_kid().expect("a staged key").to_owned();
        assert_eq!(staged.kid(), first.kid(), "the old key still signs");
        assert_eq!(
            staged.signing_key().to_bytes(),
            first.signing_key().to_bytes()
        );
        let kids: Vec<&str> = staged.verifying_keys().map(|(k, _)| k).collect();
        assert_eq!(kids, [first.kid(), next.as_str()]);
        assert_eq!(staged.staged(2_000).staged_kid(), Some(next.as_str()));
        staged.replace_file(&path).unwrap();
        let reloaded = ServerKeys::load(&path).unwrap();
        assert_eq!(reloaded.staged_kid(), Some(next.as_str()));
        assert!(reloaded.signing_keys()[1].staged);
        // Phase 2: the staged key — not a fresh one — becomes active.
        let rotated = reloaded.rotated(3_000, day);
        assert_eq!(rotated.kid(), next);
        assert_eq!(rotated.staged_kid(), None);
        let kids: Vec<&str> = rotated.verifying_keys().map(|(k, _)| k).collect();
        assert_eq!(kids, [next.as_str(), first.kid()]);
        assert_eq!(rotated.signing_keys()[1].retired_at, Some(3_000));
        rotated.replace_file(&path).unwrap();
        assert_eq!(ServerKeys::load(&path).unwrap().kid(), next);
        // A file with a staged key first, or two staged keys, is refused.
        let mut file: serde_json::Value = serde_json::from_slice(&staged.to_json()).unwrap();
        file["signing_keys"][0]["staged"] = true.into();
        assert!(ServerKeys::from_json(file.to_string().as_bytes()).is_err());
        file["signing_keys"][0]["staged"] = false.into();
        let extra = file["signing_keys"][1].clone();
        file["signing_keys"].as_array_mut().unwrap().push(extra);
        assert!(ServerKeys::from_json(file.to_string().as_bytes()).is_err());
    }

    #[test]
    fn version_1_key_files_still_load() {
        let v1 = serde_json::json!({
            "version": 1,
            "kid": "old-kid",
            "ed25519_seed": URL_SAFE_NO_PAD.encode([7u8; 32]),
            "refresh_mac_key": URL_SAFE_NO_PAD.encode([8u8; 32]),
            "client_pepper": URL_SAFE_NO_PAD.encode([9u8; 32]),
        });
        let keys = ServerKeys::from_json(v1.to_string().as_bytes()).unwrap();
        assert_eq!(keys.kid(), "old-kid");
        assert_eq!(keys.refresh_mac_key(), &[8u8; 32]);
    }
}
