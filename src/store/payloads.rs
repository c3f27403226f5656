//! The payload log: message payloads kept beside sled rather than in its tree (value separation,
//! as in WiscKey, FAST '16). sled then holds small records only, so its space and write
//! amplification apply to ~100 bytes per message instead of the payload.
//!
//! Files live in `payloads/` of the store's folder, one or more per hour of message creation:
//! `HHHHHHHHHH-NNNN.seg` (hours since the Unix epoch, then a sequence number within the hour).
//! A file still open for appends is named `….open`; it is renamed to `.seg` once finished (the
//! next hour's first message, size rollover, clean shutdown), after an fsync. Each record is
//!
//! ```text
//! magic "HPL1" (4) | payload length u32 BE (4) | CRC-32 (4) | app ksuid (27) | msg ksuid (27) | payload
//! ```
//!
//! The CRC covers the length, the key and the payload, so a torn or flipped record is detected
//! and never served. Appends are sequential under one lock, and a message's sled record is
//! written only once its payload is fsync'd (the payload log has its own group commit, see
//! `Store::create_message`): every reference in sled points at durable bytes. So after a crash,
//! whatever follows the first bad record of an `.open` file was never referenced: it is cut at
//! open. Retention drops whole files (an hour at a time), never rewrites them. Expunging one
//! payload (`remove`) punches a hole where its bytes were, at once: no later compaction is
//! needed for them to leave the file.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use serde::{Deserialize, Serialize};

use super::commit::{GroupCommit, Persist};
use super::StoreError;
use crate::domain::ids::KSUID_LEN;

/// Sub-folder of the store's folder.
pub const DIR: &str = "payloads";
const MAGIC: &[u8; 4] = b"HPL1";
/// The magic of a removed record: its header stays (so a scan steps over it), its payload bytes
/// are gone (a hole punched in the file).
const REMOVED: &[u8; 4] = b"HPL0";
const KEY_LEN: usize = 2 * KSUID_LEN;
/// Bytes before the payload.
pub const HEADER_LEN: usize = 12 + KEY_LEN;
/// A file takes no more appends past this size: startup scans at most one such file per hour
/// that was open, and retention frees space in steps of at most this.
const ROLL_AT: u64 = 64 * 1024 * 1024;
/// Most files kept open for reading at once (each read opens its file if needed).
const MAX_READERS: usize = 256;
const MS_PER_HOUR: i64 = 3_600_000;
/// See `drop_before`.
const ID_TIME_MARGIN_MS: i64 = 120_000;

/// Where a payload is: stored in the message's sled record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayloadRef {
    pub segment: u64,
    pub offset: u64,
    pub len: u32,
}

/// A segment's id: its hour and its number within the hour.
fn segment_id(hour: u32, n: u16) -> u64 {
    (u64::from(hour) << 16) | u64::from(n)
}

fn hour_of(id: u64) -> u32 {
    (id >> 16) as u32
}

fn file_name(id: u64, open: bool) -> String {
    format!(
        "{:010}-{:04}.{}",
        hour_of(id),
        id & 0xffff,
        if open { "open" } else { "seg" }
    )
}

/// The id of a segment file name, and whether it is still open.
fn parse_name(name: &str) -> Option<(u64, bool)> {
    let (stem, ext) = name.rsplit_once('.')?;
    let open = match ext {
        "open" => true,
        "seg" => false,
        _ => return None,
    };
    let (h, n) = stem.split_once('-')?;
    Some((segment_id(h.parse().ok()?, n.parse().ok()?), open))
}

fn crc(len: u32, key: &[u8], payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&len.to_be_bytes());
    h.update(key);
    h.update(payload);
    h.finalize()
}

/// One record, as written.
fn encode(key: &[u8], payload: &[u8]) -> Result<Vec<u8>, StoreError> {
    let len =
        u32::try_from(payload.len()).map_err(|_| StoreError::Codec("payload over 4 GiB".into()))?;
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&crc(len, key, payload).to_be_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(payload);
    Ok(out)
}

