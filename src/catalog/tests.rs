//! The catalog's state machine: every transition, the two bugs found where
//! loads, streams and the switch used to meet, and random interleavings of
//! loads, drops, readers and crashes. Crashes are simulated by copying the
//! database's files while it is open, as a killed process leaves them.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use proptest::prelude::*;

use super::*;
use crate::config::Config;
use crate::store::keys::{push_key_part, view_prefix, KeyPart};
use crate::store::{codec, Durability};

fn open(dir: &Path) -> Catalog {
    let store = Store::open(dir, &Config::defaults().store).unwrap();
    Catalog::open(Arc::new(store)).unwrap()
}

fn target(fingerprint: u64) -> Target {
    Target { fingerprint, view: format!("v{fingerprint}"), coarse_spans_micros: None }
}

fn key(fingerprint: u64, generation: u32, k: i64) -> Vec<u8> {
    let mut key = view_prefix(fingerprint, generation).to_vec();
    push_key_part(&mut key, KeyPart::Int(k));
    key
}

/// Write rows `0..n` to one generation.
fn write_rows(store: &Store, fingerprint: u64, generation: u32, n: i64, durability: Durability) {
    let mut batch = store.batch();
    for k in 0..n {
        let mut row = vec![codec::FORMAT_VERSION];
        row.extend_from_slice(&1i64.to_le_bytes());
        row.push(generation as u8);
        batch.upsert(&key(fingerprint, generation, k), &row);
    }
    store.write_rows(batch, durability).unwrap();
}

fn rows(catalog: &Catalog, fingerprint: u64, generation: u32) -> usize {
    catalog.store.count_rows(fingerprint, generation).unwrap()
}

fn published(catalog: &Catalog, fingerprint: u64) -> Option<u32> {
    catalog.snapshot().get(&fingerprint).copied()
}

/// The files a process killed now would leave: a copy of the database
/// directory taken while it is open (nothing is flushed or closed first).
fn crash_image(dir: &Path) -> tempfile::TempDir {
    for _ in 0..10 {
        let image = tempfile::tempdir().unwrap();
        let copied = std::fs::read_dir(dir).unwrap().try_for_each(|entry| {
            let entry = entry?;
            if entry.file_name() != "LOCK" && entry.file_type()?.is_file() {
                std::fs::copy(entry.path(), image.path().join(entry.file_name()))?;
            }
            Ok::<(), std::io::Error>(())
        });
        // A background compaction may remove a file while it is copied.
        if copied.is_ok() {
            return image;
        }
    }
    panic!("could not copy {}", dir.display());
}

#[test]
fn a_replace_is_invisible_until_its_commit_then_replaces_the_active_generation() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = open(dir.path());
    for (round, n) in [(1, 10), (2, 7)] {
        let txn = catalog.begin(Write::Replace, vec![target(1)]).unwrap();
        assert_eq!(txn.generations(), vec![(1, round)]);
        assert_eq!(
            catalog.meta(1).unwrap().unwrap().pending_generation,
            Some(round),
            "recorded before any data"
        );
        write_rows(&catalog.store, 1, round, n, Durability::FlushBeforeCommit);
        assert_eq!(published(&catalog, 1), (round > 1).then_some(round - 1), "invisible before the commit");
        txn.commit(None).unwrap();
        assert_eq!(published(&catalog, 1), Some(round));
    }
    catalog.wait_for_retirements();
    assert_eq!(rows(&catalog, 1, 1), 0, "the replaced generation is deleted");
    assert_eq!(rows(&catalog, 1, 2), 7);
    let meta = catalog.meta(1).unwrap().unwrap();
    assert_eq!((meta.generation, meta.pending_generation), (2, None));
}

