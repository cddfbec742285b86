//! The admin port: the admin API, the registration API and the operator's status view listen
//! on `[admin] listen` (loopback by default), never on the public port unless the config says
//! `"public"`; the public port answers their paths with a 404 that says where they went.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::Value;
use switchyard_server::Secrets;
use switchyard_testkit::*;

const FLEET: &str = "sy-fleet-test-0123456789abcdef";

async fn get(url: String, token: &str) -> (u16, Value) {
    let resp = client().get(url).bearer_auth(token).send().await.unwrap();
    let status = resp.status().as_u16();
    assert!(resp.headers().contains_key("x-request-id"));
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test]
async fn the_admin_and_fleet_apis_are_not_on_the_public_port_by_default() {
    let secrets = Secrets {
        dev_key: Some(KEY.into()),
        admin_token: Some(ADMIN.into()),
        fleet_token: Some(FLEET.into()),
    };
    let gw = start_with(config(vec![sim("a", |_| {})]), secrets).await;
    let admin = gw.admin_addr.expect("an admin port of its own by default");
    assert_ne!(admin, gw.addr);
    assert!(admin.ip().is_loopback());

    // With the right tokens, the public port still has none of them.
    for (path, token) in [
        ("/admin/v1/tenants", ADMIN),
        ("/admin/status", ADMIN),
        ("/fleet/v1/workers/a/heartbeat", FLEET),
    ] {
        let (status, body) = get(format!("{}{path}", gw.url()), token).await;
        assert_eq!(status, 404, "{path}: {body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("admin port"), "{path}: {message}");
    }
    let resp = client()
        .post(format!("{}/fleet/v1/workers", gw.url()))
        .bearer_auth(FLEET)
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);

    // The admin port has them, and not the request path.
    let (status, _) = get(format!("{}/admin/v1/tenants", gw.admin_url()), ADMIN).await;
    assert_eq!(status, 200);
    let (status, body) = get(format!("{}/admin/status", gw.admin_url()), ADMIN).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = get(format!("{}/v1/models", gw.admin_url()), KEY).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("unknown_url"))
    );

    // The public status page stays public.
    let resp = client()
        .get(format!("{}/status.json", gw.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    gw.shutdown().await;
}

#[tokio::test]
async fn admin_listen_public_serves_everything_on_one_port() {
    let mut c = config(vec![sim("a", |_| {})]);
    c.admin.listen = "public".into();
    let gw = start(c).await;
    assert_eq!(gw.admin_addr, None);
    assert_eq!(gw.admin_url(), gw.url());
    let (status, _) = get(format!("{}/admin/v1/tenants", gw.url()), ADMIN).await;
    assert_eq!(status, 200);
    gw.shutdown().await;
}

#[tokio::test]
async fn a_taken_admin_port_fails_the_start_and_names_it() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let mut c = config(Vec::new());
    c.fleet = Some(Default::default());
    c.admin.listen = addr.to_string();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = switchyard_server::start(c, Secrets::default(), listener)
        .await
        .err()
        .expect("the start must fail");
    let shown = err.to_string();
    assert!(
        shown.contains("admin port") && shown.contains(&addr.to_string()),
        "{shown}"
    );
}
