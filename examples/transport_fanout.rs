//! Server-push fan-out per transport, in-process on loopback: `SUBS` members
//! of one room on the same transport, one publisher (TCP) sending `MSGS`
//! messages of 200 B; reports deliveries per second until every member has
//! every message. Bounded (a fixed count, a 60 s cap per transport).
//!
//! ```text
//! flock /tmp/roomcast-bench.lock cargo run --release --example transport_fanout -- 50 2000
//! ```
//! Results and the machine are recorded in docs/TRANSPORTS.md.

use roomcast::auth::Authenticator;
use roomcast::config::Config;
use roomcast::proto::ServerFrame;
use roomcast::server::Server;
use roomcast_client::{Connection, Endpoint, Trust};
use std::time::{Duration, Instant};

const SECRET: &str = "bench-secret-bench-secret-bench-secret";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let subs: usize = args.get(1).map_or(Ok(50), |s| s.parse())?;
    let msgs: usize = args.get(2).map_or(Ok(2000), |s| s.parse())?;
    let dir = tempfile::tempdir()?;
    let mut config = Config::for_tests(dir.path());
    config.jwt_secret = Some(SECRET.into());
    config.no_rate_limits = true;
    config.outbox_bytes = 64 * 1024 * 1024;
    let server = Server::bind(config).await?;
    let pin = roomcast_client::parse_pin(server.tls_fingerprint())?;
    let (tcp, http, quic) = (server.tcp_addr()?, server.http_addr()?, server.quic_addr()?);
    let tls = server
        .tls_addr()?
        .ok_or_else(|| anyhow::anyhow!("tls off"))?;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(server.run(shutdown.clone()));
    let auth = Authenticator::hs256(SECRET.as_bytes());
    let endpoints = [
        ("tcp", Endpoint::Tcp(tcp)),
        (
            "tls",
            Endpoint::Tls {
                addr: tls,
                server_name: "localhost".into(),
                trust: Trust::Pin(pin),
            },
        ),
        (
            "quic",
            Endpoint::Quic {
                addr: quic,
                server_name: "localhost".into(),
                trust: Trust::Pin(pin),
            },
        ),
        ("ws", Endpoint::Ws(format!("ws://{http}/ws"))),
    ];
    println!("transport subs msgs deliveries/s seconds");
    for (name, ep) in &endpoints {
        let (publisher, _) =
            Connection::connect_with_token(tcp, &auth.mint("publisher", 3600)?).await?;
        let room = publisher.create_room(name, false).await?;
        publisher.join(&room).await?;
        let mut members = Vec::new();
        for i in 0..subs {
            let token = auth.mint(&format!("{name}-{i}"), 3600)?;
            let (c, _) = Connection::connect_to_with_token(ep, &token).await?;
            c.join(&room).await?;
            members.push(c);
        }
        let body = "x".repeat(200);
        let start = Instant::now();
        let readers: Vec<_> = members
            .into_iter()
            .map(|mut c| {
                tokio::spawn(async move {
                    let mut n = 0;
                    while n < msgs {
                        match c.next_event().await {
                            Some(ServerFrame::Msg(_)) => n += 1,
                            Some(_) => {}
                            None => break,
                        }
                    }
                    n
                })
            })
            .collect();
        for chunk in (0..msgs).collect::<Vec<_>>().chunks(100) {
            let sends = chunk.iter().map(|_| publisher.send(&room, &body, None));
            for r in futures_util::future::join_all(sends).await {
                r?;
            }
        }
        let mut delivered = 0;
        for r in readers {
            delivered += tokio::time::timeout(Duration::from_secs(60), r).await??;
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "{name} {subs} {msgs} {:.0} {secs:.2}",
            delivered as f64 / secs
        );
    }
    shutdown.cancel();
    task.await??;
    Ok(())
}
