//! `herald migrate`: copy what a server speaking the Svix API holds (event types with schemas,
//! applications, endpoints with their signing secrets, headers, filters, channels, rate limits,
//! metadata and disabled state, and, from another Herald, payload filters and FIFO ordering) into this Herald's store, so receivers keep verifying with the
//! secrets they have. It reads through `delivery::remote` and writes through `store`; the
//! composition (which store, which source) is `app::migrate`'s.
//!
//! Idempotent and resumable: every record keeps its source id (Svix's ids have Herald's shape),
//! and before each write the record is looked up by that id, then by its `uid` (event types by
//! name). What is there already is left as it is; each write is durable before the next starts,
//! so a run that stops half-way leaves whole records only, and the next run copies the rest.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::delivery::remote::{
    RemoteApp, RemoteEndpoint, RemoteError, RemoteEventType, SvixSource,
};
use crate::domain::validate::{self, Limits};
use crate::domain::{
    AppId, Application, DeliveryOrder, Endpoint, EndpointId, EventType, SigningKey, Timestamp,
    ValidationError,
};
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// Each says which request of the source failed.
    #[error(transparent)]
    Remote(#[from] RemoteError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How a run goes.
#[derive(Debug, Clone)]
pub struct Options {
    /// Read the source and compare, write nothing.
    pub dry_run: bool,
    /// The limits the API holds records to; copied records are held to the same.
    pub limits: Limits,
}

/// What became of the records of one kind.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tally {
    /// Copied (or, in a dry run, to be copied).
    pub copied: usize,
    /// Here already (matched by id, uid or name), left as they are.
    pub present: usize,
    /// Not copied, with a warning saying why.
    pub skipped: usize,
}

#[derive(Debug, Default)]
pub struct Summary {
    pub dry_run: bool,
    pub event_types: Tally,
    pub apps: Tally,
    pub endpoints: Tally,
    /// Why records were skipped, and what was copied only in part (write-only headers).
    pub warnings: Vec<String>,
}

impl Summary {
    pub fn skipped(&self) -> usize {
        self.event_types.skipped + self.apps.skipped + self.endpoints.skipped
    }

    /// The closing report, one line per kind, then the warnings.
    pub fn render(&self) -> String {
        let verb = if self.dry_run { "to copy" } else { "copied" };
        let mut out = String::new();
        for (kind, t) in [
            ("event types", &self.event_types),
            ("applications", &self.apps),
            ("endpoints", &self.endpoints),
        ] {
            out.push_str(&format!(
                "{kind}: {} {verb}, {} already here, {} skipped\n",
                t.copied, t.present, t.skipped
            ));
        }
        for w in &self.warnings {
            out.push_str(&format!("warning: {w}\n"));
        }
        out
    }
}

/// The outcome of one record.
enum Step {
    Copied,
    Present(String),
    Skipped(String),
}

/// Copy everything `source` holds into `store` (`None` in a dry run on a directory without a
/// store yet: then nothing is here).
pub async fn run(
    source: &SvixSource,
    store: Option<&Store>,
    opts: &Options,
) -> Result<Summary, MigrateError> {
    let progress = Progress::new(opts.dry_run);
    progress.reading("reading the source: event types");
    let event_types = source.event_types().await?;
    progress.reading("reading the source: applications");
    let apps = source.apps().await?;
    let mut endpoints = Vec::with_capacity(apps.len());
    for (i, app) in apps.iter().enumerate() {
        progress.reading(&format!(
            "reading the source: endpoints of application {}/{}",
            i + 1,
            apps.len()
        ));
        endpoints.push(source.endpoints(&app.id).await?);
    }
    let total = event_types.len() + apps.len() + endpoints.iter().map(Vec::len).sum::<usize>();
    progress.start(total as u64);

    let mut m = Migration {
        source,
        store,
        opts,
        summary: Summary {
            dry_run: opts.dry_run,
            ..Default::default()
        },
        progress,
    };
    for et in &event_types {
        let step = m.event_type(et).await?;
        m.record(Kind::EventType, &et.name, step);
    }
    for (app, eps) in apps.iter().zip(&endpoints) {
        let (step, target) = m.app(app).await?;
        let skipped = matches!(step, Step::Skipped(_));
        m.record(Kind::App, &shown(&app.id, app.uid.as_deref()), step);
        for ep in eps {
            let name = format!("{}/{}", app.id, shown(&ep.id, ep.uid.as_deref()));
            let step = if skipped {
                Step::Skipped("its application was not copied".into())
            } else {
                m.endpoint(app, target.as_ref(), ep).await?
            };
            m.record(Kind::Endpoint, &name, step);
        }
    }
    m.progress.finish();
    Ok(m.summary)
}

