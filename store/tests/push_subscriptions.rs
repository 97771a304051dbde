//! Web Push subscriptions, in both homes: fjall and a real redis-server.

use samvad_store::push_subscriptions::{
    Added, LocalPushSubscriptions, PushSubscriptions, RedisPushSubscriptions, WebPushSubscription,
    MAX_PER_USER,
};
use samvad_testkit::Redis;

fn subscription(n: usize) -> WebPushSubscription {
    WebPushSubscription {
        endpoint: format!("https://push.example/{n}"),
        p256dh: "key".into(),
        auth: "auth".into(),
    }
}

async fn one_per_endpoint_and_a_bounded_number(subs: &dyn PushSubscriptions) {
    assert_eq!(
        subs.add("ann", subscription(0)).await.unwrap(),
        Added::Added
    );
    let mut rekeyed = subscription(0);
    rekeyed.p256dh = "new key".into();
    assert_eq!(
        subs.add("ann", rekeyed.clone()).await.unwrap(),
        Added::Replaced
    );
    assert_eq!(subs.of("ann").await.unwrap(), vec![rekeyed]);
    assert!(subs.of("bob").await.unwrap().is_empty());
    for n in 1..MAX_PER_USER {
        assert_eq!(
            subs.add("ann", subscription(n)).await.unwrap(),
            Added::Added
        );
    }
    let extra = subscription(MAX_PER_USER);
    assert_eq!(subs.add("ann", extra.clone()).await.unwrap(), Added::Full);
    assert_eq!(subs.of("ann").await.unwrap().len(), MAX_PER_USER);
    assert!(subs.remove("ann", &subscription(3).endpoint).await.unwrap());
    assert!(!subs.remove("ann", &subscription(3).endpoint).await.unwrap());
    assert!(!subs.remove("bob", &subscription(4).endpoint).await.unwrap());
    assert_eq!(subs.add("ann", extra).await.unwrap(), Added::Added);
}

#[tokio::test]
async fn fjall_subscriptions_hold_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let db = fjall::Database::builder(dir.path()).open().unwrap();
    one_per_endpoint_and_a_bounded_number(&LocalPushSubscriptions::open(&db).unwrap()).await;
}

#[tokio::test]
async fn redis_subscriptions_hold_the_contract() {
    let redis = Redis::start();
    let subs = RedisPushSubscriptions::new(
        samvad_store::redis::RedisKeyspace::connect(&redis.url, "t.")
            .await
            .unwrap(),
    );
    one_per_endpoint_and_a_bounded_number(&subs).await;
}
