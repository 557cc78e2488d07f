//! A browser page served beside the API, on the same origin (no CORS): the
//! seed-002 demo page of `crates/reauth-web-demo`, or any built page.
//!
//! With [`ServerConfig::web_dir`](crate::ServerConfig::web_dir) set, `GET /`
//! answers the directory's `index.html` and `GET /web/{file}` its files
//! (`.wasm` as `application/wasm`, so browsers compile it while it streams).
//! Paths cannot leave the directory. Every API route keeps precedence.

use std::path::Path;

use axum::Router;
use tower_http::services::{ServeDir, ServeFile};

pub(crate) fn with_page(api: Router, dir: Option<&Path>) -> Router {
    let Some(dir) = dir else {
        return api;
    };
    api.route_service("/", ServeFile::new(dir.join("index.html")))
        .nest_service("/web", ServeDir::new(dir))
}
