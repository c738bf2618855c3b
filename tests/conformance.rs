//! RFC 6455 to the letter, with raw frames over TLS: what a strict client sends and what the
//! server must answer, whatever the WebSocket library does by itself.

mod common;

use std::time::Duration;

use common::*;
use lookout::auth::Role;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A WebSocket spoken byte by byte over TLS.
struct Raw {
    tls: tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    buf: Vec<u8>,
}

const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

impl Raw {
    async fn open(server: &TestServer) -> Raw {
        let token = server.token("strict", Some("acme"), &[Role::Guard]);
        let tcp = tokio::net::TcpStream::connect(server.addr)
            .await
            .expect("tcp");
        let connector = tokio_rustls::TlsConnector::from(client_tls(&server.cert_pem));
        let name = rustls::pki_types::ServerName::from(server.addr.ip());
        let mut tls = connector.connect(name, tcp).await.expect("tls");
        let request = format!(
            "GET /ws?token={token} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n"
        );
        tls.write_all(request.as_bytes()).await.expect("upgrade");
        let mut raw = Raw {
            tls,
            buf: Vec::new(),
        };
        let head = raw.read_until_blank_line().await;
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        raw
    }

    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 4096];
        match tokio::time::timeout(PATIENCE, self.tls.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => false,
            Ok(Ok(n)) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            Err(_) => panic!("nothing from the server within {PATIENCE:?}"),
        }
    }

    async fn read_until_blank_line(&mut self) -> String {
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head: Vec<u8> = self.buf.drain(..end + 4).collect();
                return String::from_utf8_lossy(&head).to_string();
            }
            assert!(self.fill().await, "connection ended during the handshake");
        }
    }

    /// Sends one frame: `first` is FIN/RSV/opcode, masked unless `masked` is false.
    async fn send(&mut self, first: u8, payload: &[u8], masked: bool) {
        let mut frame = vec![first];
        let mask_bit = if masked { 0x80 } else { 0 };
        match payload.len() {
            n if n < 126 => frame.push(mask_bit | n as u8),
            n => {
                frame.push(mask_bit | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
        }
        if masked {
            frame.extend_from_slice(&MASK);
            frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
        } else {
            frame.extend_from_slice(payload);
        }
        self.tls.write_all(&frame).await.expect("send");
    }

    /// Reads server frames until a Close and returns its code (None: the connection ended
    /// without one).
    async fn close_code(&mut self) -> Option<u16> {
        loop {
            while self.buf.len() < 2 {
                if !self.fill().await {
                    return None;
                }
            }
            let opcode = self.buf[0] & 0x0f;
            assert_eq!(self.buf[1] & 0x80, 0, "a server never masks its frames");
            let (len, at) = match self.buf[1] & 0x7f {
                126 => {
                    while self.buf.len() < 4 {
                        if !self.fill().await {
                            return None;
                        }
                    }
                    (u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize, 4)
                }
                127 => panic!("unexpectedly large frame"),
                n => (n as usize, 2),
            };
            while self.buf.len() < at + len {
                if !self.fill().await {
                    return None;
                }
            }
            let frame: Vec<u8> = self.buf.drain(..at + len).collect();
            if opcode == 0x8 {
                let payload = &frame[at..];
                return Some(if payload.len() >= 2 {
                    u16::from_be_bytes([payload[0], payload[1]])
                } else {
                    1005
                });
            }
        }
    }
}

const TEXT: u8 = 0x81;
const CLOSE: u8 = 0x88;
const PING: u8 = 0x89;

fn close_payload(code: u16, reason: &[u8]) -> Vec<u8> {
    [&code.to_be_bytes()[..], reason].concat()
}

#[tokio::test]
async fn an_unmasked_client_frame_is_a_protocol_error() {
    // RFC 6455 §5.1: "a server MUST close the connection upon receiving a frame that is not
    // masked" (status 1002, §7.4.1).
    let server = TestServer::start().await;
    let mut raw = Raw::open(&server).await;
    raw.send(TEXT, br#"{"type":"ping"}"#, false).await;
    assert_eq!(raw.close_code().await, Some(1002));
    server.stop().await;
}

#[tokio::test]
async fn a_close_with_a_code_reserved_off_the_wire_is_a_protocol_error() {
    // RFC 6455 §7.4.1–7.4.2: 1004, 1005, 1006 and 1015 must not be sent in a Close frame,
    // 0–999 and 1016–2999 are not defined for use; a peer that sends one gets 1002.
    let server = TestServer::start().await;
    for code in [1004u16, 1005, 1006, 1015, 999, 2000] {
        let mut raw = Raw::open(&server).await;
        raw.send(CLOSE, &close_payload(code, b""), true).await;
        assert_eq!(raw.close_code().await, Some(1002), "close code {code}");
    }
    server.stop().await;
}

#[tokio::test]
async fn a_close_reason_that_is_not_utf8_is_invalid_payload() {
    // RFC 6455 §5.5.1: the reason is UTF-8; §8.1: invalid UTF-8 fails the connection (1007).
    let server = TestServer::start().await;
    let mut raw = Raw::open(&server).await;
    let reason = [
        0xce, 0xba, 0xe1, 0xbd, 0xb9, 0xcf, 0x83, 0xce, 0xbc, 0xce, 0xb5, 0xed, 0xa0, 0x80,
    ];
    raw.send(CLOSE, &close_payload(1000, &reason), true).await;
    assert_eq!(raw.close_code().await, Some(1007));
    server.stop().await;
}

#[tokio::test]
async fn a_control_frame_over_125_bytes_is_a_protocol_error() {
    // RFC 6455 §5.5: all control frames MUST have a payload length of 125 bytes or less.
    let server = TestServer::start().await;
    let mut raw = Raw::open(&server).await;
    raw.send(PING, &[b'p'; 126], true).await;
    assert_eq!(raw.close_code().await, Some(1002));
    let mut raw = Raw::open(&server).await;
    raw.send(CLOSE, &close_payload(1000, &[b'r'; 124]), true)
        .await;
    assert_eq!(raw.close_code().await, Some(1002));
    server.stop().await;
}

#[tokio::test]
async fn a_valid_close_is_echoed_and_the_connection_ends() {
    let server = TestServer::start().await;
    for code in [1000u16, 1001, 3000, 4999] {
        let mut raw = Raw::open(&server).await;
        raw.send(CLOSE, &close_payload(code, b"bye"), true).await;
        assert_eq!(raw.close_code().await, Some(code));
        let mut rest = [0u8; 16];
        let ended = tokio::time::timeout(Duration::from_secs(5), raw.tls.read(&mut rest)).await;
        assert!(
            matches!(ended, Ok(Ok(0)) | Ok(Err(_))),
            "the server ends the TCP connection after the close handshake"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn every_documented_websocket_path_serves_the_native_protocol() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let server = TestServer::start().await;
    let token = server.token("paths", Some("acme"), &[Role::Guard]);
    for path in [
        "/ws",
        "/api/ws",
        "/ws/job-status",
        "/ws/job-status-native",
        "/ws/upload-progress",
    ] {
        let mut req = format!("wss://{}{path}", server.addr)
            .into_client_request()
            .expect("request");
        req.headers_mut().insert(
            "authorization",
            format!("Bearer {token}").parse().expect("header"),
        );
        let mut client = connect_request(&server.cert_pem, req, false)
            .await
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        let pong = client.request(serde_json::json!({"type": "ping"})).await;
        assert_eq!(pong["type"], "pong", "{path}");
    }
    server.stop().await;
}

/// One HTTPS request on a fresh connection; how its TLS handshake went.
async fn healthz_over(
    connector: &tokio_rustls::TlsConnector,
    server: &TestServer,
) -> rustls::HandshakeKind {
    let tcp = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("tcp");
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
    let mut tls = connector.connect(name, tcp).await.expect("tls");
    let kind = tls.get_ref().1.handshake_kind().expect("handshake done");
    tls.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .expect("write");
    // Reading to the end takes in the session tickets the server sends after the handshake.
    let mut response = Vec::new();
    let _ = tls.read_to_end(&mut response).await;
    assert!(response.starts_with(b"HTTP/1.1 200"), "{response:?}");
    kind
}

#[tokio::test]
async fn a_reconnecting_client_resumes_its_tls_session_after_hundreds_of_others_connected() {
    let server = TestServer::start().await;
    let connector =
        |server: &TestServer| tokio_rustls::TlsConnector::from(client_tls(&server.cert_pem));
    let phone = connector(&server);
    assert_eq!(
        healthz_over(&phone, &server).await,
        rustls::HandshakeKind::Full
    );
    // The rest of the site connects: more sessions than a server-side cache (rustls keeps
    // 256) would hold. The phone's ticket carries its session itself.
    for _ in 0..300 {
        let other = connector(&server);
        assert_eq!(
            healthz_over(&other, &server).await,
            rustls::HandshakeKind::Full
        );
    }
    assert_eq!(
        healthz_over(&phone, &server).await,
        rustls::HandshakeKind::Resumed
    );
    server.stop().await;
}
