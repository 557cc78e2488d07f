//! Serving connections with the limits of DESIGN.md S13: whatever clients
//! do, a connection cap holds, slow or idle clients are dropped, and
//! shutdown ends within a deadline.
//!
//! Built from hyper, hyper-util and tower-http facilities:
//!
//! | limit | facility |
//! |---|---|
//! | header read timeout (also closes idle and idle keep-alive connections) | hyper `http1::Builder::header_read_timeout` with hyper-util's `TokioTimer` (HTTP/1.1; see below) |
//! | body read timeout (longest pause between two chunks) | tower-http `RequestBodyTimeoutLayer` |
//! | whole-request timeout → `408` | tower-http `TimeoutLayer` |
//! | write timeout (a client that stops reading its response) | `tokio-io-timeout`'s `TimeoutStream`: a write that makes no progress for `write_timeout` closes the connection |
//! | maximum connection age | at `max_connection_age` hyper's per-connection graceful shutdown (the request in flight finishes, then the connection closes); one still open `shutdown_deadline` later is dropped |
//! | connection cap | a semaphore permit per accepted connection: at the cap the accept loop waits, new clients queue in the listen backlog |
//! | file descriptors | the `RLIMIT_NOFILE` soft limit is raised to the hard limit (the `rlimit` crate) and the connection cap kept below it, with headroom for the database, the listener and the runtime; an accept error (`EMFILE`, …) is logged at most 10 times a second and the loop backs off and keeps serving |
//! | graceful shutdown with a deadline | the same per-connection graceful shutdown for every connection (idle ones close at once, in-flight requests finish), then every connection still open is aborted |
//!
//! A handshake (TLS) runs inside the connection's task, under the cap and
//! the header read timeout, so a slow handshake holds neither the accept
//! loop nor a slot for long.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::response::{IntoResponse, Response};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tower::{ServiceBuilder, ServiceExt as _};
use tower_http::timeout::{RequestBodyTimeoutLayer, TimeoutLayer};

use crate::app_error::AppError;
use crate::config::Limits;

/// A `408` from the request timeout gets an RFC 6749 body.
fn render_timeout(response: Response) -> Response {
    if response.status() == http::StatusCode::REQUEST_TIMEOUT
        && response.headers().get(http::header::CONTENT_TYPE).is_none()
    {
        return AppError::RequestTimeout.into_response();
    }
    response
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; answers the soft limit
/// in force afterwards (`None` where it cannot be read).
pub(crate) fn raise_fd_limit() -> Option<u64> {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => Some(limit),
        Err(e) => {
            tracing::debug!(error = %e, "could not raise the file-descriptor limit");
            rlimit::getrlimit(rlimit::Resource::NOFILE)
                .ok()
                .map(|(soft, _)| soft)
        }
    }
}

/// The connection cap: the configured one, but below the file-descriptor
/// limit by a headroom (a quarter of it, between 16 and 256) for the
/// database, the listeners, the runtime and files. At least 1.
pub(crate) fn connection_cap(configured: usize, fd_limit: Option<u64>) -> usize {
    let configured = configured.max(1);
    let Some(limit) = fd_limit else {
        return configured;
    };
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let headroom = (limit / 4).clamp(16, 256);
    configured.min(limit.saturating_sub(headroom)).max(1)
}

/// Runs one connection until it ends, it reaches `max_age`, or `stopped`
/// turns true; in the latter two cases it is asked to close after its
/// request in flight (hyper's graceful shutdown) and dropped if it has not
/// within `grace`.
async fn drive<C>(
    connection: C,
    max_age: Duration,
    grace: Duration,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) -> Result<(), hyper::Error>
where
    C: Future<Output = Result<(), hyper::Error>> + GracefulConnection,
{
    tokio::pin!(connection);
    tokio::select! {
        done = connection.as_mut() => return done,
        () = tokio::time::sleep(max_age) => {}
        _ = stopped.wait_for(|stop| *stop) => {}
    }
    connection.as_mut().graceful_shutdown();
    tokio::time::timeout(grace, connection)
        .await
        .unwrap_or(Ok(()))
}

/// A hyper connection that can be asked to close after its request in flight.
trait GracefulConnection {
    fn graceful_shutdown(self: std::pin::Pin<&mut Self>);
}

impl<I, S> GracefulConnection for http1::Connection<I, S>
where
    S: hyper::service::HttpService<Incoming>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    S::ResBody: hyper::body::Body + 'static,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn graceful_shutdown(self: std::pin::Pin<&mut Self>) {
        http1::Connection::graceful_shutdown(self);
    }
}

