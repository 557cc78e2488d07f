//! What one tab tells the others, over a `BroadcastChannel`.
//!
//! A JSON string `{"v":1,"tab":"<sender>","kind":"stored","set":{…}}` after
//! every write of a token set, `{"v":1,"tab":"<sender>","kind":"cleared"}`
//! after the store was cleared (logout, or a refresh the server rejected).
//! The set travels with the message so that a receiver never depends on its
//! own copy of `localStorage` having caught up with the sender's write: the
//! channel is same-origin only, like the storage it mirrors.

use reauth::TokenSet;
use serde::{Deserialize, Serialize};

/// Version of the message format; messages of another version are ignored.
const VERSION: u32 = 1;

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Message {
    v: u32,
    pub(crate) tab: String,
    #[serde(flatten)]
    pub(crate) what: What,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum What {
    Stored { set: TokenSet },
    Cleared,
}

impl Message {
    pub(crate) fn new(tab: &str, what: What) -> Self {
        Self {
            v: VERSION,
            tab: tab.to_owned(),
            what,
        }
    }

    /// Parses a received message; `None` for anything that is not one of ours.
    pub(crate) fn parse(text: &str) -> Option<Self> {
        serde_json::from_str::<Self>(text)
            .ok()
            .filter(|m| m.v == VERSION)
    }

    pub(crate) fn to_json(&self) -> String {
        // Serialising plain strings, numbers and options cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}