#[derive(Clone, Copy)]
enum Kind {
    EventType,
    App,
    Endpoint,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::EventType => "event type",
            Kind::App => "application",
            Kind::Endpoint => "endpoint",
        }
    }
}

struct Migration<'a> {
    source: &'a SvixSource,
    store: Option<&'a Store>,
    opts: &'a Options,
    summary: Summary,
    progress: Progress,
}

impl Migration<'_> {
    fn record(&mut self, kind: Kind, name: &str, step: Step) {
        let tally = match kind {
            Kind::EventType => &mut self.summary.event_types,
            Kind::App => &mut self.summary.apps,
            Kind::Endpoint => &mut self.summary.endpoints,
        };
        let label = kind.label();
        let line = match step {
            Step::Copied => {
                tally.copied += 1;
                let verb = if self.opts.dry_run {
                    "would copy"
                } else {
                    "copied"
                };
                format!("{verb:<12} {label} {name}")
            }
            Step::Present(note) => {
                tally.present += 1;
                format!("{:<12} {label} {name}{note}", "already here")
            }
            Step::Skipped(why) => {
                tally.skipped += 1;
                self.summary
                    .warnings
                    .push(format!("{label} {name} not copied: {why}"));
                format!("{:<12} {label} {name}: {why}", "skipped")
            }
        };
        self.progress.line(&line);
    }

    async fn event_type(&mut self, et: &RemoteEventType) -> Result<Step, MigrateError> {
        if let Some(store) = self.store {
            if store.get_event_type(&et.name)?.is_some() {
                return Ok(Step::Present(String::new()));
            }
        }
        let record = match event_type_record(et) {
            Ok(r) => r,
            Err(e) => return Ok(Step::Skipped(e.to_string())),
        };
        let Some(store) = self.store.filter(|_| !self.opts.dry_run) else {
            return Ok(Step::Copied);
        };
        match store.create_event_type(&record).await {
            Ok(()) => Ok(Step::Copied),
            Err(StoreError::Conflict(_)) => Ok(Step::Present(String::new())),
            Err(e) => Err(e.into()),
        }
    }

    /// The step, and the application in this store that the source's endpoints go to (`None`
    /// when it is skipped, or is only to be copied, in a dry run).
    async fn app(&mut self, app: &RemoteApp) -> Result<(Step, Option<AppId>), MigrateError> {
        if let Some(store) = self.store {
            let by_id = match app.id.parse::<AppId>() {
                Ok(id) => store.get_app(id.as_str())?,
                Err(_) => None,
            };
            let found = match (by_id, &app.uid) {
                (Some(a), _) => Some(a),
                (None, Some(uid)) => store.get_app(uid)?.filter(|a| a.uid.as_ref() == Some(uid)),
                (None, None) => None,
            };
            if let Some(a) = found {
                let note = if a.id.as_str() == app.id {
                    String::new()
                } else {
                    format!(" (as {}, by its uid)", a.id)
                };
                return Ok((Step::Present(note), Some(a.id)));
            }
        }
        let record = match app_record(app, &self.opts.limits) {
            Ok(r) => r,
            Err(why) => return Ok((Step::Skipped(why), None)),
        };
        let Some(store) = self.store.filter(|_| !self.opts.dry_run) else {
            return Ok((Step::Copied, None));
        };
        match store.create_app(&record).await {
            Ok(()) => Ok((Step::Copied, Some(record.id))),
            Err(StoreError::Conflict(why)) => Ok((Step::Skipped(why), None)),
            Err(e) => Err(e.into()),
        }
    }

    async fn endpoint(
        &mut self,
        app: &RemoteApp,
        target: Option<&AppId>,
        ep: &RemoteEndpoint,
    ) -> Result<Step, MigrateError> {
        if let (Some(store), Some(target)) = (self.store, target) {
            let by_id = match ep.id.parse::<EndpointId>() {
                Ok(id) => store.get_endpoint(target, id.as_str())?,
                Err(_) => None,
            };
            let found = match (by_id, &ep.uid) {
                (Some(e), _) => Some(e),
                (None, Some(uid)) => store
                    .get_endpoint(target, uid)?
                    .filter(|e| e.uid.as_ref() == Some(uid)),
                (None, None) => None,
            };
            if let Some(e) = found {
                let note = if e.id.as_str() == ep.id {
                    String::new()
                } else {
                    format!(" (as {}, by its uid)", e.id)
                };
                return Ok(Step::Present(note));
            }
        }
        let (Some(store), Some(target)) = (self.store.filter(|_| !self.opts.dry_run), target)
        else {
            // A dry run reads no secret: every other field is checked as a copy would be.
            let app = target.cloned().unwrap_or_else(AppId::generate);
            let checked = endpoint_record(
                ep,
                &app,
                PLACEHOLDER_SECRET,
                Default::default(),
                &self.opts.limits,
            );
            return Ok(checked.map_or_else(Step::Skipped, |_| Step::Copied));
        };
        // The secret and headers are read only for what is copied: a second run reads no secret.
        let secret = match self.source.endpoint_secret(&app.id, &ep.id).await {
            Ok(s) => s,
            Err(e @ RemoteError::Status { .. }) => return Ok(Step::Skipped(e.to_string())),
            Err(e) => return Err(e.into()),
        };
        let headers = match self.source.endpoint_headers(&app.id, &ep.id).await {
            Ok(h) => h,
            Err(e @ RemoteError::Status { .. }) => return Ok(Step::Skipped(e.to_string())),
            Err(e) => return Err(e.into()),
        };
        let record = match endpoint_record(ep, target, &secret, headers.headers, &self.opts.limits)
        {
            Ok(r) => r,
            Err(why) => return Ok(Step::Skipped(why)),
        };
        match store.create_endpoint(&record).await {
            Ok(()) => {}
            Err(StoreError::Conflict(why)) => return Ok(Step::Skipped(why)),
            Err(e) => return Err(e.into()),
        }
        if !headers.sensitive.is_empty() {
            self.summary.warnings.push(format!(
                "endpoint {}/{}: the source never shows the values of its headers {} (sensitive); \
                 set them with PATCH /api/v1/app/{}/endpoint/{}/headers",
                app.id,
                ep.id,
                headers.sensitive.join(", "),
                target,
                record.id
            ));
        }
        Ok(Step::Copied)
    }
}

