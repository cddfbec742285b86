//! TLS termination: the public and admin ports serve HTTPS with the configured certificate,
//! offer HTTP/2 by ALPN, reload the certificate when its files change (and keep the old one
//! when the new files are broken), and with a client CA refuse clients without a certificate
//! it signed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use switchyard_testkit::tls::{Issued, TestCa};
use switchyard_testkit::*;
use tokio::net::TcpStream;

fn tls_config(ca: &TestCa, server: &Issued) -> switchyard_server::Config {
    let mut c = config(vec![sim("a", |s| s.model = "sim-small".into())]);
    c.server.tls_cert = Some(server.cert.clone());
    c.server.tls_key = Some(server.key.clone());
    c.server.tls_reload_interval_ms = 100;
    let _ = ca;
    c
}

/// The leaf certificate the gateway at `addr` serves now (DER), through a fresh handshake.
async fn served_certificate(addr: std::net::SocketAddr, ca: &TestCa) -> Vec<u8> {
    let mut roots = rustls::RootCertStore::empty();
    let ca_der = rustls_pki_types::CertificateDer::from_pem_slice(ca.ca_pem().as_bytes()).unwrap();
    roots.add(ca_der).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let tls = connector.connect(name, tcp).await.unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

fn der_of(issued: &Issued) -> Vec<u8> {
    rustls_pki_types::CertificateDer::from_pem_slice(issued.cert_pem.as_bytes())
        .unwrap()
        .to_vec()
}

use rustls_pki_types::pem::PemObject;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_http2_by_alpn_serves_whole_and_streamed_answers() {
    let ca = TestCa::new("test CA");
    let server = ca.server("gateway", &["localhost", "127.0.0.1"]);
    let gw = start(tls_config(&ca, &server)).await;
    assert!(gw.url().starts_with("https://"), "{}", gw.url());
    let https = ca.http_client(None);
    let url = format!("https://localhost:{}", gw.addr.port());

    let resp = https
        .post(format!("{url}/v1/chat/completions"))
        .bearer_auth(KEY)
        .json(&chat("sim-small", json!({"max_tokens": 3})))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2, "ALPN offers h2");
    assert_eq!(resp.status(), 200);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["usage"]["completion_tokens"], 3);

    let resp = https
        .post(format!("{url}/v1/chat/completions"))
        .bearer_auth(KEY)
        .json(&chat("sim-small", json!({"max_tokens": 4, "stream": true})))
        .send()
        .await
        .unwrap();
    let (events, broken) = read_events(resp, Duration::from_secs(10)).await;
    assert_eq!(broken, None);
    assert_eq!(events.last().unwrap().data, "[DONE]");

    // Plain HTTP to the TLS port gets no answer, and the failed handshake is counted.
    let plain = client()
        .get(format!("http://{}/healthz", gw.addr))
        .send()
        .await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());
    // Counted once the gateway's side of the handshake has given up, which the client may
    // notice first.
    let counted = eventually_async(Duration::from_secs(5), || async {
        scrape_tls(&gw, &ca)
            .await
            .contains("switchyard_tls_handshake_failures_total{listener=\"public\"}")
    })
    .await;
    assert!(counted, "the failed handshake was not counted");
    let metrics = scrape_tls(&gw, &ca).await;
    assert!(metrics
        .contains("switchyard_tls_certificate_expiry_timestamp_seconds{listener=\"public\"}"));
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_certificate_is_served_without_a_restart_and_a_broken_one_is_not() {
    let ca = TestCa::new("test CA");
    let first = ca.server("gateway", &["localhost"]);
    let gw = start(tls_config(&ca, &first)).await;
    assert_eq!(served_certificate(gw.addr, &ca).await, der_of(&first));

    // A request on a connection opened before the change still completes after it.
    let https = ca.http_client(None);
    let url = format!("https://localhost:{}", gw.addr.port());
    let before = https.get(format!("{url}/healthz")).send().await.unwrap();
    assert_eq!(before.status(), 200);

    let second = ca.server("gateway", &["localhost"]);
    let renewed = eventually_async(Duration::from_secs(10), || async {
        served_certificate(gw.addr, &ca).await == der_of(&second)
    })
    .await;
    assert!(renewed, "the new certificate was not picked up");
    let after = https.get(format!("{url}/healthz")).send().await.unwrap();
    assert_eq!(after.status(), 200);

    // A half-written certificate: the reload fails, the one in force stays.
    std::fs::write(&second.cert, "-----BEGIN CERTIFICATE-----\ngarbage\n").unwrap();
    let failed = eventually_async(Duration::from_secs(10), || async {
        scrape_tls(&gw, &ca).await.contains("outcome=\"failed\"")
    })
    .await;
    assert!(failed, "the broken file was not noticed");
    assert_eq!(served_certificate(gw.addr, &ca).await, der_of(&second));
    gw.shutdown().await;
}

