//! The presence and rate-limit suites, run against the in-memory implementations,
//! against Redis (a real `redis-server` on a free port) and against a real
//! three-shard Redis Cluster.

mod common;

use common::redis::{RedisCluster, RedisServer};
use roomcast::ids::{SessionId, UserId};
use roomcast::presence::{MemoryPresence, Presence, Status};
use roomcast::ratelimit::{Action, Decision, Limits, MemoryRateLimiter, RateLimiter};
use roomcast::redis::presence::RedisPresence;
use roomcast::redis::ratelimit::RedisRateLimiter;
use roomcast::redis::{FailurePolicy, Target};
use std::sync::Arc;
use std::time::Duration;

fn u(s: &str) -> UserId {
    UserId::new(s).unwrap()
}

async fn presence_suite(p: Arc<dyn Presence>) {
    let alice = u("alice");
    assert_eq!(
        p.get_many(std::slice::from_ref(&alice)).await[0].status,
        Status::Offline
    );
    assert_eq!(
        p.get_many(std::slice::from_ref(&alice)).await[0].last_seen,
        None
    );
    let c = p
        .connected(&alice, SessionId(1))
        .await
        .expect("offline -> online");
    assert_eq!(c.status, Status::Online);
    assert!(
        p.connected(&alice, SessionId(2)).await.is_none(),
        "a second device changes nothing"
    );
    assert!(
        p.set_status(&alice, SessionId(1), Status::Away)
            .await
            .is_none(),
        "device 2 is active"
    );
    assert_eq!(
        p.set_status(&alice, SessionId(2), Status::Away)
            .await
            .unwrap()
            .status,
        Status::Away
    );
    assert_eq!(
        p.set_status(&alice, SessionId(2), Status::Online)
            .await
            .unwrap()
            .status,
        Status::Online
    );
    assert!(
        p.disconnected(&alice, SessionId(2)).await.unwrap().status == Status::Away,
        "only the away device is left"
    );
    let gone = p.disconnected(&alice, SessionId(1)).await.unwrap();
    assert_eq!(gone.status, Status::Offline);
    let seen = p.get_many(&[alice.clone(), u("bob")]).await;
    assert_eq!(seen[0].status, Status::Offline);
    assert!(
        seen[0].last_seen.is_some(),
        "last_seen is kept after going offline"
    );
    assert_eq!(seen[1].last_seen, None);
}

async fn ratelimit_suite(l: Arc<dyn RateLimiter>) {
    let alice = u("alice");
    for _ in 0..3 {
        assert_eq!(l.check(&alice, Action::Send).await, Decision::Allow);
    }
    let Decision::Deny { retry_after } = l.check(&alice, Action::Send).await else {
        panic!("the fourth send in a burst of 3 is refused");
    };
    assert!(
        retry_after > Duration::ZERO && retry_after <= Duration::from_millis(500),
        "{retry_after:?}"
    );
    assert_eq!(
        l.check(&u("bob"), Action::Send).await,
        Decision::Allow,
        "per user"
    );
    assert_eq!(
        l.check(&alice, Action::Join).await,
        Decision::Allow,
        "per action"
    );
    tokio::time::sleep(retry_after + Duration::from_millis(20)).await;
    assert_eq!(
        l.check(&alice, Action::Send).await,
        Decision::Allow,
        "allowed again after the hint"
    );
}

fn limits() -> Limits {
    let mut l = Limits::none();
    l.set(Action::Send, "2:3".parse().unwrap());
    l.set(Action::Join, "100:100".parse().unwrap());
    l
}

#[tokio::test]
async fn memory_presence() {
    presence_suite(Arc::new(MemoryPresence::new())).await;
}

#[tokio::test]
async fn memory_rate_limits() {
    ratelimit_suite(Arc::new(MemoryRateLimiter::new(limits()))).await;
}

/// The presence suite on Redis (one server or a cluster).
async fn redis_presence_suite(target: &Target) {
    let conn = roomcast::redis::connect(target, None).await.unwrap();
    presence_suite(Arc::new(RedisPresence::new(
        conn,
        "n1".into(),
        Duration::from_secs(30),
    )))
    .await;
}

/// The rate-limit suite on Redis (one server or a cluster).
async fn redis_ratelimit_suite(target: &Target) {
    let conn = roomcast::redis::connect(target, None).await.unwrap();
    ratelimit_suite(Arc::new(RedisRateLimiter::new(
        conn,
        limits(),
        FailurePolicy::Open,
    )))
    .await;
}

#[tokio::test]
async fn redis_presence() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    redis_presence_suite(&redis.target()).await;
}

#[tokio::test]
async fn redis_rate_limits() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    redis_ratelimit_suite(&redis.target()).await;
}

