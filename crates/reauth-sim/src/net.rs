//! The two small protocols of the simulated network, one JSON line each way
//! per connection over turmoil TCP: the token store's (lease, compare-and-set)
//! and the replicas' (an HTTP request handed to the real axum router).

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use reauth::coord::{Coordinator, Lease};
use reauth::{Stamp, StoreError, TokenSet, TokenStore};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use turmoil::net::{TcpListener, TcpStream};

use crate::pause::Pause;

/// The port every simulated service listens on.
pub(crate) const PORT: u16 = 7000;

/// One request, one answer, within `limit` of simulated time.
pub(crate) async fn rpc<Q: Serialize, A: DeserializeOwned>(
    host: &str,
    req: &Q,
    limit: Duration,
) -> Result<A, String> {
    let call = async {
        let stream = TcpStream::connect((host, PORT))
            .await
            .map_err(|e| format!("connect {host}: {e}"))?;
        let (read, mut write) = stream.into_split();
        let mut line = serde_json::to_string(req).map_err(|e| e.to_string())?;
        line.push('\n');
        write
            .write_all(line.as_bytes())
            .await
            .map_err(|e| format!("send to {host}: {e}"))?;
        let mut answer = String::new();
        BufReader::new(read)
            .read_line(&mut answer)
            .await
            .map_err(|e| format!("receive from {host}: {e}"))?;
        serde_json::from_str(&answer).map_err(|e| format!("answer of {host}: {e}"))
    };
    tokio::time::timeout(limit, call)
        .await
        .map_err(|_| format!("{host} did not answer in time"))?
}

/// Serves `handle` on [`PORT`]: one request line, one answer line.
pub(crate) async fn serve<Q, A, F, Fut>(handle: F) -> turmoil::Result
where
    Q: DeserializeOwned + 'static,
    A: Serialize + 'static,
    F: Fn(Q) -> Fut + Clone + 'static,
    Fut: std::future::Future<Output = A> + 'static,
{
    let listener = TcpListener::bind(("0.0.0.0", PORT)).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        let handle = handle.clone();
        tokio::task::spawn_local(async move {
            let (read, mut write) = stream.into_split();
            let mut line = String::new();
            if BufReader::new(read).read_line(&mut line).await.is_err() {
                return;
            }
            let Ok(req) = serde_json::from_str::<Q>(&line) else {
                return;
            };
            let answer = handle(req).await;
            let mut out = serde_json::to_string(&answer).unwrap_or_default();
            out.push('\n');
            let _ = write.write_all(out.as_bytes()).await;
        });
    }
}

// ---------------------------------------------------------------------------
// The shared token store.

#[derive(Serialize, Deserialize, Debug)]
pub(crate) enum StoreReq {
    Load,
    Store(TokenSet),
    Clear,
    Acquire {
        ttl_ms: u64,
        /// The process asking (for the monitor: who holds the lease).
        who: String,
    },
    Renew {
        owner: String,
        ttl_ms: u64,
    },
    Release {
        owner: String,
    },
    Cas {
        fence: Option<String>,
        expected: Option<(u64, String)>,
        new: Option<TokenSet>,
    },
}

#[derive(Serialize, Deserialize, Debug)]
pub(crate) enum StoreResp {
    Tokens(Option<TokenSet>),
    Done,
    Lease(Option<String>),
    Bool(bool),
}

/// The store host's data. It outlives the host (a durable store).
#[derive(Default, Debug)]
pub(crate) struct StoreData {
    pub(crate) tokens: Option<TokenSet>,
    lease: Option<(String, i64)>,
    /// The process the current lease was granted to.
    holder: String,
    next_owner: u64,
}

impl StoreData {
    /// The process holding a live lease at the store's time `now`, if any.
    pub(crate) fn lease_holder(&self, now: i64) -> Option<&str> {
        self.lease
            .as_ref()
            .filter(|(_, until)| *until > now)
            .map(|_| self.holder.as_str())
    }
}

