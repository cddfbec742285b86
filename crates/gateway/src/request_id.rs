//! Step 1 of the request path: every request gets an id, returned in `x-request-id` on every
//! response (errors included) and sent to the worker. We always mint our own UUID rather than
//! forward the client's header: some runtimes (llama.cpp's server) answer an empty 400 to a
//! request id that is not a UUID.

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;

pub const HEADER: &str = "x-request-id";

#[derive(Debug, Clone)]
pub struct RequestId(pub HeaderValue);

impl RequestId {
    pub fn as_str(&self) -> &str {
        self.0.to_str().unwrap_or("")
    }
}

pub async fn assign(mut request: Request, next: Next) -> Response {
    let id = uuid::Uuid::new_v4();
    let mut buf = uuid::Uuid::encode_buffer();
    let value = HeaderValue::from_str(id.hyphenated().encode_lower(&mut buf))
        .unwrap_or_else(|_| HeaderValue::from_static("unknown"));
    request.extensions_mut().insert(RequestId(value.clone()));
    let mut response = next.run(request).await;
    response.headers_mut().insert(HEADER, value);
    response
}
