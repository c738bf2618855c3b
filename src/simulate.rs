//! Simulated guards for `lookout demo` and `lookout simulate`: each one a real client over a
//! TLS WebSocket (`lookout.msgpack`), walking a patrol route around a site, streaming small
//! JPEG frames, and — as real guards do — sometimes leaving a fence; one raises a PANIC, and
//! scans the checkpoint codes posted along its round (REST, as the guard app does).
//!
//! It knows the demo site's geometry ([`Site`]) and the native protocol's publish envelope, and
//! nothing of the server's internals: it could run on another machine.

use std::collections::HashMap;
use std::f64::consts::TAU;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::Connector;
use tokio_util::sync::CancellationToken;

use crate::auth::{Authenticator, Role};
use crate::clock::now_millis;
use crate::field::FenceSpec;
use crate::geofence::{FenceKind, Shape};

/// Metres per degree of latitude.
const M_PER_DEG: f64 = 111_320.0;

/// The demo site: a rectangular perimeter guards must stay in, and a server room inside it
/// they must not enter. Coordinates are offsets in metres from `center`.
#[derive(Debug, Clone, Copy)]
pub struct Site {
    /// `(lat, lon)` of the site's centre.
    pub center: (f64, f64),
}

impl Default for Site {
    fn default() -> Self {
        // An industrial park by a canal; any place works.
        Site {
            center: (52.3731, 4.8922),
        }
    }
}

impl Site {
    /// `(lat, lon)` of a point `east`/`north` metres from the centre.
    pub fn at(&self, east: f64, north: f64) -> (f64, f64) {
        let (lat, lon) = self.center;
        (
            lat + north / M_PER_DEG,
            lon + east / (M_PER_DEG * lat.to_radians().cos()),
        )
    }

    fn rect(&self, west: f64, south: f64, east: f64, north: f64) -> Shape {
        let corner = |e, n| {
            let (lat, lon) = self.at(e, n);
            [lon, lat]
        };
        Shape::Polygon {
            coordinates: vec![vec![
                corner(west, south),
                corner(east, south),
                corner(east, north),
                corner(west, north),
                corner(west, south),
            ]],
        }
    }

    /// The demo's fences: the perimeter (`required`) and the server room (`forbidden`).
    pub fn fences(&self, org: &str) -> Vec<FenceSpec> {
        vec![
            FenceSpec {
                name: "Site perimeter".into(),
                kind: FenceKind::Required,
                shape: self.rect(-200.0, -150.0, 200.0, 150.0),
                guards: None,
                site: None,
                org: Some(org.into()),
            },
            FenceSpec {
                name: "Server room".into(),
                kind: FenceKind::Forbidden,
                shape: self.rect(40.0, -20.0, 90.0, 30.0),
                guards: None,
                site: None,
                org: Some(org.into()),
            },
        ]
    }

