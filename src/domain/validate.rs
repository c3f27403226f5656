//! Input rules that hold whatever the transport: id/uid and name patterns, endpoint URLs, channels,
//! custom headers and signing secrets. Each failure names the offending field so the API can answer
//! 422 with a `loc`.

use std::collections::BTreeMap;

use base64::Engine;

use super::model::SigningKey;

/// The limits a request is held to (configurable; defaults documented in the README).
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_url_len: usize,
    pub max_headers: usize,
    pub max_header_value_len: usize,
    pub max_metadata_entries: usize,
    /// Payload bytes one page of a message list holds at most (then it ends early, `done: false`).
    pub max_list_bytes: usize,
    /// Records one page of a list reads at most, kept by its filters or not.
    pub max_list_scan: usize,
    /// The least time ahead a message's `deliverAt` may be (Svix: one minute).
    pub deliver_at_min_lead_secs: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_url_len: 2048,
            max_headers: 32,
            max_header_value_len: 4096,
            max_metadata_entries: 64,
            max_list_bytes: 8 * 1024 * 1024,
            max_list_scan: 10_000,
            deliver_at_min_lead_secs: 60,
        }
    }
}

pub const MAX_UID_LEN: usize = 256;
pub const MAX_EVENT_TYPE_NAME_LEN: usize = 256;
pub const MAX_CHANNEL_LEN: usize = 128;
pub const MAX_CHANNELS: usize = 10;
pub const MAX_FILTER_TYPES: usize = 256;
pub const MAX_NAME_LEN: usize = 256;
pub const MAX_DESCRIPTION_LEN: usize = 4096;
pub const MAX_METADATA_LEN: usize = 1024;
/// Signing keys are 24 to 64 random bytes (Standard Webhooks).
pub const MIN_SECRET_BYTES: usize = 24;
pub const MAX_SECRET_BYTES: usize = 64;
pub const GENERATED_SECRET_BYTES: usize = 24;
pub const SECRET_PREFIX: &str = "whsec_";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {msg}")]
pub struct ValidationError {
    pub field: String,
    pub msg: String,
    pub kind: &'static str,
}

impl ValidationError {
    pub fn new(field: impl Into<String>, msg: impl Into<String>) -> Self {
        ValidationError {
            field: field.into(),
            msg: msg.into(),
            kind: "value_error",
        }
    }
}

type Result<T> = std::result::Result<T, ValidationError>;

/// Every failure among independent checks, so a form can mark all its bad fields at once.
pub fn all(
    checks: impl IntoIterator<Item = Result<()>>,
) -> std::result::Result<(), Vec<ValidationError>> {
    let errors: Vec<_> = checks.into_iter().filter_map(Result::err).collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

fn matches_charset(s: &str, extra: &[u8]) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || extra.contains(&b))
}

/// A uid (an application's or endpoint's `uid`, a message's `eventId`): a [`token`] that does not
/// take the shape of an id. Paths take an id or a uid and try the id first, so a uid that starts
/// like an id could name another object; Svix refuses a uid with its own type's prefix, Herald
/// every id prefix.
pub fn uid(field: &str, value: &str) -> Result<()> {
    token(field, value)?;
    if let Some(p) = ID_PREFIXES.iter().find(|p| value.starts_with(**p)) {
        return Err(ValidationError::new(
            field,
            format!("must not start with {p:?}: Herald's ids start that way (put another character first, e.g. _)"),
        ));
    }
    Ok(())
}

/// The prefixes of Herald's ids (see `ids`).
const ID_PREFIXES: [&str; 4] = [
    super::AppId::PREFIX,
    super::EndpointId::PREFIX,
    super::MessageId::PREFIX,
    super::AttemptId::PREFIX,
];

/// `^[a-zA-Z0-9\-_.]+$`, 1 to 256 characters (Svix's uid rule): uids, tags, feature flags.
pub fn token(field: &str, value: &str) -> Result<()> {
    if value.is_empty() || value.len() > MAX_UID_LEN || !matches_charset(value, b"-_.") {
        return Err(ValidationError::new(
            field,
            format!("use letters, digits, - _ . only (1 to {MAX_UID_LEN} characters, no spaces)"),
        ));
    }
    Ok(())
}

