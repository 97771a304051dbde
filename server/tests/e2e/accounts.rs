//! Profiles and password changes through the real binary.

use crate::common::*;
use reqwest::Method;
use samvad_client::rest::{self, RestError};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_display_name_is_mine_to_set_and_everyone_logged_in_sees_it() {
    let server = TestServer::start();
    let http = &server.addr.http;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let (s, v) = call(
        Method::PATCH,
        format!("{http}/v1/me"),
        &alice.access_token,
        Some(json!({"display_name": "  Alice Liddell "})),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(v["display_name"], "Alice Liddell");
    let (s, v) = call(
        Method::GET,
        format!("{http}/v1/users/alice"),
        &bob.access_token,
        None,
    )
    .await;
    assert_eq!(
        (s, v),
        (
            200,
            json!({"user": "alice", "display_name": "Alice Liddell", "avatar": ""})
        )
    );
    let (s, _) = call(
        Method::GET,
        format!("{http}/v1/users/nobody"),
        &bob.access_token,
        None,
    )
    .await;
    assert_eq!(s, 404);
    let (s, _) = call(
        Method::GET,
        format!("{http}/v1/users/alice"),
        "forged",
        None,
    )
    .await;
    assert_eq!(s, 401);
    for bad in ["x".repeat(65), "line\nbreak".to_string()] {
        let (s, _) = call(
            Method::PATCH,
            format!("{http}/v1/me"),
            &alice.access_token,
            Some(json!({"display_name": bad})),
        )
        .await;
        assert_eq!(s, 400);
    }
    // A profile update is mine only: there is no way to name another user.
    let (s, v) = call(
        Method::GET,
        format!("{http}/v1/me"),
        &bob.access_token,
        None,
    )
    .await;
    assert_eq!((s, v["display_name"].clone()), (200, json!("")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changing_the_password_ends_every_other_login() {
    let server = TestServer::start();
    let http = &server.addr.http;
    let first = server.user("alice").await;
    let second = rest::login(http, "alice", "password-123").await.unwrap();
    // Tokens issued before the change must be in an earlier second.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;

    let url = format!("{http}/v1/me/password");
    let (s, v) = call(
        Method::POST,
        url.clone(),
        &first.access_token,
        Some(json!({"password": "wrong-password", "new_password": "password-456"})),
    )
    .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (401, Some("bad_credentials"))
    );
    let (s, _) = call(
        Method::POST,
        url.clone(),
        &first.access_token,
        Some(json!({"password": "password-123", "new_password": "short"})),
    )
    .await;
    assert_eq!(s, 400);
    let (s, fresh) = call(
        Method::POST,
        url,
        &first.access_token,
        Some(json!({"password": "password-123", "new_password": "password-456"})),
    )
    .await;
    assert_eq!(s, 200);

    for old in [&first.refresh_token, &second.refresh_token] {
        match rest::refresh(http, old).await {
            Err(RestError::Refused { status: 401, code }) => assert_eq!(code, "token_revoked"),
            other => panic!("an old login must end: {other:?}"),
        }
    }
    assert!(rest::login(http, "alice", "password-123").await.is_err());
    rest::login(http, "alice", "password-456").await.unwrap();
    let renewed = rest::refresh(http, fresh["refresh_token"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(renewed.user, "alice");
}

/// Uploads `content` as `content_type` into `conversation`; the file id.
async fn upload(http: &str, token: &str, conversation: &str, content_type: &str) -> String {
    let (s, t) = call(
        Method::POST,
        format!("{http}/v1/files"),
        token,
        Some(json!({"conversation": conversation, "size": 4, "content_type": content_type})),
    )
    .await;
    assert_eq!(s, 201, "{t}");
    let put = reqwest::Client::new()
        .put(format!("{http}{}", t["upload_url"].as_str().unwrap()))
        .header("content-type", content_type)
        .body(&b"\x89PNG"[..])
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 201);
    t["file_id"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_avatar_is_an_image_of_mine_that_everyone_may_see() {
    let server = TestServer::start();
    let http = &server.addr.http;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let picture = upload(http, &alice.access_token, "@avatars", "image/png").await;
    let (s, v) = call(
        Method::PATCH,
        format!("{http}/v1/me"),
        &alice.access_token,
        Some(json!({"avatar": picture})),
    )
    .await;
    assert_eq!((s, v["avatar"].as_str()), (200, Some(picture.as_str())));
    let (_, profile) = call(
        Method::GET,
        format!("{http}/v1/users/alice"),
        &bob.access_token,
        None,
    )
    .await;
    assert_eq!(profile["avatar"], picture.as_str());
    let (s, _) = call(
        Method::POST,
        format!("{http}/v1/files/{picture}/download-url"),
        &bob.access_token,
        None,
    )
    .await;
    assert_eq!(s, 200, "anyone may fetch an avatar");

    // Not an avatar upload, not mine, not an image, not a file: refused,
    // and the picture stays.
    let chat_file = upload(http, &alice.access_token, "alice:bob", "image/png").await;
    let bobs = upload(http, &bob.access_token, "@avatars", "image/png").await;
    let text = upload(http, &alice.access_token, "@avatars", "text/plain").await;
    for bad in [
        chat_file.as_str(),
        &bobs,
        &text,
        "0123456789abcdef0123456789abcdef",
        "../x",
    ] {
        let (s, v) = call(
            Method::PATCH,
            format!("{http}/v1/me"),
            &alice.access_token,
            Some(json!({"avatar": bad})),
        )
        .await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (400, Some("bad_avatar")),
            "{bad}"
        );
    }
    let (s, _) = call(
        Method::PATCH,
        format!("{http}/v1/me"),
        &alice.access_token,
        Some(json!({"avatar": picture, "user": "bob"})),
    )
    .await;
    assert_eq!(s, 400, "no field names another user");
    let (_, me) = call(
        Method::GET,
        format!("{http}/v1/me"),
        &alice.access_token,
        None,
    )
    .await;
    assert_eq!(me["avatar"], picture.as_str());
    // Empty removes it; the display name is untouched by an avatar change.
    let (s, v) = call(
        Method::PATCH,
        format!("{http}/v1/me"),
        &alice.access_token,
        Some(json!({"avatar": ""})),
    )
    .await;
    assert_eq!((s, v["avatar"].as_str()), (200, Some("")));
}
