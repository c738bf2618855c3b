//! The supervisor dashboard: the files of `web/`, embedded in the binary and served with their
//! content types, validators and a strict Content-Security-Policy.
//!
//! Nothing here knows the API: the dashboard is static files that talk to `/ws` and `/api/v1`
//! like any other client. Everything is same-origin; the policy forbids any other origin, so a
//! site without internet loses nothing.

use bytes::Bytes;
use hyper::header::{
    HeaderValue, CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG, IF_NONE_MATCH,
    REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use hyper::{Method, Request, Response, StatusCode};
use rust_embed::RustEmbed;

use crate::http::{full, Body};

#[derive(RustEmbed)]
#[folder = "web/"]
// Documentation images are for the README, not the appliance.
#[exclude = "docs/*"]
// The client's package files for npm; its code is served (see `served_file`).
#[exclude = "lookout-client/package.json"]
#[exclude = "lookout-client/README.md"]
#[exclude = "lookout-client/index.d.ts"]
#[exclude = "lookout-client/node_modules/*"]
struct Assets;

/// The embedded file behind a request path (without its leading `/`). The client's package,
/// `web/lookout-client/`, is served at the root, where pages have always loaded it:
/// `/lookout-client.js`, and `/vendor/…`, the modules it imports relative to itself.
fn served_file(path: &str) -> Option<rust_embed::EmbeddedFile> {
    if path.starts_with("lookout-client/") {
        return None;
    }
    if path == "lookout-client.js" || path.starts_with("vendor/") {
        return Assets::get(&format!("lookout-client/{path}"));
    }
    Assets::get(path)
}

/// Scripts, styles, images and connections from this origin only; video frames are drawn from
/// `blob:` URLs made in the page.
const POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
    img-src 'self' blob: data:; media-src 'self' data: blob:; connect-src 'self'; \
    object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'";

/// The dashboard's page.
pub const DASHBOARD: &str = "/";
/// The guard app's page (also with a trailing `/`).
pub const GUARD_APP: &str = "/guard";
/// The pages served under a path of their own; every other embedded file is served at its
/// name (`/lookout-client.js`, `/app.js`, …).
pub const PAGES: [&str; 2] = [DASHBOARD, GUARD_APP];

/// Serves `req` if it names a dashboard file (`/` is `index.html`); `None` otherwise.
pub fn serve<B>(req: &Request<B>) -> Option<Response<Body>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return None;
    }
    let path = match req.uri().path() {
        DASHBOARD => "index.html",
        GUARD_APP | "/guard/" => "guard/index.html",
        p => p.strip_prefix('/')?,
    };
    let file = served_file(path)?;
    let etag = format!("\"{}\"", hex::encode(file.metadata.sha256_hash()));
    let mut response = if req
        .headers()
        .get(IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == etag.as_bytes())
    {
        let mut r = Response::new(Body::default());
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else {
        let body = match file.data {
            std::borrow::Cow::Borrowed(b) => Bytes::from_static(b),
            std::borrow::Cow::Owned(v) => Bytes::from(v),
        };
        let mut r = Response::new(full(body));
        // RFC 9239: JavaScript is text/javascript, `.mjs` included (mime_guess says otherwise).
        let mimetype = if path.ends_with(".js") || path.ends_with(".mjs") {
            "text/javascript; charset=utf-8"
        } else {
            file.metadata.mimetype()
        };
        if let Ok(v) = HeaderValue::from_str(mimetype) {
            r.headers_mut().insert(CONTENT_TYPE, v);
        }
        r
    };
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(ETAG, v);
    }
    // Not fingerprinted: revalidate every time (cheap with the ETag), so an upgrade of the
    // binary is seen at once.
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    protect(h);
    if path == "guard/sw.js" {
        // The guard app lives at `/guard` itself, one level above its worker's folder.
        h.insert("service-worker-allowed", HeaderValue::from_static("/guard"));
    }
    Some(response)
}

/// The headers every page of the appliance carries: the policy and no sniffing, referrers or
/// framing.
fn protect(h: &mut hyper::HeaderMap) {
    h.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(POLICY));
    h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
}

/// A page made by the server (e.g. `/trust`), with the same policy as the bundled files.
pub fn page(html: String) -> Response<Body> {
    let mut r = Response::new(full(Bytes::from(html)));
    let h = r.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    protect(h);
    r
}

/// The QR code of `text` as an SVG image of at least `size` pixels, fit to be inlined in HTML
/// or shown from a `data:` URL: pages carry their QR codes without a library or an outside
/// service.
pub fn qr_svg(text: &str, size: u32) -> Result<String, qrcode::types::QrError> {
    let svg = qrcode::QrCode::with_error_correction_level(text.as_bytes(), qrcode::EcLevel::M)?
        .render::<qrcode::render::svg::Color>()
        .min_dimensions(size, size)
        .quiet_zone(true)
        .build();
    // The XML declaration has no place inline in HTML.
    Ok(match svg.find("<svg") {
        Some(at) => svg[at..].to_string(),
        None => svg,
    })
}

/// A bundled file of `web/`, e.g. the demo's site plan.
pub fn asset(path: &str) -> Option<Bytes> {
    Assets::get(path).map(|file| Bytes::from(file.data.into_owned()))
}

/// A bundled demo video frame (JPEG), for the simulator.
pub fn demo_frame(i: usize) -> Option<Bytes> {
    asset(&format!("demo/frame{}.jpg", i % 8))
}
