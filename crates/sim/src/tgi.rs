//! Hugging Face TGI's native API: `POST /generate`, `POST /generate_stream`, and the
//! compat route `POST /` that picks one by `stream`. Shapes follow TGI 2.x's router:
//! `details` only when asked for, `prefill` filled only with `decoder_input_details`,
//! stream events `data:{...}` (no space) with a 1-based `index`, the last event carrying
//! `generated_text` and (when `details` is set) `details` with `input_length`; no `[DONE]`.

use crate::engine::{self, Ending, GenParams, Generation};
use crate::error::{Dialect, SimError};
use crate::server::{abort_connection, sse_response, ConnAbort};
use crate::sse::{self, Framer, Quirks};
use crate::state::SimState;
use crate::stats::RequestGuard;
use crate::text::{estimate_tokens, prompt_pieces, Emitted};
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use bytes::Bytes;
use serde_json::{json, Map, Value};
use std::sync::Arc;

#[derive(Debug)]
struct Parsed {
    params: GenParams,
    inputs: String,
    details: bool,
    decoder_input_details: bool,
    return_full_text: bool,
    /// Only meaningful on the compat route `/`.
    stream: bool,
}

pub(crate) async fn generate(
    State(st): State<Arc<SimState>>,
    abort: Option<Extension<ConnAbort>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    handle(st, "/generate", Some(false), abort, headers, body).await
}

pub(crate) async fn generate_stream(
    State(st): State<Arc<SimState>>,
    abort: Option<Extension<ConnAbort>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    handle(st, "/generate_stream", Some(true), abort, headers, body).await
}

/// TGI's `POST /`: streams when the body says `"stream": true`.
pub(crate) async fn compat(
    State(st): State<Arc<SimState>>,
    abort: Option<Extension<ConnAbort>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    handle(st, "/", None, abort, headers, body).await
}

async fn handle(
    st: Arc<SimState>,
    path: &'static str,
    stream: Option<bool>,
    abort: Option<Extension<ConnAbort>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let guard = RequestGuard::new(Arc::clone(&st.counters));
    st.record_request(path, &headers, &body);
    let req = match parse(&body, st.cfg.default_max_tokens) {
        Ok(r) => r,
        Err(e) => return e.into_response(Dialect::Tgi),
    };
    let stream = stream.unwrap_or(req.stream);
    if stream && req.decoder_input_details {
        // TGI answers this inside an otherwise successful event stream.
        let err = SimError::invalid(
            "`decoder_input_details` == true is not supported when streaming tokens",
            None,
        );
        let ev = tgi_event(&err.tgi_body());
        return sse_response(Body::from(ev));
    }
    let mut g = match engine::admit(&st, guard, req.params.clone()).await {
        Ok(g) => g,
        Err(e) => return e.into_response(Dialect::Tgi),
    };
    let prefix = if req.return_full_text {
        req.inputs.clone()
    } else {
        String::new()
    };
    if stream {
        let quirks = Quirks {
            keepalive_comments: st.cfg.keepalive_comments,
            split_writes: st.cfg.split_writes,
        };
        let framer = TgiFramer {
            details: req.details,
            prefix,
        };
        return sse_response(Body::from_stream(sse::body(g, framer, quirks)));
    }
    let mut tokens = Vec::new();
    let ending = engine::run_to_end(&mut g, |events| {
        tokens.extend(events.iter().map(|(_, e)| token_json(e)));
    })
    .await;
    match ending {
        Ending::Done => {}
        Ending::Cut => return abort_connection(abort).await,
        Ending::Stall => std::future::pending::<()>().await,
    }
    let out = full_response(&g, &req, &prefix, tokens);
    let generated = g.completion_tokens();
    g.add_sent_tokens(u64::from(generated));
    g.guard.complete();
    let mut resp = Json(out).into_response();
    // TGI reports token counts in headers too; gateways use them for metering.
    let h = resp.headers_mut();
    h.insert("x-prompt-tokens", HeaderValue::from(g.prompt_tokens));
    h.insert("x-generated-tokens", HeaderValue::from(generated));
    h.insert("x-compute-type", HeaderValue::from_static("switchyard-sim"));
    resp
}

