//! Files through the real binary: upload and download by signed URL, for
//! the members of the conversation a file was sent in and nobody else;
//! size limits and quotas; and the attacks the seed systems fell to
//! (guessing another conversation's file id, choosing the storage path,
//! forging or replaying a URL).

use crate::common::*;
use reqwest::Method;
use samvad_client::rest;
use samvad_client::{chat, TransportKind};
use samvad_proto::v1::{client_frame, Attachment, Send};
use serde_json::{json, Value};

/// Asks for an upload URL: the status and the answer.
async fn ticket(
    base: &str,
    token: &str,
    conversation: &str,
    size: usize,
    content_type: &str,
) -> (u16, Value) {
    call(
        Method::POST,
        format!("{base}/v1/files"),
        token,
        Some(json!({"conversation": conversation, "size": size, "content_type": content_type})),
    )
    .await
}

/// PUTs `content` to `url` (a path with its signed query).
async fn put(base: &str, url: &str, content: &[u8], content_type: &str) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .put(format!("{base}{url}"))
        .header("content-type", content_type)
        .body(content.to_vec())
        .send()
        .await
        .unwrap();
    (
        resp.status().as_u16(),
        resp.json().await.unwrap_or_default(),
    )
}

/// Uploads `content` into `conversation`; the file id.
async fn upload(base: &str, token: &str, conversation: &str, content: &[u8]) -> String {
    let (status, t) = ticket(base, token, conversation, content.len(), "text/plain").await;
    assert_eq!(status, 201, "{t}");
    let (status, stored) = put(
        base,
        t["upload_url"].as_str().unwrap(),
        content,
        "text/plain",
    )
    .await;
    assert_eq!(status, 201, "{stored}");
    t["file_id"].as_str().unwrap().to_string()
}

async fn download_url(base: &str, token: &str, id: &str) -> (u16, Value) {
    call(
        Method::POST,
        format!("{base}/v1/files/{id}/download-url"),
        token,
        None,
    )
    .await
}

async fn get(base: &str, url: &str) -> reqwest::Response {
    reqwest::get(format!("{base}{url}")).await.unwrap()
}

fn code(answer: &Value) -> &str {
    answer["error"]["code"].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_sent_in_a_chat_reaches_its_two_users_and_nobody_else() {
    let server = TestServer::start();
    let base = server.addr.http.clone();
    let (a, b, c) = server.alice_bob_carol().await;
    let content = b"the minutes of the meeting".as_slice();
    let (status, t) = ticket(
        &base,
        &a.access_token,
        "alice:bob",
        content.len(),
        "text/plain",
    )
    .await;
    assert_eq!(status, 201, "{t}");
    let id = t["file_id"].as_str().unwrap().to_string();
    let (status, stored) = put(
        &base,
        t["upload_url"].as_str().unwrap(),
        content,
        "text/plain",
    )
    .await;
    assert_eq!(status, 201, "{stored}");
    assert_eq!(stored["sha256"], hex_sha256(content));
    assert_eq!(stored["conversation"], "alice:bob");

    // The message carries only the reference; Bob takes the id from it.
    let mut alice = server.connect(TransportKind::Quic, &a).await;
    let mut bob = server.connect(TransportKind::Ws, &b).await;
    sync_all(&mut alice, 0).await;
    sync_all(&mut bob, 0).await;
    let mut env = chat("m1", "alice", "bob", "");
    env.attachments.push(Attachment {
        file_id: id.clone(),
        name: "minutes.txt".into(),
        content_type: "text/plain".into(),
        size: content.len() as u64,
        sha256: stored["sha256"].as_str().unwrap().into(),
    });
    alice
        .send(client_frame::Kind::Send(Send {
            envelope: Some(env),
        }))
        .await
        .unwrap();
    let got = next_user_message(&mut bob).await;
    let id = got.attachments[0].file_id.clone();

    // Bob downloads it through his own URL; the headers keep a browser from
    // running it.
    let (status, d) = download_url(&base, &b.access_token, &id).await;
    assert_eq!(status, 200, "{d}");
    let resp = get(&base, d["url"].as_str().unwrap()).await;
    assert_eq!(resp.status(), 200);
    let headers = resp.headers().clone();
    assert_eq!(headers["content-type"], "text/plain");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["content-security-policy"], "sandbox");
    assert_eq!(headers["content-disposition"], "attachment");
    assert_eq!(resp.bytes().await.unwrap().as_ref(), content);
    let (status, _) = download_url(&base, &a.access_token, &id).await;
    assert_eq!(status, 200, "the sender reads it too");

    // Carol, who knows the id, gets the same 404 as for an id that does not
    // exist.
    let (status, refused) = download_url(&base, &c.access_token, &id).await;
    assert_eq!((status, code(&refused)), (404, "not_found"));
    let (status, unknown) =
        download_url(&base, &c.access_token, "0123456789abcdef0123456789abcdef").await;
    assert_eq!((status, code(&unknown)), (404, "not_found"));

    // Carol cannot upload into a chat that is not hers either.
    let (status, refused) = ticket(&base, &c.access_token, "alice:bob", 3, "text/plain").await;
    assert_eq!(
        (status, code(&refused)),
        (400, "bad_conversation"),
        "{refused}"
    );

    // The same content again is stored once but counted twice.
    upload(&base, &a.access_token, "alice:bob", content).await;
    let (_, storage) = call(
        Method::GET,
        format!("{base}/v1/me/storage"),
        &a.access_token,
        None,
    )
    .await;
    assert_eq!(storage["used"], 2 * content.len());
}

