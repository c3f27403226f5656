//! The store: the only module that knows sled. It owns the trees (layouts in `keys`), the
//! payload log beside them (`payloads`), the value codec, pagination, the group commit, format
//! upgrades (`upgrade`) and the offline check (`check`). The on-disk layout, the format version
//! and the upgrade rule are described in one place: `src/store/README.md`.
//!
//! Every `async` write returns only once the write is on disk (fsync'd); reads are plain sled
//! look-ups. Writes of new records first check the free disk space (`space`), so a full disk
//! answers "no space" instead of breaking the engine.

mod app_tokens;
mod apps;
mod check;
mod codec;
mod commit;
mod delivery;
mod endpoints;
mod event_types;
mod expunge;
mod idempotency;
pub mod keys;
mod messages;
mod operational;
pub mod page;
pub mod payloads;
mod retention;
mod seal;
mod space;
pub mod tasks;
mod tokens;
mod upgrade;

use std::fs::File;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLockReadGuard, RwLockWriteGuard, TryLockError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};

pub use check::{check, CheckReport};
pub use delivery::{QueuedTask, TryRecord};
pub use expunge::{ExpungeOutcome, EXPUNGED_RESPONSE};
pub use idempotency::{Answer, IdempotencyRecord};
pub use messages::CreateOutcome;
pub use operational::operational_app;
pub use page::{Budget, Direction, Page, PageQuery, SCAN_RECORDS};
pub use space::{StorageStatus, WriteKind, BALLAST_FILE};
pub use tasks::{
    AppCount, AppEventTypes, BackgroundTask, EndpointWindow, ReplayFilter, TaskParams, TaskStatus,
};

/// Sub-folder of the data directory that holds this storage format, so a later format can be
/// migrated into a sibling folder.
pub const FORMAT_DIR: &str = "store-v1";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage engine error: {0}")]
    Sled(#[from] sled::Error),
    #[error("corrupt stored value: {0}")]
    Codec(String),
    #[error("{0}")]
    Conflict(String),
    #[error("not found")]
    NotFound,
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error("write not durable: {0}")]
    Durability(String),
    /// The disk is full or under the reserve (`store.min_free_mb`): nothing was written.
    #[error("not enough disk space: {0}")]
    NoSpace(String),
    #[error("the data directory {0} is in use by another Herald process")]
    Locked(PathBuf),
    /// The store's format is not one this binary reads (see `upgrade`).
    #[error("{0}")]
    Format(String),
    #[error("the main key does not open this store (endpoint secrets are sealed with another key); give the right HERALD_MAIN_KEY or store.main_key_file")]
    WrongMainKey,
}

impl StoreError {
    /// Out of disk space: refused by the reserve, or ENOSPC / EDQUOT met by the engine.
    pub fn is_no_space(&self) -> bool {
        match self {
            StoreError::NoSpace(_) => true,
            StoreError::Sled(sled::Error::Io(e)) | StoreError::Io(e) => commit::is_no_space(e),
            _ => false,
        }
    }
}

impl From<TransactionError<StoreError>> for StoreError {
    fn from(e: TransactionError<StoreError>) -> Self {
        match e {
            TransactionError::Abort(e) => e,
            TransactionError::Storage(e) => StoreError::Sled(e),
        }
    }
}

type TxResult<T> = Result<T, ConflictableTransactionError<StoreError>>;

fn abort<T>(e: StoreError) -> TxResult<T> {
    Err(ConflictableTransactionError::Abort(e))
}

/// Settings the store needs from the configuration.
#[derive(Clone)]
pub struct StoreOptions {
    pub cache_capacity_bytes: u64,
    /// Seals endpoint secrets at rest.
    pub main_key: [u8; 32],
    /// New records are refused while the file system has less free (0: no check).
    pub min_free_bytes: u64,
    /// Size of the emergency ballast kept in the data directory (0: none).
    pub ballast_bytes: u64,
}

impl StoreOptions {
    pub fn new(main_key: [u8; 32]) -> Self {
        StoreOptions {
            cache_capacity_bytes: 64 * 1024 * 1024,
            main_key,
            min_free_bytes: 128 * 1024 * 1024,
            ballast_bytes: 64 * 1024 * 1024,
        }
    }

