//! B1–B8 of DESIGN.md §3.5, in real headless Chromium (Debian's `chromium` +
//! `chromedriver`), against the real auth server on loopback. Refreshes are
//! counted **at the server** (a counting layer in front of its router, and
//! its own rotation / grace / reuse counters); every wait is for a condition,
//! bounded by [`harness::PATIENCE`], never a fixed sleep.
//!
//! Skipped with a message when Chromium, chromedriver, the wasm32 target or
//! wasm-bindgen-cli are missing, unless `REAUTH_REQUIRE_SERVICES=1` (CI),
//! which turns the skip into a failure.

mod harness;
mod webdriver;

use std::sync::atomic::Ordering;
use std::time::Duration;

use harness::{ONE_AT_A_TIME, Setup, Site, Tab, logged, serve, tools, wait_for};
use serde_json::Value;
use webdriver::Browser;

struct World {
    browser: Browser,
    site: Site,
}

async fn world(setup: Setup) -> Option<World> {
    let tools = tools()?;
    let site = serve(&tools.site, setup).await;
    let browser = Browser::start(&tools.chromium, &tools.chromedriver)
        .await
        .unwrap_or_else(|e| panic!("Chromium did not start: {e}"));
    Some(World { browser, site })
}

impl World {
    /// The browser's first tab, showing the page.
    async fn first_tab(&self, query: &str) -> Tab {
        let tab = Tab(self.browser.current_tab().await.expect("current tab"));
        tab.goto(&self.browser, &self.site, query).await;
        tab
    }

    fn refreshes(&self) -> u64 {
        self.site.counts.refreshes.load(Ordering::SeqCst)
    }

    fn logouts(&self) -> u64 {
        self.site.counts.logouts.load(Ordering::SeqCst)
    }

    async fn end(self) {
        self.browser.quit().await;
    }
}

