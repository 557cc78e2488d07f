use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use async_trait::async_trait;

use crate::error::StoreError;
use crate::store::TokenStore;
use crate::token::TokenSet;

/// A [`TokenStore`] in a JSON file, written atomically and readable only by its owner.
///
/// Each write goes to a temporary file in the same directory (created with mode
/// `0600` on Unix), is flushed to disk with `fsync`, and is renamed over the
/// target; the directory is synced too. A crash at any point leaves either the
/// old file or the new one. Unreadable contents are reported as
/// [`StoreError::Corrupt`] and never overwritten by a load.
///
/// I/O is blocking and short (one small file); it runs on the refresh task.
///
/// ```
/// # futures::executor::block_on(async {
/// use reauth::{FileStore, TokenSet, TokenStore};
/// let dir = tempfile::tempdir().unwrap();
/// let store = FileStore::new(dir.path().join("tokens.json"));
/// store.store(&TokenSet::new("a").with_refresh_token("r")).await.unwrap();
/// let loaded = store.load().await.unwrap().unwrap();
/// assert_eq!(loaded.access_token.secret(), "a");
/// # });
/// ```
#[derive(Clone, Debug)]
pub struct FileStore {
    path: PathBuf,
}

impl FileStore {
    /// A store at `path`. Nothing is touched until the first operation.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn dir(&self) -> &Path {
        match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        }
    }

    fn temp_path(&self) -> PathBuf {
        let name = self.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        self.dir().join(format!(".{name}.{}.{:016x}.tmp", std::process::id(), fastrand::u64(..)))
    }

    pub(crate) fn read_sync(&self) -> Result<Option<TokenSet>, StoreError> {
        let bytes = match fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        serde_json::from_slice(&bytes).map(Some).map_err(|e| StoreError::Corrupt(Box::new(e)))
    }

    pub(crate) fn write_sync(&self, tokens: &TokenSet) -> Result<(), StoreError> {
        let json = serde_json::to_vec(tokens).map_err(|e| StoreError::Backend(Box::new(e)))?;
        let tmp = self.temp_path();
        let result = (|| -> io::Result<()> {
            let mut file = open_private(&tmp)?;
            file.write_all(&json)?;
            file.sync_all()?;
            drop(file);
            fs::rename(&tmp, &self.path)?;
            sync_dir(self.dir())
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        Ok(result?)
    }

    pub(crate) fn clear_sync(&self) -> Result<(), StoreError> {
        match fs::remove_file(&self.path) {
            Ok(()) => Ok(sync_dir(self.dir())?),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(unix)]
fn open_private(path: &Path) -> io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)
}

#[cfg(not(unix))]
fn open_private(path: &Path) -> io::Result<fs::File> {
    fs::OpenOptions::new().write(true).create_new(true).open(path)
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

#[async_trait]
impl TokenStore for FileStore {
    async fn load(&self) -> Result<Option<TokenSet>, StoreError> {
        self.read_sync()
    }

    async fn store(&self, tokens: &TokenSet) -> Result<(), StoreError> {
        self.write_sync(tokens)
    }

    async fn clear(&self) -> Result<(), StoreError> {
        self.clear_sync()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::Generation;

    #[test]
    fn file_store_round_trips_with_generation() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path().join("t.json"));
        assert!(store.read_sync().unwrap().is_none());
        let t = TokenSet::new("a").with_refresh_token("r").with_generation(Generation::new(4));
        store.write_sync(&t).unwrap();
        assert_eq!(store.read_sync().unwrap(), Some(t));
        store.clear_sync().unwrap();
        assert!(store.read_sync().unwrap().is_none());
        store.clear_sync().unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn file_store_is_private_and_leaves_no_temp_files() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path().join("t.json"));
        store.write_sync(&TokenSet::new("a")).unwrap();
        store.write_sync(&TokenSet::new("b")).unwrap();
        let mode = fs::metadata(store.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let entries: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(entries.len(), 1, "temporary files left behind");
    }

    #[test]
    fn corrupt_file_is_reported_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.json");
        fs::write(&path, b"{not json").unwrap();
        let store = FileStore::new(&path);
        assert!(matches!(store.read_sync(), Err(StoreError::Corrupt(_))));
        assert_eq!(fs::read(&path).unwrap(), b"{not json");
    }
}
