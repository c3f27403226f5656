//! Cursor pagination over one key prefix of a tree, in either list order, forward from a cursor
//! (`iterator`) or backward from it (`prevIterator`, which Svix marks with a leading `-`).

use std::ops::Bound;

use serde::de::DeserializeOwned;

use super::codec::decode;
use super::keys::prefix_end;
use super::StoreError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Items after the cursor in list order.
    Next,
    /// Items before the cursor in list order.
    Prev,
}

/// One page request. `cursor` is the key suffix (after the prefix) of the item to start beside.
#[derive(Debug, Clone)]
pub struct PageQuery {
    pub limit: usize,
    pub cursor: Option<(Vec<u8>, Direction)>,
    /// List newest (greatest key) first.
    pub descending: bool,
}

#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// No more items in the direction of travel.
    pub done: bool,
}

/// The records of one page under `prefix`, in list order, skipping those `keep` rejects.
pub fn scan<T: DeserializeOwned>(
    tree: &sled::Tree,
    prefix: &[u8],
    q: &PageQuery,
    keep: impl Fn(&T) -> bool,
) -> Result<Page<T>, StoreError> {
    let page = scan_entries(tree, prefix, q, |_: &[u8], v: &T| keep(v))?;
    Ok(Page {
        items: page.items.into_iter().map(|(_, v)| v).collect(),
        done: page.done,
    })
}

/// Like [`scan`], with each record's key.
pub fn scan_entries<T: DeserializeOwned>(
    tree: &sled::Tree,
    prefix: &[u8],
    q: &PageQuery,
    keep: impl Fn(&[u8], &T) -> bool,
) -> Result<Page<(sled::IVec, T)>, StoreError> {
    let direction = q.cursor.as_ref().map_or(Direction::Next, |c| c.1);
    // Walking keys upward serves ascending lists going forward and descending lists going back.
    let upward = q.descending == (direction == Direction::Prev);
    let cursor_key = q
        .cursor
        .as_ref()
        .map(|(suffix, _)| [prefix, suffix].concat());
    let upper = prefix_end(prefix).map_or(Bound::Unbounded, Bound::Excluded);
    let lower = Bound::Included(prefix.to_vec());
    let (lo, hi) = match (cursor_key, upward) {
        (Some(k), true) => (Bound::Excluded(k), upper),
        (Some(k), false) => (lower, Bound::Excluded(k)),
        (None, _) => (lower, upper),
    };
    let range = tree.range::<Vec<u8>, _>((lo, hi));
    let range: Box<dyn Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>> = if upward {
        Box::new(range)
    } else {
        Box::new(range.rev())
    };
    let mut items = Vec::with_capacity(q.limit.min(256) + 1);
    for r in range {
        let (k, v) = r?;
        let item: T = decode(&v)?;
        if keep(&k, &item) {
            items.push((k, item));
            if items.len() > q.limit {
                break;
            }
        }
    }
    let done = items.len() <= q.limit;
    items.truncate(q.limit);
    if direction == Direction::Prev {
        items.reverse();
    }
    Ok(Page { items, done })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::codec::encode;

    fn tree() -> sled::Tree {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let t = db.open_tree("t").unwrap();
        for i in 0..10u8 {
            t.insert([b'a', i], encode(&i).unwrap()).unwrap();
            t.insert([b'b', i], encode(&(100 + i)).unwrap()).unwrap();
        }
        t.insert([b'c'], encode(&200u8).unwrap()).unwrap();
        t
    }

    fn vals(p: &Page<u8>) -> Vec<u8> {
        p.items.clone()
    }

    #[test]
    fn pages_forward_and_back_in_both_orders() {
        let t = tree();
        let q = |limit, cursor: Option<(u8, Direction)>, descending| PageQuery {
            limit,
            cursor: cursor.map(|(c, d)| (vec![c], d)),
            descending,
        };
        let p = scan::<u8>(&t, b"b", &q(4, None, false), |_| true).unwrap();
        assert_eq!((vals(&p), p.done), (vec![100, 101, 102, 103], false));
        let p = scan::<u8>(&t, b"b", &q(4, Some((7, Direction::Next)), false), |_| true).unwrap();
        assert_eq!((vals(&p), p.done), (vec![108, 109], true));
        let p = scan::<u8>(&t, b"b", &q(3, Some((7, Direction::Prev)), false), |_| true).unwrap();
        assert_eq!((vals(&p), p.done), (vec![104, 105, 106], false));
        let p = scan::<u8>(&t, b"b", &q(4, None, true), |_| true).unwrap();
        assert_eq!((vals(&p), p.done), (vec![109, 108, 107, 106], false));
        let p = scan::<u8>(&t, b"b", &q(4, Some((2, Direction::Next)), true), |_| true).unwrap();
        assert_eq!((vals(&p), p.done), (vec![101, 100], true));
        let p = scan::<u8>(&t, b"b", &q(2, Some((2, Direction::Prev)), true), |_| true).unwrap();
        assert_eq!((vals(&p), p.done), (vec![104, 103], false));
        let p = scan::<u8>(&t, b"b", &q(10, None, false), |_| true).unwrap();
        assert_eq!((p.items.len(), p.done), (10, true));
    }

    #[test]
    fn empty_prefix_walks_the_whole_tree() {
        let t = tree();
        let p = scan::<u8>(
            &t,
            b"",
            &PageQuery {
                limit: 100,
                cursor: None,
                descending: false,
            },
            |_| true,
        )
        .unwrap();
        assert_eq!(p.items.len(), 21);
        assert!(p.done);
    }

    #[test]
    fn filtered_pages_are_full_pages() {
        let t = tree();
        let q = PageQuery {
            limit: 3,
            cursor: None,
            descending: false,
        };
        let p = scan::<u8>(&t, b"b", &q, |v| v % 2 == 1).unwrap();
        assert_eq!((vals(&p), p.done), (vec![101, 103, 105], false));
        let q = PageQuery {
            limit: 3,
            cursor: Some((vec![5], Direction::Next)),
            descending: false,
        };
        let p = scan::<u8>(&t, b"b", &q, |v| v % 2 == 1).unwrap();
        assert_eq!((vals(&p), p.done), (vec![107, 109], true));
    }
}
