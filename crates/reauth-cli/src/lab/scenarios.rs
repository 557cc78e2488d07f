//! The scenarios: each sets up a fresh server (ours) or a fresh login (yours),
//! a fresh session and middleware client, runs one bounded burst and measures.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context as _, bail};
use http::StatusCode;
use reauth::{AccessToken, RefreshAhead, Refresher as _, RetryPolicy, Session, TokenSet};
use reauth_reqwest::AuthMiddleware;
use reauth_server::{Faults, RunningServer, Server};
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::burst::{self, Outcome};
use crate::local::{self, Endpoints};
use crate::netlog::{AfterRefresh, Kind, NetLog, Recorder, RecordingRefresher, Together};

use super::processes::{self, Services, Shared};

/// No burst of a scenario may take longer than this.
const BURST_DEADLINE: Duration = Duration::from_secs(30);
/// Requests used to measure the baseline latency.
const BASELINE_REQUESTS: usize = 10;
/// The access token of sessions that start "broken".
const BROKEN_TOKEN: &str = "broken-on-purpose";

/// Where a scenario runs.
#[derive(Clone, Debug)]
pub(crate) enum Target {
    /// A fresh in-process server per scenario, with fault injection.
    Ours,
    /// Someone else's server: no fault injection.
    Against(Box<Endpoints>),
}

/// The outcome a scenario must reach to pass.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ideal {
    pub(crate) refresh_calls: u64,
    pub(crate) failed: usize,
    pub(crate) logouts: usize,
}

/// What a scenario measured.
#[derive(Debug, Default)]
pub(crate) struct Measured {
    pub(crate) refresh_calls: u64,
    pub(crate) ok: usize,
    pub(crate) failed: usize,
    pub(crate) logouts: usize,
    /// Latency of each request through reauth minus the baseline.
    pub(crate) added: Vec<Duration>,
    /// Further criteria of the scenario, each with whether it held.
    pub(crate) checks: Vec<(String, bool)>,
}

/// One scenario of DESIGN.md §3.2.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Scenario {
    pub(crate) id: &'static str,
    pub(crate) title: &'static str,
    /// Needs our server's fault injection (skipped with `--against`).
    pub(crate) needs_faults: bool,
    /// Runs in separate OS processes sharing this store (C15, C16) instead of
    /// one burst in this process.
    pub(crate) shared: Option<Shared>,
}

/// Every scenario the lab knows, in order.
pub(crate) const ALL: &[Scenario] = &[
    Scenario {
        id: "C1",
        title: "burst of 401s on one generation",
        needs_faults: false,
        shared: None,
    },
    Scenario {
        id: "C2",
        title: "refresh-ahead timer races the 401s",
        needs_faults: false,
        shared: None,
    },
    Scenario {
        id: "C3",
        title: "late 401 after the next generation",
        needs_faults: true,
        shared: None,
    },
    Scenario {
        id: "C4a",
        title: "requests during a reactive refresh",
        needs_faults: true,
        shared: None,
    },
    Scenario {
        id: "C4b",
        title: "requests during a proactive refresh",
        needs_faults: true,
        shared: None,
    },
    Scenario {
        id: "C5",
        title: "refresh fails transiently (503 × 2)",
        needs_faults: true,
        shared: None,
    },
    Scenario {
        id: "C6",
        title: "refresh rejected (family revoked)",
        needs_faults: false,
        shared: None,
    },
    Scenario {
        id: "C9",
        title: "refresh endpoint hangs once",
        needs_faults: true,
        shared: None,
    },
    Scenario {
        id: "C10",
        title: "replay refused again",
        needs_faults: true,
        shared: None,
    },
    Scenario {
        id: "C15",
        title: "4 processes share one file store",
        needs_faults: false,
        shared: Some(Shared::File),
    },
    // C16 once per backend; each is skipped without its service.
    Scenario {
        id: "C16",
        title: "4 replicas share Redis",
        needs_faults: false,
        shared: Some(Shared::Redis),
    },
    Scenario {
        id: "C16",
        title: "4 replicas share Postgres",
        needs_faults: false,
        shared: Some(Shared::Postgres),
    },
];

impl Scenario {
    /// The ideal outcome for a burst of `n`.
    pub(crate) fn ideal(&self, n: usize) -> Ideal {
        let ideal = |refresh_calls, failed, logouts| Ideal {
            refresh_calls,
            failed,
            logouts,
        };
        match self.id {
            // Two injected failures, then success.
            "C5" => ideal(3, 0, 0),
            // The refresh is rejected: every request fails, the session ends once.
            "C6" => ideal(1, n, 1),
            // The hung attempt times out, the retry succeeds.
            "C9" => ideal(2, 0, 0),
            // Every replay is refused and returned as is; no second refresh.
            "C10" => ideal(1, n, 0),
            _ => ideal(1, 0, 0),
        }
    }