#[test]
fn an_abandoned_replace_leaves_the_active_generation_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = open(dir.path());
    let txn = catalog.begin(Write::Replace, vec![target(1)]).unwrap();
    write_rows(&catalog.store, 1, 1, 5, Durability::FlushBeforeCommit);
    txn.commit(None).unwrap();
    let txn = catalog.begin(Write::Replace, vec![target(1), target(2)]).unwrap();
    assert_eq!(txn.generations(), vec![(1, 2), (2, 1)]);
    write_rows(&catalog.store, 1, 2, 9, Durability::FlushBeforeCommit);
    write_rows(&catalog.store, 2, 1, 9, Durability::FlushBeforeCommit);
    drop(txn);
    assert_eq!((rows(&catalog, 1, 2), rows(&catalog, 2, 1)), (0, 0), "what it wrote is gone");
    assert_eq!((published(&catalog, 1), published(&catalog, 2)), (Some(1), None));
    assert_eq!(rows(&catalog, 1, 1), 5);
    let meta = catalog.meta(1).unwrap().unwrap();
    assert_eq!((meta.generation, meta.pending_generation), (1, None));
    // A view that never held data keeps a record of nothing.
    assert_eq!(catalog.meta(2).unwrap().map(|m| m.generation), Some(0));
    // The numbers are not used again in this process.
    let txn = catalog.begin(Write::Replace, vec![target(1)]).unwrap();
    assert_eq!(txn.generations(), vec![(1, 3)]);
}

#[test]
fn an_upsert_writes_to_the_active_generation_or_starts_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = open(dir.path());
    let txn = catalog.begin(Write::Upsert, vec![target(1)]).unwrap();
    assert_eq!(txn.generations(), vec![(1, 1)]);
    assert_eq!(
        catalog.meta(1).unwrap().unwrap().pending_generation,
        Some(1),
        "a first write is recorded as pending"
    );
    assert_eq!(published(&catalog, 1), None);
    txn.commit(None).unwrap();
    assert_eq!(published(&catalog, 1), Some(1));

    let txn = catalog.begin(Write::Upsert, vec![target(1)]).unwrap();
    assert_eq!(txn.generations(), vec![(1, 1)], "later upserts add to the active generation");
    assert!(catalog.begin(Write::Replace, vec![target(1)]).is_err(), "one write per view at a time");
    let load = LoadRecord { mode: "upsert".into(), rows_written: 3, ..LoadRecord::default() };
    txn.commit(Some(load.clone())).unwrap();
    let meta = catalog.meta(1).unwrap().unwrap();
    assert_eq!((meta.generation, meta.last_load), (1, Some(load)));
    catalog.wait_for_retirements();
}

#[test]
fn a_new_generation_records_the_coarse_tiles_it_is_written_with() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = open(dir.path());
    let spans = Some(vec![60_000_000, 3_600_000_000]);
    let with_tiles = Target { coarse_spans_micros: spans.clone(), ..target(1) };
    catalog.begin(Write::Replace, vec![with_tiles.clone()]).unwrap().commit(None).unwrap();
    assert_eq!(catalog.meta(1).unwrap().unwrap().coarse_spans_micros, spans);
    catalog.set_coarse_spans(1, None).unwrap();
    // An upsert into the active generation keeps what that generation holds.
    catalog.begin(Write::Upsert, vec![with_tiles]).unwrap().commit(Some(LoadRecord::default())).unwrap();
    assert_eq!(catalog.meta(1).unwrap().unwrap().coarse_spans_micros, None);
}

#[test]
fn a_reader_keeps_the_generation_it_holds_until_it_lets_go() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = open(dir.path());
    catalog.begin(Write::Replace, vec![target(1)]).unwrap().commit(None).unwrap();
    write_rows(&catalog.store, 1, 1, 4, Durability::Wal);
    let reader = catalog.snapshot();
    let retirement = catalog.begin(Write::Replace, vec![target(1)]).unwrap().commit(None).unwrap();
    assert!(!retirement.wait(std::time::Duration::from_millis(50)), "waits for the reader");
    assert_eq!(reader.get(&1), Some(&1));
    assert_eq!(rows(&catalog, 1, 1), 4, "held by a reader");
    drop(reader);
    assert!(retirement.wait(std::time::Duration::from_secs(10)));
    assert_eq!(rows(&catalog, 1, 1), 0, "deleted once the reader let go");
}