/// Event-type names: `^[a-zA-Z0-9\-_.]+$`, at most 256 characters.
pub fn event_type_name(field: &str, value: &str) -> Result<()> {
    if value.is_empty() || value.len() > MAX_EVENT_TYPE_NAME_LEN || !matches_charset(value, b"-_.")
    {
        return Err(ValidationError::new(
            field,
            format!(
                "use letters, digits, - _ . only (1 to {MAX_EVENT_TYPE_NAME_LEN} characters, no spaces)"
            ),
        ));
    }
    Ok(())
}

/// Channels: `^[a-zA-Z0-9\-_.:]+$`, at most 128 characters, at most 10 per object.
pub fn channels(field: &str, values: &[String]) -> Result<()> {
    if values.is_empty() || values.len() > MAX_CHANNELS {
        return Err(ValidationError::new(
            field,
            format!("must hold 1 to {MAX_CHANNELS} channels"),
        ));
    }
    for (i, c) in values.iter().enumerate() {
        if c.is_empty() || c.len() > MAX_CHANNEL_LEN || !matches_charset(c, b"-_.:") {
            return Err(ValidationError::new(
                format!("{field}.{i}"),
                format!(
                    "use letters, digits, - _ . : only (1 to {MAX_CHANNEL_LEN} characters, no spaces)"
                ),
            ));
        }
    }
    Ok(())
}

pub fn filter_types(field: &str, values: &[String]) -> Result<()> {
    if values.is_empty() || values.len() > MAX_FILTER_TYPES {
        return Err(ValidationError::new(
            field,
            format!("must hold 1 to {MAX_FILTER_TYPES} event types (omit it to receive all)"),
        ));
    }
    for (i, v) in values.iter().enumerate() {
        event_type_name(&format!("{field}.{i}"), v)?;
    }
    Ok(())
}

/// An endpoint's payload filter (see `domain::filter`); the error says where it stops parsing.
pub fn payload_filter(field: &str, value: &str) -> Result<()> {
    super::filter::Filter::parse(value)
        .map(drop)
        .map_err(|e| ValidationError::new(field, e.to_string()))
}

pub fn text(field: &str, value: &str, max: usize) -> Result<()> {
    if value.len() > max {
        return Err(ValidationError::new(
            field,
            format!("is too long: at most {max} bytes"),
        ));
    }
    Ok(())
}

pub fn name(field: &str, value: &str) -> Result<()> {
    if value.trim().is_empty() {
        return Err(ValidationError::new(field, "is required"));
    }
    text(field, value, MAX_NAME_LEN)
}

/// An endpoint URL: absolute http or https with a host, within the length limit.
pub fn endpoint_url(field: &str, value: &str, limits: &Limits) -> Result<()> {
    if value.len() > limits.max_url_len {
        return Err(ValidationError::new(
            field,
            format!("is too long: at most {} bytes", limits.max_url_len),
        ));
    }
    let parsed = url::Url::parse(value).map_err(|e| {
        ValidationError::new(
            field,
            format!("is not a full URL ({e}): write it like https://example.com/webhooks"),
        )
    })?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(ValidationError::new(
            field,
            "must start with http:// or https://",
        ));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(ValidationError::new(
            field,
            "must name a host, as in https://example.com/webhooks",
        ));
    }
    Ok(())
}

pub fn metadata(field: &str, values: &BTreeMap<String, String>, limits: &Limits) -> Result<()> {
    if values.len() > limits.max_metadata_entries {
        return Err(ValidationError::new(
            field,
            format!("must hold at most {} entries", limits.max_metadata_entries),
        ));
    }
    for (k, v) in values {
        if k.len() > MAX_METADATA_LEN || v.len() > MAX_METADATA_LEN {
            return Err(ValidationError::new(
                format!("{field}.{k}"),
                format!("keys and values must be at most {MAX_METADATA_LEN} bytes"),
            ));
        }
    }
    Ok(())
}

