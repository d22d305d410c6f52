#!/usr/bin/env bash
# Installs the system packages fstore's build needs, if they are missing:
# - libclang (with its headers): librocksdb-sys generates its bindings with bindgen;
# - a C/C++ compiler and make: RocksDB, zstd, lz4 and librdkafka are compiled
#   from source by their -sys crates;
# - zlib, OpenSSL headers and pkg-config: librdkafka links them (compressed
#   Kafka batches, TLS and SASL to brokers).
# No system protoc is needed: the proto files are compiled by the pure-Rust protox.
set -euo pipefail

need=()
command -v cc >/dev/null 2>&1 || need+=(gcc)
command -v c++ >/dev/null 2>&1 || need+=(g++)
command -v make >/dev/null 2>&1 || need+=(make)
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
[ -e /usr/include/zlib.h ] || need+=(zlib1g-dev)
[ -e /usr/include/openssl/ssl.h ] || need+=(libssl-dev)
if ! ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1 && ! ls /usr/lib/x86_64-linux-gnu/libclang*.so* >/dev/null 2>&1; then
  need+=(libclang-dev)
elif ! ls /usr/lib/llvm-*/lib/clang/*/include/stddef.h >/dev/null 2>&1; then
  need+=(libclang-dev)
fi

if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
fi