    /// Why the scenario cannot run against `target` with `services`, if so.
    pub(crate) fn skip_reason(&self, target: &Target, services: &Services) -> Option<String> {
        let against = matches!(target, Target::Against(_));
        match self.shared {
            // The processes count their own refresh calls: any server will do.
            Some(shared) => services.missing(shared),
            None if against && self.needs_faults => Some("needs fault injection".to_owned()),
            None if self.id == "C6"
                && matches!(target, Target::Against(e) if e.revoke.is_none()) =>
            {
                Some("no revocation endpoint (discovery found none; --revocation-url)".to_owned())
            }
            None => None,
        }
    }

    /// Runs the scenario with a burst of `n` requests (C15/C16: with
    /// [`processes::PROCESSES`] processes instead).
    pub(crate) async fn run(
        &self,
        target: &Target,
        services: &Services,
        n: usize,
    ) -> anyhow::Result<Measured> {
        if let Some(shared) = self.shared {
            return match target {
                // A strict server (grace window 0): a second refresh of one
                // generation would be refused and revoke the family.
                Target::Ours => {
                    let running = local::spawn_server(Duration::ZERO).await?;
                    let endpoints = Endpoints::ours(&running.url())?;
                    let faults = running.server().faults().clone();
                    let rotations = move || faults.counters().rotations;
                    let result =
                        processes::run(shared, services, &endpoints, Some(&rotations)).await;
                    let _ = running.shutdown().await;
                    result
                }
                Target::Against(endpoints) => {
                    processes::run(shared, services, endpoints, None).await
                }
            };
        }
        let env = Env::new(target).await?;
        let result = match self.id {
            "C1" => c1(&env, n).await,
            "C2" => c2(&env, n).await,
            "C3" => c3(&env, n).await,
            "C4a" => c4a(&env, n).await,
            "C4b" => c4b(&env, n).await,
            "C5" => c5(&env, n).await,
            "C6" => c6(&env, n).await,
            "C9" => c9(&env, n).await,
            "C10" => c10(&env, n).await,
            other => bail!("unknown scenario {other}"),
        };
        if let Some(running) = env.running {
            let _ = running.shutdown().await;
        }
        result
    }
}

/// A server to talk to, and its fault switches when it is ours.
struct Env {
    endpoints: Endpoints,
    running: Option<RunningServer>,
}

impl Env {
    async fn new(target: &Target) -> anyhow::Result<Self> {
        match target {
            Target::Ours => {
                let running = local::spawn_server(Duration::from_secs(10)).await?;
                Ok(Self {
                    endpoints: Endpoints::ours(&running.url())?,
                    running: Some(running),
                })
            }
            Target::Against(endpoints) => Ok(Self {
                endpoints: Endpoints::clone(endpoints),
                running: None,
            }),
        }
    }

    fn server(&self) -> anyhow::Result<&Server> {
        self.running
            .as_ref()
            .map(RunningServer::server)
            .context("this scenario needs our server's fault injection")
    }

    fn faults(&self) -> anyhow::Result<&Faults> {
        Ok(self.server()?.faults())
    }
}

/// How the session of a scenario starts.
#[derive(Default)]
struct Setup {
    /// Start with an access token no server accepts.
    broken: bool,
    /// Arm the refresh-ahead timer so that it fires at once.
    ahead_now: bool,
    retry: Option<RetryPolicy>,
    refresh_timeout: Option<Duration>,
    after_refresh: Option<AfterRefresh>,
    /// Hold the answers to the first this many requests until all of them
    /// are in flight, so that all carry the same generation.
    together: Option<usize>,
}

/// A logged-in session, its client, and what is observed of them.
struct Rig {
    session: Session,
    client: ClientWithMiddleware,
    log: Arc<NetLog>,
    calls: watch::Receiver<u64>,
    logouts: Arc<AtomicUsize>,
    /// The access token the session started with.
    first_access: String,
    /// The refresh token of the login.
    login: TokenSet,
    baseline: Duration,
    /// Where the newest refresh token goes when the rig is done (a chain of
    /// handed-over refresh tokens).
    endpoints: Endpoints,
}