/// Applies one request at the store's time `now` (ms). `fenced`: whether
/// compare-and-set honours its fence (off only for the SIM3 mutant).
pub(crate) fn apply(data: &mut StoreData, now: i64, req: StoreReq, fenced: bool) -> StoreResp {
    let held = |data: &StoreData, owner: &str| {
        data.lease
            .as_ref()
            .is_some_and(|(o, until)| o == owner && *until > now)
    };
    match req {
        StoreReq::Load => StoreResp::Tokens(data.tokens.clone()),
        StoreReq::Store(t) => {
            data.tokens = Some(t);
            StoreResp::Done
        }
        StoreReq::Clear => {
            data.tokens = None;
            StoreResp::Done
        }
        StoreReq::Acquire { ttl_ms, who } => {
            if data.lease.as_ref().is_some_and(|(_, until)| *until > now) {
                return StoreResp::Lease(None);
            }
            data.holder = who;
            data.next_owner += 1;
            let owner = format!("lease-{}", data.next_owner);
            data.lease = Some((owner.clone(), now + ms(ttl_ms)));
            StoreResp::Lease(Some(owner))
        }
        StoreReq::Renew { owner, ttl_ms } => {
            if !held(data, &owner) {
                return StoreResp::Bool(false);
            }
            data.lease = Some((owner, now + ms(ttl_ms)));
            StoreResp::Bool(true)
        }
        StoreReq::Release { owner } => {
            if data.lease.as_ref().is_some_and(|(o, _)| *o == owner) {
                data.lease = None;
            }
            StoreResp::Done
        }
        StoreReq::Cas {
            fence,
            expected,
            new,
        } => {
            if fenced && fence.as_deref().is_some_and(|o| !held(data, o)) {
                return StoreResp::Bool(false);
            }
            let stored = data
                .tokens
                .as_ref()
                .map(|t| (t.generation.get(), t.lineage.as_str().to_owned()));
            if stored != expected {
                return StoreResp::Bool(false);
            }
            data.tokens = new;
            StoreResp::Bool(true)
        }
    }
}

fn ms(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX / 4)
}

/// A client's handle on the store host: a [`TokenStore`] and its [`Coordinator`].
#[derive(Debug, Clone)]
pub(crate) struct SimStore {
    pub(crate) limit: Duration,
    /// The process (host and incarnation) using this handle.
    pub(crate) who: String,
    pub(crate) monitor: crate::monitor::Shared,
    /// A fault: each call goes out this many ms late (a slow connection),
    /// inside its time limit.
    pub(crate) slow_ms: Arc<AtomicI64>,
    /// The process's pauses: no call goes out or comes back while it is
    /// paused; an armed pause starts when a read answers under its lease.
    pub(crate) pause: Pause,
    /// The store's data (to see who holds the lease when a read answers).
    pub(crate) data: Arc<Mutex<StoreData>>,
}

impl SimStore {
    async fn call(&self, req: StoreReq) -> Result<StoreResp, StoreError> {
        let writes = match &req {
            StoreReq::Store(t) | StoreReq::Cas { new: Some(t), .. } => Some(t.stamp()),
            _ => None,
        };
        let read = matches!(req, StoreReq::Load);
        self.pause.gate().await;
        let late =
            Duration::from_millis(u64::try_from(self.slow_ms.load(Ordering::Relaxed)).unwrap_or(0));
        let out = tokio::time::timeout(self.limit, async {
            tokio::time::sleep(late).await;
            rpc("store", &req, self.limit).await
        })
        .await
        .unwrap_or_else(|_| Err("store did not answer in time".to_owned()))
        .map_err(|e| StoreError::Io(std::io::Error::other(e)));
        if out.is_err()
            && let Some(stamp) = writes
        {
            // C13: a set whose write failed may be published in memory.
            crate::monitor::with(&self.monitor, |m| {
                m.write_failed(&self.who, stamp.lineage.as_str(), stamp.generation.get());
            });
        }
        if read && out.is_ok() {
            self.pause.store_read(&self.who, &self.data, &self.monitor);
        }
        self.pause.gate().await;
        out
    }
}

fn unexpected(r: &StoreResp) -> StoreError {
    StoreError::Io(std::io::Error::other(format!("unexpected answer {r:?}")))
}

#[async_trait]
impl TokenStore for SimStore {
    async fn load(&self) -> Result<Option<TokenSet>, StoreError> {
        match self.call(StoreReq::Load).await? {
            StoreResp::Tokens(t) => Ok(t),
            r => Err(unexpected(&r)),
        }
    }

