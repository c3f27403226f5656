//! List parameters (`limit`, `iterator`, `order`) and the list envelope Svix clients expect:
//! `{"data", "iterator", "prevIterator", "done"}` with `iterator` always present.

use serde::Serialize;

use super::error::ApiError;
use super::query::Query;
use crate::domain::ValidationError;
use crate::store::{Direction, Page, PageQuery, SCAN_RECORDS};

pub const DEFAULT_LIMIT: usize = 50;
pub const MAX_LIMIT: usize = 250;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListResponse<T: Serialize> {
    pub data: Vec<T>,
    pub iterator: Option<String>,
    pub prev_iterator: Option<String>,
    pub done: bool,
}

/// A page request read from the query, with the cursor still in API form.
pub struct ListParams {
    pub limit: usize,
    /// The cursor as given, without the `-` that marks a backward one.
    pub cursor: Option<(String, Direction)>,
    pub descending: bool,
    /// Records a page reads at most (see [`ListParams::scanning`]).
    pub max_scan: usize,
}

impl ListParams {
    /// `default_descending`: the resource's natural order (newest first for messages and attempts).
    pub fn parse(q: &Query, default_descending: bool) -> Result<ListParams, ApiError> {
        let limit = match q.get("limit") {
            None => DEFAULT_LIMIT,
            Some(v) => match v.parse::<usize>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
                _ => {
                    return Err(ValidationError::new(
                        "query.limit",
                        format!("must be an integer from 1 to {MAX_LIMIT}"),
                    )
                    .into())
                }
            },
        };
        let cursor =
            q.get("iterator")
                .filter(|s| !s.is_empty())
                .map(|it| match it.strip_prefix('-') {
                    Some(rest) => (rest.to_string(), Direction::Prev),
                    None => (it.to_string(), Direction::Next),
                });
        let descending = match q.get("order") {
            None => default_descending,
            Some("ascending") => false,
            Some("descending") => true,
            Some(_) => {
                return Err(
                    ValidationError::new("query.order", "must be ascending or descending").into(),
                )
            }
        };
        Ok(ListParams {
            limit,
            cursor,
            descending,
            max_scan: SCAN_RECORDS,
        })
    }

    /// Read at most `max_scan` records for a page (`limits.max_list_scan`), kept or not: a
    /// filtered page that reaches it ends early, `done: false`, with an iterator to go on from.
    pub fn scanning(mut self, max_scan: usize) -> Self {
        self.max_scan = max_scan;
        self
    }

    /// The store's page query, with the cursor turned into a key suffix by `to_key` (an unparseable
    /// cursor is a 422, not an empty page).
    pub fn to_page_query(
        &self,
        to_key: impl Fn(&str) -> Option<Vec<u8>>,
    ) -> Result<PageQuery, ApiError> {
        let cursor = match &self.cursor {
            None => None,
            Some((c, d)) => Some((
                to_key(c).ok_or_else(|| {
                    ValidationError::new("query.iterator", "is not a valid iterator")
                })?,
                *d,
            )),
        };
        Ok(PageQuery {
            limit: self.limit,
            cursor,
            descending: self.descending,
            max_scan: self.max_scan,
        })
    }
}

/// `iterator` and `prevIterator` of a page: `iterator` continues after the last item,
/// `prevIterator` goes back from the first. A page that stopped on its budget past records it did
/// not keep continues from the last record read instead (`key_id` names it), in the direction it
/// was read, so a client following iterators skips nothing and reads nothing twice.
fn iterators<S>(
    page: &Page<S>,
    id_of: impl Fn(&S) -> String,
    key_id: impl Fn(&[u8]) -> Option<String>,
) -> (Option<String>, Option<String>) {
    let resume = page.resume.as_deref().and_then(key_id);
    let last = page.items.last().map(&id_of);
    let first = page.items.first().map(&id_of);
    let (next, prev) = match page.direction {
        Direction::Next => (resume.or(last), first),
        Direction::Prev => (last, resume.or(first)),
    };
    (next, prev.map(|p| format!("-{p}")))
}

/// The iterator of a record whose key ends with the KSUID of an id with this prefix (`msg_`, ...).
pub fn ksuid_key(prefix: &'static str) -> impl Fn(&[u8]) -> Option<String> {
    move |k| {
        std::str::from_utf8(k)
            .ok()
            .map(|ksuid| format!("{prefix}{ksuid}"))
    }
}

