//! The browser UIs: the files of `static/`, embedded in the binary at build time (debug builds
//! read the folder at request time, so edits show on reload). The admin UI is served at `/`, the
//! customer portal at `/portal/` (`static/portal/`, plus `/portal/config.json`: the operator's
//! branding from `[portal]`). Both are served without a token; each page sends its token to the
//! API like any client. Every file is revalidated by ETag, and every answer carries a strict
//! Content-Security-Policy: the UIs load nothing but their own files (and the portal the
//! operator's logo). Only the portal may be framed, by the sites `portal.frame_ancestors` names.

use std::sync::Arc;

use rust_embed::RustEmbed;
use warp::filters::BoxedFilter;
use warp::http::{header, HeaderValue, StatusCode};
use warp::reply::{Reply, Response};
use warp::Filter;

use crate::config::PortalConfig;

#[derive(RustEmbed)]
#[folder = "static/"]
struct Assets;

const CSP: &str = "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; \
                   form-action 'self'; frame-ancestors 'none'";

/// The security headers of one UI's answers.
struct Policy {
    csp: HeaderValue,
    /// `X-Frame-Options: DENY` too, for browsers without `frame-ancestors`; only when no site may
    /// frame the page (a site allowed by the policy would be refused by this header).
    deny_frames: bool,
}

/// The portal's policy and branding, made once from the configuration.
struct Portal {
    policy: Policy,
    config_json: Vec<u8>,
}

impl Portal {
    fn new(c: &PortalConfig) -> Portal {
        // The logo may come from the operator's own site: its origin joins `img-src` (validated
        // as an http(s) URL when the configuration loaded, so the origin holds no `;`).
        let logo = c
            .logo_url
            .as_deref()
            .and_then(|u| url::Url::parse(u).ok())
            .map(|u| format!(" {}", u.origin().ascii_serialization()))
            .unwrap_or_default();
        let csp =
            format!(
            "default-src 'self'; img-src 'self' data:{logo}; object-src 'none'; base-uri 'none'; \
             form-action 'self'; frame-ancestors {}",
            c.frame_ancestors.split_whitespace().collect::<Vec<_>>().join(" ")
        );
        let config = serde_json::json!({
            "operatorName": c.operator_name,
            "logoUrl": c.logo_url,
            "accent": c.accent,
        });
        Portal {
            policy: Policy {
                // Checked when the configuration loaded; the fallback forbids every frame.
                csp: HeaderValue::from_str(&csp).unwrap_or(HeaderValue::from_static(CSP)),
                deny_frames: c.frame_ancestors.trim() == "'none'",
            },
            config_json: config.to_string().into_bytes(),
        }
    }
}

pub fn routes(portal: &PortalConfig) -> BoxedFilter<(Response,)> {
    let portal = Arc::new(Portal::new(portal));
    warp::get()
        .or(warp::head())
        .unify()
        .and(warp::path::tail())
        .and(warp::header::optional::<String>("if-none-match"))
        .and_then(move |tail: warp::path::Tail, etag: Option<String>| {
            let portal = portal.clone();
            async move {
                route(&portal, tail.as_str(), etag.as_deref()).ok_or_else(warp::reject::not_found)
            }
        })
        .boxed()
}

/// The admin UI's file at `path`, or the portal's under `portal/`.
fn route(portal: &Portal, path: &str, if_none_match: Option<&str>) -> Option<Response> {
    let admin = Policy {
        csp: HeaderValue::from_static(CSP),
        deny_frames: true,
    };
    let Some(rest) = path.strip_prefix("portal") else {
        let path = if path.is_empty() { "index.html" } else { path };
        return serve(path, if_none_match, &admin);
    };
    match rest.strip_prefix('/') {
        // `/portal` and `/portal/`: the page uses absolute paths, so both work.
        None if rest.is_empty() => serve("portal/index.html", if_none_match, &portal.policy),
        Some("") => serve("portal/index.html", if_none_match, &portal.policy),
        Some("config.json") => {
            let mut r = Response::new(portal.config_json.clone().into());
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            secure(r.headers_mut(), &portal.policy);
            Some(r)
        }
        Some(file) => serve(&format!("portal/{file}"), if_none_match, &portal.policy),
        // `/portalx`: not ours.
        None => serve(path, if_none_match, &admin),
    }
}

