//! Idempotency records: what a POST answered, kept under its scoped key until it expires, so that
//! a repeat answers the same and does nothing. A message create keeps only the message's id and
//! rebuilds its answer from the message (a payload is never stored twice); other POSTs keep their
//! small answer, sealed under the main key since one of them carries a new signing secret.
//! Owns the `idempotency` tree and its purge; message create writes its record in its own
//! transaction (`messages`), through the codec here.

use serde::{Deserialize, Serialize};

use super::codec::{decode_as, encode_as};
use super::seal::Sealer;
use super::{Store, StoreError};
use crate::domain::{AppId, MessageId, Timestamp};

/// Format 1 (before answers were rebuilt): the whole answer in clear, payload included. Still
/// read, so records written by an older Herald replay until they expire.
const FORMAT_WHOLE_ANSWER: u8 = 1;
/// Format 2: an `IdempotencyRecord`, its `Response` body sealed.
const FORMAT_RECORD: u8 = 2;

/// What a repeat of the request answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Answer {
    /// The answer itself: status and JSON body.
    Response { status: u16, body: Vec<u8> },
    /// The message the request created: the answer is rebuilt from it.
    Message {
        app_id: AppId,
        msg_id: MessageId,
        status: u16,
        with_content: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotencyRecord {
    pub answer: Answer,
    pub expires_at: Timestamp,
}

#[derive(Deserialize)]
struct WholeAnswer {
    status: u16,
    body: Vec<u8>,
    expires_at: Timestamp,
}

/// Associated data of a sealed answer: it opens only under the key it was stored at.
fn aad(key: &[u8; 32]) -> Vec<u8> {
    [b"idempotency/".as_slice(), key].concat()
}

impl IdempotencyRecord {
    pub(super) fn encode(&self, sealer: &Sealer, key: &[u8; 32]) -> Result<Vec<u8>, StoreError> {
        match &self.answer {
            Answer::Response { status, body } => encode_as(
                FORMAT_RECORD,
                &IdempotencyRecord {
                    answer: Answer::Response {
                        status: *status,
                        body: sealer.seal(body, &aad(key))?,
                    },
                    expires_at: self.expires_at,
                },
            ),
            Answer::Message { .. } => encode_as(FORMAT_RECORD, self),
        }
    }

    /// The record stored as `bytes` at `key`, if it can be read and has not expired. A record
    /// that cannot be read counts as absent: it must not block its key, and the worst outcome of
    /// ignoring it is that the request runs again.
    pub(super) fn live(sealer: &Sealer, key: &[u8; 32], bytes: &[u8]) -> Option<Self> {
        let r = match Self::decode(sealer, key, bytes) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "unreadable idempotency record ignored");
                return None;
            }
        };
        (r.expires_at > Timestamp::now()).then_some(r)
    }

    fn decode(sealer: &Sealer, key: &[u8; 32], bytes: &[u8]) -> Result<Self, StoreError> {
        if bytes.first() == Some(&FORMAT_WHOLE_ANSWER) {
            let w: WholeAnswer = decode_as(FORMAT_WHOLE_ANSWER, bytes)?;
            return Ok(IdempotencyRecord {
                answer: Answer::Response {
                    status: w.status,
                    body: w.body,
                },
                expires_at: w.expires_at,
            });
        }
        let mut r: IdempotencyRecord = decode_as(FORMAT_RECORD, bytes)?;
        if let Answer::Response { body, .. } = &mut r.answer {
            *body = sealer.open(body, &aad(key))?;
        }
        Ok(r)
    }

    /// When the record stored as `bytes` expires (without opening it), if it can be read.
    fn expiry(bytes: &[u8]) -> Option<Timestamp> {
        match bytes.first() {
            Some(&FORMAT_WHOLE_ANSWER) => decode_as::<WholeAnswer>(FORMAT_WHOLE_ANSWER, bytes)
                .ok()
                .map(|w| w.expires_at),
            _ => decode_as::<IdempotencyRecord>(FORMAT_RECORD, bytes)
                .ok()
                .map(|r| r.expires_at),
        }
    }
}

impl Store {
    /// The answer kept under `key`, if any. Returns once that record is on disk: the request that
    /// wrote it may still be waiting for its commit, and a repeat must not promise more than it.
    pub async fn idempotent_answer(&self, key: &[u8; 32]) -> Result<Option<Answer>, StoreError> {
        let Some(v) = self.inner.idempotency.get(key)? else {
            return Ok(None);
        };
        let Some(r) = IdempotencyRecord::live(&self.inner.sealer, key, &v) else {
            return Ok(None);
        };
        self.durable().await?;
        Ok(Some(r.answer))
    }

    /// Keep `record` under `key` (replacing any); returns once it is on disk.
    pub async fn keep_idempotent_answer(
        &self,
        key: &[u8; 32],
        record: &IdempotencyRecord,
    ) -> Result<(), StoreError> {
        let value = record.encode(&self.inner.sealer, key)?;
        let gate = self.write_gate();
        self.inner.idempotency.insert(key, value)?;
        {
            drop(gate);
            self.durable().await
        }
    }