/// A record read back from a file, checked.
#[derive(Debug)]
pub struct Record {
    pub offset: u64,
    pub key: [u8; KEY_LEN],
    pub len: u32,
    /// Its payload was removed (expunged or dropped as an orphan): only the header is left.
    pub removed: bool,
}

impl Record {
    /// Where the next record starts.
    pub fn end(&self) -> u64 {
        self.offset + HEADER_LEN as u64 + u64::from(self.len)
    }
}

/// Why a record at some offset is not a good record.
#[derive(Debug)]
pub enum Bad {
    /// The file ends inside it.
    Truncated,
    /// No record header here (wrong magic): nothing after it can be found.
    Corrupt,
    /// A well-formed header whose checksum does not match: this record is lost, the next one
    /// starts after it.
    Damaged(Record),
}

/// A record read at an offset: none at the end of the file, or the record (with its payload if
/// asked), or why there is no good record there.
type ReadResult = Result<Option<(Record, Vec<u8>)>, Bad>;

/// Read the record at `offset` of `file` (of length `file_len`); `Ok(None)` at the end.
fn read_record(
    file: &File,
    offset: u64,
    file_len: u64,
    with_payload: bool,
) -> io::Result<ReadResult> {
    if offset == file_len {
        return Ok(Ok(None));
    }
    if offset + HEADER_LEN as u64 > file_len {
        return Ok(Err(Bad::Truncated));
    }
    let mut head = [0u8; HEADER_LEN];
    file.read_exact_at(&mut head, offset)?;
    let removed = match &head[..4] {
        m if m == MAGIC => false,
        m if m == REMOVED => true,
        _ => return Ok(Err(Bad::Corrupt)),
    };
    let len = u32::from_be_bytes([head[4], head[5], head[6], head[7]]);
    let sum = u32::from_be_bytes([head[8], head[9], head[10], head[11]]);
    if offset + HEADER_LEN as u64 + u64::from(len) > file_len {
        return Ok(Err(Bad::Truncated));
    }
    let mut key = [0u8; KEY_LEN];
    key.copy_from_slice(&head[12..]);
    let record = Record {
        offset,
        key,
        len,
        removed,
    };
    if removed {
        return Ok(Ok(Some((record, Vec::new()))));
    }
    let mut payload = vec![0u8; len as usize];
    file.read_exact_at(&mut payload, offset + HEADER_LEN as u64)?;
    if crc(len, &key, &payload) != sum {
        return Ok(Err(Bad::Damaged(record)));
    }
    if !with_payload {
        payload = Vec::new();
    }
    Ok(Ok(Some((record, payload))))
}