/// Stands for the secret in a dry run's checks (24 zero bytes).
const PLACEHOLDER_SECRET: &str = "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

/// An id or uid as a line shows it.
fn shown(id: &str, uid: Option<&str>) -> String {
    match uid {
        Some(u) => format!("{id} (uid {u})"),
        None => id.to_string(),
    }
}

fn time_or_now(s: Option<&str>) -> Timestamp {
    s.and_then(Timestamp::parse_rfc3339)
        .unwrap_or_else(Timestamp::now)
}

/// The source's id when it has Herald's shape (Svix's have), else a new one if the record has a
/// uid to be found again by; without either a second run could not tell it was copied.
fn keep_id<T: std::str::FromStr>(
    id: &str,
    uid: Option<&String>,
    generate: fn() -> T,
) -> Result<T, String> {
    match (id.parse::<T>(), uid) {
        (Ok(id), _) => Ok(id),
        (Err(_), Some(_)) => Ok(generate()),
        (Err(_), None) => Err(format!(
            "its id {id:?} is not of Herald's form and it has no uid to be recognised by on a later run"
        )),
    }
}

fn invalid(e: ValidationError) -> String {
    format!("{} {}", e.field, e.msg)
}

fn event_type_record(et: &RemoteEventType) -> Result<EventType, ValidationError> {
    validate::event_type_name("name", &et.name)?;
    validate::text(
        "description",
        &et.description,
        validate::MAX_DESCRIPTION_LEN,
    )?;
    if let Some(g) = &et.group_name {
        validate::text("groupName", g, validate::MAX_NAME_LEN)?;
    }
    for (i, f) in et.feature_flags.iter().flatten().enumerate() {
        validate::token(&format!("featureFlags.{i}"), f)?;
    }
    let schemas = match &et.schemas {
        None | Some(serde_json::Value::Null) => None,
        Some(v @ serde_json::Value::Object(_)) => Some(v.to_string()),
        Some(_) => {
            return Err(ValidationError::new(
                "schemas",
                "is not an object of versions",
            ))
        }
    };
    let created_at = time_or_now(et.created_at.as_deref());
    Ok(EventType {
        name: et.name.clone(),
        description: et.description.clone(),
        archived: et.archived,
        deprecated: et.deprecated,
        schemas,
        feature_flags: et.feature_flags.clone(),
        group_name: et.group_name.clone(),
        created_at,
        updated_at: et
            .updated_at
            .as_deref()
            .and_then(Timestamp::parse_rfc3339)
            .unwrap_or(created_at),
    })
}

