//! `fstore bench`: an open-loop load generator over the real gRPC API, to
//! measure lookup latency at a fixed request rate.
//!
//! This first part holds what a benchmark's requests ask for: the `--key`
//! specs and the seeded, deterministic draw of keys from their ranges.
//!
//! - [`keys`]: `--key` specs and the key columns drawn for each request.
//! - [`sampler`]: the seeded generator, uniform and Zipf key distributions.

pub mod keys;
pub mod sampler;
