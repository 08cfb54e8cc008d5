//! The node-to-node link (src/cluster/link), over real loopback sockets:
//! answers matched to requests, deadlines, a bounded queue, frame limits,
//! reconnection after the peer restarts. Plus the ignored measurement of its
//! round trip against one through the Redis bus, recorded in
//! docs/MULTINODE.md:
//! `cargo test --test cluster_link -- --ignored round_trip_cost --nocapture`.

mod common;

use bytes::Bytes;
use roomcast::cluster::link::{serve, Link, LinkError, LinkSettings};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

fn settings() -> LinkSettings {
    LinkSettings {
        backoff_min: Duration::from_millis(10),
        backoff_max: Duration::from_millis(100),
        ..LinkSettings::default()
    }
}

/// Reverses the body; "hang" is never answered, after telling `got`.
fn handler(
    got: mpsc::UnboundedSender<()>,
) -> impl Fn(Bytes) -> futures_util::future::BoxFuture<'static, Bytes> + Clone + Send + Sync + 'static
{
    move |body: Bytes| {
        let got = got.clone();
        Box::pin(async move {
            if body.as_ref() == b"hang" {
                let _ = got.send(());
                std::future::pending::<()>().await;
            }
            // Answers come back out of order.
            tokio::time::sleep(Duration::from_millis(u64::from(body.len() as u8 % 4))).await;
            let mut v = body.to_vec();
            v.reverse();
            Bytes::from(v)
        })
    }
}

struct Peer {
    addr: SocketAddr,
    shutdown: CancellationToken,
    got: mpsc::UnboundedReceiver<()>,
}

async fn start(addr: &str, s: LinkSettings) -> Peer {
    // A restarted peer binds the address its predecessor's task may still
    // be letting go of.
    let mut listener = TcpListener::bind(addr).await;
    for _ in 0..200 {
        if listener.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        listener = TcpListener::bind(addr).await;
    }
    let listener = listener.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let (tx, got) = mpsc::unbounded_channel();
    tokio::spawn(serve(listener, handler(tx), s, shutdown.clone()));
    Peer {
        addr,
        shutdown,
        got,
    }
}

