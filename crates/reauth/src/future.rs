//! The future returned by [`Session::access_token`](crate::Session::access_token).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::maybe_send::BoxFuture;

use crate::error::Error;
use crate::token::Bearer;

/// The future returned by [`Session::access_token`](crate::Session::access_token).
///
/// When the current token is valid it is ready at once and allocates nothing
/// (the fast path); otherwise it waits for the shared refresh.
///
/// # Cancel safety
///
/// Cancel-safe: dropping it never cancels a refresh.
#[must_use = "futures do nothing unless polled"]
pub struct AccessTokenFuture {
    state: State,
}

enum State {
    Ready(Option<Result<Bearer, Error>>),
    Waiting(BoxFuture<'static, Result<Bearer, Error>>),
}

impl AccessTokenFuture {
    pub(crate) fn ready(result: Result<Bearer, Error>) -> Self {
        Self {
            state: State::Ready(Some(result)),
        }
    }

    pub(crate) fn waiting(fut: BoxFuture<'static, Result<Bearer, Error>>) -> Self {
        Self {
            state: State::Waiting(fut),
        }
    }
}

impl Future for AccessTokenFuture {
    type Output = Result<Bearer, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.state {
            State::Ready(result) => Poll::Ready(
                result
                    .take()
                    .expect("AccessTokenFuture polled after completion"),
            ),
            State::Waiting(fut) => fut.as_mut().poll(cx),
        }
    }
}

impl fmt::Debug for AccessTokenFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Ready(_) => "ready",
            State::Waiting(_) => "waiting",
        };
        f.debug_struct("AccessTokenFuture")
            .field("state", &state)
            .finish()
    }
}
