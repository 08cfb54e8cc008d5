//! CORS for the HTTP API (`--cors-origins`): lets web apps served from other
//! origins call `/v1` (and read `/openapi.json`, `/ready`, ...) with a Bearer
//! token. tower-http's layer answers preflights (`OPTIONS` with
//! `Access-Control-Request-Method`) before routing, and adds the
//! `Access-Control-Allow-Origin` and `Vary` headers to every answer for an
//! allowed origin. With no origins configured there is no layer and no CORS
//! header at all.
//!
//! What it allows, and why:
//! - Methods: those the API serves (`GET POST PUT PATCH DELETE`).
//! - Request headers: `Authorization` and `Content-Type` only. `X-Api-Key` is
//!   left out on purpose: server API keys belong to app backends, never to a
//!   browser page, so a browser cannot send one cross-origin.
//! - Exposed response headers: `Location` and the rate-limit headers, which a
//!   script otherwise cannot read.
//! - No credentials (cookies): the API authenticates with Bearer tokens.

use axum::http::{header, HeaderName, HeaderValue, Method};
use std::time::Duration;
use tower_http::cors::{AllowOrigin, CorsLayer};

/// How long a browser may cache a preflight answer.
pub const MAX_AGE: Duration = Duration::from_secs(600);

/// Response headers a cross-origin script may read.
const EXPOSED: [&str; 9] = [
    "location",
    "retry-after",
    "ratelimit-limit",
    "ratelimit-remaining",
    "ratelimit-reset",
    "ratelimit-policy",
    "x-ratelimit-limit",
    "x-ratelimit-remaining",
    "x-ratelimit-reset",
];

/// Checks `--cors-origins`: `*` alone, or origins of the form
/// `http(s)://host[:port]` (what browsers send in `Origin`: no path, no
/// trailing slash). `null` is refused: sandboxed frames and `file:` pages
/// share it, so allowing it allows them all.
pub fn check_origins(origins: &[String]) -> anyhow::Result<()> {
    for o in origins {
        let o = o.trim();
        if o == "*" {
            anyhow::ensure!(
                origins.len() == 1,
                "cors_origins: `*` allows every origin; give it alone"
            );
            continue;
        }
        let rest = o
            .strip_prefix("https://")
            .or_else(|| o.strip_prefix("http://"));
        let ok = rest.is_some_and(|host| {
            !host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && !matches!(b, b'/' | b',' | b'?' | b'#'))
        });
        anyhow::ensure!(
            ok,
            "cors_origins: {o:?} is not an origin; give scheme://host[:port] \
             (e.g. https://app.example.com, no path or trailing slash) or *"
        );
    }
    Ok(())
}

/// The layer for `origins` (already checked), or none when empty.
pub fn layer(origins: &[String]) -> Option<CorsLayer> {
    let origins: Vec<String> = origins
        .iter()
        .map(|o| o.trim().to_string())
        .filter(|o| !o.is_empty())
        .collect();
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        // Scheme and host are case-insensitive; browsers send them lowercased,
        // an operator may not have typed them so.
        AllowOrigin::predicate(move |origin: &HeaderValue, _| {
            origins
                .iter()
                .any(|o| origin.as_bytes().eq_ignore_ascii_case(o.as_bytes()))
        })
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([
                Method::GET,
                Method::POST,
                Method::PUT,
                Method::PATCH,
                Method::DELETE,
            ])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
            .expose_headers(EXPOSED.map(HeaderName::from_static))
            .max_age(MAX_AGE),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_checked() {
        let ok = |v: &[&str]| check_origins(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert!(ok(&[]).is_ok());
        assert!(ok(&["*"]).is_ok());
        assert!(ok(&["https://app.example.com", "http://localhost:3000"]).is_ok());
        for bad in [
            &["*", "https://a.example"][..],
            &["app.example.com"],
            &["https://app.example.com/"],
            &["https://"],
            &["null"],
            &["https://a b"],
        ] {
            assert!(ok(bad).is_err(), "{bad:?}");
        }
    }
}
