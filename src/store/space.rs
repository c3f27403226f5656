//! Free disk space for the store: a cached `statvfs` reading of the store's file system, the
//! reserve below which writes are refused, and the emergency ballast. sled 0.34 stops for good at
//! its first failed write (it keeps a global error until reopened), so the store refuses writes
//! *before* the file system is full instead of meeting ENOSPC. Owns the count of refused writes
//! and their log line, at most one a minute.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::StoreError;

/// What a write is, for the reserve. New records are refused first; the progress of deliveries
/// already accepted may use half of the reserve, so accepted work can still be recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteKind {
    /// A new message, application, endpoint, event type or token.
    Create,
    /// The outcome of a try of an accepted message (attempt, task moved or removed).
    Progress,
}

/// The emergency ballast, in the data directory.
pub const BALLAST_FILE: &str = "reserve.ballast";

/// A reading is reused this long while space is plentiful (at least twice the reserve) ...
const FRESH_PLENTY: Duration = Duration::from_secs(1);
/// ... and this long near or under the reserve, so writes resume soon after space is freed.
const FRESH_LOW: Duration = Duration::from_millis(100);
/// At most one "refusing writes" line per this period.
const LOG_EVERY: Duration = Duration::from_secs(60);
/// What sled may write when it opens (the rest of its last 512 KiB segment, a small snapshot):
/// below this, opening releases the ballast whatever the reserve.
const OPEN_NEEDS: u64 = 2 * 1024 * 1024;

const MIB: u64 = 1024 * 1024;

/// The store's disk, for health and metrics.
#[derive(Debug, Clone, Default)]
pub struct StorageStatus {
    /// Bytes available to Herald on the store's file system (`None` if it cannot be read).
    pub free_bytes: Option<u64>,
    /// `store.min_free_mb` in bytes.
    pub min_free_bytes: u64,
    /// Free space is under the reserve: new records are refused.
    pub below_reserve: bool,
    /// Writes refused for lack of space since start.
    pub refused_writes: u64,
    /// Why the store cannot make writes durable, if it cannot.
    pub commit_failure: Option<String>,
    /// Only a restart of Herald clears `commit_failure`.
    pub restart_required: bool,
    /// A write met a full file system (ENOSPC, EDQUOT) and none has succeeded since, nor has
    /// space come back.
    pub disk_full: bool,
}

impl StorageStatus {
    /// The store cannot accept new records now.
    pub fn degraded(&self) -> bool {
        self.below_reserve || self.commit_failure.is_some() || self.disk_full
    }
}

#[derive(Debug, Clone, Copy)]
struct Reading {
    at: Instant,
    free: Option<u64>,
}

#[derive(Default)]
struct LogState {
    last: Option<Instant>,
    /// Refusals since the last line.
    since: u64,
    /// A refusal was logged and no "writes resume" line followed yet.
    open: bool,
}

pub struct Space {
    /// Where sled writes (statvfs target).
    dir: PathBuf,
    ballast: PathBuf,
    min_free: u64,
    ballast_bytes: u64,
    reading: Mutex<Option<Reading>>,
    refused: AtomicU64,
    log: Mutex<LogState>,
    statvfs_warned: AtomicBool,
    /// See `StorageStatus::disk_full`.
    full: AtomicBool,
}

/// May a write of `kind` go ahead with `free` bytes left and a reserve of `min_free`?
fn allowed(free: u64, min_free: u64, kind: WriteKind) -> bool {
    match kind {
        WriteKind::Create => free >= min_free,
        WriteKind::Progress => free >= min_free / 2,
    }
}

impl Space {
    pub fn new(data_dir: &Path, store_dir: PathBuf, min_free: u64, ballast_bytes: u64) -> Space {
        Space {
            dir: store_dir,
            ballast: data_dir.join(BALLAST_FILE),
            min_free,
            ballast_bytes,
            reading: Mutex::new(None),
            refused: AtomicU64::new(0),
            log: Mutex::new(LogState::default()),
            statvfs_warned: AtomicBool::new(false),
            full: AtomicBool::new(false),
        }
    }

