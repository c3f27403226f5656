//! Cursor pagination over one key prefix of a tree, in either list order, forward from a cursor
//! (`iterator`) or backward from it (`prevIterator`, which Svix marks with a leading `-`). Every
//! page is bounded in the records it reads and the time it takes (a filter that matches nothing
//! must not walk a whole history), and optionally in the bytes it holds: a page that stops on a
//! budget says where, so the next page continues there and nothing is skipped.

use std::ops::Bound;
use std::time::{Duration, Instant};

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
    /// Records the page reads at most, kept or not (the API's `limits.max_list_scan`).
    pub max_scan: usize,
}

/// Records one page reads at most by default.
pub const SCAN_RECORDS: usize = 10_000;
/// Time one page reads for at most (checked after each record, so one slow record can pass it).
pub const SCAN_TIME: Duration = Duration::from_millis(50);

/// What bounds a page besides its `limit` and `max_scan`.
#[derive(Debug, Clone)]
pub struct Budget {
    pub time: Duration,
    /// The kept items' weight (by the scan's `weigh`) a page stays within; a first item heavier
    /// than this comes alone, so every page makes progress.
    pub bytes: usize,
    /// Key suffixes the page stays within: from (inclusive) and until (exclusive), e.g. a time
    /// window over time-ordered ids, so a window is a seek rather than a filter.
    pub from: Option<Vec<u8>>,
    pub until: Option<Vec<u8>>,
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            time: SCAN_TIME,
            bytes: usize::MAX,
            from: None,
            until: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// No more items in the direction of travel.
    pub done: bool,
    /// The page stopped on its budget after reading records it did not keep: the key suffix of
    /// the last record read. The next page starts beside it (in `direction`), not beside the last
    /// item, so those records are not read again and none is skipped.
    pub resume: Option<Vec<u8>>,
    /// The way the page was read (`items` are in list order either way).
    pub direction: Direction,
}

impl<T> Page<T> {
    /// A page of `items` that read no further than them.
    pub fn of(items: Vec<T>, done: bool) -> Self {
        Page {
            items,
            done,
            resume: None,
            direction: Direction::Next,
        }
    }

    /// The same page with each item changed by `f`.
    pub fn try_map<U, E>(self, f: impl FnMut(T) -> Result<U, E>) -> Result<Page<U>, E> {
        Ok(Page {
            items: self.items.into_iter().map(f).collect::<Result<_, _>>()?,
            done: self.done,
            resume: self.resume,
            direction: self.direction,
        })
    }
}

/// The records of one page under `prefix`, in list order, skipping those `keep` rejects, within
/// the default budget.
pub fn scan<T: DeserializeOwned>(
    tree: &sled::Tree,
    prefix: &[u8],
    q: &PageQuery,
    keep: impl Fn(&T) -> bool,
) -> Result<Page<T>, StoreError> {
    scan_within(
        tree,
        prefix,
        q,
        &Budget::default(),
        |_, v| decode(v).map(Some),
        keep,
        |_| 0,
    )
}

/// The general page: `load` turns a record into an item (`None` skips it, e.g. an index entry
/// whose record is gone), `keep` filters, `weigh` counts towards `budget.bytes`.
pub fn scan_within<T>(
    tree: &sled::Tree,
    prefix: &[u8],
    q: &PageQuery,
    budget: &Budget,
    mut load: impl FnMut(&[u8], &[u8]) -> Result<Option<T>, StoreError>,
    keep: impl Fn(&T) -> bool,
    weigh: impl Fn(&T) -> usize,
) -> Result<Page<T>, StoreError> {
    let started = Instant::now();
    let direction = q.cursor.as_ref().map_or(Direction::Next, |c| c.1);
    // Walking keys upward serves ascending lists going forward and descending lists going back.
    let upward = q.descending == (direction == Direction::Prev);
    let with_prefix = |suffix: &[u8]| [prefix, suffix].concat();
    let mut lower = Bound::Included(prefix.to_vec());
    let mut upper = prefix_end(prefix).map_or(Bound::Unbounded, Bound::Excluded);
    if let Some(from) = &budget.from {
        lower = Bound::Included(with_prefix(from));
    }
    if let Some(until) = &budget.until {
        upper = Bound::Excluded(with_prefix(until));
    }
    if let Some((suffix, _)) = &q.cursor {
        let k = with_prefix(suffix);
        if upward {
            lower = tighter(lower, Bound::Excluded(k), true);
        } else {
            upper = tighter(upper, Bound::Excluded(k), false);
        }
    }
    if empty_range(&lower, &upper) {
        return Ok(Page {
            items: Vec::new(),
            done: true,
            resume: None,
            direction,
        });
    }
    let range = tree.range::<Vec<u8>, _>((lower, upper));
    let range: Box<dyn Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>> = if upward {
        Box::new(range)
    } else {
        Box::new(range.rev())
    };
    let mut items = Vec::with_capacity(q.limit.min(256) + 1);
    let (mut read, mut weight) = (0usize, 0usize);
    let mut resume = None;
    let mut stopped = false;
    for r in range {
        let (k, v) = r?;
        read += 1;
        if let Some(item) = load(&k, &v)? {
            if keep(&item) {
                let w = weigh(&item);
                if !items.is_empty() && weight.saturating_add(w) > budget.bytes {
                    // Full by weight: the next page starts beside the last item kept.
                    stopped = true;
                    break;
                }
                weight = weight.saturating_add(w);
                items.push(item);
                if items.len() > q.limit {
                    break;
                }
                continue;
            }
        }
        if read >= q.max_scan || started.elapsed() >= budget.time {
            stopped = true;
            resume = Some(k[prefix.len()..].to_vec());
            break;
        }
    }
    let done = !stopped && items.len() <= q.limit;
    items.truncate(q.limit);
    if direction == Direction::Prev {
        items.reverse();
    }
    Ok(Page {
        items,
        done,
        resume,
        direction,
    })
}

