#!/usr/bin/env bash
# Builds fstore (release) and runs `fstore serve` on the embedded defaults:
# the example definitions in feature_defs/, their sample data loaded on first
# start, RocksDB under ./data, gRPC on 127.0.0.1:6566.
# Extra arguments go to `fstore`, e.g. `scripts/run.sh --config fstore.toml serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
if [ $# -eq 0 ]; then set -- serve; fi
exec cargo run --release --locked --bin fstore -- "$@"
