//! `switchyard serve` takes its database and Redis from the environment, as containers do:
//! a config file that leaves the Postgres URL to `SWITCHYARD_DATABASE_URL` (with its own
//! `[state] schema`) starts, and a bad URL in the environment is named, with exit status 2.
//! Secrets from the environment are never printed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");
const POSTGRES: &str = "postgres://postgres@127.0.0.1:5432/test";

fn serve(config: &std::path::Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("serve")
        .arg("--config")
        .arg(config)
        .arg("--listen")
        .arg("127.0.0.1:0")
        .args(["--admin-listen", "127.0.0.1:0"])
        .env("SWITCHYARD_ADMIN_TOKEN", "sy-admin-env-test-0123456789abc")
        .env("SWITCHYARD_DEV_KEY", "sk-dev-env-test-0123456789abcdef")
        .env("SWITCHYARD_LOG", "warn")
        .env_remove("SWITCHYARD_DATABASE_URL")
        .env_remove("SWITCHYARD_REDIS_URL")
        .kill_on_drop(true);
    cmd
}

fn config_file(dir: &tempfile::TempDir, body: &str) -> std::path::PathBuf {
    let path = dir.path().join("switchyard.toml");
    std::fs::write(
        &path,
        format!("{body}\n[[sim_workers]]\nname = \"s\"\nprovider = \"p\"\nregion = \"r\"\n"),
    )
    .unwrap();
    path
}

#[tokio::test]
async fn a_file_with_a_schema_starts_on_the_postgres_url_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let schema = format!("test_{}", uuid::Uuid::new_v4().simple());
    let path = config_file(&dir, &format!("[state]\nschema = \"{schema}\"\n"));
    let mut child = serve(&path)
        .env("SWITCHYARD_DATABASE_URL", POSTGRES)
        .env("SWITCHYARD_REDIS_URL", "redis://127.0.0.1:6379")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let banner = tokio::time::timeout(Duration::from_secs(30), async {
        let mut banner = Vec::new();
        while let Some(line) = lines.next_line().await.unwrap() {
            let done = line.starts_with("limits:");
            banner.push(line);
            if done {
                return banner;
            }
        }
        panic!("serve exited: {banner:?}");
    })
    .await
    .expect("serve did not start");
    assert!(
        banner
            .iter()
            .any(|l| l.starts_with("state: Postgres") && l.contains(&schema)),
        "{banner:?}"
    );
    assert!(
        banner
            .iter()
            .any(|l| l.starts_with("limits: shared in Redis 127.0.0.1:6379")),
        "{banner:?}"
    );
    // Secrets from the environment are named, never printed: the banner lands in the logs.
    for secret in [
        "sk-dev-env-test-0123456789abcdef",
        "sy-admin-env-test-0123456789abc",
    ] {
        assert!(banner.iter().all(|l| !l.contains(secret)), "{banner:?}");
    }
    assert!(
        banner.contains(&"dev API key: from SWITCHYARD_DEV_KEY".to_string()),
        "{banner:?}"
    );
    child.kill().await.unwrap();
}

#[tokio::test]
async fn a_bad_url_in_the_environment_is_named_with_exit_status_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = config_file(&dir, "");
    let out = serve(&path)
        .env("SWITCHYARD_REDIS_URL", "http://cache:6379")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("redis_url") && stderr.contains("SWITCHYARD_REDIS_URL"),
        "{stderr}"
    );
}