    #[cfg(test)]
    pub fn for_tests() -> Self {
        StoreOptions {
            min_free_bytes: 0,
            ballast_bytes: 0,
            ..StoreOptions::new([42; 32])
        }
    }
}

const META_MAIN_KEY_CHECK: &[u8] = b"main_key_check";
const META_SEQ_OFFSET: &[u8] = b"seq_offset";

#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    db: sled::Db,
    apps: sled::Tree,
    app_uid: sled::Tree,
    event_types: sled::Tree,
    endpoints: sled::Tree,
    endpoint_uid: sled::Tree,
    tokens: sled::Tree,
    app_tokens: sled::Tree,
    sealer: seal::Sealer,
    /// Writers hold it shared around the sync part of each write; a backup holds it alone for two
    /// moments (see `backup_to`), so what it copies is one consistent state.
    gate: std::sync::RwLock<()>,
    /// Held while a backup runs: one at a time.
    backup: Mutex<()>,
    /// Added to sled's id counter: a store restored from a backup hands out numbers above the
    /// ones its queue keys already use.
    seq_offset: u64,
    messages: sled::Tree,
    msg_event_id: sled::Tree,
    idempotency: sled::Tree,
    queue: sled::Tree,
    destinations: sled::Tree,
    attempts: sled::Tree,
    attempts_by_ep: sled::Tree,
    endpoint_health: sled::Tree,
    manual_queued: sled::Tree,
    payload_expiry: sled::Tree,
    tasks: sled::Tree,
    expunge_pending: sled::Tree,
    /// A handle on sled's data file, to fsync it outside the group commit.
    db_file: File,
    /// Message payloads, beside sled (see `payloads`).
    payloads: payloads::PayloadLog,
    commit: commit::GroupCommit,
    space: space::Space,
}

impl Store {
    /// Open (or create) the store under `data_dir`.
    pub fn open(data_dir: &Path, opts: &StoreOptions) -> Result<Store, StoreError> {
        let path = data_dir.join(FORMAT_DIR);
        crate::fsio::create_dir_all(&path)?;
        let space = space::Space::new(
            data_dir,
            path.clone(),
            opts.min_free_bytes,
            opts.ballast_bytes,
        );
        space.before_open();
        let db = sled::Config::new()
            .path(&path)
            .cache_capacity(opts.cache_capacity_bytes)
            .flush_every_ms(Some(1000))
            .open()
            .map_err(|e| match e {
                sled::Error::Io(ref io) if io.to_string().contains("could not acquire lock") => {
                    StoreError::Locked(data_dir.to_path_buf())
                }
                sled::Error::Io(ref io) if commit::is_no_space(io) => StoreError::NoSpace(format!(
                    "the store cannot open on a full disk ({io}): free some space, and keep an \
                     emergency ballast (store.ballast_mb) so that Herald can start next time"
                )),
                other => StoreError::Sled(other),
            })?;
        // sled never fsyncs a directory: make the names of the files it just made durable.
        crate::fsio::sync_dir(&path)?;
        // fsync applies to the inode, so any handle on sled's data file makes its writes durable.
        let db_file = File::open(path.join("db"))?;
        let (payloads, _) = payloads::PayloadLog::open(&path)?;
        let tree = |name: &str| db.open_tree(name);
        let sealer = seal::Sealer::new(&opts.main_key);
        let meta = db.open_tree(keys::TREE_META)?;
        match meta.get(META_MAIN_KEY_CHECK)? {
            Some(check) if !sealer.verify_check(&check) => return Err(StoreError::WrongMainKey),
            Some(_) => {}
            None => {
                meta.insert(META_MAIN_KEY_CHECK, sealer.check_value()?)?;
            }
        }
        let seq_offset = match meta.get(META_SEQ_OFFSET)? {
            Some(v) => u64::from_be_bytes(
                v.as_ref()
                    .try_into()
                    .map_err(|_| StoreError::Codec("bad sequence offset".into()))?,
            ),
            None => 0,
        };
        upgrade::to_current(&db, &meta, &payloads, &db_file)?;
        let inner = Inner {
            payloads,
            sealer,
            gate: std::sync::RwLock::new(()),
            backup: Mutex::new(()),
            seq_offset,
            apps: tree(keys::TREE_APPS)?,
            app_uid: tree(keys::TREE_APP_UID)?,
            event_types: tree(keys::TREE_EVENT_TYPES)?,
            endpoints: tree(keys::TREE_ENDPOINTS)?,
            endpoint_uid: tree(keys::TREE_ENDPOINT_UID)?,
            tokens: tree(keys::TREE_TOKENS)?,
            app_tokens: tree(keys::TREE_APP_TOKENS)?,
            messages: tree(keys::TREE_MESSAGES)?,
            msg_event_id: tree(keys::TREE_MSG_EVENT_ID)?,
            idempotency: tree(keys::TREE_IDEMPOTENCY)?,
            queue: tree(keys::TREE_QUEUE)?,
            destinations: tree(keys::TREE_DESTINATIONS)?,
            attempts: tree(keys::TREE_ATTEMPTS)?,
            attempts_by_ep: tree(keys::TREE_ATTEMPTS_BY_EP)?,
            endpoint_health: tree(keys::TREE_ENDPOINT_HEALTH)?,
            manual_queued: tree(keys::TREE_MANUAL_QUEUED)?,
            payload_expiry: tree(keys::TREE_PAYLOAD_EXPIRY)?,
            tasks: tree(keys::TREE_TASKS)?,
            expunge_pending: tree(keys::TREE_EXPUNGE_PENDING)?,
            commit: commit::GroupCommit::start(db.clone(), db_file.try_clone()?)?,
            db_file,
            space,
            db,
        };
        let store = Store {
            inner: Arc::new(inner),
        };
        store.finish_expunges()?;
        if store.inner.space.below_reserve() {
            tracing::warn!(
                "free disk space is under the reserve (store.min_free_mb): serving reads, \
                 refusing new records until space is freed"
            );
        }
        Ok(store)
    }