fn ended(state: &Value) -> usize {
    state["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["kind"] == "ended")
        .count()
}

/// B1: log in, break the access token, send N: N × 401, one refresh, N × 200
/// — in the page's network log and at the server.
async fn b1_burst(n: usize) {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(w) = world(Setup::default()).await else {
        return;
    };
    let b = &w.browser;
    let tab = w.first_tab("?ahead=0").await;
    tab.login(b).await;
    tab.break_token(b).await;
    let result = tab.run(b, &format!("send({n})")).await;
    assert_eq!(result["ok"], n, "every request ends 200: {result}");
    let state = tab.state(b).await;
    assert_eq!(logged(&state, "/api/resources", 401), n, "{state}");
    assert_eq!(logged(&state, "/auth/refresh", 200), 1, "{state}");
    assert_eq!(logged(&state, "/api/resources", 200), n, "{state}");
    assert_eq!(w.refreshes(), 1, "one refresh at the server");
    assert_eq!(w.site.server.faults().rotations(), 1);
    assert_eq!(ended(&state), 0, "nobody logged out");
    w.end().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b1_three_requests_one_refresh() {
    b1_burst(3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b1_hundred_requests_one_refresh() {
    b1_burst(100).await;
}

/// B2: the refresh-ahead timer's refresh is in flight (slowed down at the
/// server) when a burst's 401s come back: they join it — one refresh, no
/// logout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b2_refresh_ahead_racing_a_burst_refreshes_once() {
    let _one = ONE_AT_A_TIME.lock().await;
    let setup = Setup {
        access_ttl: Duration::from_secs(60),
        ..Setup::default()
    };
    let Some(w) = world(setup).await else { return };
    let b = &w.browser;
    // Refresh ahead 54 s before expiry: the timer fires ~6 s after login.
    let tab = w.first_tab("?skew_ms=54000&jitter_ms=0").await;
    w.site
        .server
        .faults()
        .set_refresh_delay(Duration::from_secs(3));
    tab.login(b).await;
    wait_for(
        "the refresh-ahead timer's refresh to reach the server",
        || async { (w.refreshes() == 1).then_some(()) },
    )
    .await;
    tab.break_token(b).await;
    let result = tab.run(b, "send(20)").await;
    assert_eq!(result["ok"], 20, "{result}");
    let state = tab.state(b).await;
    assert_eq!(logged(&state, "/api/resources", 401), 20, "{state}");
    assert_eq!(logged(&state, "/api/resources", 200), 20, "{state}");
    // The burst started no refresh of its own: every refresh is the timer's
    // (a slow machine may see the timer fire again for the next generation).
    let refreshed = tab.events(b, "refreshed").await;
    assert!(!refreshed.is_empty());
    assert!(
        refreshed.iter().all(|e| e["trigger"] == "Ahead"),
        "the burst joined the timer's refresh: {refreshed:?}"
    );
    let faults = w.site.server.faults();
    faults.clear();
    wait_for(
        "every refresh at the server to be a rotation (none spent twice)",
        || async { (w.refreshes() == faults.rotations()).then_some(()) },
    )
    .await;
    assert_eq!(faults.grace_replays(), 0);
    assert_eq!(ended(&state), 0, "no logout");
    w.end().await;
}

/// B3: T tabs share the stored session; the token expires; every tab fires a
/// burst. The first refresh's answer is held at the server until every tab
/// has fired, so all their refreshes are due at once (without cross-tab
/// coordination each tab would send its own). Each generation is refreshed
/// exactly once across all tabs (counted at the server: refresh requests =
/// rotations, no grace replay, no reuse); the other tabs adopt; nobody is
/// logged out.
async fn b3_tabs(tabs: usize, grace: Duration) {
    let _one = ONE_AT_A_TIME.lock().await;
    let setup = Setup {
        grace,
        access_ttl: Duration::from_secs(8),
    };
    let Some(w) = world(setup).await else { return };
    let b = &w.browser;
    let first = w.first_tab("?ahead=0").await;
    first.login(b).await;
    let mut all = vec![first];
    for _ in 1..tabs {
        let tab = Tab::open(b, &w.site, "?ahead=0").await;
        wait_for("the new tab to restore the shared session", || async {
            tab.state(b).await["active"].as_bool().filter(|a| *a)
        })
        .await;
        all.push(tab);
    }
    for tab in &all {
        wait_for("the access token to expire in every tab", || async {
            (tab.state(b).await["usable"] == false).then_some(())
        })
        .await;
    }
    w.site.gates.hold_next_refresh_answers(1);
    for tab in &all {
        tab.start(b, "send(10)").await;
    }
    wait_for("the first refresh to reach the server", || async {
        (w.refreshes() >= 1).then_some(())
    })
    .await;
    w.site.gates.release_held_refreshes();
    for tab in &all {
        let result = tab.result(b).await;
        assert_eq!(
            result["ok"], 10,
            "every request of every tab ends 200: {result}"
        );
    }
    let faults = w.site.server.faults();
    assert!(w.refreshes() >= 1);
    // Converges at once on a quick machine; on a slow one a generation may
    // expire again meanwhile and be refreshed (once) by some tab.
    wait_for(
        "every refresh at the server to be a rotation made by exactly one tab, \
         and every tab on the newest generation",
        || async {
            if w.refreshes() != faults.rotations() {
                return None;
            }
            let mut in_tabs = 0;
            let mut generations = Vec::new();
            for tab in &all {
                let state = tab.state(b).await;
                in_tabs += logged(&state, "/auth/refresh", 200);
                generations.push(state["generation"].clone());
            }
            let same = generations.windows(2).all(|g| g[0] == g[1]);
            (same && u64::try_from(in_tabs).ok() == Some(w.refreshes())).then_some(())
        },
    )
    .await;
    assert_eq!(faults.grace_replays(), 0, "no duplicate refresh");
    assert_eq!(faults.reuse_detections(), 0, "no reuse");
    for tab in &all {
        let state = tab.state(b).await;
        assert_eq!(ended(&state), 0, "no tab logged out: {state}");
    }
    w.end().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b3_two_tabs_refresh_once() {
    b3_tabs(2, Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b3_five_tabs_refresh_once() {
    b3_tabs(5, Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b3_five_tabs_refresh_once_against_a_strict_server() {
    b3_tabs(5, Duration::ZERO).await;
}

/// B4: the tab holding the cross-tab lock is closed mid-refresh — after the
/// server rotated, before its answer arrived. The browser releases its lock;
/// the other tab takes it, refreshes with the stored (old) token, and the
/// server's grace window answers with the same successor: nobody waits
/// forever, nobody is logged out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b4_tab_closed_mid_refresh_another_tab_finishes() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(w) = world(Setup::default()).await else {
        return;
    };
    let b = &w.browser;
    let a = w.first_tab("?ahead=0").await;
    a.login(b).await;
    let other = Tab::open(b, &w.site, "?ahead=0").await;
    wait_for("tab B to restore the session", || async {
        other.state(b).await["active"].as_bool().filter(|x| *x)
    })
    .await;
    let before = other.state(b).await["generation"].clone();

    w.site.gates.hold_next_refresh_answers(1);
    a.break_token(b).await;
    a.start(b, "send(1)").await;
    wait_for("tab A's refresh to reach the server", || async {
        (w.refreshes() == 1).then_some(())
    })
    .await;
    other.break_token(b).await;
    other.start(b, "send(3)").await;
    wait_for(
        "tab B's requests to be refused and wait for the lock",
        || async { (logged(&other.state(b).await, "/api/resources", 401) == 3).then_some(()) },
    )
    .await;
    b.switch_to(&a.0).await.unwrap();
    b.close_tab().await.unwrap();

    let result = other.result(b).await;
    assert_eq!(result["ok"], 3, "tab B finished: {result}");
    let faults = w.site.server.faults();
    assert_eq!(w.refreshes(), 2, "A's (answer lost) and B's");
    assert_eq!(faults.rotations(), 1);
    assert_eq!(faults.grace_replays(), 1, "B got the same successor");
    assert_eq!(faults.reuse_detections(), 0);
    let state = other.state(b).await;
    assert_eq!(ended(&state), 0, "nobody logged out: {state}");
    assert_ne!(state["generation"], before);
    w.end().await;
}

/// B5: logout in one tab ends the session once in every tab, clears the
/// store, and sends one revocation to the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b5_logout_in_one_tab_ends_every_tab_once() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(w) = world(Setup::default()).await else {
        return;
    };
    let b = &w.browser;
    let a = w.first_tab("").await;
    a.login(b).await;
    let other = Tab::open(b, &w.site, "").await;
    wait_for("tab B to restore the session", || async {
        other.state(b).await["active"].as_bool().filter(|x| *x)
    })
    .await;

    let r = a.run(b, "logout()").await;
    assert_eq!(r["ok"], true, "{r}");
    wait_for("tab B to end its session", || async {
        (other.state(b).await["active"] == false).then_some(())
    })
    .await;
    for (tab, reason) in [(&a, "LoggedOut"), (&other, "EndedElsewhere")] {
        let ends = tab.events(b, "ended").await;
        assert_eq!(ends.len(), 1, "ended once: {ends:?}");
        assert_eq!(ends[0]["reason"], reason);
        assert_eq!(tab.stored(b).await, Value::Null, "store cleared");
    }
    assert_eq!(w.logouts(), 1, "one revocation reached the server");
    let resources = w.site.counts.resources.load(Ordering::SeqCst);
    let r = other.run(b, "send(2)").await;
    assert_eq!(r["ok"], 0, "{r}");
    assert_eq!(
        w.site.counts.resources.load(Ordering::SeqCst),
        resources,
        "an ended session fails fast, without a request"
    );
    w.end().await;
}

/// A logout is never undone by news already on its way: a `stored` message
/// of the ended login (a refresh that landed in a third tab just before the
/// logout, delivered after it) is ignored, in every tab.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b5_a_late_message_of_the_ended_login_does_not_undo_the_logout() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(w) = world(Setup::default()).await else {
        return;
    };
    let b = &w.browser;
    let a = w.first_tab("").await;
    a.login(b).await;
    let other = Tab::open(b, &w.site, "").await;
    wait_for("tab B to restore the session", || async {
        other.state(b).await["active"].as_bool().filter(|x| *x)
    })
    .await;
    let old = other.stored(b).await;
    let old = old.as_str().expect("a stored set").to_owned();

    let r = a.run(b, "logout()").await;
    assert_eq!(r["ok"], true, "{r}");
    wait_for("tab B to end its session", || async {
        (other.state(b).await["active"] == false).then_some(())
    })
    .await;

    // The late news, then a message that is not ours: once B reports the
    // latter, it has handled the former (one channel delivers in order).
    b.switch_to(&a.0).await.expect("switch tab");
    b.eval(
        "const c = new BroadcastChannel('reauth:demo');
         c.postMessage(JSON.stringify({v: 1, tab: 'late-tab', kind: 'stored', set: JSON.parse(arguments[0])}));
         c.postMessage('not one of ours');
         c.close();
         return true;",
        serde_json::json!([old]),
    )
    .await
    .expect("post the late message");
    for tab in [&other, &a] {
        wait_for("the tab to handle both messages", || async {
            let state = tab.state(b).await;
            state["events"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|e| {
                    e["debug"]
                        .as_str()
                        .is_some_and(|d| d.contains("UnknownMessage"))
                })
                .then_some(())
        })
        .await;
        let state = tab.state(b).await;
        assert_eq!(state["active"], false, "the logout stands: {state}");
        assert_eq!(tab.stored(b).await, Value::Null, "nothing stored again");
        assert_eq!(tab.events(b, "ended").await.len(), 1);
    }
    w.end().await;
}

/// Another lineage's set (a new login in another tab) is never adopted as a
/// rotation: the tab's session ends once as superseded, with the foreign set
/// reported, and then follows the new login as a new session — no refresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b5_new_login_in_another_tab_supersedes_then_is_followed() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(w) = world(Setup::default()).await else {
        return;
    };
    let b = &w.browser;
    let a = w.first_tab("").await;
    a.login(b).await;
    let other = Tab::open(b, &w.site, "").await;
    wait_for("tab B to restore the session", || async {
        other.state(b).await["active"].as_bool().filter(|x| *x)
    })
    .await;
    a.login(b).await;
    let generation = a.state(b).await["generation"].clone();
    let follows = wait_for("tab B to follow the new login", || async {
        let e = other.events(b, "login_from_tab").await;
        (!e.is_empty()).then_some(e)
    })
    .await;
    assert_eq!(follows.len(), 1);
    assert_eq!(follows[0]["generation"], generation);
    let ends = other.events(b, "ended").await;
    assert_eq!(ends.len(), 1, "{ends:?}");
    assert_eq!(ends[0]["reason"], "Superseded");
    assert_eq!(other.events(b, "foreign_set").await.len(), 1, "reported");
    assert_eq!(
        other.events(b, "adopted").await.len(),
        0,
        "not taken for a rotation"
    );
    let r = other.run(b, "send(2)").await;
    assert_eq!(r["ok"], 2, "{r}");
    assert_eq!(w.refreshes(), 0);
    w.end().await;
}

