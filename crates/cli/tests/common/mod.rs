//! What the CLI's end-to-end tests share: free ports, and starting the real binary until it
//! says it is ready.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub const BIN: &str = env!("CARGO_BIN_EXE_switchyard");
/// How long a child gets to say it is ready.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// A port free now: bound, noted and let go (the child binds it again right away).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `switchyard <args>` and waits for the stdout line holding `ready`; returns the
/// child and the rest of that line. Its stdout goes on being read (and dropped) afterwards.
pub async fn spawn_until(args: &[String], envs: &[(&str, &str)], ready: &str) -> (Child, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env("SWITCHYARD_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let rest = tokio::time::timeout(DEADLINE, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(i) = line.find(ready) {
                return line[i + ready.len()..].trim().to_string();
            }
        }
        panic!("switchyard {args:?} exited before '{ready}'");
    })
    .await
    .expect("child did not start in time");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, rest)
}