/// Two nodes' presence on `target` with a short TTL: one that "dies" (never
/// refreshes) and one that keeps its sessions alive and sweeps, whose lapse
/// reports arrive on the receiver until the token is cancelled.
struct DeadAndAlive {
    dead: Arc<RedisPresence>,
    alive: Arc<RedisPresence>,
    lapses: tokio::sync::mpsc::UnboundedReceiver<roomcast::presence::UserPresence>,
    stop: tokio_util::sync::CancellationToken,
    ttl: Duration,
}

async fn dead_and_alive(target: &Target) -> DeadAndAlive {
    let conn = roomcast::redis::connect(target, None).await.unwrap();
    let ttl = Duration::from_millis(300);
    let dead = Arc::new(RedisPresence::new(conn.clone(), "dead".into(), ttl));
    let alive = Arc::new(RedisPresence::new(conn, "alive".into(), ttl));
    let (tx, lapses) = tokio::sync::mpsc::unbounded_channel();
    let stop = tokio_util::sync::CancellationToken::new();
    alive.clone().spawn_maintenance(tx, stop.clone());
    DeadAndAlive {
        dead,
        alive,
        lapses,
        stop,
        ttl,
    }
}

#[tokio::test]
async fn redis_presence_of_a_dead_node_lapses() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    // Node 1 "dies": it never refreshes. Node 2 sweeps.
    let DeadAndAlive {
        dead,
        alive,
        lapses: mut rx,
        stop,
        ttl,
    } = dead_and_alive(&redis.target()).await;
    dead.connected(&u("carol"), SessionId(7)).await.unwrap();
    alive.connected(&u("dave"), SessionId(8)).await.unwrap();
    let change = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("swept within the TTL")
        .unwrap();
    assert_eq!(
        (change.user.as_str(), change.status),
        ("carol", Status::Offline)
    );
    tokio::time::sleep(ttl * 2).await;
    let now = alive.get_many(&[u("carol"), u("dave")]).await;
    assert_eq!(now[0].status, Status::Offline);
    assert!(now[0].last_seen.is_some());
    assert_eq!(
        now[1].status,
        Status::Online,
        "the living node refreshes its sessions"
    );
    stop.cancel();
}

#[tokio::test]
async fn redis_rate_limits_fail_open_or_closed_when_redis_is_gone() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let conn = roomcast::redis::connect(&redis.target(), None)
        .await
        .unwrap();
    let open = RedisRateLimiter::new(conn.clone(), limits(), FailurePolicy::Open);
    let closed = RedisRateLimiter::new(conn, limits(), FailurePolicy::Closed);
    redis.kill();
    let alice = u("alice");
    let t0 = std::time::Instant::now();
    assert_eq!(open.check(&alice, Action::Send).await, Decision::Allow);
    assert!(matches!(
        closed.check(&alice, Action::Send).await,
        Decision::Deny { .. }
    ));
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "never hangs on a dead Redis"
    );
    redis.restart();
    // The connection comes back by itself.
    let until = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let d = closed.check(&u("erin"), Action::Send).await;
        if d == Decision::Allow {
            break;
        }
        assert!(
            std::time::Instant::now() < until,
            "recovers when Redis returns"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn redis_cluster_presence() {
    let Some(cluster) = RedisCluster::start() else {
        return;
    };
    redis_presence_suite(&cluster.target()).await;
}

#[tokio::test]
async fn redis_cluster_rate_limits() {
    let Some(cluster) = RedisCluster::start() else {
        return;
    };
    redis_ratelimit_suite(&cluster.target()).await;
}

#[tokio::test]
async fn redis_cluster_presence_of_a_dead_node_lapses() {
    let Some(cluster) = RedisCluster::start() else {
        return;
    };
    let DeadAndAlive {
        dead,
        lapses: mut rx,
        stop,
        ..
    } = dead_and_alive(&cluster.target()).await;
    // Users in different buckets, hence (very likely) on different shards.
    let users: Vec<UserId> = (0..6).map(|i| u(&format!("ghost-{i}"))).collect();
    for (i, user) in users.iter().enumerate() {
        dead.connected(user, SessionId(i as u64)).await.unwrap();
    }
    // Presence is spread over the shards (bucket hash tags), not on one.
    let holding: Vec<usize> = cluster
        .on_every_node(&["DBSIZE"])
        .iter()
        .map(|l| l[0].trim().parse().unwrap())
        .collect();
    assert!(
        holding.iter().filter(|&&n| n > 0).count() >= 2,
        "keys on several shards: {holding:?}"
    );
    let mut lapsed = std::collections::HashSet::new();
    while lapsed.len() < users.len() {
        let change = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("swept within the TTL")
            .unwrap();
        assert_eq!(change.status, Status::Offline);
        assert!(lapsed.insert(change.user.clone()), "each lapse seen once");
    }
    stop.cancel();
}
