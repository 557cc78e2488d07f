//! SQLite result codes → [`StoreError`].

use rusqlite::ErrorCode;

use crate::store::StoreError;

/// Classifies a `rusqlite` error.
pub(super) fn classify(e: rusqlite::Error) -> StoreError {
    let code = match &e {
        rusqlite::Error::SqliteFailure(failure, _) => Some(failure.code),
        _ => None,
    };
    match code {
        Some(
            ErrorCode::DatabaseBusy
            | ErrorCode::DatabaseLocked
            | ErrorCode::DiskFull
            | ErrorCode::SystemIoFailure
            | ErrorCode::ReadOnly
            | ErrorCode::CannotOpen
            | ErrorCode::OutOfMemory
            | ErrorCode::FileLockingProtocolFailed,
        ) => StoreError::Unavailable(Box::new(e)),
        Some(ErrorCode::TooBig) => StoreError::InvalidInput(Box::new(e)),
        _ => StoreError::Backend(Box::new(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(code: i32) -> rusqlite::Error {
        rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None)
    }

    #[test]
    fn s10_commit_faults_are_unavailable() {
        use rusqlite::ffi;
        for code in [
            ffi::SQLITE_FULL,
            ffi::SQLITE_IOERR_WRITE,
            ffi::SQLITE_IOERR_FSYNC,
            ffi::SQLITE_READONLY,
            ffi::SQLITE_BUSY,
            ffi::SQLITE_LOCKED,
        ] {
            assert!(classify(failure(code)).is_unavailable(), "{code}");
        }
        assert!(matches!(
            classify(failure(ffi::SQLITE_TOOBIG)),
            StoreError::InvalidInput(_)
        ));
        assert!(matches!(
            classify(failure(ffi::SQLITE_CONSTRAINT_UNIQUE)),
            StoreError::Backend(_)
        ));
    }
}