/// B6: a tab reloads while its refresh is in flight (the server rotated, the
/// answer never arrived). After the reload the tab restores the stored set
/// and keeps a working session: its next refresh gets the same successor
/// (grace window), and the one after rotates on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b6_reload_during_refresh_keeps_a_working_session() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(w) = world(Setup::default()).await else {
        return;
    };
    let b = &w.browser;
    let tab = w.first_tab("?ahead=0").await;
    tab.login(b).await;
    w.site.gates.hold_next_refresh_answers(1);
    tab.break_token(b).await;
    tab.start(b, "send(1)").await;
    wait_for("the refresh to reach the server", || async {
        (w.refreshes() == 1).then_some(())
    })
    .await;
    tab.goto(b, &w.site, "?ahead=0").await;
    wait_for("the reloaded tab to restore the session", || async {
        tab.state(b).await["active"].as_bool().filter(|x| *x)
    })
    .await;
    for round in 0..2 {
        tab.break_token(b).await;
        let r = tab.run(b, "send(3)").await;
        assert_eq!(r["ok"], 3, "round {round}: {r}");
    }
    let faults = w.site.server.faults();
    assert_eq!(faults.grace_replays(), 1, "the lost answer was recovered");
    assert_eq!(faults.rotations(), 2, "and the session rotates on");
    assert_eq!(faults.reuse_detections(), 0);
    assert_eq!(ended(&tab.state(b).await), 0);
    w.end().await;
}

