//! Ingest: the ways data enters the store, all ending in store writes.
//!
//! - [`parquet`]: batch snapshots and upserts from Parquet files, through
//!   the `FeatureAdmin.IngestParquet` RPC.
//! - [`crate::stream`]: Kafka messages, decoded by [`json`].
//! - [`push`]: events sent by clients (`FeaturePush.PushEvents`), decoded
//!   as Kafka messages are.
//!
//! All turn their input into a typed Arrow batch ([`convert`] reads Parquet
//! columns as the types the definitions need) and hand it to [`events`],
//! which evaluates every view and builds the store writes; streamed and
//! pushed events are written by [`write`].

pub mod convert;
pub(crate) mod events;
pub(crate) mod json;
pub mod parquet;
pub mod push;
pub(crate) mod write;

pub(crate) use crate::engine::IngestReport;

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