async fn scrape_tls(gw: &RunningGateway, ca: &TestCa) -> String {
    ca.http_client(None)
        .get(format!("https://localhost:{}/metrics", gw.addr.port()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

use switchyard_server::RunningGateway;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_client_ca_only_clients_with_its_certificates_get_in() {
    let ca = TestCa::new("test CA");
    let server = ca.server("gateway", &["localhost"]);
    let mut c = tls_config(&ca, &server);
    c.server.tls_client_ca = Some(ca.ca_path());
    let gw = start(c).await;
    let url = format!("https://localhost:{}/healthz", gw.addr.port());

    let anonymous = ca.http_client(None).get(&url).send().await;
    assert!(anonymous.is_err(), "a client without a certificate got in");
    let stranger_ca = TestCa::new("another CA");
    let stranger = stranger_ca.client("stranger", "stranger");
    let resp = ca.http_client(Some(&stranger)).get(&url).send().await;
    assert!(resp.is_err(), "a certificate from another CA got in");

    let member = ca.client("member", "member");
    let resp = ca
        .http_client(Some(&member))
        .get(&url)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_port_serves_tls_of_its_own() {
    let ca = TestCa::new("test CA");
    let admin_cert = ca.server("admin", &["localhost"]);
    let mut c = config(vec![sim("a", |_| {})]);
    c.admin.listen = "127.0.0.1:0".into();
    c.admin.tls_cert = Some(admin_cert.cert.clone());
    c.admin.tls_key = Some(admin_cert.key.clone());
    let gw = start(c).await;
    assert!(gw.admin_url().starts_with("https://"));
    assert!(gw.url().starts_with("http://"));
    let resp = ca
        .http_client(None)
        .get(format!(
            "https://localhost:{}/admin/v1/tenants",
            gw.admin_addr.unwrap().port()
        ))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    gw.shutdown().await;
}

#[tokio::test]
async fn a_missing_or_mismatched_certificate_fails_the_start_and_names_the_file() {
    let ca = TestCa::new("test CA");
    let server = ca.server("gateway", &["localhost"]);
    let other = ca.server("other", &["localhost"]);
    let cases = [
        (
            ca.ca_path().with_file_name("nowhere.pem"),
            server.key.clone(),
            "nowhere.pem",
        ),
        (
            server.cert.clone(),
            other.key.clone(),
            "does not belong to the certificate",
        ),
    ];
    for (cert, key, named) in cases {
        let mut c = config(vec![sim("a", |_| {})]);
        c.server.tls_cert = Some(cert);
        c.server.tls_key = Some(key);
        let sims = switchyard_sim::start_sim_workers(&mut c).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        c.admin.listen = "127.0.0.1:0".into();
        let err = switchyard_server::start(c, switchyard_server::Secrets::default(), listener)
            .await
            .err()
            .expect("the start must fail");
        let shown = err.to_string();
        assert!(
            shown.contains("TLS on the public port") && shown.contains(named),
            "{shown}"
        );
        for sim in sims {
            sim.shutdown().await;
        }
    }
}