/// Wrap a page (see [`iterators`]).
pub fn list_response<T: Serialize, S>(
    page: Page<S>,
    id_of: impl Fn(&S) -> String,
    key_id: impl Fn(&[u8]) -> Option<String>,
    out: impl Fn(S) -> T,
) -> ListResponse<T> {
    let (iterator, prev_iterator) = iterators(&page, id_of, key_id);
    ListResponse {
        data: page.items.into_iter().map(out).collect(),
        iterator,
        prev_iterator,
        done: page.done,
    }
}

/// The list envelope written straight to JSON bytes, each item written and dropped in turn, so a
/// page of large records is never held twice (records and their JSON) nor in a JSON tree.
/// `write_item` says whether it wrote the item (one gone meanwhile is left out). `capacity`: the
/// expected size, to write without regrowing.
pub fn list_json<S>(
    page: Page<S>,
    id_of: impl Fn(&S) -> String,
    key_id: impl Fn(&[u8]) -> Option<String>,
    capacity: usize,
    mut write_item: impl FnMut(&mut Vec<u8>, S) -> Result<bool, ApiError>,
) -> Result<Vec<u8>, ApiError> {
    let (iterator, prev_iterator) = iterators(&page, id_of, key_id);
    let done = page.done;
    let mut buf = Vec::with_capacity(capacity);
    buf.extend_from_slice(b"{\"data\":[");
    let mut written = 0;
    for item in page.items {
        let mark = buf.len();
        if written > 0 {
            buf.push(b',');
        }
        if write_item(&mut buf, item)? {
            written += 1;
        } else {
            buf.truncate(mark);
        }
    }
    buf.extend_from_slice(b"],\"iterator\":");
    let json = |buf: &mut Vec<u8>, v: &Option<String>| {
        serde_json::to_writer(buf, v).map_err(|e| ApiError::Internal(e.to_string()))
    };
    json(&mut buf, &iterator)?;
    buf.extend_from_slice(b",\"prevIterator\":");
    json(&mut buf, &prev_iterator)?;
    buf.extend_from_slice(if done {
        b",\"done\":true}"
    } else {
        b",\"done\":false}"
    });
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(items: Vec<u8>, resume: Option<u8>, direction: Direction) -> Page<u8> {
        Page {
            items,
            done: false,
            resume: resume.map(|r| vec![r]),
            direction,
        }
    }

    fn its(p: &Page<u8>) -> (Option<String>, Option<String>) {
        iterators(p, |v| v.to_string(), |k| Some(format!("k{}", k[0])))
    }

    #[test]
    fn a_page_stopped_past_its_items_continues_from_the_last_record_read() {
        let s = |x: &str| Some(x.to_string());
        assert_eq!(
            its(&page(vec![1, 2], None, Direction::Next)),
            (s("2"), s("-1"))
        );
        assert_eq!(
            its(&page(vec![1, 2], Some(9), Direction::Next)),
            (s("k9"), s("-1"))
        );
        assert_eq!(
            its(&page(vec![], Some(9), Direction::Next)),
            (s("k9"), None)
        );
        assert_eq!(
            its(&page(vec![5, 6], Some(2), Direction::Prev)),
            (s("6"), s("-k2"))
        );
        assert_eq!(its(&page(vec![], None, Direction::Next)), (None, None));
    }

    #[test]
    fn the_written_envelope_is_the_serialised_one() {
        let p = || page(vec![1, 2], Some(9), Direction::Next);
        let written = list_json(
            p(),
            |v| v.to_string(),
            |k| Some(format!("k{}", k[0])),
            0,
            |b, v| {
                serde_json::to_writer(b, &v).map_err(|e| ApiError::Internal(e.to_string()))?;
                Ok(true)
            },
        )
        .unwrap();
        let serialised = serde_json::to_vec(&list_response(
            p(),
            |v| v.to_string(),
            |k| Some(format!("k{}", k[0])),
            |v| v,
        ))
        .unwrap();
        assert_eq!(
            String::from_utf8(written).unwrap(),
            String::from_utf8(serialised).unwrap()
        );
    }

    #[test]
    fn items_gone_meanwhile_are_left_out_of_the_written_list() {
        let skip = |keep: fn(u8) -> bool| {
            let p = page(vec![1, 2, 3], None, Direction::Next);
            let out = list_json(
                p,
                |v| v.to_string(),
                |_| None,
                0,
                |b, v| {
                    if !keep(v) {
                        return Ok(false);
                    }
                    serde_json::to_writer(b, &v).map_err(|e| ApiError::Internal(e.to_string()))?;
                    Ok(true)
                },
            )
            .unwrap();
            let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
            v["data"].clone()
        };
        assert_eq!(skip(|v| v != 2), serde_json::json!([1, 3]));
        assert_eq!(skip(|v| v != 1), serde_json::json!([2, 3]));
        assert_eq!(skip(|_| false), serde_json::json!([]));
    }
}
