//! Upgrades of a store written by an earlier Herald: in place, when the store opens, before
//! anything is served. The store's format number is in `meta` under `format`:
//!
//! - **1** (no `format` entry; Herald up to d1574d5): message records hold their payloads.
//! - **2**: payloads live in the payload log (`payloads`); message records hold their place.
//!
//! The rule: a binary reads its own format and upgrades every older one in place, resumably (a
//! crash midway leaves records of both formats, each readable, and the next open goes on); it
//! refuses a newer format with a message saying so. An upgrade never deletes data before its new
//! form is on disk: each batch of payloads is fsync'd in the log before their records are
//! rewritten, and the records are fsync'd before the next batch.

use std::fs::File;

use super::codec::decode_as;
use super::messages::{encode_message, MESSAGE_V1, MESSAGE_V2, MESSAGE_V3};
use super::payloads::PayloadLog;
use super::StoreError;
use crate::domain::Message;

/// The format this binary writes.
pub const CURRENT: u8 = 2;
const META_FORMAT: &[u8] = b"format";
/// Records rewritten per fsync'd batch.
const BATCH: usize = 1000;

/// Bring the store to [`CURRENT`], or refuse it.
pub fn to_current(
    db: &sled::Db,
    meta: &sled::Tree,
    payloads: &PayloadLog,
    db_file: &File,
) -> Result<(), StoreError> {
    let format = match meta.get(META_FORMAT)? {
        None => 1,
        Some(v) => v.first().copied().unwrap_or(0),
    };
    if format == CURRENT {
        return Ok(());
    }
    if format > CURRENT || format == 0 {
        return Err(StoreError::Format(format!(
            "this store has format {format}, written by a newer Herald; this binary reads format \
             {CURRENT} and older. Run the newer Herald, or restore a backup made by this version"
        )));
    }
    let messages = db.open_tree(super::keys::TREE_MESSAGES)?;
    let moved = payloads_out_of_records(&messages, payloads, db, db_file)?;
    meta.insert(META_FORMAT, &[CURRENT])?;
    db.flush()?;
    db_file.sync_data()?;
    if moved > 0 {
        tracing::info!(
            messages = moved,
            "store upgraded to format {CURRENT}: payloads moved to the payload log"
        );
    }
    Ok(())
}

/// Format 1 to 2: move every inline payload to the payload log.
fn payloads_out_of_records(
    messages: &sled::Tree,
    payloads: &PayloadLog,
    db: &sled::Db,
    db_file: &File,
) -> Result<usize, StoreError> {
    let mut moved = 0;
    let mut after: Option<sled::IVec> = None;
    loop {
        let range = match &after {
            Some(k) => messages.range::<&[u8], _>((
                std::ops::Bound::Excluded(k.as_ref()),
                std::ops::Bound::Unbounded,
            )),
            None => messages.iter(),
        };
        let mut batch = Vec::with_capacity(BATCH);
        let mut last = None;
        for r in range.take(BATCH) {
            let (k, v) = r?;
            last = Some(k.clone());
            if v.first() == Some(&MESSAGE_V1) {
                let msg: Message = decode_as(MESSAGE_V1, &v)?;
                let at = payloads.append(&k, msg.created_at.millis(), &msg.payload)?;
                batch.push((k, encode_message(&msg, at)?));
            } else if v.first() != Some(&MESSAGE_V2) && v.first() != Some(&MESSAGE_V3) {
                return Err(StoreError::Codec("unknown message record format".into()));
            }
        }
        let Some(last) = last else {
            return Ok(moved);
        };
        if !batch.is_empty() {
            payloads.sync_now()?;
            let mut b = sled::Batch::default();
            moved += batch.len();
            for (k, v) in batch {
                b.insert(k, v);
            }
            messages.apply_batch(b)?;
            db.flush()?;
            db_file.sync_data()?;
            if moved % 100_000 < BATCH {
                tracing::info!(
                    messages = moved,
                    "upgrading the store: payloads moved so far"
                );
            }
        }
        after = Some(last);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_of_a_newer_format_is_refused_with_words() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let db = sled::Config::new().path(&path).open().unwrap();
        let meta = db.open_tree("meta").unwrap();
        meta.insert(META_FORMAT, &[CURRENT + 1]).unwrap();
        let (payloads, _) = PayloadLog::open(&path).unwrap();
        let file = File::open(path.join("db")).unwrap();
        match to_current(&db, &meta, &payloads, &file) {
            Err(StoreError::Format(why)) => {
                assert!(why.contains("newer Herald"), "{why}");
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        meta.insert(META_FORMAT, &[CURRENT]).unwrap();
        to_current(&db, &meta, &payloads, &file).unwrap();
    }
}
