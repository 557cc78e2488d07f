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

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Request, StatusCode, header};
    use http_body_util::BodyExt;
    use tower::Service;

    use super::*;

    async fn get(router: &mut Router, path: &str) -> (StatusCode, String, String) {
        let request = Request::get(path).body(Body::empty()).expect("a request");
        let response = router.call(request).await.expect("infallible");
        let status = response.status();
        let kind = response
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap_or_default().to_owned())
            .unwrap_or_default();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        (status, kind, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn the_page_is_served_beside_the_api_and_cannot_leave_its_directory() {
        let root = tempfile::tempdir().expect("temp dir");
        let dir = root.path().join("site");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("index.html"), "<p>page</p>").unwrap();
        std::fs::write(dir.join("app_bg.wasm"), b"\0asm").unwrap();
        std::fs::write(root.path().join("secret.txt"), "secret").unwrap();
        let api = Router::new().route("/healthz", axum::routing::get(|| async { "ok" }));
        let mut router = with_page(api, Some(&dir));

        assert_eq!(get(&mut router, "/").await.2, "<p>page</p>");
        let (status, kind, _) = get(&mut router, "/web/app_bg.wasm").await;
        assert_eq!(
            (status, kind.as_str()),
            (StatusCode::OK, "application/wasm")
        );
        assert_eq!(get(&mut router, "/healthz").await.2, "ok");
        let (status, _, body) = get(&mut router, "/web/../secret.txt").await;
        assert_ne!(status, StatusCode::OK);
        assert!(!body.contains("secret"));
        let (status, _, body) = get(&mut router, "/web/%2e%2e/secret.txt").await;
        assert_ne!(status, StatusCode::OK);
        assert!(!body.contains("secret"));
    }

    #[tokio::test]
    async fn without_a_directory_nothing_is_added() {
        let api = Router::new().route("/healthz", axum::routing::get(|| async { "ok" }));
        let mut router = with_page(api, None);
        assert_eq!(get(&mut router, "/").await.0, StatusCode::NOT_FOUND);
    }
}
