#!/usr/bin/env bash
# Runs every cargo-fuzz target (fuzz/fuzz_targets) for a bounded time each, from the checked-in
# seeds in fuzz/corpus/<target>. New inputs libFuzzer finds go to a scratch directory, not into
# the repository; a crash stops the run, and its input is in fuzz/artifacts/<target>/.
#   scripts/fuzz.sh [seconds per target, default 60] [target ...]
# Needs the nightly toolchain (installed on these machines) and cargo-fuzz (installed here from
# crates.io on first use).
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_EACH="${1:-60}"
shift || true
if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "fuzz: the nightly toolchain is missing (rustup toolchain install nightly)" >&2
  exit 1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz"
  cargo install cargo-fuzz --locked --quiet
fi
TARGETS=("$@")
if [ ${#TARGETS[@]} -eq 0 ]; then
  mapfile -t TARGETS < <(cd fuzz && cargo +nightly fuzz list)
fi
SCRATCH="$(mktemp -d)"
trap 'rm -rf "$SCRATCH"' EXIT
cd fuzz
echo "== fuzz: building the targets (nightly, sanitizers)"
cargo +nightly fuzz build -O
for target in "${TARGETS[@]}"; do
  mkdir -p "$SCRATCH/$target"
  echo "== fuzz $target (${SECONDS_EACH}s)"
  if ! cargo +nightly fuzz run -O "$target" "$SCRATCH/$target" "corpus/$target" -- \
    -max_total_time="$SECONDS_EACH" -rss_limit_mb=2048 -print_final_stats=1 \
    >"$SCRATCH/$target.log" 2>&1; then
    tail -60 "$SCRATCH/$target.log" >&2
    echo "fuzz: $target failed; the input is in fuzz/artifacts/$target/" >&2
    exit 1
  fi
  grep -E "^stat::(number_of_executed_units|new_units_added)" "$SCRATCH/$target.log" || true
done
