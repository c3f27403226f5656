//! `herald check`: an offline check of a stopped store, and its repair. It reads every payload
//! file record by record (checksums), every message record against the payload it points at, and
//! every queue entry against its message, and reports what does not fit:
//!
//! - a torn tail (a file that ends inside a record, or bytes that are no record): cut;
//! - a damaged payload (checksum mismatch) or a missing one: the message cannot be delivered or
//!   shown, so repair removes its record, its eventId entry and (as orphans) its queued tasks;
//! - a queue entry that is malformed or whose message is gone: removed;
//! - payload records no message points at (a create refused after its payload was written, or
//!   not acknowledged before a crash): harmless, counted; repair releases their bytes.
//!
//! Repair writes only after the whole check, and fsyncs what it changed.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::fs::File;
use std::path::{Path, PathBuf};

use super::codec::decode;
use super::delivery::{decode_attempt_record, encode_attempt_inline};
use super::messages::decode_message;
use super::payloads::{self, PayloadRef};
use super::{keys, StoreError, FORMAT_DIR};
use crate::domain::Task;

/// Problems described one by one in a report; the rest are counted.
const DESCRIBED: usize = 100;

#[derive(Debug, Default)]
pub struct CheckReport {
    pub payload_files: usize,
    pub payload_records: u64,
    pub messages: u64,
    pub queued: u64,
    /// Payload records no message points at, and their bytes.
    pub orphan_payloads: u64,
    pub orphan_payload_bytes: u64,
    /// Problems other than orphan payloads (which are harmless).
    pub problems: u64,
    /// The first problems, in words.
    pub described: Vec<String>,
    /// What repair did, in words.
    pub repaired: Vec<String>,
}

impl CheckReport {
    fn problem(&mut self, what: String) {
        self.problems += 1;
        if self.described.len() < DESCRIBED {
            self.described.push(what);
        }
    }

    /// Nothing wrong but (possibly) orphan payloads.
    pub fn is_clean(&self) -> bool {
        self.problems == 0
    }

    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "payload files: {}, payload records: {}, messages: {}, queued tasks: {}",
            self.payload_files, self.payload_records, self.messages, self.queued
        );
        let _ = writeln!(
            s,
            "unreferenced payload records: {} ({} bytes; harmless)",
            self.orphan_payloads, self.orphan_payload_bytes
        );
        for d in &self.described {
            let _ = writeln!(s, "problem: {d}");
        }
        if self.problems > self.described.len() as u64 {
            let _ = writeln!(
                s,
                "... and {} more problems",
                self.problems - self.described.len() as u64
            );
        }
        for r in &self.repaired {
            let _ = writeln!(s, "repaired: {r}");
        }
        let _ = writeln!(
            s,
            "{}",
            match (self.problems, self.repaired.is_empty()) {
                (0, _) => "the store is consistent".to_string(),
                (n, true) => format!("{n} problems found; run with --repair to fix them"),
                (n, false) => format!("{n} problems found and repaired"),
            }
        );
        s
    }
}

