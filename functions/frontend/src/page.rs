//! The browser page at `/`: a form that places orders and a list that follows them live:
//! the orders placed from this browser and any uuid pasted in (kept in its
//! `localStorage`), each by polling `GET /orders/{uuid}`, and everyone's latest orders
//! (`GET /orders`) where the server lists them.
//!
//! The page is compiled into the binary (`assets/`), so the service reads no file at run
//! time, and it is served with a Content-Security-Policy that lets it load nothing but its
//! own script, style and icon and talk to nothing but its own origin. That is why nothing in
//! it is inline.

use axum::Router;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use saga::gcp::Clients;

/// What the page may load and where it may send anything: its own assets and origin only.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; \
     base-uri 'none'; frame-ancestors 'none'";

/// Revalidate on every use: the asset names carry no version, so a cached copy must never
/// outlive a deployment, and the `ETag` makes the check a bodiless 304.
pub const CACHE_CONTROL: &str = "no-cache";

const SECURITY_HEADERS: [(HeaderName, &str); 6] = [
    (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::REFERRER_POLICY, "no-referrer"),
    // For browsers that predate `frame-ancestors`.
    (header::X_FRAME_OPTIONS, "DENY"),
    (
        HeaderName::from_static("cross-origin-opener-policy"),
        "same-origin",
    ),
    (
        HeaderName::from_static("cross-origin-resource-policy"),
        "same-origin",
    ),
];

/// One file of the page.
struct Asset {
    path: &'static str,
    body: &'static str,
    content_type: &'static str,
    hash: u64,
}

impl Asset {
    const fn new(path: &'static str, body: &'static str, content_type: &'static str) -> Self {
        Asset {
            path,
            body,
            content_type,
            hash: fnv1a(body.as_bytes()),
        }
    }

    fn etag(&self) -> String {
        format!("\"{:016x}\"", self.hash)
    }

    /// The asset, or `304 Not Modified` when the browser's copy is this one.
    fn serve(&self, request: &HeaderMap) -> Response {
        let etag = self.etag();
        let fresh = request
            .get_all(header::IF_NONE_MATCH)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|tag| tag.trim().trim_start_matches("W/"))
            .any(|tag| tag == "*" || tag == etag);
        let mut response = if fresh {
            StatusCode::NOT_MODIFIED.into_response()
        } else {
            ([(header::CONTENT_TYPE, self.content_type)], self.body).into_response()
        };
        let headers = response.headers_mut();
        headers.insert(
            header::ETAG,
            HeaderValue::from_str(&etag).expect("a hex ETag is a valid header value"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(CACHE_CONTROL));
        for (name, value) in SECURITY_HEADERS {
            headers.insert(name, HeaderValue::from_static(value));
        }
        response
    }
}

/// FNV-1a: a content hash that a `const` can compute, so each `ETag` is fixed at build time.
const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    hash
}

static INDEX: Asset = Asset::new(
    "/",
    include_str!("../assets/index.html"),
    "text/html; charset=utf-8",
);
static SCRIPT: Asset = Asset::new(
    "/app.js",
    include_str!("../assets/app.js"),
    "text/javascript; charset=utf-8",
);
static STYLE: Asset = Asset::new(
    "/app.css",
    include_str!("../assets/app.css"),
    "text/css; charset=utf-8",
);
static ICON: Asset = Asset::new(
    "/favicon.svg",
    include_str!("../assets/favicon.svg"),
    "image/svg+xml",
);

static ASSETS: [&Asset; 4] = [&INDEX, &SCRIPT, &STYLE, &ICON];

/// The page's routes: `/`, `/app.js`, `/app.css` and `/favicon.svg`.
pub fn routes() -> Router<Clients> {
    ASSETS.iter().fold(Router::new(), |router, asset| {
        router.route(
            asset.path,
            get(move |headers: HeaderMap| async move { asset.serve(&headers) }),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header<'a>(response: &'a Response, name: &HeaderName) -> &'a str {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    #[test]
    fn every_asset_is_served_with_its_type_the_security_headers_and_a_revalidated_cache() {
        for asset in ASSETS {
            let response = asset.serve(&HeaderMap::new());
            assert_eq!(response.status(), StatusCode::OK, "{}", asset.path);
            assert_eq!(header(&response, &header::CONTENT_TYPE), asset.content_type);
            assert_eq!(header(&response, &header::CACHE_CONTROL), "no-cache");
            assert_eq!(header(&response, &header::ETAG), asset.etag());
            for (name, value) in SECURITY_HEADERS {
                assert_eq!(header(&response, &name), value, "{} {name}", asset.path);
            }
        }
    }

    #[test]
    fn a_browser_holding_the_current_copy_gets_304_and_one_holding_an_old_copy_gets_the_file() {
        let mut request = HeaderMap::new();
        let current = format!("\"0000000000000000\", W/{}", SCRIPT.etag());
        request.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_str(&current).expect("an ETag list is a valid header value"),
        );
        let response = SCRIPT.serve(&request);
        assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(header(&response, &header::X_CONTENT_TYPE_OPTIONS), "nosniff");

        request.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_static("\"0000000000000000\""),
        );
        assert_eq!(SCRIPT.serve(&request).status(), StatusCode::OK);
    }

    #[test]
    fn the_assets_differ_so_their_etags_differ() {
        let mut tags: Vec<String> = ASSETS.iter().map(|a| a.etag()).collect();
        tags.sort();
        tags.dedup();
        assert_eq!(tags.len(), ASSETS.len());
    }

    #[test]
    fn the_page_has_nothing_inline_and_nothing_from_elsewhere_for_the_policy_to_block() {
        for asset in ASSETS {
            let body = asset.body.to_ascii_lowercase();
            for banned in [
                "http:",
                "https:",
                "//",
                "style=",
                "onclick",
                "onload",
                "javascript:",
                "innerhtml",
            ] {
                let hits: Vec<&str> = body
                    .lines()
                    .filter(|line| line.contains(banned))
                    // Comments in the script and the SVG namespace are not loads.
                    .filter(|line| !line.trim_start().starts_with("//"))
                    .filter(|line| !line.contains("xmlns=\"http://www.w3.org/2000/svg\""))
                    .collect();
                assert!(hits.is_empty(), "{} has `{banned}`: {hits:?}", asset.path);
            }
        }
        let html = INDEX.body;
        assert_eq!(html.matches("<script").count(), 1);
        assert!(html.contains("<script src=\"app.js\" defer></script>"));
        assert!(!html.contains("<style"));
        for asset in &ASSETS[1..] {
            let relative = asset.path.trim_start_matches('/');
            assert!(
                html.contains(&format!("\"{relative}\"")),
                "index.html uses {relative}"
            );
        }
    }
}
