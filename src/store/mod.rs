//! The store: the only module that knows sled. It owns the trees (layouts in `keys`), the value
//! codec, pagination and the group commit. Every `async` write returns only once the write is on
//! disk (fsync'd); reads are plain sled look-ups. Writes of new records first check the free disk
//! space (`space`), so a full disk answers "no space" instead of breaking the engine.

mod apps;
mod codec;
mod commit;
mod delivery;
mod endpoints;
mod event_types;
mod idempotency;
pub mod keys;
mod messages;
pub mod page;
mod retention;
mod seal;
mod space;
mod tokens;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};

pub use delivery::{QueuedTask, TryRecord};
pub use idempotency::{Answer, IdempotencyRecord};
pub use messages::CreateOutcome;
pub use page::{Direction, Page, PageQuery};
pub use space::{StorageStatus, WriteKind};

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
    sealer: seal::Sealer,
    /// Writers hold it shared; a backup holds it alone, so it copies one consistent state.
    gate: std::sync::RwLock<()>,
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
        let inner = Inner {
            sealer,
            gate: std::sync::RwLock::new(()),
            seq_offset,
            apps: tree(keys::TREE_APPS)?,
            app_uid: tree(keys::TREE_APP_UID)?,
            event_types: tree(keys::TREE_EVENT_TYPES)?,
            endpoints: tree(keys::TREE_ENDPOINTS)?,
            endpoint_uid: tree(keys::TREE_ENDPOINT_UID)?,
            tokens: tree(keys::TREE_TOKENS)?,
            messages: tree(keys::TREE_MESSAGES)?,
            msg_event_id: tree(keys::TREE_MSG_EVENT_ID)?,
            idempotency: tree(keys::TREE_IDEMPOTENCY)?,
            queue: tree(keys::TREE_QUEUE)?,
            destinations: tree(keys::TREE_DESTINATIONS)?,
            attempts: tree(keys::TREE_ATTEMPTS)?,
            attempts_by_ep: tree(keys::TREE_ATTEMPTS_BY_EP)?,
            endpoint_health: tree(keys::TREE_ENDPOINT_HEALTH)?,
            commit: commit::GroupCommit::start(db.clone(), db_file)?,
            space,
            db,
        };
        let store = Store {
            inner: Arc::new(inner),
        };
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

    /// `Ok` if a write of `kind` may go ahead: the store can commit and the disk has room above
    /// the reserve (half of it for [`WriteKind::Progress`]). Else `NoSpace` (counted, logged at
    /// most once a minute) or `Durability`. Call it before writing, not under the write gate.
    pub fn ensure_space(&self, kind: WriteKind) -> Result<(), StoreError> {
        if let Some(f) = self.inner.commit.failure() {
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

    /// Free space, the reserve, refused writes and whether the store can commit.
    pub fn storage_status(&self) -> StorageStatus {
        let mut s = self.inner.space.status();
        if let Some(f) = self.inner.commit.failure() {
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

    /// Completed group-commit rounds (flush + fsync) since open.
    pub fn commit_rounds(&self) -> u64 {
        self.inner.commit.rounds()
    }

    /// Flush everything and stop the commit thread (at shutdown).
    pub fn close(&self) -> Result<(), StoreError> {
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
    fn write_gate(&self) -> std::sync::RwLockReadGuard<'_, ()> {
        self.inner.gate.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Copy the whole store into a new store under `dest` (which must not exist): writes pause
    /// meanwhile, so the copy is one consistent state; it is flushed and fsync'd before return.
    /// Returns the number of records copied.
    pub fn backup_to(&self, dest: &Path) -> Result<u64, StoreError> {
        let _exclusive = self.inner.gate.write().unwrap_or_else(|e| e.into_inner());
        let path = dest.join(FORMAT_DIR);
        crate::fsio::create_dir_all(&path)?;
        let target = sled::Config::new().path(&path).create_new(true).open()?;
        let mut records = 0;
        for name in self.inner.db.tree_names() {
            let (from, to) = (self.inner.db.open_tree(&name)?, target.open_tree(&name)?);
            let mut batch = sled::Batch::default();
            let mut n = 0;
            for kv in from.iter() {
                let (k, v) = kv?;
                batch.insert(k, v);
                n += 1;
                if n % 4096 == 0 {
                    to.apply_batch(std::mem::take(&mut batch))?;
                }
            }
            to.apply_batch(batch)?;
            records += n;
        }
        let floor = self.next_seq()?.saturating_add(1);
        target
            .open_tree(keys::TREE_META)?
            .insert(META_SEQ_OFFSET, &floor.to_be_bytes())?;
        target.flush()?;
        File::open(path.join("db"))?.sync_all()?;
        // The directories were made durable above; this commits the names of sled's files.
        crate::fsio::sync_dir(&path)?;
        Ok(records)
    }

    /// Bytes sled uses on disk.
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        Ok(self.inner.db.size_on_disk()?)
    }
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
