"""Conformance with the official `openai` Python SDK as the client.

Every test makes requests the way a user of the SDK does and asserts what that user sees. The
gateway runs as the real binary with its built-in SIMULATED fleet (models sim-small, sim-large)
unless a test needs its own configuration.
"""

from __future__ import annotations

import concurrent.futures
import uuid
from typing import Any

import openai
import pytest

from conftest import Gateway, Process, http_json, switchyard_bin

MODEL = "sim-small"
CHAT = [{"role": "user", "content": "Say something about railway switchyards."}]


def assert_usage(usage: Any, *, max_completion: int | None = None) -> None:
    assert usage is not None, "response has no usage"
    assert usage.prompt_tokens > 0
    assert usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    if max_completion is not None:
        assert usage.completion_tokens <= max_completion


def assert_error_shape(e: openai.APIStatusError, *, param: str | None = None,
                       code: str | None = None) -> dict[str, Any]:
    """The OpenAI error shape, a request id, and (optionally) the named parameter and code."""
    body = e.response.json()
    assert set(body) == {"error"}, body
    err = body["error"]
    for key in ("message", "type", "param", "code"):
        assert key in err, f"error object lacks '{key}': {err}"
    assert isinstance(err["message"], str) and err["message"], err
    assert isinstance(err["type"], str) and err["type"], err
    # The SDK exposes the same object as e.body.
    assert e.body == err
    assert (e.type, e.param, e.code) == (err["type"], err["param"], err["code"])
    if param is not None:
        assert err["param"] == param, err
    if code is not None:
        assert err["code"] == code, err
    request_id = e.response.headers.get("x-request-id")
    assert request_id, f"error response without x-request-id: {dict(e.response.headers)}"
    uuid.UUID(request_id)
    assert e.request_id == request_id  # what the SDK reports to its user
    return err


# --- happy path ---------------------------------------------------------------------------


def test_models_list_shows_the_fleet(client: openai.OpenAI) -> None:
    ids = {m.id for m in client.models.list()}
    assert {"sim-small", "sim-large"} <= ids


