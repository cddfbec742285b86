//! `stack_hop`: the thinnest reverse proxy that can be built on Switchyard's own HTTP stack
//! (axum's server with TCP_NODELAY, hyper-util's pooled client, mimalloc, a tokio runtime
//! sized like the gateway's), forwarding every request to one upstream unchanged.
//!
//! `bench/gateway/run.sh` measures it beside nginx and Switchyard. It does nothing a gateway
//! must do (no auth, no parsing, no routing, no metering), so its throughput is the ceiling of
//! the stack: `switchyard / stack hop` is what Switchyard's own logic costs, and
//! `stack hop / nginx hop` is what the stack costs before any of it runs.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use clap::Parser;
use http::StatusCode;
use http_body_util::BodyExt;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
struct Args {
    /// Address to listen on.
    #[arg(long)]
    listen: SocketAddr,
    /// Upstream base, e.g. `http://127.0.0.1:9000`.
    #[arg(long)]
    upstream: http::Uri,
}

#[derive(Clone)]
struct Hop {
    client: Client<HttpConnector, Body>,
    authority: http::uri::Authority,
    scheme: http::uri::Scheme,
}

async fn forward(State(hop): State<Hop>, request: Request) -> Response {
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
    // The client speaks HTTP/1.1 to the upstream: a request that came in over h2c keeps its
    // HTTP/2 version otherwise, and hyper-util refuses to send it on an HTTP/1 connection (502).
    parts.version = http::Version::HTTP_11;
    parts.headers.remove(http::header::HOST);
    match hop.client.request(Request::from_parts(parts, body)).await {
        Ok(response) => response.map(|b| Body::new(b.map_err(axum::Error::new))),
        Err(_) => status(StatusCode::BAD_GATEWAY),
    }
}

fn status(code: StatusCode) -> Response {
    let mut response = Response::new(Body::empty());
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
    let hop = Hop {
        client,
        authority,
        scheme,
    };
    let app = axum::Router::new().fallback(forward).with_state(hop);
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app).await
}