    async fn store(&self, tokens: &TokenSet) -> Result<(), StoreError> {
        self.call(StoreReq::Store(tokens.clone())).await.map(drop)
    }

    async fn clear(&self) -> Result<(), StoreError> {
        self.call(StoreReq::Clear).await.map(drop)
    }

    fn coordinator(&self) -> Option<&dyn Coordinator> {
        Some(self)
    }
}

fn ttl_ms(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX / 4)
}

#[async_trait]
impl Coordinator for SimStore {
    async fn try_acquire(&self, ttl: Duration) -> Result<Option<Lease>, StoreError> {
        match self
            .call(StoreReq::Acquire {
                ttl_ms: ttl_ms(ttl),
                who: self.who.clone(),
            })
            .await?
        {
            StoreResp::Lease(owner) => Ok(owner.map(|o| Lease::expiring(o, ttl))),
            r => Err(unexpected(&r)),
        }
    }

    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<bool, StoreError> {
        let req = StoreReq::Renew {
            owner: lease.owner().to_owned(),
            ttl_ms: ttl_ms(ttl),
        };
        match self.call(req).await? {
            StoreResp::Bool(b) => Ok(b),
            r => Err(unexpected(&r)),
        }
    }

    async fn release(&self, lease: &Lease) -> Result<(), StoreError> {
        let req = StoreReq::Release {
            owner: lease.owner().to_owned(),
        };
        self.call(req).await.map(drop)
    }

    async fn compare_and_swap(
        &self,
        fence: Option<&Lease>,
        expected: Option<&Stamp>,
        new: Option<&TokenSet>,
    ) -> Result<bool, StoreError> {
        let req = StoreReq::Cas {
            fence: fence.map(|l| l.owner().to_owned()),
            expected: expected.map(|s| (s.generation.get(), s.lineage.as_str().to_owned())),
            new: new.cloned(),
        };
        match self.call(req).await? {
            StoreResp::Bool(b) => Ok(b),
            r => Err(unexpected(&r)),
        }
    }
}

/// Serves the store on the current host, at the store's clock `now_ms`.
pub(crate) async fn store_host(
    data: Arc<Mutex<StoreData>>,
    now_ms: Arc<AtomicI64>,
    fenced: bool,
    monitor: crate::monitor::Shared,
) -> turmoil::Result {
    serve(move |req: StoreReq| {
        let data = Arc::clone(&data);
        let monitor = Arc::clone(&monitor);
        let now = now_ms.load(Ordering::Relaxed);
        async move {
            let mut d = data.lock().unwrap_or_else(PoisonError::into_inner);
            let answer = apply(&mut d, now, req, fenced);
            crate::monitor::with(&monitor, |m| m.stored("store", d.tokens.as_ref()));
            answer
        }
    })
    .await
}

// ---------------------------------------------------------------------------
// The replicas.

#[derive(Serialize, Deserialize, Debug)]
pub(crate) struct HttpReq {
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) bearer: Option<String>,
    pub(crate) json: Option<String>,
}

#[derive(Serialize, Deserialize, Debug)]
pub(crate) struct HttpResp {
    pub(crate) status: u16,
    pub(crate) body: String,
}

/// Serves the real router of one replica.
pub(crate) async fn replica_host(router: axum::Router) -> turmoil::Result {
    use tower::ServiceExt;
    serve(move |req: HttpReq| {
        let router = router.clone();
        async move {
            let mut b = http::Request::builder()
                .method(req.method.as_str())
                .uri(req.path.as_str());
            if let Some(t) = &req.bearer {
                b = b.header(http::header::AUTHORIZATION, format!("Bearer {t}"));
            }
            let body = match req.json {
                Some(j) => {
                    b = b.header(http::header::CONTENT_TYPE, "application/json");
                    axum::body::Body::from(j)
                }
                None => axum::body::Body::empty(),
            };
            let Ok(request) = b.body(body) else {
                return HttpResp {
                    status: 0,
                    body: String::new(),
                };
            };
            let Ok(response) = router.oneshot(request).await;
            let status = response.status().as_u16();
            let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
                .await
                .unwrap_or_default();
            HttpResp {
                status,
                body: String::from_utf8_lossy(&bytes).into_owned(),
            }
        }
    })
    .await
}
