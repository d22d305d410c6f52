#!/usr/bin/env bash
# Runs every fstore test: unit, property, golden and end-to-end tests, after
# the style checks (rustfmt, clippy), then the Python client's tests.
# This is the README's test command, and what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
# The streaming tests start their own Kafka-protocol brokers from this binary
# (or use the broker at FSTORE_TEST_KAFKA=host:port when it is set).
if [ -z "${FSTORE_TEST_KAFKA:-}" ]; then
  FSTORE_TEST_BROKER_BIN="$(scripts/kafka-broker.sh)"
  export FSTORE_TEST_BROKER_BIN
fi
# Keep cargo's build outside the clone so later runs are incremental.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/fstore-target}"

# Style first: formatting, and clippy with every warning an error.
cargo fmt --all -- --check || { echo "cargo fmt --check failed: run cargo fmt --all" >&2; exit 1; }
cargo clippy --workspace --all-targets --locked -- -D warnings

# Tests that measure the server's capacity run alone, after the others: run
# beside them, they would measure what the other tests left of the machine.
alone=(
  overload::at_twice_the_sustainable_rate_admitted_requests_keep_their_latency
)
skips=()
for t in "${alone[@]}"; do skips+=(--skip "$t"); done

# (criterion's bench harness takes no --skip, so the benches, run once each
# as tests, go on their own.)
cargo test --workspace --lib --bins --tests --examples --locked -- "${skips[@]}"
cargo test --workspace --bench '*' --locked
cargo test --locked --test it -- --exact --test-threads 1 "${alone[@]}"
# The Python client against the binary just built, in a venv outside the clone.
scripts/python-tests.sh "$CARGO_TARGET_DIR/debug/fstore" -q