/// Serves `router` on `listener` until `shutdown` completes, then drains
/// within `limits.shutdown_deadline`. Each accepted stream goes through
/// `handshake` (identity for plain TCP, a TLS acceptor otherwise) first.
pub(crate) async fn serve<H, Fut, Io>(
    router: Router,
    listener: TcpListener,
    limits: &Limits,
    handshake: H,
    shutdown: impl Future<Output = ()> + Send,
) where
    H: Fn(TcpStream) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = std::io::Result<Io>> + Send + 'static,
    Io: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = ServiceBuilder::new()
        .map_response(render_timeout)
        .layer(TimeoutLayer::with_status_code(
            http::StatusCode::REQUEST_TIMEOUT,
            limits.request_timeout,
        ))
        .layer(RequestBodyTimeoutLayer::new(limits.body_read_timeout))
        .service(router);
    // HTTP/1.1 only: hyper-util's auto (HTTP/1 + HTTP/2) builder waits for
    // the first bytes to pick a version before any timeout applies, so a
    // client that connects and sends nothing would hold its slot forever.
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let builder = Arc::new(builder);
    let fd_limit = raise_fd_limit();
    let cap = connection_cap(limits.max_connections, fd_limit);
    if cap < limits.max_connections {
        tracing::info!(
            configured = limits.max_connections,
            cap,
            fd_limit,
            "connection cap lowered below the file-descriptor limit"
        );
    }
    let slots = Arc::new(Semaphore::new(cap));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut connections = JoinSet::new();
    let handshake_timeout = limits.header_read_timeout;
    let (write_timeout, max_age, grace) = (
        limits.write_timeout,
        limits.max_connection_age,
        limits.shutdown_deadline,
    );
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: back off a
                    // little and keep serving.
                    crate::log_budget::limited!(
                        crate::log_budget::LogBudget::per_request(),
                        |suppressed| tracing::warn!(error = %e, suppressed, "accept failed")
                    );
                    crate::metrics::accept_failed();
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        while connections.try_join_next().is_some() {}
        let _ = stream.set_nodelay(true);
        let service = service
            .clone()
            .map_request(move |mut request: http::Request<Incoming>| {
                request
                    .extensions_mut()
                    .insert(ConnectInfo::<SocketAddr>(peer));
                request
            });
        let stopped = stopped.clone();
        let (builder, handshake) = (builder.clone(), handshake.clone());
        connections.spawn(async move {
            let _slot = slot;
            let io = match tokio::time::timeout(handshake_timeout, handshake(stream)).await {
                Ok(Ok(io)) => io,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "handshake timed out");
                    return;
                }
            };
            let mut io = tokio_io_timeout::TimeoutStream::new(io);
            io.set_write_timeout(Some(write_timeout));
            let connection = builder.serve_connection(
                TokioIo::new(Box::pin(io)),
                TowerToHyperService::new(service),
            );
            if let Err(e) = drive(connection, max_age, grace, stopped).await {
                tracing::debug!(%peer, error = %e, "connection closed");
            }
        });
    }
    drop(listener);
    let open = connections.len();
    let _ = stop.send(true);
    let drained = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(limits.shutdown_deadline, drained)
        .await
        .is_err()
    {
        tracing::warn!(
            deadline = ?limits.shutdown_deadline,
            "connections still open at the shutdown deadline are closed"
        );
    } else if open > 0 {
        tracing::debug!(open, "connections drained");
    }
    connections.abort_all();
    while connections.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s13_the_connection_cap_stays_below_the_descriptor_limit() {
        assert_eq!(connection_cap(1024, Some(1_048_576)), 1024);
        assert_eq!(connection_cap(1024, Some(1024)), 768);
        assert_eq!(connection_cap(1024, Some(4096)), 1024);
        assert_eq!(connection_cap(100, Some(64)), 48);
        assert_eq!(connection_cap(100, Some(8)), 1);
        assert_eq!(connection_cap(0, None), 1);
        assert_eq!(connection_cap(100, None), 100);
    }

    #[test]
    fn s13_the_descriptor_soft_limit_is_raised_to_the_hard_limit() {
        let (soft, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap();
        // Lower the soft limit a little (this test binary needs few files),
        // then raise it as serving does.
        let lowered = soft.min(hard).min(512);
        rlimit::setrlimit(rlimit::Resource::NOFILE, lowered, hard).unwrap();
        assert_eq!(raise_fd_limit(), Some(hard));
        assert_eq!(
            rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap(),
            (hard, hard)
        );
    }
}
