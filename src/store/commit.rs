//! Group commit: one OS thread makes writes durable (`sled::Db::flush` then `fsync` of the db file,
//! since sled's flush alone does not fsync), and every writer waiting at that moment shares the one
//! fsync. Writers take a sequence number after writing and wait until the published durable number
//! reaches it. (`flush_async` is avoided: it deadlocks with many concurrent callers.)
//!
//! When a round fails, its waiters get an error, and so does every later writer, by this rule:
//! - a failed **fsync** is sticky until restart: after failed write-back the kernel may have marked
//!   the dirty pages clean (dropping them) and reports the error once, so a later fsync that
//!   succeeds would promise data that is gone;
//! - a failed **flush** for lack of space (ENOSPC, EDQUOT) is not: a failed write(2) hands nothing
//!   to the kernel, and sled's stable point does not move past a buffer it could not write, so a
//!   later flush + fsync that succeeds covers every earlier write truthfully and clears the
//!   failure. (sled 0.34 keeps its own error after a failed write until reopened, so in practice
//!   its later flushes fail too and a restart is needed: the space reserve exists so it never
//!   gets there.) Other flush errors are sticky.

use std::fs::File;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use tokio::sync::watch;

use super::StoreError;

/// Why commits fail, as published to writers and health.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The disk (or a quota) is full.
    pub no_space: bool,
    /// Only a restart clears it (see the module doc).
    pub sticky: bool,
    pub message: Arc<str>,
}

impl Failure {
    fn to_error(&self) -> StoreError {
        let what = format!("flush to disk failed: {}", self.message);
        if self.no_space {
            StoreError::NoSpace(what)
        } else {
            StoreError::Durability(what)
        }
    }
}

#[derive(Debug, Clone)]
struct Durable {
    seq: u64,
    /// Set while commits fail: the round that published it did not make its writes durable.
    failure: Option<Failure>,
}

/// How long a commit round waits for more writers when the last round had several.
const GATHER: std::time::Duration = std::time::Duration::from_micros(1000);

/// One commit round's two steps, separate so tests can make either fail.
pub trait Persist: Send + 'static {
    /// Hand buffered writes to the kernel.
    fn flush(&self) -> io::Result<()>;
    /// Make what the kernel holds durable.
    fn fsync(&self) -> io::Result<()>;
    /// What it makes durable, for the log.
    fn name(&self) -> &'static str {
        "store"
    }
}

/// A commit round slower than this is logged (with its two steps' times): every writer waiting
/// on it waited that long.
const SLOW_ROUND: std::time::Duration = std::time::Duration::from_millis(100);

/// sled's data file: `flush` writes sled's buffers, `fsync` the file (any handle: fsync applies
/// to the inode).
struct SledSync {
    db: sled::Db,
    file: File,
}

impl Persist for SledSync {
    fn flush(&self) -> io::Result<()> {
        self.db.flush().map(|_| ()).map_err(|e| match e {
            sled::Error::Io(io) => io,
            other => io::Error::other(other.to_string()),
        })
    }

    fn fsync(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn name(&self) -> &'static str {
        "sled"
    }
}

struct Shared {
    requested: AtomicU64,
    /// Completed flush + fsync rounds (for tests and metrics).
    rounds: AtomicU64,
    wake: Mutex<Wake>,
    cv: Condvar,
    durable: watch::Sender<Durable>,
}

struct Wake {
    stop: bool,
    /// The commit thread is parked on the condvar (so a writer must wake it).
    idle: bool,
}

pub struct GroupCommit {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl GroupCommit {
    /// Start the commit thread for `db`, whose data file is `db_file`.
    pub fn start(db: sled::Db, db_file: File) -> Result<Self, StoreError> {
        Self::start_with(SledSync { db, file: db_file })
    }

