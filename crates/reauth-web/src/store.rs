//! `WebStorageStore`: the token set in `localStorage`, shared by every tab of
//! the origin, with a Web Lock as the cross-tab refresh lease.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use futures::channel::mpsc;
use reauth::coord::{Coordinator, Lease, new_owner_token};
use reauth::{Lineage, Stamp, StoreError, TokenSet, TokenStore};
use wasm_bindgen::JsValue;

use crate::error::{WebError, describe, is_quota_exceeded};
use crate::events::{Coordination, OffReason, TabEvent};
use crate::locks;
use crate::message::{Message, What};

/// How long a non-blocking lock request may take to be answered.
const LOCK_ANSWER_WITHIN: Duration = Duration::from_secs(2);

/// The most [`TabEvent`]s held for a subscriber that does not read them;
/// later ones are dropped (memory stays bounded).
pub const TAB_EVENT_BUFFER: usize = 64;

/// How many ended logins a tab remembers, to ignore late news of them.
const ENDED_REMEMBERED: usize = 16;

/// A [`TokenStore`] in the browser's `localStorage` under one key, shared by
/// every tab of the origin, and the [`Coordinator`] that makes those tabs
/// refresh once between them.
///
/// * **Persist before publish (C13).** The session writes every rotated set
///   here before any request of this tab sees it; the write is one
///   `localStorage.setItem` of the JSON set, atomic for readers.
/// * **Lease = Web Lock.** [`Coordinator::try_acquire`] takes the exclusive
///   Web Lock named after the key without waiting (`ifAvailable`); the
///   session polls it with bounded backoff. The browser releases the lock of
///   a tab that closes, reloads or crashes; a tab that stalls while holding
///   it loses it after the lease TTL, which the holder renews while it works
///   ([`Coordinator::renew`]).
/// * **Compare-and-set** on the stored generation and lineage, fenced by that
///   lock: a write under a lock this tab no longer holds fails.
/// * **Pushed to the other tabs.** Every write and clear is announced on a
///   `BroadcastChannel` (the set travels with it); [`crate::TabSync`] in each
///   other tab adopts it without asking the server. `storage` events carry
///   the same news where `BroadcastChannel` is missing.
///
/// When `localStorage` is unavailable (blocked, sandboxed, a worker) the store
/// keeps the set in memory for this tab; when Web Locks are missing it stores
/// but does not coordinate. [`coordination`](Self::coordination) says which,
/// and [`crate::TabSync::events`] reports it as [`TabEvent::CoordinationOff`].
///
/// Clones share everything. The store holds no JavaScript object (each call
/// looks `localStorage` up), so it is `Send + Sync` as the session requires.
#[derive(Clone, Debug)]
pub struct WebStorageStore {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    key: String,
    tab: String,
    coordination: Coordination,
    /// The set, when `localStorage` is unavailable.
    memory: Mutex<Option<TokenSet>>,
    /// The newest set another tab announced: `localStorage` in this tab may
    /// not show that write yet.
    heard: Mutex<Option<TokenSet>>,
    /// Whether posting on the channel failed once (reported once).
    channel_failed: AtomicBool,
    subscribers: Mutex<Vec<mpsc::Sender<TabEvent>>>,
    /// Logins that ended (cleared here or announced cleared by another tab):
    /// a late message carrying one of their sets is ignored, so a logout is
    /// never undone by news that was already on its way.
    ended: Mutex<std::collections::VecDeque<Lineage>>,
}

impl WebStorageStore {
    /// The store for the session called `name`: `localStorage` key, Web Lock
    /// and `BroadcastChannel` are all `reauth:{name}`. Every tab that opens the
    /// same name shares one session.
    pub fn open(name: &str) -> Self {
        let key = format!("reauth:{name}");
        let coordination = match probe_storage(&key) {
            Err(e) => Coordination::InTab(OffReason::StorageUnavailable(e.to_string())),
            Ok(()) if !locks::available() => Coordination::InTab(OffReason::LocksUnavailable),
            Ok(()) => Coordination::CrossTab,
        };
        Self {
            shared: Arc::new(Shared {
                key,
                tab: new_owner_token(),
                coordination,
                memory: Mutex::new(None),
                heard: Mutex::new(None),
                channel_failed: AtomicBool::new(false),
                subscribers: Mutex::new(Vec::new()),
                ended: Mutex::new(std::collections::VecDeque::new()),
            }),
        }
    }

    /// Whether the tabs coordinate, or why not.
    pub fn coordination(&self) -> &Coordination {
        &self.shared.coordination
    }

    /// The `localStorage` key (also the lock and channel name).
    pub fn key(&self) -> &str {
        &self.shared.key
    }

    pub(crate) fn tab(&self) -> &str {
        &self.shared.tab
    }

