use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use async_trait::async_trait;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::coord::{Coordinator, Lease};
use crate::error::StoreError;
use crate::store::TokenStore;
use crate::token::{Stamp, TokenSet};

/// A [`TokenStore`] in a JSON file, written atomically and readable only by its owner.
///
/// Each write goes to a temporary file in the same directory (created with mode
/// `0600` on Unix), is flushed to disk with `fsync`, and is renamed over the
/// target; the directory is synced too. A crash at any point leaves either the
/// old file or the new one. Unreadable contents are reported as
/// [`StoreError::Corrupt`] and never overwritten by a load (nor by a
/// compare-and-set, which answers the same error).
///
/// # Private to its user
///
/// On Unix every operation first checks that the directory, the token file
/// and the lock file belong to the effective user (the directory may also
/// be root's) and are not writable by the group or the world; otherwise it
/// fails with [`StoreError::Insecure`] and touches nothing. Another user who
/// could write there could plant a login of theirs (session fixation) or
/// swap the file. Keep the file in a private directory (`0700`), not in a
/// shared one such as `/tmp`.
///
/// # Never on the async workers (C21)
///
/// Every operation — the advisory lock, reads, writes, `fsync`s and renames —
/// runs off the async workers (tokio's blocking pool inside a tokio runtime,
/// a short-lived thread elsewhere), so a lock another process holds or a
/// slow disk never stalls the executor: other sessions, and the fast path of
/// this one, keep going. Waiting for a lock another process holds is bounded
/// (10 s, then an I/O error of kind `TimedOut`). The lock file is opened
/// without following symlinks (`O_NOFOLLOW`) and must be a regular file, so a
/// symlink planted in its place is refused, never written through.
///
/// # Processes sharing the file (C15)
///
/// The store is a [`Coordinator`]: several processes using the same path make
/// **one** refresh between them. Writes, compare-and-set and lease changes are
/// serialised by an advisory lock (`flock` on Unix, `LockFileEx` on Windows)
/// on a lock file beside the tokens, `.<name>.lock`, held only for the few
/// microseconds of one operation. The refresh lease itself is a record in that
/// lock file — owner token and expiry in wall-clock milliseconds — so a holder
/// that is killed (or wedged) mid-refresh blocks the others for at most one
/// lease TTL, after which another process takes over. The kernel drops the
/// advisory lock of a dead process, so a crash inside an operation blocks
/// nobody. Expiry compares wall-clock times written by processes on the same
/// machine; a clock step backwards lengthens a lapsed lease by the step.
///
/// Advisory locks are unreliable on some network file systems (NFS without
/// lock support): keep the file on a local disk.
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
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        self.dir().join(format!(
            ".{name}.{}.{:016x}.tmp",
            std::process::id(),
            fastrand::u64(..)
        ))
    }

    /// The lock file beside the tokens: `.<name>.lock`.
    pub fn lock_path(&self) -> PathBuf {
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        self.dir().join(format!(".{name}.lock"))
    }

    /// Runs `f` holding the exclusive advisory lock on the lock file. Blocks:
    /// call it through [`off_the_executor`] only.
    fn locked<T>(
        &self,
        f: impl FnOnce(&mut fs::File) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.check_dir()?;
        let lock_path = self.lock_path();
        let mut file = open_lock(&lock_path)?;
        check_private(&lock_path, &file.metadata()?, false)?;
        lock_within(&file, LOCK_WAIT)?;
        let result = f(&mut file);
        // Closing the file releases the lock (and so does the kernel if we die).
        drop(file);
        result
    }

    /// Runs `op` on a clone of this store, off the async workers.
    async fn run<T: Send + 'static>(
        &self,
        op: impl FnOnce(&FileStore) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let store = self.clone();
        off_the_executor(move || op(&store)).await
    }

    /// Refuses a directory another user could write to (C21's siblings: a
    /// planted or swapped token file).
    fn check_dir(&self) -> Result<(), StoreError> {
        let dir = self.dir();
        match fs::metadata(dir) {
            Ok(meta) => check_private(dir, &meta, true),
            // A missing directory fails the operation itself, as before.
            Err(_) => Ok(()),
        }
    }

    pub(crate) fn read_sync(&self) -> Result<Option<TokenSet>, StoreError> {
        use std::io::Read;
        self.check_dir()?;
        let mut file = match fs::File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        // Checked on the open file (no race with a swap of the path).
        check_private(&self.path, &file.metadata()?, false)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| StoreError::Corrupt(Box::new(e)))
    }

    pub(crate) fn write_sync(&self, tokens: &TokenSet) -> Result<(), StoreError> {
        self.check_dir()?;
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
        self.check_dir()?;
        match fs::remove_file(&self.path) {
            Ok(()) => Ok(sync_dir(self.dir())?),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// Refuses `path` (metadata `meta`) unless it is private to this user:
/// owned by the effective user (a directory may also be root's) and not
/// writable by the group or the world. A no-op off Unix.
#[cfg(unix)]
fn check_private(path: &Path, meta: &fs::Metadata, is_dir: bool) -> Result<(), StoreError> {
    use std::os::unix::fs::MetadataExt;
    let me = rustix::process::geteuid().as_raw();
    let refuse = |reason| {
        Err(StoreError::Insecure {
            path: path.to_owned(),
            reason,
        })
    };
    if meta.uid() != me && !(is_dir && meta.uid() == 0) {
        return refuse("owned by another user");
    }
    if meta.mode() & 0o022 != 0 {
        return refuse("writable by the group or the world");
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_path: &Path, _meta: &fs::Metadata, _is_dir: bool) -> Result<(), StoreError> {
    Ok(())
}

/// The lease record kept in the lock file.
#[derive(Debug, Serialize, Deserialize)]
struct LeaseRecord {
    owner: String,
    expires_at_ms: u64,
}

fn unix_ms(t: SystemTime) -> u64 {
    u64::try_from(t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis()).unwrap_or(u64::MAX)
}

/// The lease recorded in the (locked) lock file; unreadable contents count as none.
fn read_lease(file: &mut fs::File) -> io::Result<Option<LeaseRecord>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut buf = Vec::new();
    file.seek(SeekFrom::Start(0))?;
    file.read_to_end(&mut buf)?;
    Ok(serde_json::from_slice(&buf).ok())
}

fn write_lease(file: &mut fs::File, lease: Option<&LeaseRecord>) -> io::Result<()> {
    use std::io::{Seek, SeekFrom};
    file.set_len(0)?;
    file.seek(SeekFrom::Start(0))?;
    if let Some(lease) = lease {
        file.write_all(&serde_json::to_vec(lease).map_err(io::Error::other)?)?;
    }
    Ok(())
}

/// Open options for files only the owner may read (mode `0600` on Unix).
fn private() -> fs::OpenOptions {
    let mut options = fs::OpenOptions::new();
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
}

/// The longest one operation waits for a lock another process holds.
const LOCK_WAIT: Duration = Duration::from_secs(10);

/// The lease-record file, created if absent and never truncated on open. A
/// symlink in its place is not followed (`O_NOFOLLOW`: the open fails), and
/// anything but a regular file is refused.
fn open_lock(path: &Path) -> io::Result<fs::File> {
    let mut options = private();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NOFOLLOW);
    let file = options.open(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the token store's lock file is not a regular file",
        ));
    }
    Ok(file)
}

