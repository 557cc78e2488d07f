//! What can go wrong with browser storage, locks and channels.

/// A failure of the browser's storage, lock or channel APIs. The store wraps
/// it in a [`reauth::StoreError`] (`Corrupt` for [`WebError::Garbage`],
/// `Backend` for the rest), so it reaches the session's events and can be
/// told apart with `std::error::Error::source` and `downcast_ref`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WebError {
    /// `localStorage` is missing or refuses access (a sandboxed frame, storage
    /// blocked by the user, a worker).
    #[error("Web Storage is unavailable: {0}")]
    StorageUnavailable(String),
    /// The stored value is not a token set (hand-edited, another app's data,
    /// a truncated write). Nothing was overwritten.
    #[error("the stored value is not a token set: {0}")]
    Garbage(String),
    /// The write did not fit (`QuotaExceededError`). The previous set is kept.
    #[error("Web Storage is full: the token set was not written")]
    StorageFull,
    /// Another storage failure while writing or removing.
    #[error("Web Storage failed: {0}")]
    Storage(String),
    /// The Web Locks API refused or failed a lock request.
    #[error("Web Locks request failed: {0}")]
    Lock(String),
    /// The Web Locks API did not answer a non-blocking request in time.
    #[error("Web Locks did not answer within {0:?}")]
    LockTimeout(std::time::Duration),
    /// The `BroadcastChannel` could not be opened or used.
    #[error("BroadcastChannel failed: {0}")]
    Channel(String),
}

impl WebError {
    /// Whether the stored value was unreadable (garbage, another format).
    pub fn is_garbage(&self) -> bool {
        matches!(self, Self::Garbage(_))
    }

    /// Whether storage ran out of space.
    pub fn is_storage_full(&self) -> bool {
        matches!(self, Self::StorageFull)
    }
}

/// The `name: message` of a thrown JavaScript value, for error messages.
pub(crate) fn describe(value: &wasm_bindgen::JsValue) -> String {
    use wasm_bindgen::JsCast;
    if let Some(e) = value.dyn_ref::<js_sys::Error>() {
        let name: String = e.name().into();
        let message: String = e.message().into();
        return format!("{name}: {message}");
    }
    value
        .as_string()
        .unwrap_or_else(|| "unknown JavaScript error".into())
}

/// Whether a thrown value is a `QuotaExceededError` `DOMException`.
pub(crate) fn is_quota_exceeded(value: &wasm_bindgen::JsValue) -> bool {
    use wasm_bindgen::JsCast;
    value
        .dyn_ref::<web_sys::DomException>()
        .is_some_and(|e| e.name() == "QuotaExceededError" || e.code() == 22)
}