impl Rig {
    async fn new(env: &Env, setup: Setup) -> anyhow::Result<Self> {
        let endpoints = &env.endpoints;
        let login = endpoints.login().await?;
        let http = crate::demo::http_client()?;
        let baseline = baseline(&http, endpoints, &login).await?;

        let mut tokens = login.clone();
        if setup.broken {
            tokens.access_token = AccessToken::from(BROKEN_TOKEN);
        }
        let mut ahead = RefreshAhead::disabled();
        if setup.ahead_now {
            // Obtained long ago, expiring in 20 s, refreshed 20 s ahead: the
            // timer fires at once while the token stays usable by the clock.
            let now = SystemTime::now();
            tokens.obtained_at = Some(now - Duration::from_secs(100));
            tokens.expires_at = Some(now + Duration::from_secs(20));
            ahead = RefreshAhead::default()
                .with_skew(Duration::from_secs(20))
                .with_jitter(Duration::ZERO);
        }
        let first_access = tokens.access_token.secret().to_owned();

        let log = NetLog::new();
        let mut refresher = RecordingRefresher::new(endpoints.refresher()?, Arc::clone(&log));
        if let Some(after) = setup.after_refresh {
            refresher = refresher.after_refresh(after);
        }
        let calls = refresher.calls();
        let logouts = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&logouts);
        let mut builder = Session::builder(refresher)
            .refresh_ahead(ahead)
            .expiry_leeway(Duration::from_secs(1))
            .wait_timeout(Duration::from_secs(20))
            .retry(setup.retry.unwrap_or_else(|| {
                RetryPolicy::default().with_initial_backoff(Duration::from_millis(50))
            }))
            .on_session_ended(move |_| {
                counted.fetch_add(1, Ordering::SeqCst);
            });
        if let Some(timeout) = setup.refresh_timeout {
            builder = builder.refresh_timeout(timeout);
        }
        let session = builder.build();
        let middleware = AuthMiddleware::new(session.clone(), endpoints.resource.clone());
        let mut client = ClientBuilder::new(http).with(middleware);
        if let Some(n) = setup.together {
            client = client.with(Together::new(n));
        }
        let client = client.with(Recorder::new(Arc::clone(&log))).build();
        session
            .start(tokens)
            .await
            .context("starting the session")?;
        Ok(Self {
            session,
            client,
            log,
            calls,
            logouts,
            first_access,
            login,
            baseline,
            endpoints: endpoints.clone(),
        })
    }

    async fn burst(&self, env: &Env, n: usize) -> Vec<Outcome> {
        burst::fire(&self.client, &env.endpoints.resource, n, BURST_DEADLINE).await
    }

    /// Waits (bounded) until `n` refresh calls have started.
    async fn refresh_started(&mut self, n: u64) -> anyhow::Result<()> {
        tokio::time::timeout(Duration::from_secs(10), self.calls.wait_for(|c| *c >= n))
            .await
            .context("no refresh started within 10 s")?
            .context("the refresher is gone")?;
        Ok(())
    }

    fn measure(&self, outcomes: &[Outcome]) -> Measured {
        if let Some(rt) = self.session.tokens().and_then(|t| t.refresh_token) {
            self.endpoints.keep(rt.secret());
        }
        let ok = outcomes.iter().filter(|o| o.is_ok()).count();
        Measured {
            refresh_calls: *self.calls.borrow(),
            ok,
            failed: outcomes.len() - ok,
            logouts: self.logouts.load(Ordering::SeqCst),
            added: outcomes
                .iter()
                .map(|o| o.latency.saturating_sub(self.baseline))
                .collect(),
            checks: Vec::new(),
        }
    }

    fn unauthorized_on_the_wire(&self) -> usize {
        self.log.count(Kind::Resource, Some(401))
    }
}

/// The median latency of plain requests with a valid token, no middleware.
async fn baseline(
    http: &reqwest::Client,
    endpoints: &Endpoints,
    login: &TokenSet,
) -> anyhow::Result<Duration> {
    let mut samples = Vec::with_capacity(BASELINE_REQUESTS);
    for _ in 0..BASELINE_REQUESTS {
        let started = Instant::now();
        let response = http
            .get(endpoints.resource.clone())
            .bearer_auth(login.access_token.secret())
            .send()
            .await
            .context("baseline request")?;
        let status = response.status();
        let _ = response.bytes().await;
        if !status.is_success() {
            bail!("baseline request with a fresh token answered {status}");
        }
        samples.push(started.elapsed());
    }
    samples.sort();
    Ok(samples[samples.len() / 2])
}

