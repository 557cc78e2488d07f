//! Injected time, sleep, spawn and randomness.
//!
//! The core never calls tokio (or any executor) directly. A [`Runtime`] bundles
//! the four capabilities it needs; [`Runtime::tokio`] is the usual choice, and
//! tests swap in a clock that follows tokio's paused time. In a browser
//! (wasm32), supply a clock backed by `Date.now()` and a spawner backed by
//! `wasm_bindgen_futures::spawn_local`.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::maybe_send::BoxFuture;

/// A source of wall-clock time. Token expiry is wall-clock time, because it is
/// persisted and shared between processes. Nothing else is: lease deadlines,
/// retry budgets and cool-downs run on [`Sleep::monotonic`], which does not
/// jump when the wall clock does (a suspend, an NTP step).
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> SystemTime;
}

/// A shared clock is a clock: pass [`Runtime::clock`] wherever one is asked for.
impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now(&self) -> SystemTime {
        (**self).now()
    }
}

/// Asynchronous sleep, and the monotonic clock its timers run on.
pub trait Sleep: Send + Sync + 'static {
    /// A future that completes after `duration`.
    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()>;

    /// The timer's monotonic clock: the time since an origin fixed for the
    /// process (only differences between readings mean anything). Lease
    /// deadlines, retry budgets and `Retry-After` cool-downs are measured on
    /// it, never on the wall [`Clock`], so a wall-clock jump neither expires
    /// nor stretches them.
    ///
    /// The default reads [`std::time::Instant`] (in a browser,
    /// `performance.now()`). A sleep whose timers run on another clock — a
    /// virtual one in tests — returns that clock here ([`TokioSleep`] follows
    /// tokio's, which `tokio::time::pause` makes virtual).
    fn monotonic(&self) -> Duration {
        monotonic_default()
    }
}

/// Readings are offset by this so that an instant a little before the
/// process-wide origin (a paused tokio clock started before it) is still a
/// `Duration`.
#[cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]
const MONOTONIC_OFFSET: Duration = Duration::from_secs(1 << 32);

/// `at` as a reading of the process-wide monotonic origin.
#[cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]
fn since_origin(at: std::time::Instant) -> Duration {
    static ORIGIN: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let origin = *ORIGIN.get_or_init(std::time::Instant::now);
    match at.checked_duration_since(origin) {
        Some(after) => MONOTONIC_OFFSET.saturating_add(after),
        None => MONOTONIC_OFFSET.saturating_sub(origin.duration_since(at)),
    }
}

#[cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]
fn monotonic_default() -> Duration {
    since_origin(std::time::Instant::now())
}

/// `performance.now()` (milliseconds since the page or worker started,
/// monotonic); `Date.now()` where it is missing.
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
fn monotonic_default() -> Duration {
    let global = js_sys::global();
    let ms = js_sys::Reflect::get(&global, &js_sys::JsString::from("performance"))
        .ok()
        .filter(|p| p.is_object())
        .and_then(|perf| {
            let now = js_sys::Reflect::get(&perf, &js_sys::JsString::from("now")).ok()?;
            js_sys::Function::from(now).call0(&perf).ok()?.as_f64()
        })
        .unwrap_or_else(js_sys::Date::now);
    Duration::from_secs_f64(ms.max(0.0) / 1000.0)
}

/// Runs a future to completion in the background, detached from the caller.
///
/// The session spawns each refresh so that a caller that is cancelled cannot
/// cancel the refresh everybody else is waiting for.
pub trait Spawn: Send + Sync + 'static {
    /// Starts `task` in the background.
    fn spawn(&self, task: BoxFuture<'static, ()>);
}

/// Randomness for backoff and refresh-ahead jitter.
pub trait Jitter: Send + Sync + 'static {
    /// A duration uniformly drawn from `[0, max]`.
    fn jitter(&self, max: Duration) -> Duration;
}

/// [`Clock`] reading [`SystemTime::now`] (in a browser, where that panics,
/// `Date.now()`).
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }

    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    fn now(&self) -> SystemTime {
        // Milliseconds since the Unix epoch, as a float; before 1970 is clamped.
        let ms = js_sys::Date::now().max(0.0);
        SystemTime::UNIX_EPOCH + Duration::from_secs_f64(ms / 1000.0)
    }
}

/// [`Jitter`] from a fast non-cryptographic generator.
#[derive(Clone, Copy, Debug, Default)]
pub struct RandomJitter;

