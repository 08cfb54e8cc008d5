//! The embedded-engine comparison behind `store::embedded`: fjall 3 (LSM tree)
//! vs redb 2 (copy-on-write B-tree), on roomcast's own workload.
//!
//! - Keys: `[room len u8][room id][seq u64 BE]` (the layout of `store::keys`),
//!   room ids of 25 bytes like `RoomId::random()`; values 200 bytes of
//!   text-like data (hex, about as compressible as chat text).
//! - append: batches of 64 messages spread across 100 rooms (like one shard's
//!   group commit). fjall: one `db.batch()` per batch, committed alone
//!   (journal written to the OS, no fsync) or followed by
//!   `db.persist(PersistMode::SyncData)`. redb: one write transaction per
//!   batch with `Durability::None` (not persisted at all until a later durable
//!   commit), `Durability::Eventual` (written, not fsynced) and the default
//!   (`Immediate`, fsynced).
//! - scan: the newest 50 messages of one room (reverse range), in a store of
//!   100 rooms x 1,000 messages; fjall both from the memtable and after the
//!   memtable is flushed to a table on disk.
//! - disk usage after inserting those 100,000 messages is printed once.
//!
//! Run: `cargo bench --bench store_engines -- --noplot`. Throughput is in
//! messages (one element = one message appended or one message read).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use fjall::{Database as FjallDb, Keyspace, KeyspaceCreateOptions, PersistMode};
use redb::{Database as RedbDb, Durability, TableDefinition};
use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

const BATCH: usize = 64;
const ROOMS: usize = 100;
const VALUE_LEN: usize = 200;
/// Messages per room in the scan/disk-usage data set.
const PER_ROOM: u64 = 1_000;
const SCAN: usize = 50;

const MESSAGES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("messages");

/// Deterministic key/value generator for the workload.
struct Workload {
    prefixes: Vec<Vec<u8>>,
    next_seq: Vec<u64>,
    cursor: usize,
    values: Vec<Vec<u8>>,
}

impl Workload {
    fn new() -> Self {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            // xorshift64*
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            x.wrapping_mul(0x2545_f491_4f6c_dd1d)
        };
        let prefixes = (0..ROOMS)
            .map(|_| {
                let id = format!("r{:012x}{:012x}", next() >> 16, next() >> 16);
                let mut p = vec![id.len() as u8];
                p.extend_from_slice(id.as_bytes());
                p
            })
            .collect();
        let values = (0..1024)
            .map(|_| {
                let mut v = Vec::with_capacity(VALUE_LEN);
                while v.len() < VALUE_LEN {
                    v.extend_from_slice(format!("{:016x}", next()).as_bytes());
                }
                v.truncate(VALUE_LEN);
                v
            })
            .collect();
        Self {
            prefixes,
            next_seq: vec![1; ROOMS],
            cursor: 0,
            values,
        }
    }

    fn key(&self, room: usize, seq: u64) -> Vec<u8> {
        let mut k = Vec::with_capacity(self.prefixes[room].len() + 8);
        k.extend_from_slice(&self.prefixes[room]);
        k.extend_from_slice(&seq.to_be_bytes());
        k
    }

    /// The next message: (key, value), rooms taken round-robin.
    fn next(&mut self) -> (Vec<u8>, &[u8]) {
        let r = self.cursor % ROOMS;
        let seq = self.next_seq[r];
        self.next_seq[r] += 1;
        let v = &self.values[self.cursor % self.values.len()];
        self.cursor += 1;
        (self.key(r, seq), v)
    }

    /// `[room, room + u64::MAX)`: every message key of room `r`.
    fn room_range(&self, r: usize) -> (Vec<u8>, Vec<u8>) {
        (self.key(r, 0), self.key(r, u64::MAX))
    }
}

/// Bytes allocated on disk under `p` (st_blocks x 512, so preallocated or
/// sparse files count for what they really hold, not their length).
fn dir_size(p: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => total += dir_size(&e.path()),
                Ok(m) => total += m.blocks() * 512,
                Err(_) => {}
            }
        }
    }
    total
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0))
}

fn open_fjall(dir: &Path) -> (FjallDb, Keyspace) {
    let db = FjallDb::builder(dir)
        .cache_size(64 * 1024 * 1024)
        .max_journaling_size(256 * 1024 * 1024)
        .open()
        .unwrap();
    let ks = db
        .keyspace("messages", KeyspaceCreateOptions::default)
        .unwrap();
    (db, ks)
}

fn fjall_batch(db: &FjallDb, ks: &Keyspace, w: &mut Workload, n: usize, sync: bool) {
    let mut batch = db.batch();
    for _ in 0..n {
        let (k, v) = w.next();
        batch.insert(ks, k, v);
    }
    batch.commit().unwrap();
    if sync {
        db.persist(PersistMode::SyncData).unwrap();
    }
}

