//! Server key material: the Ed25519 signing key, the refresh-token MAC key and
//! the client-secret pepper, and the key file that persists them.

use std::fmt;
use std::io::Write;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::error::ServerError;

/// The server's secret keys. `Debug` shows only the key id. Cheap to clone.
#[derive(Clone)]
pub struct ServerKeys {
    inner: std::sync::Arc<KeysInner>,
}

struct KeysInner {
    kid: String,
    signing: SigningKey,
    refresh_mac_key: [u8; 32],
    client_pepper: [u8; 32],
}

impl fmt::Debug for ServerKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerKeys")
            .field("kid", &self.inner.kid)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize, Deserialize)]
struct KeyFile {
    version: u32,
    kid: String,
    ed25519_seed: String,
    refresh_mac_key: String,
    client_pepper: String,
}

impl ServerKeys {
    /// Fresh random keys.
    pub fn generate() -> Self {
        let seed: [u8; 32] = random_bytes();
        let signing = SigningKey::from_bytes(&seed);
        let kid = kid_for(&signing.verifying_key());
        Self::from_inner(KeysInner {
            kid,
            signing,
            refresh_mac_key: random_bytes(),
            client_pepper: random_bytes(),
        })
    }

    fn from_inner(inner: KeysInner) -> Self {
        Self {
            inner: std::sync::Arc::new(inner),
        }
    }

    /// Loads keys from `path`, or generates them and writes the file with
    /// mode `0600` when it does not exist.
    ///
    /// # Errors
    ///
    /// [`ServerError::KeyFile`] when the file exists but cannot be read or
    /// parsed, or cannot be created.
    pub fn load_or_create(path: &Path) -> Result<Self, ServerError> {
        match std::fs::read(path) {
            Ok(bytes) => Self::from_json(&bytes).map_err(|reason| ServerError::KeyFile {
                path: path.to_owned(),
                reason,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let keys = Self::generate();
                keys.write_new(path).map_err(|e| ServerError::KeyFile {
                    path: path.to_owned(),
                    reason: e.to_string(),
                })?;
                Ok(keys)
            }
            Err(e) => Err(ServerError::KeyFile {
                path: path.to_owned(),
                reason: e.to_string(),
            }),
        }
    }

    fn write_new(&self, path: &Path) -> std::io::Result<()> {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(path)?;
        file.write_all(&self.to_json())?;
        file.sync_all()
    }

    fn to_json(&self) -> Vec<u8> {
        let file = KeyFile {
            version: 1,
            kid: self.inner.kid.clone(),
            ed25519_seed: URL_SAFE_NO_PAD.encode(self.inner.signing.to_bytes()),
            refresh_mac_key: URL_SAFE_NO_PAD.encode(self.inner.refresh_mac_key),
            client_pepper: URL_SAFE_NO_PAD.encode(self.inner.client_pepper),
        };
        let mut out = serde_json::to_vec_pretty(&file).unwrap_or_default();
        out.push(b'\n');
        out
    }

    fn from_json(bytes: &[u8]) -> Result<Self, String> {
        let file: KeyFile =
            serde_json::from_slice(bytes).map_err(|e| format!("not a reauth key file: {e}"))?;
        if file.version != 1 {
            return Err(format!("unsupported key file version {}", file.version));
        }
        let seed = decode32(&file.ed25519_seed, "ed25519_seed")?;
        let signing = SigningKey::from_bytes(&seed);
        Ok(Self::from_inner(KeysInner {
            kid: file.kid,
            signing,
            refresh_mac_key: decode32(&file.refresh_mac_key, "refresh_mac_key")?,
            client_pepper: decode32(&file.client_pepper, "client_pepper")?,
        }))
    }

    /// The key id (`kid`) of the signing key.
    pub fn kid(&self) -> &str {
        &self.inner.kid
    }

    /// The public half of the signing key.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.inner.signing.verifying_key()
    }

    pub(crate) fn signing_key(&self) -> &SigningKey {
        &self.inner.signing
    }

    pub(crate) fn refresh_mac_key(&self) -> &[u8; 32] {
        &self.inner.refresh_mac_key
    }

    pub(crate) fn client_pepper(&self) -> &[u8; 32] {
        &self.inner.client_pepper
    }
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
    use super::*;

    #[test]
    fn key_file_round_trips_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        let created = ServerKeys::load_or_create(&path).unwrap();
        let loaded = ServerKeys::load_or_create(&path).unwrap();
        assert_eq!(created.kid(), loaded.kid());
        assert_eq!(
            created.inner.signing.to_bytes(),
            loaded.inner.signing.to_bytes()
        );
        assert_eq!(created.inner.refresh_mac_key, loaded.inner.refresh_mac_key);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let debug = format!("{created:?}");
        assert!(!debug.contains(&URL_SAFE_NO_PAD.encode(created.inner.refresh_mac_key)));
        assert!(!debug.contains(&URL_SAFE_NO_PAD.encode(created.inner.signing.to_bytes())));
    }

    #[test]
    fn unreadable_key_file_is_a_typed_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        std::fs::write(&path, b"garbage").unwrap();
        let err = ServerKeys::load_or_create(&path).unwrap_err();
        assert!(matches!(err, ServerError::KeyFile { .. }), "{err}");
    }
}