fn hex_sha256(content: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(content))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_files_are_for_current_members_and_avatars_for_everyone() {
    let server = TestServer::start();
    let base = server.addr.http.clone();
    let (a, b, c) = server.alice_bob_carol().await;
    let group = rest::create_group(&base, &a.access_token, "crew", &["bob".into()])
        .await
        .unwrap();
    let id = upload(&base, &b.access_token, &group.id, b"holiday photo").await;
    let (status, _) = download_url(&base, &a.access_token, &id).await;
    assert_eq!(status, 200);
    let (status, refused) = download_url(&base, &c.access_token, &id).await;
    assert_eq!((status, code(&refused)), (404, "not_found"));
    let (status, refused) = ticket(&base, &c.access_token, &group.id, 3, "text/plain").await;
    assert_eq!((status, code(&refused)), (403, "not_member"));

    // Bob leaves: his old files are no longer his to read.
    let (status, _) = call(
        Method::DELETE,
        format!("{base}/v1/groups/{}/members/bob", group.id),
        &b.access_token,
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (status, _) = download_url(&base, &b.access_token, &id).await;
    assert_eq!(status, 404);

    // An avatar is readable by anyone signed in.
    let avatar = upload(&base, &c.access_token, "@avatars", b"a face").await;
    let (status, _) = download_url(&base, &a.access_token, &avatar).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guessed_ids_forged_urls_and_chosen_paths_get_nothing() {
    let server = TestServer::start();
    let base = server.addr.http.clone();
    let (a, c) = (server.user("alice").await, server.user("carol").await);
    server.user("bob").await;
    server.user("dave").await;
    let secret = upload(&base, &a.access_token, "alice:bob", b"alice's secret").await;
    let mine = upload(&base, &c.access_token, "carol:dave", b"carol's file").await;

    // Carol's valid download URL, with Alice's file id in it.
    let (_, d) = download_url(&base, &c.access_token, &mine).await;
    let url = d["url"].as_str().unwrap();
    let resp = get(&base, &url.replace(&mine, &secret)).await;
    assert_eq!(resp.status(), 403, "another id under Carol's signature");
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(code(&answer), "bad_signature");
    // Changing who the URL is for, or dropping the signature.
    let resp = get(&base, &url.replace("user=carol", "user=alice")).await;
    assert_eq!(resp.status(), 403);
    let resp = get(&base, url.split("&sig=").next().unwrap()).await;
    assert_eq!(resp.status(), 403);
    let resp = get(&base, &format!("/v1/files/{secret}/content")).await;
    assert_eq!(resp.status(), 403);

    // A client-chosen storage path: the upload URL's id swapped for a path,
    // or for an id the client picked, is refused and stores nothing.
    let (_, t) = ticket(&base, &c.access_token, "carol:dave", 4, "text/plain").await;
    let upload_url = t["upload_url"].as_str().unwrap();
    let file_id = t["file_id"].as_str().unwrap();
    for chosen in [
        "..%2F..%2F..%2Ftmp%2Fevil".to_string(),
        "ffffffffffffffffffffffffffffffff".to_string(),
        format!("{file_id}%2F..%2F{secret}"),
    ] {
        let (status, answer) = put(
            &base,
            &upload_url.replace(file_id, &chosen),
            b"evil",
            "text/plain",
        )
        .await;
        assert!(matches!(status, 403 | 404), "{chosen}: {status} {answer}");
    }
    let (status, refused) =
        download_url(&base, &c.access_token, "ffffffffffffffffffffffffffffffff").await;
    assert_eq!(status, 404, "{refused}");
    // The URL still works for its own id, once.
    let (status, _) = put(&base, upload_url, b"good", "text/plain").await;
    assert_eq!(status, 201);
    let (status, again) = put(&base, upload_url, b"good", "text/plain").await;
    assert_eq!((status, code(&again)), (409, "already_uploaded"));
    // Alice's file is untouched.
    let (_, d) = download_url(&base, &a.access_token, &secret).await;
    let body = get(&base, d["url"].as_str().unwrap())
        .await
        .bytes()
        .await
        .unwrap();
    assert_eq!(body.as_ref(), b"alice's secret");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sizes_types_and_quotas_are_held_to() {
    let server = TestServer::start_with(&["--max-file-bytes", "64", "--file-quota-bytes", "100"]);
    let base = server.addr.http.clone();
    let a = server.user("alice").await;
    server.user("bob").await;
    let token = a.access_token.as_str();

    let (status, refused) = ticket(&base, token, "alice:bob", 65, "text/plain").await;
    assert_eq!((status, code(&refused)), (413, "file_too_large"));
    let (status, refused) = ticket(&base, token, "alice:bob", 0, "text/plain").await;
    assert_eq!((status, code(&refused)), (413, "file_too_large"));
    for bad_type in [
        "text/html; charset=utf-8",
        "TEXT/PLAIN",
        "nonsense",
        "a\r\nb/c",
    ] {
        let (status, refused) = ticket(&base, token, "alice:bob", 5, bad_type).await;
        assert_eq!(
            (status, code(&refused)),
            (400, "bad_content_type"),
            "{bad_type:?}"
        );
    }
    let (status, refused) = ticket(&base, token, "alice:nobody", 5, "text/plain").await;
    assert_eq!((status, code(&refused)), (400, "unknown_user"));
    let (status, refused) = ticket(&base, token, "not a conversation", 5, "text/plain").await;
    assert_eq!((status, code(&refused)), (400, "bad_conversation"));
    let (status, refused) = call(
        Method::POST,
        format!("{base}/v1/files"),
        token,
        Some(json!({"conversation": "alice:bob"})),
    )
    .await;
    assert_eq!((status, code(&refused)), (400, "bad_request"));

    // The URL is bound to the size and type it was issued for.
    let (_, t) = ticket(&base, token, "alice:bob", 10, "text/plain").await;
    let url = t["upload_url"].as_str().unwrap();
    let (status, refused) = put(&base, url, b"123456789", "text/plain").await;
    assert_eq!((status, code(&refused)), (400, "size_mismatch"));
    let (status, refused) = put(&base, url, b"0123456789", "text/html").await;
    assert_eq!((status, code(&refused)), (400, "content_type_mismatch"));
    let (status, _) = put(&base, url, &[b'x'; 200], "text/plain").await;
    assert_eq!(status, 413, "a body over the limit is cut off");
    let (status, _) = put(&base, url, b"0123456789", "text/plain").await;
    assert_eq!(status, 201);

    // 10 + 60 fit in 100; 10 + 60 + 60 do not, whether asked or uploaded.
    upload(&base, token, "alice:bob", &[b'y'; 60]).await;
    let (status, refused) = ticket(&base, token, "alice:bob", 60, "text/plain").await;
    assert_eq!((status, code(&refused)), (413, "quota_exceeded"));
    let (_, t1) = ticket(&base, token, "alice:bob", 20, "text/plain").await;
    let (_, t2) = ticket(&base, token, "alice:bob", 20, "text/plain").await;
    let (s1, _) = put(
        &base,
        t1["upload_url"].as_str().unwrap(),
        &[b'z'; 20],
        "text/plain",
    )
    .await;
    let (s2, refused) = put(
        &base,
        t2["upload_url"].as_str().unwrap(),
        &[b'w'; 20],
        "text/plain",
    )
    .await;
    assert_eq!((s1, s2, code(&refused)), (201, 413, "quota_exceeded"));
    let (_, storage) = call(Method::GET, format!("{base}/v1/me/storage"), token, None).await;
    assert_eq!(storage, json!({"used": 90, "quota": 100, "max_file": 64}));
}
