//! Group commit: one OS thread makes writes durable (`sled::Db::flush` then `fsync` of the db file,
//! since sled's flush alone does not fsync), and every writer waiting at that moment shares the one
//! fsync. Writers take a sequence number after writing and wait until the published durable number
//! reaches it. (`flush_async` is avoided: it deadlocks with many concurrent callers.)

use std::fs::File;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use tokio::sync::watch;

use super::StoreError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Durable {
    seq: u64,
    /// A flush failed: nothing written since can be promised durable, so waiters get an error.
    failed: bool,
}

/// How long a commit round waits for more writers when the last round had several.
const GATHER: std::time::Duration = std::time::Duration::from_micros(1000);

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
        let (tx, _) = watch::channel(Durable {
            seq: 0,
            failed: false,
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
            .spawn(move || commit_loop(&s, &db, &db_file))
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
        let reached = rx
            .wait_for(|d| d.seq >= seq || d.failed)
            .await
            .map_err(|_| StoreError::Durability("commit thread stopped".into()))?;
        if reached.failed {
            Err(StoreError::Durability("flush to disk failed".into()))
        } else {
            Ok(())
        }
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

fn commit_loop(shared: &Shared, db: &sled::Db, db_file: &File) {
    let mut done = 0u64;
    let mut last_batch = 0u64;
    let mut failed = false;
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
        let result = db
            .flush()
            .map_err(|e| e.to_string())
            .and_then(|_| db_file.sync_data().map_err(|e| e.to_string()));
        last_batch = target - done;
        if let Err(e) = result {
            // Sticky, as after a failed fsync the kernel may have dropped the dirty pages: promising
            // durability again would be a lie.
            tracing::error!(error = %e, "store flush failed; refusing further durable writes");
            failed = true;
        }
        done = target;
        shared.rounds.fetch_add(1, Ordering::SeqCst);
        shared.durable.send_replace(Durable { seq: done, failed });
        if stopping {
            return;
        }
    }
}
