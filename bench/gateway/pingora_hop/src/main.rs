//! `pingora_hop`: the stack hop (`bench/gateway/src/bin/stack_hop.rs`) on Cloudflare's Pingora
//! instead of hyper + axum. The same pass-through: every request goes to one upstream, plain
//! HTTP/1.1 over Pingora's keep-alive connection pool, bodies streamed both ways, `Host`
//! replaced by the upstream's, TCP_NODELAY on both sides (Pingora sets it on every accepted and
//! every upstream socket), mimalloc. Downstream it serves HTTP/1.1 with keep-alive and HTTP/2
//! with prior knowledge (h2c).
//!
//! This is its own cargo project (an empty `[workspace]` in its Cargo.toml), so that the main
//! workspace, its lock file and CI never compile Pingora. `bench/gateway/run.sh` builds it
//! unless `PINGORA=0`.

use std::net::{SocketAddr, ToSocketAddrs};

use async_trait::async_trait;
use clap::Parser;
use pingora::apps::HttpServerOptions;
use pingora::http::RequestHeader;
use pingora::proxy::{ProxyHttp, ProxyServiceBuilder, Session};
use pingora::server::configuration::ServerConf;
use pingora::server::Server;
use pingora::upstreams::peer::HttpPeer;
use pingora::Result;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
struct Args {
    /// Address to listen on.
    #[arg(long)]
    listen: SocketAddr,
    /// Upstream base, e.g. `http://127.0.0.1:9000` (plain HTTP only).
    #[arg(long)]
    upstream: String,
    /// Worker threads of the proxy's runtime. Default: the CPUs this process may run on, as
    /// tokio sizes the stack hop's runtime (one when run.sh pins the servers to one core).
    #[arg(long)]
    threads: Option<usize>,
    /// Pingora's other runtime: one current-thread tokio runtime per thread, no work stealing
    /// (the default, like the stack hop, is one multi-thread runtime).
    #[arg(long)]
    no_work_stealing: bool,
    /// Idle upstream connections kept for reuse (the stack hop keeps up to 1024).
    #[arg(long, default_value_t = 1024)]
    pool_size: usize,
}

struct Hop {
    peer: HttpPeer,
    /// `Host` sent upstream, as hyper's client sets it from the upstream's URI.
    host: String,
}

#[async_trait]
impl ProxyHttp for Hop {
    type CTX = ();

    fn new_ctx(&self) -> Self::CTX {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(self.peer.clone()))
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream_request: &mut RequestHeader,
        _ctx: &mut (),
    ) -> Result<()> {
        upstream_request.insert_header("host", &self.host)
    }
}

/// `http://host:port[/]` -> (socket address, `host:port`).
fn parse_upstream(url: &str) -> std::result::Result<(SocketAddr, String), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or("--upstream must start with http:// (the hop speaks plain HTTP upstream)")?;
    let authority = rest.trim_end_matches('/');
    if authority.is_empty() || authority.contains('/') {
        return Err(format!("--upstream must be http://host:port, got {url:?}"));
    }
    let with_port = if authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| !p.contains(']'))
    {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let addr = with_port
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {authority}: {e}"))?
        .next()
        .ok_or_else(|| format!("{authority} resolves to no address"))?;
    Ok((addr, authority.to_string()))
}

fn main() {
    let args = Args::parse();
    let (addr, host) = parse_upstream(&args.upstream).unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(2);
    });
    let threads = args.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });

    let conf = ServerConf {
        threads,
        work_stealing: !args.no_work_stealing,
        upstream_keepalive_pool_size: args.pool_size,
        // SIGTERM (run.sh's cleanup) ends the process within a second, not after the default
        // five-minute grace period.
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    let mut options = HttpServerOptions::default();
    options.h2c = true;
    let hop = Hop {
        peer: HttpPeer::new(addr, false, String::new()),
        host,
    };
    let mut service = ProxyServiceBuilder::new(&server.configuration, hop)
        .name("pingora_hop")
        .server_options(options)
        .build();
    service.add_tcp(&args.listen.to_string());
    server.add_service(service);
    server.run_forever();
}
