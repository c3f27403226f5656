//! `/api/v1/event-type`: the catalogue of event kinds. DELETE archives (`?expunge=true` removes).

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Filter;

use super::error::ApiError;
use super::idempotency::{self, Idempotency};
use super::json::{self, Patch};
use super::pagination::{list_response, ListParams};
use super::query::Query;
use super::{body, no_content, query, reply, respond, with, Seg, State};
use crate::domain::{validate, EventType, Timestamp, ValidationError};
use crate::store::StoreError;

/// POST body; PUT takes the same fields with the name from the path.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct EventTypeIn {
    pub(super) name: Option<String>,
    #[serde(default)]
    description: String,
    archived: Option<bool>,
    deprecated: Option<bool>,
    schemas: Option<serde_json::Value>,
    group_name: Option<String>,
    feature_flags: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EventTypePatch {
    description: Option<String>,
    archived: Option<bool>,
    deprecated: Option<bool>,
    #[serde(default)]
    schemas: Patch<serde_json::Value>,
    #[serde(default)]
    group_name: Patch<String>,
    #[serde(default)]
    feature_flags: Patch<Vec<String>>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct EventTypeOut {
    name: String,
    description: String,
    archived: bool,
    deprecated: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    schemas: Option<serde_json::Value>,
    group_name: Option<String>,
    feature_flags: Option<Vec<String>>,
    created_at: String,
    updated_at: String,
}

impl EventTypeOut {
    pub(super) fn new(e: EventType, with_schemas: bool) -> Self {
        EventTypeOut {
            schemas: e
                .schemas
                .filter(|_| with_schemas)
                .and_then(|s| serde_json::from_str(&s).ok()),
            name: e.name,
            description: e.description,
            archived: e.archived,
            deprecated: e.deprecated,
            group_name: e.group_name,
            feature_flags: e.feature_flags,
            created_at: e.created_at.to_rfc3339(),
            updated_at: e.updated_at.to_rfc3339(),
        }
    }
}

/// Svix's shape: `{"<version>": <JSON Schema object, with an optional "examples" list>}`. The
/// examples feed `send-example`, so a malformed one is refused here rather than skipped there.
fn check_schemas(v: &serde_json::Value) -> Result<String, ValidationError> {
    let Some(versions) = v.as_object() else {
        return Err(ValidationError::new(
            "schemas",
            "must be an object of versions, like {\"1\": {…JSON Schema…}}",
        ));
    };
    for (version, schema) in versions {
        let Some(schema) = schema.as_object() else {
            return Err(ValidationError::new(
                format!("schemas.{version}"),
                "must be a JSON Schema (a JSON object)",
            ));
        };
        let examples = schema.get("examples");
        if examples.is_some_and(|e| {
            !e.as_array()
                .is_some_and(|l| l.iter().all(|x| x.is_object()))
        }) {
            return Err(ValidationError::new(
                format!("schemas.{version}.examples"),
                "must be a list of example payloads, each a JSON object",
            ));
        }
    }
    Ok(v.to_string())
}

fn check_common(
    description: &str,
    group_name: Option<&String>,
    flags: Option<&Vec<String>>,
) -> Result<(), ValidationError> {
    validate::text("description", description, validate::MAX_DESCRIPTION_LEN)?;
    if let Some(g) = group_name {
        validate::text("groupName", g, validate::MAX_NAME_LEN)?;
    }
    for (i, f) in flags.into_iter().flatten().enumerate() {
        validate::token(&format!("featureFlags.{i}"), f)?;
    }
    Ok(())
}

impl EventTypeIn {
    /// Validate and build the record for `name` (created at `created_at`).
    pub(super) fn into_record(
        self,
        name: &str,
        created_at: Timestamp,
    ) -> Result<EventType, ValidationError> {
        check_common(
            &self.description,
            self.group_name.as_ref(),
            self.feature_flags.as_ref(),
        )?;
        let schemas = self.schemas.as_ref().map(check_schemas).transpose()?;
        Ok(EventType {
            name: name.to_string(),
            description: self.description,
            archived: self.archived.unwrap_or(false),
            deprecated: self.deprecated.unwrap_or(false),
            schemas,
            feature_flags: self.feature_flags,
            group_name: self.group_name,
            created_at,
            updated_at: Timestamp::now(),
        })
    }
}

pub fn routes(state: State) -> BoxedFilter<(Response,)> {
    let list = warp::path!("event-type")
        .and(warp::get())
        .and(with(&state))
        .and(query())
        .then(|s, q| async move { respond(super::blocking(move || list(s, q)).await) });
    let create = warp::path!("event-type")
        .and(warp::post())
        .and(with(&state))
        .and(body(&state))
        .and(idempotency::key())
        .then(|s: State, b, idem: Idempotency| idem.run(s.clone(), create(s, b)));
    let get = warp::path!("event-type" / Seg)
        .and(warp::get())
        .and(with(&state))
        .then(|n, s| async move { respond(get(s, n)) });
    let put = warp::path!("event-type" / Seg)
        .and(warp::put())
        .and(with(&state))
        .and(body(&state))
        .then(|n, s, b| async move { respond(upsert(s, n, b).await) });
    let patch = warp::path!("event-type" / Seg)
        .and(warp::patch())
        .and(with(&state))
        .and(body(&state))
        .then(|n, s, b| async move { respond(patch(s, n, b).await) });
    let delete = warp::path!("event-type" / Seg)
        .and(warp::delete())
        .and(with(&state))
        .and(query())
        .then(|n, s, q| async move { respond(delete(s, n, q).await) });
    let import = warp::path!("event-type" / "import" / "openapi")
        .and(warp::post())
        .and(with(&state))
        .and(body(&state))
        .and(idempotency::key())
        .then(|s: State, b, idem: Idempotency| idem.run(s.clone(), import_openapi(s, b)));
    list.or(create)
        .unify()
        .or(import)
        .unify()
        .or(get)
        .unify()
        .or(put)
        .unify()
        .or(patch)
        .unify()
        .or(delete)
        .unify()
        .boxed()
}

fn list(s: State, q: Query) -> Result<Response, ApiError> {
    let params = ListParams::parse(&q, false)?;
    let pq = params.to_page_query(|c| Some(c.as_bytes().to_vec()))?;
    let include_archived = q.bool("include_archived")?.unwrap_or(false);
    let with_content = q.bool("with_content")?.unwrap_or(false);
    let page = s.store.list_event_types(&pq, include_archived)?;
    let out = list_response(
        page,
        |e| e.name.clone(),
        |k| String::from_utf8(k.to_vec()).ok(),
        |e| EventTypeOut::new(e, with_content),
    );
    Ok(reply(StatusCode::OK, &out))
}

/// POST: a new event type (201), or the revival of an archived one (201); 409 if it is live.
async fn create(s: State, body: Bytes) -> Result<Response, ApiError> {
    let input: EventTypeIn = json::parse(&body)?;
    let name = input.name.clone().ok_or_else(|| ValidationError {
        field: "name".into(),
        msg: "field required".into(),
        kind: "value_error.missing",
    })?;
    validate::event_type_name("name", &name)?;
    let fresh = input.into_record(&name, Timestamp::now())?;
    let (et, _) = s
        .store
        .upsert_event_type(&name, |old| match old {
            Some(o) if !o.archived => Err(StoreError::Conflict(
                "an event type with this name already exists".into(),
            )),
            Some(o) => Ok(EventType {
                created_at: o.created_at,
                ..fresh.clone()
            }),
            None => Ok(fresh.clone()),
        })
        .await?;
    Ok(reply(StatusCode::CREATED, &EventTypeOut::new(et, true)))
}

fn get(s: State, name: Seg) -> Result<Response, ApiError> {
    let et = s
        .store
        .get_event_type(&name.0)?
        .ok_or(ApiError::NotFound("event type not found"))?;
    Ok(reply(StatusCode::OK, &EventTypeOut::new(et, true)))
}

async fn upsert(s: State, name: Seg, body: Bytes) -> Result<Response, ApiError> {
    validate::event_type_name("name", &name.0).map_err(|e| ValidationError {
        field: "path.name".into(),
        ..e
    })?;
    let input: EventTypeIn = json::parse(&body)?;
    let fresh = input.into_record(&name.0, Timestamp::now())?;
    let (et, created) = s
        .store
        .upsert_event_type(&name.0, |old| {
            Ok(EventType {
                created_at: old.map_or(fresh.created_at, |o| o.created_at),
                ..fresh.clone()
            })
        })
        .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(reply(status, &EventTypeOut::new(et, true)))
}

async fn patch(s: State, name: Seg, body: Bytes) -> Result<Response, ApiError> {
    let input: EventTypePatch = json::parse(&body)?;
    check_common(
        input.description.as_deref().unwrap_or(""),
        input.group_name.value(),
        input.feature_flags.value(),
    )?;
    let schemas = match &input.schemas {
        Patch::Value(v) => Patch::Value(check_schemas(v)?),
        Patch::Null => Patch::Null,
        Patch::Absent => Patch::Absent,
    };
    let (et, _) = s
        .store
        .upsert_event_type(&name.0, |old| {
            let mut e = old.ok_or(StoreError::NotFound)?;
            if let Some(d) = &input.description {
                e.description = d.clone();
            }
            if let Some(a) = input.archived {
                e.archived = a;
            }
            if let Some(d) = input.deprecated {
                e.deprecated = d;
            }
            schemas.clone().apply_to(&mut e.schemas);
            input.group_name.clone().apply_to(&mut e.group_name);
            input.feature_flags.clone().apply_to(&mut e.feature_flags);
            e.updated_at = Timestamp::now();
            Ok(e)
        })
        .await
        .map_err(not_found)?;
    Ok(reply(StatusCode::OK, &EventTypeOut::new(et, true)))
}

async fn delete(s: State, name: Seg, q: Query) -> Result<Response, ApiError> {
    if q.bool("expunge")?.unwrap_or(false) {
        return if s.store.expunge_event_type(&name.0).await? {
            Ok(no_content())
        } else {
            Err(ApiError::NotFound("event type not found"))
        };
    }
    s.store
        .upsert_event_type(&name.0, |old| {
            let mut e = old.ok_or(StoreError::NotFound)?;
            e.archived = true;
            e.updated_at = Timestamp::now();
            Ok(e)
        })
        .await
        .map_err(not_found)?;
    Ok(no_content())
}

/// Svix's EventTypeImportOpenApiIn. `specRaw` must be JSON (Herald reads no YAML).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ImportIn {
    spec: Option<serde_json::Value>,
    spec_raw: Option<String>,
    #[serde(default)]
    replace_all: bool,
    #[serde(default)]
    dry_run: bool,
}