fn app_record(app: &RemoteApp, limits: &Limits) -> Result<Application, String> {
    let id = keep_id(&app.id, app.uid.as_ref(), AppId::generate)?;
    validate::all([
        validate::name("name", &app.name),
        app.uid.as_ref().map_or(Ok(()), |u| validate::uid("uid", u)),
        validate::metadata("metadata", &app.metadata, limits),
    ])
    .map_err(|errors| {
        errors
            .into_iter()
            .map(invalid)
            .collect::<Vec<_>>()
            .join("; ")
    })?;
    let created_at = time_or_now(app.created_at.as_deref());
    Ok(Application {
        id,
        uid: app.uid.clone(),
        name: app.name.clone(),
        metadata: app.metadata.clone(),
        throttle_rate: app.rate_limit.or(app.throttle_rate),
        created_at,
        updated_at: time_or_now(app.updated_at.as_deref()).max(created_at),
    })
}

fn endpoint_record(
    ep: &RemoteEndpoint,
    app: &AppId,
    secret: &str,
    headers: std::collections::BTreeMap<String, String>,
    limits: &Limits,
) -> Result<Endpoint, String> {
    let id = keep_id(&ep.id, ep.uid.as_ref(), EndpointId::generate)?;
    let filter = ep.filter_types.clone().or_else(|| ep.event_types.clone());
    // Svix stores an empty list as "no filter".
    let filter = filter.filter(|f| !f.is_empty()).map(|f| set(&f));
    let channels = ep
        .channels
        .clone()
        .filter(|c| !c.is_empty())
        .map(|c| set(&c));
    let payload_filter = ep.filter.clone().filter(|f| !f.is_empty());
    let ordering = match ep.ordering.as_deref() {
        None | Some("unordered") => DeliveryOrder::Unordered,
        Some("fifo") => DeliveryOrder::Fifo,
        Some(other) => {
            return Err(format!(
                "its ordering {other:?} is not one Herald knows (fifo or unordered)"
            ))
        }
    };
    validate::all([
        validate::endpoint_url("url", &ep.url, limits),
        validate::text(
            "description",
            &ep.description,
            validate::MAX_DESCRIPTION_LEN,
        ),
        ep.uid.as_ref().map_or(Ok(()), |u| validate::uid("uid", u)),
        filter
            .as_ref()
            .map_or(Ok(()), |f| validate::filter_types("filterTypes", f)),
        channels
            .as_ref()
            .map_or(Ok(()), |c| validate::channels("channels", c)),
        validate::metadata("metadata", &ep.metadata, limits),
        validate::headers("headers", &headers, limits),
        payload_filter
            .as_ref()
            .map_or(Ok(()), |f| validate::payload_filter("filter", f)),
    ])
    .map_err(|errors| {
        errors
            .into_iter()
            .map(invalid)
            .collect::<Vec<_>>()
            .join("; ")
    })?;
    // Only the key's form is told: the secret itself is never put in a message.
    let secret = SigningKey::parse("secret", secret).map_err(|_| {
        "its signing secret is not a whsec_ key of 24 to 64 bytes (asymmetric keys are not supported)"
            .to_string()
    })?;
    let created_at = time_or_now(ep.created_at.as_deref());
    Ok(Endpoint {
        id,
        app_id: app.clone(),
        uid: ep.uid.clone(),
        url: ep.url.clone(),
        description: ep.description.clone(),
        filter_types: filter,
        channels,
        disabled: ep.disabled,
        disabled_reason: None,
        throttle_rate: ep.rate_limit.or(ep.throttle_rate),
        ordering,
        headers,
        metadata: ep.metadata.clone(),
        version: ep.version.unwrap_or(1),
        secret,
        retired_keys: Vec::new(),
        created_at,
        updated_at: time_or_now(ep.updated_at.as_deref()).max(created_at),
        filter: payload_filter,
    })
}

