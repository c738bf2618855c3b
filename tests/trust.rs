//! Device trust on a LAN: the appliance's own certificate authority issues its certificate for
//! every address of the host, the host name and `tls.names`; a phone installs the CA once from
//! `/ca.crt` (explained at `/trust`) and then accepts the appliance at any of those names.
//!
//! Every listener here is on 127.0.0.1: a handshake "to" another address of the host connects
//! to loopback and asks rustls to verify the certificate for that address, which is exactly
//! the check a phone on the site's Wi-Fi makes.

mod common;

use std::sync::Arc;

use common::*;
use rustls::pki_types::ServerName;

/// What a phone downloads before it trusts anything: `/ca.crt`, warning accepted.
async fn download_ca(addr: std::net::SocketAddr) -> (u16, Vec<u8>, String) {
    let http = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .expect("client");
    let response = http
        .get(format!("https://{addr}/ca.crt"))
        .send()
        .await
        .expect("ca.crt");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    (
        status,
        response.bytes().await.expect("body").to_vec(),
        content_type,
    )
}

/// A TLS handshake with the server at `addr`, verifying its certificate for `name` against
/// `roots` only.
async fn handshake(
    roots: &Arc<rustls::ClientConfig>,
    addr: std::net::SocketAddr,
    name: &str,
) -> Result<(), String> {
    let server_name = ServerName::try_from(name.to_string()).map_err(|e| e.to_string())?;
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    tokio_rustls::TlsConnector::from(roots.clone())
        .connect(server_name, tcp)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn interface_addresses() -> Vec<String> {
    if_addrs::get_if_addrs()
        .expect("interfaces")
        .into_iter()
        .map(|i| i.ip())
        .filter(|ip| !matches!(ip, std::net::IpAddr::V6(v6) if v6.is_unicast_link_local()))
        .map(|ip| ip.to_string())
        .collect()
}

#[tokio::test]
async fn a_client_that_trusts_only_the_downloaded_ca_accepts_every_address_and_name_of_the_host() {
    let server = TestServer::start_with(|c| c.tls.names = vec!["lookout.site.lan".into()]).await;
    let (status, pem, content_type) = download_ca(server.addr).await;
    assert_eq!(status, 200);
    assert_eq!(content_type, "application/x-x509-ca-cert");
    let trusting = client_tls(&pem);
    let mut names = interface_addresses();
    assert!(
        names.iter().any(|n| n == "127.0.0.1"),
        "loopback is among the host's addresses: {names:?}"
    );
    if let Ok(host) = gethostname::gethostname().into_string() {
        names.push(host);
    }
    names.push("localhost".into());
    names.push("lookout.site.lan".into());
    for name in &names {
        handshake(&trusting, server.addr, name)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    // The check is real: a name the certificate was not issued for is refused.
    let err = handshake(&trusting, server.addr, "elsewhere.example")
        .await
        .expect_err("a name outside the certificate");
    assert!(err.contains("not valid for name"), "{err}");
    // And the CA is what is trusted: without it nothing is accepted.
    let other = TestServer::start().await;
    let (_, other_pem, _) = download_ca(other.addr).await;
    let err = handshake(&client_tls(&other_pem), server.addr, "127.0.0.1")
        .await
        .expect_err("another appliance's CA");
    assert!(err.contains("UnknownIssuer"), "{err}");
    other.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn a_change_of_tls_names_reissues_the_certificate_at_start_from_the_same_ca() {
    let server = TestServer::start().await;
    let data = server.config.data_dir.clone();
    let ca_before = std::fs::read(data.join("tls/ca.pem")).expect("ca");
    let cert_before = std::fs::read(data.join("tls/cert.pem")).expect("cert");
    let covered = lookout::transport::tls::covered_names(&cert_before).expect("names");
    assert!(
        !covered.contains(&"gate.site.lan".to_string()),
        "{covered:?}"
    );
    // Unchanged names: the same certificate after a restart.
    let server = server.restart().await;
    assert_eq!(
        std::fs::read(data.join("tls/cert.pem")).expect("cert"),
        cert_before
    );
    let dir = server_dir(server).await;

    let mut config = test_config(dir.path());
    config.tls.names = vec!["gate.site.lan".into(), "10.20.30.40".into()];
    let server = TestServer::start_config_in(config, dir).await;
    let cert_after = std::fs::read(data.join("tls/cert.pem")).expect("cert");
    assert_ne!(cert_after, cert_before, "reissued for the new names");
    let covered = lookout::transport::tls::covered_names(&cert_after).expect("names");
    for name in ["gate.site.lan", "10.20.30.40", "127.0.0.1", "localhost"] {
        assert!(covered.contains(&name.to_string()), "{name}: {covered:?}");
    }
    assert_eq!(
        std::fs::read(data.join("tls/ca.pem")).expect("ca"),
        ca_before,
        "the CA phones trust stays the same"
    );
    let trusting = client_tls(&ca_before);
    handshake(&trusting, server.addr, "gate.site.lan")
        .await
        .expect("the new name is accepted with the old CA");
    server.stop().await;
}

async fn server_dir(server: TestServer) -> tempfile::TempDir {
    server.stop_keeping_dir().await
}

#[tokio::test]
async fn the_trust_page_shows_the_qr_code_of_the_ca_and_its_fingerprint() {
    let server = TestServer::start().await;
    let http = server.http();
    let page = http
        .get(server.https("/trust"))
        .send()
        .await
        .expect("trust");
    assert_eq!(page.status(), 200);
    let policy = page
        .headers()
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(policy.contains("default-src 'self'"), "{policy}");
    let html = page.text().await.expect("html");
    let pem = std::fs::read(server.config.data_dir.join("tls/ca.pem")).expect("ca");
    let der: rustls::pki_types::CertificateDer<'static> =
        rustls::pki_types::pem::PemObject::from_pem_slice(&pem).expect("pem");
    let fingerprint = lookout::transport::tls::fingerprint(&der);
    assert!(
        html.contains(&fingerprint),
        "the CA's fingerprint to compare"
    );
    assert!(html.contains("<svg"), "a QR code");
    assert!(html.contains(&format!("https://{}/ca.crt", server.addr)));
    assert!(html.contains("Android") && html.contains("iPhone"));
    server.stop().await;
}

#[tokio::test]
async fn a_configured_certificate_wins_and_there_is_no_local_ca_to_install() {
    let dir = tempfile::tempdir().expect("tempdir");
    let issued = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).expect("cert");
    let cert = dir.path().join("site.pem");
    let key = dir.path().join("site-key.pem");
    std::fs::write(&cert, issued.cert.pem()).expect("write");
    std::fs::write(&key, issued.key_pair.serialize_pem()).expect("write");
    let server = TestServer::start_with(|c| {
        c.tls.cert = Some(cert.clone());
        c.tls.key = Some(key.clone());
    })
    .await;
    assert_eq!(server.cert_pem, issued.cert.pem().into_bytes());
    let (status, body, _) = download_ca(server.addr).await;
    assert_eq!(status, 404, "{}", String::from_utf8_lossy(&body));
    assert!(!server.config.data_dir.join("tls/ca.pem").exists());
    server.stop().await;
}

#[test]
fn check_config_reports_the_names_the_certificate_covers() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let run = |names: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_lookout"))
            .arg("check-config")
            .arg("--data-dir")
            .arg(&data)
            .env("LOOKOUT_TLS__NAMES", names)
            .output()
            .expect("run")
    };
    let before = run("[\"gate.site.lan\"]");
    let text = String::from_utf8_lossy(&before.stdout).to_string();
    assert!(before.status.success(), "{text}");
    assert!(
        text.contains("first start issues one") && text.contains("gate.site.lan"),
        "{text}"
    );
    drop(Binary::serve(
        &data,
        &[("LOOKOUT_TLS__NAMES", "[\"gate.site.lan\"]")],
    ));
    let after = run("[\"gate.site.lan\", \"door.site.lan\"]");
    let text = String::from_utf8_lossy(&after.stdout).to_string();
    assert!(after.status.success(), "{text}");
    let covers = text
        .lines()
        .find(|l| l.contains(" covers "))
        .unwrap_or_else(|| panic!("{text}"));
    for name in ["127.0.0.1", "localhost", "gate.site.lan"] {
        assert!(covers.contains(name), "{name}: {covers}");
    }
    assert!(
        text.lines()
            .any(|l| l.contains("next start") && l.contains("door.site.lan")),
        "{text}"
    );
}
