//! A private Postgres cluster for tests that stop and start their database: `initdb` in a
//! temporary directory, its own port, so a restart disturbs no other test. Postgres refuses to
//! run as root: as root, the cluster runs as the `postgres` user, which Debian's packages
//! create. Shared by `crates/metering/tests/pg_restart.rs` and
//! `crates/server/tests/fleet_outage.rs` (included by path: the two crates share no test kit).

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The newest installed server's binaries (`/usr/lib/postgresql/<version>/bin`).
fn pg_bin() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("Postgres server binaries under /usr/lib/postgresql")
        .map(|e| e.unwrap().path().join("bin"))
        .filter(|p| p.join("initdb").exists())
        .collect();
    versions.sort();
    versions
        .pop()
        .expect("an initdb under /usr/lib/postgresql/*/bin")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Runs a Postgres binary, as `postgres` when we are root.
fn pg(bin: &Path, tool: &str, args: &[&str]) {
    let exe = bin.join(tool);
    let status = if is_root() {
        Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(&exe)
            .args(args)
            .status()
    } else {
        Command::new(&exe).args(args).status()
    }
    .unwrap_or_else(|e| panic!("{tool}: {e}"));
    assert!(status.success(), "{tool} {args:?}: {status}");
}

pub struct Cluster {
    bin: PathBuf,
    data: String,
    _dir: tempfile::TempDir,
    port: u16,
}

impl Cluster {
    pub fn start() -> Self {
        let bin = pg_bin();
        let dir = tempfile::tempdir().unwrap();
        if is_root() {
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .unwrap()
                .success();
            assert!(ok, "chown the cluster's directory to postgres");
        }
        let data = dir.path().join("data").display().to_string();
        pg(
            &bin,
            "initdb",
            &["-D", &data, "-A", "trust", "-U", "postgres", "--no-sync"],
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cluster = Self {
            bin,
            data,
            port,
            _dir: dir,
        };
        cluster.ctl(&["start"]);
        cluster
    }

    pub fn ctl(&self, action: &[&str]) {
        let log = format!("{}/../log", self.data);
        let opts = format!(
            "-p {} -k {}/.. -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port, self.data
        );
        let mut args = vec!["-D", &self.data, "-l", &log, "-o", &opts, "-w"];
        args.extend_from_slice(action);
        pg(&self.bin, "pg_ctl", &args);
    }

    pub async fn ctl_async(self: &std::sync::Arc<Self>, action: &'static [&'static str]) {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.ctl(action))
            .await
            .unwrap();
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.ctl(&["-m", "immediate", "stop"]);
    }
}