/// B7: a 401 for an old generation arrives in a tab after another tab
/// rotated: no refresh, the request is replayed with the new token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b7_late_401_after_another_tab_rotated_replays_without_refresh() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(w) = world(Setup::default()).await else {
        return;
    };
    let b = &w.browser;
    let a = w.first_tab("?ahead=0").await;
    a.login(b).await;
    let late = Tab::open(b, &w.site, "?ahead=0").await;
    wait_for("tab B to restore the session", || async {
        late.state(b).await["active"].as_bool().filter(|x| *x)
    })
    .await;
    let old = late.state(b).await["generation"].as_u64().unwrap();

    late.break_token(b).await;
    late.start(b, "send(1, '/api/resources?hold=1')").await;
    wait_for("tab B's request to be held at the server", || async {
        (w.site.counts.resources.load(Ordering::SeqCst) == 1).then_some(())
    })
    .await;
    a.break_token(b).await;
    let r = a.run(b, "send(3)").await;
    assert_eq!(r["ok"], 3, "{r}");
    assert_eq!(w.refreshes(), 1);
    wait_for("tab B to adopt tab A's rotation", || async {
        (late.state(b).await["generation"].as_u64() > Some(old)).then_some(())
    })
    .await;
    w.site.gates.release_held_resources();
    let r = late.result(b).await;
    assert_eq!(r["ok"], 1, "the late 401 was replayed: {r}");
    assert_eq!(w.refreshes(), 1, "no second refresh");
    let state = late.state(b).await;
    assert_eq!(logged(&state, "/api/resources", 401), 1, "{state}");
    assert_eq!(logged(&state, "/api/resources", 200), 1, "{state}");
    assert_eq!(logged(&state, "/auth/refresh", 200), 0, "{state}");
    w.end().await;
}

