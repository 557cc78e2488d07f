//! `Send` where threads exist, nothing in a browser.
//!
//! Every future in a browser (`fetch`, `setTimeout`, Web Locks) holds
//! JavaScript values, which are not `Send`, and `wasm32-unknown-unknown` runs
//! them all on the page's one thread. So on `wasm32` the futures the core
//! accepts and returns ([`Refresher`](crate::Refresher),
//! [`TokenStore`](crate::TokenStore), [`Coordinator`](crate::Coordinator),
//! [`Sleep`](crate::Sleep), [`Spawn`](crate::Spawn)) need not be `Send`; on
//! every other target they must be, exactly as before. The objects themselves
//! stay `Send + Sync` on both (as `reqwest-middleware`'s `Middleware` does), so
//! one [`Session`](crate::Session) type serves both.

/// `Send` on native targets; implemented by every type on `wasm32`.
#[cfg(not(target_arch = "wasm32"))]
pub trait MaybeSend: Send {}
#[cfg(not(target_arch = "wasm32"))]
impl<T: Send + ?Sized> MaybeSend for T {}

/// `Send` on native targets; implemented by every type on `wasm32`.
#[cfg(target_arch = "wasm32")]
pub trait MaybeSend {}
#[cfg(target_arch = "wasm32")]
impl<T: ?Sized> MaybeSend for T {}

/// A boxed future that is [`MaybeSend`]: `futures`' `BoxFuture` on native
/// targets, `LocalBoxFuture` on `wasm32`.
#[cfg(not(target_arch = "wasm32"))]
pub type BoxFuture<'a, T> = futures::future::BoxFuture<'a, T>;
/// A boxed future that is [`MaybeSend`]: `futures`' `BoxFuture` on native
/// targets, `LocalBoxFuture` on `wasm32`.
#[cfg(target_arch = "wasm32")]
pub type BoxFuture<'a, T> = futures::future::LocalBoxFuture<'a, T>;
