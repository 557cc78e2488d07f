//! `TabSync`: act on what the other tabs announce.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures::Stream;
use futures::channel::mpsc;
use reauth::{Session, StoreError};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;

use crate::error::WebError;
use crate::events::{Coordination, TabEvent};
use crate::message::{Message, What};
use crate::store::WebStorageStore;

/// Keeps a [`Session`] in step with the other tabs sharing its
/// [`WebStorageStore`]: a set another tab stored is adopted at once
/// ([`Session::adopt_stored`], no server request), and a logout or a rejected
/// refresh in another tab ends this tab's session too
/// ([`Session::end_elsewhere`], no second revocation). A *new login* in
/// another tab (another lineage) is never taken for a rotation: this tab's
/// session ends once as superseded (`SessionEvent::ForeignSet`, then
/// `SessionEnded`), and then follows the new login as a new session
/// ([`Session::restore`], [`TabEvent::LoginFromTab`]) — the tabs of an origin
/// share one login.
///
/// Listens on the store's `BroadcastChannel` and on `storage` events (either
/// suffices; both are idempotent). Stops listening when dropped.
///
/// ```no_run
/// use reauth::{refresh_fn, Session, TokenSet};
/// use reauth_web::{TabSync, WebStorageStore};
///
/// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
/// let store = WebStorageStore::open("my-app");
/// let session = Session::builder(refresh_fn(|t: TokenSet| async move { Ok(t) }))
///     .runtime(reauth_web::runtime())
/// .store(store.clone())
/// .build();
/// let sync = TabSync::attach(&session, &store);
/// session.restore().await?; // the session another tab (or a reload) left
/// # drop(sync); Ok(()) }
/// ```
pub struct TabSync {
    store: WebStorageStore,
    channel: Option<web_sys::BroadcastChannel>,
    _on_message: Option<Closure<dyn FnMut(web_sys::MessageEvent)>>,
    _on_storage: Option<Closure<dyn FnMut(web_sys::StorageEvent)>>,
    events: Option<mpsc::Receiver<TabEvent>>,
}

impl std::fmt::Debug for TabSync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TabSync")
            .field("key", &self.store.key())
            .field("coordination", self.store.coordination())
            .finish_non_exhaustive()
    }
}

impl TabSync {
    /// Starts listening for `session`, which must use `store`.
    pub fn attach(session: &Session, store: &WebStorageStore) -> Self {
        let events = store.subscribe();
        if let Coordination::InTab(reason) = store.coordination() {
            store.emit(TabEvent::CoordinationOff {
                reason: reason.clone(),
            });
            if matches!(reason, crate::events::OffReason::StorageUnavailable(_)) {
                return Self {
                    store: store.clone(),
                    channel: None,
                    _on_message: None,
                    _on_storage: None,
                    events: Some(events),
                };
            }
        }

        let (channel, on_message) = match web_sys::BroadcastChannel::new(store.key()) {
            Ok(channel) => {
                let (s, st) = (session.clone(), store.clone());
                let on_message = Closure::<dyn FnMut(_)>::new(move |e: web_sys::MessageEvent| {
                    on_message(&s, &st, e.data().as_string());
                });
                channel.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
                (Some(channel), Some(on_message))
            }
            Err(e) => {
                store.emit(TabEvent::ChannelFailed {
                    error: std::sync::Arc::new(WebError::Channel(crate::error::describe(&e))),
                });
                (None, None)
            }
        };

        let on_storage = web_sys::window().map(|window| {
            let (s, st) = (session.clone(), store.clone());
            let cb = Closure::<dyn FnMut(_)>::new(move |e: web_sys::StorageEvent| {
                if e.key().as_deref() != Some(st.key()) {
                    return;
                }
                match e.new_value() {
                    None => ended(&s, &st),
                    Some(_) => adopt(&s, &st),
                }
            });
            let _ = window.add_event_listener_with_callback("storage", cb.as_ref().unchecked_ref());
            cb
        });

        Self {
            store: store.clone(),
            channel,
            _on_message: on_message,
            _on_storage: on_storage,
            events: Some(events),
        }
    }

