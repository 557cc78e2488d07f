//! P3: the overhead of `AuthMiddleware` over bare reqwest, GET on loopback.
//!
//! Run: `cargo bench -p reauth-reqwest --bench middleware`
//!
//! Four clients hit the same axum hello-world handler on 127.0.0.1 in the
//! same run:
//! * `bare` — `reqwest::Client`, no `Authorization` header;
//! * `bare_static_header` — the same with a fixed `Authorization: Bearer …`
//!   header (identical bytes on the wire to the middleware's request);
//! * `reqwest_middleware_empty` — a `reqwest_middleware` client with no
//!   middleware and the static header: the cost of the framework itself;
//! * `auth_middleware` — `reqwest_middleware` + `AuthMiddleware` with a valid
//!   token (the session's fast path: a pointer load and an expiry compare).
//!
//! The criterion groups run one after the other, so on a busy machine load
//! drifts between them. The bench therefore ends with a **paired** run that
//! interleaves the four clients request by request and prints each one's
//! median and the ratios `auth_middleware / bare_static_header` (the figure
//! P3 is about) and `auth_middleware / reqwest_middleware_empty` (our own share).

#![allow(missing_docs)] // criterion_group! generates undocumented public functions

use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use criterion::{Criterion, criterion_group, criterion_main};
use reauth::{RefreshAhead, Session, TokenSet, refresh_fn};
use reauth_reqwest::AuthMiddleware;

const TOKEN: &str = "eyJhbGciOiJFZERTQSIsImtpZCI6ImsxIn0.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLW9mLWEtdHlwaWNhbC1sZW5ndGg";

fn bench(c: &mut Criterion) {
    // The server on its own runtime thread, the clients on a current-thread runtime.
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let addr = server_rt.block_on(async {
        let app = Router::new().route("/hello", get(|| async { "Hello, World!" }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        addr
    });
    let url = format!("http://{addr}/hello");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    let bare = reqwest::Client::new();
    let session = rt.block_on(async {
        let never = refresh_fn(|_: TokenSet| async {
            Err(reauth::RefreshError::misconfigured("not in this benchmark"))
        });
        let session = Session::builder(never)
            .refresh_ahead(RefreshAhead::disabled())
            .build();
        session
            .start(TokenSet::new(TOKEN).with_refresh_token("refresh"))
            .await
            .unwrap();
        session
    });
    let with_middleware = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(AuthMiddleware::new(session, url.parse().unwrap()))
        .build();
    let header = format!("Bearer {TOKEN}");
    let empty = reqwest_middleware::ClientBuilder::new(reqwest::Client::new()).build();

    let mut group = c.benchmark_group("p3_get_loopback");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .sample_size(60);
    group.bench_function("bare", |b| {
        b.to_async(&rt).iter(|| async {
            let r = bare.get(&url).send().await.unwrap();
            assert!(r.status().is_success());
            r.bytes().await.unwrap()
        });
    });
    group.bench_function("bare_static_header", |b| {
        b.to_async(&rt).iter(|| async {
            let r = bare
                .get(&url)
                .header(http::header::AUTHORIZATION, &header)
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success());
            r.bytes().await.unwrap()
        });
    });
    group.bench_function("reqwest_middleware_empty", |b| {
        b.to_async(&rt).iter(|| async {
            let r = empty
                .get(&url)
                .header(http::header::AUTHORIZATION, &header)
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success());
            r.bytes().await.unwrap()
        });
    });
    group.bench_function("auth_middleware", |b| {
        b.to_async(&rt).iter(|| async {
            let r = with_middleware.get(&url).send().await.unwrap();
            assert!(r.status().is_success());
            r.bytes().await.unwrap()
        });
    });
    group.finish();

    // The paired run: the four clients take turns, so drifting load hits all alike.
    let names = [
        "bare",
        "bare_static_header",
        "reqwest_middleware_empty",
        "auth_middleware",
    ];
    let mut samples: [Vec<Duration>; 4] = Default::default();
    rt.block_on(async {
        for i in 0..PAIRED_ROUNDS * 4 {
            let which = i % 4;
            let start = Instant::now();
            let r = match which {
                0 => bare.get(&url).send().await.unwrap(),
                1 => bare
                    .get(&url)
                    .header(http::header::AUTHORIZATION, &header)
                    .send()
                    .await
                    .unwrap(),
                2 => empty
                    .get(&url)
                    .header(http::header::AUTHORIZATION, &header)
                    .send()
                    .await
                    .unwrap(),
                _ => with_middleware.get(&url).send().await.unwrap(),
            };
            let body = r.bytes().await.unwrap();
            assert_eq!(&body[..], b"Hello, World!");
            if i >= PAIRED_ROUNDS / 10 * 4 {
                samples[which].push(start.elapsed());
            }
        }
    });
    let medians: Vec<Duration> = samples
        .iter_mut()
        .map(|s| {
            s.sort_unstable();
            s[s.len() / 2]
        })
        .collect();
    println!(
        "\npaired run, {PAIRED_ROUNDS} interleaved requests per client (first 10 % discarded):"
    );
    for (name, median) in names.iter().zip(&medians) {
        println!("  {name:<26} median {median:>10.2?}");
    }
    let ratio = |a: usize, b: usize| medians[a].as_secs_f64() / medians[b].as_secs_f64();
    println!(
        "  auth_middleware / bare_static_header       = {:.3}",
        ratio(3, 1)
    );
    println!(
        "  auth_middleware / bare                     = {:.3}",
        ratio(3, 0)
    );
    println!(
        "  auth_middleware / reqwest_middleware_empty = {:.3}",
        ratio(3, 2)
    );
    drop(server_rt);
}

const PAIRED_ROUNDS: usize = 20_000;

criterion_group!(benches, bench);
criterion_main!(benches);