    /// Bytes available, from a reading at most [`FRESH_PLENTY`] or [`FRESH_LOW`] old.
    pub fn free(&self) -> Option<u64> {
        let mut r = self.reading.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(last) = *r {
            let ttl = match last.free {
                Some(f) if f >= self.min_free.saturating_mul(2) => FRESH_PLENTY,
                _ => FRESH_LOW,
            };
            if last.at.elapsed() < ttl {
                return last.free;
            }
        }
        let free = self.read_now();
        *r = Some(Reading {
            at: Instant::now(),
            free,
        });
        free
    }

    fn read_now(&self) -> Option<u64> {
        match rustix::fs::statvfs(&self.dir) {
            Ok(s) => Some(s.f_bavail.saturating_mul(s.f_frsize)),
            Err(e) => {
                // Unknown space must not stop writes: the engine's own ENOSPC is still mapped.
                if !self.statvfs_warned.swap(true, Ordering::Relaxed) {
                    tracing::warn!(error = %e, dir = %self.dir.display(), "cannot read free disk space");
                }
                None
            }
        }
    }

    /// Forget the cached reading (after the ballast changed).
    fn invalidate(&self) {
        *self.reading.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// `Ok` if a write of `kind` fits above the reserve, else a counted, logged `NoSpace`.
    pub fn check(&self, kind: WriteKind) -> Result<(), StoreError> {
        if self.min_free == 0 {
            return Ok(());
        }
        match self.free() {
            Some(free) if !allowed(free, self.min_free, kind) => Err(self.refuse(format!(
                "{} MiB free on the data directory's file system, under the reserve of {} MiB (store.min_free_mb)",
                free / MIB,
                self.min_free / MIB
            ))),
            _ => Ok(()),
        }
    }

    /// Count a write refused for lack of space and log it (at most once a minute, with the number
    /// refused since the last line); returns the error to hand back.
    pub fn refuse(&self, why: String) -> StoreError {
        self.refused.fetch_add(1, Ordering::Relaxed);
        let mut l = self.log.lock().unwrap_or_else(|e| e.into_inner());
        l.since += 1;
        if l.last.is_none_or(|t| t.elapsed() >= LOG_EVERY) {
            tracing::warn!(
                refused = l.since,
                reason = %why,
                "refusing writes for lack of disk space (507) until space is freed; logged at most once a minute"
            );
            l.last = Some(Instant::now());
            l.since = 0;
            l.open = true;
        }
        StoreError::NoSpace(why)
    }

    /// Log once that writes go through again, if their refusal was logged.
    /// A write met ENOSPC or EDQUOT: counted and logged as a refusal, and readiness says so
    /// until a write succeeds or space comes back.
    pub fn met_full_disk(&self, e: &StoreError) -> StoreError {
        self.full.store(true, Ordering::Relaxed);
        self.invalidate();
        self.refuse(format!("the file system is full ({e})"))
    }

    /// A write went through: the disk is not full.
    pub fn note_written(&self) {
        if self.full.load(Ordering::Relaxed) {
            self.full.store(false, Ordering::Relaxed);
        }
    }

    pub fn note_resumed(&self) {
        let mut l = self.log.lock().unwrap_or_else(|e| e.into_inner());
        if l.open {
            tracing::info!("disk space is back above the reserve: accepting writes again");
            l.open = false;
        }
    }

    pub fn below_reserve(&self) -> bool {
        self.min_free > 0
            && self
                .free()
                .is_some_and(|f| !allowed(f, self.min_free, WriteKind::Create))
    }

    /// The figures for health and metrics (the commit fields are the store's to fill).
    pub fn status(&self) -> StorageStatus {
        let free = self.free();
        StorageStatus {
            free_bytes: free,
            min_free_bytes: self.min_free,
            below_reserve: self.below_reserve(),
            refused_writes: self.refused.load(Ordering::Relaxed),
            commit_failure: None,
            restart_required: false,
            disk_full: self.full.load(Ordering::Relaxed),
        }
    }

    /// Before sled opens: on a nearly full disk, give the ballast's space back so that sled's
    /// start-up writes fit (it rewrites the tail of its last segment and may write a snapshot).
    pub fn before_open(&self) {
        if let Some(free) = self.read_now() {
            if free < OPEN_NEEDS.max(self.min_free / 2) {
                self.release_ballast(free);
            }
        }
        self.invalidate();
    }

    /// Periodic care: release the ballast when free space falls under half the reserve (so the
    /// engine's own writes fit); make it again once there is room for it and the reserve twice.
    /// Blocking (file I/O).
    pub fn maintain(&self) {
        let Some(free) = self.read_now() else { return };
        if free >= OPEN_NEEDS {
            self.note_written();
        }
        let present = fs::metadata(&self.ballast).map_or(0, |m| m.len());
        if present > 0 && (free < self.min_free / 2 || self.ballast_bytes == 0) {
            self.release_ballast(free);
        } else if self.ballast_bytes > 0
            && present < self.ballast_bytes
            && free.saturating_add(present)
                >= self
                    .min_free
                    .saturating_add(self.ballast_bytes.saturating_mul(2))
        {
            match make_ballast(&self.ballast, self.ballast_bytes) {
                Ok(()) => tracing::info!(
                    path = %self.ballast.display(),
                    mib = self.ballast_bytes / MIB,
                    "emergency ballast in place (released when the disk fills, so Herald can start)"
                ),
                Err(e) => tracing::warn!(error = %e, "cannot make the emergency ballast"),
            }
        } else {
            return;
        }
        self.invalidate();
    }

    fn release_ballast(&self, free: u64) {
        match fs::remove_file(&self.ballast) {
            Ok(()) => tracing::warn!(
                free_mib = free / MIB,
                "disk almost full: released the emergency ballast ({})",
                self.ballast.display()
            ),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(error = %e, "cannot release the emergency ballast"),
        }
    }
}

/// Write a file of `len` bytes whose blocks are really allocated: `fallocate`, or zeros where
/// the file system cannot. Its content never matters, so a torn one is simply made again.
fn make_ballast(path: &Path, len: u64) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    let made = (|| {
        let mut f = File::create(&tmp)?;
        match rustix::fs::fallocate(&f, rustix::fs::FallocateFlags::empty(), 0, len) {
            Ok(()) => {}
            Err(e) if e == rustix::io::Errno::OPNOTSUPP => {
                let zeros = vec![0u8; MIB as usize];
                let mut left = len;
                while left > 0 {
                    let n = left.min(MIB) as usize;
                    f.write_all(&zeros[..n])?;
                    left -= n as u64;
                }
            }
            Err(e) => return Err(e.into()),
        }
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if made.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    made
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_may_use_half_the_reserve_and_new_records_none() {
        let mib = |n: u64| n * MIB;
        assert!(allowed(mib(100), mib(100), WriteKind::Create));
        assert!(!allowed(mib(99), mib(100), WriteKind::Create));
        assert!(allowed(mib(99), mib(100), WriteKind::Progress));
        assert!(allowed(mib(50), mib(100), WriteKind::Progress));
        assert!(!allowed(mib(49), mib(100), WriteKind::Progress));
    }

    #[test]
    fn refusals_are_counted_and_a_reserve_of_zero_refuses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let none = Space::new(dir.path(), dir.path().into(), 0, 0);
        assert!(none.check(WriteKind::Create).is_ok());
        // No file system has this much free.
        let huge = Space::new(dir.path(), dir.path().into(), u64::MAX / 4, 0);
        for _ in 0..3 {
            assert!(matches!(
                huge.check(WriteKind::Create),
                Err(StoreError::NoSpace(_))
            ));
        }
        let s = huge.status();
        assert!(s.below_reserve && s.degraded());
        assert_eq!(s.refused_writes, 3);
        assert!(s.free_bytes.is_some_and(|f| f > 0));
    }

    #[test]
    fn the_ballast_is_made_when_there_is_room_and_released_when_space_is_short() {
        let dir = tempfile::tempdir().unwrap();
        let ballast = dir.path().join(BALLAST_FILE);
        let roomy = Space::new(dir.path(), dir.path().into(), MIB, MIB);
        roomy.maintain();
        assert_eq!(fs::metadata(&ballast).unwrap().len(), MIB);
        // The same directory seen with a reserve no disk can meet: space is short.
        let short = Space::new(dir.path(), dir.path().into(), u64::MAX / 4, MIB);
        short.maintain();
        assert!(!ballast.exists());
        roomy.maintain();
        assert!(ballast.exists());
        short.before_open();
        assert!(!ballast.exists());
    }
}
