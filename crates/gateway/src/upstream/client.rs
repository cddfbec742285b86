//! Inference calls to a worker, through the hyper client the worker's hop gives it (see
//! `switchyard_fleet::hop`: pooled, keep-alive, TCP_NODELAY, TLS for `https://` workers).
//!
//! Health probes and the prompt-count call use `reqwest`; the inference path uses hyper
//! directly because reqwest's per-request layers (URL re-parsing, the redirect and retry
//! middleware) cost more CPU than everything else the gateway does to relay a request. The
//! workers' URIs are parsed once (see `Worker::uri`), and no redirect is ever followed: a
//! worker has no reason to send a prompt elsewhere.

use bytes::Bytes;
use http::{HeaderValue, Request, Response, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;

use switchyard_fleet::Worker;

use crate::error::GatewayError;

/// POSTs a JSON body to `worker`. A transport failure comes back classified.
pub async fn post_json(
    worker: &Worker,
    uri: Uri,
    request_id: &str,
    body: Vec<u8>,
) -> Result<Response<Incoming>, GatewayError> {
    let spec = &worker.spec;
    let mut request = Request::post(uri);
    if let Some(headers) = request.headers_mut() {
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Ok(id) = HeaderValue::from_str(request_id) {
            headers.insert(crate::request_id::HEADER, id);
        }
        if let Some(key) = &spec.api_key {
            if let Ok(mut value) = HeaderValue::from_str(&format!("Bearer {key}")) {
                value.set_sensitive(true);
                headers.insert(http::header::AUTHORIZATION, value);
            }
        }
    }
    let request = request
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| GatewayError::Internal(format!("cannot build the worker request: {e}")))?;
    worker
        .hop()
        .inference
        .request(request)
        .await
        .map_err(|e| super::classify::transport(&spec.name, &e))
}

/// Reads a whole body, at most `limit` bytes; a longer body is an error, not a truncation.
pub async fn read_body(body: Incoming, limit: usize) -> Result<Bytes, String> {
    Limited::new(body, limit)
        .collect()
        .await
        .map(|collected| collected.to_bytes())
        .map_err(|e| e.to_string())
}