fn redb_batch(db: &RedbDb, w: &mut Workload, n: usize, durability: Durability) {
    let mut tx = db.begin_write().unwrap();
    tx.set_durability(durability);
    {
        let mut t = tx.open_table(MESSAGES).unwrap();
        for _ in 0..n {
            let (k, v) = w.next();
            t.insert(k.as_slice(), v).unwrap();
        }
    }
    tx.commit().unwrap();
}

fn append(c: &mut Criterion) {
    let mut g = c.benchmark_group("engines/append_batch64");
    g.throughput(Throughput::Elements(BATCH as u64));
    for (name, sync) in [("fjall_no_sync", false), ("fjall_sync_data", true)] {
        let dir = tempfile::tempdir().unwrap();
        let (db, ks) = open_fjall(dir.path());
        let mut w = Workload::new();
        g.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| fjall_batch(&db, &ks, &mut w, BATCH, sync))
        });
        db.persist(PersistMode::SyncAll).unwrap();
        eprintln!(
            "engines: {name}: {} messages appended during the bench, dir {}",
            w.cursor,
            mib(dir_size(dir.path()))
        );
    }
    for (name, durability) in [
        ("redb_durability_none", Durability::None),
        ("redb_durability_eventual", Durability::Eventual),
        ("redb_durability_immediate", Durability::Immediate),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let db = RedbDb::create(dir.path().join("messages.redb")).unwrap();
        let mut w = Workload::new();
        g.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| redb_batch(&db, &mut w, BATCH, durability))
        });
        eprintln!(
            "engines: {name}: {} messages appended during the bench, dir {}",
            w.cursor,
            mib(dir_size(dir.path()))
        );
    }
    g.finish();
}

fn scan(c: &mut Criterion) {
    let total = ROOMS as u64 * PER_ROOM;
    let batches = (total as usize).div_ceil(BATCH);
    let raw = total * (26 + 8 + VALUE_LEN as u64);

    // fjall: prefill in batches of 64 without per-batch fsync, then sync once.
    let fdir = tempfile::tempdir().unwrap();
    let (fdb, fks) = open_fjall(fdir.path());
    let mut fw = Workload::new();
    let t = Instant::now();
    for _ in 0..batches {
        fjall_batch(&fdb, &fks, &mut fw, BATCH, false);
    }
    fdb.persist(PersistMode::SyncAll).unwrap();
    eprintln!(
        "engines: fjall: {} messages ({} of keys+values) inserted in {:.2?}; \
         dir {} (journal only, data in the memtable)",
        fw.cursor,
        mib(raw),
        t.elapsed(),
        mib(dir_size(fdir.path()))
    );

    // redb: prefill in batches of 64, default (Immediate) durability.
    let rdir = tempfile::tempdir().unwrap();
    let rdb = RedbDb::create(rdir.path().join("messages.redb")).unwrap();
    let mut rw = Workload::new();
    let t = Instant::now();
    for _ in 0..batches {
        redb_batch(&rdb, &mut rw, BATCH, Durability::Immediate);
    }
    eprintln!(
        "engines: redb: {} messages inserted in {:.2?} (one fsynced transaction per 64); file {}",
        rw.cursor,
        t.elapsed(),
        mib(dir_size(rdir.path()))
    );

    let room = 42;
    let (start, end) = fw.room_range(room);
    let fjall_scan = |ks: &Keyspace| {
        let mut n = 0;
        for item in ks.range(start.as_slice()..end.as_slice()).rev().take(SCAN) {
            let (k, v) = item.into_inner().unwrap();
            black_box((&k[..], &v[..]));
            n += 1;
        }
        assert_eq!(n, SCAN);
    };
    let redb_scan = |db: &RedbDb| {
        let tx = db.begin_read().unwrap();
        let t = tx.open_table(MESSAGES).unwrap();
        let mut n = 0;
        for item in t
            .range(start.as_slice()..end.as_slice())
            .unwrap()
            .rev()
            .take(SCAN)
        {
            let (k, v) = item.unwrap();
            black_box((k.value(), v.value()));
            n += 1;
        }
        assert_eq!(n, SCAN);
    };

    let mut g = c.benchmark_group("engines/scan_last50");
    g.throughput(Throughput::Elements(SCAN as u64));
    g.bench_function("fjall_memtable", |b| b.iter(|| fjall_scan(&fks)));
    fks.rotate_memtable_and_wait().unwrap();
    eprintln!(
        "engines: fjall after flushing the memtable: dir {}, db.disk_space() {} ({} tables)",
        mib(dir_size(fdir.path())),
        mib(fdb.disk_space().unwrap()),
        fks.table_count()
    );
    g.bench_function("fjall_flushed_table", |b| b.iter(|| fjall_scan(&fks)));
    g.bench_function("redb", |b| b.iter(|| redb_scan(&rdb)));
    g.finish();

    fks.major_compact().unwrap();
    eprintln!(
        "engines: fjall after a major compaction: dir {}, db.disk_space() {} ({} tables)",
        mib(dir_size(fdir.path())),
        mib(fdb.disk_space().unwrap()),
        fks.table_count()
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = append, scan
}
criterion_main!(benches);