impl Jitter for RandomJitter {
    fn jitter(&self, max: Duration) -> Duration {
        let nanos = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(fastrand::u64(0..=nanos))
    }
}

/// [`Jitter`] that always returns zero; for deterministic tests.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoJitter;

impl Jitter for NoJitter {
    fn jitter(&self, _max: Duration) -> Duration {
        Duration::ZERO
    }
}

/// The capabilities a [`Session`](crate::Session) needs from its environment.
///
/// ```
/// # #[cfg(feature = "tokio")] {
/// use reauth::Runtime;
/// let rt = Runtime::tokio();
/// # let _ = rt; }
/// ```
#[derive(Clone)]
pub struct Runtime {
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) sleep: Arc<dyn Sleep>,
    pub(crate) spawn: Arc<dyn Spawn>,
    pub(crate) jitter: Arc<dyn Jitter>,
}

impl Runtime {
    /// A runtime from its parts.
    pub fn new(
        clock: impl Clock,
        sleep: impl Sleep,
        spawn: impl Spawn,
        jitter: impl Jitter,
    ) -> Self {
        Self {
            clock: Arc::new(clock),
            sleep: Arc::new(sleep),
            spawn: Arc::new(spawn),
            jitter: Arc::new(jitter),
        }
    }

    /// The injected clock.
    pub fn clock(&self) -> Arc<dyn Clock> {
        Arc::clone(&self.clock)
    }

    /// The current time from the injected clock.
    pub fn now(&self) -> SystemTime {
        self.clock.now()
    }

    /// The timer's monotonic clock ([`Sleep::monotonic`]): for deadlines.
    pub(crate) fn mono(&self) -> Duration {
        self.sleep.monotonic()
    }
}

impl fmt::Debug for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runtime").finish_non_exhaustive()
    }
}

#[cfg(feature = "tokio")]
mod tokio_rt {
    use super::*;

    /// [`Sleep`] on tokio's timer (honours `tokio::time::pause`).
    #[derive(Clone, Copy, Debug, Default)]
    pub struct TokioSleep;

    impl Sleep for TokioSleep {
        fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
            Box::pin(tokio::time::sleep(duration))
        }

        /// tokio's clock: virtual under `tokio::time::pause`.
        fn monotonic(&self) -> Duration {
            since_origin(tokio::time::Instant::now().into_std())
        }
    }

    /// [`Spawn`] with `tokio::spawn` on the current runtime.
    #[derive(Clone, Copy, Debug, Default)]
    pub struct TokioSpawn;

    impl Spawn for TokioSpawn {
        fn spawn(&self, task: BoxFuture<'static, ()>) {
            drop(tokio::spawn(task));
        }
    }

    /// A [`Clock`] that follows tokio's clock, anchored at the wall-clock time it
    /// was created. Under `tokio::time::pause` it is virtual time: it stands still
    /// until the test advances it.
    #[derive(Clone, Copy, Debug)]
    pub struct TokioClock {
        wall: SystemTime,
        mono: tokio::time::Instant,
    }

    impl TokioClock {
        /// A clock reading `start` now.
        pub fn starting_at(start: SystemTime) -> Self {
            Self {
                wall: start,
                mono: tokio::time::Instant::now(),
            }
        }
    }

    impl Default for TokioClock {
        fn default() -> Self {
            Self::starting_at(SystemTime::now())
        }
    }

    impl Clock for TokioClock {
        fn now(&self) -> SystemTime {
            self.wall + self.mono.elapsed()
        }
    }

    impl Runtime {
        /// The system clock, tokio's timer and spawner, and random jitter.
        pub fn tokio() -> Self {
            Self::new(SystemClock, TokioSleep, TokioSpawn, RandomJitter)
        }
    }
}

#[cfg(feature = "tokio")]
pub use tokio_rt::{TokioClock, TokioSleep, TokioSpawn};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_monotonic_clock_moves_forward_from_any_origin() {
        let a = monotonic_default();
        let b = monotonic_default();
        assert!(b >= a);
        let origin = std::time::Instant::now();
        let before = origin.checked_sub(Duration::from_secs(5));
        if let Some(before) = before {
            assert!(since_origin(before) < since_origin(origin));
        }
    }

    #[test]
    fn random_jitter_stays_within_bounds() {
        let j = RandomJitter;
        for _ in 0..1000 {
            assert!(j.jitter(Duration::from_millis(10)) <= Duration::from_millis(10));
        }
        assert_eq!(j.jitter(Duration::ZERO), Duration::ZERO);
    }
}
