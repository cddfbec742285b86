//! `switchyard ca` and TLS on the real binary: a CA and a certificate made by the command,
//! `switchyard serve` on HTTPS with them, and a renewed certificate served after SIGHUP (the
//! file poll is set to an hour, so only the signal can have done it). Keys are owner-only and
//! nothing is overwritten without --force.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");
const ADMIN_TOKEN: &str = "sy-admin-tls-test-0123456789abcdef";

async fn ca(args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .arg("ca")
        .args(args)
        .output()
        .await
        .unwrap()
}

/// The leaf certificate served at `port` now, through a fresh handshake trusting `ca_pem`.
async fn served(port: u16, ca_pem: &Path) -> Vec<u8> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca_pem).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

fn leaf(path: &Path) -> Vec<u8> {
    CertificateDer::pem_file_iter(path)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .to_vec()
}

#[tokio::test]
async fn ca_issues_certificates_that_serve_and_sighup_renews_them() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    assert!(ca(&["init", "--dir", d]).await.status.success());
    let again = ca(&["init", "--dir", d]).await;
    assert_eq!(
        again.status.code(),
        Some(2),
        "an existing CA is not replaced"
    );
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
    let issued = ca(&["issue", "--dir", d, "--name", "gw", "--ip", "127.0.0.1"]).await;
    assert!(
        issued.status.success(),
        "{}",
        String::from_utf8_lossy(&issued.stderr)
    );
    #[cfg(unix)]
    for key in ["ca.key", "gw.key"] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(key))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "{key} is readable by others: {mode:o}");
    }
    let nameless = ca(&["issue", "--dir", d, "--name", "../x"]).await;
    assert_eq!(nameless.status.code(), Some(2));

    let config = dir.path().join("switchyard.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\ntls_cert = {:?}\ntls_key = {:?}\ntls_reload_interval_ms = 3600000\n\n\
             [admin]\ntls_cert = {:?}\ntls_key = {:?}\ntls_client_ca = {:?}\n\n\
             [state]\npath = \":memory:\"\n\n\
             [[sim_workers]]\nname = \"s\"\nruntime = \"vllm\"\n[sim_workers.sim]\nmodel = \"sim-small\"\n",
            dir.path().join("gw.pem"),
            dir.path().join("gw.key"),
            dir.path().join("gw.pem"),
            dir.path().join("gw.key"),
            dir.path().join("ca.pem"),
        ),
    )
    .unwrap();
    let mut child = Command::new(BIN)
        .args(["serve", "--config", config.to_str().unwrap()])
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .env("SWITCHYARD_LOG", "warn")
        .env("SWITCHYARD_ADMIN_TOKEN", ADMIN_TOKEN)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (url, admin) = tokio::time::timeout(Duration::from_secs(20), async {
        let mut url = None;
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(rest) = line.strip_prefix("switchyard listening on ") {
                url = Some(rest.trim().to_string());
            }
            if let Some(rest) = line.strip_prefix("admin and fleet APIs on ") {
                let admin = rest.split_whitespace().next().unwrap().to_string();
                return (url.unwrap(), admin);
            }
        }
        panic!("serve exited before listening");
    })
    .await
    .unwrap();
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    let port: u16 = url.rsplit(':').next().unwrap().parse().unwrap();
    let ca_pem = dir.path().join("ca.pem");
    assert_eq!(
        served(port, &ca_pem).await,
        leaf(&dir.path().join("gw.pem"))
    );

    let renewed = ca(&[
        "issue",
        "--dir",
        d,
        "--name",
        "gw",
        "--ip",
        "127.0.0.1",
        "--force",
    ])
    .await;
    assert!(renewed.status.success());
    let new_leaf = leaf(&dir.path().join("gw.pem"));
    assert_ne!(
        served(port, &ca_pem).await,
        new_leaf,
        "reloaded before the signal"
    );
    let pid = child.id().unwrap().to_string();
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap();
    assert!(hup.success());
    let end = tokio::time::Instant::now() + Duration::from_secs(10);
    while served(port, &ca_pem).await != new_leaf {
        assert!(
            tokio::time::Instant::now() < end,
            "SIGHUP did not reload the certificate"
        );
        // Polling interval, not synchronisation: the gateway is another process.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "SIGHUP must not stop the gateway"
    );

    // The admin port serves TLS and wants a client certificate: the CLI trusts the private CA
    // and presents one it issued.
    assert!(admin.starts_with("https://"), "{admin}");
    let operator = ca(&["issue", "--dir", d, "--name", "operator"]).await;
    assert!(operator.status.success());
    let list = |with_cert: bool| {
        let mut cmd = Command::new(BIN);
        cmd.args(["tenants", "list", "--url", &admin])
            .arg("--ca-cert")
            .arg(dir.path().join("ca.pem"))
            .env("SWITCHYARD_ADMIN_TOKEN", ADMIN_TOKEN);
        if with_cert {
            cmd.arg("--client-cert")
                .arg(dir.path().join("operator.pem"))
                .arg("--client-key")
                .arg(dir.path().join("operator.key"));
        }
        cmd.output()
    };
    let out = list(true).await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = list(false).await.unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "no client certificate, no admin API");
    assert!(said.contains("--client-cert"), "{said}");
}
