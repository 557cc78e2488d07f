//! The page: one session per tab, shared with the other tabs through
//! `reauth_web`, and the buttons that drive it.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use js_sys::{Object, Promise, Reflect};
use reauth::{RefreshAhead, Session, SessionEvent};
use reauth_reqwest::{AuthMiddleware, JsonRefresher};
use reauth_web::{Coordination, TabEvent, TabSync, WebStorageStore};
use reqwest_middleware::ClientWithMiddleware;
use serde_json::{Value, json};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{future_to_promise, spawn_local};

use crate::dom;
use crate::netlog::NetLog;
use crate::refresher::{PageRefresher, status_of};
use crate::wire::{Broken, Wire};

pub(crate) struct App {
    origin: String,
    session: Session,
    store: WebStorageStore,
    json: JsonRefresher,
    client: ClientWithMiddleware,
    log: Arc<NetLog>,
    broken: Arc<Broken>,
    events: RefCell<Vec<Value>>,
    /// Kept for the page's lifetime: dropping it stops listening to the other tabs.
    _sync: TabSync,
}

thread_local! {
    static APP: RefCell<Option<Rc<App>>> = const { RefCell::new(None) };
}

fn url(origin: &str, path: &str) -> url::Url {
    // The origin comes from `location.origin`; a path of ours always joins.
    url::Url::parse(origin)
        .and_then(|o| o.join(path))
        .unwrap_or_else(|_| url::Url::parse("http://127.0.0.1/").expect("a valid literal URL"))
}

fn query_ms(name: &str) -> Option<Duration> {
    dom::query(name)?.parse().ok().map(Duration::from_millis)
}

impl App {
    pub(crate) fn mount() {
        let origin = web_sys::window()
            .and_then(|w| w.location().origin().ok())
            .unwrap_or_default();
        let log = Arc::new(NetLog::default());
        let broken = Arc::new(Broken::default());
        let json = JsonRefresher::new(url(&origin, "/auth/refresh"));
        let store = WebStorageStore::open(&dom::query("name").unwrap_or_else(|| "demo".into()));

        let mut ahead = RefreshAhead::default();
        if dom::query("ahead").as_deref() == Some("0") {
            ahead = RefreshAhead::disabled();
        }
        if let Some(skew) = query_ms("skew_ms") {
            ahead = ahead.with_skew(skew);
        }
        if let Some(jitter) = query_ms("jitter_ms") {
            ahead = ahead.with_jitter(jitter);
        }
        let refresher = PageRefresher {
            json: json.clone(),
            logout_url: url(&origin, "/auth/logout"),
            http: reqwest::Client::new(),
            log: Arc::clone(&log),
        };
        let mut builder = Session::builder(refresher)
            .runtime(reauth_web::runtime())
            .store(store.clone())
            .refresh_ahead(ahead);
        if let Some(timeout) = query_ms("refresh_timeout_ms") {
            builder = builder.refresh_timeout(timeout);
        }
        let session = builder.build();
        let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
            .with(AuthMiddleware::new(session.clone(), url(&origin, "/")))
            .with(Wire {
                log: Arc::clone(&log),
                broken: Arc::clone(&broken),
            })
            .build();
        let mut sync = TabSync::attach(&session, &store);
        let tab_events = sync.events();

        let app = Rc::new(App {
            origin,
            session,
            store,
            json,
            client,
            log,
            broken,
            events: RefCell::new(Vec::new()),
            _sync: sync,
        });
        APP.with(|a| *a.borrow_mut() = Some(Rc::clone(&app)));

        app.watch_session();
        app.tick();
        app.watch_tabs(tab_events);
        app.wire_buttons();
        expose_test_api();

        spawn_local(async move {
            match app.session.restore().await {
                Ok(true) => app.note(json!({"source": "page", "kind": "restored"})),
                Ok(false) => {}
                Err(e) => {
                    app.note(json!({
                        "source": "page", "kind": "store_error",
                        "error": error_chain(&e),
                    }));
                    // Unreadable data would block every login: keep it under
                    // another key and start clean.
                    match app.store.set_aside_unreadable() {
                        Ok(true) => app.note(json!({
                            "source": "page", "kind": "set_aside",
                            "reason": format!("moved to {}:unreadable", app.store.key()),
                        })),
                        Ok(false) => {}
                        Err(e) => app.note(json!({
                            "source": "page", "kind": "store_error",
                            "error": error_chain(&e),
                        })),
                    }
                }
            }
            app.render_status();
        });
    }

    fn note(&self, event: Value) {
        let text = describe_event(&event);
        self.events.borrow_mut().push(event);
        dom::append("events", "li", "", &[&text]);
        self.render_status();
    }

    /// Re-renders the status once a second, so expiry counts down.
    fn tick(self: &Rc<Self>) {
        let app = Rc::clone(self);
        spawn_local(async move {
            loop {
                gloo_timers::future::TimeoutFuture::new(1_000).await;
                app.render_status();
            }
        });
    }

