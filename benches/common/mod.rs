//! What the benchmarks share: a TLS WebSocket client that trusts the server's certificate.

use std::net::SocketAddr;
use std::sync::Arc;

use futures_util::StreamExt;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

/// A client TLS configuration that trusts `cert_pem`.
pub fn tls(cert_pem: &[u8]) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from_pem_slice(cert_pem).expect("pem"))
        .expect("root");
    Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("tls")
        .with_root_certificates(roots)
        .with_no_client_auth(),
    )
}

/// A native-protocol WebSocket to `addr` with `token`, past its `connection_established`.
pub async fn connect(
    addr: SocketAddr,
    tls: &Arc<rustls::ClientConfig>,
    token: &str,
) -> WebSocketStream<MaybeTlsStream<TcpStream>> {
    let mut req = format!("wss://{addr}/ws")
        .into_client_request()
        .expect("req");
    req.headers_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("h"),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async_tls_with_config(
        req,
        None,
        true,
        Some(Connector::Rustls(tls.clone())),
    )
    .await
    .expect("connect");
    ws.next().await.expect("established").expect("frame");
    ws
}