#[test]
fn an_older_reader_holds_back_the_deletions_of_every_newer_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = open(dir.path());
    catalog.begin(Write::Replace, vec![target(1)]).unwrap().commit(None).unwrap();
    write_rows(&catalog.store, 1, 1, 4, Durability::Wal);
    let old = catalog.snapshot();
    catalog.begin(Write::Replace, vec![target(1)]).unwrap().commit(None).unwrap();
    let newer = catalog.snapshot();
    // This commit retires everything below generation 3, generation 1 too.
    catalog.begin(Write::Replace, vec![target(1)]).unwrap().commit(None).unwrap();
    drop(newer);
    catalog.wait_for_retirements();
    assert_eq!(rows(&catalog, 1, 1), 4, "the oldest reader still reads generation 1");
    drop(old);
    catalog.wait_for_retirements();
    assert_eq!(rows(&catalog, 1, 1), 0);
}

#[test]
fn a_retired_view_is_unpublished_at_once_and_deleted_once_readers_let_go() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = open(dir.path());
    catalog.begin(Write::Replace, vec![target(1), target(2)]).unwrap().commit(None).unwrap();
    write_rows(&catalog.store, 1, 1, 4, Durability::Wal);
    let reader = catalog.snapshot();
    catalog.retire(1).unwrap();
    assert_eq!(published(&catalog, 1), None);
    assert_eq!(catalog.meta(1).unwrap(), None);
    assert_eq!(catalog.stored_views().unwrap(), 2, "its data is still on disk");
    // Brought back while its old data waits: a new number, not among it.
    let txn = catalog.begin(Write::Upsert, vec![target(1)]).unwrap();
    assert_eq!(txn.generations(), vec![(1, 2)]);
    write_rows(&catalog.store, 1, 2, 3, Durability::Wal);
    txn.commit(None).unwrap();
    catalog.wait_for_retirements();
    assert_eq!(rows(&catalog, 1, 1), 4, "held by a reader");
    drop(reader);
    catalog.wait_for_retirements();
    assert_eq!((rows(&catalog, 1, 1), rows(&catalog, 1, 2)), (0, 3));
    assert_eq!(catalog.stored_views().unwrap(), 2);
    catalog.retire(2).unwrap();
    catalog.wait_for_retirements();
    assert_eq!(catalog.stored_views().unwrap(), 1);
}

/// Found by the crash tests: a REPLACE of an aggregating view flushed its
/// rows but not its aggregate states before the switch, so a kill after the
/// switch lost the states the switch named.
#[test]
fn a_replace_is_on_disk_before_the_switch_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = open(dir.path());
    let txn = catalog.begin(Write::Replace, vec![target(1)]).unwrap();
    let mut batch = catalog.store.fresh_generation_batch();
    for k in 0..20 {
        batch.merge_agg(&key(1, 1, k), b"state");
    }
    catalog.store.write_rows(batch, Durability::FlushBeforeCommit).unwrap();
    write_rows(&catalog.store, 1, 1, 20, Durability::FlushBeforeCommit);
    txn.commit(None).unwrap();
    let image = crash_image(dir.path());
    let after = open(image.path());
    assert_eq!(published(&after, 1), Some(1));
    assert_eq!(after.store.count_agg_states(1, 1).unwrap(), 20, "aggregate states");
    assert_eq!(rows(&after, 1, 1), 20, "rows");
}

/// Found by the crash tests: a first UPSERT into an empty view wrote to
/// generation 1 with nothing recorded, so when it was killed the next
/// REPLACE, also writing to generation 1, served those rows with its own.
#[test]
fn a_first_upsert_killed_part_way_leaves_nothing_for_the_next_replace() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = open(dir.path());
    let txn = catalog.begin(Write::Upsert, vec![target(1)]).unwrap();
    write_rows(&catalog.store, 1, 1, 50, Durability::Wal);
    let image = crash_image(dir.path());
    drop(txn);
    let after = open(image.path());
    assert_eq!(published(&after, 1), None);
    assert_eq!(rows(&after, 1, 1), 0, "the killed upsert's rows are gone at start");
    let txn = after.begin(Write::Replace, vec![target(1)]).unwrap();
    let [(_, g)] = txn.generations()[..] else { panic!() };
    write_rows(&after.store, 1, g, 10, Durability::FlushBeforeCommit);
    txn.commit(None).unwrap();
    after.wait_for_retirements();
    assert_eq!(rows(&after, 1, g), 10, "only the replace's rows");
    assert_eq!(published(&after, 1), Some(g));
}

