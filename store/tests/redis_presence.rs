//! Presence in a real redis-server (started on a free port per test).

use std::time::Duration;

use samvad_store::presence::{Presence, SessionRoute};
use samvad_store::redis_presence::RedisPresence;
use samvad_testkit::Redis;

fn route(session: &str, edge: &str) -> SessionRoute {
    SessionRoute {
        session: session.into(),
        edge: edge.into(),
    }
}

#[tokio::test]
async fn register_lookup_unregister_across_edges() {
    let redis = Redis::start();
    let ttl = Duration::from_secs(30);
    let edge_a = RedisPresence::connect(&redis.url, "t.", ttl).await.unwrap();
    let edge_b = RedisPresence::connect(&redis.url, "t.", ttl).await.unwrap();
    let store = RedisPresence::connect(&redis.url, "t.", ttl).await.unwrap();
    edge_a.register("alice", route("s1", "a")).await.unwrap();
    edge_b.register("alice", route("s2", "b")).await.unwrap();
    edge_b.register("bob", route("s3", "b")).await.unwrap();
    let map = store.lookup(&["alice", "bob", "carol"]).await;
    let mut alice = map["alice"].clone();
    alice.sort_by(|x, y| x.session.cmp(&y.session));
    assert_eq!(alice, vec![route("s1", "a"), route("s2", "b")]);
    assert_eq!(map["bob"], vec![route("s3", "b")]);
    assert!(!map.contains_key("carol"));
    edge_a.unregister("alice", "s1").await;
    let map = store.lookup(&["alice"]).await;
    assert_eq!(map["alice"], vec![route("s2", "b")]);
    // Another prefix is another cluster.
    let other = RedisPresence::connect(&redis.url, "u.", ttl).await.unwrap();
    assert!(other.lookup(&["alice"]).await.is_empty());
}

#[tokio::test]
async fn a_dead_edge_drops_out_by_expiry_a_live_one_stays() {
    let redis = Redis::start();
    let ttl = Duration::from_millis(900);
    let live = RedisPresence::connect(&redis.url, "t.", ttl).await.unwrap();
    let dying = RedisPresence::connect(&redis.url, "t.", ttl).await.unwrap();
    live.register("alice", route("s1", "live")).await.unwrap();
    dying.register("alice", route("s2", "dead")).await.unwrap();
    assert_eq!(live.lookup(&["alice"]).await["alice"].len(), 2);
    // The edge dies without unregistering: its heartbeat stops.
    drop(dying);
    tokio::time::sleep(ttl * 3).await;
    let map = live.lookup(&["alice"]).await;
    assert_eq!(
        map["alice"],
        vec![route("s1", "live")],
        "heartbeats kept the live session"
    );
}

#[tokio::test]
async fn an_unreachable_redis_means_no_presence_not_a_hang() {
    let mut redis = Redis::start();
    let presence = RedisPresence::connect(&redis.url, "t.", Duration::from_secs(30))
        .await
        .unwrap();
    redis.kill();
    let lookup = tokio::time::timeout(Duration::from_secs(20), presence.lookup(&["alice"])).await;
    assert!(lookup.expect("lookup returns").is_empty());
    // A session that cannot be registered is told so (it must not go
    // live unseen by the stores), and is not refreshed as if it were.
    let register = tokio::time::timeout(
        Duration::from_secs(20),
        presence.register("alice", route("s1", "e1")),
    )
    .await;
    assert!(register.expect("register returns").is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lookup_waits_for_a_redis_that_restarts() {
    let mut redis = Redis::start();
    let presence = RedisPresence::connect(&redis.url, "t.", Duration::from_secs(30))
        .await
        .unwrap();
    presence.register("alice", route("s1", "e1")).await.unwrap();
    redis.kill();
    let restart = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(800));
        redis.restart();
        redis
    });
    let found = presence.lookup(&["alice"]).await;
    let _redis = restart.join().unwrap();
    assert_eq!(found.get("alice").map(Vec::len), Some(1), "{found:?}");
}
