//! The seed-002 demo page, in Rust compiled to wasm (plain `web-sys`, no
//! framework: see ARCHITECTURE.md for why).
//!
//! A login form, "Break the access token", "Send N requests", "Open another
//! tab", "Log out", a live network log (method, path, status, ms since the
//! burst) and the session's events. Every tab of the origin shares one
//! session through [`reauth_web`]: one refresh across all of them.
//!
//! Build and serve it with one command from the repository root:
//! `crates/reauth-web-demo/run` (then open <http://127.0.0.1:8080>).
//!
//! Query parameters tune the session for experiments and the browser tests:
//! `ahead=0` turns refresh-ahead off, `skew_ms` / `jitter_ms` set it,
//! `refresh_timeout_ms` the per-attempt refresh timeout, `name` the storage
//! key (default `demo`).
//!
//! The page also exposes `window.reauthDemo` (`login`, `breakToken`, `send`,
//! `logout`, `state`), the same actions as its buttons, for the browser tests.
//!
//! On targets other than `wasm32-unknown-unknown` the crate is empty; its
//! tests (`tests/browser.rs`) build the page and drive Chromium.

#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
mod app;
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
mod dom;
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
mod netlog;
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
mod refresher;
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
mod wire;

/// Starts the page: wires the buttons, restores the stored session.
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
#[wasm_bindgen::prelude::wasm_bindgen(start)]
pub fn start() {
    app::App::mount();
}