/// Headers Herald sets itself or that would break HTTP framing; custom headers may not use them.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "proxy-authorization",
    "proxy-connection",
    "user-agent",
];

fn is_reserved_header(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    RESERVED_HEADERS.contains(&lower.as_str())
        || lower.starts_with("webhook-")
        || lower.starts_with("svix-")
}

/// Custom endpoint headers: valid HTTP names and values, none that Herald sets itself.
pub fn headers(field: &str, values: &BTreeMap<String, String>, limits: &Limits) -> Result<()> {
    if values.len() > limits.max_headers {
        return Err(ValidationError::new(
            field,
            format!("must hold at most {} headers", limits.max_headers),
        ));
    }
    for (k, v) in values {
        let loc = format!("{field}.{k}");
        let token = !k.is_empty() && k.len() <= 256 && matches_charset(k, b"!#$%&'*+-.^_`|~");
        if !token {
            return Err(ValidationError::new(
                loc,
                "header names use letters, digits and - (also ! # $ % & ' * + . ^ _ ` | ~), \
                 no spaces or colons, at most 256 characters",
            ));
        }
        if is_reserved_header(k) {
            return Err(ValidationError::new(
                loc,
                "is a header Herald sets itself: choose another name",
            ));
        }
        if v.len() > limits.max_header_value_len
            || v.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0)
        {
            return Err(ValidationError::new(
                loc,
                format!(
                    "the value must be one line of at most {} bytes",
                    limits.max_header_value_len
                ),
            ));
        }
    }
    Ok(())
}

/// Header names whose values are credentials: hidden from `GET …/headers`, listed as sensitive.
pub fn is_sensitive_header(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    matches!(
        lower.as_str(),
        "authorization" | "cookie" | "x-api-key" | "api-key" | "x-auth-token"
    )
}

impl SigningKey {
    /// 24 fresh bytes from the OS CSPRNG.
    pub fn generate() -> std::result::Result<Self, getrandom::Error> {
        let mut bytes = vec![0u8; GENERATED_SECRET_BYTES];
        getrandom::fill(&mut bytes)?;
        Ok(SigningKey(bytes))
    }

