//! The server against its OpenAPI description (`api/openapi.json`): every
//! documented operation answers with a documented status and a body of the
//! documented shape, secured operations refuse a missing token with 401,
//! and no documented path accepts an undocumented method.

use crate::common::*;
use reqwest::Method;
use samvad_client::rest;
use serde_json::{json, Value};

const SPEC: &str = include_str!("../../../api/openapi.json");

/// Checks `value` against `schema` (the subset the description uses:
/// `$ref`, object with `required` and `properties`, array `items`, and
/// scalar types).
fn check(spec: &Value, schema: &Value, value: &Value, at: &str) {
    if let Some(reference) = schema["$ref"].as_str() {
        let name = reference.rsplit('/').next().unwrap();
        return check(spec, &spec["components"]["schemas"][name], value, at);
    }
    match schema["type"].as_str() {
        Some("object") => {
            assert!(value.is_object(), "{at}: expected an object, got {value}");
            for key in schema["required"].as_array().into_iter().flatten() {
                let key = key.as_str().unwrap();
                assert!(value.get(key).is_some(), "{at}: missing `{key}` in {value}");
            }
            if let Some(props) = schema["properties"].as_object() {
                for (key, sub) in props {
                    if let Some(v) = value.get(key) {
                        check(spec, sub, v, &format!("{at}.{key}"));
                    }
                }
            }
        }
        Some("array") => {
            let items = value
                .as_array()
                .unwrap_or_else(|| panic!("{at}: expected an array"));
            for (i, item) in items.iter().enumerate() {
                check(spec, &schema["items"], item, &format!("{at}[{i}]"));
            }
        }
        Some("string") => {
            let s = value
                .as_str()
                .unwrap_or_else(|| panic!("{at}: expected a string"));
            if let Some(allowed) = schema["enum"].as_array() {
                assert!(
                    allowed.iter().any(|a| a == s),
                    "{at}: {s:?} not in {allowed:?}"
                );
            }
        }
        Some("integer") => assert!(
            value.is_i64() || value.is_u64(),
            "{at}: expected an integer"
        ),
        _ => {}
    }
}

struct Call {
    status: u16,
    body: Option<Value>,
}

async fn send(method: Method, url: &str, token: Option<&str>, body: Option<&Value>) -> Call {
    let mut req = reqwest::Client::new().request(method, url);
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    if let Some(body) = body {
        req = req.json(body);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let is_json = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let body = if is_json {
        resp.json().await.ok()
    } else {
        None
    };
    Call { status, body }
}

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_does_what_its_openapi_description_says() {
    let spec: Value = serde_json::from_str(SPEC).unwrap();
    let server = TestServer::start();
    let http = server.addr.http.clone();
    let alice = server.user("alice").await;
    server.user("bob").await;
    server.user("carol").await;
    let group = rest::create_group(&http, &alice.access_token, "crew", &["bob".into()])
        .await
        .unwrap();

    // Every operation (paths in name order), the ones that end things last:
    // the password change (later logins would need the new password) and
    // group deletion.
    let mut operations = Vec::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for method in METHODS {
            if let Some(op) = item.get(method) {
                operations.push((path.clone(), method, op.clone()));
            }
        }
    }
    operations.sort_by_key(|(_, _, op)| {
        ["changePassword", "deleteGroup"]
            .iter()
            .position(|id| op["operationId"] == *id)
    });
    assert!(operations.len() >= 17, "{} operations", operations.len());
    let mut registered = 0;
    for (path, method, op) in &operations {
        let id = op["operationId"].as_str().unwrap();
        let mut url = format!(
            "{http}{}",
            path.replace("{id}", &group.id)
                .replace("{user}", "bob")
                .replace("{chatid}", "alice:bob")
        );
        let query: Vec<String> = op["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["in"] == "query" && p.get("example").is_some())
            .map(|p| {
                format!(
                    "{}={}",
                    p["name"].as_str().unwrap(),
                    p["example"].as_str().unwrap()
                )
            })
            .collect();
        if !query.is_empty() {
            url = format!("{url}?{}", query.join("&"));
        }
        let mut body = op["requestBody"]["content"]["application/json"]["example"].clone();
        match id {
            "register" => {
                registered += 1;
                body =
                    json!({"username": format!("newuser{registered}"), "password": "password-123"});
            }
            "login" => body = json!({"username": "alice", "password": "password-123"}),
            "refresh" | "logout" => {
                let fresh = rest::login(&http, "alice", "password-123").await.unwrap();
                body = json!({"refresh_token": fresh.refresh_token});
            }
            _ => {}
        }
        let secured = op.get("security").is_some();
        let token = secured.then_some(alice.access_token.as_str());
        let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let call = send(
            method.clone(),
            &url,
            token,
            (!body.is_null()).then_some(&body),
        )
        .await;
        let documented = &op["responses"][call.status.to_string()];
        assert!(
            !documented.is_null(),
            "{id}: status {} is not documented ({:?})",
            call.status,
            call.body
        );
        if let Some(schema) = documented["content"]["application/json"].get("schema") {
            let value = call
                .body
                .as_ref()
                .unwrap_or_else(|| panic!("{id}: {} without a JSON body", call.status));
            check(&spec, schema, value, id);
        }
        if secured {
            let anonymous = send(method, &url, None, (!body.is_null()).then_some(&body)).await;
            assert_eq!(anonymous.status, 401, "{id} without a token");
            check(
                &spec,
                &json!({"$ref": "#/components/schemas/Error"}),
                &anonymous.body.unwrap(),
                id,
            );
        }
    }
    // No documented path takes a method the description does not list.
    for (path, item) in spec["paths"].as_object().unwrap() {
        let url = format!(
            "{http}{}",
            path.replace("{id}", &group.id)
                .replace("{user}", "bob")
                .replace("{chatid}", "alice:bob")
        );
        for method in METHODS {
            if item.get(method).is_none() {
                let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
                let call = send(m, &url, Some(&alice.access_token), None).await;
                assert_eq!(call.status, 405, "{method} {path} is not documented");
            }
        }
    }
}
