# fstore server image. Build: docker build -t fstore .
FROM rust:1-bookworm AS build
# libclang: RocksDB's bindings; OpenSSL, zlib and pkg-config: librdkafka
# (built from the crate's bundled sources) links them for TLS/SASL brokers.
RUN apt-get update -qq \
 && apt-get install -y -qq libclang-dev libssl-dev zlib1g-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin fstore && cp target/release/fstore /usr/local/bin/fstore

FROM debian:bookworm-slim
RUN apt-get update -qq && apt-get install -y -qq ca-certificates libssl3 zlib1g && rm -rf /var/lib/apt/lists/*
COPY --from=build /usr/local/bin/fstore /usr/local/bin/fstore
COPY feature_defs /etc/fstore/feature_defs
WORKDIR /var/lib/fstore
ENV FSTORE_SERVER__DEFINITIONS_DIR=/etc/fstore/feature_defs \
    FSTORE_SERVER__DATA_DIR=/var/lib/fstore/data
EXPOSE 6566 6567 9566
ENTRYPOINT ["fstore"]
CMD ["serve"]
