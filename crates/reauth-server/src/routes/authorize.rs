//! `/oauth/authorize`: the authorization endpoint of the authorization-code
//! grant (RFC 6749 §4.1, PKCE S256 required).
//!
//! `GET` checks the request and shows a sign-in form; `POST` (the form)
//! checks it again with the user's credentials — under the same failed-login
//! limiter as every login — and redirects to the client with a one-time
//! code, the `state` and the `iss` (RFC 9207; errors redirected to the
//! client carry `iss` too). No browser session is kept:
//! every authorization asks for the password. Errors about the client or
//! its redirect URI are shown on the page and never redirected (RFC 6749
//! §4.1.2.1); every other error is redirected to the client.
//!
//! The page is plain HTML (no script), never framed, never cached; its form
//! posts only to this server (`form-action`), and a POST another site made
//! the browser send is refused (`Sec-Fetch-Site`, `Origin`).

use std::collections::HashMap;
use std::fmt::Write as _;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
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
        Err(e) => refusal(state.issuer(), e),
    }
}

/// `POST /oauth/authorize`: the sign-in form.
pub(super) async fn submit(State(state): State<AppStateRef>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    if is_cross_site(&parts.headers, state.issuer()) {
        return page(
            StatusCode::FORBIDDEN,
            "Request refused",
            "The sign-in form can only be sent from this server's own page.",
        );
    }
    let params = match extract::form(&parts.headers, body, state.config.max_body_bytes).await {
        Ok(params) => params,
        Err(e) => return page(e.status(), "Bad request", &escape(&e.to_string())),
    };
    let checked = match state.check_authorization_request(&params).await {
        Ok(checked) => checked,
        Err(e) => return refusal(state.issuer(), e),
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

/// A form POST another site made the browser send (login CSRF: signing the
/// victim in as the attacker). Browsers say where a request comes from:
/// `Sec-Fetch-Site` (anything but `same-origin`, or `none` for a request
/// the user typed, is refused) and `Origin` (it must be the issuer's origin
/// or the origin the request was sent to, per its `Host`; the opaque origin
/// `null` is refused). A client sending neither header is not a browser
/// another site can drive, and passes.
fn is_cross_site(headers: &HeaderMap, issuer: &str) -> bool {
    if let Some(site) = headers.get("sec-fetch-site")
        && !matches!(site.as_bytes(), b"same-origin" | b"none")
    {
        return true;
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return false;
    };
    let Ok(origin) = origin.to_str() else {
        return true;
    };
    let Ok(parsed) = url::Url::parse(origin) else {
        return true;
    };
    let same_as_issuer = url::Url::parse(issuer)
        .is_ok_and(|issuer| issuer.origin() == parsed.origin() && parsed.origin().is_tuple());
    if same_as_issuer {
        return false;
    }
    let authority = origin
        .split_once("://")
        .map_or("", |(_, authority)| authority);
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    !(parsed.origin().is_tuple() && host.is_some_and(|host| host.eq_ignore_ascii_case(authority)))
}

/// The response to a refused authorization request. A redirected error
/// carries `iss` like a success does (RFC 9207 §2: "in all authorization
/// responses, including error responses"), so a client talking to several
/// servers can tell who answered.
fn refusal(issuer: &str, e: AuthorizeError) -> Response {
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
            let mut answer = vec![
                ("error", error),
                ("error_description", description),
                ("iss", issuer),
            ];
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
    let mut response = page(status, "Sign in", &body);
    // The form may post only here; the answer to it is a redirect to the
    // client, which browsers check against `form-action` too — so the
    // client's origin (or private-use scheme) is the one other target.
    let target = form_action_source(&checked.redirect_uri);
    let csp = format!("{CSP_BASE} form-action 'self'{target}");
    if let Ok(csp) = HeaderValue::from_str(&csp) {
        response
            .headers_mut()
            .insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    response
}

/// The policy of every page, less `form-action`.
const CSP_BASE: &str =
    "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none';";

/// ` https://app.example:8443` for a redirect URI on the web, ` com.example.app:`
/// for a private-use scheme; empty for anything unexpected (then only
/// `'self'`).
fn form_action_source(redirect_uri: &str) -> String {
    let Ok(url) = url::Url::parse(redirect_uri) else {
        return String::new();
    };
    let source = match url.origin() {
        origin @ url::Origin::Tuple(..) => origin.ascii_serialization(),
        url::Origin::Opaque(_) => format!("{}:", url.scheme()),
    };
    if source
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b":/.-+[]".contains(&b))
    {
        format!(" {source}")
    } else {
        String::new()
    }
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
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
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
    use super::{escape, form_action_source};

    #[test]
    fn form_action_names_the_clients_origin_or_scheme() {
        assert_eq!(
            form_action_source("https://app.example:8443/cb?x=1"),
            " https://app.example:8443"
        );
        assert_eq!(
            form_action_source("http://127.0.0.1:53682/callback"),
            " http://127.0.0.1:53682"
        );
        assert_eq!(
            form_action_source("com.example.app:/callback"),
            " com.example.app:"
        );
    }

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            escape(r#"<script>"x" & 'y'</script>"#),
            "&lt;script&gt;&quot;x&quot; &amp; &#39;y&#39;&lt;/script&gt;"
        );
    }
}
