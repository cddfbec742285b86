#!/usr/bin/env bash
# Benchmark of the metering hot path (admission + settlement) and ledger throughput.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo run --release -q -p switchyard-bench-metering
