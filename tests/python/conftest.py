"""Shared fixtures: start the real `switchyard` binary (and, for test_llamacpp.py, a real
llama-cpp-python server) as child processes on free loopback ports, wait until they say they are
ready (never a fixed sleep), and stop them at the end.

The binary is not built here: the caller runs `cargo build -p switchyard` first. Its path comes
from SWITCHYARD_BIN (default target/debug/switchyard, relative to the repository root).
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable, Iterator

import openai
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("SWITCHYARD_CACHE") or Path.home() / ".cache" / "switchyard")
DEV_KEY = "sk-test-python-0123456789abcdef"
STARTUP_DEADLINE_S = 30.0
_work_dir: Path | None = None


def work_dir() -> Path:
    """Logs and config files of this session; removed at its end unless a test failed."""
    global _work_dir
    if _work_dir is None:
        _work_dir = Path(tempfile.mkdtemp(prefix="switchyard-pytest-"))
    return _work_dir


def switchyard_bin() -> Path:
    path = Path(os.environ.get("SWITCHYARD_BIN", "target/debug/switchyard"))
    if not path.is_absolute():
        path = REPO_ROOT / path
    if not path.is_file():
        pytest.fail(
            f"switchyard binary not found at {path}: run `cargo build -p switchyard` first "
            "(or set SWITCHYARD_BIN)",
            pytrace=False,
        )
    return path


def free_port() -> int:
    """A port that was free a moment ago (for servers that cannot report the port they bound)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_json(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None,
              timeout: float = 10.0) -> tuple[int, dict[str, str], Any]:
    """A plain HTTP call (stdlib only): status, headers, and the body parsed as JSON if it is."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status, hdrs, raw = resp.status, dict(resp.headers.items()), resp.read()
    except urllib.error.HTTPError as e:
        status, hdrs, raw = e.code, dict(e.headers.items()), e.read()
    try:
        parsed = json.loads(raw) if raw else None
    except ValueError:
        parsed = raw.decode(errors="replace")
    return status, {k.lower(): v for k, v in hdrs.items()}, parsed


class Process:
    """A child process whose stdout is read line by line in a thread (so it never blocks on a
    full pipe) and whose stderr goes to a log file shown when something goes wrong."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str] | None = None):
        self.name = name
        self.argv = argv
        self.log = tempfile.NamedTemporaryFile(
            prefix=f"{name}-", suffix=".log", dir=work_dir(), delete=False
        )
        self.lines: "queue.Queue[str | None]" = queue.Queue()
        self.stdout: list[str] = []
        self.proc = subprocess.Popen(
            argv,
            cwd=REPO_ROOT,
            env={**os.environ, **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            bufsize=1,
        )
        threading.Thread(target=self._pump, name=f"{name}-stdout", daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.stdout.append(line)
            self.lines.put(line)
        self.lines.put(None)

    def diagnostics(self) -> str:
        try:
            err = Path(self.log.name).read_text(errors="replace")[-4000:]
        except OSError:
            err = "<unreadable>"
        return (
            f"{self.name}: {' '.join(self.argv)}\n exit code: {self.proc.poll()}\n"
            f" stdout:\n{''.join(self.stdout)[-2000:]}\n stderr (tail, {self.log.name}):\n{err}"
        )

    def wait_for_line(self, pattern: str, deadline_s: float = STARTUP_DEADLINE_S) -> re.Match[str]:
        """Waits for a stdout line matching `pattern`; fails at once if the process exits."""
        regex = re.compile(pattern)
        end = time.monotonic() + deadline_s
        while True:
            left = end - time.monotonic()
            if left <= 0:
                self.stop()
                pytest.fail(f"{self.name} did not print /{pattern}/ within {deadline_s} s\n"
                            + self.diagnostics(), pytrace=False)
            try:
                line = self.lines.get(timeout=min(left, 0.5))
            except queue.Empty:
                continue
            if line is None:
                self.proc.wait(timeout=5)
                pytest.fail(f"{self.name} exited before it was ready\n" + self.diagnostics(),
                            pytrace=False)
            m = regex.search(line)
            if m:
                return m

    def wait_for_http(self, url: str, deadline_s: float) -> Any:
        """Polls `url` until it answers 200; fails at once if the process exits."""
        end = time.monotonic() + deadline_s
        last: object = None
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                pytest.fail(f"{self.name} exited before it was ready\n" + self.diagnostics(),
                            pytrace=False)
            try:
                status, _, body = http_json("GET", url, timeout=2)
                if status == 200:
                    return body
                last = status
            except OSError as e:  # refused while it loads
                last = e
            time.sleep(0.2)  # polling interval, not synchronisation
        self.stop()
        pytest.fail(f"{self.name}: {url} did not answer 200 within {deadline_s} s (last: {last})\n"
                    + self.diagnostics(), pytrace=False)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.log.close()


class Gateway:
    """A running `switchyard serve`."""

    def __init__(self, process: Process, url: str, key: str):
        self.process = process
        self.url = url
        self.key = key

    def client(self, *, api_key: str | None = None, timeout: float = 30.0) -> openai.OpenAI:
        # No SDK retries: a test must see exactly what one request gets.
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=api_key or self.key,
                             max_retries=0, timeout=timeout)


def start_gateway(config_toml: str | None = None, *, name: str = "gateway",
                  env: dict[str, str] | None = None) -> Gateway:
    argv = [str(switchyard_bin()), "serve", "--listen", "127.0.0.1:0",
            "--admin-listen", "127.0.0.1:0"]
    if config_toml is not None:
        cfg = tempfile.NamedTemporaryFile("w", prefix=f"{name}-", suffix=".toml",
                                          dir=work_dir(), delete=False)
        cfg.write(config_toml)
        cfg.close()
        argv += ["--config", cfg.name]
    proc = Process(name, argv, env={"SWITCHYARD_DEV_KEY": DEV_KEY, "RUST_LOG": "info",
                                    **(env or {})})
    url = proc.wait_for_line(r"switchyard listening on (https?://\S+)").group(1)
    # A key from the environment is named, never printed (it would land in the logs).
    proc.wait_for_line(r"dev API key: from SWITCHYARD_DEV_KEY")
    return Gateway(proc, url.rstrip("/"), DEV_KEY)


@pytest.fixture(scope="session")
def launch(request: pytest.FixtureRequest) -> Iterator[Callable[..., Any]]:
    """Starts gateways and other processes for the session; stops them all at its end."""
    started: list[Process] = []

    def _launch(kind: str, *args: Any, **kwargs: Any) -> Any:
        if kind == "gateway":
            gw = start_gateway(*args, **kwargs)
            started.append(gw.process)
            return gw
        if kind == "process":
            p = Process(*args, **kwargs)
            started.append(p)
            return p
        raise ValueError(kind)

    yield _launch
    for p in reversed(started):
        p.stop()
    if _work_dir is not None:
        if request.session.testsfailed:
            print(f"\nprocess logs kept in {_work_dir}")
        else:
            shutil.rmtree(_work_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def gateway(launch: Callable[..., Any]) -> Gateway:
    """The gateway with its built-in simulated fleet (models sim-small and sim-large)."""
    return launch("gateway")


@pytest.fixture(scope="session")
def client(gateway: Gateway) -> openai.OpenAI:
    return gateway.client()