    /// Wait until every write this task made so far is on disk.
    pub async fn durable(&self) -> Result<(), StoreError> {
        self.inner.commit.wait().await.map_err(|e| match e {
            StoreError::NoSpace(why) => self.inner.space.refuse(why),
            other => other,
        })
    }

    /// Wait until every payload this task appended is on disk.
    async fn payloads_durable(&self) -> Result<(), StoreError> {
        self.inner.payloads.durable().await.map_err(|e| match e {
            StoreError::NoSpace(why) => self.inner.space.refuse(why),
            other => other,
        })
    }

    /// `Ok` if a write of `kind` may go ahead: the store can commit and the disk has room above
    /// the reserve (half of it for [`WriteKind::Progress`]). Else `NoSpace` (counted, logged at
    /// most once a minute) or `Durability`. Call it before writing, not under the write gate.
    pub fn ensure_space(&self, kind: WriteKind) -> Result<(), StoreError> {
        if let Some(f) = self.commit_failure() {
            return Err(if f.no_space {
                self.inner.space.refuse(format!(
                    "a write to disk failed for lack of space: {}",
                    f.message
                ))
            } else {
                StoreError::Durability(f.message.to_string())
            });
        }
        self.inner.space.check(kind)
    }

    /// Why commits fail now, in sled's group commit or the payload log's, if they do.
    fn commit_failure(&self) -> Option<commit::Failure> {
        self.inner
            .commit
            .failure()
            .or_else(|| self.inner.payloads.failure())
    }

    /// Free space, the reserve, refused writes and whether the store can commit.
    pub fn storage_status(&self) -> StorageStatus {
        let mut s = self.inner.space.status();
        if let Some(f) = self.commit_failure() {
            s.commit_failure = Some(f.message.to_string());
            s.restart_required = f.sticky;
        }
        s
    }