#[tokio::test]
async fn answers_are_matched_to_their_requests() {
    let peer = start("127.0.0.1:0", settings()).await;
    let link = Arc::new(Link::connect(peer.addr.to_string(), settings()));
    let mut tasks = Vec::new();
    for i in 0..300 {
        let link = link.clone();
        tasks.push(tokio::spawn(async move {
            let body = format!("request number {i}{}", "x".repeat(i % 7));
            let answer = link
                .request(Bytes::from(body.clone()), Duration::from_secs(10))
                .await
                .unwrap();
            let expected: String = body.chars().rev().collect();
            assert_eq!(answer, Bytes::from(expected));
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    peer.shutdown.cancel();
}

#[tokio::test]
async fn a_request_past_its_deadline_times_out_and_the_link_goes_on() {
    let mut peer = start("127.0.0.1:0", settings()).await;
    let link = Link::connect(peer.addr.to_string(), settings());
    let r = link
        .request(Bytes::from_static(b"hang"), Duration::from_millis(300))
        .await;
    assert_eq!(r, Err(LinkError::Timeout));
    peer.got.recv().await.unwrap();
    let r = link
        .request(Bytes::from_static(b"ab"), Duration::from_secs(10))
        .await;
    assert_eq!(r, Ok(Bytes::from_static(b"ba")));
}

#[tokio::test]
async fn a_dropped_connection_fails_what_was_sent_and_reconnects() {
    let mut peer = start("127.0.0.1:0", settings()).await;
    let addr = peer.addr;
    let link = Arc::new(Link::connect(addr.to_string(), settings()));
    let r = link
        .request(Bytes::from_static(b"12"), Duration::from_secs(10))
        .await;
    assert_eq!(r, Ok(Bytes::from_static(b"21")));

    // A request the peer received and never answered, then the peer stops.
    let hanging = {
        let link = link.clone();
        tokio::spawn(async move {
            link.request(Bytes::from_static(b"hang"), Duration::from_secs(30))
                .await
        })
    };
    peer.got.recv().await.unwrap();
    peer.shutdown.cancel();
    // Its outcome is unknown: Disconnected, not a wait until the deadline.
    assert_eq!(hanging.await.unwrap(), Err(LinkError::Disconnected));

    // The peer comes back on the same address: the link reconnects by itself.
    let _peer = start(&addr.to_string(), settings()).await;
    let mut answered = false;
    for _ in 0..100 {
        match link
            .request(Bytes::from_static(b"xyz"), Duration::from_secs(1))
            .await
        {
            Ok(b) => {
                assert_eq!(b, Bytes::from_static(b"zyx"));
                answered = true;
                break;
            }
            Err(LinkError::Disconnected | LinkError::Timeout) => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert!(answered, "the link never reconnected");
}

#[tokio::test]
async fn the_send_queue_and_frames_are_bounded() {
    // Nothing listens here: requests stay queued.
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let s = LinkSettings {
        queue: 2,
        max_frame: 1024,
        ..settings()
    };
    let link = Arc::new(Link::connect(addr.to_string(), s));
    let waiting: Vec<_> = (0..2)
        .map(|_| {
            let link = link.clone();
            tokio::spawn(async move {
                link.request(Bytes::from_static(b"q"), Duration::from_secs(30))
                    .await
            })
        })
        .collect();
    for _ in 0..1000 {
        if link.queued() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(link.queued(), 2);
    let r = link
        .request(Bytes::from_static(b"q"), Duration::from_secs(30))
        .await;
    assert_eq!(r, Err(LinkError::Busy));
    let big = Bytes::from(vec![0u8; 1024]);
    assert_eq!(
        link.request(big, Duration::from_secs(1)).await,
        Err(LinkError::TooLarge)
    );
    for w in waiting {
        w.abort();
    }

    // A peer with a smaller frame limit closes the connection on a larger
    // frame: the sender learns it as Disconnected, never a hang.
    let small = LinkSettings {
        max_frame: 64,
        ..settings()
    };
    let peer = start("127.0.0.1:0", small).await;
    let link = Link::connect(peer.addr.to_string(), settings());
    let r = link
        .request(Bytes::from(vec![b'a'; 200]), Duration::from_secs(30))
        .await;
    assert_eq!(r, Err(LinkError::Disconnected));
    let r = link
        .request(Bytes::from_static(b"ok"), Duration::from_secs(10))
        .await;
    assert_eq!(r, Ok(Bytes::from_static(b"ko")));
}

async fn next_message(rx: &mut mpsc::UnboundedReceiver<redis::PushInfo>) -> redis::PushInfo {
    loop {
        let p = rx.recv().await.unwrap();
        if p.kind == redis::PushKind::Message {
            return p;
        }
    }
}

fn percentiles(mut v: Vec<Duration>) -> String {
    v.sort();
    let p = |q: f64| v[((v.len() as f64 * q) as usize).min(v.len() - 1)];
    let mean = v.iter().sum::<Duration>() / v.len() as u32;
    format!(
        "p50 {:>8.1?}  p90 {:>8.1?}  p99 {:>8.1?}  mean {:>8.1?}",
        p(0.5),
        p(0.9),
        p(0.99),
        mean
    )
}

/// Round trips of a 100-byte request: over the link (request, answer), and
/// through Redis the way the bus carries traffic (PUBLISH to a channel the
/// other connection is subscribed to, which PUBLISHes the answer back), plus
/// a single one-way PUBLISH to delivery.
#[tokio::test]
#[ignore = "measurement"]
async fn round_trip_cost() {
    let Some(redis) = common::redis::RedisServer::start() else {
        return;
    };
    let n = 5000;
    let warmup = 200;
    let body = Bytes::from(vec![b'm'; 100]);

    // The peer answers at once (the other tests' handler sleeps to reorder).
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let echo = |b: Bytes| async move { b };
    tokio::spawn(serve(listener, echo, settings(), shutdown.clone()));
    let link = Link::connect(addr.to_string(), settings());
    let mut over_link = Vec::with_capacity(n);
    for i in 0..n + warmup {
        let t = Instant::now();
        link.request(body.clone(), Duration::from_secs(5))
            .await
            .unwrap();
        if i >= warmup {
            over_link.push(t.elapsed());
        }
    }

    let target = redis.target();
    let (push_a, mut pushes_a) = mpsc::unbounded_channel();
    let (push_b, mut pushes_b) = mpsc::unbounded_channel();
    let mut a = roomcast::redis::connect(&target, Some(push_a))
        .await
        .unwrap();
    let mut b = roomcast::redis::connect(&target, Some(push_b))
        .await
        .unwrap();
    a.subscribe(&["rt:answer".to_string()]).await.unwrap();
    b.subscribe(&["rt:request".to_string()]).await.unwrap();
    // The other node: answers every request on the answer channel.
    let answering = {
        let mut b = b.clone();
        tokio::spawn(async move {
            while let Some(push) = pushes_b.recv().await {
                if push.kind != redis::PushKind::Message {
                    continue;
                }
                let payload = match push.data.get(1) {
                    Some(redis::Value::BulkString(p)) => p.clone(),
                    _ => Vec::new(),
                };
                let _: i64 = redis::cmd("PUBLISH")
                    .arg("rt:answer")
                    .arg(payload)
                    .query_async(&mut b)
                    .await
                    .unwrap();
            }
        })
    };
    let mut over_redis = Vec::with_capacity(n);
    for i in 0..n + warmup {
        let t = Instant::now();
        let _: i64 = redis::cmd("PUBLISH")
            .arg("rt:request")
            .arg(body.as_ref())
            .query_async(&mut a)
            .await
            .unwrap();
        next_message(&mut pushes_a).await;
        if i >= warmup {
            over_redis.push(t.elapsed());
        }
    }
    answering.abort();

    // One way: a publishes, a's own subscription to a third channel receives.
    a.subscribe(&["rt:oneway".to_string()]).await.unwrap();
    let mut one_way = Vec::with_capacity(n);
    for i in 0..n + warmup {
        let t = Instant::now();
        let _: i64 = redis::cmd("PUBLISH")
            .arg("rt:oneway")
            .arg(body.as_ref())
            .query_async(&mut b)
            .await
            .unwrap();
        next_message(&mut pushes_a).await;
        if i >= warmup {
            one_way.push(t.elapsed());
        }
    }

    println!("{n} sequential round trips of a 100-byte body (after {warmup} warm-up):");
    println!(
        "node link, request + answer           {}",
        percentiles(over_link)
    );
    println!(
        "Redis bus, PUBLISH + PUBLISH back     {}",
        percentiles(over_redis)
    );
    println!(
        "Redis bus, one PUBLISH to delivery    {}",
        percentiles(one_way)
    );
    shutdown.cancel();
}
