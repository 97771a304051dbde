//! Verified phone hashes in both homes (fjall, and a real
//! redis-server): one user per number, numbers move and are released.

use samvad_store::phones::{PhoneStore, Phones, RedisPhones};
use samvad_store::redis::RedisKeyspace;
use samvad_testkit::Redis;

async fn a_phone_hash_belongs_to_one_user_at_a_time(dir: &dyn PhoneStore) {
    assert!(dir.claim("ann", Some("h1"), None).await.unwrap());
    assert!(!dir.claim("bob", Some("h1"), None).await.unwrap());
    assert!(
        dir.claim("ann", Some("h1"), Some("h1")).await.unwrap(),
        "again: a no-op"
    );
    // Ann moves to h2: h1 is free for Bob.
    assert!(dir.claim("ann", Some("h2"), Some("h1")).await.unwrap());
    assert!(dir.claim("bob", Some("h1"), None).await.unwrap());
    // Releasing a number someone else holds changes nothing.
    assert!(dir.claim("ann", None, Some("h1")).await.unwrap());
    let hashes = ["h1".to_string(), "h2".into(), "h3".into()];
    let found = dir.users(&hashes).await.unwrap();
    assert_eq!(
        found,
        [("h1".into(), "bob".into()), ("h2".into(), "ann".into())]
    );
    // Ann releases hers.
    assert!(dir.claim("ann", None, Some("h2")).await.unwrap());
    let found = dir.users(&hashes).await.unwrap();
    assert_eq!(found, [("h1".into(), "bob".into())]);
    assert!(dir.users(&[]).await.unwrap().is_empty());
}

#[tokio::test]
async fn fjall_directory_phones() {
    let tmp = tempfile::tempdir().unwrap();
    let db = fjall::Database::builder(tmp.path()).open().unwrap();
    a_phone_hash_belongs_to_one_user_at_a_time(&Phones::open(&db).unwrap()).await;
}

#[tokio::test]
async fn redis_directory_phones() {
    let redis = Redis::start();
    let redis = RedisKeyspace::connect(&redis.url, "t.").await.unwrap();
    a_phone_hash_belongs_to_one_user_at_a_time(&RedisPhones::new(redis)).await;
}