    pub fn start_with(sync: impl Persist) -> Result<Self, StoreError> {
        let (tx, _) = watch::channel(Durable {
            seq: 0,
            failure: None,
        });
        let shared = Arc::new(Shared {
            requested: AtomicU64::new(0),
            rounds: AtomicU64::new(0),
            wake: Mutex::new(Wake {
                stop: false,
                idle: false,
            }),
            cv: Condvar::new(),
            durable: tx,
        });
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("herald-commit".into())
            .spawn(move || commit_loop(&s, &sync))
            .map_err(StoreError::Io)?;
        Ok(GroupCommit {
            shared,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Wait until everything this task wrote before the call is on disk.
    pub async fn wait(&self) -> Result<(), StoreError> {
        let (seq, idle) = {
            let wake = self.shared.wake.lock().unwrap_or_else(|e| e.into_inner());
            if wake.stop {
                return Err(StoreError::Durability("the store is closed".into()));
            }
            (
                self.shared.requested.fetch_add(1, Ordering::SeqCst) + 1,
                wake.idle,
            )
        };
        // A busy commit thread looks at `requested` again before it parks: no wake-up needed.
        if idle {
            self.shared.cv.notify_one();
        }
        let mut rx = self.shared.durable.subscribe();
        // A recoverable failure of an earlier round does not decide this write: its own round does.
        let reached = rx
            .wait_for(|d| d.seq >= seq || d.failure.as_ref().is_some_and(|f| f.sticky))
            .await
            .map_err(|_| StoreError::Durability("commit thread stopped".into()))?;
        match &reached.failure {
            None => Ok(()),
            Some(f) => Err(f.to_error()),
        }
    }

    /// Why commits fail now, if they do.
    pub fn failure(&self) -> Option<Failure> {
        self.shared.durable.borrow().failure.clone()
    }

    /// Completed flush + fsync rounds so far.
    pub fn rounds(&self) -> u64 {
        self.shared.rounds.load(Ordering::SeqCst)
    }

    /// Flush what is pending, then stop the thread. Later `wait` calls fail.
    pub fn stop(&self) {
        {
            let mut w = self.shared.wake.lock().unwrap_or_else(|e| e.into_inner());
            w.stop = true;
        }
        self.shared.cv.notify_one();
        let handle = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(h) = handle {
            let _ = h.join();
        }
    }
}

impl Drop for GroupCommit {
    fn drop(&mut self) {
        self.stop();
    }
}

/// ENOSPC or EDQUOT, also when sled hands back a copy that kept only the kind.
pub fn is_no_space(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    ) || matches!(e.raw_os_error(), Some(28 | 122))
}

/// The failure one round's result leaves, given the one before (see the module doc).
fn next_failure(
    before: Option<Failure>,
    flush: io::Result<()>,
    fsync: impl FnOnce() -> io::Result<()>,
) -> Option<Failure> {
    if before.as_ref().is_some_and(|f| f.sticky) {
        return before;
    }
    match flush {
        Err(e) => Some(Failure {
            no_space: is_no_space(&e),
            sticky: !is_no_space(&e),
            message: e.to_string().into(),
        }),
        Ok(()) => fsync().err().map(|e| Failure {
            no_space: is_no_space(&e),
            sticky: true,
            message: e.to_string().into(),
        }),
    }
}

fn commit_loop(shared: &Shared, sync: &impl Persist) {
    let mut done = 0u64;
    let mut last_batch = 0u64;
    let mut failure: Option<Failure> = None;
    loop {
        let stopping = {
            let mut w = shared.wake.lock().unwrap_or_else(|e| e.into_inner());
            while !w.stop && shared.requested.load(Ordering::SeqCst) <= done {
                w.idle = true;
                w = shared.cv.wait(w).unwrap_or_else(|e| e.into_inner());
                w.idle = false;
            }
            w.stop
        };
        // Under concurrent load, wait a moment so one flush covers more writers: each flush costs
        // the kernel a write-back, whatever its size. A lone writer is not delayed.
        if last_batch > 1 && !stopping {
            std::thread::sleep(GATHER);
        }
        // Everyone who took a number up to `target` wrote before taking it, so this flush covers them.
        let target = shared.requested.load(Ordering::SeqCst);
        let started = std::time::Instant::now();
        let flushed = sync.flush();
        let flush_took = started.elapsed();
        let next = next_failure(failure.clone(), flushed, || sync.fsync());
        let took = started.elapsed();
        if took >= SLOW_ROUND {
            tracing::warn!(
                files = sync.name(),
                ms = took.as_millis() as u64,
                flush_ms = flush_took.as_millis() as u64,
                writers = target - done,
                "slow commit round: writers waited this long for the disk"
            );
        }
        last_batch = target - done;
        // Log changes of state only: a failing store is asked to commit by every writer.
        match (&failure, &next) {
            (_, Some(f)) if failure.as_ref() != Some(f) => tracing::error!(
                error = %f.message,
                no_space = f.no_space,
                until_restart = f.sticky,
                "store flush failed; refusing durable writes"
            ),
            (Some(_), None) => tracing::info!("store flush works again; accepting durable writes"),
            _ => {}
        }
        failure = next;
        done = target;
        shared.rounds.fetch_add(1, Ordering::SeqCst);
        shared.durable.send_replace(Durable {
            seq: done,
            failure: failure.clone(),
        });
        if stopping {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    /// Results handed out in order, then success.
    #[derive(Default)]
    struct Scripted {
        flush: Mutex<VecDeque<io::Result<()>>>,
        fsync: Mutex<VecDeque<io::Result<()>>>,
    }

    impl Persist for Arc<Scripted> {
        fn flush(&self) -> io::Result<()> {
            self.flush.lock().unwrap().pop_front().unwrap_or(Ok(()))
        }
        fn fsync(&self) -> io::Result<()> {
            self.fsync.lock().unwrap().pop_front().unwrap_or(Ok(()))
        }
    }

    fn enospc() -> io::Result<()> {
        Err(io::Error::from_raw_os_error(28))
    }

    #[tokio::test]
    async fn a_flush_out_of_space_fails_its_writers_then_clears_when_a_flush_succeeds() {
        let s = Arc::new(Scripted::default());
        s.flush.lock().unwrap().push_back(enospc());
        let commit = GroupCommit::start_with(s.clone()).unwrap();
        assert!(matches!(commit.wait().await, Err(StoreError::NoSpace(_))));
        let f = commit.failure().expect("failure published");
        assert!(f.no_space && !f.sticky, "{f:?}");
        commit
            .wait()
            .await
            .expect("the next round succeeds and clears it");
        assert_eq!(commit.failure(), None);
    }

    #[tokio::test]
    async fn sled_s_copy_of_an_out_of_space_error_still_counts_as_no_space() {
        // sled clones its stored error as a custom error that keeps only the kind.
        let copy = io::Error::new(io::ErrorKind::StorageFull, "Os { code: 28 }");
        assert!(is_no_space(&copy));
        assert!(is_no_space(&io::Error::from_raw_os_error(122)));
        assert!(!is_no_space(&io::Error::from_raw_os_error(5)));
    }

    #[tokio::test]
    async fn a_failed_fsync_is_sticky_even_out_of_space() {
        let s = Arc::new(Scripted::default());
        s.fsync.lock().unwrap().push_back(enospc());
        let commit = GroupCommit::start_with(s.clone()).unwrap();
        assert!(matches!(commit.wait().await, Err(StoreError::NoSpace(_))));
        for _ in 0..3 {
            assert!(
                commit.wait().await.is_err(),
                "an fsync that succeeds after a failed one proves nothing"
            );
        }
        assert!(commit.failure().is_some_and(|f| f.sticky));
    }

    #[tokio::test]
    async fn other_flush_errors_are_sticky() {
        let s = Arc::new(Scripted::default());
        s.flush
            .lock()
            .unwrap()
            .push_back(Err(io::Error::from_raw_os_error(5)));
        let commit = GroupCommit::start_with(s.clone()).unwrap();
        assert!(matches!(
            commit.wait().await,
            Err(StoreError::Durability(_))
        ));
        assert!(commit.wait().await.is_err());
    }
}
