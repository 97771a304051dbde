//! Phone numbers through the real binary: a number counts only once its
//! owner typed back the code the SMS gateway (a local webhook receiver
//! here) was asked to send; contacts match verified numbers by hash; a
//! number cannot be claimed by guessing codes or from its owner.

use crate::common::push_service::{next_at, push_endpoint};
use crate::common::*;
use hmac::Mac;
use reqwest::Method;
use serde_json::{json, Value};
use sha2::Digest;

const SECRET: &str = "sms-secret";
const PHONE: &str = "+15551234567";

fn hash(phone: &str) -> String {
    hex::encode(sha2::Sha256::digest(phone.as_bytes()))
}

async fn request_code(base: &str, token: &str, phone: &str) -> (u16, Value) {
    call(
        Method::POST,
        format!("{base}/v1/me/phone"),
        token,
        Some(json!({ "phone": phone })),
    )
    .await
}

async fn verify(base: &str, token: &str, code: &str) -> (u16, Value) {
    call(
        Method::POST,
        format!("{base}/v1/me/phone/verify"),
        token,
        Some(json!({ "code": code })),
    )
    .await
}

async fn matched(base: &str, token: &str, hashes: &[String]) -> Value {
    let (status, v) = call(
        Method::POST,
        format!("{base}/v1/contacts/match"),
        token,
        Some(json!({ "phone_sha256s": hashes })),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    v["phones"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verified_number_finds_its_owner_and_nobody_else_can_take_it() {
    let (gateway, mut sms) = push_endpoint().await;
    let server = TestServer::start_with(&[
        "--sms-webhook",
        &format!("{gateway}/sms"),
        "--sms-webhook-secret",
        SECRET,
    ]);
    let base = server.addr.http.clone();
    let (a, b, c) = server.alice_bob_carol().await;

    let (status, _) = request_code(&base, &a.access_token, PHONE).await;
    assert_eq!(status, 202);
    let message = next_at(&mut sms, "/sms").await;
    let timestamp = message.headers["x-samvad-timestamp"].to_str().unwrap();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(&message.body);
    assert_eq!(
        message.headers["x-samvad-signature"].to_str().unwrap(),
        format!("v1={}", hex::encode(mac.finalize().into_bytes())),
        "the gateway can tell the request is ours"
    );
    let sent: Value = serde_json::from_slice(&message.body).unwrap();
    assert_eq!(
        (sent["user"].as_str(), sent["phone"].as_str()),
        (Some("alice"), Some(PHONE))
    );
    let code = sent["code"].as_str().unwrap().to_string();

    // Unverified, the number finds nobody.
    assert_eq!(
        matched(&base, &b.access_token, &[hash(PHONE)]).await,
        json!([])
    );
    let wrong = if code == "000000" { "000001" } else { "000000" };
    let (status, v) = verify(&base, &a.access_token, wrong).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (400, Some("wrong_code"))
    );
    let (status, me) = verify(&base, &a.access_token, &code).await;
    assert_eq!(
        (status, me["phone_verified"].as_bool()),
        (200, Some(true)),
        "{me}"
    );
    assert_eq!(
        matched(
            &base,
            &b.access_token,
            &[hash(PHONE), hash("+15550000000"), "not a hash".into()]
        )
        .await,
        json!([{"phone_sha256": hash(PHONE), "user": "alice"}])
    );

    // Carol asks for the same number: guessing the code runs out of tries.
    let (status, _) = request_code(&base, &c.access_token, PHONE).await;
    assert_eq!(status, 202);
    let carols_code = serde_json::from_slice::<Value>(&next_at(&mut sms, "/sms").await.body)
        .unwrap()["code"]
        .as_str()
        .unwrap()
        .to_string();
    let mut guesses = (0..1_000_000u32)
        .map(|n| format!("{n:06}"))
        .filter(|g| *g != carols_code);
    for _ in 0..5 {
        let (status, v) = verify(&base, &c.access_token, &guesses.next().unwrap()).await;
        assert_eq!(
            (status, v["error"]["code"].as_str()),
            (400, Some("wrong_code"))
        );
    }
    let (status, v) = verify(&base, &c.access_token, &carols_code).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (400, Some("no_pending_code")),
        "after five wrong codes even the right one is too late"
    );
    // With the phone itself (a number given to someone new), she still
    // cannot take it while Alice holds it.
    request_code(&base, &c.access_token, PHONE).await;
    let code = serde_json::from_slice::<Value>(&next_at(&mut sms, "/sms").await.body).unwrap()
        ["code"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, v) = verify(&base, &c.access_token, &code).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (409, Some("phone_taken"))
    );

    // Alice lets go of it: nobody is found by it any more.
    let (status, _) = call(
        Method::DELETE,
        format!("{base}/v1/me/phone"),
        &a.access_token,
        None,
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(
        matched(&base, &b.access_token, &[hash(PHONE)]).await,
        json!([])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_numbers_and_a_server_without_a_gateway_are_refused() {
    let server = TestServer::start();
    let base = server.addr.http.clone();
    let a = server.user("alice").await;
    for bad in [
        "5551234567",
        "+0551234567",
        "+1 555 1234",
        "",
        "+1234567890123456",
    ] {
        let (status, v) = request_code(&base, &a.access_token, bad).await;
        assert_eq!(
            (status, v["error"]["code"].as_str()),
            (400, Some("bad_phone")),
            "{bad:?}"
        );
    }
    let (status, v) = request_code(&base, &a.access_token, PHONE).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (503, Some("sms_unavailable"))
    );
    let (status, v) = verify(&base, &a.access_token, "123456").await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (400, Some("no_pending_code"))
    );
    let too_many: Vec<String> = (0..1001).map(|i| format!("{i:064}")).collect();
    let (status, v) = call(
        Method::POST,
        format!("{base}/v1/contacts/match"),
        &a.access_token,
        Some(json!({ "phone_sha256s": too_many })),
    )
    .await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (400, Some("too_many_contacts"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_that_refuses_the_code_is_a_bad_gateway() {
    // The local receiver answers 410 under /gone/.
    let (gateway, mut sms) = push_endpoint().await;
    let server = TestServer::start_with(&[
        "--sms-webhook",
        &format!("{gateway}/gone/sms"),
        "--sms-webhook-secret",
        SECRET,
    ]);
    let a = server.user("alice").await;
    let (status, v) = request_code(&server.addr.http, &a.access_token, PHONE).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (502, Some("sms_failed"))
    );
    next_at(&mut sms, "/gone/sms").await;
}
