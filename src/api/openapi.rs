//! `GET /api/v1/openapi.json`: the OpenAPI 3 document of every route, embedded at build time. A
//! test checks both ways that it and the routes agree.

use warp::filters::BoxedFilter;
use warp::reply::{Reply, Response};
use warp::Filter;

const DOCUMENT: &str = include_str!("openapi.json");

pub fn routes() -> BoxedFilter<(Response,)> {
    warp::path!("openapi.json")
        .and(warp::get())
        .map(|| {
            warp::reply::with_header(DOCUMENT, "content-type", "application/json").into_response()
        })
        .boxed()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_document_is_openapi_3_json() {
        let v: serde_json::Value = serde_json::from_str(super::DOCUMENT).expect("valid JSON");
        assert!(v["openapi"].as_str().unwrap_or("").starts_with("3."));
        let operations: usize = v["paths"]
            .as_object()
            .map(|p| {
                p.values()
                    .filter_map(|ops| ops.as_object())
                    .map(|ops| ops.len())
                    .sum()
            })
            .unwrap_or(0);
        assert!(operations >= 35, "{operations} operations");
    }
}