    /// Periodic care of the disk (every few seconds): keep or release the emergency ballast, and
    /// run a commit round. The round finds a store that broke while idle (sled's background
    /// flusher meets ENOSPC or EIO without any writer waiting), so readiness tells; and once space
    /// is back it lets a commit that failed for lack of space clear. Logs once that writes resume.
    pub async fn maintain_storage(&self) {
        let s = self.clone();
        let _ = tokio::task::spawn_blocking(move || s.inner.space.maintain()).await;
        let probe = match self.inner.commit.failure() {
            None => true,
            Some(f) => f.no_space && !f.sticky && !self.inner.space.below_reserve(),
        };
        if probe {
            // With nothing new to write, a flush + fsync costs little.
            let _ = self.inner.commit.wait().await;
        }
        if !self.storage_status().degraded() {
            self.inner.space.note_resumed();
        }
    }

    /// Flush sled and fsync its data file, on this thread (for background jobs that must know
    /// their writes are on disk before they go on).
    fn sync_trees(&self) -> Result<(), StoreError> {
        self.inner.db.flush()?;
        self.inner.db_file.sync_data()?;
        Ok(())
    }

    /// A stable, public name for this data directory (what Svix calls the environment id):
    /// `env_` and 32 hex digits of the SHA-256 of the main-key check value, which is written
    /// once, with a random nonce, when the store is made. So it stays across restarts and
    /// upgrades, a store restored from a backup keeps it, and it tells nothing about the key.
    pub fn environment_id(&self) -> Result<String, StoreError> {
        use sha2::{Digest, Sha256};
        let meta = self.inner.db.open_tree(keys::TREE_META)?;
        let check = meta
            .get(META_MAIN_KEY_CHECK)?
            .ok_or_else(|| StoreError::Codec("no main-key check value".into()))?;
        let digest = Sha256::digest(&check);
        let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
        Ok(format!("env_{hex}"))
    }

    /// Completed group-commit rounds (flush + fsync) since open.
    pub fn commit_rounds(&self) -> u64 {
        self.inner.commit.rounds()
    }

    /// Flush everything and stop the commit thread (at shutdown).
    pub fn close(&self) -> Result<(), StoreError> {
        self.inner.payloads.close()?;
        self.inner.db.flush()?;
        self.inner.commit.stop();
        Ok(())
    }

    /// A number never handed out before (persisted by sled), for unique queue keys.
    pub fn next_seq(&self) -> Result<u64, StoreError> {
        Ok(self
            .inner
            .db
            .generate_id()?
            .saturating_add(self.inner.seq_offset))
    }

