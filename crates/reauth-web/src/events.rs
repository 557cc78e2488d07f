//! What the cross-tab layer tells the page.

use std::fmt;
use std::sync::Arc;

use reauth::Generation;

use crate::error::WebError;

/// Whether the tabs of this origin coordinate their refreshes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Coordination {
    /// One refresh across every tab: Web Locks, `localStorage`, and
    /// `BroadcastChannel` (or `storage` events).
    CrossTab,
    /// Each tab refreshes on its own (still one refresh per tab). The server's
    /// grace window is then what keeps two tabs that refresh together logged in.
    InTab(OffReason),
}

/// Why cross-tab coordination is off.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum OffReason {
    /// `localStorage` is missing or refuses access: the session lives in this
    /// tab's memory and does not survive a reload.
    StorageUnavailable(String),
    /// The Web Locks API is missing: the set is stored and shared, but two tabs
    /// may refresh the same generation.
    LocksUnavailable,
}

impl fmt::Display for OffReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::StorageUnavailable(why) => {
                write!(
                    f,
                    "Web Storage is unavailable ({why}); the session is kept in this tab only"
                )
            }
            Self::LocksUnavailable => f.write_str(
                "the Web Locks API is unavailable; tabs share the session but refresh on their own",
            ),
        }
    }
}

/// Something the cross-tab layer did or noticed. Subscribe with
/// [`TabSync::events`](crate::TabSync::events); the session's own events
/// ([`reauth::SessionEvent`]) still report refreshes, adoptions and the end.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum TabEvent {
    /// Sent first when coordination is off, with the reason.
    CoordinationOff {
        /// Why.
        reason: OffReason,
    },
    /// Another tab stored a newer set (it refreshed, or logged in); this tab
    /// adopted it without asking the server.
    AdoptedFromTab {
        /// The generation adopted.
        generation: Generation,
    },
    /// Another tab logged in anew (another lineage): this tab's session ended
    /// as superseded, and the new login was restored as a new session.
    LoginFromTab {
        /// The generation of the new login.
        generation: Generation,
    },
    /// Another tab ended the session (logout, or its refresh was rejected);
    /// this tab's session ended too, without a request.
    EndedInOtherTab,
    /// The stored value could not be read (garbage, another format) or written
    /// (storage full) while acting on another tab's news.
    StoreFailed {
        /// The failure.
        error: Arc<WebError>,
    },
    /// Posting on the `BroadcastChannel` failed; other tabs still learn of
    /// writes through `storage` events. Reported once.
    ChannelFailed {
        /// The failure.
        error: Arc<WebError>,
    },
    /// A message on the channel was not one of ours (another version, another
    /// script); it was ignored.
    UnknownMessage,
}
