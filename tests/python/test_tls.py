"""TLS termination with the official openai SDK: a CA and a server certificate made by
`switchyard ca`, the real binary serving HTTPS with them, the SDK's httpx client trusting
only that CA; ALPN negotiates HTTP/2, whole and streamed answers arrive, a client that does
not trust the CA is refused, and the private admin port is not on the public one. The
workers are the gateway's SIMULATED ones."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path
from typing import Any

import httpx2 as httpx  # the HTTP client this openai release is built on
import openai
import pytest

from conftest import Gateway, switchyard_bin, work_dir


def ca(*args: str) -> None:
    result = subprocess.run([str(switchyard_bin()), "ca", *args], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr


@pytest.fixture(scope="module")
def certs() -> Path:
    d = work_dir() / "tls"
    ca("init", "--dir", str(d))
    ca("issue", "--dir", str(d), "--name", "localhost", "--ip", "127.0.0.1")
    return d


@pytest.fixture(scope="module")
def tls_gateway(launch: Any, certs: Path) -> Gateway:
    gw: Gateway = launch("gateway", f"""
[state]
path = ":memory:"

[server]
tls_cert = "{certs / 'localhost.pem'}"
tls_key = "{certs / 'localhost.key'}"

[[sim_workers]]
name = "tls-sim"
runtime = "vllm"
[sim_workers.sim]
model = "sim-small"
""", name="gateway-tls")
    assert gw.url.startswith("https://"), gw.url
    return gw


def sdk(gw: Gateway, certs: Path) -> tuple[openai.OpenAI, httpx.Client]:
    http = httpx.Client(http2=True, verify=ssl.create_default_context(
        cafile=str(certs / "ca.pem")), timeout=30)
    url = gw.url.replace("127.0.0.1", "localhost")
    return openai.OpenAI(base_url=f"{url}/v1", api_key=gw.key, http_client=http,
                         max_retries=0), http


def test_the_sdk_speaks_https_and_http2_to_the_gateway(tls_gateway: Gateway,
                                                        certs: Path) -> None:
    client, _ = sdk(tls_gateway, certs)
    raw = client.chat.completions.with_raw_response.create(
        model="sim-small", max_tokens=4, messages=[{"role": "user", "content": "Hi"}])
    assert raw.http_response.http_version == "HTTP/2"
    completion = raw.parse()
    assert completion.usage is not None and completion.usage.completion_tokens == 4

    chunks = list(client.chat.completions.create(
        model="sim-small", max_tokens=5, stream=True, stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "Hi"}]))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text and chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 5


def test_a_client_that_does_not_trust_the_ca_is_refused(tls_gateway: Gateway) -> None:
    client = openai.OpenAI(base_url=f"{tls_gateway.url}/v1", api_key=tls_gateway.key,
                           max_retries=0, timeout=10)
    with pytest.raises(openai.APIConnectionError):
        client.models.list()


def test_the_admin_api_is_not_on_the_public_port(tls_gateway: Gateway, certs: Path) -> None:
    _, http = sdk(tls_gateway, certs)
    url = tls_gateway.url.replace("127.0.0.1", "localhost")
    resp = http.get(f"{url}/admin/v1/tenants", headers={"Authorization": "Bearer x" * 3})
    assert resp.status_code == 404
    assert "admin port" in resp.json()["error"]["message"]
