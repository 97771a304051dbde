//! The file store's contract, held by both homes: fjall (`samvad serve`)
//! and a real redis-server (the cluster).

use bytes::Bytes;
use samvad_store::files::{FileRecord, FileStore, LocalFiles, RedisFiles, Stored};
use samvad_testkit::Redis;

fn record(id: &str, owner: &str, content: &[u8]) -> FileRecord {
    FileRecord {
        id: id.into(),
        owner: owner.into(),
        conversation: "alice:bob".into(),
        sha256: format!("sha-of-{}", content.len()),
        size: content.len() as u64,
        content_type: "text/plain".into(),
        created_ms: 1,
    }
}

async fn quota_counts_every_upload_and_refuses_past_it(files: &dyn FileStore) {
    let content = Bytes::from_static(b"0123456789");
    let a = record("a", "alice", &content);
    let put = |r: &FileRecord, quota| files.put(r.clone(), content.clone(), quota);
    assert_eq!(put(&a, 25).await.unwrap(), Stored::Stored);
    // The same content again, under a new id: stored once, counted twice.
    let b = FileRecord {
        id: "b".into(),
        ..a.clone()
    };
    assert_eq!(put(&b, 25).await.unwrap(), Stored::Stored);
    assert_eq!(files.usage("alice").await.unwrap(), 20);
    let c = FileRecord {
        id: "c".into(),
        ..a.clone()
    };
    assert_eq!(put(&c, 25).await.unwrap(), Stored::OverQuota { used: 20 });
    assert_eq!(files.record("c").await.unwrap(), None);
    // An id is written once.
    assert_eq!(put(&a, 100).await.unwrap(), Stored::Exists);
    assert_eq!(files.usage("alice").await.unwrap(), 20);
    assert_eq!(files.usage("bob").await.unwrap(), 0);
    assert_eq!(files.record("a").await.unwrap(), Some(a.clone()));
    assert_eq!(
        files.content(&a.sha256).await.unwrap(),
        Some(content.clone())
    );
    assert_eq!(files.content("nope").await.unwrap(), None);
}

#[tokio::test]
async fn fjall_files_hold_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let db = fjall::Database::builder(dir.path()).open().unwrap();
    quota_counts_every_upload_and_refuses_past_it(&LocalFiles::open(&db).unwrap()).await;
}

#[tokio::test]
async fn redis_files_hold_the_contract() {
    let redis = Redis::start();
    let files = RedisFiles::new(
        samvad_store::redis::RedisKeyspace::connect(&redis.url, "t.")
            .await
            .unwrap(),
    );
    quota_counts_every_upload_and_refuses_past_it(&files).await;
}