    fn has_storage(&self) -> bool {
        !matches!(
            self.shared.coordination,
            Coordination::InTab(OffReason::StorageUnavailable(_))
        )
    }

    pub(crate) fn subscribe(&self) -> mpsc::Receiver<TabEvent> {
        let (tx, rx) = mpsc::channel(TAB_EVENT_BUFFER);
        lock(&self.shared.subscribers).push(tx);
        rx
    }

    /// Sends `event` to every subscriber; one whose buffer is full misses it
    /// (bounded memory), one that is gone is dropped.
    pub(crate) fn emit(&self, event: TabEvent) {
        lock(&self.shared.subscribers).retain_mut(|tx| match tx.try_send(event.clone()) {
            Ok(()) => true,
            Err(e) => e.is_full(),
        });
    }

    /// Another tab announced `set` (ignored if its login has ended).
    pub(crate) fn hear(&self, set: TokenSet) {
        if self.has_ended(&set.lineage) {
            return;
        }
        let mut heard = lock(&self.shared.heard);
        if heard.as_ref().is_none_or(|h| set.generation > h.generation) {
            *heard = Some(set);
        }
    }

    /// Another tab cleared the store: what was heard is gone, and its login
    /// (and `also`, the login this tab's session had) has ended.
    pub(crate) fn forget_heard(&self, also: Option<Lineage>) {
        let heard = lock(&self.shared.heard).take();
        for lineage in heard.map(|h| h.lineage).into_iter().chain(also) {
            self.end_lineage(lineage);
        }
    }

    /// Remembers that `lineage`'s login ended.
    fn end_lineage(&self, lineage: Lineage) {
        let mut ended = lock(&self.shared.ended);
        if !ended.contains(&lineage) {
            if ended.len() >= ENDED_REMEMBERED {
                ended.pop_front();
            }
            ended.push_back(lineage);
        }
    }

    fn has_ended(&self, lineage: &Lineage) -> bool {
        lock(&self.shared.ended).contains(lineage)
    }

    fn read(&self) -> Result<Option<TokenSet>, WebError> {
        if !self.has_storage() {
            return Ok(lock(&self.shared.memory).clone());
        }
        let storage = local_storage()?;
        let Some(text) = storage
            .get_item(&self.shared.key)
            .map_err(|e| WebError::StorageUnavailable(describe(&e)))?
        else {
            return Ok(None);
        };
        serde_json::from_str::<TokenSet>(&text)
            .map(Some)
            .map_err(|e| WebError::Garbage(e.to_string()))
    }

    /// Moves a stored value that is not a token set aside, to
    /// `{key}:unreadable`, so that a new login can be stored; returns whether
    /// there was one. A readable set (or nothing) is left alone.
    ///
    /// The session never overwrites what it cannot read (a failed read at
    /// `start` is an error, not "empty"), so garbage — hand-edited, another
    /// app's data, a truncated write — would lock the user out. Call this
    /// when [`load`](TokenStore::load) reported [`WebError::Garbage`] and the
    /// user is about to log in again: nothing is deleted.
    ///
    /// # Errors
    ///
    /// [`WebError`] when storage is unavailable or the move does not fit.
    pub fn set_aside_unreadable(&self) -> Result<bool, WebError> {
        if !self.has_storage() {
            return Ok(false);
        }
        let storage = local_storage()?;
        let Some(text) = storage
            .get_item(&self.shared.key)
            .map_err(|e| WebError::StorageUnavailable(describe(&e)))?
        else {
            return Ok(false);
        };
        if serde_json::from_str::<TokenSet>(&text).is_ok() {
            return Ok(false);
        }
        let aside = format!("{}:unreadable", self.shared.key);
        storage.set_item(&aside, &text).map_err(|e| {
            if is_quota_exceeded(&e) {
                WebError::StorageFull
            } else {
                WebError::Storage(describe(&e))
            }
        })?;
        storage
            .remove_item(&self.shared.key)
            .map_err(|e| WebError::Storage(describe(&e)))?;
        Ok(true)
    }

    fn write(&self, tokens: &TokenSet) -> Result<(), WebError> {
        if !self.has_storage() {
            *lock(&self.shared.memory) = Some(tokens.clone());
            return Ok(());
        }
        let text = serde_json::to_string(tokens).map_err(|e| WebError::Storage(e.to_string()))?;
        local_storage()?
            .set_item(&self.shared.key, &text)
            .map_err(|e| {
                if is_quota_exceeded(&e) {
                    WebError::StorageFull
                } else {
                    WebError::Storage(describe(&e))
                }
            })
    }

    fn remove(&self) -> Result<(), WebError> {
        *lock(&self.shared.heard) = None;
        if !self.has_storage() {
            *lock(&self.shared.memory) = None;
            return Ok(());
        }
        local_storage()?
            .remove_item(&self.shared.key)
            .map_err(|e| WebError::Storage(describe(&e)))
    }

