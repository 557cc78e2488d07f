//! P7, the cost of the limits in **instructions** rather than req/s: the
//! same server, served with its limits (`Server::spawn_local`: header, body,
//! request and write timeouts, connection age, connection cap) or by plain
//! `axum::serve` of the same router, answers `requests` sequential
//! `GET /api/resources` over one keep-alive connection (after a sign-in on
//! another), on one thread.
//!
//! Instruction counts do not depend on what else the machine runs, so the
//! two can be compared where req/s cannot (BENCHMARKS.md, P7). Run each
//! server at two request counts under callgrind; the difference divided by
//! the difference in requests is the instructions per request, with the
//! start-up cancelled out:
//!
//! ```sh
//! cargo bench -p reauth-server --bench limits_cost --no-run
//! B=$(ls -t target/release/deps/limits_cost-* | grep -v '\.d$' | head -1)
//! for s in limited plain; do for n in 2000 4000; do
//!   valgrind --tool=callgrind --callgrind-out-file=/dev/null $B $s $n 2>&1 | grep Collected
//! done; done
//! ```
//!
//! Without valgrind it prints the requests per second (one client, one
//! thread): `cargo bench -p reauth-server --bench limits_cost -- limited 20000`.

mod common;

use std::net::SocketAddr;
use std::time::Instant;

use axum::body::Bytes;
use http_body_util::{BodyExt, Full};
use reauth_server::{KeySource, PasswordHashing, Server, ServerConfig, ServerKeys};

async fn send(
    sender: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    request: http::Request<Full<Bytes>>,
) -> Bytes {
    let response = sender.send_request(request).await.expect("an answer");
    assert!(response.status().is_success(), "{}", response.status());
    response
        .into_body()
        .collect()
        .await
        .expect("a body")
        .to_bytes()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let limited = match args.first().map(String::as_str) {
        Some("limited") => true,
        Some("plain") => false,
        _ => {
            // `cargo bench` without arguments (or with `--bench`): one short run of each.
            for which in ["limited", "plain"] {
                run(which == "limited", 5_000);
            }
            return;
        }
    };
    let requests = args.get(1).and_then(|n| n.parse().ok()).unwrap_or(2_000);
    run(limited, requests);
}

fn run(limited: bool, requests: u64) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(async move {
        let mut config = ServerConfig::default();
        config.database_url = "sqlite::memory:".to_owned();
        config.password_hashing = PasswordHashing::InsecureFast;
        config.keys = KeySource::Provided(ServerKeys::generate());
        config.first_party_endpoints = true;
        let server = Server::new(config).await.expect("a server");
        server.add_user("bench", "bench").await.expect("a user");
        let addr: SocketAddr = if limited {
            let running = server.spawn_local().await.expect("spawn");
            let addr = running.addr();
            std::mem::forget(running); // served until the process exits
            addr
        } else {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let addr = listener.local_addr().expect("addr");
            let router = server.router();
            tokio::spawn(async move { axum::serve(listener, router).await });
            addr
        };
        let (token, _) = common::login(addr).await;
        let mut sender = common::connect(addr).await;
        let began = Instant::now();
        for _ in 0..requests {
            let request = http::Request::get("/api/resources")
                .header("host", addr.to_string())
                .header("authorization", format!("Bearer {token}"))
                .body(Full::new(Bytes::new()))
                .expect("a request");
            send(&mut sender, request).await;
        }
        let secs = began.elapsed().as_secs_f64();
        println!(
            "{}: {requests} requests in {secs:.2}s: {:.0} req/s",
            if limited { "limited" } else { "plain" },
            requests as f64 / secs
        );
    });
}