/// Waits (bounded) until the server has received `n` resource requests.
async fn resource_requests_reach(faults: &Faults, n: u64) -> anyhow::Result<()> {
    let until = Instant::now() + Duration::from_secs(10);
    while faults.counters().resource_requests < n {
        if Instant::now() > until {
            bail!("the requests did not reach the server within 10 s");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

/// C1: N requests hit 401 on the same generation → one refresh.
async fn c1(env: &Env, n: usize) -> anyhow::Result<Measured> {
    let rig = Rig::new(
        env,
        Setup {
            broken: true,
            together: Some(n),
            ..Setup::default()
        },
    )
    .await?;
    let outcomes = rig.burst(env, n).await;
    Ok(rig.measure(&outcomes))
}

/// C2: the refresh-ahead timer fires while the burst's 401s arrive.
async fn c2(env: &Env, n: usize) -> anyhow::Result<Measured> {
    if let Ok(faults) = env.faults() {
        // Keeps the timer's refresh in flight while the 401s come back.
        faults.set_refresh_delay(Duration::from_millis(300));
    }
    let rig = Rig::new(
        env,
        Setup {
            broken: true,
            ahead_now: true,
            together: Some(n),
            ..Setup::default()
        },
    )
    .await?;
    let outcomes = rig.burst(env, n).await;
    Ok(rig.measure(&outcomes))
}

/// C3: a 401 for generation g arrives after g+1 was published → no refresh.
async fn c3(env: &Env, n: usize) -> anyhow::Result<Measured> {
    let faults = env.faults()?.clone();
    let rig = Rig::new(
        env,
        Setup {
            broken: true,
            ..Setup::default()
        },
    )
    .await?;
    let sent = rig.session.access_token().await?;
    // The requests go out with generation g and are answered late.
    faults.set_resource_delay(Duration::from_millis(600));
    let before = faults.counters().resource_requests;
    let requests = {
        let mut set = JoinSet::new();
        for _ in 0..n {
            let client = rig.client.clone();
            let url = env.endpoints.resource.clone();
            set.spawn(async move { burst::one(&client, url).await });
        }
        set
    };
    resource_requests_reach(&faults, before + n as u64).await?;
    // Meanwhile another caller learns g is bad and g+1 is published.
    rig.session.invalidate(&sent).await?;
    let published_at = rig.log.entries().len();
    faults.set_resource_delay(Duration::ZERO);
    let outcomes = burst::collect(requests, n, BURST_DEADLINE).await;
    let mut measured = rig.measure(&outcomes);
    let entries = rig.log.entries();
    let late = entries
        .iter()
        .filter(|e| e.kind == Kind::Resource && e.status == Some(401))
        .count();
    measured.checks.push((
        format!("all {n} late 401s arrived after g+1 was published"),
        published_at == 1 && late == n,
    ));
    Ok(measured)
}

/// C4a: requests that start while a reactive refresh is in flight wait for it
/// instead of sending a token known to be bad.
async fn c4a(env: &Env, n: usize) -> anyhow::Result<Measured> {
    env.faults()?.set_refresh_delay(Duration::from_millis(500));
    let mut rig = Rig::new(
        env,
        Setup {
            broken: true,
            ..Setup::default()
        },
    )
    .await?;
    let first = {
        let client = rig.client.clone();
        let url = env.endpoints.resource.clone();
        tokio::spawn(async move { burst::one(&client, url).await })
    };
    rig.refresh_started(1).await?;
    let mut outcomes = rig.burst(env, n - 1).await;
    outcomes.push(first.await.context("the first request")?);
    let mut measured = rig.measure(&outcomes);
    let unauthorized = rig.unauthorized_on_the_wire();
    measured.checks.push((
        format!("one 401 on the wire, not {unauthorized}"),
        unauthorized == 1,
    ));
    Ok(measured)
}

/// C4b: requests that start while a proactive refresh is in flight go out at
/// once with the still-valid token.
async fn c4b(env: &Env, n: usize) -> anyhow::Result<Measured> {
    env.faults()?.set_refresh_delay(Duration::from_millis(800));
    let mut rig = Rig::new(
        env,
        Setup {
            ahead_now: true,
            ..Setup::default()
        },
    )
    .await?;
    rig.refresh_started(1).await?;
    let outcomes = rig.burst(env, n).await;
    let in_flight = rig.log.count(Kind::Refresh, Some(200)) == 0;
    let mut measured = rig.measure(&outcomes);
    let old = rig
        .log
        .entries()
        .iter()
        .filter(|e| e.kind == Kind::Resource && e.bearer.as_deref() == Some(&rig.first_access))
        .count();
    measured
        .checks
        .push((format!("{old} of {n} sent with the old token"), old == n));
    measured.checks.push((
        "all answered before the refresh finished".to_owned(),
        in_flight,
    ));
    // Let the refresh land, so that it is counted and nothing is left running.
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        while rig.log.count(Kind::Refresh, Some(200)) == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    measured.refresh_calls = *rig.calls.borrow();
    Ok(measured)
}

/// C5: the refresh fails transiently twice; it is retried, nobody is logged out.
async fn c5(env: &Env, n: usize) -> anyhow::Result<Measured> {
    env.faults()?
        .fail_next_refreshes(2, StatusCode::SERVICE_UNAVAILABLE, None);
    let rig = Rig::new(
        env,
        Setup {
            broken: true,
            together: Some(n),
            ..Setup::default()
        },
    )
    .await?;
    let outcomes = rig.burst(env, n).await;
    let mut measured = rig.measure(&outcomes);
    measured
        .checks
        .push(("session still active".to_owned(), rig.session.is_active()));
    Ok(measured)
}

/// C6: the refresh is rejected; the session ends exactly once and later calls
/// fail fast without network.
async fn c6(env: &Env, n: usize) -> anyhow::Result<Measured> {
    let rig = Rig::new(
        env,
        Setup {
            broken: true,
            together: Some(n),
            ..Setup::default()
        },
    )
    .await?;
    let refresh = rig
        .login
        .refresh_token
        .as_ref()
        .map(|r| r.secret().to_owned())
        .context("the login returned no refresh token")?;
    match env.server() {
        Ok(server) => {
            server
                .revoke_family_by_token(&refresh)
                .await
                .context("revoking the family")?;
        }
        // Anyone's server: RFC 7009 revocation of the refresh token.
        Err(_) => env
            .endpoints
            .refresher()?
            .revoke(&rig.login)
            .await
            .context("revoking the refresh token at /oauth/revoke")?,
    }
    let outcomes = rig.burst(env, n).await;
    let mut measured = rig.measure(&outcomes);
    let wire_before = rig.log.entries().len();
    let later = burst::one(&rig.client, env.endpoints.resource.clone()).await;
    let wire_after = rig.log.entries().len();
    measured.checks.push((
        "a later request fails fast, without network".to_owned(),
        !later.is_ok()
            && wire_after == wire_before
            && *rig.calls.borrow() == measured.refresh_calls,
    ));
    Ok(measured)
}

/// C9: the refresh endpoint hangs once; the attempt times out and is retried.
async fn c9(env: &Env, n: usize) -> anyhow::Result<Measured> {
    env.faults()?.hang_next_refreshes(1);
    let rig = Rig::new(
        env,
        Setup {
            broken: true,
            refresh_timeout: Some(Duration::from_millis(500)),
            together: Some(n),
            ..Setup::default()
        },
    )
    .await?;
    let started = Instant::now();
    let outcomes = rig.burst(env, n).await;
    let mut measured = rig.measure(&outcomes);
    measured.checks.push((
        "the burst ended within its deadline".to_owned(),
        started.elapsed() < BURST_DEADLINE,
    ));
    Ok(measured)
}

/// C10: the replay is refused too; it is returned as is, with no second refresh.
async fn c10(env: &Env, n: usize) -> anyhow::Result<Measured> {
    let server = env.server()?.clone();
    // Revokes the fresh family before the session publishes it, so every
    // replay is refused.
    let after: AfterRefresh = Arc::new(move |tokens: TokenSet| {
        let server = server.clone();
        Box::pin(async move {
            if let Some(refresh) = &tokens.refresh_token {
                let _ = server.revoke_family_by_token(refresh.secret()).await;
            }
        })
    });
    let rig = Rig::new(
        env,
        Setup {
            broken: true,
            after_refresh: Some(after),
            together: Some(n),
            ..Setup::default()
        },
    )
    .await?;
    let outcomes = rig.burst(env, n).await;
    let mut measured = rig.measure(&outcomes);
    let unauthorized = rig.unauthorized_on_the_wire();
    measured.checks.push((
        format!("{unauthorized} 401s on the wire: each request sent twice, no more"),
        unauthorized == 2 * n,
    ));
    measured.checks.push((
        "the refused replays are returned as 401".to_owned(),
        outcomes.iter().all(|o| o.status == Some(401)),
    ));
    Ok(measured)
}
