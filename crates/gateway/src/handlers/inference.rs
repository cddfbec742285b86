//! `POST /v1/chat/completions` and `POST /v1/completions`: the request path in order —
//! request id (middleware) → auth → parse/validate → shape → admit → route + upstream → settle.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use switchyard_protocol::{Endpoint, InferenceRequest};

use switchyard_metering::admission::{self, RateInfo};
use switchyard_metering::directory::KeyEntry;
use switchyard_metering::sli::Refusal;

use crate::admit;
use crate::auth::{self, Scope};
use crate::body::read_limited;
use crate::error::GatewayError;
use crate::request_id::RequestId;
use crate::settle::Settlement;
use crate::shape::{self, Shaped};
use crate::state::AppState;
use crate::upstream::{self, Reply};

pub async fn chat(State(state): State<Arc<AppState>>, request: Request) -> Response {
    handle(state, Endpoint::Chat, request).await
}

pub async fn completions(State(state): State<Arc<AppState>>, request: Request) -> Response {
    handle(state, Endpoint::Completions, request).await
}

async fn handle(state: Arc<AppState>, endpoint: Endpoint, request: Request) -> Response {
    // Rate-limit figures go on every response once the caller is known, errors included.
    let mut rate = None;
    let mut caller = None;
    // Set once a settlement exists: from then on the settlement records the request's metrics.
    let mut settling = false;
    let outcome = run(
        &state,
        endpoint,
        request,
        &mut rate,
        &mut caller,
        &mut settling,
    )
    .await;
    let mut response = match outcome {
        Ok(response) => response,
        Err(e) => {
            if !settling {
                crate::metrics::request_refused(endpoint.path(), &e);
            }
            // Refused after auth but before admission: show the caller's current figures.
            if let (None, Some(key)) = (&rate, &caller) {
                rate = Some(admission::peek(key));
            }
            e.into_response()
        }
    };
    if let Some(rate) = &rate {
        admit::insert_headers(response.headers_mut(), rate);
    }
    response
}

async fn run(
    state: &Arc<AppState>,
    endpoint: Endpoint,
    request: Request,
    rate: &mut Option<RateInfo>,
    caller: &mut Option<Arc<KeyEntry>>,
    settling: &mut bool,
) -> Result<Response, GatewayError> {
    let (parts, body) = request.into_parts();
    let request_id = parts
        .extensions
        .get::<RequestId>()
        .map(|r| r.as_str().to_string())
        .unwrap_or_default();
    let scope = match endpoint {
        Endpoint::Chat => Scope::Chat,
        Endpoint::Completions => Scope::Completions,
    };
    let key = auth::authenticate(&state.directory, &parts.headers, scope)?;
    *caller = Some(key.clone());
    let bytes = read_limited(&parts.headers, body, state.config.server.max_body_bytes).await?;
    let mut req = InferenceRequest::parse(endpoint, &bytes)?;
    // A model whose registered workers are all gone for now is still ours: 503, not 404.
    if !state.fleet.serves(&req.model) && !state.registered_models.contains(&req.model) {
        return Err(GatewayError::ModelNotFound(req.model));
    }
    auth::check_model(&key, &req.model)?;
    let shaped = shape::shape(&mut req, &key.limits)?;
    let reservation = match admit::admit(&key, &req, &shaped) {
        Ok((reservation, info)) => {
            *rate = Some(info);
            reservation
        }
        Err(refused) => {
            *rate = refused.rate;
            // Not downtime (over the tenant's limits), but the SLA report shows the 429 rate.
            state.ledger.refused(Refusal {
                request_id: request_id.clone(),
                at_ms: switchyard_metering::directory::unix_ms(),
                tenant_id: key.tenant.tenant.id.clone(),
                model: req.model.clone(),
                http_status: refused.error.status().as_u16(),
            });
            return Err(refused.error);
        }
    };

    // Streams only: an unstreamed answer arrives whole, so its wait is the generation's
    // length, not a sign of a stuck worker, and hedging it would double every long request.
    let hedge_after = match key.limits.hedge_after_ms {
        ms if ms > 0 && req.stream => Some(std::time::Duration::from_millis(u64::from(ms))),
        _ => None,
    };
    let mut route = crate::route::RouteCtx::new(state, &req, &key);
    crate::route::shadow::maybe_spawn(state, &req);
    let fallbacks = crate::route::fallbacks(state, &key, &req.model);
    let mut settlement = Settlement::start(
        &request_id,
        key,
        &req,
        reservation,
        state.ledger.clone(),
        state.config.upstream.eject_after_failures,
    );
    *settling = true;
    settlement.arm(route.pool);
    let mut fallback_to = None;
    let (reply, lease) = loop {
        match upstream::forward(
            state,
            &req,
            &route,
            &request_id,
            &mut settlement,
            hedge_after,
        )
        .await
        {
            Ok(ok) => break ok,
            // The model is down or saturated and the tier opted into its fallback chain:
            // the next model of the chain answers instead, and says so.
            Err(e) if crate::route::falls_back(&e) && fallback_to.is_none() => {
                let Some((next, next_req)) = fallbacks
                    .iter()
                    .find_map(|m| Some((m.clone(), crate::route::with_model(&req, m)?)))
                else {
                    settlement.failed(&e);
                    return Err(e);
                };
                tracing::warn!(request_id, from = %req.model, to = %next, error = %e, "falling back to another model");
                route = crate::route::RouteCtx {
                    model: next.clone(),
                    ..route
                };
                req = next_req;
                fallback_to = Some(next);
            }
            Err(e) => {
                settlement.failed(&e);
                return Err(e);
            }
        }
    };
    match reply {
        Reply::Full { body, metered } => {
            drop(lease);
            settlement.response_body(&body);
            let estimated = metered.estimated;
            settlement.completed(metered);
            let mut response = (
                StatusCode::OK,
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )],
                body,
            )
                .into_response();
            if estimated {
                response
                    .headers_mut()
                    .insert("x-switchyard-usage", HeaderValue::from_static("estimated"));
            }
            shaping_headers(&mut response, &shaped, fallback_to.as_deref());
            Ok(response)
        }
        Reply::Stream { first, mut relay } => {
            relay.enable_resume(crate::upstream::resume::Resume::new(
                state.clone(),
                req.clone(),
                route.clone(),
                request_id.clone(),
                lease.worker().clone(),
            ));
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
            shaping_headers(&mut response, &shaped, fallback_to.as_deref());
            Ok(response)
        }
    }
}

/// Tells the client the completion cap it was held to, whether the tier lowered it, and which
/// model answered when the request fell back to another.
fn shaping_headers(response: &mut Response, shaped: &Shaped, fallback_to: Option<&str>) {
    let headers = response.headers_mut();
    if let Some(model) = fallback_to.and_then(|m| HeaderValue::from_str(m).ok()) {
        headers.insert("x-switchyard-fallback-model", model);
    }
    headers.insert(
        "x-switchyard-max-tokens",
        HeaderValue::from(shaped.max_tokens),
    );
    if shaped.clamped {
        headers.insert(
            "x-switchyard-max-tokens-clamped",
            HeaderValue::from_static("true"),
        );
    }
}