    /// The stored set, or the newer one another tab announced.
    fn newest(&self) -> Result<Option<TokenSet>, WebError> {
        let stored = self.read()?;
        let heard = lock(&self.shared.heard)
            .clone()
            .filter(|h| !self.has_ended(&h.lineage));
        Ok(match (stored, heard) {
            (Some(s), Some(h)) if h.generation > s.generation => Some(h),
            (None, Some(h)) => Some(h),
            (s, _) => s,
        })
    }

    fn announce(&self, what: What) {
        if !self.has_storage() {
            return;
        }
        let text = Message::new(&self.shared.tab, what).to_json();
        if let Err(e) = post(&self.shared.key, &text) {
            // The write itself is done; other tabs still get a `storage` event.
            if !self.shared.channel_failed.swap(true, Ordering::Relaxed) {
                self.emit(TabEvent::ChannelFailed { error: Arc::new(e) });
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn local_storage() -> Result<web_sys::Storage, WebError> {
    let window =
        web_sys::window().ok_or_else(|| WebError::StorageUnavailable("no window".into()))?;
    window
        .local_storage()
        .map_err(|e| WebError::StorageUnavailable(describe(&e)))?
        .ok_or_else(|| WebError::StorageUnavailable("localStorage is null".into()))
}

/// Reads and writes a probe key: some browsers hand out a `localStorage` that
/// throws on every write (private modes, blocked storage).
fn probe_storage(key: &str) -> Result<(), WebError> {
    let storage = local_storage()?;
    let probe = format!("{key}:probe");
    storage
        .set_item(&probe, "1")
        .and_then(|()| storage.remove_item(&probe))
        .map_err(|e| WebError::StorageUnavailable(describe(&e)))?;
    storage
        .get_item(key)
        .map_err(|e| WebError::StorageUnavailable(describe(&e)))?;
    Ok(())
}

/// Posts `text` on the channel `name` (a fresh channel object per message:
/// nothing to keep open, nothing that can be left closed).
fn post(name: &str, text: &str) -> Result<(), WebError> {
    let channel =
        web_sys::BroadcastChannel::new(name).map_err(|e| WebError::Channel(describe(&e)))?;
    let posted = channel.post_message(&JsValue::from_str(text));
    channel.close();
    posted.map_err(|e| WebError::Channel(describe(&e)))
}

fn store_error(e: WebError) -> StoreError {
    if e.is_garbage() {
        StoreError::Corrupt(Box::new(e))
    } else {
        StoreError::Backend(Box::new(e))
    }
}

#[async_trait(?Send)]
impl TokenStore for WebStorageStore {
    async fn load(&self) -> Result<Option<TokenSet>, StoreError> {
        self.newest().map_err(store_error)
    }

    async fn store(&self, tokens: &TokenSet) -> Result<(), StoreError> {
        self.write(tokens).map_err(store_error)?;
        self.announce(What::Stored {
            set: tokens.clone(),
        });
        Ok(())
    }

    async fn clear(&self) -> Result<(), StoreError> {
        if let Ok(Some(cleared)) = self.newest() {
            self.end_lineage(cleared.lineage);
        }
        self.remove().map_err(store_error)?;
        self.announce(What::Cleared);
        Ok(())
    }

    fn coordinator(&self) -> Option<&dyn Coordinator> {
        matches!(self.shared.coordination, Coordination::CrossTab).then_some(self as _)
    }
}

#[async_trait(?Send)]
impl Coordinator for WebStorageStore {
    async fn try_acquire(&self, ttl: Duration) -> Result<Option<Lease>, StoreError> {
        let lease = Lease::generate(ttl);
        let granted = locks::try_lock(&self.shared.key, lease.owner(), LOCK_ANSWER_WITHIN, ttl)
            .await
            .map_err(store_error)?;
        Ok(granted.then_some(lease))
    }

    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<bool, StoreError> {
        Ok(locks::renew(lease.owner(), ttl))
    }

    async fn release(&self, lease: &Lease) -> Result<(), StoreError> {
        locks::release(lease.owner());
        Ok(())
    }

    async fn compare_and_swap(
        &self,
        fence: Option<&Lease>,
        expected: Option<&Stamp>,
        new: Option<&TokenSet>,
    ) -> Result<bool, StoreError> {
        if fence.is_some_and(|lease| !locks::holds(lease.owner())) {
            return Ok(false);
        }
        let current = self.newest().map_err(store_error)?;
        if current.map(|t| t.stamp()).as_ref() != expected {
            return Ok(false);
        }
        match new {
            Some(tokens) => self.store(tokens).await?,
            None => self.clear().await?,
        }
        Ok(true)
    }
}