/// Check the stopped store in `data_dir`; with `repair`, fix what was found.
pub fn check(data_dir: &Path, repair: bool) -> Result<CheckReport, StoreError> {
    let dir = data_dir.join(FORMAT_DIR);
    if !dir.join("db").is_file() {
        return Err(StoreError::Io(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("no Herald store in {}", data_dir.display()),
        )));
    }
    let db = sled::Config::new()
        .path(&dir)
        .cache_capacity(64 * 1024 * 1024)
        .open()
        .map_err(|e| match e {
            sled::Error::Io(ref io) if io.to_string().contains("could not acquire lock") => {
                StoreError::Locked(data_dir.to_path_buf())
            }
            other => StoreError::Sled(other),
        })?;
    let mut report = CheckReport::default();

    // Payload files: every good record, the damaged ones, and torn tails.
    let mut good: HashMap<(u64, u64), ([u8; 54], u32)> = HashMap::new();
    let mut damaged: HashMap<(u64, u64), u32> = HashMap::new();
    let mut torn: Vec<PathBuf> = Vec::new();
    let mut unfinished: Vec<(u64, PathBuf)> = Vec::new();
    let files = payloads::list_dir(&dir.join(payloads::DIR))?;
    report.payload_files = files.len();
    for (id, open, path) in &files {
        let scan = payloads::check_file(path)?;
        let name = payloads::name_of(*id);
        for r in &scan.records {
            if !r.removed {
                good.insert((*id, r.offset), (r.key, r.len));
            }
        }
        report.payload_records += scan.records.len() as u64;
        for r in &scan.damaged {
            damaged.insert((*id, r.offset), r.len);
            report.problem(format!(
                "{name}: the record at offset {} is damaged (checksum mismatch)",
                r.offset
            ));
        }
        if let Some((at, why)) = scan.stop {
            report.problem(format!(
                "{name}: torn tail at offset {at} ({why}; {} bytes)",
                scan.len - at
            ));
            torn.push(path.clone());
        }
        if *open {
            unfinished.push((*id, path.clone()));
        }
    }

    // Message records against their payloads.
    let messages = db.open_tree(keys::TREE_MESSAGES)?;
    let event_ids = db.open_tree(keys::TREE_MSG_EVENT_ID)?;
    let mut referenced: HashSet<(u64, u64)> = HashSet::new();
    let mut lost: Vec<(Vec<u8>, Option<Vec<u8>>)> = Vec::new();
    for r in messages.iter() {
        let (k, v) = r?;
        report.messages += 1;
        let (msg, at) = match decode_message(&k, &v) {
            Ok(m) => m,
            Err(e) => {
                report.problem(format!("a message record cannot be read: {e}"));
                lost.push((k.to_vec(), None));
                continue;
            }
        };
        if msg.expunged {
            continue;
        }
        let Some(PayloadRef {
            segment,
            offset,
            len,
        }) = at
        else {
            report.problem(format!(
                "{}: format 1 record (start Herald once to upgrade the store)",
                msg.id
            ));
            continue;
        };
        let where_ = format!("{}:{offset}", payloads::name_of(segment));
        match good.get(&(segment, offset)) {
            Some((key, l)) if key.as_slice() == k.as_ref() && *l == len => {
                referenced.insert((segment, offset));
                continue;
            }
            Some(_) => report.problem(format!(
                "{}: its payload at {where_} belongs to another message",
                msg.id
            )),
            None if damaged.contains_key(&(segment, offset)) => report.problem(format!(
                "{}: its payload at {where_} is damaged; the message is lost",
                msg.id
            )),
            None => report.problem(format!(
                "{}: its payload at {where_} is missing; the message is lost",
                msg.id
            )),
        }
        let event_key = msg
            .event_id
            .as_deref()
            .map(|e| keys::msg_event_id(&msg.app_id, e));
        lost.push((k.to_vec(), event_key));
    }
    let lost_keys: HashSet<Vec<u8>> = lost.iter().map(|(k, _)| k.clone()).collect();

    // Long response bodies of attempts are in the payload log too. One that is damaged or
    // missing shows as unavailable; the attempt itself stays.
    let attempts = db.open_tree(keys::TREE_ATTEMPTS)?;
    let mut bodies_lost = Vec::new();
    for r in attempts.iter() {
        let (k, v) = r?;
        let Ok((a, Some(at))) = decode_attempt_record(&k, &v) else {
            continue;
        };
        let key = keys::attempt_body(&a.app_id, &a.id);
        match good.get(&(at.segment, at.offset)) {
            Some((k, l)) if k.as_slice() == key.as_slice() && *l == at.len => {
                referenced.insert((at.segment, at.offset));
            }
            _ => {
                report.problem(format!(
                    "attempt {}: its response body at {}:{} is damaged or missing",
                    a.id,
                    payloads::name_of(at.segment),
                    at.offset
                ));
                bodies_lost.push((k, a));
            }
        }
    }

    // Queue entries against their messages.
    let queue = db.open_tree(keys::TREE_QUEUE)?;
    let mut orphan_tasks = Vec::new();
    for r in queue.iter() {
        let (k, v) = r?;
        report.queued += 1;
        let parsed = keys::queue_due(&k).and(keys::endpoint_of(&k));
        let task: Option<Task> = decode(&v).ok();
        match (parsed, task) {
            (Some((app, _)), Some(task)) => {
                let mk = keys::message(&app, &task.msg_id);
                if lost_keys.contains(&mk) || !messages.contains_key(&mk)? {
                    report.problem(format!("a queued task of {} has no message", task.msg_id));
                    orphan_tasks.push(k);
                }
            }
            _ => {
                report.problem("a queue entry is malformed".to_string());
                orphan_tasks.push(k);
            }
        }
    }

    let orphans: Vec<(u64, u64, u32)> = good
        .iter()
        .filter(|(at, _)| !referenced.contains(at))
        .map(|((seg, off), (_, len))| (*seg, *off, *len))
        .collect();
    report.orphan_payloads = orphans.len() as u64;
    report.orphan_payload_bytes = orphans
        .iter()
        .map(|(_, _, len)| u64::from(*len) + payloads::HEADER_LEN as u64)
        .sum();

    if !repair {
        return Ok(report);
    }
    for path in &torn {
        let cut = payloads::cut_torn_tail(path)?;
        report.repaired.push(format!(
            "cut {cut} bytes from the end of {}",
            path.display()
        ));
    }
    for (id, path) in &unfinished {
        std::fs::rename(path, path.with_file_name(payloads::name_of(*id)))?;
    }
    if !lost.is_empty() {
        for (k, event_key) in &lost {
            messages.remove(k)?;
            if let Some(ek) = event_key {
                event_ids.remove(ek)?;
            }
        }
        report.repaired.push(format!(
            "removed {} messages whose payload is lost",
            lost.len()
        ));
    }
    if !bodies_lost.is_empty() {
        for (k, mut a) in std::mem::take(&mut bodies_lost) {
            a.response = "[response body lost; removed by herald check --repair]".into();
            attempts.insert(k, encode_attempt_inline(&a)?)?;
            report
                .repaired
                .push(format!("marked the response body of attempt {} lost", a.id));
        }
    }
    if !orphan_tasks.is_empty() {
        for k in &orphan_tasks {
            queue.remove(k)?;
        }
        report.repaired.push(format!(
            "removed {} queued tasks without a message",
            orphan_tasks.len()
        ));
    }
    db.flush()?;
    File::open(dir.join("db"))?.sync_all()?;
    // Orphan payloads go after the records are on disk (none points at them anyway).
    let paths: HashMap<u64, PathBuf> = payloads::list_dir(&dir.join(payloads::DIR))?
        .into_iter()
        .map(|(id, _, p)| (id, p))
        .collect();
    let damaged: Vec<(u64, u64, u32)> = damaged
        .into_iter()
        .map(|((seg, off), len)| (seg, off, len))
        .collect();
    for (seg, off, len) in orphans.iter().chain(&damaged) {
        if let Some(p) = paths.get(seg) {
            payloads::remove_record(p, *off, *len)?;
        }
    }
    if !damaged.is_empty() {
        report.repaired.push(format!(
            "marked {} damaged payload records removed",
            damaged.len()
        ));
    }
    if !orphans.is_empty() {
        report.repaired.push(format!(
            "released {} unreferenced payload records",
            orphans.len()
        ));
    }
    crate::fsio::sync_dir(&dir.join(payloads::DIR))?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::unix::fs::FileExt;

    use super::*;
    use crate::domain::*;
    use crate::store::{Store, StoreOptions};

    fn msg(app: &AppId, n: u8) -> Message {
        Message {
            id: MessageId::generate(),
            app_id: app.clone(),
            event_type: "a.b".into(),
            event_id: Some(format!("e{n}")),
            channels: None,
            tags: None,
            payload: format!("{{\"n\":{n},\"pad\":\"{}\"}}", "x".repeat(200)).into_bytes(),
            created_at: Timestamp::now(),
            destinations: vec![EndpointId::generate()],
            deliver_at: None,
            payload_expires_at: None,
            expunged: false,
        }
    }

    #[tokio::test]
    async fn a_torn_tail_and_a_flipped_byte_are_found_and_repaired() {
        let dir = tempfile::tempdir().unwrap();
        let app = AppId::generate();
        let msgs: Vec<Message> = (0..3).map(|n| msg(&app, n)).collect();
        {
            let store = Store::open(dir.path(), &StoreOptions::for_tests()).unwrap();
            for m in &msgs {
                store.create_message(m, None).await.unwrap();
            }
            store.close().unwrap();
        }
        let clean = check(dir.path(), false).unwrap();
        assert!(clean.is_clean(), "{}", clean.render());
        assert_eq!((clean.messages, clean.queued), (3, 3));
        assert_eq!(clean.orphan_payloads, 0);

        // Damage: one payload byte flipped, and half a record at the end of the file.
        let files = payloads::list_dir(&dir.path().join(FORMAT_DIR).join(payloads::DIR)).unwrap();
        assert_eq!(files.len(), 1);
        let path = &files[0].2;
        let scan = payloads::check_file(path).unwrap();
        let victim = keys::message(&app, &msgs[1].id);
        let rec = scan
            .records
            .iter()
            .find(|r| r.key.as_slice() == victim.as_slice())
            .unwrap();
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .unwrap();
        f.write_all_at(b"#", rec.offset + payloads::HEADER_LEN as u64 + 5)
            .unwrap();
        let mut tail = std::fs::OpenOptions::new().append(true).open(path).unwrap();
        tail.write_all(b"HPL1\0\0\x10\0garbage").unwrap();

        let found = check(dir.path(), false).unwrap();
        let text = found.render();
        assert!(!found.is_clean());
        assert!(text.contains("torn tail"), "{text}");
        assert!(text.contains("damaged (checksum mismatch)"), "{text}");
        assert!(
            text.contains(&format!("{}: its payload", msgs[1].id)),
            "{text}"
        );
        assert!(text.contains("run with --repair"), "{text}");

        let repaired = check(dir.path(), true).unwrap();
        assert!(!repaired.repaired.is_empty(), "{}", repaired.render());
        let after = check(dir.path(), false).unwrap();
        assert!(after.is_clean(), "{}", after.render());
        assert_eq!((after.messages, after.queued), (2, 2));

        let store = Store::open(dir.path(), &StoreOptions::for_tests()).unwrap();
        for (n, m) in msgs.iter().enumerate() {
            let got = store.get_message(&app, m.id.as_str()).unwrap();
            if n == 1 {
                assert!(got.is_none(), "the damaged message is gone");
                assert!(store.get_message(&app, "e1").unwrap().is_none());
            } else {
                assert_eq!(got.unwrap().payload, m.payload);
            }
        }
    }

    #[tokio::test]
    async fn a_running_store_is_not_checked_and_a_missing_one_is_named() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(check(dir.path(), false), Err(StoreError::Io(_))));
        assert!(!dir.path().join(FORMAT_DIR).exists(), "check made nothing");
        let _store = Store::open(dir.path(), &StoreOptions::for_tests()).unwrap();
        assert!(matches!(
            check(dir.path(), false),
            Err(StoreError::Locked(_))
        ));
    }
}