/// What a full check of one file finds: good records, damaged ones (stepped over), and where a
/// walk had to stop (a torn or unreadable tail).
#[derive(Debug, Default)]
pub struct FileScan {
    pub records: Vec<Record>,
    pub damaged: Vec<Record>,
    pub stop: Option<(u64, &'static str)>,
    pub len: u64,
}

/// Walk every record of a file, stepping over damaged ones (for `herald check`).
pub fn check_file(path: &Path) -> io::Result<FileScan> {
    let file = File::open(path)?;
    let mut out = FileScan {
        len: file.metadata()?.len(),
        ..FileScan::default()
    };
    let mut at = 0u64;
    loop {
        match read_record(&file, at, out.len, false)? {
            Ok(None) => return Ok(out),
            Ok(Some((r, _))) => {
                at = r.end();
                out.records.push(r);
            }
            Err(Bad::Damaged(r)) => {
                at = r.end();
                out.damaged.push(r);
            }
            Err(Bad::Truncated) => {
                out.stop = Some((at, "the file ends inside a record"));
                return Ok(out);
            }
            Err(Bad::Corrupt) => {
                out.stop = Some((at, "no record header"));
                return Ok(out);
            }
        }
    }
}

/// Remove one record's payload in place: its header is marked removed and the payload's bytes
/// are released (a hole punched in the file; the kernel zeroes what it cannot release). The
/// file is fsync'd before return.
pub fn remove_record(path: &Path, offset: u64, len: u32) -> Result<(), StoreError> {
    let file = OpenOptions::new().read(true).write(true).open(path)?;
    file.write_all_at(REMOVED, offset)?;
    if len > 0 {
        use rustix::fs::{fallocate, FallocateFlags};
        let at = offset + HEADER_LEN as u64;
        if fallocate(
            &file,
            FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE,
            at,
            u64::from(len),
        )
        .is_err()
        {
            // A file system without hole punching: overwrite instead.
            file.write_all_at(&vec![0u8; len as usize], at)?;
        }
    }
    file.sync_data()?;
    Ok(())
}

/// A file taking appends.
struct Active {
    id: u64,
    file: Arc<File>,
    len: u64,
}

struct Files {
    /// The file taking appends for each hour that has one.
    active: HashMap<u32, Active>,
    /// The next number for a new file of each hour (covers every file on disk).
    next_n: HashMap<u32, u16>,
    /// Open handles for reading, by id.
    readers: BTreeMap<u64, Arc<File>>,
}

struct Shared {
    dir: PathBuf,
    files: Mutex<Files>,
    /// Files appended to since the last commit round.
    dirty: Mutex<HashMap<u64, Arc<File>>>,
    /// Held shared while a backup copies files and alone while retention removes one, so a copy
    /// never meets a file vanishing under it.
    removal: RwLock<()>,
}

/// The payload log of one store.
pub struct PayloadLog {
    shared: Arc<Shared>,
    commit: GroupCommit,
}

/// What opening found and did.
#[derive(Debug, Default, Clone)]
pub struct OpenReport {
    pub files: usize,
    /// Bytes cut from the ends of files left open by a crash.
    pub cut_bytes: u64,
}

struct SyncDirty(Arc<Shared>);

impl Persist for SyncDirty {
    fn flush(&self) -> io::Result<()> {
        Ok(())
    }

    fn fsync(&self) -> io::Result<()> {
        sync_dirty(&self.0)
    }

    fn name(&self) -> &'static str {
        "payload log"
    }
}

/// fsync every file appended to since the last call.
fn sync_dirty(s: &Shared) -> io::Result<()> {
    let files: Vec<Arc<File>> = {
        let mut d = s.dirty.lock().unwrap_or_else(|e| e.into_inner());
        d.drain().map(|(_, f)| f).collect()
    };
    for f in files {
        f.sync_data()?;
    }
    Ok(())
}

