//! Groups in the Redis directory (a real redis-server): creation, the
//! compare-and-set of changes (a Lua script), the member index, deletion —
//! the same contract the fjall directory's unit tests check.

use samvad_core::group::{Group, Member, Role};
use samvad_core::group_rules::Change;
use samvad_store::directory::Directory;
use samvad_store::redis::RedisKeyspace;
use samvad_testkit::Redis;

fn group() -> Group {
    Group {
        id: "g1".into(),
        name: "crew".into(),
        created_ms: 1,
        version: 0,
        members: vec![
            Member {
                user: "ann".into(),
                role: Role::Creator,
                rights: Default::default(),
            },
            Member {
                user: "bob".into(),
                role: Role::Member,
                rights: Default::default(),
            },
        ],
        invites: Vec::new(),
        channel: false,
    }
}

fn account(name: &str) -> samvad_store::accounts::Account {
    samvad_store::accounts::Account {
        username: name.into(),
        password_hash: "h".into(),
        created_ms: 1,
        ..Default::default()
    }
}

#[tokio::test]
async fn group_changes_are_compare_and_set_and_keep_the_index() {
    let redis = Redis::start();
    let dir = Directory::connect(&RedisKeyspace::connect(&redis.url, "t.").await.unwrap());
    let v0 = group();
    assert!(dir.groups.create(v0.clone()).await.unwrap());
    assert!(
        !dir.groups.create(v0.clone()).await.unwrap(),
        "ids are unique"
    );
    assert_eq!(dir.groups.of_member("bob").await.unwrap(), ["g1"]);

    // Two changes read v0; the first write wins, the second must re-read.
    let mut invite = v0.clone();
    invite
        .apply("ann", Change::Invite { user: "cat".into() }, 2)
        .unwrap();
    let mut removal = v0.clone();
    removal
        .apply("ann", Change::Remove { user: "bob".into() }, 2)
        .unwrap();
    assert!(dir.groups.replace(&v0, &invite).await.unwrap());
    assert!(!dir.groups.replace(&v0, &removal).await.unwrap(), "stale");
    let v1 = dir.groups.get("g1").await.unwrap().unwrap();
    assert_eq!(v1, invite);
    let mut v2 = v1.clone();
    v2.apply("cat", Change::Accept, 3).unwrap();
    v2.apply("ann", Change::Remove { user: "bob".into() }, 3)
        .unwrap();
    assert!(dir.groups.replace(&v1, &v2).await.unwrap());
    assert_eq!(dir.groups.of_member("cat").await.unwrap(), ["g1"]);
    assert!(dir.groups.of_member("bob").await.unwrap().is_empty());

    assert!(
        !dir.groups.delete(&v1).await.unwrap(),
        "needs the current version"
    );
    assert!(dir.groups.delete(&v2).await.unwrap());
    assert_eq!(dir.groups.get("g1").await.unwrap(), None);
    assert!(dir.groups.of_member("ann").await.unwrap().is_empty());
    assert!(dir.groups.of_member("cat").await.unwrap().is_empty());
}

#[tokio::test]
async fn channels_are_listed_by_name_and_follow_renames_and_deletion() {
    let redis = Redis::start();
    let dir = Directory::connect(&RedisKeyspace::connect(&redis.url, "t.").await.unwrap());
    let mut news = group();
    news.id = "c1".into();
    news.name = "World News".into();
    news.channel = true;
    let mut sport = news.clone();
    sport.id = "c2".into();
    sport.name = "sport".into();
    for g in [&news, &sport, &group()] {
        assert!(dir.groups.create(g.clone()).await.unwrap());
    }
    let names = |list: Vec<(String, String)>| list.into_iter().map(|(_, n)| n).collect::<Vec<_>>();
    assert_eq!(
        names(dir.groups.channels("", 10).await.unwrap()),
        ["sport", "World News"]
    );
    assert_eq!(
        names(dir.groups.channels("news", 10).await.unwrap()),
        ["World News"]
    );
    let mut renamed = news.clone();
    renamed
        .apply(
            "ann",
            Change::Rename {
                name: "Local News".into(),
            },
            2,
        )
        .unwrap();
    assert!(dir.groups.replace(&news, &renamed).await.unwrap());
    assert_eq!(
        names(dir.groups.channels("NEWS", 10).await.unwrap()),
        ["Local News"]
    );
    assert!(dir.groups.delete(&renamed).await.unwrap());
    assert_eq!(names(dir.groups.channels("", 10).await.unwrap()), ["sport"]);
}

#[tokio::test]
async fn users_are_found_by_similar_names() {
    let redis = Redis::start();
    let dir = Directory::connect(&RedisKeyspace::connect(&redis.url, "t.").await.unwrap());
    for name in ["margaret", "margarita", "bob"] {
        let account = samvad_store::accounts::Account {
            username: name.into(),
            password_hash: "h".into(),
            created_ms: 1,
            ..Default::default()
        };
        assert!(dir.accounts.create(account).await.unwrap());
    }
    let found = dir.accounts.search("margret", 10).await.unwrap();
    assert_eq!(found[0].0, "margaret", "{found:?}");
    assert!(found.iter().any(|(n, _)| n == "margarita"));
    assert!(found.iter().all(|(n, _)| n != "bob"));
    assert!(dir.accounts.search("zzz", 10).await.unwrap().is_empty());
}

/// Redis is the cluster's store of record for accounts and groups: run
/// with its AOF, a kill -9 and restart loses none of them, and the same
/// directory (its connection manager) goes on once the server is back.
#[tokio::test]
async fn accounts_and_groups_survive_a_kill_9_of_redis() {
    let mut redis = Redis::start();
    let dir = Directory::connect(&RedisKeyspace::connect(&redis.url, "t.").await.unwrap());
    assert!(dir.accounts.create(account("ann")).await.unwrap());
    assert!(dir.groups.create(group()).await.unwrap());
    redis.restart();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let found = loop {
        match dir.accounts.exists("ann").await {
            Ok(found) => break found,
            Err(e) => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "Redis never came back: {e}"
                );
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    };
    assert!(found, "the account survived");
    assert_eq!(dir.groups.get("g1").await.unwrap(), Some(group()));
    assert_eq!(dir.groups.of_member("bob").await.unwrap(), ["g1"]);
}

/// A user found once is known for good (accounts are never deleted): an
/// edge does not ask Redis about a recipient on every send, and sends to
/// known users go on while Redis restarts. An unknown name still asks.
#[tokio::test]
async fn a_known_user_stays_known_while_redis_is_away() {
    let mut redis = Redis::start();
    let dir = Directory::connect(&RedisKeyspace::connect(&redis.url, "t.").await.unwrap());
    assert!(dir.accounts.create(account("ann")).await.unwrap());
    assert!(dir.accounts.exists("ann").await.unwrap());
    assert!(
        !dir.accounts.exists("nobody").await.unwrap(),
        "no is not remembered"
    );
    redis.kill();
    assert!(dir.accounts.exists("ann").await.unwrap());
    assert!(
        dir.accounts.exists("stranger").await.is_err(),
        "an unknown name needs Redis"
    );
}
