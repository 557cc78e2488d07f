//! The innermost middleware: logs every request that goes over the wire and,
//! while the access token is "broken", sends a garbage token in its place —
//! the seed's `localStorage.setItem("token", "sdf")`, so the server answers
//! `401` exactly as it would for an expired or revoked token.

use std::sync::{Arc, Mutex, PoisonError};

use http::header::AUTHORIZATION;
use reqwest::{Request, Response};
use reqwest_middleware::{Middleware, Next};

use crate::netlog::NetLog;

/// The access token the user broke, if any: requests carrying it are sent
/// with a garbage token instead. Tokens of later generations are untouched.
#[derive(Debug, Default)]
pub(crate) struct Broken(Mutex<Option<String>>);

impl Broken {
    pub(crate) fn set(&self, token: Option<String>) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = token;
    }

    fn get(&self) -> Option<String> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

pub(crate) struct Wire {
    pub(crate) log: Arc<NetLog>,
    pub(crate) broken: Arc<Broken>,
}

#[async_trait::async_trait(?Send)]
impl Middleware for Wire {
    async fn handle(
        &self,
        mut req: Request,
        extensions: &mut http::Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        if let Some(broken) = self.broken.get() {
            let sent = req
                .headers()
                .get(AUTHORIZATION)
                .and_then(|v| v.to_str().ok());
            if sent == Some(format!("Bearer {broken}").as_str()) {
                req.headers_mut()
                    .insert(AUTHORIZATION, http::HeaderValue::from_static("Bearer sdf"));
            }
        }
        let method = req.method().to_string();
        let path = req.url().path().to_owned();
        let result = next.run(req, extensions).await;
        let status = result.as_ref().map_or(0, |r| r.status().as_u16());
        self.log.record(&method, &path, status);
        result
    }
}
