//! The HTTP client for inference calls: hyper's pooled client with keep-alive, TCP_NODELAY and
//! TLS for `https://` workers.
//!
//! Health probes and the prompt-count call use `reqwest`; the inference path uses hyper
//! directly because reqwest's per-request layers (URL re-parsing, the redirect and retry
//! middleware) cost more CPU than everything else the gateway does to relay a request. The
//! workers' URIs are parsed once (see `Worker::uri`), and no redirect is ever followed: a
//! worker has no reason to send a prompt elsewhere.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use switchyard_fleet::WorkerSpec;

use crate::error::GatewayError;
use switchyard_config::UpstreamConfig;

#[derive(Clone)]
pub struct UpstreamClient {
    inner: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl UpstreamClient {
    pub fn new(config: &UpstreamConfig) -> Self {
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.set_connect_timeout(Some(Duration::from_millis(config.connect_timeout_ms)));
        // The connector must accept `http://` URIs; `https_or_http` below decides per URI.
        http.enforce_http(false);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let inner = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(1024)
            .build(https);
        Self { inner }
    }

    /// POSTs a JSON body to `worker`. A transport failure comes back classified.
    pub async fn post_json(
        &self,
        worker: &WorkerSpec,
        uri: Uri,
        request_id: &str,
        body: Vec<u8>,
    ) -> Result<Response<Incoming>, GatewayError> {
        let mut request = Request::post(uri);
        if let Some(headers) = request.headers_mut() {
            headers.insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            if let Ok(id) = HeaderValue::from_str(request_id) {
                headers.insert(crate::request_id::HEADER, id);
            }
            if let Some(key) = &worker.api_key {
                if let Ok(mut value) = HeaderValue::from_str(&format!("Bearer {key}")) {
                    value.set_sensitive(true);
                    headers.insert(http::header::AUTHORIZATION, value);
                }
            }
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| GatewayError::Internal(format!("cannot build the worker request: {e}")))?;
        self.inner
            .request(request)
            .await
            .map_err(|e| super::classify::transport(&worker.name, &e))
    }
}

/// Reads a whole body, at most `limit` bytes; a longer body is an error, not a truncation.
pub async fn read_body(body: Incoming, limit: usize) -> Result<Bytes, String> {
    Limited::new(body, limit)
        .collect()
        .await
        .map(|collected| collected.to_bytes())
        .map_err(|e| e.to_string())
}
