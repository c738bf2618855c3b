//! Device trust on a LAN: phones refuse a certificate they cannot chain to a root they trust,
//! so the appliance has its own certificate authority (see `transport::tls`). `GET /ca.crt`
//! serves that CA's certificate for phones to install, and `GET /trust` explains how on
//! Android and iOS, with a QR code of the certificate's URL and its fingerprint to compare.
//! With a configured `tls.cert` there is no local CA: both answer 404.
//!
//! Neither needs a token: a CA certificate is public, and a phone has no session yet. Like the
//! dashboard's files, they are answered before the API's routes.

use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_DISPOSITION, CONTENT_TYPE};
use hyper::{Method, Request, Response};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use crate::app::AppState;
use crate::failure::ErrorCode;
use crate::http::{full, Body, HttpError};

/// The local CA's certificate, for phones to install.
pub const CA_CERT: &str = "/ca.crt";
/// The page that walks a phone through trusting the local CA.
pub const TRUST_PAGE: &str = "/trust";
/// Every path [`serve`] answers.
pub const PATHS: [&str; 2] = [CA_CERT, TRUST_PAGE];

/// Serves `req` if it is `GET /ca.crt` or `GET /trust`; `None` otherwise.
pub async fn serve<B>(app: &AppState, req: &Request<B>) -> Option<Response<Body>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return None;
    }
    let answer = match req.uri().path() {
        CA_CERT => ca_cert(app).await,
        TRUST_PAGE => page(app, req).await,
        _ => return None,
    };
    Some(answer.unwrap_or_else(|e| e.response()))
}

async fn ca_pem(app: &AppState) -> Result<Vec<u8>, HttpError> {
    if app.config.tls.cert.is_some() {
        return Err(HttpError::new(
            ErrorCode::NotFound,
            "this appliance uses a configured certificate (tls.cert): there is no local CA to install",
        ));
    }
    let path = app.config.data_dir.join("tls/ca.pem");
    tokio::fs::read(&path)
        .await
        .map_err(|e| HttpError::new(ErrorCode::Internal, format!("reading the local CA: {e}")))
}

/// `GET /ca.crt`: the local CA's certificate (PEM), as a file a phone offers to install.
async fn ca_cert(app: &AppState) -> Result<Response<Body>, HttpError> {
    let pem = ca_pem(app).await?;
    let mut response = Response::new(full(bytes::Bytes::from(pem)));
    let h = response.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/x-x509-ca-cert"),
    );
    h.insert(
        CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"lookout-ca.crt\""),
    );
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(response)
}

/// `GET /trust`: how to install the CA on a phone, with a QR code of `/ca.crt` at the address
/// this page was opened at.
async fn page<B>(app: &AppState, req: &Request<B>) -> Result<Response<Body>, HttpError> {
    let pem = ca_pem(app).await?;
    let der = CertificateDer::from_pem_slice(&pem)
        .map_err(|e| HttpError::new(ErrorCode::Internal, format!("the local CA: {e}")))?;
    let fingerprint = super::tls::fingerprint(&der);
    let authority = crate::http::authority(req).unwrap_or_else(|| app.config.listen.to_string());
    let url = format!("https://{}/ca.crt", escape(&authority));
    let qr = crate::dashboard::qr_svg(&url, 240)
        .map_err(|e| HttpError::new(ErrorCode::Internal, format!("QR code: {e}")))?;
    Ok(crate::dashboard::page(format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Trust this Lookout appliance</title>
<link rel="stylesheet" href="/style.css"></head>
<body><main class="trust card">
<h1>Trust this Lookout appliance on a phone</h1>
<p>Phones only talk to servers whose certificate they trust. This appliance issues its own
certificate; install its certificate authority once on each phone, then the guard app opens
without warnings at every address of the appliance.</p>
<figure id="ca-qr">{qr}<figcaption>Scan with the phone's camera, or open <a href="/ca.crt"><code>{url}</code></a>.
The browser warns once, because the phone does not trust the appliance yet: continue to download the certificate.</figcaption></figure>
<p>Before installing, compare the fingerprint the phone shows (SHA-256) with this one:<br><code id="ca-fingerprint">{fingerprint}</code></p>
<h2>Android</h2>
<ol><li>Download the certificate with the link or the QR code.</li>
<li>Settings → Security &amp; privacy → More security settings → Encryption &amp; credentials → Install a certificate → CA certificate.</li>
<li>Confirm <em>Install anyway</em> and pick <code>lookout-ca.crt</code> from Downloads.</li>
<li>Open the guard link again.</li></ol>
<h2>iPhone and iPad</h2>
<ol><li>Open the link in Safari and allow the download of the configuration profile.</li>
<li>Settings → General → VPN &amp; Device Management → the Lookout profile → Install.</li>
<li>Settings → General → About → Certificate Trust Settings → turn on full trust for the Lookout local CA.</li>
<li>Open the guard link again.</li></ol>
</main></body></html>"#
    )))
}

/// The Host header goes into HTML: only characters an authority may hold.
fn escape(authority: &str) -> String {
    authority
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '-' | '[' | ']'))
        .collect()
}