impl PayloadLog {
    /// Open the log in `store_dir/payloads`, made if missing. Files left open by a crash are cut
    /// after their last good record and finished (renamed to `.seg`).
    pub fn open(store_dir: &Path) -> Result<(PayloadLog, OpenReport), StoreError> {
        let dir = store_dir.join(DIR);
        crate::fsio::create_dir_all(&dir)?;
        let mut report = OpenReport::default();
        let mut next_n: HashMap<u32, u16> = HashMap::new();
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some((id, open)) = name.to_str().and_then(parse_name) else {
                continue;
            };
            report.files += 1;
            let n = next_n.entry(hour_of(id)).or_default();
            *n = (*n).max(((id & 0xffff) as u16).saturating_add(1));
            if open {
                report.cut_bytes += finish_after_crash(&dir, id)?;
            }
        }
        crate::fsio::sync_dir(&dir)?;
        let shared = Arc::new(Shared {
            dir,
            files: Mutex::new(Files {
                active: HashMap::new(),
                next_n,
                readers: BTreeMap::new(),
            }),
            dirty: Mutex::new(HashMap::new()),
            removal: RwLock::new(()),
        });
        let commit = GroupCommit::start_with(SyncDirty(shared.clone()))?;
        if report.cut_bytes > 0 {
            tracing::warn!(
                bytes = report.cut_bytes,
                "payload log: cut an unfinished tail left by a crash (never acknowledged)"
            );
        }
        Ok((PayloadLog { shared, commit }, report))
    }

    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// Append the payload of message `key` (app ksuid ‖ msg ksuid) created at `created_ms`, to
    /// the file of its hour. Not durable until [`PayloadLog::durable`].
    pub fn append(
        &self,
        key: &[u8],
        created_ms: i64,
        payload: &[u8],
    ) -> Result<PayloadRef, StoreError> {
        if key.len() != KEY_LEN {
            return Err(StoreError::Codec("bad payload key".into()));
        }
        let record = encode(key, payload)?;
        let hour = u32::try_from(created_ms.max(0) / MS_PER_HOUR).unwrap_or(u32::MAX);
        let s = &self.shared;
        let mut files = s.files.lock().unwrap_or_else(|e| e.into_inner());
        let needs_new = match files.active.get(&hour) {
            Some(a) => a.len > 0 && a.len + record.len() as u64 > ROLL_AT,
            None => true,
        };
        if needs_new {
            if let Some(old) = files.active.remove(&hour) {
                self.finish(&mut files, old)?;
            }
            // Hours long gone take no more appends (a late message opens a new file there).
            let stale: Vec<u32> = files
                .active
                .keys()
                .copied()
                .filter(|h| h.saturating_add(1) < hour)
                .collect();
            for h in stale {
                if let Some(old) = files.active.remove(&h) {
                    self.finish(&mut files, old)?;
                }
            }
            let n = files.next_n.entry(hour).or_default();
            let id = segment_id(hour, *n);
            *n = n.saturating_add(1);
            let file = Arc::new(
                OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(s.dir.join(file_name(id, true)))?,
            );
            crate::fsio::sync_dir(&s.dir)?;
            files.readers.insert(id, file.clone());
            files.active.insert(hour, Active { id, file, len: 0 });
        }
        let Some(active) = files.active.get_mut(&hour) else {
            return Err(StoreError::Codec("payload log lost its file".into()));
        };
        let offset = active.len;
        if let Err(e) = active.file.write_all_at(&record, offset) {
            // Nothing may follow a partial record: take it back, or stop appending to this file
            // (an open file is cut after its last good record at the next start).
            if active.file.set_len(offset).is_err() {
                files.active.remove(&hour);
            }
            return Err(e.into());
        }
        active.len += record.len() as u64;
        let (id, file) = (active.id, active.file.clone());
        drop(files);
        s.dirty
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, file);
        Ok(PayloadRef {
            segment: id,
            offset,
            len: payload.len() as u32,
        })
    }

    /// Wait until every payload appended by this task is on disk.
    pub async fn durable(&self) -> Result<(), StoreError> {
        self.commit.wait().await
    }

    /// Make every payload appended so far durable, on this thread (for offline work, such as an
    /// upgrade, with no async writers).
    pub fn sync_now(&self) -> Result<(), StoreError> {
        Ok(sync_dirty(&self.shared)?)
    }

    /// Why payload commits fail now, if they do.
    pub fn failure(&self) -> Option<super::commit::Failure> {
        self.commit.failure()
    }

    /// Read and check the payload at `r`, written for message `key`.
    pub fn read(&self, r: &PayloadRef, key: &[u8]) -> Result<Vec<u8>, StoreError> {
        let file = self.reader(r.segment)?;
        let file_len = file.metadata()?.len();
        match read_record(&file, r.offset, file_len, true)? {
            Ok(Some((rec, _))) if rec.removed => Err(StoreError::Codec(format!(
                "payload at {}:{} was removed",
                file_name(r.segment, false),
                r.offset
            ))),
            Ok(Some((rec, payload))) if rec.key == key && rec.len == r.len => Ok(payload),
            Ok(Some(_)) => Err(StoreError::Codec(format!(
                "payload at {}:{} belongs to another message",
                file_name(r.segment, false),
                r.offset
            ))),
            Ok(None) | Err(_) => Err(StoreError::Codec(format!(
                "payload at {}:{} is damaged (checksum or length)",
                file_name(r.segment, false),
                r.offset
            ))),
        }
    }

    /// Expunge the payload at `r`, written for `key`: its bytes leave the file at once (a hole
    /// punched, or zeros written where the file system cannot punch), fsync'd before return, and
    /// the record is marked removed. False when the record there is not `key`'s (already removed,
    /// or its file dropped by retention): nothing is touched.
    pub fn remove(&self, r: &PayloadRef, key: &[u8]) -> Result<bool, StoreError> {
        let dir = &self.shared.dir;
        // A file may be renamed from `.open` to `.seg` (finished) at any moment: try both names.
        for open in [false, true, false] {
            let path = dir.join(file_name(r.segment, open));
            let file = match File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e.into()),
            };
            let len = file.metadata()?.len();
            return match read_record(&file, r.offset, len, false)? {
                Ok(Some((rec, _))) if !rec.removed && rec.key == key && rec.len == r.len => {
                    remove_record(&path, r.offset, r.len)?;
                    Ok(true)
                }
                _ => Ok(false),
            };
        }
        Ok(false)
    }

    fn reader(&self, id: u64) -> Result<Arc<File>, StoreError> {
        let mut files = self.shared.files.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = files.readers.get(&id) {
            return Ok(f.clone());
        }
        let dir = &self.shared.dir;
        let file = match File::open(dir.join(file_name(id, false))) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                File::open(dir.join(file_name(id, true)))
            }
            other => other,
        }
        .map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => {
                StoreError::Codec(format!("payload file {} is missing", file_name(id, false)))
            }
            _ => StoreError::Io(e),
        })?;
        if files.readers.len() >= MAX_READERS {
            let active: Vec<u64> = files.active.values().map(|a| a.id).collect();
            files.readers.retain(|id, _| active.contains(id));
        }
        let file = Arc::new(file);
        files.readers.insert(id, file.clone());
        Ok(file)
    }

    /// fsync a finished file and rename it to `.seg`.
    fn finish(&self, files: &mut Files, a: Active) -> Result<(), StoreError> {
        a.file.sync_data()?;
        let dir = &self.shared.dir;
        fs::rename(
            dir.join(file_name(a.id, true)),
            dir.join(file_name(a.id, false)),
        )?;
        crate::fsio::sync_dir(dir)?;
        files.readers.insert(a.id, a.file);
        Ok(())
    }

    /// Finish every open file (at shutdown).
    pub fn close(&self) -> Result<(), StoreError> {
        let mut files = self.shared.files.lock().unwrap_or_else(|e| e.into_inner());
        let all: Vec<Active> = files.active.drain().map(|(_, a)| a).collect();
        for a in all {
            self.finish(&mut files, a)?;
        }
        drop(files);
        self.commit.stop();
        Ok(())
    }

    /// Remove every file of the hours that ended at or before `cutoff_ms` (their messages are
    /// all older than the cutoff). Returns (files, bytes) removed. The caller removes the
    /// messages' sled records first, so no reference outlives its bytes.
    pub fn drop_before(&self, cutoff_ms: i64) -> Result<(usize, u64), StoreError> {
        // A payload's file is the hour of its message's `created_at`, while retention selects
        // records by id, whose time may differ by a moment (the clock is read for each): keep a
        // margin, so a record just past the cutoff never outlives its payload.
        let last_hour_gone = (cutoff_ms - ID_TIME_MARGIN_MS).div_euclid(MS_PER_HOUR) - 1;
        let mut removed = (0, 0);
        for (id, _, path) in self.list()? {
            if i64::from(hour_of(id)) > last_hour_gone {
                continue;
            }
            let _alone = self
                .shared
                .removal
                .write()
                .unwrap_or_else(|e| e.into_inner());
            {
                let mut files = self.shared.files.lock().unwrap_or_else(|e| e.into_inner());
                if files.active.get(&hour_of(id)).is_some_and(|a| a.id == id) {
                    files.active.remove(&hour_of(id));
                }
                files.readers.remove(&id);
            }
            let size = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            match fs::remove_file(&path) {
                Ok(()) => {
                    removed.0 += 1;
                    removed.1 += size;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
        if removed.0 > 0 {
            crate::fsio::sync_dir(&self.shared.dir)?;
        }
        Ok(removed)
    }

    /// Every file: id, whether still open, path; in id order.
    pub fn list(&self) -> Result<Vec<(u64, bool, PathBuf)>, StoreError> {
        list_dir(&self.shared.dir)
    }

    /// Bytes the files take on disk (allocated blocks).
    pub fn disk_bytes(&self) -> u64 {
        self.list()
            .unwrap_or_default()
            .iter()
            .filter_map(|(_, _, p)| fs::metadata(p).ok())
            .map(|m| std::os::unix::fs::MetadataExt::blocks(&m) * 512)
            .sum()
    }

    /// Copy every file into `dest_store_dir/payloads`, each up to its length now; files are
    /// append-only, so the copy holds every payload referenced before the call. Files cannot be
    /// removed meanwhile.
    pub fn copy_to(&self, dest_store_dir: &Path) -> Result<u64, StoreError> {
        let _no_removal = self
            .shared
            .removal
            .read()
            .unwrap_or_else(|e| e.into_inner());
        let dest = dest_store_dir.join(DIR);
        crate::fsio::create_dir_all(&dest)?;
        // A file still taking appends keeps its `.open` name in the copy: its end may be a
        // record being written, which the copy cuts when it is opened.
        let lengths: Vec<(PathBuf, String, u64)> = self
            .list()?
            .into_iter()
            .map(|(id, open, p)| {
                let len = fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
                (p, file_name(id, open), len)
            })
            .collect();
        let mut copied = 0;
        for (path, name, len) in lengths {
            // A file finished since it was listed has been renamed from `.open` to `.seg`.
            let mut from = match File::open(&path) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    File::open(path.with_extension("seg"))?
                }
                other => other?,
            };
            let to = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(dest.join(name))?;
            let mut limited = io::Read::take(&mut from, len);
            let mut w = io::BufWriter::new(&to);
            copied += io::copy(&mut limited, &mut w)?;
            drop(w);
            to.sync_data()?;
        }
        crate::fsio::sync_dir(&dest)?;
        Ok(copied)
    }
}

