//! TLS for the server's own listener (rustls, ring provider).
//!
//! [`TlsConfig`] holds a certificate chain and private key read from PEM
//! files; [`Server::serve_tls`](crate::Server::serve_tls) runs each TLS
//! handshake in its connection's own task, under the connection cap and
//! bounded by the header read timeout (the serving function of `serve.rs`),
//! so a client that stalls its handshake never holds up the next connection.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::error::ServerError;

/// A server certificate chain and its private key, ready to serve TLS.
///
/// ```no_run
/// # fn f() -> Result<(), reauth_server::ServerError> {
/// let tls = reauth_server::TlsConfig::from_pem_files(
///     "/etc/reauth/cert.pem".as_ref(),
///     "/etc/reauth/key.pem".as_ref(),
/// )?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct TlsConfig {
    config: Arc<rustls::ServerConfig>,
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConfig").finish_non_exhaustive()
    }
}

impl TlsConfig {
    /// Reads a PEM certificate chain (leaf first) and a PEM private key
    /// (PKCS#8, PKCS#1 or SEC1) from files.
    ///
    /// # Errors
    ///
    /// [`ServerError::Tls`] (naming the file) when a file cannot be read,
    /// holds no certificate or key, or the key does not fit the certificate.
    pub fn from_pem_files(cert_chain: &Path, private_key: &Path) -> Result<Self, ServerError> {
        let tls_error = |path: &Path| {
            let path = path.to_owned();
            move |reason: String| ServerError::Tls {
                path: Some(path),
                reason,
            }
        };
        let read = |path: &Path| std::fs::read(path).map_err(|e| tls_error(path)(e.to_string()));
        let certs = certificates(&read(cert_chain)?).map_err(tls_error(cert_chain))?;
        let key = key(&read(private_key)?).map_err(tls_error(private_key))?;
        Self::build(certs, key)
    }

    /// Like [`from_pem_files`](Self::from_pem_files), from PEM text already
    /// in memory (a secret store, say).
    ///
    /// # Errors
    ///
    /// [`ServerError::Tls`] when there is no certificate or key, or the key
    /// does not fit the certificate.
    pub fn from_pem(cert_chain: &[u8], private_key: &[u8]) -> Result<Self, ServerError> {
        let tls_error = |reason: String| ServerError::Tls { path: None, reason };
        let certs = certificates(cert_chain).map_err(tls_error)?;
        let key = key(private_key).map_err(tls_error)?;
        Self::build(certs, key)
    }

    fn build(
        cert_chain: Vec<CertificateDer<'static>>,
        private_key: PrivateKeyDer<'static>,
    ) -> Result<Self, ServerError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .and_then(|b| {
                b.with_no_client_auth()
                    .with_single_cert(cert_chain, private_key)
            })
            .map_err(|e| ServerError::Tls {
                path: None,
                reason: e.to_string(),
            })?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            config: Arc::new(config),
        })
    }

    pub(crate) fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.config.clone())
    }
}

/// Every certificate of a PEM text; at least one.
fn certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_reason(&e))?;
    if certs.is_empty() {
        return Err("no PEM certificate in it".to_owned());
    }
    Ok(certs)
}

/// The private key of a PEM text.
fn key(pem: &[u8]) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| pem_reason(&e))
}

fn pem_reason(e: &rustls::pki_types::pem::Error) -> String {
    use rustls::pki_types::pem::Error;
    match e {
        Error::Io(io) => io.to_string(),
        Error::NoItemsFound => "no PEM item of the expected kind in it".to_owned(),
        other => format!("not valid PEM: {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn o5_pem_certificates_and_keys_are_checked() {
        let one = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let other = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let cert = one.cert.pem();
        let key = one.signing_key.serialize_pem();
        assert!(TlsConfig::from_pem(cert.as_bytes(), key.as_bytes()).is_ok());
        let refused =
            |cert: &str, key: &str| match TlsConfig::from_pem(cert.as_bytes(), key.as_bytes()) {
                Err(ServerError::Tls { reason, .. }) => reason,
                other => panic!("expected a TLS error, got {other:?}"),
            };
        assert!(refused("garbage", &key).contains("no PEM certificate"));
        assert!(!refused(&cert, "garbage").is_empty());
        // A key that does not belong to the certificate.
        let mismatched = refused(&cert, &other.signing_key.serialize_pem());
        assert!(!mismatched.is_empty());
        // The key where the certificate should be, and vice versa.
        assert!(refused(&key, &cert).contains("no PEM certificate"));
    }
}
