//! The Web Locks API as a non-blocking, releasable lease.
//!
//! `navigator.locks.request(name, {mode: "exclusive", ifAvailable: true}, cb)`
//! calls `cb` at once with a lock, or with `null` when another tab (or worker)
//! of the origin holds it. The lock is held until the promise `cb` returned
//! settles, so a grant keeps that promise's `resolve` in a per-thread table
//! under a random owner token, and [`release`] calls it. The browser releases
//! the lock by itself when the holding tab closes, reloads or crashes.
//!
//! The bindings are written here (a few lines) because `web-sys` ships Web
//! Locks only behind `--cfg web_sys_unstable_apis`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Duration;

use futures::channel::oneshot;
use futures::future::{Either, select};
use js_sys::{Function, Object, Promise, Reflect};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

use crate::error::{WebError, describe};

#[wasm_bindgen]
extern "C" {
    /// `navigator.locks`.
    type LockManager;

    #[wasm_bindgen(method, catch, js_name = request)]
    fn request_with_options(
        this: &LockManager,
        name: &str,
        options: &Object,
        callback: &Function,
    ) -> Result<Promise, JsValue>;
}

thread_local! {
    /// Owner token → the `resolve` of the promise that keeps the lock held.
    static HELD: RefCell<HashMap<String, Function>> = RefCell::new(HashMap::new());
    /// Owner token → when the lock lapses (`Date.now()` milliseconds), unless renewed.
    static LAPSE_AT: RefCell<HashMap<String, f64>> = RefCell::new(HashMap::new());
}

/// `navigator.locks`, if this browser (and context) has it.
fn lock_manager() -> Option<LockManager> {
    let navigator = Reflect::get(&js_sys::global(), &"navigator".into()).ok()?;
    let locks = Reflect::get(&navigator, &"locks".into()).ok()?;
    (!locks.is_undefined() && !locks.is_null()).then(|| locks.unchecked_into())
}

/// Whether the Web Locks API is there.
pub(crate) fn available() -> bool {
    lock_manager().is_some()
}

/// Takes the exclusive lock `name` for `owner` if nobody holds it. Answers
/// within `answer_within` (the browser normally answers at once). While held,
/// the lock lapses by itself after `lapse_after`, so a tab that stalls while
/// holding it (its refresh is bounded anyway) blocks the others for at most
/// that long.
pub(crate) async fn try_lock(
    name: &str,
    owner: &str,
    answer_within: Duration,
    lapse_after: Duration,
) -> Result<bool, WebError> {
    let locks = lock_manager().ok_or_else(|| WebError::Lock("Web Locks are unavailable".into()))?;
    let (tx, rx) = oneshot::channel::<bool>();
    let granted_to = owner.to_owned();
    let callback = Closure::once_into_js(move |lock: JsValue| -> JsValue {
        if lock.is_null() || lock.is_undefined() {
            let _ = tx.send(false);
            return JsValue::UNDEFINED;
        }
        let held = Promise::new(&mut |resolve, _reject| {
            HELD.with(|h| h.borrow_mut().insert(granted_to.clone(), resolve));
        });
        if tx.send(true).is_err() {
            // The caller stopped waiting: hand the lock straight back.
            release(&granted_to);
        }
        held.into()
    });
    let options = Object::new();
    let set = |k: &str, v: JsValue| Reflect::set(&options, &k.into(), &v);
    set("mode", "exclusive".into()).map_err(|e| WebError::Lock(describe(&e)))?;
    set("ifAvailable", true.into()).map_err(|e| WebError::Lock(describe(&e)))?;
    let request = locks
        .request_with_options(name, &options, callback.unchecked_ref())
        .map_err(|e| WebError::Lock(describe(&e)))?;
    // The request's promise settles when the lock is released (or at once when
    // it was not available); it rejects if the request itself failed.
    let settled = JsFuture::from(request);
    let timeout = gloo_timers::future::TimeoutFuture::new(millis(answer_within));
    let granted = match select(rx, select(settled, timeout)).await {
        Either::Left((Ok(granted), _)) => granted,
        Either::Left((Err(_), _)) => {
            return Err(WebError::Lock("the lock callback was dropped".into()));
        }
        Either::Right((Either::Left((Err(e), _)), _)) => return Err(WebError::Lock(describe(&e))),
        Either::Right((Either::Left((Ok(_), _)), _)) => false,
        Either::Right((Either::Right(((), _)), _)) => {
            return Err(WebError::LockTimeout(answer_within));
        }
    };
    if granted {
        let owner = owner.to_owned();
        set_lapse(&owner, lapse_after);
        wasm_bindgen_futures::spawn_local(async move {
            // Sleep until the lapse instant, which renewals push back.
            loop {
                let Some(at) = LAPSE_AT.with(|l| l.borrow().get(&owner).copied()) else {
                    return; // released
                };
                let left = at - js_sys::Date::now();
                if left <= 0.0 {
                    release(&owner);
                    return;
                }
                gloo_timers::future::TimeoutFuture::new(left.ceil().min(f64::from(i32::MAX)) as u32)
                    .await;
            }
        });
    }
    Ok(granted)
}

fn set_lapse(owner: &str, after: Duration) {
    let at = js_sys::Date::now() + after.as_secs_f64() * 1000.0;
    LAPSE_AT.with(|l| l.borrow_mut().insert(owner.to_owned(), at));
}

/// Whether this tab holds the lock for `owner` (granted, not released, not lapsed).
pub(crate) fn holds(owner: &str) -> bool {
    HELD.with(|h| h.borrow().contains_key(owner))
        && LAPSE_AT.with(|l| {
            l.borrow()
                .get(owner)
                .is_some_and(|at| js_sys::Date::now() < *at)
        })
}

/// Pushes the lapse of the lock held for `owner` to `ttl` from now; `false`
/// if it is no longer held.
pub(crate) fn renew(owner: &str, ttl: Duration) -> bool {
    if !holds(owner) {
        return false;
    }
    set_lapse(owner, ttl);
    true
}

/// Releases the lock held for `owner`, if it still is. Releasing twice, or a
/// lock that lapsed, does nothing.
pub(crate) fn release(owner: &str) {
    LAPSE_AT.with(|l| l.borrow_mut().remove(owner));
    if let Some(resolve) = HELD.with(|h| h.borrow_mut().remove(owner)) {
        let _ = resolve.call0(&JsValue::UNDEFINED);
    }
}

fn millis(d: Duration) -> u32 {
    u32::try_from(d.as_millis())
        .unwrap_or(u32::MAX)
        .min(i32::MAX as u32)
}