/// The segment files in `dir`, in id order.
pub fn list_dir(dir: &Path) -> Result<Vec<(u64, bool, PathBuf)>, StoreError> {
    let mut out = Vec::new();
    let entries = match fs::read_dir(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        other => other?,
    };
    for entry in entries {
        let entry = entry?;
        if let Some((id, open)) = entry.file_name().to_str().and_then(parse_name) {
            out.push((id, open, entry.path()));
        }
    }
    out.sort_by_key(|(id, _, _)| *id);
    Ok(out)
}

/// The file name of a segment (for reports).
pub fn name_of(id: u64) -> String {
    file_name(id, false)
}

/// Cut an open file left by a crash after its last good record, fsync it and rename it to
/// `.seg`. Returns the bytes cut.
fn finish_after_crash(dir: &Path, id: u64) -> Result<u64, StoreError> {
    let path = dir.join(file_name(id, true));
    let cut = cut_torn_tail(&path)?;
    fs::rename(&path, dir.join(file_name(id, false)))?;
    Ok(cut)
}

/// Truncate the file after its last good record (fsync'd). Returns the bytes removed. A damaged
/// record with good ones after it stays (bit rot, not a torn write: `herald check` reports it);
/// only what follows the last good record goes.
pub fn cut_torn_tail(path: &Path) -> Result<u64, StoreError> {
    let scan = check_file(path)?;
    let keep = scan.records.last().map_or(0, Record::end);
    if keep >= scan.len {
        return Ok(0);
    }
    let file = OpenOptions::new().write(true).open(path)?;
    file.set_len(keep)?;
    file.sync_all()?;
    Ok(scan.len - keep)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> Vec<u8> {
        vec![b'a' + n % 26; KEY_LEN]
    }

    #[tokio::test]
    async fn payloads_round_trip_and_a_flipped_byte_is_never_served() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = PayloadLog::open(dir.path()).unwrap();
        let now = 1_800_000_000_000;
        let a = log.append(&key(0), now, b"{\"a\":1}").unwrap();
        let b = log.append(&key(1), now, b"{\"b\":2}").unwrap();
        log.durable().await.unwrap();
        assert_eq!(log.read(&a, &key(0)).unwrap(), b"{\"a\":1}");
        assert_eq!(log.read(&b, &key(1)).unwrap(), b"{\"b\":2}");
        assert!(
            log.read(&b, &key(0)).is_err(),
            "a record answers only its own key"
        );
        let (_, _, path) = log.list().unwrap().pop().unwrap();
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.write_all_at(b"X", b.offset + HEADER_LEN as u64 + 2)
            .unwrap();
        assert!(matches!(log.read(&b, &key(1)), Err(StoreError::Codec(_))));
        assert_eq!(log.read(&a, &key(0)).unwrap(), b"{\"a\":1}");
    }

    #[tokio::test]
    async fn a_torn_tail_is_cut_at_open_and_the_good_records_stay() {
        let dir = tempfile::tempdir().unwrap();
        let now = 1_800_000_000_000;
        let (a, path) = {
            let (log, _) = PayloadLog::open(dir.path()).unwrap();
            let a = log.append(&key(0), now, b"{\"a\":1}").unwrap();
            log.append(&key(1), now, &[b'x'; 100]).unwrap();
            log.durable().await.unwrap();
            let (_, open, path) = log.list().unwrap().pop().unwrap();
            assert!(open);
            // A crash: no close, and the second record loses its end.
            std::mem::forget(log);
            (a, path)
        };
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        let len = f.metadata().unwrap().len();
        f.set_len(len - 10).unwrap();
        let (log, report) = PayloadLog::open(dir.path()).unwrap();
        assert_eq!(
            report.cut_bytes,
            (HEADER_LEN + 100 - 10) as u64,
            "{report:?}"
        );
        let files = log.list().unwrap();
        assert_eq!(files.len(), 1);
        assert!(!files[0].1, "finished after the cut");
        assert_eq!(log.read(&a, &key(0)).unwrap(), b"{\"a\":1}");
        // Appends go to a new file of the hour, never after the cut one.
        let c = log.append(&key(2), now, b"{}").unwrap();
        assert_ne!(c.segment, a.segment);
        log.durable().await.unwrap();
        assert_eq!(log.read(&c, &key(2)).unwrap(), b"{}");
    }

    #[tokio::test]
    async fn hours_are_files_and_retention_drops_whole_hours() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = PayloadLog::open(dir.path()).unwrap();
        let h = 500_000i64 * MS_PER_HOUR;
        let old = log.append(&key(0), h + 10, b"{}").unwrap();
        let mid = log.append(&key(1), h + MS_PER_HOUR + 5, b"{}").unwrap();
        let new = log.append(&key(2), h + 2 * MS_PER_HOUR, b"{}").unwrap();
        log.durable().await.unwrap();
        assert_eq!(log.list().unwrap().len(), 3);
        // Just past the end of the first hour: kept, for the margin between ids and times.
        assert_eq!(log.drop_before(h + MS_PER_HOUR + 100).unwrap().0, 0);
        // The cutoff falls inside the middle hour: only the first hour is wholly older.
        let (files, bytes) = log
            .drop_before(h + MS_PER_HOUR + ID_TIME_MARGIN_MS + 100)
            .unwrap();
        assert_eq!(files, 1);
        assert!(bytes > 0);
        assert!(log.read(&old, &key(0)).is_err());
        assert!(log.read(&mid, &key(1)).is_ok());
        assert!(log.read(&new, &key(2)).is_ok());
        log.close().unwrap();
        assert!(log.list().unwrap().iter().all(|(_, open, _)| !open));
    }

    #[test]
    fn names_round_trip() {
        let id = segment_id(493_234, 7);
        assert_eq!(file_name(id, true), "0000493234-0007.open");
        assert_eq!(parse_name(&file_name(id, true)), Some((id, true)));
        assert_eq!(parse_name(&file_name(id, false)), Some((id, false)));
        assert_eq!(parse_name("0000493234-0007.tmp"), None);
    }
}
