//! `POST /v1/chat/completions` and `POST /v1/completions`: the request path in order —
//! request id (middleware) → auth → parse/validate → route + upstream → settle.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use switchyard_protocol::{Endpoint, InferenceRequest};

use crate::body::read_limited;
use crate::error::GatewayError;
use crate::request_id::RequestId;
use crate::settle::Settlement;
use crate::state::AppState;
use crate::upstream::{self, Reply};

pub async fn chat(State(state): State<Arc<AppState>>, request: Request) -> Response {
    handle(state, Endpoint::Chat, request).await
}

pub async fn completions(State(state): State<Arc<AppState>>, request: Request) -> Response {
    handle(state, Endpoint::Completions, request).await
}

async fn handle(state: Arc<AppState>, endpoint: Endpoint, request: Request) -> Response {
    match run(&state, endpoint, request).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

async fn run(
    state: &AppState,
    endpoint: Endpoint,
    request: Request,
) -> Result<Response, GatewayError> {
    let (parts, body) = request.into_parts();
    let request_id = parts
        .extensions
        .get::<RequestId>()
        .map(|r| r.as_str().to_string())
        .unwrap_or_default();
    let principal = state.keys.authenticate(&parts.headers)?;
    let bytes = read_limited(&parts.headers, body, state.config.server.max_body_bytes).await?;
    let req = InferenceRequest::parse(endpoint, &bytes)?;
    if !state.fleet.serves(&req.model) {
        return Err(GatewayError::ModelNotFound(req.model));
    }

    let mut settlement = Settlement::start(&request_id, &principal.key_name, &req);
    let (reply, lease) = match upstream::forward(state, &req, &request_id, &mut settlement).await {
        Ok(ok) => ok,
        Err(e) => {
            settlement.failed(&e);
            return Err(e);
        }
    };
    match reply {
        Reply::Full {
            body,
            usage,
            estimated,
        } => {
            drop(lease);
            settlement.completed(usage, estimated, 200);
            let mut response = (StatusCode::OK, axum::Json(body)).into_response();
            if estimated {
                response
                    .headers_mut()
                    .insert("x-switchyard-usage", HeaderValue::from_static("estimated"));
            }
            Ok(response)
        }
        Reply::Stream { first, mut relay } => {
            relay.attach(lease, settlement);
            let stream =
                futures::stream::once(async move { Ok::<_, std::io::Error>(first) }).chain(relay);
            let mut response = Response::new(Body::from_stream(stream));
            let headers = response.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream"),
            );
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            // Tells nginx-style proxies in front of us not to buffer the stream either.
            headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
            Ok(response)
        }
    }
}
