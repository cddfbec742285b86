//! Encrypted worker hops with the real binary: `switchyard ca` makes a CA, a gateway
//! certificate and worker certificates; `switchyard serve` allows no plain-HTTP hop and trusts
//! the CA for workers; `switchyard agent --listen` puts a TLS sidecar in front of a sim.
//!
//! - A plain-HTTP registration is refused, naming `plaintext_hops`.
//! - Through the sidecar, whole and streamed answers arrive, and the sim served them.
//! - A sidecar that shows a valid certificate of the same CA naming another worker never
//!   enters rotation; the fleet view says why, and no request reaches it.
//! - The sidecar itself refuses a client without a certificate, and a client with a worker's
//!   certificate (only a gateway's opens it).
//! - An agent given a certificate that names another worker refuses to start.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{free_port, spawn_until, BIN, DEADLINE};

use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{json, Value};
use tokio::io::AsyncReadExt;
use tokio::process::Command;

const ADMIN_TOKEN: &str = "sy-admin-hop-test-0123456789abcdef";
const FLEET_TOKEN: &str = "sy-fleet-hop-test-0123456789abcdef";
const DEV_KEY: &str = "sk-dev-hop-test-0123456789abcdef";

/// `switchyard <args>` to its end, with the fleet token in its environment.
async fn run(args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .env("SWITCHYARD_LOG", "warn")
        .env("SWITCHYARD_FLEET_TOKEN", FLEET_TOKEN)
        .output()
        .await
        .unwrap()
}

fn http() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

async fn fleet_worker(admin: &str, name: &str) -> Option<Value> {
    let v: Value = http()
        .get(format!("{admin}/admin/v1/fleet"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == name)
        .cloned()
}

/// Polls the fleet view until `check` holds for `name`'s entry.
async fn until_worker(admin: &str, name: &str, check: impl Fn(&Value) -> bool) -> Value {
    let end = tokio::time::Instant::now() + DEADLINE;
    loop {
        let w = fleet_worker(admin, name).await;
        if let Some(w) = w.as_ref().filter(|w| check(w)) {
            return w.clone();
        }
        assert!(
            tokio::time::Instant::now() < end,
            "worker {name}: {w:?} never matched"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn chat(gateway: &str, stream: bool) -> reqwest::Response {
    http()
        .post(format!("{gateway}/v1/chat/completions"))
        .bearer_auth(DEV_KEY)
        .json(&json!({
            "model": "sim-small",
            "messages": [{"role": "user", "content": "Tell me about rail yards."}],
            "max_tokens": 5,
            "stream": stream,
        }))
        .send()
        .await
        .unwrap()
}

/// A client of the sidecar at `url` trusting the CA, presenting `identity` (NAME.pem/.key).
fn sidecar_client(dir: &Path, identity: Option<&str>) -> reqwest::Client {
    let ca = std::fs::read(dir.join("ca.pem")).unwrap();
    let mut builder = reqwest::Client::builder()
        .no_proxy()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap());
    if let Some(name) = identity {
        let mut pem = std::fs::read(dir.join(format!("{name}.pem"))).unwrap();
        pem.extend(std::fs::read(dir.join(format!("{name}.key"))).unwrap());
        builder = builder.identity(reqwest::Identity::from_pem(&pem).unwrap());
    }
    builder.build().unwrap()
}

/// A TLS server showing `NAME.pem` that counts the bytes of application data it receives.
async fn impostor(dir: &Path, cert: &str) -> (u16, Arc<AtomicUsize>) {
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(dir.join(format!("{cert}.pem")))
            .unwrap()
            .map(Result::unwrap)
            .collect();
    let key = PrivateKeyDer::from_pem_file(dir.join(format!("{cert}.key"))).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let received = Arc::new(AtomicUsize::new(0));
    let count = received.clone();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let (acceptor, count) = (acceptor.clone(), count.clone());
            tokio::spawn(async move {
                if let Ok(mut tls) = acceptor.accept(tcp).await {
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = tls.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        count.fetch_add(n, Ordering::SeqCst);
                    }
                }
            });
        }
    });
    (port, received)
}

