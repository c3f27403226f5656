//! The browser admin UI: the files of `static/`, embedded in the binary at build time (debug builds
//! read the folder at request time, so edits show on reload). Served at `/` without a token; the UI
//! asks for one and sends it to the API like any client. Every file is revalidated by ETag, and
//! every answer carries a strict Content-Security-Policy: the UI loads nothing but its own files.

use rust_embed::RustEmbed;
use warp::filters::BoxedFilter;
use warp::http::{header, HeaderValue, StatusCode};
use warp::reply::{Reply, Response};
use warp::Filter;

#[derive(RustEmbed)]
#[folder = "static/"]
struct Assets;

const CSP: &str = "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; \
                   form-action 'self'; frame-ancestors 'none'";

pub fn routes() -> BoxedFilter<(Response,)> {
    warp::get()
        .or(warp::head())
        .unify()
        .and(warp::path::tail())
        .and(warp::header::optional::<String>("if-none-match"))
        .and_then(|tail: warp::path::Tail, etag: Option<String>| async move {
            serve(tail.as_str(), etag.as_deref()).ok_or_else(warp::reject::not_found)
        })
        .boxed()
}

/// The file at `path` (`index.html` for the root), or `None` if there is no such file.
fn serve(path: &str, if_none_match: Option<&str>) -> Option<Response> {
    let path = if path.is_empty() { "index.html" } else { path };
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
    // Names are not fingerprinted, so every use revalidates (a 304 when unchanged).
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    Some(resp)
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

    #[test]
    fn the_root_is_the_index_with_an_etag_and_a_policy() {
        let r = serve("", None).expect("index.html is embedded");
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

        let again = serve("index.html", Some(&etag)).unwrap();
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
        let other = serve("index.html", Some("\"stale\", W/\"x\"")).unwrap();
        assert_eq!(other.status(), StatusCode::OK);
    }

    #[test]
    fn unknown_files_are_not_served() {
        assert!(serve("nope.js", None).is_none());
        assert!(serve("../Cargo.toml", None).is_none());
    }
}
