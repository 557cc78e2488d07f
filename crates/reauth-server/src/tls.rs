//! TLS for the server's own listener (rustls, ring provider).
//!
//! [`TlsConfig`] holds a certificate chain and private key read from PEM
//! files; [`Server::serve_tls`](crate::Server::serve_tls) serves through a
//! [`TlsListener`], which accepts TCP connections and runs each TLS handshake
//! in a task of its own (bounded in time and number), so a client that stalls
//! its handshake never holds up the next connection.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::error::ServerError;

/// How long a client may take to complete its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshakes in progress at once; beyond this, new connections wait in the
/// kernel's accept queue.
const MAX_HANDSHAKES: usize = 1024;

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

/// A TCP listener whose connections are TLS streams (an axum
/// [`Listener`](axum::serve::Listener)).
///
/// Handshakes run concurrently in tasks owned by the listener (dropped with
/// it), each bounded by [`HANDSHAKE_TIMEOUT`]; failed handshakes are logged
/// at debug level and never surface to the server.
pub(crate) struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    handshakes: JoinSet<Option<(TlsStream<TcpStream>, SocketAddr)>>,
}

impl TlsListener {
    pub(crate) fn new(tcp: TcpListener, tls: &TlsConfig) -> Self {
        Self {
            tcp,
            acceptor: tls.acceptor(),
            handshakes: JoinSet::new(),
        }
    }

    fn start_handshake(&mut self, tcp: TcpStream, peer: SocketAddr) {
        let acceptor = self.acceptor.clone();
        self.handshakes.spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => Some((stream, peer)),
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    None
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    None
                }
            }
        });
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    // Cancel safe: `TcpListener::accept` and `JoinSet::join_next` are.
    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let room = self.handshakes.len() < MAX_HANDSHAKES;
            let busy = !self.handshakes.is_empty();
            tokio::select! {
                accepted = self.tcp.accept(), if room => match accepted {
                    Ok((tcp, peer)) => self.start_handshake(tcp, peer),
                    Err(e) => accept_error(e).await,
                },
                Some(done) = self.handshakes.join_next(), if busy => {
                    if let Ok(Some(connection)) = done {
                        return connection;
                    }
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// As axum does for plain TCP: a per-connection error is ignored; anything
/// else (e.g. out of file descriptors) is logged and retried after a second.
async fn accept_error(e: io::Error) {
    use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "accept failed");
    tokio::time::sleep(Duration::from_secs(1)).await;
}