    fn watch_session(self: &Rc<Self>) {
        let mut events = self.session.events();
        let app = Rc::clone(self);
        spawn_local(async move {
            while let Some(event) = events.next().await {
                app.note(session_event_json(&event));
            }
        });
    }

    fn watch_tabs(self: &Rc<Self>, mut events: reauth_web::TabEvents) {
        let app = Rc::clone(self);
        spawn_local(async move {
            while let Some(event) = events.next().await {
                app.note(tab_event_json(&event));
            }
        });
    }

    fn wire_buttons(self: &Rc<Self>) {
        dom::on_click("login-button", || {
            let (user, password) = (dom::input_value("username"), dom::input_value("password"));
            spawn_local(async move {
                let _ = login(user, password).await;
            });
        });
        dom::on_click("break-button", || {
            break_token();
        });
        dom::on_click("send-button", || {
            let n = dom::input_value("count").parse().unwrap_or(3);
            spawn_local(async move {
                let _ = send(n, None).await;
            });
        });
        dom::on_click("tab-button", || {
            if let Some(w) = web_sys::window() {
                let href = w.location().href().unwrap_or_default();
                let _ = w.open_with_url_and_target(&href, "_blank");
            }
        });
        dom::on_click("logout-button", || {
            spawn_local(async move {
                let _ = logout().await;
            });
        });
    }

    fn state(&self) -> Value {
        let tokens = self.session.tokens();
        let now = reauth::SystemClock;
        let expires_in_ms = tokens.as_ref().and_then(|t| t.expires_at).map(|exp| {
            use reauth::Clock;
            match exp.duration_since(now.now()) {
                Ok(left) => left.as_millis() as i64,
                Err(past) => -(past.duration().as_millis() as i64),
            }
        });
        json!({
            "active": self.session.is_active(),
            "generation": self.session.generation().map(|g| g.get()),
            "expires_in_ms": expires_in_ms,
            "usable": self.session.try_access_token().is_some(),
            "coordination": coordination_text(self.store.coordination()),
            "cross_tab": matches!(self.store.coordination(), Coordination::CrossTab),
            "events": *self.events.borrow(),
            "log": self.log.entries(),
        })
    }

    fn render_status(&self) {
        let text = match (self.session.generation(), self.session.tokens()) {
            (Some(g), Some(t)) => {
                let left = t
                    .expires_at
                    .and_then(|e| {
                        use reauth::Clock;
                        e.duration_since(reauth::SystemClock.now()).ok()
                    })
                    .map_or_else(
                        || "expired".to_owned(),
                        |d| format!("{} s left", d.as_secs()),
                    );
                format!("logged in — generation {}, access token {left}", g.get())
            }
            _ => "not logged in".to_owned(),
        };
        let coordination = coordination_text(self.store.coordination());
        dom::set_text("status", &format!("{text}\ncross-tab: {coordination}"));
    }
}

fn coordination_text(c: &Coordination) -> String {
    match c {
        Coordination::CrossTab => "on (Web Locks + localStorage + BroadcastChannel)".into(),
        Coordination::InTab(reason) => format!("OFF — {reason}"),
    }
}