/// Takes the exclusive advisory lock on `file`, polling without blocking,
/// for at most `wait`.
fn lock_within(file: &fs::File, wait: Duration) -> io::Result<()> {
    let began = std::time::Instant::now();
    let mut pause = Duration::from_millis(1);
    loop {
        // UFCS: std grew inherent methods of the same name after our MSRV.
        match fs4::FileExt::try_lock(file) {
            Ok(()) => return Ok(()),
            Err(fs4::TryLockError::Error(e)) => return Err(e),
            Err(fs4::TryLockError::WouldBlock) => {}
        }
        if began.elapsed() >= wait {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "another process held the token store's lock too long",
            ));
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// Runs the blocking `op` off the async workers: on tokio's blocking pool
/// inside a tokio runtime, on a thread of its own elsewhere.
async fn off_the_executor<T: Send + 'static>(
    op: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    #[cfg(feature = "tokio")]
    if let Ok(handle) = tokio::runtime::Handle::try_current() {
        return handle
            .spawn_blocking(op)
            .await
            .unwrap_or(Err(StoreError::Abandoned));
    }
    let (tx, rx) = futures::channel::oneshot::channel();
    std::thread::Builder::new()
        .name("reauth-file-store".to_owned())
        .spawn(move || {
            let _ = tx.send(op());
        })?;
    rx.await.unwrap_or(Err(StoreError::Abandoned))
}

