//! The browser runtime: `Date.now()`, `setTimeout`, `spawn_local`.

use std::time::Duration;

use reauth::{BoxFuture, RandomJitter, Runtime, Sleep, Spawn, SystemClock};

/// [`Sleep`] on `setTimeout` (cleared when the future is dropped, so a waiter
/// that gets its token early leaves no timer behind).
///
/// Browsers throttle timers in background tabs (to once a second, and to once
/// a minute after some minutes hidden): a refresh-ahead timer there fires late,
/// and the 401 path, which needs no timer, covers the gap.
#[derive(Clone, Copy, Debug, Default)]
pub struct TimeoutSleep;

impl Sleep for TimeoutSleep {
    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        // setTimeout takes an i32 of milliseconds; longer waits are cut to
        // ~24 days, which every caller re-checks anyway.
        let ms = u32::try_from(duration.as_millis())
            .unwrap_or(u32::MAX)
            .min(i32::MAX as u32);
        Box::pin(gloo_timers::future::TimeoutFuture::new(ms))
    }
}

/// [`Spawn`] with `wasm_bindgen_futures::spawn_local`: the task runs on the
/// page's event loop, detached from whoever started it.
#[derive(Clone, Copy, Debug, Default)]
pub struct LocalSpawn;

impl Spawn for LocalSpawn {
    fn spawn(&self, task: BoxFuture<'static, ()>) {
        wasm_bindgen_futures::spawn_local(task);
    }
}

/// The runtime for a page or a worker: the wall clock from `Date.now()`
/// ([`SystemClock`] in a browser), [`TimeoutSleep`], [`LocalSpawn`] and
/// random jitter (seeded from `crypto.getRandomValues`).
///
/// ```no_run
/// use reauth::{refresh_fn, Session, TokenSet};
/// let session = Session::builder(refresh_fn(|t: TokenSet| async move { Ok(t) }))
///     .runtime(reauth_web::runtime())
/// .build();
/// # let _ = session;
/// ```
pub fn runtime() -> Runtime {
    Runtime::new(SystemClock, TimeoutSleep, LocalSpawn, RandomJitter)
}
