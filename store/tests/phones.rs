//! Verified phone hashes in both directories (fjall, and a real
//! redis-server): one user per number, numbers move and are released.

use samvad_store::accounts::Accounts;
use samvad_store::directory::{Directory, LocalDirectory, RedisDirectory};
use samvad_store::groups::Groups;
use samvad_store::tokens::RefreshTokens;
use samvad_testkit::Redis;

async fn a_phone_hash_belongs_to_one_user_at_a_time(dir: &dyn Directory) {
    assert!(dir.claim_phone("ann", Some("h1"), None).await.unwrap());
    assert!(!dir.claim_phone("bob", Some("h1"), None).await.unwrap());
    assert!(
        dir.claim_phone("ann", Some("h1"), Some("h1"))
            .await
            .unwrap(),
        "again: a no-op"
    );
    // Ann moves to h2: h1 is free for Bob.
    assert!(dir
        .claim_phone("ann", Some("h2"), Some("h1"))
        .await
        .unwrap());
    assert!(dir.claim_phone("bob", Some("h1"), None).await.unwrap());
    // Releasing a number someone else holds changes nothing.
    assert!(dir.claim_phone("ann", None, Some("h1")).await.unwrap());
    let hashes = ["h1".to_string(), "h2".into(), "h3".into()];
    let found = dir.users_by_phone(&hashes).await.unwrap();
    assert_eq!(
        found,
        [("h1".into(), "bob".into()), ("h2".into(), "ann".into())]
    );
    // Ann releases hers.
    assert!(dir.claim_phone("ann", None, Some("h2")).await.unwrap());
    let found = dir.users_by_phone(&hashes).await.unwrap();
    assert_eq!(found, [("h1".into(), "bob".into())]);
    assert!(dir.users_by_phone(&[]).await.unwrap().is_empty());
}

#[tokio::test]
async fn fjall_directory_phones() {
    let tmp = tempfile::tempdir().unwrap();
    let db = fjall::Database::builder(tmp.path()).open().unwrap();
    let dir = LocalDirectory {
        accounts: Accounts::open(&db).unwrap(),
        refresh: RefreshTokens::open(&db).unwrap(),
        groups: Groups::open(&db).unwrap(),
    };
    a_phone_hash_belongs_to_one_user_at_a_time(&dir).await;
}

#[tokio::test]
async fn redis_directory_phones() {
    let redis = Redis::start();
    let dir = RedisDirectory::connect(&redis.url, "t.").await.unwrap();
    a_phone_hash_belongs_to_one_user_at_a_time(dir.as_ref()).await;
}