    /// Shared hold on the write gate, for the sync part of every write (never across an await).
    /// While a backup holds the gate (a moment, see `backup_to`), a caller on a runtime worker
    /// waits in `block_in_place`, so the runtime moves the worker's other tasks elsewhere.
    fn write_gate(&self) -> RwLockReadGuard<'_, ()> {
        match self.inner.gate.try_read() {
            Ok(g) => g,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => {
                let wait = || self.inner.gate.read().unwrap_or_else(|e| e.into_inner());
                // block_in_place panics on a current-thread runtime; blocking threads and plain
                // threads just wait.
                let on_workers = tokio::runtime::Handle::try_current().is_ok_and(|h| {
                    h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread
                });
                if on_workers {
                    tokio::task::block_in_place(wait)
                } else {
                    wait()
                }
            }
        }
    }

    /// Hold the write gate alone; returns the guard and when writers began to wait. It first
    /// tries without queueing, because a queued exclusive request also stops new shared holds:
    /// behind a long shared holder (a retention purge) every writer would wait with it.
    fn pause_writes(&self) -> (RwLockWriteGuard<'_, ()>, Instant) {
        let patience = Instant::now() + PAUSE_PATIENCE;
        loop {
            match self.inner.gate.try_write() {
                Ok(g) => return (g, Instant::now()),
                Err(TryLockError::Poisoned(p)) => return (p.into_inner(), Instant::now()),
                Err(TryLockError::WouldBlock) if Instant::now() < patience => {
                    std::thread::sleep(Duration::from_micros(200))
                }
                Err(TryLockError::WouldBlock) => {
                    let since = Instant::now();
                    return (
                        self.inner.gate.write().unwrap_or_else(|e| e.into_inner()),
                        since,
                    );
                }
            }
        }
    }

    /// Copy the whole store into a new store in the new directory `dest`, flushed and fsync'd
    /// before return; its parent is made if missing. `Conflict` if `dest` exists (whatever it is:
    /// a link is not followed). The copy is private: directories 0700, files 0600. Writes go on
    /// during the copy: a subscriber on every tree records each change made after the copy
    /// began, and the changes are replayed onto the copy, so it holds the one state of the moment
    /// the backup ends. Writers wait only for two short pauses: one to start the subscribers and
    /// one to replay the last changes. One backup at a time. A failed backup leaves nothing.
    pub fn backup_to(&self, dest: &Path) -> Result<BackupReport, StoreError> {
        let _one = match self.inner.backup.try_lock() {
            Ok(g) => g,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => {
                return Err(StoreError::Conflict("a backup is already running".into()))
            }
        };
        if let Some(parent) = dest.parent().filter(|p| !p.as_os_str().is_empty()) {
            crate::fsio::create_dir_all(parent)?;
        }
        match crate::fsio::create_dir_new(dest) {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(StoreError::Conflict(
                    "a backup of that name already exists".into(),
                ))
            }
            other => other?,
        }
        let copied = self.copy_into(dest).and_then(|report| {
            // sled makes its files with the process umask: set the modes whatever it was.
            crate::fsio::restrict_tree(dest)?;
            File::open(dest)?.sync_all()?;
            Ok(report)
        });
        if copied.is_err() {
            let _ = std::fs::remove_dir_all(dest);
        }
        copied
    }

    /// The copy itself (see `backup_to`), into the existing empty directory `dest`.
    fn copy_into(&self, dest: &Path) -> Result<BackupReport, StoreError> {
        let path = dest.join(FORMAT_DIR);
        crate::fsio::create_dir_all(&path)?;
        let target = sled::Config::new()
            .path(&path)
            .cache_capacity(BACKUP_CACHE_BYTES)
            .create_new(true)
            .open()?;
        let trees = self
            .inner
            .db
            .tree_names()
            .iter()
            .map(|name| Ok((self.inner.db.open_tree(name)?, target.open_tree(name)?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        // Subscribed while no write is under way, so every write is either seen by the copy's
        // scan or recorded (or both: replaying it again is harmless).
        let (subscribers, first_pause) = {
            let (_paused, since) = self.pause_writes();
            let subs: Vec<sled::Subscriber> = trees
                .iter()
                .map(|(from, _)| from.watch_prefix(vec![]))
                .collect();
            (subs, since.elapsed())
        };
        let changes = Mutex::new(vec![Vec::new(); trees.len()]);
        let stop = AtomicBool::new(false);
        std::thread::scope(|scope| {
            let drainer = scope.spawn(|| drain_changes(subscribers, &changes, &stop));
            // Stops the drainer on every way out, so the scope can end.
            let _stop = StopOnDrop(&stop);
            // Record by record, not in batches: sled's `apply_batch` holds a process-wide lock
            // that stops every write to the live store until the batch is in.
            let mut records = 0;
            for (i, (from, to)) in trees.iter().enumerate() {
                for kv in from.iter() {
                    let (k, v) = kv?;
                    to.insert(k, v)?;
                    records += 1;
                    if records % 4096 == 0 {
                        // Keeps the recorded changes (memory) to those of the tree being copied.
                        replay(&trees[..i], &changes)?;
                    }
                }
            }
            replay(&trees, &changes)?;
            let (paused, since) = self.pause_writes();
            // The drainer's last pass starts after this, so it sees every write made before.
            stop.store(true, Ordering::Release);
            if drainer.join().is_err() {
                return Err(StoreError::Io(std::io::Error::other(
                    "backup change recorder failed",
                )));
            }
            replay(&trees, &changes)?;
            let floor = self.next_seq()?.saturating_add(1);
            drop(paused);
            let second_pause = since.elapsed();
            target
                .open_tree(keys::TREE_META)?
                .insert(META_SEQ_OFFSET, &floor.to_be_bytes())?;
            target.flush()?;
            File::open(path.join("db"))?.sync_all()?;
            // Every payload the copied records point at was appended before its record was
            // written, so copying each file as long as it is now covers them all.
            self.inner.payloads.copy_to(&path)?;
            File::open(&path)?.sync_all()?;
            File::open(dest)?.sync_all()?;
            Ok(BackupReport {
                records,
                longest_write_pause: first_pause.max(second_pause),
            })
        })
    }

    /// Bytes the store uses on disk: sled's files and the payload log.
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        let parts = self.disk_usage()?;
        Ok(parts.trees + parts.payloads)
    }

    /// Bytes on disk by part.
    pub fn disk_usage(&self) -> Result<DiskUsage, StoreError> {
        Ok(DiskUsage {
            trees: self.inner.db.size_on_disk()?,
            payloads: self.inner.payloads.disk_bytes(),
        })
    }
}

/// The store's disk use by part.
#[derive(Debug, Clone, Copy, Default)]
pub struct DiskUsage {
    /// sled's files (subscriptions, the queue, message records, attempts).
    pub trees: u64,
    /// The payload log's files.
    pub payloads: u64,
}

/// What a backup did.
#[derive(Debug, Clone, Copy)]
pub struct BackupReport {
    /// Records copied by the scan (changes replayed after it are not counted).
    pub records: u64,
    /// The longer of the two moments writers were held back.
    pub longest_write_pause: Duration,
}

/// The copy's page cache: it is only written, so sled's default (1 GiB) would be memory spent
/// for nothing.
const BACKUP_CACHE_BYTES: u64 = 16 * 1024 * 1024;

/// How long a backup tries to pause writes without queueing (see `pause_writes`).
const PAUSE_PATIENCE: Duration = Duration::from_secs(30);

struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// Move the changes the subscribers (one per tree) see into `changes`, in order, until `stop`.
/// Polled rather than blocking: a subscriber has no way to wake a blocked reader to stop.
fn drain_changes(
    mut subs: Vec<sled::Subscriber>,
    changes: &Mutex<Vec<Vec<sled::Event>>>,
    stop: &AtomicBool,
) {
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        let last = stop.load(Ordering::Acquire);
        let mut idle = true;
        for (i, sub) in subs.iter_mut().enumerate() {
            let mut fresh = Vec::new();
            while let Poll::Ready(Some(event)) = Pin::new(&mut *sub).poll(&mut cx) {
                fresh.push(event);
            }
            if !fresh.is_empty() {
                idle = false;
                changes.lock().unwrap_or_else(|e| e.into_inner())[i].extend(fresh);
            }
        }
        if last {
            return;
        }
        // Writers block once a subscriber holds 1024 unread changes: keep the polls frequent.
        if idle {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// Apply the recorded changes of `trees` (source, copy) to their copies, in the order they
/// happened, one by one (see the copy loop on batches).
fn replay(
    trees: &[(sled::Tree, sled::Tree)],
    changes: &Mutex<Vec<Vec<sled::Event>>>,
) -> Result<(), StoreError> {
    let pending: Vec<Vec<sled::Event>> = {
        let mut all = changes.lock().unwrap_or_else(|e| e.into_inner());
        all.iter_mut()
            .take(trees.len())
            .map(std::mem::take)
            .collect()
    };
    for ((_, to), events) in trees.iter().zip(pending) {
        for event in events {
            match event {
                sled::Event::Insert { key, value } => to.insert(key, value)?,
                sled::Event::Remove { key } => to.remove(key)?,
            };
        }
    }
    Ok(())
}

/// Within a transaction: write `value` at `key` of `main` and move the uid index entry of the record
/// from `old_uid` to `new_uid` (index keys), refusing a uid that another record holds.
#[allow(clippy::too_many_arguments)]
fn put_with_uid(
    main: &TransactionalTree,
    index: &TransactionalTree,
    key: &[u8],
    value: Vec<u8>,
    old_uid: Option<Vec<u8>>,
    new_uid: Option<Vec<u8>>,
    id_in_index: &[u8],
    taken: &str,
) -> TxResult<()> {
    if old_uid != new_uid {
        if let Some(n) = &new_uid {
            if index.get(n)?.is_some() {
                return abort(StoreError::Conflict(taken.to_string()));
            }
            index.insert(n.as_slice(), id_in_index)?;
        }
        if let Some(o) = &old_uid {
            index.remove(o.as_slice())?;
        }
    }
    main.insert(key, value)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_second_open_of_the_same_dir_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let _first = Store::open(dir.path(), &StoreOptions::for_tests()).unwrap();
        match Store::open(dir.path(), &StoreOptions::for_tests()) {
            Err(StoreError::Locked(_)) => {}
            Err(other) => panic!("expected Locked, got {other}"),
            Ok(_) => panic!("second open succeeded"),
        }
    }

    #[tokio::test]
    async fn concurrent_writers_all_become_durable() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &StoreOptions::for_tests()).unwrap();
        let mut tasks = Vec::new();
        for i in 0..64u32 {
            let s = store.clone();
            tasks.push(tokio::spawn(async move {
                s.inner.tokens.insert(i.to_be_bytes(), vec![1]).unwrap();
                s.durable().await
            }));
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        assert!(store.commit_rounds() >= 1);
        assert!(store.commit_rounds() <= 64, "writers share flushes");
        store.close().unwrap();
        assert!(
            store.durable().await.is_err(),
            "writes after close must not be promised durable"
        );
    }

    fn app(uid: String) -> crate::domain::Application {
        let now = crate::domain::Timestamp::now();
        crate::domain::Application {
            id: crate::domain::AppId::generate(),
            uid: Some(uid),
            name: "a".into(),
            metadata: Default::default(),
            throttle_rate: None,
            created_at: now,
            updated_at: now,
        }
    }

    /// Writers create, rename (moving the uid index entry) and delete applications while a backup
    /// runs: the copy is still one state, with every uid index entry matching its application.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_backup_taken_during_writes_is_one_consistent_state() {
        use std::collections::HashMap;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("live"), &StoreOptions::for_tests()).unwrap();
        // Seeded directly (consistently): enough that copying takes a while.
        let mut seeded = Vec::new();
        for n in 0..20_000 {
            let a = app(format!("seed-{n}"));
            let key = keys::app(&a.id);
            store
                .inner
                .apps
                .insert(&key, codec::encode(&a).unwrap())
                .unwrap();
            store
                .inner
                .app_uid
                .insert(keys::app_uid(&format!("seed-{n}")), key)
                .unwrap();
            seeded.push(a.id);
        }
        for n in 0..20_000u32 {
            store
                .inner
                .idempotency
                .insert(n.to_be_bytes(), vec![7; 2048])
                .unwrap();
        }
        let seeded = Arc::new(seeded);
        let done = Arc::new(AtomicBool::new(false));
        let during = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut writers = Vec::new();
        for w in 0..8 {
            let (store, seeded, done, during) =
                (store.clone(), seeded.clone(), done.clone(), during.clone());
            writers.push(tokio::spawn(async move {
                let mut n = 0;
                while !done.load(Ordering::Relaxed) && n < 100_000 {
                    let target = &seeded[(w * 2_500 + n / 3) % seeded.len()];
                    match n % 3 {
                        0 => store
                            .create_app(&app(format!("new-{w}-{n}")))
                            .await
                            .unwrap(),
                        1 => {
                            let uid = format!("moved-{w}-{n}");
                            let _ = store
                                .update_app(target, |a| a.uid = Some(uid.clone()))
                                .await;
                        }
                        _ => {
                            store.delete_app(target).await.unwrap();
                        }
                    }
                    n += 1;
                    during.fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        let before = during.load(Ordering::Relaxed);
        let (s, dest) = (store.clone(), dir.path().join("copy"));
        let report = tokio::task::spawn_blocking(move || s.backup_to(&dest))
            .await
            .unwrap()
            .unwrap();
        let writes = during.load(Ordering::Relaxed) - before;
        done.store(true, Ordering::Relaxed);
        for w in writers {
            w.await.unwrap();
        }
        assert!(writes >= 50, "only {writes} writes ran during the backup");
        assert!(report.records >= 60_000, "{report:?}");

        let copy = Store::open(&dir.path().join("copy"), &StoreOptions::for_tests()).unwrap();
        let mut apps = HashMap::new();
        for kv in copy.inner.apps.iter() {
            let (k, v) = kv.unwrap();
            let a: crate::domain::Application = codec::decode(&v).unwrap();
            apps.insert(k.to_vec(), a.uid);
        }
        let mut indexed = 0;
        for kv in copy.inner.app_uid.iter() {
            let (uid, key) = kv.unwrap();
            let uid = String::from_utf8(uid.to_vec()).unwrap();
            assert_eq!(
                apps.get(key.as_ref()),
                Some(&Some(uid.clone())),
                "index entry {uid} does not match its application"
            );
            indexed += 1;
        }
        assert_eq!(indexed, apps.values().filter(|u| u.is_some()).count());
        assert!(
            apps.values().flatten().any(|u| u.starts_with("moved-")),
            "the copy holds writes made during the backup"
        );
    }

    #[tokio::test]
    async fn one_backup_at_a_time_and_writers_wait_out_a_pause_on_any_runtime() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("live"), &StoreOptions::for_tests()).unwrap();
        {
            let _running = store.inner.backup.lock().unwrap();
            assert!(matches!(
                store.backup_to(&dir.path().join("copy")),
                Err(StoreError::Conflict(_))
            ));
        }
        // A current-thread runtime cannot block_in_place: the writer waits plainly.
        let (tx, rx) = std::sync::mpsc::channel();
        let s = store.clone();
        let pauser = std::thread::spawn(move || {
            let (_paused, _) = s.pause_writes();
            tx.send(()).unwrap();
            std::thread::sleep(Duration::from_millis(100));
        });
        rx.recv().unwrap();
        let started = Instant::now();
        store.create_app(&app("after-pause".into())).await.unwrap();
        assert!(started.elapsed() >= Duration::from_millis(50));
        pauser.join().unwrap();
        let report = store.backup_to(&dir.path().join("copy")).unwrap();
        assert!(report.records >= 2, "{report:?}");
    }

    /// Every acknowledged write waits for a flush + fsync round that began after it. (SIGKILL tests
    /// cannot see a missing fsync: the page cache survives the process.)
    #[tokio::test]
    async fn acknowledged_writes_wait_for_a_commit_round() {
        use crate::domain::*;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &StoreOptions::for_tests()).unwrap();
        let now = Timestamp::now();
        let app = Application {
            id: AppId::generate(),
            uid: None,
            name: "a".into(),
            metadata: Default::default(),
            throttle_rate: None,
            created_at: now,
            updated_at: now,
        };
        let before = store.commit_rounds();
        store.create_app(&app).await.unwrap();
        assert!(
            store.commit_rounds() > before,
            "create_app answered before a commit round"
        );

        let msg = Message {
            id: MessageId::generate(),
            app_id: app.id.clone(),
            event_type: "a.b".into(),
            event_id: Some("e1".into()),
            channels: None,
            tags: None,
            payload: b"{}".to_vec(),
            created_at: now,
            destinations: vec![EndpointId::generate()],
            deliver_at: None,
            payload_expires_at: None,
            expunged: false,
        };
        let ep = msg.destinations[0].clone();
        let before = store.commit_rounds();
        let out = store.create_message(&msg, None).await.unwrap();
        assert!(matches!(out, CreateOutcome::Created));
        assert!(
            store.commit_rounds() > before,
            "create_message answered before a commit round"
        );
        assert_eq!(
            store.get_message(&app.id, "e1").unwrap().map(|m| m.id),
            Some(msg.id.clone())
        );
        let due = store
            .due_tasks(&app.id, &ep, now.millis(), 10, &Default::default())
            .unwrap();
        assert_eq!(
            due.len(),
            1,
            "one task per endpoint, written with the message"
        );
        assert_eq!(due[0].task.msg_id, msg.id);
        let again = Message {
            id: MessageId::generate(),
            ..msg.clone()
        };
        assert!(matches!(
            store.create_message(&again, None).await,
            Err(StoreError::Conflict(_))
        ));
    }
}
