//! OAuth client authentication (RFC 6749 §2.3.1): HTTP Basic with URL-decoded
//! credentials, or `client_id` / `client_secret` in the form body. Secrets are
//! checked as HMAC-SHA256 under the server pepper with a constant-time compare.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use http::HeaderMap;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::app_error::AppError;
use crate::secret::Secret;

/// Client credentials presented with a request.
#[derive(Debug)]
pub(crate) struct PresentedClient {
    pub(crate) client_id: String,
    pub(crate) client_secret: Option<Secret>,
}

/// The keyed hash of a client secret, as stored (hex).
pub(crate) fn secret_mac(pepper: &[u8; 32], secret: &str) -> String {
    #[allow(clippy::expect_used)]
    let mut mac = Hmac::<Sha256>::new_from_slice(pepper).expect("HMAC takes any key length");
    mac.update(b"reauth/client-secret/v1");
    mac.update(secret.as_bytes());
    crate::util::hex(&mac.finalize().into_bytes())
}

/// Constant-time check of `secret` against the stored MAC.
pub(crate) fn secret_matches(pepper: &[u8; 32], secret: &str, stored_mac: &str) -> bool {
    let computed = secret_mac(pepper, secret);
    computed.as_bytes().ct_eq(stored_mac.as_bytes()).into()
}

/// Form-URL-decodes a Basic credential (RFC 6749 §2.3.1), strictly: bytes
/// that are not UTF-8 are refused, not replaced.
fn url_decode(s: &str, name: &'static str) -> Result<String, AppError> {
    let plus_as_space = s.replace('+', " ");
    percent_encoding::percent_decode_str(&plus_as_space)
        .decode_utf8()
        .map(std::borrow::Cow::into_owned)
        .map_err(|_| AppError::InvalidParameter {
            name,
            why: "not UTF-8",
        })
}

/// Reads client credentials from the `Authorization: Basic` header or the
/// form parameters. Using both methods at once is `invalid_request`; a
/// malformed Basic header is `invalid_client`.
pub(crate) fn presented_client(
    headers: &HeaderMap,
    form_id: Option<&str>,
    form_secret: Option<&str>,
) -> Result<Option<PresentedClient>, AppError> {
    if let Some(value) = headers.get(http::header::AUTHORIZATION) {
        let value = value.to_str().map_err(|_| AppError::InvalidClient)?;
        let (scheme, rest) = value.split_once(' ').ok_or(AppError::InvalidClient)?;
        if scheme.eq_ignore_ascii_case("basic") {
            if form_secret.is_some() {
                return Err(AppError::InvalidRequest(
                    "more than one client authentication method",
                ));
            }
            let decoded = STANDARD
                .decode(rest.trim())
                .map_err(|_| AppError::InvalidClient)?;
            let decoded = String::from_utf8(decoded).map_err(|_| AppError::InvalidClient)?;
            let (id, secret) = decoded.split_once(':').ok_or(AppError::InvalidClient)?;
            let client_id = url_decode(id, "client_id")?;
            if form_id.is_some_and(|f| f != client_id) {
                return Err(AppError::InvalidRequest("client_id does not match"));
            }
            return Ok(Some(PresentedClient {
                client_id,
                client_secret: Some(Secret::new(url_decode(secret, "client_secret")?)),
            }));
        }
    }
    Ok(form_id.map(|id| PresentedClient {
        client_id: id.to_owned(),
        client_secret: form_secret.map(Secret::new),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_url_decoded() {
        let mut headers = HeaderMap::new();
        let raw = STANDARD.encode("my%20client:s%3Acret+x");
        headers.insert(
            http::header::AUTHORIZATION,
            format!("Basic {raw}").parse().unwrap(),
        );
        let c = presented_client(&headers, None, None).unwrap().unwrap();
        assert_eq!(c.client_id, "my client");
        assert_eq!(c.client_secret.unwrap().expose(), "s:cret x");
    }

    #[test]
    fn secret_mac_compare() {
        let pepper = [3u8; 32];
        let stored = secret_mac(&pepper, "s3cret");
        assert!(secret_matches(&pepper, "s3cret", &stored));
        assert!(!secret_matches(&pepper, "s3creT", &stored));
        assert!(!secret_matches(&[4u8; 32], "s3cret", &stored));
    }
}
