//! Step 1 of the request path: every request gets an id, returned in `x-request-id` on every
//! response (errors included) and sent to the worker. We always mint our own UUID rather than
//! forward the client's header: some runtimes (llama.cpp's server) answer an empty 400 to a
//! request id that is not a UUID.
//!
//! A plain tower layer rather than `axum::middleware::from_fn`: the latter clones the boxed
//! inner service and boxes a future on every request, a visible cost at tens of thousands of
//! requests per second on one core.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue};
use axum::response::Response;
use tower::{Layer, Service};

pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");

#[derive(Debug, Clone)]
pub struct RequestId(pub HeaderValue);

impl RequestId {
    pub fn as_str(&self) -> &str {
        self.0.to_str().unwrap_or("")
    }
}

fn mint() -> HeaderValue {
    let mut buf = uuid::Uuid::encode_buffer();
    let id = uuid::Uuid::new_v4();
    HeaderValue::from_str(id.hyphenated().encode_lower(&mut buf))
        .unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

/// Assigns the id to the request (as a [`RequestId`] extension) and to the response.
#[derive(Debug, Clone, Copy, Default)]
pub struct AssignRequestIdLayer;

impl<S> Layer<S> for AssignRequestIdLayer {
    type Service = AssignRequestId<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AssignRequestId { inner }
    }
}

#[derive(Debug, Clone)]
pub struct AssignRequestId<S> {
    inner: S,
}

impl<S> Service<Request> for AssignRequestId<S>
where
    S: Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = WithRequestId<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        let id = mint();
        request.extensions_mut().insert(RequestId(id.clone()));
        WithRequestId {
            inner: self.inner.call(request),
            id: Some(id),
        }
    }
}

pin_project_lite::pin_project! {
    /// The inner response future; puts the id on the response when it is ready.
    pub struct WithRequestId<F> {
        #[pin]
        inner: F,
        id: Option<HeaderValue>,
    }
}

impl<F, E> Future for WithRequestId<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = std::task::ready!(this.inner.poll(cx))?;
        if let Some(id) = this.id.take() {
            response.headers_mut().insert(HEADER, id);
        }
        Poll::Ready(Ok(response))
    }
}
