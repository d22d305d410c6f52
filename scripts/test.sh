#!/usr/bin/env bash
# Runs every fstore test: unit, property, golden and end-to-end tests.
# This is the README's test command, and what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
# Keep cargo's build outside the clone so later runs are incremental.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/fstore-target}"
cargo test --workspace --all-targets --locked