    /// Drop records past their expiry, and unreadable ones (a periodic sweep). Returns how many
    /// went.
    pub fn purge_expired_idempotency(&self) -> Result<usize, StoreError> {
        let _gate = self.write_gate();
        let now = Timestamp::now();
        let mut n = 0;
        for r in self.inner.idempotency.iter() {
            let (k, v) = r?;
            let expired = IdempotencyRecord::expiry(&v).is_none_or(|t| t <= now);
            if expired && self.inner.idempotency.remove(&k)?.is_some() {
                n += 1;
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::super::codec::encode;
    use super::super::StoreOptions;
    use super::*;
    use crate::domain::{Message, MessageId};

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &StoreOptions::for_tests()).unwrap();
        (dir, store)
    }

    fn later() -> Timestamp {
        Timestamp::now().plus_seconds(3600)
    }

    #[tokio::test]
    async fn answers_round_trip_and_are_sealed_at_rest() {
        let (_dir, s) = store();
        let key = [1u8; 32];
        let body = br#"{"key":"whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQ="}"#.to_vec();
        let record = IdempotencyRecord {
            answer: Answer::Response {
                status: 200,
                body: body.clone(),
            },
            expires_at: later(),
        };
        s.keep_idempotent_answer(&key, &record).await.unwrap();
        let raw = s.inner.idempotency.get(key).unwrap().unwrap();
        assert_eq!(raw[0], FORMAT_RECORD);
        assert!(
            !raw.windows(5).any(|w| w == b"whsec"),
            "an answer is stored sealed"
        );
        assert_eq!(
            s.idempotent_answer(&key).await.unwrap(),
            Some(record.answer)
        );
        assert_eq!(s.idempotent_answer(&[2u8; 32]).await.unwrap(), None);
        // Sealed for its own key only: moved to another key, it does not open, so it is absent.
        s.inner.idempotency.insert([3u8; 32], raw).unwrap();
        assert_eq!(s.idempotent_answer(&[3u8; 32]).await.unwrap(), None);
    }

    /// A message create's record holds the message id, not the payload: its size does not grow
    /// with the payload.
    #[tokio::test]
    async fn a_message_record_does_not_hold_the_payload() {
        let (_dir, s) = store();
        let app = AppId::generate();
        let now = Timestamp::now();
        let payload = format!(r#"{{"blob":"{}"}}"#, "x".repeat(500_000)).into_bytes();
        let msg = Message {
            id: MessageId::generate(),
            app_id: app.clone(),
            event_type: "a.b".into(),
            event_id: None,
            channels: None,
            tags: None,
            payload: payload.clone(),
            created_at: now,
            destinations: Vec::new(),
            deliver_at: None,
            payload_expires_at: None,
            expunged: false,
        };
        let key = [9u8; 32];
        let record = IdempotencyRecord {
            answer: Answer::Message {
                app_id: app.clone(),
                msg_id: msg.id.clone(),
                status: 202,
                with_content: true,
            },
            expires_at: later(),
        };
        s.create_message(&msg, Some((&key, &record))).await.unwrap();
        let raw = s.inner.idempotency.get(key).unwrap().unwrap();
        assert!(raw.len() < 200, "record of {} bytes", raw.len());
        assert_eq!(
            s.idempotent_answer(&key).await.unwrap(),
            Some(record.answer)
        );
        let stored = s.get_message(&app, msg.id.as_str()).unwrap().unwrap();
        assert_eq!(stored.payload, payload);
    }

    #[tokio::test]
    async fn old_records_replay_and_expired_or_unreadable_ones_are_absent_and_purged() {
        #[derive(Serialize)]
        struct Old {
            status: u16,
            body: Vec<u8>,
            expires_at: Timestamp,
        }
        let (_dir, s) = store();
        let t = &s.inner.idempotency;
        let old = |expires_at| {
            encode(&Old {
                status: 202,
                body: b"{\"id\":\"msg_x\"}".to_vec(),
                expires_at,
            })
            .unwrap()
        };
        t.insert([1u8; 32], old(later())).unwrap();
        t.insert([2u8; 32], old(Timestamp::now().plus_seconds(-1)))
            .unwrap();
        t.insert([3u8; 32], vec![FORMAT_RECORD, 0xff, 0xff])
            .unwrap();
        t.insert([4u8; 32], vec![77, 1, 2, 3]).unwrap();
        let fresh = IdempotencyRecord {
            answer: Answer::Response {
                status: 201,
                body: b"{}".to_vec(),
            },
            expires_at: later(),
        };
        s.keep_idempotent_answer(&[5u8; 32], &fresh).await.unwrap();
        assert_eq!(
            s.idempotent_answer(&[1u8; 32]).await.unwrap(),
            Some(Answer::Response {
                status: 202,
                body: b"{\"id\":\"msg_x\"}".to_vec()
            }),
            "a format-1 record still replays"
        );
        for k in [2u8, 3, 4] {
            assert_eq!(
                s.idempotent_answer(&[k; 32]).await.unwrap(),
                None,
                "key {k}"
            );
        }
        assert_eq!(s.purge_expired_idempotency().unwrap(), 3);
        let left: Vec<u8> = t.iter().keys().map(|k| k.unwrap()[0]).collect();
        assert_eq!(left, vec![1, 5]);
    }
}
