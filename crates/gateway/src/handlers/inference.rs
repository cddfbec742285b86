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
use switchyard_metering::sli::{Refusal, SliCounts};

use crate::admit;
use crate::auth::{self, Scope};
use crate::body::read_limited;
use crate::error::GatewayError;
use crate::request_id::RequestId;
use crate::settle::Settlement;
use crate::shape::{self, Shaped};
use crate::state::AppState;
use crate::upstream::Reply;

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
            // Refused after auth but before admission: show the caller's current figures,
            // when this process has them (shared limits live in Redis: no figures rather than
            // this replica's idle fallback share).
            if let (None, Some(key), None) = (&rate, &caller, &state.shared_limits) {
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

/// Step 4b (see [`crate::filter`]): the tier's lists, then the moderation hook if there is
/// one. A refusal is recorded as a refusal row (not billed) and counted.
async fn content_filters(
    state: &AppState,
    key: &KeyEntry,
    req: &InferenceRequest,
    request_id: &str,
) -> Result<(), GatewayError> {
    use crate::filter::moderation::Verdict;
    use crate::filter::{Refused, Source};
    let tier = &key.tenant.tenant.tier;
    let scope = crate::filter::FilterScope {
        tier,
        tenant: &key.tenant.tenant.id,
    };
    let refused = match state.filters.check_input(scope, req) {
        Err(refused) => Some(refused),
        Ok(()) => match &state.filters.moderation {
            None => None,
            Some(moderation) => {
                let texts = crate::filter::texts(req);
                match moderation.check(&state.client, texts).await {
                    Verdict::Pass => None,
                    Verdict::Flagged(categories) => {
                        Some(Refused::new(Source::Moderation, &categories.join(",")))
                    }
                    Verdict::Failed(why) => {
                        let closed =
                            moderation.policy == switchyard_config::ModerationPolicy::Closed;
                        crate::metrics::moderation_failed(if closed {
                            "refused"
                        } else {
                            "let_through"
                        });
                        tracing::warn!(request_id = %request_id, error = %why, closed, "the moderation endpoint gave no verdict");
                        if closed {
                            return Err(refuse(
                                state,
                                key,
                                req,
                                request_id,
                                GatewayError::ModerationUnavailable,
                            ));
                        }
                        None
                    }
                }
            }
        },
    };
    let Some(refused) = refused else {
        return Ok(());
    };
    tracing::info!(
        request_id = %request_id,
        tenant = %key.tenant.tenant.id,
        list = refused.list(),
        pattern = %refused.pattern,
        "request refused by the content filter"
    );
    crate::metrics::content_filtered("input", tier, refused.list());
    Err(refuse(state, key, req, request_id, refused.error()))
}

/// Records a refusal before admission (a ledger refusal row and the SLI), and hands the error
/// back.
fn refuse(
    state: &AppState,
    key: &KeyEntry,
    req: &InferenceRequest,
    request_id: &str,
    error: GatewayError,
) -> GatewayError {
    let refusal = Refusal {
        request_id: request_id.to_string(),
        at_ms: switchyard_metering::directory::unix_ms(),
        tenant_id: key.tenant.tenant.id.clone(),
        model: req.model.clone(),
        http_status: error.status().as_u16(),
        throttled: false,
    };
    crate::metrics::sli(
        &key.tenant.tenant.tier,
        &req.model,
        &SliCounts::of_refusal(&refusal),
    );
    state.ledger.refused(refusal);
    error
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
    content_filters(state, &key, &req, &request_id).await?;
    let reservation = match admit::admit(state.shared_limits.as_ref(), &key, &req, &shaped).await {
        Ok((reservation, info)) => {
            *rate = Some(info);
            reservation
        }
        Err(refused) => {
            *rate = refused.rate;
            // Not downtime (over the tenant's limits), but the SLA report shows the 429 rate.
            return Err(refuse(state, &key, &req, &request_id, refused.error));
        }
    };

    // Every request reaches its worker as a stream (an unstreamed one is assembled for its
    // client), so every request has a first token to hedge on.
    let hedge_after = match key.limits.hedge_after_ms {
        0 => None,
        ms => Some(std::time::Duration::from_millis(u64::from(ms))),
    };
    let mut route = crate::route::RouteCtx::new(state, &req, &key);
    crate::dispatch::shadow::maybe_spawn(state, &req);
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
    let client_streams = req.stream;
    let mut req = req.into_streamed();
    let mut fallback_to = None;
    // Workers an unstreamed answer broke on before any of it reached the client: nothing was
    // sent, so it can start over on another worker rather than fail.
    let mut failed_on: Vec<Arc<switchyard_fleet::Worker>> = Vec::new();
    // An answer's whole length, from its first token, per attempt.
    let limit = std::time::Duration::from_millis(state.config.upstream.request_timeout_ms);
    loop {
        let (Reply { first, mut relay }, lease) = loop {
            match crate::dispatch::forward(
                state,
                &req,
                &route,
                &request_id,
                &mut settlement,
                hedge_after,
                &failed_on,
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
                    failed_on.clear();
                }
                Err(e) => {
                    settlement.failed(&e);
                    return Err(e);
                }
            }
        };
        let worker = lease.worker().clone();
        // A copy of the request lives as long as the stream: only for streams that can resume.
        if relay.resumable() {
            relay.enable_resume(Box::new(crate::dispatch::resume::Resume::new(
                state.clone(),
                req.clone(),
                route.clone(),
                request_id.clone(),
                worker.clone(),
            )));
        }
        if client_streams {
            relay.attach(lease, settlement);
            return Ok(stream_response(
                first,
                relay,
                &shaped,
                fallback_to.as_deref(),
            ));
        }
        relay.for_unstreamed_client();
        relay.attach(lease, settlement);
        // The relay settles the request however this ends (a failure, a timeout, or the
        // client going away and this future being dropped with it).
        match crate::upstream::collect::assemble(&req, first, &mut relay, limit).await {
            Ok((body, estimated)) => {
                drop(relay);
                return Ok(full_response(
                    body,
                    estimated,
                    &shaped,
                    fallback_to.as_deref(),
                ));
            }
            Err(e) if e.is_retryable() && restart_allowed(state, relay.attempts()) => {
                let Some(taken) = relay.detach() else {
                    return Err(e);
                };
                tracing::warn!(request_id, worker = %worker.spec.name, error = %e, "unstreamed answer broke before reaching the client; starting over on another worker");
                crate::metrics::retry(&req.model, crate::metrics::Retry::Restart);
                settlement = taken;
                settlement.started_over();
                failed_on.push(worker);
            }
            Err(e) => return Err(e),
        }
    }
}

/// Whether an unstreamed answer that broke may start over: the request's attempts so far (every
/// worker it was sent to, before and since its first token) and the retry budget allow it.
fn restart_allowed(state: &AppState, attempts: u32) -> bool {
    state.config.routing.adaptive()
        && attempts < state.config.upstream.max_attempts
        && state.retry_budget.try_withdraw()
}

fn full_response(
    body: bytes::Bytes,
    estimated: bool,
    shaped: &Shaped,
    fallback_to: Option<&str>,
) -> Response {
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
    shaping_headers(&mut response, shaped, fallback_to);
    response
}

fn stream_response(
    first: bytes::Bytes,
    relay: Box<crate::upstream::relay::Relay>,
    shaped: &Shaped,
    fallback_to: Option<&str>,
) -> Response {
    let stream = futures::stream::once(async move { Ok::<_, std::io::Error>(first) }).chain(relay);
    let mut response = Response::new(Body::from_stream(stream));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Tells nginx-style proxies in front of us not to buffer the stream either.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    shaping_headers(&mut response, shaped, fallback_to);
    response
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