/// `POST /event-type/import/openapi`: create or update one event type per webhook of the
/// document (see `openapi_import`); with `replaceAll`, archive the others; with `dryRun`, only
/// say what would change.
async fn import_openapi(s: State, body: Bytes) -> Result<Response, ApiError> {
    let input: ImportIn = json::parse(&body)?;
    let spec = match (input.spec, input.spec_raw) {
        (Some(spec), _) => spec,
        (None, Some(raw)) => serde_json::from_str(&raw).map_err(|e| {
            ValidationError::new(
                "specRaw",
                format!("must be an OpenAPI document in JSON (YAML is not read): {e}"),
            )
        })?,
        (None, None) => {
            return Err(ValidationError::new("spec", "spec or specRaw is required").into())
        }
    };
    let types = super::openapi_import::event_types(&spec)?;
    let mut checked = Vec::with_capacity(types.len());
    for t in &types {
        let schemas = t.schemas.as_ref().map(check_schemas).transpose()?;
        checked.push(schemas);
    }
    if input.dry_run {
        return Ok(reply(
            StatusCode::OK,
            &serde_json::json!({"data": {"modified": [], "to_modify": types}}),
        ));
    }
    let mut modified = Vec::with_capacity(types.len());
    for (t, schemas) in types.into_iter().zip(checked) {
        let now = Timestamp::now();
        s.store
            .upsert_event_type(&t.name, |old| {
                Ok(EventType {
                    name: t.name.clone(),
                    description: t.description.clone(),
                    archived: false,
                    deprecated: t.deprecated,
                    schemas: schemas.clone(),
                    feature_flags: t.feature_flags.clone(),
                    group_name: t.group_name.clone(),
                    created_at: old.map_or(now, |o| o.created_at),
                    updated_at: now,
                })
            })
            .await?;
        modified.push(t.name);
    }
    if input.replace_all {
        for name in live_event_types(&s)? {
            if modified.binary_search(&name).is_err() {
                s.store
                    .upsert_event_type(&name, |old| {
                        let mut e = old.ok_or(StoreError::NotFound)?;
                        e.archived = true;
                        e.updated_at = Timestamp::now();
                        Ok(e)
                    })
                    .await
                    .map_err(not_found)?;
            }
        }
    }
    Ok(reply(
        StatusCode::OK,
        &serde_json::json!({"data": {"modified": modified}}),
    ))
}

/// The names of every event type not archived (the catalogue is small: read page by page).
fn live_event_types(s: &State) -> Result<Vec<String>, ApiError> {
    Ok(all_event_types(s, false)?
        .into_iter()
        .map(|e| e.name)
        .collect())
}

/// Every event type (archived ones too if asked), page by page.
pub(super) fn all_event_types(
    s: &State,
    include_archived: bool,
) -> Result<Vec<EventType>, ApiError> {
    let mut all = Vec::new();
    let mut cursor = None;
    loop {
        let q = crate::store::PageQuery {
            limit: 250,
            cursor: cursor.map(|c| (c, crate::store::Direction::Next)),
            descending: false,
            max_scan: crate::store::SCAN_RECORDS,
        };
        let page = s.store.list_event_types(&q, include_archived)?;
        let next = page
            .resume
            .clone()
            .or_else(|| page.items.last().map(|e| e.name.clone().into_bytes()));
        let done = page.done;
        all.extend(page.items);
        match next {
            Some(n) if !done => cursor = Some(n),
            _ => return Ok(all),
        }
    }
}

fn not_found(e: StoreError) -> ApiError {
    match e {
        StoreError::NotFound => ApiError::NotFound("event type not found"),
        other => other.into(),
    }
}