    /// Whether the tabs coordinate, or why not.
    pub fn coordination(&self) -> &Coordination {
        self.store.coordination()
    }

    /// The cross-tab events, from [`attach`](Self::attach) on (the first is
    /// [`TabEvent::CoordinationOff`] when coordination is off). Can be taken
    /// once; later calls return an empty stream. Bounded: a subscriber that
    /// does not read misses events beyond
    /// [`TAB_EVENT_BUFFER`](crate::TAB_EVENT_BUFFER), memory does not grow.
    pub fn events(&mut self) -> TabEvents {
        TabEvents {
            rx: self.events.take(),
        }
    }
}

impl Drop for TabSync {
    fn drop(&mut self) {
        if let Some(channel) = &self.channel {
            channel.set_onmessage(None);
            channel.close();
        }
        if let (Some(window), Some(cb)) = (web_sys::window(), &self._on_storage) {
            let _ =
                window.remove_event_listener_with_callback("storage", cb.as_ref().unchecked_ref());
        }
    }
}

/// The stream of [`TabEvent`]s of a [`TabSync`].
#[derive(Debug)]
pub struct TabEvents {
    rx: Option<mpsc::Receiver<TabEvent>>,
}

impl Stream for TabEvents {
    type Item = TabEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<TabEvent>> {
        match &mut self.rx {
            Some(rx) => Pin::new(rx).poll_next(cx),
            None => Poll::Ready(None),
        }
    }
}

fn on_message(session: &reauth::Session, store: &WebStorageStore, data: Option<String>) {
    let Some(message) = data.as_deref().and_then(Message::parse) else {
        store.emit(TabEvent::UnknownMessage);
        return;
    };
    if message.tab == store.tab() {
        return;
    }
    match message.what {
        What::Stored { set } => {
            store.hear(set);
            adopt(session, store);
        }
        What::Cleared => ended(session, store),
    }
}

fn adopt(session: &reauth::Session, store: &WebStorageStore) {
    let (session, store) = (session.clone(), store.clone());
    wasm_bindgen_futures::spawn_local(async move {
        match session.adopt_stored().await {
            Ok(Some(generation)) => store.emit(TabEvent::AdoptedFromTab { generation }),
            // Another lineage: the session ended as superseded (with its
            // `ForeignSet` event), never adopting it as a rotation. Tabs of
            // one origin share one login, so follow it as a new session.
            Ok(None) if !session.is_active() => match session.restore().await {
                Ok(true) => {
                    if let Some(generation) = session.generation() {
                        store.emit(TabEvent::LoginFromTab { generation });
                    }
                }
                Ok(false) => {}
                Err(e) => store.emit(TabEvent::StoreFailed {
                    error: std::sync::Arc::new(web_error(e)),
                }),
            },
            Ok(None) => {}
            Err(e) => store.emit(TabEvent::StoreFailed {
                error: std::sync::Arc::new(web_error(e)),
            }),
        }
    });
}

/// Another tab cleared the store (its `cleared` message, or the `storage`
/// event — whichever comes first). This login has ended everywhere: its
/// lineage is remembered first, so a late `stored` of it (a refresh that
/// landed in a third tab just before the logout) cannot bring it back.
fn ended(session: &reauth::Session, store: &WebStorageStore) {
    store.forget_heard(session.tokens().map(|t| t.lineage));
    if session.end_elsewhere() {
        store.emit(TabEvent::EndedInOtherTab);
    }
}

/// The [`WebError`] inside a [`StoreError`] from this crate's store.
fn web_error(e: StoreError) -> WebError {
    let described = e.to_string();
    let inner = match e {
        StoreError::Corrupt(b) | StoreError::Backend(b) => Some(b),
        _ => None,
    };
    match inner.map(|b| b.downcast::<WebError>()) {
        Some(Ok(web)) => *web,
        Some(Err(other)) => WebError::Storage(other.source().map_or(described, |s| s.to_string())),
        None => WebError::Storage(described),
    }
}