#[test]
fn recovery_deletes_every_generation_the_records_do_not_name() {
    let dir = tempfile::tempdir().unwrap();
    {
        let catalog = open(dir.path());
        catalog.begin(Write::Replace, vec![target(1)]).unwrap().commit(None).unwrap();
        let _reader = catalog.snapshot();
        catalog.begin(Write::Replace, vec![target(1)]).unwrap().commit(None).unwrap();
        let txn = catalog.begin(Write::Replace, vec![target(1)]).unwrap();
        // Generation 1: replaced (its reader never let go); 2: active; 3:
        // pending; 7: nothing records it; view 9: no record at all.
        for g in [1, 2, 3, 7] {
            write_rows(&catalog.store, 1, g, 5, Durability::Wal);
        }
        write_rows(&catalog.store, 9, 1, 5, Durability::Wal);
        let image = crash_image(dir.path());
        drop(txn);
        drop(catalog);
        std::fs::remove_dir_all(dir.path()).unwrap();
        std::fs::rename(image.path(), dir.path()).unwrap();
    }
    let catalog = open(dir.path());
    let left: Vec<(u64, u32, usize)> = [(1, 1), (1, 2), (1, 3), (1, 7), (9, 1)]
        .into_iter()
        .map(|(fp, g)| (fp, g, rows(&catalog, fp, g)))
        .filter(|(_, _, n)| *n > 0)
        .collect();
    assert_eq!(left, vec![(1, 2, 5)]);
    assert_eq!(catalog.meta(1).unwrap().unwrap().pending_generation, None);
    assert_eq!(published(&catalog, 1), Some(2));
}

// ---------------------------------------------------------------------------
// Random interleavings
// ---------------------------------------------------------------------------

const VIEWS: [u64; 3] = [11, 12, 13];

#[derive(Clone, Debug)]
enum Op {
    /// Start a load of the views in the mask (bits of `VIEWS`) writing `rows`.
    Begin {
        replace: bool,
        mask: u8,
        rows: i64,
    },
    Commit(usize),
    Abort(usize),
    /// A definitions apply drops a view (no write to it is under way).
    Retire(usize),
    Read,
    Check(usize),
    Release(usize),
    Crash,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (any::<bool>(), 1u8..8, 1i64..12).prop_map(|(replace, mask, rows)| Op::Begin { replace, mask, rows }),
        3 => (0usize..4).prop_map(Op::Commit),
        1 => (0usize..4).prop_map(Op::Abort),
        1 => (0usize..3).prop_map(Op::Retire),
        2 => Just(Op::Read),
        2 => (0usize..4).prop_map(Op::Check),
        2 => (0usize..4).prop_map(Op::Release),
        1 => Just(Op::Crash),
    ]
}

/// A load in progress: its generations, and the rows it wrote to new ones.
struct Load<'a> {
    txn: Txn<'a>,
    wrote: Vec<(u64, u32, usize)>,
}

/// What a reader expects of each view its snapshot names: generation and rows.
type Expected = BTreeMap<u64, (u32, usize)>;

/// Rows every committed generation holds (each is written once, before its commit).
type Committed = HashMap<(u64, u32), usize>;

/// Check one reader: every generation its snapshot names is whole.
fn check_reader(catalog: &Catalog, snapshot: &Snapshot, expected: &Expected) {
    for (&fp, &(g, n)) in expected {
        assert_eq!(snapshot.get(&fp), Some(&g));
        assert_eq!(rows(catalog, fp, g), n, "a reader of view {fp} generation {g} sees it whole");
    }
}

/// Only active generations hold data, each exactly what its load wrote.
fn check_only_active(catalog: &Catalog, committed: &Committed, highest: u32, when: &str) {
    for fp in VIEWS {
        let active = published(catalog, fp);
        for g in 0..=highest + 1 {
            let n = rows(catalog, fp, g);
            if Some(g) == active {
                assert_eq!(n, committed[&(fp, g)], "{when}: the active generation {g} of view {fp} is whole");
            } else {
                assert_eq!(n, 0, "{when}: generation {g} of view {fp} is not active but holds rows");
            }
        }
        if let Some(meta) = catalog.meta(fp).unwrap() {
            assert_eq!(meta.pending_generation, None, "{when}: pending generation left");
        }
    }
}

