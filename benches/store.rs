//! Store microbenchmark (issue 11; run on demand, not in CI): what one accepted and one delivered
//! message costs the store, without HTTP. For each variant it prints one Markdown table row:
//! records/s, bytes written (`/proc/self/io` `write_bytes`, i.e. handed to the block layer, and
//! `wchar`, i.e. passed to write syscalls), fsyncs, disk bytes at rest (sum of `st_blocks * 512`)
//! once N messages are queued and once they are all delivered, CPU, and the time to reopen the
//! store with N queued.
//!
//!     cargo bench --bench store -- [variant ...] [--messages N] [--batch B] [--accept-only]
//!     cargo bench --bench store -- store --retention [--messages N]
//!
//! Defaults: N = 50,000, B = 64, and every variant below. Group commit is emulated by writing B
//! messages, then one flush + fdatasync (`store` instead runs B concurrent writers on a tokio
//! runtime, so the store's own group commit gathers them). Delivery records each message as a
//! delivered try (task removed, destination ~40 B, attempt ~250 B and its by-endpoint index entry,
//! in one transaction or batch) and flushes + fsyncs every B tries: the server does not wait for
//! these, but its commit rounds come every few ms, which at this rate is about every B tries.
//! Payloads are realistic JSON events of 0.3–8 KiB (a deterministic generator); byte figures are
//! normalised to a 1 KiB message: bytes per message / (mean payload / 1024).
//!
//! Variants (each in a fresh directory under `target/bench-store/`, on the real disk):
//! - `store`: the real store through its public API (`Store::open`, `create_message`, then
//!   `due_tasks`, `get_message` and `finish_try`), whatever its layout is at this commit (at
//!   d1574d5 it was format 1, payloads inside sled's records; since, format 2, the payload log).
//! - `sled-default`: raw sled 0.34.7 configured as the store configures it (64 MiB cache, 512 KiB
//!   segments, `LowSpace`, flush every 1 s) with today's record layout emulated: 3 trees written in
//!   one transaction at acceptance (message with payload, eventId index, queue task; bincode values
//!   with a version byte, base62 ids) and 4 at delivery.
//! - `sled-tuned-OPTS` (or `sled-OPTS`), OPTS joined by `-`: `seg64k`, `seg256k`, `seg1m`, `seg8m`
//!   (sled's hidden `segment_size`), `cache16m`, `cache256m`, `ht` (`Mode::HighThroughput`), `zstd`
//!   (`use_compression(true)`, level 5; the `compression` feature is a dev-dependency only), `one`
//!   (one record per message: a single tree with prefixed keys written with one batch, message
//!   meta + payload in one compact value, binary 20-byte ids, the queue key carries the message
//!   key with an empty value, no eventId tree; at delivery compact destination and attempt values
//!   and a key-only by-endpoint entry).
//! - `vsep[-OPTS]`: value separation (WiscKey, FAST '16): each payload is appended to an
//!   append-only segment file (record: len u32, crc32 u32, app‖msg key, payload; segments roll at
//!   64 MiB); per batch one write + fdatasync of the segment, then sled flush + fsync. sled keeps
//!   the small message meta with a (segment, offset, len) reference, the queue task and the
//!   eventId entry. Delivery reads the payload back (crc checked) and writes the same delivery
//!   records to sled; payloads stay (history is kept).
//! - `vsep-tuned`: `vsep` with the best sled settings found: `vsep-one` (one record per message).
//!
//! `--retention` (with `store`): the N messages are created as if spread over one day that ended an
//! hour ago, delivered, and then retention expires that day (`purge_messages_before`); it prints
//! the time, CPU and bytes written per message expired, the payload files dropped and the disk
//! before and after.
//!
//! The reopen column is `sled::open` (plus, for `vsep`, a crc scan of the last segment, which a
//! torn-tail check needs) after the queued phase, with N queued; for `store`, `Store::open`.

#[path = "common/payloads.rs"]
mod payloads;

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use herald::domain::{
    AppId, Attempt, AttemptId, DeliveryStatus, EndpointId, HealthEvent, Message, MessageId,
    Timestamp, Trigger,
};
use herald::store::{Store, StoreOptions, TryRecord};
use serde::Serialize;
use sled::Transactional;

const DEFAULT_MESSAGES: usize = 50_000;
const DEFAULT_BATCH: usize = 64;
/// Distinct payloads generated up front (each message takes one in turn), so generation is not
/// timed. Compression works within sled pages and log buffers, far smaller than this pool.
const PAYLOAD_POOL: usize = 4096;
const SEGMENT_ROLL: u64 = 64 * 1024 * 1024;
const DEFAULT_VARIANTS: &[&str] = &[
    "store",
    "sled-default",
    "sled-tuned-seg64k",
    "sled-tuned-seg256k",
    "sled-tuned-seg1m",
    "sled-tuned-seg8m",
    "sled-tuned-cache16m",
    "sled-tuned-ht",
    "sled-tuned-zstd",
    "sled-tuned-one",
    "vsep",
    "vsep-tuned",
];
/// What `vsep-tuned` means: the best sled settings of the `sled-tuned-*` runs (segment size
/// and mode moved little once payloads left the tree; compression costs CPU and reopen time).
const VSEP_TUNED: &str = "vsep-one";

