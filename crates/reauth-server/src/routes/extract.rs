//! Body extraction with our own limits and errors: the content type is
//! checked, the body is read up to `max_body_bytes`, and every failure is an
//! RFC 6749 [`AppError`] (never axum's plain-text rejections).

use std::collections::HashMap;

use axum::body::Bytes;
use axum::body::{Body, to_bytes};
use axum::http::{HeaderMap, header};
use serde::de::DeserializeOwned;

use crate::app_error::AppError;

fn content_type_is(headers: &HeaderMap, expected: &str) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case(expected))
}

async fn read_body(body: Body, limit: usize) -> Result<Bytes, AppError> {
    to_bytes(body, limit).await.map_err(|e| {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        while let Some(s) = source {
            if s.is::<http_body_util::LengthLimitError>() {
                return AppError::PayloadTooLarge;
            }
            if s.is::<tower_http::timeout::TimeoutError>() {
                return AppError::RequestTimeout;
            }
            source = s.source();
        }
        AppError::InvalidRequest("could not read the request body")
    })
}

/// Most parameters in one form body.
const MAX_PARAMS: usize = 32;

/// Decodes one `application/x-www-form-urlencoded` component strictly: `+` is
/// a space, `%XX` a byte, and the bytes must be UTF-8 (no silent U+FFFD).
fn decode(component: &[u8]) -> Result<String, AppError> {
    let plus_as_space: Vec<u8> = component
        .iter()
        .map(|&b| if b == b'+' { b' ' } else { b })
        .collect();
    percent_encoding::percent_decode(&plus_as_space)
        .decode_utf8()
        .map(std::borrow::Cow::into_owned)
        .map_err(|_| AppError::InvalidParameter {
            name: "form body",
            why: "not UTF-8",
        })
}

/// Parses an `application/x-www-form-urlencoded` body. Repeated parameters
/// are refused (RFC 6749 §3.2); empty values count as absent; every name and
/// value is checked ([`validate`](super::validate)).
pub(crate) async fn form(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<HashMap<String, String>, AppError> {
    if !content_type_is(headers, "application/x-www-form-urlencoded") {
        return Err(AppError::InvalidRequest(
            "Content-Type must be application/x-www-form-urlencoded",
        ));
    }
    let bytes = read_body(body, limit).await?;
    parameters(&bytes)
}

/// Parses the query string of a `GET` with the same rules as [`form`].
pub(crate) fn query(
    uri: &axum::http::Uri,
    limit: usize,
) -> Result<HashMap<String, String>, AppError> {
    let query = uri.query().unwrap_or("");
    if query.len() > limit {
        return Err(AppError::PayloadTooLarge);
    }
    parameters(query.as_bytes())
}

/// `key=value&…`, URL-decoded; empty values count as absent, a repeated
/// parameter is refused (RFC 6749 §3.1, §3.2).
fn parameters(bytes: &[u8]) -> Result<HashMap<String, String>, AppError> {
    let mut params = HashMap::new();
    for pair in bytes.split(|&b| b == b'&').filter(|p| !p.is_empty()) {
        let (key, value) = match pair.iter().position(|&b| b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &[][..]),
        };
        let (key, value) = (decode(key)?, decode(value)?);
        super::validate::name(&key)?;
        super::validate::param(&key, &value)?;
        if value.is_empty() {
            continue;
        }
        if params.len() >= MAX_PARAMS {
            return Err(AppError::InvalidRequest("too many parameters"));
        }
        if params.insert(key, value).is_some() {
            return Err(AppError::InvalidRequest("repeated parameter"));
        }
    }
    Ok(params)
}

/// Parses an `application/json` body into `T`.
pub(crate) async fn json<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<T, AppError> {
    if !content_type_is(headers, "application/json") {
        return Err(AppError::InvalidRequest(
            "Content-Type must be application/json",
        ));
    }
    let bytes = read_body(body, limit).await?;
    serde_json::from_slice(&bytes).map_err(|_| AppError::InvalidRequest("malformed JSON body"))
}

/// Whether the request has a body (by `Content-Length` or `Transfer-Encoding`).
pub(crate) fn has_body(headers: &HeaderMap) -> bool {
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() != "0")
}

/// The client's IP address (known when served by this crate's listener).
pub(crate) fn peer(parts: &axum::http::request::Parts) -> Option<std::net::IpAddr> {
    parts
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|info| info.0.ip())
}

/// The bearer token of the `Authorization` header, if any. A header of
/// another scheme (`Basic`, `Digest`, …) carries no bearer credentials:
/// `None`, so the caller answers the bare challenge of RFC 6750 §3.1.
///
/// # Errors
///
/// `invalid_token` for a header that is not text, or a `Bearer` scheme
/// without a token.
pub(crate) fn bearer(headers: &HeaderMap) -> Result<Option<&str>, AppError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| AppError::InvalidToken("malformed Authorization header"))?;
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Ok(None);
    }
    match token.trim() {
        "" => Err(AppError::InvalidToken("expected a Bearer token")),
        token => Ok(Some(token)),
    }
}