def test_chat_non_streamed(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(model=MODEL, messages=CHAT, max_completion_tokens=16)
    assert r.object == "chat.completion"
    assert r.model == MODEL
    assert len(r.choices) == 1
    choice = r.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content and choice.message.content.strip()
    assert choice.finish_reason in ("stop", "length")
    assert_usage(r.usage, max_completion=16)


def test_chat_max_tokens_legacy_name(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(model=MODEL, messages=CHAT, max_tokens=4)
    assert r.choices[0].message.content
    assert_usage(r.usage, max_completion=4)
    assert r.choices[0].finish_reason == "length"


def test_completion_non_streamed(client: openai.OpenAI) -> None:
    r = client.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=12)
    assert r.object == "text_completion"
    assert r.model == MODEL
    assert len(r.choices) == 1
    assert r.choices[0].text and r.choices[0].text.strip()
    assert_usage(r.usage, max_completion=12)


def test_chat_streamed_with_usage(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model=MODEL, messages=CHAT, max_completion_tokens=10, stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert len(chunks) >= 2
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert all(c.model == MODEL for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip()
    last = chunks[-1]
    assert last.choices == [], "the usage chunk must have empty choices"
    assert_usage(last.usage, max_completion=10)
    assert all(c.usage is None for c in chunks[:-1]), "usage only on the last chunk"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes and finishes[-1] in ("stop", "length")


def test_chat_streamed_without_usage(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model=MODEL, messages=CHAT, max_completion_tokens=8, stream=True
    )
    chunks = list(stream)
    assert chunks
    assert all(c.usage is None for c in chunks), "usage sent though include_usage was not set"
    assert all(c.choices for c in chunks), "a chunk without choices (a usage-only chunk?)"
    assert "".join(c.choices[0].delta.content or "" for c in chunks).strip()


def test_completion_streamed_with_usage(client: openai.OpenAI) -> None:
    stream = client.completions.create(
        model=MODEL, prompt="Once upon a time", max_tokens=10, stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text.strip()
    assert chunks[-1].choices == []
    assert_usage(chunks[-1].usage, max_completion=10)
    assert all(c.usage is None for c in chunks[:-1])


def test_completion_streamed_without_usage(client: openai.OpenAI) -> None:
    chunks = list(client.completions.create(
        model=MODEL, prompt="Once upon a time", max_tokens=6, stream=True))
    assert chunks and all(c.usage is None for c in chunks)
    assert "".join(c.choices[0].text for c in chunks if c.choices).strip()


# --- parameters -----------------------------------------------------------------------------


def test_n_two_choices(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(model=MODEL, messages=CHAT, n=2, max_completion_tokens=6)
    assert sorted(c.index for c in r.choices) == [0, 1]
    assert all(c.message.content for c in r.choices)
    assert_usage(r.usage, max_completion=12)


def test_n_two_streamed(client: openai.OpenAI) -> None:
    chunks = list(client.chat.completions.create(
        model=MODEL, messages=CHAT, n=2, max_completion_tokens=5, stream=True,
        stream_options={"include_usage": True}))
    texts: dict[int, str] = {}
    for c in chunks:
        for ch in c.choices:
            texts[ch.index] = texts.get(ch.index, "") + (ch.delta.content or "")
    assert sorted(texts) == [0, 1] and all(t.strip() for t in texts.values())
    assert_usage(chunks[-1].usage, max_completion=10)


def test_seed_makes_replies_repeatable(client: openai.OpenAI) -> None:
    def ask() -> str:
        r = client.chat.completions.create(model=MODEL, messages=CHAT, seed=1234,
                                           temperature=0.7, top_p=0.9, max_completion_tokens=12)
        return r.choices[0].message.content or ""

    first = ask()
    assert first and all(ask() == first for _ in range(3))


def test_stop_sequence_ends_the_reply(client: openai.OpenAI) -> None:
    full = client.chat.completions.create(model=MODEL, messages=CHAT, seed=99,
                                          max_completion_tokens=20).choices[0].message.content
    assert full
    # A word from the middle of the reply (words carry a leading space) as a stop sequence:
    # the reply must end just before its first occurrence.
    words = [w for w in full.split(" ") if w]
    stop = next((" " + w for w in words[2:] if full.index(" " + w) > 0), None)
    assert stop, full
    r = client.chat.completions.create(model=MODEL, messages=CHAT, seed=99,
                                       max_completion_tokens=20, stop=[stop])
    assert r.choices[0].finish_reason == "stop"
    assert r.choices[0].message.content == full[: full.index(stop)]


@pytest.mark.parametrize(
    "params",
    [
        {"temperature": 0},
        {"temperature": 1.5, "top_p": 0.5},
        {"seed": -7},
        {"stop": "\n"},
        {"logprobs": True, "top_logprobs": 2},
        {"presence_penalty": 0.5, "frequency_penalty": -0.5, "user": "someone"},
        {
            "tools": [{
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": "Weather at a place",
                    "parameters": {"type": "object",
                                   "properties": {"city": {"type": "string"}},
                                   "required": ["city"]},
                },
            }],
            "tool_choice": "auto",
        },
        {
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
            "tool_choice": {"type": "function", "function": {"name": "f"}},
        },
    ],
    ids=["temperature0", "temperature-top_p", "negative-seed", "stop-string", "logprobs",
         "penalties-user", "tools-auto", "tool_choice-named"],
)
def test_parameters_are_accepted(client: openai.OpenAI, params: dict[str, Any]) -> None:
    r = client.chat.completions.create(model=MODEL, messages=CHAT, max_completion_tokens=6,
                                       **params)
    assert r.model == MODEL
    assert r.choices and r.choices[0].finish_reason in ("stop", "length", "tool_calls")
    assert_usage(r.usage, max_completion=6)


# --- pass-through to the worker -------------------------------------------------------------


@pytest.fixture(scope="module")
def sim_and_gateway(launch: Any) -> tuple[str, Gateway]:
    """A separately started `switchyard sim`, and a gateway that lists it as a vLLM worker, so
    the test can read the sim's /sim/last_request (the gateway hides worker URLs)."""
    sim: Process = launch("process", "sim",
                          [str(switchyard_bin()), "sim", "--listen", "127.0.0.1:0",
                           "--model", "sim-passthrough", "--decode-ms", "1"])
    sim_url = sim.wait_for_line(r"listening on (http://\S+)").group(1).rstrip("/")
    gw: Gateway = launch("gateway", f"""
[[workers]]
name = "external-sim"
url = "{sim_url}"
runtime = "vllm"
model = "passthrough"
upstream_model = "sim-passthrough"
""", name="gateway-passthrough")
    return sim_url, gw


def last_request(sim_url: str) -> dict[str, Any]:
    status, _, body = http_json("GET", f"{sim_url}/sim/last_request")
    assert status == 200, body
    return body


def test_unknown_fields_reach_the_worker_untouched(sim_and_gateway: tuple[str, Gateway]) -> None:
    sim_url, gw = sim_and_gateway
    r = gw.client().chat.completions.create(
        model="passthrough", messages=CHAT, max_completion_tokens=4,
        extra_body={"vendor_knob": {"x": 1}, "top_k": 5, "repetition_penalty": 1.1},
    )
    assert r.model == "passthrough", "the client's model name comes back, not the worker's"
    seen = last_request(sim_url)
    assert seen["path"] == "/v1/chat/completions"
    body = seen["body"]
    assert body["vendor_knob"] == {"x": 1}
    assert body["top_k"] == 5
    assert body["repetition_penalty"] == 1.1
    assert body["model"] == "sim-passthrough", "the worker gets its own model name"
    assert body["messages"] == CHAT


def test_known_parameters_reach_the_worker_verbatim(sim_and_gateway: tuple[str, Gateway]) -> None:
    sim_url, gw = sim_and_gateway
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    params: dict[str, Any] = {
        "n": 2, "stop": ["END"], "seed": 42, "temperature": 0.3, "top_p": 0.8, "logprobs": True,
        "top_logprobs": 1, "tools": tools, "tool_choice": "auto", "max_completion_tokens": 5,
    }
    gw.client().chat.completions.create(model="passthrough", messages=CHAT, **params)
    body = last_request(sim_url)["body"]
    for key, value in params.items():
        assert body.get(key) == value, f"{key}: sent {value!r}, worker got {body.get(key)!r}"


def test_worker_gets_a_request_id_and_not_the_clients_key(
        sim_and_gateway: tuple[str, Gateway]) -> None:
    sim_url, gw = sim_and_gateway
    raw = gw.client().chat.completions.with_raw_response.create(
        model="passthrough", messages=CHAT, max_completion_tokens=3,
        extra_headers={"X-Request-Id": "client-chosen-id"})
    gateway_id = raw.headers.get("x-request-id")
    assert gateway_id
    uuid.UUID(gateway_id)
    headers = {k.lower(): v for k, v in last_request(sim_url)["headers"].items()}
    assert headers.get("x-request-id") == gateway_id, "the worker sees the id the client sees"
    assert gw.key not in " ".join(str(v) for v in headers.values()), \
        "the client's API key was forwarded to the worker"


# --- errors ---------------------------------------------------------------------------------


def test_wrong_key_is_authentication_error(gateway: Gateway) -> None:
    bad = gateway.client(api_key="sk-wrong-0123456789abcdef0000")
    with pytest.raises(openai.AuthenticationError) as exc:
        bad.chat.completions.create(model=MODEL, messages=CHAT)
    assert exc.value.status_code == 401
    assert_error_shape(exc.value, code="invalid_api_key")
    with pytest.raises(openai.AuthenticationError) as exc:
        bad.models.list()
    assert_error_shape(exc.value)


def test_unknown_model_is_not_found(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as exc:
        client.chat.completions.create(model="no-such-model", messages=CHAT)
    assert_error_shape(exc.value, param="model", code="model_not_found")
    with pytest.raises(openai.NotFoundError) as exc:
        client.completions.create(model="no-such-model", prompt="x", stream=True)
    assert_error_shape(exc.value, param="model")


def test_missing_messages_is_bad_request(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.create(model=MODEL, messages=openai.NOT_GIVEN)  # type: ignore[arg-type]
    assert_error_shape(exc.value, param="messages")
    with pytest.raises(openai.BadRequestError) as exc:
        client.completions.create(model=MODEL, prompt=openai.NOT_GIVEN)  # type: ignore[arg-type]
    assert_error_shape(exc.value, param="prompt")


@pytest.mark.parametrize(
    "params, param",
    [
        ({"temperature": "hot"}, "temperature"),
        ({"temperature": 5}, "temperature"),
        ({"top_p": "all"}, "top_p"),
        ({"max_completion_tokens": 0}, "max_completion_tokens"),
        ({"n": "two"}, "n"),
        ({"stream": "yes"}, "stream"),
        ({"tool_choice": "maybe"}, "tool_choice"),
    ],
    ids=["temperature-type", "temperature-range", "top_p-type", "max_tokens-zero", "n-type",
         "stream-type", "tool_choice-value"],
)
def test_invalid_parameter_is_bad_request(client: openai.OpenAI, params: dict[str, Any],
                                          param: str) -> None:
    with pytest.raises(openai.BadRequestError) as exc:
        # extra_body, so the SDK sends the bad value as it is rather than objecting itself.
        client.chat.completions.create(model=MODEL, messages=CHAT, extra_body=params)
    err = assert_error_shape(exc.value, param=param)
    assert err["type"] == "invalid_request_error"


def test_unknown_route_has_the_error_shape(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as exc:
        client.post("/no/such/route", cast_to=object, body={})
    assert_error_shape(exc.value)


LIMITED_CONFIG = """
[state]
path = ":memory:"

[tiers.pro]
requests_per_minute = 3
tokens_per_minute = 100000

[[sim_workers]]
name = "limited"
runtime = "vllm"
[sim_workers.sim]
model = "sim-small"
"""


@pytest.fixture(scope="module")
def limited_gateway(launch: Any) -> Gateway:
    return launch("gateway", LIMITED_CONFIG, name="gateway-limited")


def test_rate_limited_request_is_rate_limit_error(limited_gateway: Gateway) -> None:
    client = limited_gateway.client()
    remaining = []
    for _ in range(3):
        raw = client.chat.completions.with_raw_response.create(
            model=MODEL, messages=CHAT, max_completion_tokens=1)
        assert raw.headers["x-ratelimit-limit-requests"] == "3"
        remaining.append(int(raw.headers["x-ratelimit-remaining-requests"]))
    assert remaining == [2, 1, 0], "remaining requests go down with each request"
    with pytest.raises(openai.RateLimitError) as exc:
        client.chat.completions.create(model=MODEL, messages=CHAT, max_completion_tokens=1)
    assert_error_shape(exc.value)
    headers = exc.value.response.headers
    assert int(headers["retry-after"]) >= 1
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert "x-ratelimit-reset-requests" in headers
    assert exc.value.body["code"] == "rate_limit_exceeded"


# --- a worker failing mid-stream ------------------------------------------------------------


CUT_CONFIG = """
[upstream]
max_attempts = 1
eject_after_failures = 100

[[sim_workers]]
name = "cutter"
runtime = "vllm"
[sim_workers.sim]
model = "sim-cut"
decode_ms_per_token = 5.0
[sim_workers.sim.faults]
cut_stream = 1.0
cut_after_tokens = 3
"""


@pytest.fixture(scope="module")
def cutting_gateway(launch: Any) -> Gateway:
    return launch("gateway", CUT_CONFIG, name="gateway-cut")


def test_stream_cut_mid_way_raises_api_error(cutting_gateway: Gateway) -> None:
    client = cutting_gateway.client(timeout=15)
    received: list[str] = []

    def consume() -> None:
        stream = client.chat.completions.create(model="sim-cut", messages=CHAT,
                                                max_completion_tokens=50, stream=True)
        for chunk in stream:
            for c in chunk.choices:
                received.append(c.delta.content or "")

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        future = pool.submit(consume)
        with pytest.raises(openai.APIError) as exc:
            future.result(timeout=20)  # a hang fails here instead of stalling the suite
    e = exc.value
    assert not isinstance(e, (openai.APITimeoutError, openai.APIConnectionError)), \
        f"the stream broke without an error event: {e!r}"
    assert "".join(received).strip(), "tokens before the cut should have reached the client"
    assert isinstance(e.body, dict)
    for key in ("message", "type", "param", "code"):
        assert key in e.body, e.body
    assert e.message == e.body["message"]


def test_non_streamed_request_to_a_cutting_worker_is_a_5xx(cutting_gateway: Gateway) -> None:
    client = cutting_gateway.client(timeout=15)
    with pytest.raises(openai.InternalServerError) as exc:
        client.chat.completions.create(model="sim-cut", messages=CHAT, max_completion_tokens=50)
    assert exc.value.status_code in (502, 503, 504)
    assert_error_shape(exc.value)