fn main() {
    let mut variants = Vec::new();
    let (mut n, mut batch, mut accept_only) = (DEFAULT_MESSAGES, DEFAULT_BATCH, false);
    let mut retention = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--messages" => {
                n = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--messages N")
            }
            "--batch" => batch = args.next().and_then(|v| v.parse().ok()).expect("--batch B"),
            "--accept-only" => accept_only = true,
            "--retention" => retention = true,
            "--bench" => {}
            v if v.starts_with("--") => panic!("unknown option {v}"),
            v => variants.push(v.to_string()),
        }
    }
    if variants.is_empty() {
        variants = DEFAULT_VARIANTS.iter().map(|s| s.to_string()).collect();
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-store");
    fs::create_dir_all(&root).expect("bench dir");
    println!("uptime: {}", uptime());
    println!("dir: {} (N = {n}, B = {batch})", root.display());
    let pool = payloads::payload_pool(PAYLOAD_POOL);
    let sizes: Vec<usize> = (0..n).map(|i| pool[i % PAYLOAD_POOL].len()).collect();
    let mean = sizes.iter().sum::<usize>() as f64 / n as f64;
    println!(
        "payloads: mean {mean:.0} B, min {} B, max {} B",
        sizes.iter().min().unwrap_or(&0),
        sizes.iter().max().unwrap_or(&0)
    );
    println!();
    println!("Byte figures per 1 KiB message (bytes per message / {:.2}); q = queued phase, d = delivery phase.", mean / 1024.0);
    println!();
    println!("| variant | mean payload B | accept rec/s | deliver rec/s | write B/msg q | write B/msg d | syscall B/msg q | fsyncs/msg q+d | disk B/msg q | disk B/msg d | CPU µs/msg q / d | reopen ms |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for v in &variants {
        let dir = root.join(format!("{v}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("variant dir");
        let r = if v == "store" {
            run_store(&dir, &pool, n, batch, accept_only, retention)
        } else {
            let spec = match v.as_str() {
                "vsep-tuned" => VSEP_TUNED,
                other => other,
            };
            match Variant::parse(spec) {
                Some(var) => run_raw(&var, &dir, &pool, n, batch, accept_only),
                None => {
                    eprintln!("unknown variant {v}");
                    continue;
                }
            }
        };
        let _ = fs::remove_dir_all(&dir);
        println!("{}", r.row(v, mean));
    }
    println!();
    println!("uptime: {}", uptime());
}

/// Figures of one run, raw (not yet normalised).
#[derive(Default)]
struct Outcome {
    n: usize,
    accept: Duration,
    deliver: Option<Duration>,
    write_q: u64,
    write_d: u64,
    wchar_q: u64,
    fsyncs_q: u64,
    fsyncs_d: u64,
    disk_q: u64,
    disk_d: u64,
    cpu_q: Duration,
    cpu_d: Duration,
    reopen: Duration,
}

impl Outcome {
    fn row(&self, name: &str, mean: f64) -> String {
        let n = self.n as f64;
        let per_kib = |bytes: u64| format!("{:.0}", bytes as f64 / n / (mean / 1024.0));
        let rate = |d: Duration| format!("{:.0}", n / d.as_secs_f64());
        let d = self.deliver.is_some();
        let or_dash = |s: String| if d { s } else { "–".into() };
        format!(
            "| {name} | {mean:.0} | {} | {} | {} | {} | {} | {:.3}+{:.3} | {} | {} | {:.0} / {} | {} |",
            rate(self.accept),
            or_dash(self.deliver.map(rate).unwrap_or_default()),
            per_kib(self.write_q),
            or_dash(per_kib(self.write_d)),
            per_kib(self.wchar_q),
            self.fsyncs_q as f64 / n,
            self.fsyncs_d as f64 / n,
            per_kib(self.disk_q),
            or_dash(per_kib(self.disk_d)),
            self.cpu_q.as_secs_f64() * 1e6 / n,
            or_dash(format!("{:.0}", self.cpu_d.as_secs_f64() * 1e6 / n)),
            self.reopen.as_millis(),
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Measuring

/// `(write_bytes, wchar)` of this process (all threads) from `/proc/self/io`.
fn io_counters() -> (u64, u64) {
    let text = fs::read_to_string("/proc/self/io").unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    (field("write_bytes:"), field("wchar:"))
}

/// User + system CPU time of this process, from `/proc/self/stat` (clock ticks of 10 ms).
fn cpu_time() -> Duration {
    let text = fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at field 3.
    let rest = text.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

/// Bytes allocated on disk under `path`.
fn disk_usage(path: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(path) else {
        return 0;
    };
    let mut total = 0;
    for e in entries.flatten() {
        let Ok(m) = fs::symlink_metadata(e.path()) else {
            continue;
        };
        total += m.blocks() * 512;
        if m.is_dir() {
            total += disk_usage(&e.path());
        }
    }
    total
}

fn uptime() -> String {
    std::process::Command::new("uptime")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// Marks the start of a phase; `end` gives its deltas.
struct Phase {
    at: Instant,
    io: (u64, u64),
    cpu: Duration,
}

impl Phase {
    fn start() -> Phase {
        Phase {
            at: Instant::now(),
            io: io_counters(),
            cpu: cpu_time(),
        }
    }

    /// (elapsed, write_bytes, wchar, cpu)
    fn end(&self) -> (Duration, u64, u64, Duration) {
        let (w, c) = io_counters();
        (
            self.at.elapsed(),
            w.saturating_sub(self.io.0),
            c.saturating_sub(self.io.1),
            cpu_time().saturating_sub(self.cpu),
        )
    }
}

// ---------------------------------------------------------------------------------------------
// `store`: the real store.

fn run_store(
    dir: &Path,
    pool: &[Vec<u8>],
    n: usize,
    batch: usize,
    accept_only: bool,
    retention: bool,
) -> Outcome {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let opts = StoreOptions {
        min_free_bytes: 0,
        ballast_bytes: 0,
        ..StoreOptions::new([7; 32])
    };
    let (app, ep) = (AppId::generate(), EndpointId::generate());
    let mut out = Outcome {
        n,
        ..Outcome::default()
    };
    let store = Store::open(dir, &opts).expect("open store");
    let pool = Arc::new(pool.to_vec());
    // With --retention, message i is created at day_start + i * (1 day / n).
    const DAY_MS: i64 = 86_400_000;
    let day_start = Timestamp::now().millis() - DAY_MS - 3_600_000;
    let created = move |i: usize| -> (MessageId, Timestamp) {
        if retention {
            let at = day_start + (i as i64 * DAY_MS) / n as i64;
            (MessageId::generate_at(at), Timestamp(at))
        } else {
            (MessageId::generate(), Timestamp::now())
        }
    };

    let rounds = store.commit_rounds();
    let phase = Phase::start();
    let next = Arc::new(AtomicUsize::new(0));
    rt.block_on(async {
        let writers: Vec<_> = (0..batch)
            .map(|_| {
                let (store, next, app, ep) = (store.clone(), next.clone(), app.clone(), ep.clone());
                let pool = pool.clone();
                tokio::spawn(async move {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= n {
                            break;
                        }
                        let (id, created_at) = created(i);
                        let msg = Message {
                            id,
                            app_id: app.clone(),
                            event_type: "order.created".into(),
                            event_id: Some(format!("evt_{i:012}")),
                            channels: None,
                            tags: None,
                            payload: pool[i % PAYLOAD_POOL].clone(),
                            created_at,
                            destinations: vec![ep.clone()],
                            deliver_at: None,
                            payload_expires_at: None,
                            expunged: false,
                        };
                        store.create_message(&msg, None).await.expect("create");
                    }
                })
            })
            .collect();
        for w in writers {
            w.await.expect("writer");
        }
    });
    (out.accept, out.write_q, out.wchar_q, out.cpu_q) = phase.end();
    out.fsyncs_q = store.commit_rounds() - rounds;
    out.disk_q = disk_usage(dir);

    store.close().expect("close");
    drop(store);
    let t = Instant::now();
    let store = reopen(|| Store::open(dir, &opts).map_err(|e| e.to_string()));
    out.reopen = t.elapsed();
    if accept_only {
        return out;
    }

    let rounds = store.commit_rounds();
    let phase = Phase::start();
    rt.block_on(async {
        let none = Default::default();
        loop {
            let due = store
                .due_tasks(&app, &ep, i64::MAX, batch, &none)
                .expect("due");
            if due.is_empty() {
                break;
            }
            for qt in due {
                let msg = store
                    .get_message(&app, qt.task.msg_id.as_str())
                    .expect("read")
                    .expect("message");
                store
                    .finish_try(&TryRecord {
                        task_key: qt.key,
                        attempt: attempt(&app, &msg.id, &ep),
                        retry: None,
                        fanned_out_here: true,
                        health: HealthEvent::Success,
                        ordered: false,
                    })
                    .await
                    .expect("finish");
            }
            store.durable().await.expect("durable");
        }
    });
    let (d, w, _, cpu) = phase.end();
    (out.deliver, out.write_d, out.cpu_d) = (Some(d), w, cpu);
    out.fsyncs_d = store.commit_rounds() - rounds;
    out.disk_d = disk_usage(dir);
    if retention {
        let files = || fs::read_dir(dir.join("store-v1/payloads")).map_or(0, |d| d.count());
        let (files_before, disk_before) = (files(), disk_usage(dir));
        let phase = Phase::start();
        let removed = store
            .purge_messages_before(Timestamp(day_start + DAY_MS))
            .expect("purge");
        let (took, written, _, cpu) = phase.end();
        println!(
            "retention: expired one day, {removed} messages, in {:.2} s ({:.1} µs and {:.0} B written per message, CPU {:.2} s); payload files {files_before} -> {}; disk {} -> {} MiB",
            took.as_secs_f64(),
            took.as_secs_f64() * 1e6 / removed.max(1) as f64,
            written as f64 / removed.max(1) as f64,
            cpu.as_secs_f64(),
            files(),
            disk_before / (1 << 20),
            disk_usage(dir) / (1 << 20),
        );
    }
    store.close().expect("close");
    out
}

fn attempt(app: &AppId, msg: &MessageId, ep: &EndpointId) -> Attempt {
    Attempt {
        id: AttemptId::generate(),
        app_id: app.clone(),
        msg_id: msg.clone(),
        endpoint_id: ep.clone(),
        url: "https://hooks.example.com/webhooks/herald/orders".into(),
        status: DeliveryStatus::Success,
        response_status_code: 200,
        response: r#"{"received":true,"id":"9f2c1a"}"#.into(),
        duration_ms: 12,
        trigger: Trigger::Scheduled,
        created_at: Timestamp::now(),
    }
}

/// Open again, waiting out a lock the previous handle's threads may still hold for a moment.
fn reopen<T>(open: impl Fn() -> Result<T, String>) -> T {
    let give_up = Instant::now() + Duration::from_secs(10);
    loop {
        match open() {
            Ok(v) => return v,
            Err(e) if Instant::now() < give_up && e.contains("lock") => {
                std::thread::sleep(Duration::from_millis(5))
            }
            Err(e) => panic!("reopen: {e}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Raw sled variants.

struct Variant {
    segment_size: Option<usize>,
    cache: u64,
    high_throughput: bool,
    zstd: bool,
    one_record: bool,
    vsep: bool,
}

impl Variant {
    fn parse(name: &str) -> Option<Variant> {
        let (vsep, opts) = if let Some(rest) = name.strip_prefix("vsep") {
            (true, rest)
        } else if let Some(rest) = name.strip_prefix("sled-tuned") {
            (false, rest)
        } else if let Some(rest) = name.strip_prefix("sled") {
            (false, rest)
        } else {
            return None;
        };
        let mut v = Variant {
            segment_size: None,
            cache: 64 * 1024 * 1024,
            high_throughput: false,
            zstd: false,
            one_record: false,
            vsep,
        };
        for o in opts.split('-').filter(|o| !o.is_empty()) {
            match o {
                "default" => {}
                "seg64k" => v.segment_size = Some(64 * 1024),
                "seg256k" => v.segment_size = Some(256 * 1024),
                "seg1m" => v.segment_size = Some(1024 * 1024),
                "seg8m" => v.segment_size = Some(8 * 1024 * 1024),
                "cache16m" => v.cache = 16 * 1024 * 1024,
                "cache256m" => v.cache = 256 * 1024 * 1024,
                "ht" => v.high_throughput = true,
                "zstd" => v.zstd = true,
                "one" => v.one_record = true,
                _ => return None,
            }
        }
        Some(v)
    }

    fn open(&self, path: &Path) -> sled::Result<sled::Db> {
        let mut c = sled::Config::new()
            .path(path)
            .cache_capacity(self.cache)
            .flush_every_ms(Some(1000))
            .use_compression(self.zstd)
            .mode(if self.high_throughput {
                sled::Mode::HighThroughput
            } else {
                sled::Mode::LowSpace
            });
        if let Some(s) = self.segment_size {
            c = c.segment_size(s);
        }
        c.open()
    }
}

/// Today's value layouts, mirrored (bincode 2, standard config, after a version byte), so the
/// raw variants keep measuring today's layout whatever the store becomes.
#[derive(Serialize)]
struct MsgValue<'a> {
    id: &'a str,
    app_id: &'a str,
    event_type: &'a str,
    event_id: Option<&'a str>,
    channels: Option<Vec<String>>,
    tags: Option<Vec<String>>,
    payload: &'a [u8],
    created_at: i64,
    destinations: Vec<&'a str>,
}

/// The message without its payload, with a reference into the segments (vsep).
#[derive(Serialize)]
struct MsgMeta<'a> {
    id: &'a str,
    app_id: &'a str,
    event_type: &'a str,
    event_id: Option<&'a str>,
    channels: Option<Vec<String>>,
    tags: Option<Vec<String>>,
    created_at: i64,
    destinations: Vec<&'a str>,
    payload_ref: (u32, u64, u32),
}

#[derive(Serialize)]
enum TriggerV {
    Scheduled,
}

#[derive(Serialize)]
struct TaskValue<'a> {
    msg_id: &'a str,
    tries: u32,
    trigger: TriggerV,
}

#[derive(Serialize)]
enum StatusV {
    _Pending,
    Success,
}

#[derive(Serialize)]
struct DestValue {
    status: StatusV,
    next_attempt: Option<i64>,
    updated_at: i64,
}

#[derive(Serialize)]
struct AttemptValue<'a> {
    id: &'a str,
    app_id: &'a str,
    msg_id: &'a str,
    endpoint_id: &'a str,
    url: &'a str,
    status: StatusV,
    response_status_code: i16,
    response: &'a str,
    duration_ms: i64,
    trigger: TriggerV,
    created_at: i64,
}

fn enc<T: Serialize>(v: &T) -> Vec<u8> {
    let mut out = vec![1u8];
    bincode::serde::encode_into_std_write(v, &mut out, bincode::config::standard())
        .expect("encode");
    out
}

const URL: &str = "https://hooks.example.com/webhooks/herald/orders";
const RESPONSE: &str = r#"{"received":true,"id":"9f2c1a"}"#;

/// Ids as the raw variants write them: 20 bytes, time-ordered (a counter) then random, like a
/// KSUID; `text` is the 27-character base62-like form today's keys use.
struct Id {
    bin: [u8; 20],
    text: String,
}

fn make_id(r: &mut payloads::Rng, counter: u64) -> Id {
    let mut bin = [0u8; 20];
    bin[..8].copy_from_slice(&counter.to_be_bytes());
    for chunk in bin[8..].chunks_mut(8) {
        let v = r.next().to_le_bytes();
        chunk.copy_from_slice(&v[..chunk.len()]);
    }
    Id {
        bin,
        text: format!("{:011}{}", counter / 4 % 100_000_000_000, r.alnum(16)),
    }
}

fn now_ms() -> i64 {
    Timestamp::now().millis()
}

/// Append-only payload segments (vsep).
struct Segments {
    dir: PathBuf,
    id: u32,
    file: File,
    len: u64,
    buf: Vec<u8>,
    readers: Vec<Option<File>>,
}

impl Segments {
    fn open(dir: &Path) -> Segments {
        fs::create_dir_all(dir).expect("segments dir");
        let file = Self::create(dir, 0);
        Segments {
            dir: dir.to_path_buf(),
            id: 0,
            file,
            len: 0,
            buf: Vec::new(),
            readers: Vec::new(),
        }
    }

    fn path(dir: &Path, id: u32) -> PathBuf {
        dir.join(format!("seg-{id:06}.log"))
    }

    fn create(dir: &Path, id: u32) -> File {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(Self::path(dir, id))
            .expect("segment")
    }

    /// Buffer one record; returns its (segment, offset of the payload, payload length).
    fn append(&mut self, key: &[u8], payload: &[u8]) -> (u32, u64, u32) {
        let mut h = crc32fast::Hasher::new();
        h.update(key);
        h.update(payload);
        let len = (key.len() + payload.len()) as u32;
        self.buf.extend_from_slice(&len.to_le_bytes());
        self.buf.extend_from_slice(&h.finalize().to_le_bytes());
        self.buf.extend_from_slice(key);
        self.buf.extend_from_slice(payload);
        let offset = self.len + self.buf.len() as u64 - payload.len() as u64;
        (self.id, offset, payload.len() as u32)
    }

    /// Write the buffered records and fdatasync; counts one fsync (two when a segment closes).
    fn commit(&mut self, fsyncs: &mut u64) {
        self.file.write_all(&self.buf).expect("segment write");
        self.len += self.buf.len() as u64;
        self.buf.clear();
        self.file.sync_data().expect("segment fdatasync");
        *fsyncs += 1;
        if self.len >= SEGMENT_ROLL {
            self.id += 1;
            self.len = 0;
            self.file = Self::create(&self.dir, self.id);
            // The new name must be durable before records in it are acknowledged.
            File::open(&self.dir)
                .and_then(|d| d.sync_all())
                .expect("dir fsync");
            *fsyncs += 1;
        }
    }

    fn read(&mut self, seg: u32, offset: u64, len: u32, key_len: usize) -> Vec<u8> {
        let i = seg as usize;
        if self.readers.len() <= i {
            self.readers.resize_with(i + 1, || None);
        }
        let f = self.readers[i]
            .get_or_insert_with(|| File::open(Self::path(&self.dir, seg)).expect("segment open"));
        let start = offset - key_len as u64 - 8;
        let mut rec = vec![0u8; 8 + key_len + len as usize];
        f.read_exact_at(&mut rec, start).expect("segment read");
        let crc = u32::from_le_bytes(rec[4..8].try_into().unwrap_or_default());
        assert_eq!(crc32fast::hash(&rec[8..]), crc, "payload checksum");
        rec.split_off(8 + key_len)
    }

    /// What a torn-tail check at open costs: read the last segment, checking every record.
    fn scan_last(dir: &Path) -> usize {
        let mut last = None;
        for e in fs::read_dir(dir).expect("segments").flatten() {
            let p = e.path();
            if last.as_ref().is_none_or(|l: &PathBuf| p > *l) {
                last = Some(p);
            }
        }
        let Some(p) = last else { return 0 };
        let data = fs::read(p).expect("read segment");
        let (mut at, mut records) = (0, 0);
        while at + 8 <= data.len() {
            let len = u32::from_le_bytes(data[at..at + 4].try_into().unwrap_or_default()) as usize;
            let crc = u32::from_le_bytes(data[at + 4..at + 8].try_into().unwrap_or_default());
            let Some(body) = data.get(at + 8..at + 8 + len) else {
                break;
            };
            if crc32fast::hash(body) != crc {
                break;
            }
            at += 8 + len;
            records += 1;
        }
        records
    }
}

struct Raw<'a> {
    v: &'a Variant,
    db: sled::Db,
    db_file: File,
    t: Trees,
    segs: Option<Segments>,
    fsyncs: u64,
}

/// Today's trees (all sled's default tree with `one`, whose keys carry a type prefix).
struct Trees {
    messages: sled::Tree,
    events: sled::Tree,
    queue: sled::Tree,
    attempts: sled::Tree,
    by_ep: sled::Tree,
    dests: sled::Tree,
}

impl Trees {
    fn open(db: &sled::Db) -> Trees {
        let t = |name: &str| db.open_tree(name).expect("tree");
        Trees {
            messages: t("messages"),
            events: t("msg_event_id"),
            queue: t("queue"),
            attempts: t("attempts"),
            by_ep: t("attempts_by_ep"),
            dests: t("destinations"),
        }
    }
}

impl Raw<'_> {
    /// Flush sled and fsync its data file (sled's flush alone does not fsync).
    fn commit(&mut self) {
        if let Some(s) = &mut self.segs {
            s.commit(&mut self.fsyncs);
        }
        self.db.flush().expect("flush");
        self.db_file.sync_data().expect("fsync");
        self.fsyncs += 1;
    }
}

fn run_raw(
    v: &Variant,
    dir: &Path,
    pool: &[Vec<u8>],
    n: usize,
    batch: usize,
    accept_only: bool,
) -> Outcome {
    let db_path = dir.join("db");
    let seg_path = dir.join("segments");
    let open = |v: &Variant| {
        let db = v.open(&db_path).expect("sled open");
        let db_file = File::open(db_path.join("db")).expect("sled data file");
        (db, db_file)
    };
    let (db, db_file) = open(v);
    let mut raw = Raw {
        v,
        t: Trees::open(&db),
        db,
        db_file,
        segs: v.vsep.then(|| Segments::open(&seg_path)),
        fsyncs: 0,
    };
    let mut out = Outcome {
        n,
        ..Outcome::default()
    };
    let mut r = payloads::Rng(0x2545_F491_4F6C_DD1D);
    let app = make_id(&mut r, 0);
    let ep = make_id(&mut r, 0);

    let phase = Phase::start();
    for start in (0..n).step_by(batch) {
        for i in start..(start + batch).min(n) {
            let msg = make_id(&mut r, i as u64 + 1);
            let event_id = format!("evt_{}", r.alnum(20));
            accept_one(
                &mut raw,
                &app,
                &ep,
                &msg,
                &event_id,
                &pool[i % PAYLOAD_POOL],
            );
        }
        raw.commit();
    }
    (out.accept, out.write_q, out.wchar_q, out.cpu_q) = phase.end();
    out.fsyncs_q = raw.fsyncs;
    out.disk_q = disk_usage(dir);

    // Reopen with N queued: sled replays its log.
    let had_segs = raw.segs.is_some();
    drop(raw);
    let t = Instant::now();
    let (db, db_file) = reopen(|| {
        let db = v.open(&db_path).map_err(|e| e.to_string())?;
        let f = File::open(db_path.join("db")).map_err(|e| e.to_string())?;
        Ok((db, f))
    });
    if had_segs {
        Segments::scan_last(&seg_path);
    }
    out.reopen = t.elapsed();
    if accept_only {
        return out;
    }
    let mut raw = Raw {
        v,
        t: Trees::open(&db),
        db,
        db_file,
        segs: had_segs.then(|| reopen_segments(&seg_path)),
        fsyncs: 0,
    };

    let phase = Phase::start();
    let mut delivered = 0;
    loop {
        let due = due_tasks(&raw, &app, batch);
        if due.is_empty() {
            break;
        }
        for (qkey, msg_key) in due {
            let payload = read_payload(&mut raw, &msg_key);
            assert!(!payload.is_empty(), "payload read back");
            deliver_one(&mut raw, &mut r, &app, &ep, &qkey, &msg_key);
            delivered += 1;
        }
        raw.commit();
    }
    assert_eq!(delivered, n, "every message delivered once");
    let (d, w, _, cpu) = phase.end();
    (out.deliver, out.write_d, out.cpu_d) = (Some(d), w, cpu);
    out.fsyncs_d = raw.fsyncs;
    out.disk_d = disk_usage(dir);
    out
}

fn reopen_segments(dir: &Path) -> Segments {
    let mut s = Segments::open(dir);
    // Continue after the last segment written (Segments::open made a fresh first one if needed).
    let mut ids: Vec<u32> = fs::read_dir(dir)
        .expect("segments")
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_prefix("seg-")?
                .strip_suffix(".log")?
                .parse()
                .ok()
        })
        .collect();
    ids.sort_unstable();
    if let Some(&last) = ids.last() {
        s.id = last;
        s.file = Segments::create(dir, last);
        s.len = s.file.metadata().map(|m| m.len()).unwrap_or(0);
    }
    s
}

const T_MSG: u8 = b'm';
const T_QUEUE: u8 = b'q';
const T_DEST: u8 = b'd';
const T_ATTEMPT: u8 = b'a';
const T_BY_EP: u8 = b'e';

fn accept_one(raw: &mut Raw, app: &Id, ep: &Id, msg: &Id, event_id: &str, payload: &[u8]) {
    let now = now_ms();
    if raw.v.one_record {
        let key = [&[T_MSG][..], &app.bin, &msg.bin].concat();
        // version, created_at, event type, eventId, then the payload or its reference.
        let mut value = vec![1u8];
        value.extend_from_slice(&now.to_be_bytes());
        for s in ["order.created", event_id] {
            value.push(s.len() as u8);
            value.extend_from_slice(s.as_bytes());
        }
        match &mut raw.segs {
            Some(segs) => {
                let (seg, off, len) = segs.append(&key[1..], payload);
                value.extend_from_slice(&seg.to_be_bytes());
                value.extend_from_slice(&off.to_be_bytes());
                value.extend_from_slice(&len.to_be_bytes());
            }
            None => value.extend_from_slice(payload),
        }
        let qkey = [
            &[T_QUEUE][..],
            &app.bin,
            &ep.bin,
            &now.to_be_bytes(),
            &msg.bin,
        ]
        .concat();
        let mut b = sled::Batch::default();
        b.insert(key, value);
        b.insert(qkey, &[][..]);
        raw.db.apply_batch(b).expect("batch");
        return;
    }
    let (msg_id, app_id, ep_id) = (
        format!("msg_{}", msg.text),
        format!("app_{}", app.text),
        format!("ep_{}", ep.text),
    );
    let key = [app.text.as_bytes(), msg.text.as_bytes()].concat();
    let value = match &mut raw.segs {
        Some(segs) => enc(&MsgMeta {
            id: &msg_id,
            app_id: &app_id,
            event_type: "order.created",
            event_id: Some(event_id),
            channels: None,
            tags: None,
            created_at: now,
            destinations: vec![&ep_id],
            payload_ref: segs.append(&key, payload),
        }),
        None => enc(&MsgValue {
            id: &msg_id,
            app_id: &app_id,
            event_type: "order.created",
            event_id: Some(event_id),
            channels: None,
            tags: None,
            payload,
            created_at: now,
            destinations: vec![&ep_id],
        }),
    };
    let task = enc(&TaskValue {
        msg_id: &msg_id,
        tries: 0,
        trigger: TriggerV::Scheduled,
    });
    let seq = raw.db.generate_id().expect("id");
    let qkey = [
        app.text.as_bytes(),
        ep.text.as_bytes(),
        &(now as u64).to_be_bytes(),
        &seq.to_be_bytes(),
    ]
    .concat();
    let ekey = [app.text.as_bytes(), event_id.as_bytes()].concat();
    (&raw.t.messages, &raw.t.events, &raw.t.queue)
        .transaction(|(messages, events, queue)| {
            if events.get(ekey.as_slice())?.is_some() {
                return sled::transaction::abort(());
            }
            events.insert(ekey.as_slice(), msg.text.as_bytes())?;
            messages.insert(key.as_slice(), value.as_slice())?;
            queue.insert(qkey.as_slice(), task.as_slice())?;
            Ok(())
        })
        .expect("accept transaction");
}

/// Up to `limit` queued tasks, earliest first: (queue key, message key).
fn due_tasks(raw: &Raw, app: &Id, limit: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
    if raw.v.one_record {
        return raw
            .db
            .scan_prefix([T_QUEUE])
            .take(limit)
            .map(|r| {
                let (k, _) = r.expect("scan");
                let msg = &k[k.len() - 20..];
                (k.to_vec(), [&[T_MSG][..], &app.bin, msg].concat())
            })
            .collect();
    }
    raw.t
        .queue
        .iter()
        .take(limit)
        .map(|r| {
            let (k, v) = r.expect("scan");
            // The task's msg_id: a bincode string after the version byte ("msg_" + 27).
            let (id, _): (String, usize) =
                bincode::serde::decode_from_slice(&v[1..], bincode::config::standard())
                    .expect("task");
            let key = [app.text.as_bytes(), &id.as_bytes()[4..]].concat();
            (k.to_vec(), key)
        })
        .collect()
}

/// What a delivery reads: the payload (from the value, or from its segment, checked).
fn read_payload(raw: &mut Raw, msg_key: &[u8]) -> Vec<u8> {
    let tree: &sled::Tree = if raw.v.one_record {
        &raw.db
    } else {
        &raw.t.messages
    };
    let value = tree.get(msg_key).expect("get").expect("message stored");
    match &mut raw.segs {
        Some(segs) => {
            // The reference is the value's last 16 bytes (one) or bincode varints (split).
            let (seg, off, len) = if raw.v.one_record {
                let t = &value[value.len() - 16..];
                (
                    u32::from_be_bytes(t[..4].try_into().unwrap_or_default()),
                    u64::from_be_bytes(t[4..12].try_into().unwrap_or_default()),
                    u32::from_be_bytes(t[12..].try_into().unwrap_or_default()),
                )
            } else {
                decode_ref(&value)
            };
            let key_len = if raw.v.one_record { 40 } else { 54 };
            segs.read(seg, off, len, key_len)
        }
        None => value.to_vec(),
    }
}

/// The payload reference at the end of a bincode `MsgMeta`: three varints.
fn decode_ref(value: &[u8]) -> (u32, u64, u32) {
    #[derive(serde::Deserialize)]
    struct Meta {
        _id: String,
        _app_id: String,
        _event_type: String,
        _event_id: Option<String>,
        _channels: Option<Vec<String>>,
        _tags: Option<Vec<String>>,
        _created_at: i64,
        _destinations: Vec<String>,
        payload_ref: (u32, u64, u32),
    }
    let (m, _): (Meta, usize) =
        bincode::serde::decode_from_slice(&value[1..], bincode::config::standard()).expect("meta");
    m.payload_ref
}

fn deliver_one(
    raw: &mut Raw,
    r: &mut payloads::Rng,
    app: &Id,
    ep: &Id,
    qkey: &[u8],
    msg_key: &[u8],
) {
    let now = now_ms();
    let attempt = make_id(r, now as u64);
    if raw.v.one_record {
        let msg = &msg_key[msg_key.len() - 20..];
        let dest_key = [&[T_DEST][..], &app.bin, &ep.bin, msg].concat();
        // status, updated_at.
        let mut dest = vec![1u8, 1];
        dest.extend_from_slice(&now.to_be_bytes());
        let attempt_key = [&[T_ATTEMPT][..], &app.bin, msg, &attempt.bin].concat();
        // version, status, code, duration, trigger, created_at, endpoint, response (url is the
        // endpoint's).
        let mut a = vec![1u8, 1];
        a.extend_from_slice(&200u16.to_be_bytes());
        a.extend_from_slice(&12u32.to_be_bytes());
        a.push(0);
        a.extend_from_slice(&now.to_be_bytes());
        a.extend_from_slice(&ep.bin);
        a.extend_from_slice(RESPONSE.as_bytes());
        let by_ep = [&[T_BY_EP][..], &app.bin, &ep.bin, &attempt.bin, msg].concat();
        let mut b = sled::Batch::default();
        b.remove(qkey);
        b.insert(dest_key, dest);
        b.insert(attempt_key, a);
        b.insert(by_ep, &[][..]);
        raw.db.apply_batch(b).expect("batch");
        return;
    }
    let msg_text = std::str::from_utf8(&msg_key[27..]).unwrap_or_default();
    let (msg_id, app_id, ep_id, attempt_id) = (
        format!("msg_{msg_text}"),
        format!("app_{}", app.text),
        format!("ep_{}", ep.text),
        format!("atmpt_{}", attempt.text),
    );
    let attempt_key = [
        app.text.as_bytes(),
        msg_text.as_bytes(),
        attempt.text.as_bytes(),
    ]
    .concat();
    let attempt_value = enc(&AttemptValue {
        id: &attempt_id,
        app_id: &app_id,
        msg_id: &msg_id,
        endpoint_id: &ep_id,
        url: URL,
        status: StatusV::Success,
        response_status_code: 200,
        response: RESPONSE,
        duration_ms: 12,
        trigger: TriggerV::Scheduled,
        created_at: now,
    });
    let by_ep_key = [
        app.text.as_bytes(),
        ep.text.as_bytes(),
        attempt.text.as_bytes(),
    ]
    .concat();
    let by_ep_value = enc(&msg_id);
    let dest_key = [app.text.as_bytes(), ep.text.as_bytes(), msg_text.as_bytes()].concat();
    let dest = enc(&DestValue {
        status: StatusV::Success,
        next_attempt: None,
        updated_at: now,
    });
    let t = &raw.t;
    (&t.attempts, &t.by_ep, &t.dests, &t.queue)
        .transaction(|(attempts, by_ep, dests, queue)| {
            attempts.insert(attempt_key.as_slice(), attempt_value.as_slice())?;
            by_ep.insert(by_ep_key.as_slice(), by_ep_value.as_slice())?;
            let _previous = dests.get(dest_key.as_slice())?;
            dests.insert(dest_key.as_slice(), dest.as_slice())?;
            queue.remove(qkey)?;
            Ok::<_, sled::transaction::ConflictableTransactionError<()>>(())
        })
        .expect("delivery transaction");
}