/// One line of the events list: when (s since the page started), who, what.
fn describe_event(event: &Value) -> String {
    let field = |k: &str| event.get(k).filter(|v| !v.is_null());
    let mut line = format!(
        "+{:.1} s  {}: {}",
        dom::now_ms() / 1000.0,
        event["source"].as_str().unwrap_or("?"),
        event["kind"].as_str().unwrap_or("?").replace('_', " ")
    );
    if let Some(g) = field("generation") {
        line.push_str(&format!(" → generation {g}"));
    }
    for key in ["trigger", "reason", "error", "attempt"] {
        if let Some(v) = field(key) {
            let v = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
            line.push_str(&format!(" ({key}: {v})"));
        }
    }
    line
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn session_event_json(event: &SessionEvent) -> Value {
    match event {
        SessionEvent::Started { generation } => {
            json!({"source": "session", "kind": "started", "generation": generation.get()})
        }
        SessionEvent::Refreshed {
            generation,
            trigger,
        } => json!({
            "source": "session", "kind": "refreshed",
            "generation": generation.get(), "trigger": format!("{trigger:?}"),
        }),
        SessionEvent::Adopted { generation } => {
            json!({"source": "session", "kind": "adopted", "generation": generation.get()})
        }
        SessionEvent::RefreshRetrying { attempt, error, .. } => json!({
            "source": "session", "kind": "retrying", "attempt": attempt,
            "error": error_chain(&**error),
        }),
        SessionEvent::RefreshFailed { error } => {
            json!({"source": "session", "kind": "refresh_failed", "error": error_chain(&**error)})
        }
        SessionEvent::StoreFailed { error } => {
            json!({"source": "session", "kind": "store_failed", "error": error_chain(&**error)})
        }
        SessionEvent::ReplayRejected { generation } => {
            json!({"source": "session", "kind": "replay_rejected", "generation": generation.get()})
        }
        SessionEvent::SessionEnded { reason } => {
            json!({"source": "session", "kind": "ended", "reason": format!("{reason:?}")})
        }
        SessionEvent::ForeignSet { generation, .. } => {
            json!({"source": "session", "kind": "foreign_set", "generation": generation.get()})
        }
        other => json!({"source": "session", "kind": "other", "debug": format!("{other:?}")}),
    }
}

fn tab_event_json(event: &TabEvent) -> Value {
    match event {
        TabEvent::CoordinationOff { reason } => {
            json!({"source": "tabs", "kind": "coordination_off", "reason": reason.to_string()})
        }
        TabEvent::AdoptedFromTab { generation } => {
            json!({"source": "tabs", "kind": "adopted_from_tab", "generation": generation.get()})
        }
        TabEvent::LoginFromTab { generation } => {
            json!({"source": "tabs", "kind": "login_from_tab", "generation": generation.get()})
        }
        TabEvent::EndedInOtherTab => json!({"source": "tabs", "kind": "ended_in_other_tab"}),
        TabEvent::StoreFailed { error } => {
            json!({"source": "tabs", "kind": "store_failed", "error": error_chain(&**error)})
        }
        TabEvent::ChannelFailed { error } => {
            json!({"source": "tabs", "kind": "channel_failed", "error": error_chain(&**error)})
        }
        other => json!({"source": "tabs", "kind": "other", "debug": format!("{other:?}")}),
    }
}

fn app() -> Option<Rc<App>> {
    APP.with(|a| a.borrow().clone())
}

async fn login(user: String, password: String) -> Value {
    let Some(app) = app() else {
        return json!({"ok": false, "error": "not started"});
    };
    let credentials = json!({"username": user, "password": password});
    let result = app
        .json
        .login(url(&app.origin, "/auth/login"), &credentials)
        .await;
    let status = result.as_ref().map_or_else(status_of, |_| 200);
    app.log.record("POST", "/auth/login", status);
    let outcome = match result {
        Ok(tokens) => match app.session.start(tokens).await {
            Ok(g) => json!({"ok": true, "generation": g.get()}),
            Err(e) => json!({"ok": false, "error": error_chain(&e)}),
        },
        Err(e) => json!({"ok": false, "error": error_chain(&e)}),
    };
    app.render_status();
    outcome
}

/// Breaks this tab's current access token (the seed's
/// `localStorage.setItem("token", "sdf")`): requests that would carry it
/// carry `sdf` instead, until a refresh replaces it.
fn break_token() -> bool {
    let Some(app) = app() else { return false };
    let token = app
        .session
        .tokens()
        .map(|t| t.access_token.secret().to_owned());
    let broke = token.is_some();
    app.broken.set(token);
    app.note(json!({"source": "page", "kind": "token_broken"}));
    broke
}

async fn send(n: usize, path: Option<String>) -> Value {
    let Some(app) = app() else {
        return json!({"ok": 0, "failed": n});
    };
    app.log.begin();
    let target = url(&app.origin, path.as_deref().unwrap_or("/api/resources"));
    let requests = (0..n).map(|_| app.client.get(target.clone()).send());
    let results = futures::future::join_all(requests).await;
    let mut ok = 0;
    let mut errors = Vec::new();
    for result in results {
        match result {
            Ok(r) if r.status().is_success() => ok += 1,
            Ok(r) => errors.push(r.status().as_u16().to_string()),
            Err(e) => errors.push(error_chain(&e)),
        }
    }
    app.render_status();
    json!({"ok": ok, "failed": n - ok, "errors": errors})
}

async fn logout() -> Value {
    let Some(app) = app() else {
        return json!({"ok": false});
    };
    let result = app.session.logout().await;
    app.render_status();
    match result {
        Ok(()) => json!({"ok": true}),
        Err(e) => json!({"ok": false, "error": error_chain(&e)}),
    }
}

fn promise_of(f: impl std::future::Future<Output = Value> + 'static) -> Promise {
    future_to_promise(async move { Ok(JsValue::from_str(&f.await.to_string())) })
}

/// `window.reauthDemo`: the buttons' actions, as functions returning JSON
/// strings (or promises of them), for the browser tests and the console.
fn expose_test_api() {
    let api = Object::new();
    let set = |name: &str, f: JsValue| {
        let _ = Reflect::set(&api, &name.into(), &f);
    };
    set(
        "login",
        Closure::<dyn Fn(String, String) -> Promise>::new(|u, p| promise_of(login(u, p)))
            .into_js_value(),
    );
    set(
        "breakToken",
        Closure::<dyn Fn() -> bool>::new(break_token).into_js_value(),
    );
    set(
        "send",
        Closure::<dyn Fn(u32, Option<String>) -> Promise>::new(|n, path| {
            promise_of(send(n as usize, path))
        })
        .into_js_value(),
    );
    set(
        "logout",
        Closure::<dyn Fn() -> Promise>::new(|| promise_of(logout())).into_js_value(),
    );
    set(
        "state",
        Closure::<dyn Fn() -> String>::new(|| {
            app().map_or_else(|| "null".into(), |a| a.state().to_string())
        })
        .into_js_value(),
    );
    if let Some(window) = web_sys::window() {
        let _ = Reflect::set(&window, &"reauthDemo".into(), &api);
    }
}