fn run(ops: Vec<Op>) {
    let mut home = tempfile::tempdir().unwrap();
    let mut catalog = open(home.path());
    let mut committed: Committed = HashMap::new();
    let mut highest = 0u32;
    // Loads and readers borrow the catalog: they live in this scope, and a
    // crash ends it.
    let mut ops = ops.into_iter().peekable();
    while ops.peek().is_some() {
        let mut crashed = false;
        {
            let mut loads: Vec<Load<'_>> = Vec::new();
            let mut readers: Vec<(Arc<Snapshot>, Expected)> = Vec::new();
            for op in ops.by_ref() {
                match op {
                    Op::Begin { replace, mask, rows } => {
                        let views: Vec<u64> = VIEWS
                            .iter()
                            .enumerate()
                            .filter(|(i, _)| mask & (1 << i) != 0)
                            .map(|(_, v)| *v)
                            .collect();
                        let busy =
                            |fp: &u64| loads.iter().any(|l| l.txn.generations().iter().any(|(f, _)| f == fp));
                        if views.iter().any(busy) {
                            continue;
                        }
                        let write = if replace { Write::Replace } else { Write::Upsert };
                        let before = catalog.snapshot();
                        let txn = catalog.begin(write, views.iter().map(|&v| target(v)).collect()).unwrap();
                        let mut wrote = Vec::new();
                        for (fp, g) in txn.generations() {
                            highest = highest.max(g);
                            if before.get(&fp) == Some(&g) {
                                assert!(!replace, "a replace writes a new generation");
                                continue;
                            }
                            assert!(
                                committed.keys().all(|&(f, old)| f != fp || old < g),
                                "numbers only grow within a process"
                            );
                            let durability =
                                if replace { Durability::FlushBeforeCommit } else { Durability::Wal };
                            write_rows(&catalog.store, fp, g, rows, durability);
                            wrote.push((fp, g, rows as usize));
                        }
                        loads.push(Load { txn, wrote });
                    }
                    Op::Commit(i) if !loads.is_empty() => {
                        let load = loads.remove(i % loads.len());
                        load.txn.commit(None).unwrap();
                        for (fp, g, n) in load.wrote {
                            committed.insert((fp, g), n);
                        }
                    }
                    Op::Abort(i) if !loads.is_empty() => drop(loads.remove(i % loads.len())),
                    Op::Retire(v) => {
                        let fp = VIEWS[v];
                        if !loads.iter().any(|l| l.txn.generations().iter().any(|(f, _)| *f == fp)) {
                            catalog.retire(fp).unwrap();
                        }
                    }
                    Op::Read => {
                        let snapshot = catalog.snapshot();
                        let expected = snapshot
                            .iter()
                            .map(|(&fp, &g)| {
                                let n = *committed
                                    .get(&(fp, g))
                                    .expect("a snapshot names only committed generations");
                                (fp, (g, n))
                            })
                            .collect();
                        check_reader(&catalog, &snapshot, &expected);
                        readers.push((snapshot, expected));
                    }
                    Op::Check(i) if !readers.is_empty() => {
                        let (snapshot, expected) = &readers[i % readers.len()];
                        check_reader(&catalog, snapshot, expected);
                    }
                    Op::Release(i) if !readers.is_empty() => drop(readers.remove(i % readers.len())),
                    Op::Crash => {
                        crashed = true;
                        break;
                    }
                    _ => {}
                }
            }
            if !crashed {
                drop(loads);
                drop(readers);
                catalog.wait_for_retirements();
                check_only_active(&catalog, &committed, highest, "once every reader let go");
                continue;
            }
            // Deletions already queued may or may not have run when the
            // process died; let them finish, so the copy is consistent.
            catalog.wait_for_retirements();
            let image = crash_image(home.path());
            // What the loads and readers would do next never happens.
            std::mem::forget(loads);
            std::mem::forget(readers);
            home = image;
        }
        catalog = open(home.path());
        check_only_active(&catalog, &committed, highest, "after a crash and recovery");
        // A new process may use the numbers of deleted generations again.
        committed.retain(|&(fp, g), _| published(&catalog, fp) == Some(g));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    #[test]
    fn readers_see_whole_generations_and_nothing_unreferenced_survives(ops in proptest::collection::vec(op(), 1..40)) {
        run(ops);
    }
}