/// Sorted and de-duplicated, as the API stores filters.
fn set(items: &[String]) -> Vec<String> {
    let mut v = items.to_vec();
    v.sort();
    v.dedup();
    v
}

/// A progress bar on stderr when it is a terminal, and one line per record: on stderr while
/// copying, on stdout in a dry run (that list is the answer).
struct Progress {
    bar: ProgressBar,
    to_stdout: bool,
}

impl Progress {
    fn new(dry_run: bool) -> Progress {
        let target = if std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let bar = ProgressBar::with_draw_target(None, target);
        if let Ok(spinner) = ProgressStyle::with_template("{spinner} {msg} ({elapsed})") {
            bar.set_style(spinner);
        }
        bar.enable_steady_tick(Duration::from_millis(120));
        Progress {
            bar,
            to_stdout: dry_run,
        }
    }

    fn reading(&self, what: &str) {
        self.bar.set_message(what.to_string());
    }

    fn start(&self, total: u64) {
        let style = ProgressStyle::with_template(
            "{spinner} [{bar:40}] {pos}/{len} records, {elapsed} (eta {eta}) {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        self.bar.set_style(style);
        self.bar.set_length(total);
        self.bar.set_position(0);
        self.bar.set_message("");
    }

    fn line(&self, text: &str) {
        self.bar.suspend(|| {
            if self.to_stdout {
                println!("{text}");
            } else {
                eprintln!("{text}");
            }
        });
        self.bar.inc(1);
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remote_ep(json: &str) -> RemoteEndpoint {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn an_endpoint_keeps_its_id_secret_filters_and_state() {
        let app = AppId::generate();
        let id = EndpointId::generate();
        let ep = remote_ep(&format!(
            r#"{{"id":"{id}","uid":"billing","url":"https://r.example/h","description":"d",
                "filterTypes":["b.x","a.y","a.y"],"channels":["c1"],"disabled":true,
                "rateLimit":7,"metadata":{{"k":"v"}},"version":2,
                "createdAt":"2024-01-02T03:04:05Z"}}"#
        ));
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let headers = [("x-team".to_string(), "core".to_string())].into();
        let e = endpoint_record(&ep, &app, secret, headers, &Limits::default()).unwrap();
        assert_eq!(e.id, id);
        assert_eq!(e.app_id, app);
        assert_eq!(e.secret.to_whsec(), secret);
        assert_eq!(e.filter_types, Some(vec!["a.y".into(), "b.x".into()]));
        assert_eq!(e.channels, Some(vec!["c1".into()]));
        assert!(e.disabled);
        assert_eq!(e.throttle_rate, Some(7));
        assert_eq!(e.version, 2);
        assert_eq!(e.headers["x-team"], "core");
        // A Svix source has no payload filter nor ordering.
        assert_eq!((e.filter, e.ordering), (None, DeliveryOrder::Unordered));
        assert_eq!(
            e.created_at,
            Timestamp::parse_rfc3339("2024-01-02T03:04:05Z").unwrap()
        );
    }

    /// Herald's extensions, from a Herald source: the payload filter and FIFO ordering.
    #[test]
    fn a_herald_endpoint_keeps_its_payload_filter_and_ordering() {
        let app = AppId::generate();
        let ok = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let l = Limits::default();
        let ep = |extra: &str| {
            remote_ep(&format!(
                r#"{{"id":"{}","url":"https://r.example",{extra}}}"#,
                EndpointId::generate()
            ))
        };
        let e = endpoint_record(
            &ep(r#""filter":"$.total > 100","ordering":"fifo""#),
            &app,
            ok,
            Default::default(),
            &l,
        )
        .unwrap();
        assert_eq!(e.filter.as_deref(), Some("$.total > 100"));
        assert_eq!(e.ordering, DeliveryOrder::Fifo);
        let plain = ep(r#""filter":null,"ordering":"unordered""#);
        let e = endpoint_record(&plain, &app, ok, Default::default(), &l).unwrap();
        assert_eq!((e.filter, e.ordering), (None, DeliveryOrder::Unordered));
        let bad = endpoint_record(
            &ep(r#""filter":"$.a ==""#),
            &app,
            ok,
            Default::default(),
            &l,
        );
        assert!(bad.unwrap_err().starts_with("filter "));
        let odd = endpoint_record(
            &ep(r#""ordering":"lifo""#),
            &app,
            ok,
            Default::default(),
            &l,
        );
        assert!(odd.unwrap_err().contains("\"lifo\""));
    }

    #[test]
    fn what_cannot_be_copied_faithfully_is_refused_with_a_reason() {
        let app = AppId::generate();
        let ok = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let no = std::collections::BTreeMap::new;
        let l = Limits::default();
        // A foreign id without a uid could not be recognised by a second run.
        let foreign = remote_ep(r#"{"id":"endpoint-7","url":"https://r.example"}"#);
        assert!(endpoint_record(&foreign, &app, ok, no(), &l)
            .unwrap_err()
            .contains("no uid"));
        let with_uid = remote_ep(r#"{"id":"endpoint-7","uid":"u7","url":"https://r.example"}"#);
        assert!(endpoint_record(&with_uid, &app, ok, no(), &l).is_ok());
        // An asymmetric key, and the reason never holds the secret.
        let ep = remote_ep(&format!(
            r#"{{"id":"{}","url":"https://r.example"}}"#,
            EndpointId::generate()
        ));
        let why = endpoint_record(&ep, &app, "whsk_c2VjcmV0LXNlY3JldA==", no(), &l).unwrap_err();
        assert!(why.contains("asymmetric") && !why.contains("c2Vj"), "{why}");
        let bad_url = remote_ep(&format!(
            r#"{{"id":"{}","url":"ftp://r.example"}}"#,
            EndpointId::generate()
        ));
        assert!(endpoint_record(&bad_url, &app, ok, no(), &l)
            .unwrap_err()
            .starts_with("url "));
    }

    #[test]
    fn an_event_type_keeps_its_schemas() {
        let et: RemoteEventType = serde_json::from_str(
            r#"{"name":"order.created","description":"d","archived":true,
                "schemas":{"1":{"type":"object"}},"groupName":"orders"}"#,
        )
        .unwrap();
        let r = event_type_record(&et).unwrap();
        assert!(r.archived);
        assert_eq!(r.schemas.as_deref(), Some(r#"{"1":{"type":"object"}}"#));
        assert_eq!(r.group_name.as_deref(), Some("orders"));
    }

    #[test]
    fn the_summary_counts_each_kind() {
        let s = Summary {
            dry_run: true,
            apps: Tally {
                copied: 2,
                present: 1,
                skipped: 0,
            },
            ..Default::default()
        };
        assert!(s
            .render()
            .contains("applications: 2 to copy, 1 already here, 0 skipped"));
    }
}
