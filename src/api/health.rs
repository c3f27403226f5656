//! `GET /api/v1/health`: 204 while the store answers, 503 (JSON) when it does not. No auth, so
//! systemd and load balancers can probe it.

use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Filter;

use super::{no_content, reply, with, State};

pub fn routes(state: State) -> BoxedFilter<(Response,)> {
    warp::path!("health")
        .and(warp::get().or(warp::head()).unify())
        .and(with(&state))
        .map(|s: State| match s.store.size_on_disk() {
            Ok(_) => no_content(),
            Err(e) => {
                tracing::error!(error = %e, "health check: store unavailable");
                reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &serde_json::json!({"code": "unavailable", "detail": "store unavailable"}),
                )
            }
        })
        .boxed()
}