fn full_response(g: &Generation, req: &Parsed, prefix: &str, tokens: Vec<Value>) -> Value {
    let Some(c) = g.choices.first() else {
        return json!({"generated_text": prefix});
    };
    let mut out = Map::new();
    out.insert(
        "generated_text".into(),
        json!(format!("{prefix}{}", c.text())),
    );
    if req.details || req.decoder_input_details {
        let prefill: Vec<Value> = if req.decoder_input_details {
            prompt_pieces(&req.inputs)
                .into_iter()
                .enumerate()
                .map(|(i, (id, text))| {
                    // The first prompt token has no log-probability, as in TGI.
                    let logprob = if i == 0 { Value::Null } else { json!(-1.5) };
                    json!({"id": id, "text": text, "logprob": logprob})
                })
                .collect()
        } else {
            Vec::new()
        };
        out.insert(
            "details".into(),
            json!({
                "finish_reason": c.finish().map(|f| f.tgi()),
                "generated_tokens": c.generated(),
                "seed": req.params.seed,
                "prefill": prefill,
                "tokens": tokens,
            }),
        );
    }
    Value::Object(out)
}

fn token_json(e: &Emitted) -> Value {
    json!({"id": e.id, "text": e.word, "logprob": e.logprob, "special": false})
}

/// `data:{json}\n\n`: TGI's framing, without a space after the colon.
fn tgi_event(v: &Value) -> Bytes {
    let mut b = b"data:".to_vec();
    b.extend_from_slice(&serde_json::to_vec(v).unwrap_or_default());
    b.extend_from_slice(b"\n\n");
    Bytes::from(b)
}

struct TgiFramer {
    details: bool,
    prefix: String,
}

impl Framer for TgiFramer {
    fn step(&mut self, g: &Generation, events: &[(u32, Emitted)], out: &mut Vec<Bytes>) {
        let Some((_, e)) = events.first() else {
            return;
        };
        let mut ev = Map::new();
        ev.insert("index".into(), json!(g.steps()));
        ev.insert("token".into(), token_json(e));
        match (&e.finish, g.choices.first()) {
            (Some(f), Some(c)) => {
                ev.insert(
                    "generated_text".into(),
                    json!(format!("{}{}", self.prefix, c.text())),
                );
                let details = self.details.then(|| {
                    json!({
                        "finish_reason": f.tgi(),
                        "generated_tokens": c.generated(),
                        "input_length": g.prompt_tokens,
                        "seed": g.requested_seed,
                    })
                });
                ev.insert("details".into(), json!(details));
            }
            _ => {
                ev.insert("generated_text".into(), Value::Null);
                ev.insert("details".into(), Value::Null);
            }
        }
        out.push(tgi_event(&Value::Object(ev)));
    }

    fn finish(&mut self, _g: &Generation, _out: &mut Vec<Bytes>) {
        // TGI ends the stream after the last token event: no [DONE].
    }
}

fn parse(body: &[u8], default_max_tokens: u32) -> Result<Parsed, SimError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        SimError::invalid(format!("Failed to deserialize the JSON body: {e}"), None)
    })?;
    let Some(Value::String(inputs)) = v.get("inputs") else {
        return Err(SimError::invalid(
            "`inputs` is required and must be a string",
            None,
        ));
    };
    let params = match v.get("parameters") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => return Err(SimError::invalid("`parameters` must be an object", None)),
    };
    let flag = |k: &str| params.get(k).and_then(Value::as_bool).unwrap_or(false);
    let max_new_tokens = match params.get("max_new_tokens") {
        None | Some(Value::Null) => default_max_tokens,
        Some(x) => match x.as_u64() {
            Some(0) | None => {
                return Err(SimError::invalid(
                    "`max_new_tokens` must be strictly positive",
                    None,
                ))
            }
            Some(m) => u32::try_from(m).unwrap_or(u32::MAX),
        },
    };
    let stop = match params.get("stop") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|s| {
                s.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| SimError::invalid("`stop` must be a list of strings", None))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(SimError::invalid("`stop` must be a list of strings", None)),
    };
    let seed = match params.get("seed") {
        None | Some(Value::Null) => None,
        Some(s) => Some(
            s.as_u64()
                .ok_or_else(|| SimError::invalid("`seed` must be a non-negative integer", None))?,
        ),
    };
    Ok(Parsed {
        params: GenParams {
            prompt_tokens: estimate_tokens(inputs),
            max_tokens: max_new_tokens,
            n: 1,
            stop,
            seed,
            truncate_at_stop: false,
        },
        inputs: inputs.clone(),
        details: flag("details"),
        decoder_input_details: flag("decoder_input_details"),
        return_full_text: flag("return_full_text"),
        stream: v.get("stream").and_then(Value::as_bool).unwrap_or(false),
    })
}
