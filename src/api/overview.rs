//! The dashboard's view across applications, part of `GET /api/v1/admin/stats`: per-application
//! endpoint counts and the endpoints failing now (their newest attempt failed), each with enough
//! to link to it. Bounded: the first [`MAX_APPS`] applications and [`MAX_ENDPOINTS`] endpoints
//! are read, and the answer says when there were more.

use serde::Serialize;

use crate::domain::{Application, DeliveryStatus, Timestamp};
use crate::store::{PageQuery, Store, StoreError, SCAN_RECORDS};

/// Applications summarised at most (oldest first).
const MAX_APPS: usize = 100;
/// Endpoints looked at most, over all applications.
const MAX_ENDPOINTS: usize = 1000;
/// Queued deliveries counted at most per application (then shown as "1000+").
const MAX_QUEUED: usize = 1000;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Overview {
    pub applications: Vec<AppSummary>,
    /// More applications or endpoints exist than were read.
    pub truncated: bool,
    /// Newest failure first.
    pub failing_endpoints: Vec<Failing>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AppSummary {
    pub id: String,
    pub uid: Option<String>,
    pub name: String,
    pub endpoints: u64,
    pub failing: u64,
    pub disabled: u64,
    /// Deliveries due or waiting, counted up to `MAX_QUEUED` (`queuedCapped` then).
    pub queued: u64,
    pub queued_capped: bool,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Failing {
    pub app_id: String,
    pub app_name: String,
    pub endpoint_id: String,
    pub url: String,
    pub disabled: bool,
    /// The newest attempt's HTTP status; 0: no response.
    pub last_status_code: i16,
    pub last_attempt_at: String,
    /// When the endpoint's run of failures began, when Herald knows.
    pub failing_since: Option<String>,
}

/// Read the overview (blocking: call it off the async threads).
pub fn read(store: &Store) -> Result<Overview, StoreError> {
    let q = PageQuery {
        limit: MAX_APPS,
        cursor: None,
        descending: false,
        max_scan: SCAN_RECORDS,
    };
    let page = store.list_apps(&q, |_| true)?;
    let mut truncated = !page.done;
    let mut seen = 0;
    let mut applications = Vec::new();
    let mut failing = Vec::new();
    for app in page.items {
        if seen >= MAX_ENDPOINTS {
            truncated = true;
            break;
        }
        let mut endpoints = store.all_endpoints(&app.id)?;
        if seen + endpoints.len() > MAX_ENDPOINTS {
            endpoints.truncate(MAX_ENDPOINTS - seen);
            truncated = true;
        }
        seen += endpoints.len();
        let mut sum = summary(&app);
        for ep in endpoints {
            sum.endpoints += 1;
            sum.disabled += u64::from(ep.disabled);
            let budget = MAX_QUEUED.saturating_sub(sum.queued as usize);
            if budget > 0 {
                sum.queued += store.queued_count_capped(&app.id, &ep.id, budget) as u64;
            }
            let newest = PageQuery {
                limit: 1,
                cursor: None,
                descending: true,
                max_scan: SCAN_RECORDS,
            };
            let last = store
                .list_attempts_by_endpoint(&app.id, &ep.id, &newest, |_| true)?
                .items
                .into_iter()
                .next();
            let Some(last) = last.filter(|a| a.status == DeliveryStatus::Fail) else {
                continue;
            };
            sum.failing += 1;
            let since = store.endpoint_health(&app.id, &ep.id)?.failing_since;
            failing.push(Failing {
                app_id: app.id.to_string(),
                app_name: app.name.clone(),
                endpoint_id: ep.id.to_string(),
                url: ep.url,
                disabled: ep.disabled,
                last_status_code: last.response_status_code,
                last_attempt_at: last.created_at.to_rfc3339(),
                failing_since: since.map(Timestamp::to_rfc3339),
            });
        }
        sum.queued_capped = sum.queued as usize >= MAX_QUEUED;
        applications.push(sum);
    }
    failing.sort_by(|a, b| b.last_attempt_at.cmp(&a.last_attempt_at));
    Ok(Overview {
        applications,
        truncated,
        failing_endpoints: failing,
    })
}

fn summary(app: &Application) -> AppSummary {
    AppSummary {
        id: app.id.to_string(),
        uid: app.uid.clone(),
        name: app.name.clone(),
        endpoints: 0,
        failing: 0,
        disabled: 0,
        queued: 0,
        queued_capped: false,
    }
}