    /// The demo's checkpoints: `(name, metres east, metres north, on guard 01's round)`. Four
    /// lie on guard 01's round; the roof hatch is off every round, so nobody scans it and each
    /// round of the demo's tour misses it.
    pub fn checkpoints(&self) -> [(&'static str, f64, f64, bool); 5] {
        [
            ("East gate", 110.0, 0.0, true),
            ("North yard", 0.0, 70.0, true),
            ("West dock", -110.0, 0.0, true),
            ("South fence", 0.0, -70.0, true),
            ("Roof hatch", 20.0, -40.0, false),
        ]
    }

    /// Where guard `i` of `n` is after `t` seconds: an ellipse inside the perimeter, except
    /// guard 1, whose round crosses the server room, and guard 2, whose round goes past the
    /// perimeter's east and west ends.
    pub fn patrol(&self, i: usize, n: usize, t: f64) -> (f64, f64) {
        let phase = i as f64 / n.max(1) as f64 * TAU;
        let angle = phase + t / 90.0 * TAU;
        let (east, north) = match i {
            1 => (65.0 + 60.0 * angle.cos(), 5.0 + 60.0 * angle.sin()),
            2 => (215.0 * angle.cos(), 100.0 * angle.sin()),
            _ => {
                let k = (i % 6) as f64;
                (
                    (110.0 + 12.0 * k) * angle.cos(),
                    (70.0 + 9.0 * k) * angle.sin(),
                )
            }
        };
        self.at(east, north)
    }
}

/// What the simulator needs.
pub struct Options {
    /// WebSocket endpoint, e.g. `wss://127.0.0.1:8443/ws`.
    pub url: String,
    /// The server's certificate (PEM), trusted as a root.
    pub ca_pem: Vec<u8>,
    /// Mints the guards' tokens.
    pub auth: Arc<Authenticator>,
    /// The guards' org.
    pub org: String,
    /// How many guards.
    pub guards: usize,
    /// When guard 0 raises its PANIC; `None`: never.
    pub panic_after: Option<Duration>,
    /// Between location updates.
    pub location_every: Duration,
    /// Between video frames.
    pub frame_every: Duration,
    /// The site.
    pub site: Site,
    /// The checkpoint codes posted along guard 01's round, which it scans as it passes.
    pub codes: Vec<PostedCode>,
}

/// A checkpoint's code as posted on site (its QR code or tag), and where.
#[derive(Debug, Clone)]
pub struct PostedCode {
    /// Latitude.
    pub lat: f64,
    /// Longitude.
    pub lon: f64,
    /// The signed code (`LKCP1.…`).
    pub code: String,
}

/// A simulated guard scans a posted code when a fix is this close to it (m)…
const SCAN_WITHIN_M: f64 = 8.0;
/// …and not again within this long.
const SCAN_AGAIN_AFTER: Duration = Duration::from_secs(60);

/// Simulator failures.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The certificate could not be read.
    #[error("certificate: {0}")]
    Certificate(String),
    /// A token could not be minted.
    #[error("token: {0}")]
    Token(#[from] crate::auth::AuthError),
    /// The server URL is not a WebSocket URL.
    #[error("--url {0}: {1}")]
    Url(String, String),
}

/// Connection attempts in flight at once. Simulated guards share one address, and the server
/// closes at once what one address opens beyond `limits.max_pending_per_peer` (256 by
/// default): a thousand guards connecting together would take that whole share, and a browser
/// on the same machine opening the dashboard meanwhile would be reset.
const CONNECTING: usize = 64;

/// Runs every guard until `stop`; each reconnects on its own when its connection drops.
pub async fn run(options: Options, stop: CancellationToken) -> Result<(), SimError> {
    // A bad URL fails at once rather than in every guard's reconnect loop.
    options
        .url
        .as_str()
        .into_client_request()
        .map_err(|e| SimError::Url(options.url.clone(), e.to_string()))?;
    let mut roots = rustls::RootCertStore::empty();
    use rustls::pki_types::pem::PemObject;
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&options.ca_pem) {
        let cert = cert.map_err(|e| SimError::Certificate(e.to_string()))?;
        roots
            .add(cert)
            .map_err(|e| SimError::Certificate(e.to_string()))?;
    }
    let tls = Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| SimError::Certificate(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth(),
    );
    let scans = Scans::new(&options.url, &options.ca_pem)?;
    let options = Arc::new(options);
    let started = tokio::time::Instant::now();
    let connecting = Arc::new(tokio::sync::Semaphore::new(CONNECTING));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..options.guards {
        let user = format!("guard-{:02}", i + 1);
        let name = format!("Guard {:02}", i + 1);
        let token = options.auth.mint(
            &user,
            Some(&options.org),
            &[Role::Guard],
            Duration::from_secs(7 * 24 * 3600),
            Some(&name),
        )?;
        let guard = Guard {
            i,
            user,
            token,
            options: options.clone(),
            tls: tls.clone(),
            connecting: connecting.clone(),
            started,
            panicked: false,
            scans: scans.clone(),
            scanned: HashMap::new(),
        };
        tasks.spawn(guard.run(stop.clone()));
    }
    while tasks.join_next().await.is_some() {}
    Ok(())
}

struct Guard {
    i: usize,
    user: String,
    token: String,
    options: Arc<Options>,
    tls: Arc<rustls::ClientConfig>,
    /// A place among the [`CONNECTING`] attempts, held until the WebSocket is open.
    connecting: Arc<tokio::sync::Semaphore>,
    started: tokio::time::Instant,
    panicked: bool,
    scans: Scans,
    /// When this guard last scanned each posted code (by index).
    scanned: HashMap<usize, tokio::time::Instant>,
}

/// Checkpoint scans over HTTPS, as the guard app sends them.
#[derive(Clone)]
struct Scans {
    http: reqwest::Client,
    url: String,
}