#[tokio::test]
async fn worker_hops_are_encrypted_and_tied_to_the_worker_s_name() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    assert!(run(&["ca", "init", "--dir", d]).await.status.success());
    for args in [
        &["--name", "gateway", "--gateway"][..],
        &["--name", "gpu-a", "--worker", "gpu-a", "--ip", "127.0.0.1"][..],
        &["--name", "gpu-b", "--worker", "gpu-b", "--ip", "127.0.0.1"][..],
    ] {
        let out = run(&[&["ca", "issue", "--dir", d][..], args].concat()).await;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let config = dir.path().join("switchyard.toml");
    std::fs::write(
        &config,
        format!(
            "[upstream]\nplaintext_hops = \"none\"\ntls_worker_ca = {:?}\n\
             tls_client_cert = {:?}\ntls_client_key = {:?}\n\n\
             [health]\ninterval_ms = 200\n\n[state]\npath = \":memory:\"\n\n\
             [fleet]\nlease_ms = 30000\nheartbeat_ms = 300\n",
            dir.path().join("ca.pem"),
            dir.path().join("gateway.pem"),
            dir.path().join("gateway.key"),
        ),
    )
    .unwrap();
    let (gw_port, admin_port) = (free_port(), free_port());
    let admin = format!("http://127.0.0.1:{admin_port}");
    let (_gateway, gw) = spawn_until(
        &[
            "serve".into(),
            "--config".into(),
            config.display().to_string(),
            "--listen".into(),
            format!("127.0.0.1:{gw_port}"),
            "--admin-listen".into(),
            format!("127.0.0.1:{admin_port}"),
        ],
        &[
            ("SWITCHYARD_ADMIN_TOKEN", ADMIN_TOKEN),
            ("SWITCHYARD_FLEET_TOKEN", FLEET_TOKEN),
            ("SWITCHYARD_DEV_KEY", DEV_KEY),
        ],
        "switchyard listening on ",
    )
    .await;
    let sim_port = free_port();
    let sim = format!("http://127.0.0.1:{sim_port}");
    let (_sim, _) = spawn_until(
        &[
            "sim".into(),
            "--listen".into(),
            format!("127.0.0.1:{sim_port}"),
        ],
        &[],
        "listening on ",
    )
    .await;
    let agent_args = |name: &str| {
        [
            "agent",
            "--gateway",
            &admin,
            "--runtime-url",
            &sim,
            "--runtime",
            "vllm",
            "--model",
            "sim-small",
            "--provider",
            "market-a",
            "--region",
            "eu",
            "--gpu",
            "rtx4090",
            "--name",
            name,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>()
    };

    // Plain HTTP to the sim: refused, and the agent says why.
    let plain = Command::new(BIN)
        .args(agent_args("gpu-plain"))
        .env("SWITCHYARD_FLEET_TOKEN", FLEET_TOKEN)
        .env("SWITCHYARD_LOG", "warn")
        .output();
    let plain = tokio::time::timeout(DEADLINE, plain)
        .await
        .unwrap()
        .unwrap();
    assert!(!plain.status.success());
    let said = String::from_utf8_lossy(&plain.stderr);
    assert!(said.contains("plaintext_hops = \"none\""), "{said}");
    assert!(said.contains("HTTP 400"), "{said}");

    // An agent whose certificate names another worker does not start.
    let file = |n: &str| dir.path().join(n).display().to_string();
    let wrong = Command::new(BIN)
        .args(agent_args("gpu-a"))
        .args(["--listen", "127.0.0.1:1", "--tls-cert", &file("gpu-b.pem")])
        .args([
            "--tls-key",
            &file("gpu-b.key"),
            "--ca-cert",
            &file("ca.pem"),
        ])
        .env("SWITCHYARD_FLEET_TOKEN", FLEET_TOKEN)
        .output();
    let wrong = tokio::time::timeout(DEADLINE, wrong)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(wrong.status.code(), Some(2));
    let said = String::from_utf8_lossy(&wrong.stderr);
    assert!(said.contains("does not name worker 'gpu-a'"), "{said}");

    // gpu-a behind its sidecar: in rotation, and answers come through it.
    let sidecar_port = free_port();
    let mut agent = Command::new(BIN)
        .args(agent_args("gpu-a"))
        .args(["--listen", &format!("127.0.0.1:{sidecar_port}")])
        .args([
            "--tls-cert",
            &file("gpu-a.pem"),
            "--tls-key",
            &file("gpu-a.key"),
        ])
        .args(["--ca-cert", &file("ca.pem")])
        .env("SWITCHYARD_FLEET_TOKEN", FLEET_TOKEN)
        .env("SWITCHYARD_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let a = until_worker(&admin, "gpu-a", |w| w["state"] == "ready").await;
    assert_eq!(a["url"], format!("https://127.0.0.1:{sidecar_port}"));
    let whole = chat(&gw, false).await;
    assert_eq!(whole.status(), 200);
    let whole: Value = whole.json().await.unwrap();
    assert_eq!(whole["usage"]["completion_tokens"], 5, "{whole}");
    let streamed = chat(&gw, true).await;
    assert_eq!(streamed.status(), 200);
    let text = streamed.text().await.unwrap();
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    assert!(!text.contains("\"error\""), "{text}");
    let stats: Value = http()
        .get(format!("{sim}/sim/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["completed"], 2, "the sim served both: {stats}");

    // The sidecar opens to the gateway's certificate only.
    let sidecar = format!("https://127.0.0.1:{sidecar_port}/v1/models");
    let anonymous = sidecar_client(dir.path(), None).get(&sidecar).send().await;
    assert!(anonymous.is_err(), "no client certificate: {anonymous:?}");
    let as_worker = sidecar_client(dir.path(), Some("gpu-b"))
        .get(&sidecar)
        .send()
        .await;
    assert!(as_worker.is_err(), "a worker's certificate: {as_worker:?}");
    let as_gateway = sidecar_client(dir.path(), Some("gateway"))
        .get(&sidecar)
        .send()
        .await
        .unwrap();
    assert_eq!(as_gateway.status(), 200);

    // An impostor: registered as gpu-b, showing gpu-a's certificate.
    let (impostor_port, received) = impostor(dir.path(), "gpu-a").await;
    let registered = http()
        .post(format!("{admin}/fleet/v1/workers"))
        .bearer_auth(FLEET_TOKEN)
        .json(&json!({
            "name": "gpu-b", "url": format!("https://127.0.0.1:{impostor_port}"),
            "runtime": "vllm", "model": "sim-small", "provider": "market-b",
            "region": "eu", "gpu": "rtx4090", "price_per_hour": 0.0,
            "max_concurrency": 8,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(registered.status(), 200);
    let b = until_worker(&admin, "gpu-b", |w| {
        w["state"] == "unhealthy"
            && w["reason"]
                .as_str()
                .unwrap_or("")
                .contains("urn:switchyard:worker:gpu-a")
    })
    .await;
    let reason = b["reason"].as_str().unwrap();
    assert!(
        reason.contains("urn:switchyard:worker:gpu-a")
            && reason.contains("urn:switchyard:worker:gpu-b"),
        "{reason}"
    );
    // The cheaper impostor never gets a request: each one goes to gpu-a.
    for _ in 0..5 {
        assert_eq!(chat(&gw, false).await.status(), 200);
    }
    assert_eq!(
        received.load(Ordering::SeqCst),
        0,
        "the impostor read a request"
    );

    agent.start_kill().unwrap();
}
