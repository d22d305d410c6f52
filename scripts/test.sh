#!/usr/bin/env bash
# Runs every fstore test: unit, property, golden and end-to-end tests.
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
cargo test --workspace --all-targets --locked