impl Scans {
    /// The scans' endpoint on the server of the WebSocket `ws_url`.
    fn new(ws_url: &str, ca_pem: &[u8]) -> Result<Scans, SimError> {
        let mut url = reqwest::Url::parse(ws_url)
            .map_err(|e| SimError::Url(ws_url.to_string(), e.to_string()))?;
        let scheme = if url.scheme() == "ws" {
            "http"
        } else {
            "https"
        };
        url.set_scheme(scheme)
            .map_err(|()| SimError::Url(ws_url.to_string(), "no scheme for REST".into()))?;
        url.set_path("/api/v1/patrols/scans");
        let root = reqwest::Certificate::from_pem(ca_pem)
            .map_err(|e| SimError::Certificate(e.to_string()))?;
        let http = reqwest::Client::builder()
            .add_root_certificate(root)
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| SimError::Certificate(e.to_string()))?;
        Ok(Scans {
            http,
            url: url.to_string(),
        })
    }

    /// Sends one scan in the background: a guard walking on does not wait for the answer.
    fn send(&self, token: &str, user: &str, code: &str, (lat, lon): (f64, f64)) {
        let body = serde_json::json!({
            "code": code,
            "key": format!("sim-{}", uuid::Uuid::new_v4().simple()),
            "scanned_at": now_millis(),
            "lat": lat,
            "lon": lon,
            "accuracy": 4.0,
            "via": "qr",
        });
        let request = self
            .http
            .post(&self.url)
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body.to_string());
        let user = user.to_string();
        tokio::spawn(async move {
            match request.send().await {
                Ok(r) if r.status().is_success() => {}
                Ok(r) => {
                    tracing::info!(guard = %user, status = %r.status(), "simulated scan refused")
                }
                Err(e) => tracing::info!(guard = %user, error = %e, "simulated scan not sent"),
            }
        });
    }
}

