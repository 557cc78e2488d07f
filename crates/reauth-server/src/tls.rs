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
    /// (PKCS#8, PKCS#1 or SEC1).
    ///
    /// # Errors
    ///
    /// [`ServerError::Tls`] when a file cannot be read, holds no certificate
    /// or key, or the key does not fit the certificate.
    pub fn from_pem_files(cert_chain: &Path, private_key: &Path) -> Result<Self, ServerError> {
        let tls_error = |path: &Path, reason: String| ServerError::Tls {
            path: Some(path.to_owned()),
            reason,
        };
        let certs = CertificateDer::pem_file_iter(cert_chain)
            .map_err(|e| tls_error(cert_chain, pem_reason(&e)))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| tls_error(cert_chain, pem_reason(&e)))?;
        if certs.is_empty() {
            return Err(tls_error(cert_chain, "no PEM certificate in it".to_owned()));
        }
        let key = PrivateKeyDer::from_pem_file(private_key)
            .map_err(|e| tls_error(private_key, pem_reason(&e)))?;
        Self::from_der(certs, key)
    }

    /// Builds the configuration from DER certificates (leaf first) and key.
    ///
    /// # Errors
    ///
    /// [`ServerError::Tls`] when the key does not fit the certificate or is
    /// of an unsupported kind.
    pub fn from_der(
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

fn pem_reason(e: &rustls::pki_types::pem::Error) -> String {
    use rustls::pki_types::pem::Error;
    match e {
        Error::Io(io) => io.to_string(),
        Error::NoItemsFound => "no PEM item of the expected kind in it".to_owned(),
        other => format!("not valid PEM: {other:?}"),
    }
}