/// The embedded file at `path`, or `None` if there is no such file.
fn serve(path: &str, if_none_match: Option<&str>, policy: &Policy) -> Option<Response> {
    let file = Assets::get(path)?;
    let etag = format!("\"{}\"", hex(&file.metadata.sha256_hash()));
    let fresh = if_none_match.is_some_and(|v| {
        v.split(',')
            .map(|t| t.trim().trim_start_matches("W/"))
            .any(|t| t == etag || t == "*")
    });
    let mut resp = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut r = Response::new(file.data.into_owned().into());
        let mime = file.metadata.mimetype();
        let textual = mime.starts_with("text/") || mime.ends_with("javascript");
        let mime = if textual {
            format!("{mime}; charset=utf-8")
        } else {
            mime.to_string()
        };
        if let Ok(v) = HeaderValue::from_str(&mime) {
            r.headers_mut().insert(header::CONTENT_TYPE, v);
        }
        r
    };
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    secure(h, policy);
    Some(resp)
}

fn secure(h: &mut warp::http::HeaderMap, policy: &Policy) {
    // Names are not fingerprinted, so every use revalidates (a 304 when unchanged).
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::CONTENT_SECURITY_POLICY, policy.csp.clone());
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if policy.deny_frames {
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    // The portal's token is in the fragment, which no Referer carries; this keeps page paths
    // out of other sites' logs too.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn portal(frame_ancestors: &str) -> Portal {
        Portal::new(&PortalConfig {
            frame_ancestors: frame_ancestors.into(),
            logo_url: Some("https://cdn.example.com/brand/logo.svg".into()),
            ..PortalConfig::default()
        })
    }

    fn get(path: &str, etag: Option<&str>) -> Option<Response> {
        route(&portal("'none'"), path, etag)
    }

    #[test]
    fn the_root_is_the_index_with_an_etag_and_a_policy() {
        let r = get("", None).expect("index.html is embedded");
        assert_eq!(r.status(), StatusCode::OK);
        let h = r.headers();
        assert!(h[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html"));
        assert!(h[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .contains("default-src 'self'"));
        let etag = h[header::ETAG].to_str().unwrap().to_string();
        assert_eq!(etag.len(), 66, "a quoted sha256: {etag}");

        let again = get("index.html", Some(&etag)).unwrap();
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
        let other = get("index.html", Some("\"stale\", W/\"x\"")).unwrap();
        assert_eq!(other.status(), StatusCode::OK);
    }

    #[test]
    fn unknown_files_are_not_served() {
        assert!(get("nope.js", None).is_none());
        assert!(get("../Cargo.toml", None).is_none());
        assert!(get("portal/nope.js", None).is_none());
        assert!(get("portalx", None).is_none());
    }

    #[test]
    fn the_portal_may_be_framed_only_by_the_configured_sites() {
        let csp = |r: &Response| {
            r.headers()[header::CONTENT_SECURITY_POLICY]
                .to_str()
                .unwrap()
                .to_string()
        };
        let admin = get("", None).unwrap();
        assert!(csp(&admin).ends_with("frame-ancestors 'none'"));
        assert_eq!(admin.headers()[header::X_FRAME_OPTIONS], "DENY");

        let p = portal("'self'   https://app.example.com");
        for path in ["portal", "portal/", "portal/config.json"] {
            let r = route(&p, path, None).unwrap();
            let policy = csp(&r);
            assert!(
                policy.ends_with("frame-ancestors 'self' https://app.example.com"),
                "{policy}"
            );
            assert!(
                policy.contains("img-src 'self' data: https://cdn.example.com;"),
                "{policy}"
            );
            assert!(r.headers().get(header::X_FRAME_OPTIONS).is_none(), "{path}");
        }
        let page = route(&p, "portal/", None).unwrap();
        assert!(page.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html"));
        // The admin UI stays unframeable whatever the portal allows.
        assert!(csp(&route(&p, "", None).unwrap()).ends_with("frame-ancestors 'none'"));
        let closed = get("portal/", None).unwrap();
        assert_eq!(closed.headers()[header::X_FRAME_OPTIONS], "DENY");
    }
}
