//! fstore's integration tests, compiled as one binary. Each module covers one
//! area through the real `fstore` binary: a real server on a loopback port,
//! real RocksDB, real Parquet files, real gRPC.

mod kafka;
mod overload;
mod util;

mod access;
mod apply;
mod cli;
mod crash;
mod derived;
mod e2e;
mod feast;
mod push;
mod replace;
mod stream;
mod upgrade;
mod warm;
mod windows;
