//! `/oauth/authorize`: the authorization endpoint of the authorization-code
//! grant (RFC 6749 §4.1, PKCE S256 required).
//!
//! `GET` checks the request and shows a sign-in form; `POST` (the form)
//! checks it again with the user's credentials — under the same failed-login
//! limiter as every login — and redirects to the client with a one-time
//! code, the `state` and the `iss` (RFC 9207). No browser session is kept:
//! every authorization asks for the password. Errors about the client or
//! its redirect URI are shown on the page and never redirected (RFC 6749
//! §4.1.2.1); every other error is redirected to the client.
//!
//! The page is plain HTML (no script), never framed, never cached.

use std::collections::HashMap;
use std::fmt::Write as _;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::{AppStateRef, extract};
use crate::app_error::AppError;
use crate::engine::{AuthorizationRequest, AuthorizeError};

/// The parameters the form carries along from the request.
const CARRIED: [&str; 7] = [
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
];

/// `GET /oauth/authorize`.
pub(super) async fn show(State(state): State<AppStateRef>, request: Request) -> Response {
    let params = match extract::query(request.uri(), state.config.max_body_bytes) {
        Ok(params) => params,
        Err(e) => return page(e.status(), "Bad request", &escape(&e.to_string())),
    };
    match state.check_authorization_request(&params).await {
        Ok(checked) => sign_in_page(StatusCode::OK, &checked, &params, None),
        Err(e) => refusal(e),
    }
}

/// `POST /oauth/authorize`: the sign-in form.
pub(super) async fn submit(State(state): State<AppStateRef>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let params = match extract::form(&parts.headers, body, state.config.max_body_bytes).await {
        Ok(params) => params,
        Err(e) => return page(e.status(), "Bad request", &escape(&e.to_string())),
    };
    let checked = match state.check_authorization_request(&params).await {
        Ok(checked) => checked,
        Err(e) => return refusal(e),
    };
    let (Some(username), Some(password)) = (params.get("username"), params.get("password")) else {
        let note = "Enter your username and password.";
        return sign_in_page(StatusCode::BAD_REQUEST, &checked, &params, Some(note));
    };
    let client_id = checked.client.client_id.as_str();
    match state
        .check_password(
            username,
            password.clone(),
            Some(client_id),
            extract::peer(&parts),
        )
        .await
    {
        Ok(()) => {}
        Err(AppError::InvalidGrant(_)) => {
            let note = "Wrong username or password.";
            return sign_in_page(StatusCode::UNAUTHORIZED, &checked, &params, Some(note));
        }
        Err(e) => {
            let status = e.status();
            let mut response = page(
                status,
                "Try again later",
                "The server cannot sign you in right now.",
            );
            if let Some(retry_after) = e.into_response().headers().get(header::RETRY_AFTER) {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, retry_after.clone());
            }
            return response;
        }
    }
    let code = state.issue_code(&checked, username);
    let mut answer = vec![("code", code.as_str()), ("iss", state.issuer())];
    if let Some(s) = &checked.state {
        answer.push(("state", s));
    }
    redirect(&checked.redirect_uri, &answer)
}

/// The response to a refused authorization request.
fn refusal(e: AuthorizeError) -> Response {
    match e {
        AuthorizeError::Show(why) => page(
            StatusCode::BAD_REQUEST,
            "This sign-in link is not valid",
            &escape(why),
        ),
        AuthorizeError::Redirect {
            redirect_uri,
            state,
            error,
            description,
        } => {
            let mut answer = vec![("error", error), ("error_description", description)];
            if let Some(s) = &state {
                answer.push(("state", s));
            }
            redirect(&redirect_uri, &answer)
        }
        AuthorizeError::Server(e) => {
            let status = e.status();
            if status.is_server_error() {
                // Logged (with its cause) by AppError's rendering.
                let _ = e.into_response();
            }
            page(
                status,
                "Try again later",
                "The server cannot sign you in right now.",
            )
        }
    }
}

/// `303 See Other` to `uri` with `params` added to its query.
fn redirect(uri: &str, params: &[(&str, &str)]) -> Response {
    let Ok(mut url) = url::Url::parse(uri) else {
        return page(StatusCode::BAD_REQUEST, "Bad redirect URI", "");
    };
    {
        let mut query = url.query_pairs_mut();
        for (k, v) in params {
            query.append_pair(k, v);
        }
    }
    let mut response = StatusCode::SEE_OTHER.into_response();
    let headers = response.headers_mut();
    if let Ok(location) = HeaderValue::from_str(url.as_str()) {
        headers.insert(header::LOCATION, location);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

fn sign_in_page(
    status: StatusCode,
    checked: &AuthorizationRequest,
    params: &HashMap<String, String>,
    note: Option<&str>,
) -> Response {
    let mut body = String::new();
    let client = escape(&checked.client.client_id);
    let _ = write!(
        body,
        "<p><strong>{client}</strong> asks to use your account"
    );
    match &checked.scope {
        Some(scope) => {
            body.push_str(" for:</p><ul>");
            for s in scope.split(' ') {
                let _ = write!(body, "<li><code>{}</code></li>", escape(s));
            }
            body.push_str("</ul>");
        }
        None => body.push_str(".</p>"),
    }
    if let Some(note) = note {
        let _ = write!(
            body,
            "<p class=\"note\" role=\"alert\">{}</p>",
            escape(note)
        );
    }
    body.push_str("<form method=\"post\" action=\"/oauth/authorize\">");
    for name in CARRIED {
        if let Some(value) = params.get(name) {
            let _ = write!(
                body,
                "<input type=\"hidden\" name=\"{name}\" value=\"{}\">",
                escape(value)
            );
        }
    }
    let username = params.get("username").map_or(String::new(), |u| escape(u));
    let _ = write!(
        body,
        "<label>Username <input name=\"username\" autocomplete=\"username\" required value=\"{username}\"></label>\
         <label>Password <input name=\"password\" type=\"password\" autocomplete=\"current-password\" required></label>\
         <button type=\"submit\">Sign in</button></form>"
    );
    page(status, "Sign in", &body)
}

/// A whole HTML page; `body` is HTML already escaped.
fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} · reauth</title><style>\
         body{{font-family:system-ui,sans-serif;max-width:24rem;margin:4rem auto;padding:0 1rem;color:#222}}\
         label{{display:block;margin:.8rem 0}}input{{display:block;width:100%;padding:.4rem;box-sizing:border-box}}\
         button{{margin-top:.8rem;padding:.5rem 1.2rem}}.note{{color:#a00}}\
         </style></head><body><h1>{title}</h1>{body}</body></html>",
        title = escape(title)
    );
    let mut response = (status, html).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// HTML-escapes text for element content and quoted attributes.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            escape(r#"<script>"x" & 'y'</script>"#),
            "&lt;script&gt;&quot;x&quot; &amp; &#39;y&#39;&lt;/script&gt;"
        );
    }
}
