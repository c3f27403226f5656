//! Health probes, without auth so systemd, Kubernetes and load balancers can call them:
//! - `GET /api/v1/health/live`: liveness, 204 whenever the process answers HTTP at all. Restarting
//!   Herald fixes nothing this does not see, so it never fails on storage.
//! - `GET /api/v1/health/ready`: readiness, 204 while Herald can accept writes, else 503 with
//!   `{code, detail, reasons}` (the store cannot commit, or the disk is under the reserve).
//! - `GET /api/v1/health` (Svix's route; its SDKs want 204 when healthy): the same as ready.
//!
//! Each answers from in-memory state and a cached free-space reading: no store scan.

use serde::Serialize;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Filter;

use super::{no_content, reply, with, State};
use crate::store::StorageStatus;

#[derive(Debug, Serialize)]
struct NotReady {
    code: &'static str,
    detail: String,
    reasons: Vec<Reason>,
}

#[derive(Debug, Serialize)]
struct Reason {
    code: &'static str,
    detail: String,
}

pub fn routes(state: State) -> BoxedFilter<(Response,)> {
    let get = || warp::get().or(warp::head()).unify();
    let live = warp::path!("health" / "live").and(get()).map(no_content);
    let ready = warp::path!("health" / "ready")
        .or(warp::path!("health"))
        .unify()
        .and(get())
        .and(with(&state))
        .map(|s: State| readiness(&s.store.storage_status()));
    live.or(ready).unify().boxed()
}

/// Why Herald cannot take writes now, if it cannot.
fn reasons(s: &StorageStatus) -> Vec<Reason> {
    let mut out = Vec::new();
    if let Some(failure) = &s.commit_failure {
        let detail = if s.restart_required {
            format!("the store cannot make writes durable ({failure}); restart Herald")
        } else {
            format!(
                "the store cannot make writes durable ({failure}); writes resume when a flush \
                 succeeds again once space is freed (if space is free and this stays, restart Herald)"
            )
        };
        out.push(Reason {
            code: "store_cannot_commit",
            detail,
        });
    }
    if s.disk_full {
        out.push(Reason {
            code: "disk_full",
            detail: "a write met a full file system: new writes are refused with 507 until \
                     space is freed; reads go on"
                .into(),
        });
    }
    if s.below_reserve {
        out.push(Reason {
            code: "disk_below_reserve",
            detail: "free disk space is under the reserve (store.min_free_mb): new writes are \
                     refused with 507 until space is freed; reads go on"
                .into(),
        });
    }
    out
}

fn readiness(s: &StorageStatus) -> Response {
    let reasons = reasons(s);
    if reasons.is_empty() {
        return no_content();
    }
    let detail = format!(
        "Herald cannot accept writes: {}",
        reasons
            .iter()
            .map(|r| r.detail.as_str())
            .collect::<Vec<_>>()
            .join("; ")
    );
    reply(
        StatusCode::SERVICE_UNAVAILABLE,
        &NotReady {
            code: "not_ready",
            detail,
            reasons,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_unless_the_disk_is_low_or_commits_fail() {
        let ok = StorageStatus::default();
        assert_eq!(readiness(&ok).status(), 204);
        let low = StorageStatus {
            below_reserve: true,
            ..Default::default()
        };
        assert_eq!(readiness(&low).status(), 503);
        assert_eq!(reasons(&low)[0].code, "disk_below_reserve");
        let full = StorageStatus {
            disk_full: true,
            ..Default::default()
        };
        assert_eq!(readiness(&full).status(), 503);
        assert_eq!(reasons(&full)[0].code, "disk_full");
        let broken = StorageStatus {
            commit_failure: Some("Input/output error".into()),
            restart_required: true,
            ..Default::default()
        };
        let r = reasons(&broken);
        assert_eq!(r[0].code, "store_cannot_commit");
        assert!(r[0].detail.contains("restart Herald"));
    }
}
