//! List parameters (`limit`, `iterator`, `order`) and the list envelope Svix clients expect:
//! `{"data", "iterator", "prevIterator", "done"}` with `iterator` always present.

use serde::Serialize;

use super::error::ApiError;
use super::query::Query;
use crate::domain::ValidationError;
use crate::store::{Direction, Page, PageQuery};

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
        })
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
        })
    }
}

/// Wrap a page: `iterator` continues after the last item, `prevIterator` goes back from the first.
pub fn list_response<T: Serialize, S>(
    page: Page<S>,
    id_of: impl Fn(&S) -> String,
    out: impl Fn(S) -> T,
) -> ListResponse<T> {
    let iterator = page.items.last().map(&id_of);
    let prev_iterator = page.items.first().map(|s| format!("-{}", id_of(s)));
    ListResponse {
        data: page.items.into_iter().map(out).collect(),
        iterator,
        prev_iterator,
        done: page.done,
    }
}