    /// Parse `whsec_<base64>` or bare base64 of 24 to 64 bytes.
    pub fn parse(field: &str, value: &str) -> Result<Self> {
        let b64 = value.strip_prefix(SECRET_PREFIX).unwrap_or(value);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| {
                ValidationError::new(field, "must be whsec_ followed by standard base64")
            })?;
        if !(MIN_SECRET_BYTES..=MAX_SECRET_BYTES).contains(&bytes.len()) {
            return Err(ValidationError::new(
                field,
                format!("must decode to {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} bytes"),
            ));
        }
        Ok(SigningKey(bytes))
    }

    /// `whsec_` + standard base64, the form receivers configure.
    pub fn to_whsec(&self) -> String {
        format!(
            "{SECRET_PREFIX}{}",
            base64::engine::general_purpose::STANDARD.encode(&self.0)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secrets_have_standard_webhooks_format() {
        let a = SigningKey::generate().expect("csprng");
        let b = SigningKey::generate().expect("csprng");
        assert_ne!(a, b);
        let text = a.to_whsec();
        assert!(text.starts_with("whsec_"));
        assert_eq!(
            text.len(),
            "whsec_".len() + 32,
            "24 bytes are 32 base64 characters"
        );
        assert_eq!(SigningKey::parse("secret", &text), Ok(a.clone()));
        assert_eq!(SigningKey::parse("secret", &text["whsec_".len()..]), Ok(a));
    }

    #[test]
    fn bad_secrets_are_refused() {
        assert!(SigningKey::parse("secret", "whsec_short").is_err());
        assert!(SigningKey::parse("secret", "whsec_!!!!").is_err());
        let too_long = base64::engine::general_purpose::STANDARD.encode([7u8; 65]);
        assert!(SigningKey::parse("secret", &too_long).is_err());
        let ok = base64::engine::general_purpose::STANDARD.encode([7u8; 64]);
        assert!(SigningKey::parse("secret", &ok).is_ok());
    }

    #[test]
    fn urls_must_be_http_with_a_host_and_short() {
        let l = Limits::default();
        assert!(endpoint_url("url", "https://example.com/hook", &l).is_ok());
        assert!(endpoint_url("url", "http://127.0.0.1:9000/", &l).is_ok());
        assert!(endpoint_url("url", "ftp://example.com/", &l).is_err());
        assert!(endpoint_url("url", "not a url", &l).is_err());
        assert!(endpoint_url("url", "file:///etc/passwd", &l).is_err());
        let long = format!("https://example.com/{}", "a".repeat(2048));
        assert_eq!(endpoint_url("url", &long, &l).unwrap_err().field, "url");
    }

    #[test]
    fn uid_and_names_follow_svix_patterns() {
        assert!(uid("uid", "my-app_1.2").is_ok());
        assert!(uid("uid", "").is_err());
        assert!(uid("uid", "has space").is_err());
        assert!(uid("uid", &"a".repeat(257)).is_err());
        for id_like in ["app_1", "ep_x", "msg_2Yo5GNZB2LvV6KhKKpjzpQXoR2V", "atmpt_"] {
            assert!(uid("uid", id_like).is_err(), "{id_like}");
            assert!(token("tags.0", id_like).is_ok(), "{id_like}");
        }
        for fine in ["_app_1", "App_1", "apps", "ep-1", "message_1"] {
            assert!(uid("uid", fine).is_ok(), "{fine}");
        }
        assert!(event_type_name("name", "order.created").is_ok());
        assert!(event_type_name("name", "order/created").is_err());
        assert!(channels("channels", &["project:123".into()]).is_ok());
        assert!(channels("channels", &[]).is_err());
        assert_eq!(
            channels("channels", &["ok".into(), "bad channel".into()])
                .unwrap_err()
                .field,
            "channels.1"
        );
    }

    /// The admin UI shows these next to the field: words, never a regex or a parser's jargon alone.
    #[test]
    fn messages_are_in_words() {
        let l = Limits::default();
        let mut bad_header = BTreeMap::new();
        bad_header.insert("Bad Header:".to_string(), "1".to_string());
        let errors = [
            uid("uid", "has space").unwrap_err(),
            token("tags.0", "a/b").unwrap_err(),
            event_type_name("name", "order/created").unwrap_err(),
            channels("channels", &["a b".into()]).unwrap_err(),
            endpoint_url("url", "example.com/hook", &l).unwrap_err(),
            endpoint_url("url", "ftp://example.com/", &l).unwrap_err(),
            headers("headers", &bad_header, &l).unwrap_err(),
            name("name", " ").unwrap_err(),
        ];
        for e in &errors {
            assert!(!e.msg.contains("^["), "{}: {}", e.field, e.msg);
            assert!(!e.msg.contains("must match"), "{}: {}", e.field, e.msg);
        }
        assert!(errors[0].msg.starts_with("use letters, digits, - _ . only"));
        assert!(errors[3]
            .msg
            .starts_with("use letters, digits, - _ . : only"));
        assert!(errors[4].msg.contains("https://example.com/webhooks"));
        assert_eq!(errors[5].msg, "must start with http:// or https://");
        assert!(errors[6]
            .msg
            .starts_with("header names use letters, digits and -"));
        assert_eq!(errors[7].msg, "is required");
    }

    #[test]
    fn reserved_headers_are_refused() {
        let l = Limits::default();
        let mut h = BTreeMap::new();
        h.insert("X-Custom".to_string(), "1".to_string());
        assert!(headers("headers", &h, &l).is_ok());
        for bad in [
            "webhook-signature",
            "Svix-Id",
            "Content-Length",
            "bad header",
        ] {
            let mut h = BTreeMap::new();
            h.insert(bad.to_string(), "1".to_string());
            assert!(headers("headers", &h, &l).is_err(), "{bad} accepted");
        }
        let mut h = BTreeMap::new();
        h.insert("X-Injected".to_string(), "a\r\nb: c".to_string());
        assert!(headers("headers", &h, &l).is_err());
    }
}