/// The narrower of two bounds on the same side (`lower`: the greater one).
fn tighter(a: Bound<Vec<u8>>, b: Bound<Vec<u8>>, lower: bool) -> Bound<Vec<u8>> {
    let key = |x: &Bound<Vec<u8>>| match x {
        Bound::Included(k) | Bound::Excluded(k) => Some(k.clone()),
        Bound::Unbounded => None,
    };
    match (key(&a), key(&b)) {
        (None, _) => b,
        (_, None) => a,
        (Some(ka), Some(kb)) if ka == kb => match a {
            Bound::Excluded(_) => a,
            _ => b,
        },
        (Some(ka), Some(kb)) => {
            if (ka > kb) == lower {
                a
            } else {
                b
            }
        }
    }
}

fn empty_range(lower: &Bound<Vec<u8>>, upper: &Bound<Vec<u8>>) -> bool {
    match (lower, upper) {
        (Bound::Included(l), Bound::Included(u)) => l > u,
        (Bound::Included(l) | Bound::Excluded(l), Bound::Included(u) | Bound::Excluded(u)) => {
            l >= u
        }
        _ => false,
    }
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
            max_scan: SCAN_RECORDS,
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
                max_scan: SCAN_RECORDS,
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
            max_scan: SCAN_RECORDS,
        };
        let p = scan::<u8>(&t, b"b", &q, |v| v % 2 == 1).unwrap();
        assert_eq!((vals(&p), p.done), (vec![101, 103, 105], false));
        let q = PageQuery {
            limit: 3,
            cursor: Some((vec![5], Direction::Next)),
            descending: false,
            max_scan: SCAN_RECORDS,
        };
        let p = scan::<u8>(&t, b"b", &q, |v| v % 2 == 1).unwrap();
        assert_eq!((vals(&p), p.done), (vec![107, 109], true));
    }

    fn numbers(n: u16) -> sled::Tree {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let t = db.open_tree("n").unwrap();
        for i in 0..n {
            let mut k = b"x".to_vec();
            k.extend_from_slice(&i.to_be_bytes());
            t.insert(k, encode(&i).unwrap()).unwrap();
        }
        t.insert(b"y", encode(&0u16).unwrap()).unwrap();
        t
    }

    fn key_of(v: u16) -> Vec<u8> {
        v.to_be_bytes().to_vec()
    }

    /// Follow pages as a client follows iterators: from `resume` when the page has one, else from
    /// its last item.
    fn follow(
        t: &sled::Tree,
        descending: bool,
        max_scan: usize,
        budget: &Budget,
        keep: impl Fn(&u16) -> bool + Copy,
    ) -> (Vec<u16>, Vec<Page<u16>>) {
        let mut q = PageQuery {
            limit: 3,
            cursor: None,
            descending,
            max_scan,
        };
        let (mut found, mut pages) = (Vec::new(), Vec::new());
        for _ in 0..10_000 {
            let p =
                scan_within(t, b"x", &q, budget, |_, v| decode(v).map(Some), keep, |_| 0).unwrap();
            found.extend(p.items.iter().copied());
            let next = p
                .resume
                .clone()
                .or_else(|| p.items.last().map(|v| key_of(*v)));
            let done = p.done;
            pages.push(p);
            if done {
                return (found, pages);
            }
            q.cursor = Some((
                next.expect("a page that is not done says where to go on"),
                Direction::Next,
            ));
        }
        panic!("pages never ended");
    }

    #[test]
    fn a_filter_that_matches_nothing_stops_on_its_record_budget_and_says_where() {
        let t = numbers(1000);
        let budget = Budget::default();
        let q = PageQuery {
            limit: 1,
            cursor: None,
            descending: false,
            max_scan: 10,
        };
        let none = |_: &u16| false;
        let p = scan_within(
            &t,
            b"x",
            &q,
            &budget,
            |_, v| decode(v).map(Some),
            none,
            |_| 0,
        )
        .unwrap();
        assert!(p.items.is_empty());
        assert!(!p.done);
        assert_eq!(
            p.resume,
            Some(key_of(9)),
            "ten records read, from the first"
        );

        // Following the pages reads everything once and finds nothing, in bounded steps.
        let (found, pages) = follow(&t, false, 10, &budget, none);
        assert!(found.is_empty());
        assert_eq!(pages.len(), 101, "1000 records, 10 per page, then the end");
        assert!(pages.last().unwrap().done);
    }

    #[test]
    fn following_budgeted_pages_finds_every_match_once_in_both_orders() {
        let t = numbers(1000);
        let budget = Budget::default();
        let keep = |v: &u16| v % 97 == 0 || *v == 998 || *v == 999;
        let mut want: Vec<u16> = (0..1000).filter(|v| keep(v)).collect();
        let (found, pages) = follow(&t, false, 10, &budget, keep);
        assert_eq!(found, want);
        assert!(pages.iter().all(|p| p.items.len() <= 3));
        want.reverse();
        let (found, _) = follow(&t, true, 10, &budget, keep);
        assert_eq!(found, want);
        // Unbudgeted, the same filter reads through to full pages.
        let (found, pages) = follow(&t, true, SCAN_RECORDS, &Budget::default(), keep);
        assert_eq!(found, want);
        assert_eq!(pages.len(), want.len().div_ceil(3));
    }

    #[test]
    fn the_time_budget_stops_a_slow_scan() {
        let t = numbers(1000);
        let budget = Budget {
            time: Duration::from_millis(20),
            ..Budget::default()
        };
        let q = PageQuery {
            limit: 1,
            cursor: None,
            descending: true,
            max_scan: SCAN_RECORDS,
        };
        let slow = |_: &u16| {
            std::thread::sleep(Duration::from_millis(1));
            false
        };
        let started = Instant::now();
        let p = scan_within(
            &t,
            b"x",
            &q,
            &budget,
            |_, v| decode(v).map(Some),
            slow,
            |_| 0,
        )
        .unwrap();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(!p.done);
        let at = u16::from_be_bytes(p.resume.unwrap().try_into().unwrap());
        assert!(at < 999 && at > 0, "stopped part way, at {at}");
    }

    #[test]
    fn pages_stop_at_their_byte_budget_but_always_hold_one_item() {
        let t = numbers(100);
        let q = PageQuery {
            limit: 50,
            cursor: None,
            descending: false,
            max_scan: SCAN_RECORDS,
        };
        let budget = Budget {
            bytes: 25,
            ..Budget::default()
        };
        let load = |_: &[u8], v: &[u8]| decode::<u16>(v).map(Some);
        let p = scan_within(&t, b"x", &q, &budget, load, |_| true, |_| 10).unwrap();
        assert_eq!((p.items, p.done, p.resume), (vec![0, 1], false, None));
        let p = scan_within(&t, b"x", &q, &budget, load, |_| true, |_| 100).unwrap();
        assert_eq!((p.items, p.done), (vec![0], false));
    }

    #[test]
    fn from_and_until_narrow_the_range_with_the_cursor() {
        let t = numbers(100);
        let budget = Budget {
            from: Some(key_of(10)),
            until: Some(key_of(20)),
            ..Budget::default()
        };
        let load = |_: &[u8], v: &[u8]| decode::<u16>(v).map(Some);
        let mut q = PageQuery {
            limit: 50,
            cursor: None,
            descending: true,
            max_scan: SCAN_RECORDS,
        };
        let p = scan_within(&t, b"x", &q, &budget, load, |_| true, |_| 0).unwrap();
        assert_eq!(p.items, (10..20).rev().collect::<Vec<u16>>());
        assert!(p.done);
        q.cursor = Some((key_of(15), Direction::Next));
        let p = scan_within(&t, b"x", &q, &budget, load, |_| true, |_| 0).unwrap();
        assert_eq!(p.items, vec![14, 13, 12, 11, 10]);
        q.cursor = Some((key_of(15), Direction::Prev));
        let p = scan_within(&t, b"x", &q, &budget, load, |_| true, |_| 0).unwrap();
        assert_eq!(p.items, vec![19, 18, 17, 16]);
        q.cursor = Some((key_of(5), Direction::Next));
        let p = scan_within(&t, b"x", &q, &budget, load, |_| true, |_| 0).unwrap();
        assert_eq!(
            (p.items.len(), p.done),
            (0, true),
            "the cursor is past the window"
        );
    }
}
