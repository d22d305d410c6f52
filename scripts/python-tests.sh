#!/usr/bin/env bash
# Runs the Python client's tests (clients/python/tests) against a real fstore
# binary, in a venv kept outside the repository.
#
#   scripts/python-tests.sh [FSTORE_TEST_BIN] [pytest arguments...]
#
# The binary is the first argument if it names a file, else $FSTORE_TEST_BIN, else
# ~/.cache/fstore-target/debug/fstore (where scripts/test.sh builds it).
# The venv is ${FSTORE_TEST_VENV:-~/.cache/fstore-venv}: created on first use with
# the pinned versions of clients/python/requirements-test.txt, and reused while
# that file is unchanged (a stamp holds its hash). The package is reinstalled
# from the work tree on every run, its gRPC stubs generated from proto/.
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$PWD"

if [ $# -gt 0 ] && [ "${1#-}" = "$1" ] && [ -f "$1" ]; then
  FSTORE_TEST_BIN="$1"
  shift
fi
FSTORE_TEST_BIN="${FSTORE_TEST_BIN:-$HOME/.cache/fstore-target/debug/fstore}"
case "$FSTORE_TEST_BIN" in /*) ;; *) FSTORE_TEST_BIN="$repo/$FSTORE_TEST_BIN" ;; esac
if [ ! -x "$FSTORE_TEST_BIN" ]; then
  echo "python-tests: no fstore binary at $FSTORE_TEST_BIN (build it with cargo build, or pass its path)" >&2
  exit 2
fi
export FSTORE_TEST_BIN

venv="${FSTORE_TEST_VENV:-$HOME/.cache/fstore-venv}"
requirements="$repo/clients/python/requirements-test.txt"

# CPython 3.11 or newer: the pinned numpy and pandas need it.
python=""
for candidate in "${PYTHON:-}" python3.11 python3 python3.12 python3.13; do
  [ -n "$candidate" ] || continue
  if command -v "$candidate" >/dev/null 2>&1 &&
    "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
    python="$candidate"
    break
  fi
done
if [ -z "$python" ]; then
  echo "python-tests: needs CPython 3.11 or newer (apt-get install python3)" >&2
  exit 2
fi

make_venv() {
  rm -rf "$venv"
  mkdir -p "$(dirname "$venv")"
  if ! "$python" -m venv "$venv" 2>/dev/null; then
    # Debian ships venv's pip bootstrap separately.
    rm -rf "$venv"
    version="$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
    echo "python-tests: installing python$version-venv"
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "python$version-venv" ||
      DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-venv
    "$python" -m venv "$venv"
  fi
}

# A venv whose interpreter is gone (or another version) is made anew.
want="$("$python" -c 'import sys; print(sys.version.split()[0])')"
have="$("$venv/bin/python" -c 'import sys; print(sys.version.split()[0])' 2>/dev/null || true)"
[ "$have" = "$want" ] || make_venv

stamp="$venv/.fstore-requirements.sha256"
hash="$( (cat "$requirements"; echo "$want") | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$hash" ]; then
  echo "python-tests: installing the pinned test requirements into $venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
  echo "$hash" >"$stamp"
fi

# The package from this work tree; no stale build output goes into the wheel.
rm -rf "$repo/clients/python/build"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
  --force-reinstall --no-deps --no-build-isolation "$repo/clients/python"

cd "$repo/clients/python"
exec "$venv/bin/python" -m pytest -p no:cacheprovider "$@"
