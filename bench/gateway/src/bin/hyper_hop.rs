//! `hyper_hop`: the stack hop (`stack_hop.rs`) without axum. The same pass-through proxy (one
//! upstream, hyper-util's pooled client, TCP_NODELAY on both sides, mimalloc, the same tokio
//! runtime, bodies streamed both ways, `Host` replaced by the upstream's) served by hyper
//! directly: a tokio accept loop and hyper-util's `auto` connection builder (HTTP/1.1 with
//! keep-alive, and HTTP/2 with prior knowledge, h2c) serving a `service_fn`. No router, no
//! tower layers, no boxing of the bodies.
//!
//! Unlike `axum::serve`, which sets no timer, it gives hyper a timer, so a client that sends no
//! complete request head within 30 s is disconnected (HTTP/1.1), and HTTP/2 can time its own
//! keep-alive.
//!
//! `bench/gateway/run.sh` measures it beside the stack hop: `hyper hop / stack hop` is what
//! axum's server and router cost on top of hyper.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use http::{Request, Response, StatusCode};
use http_body_util::{Either, Empty};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How long a client may take to send a complete HTTP/1.1 request head.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Parser)]
struct Args {
    /// Address to listen on.
    #[arg(long)]
    listen: SocketAddr,
    /// Upstream base, e.g. `http://127.0.0.1:9000`.
    #[arg(long)]
    upstream: http::Uri,
}

struct Hop {
    client: Client<HttpConnector, Incoming>,
    authority: http::uri::Authority,
    scheme: http::uri::Scheme,
}

/// The upstream's body as it comes, or an empty one for the hop's own error answers.
type HopBody = Either<Incoming, Empty<Bytes>>;

async fn forward(hop: Arc<Hop>, request: Request<Incoming>) -> Response<HopBody> {
    let (mut parts, body) = request.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
    let uri = http::Uri::builder()
        .scheme(hop.scheme.clone())
        .authority(hop.authority.clone())
        .path_and_query(path)
        .build();
    let Ok(uri) = uri else {
        return status(StatusCode::BAD_REQUEST);
    };
    parts.uri = uri;
    // The client speaks HTTP/1.1 to the upstream, whatever the downstream spoke (h2c included).
    parts.version = http::Version::HTTP_11;
    parts.headers.remove(http::header::HOST);
    match hop.client.request(Request::from_parts(parts, body)).await {
        Ok(response) => response.map(Either::Left),
        Err(_) => status(StatusCode::BAD_GATEWAY),
    }
}

fn status(code: StatusCode) -> Response<HopBody> {
    let mut response = Response::new(Either::Right(Empty::new()));
    *response.status_mut() = code;
    response
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let (Some(scheme), Some(authority)) = (
        args.upstream.scheme().cloned(),
        args.upstream.authority().cloned(),
    ) else {
        eprintln!("--upstream must be an absolute URL");
        std::process::exit(2);
    };
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(1024)
        .build(connector);
    let hop = Arc::new(Hop {
        client,
        authority,
        scheme,
    });

    let mut server = auto::Builder::new(TokioExecutor::new());
    server
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    server.http2().timer(TokioTimer::new());

    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    loop {
        let tcp = match listener.accept().await {
            Ok((tcp, _)) => tcp,
            Err(e) => {
                // Out of file descriptors and the like: as axum::serve does, wait and retry.
                eprintln!("accept: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let hop = hop.clone();
        let server = server.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let hop = hop.clone();
                async move { Ok::<_, std::convert::Infallible>(forward(hop, request).await) }
            });
            // A connection's own failure (reset, timeout, bad request) ends only that connection.
            let _ = server.serve_connection(TokioIo::new(tcp), service).await;
        });
    }
}