/// A new temporary file; fails if it exists.
fn open_private(path: &Path) -> io::Result<fs::File> {
    private().write(true).create_new(true).open(path)
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
impl TokenStore for FileStore {
    async fn load(&self) -> Result<Option<TokenSet>, StoreError> {
        self.run(FileStore::read_sync).await
    }

    async fn store(&self, tokens: &TokenSet) -> Result<(), StoreError> {
        let tokens = tokens.clone();
        self.run(move |s| s.locked(|_| s.write_sync(&tokens))).await
    }

    async fn clear(&self) -> Result<(), StoreError> {
        self.run(|s| s.locked(|_| s.clear_sync())).await
    }

    fn coordinator(&self) -> Option<&dyn Coordinator> {
        Some(self)
    }
}

impl FileStore {
    /// Whether the (locked) lock file records `lease` as held and unexpired.
    fn holds(file: &mut fs::File, lease: &Lease, now: SystemTime) -> io::Result<bool> {
        Ok(read_lease(file)?
            .is_some_and(|l| l.owner == lease.owner() && l.expires_at_ms > unix_ms(now)))
    }
}

fn record(owner: &str, now: SystemTime, ttl: Duration) -> LeaseRecord {
    LeaseRecord {
        owner: owner.to_owned(),
        expires_at_ms: now.checked_add(ttl).map_or(u64::MAX, unix_ms),
    }
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
impl Coordinator for FileStore {
    async fn try_acquire(&self, ttl: Duration) -> Result<Option<Lease>, StoreError> {
        self.run(move |s| {
            s.locked(|file| {
                let now = SystemTime::now();
                if read_lease(file)?.is_some_and(|l| l.expires_at_ms > unix_ms(now)) {
                    return Ok(None);
                }
                let lease = Lease::generate(ttl);
                write_lease(file, Some(&record(lease.owner(), now, ttl)))?;
                Ok(Some(lease))
            })
        })
        .await
    }

    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<bool, StoreError> {
        let lease = lease.clone();
        self.run(move |s| {
            s.locked(|file| {
                let now = SystemTime::now();
                if !Self::holds(file, &lease, now)? {
                    return Ok(false);
                }
                write_lease(file, Some(&record(lease.owner(), now, ttl)))?;
                Ok(true)
            })
        })
        .await
    }

    async fn release(&self, lease: &Lease) -> Result<(), StoreError> {
        let lease = lease.clone();
        self.run(move |s| {
            s.locked(|file| {
                if read_lease(file)?.is_some_and(|l| l.owner == lease.owner()) {
                    write_lease(file, None)?;
                }
                Ok(())
            })
        })
        .await
    }

    async fn compare_and_swap(
        &self,
        fence: Option<&Lease>,
        expected: Option<&Stamp>,
        new: Option<&TokenSet>,
    ) -> Result<bool, StoreError> {
        let (fence, expected, new) = (fence.cloned(), expected.cloned(), new.cloned());
        self.run(move |s| {
            s.locked(|file| {
                if let Some(lease) = &fence
                    && !Self::holds(file, lease, SystemTime::now())?
                {
                    return Ok(false);
                }
                if s.read_sync()?.map(|t| t.stamp()) != expected {
                    return Ok(false);
                }
                match &new {
                    Some(tokens) => s.write_sync(tokens)?,
                    None => s.clear_sync()?,
                }
                Ok(true)
            })
        })
        .await
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
        let t = TokenSet::new("a")
            .with_refresh_token("r")
            .with_generation(Generation::new(4));
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
