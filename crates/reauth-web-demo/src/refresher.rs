//! The page's refresher: the seed's JSON endpoints (`/auth/refresh`, and
//! `/auth/logout` to revoke), with each exchange written to the network log.

use std::sync::Arc;

use reauth::{RefreshError, Refresher, TokenSet};
use reauth_reqwest::JsonRefresher;
use url::Url;

use crate::netlog::NetLog;

pub(crate) struct PageRefresher {
    pub(crate) json: JsonRefresher,
    pub(crate) logout_url: Url,
    pub(crate) http: reqwest::Client,
    pub(crate) log: Arc<NetLog>,
}

/// The status a failed token request was answered with (0: no answer).
pub(crate) fn status_of(e: &RefreshError) -> u16 {
    let source = std::error::Error::source(e);
    match source.and_then(|s| s.downcast_ref::<reauth_reqwest::Error>()) {
        Some(
            reauth_reqwest::Error::Endpoint { status, .. }
            | reauth_reqwest::Error::InvalidResponse { status, .. },
        ) => status.as_u16(),
        _ => 0,
    }
}

#[async_trait::async_trait(?Send)]
impl Refresher for PageRefresher {
    async fn refresh(&self, current: &TokenSet) -> Result<TokenSet, RefreshError> {
        let result = self.json.refresh(current).await;
        let status = result.as_ref().map_or_else(status_of, |_| 200);
        self.log.record("POST", "/auth/refresh", status);
        result
    }

    async fn revoke(&self, tokens: &TokenSet) -> Result<(), RefreshError> {
        let Some(refresh) = &tokens.refresh_token else {
            return Ok(());
        };
        let body = serde_json::json!({ "refresh_token": refresh.secret() });
        let result = self
            .http
            .post(self.logout_url.clone())
            .json(&body)
            .send()
            .await;
        let status = result.as_ref().map_or(0, |r| r.status().as_u16());
        self.log.record("POST", "/auth/logout", status);
        result.map(drop).map_err(RefreshError::transient)
    }
}
