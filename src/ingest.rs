//! Ingest: the two ways data enters the store, both ending in store writes.
//!
//! - [`parquet`]: batch snapshots and upserts from Parquet files, through
//!   the `FeatureAdmin.IngestParquet` RPC.
//! - [`crate::stream`]: Kafka messages, decoded by [`json`].
//!
//! Both turn their input into a typed Arrow batch ([`convert`] reads Parquet
//! columns as the types the definitions need) and hand it to [`events`],
//! which evaluates every view and builds the store writes.

pub mod convert;
pub mod events;
pub mod json;
pub mod parquet;

use serde::Serialize;

/// What one load did, as the `IngestReport` message and GetStatus show it.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct IngestReport {
    pub source: String,
    pub mode: String,
    pub files: Vec<String>,
    pub rows_read: u64,
    /// Rows stored in at least one view (rows every view filters out are
    /// neither written nor rejected).
    pub rows_written: u64,
    pub rows_rejected: u64,
    /// Events older than every window of an aggregating view: kept only in
    /// its lifetime aggregates.
    pub rows_too_late: u64,
    pub sample_errors: Vec<String>,
    pub duration_micros: u64,
}

/// Why a load failed as a whole (and wrote nothing visible).
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The request or the files are wrong: unknown source, no matching
    /// files, a missing or incompatible column.
    #[error("{0}")]
    Invalid(String),
    /// The request is fine but the store cannot do it (yet).
    #[error("{0}")]
    Unsupported(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}
