//! Write batches: what one RocksDB write holds (rows, aggregate states,
//! stream offsets), and how durable it is made.

use rocksdb::WriteBatch;

/// How hard a write must be made durable before it returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// Through the write-ahead log and fsynced.
    Sync,
    /// Through the write-ahead log (survives a process crash, not a power loss).
    Wal,
    /// Not logged: the caller flushes ([`super::Store::flush_rows`]) before it commits
    /// anything that depends on these writes. Bulk loads use it.
    FlushBeforeCommit,
}

/// Writes that become visible together, in one RocksDB write.
pub struct Batch<'a> {
    pub(super) rows: &'a rocksdb::ColumnFamily,
    pub(super) aggs: &'a rocksdb::ColumnFamily,
    pub(super) meta: &'a rocksdb::ColumnFamily,
    pub(super) batch: WriteBatch,
    /// Keys to invalidate in the row cache after the write.
    pub(super) written: Option<Vec<Vec<u8>>>,
    /// Row upserts held for a bulk load instead of written.
    pub(super) collected: Option<CollectedRows>,
}

/// Rows (key, encoded row) in one buffer, in the order they were added.
#[derive(Default)]
pub struct CollectedRows {
    bytes: Vec<u8>,
    lengths: Vec<(u32, u32)>,
}

impl CollectedRows {
    fn push(&mut self, key: &[u8], row: &[u8]) {
        self.bytes.extend_from_slice(key);
        self.bytes.extend_from_slice(row);
        self.lengths.push((key.len() as u32, row.len() as u32));
    }

    pub fn len(&self) -> usize {
        self.lengths.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lengths.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        let mut at = 0;
        self.lengths.iter().map(move |&(k, v)| {
            let (k, v) = (k as usize, v as usize);
            let row = (&self.bytes[at..at + k], &self.bytes[at + k..at + k + v]);
            at += k + v;
            row
        })
    }
}

impl Batch<'_> {
    /// Fold an encoded partial aggregate state into the one stored at `key`.
    pub fn merge_agg(&mut self, key: &[u8], encoded_state: &[u8]) {
        self.batch.merge_cf(self.aggs, key, encoded_state);
    }

    /// Record the next offset to consume of a stream source's partition.
    pub fn put_offset(&mut self, source: &str, topic: &str, partition: i32, next: i64) {
        self.batch.put_cf(self.meta, format!("offset/{source}/{topic}/{partition}"), next.to_le_bytes());
    }

    /// Upsert an encoded row: it replaces the stored one only if its event
    /// time is at least as great.
    pub fn upsert(&mut self, key: &[u8], encoded_row: &[u8]) {
        if let Some(collected) = &mut self.collected {
            collected.push(key, encoded_row);
            return;
        }
        self.batch.merge_cf(self.rows, key, encoded_row);
        if let Some(written) = &mut self.written {
            written.push(key.to_vec());
        }
    }

    /// The row upserts a [`super::Store::bulk_batch`] collected.
    pub fn take_collected_rows(&mut self) -> CollectedRows {
        self.collected.as_mut().map(std::mem::take).unwrap_or_default()
    }

    pub fn len(&self) -> usize {
        self.batch.len()
    }

    pub fn is_empty(&self) -> bool {
        self.batch.is_empty()
    }
}