impl Guard {
    async fn run(mut self, stop: CancellationToken) {
        let mut backoff = Duration::from_millis(500);
        loop {
            let result = tokio::select! {
                _ = stop.cancelled() => return,
                result = self.session() => result,
            };
            match result {
                Ok(()) => backoff = Duration::from_millis(500),
                Err(e) => {
                    tracing::info!(guard = %self.user, error = %e, "simulated guard disconnected; reconnecting")
                }
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    /// One connection, until it drops.
    async fn session(&mut self) -> Result<(), String> {
        let mut req = self
            .options
            .url
            .as_str()
            .into_client_request()
            .map_err(|e| e.to_string())?;
        let headers = req.headers_mut();
        let bearer = format!("Bearer {}", self.token);
        headers.insert(
            "authorization",
            bearer.parse().map_err(|_| "token is not a header value")?,
        );
        headers.insert("sec-websocket-protocol", http_value("lookout.msgpack")?);
        let place = self
            .connecting
            .acquire()
            .await
            .map_err(|_| "the simulation is stopping")?;
        let (ws, _) = tokio_tungstenite::connect_async_tls_with_config(
            req,
            None,
            true,
            Some(Connector::Rustls(self.tls.clone())),
        )
        .await
        .map_err(|e| e.to_string())?;
        drop(place);
        let (mut tx, mut rx) = ws.split();
        // Like a phone, the camera runs only while the server says someone watches.
        let (watched, watching) = tokio::sync::watch::channel(false);
        // Replies are not needed; reading keeps pings answered, notices a closed socket and
        // hears the `viewers` frames.
        let reader = async {
            while let Some(msg) = rx.next().await {
                match msg {
                    Ok(Message::Binary(bytes)) => {
                        if let Some(n) = viewers(&bytes) {
                            let _ = watched.send(n > 0);
                        }
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        };
        let writer = async {
            let mut location = tokio::time::interval(self.options.location_every);
            let mut frame = tokio::time::interval(self.options.frame_every);
            let mut n = 0usize;
            loop {
                tokio::select! {
                    _ = location.tick() => {
                        let msg = self.location();
                        tx.send(Message::Binary(msg.into())).await.map_err(|e| e.to_string())?;
                        self.scan_nearby();
                        if self.panic_due() {
                            self.panicked = true;
                            let msg = self.panic();
                            tx.send(Message::Binary(msg.into())).await.map_err(|e| e.to_string())?;
                        }
                    }
                    _ = frame.tick(), if *watching.borrow() => {
                        n += 1;
                        if let Some(msg) = self.frame(n) {
                            tx.send(Message::Binary(msg.into())).await.map_err(|e| e.to_string())?;
                        }
                    }
                }
            }
            #[allow(unreachable_code)]
            Ok::<(), String>(())
        };
        tokio::select! {
            _ = reader => Ok(()),
            result = writer => result,
        }
    }

    fn elapsed(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    fn panic_due(&self) -> bool {
        self.i == 0
            && !self.panicked
            && self
                .options
                .panic_after
                .is_some_and(|after| self.started.elapsed() >= after)
    }

    fn location(&self) -> Vec<u8> {
        let (lat, lon) = self
            .options
            .site
            .patrol(self.i, self.options.guards, self.elapsed());
        let battery = (100.0 - self.elapsed() / 60.0 - self.i as f64 * 3.0).max(5.0);
        publish(
            &format!("/topic/location/{}", self.user),
            vec![
                ("lat", lat.into()),
                ("lon", lon.into()),
                ("accuracy", 4.0.into()),
                ("battery", battery.round().into()),
                ("ts", now_millis().into()),
            ],
        )
    }

    /// Guard 01 scans a posted code it passes (once a minute at most for each).
    fn scan_nearby(&mut self) {
        if self.i != 0 {
            return;
        }
        let here = self
            .options
            .site
            .patrol(self.i, self.options.guards, self.elapsed());
        let now = tokio::time::Instant::now();
        for (n, posted) in self.options.codes.iter().enumerate() {
            let near = crate::geofence::distance_m([here.1, here.0], [posted.lon, posted.lat])
                <= SCAN_WITHIN_M;
            let recent = self
                .scanned
                .get(&n)
                .is_some_and(|at| now.duration_since(*at) < SCAN_AGAIN_AFTER);
            if near && !recent {
                self.scanned.insert(n, now);
                self.scans.send(&self.token, &self.user, &posted.code, here);
            }
        }
    }

    fn panic(&self) -> Vec<u8> {
        publish(
            &format!("/topic/emergency/{}", self.user),
            vec![
                ("type", "PANIC".into()),
                ("message", "Panic button pressed (simulated)".into()),
            ],
        )
    }

    fn frame(&self, n: usize) -> Option<Vec<u8>> {
        let jpeg = crate::dashboard::demo_frame(n + self.i)?;
        Some(publish(
            &format!("/topic/video/{}", self.user),
            vec![
                ("codec", "jpeg".into()),
                ("keyframe", true.into()),
                ("ts", now_millis().into()),
                ("data", rmpv::Value::Binary(jpeg.to_vec())),
            ],
        ))
    }
}

/// The viewer count of a `viewers` frame (MessagePack), if `bytes` is one.
fn viewers(bytes: &[u8]) -> Option<u64> {
    let value = rmpv::decode::read_value(&mut &bytes[..]).ok()?;
    let map = value.as_map()?;
    let field = |name: &str| {
        map.iter()
            .find(|(k, _)| k.as_str() == Some(name))
            .map(|(_, v)| v)
    };
    if field("type")?.as_str()? != "viewers" {
        return None;
    }
    field("viewers")?.as_u64()
}

fn http_value(
    s: &'static str,
) -> Result<tokio_tungstenite::tungstenite::http::HeaderValue, String> {
    Ok(tokio_tungstenite::tungstenite::http::HeaderValue::from_static(s))
}

/// A native `publish` as MessagePack.
fn publish(channel: &str, data: Vec<(&str, rmpv::Value)>) -> Vec<u8> {
    let data = rmpv::Value::Map(data.into_iter().map(|(k, v)| (k.into(), v)).collect());
    let envelope = rmpv::Value::Map(vec![
        ("type".into(), "publish".into()),
        ("channel".into(), channel.into()),
        ("data".into(), data),
    ]);
    let mut out = Vec::with_capacity(256);
    // Writing into a Vec cannot fail.
    let _ = rmpv::encode::write_value(&mut out, &envelope);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geofence::FenceKind;

    #[test]
    fn patrols_stay_on_site_except_the_two_that_stray() {
        let site = Site::default();
        let inside = |(lat, lon): (f64, f64)| {
            let (s, w) = site.at(-200.0, -150.0);
            let (n, e) = site.at(200.0, 150.0);
            (s..=n).contains(&lat) && (w..=e).contains(&lon)
        };
        let samples = |i| (0..180).map(move |t| site.patrol(i, 12, f64::from(t)));
        for i in [0, 3, 4, 5, 11] {
            assert!(samples(i).all(inside), "guard {i} leaves the site");
        }
        assert!(samples(2).any(|p| !inside(p)), "guard 2 never leaves");
        let fences = site.fences("demo");
        assert_eq!(fences[0].kind, FenceKind::Required);
        assert_eq!(fences[1].kind, FenceKind::Forbidden);
    }
}
