//! The `Refresher` contract: turn the current token set into the next one.

use std::future::Future;

use async_trait::async_trait;

use crate::error::RefreshError;
use crate::maybe_send::MaybeSend;
use crate::token::TokenSet;

/// Obtains a new token set from the current one, normally by presenting the
/// refresh token to the authorization server.
///
/// The session calls it at most once per token generation, from a background
/// task, and classifies failures by [`RefreshError::kind`]. Implementations
/// should not retry on their own (the session does, with backoff) and need not
/// set `generation` (the session does). If the response carries no new refresh
/// token, return the set without one: the session keeps the old refresh token.
///
/// `reauth-reqwest` ships refreshers for the OAuth2 `refresh_token` grant, a
/// JSON endpoint and `client_credentials`; [`refresh_fn`] wraps a closure.
#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
pub trait Refresher: Send + Sync + 'static {
    /// Exchanges `current` for a new token set.
    ///
    /// # Errors
    ///
    /// A [`RefreshError`] of the class that fits the failure.
    async fn refresh(&self, current: &TokenSet) -> Result<TokenSet, RefreshError>;

    /// Revokes the session's tokens at the server (RFC 7009), best effort.
    /// Called by [`Session::logout`](crate::Session::logout). The default does nothing.
    ///
    /// # Errors
    ///
    /// A [`RefreshError`]; logout goes ahead regardless.
    async fn revoke(&self, _tokens: &TokenSet) -> Result<(), RefreshError> {
        Ok(())
    }
}

/// A [`Refresher`] made from an async closure; see [`refresh_fn`].
#[derive(Clone, Debug)]
pub struct RefreshFn<F>(F);

/// Wraps an async closure taking the current token set as a [`Refresher`].
///
/// ```
/// use reauth::{refresh_fn, RefreshError, TokenSet};
///
/// let refresher = refresh_fn(|current: TokenSet| async move {
///     let Some(_refresh) = current.refresh_token else {
///         return Err(RefreshError::rejected("no refresh token"));
///     };
///     Ok(TokenSet::new("new-access").with_refresh_token("new-refresh"))
/// });
/// # let _ = refresher;
/// ```
pub fn refresh_fn<F, Fut>(f: F) -> RefreshFn<F>
where
    F: Fn(TokenSet) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<TokenSet, RefreshError>> + MaybeSend + 'static,
{
    RefreshFn(f)
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
impl<F, Fut> Refresher for RefreshFn<F>
where
    F: Fn(TokenSet) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<TokenSet, RefreshError>> + MaybeSend + 'static,
{
    async fn refresh(&self, current: &TokenSet) -> Result<TokenSet, RefreshError> {
        (self.0)(current.clone()).await
    }
}