/// B8: the page in a browser whose Web Locks, or storage, are missing, or
/// whose storage holds garbage or is full: it still works in-tab, says
/// cross-tab coordination is off, and reports typed errors — never a panic.
async fn b8_works_in_tab(init_script: &str, off_reason: &str) {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(w) = world(Setup::default()).await else {
        return;
    };
    let b = &w.browser;
    b.init_script(init_script).await.expect("init script");
    let tab = w.first_tab("?ahead=0").await;
    let state = tab.state(b).await;
    assert_eq!(state["cross_tab"], false, "{state}");
    let off = tab.events(b, "coordination_off").await;
    assert_eq!(off.len(), 1, "a clear event: {state}");
    assert!(
        off[0]["reason"].as_str().unwrap().contains(off_reason),
        "{off:?}"
    );
    tab.login(b).await;
    tab.break_token(b).await;
    let r = tab.run(b, "send(3)").await;
    assert_eq!(r["ok"], 3, "{r}");
    assert_eq!(w.refreshes(), 1);
    w.end().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b8_without_web_locks_works_in_tab_and_says_so() {
    b8_works_in_tab(
        "Object.defineProperty(Navigator.prototype, 'locks', { get() { return undefined; } });",
        "Web Locks",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b8_without_storage_works_in_tab_and_says_so() {
    b8_works_in_tab(
        "Object.defineProperty(window, 'localStorage', { get() { throw new DOMException('blocked', 'SecurityError'); } });",
        "Web Storage is unavailable",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b8_garbage_in_storage_is_a_typed_error() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(w) = world(Setup::default()).await else {
        return;
    };
    let b = &w.browser;
    let tab = w.first_tab("?ahead=0").await;
    b.eval(
        "localStorage.setItem('reauth:demo', '{\"access_token\": 42');",
        serde_json::json!([]),
    )
    .await
    .unwrap();
    tab.goto(b, &w.site, "?ahead=0").await;
    let errors = tab.events(b, "store_error").await;
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0]["error"]
            .as_str()
            .unwrap()
            .contains("not a token set"),
        "{errors:?}"
    );
    assert_eq!(tab.state(b).await["active"], false);
    assert_eq!(tab.events(b, "set_aside").await.len(), 1);
    let aside = b
        .eval(
            "return localStorage.getItem('reauth:demo:unreadable');",
            serde_json::json!([]),
        )
        .await
        .unwrap();
    assert_eq!(aside, "{\"access_token\": 42", "nothing deleted");
    tab.login(b).await;
    tab.break_token(b).await;
    let r = tab.run(b, "send(3)").await;
    assert_eq!(r["ok"], 3, "{r}");
    assert_eq!(w.refreshes(), 1);
    w.end().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b8_storage_full_is_a_typed_error() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(w) = world(Setup::default()).await else {
        return;
    };
    let b = &w.browser;
    let tab = w.first_tab("?ahead=0").await;
    // Fill the origin's quota.
    let filled = b
        .eval(
            "let i = 0, last = 'not full';\
             for (const size of [262144, 16384, 1024, 64, 1]) {\
               const chunk = 'x'.repeat(size);\
               try { for (; i < 100000; i++) localStorage.setItem('junk' + i, chunk); } catch (e) { last = e.name; i++; }\
             }\
             window.__junk = i; return last;",
            serde_json::json!([]),
        )
        .await
        .unwrap();
    assert_eq!(filled, "QuotaExceededError");
    let r = tab.run(b, "login('alice', 'wonderland')").await;
    assert_eq!(r["ok"], false, "{r}");
    assert!(r["error"].as_str().unwrap().contains("full"), "{r}");
    b.eval(
        "for (let i = 0; i < window.__junk; i++) localStorage.removeItem('junk' + i);",
        serde_json::json!([]),
    )
    .await
    .unwrap();
    tab.login(b).await;
    tab.break_token(b).await;
    let r = tab.run(b, "send(3)").await;
    assert_eq!(r["ok"], 3, "{r}");
    w.end().await;
}
