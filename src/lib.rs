//! fstore: a low-latency online feature store server.
//!
//! Data enters from two sides and leaves by one; each module depends only on
//! those listed before it (the `layering` test reads this list and every
//! `crate::` path in `src/`). `docs/architecture.md` says who owns what.
//!
//! - [`config`]: one struct tree; embedded defaults, then `fstore.toml`, then
//!   `FSTORE_*` environment variables.
//! - [`error`]: what a client sees of a failure: a code and a message, with
//!   internal detail kept in the log; one mapping to gRPC statuses.
//! - The language lives in the `fstore-dsl` crate: lexer, parser, checker,
//!   typed plan and Arrow evaluator.
//! - [`store`]: the RocksDB key layout, value encoding and the database.
//! - [`registry`]: the checked definitions the server runs on, with services
//!   resolved once and each view's schema fingerprint; the definitions
//!   directory's crash-safe writes ([`registry::journal`]).
//! - [`catalog`]: each view's generations: the targets of every write, the
//!   published map readers use, retiring what no reader holds, recovery.
//! - [`engine`]: the running store: registry, database and catalog.
//! - [`definitions`]: replacing the definitions of a running server
//!   (checked, swapped atomically, journalled to disk).
//! - [`ingest`]: turning Parquet files and JSON messages into typed batches,
//!   and batches into store writes for every view of their source.
//! - [`offline`]: `fstore eval`: a service's derived features over a Parquet
//!   file, through the evaluator serving runs.
//! - [`feast_repo`]: `fstore feast-registry`: a Feast feature repository
//!   generated from the definitions, for Feast's SDK pointed at fstore.
//! - [`stream`]: Kafka consumers, one per stream source, writing each batch
//!   with its offsets atomically.
//! - [`runtime`]: the running server's lifecycle: consumers, initial load,
//!   cache warming, applies and SIGHUP, and the order of shutdown.
//! - [`serve`]: the gRPC services, health, reflection and the metrics
//!   endpoint: a thin adapter over the runtime.
//! - [`client`]: the `fstore-client` crate: the gRPC contract ([`proto`])
//!   and a typed client, in a crate of its own so that a Rust model server
//!   builds neither RocksDB nor librdkafka.
//! - `typed_arg` (in the binary): a request field's value from command-line
//!   text (`--request NAME=VALUE`).
//! - `bench` (in the binary, `src/main.rs`): `fstore bench` and
//!   `fstore bench-ingest`, the load generators.
//! - `cli` (in the binary): the `fstore` command line: `serve`, `check`,
//!   `ingest`, `get`, ...
//!
//! The library's public surface is what the binary and the tests use.

#![forbid(unsafe_code)]
#![warn(unreachable_pub)]

pub mod catalog;
pub mod config;
pub(crate) mod definitions;
pub mod engine;
pub(crate) mod error;
pub mod feast_repo;
pub mod ingest;
pub mod offline;
pub mod registry;
pub mod runtime;
pub mod serve;
pub mod store;
pub(crate) mod stream;

/// A typed client (the `fstore-client` crate).
pub use fstore_client as client;
/// The public gRPC contract, from the `fstore-client` crate.
pub use fstore_client::proto;

/// Microseconds since the Unix epoch, from the wall clock.
pub fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// The canonical name of a gRPC status code (`INVALID_ARGUMENT`), as metrics
/// labels and other gRPC tools spell it.
pub fn grpc_code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}
