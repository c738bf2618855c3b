//! Tokens of the site's identity provider. A local HTTPS server plays the provider: it serves
//! a key set (JWKS) with RS256 and ES256 keys under their `kid`s. Lookout (the built binary,
//! trusting the provider's CA through `SSL_CERT_FILE`) verifies tokens with the key the `kid`
//! names, follows a rotation without a restart, never lets a token's `alg` choose, keeps the
//! last good set so that a restart works while the provider is down, and maps Keycloak- and
//! Clerk-style claims to its roles as configured.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use common::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A key the provider signs with, and its public half as a JWK.
struct Signer {
    kid: &'static str,
    algorithm: Algorithm,
    key: EncodingKey,
    jwk: Value,
}

impl Signer {
    fn rsa(kid: &'static str, fixture: &str) -> Signer {
        let pem = std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures")
                .join(fixture),
        )
        .expect("fixture");
        Signer::new(
            kid,
            Algorithm::RS256,
            EncodingKey::from_rsa_pem(&pem).expect("RSA key"),
        )
    }

    fn ec(kid: &'static str) -> Signer {
        let pair = rcgen::KeyPair::generate().expect("P-256 key");
        let key = EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).expect("EC key");
        Signer::new(kid, Algorithm::ES256, key)
    }

    fn new(kid: &'static str, algorithm: Algorithm, key: EncodingKey) -> Signer {
        lookout::auth::signing::install();
        let mut jwk = serde_json::to_value(
            jsonwebtoken::jwk::Jwk::from_encoding_key(&key, algorithm).expect("jwk"),
        )
        .expect("json");
        jwk["kid"] = json!(kid);
        jwk["use"] = json!("sig");
        Signer {
            kid,
            algorithm,
            key,
            jwk,
        }
    }

    /// A token with these claims (an hour's `exp` added).
    fn mint(&self, mut claims: Value) -> String {
        claims["exp"] = json!(lookout::clock::now_secs() + 3600);
        if claims.get("aud").is_none() {
            claims["aud"] = json!(AUDIENCE);
        }
        let mut header = Header::new(self.algorithm);
        header.kid = Some(self.kid.to_string());
        jsonwebtoken::encode(&header, &claims, &self.key).expect("sign")
    }
}

/// The audience (client id) the provider puts in Lookout's tokens.
const AUDIENCE: &str = "lookout-site";

/// The identity provider: HTTPS on 127.0.0.1, a certificate for `localhost` from a CA of its
/// own, `GET /certs` answering the key set of the moment.
struct Provider {
    addr: SocketAddr,
    jwks: Arc<Mutex<String>>,
    /// Key set requests answered.
    fetches: Arc<std::sync::atomic::AtomicUsize>,
    /// How long each answer takes, ms (a slow provider).
    delay: Arc<std::sync::atomic::AtomicU64>,
    ca_file: std::path::PathBuf,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Provider {
    async fn start(keys: &[&Signer]) -> Provider {
        let (ca_pem, cert, key) = common::redis::localhost_certificate();
        let dir = tempfile::tempdir().expect("tempdir");
        let ca_file = dir.path().join("idp-ca.pem");
        std::fs::write(&ca_file, ca_pem).expect("write");
        let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let jwks = Arc::new(Mutex::new(String::new()));
        let served = jwks.clone();
        let fetches = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = fetches.clone();
        let delay = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let slow = delay.clone();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, served) = (acceptor.clone(), served.clone());
                let (counted, slow) = (counted.clone(), slow.clone());
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    // One request per connection: read the head, answer, close.
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match tls.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let ms = slow.load(std::sync::atomic::Ordering::SeqCst);
                    tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
                    let body = served.lock().expect("lock").clone();
                    let response = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = tls.write_all(response.as_bytes()).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        let provider = Provider {
            addr,
            jwks,
            fetches,
            delay,
            ca_file,
            task,
            _dir: dir,
        };
        provider.serve(keys);
        provider
    }

    fn serve(&self, keys: &[&Signer]) {
        let set = json!({ "keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>() });
        *self.jwks.lock().expect("lock") = set.to_string();
    }

    fn url(&self) -> String {
        format!("https://localhost:{}/certs", self.addr.port())
    }

    /// The provider goes down: nothing listens any more.
    fn stop(&self) {
        self.task.abort();
    }
}

/// `lookout serve` verifying with `provider`'s key set, with `claims` (TOML lines of
/// `[jwt.claims]`) and what the provider's CA is.
fn lookout(data: &std::path::Path, provider: &Provider, claims: &str) -> Binary {
    let config = config_file(
        data,
        &format!(
            "[jwt]\njwks_url = \"{}\"\njwks_min_interval = \"0s\"\naudience = \"{AUDIENCE}\"\n[jwt.claims]\n{claims}\n",
            provider.url()
        ),
    );
    let ca = provider.ca_file.display().to_string();
    Binary::serve(
        data,
        &[
            ("LOOKOUT_CONFIG", config.as_str()),
            ("SSL_CERT_FILE", ca.as_str()),
            ("LOOKOUT_METRICS__TOKEN", METRICS_TOKEN),
        ],
    )
}

/// Whether `token` opens a WebSocket: the user it was admitted as, or the refusal's code.
async fn admitted(node: &Binary, token: &str) -> Result<String, String> {
    match connect_with_token(&node.cert_pem(), node.addr, token, None).await {
        Ok(client) => Ok(client.established["userId"]
            .as_str()
            .unwrap_or_default()
            .to_string()),
        Err(e) => {
            let (status, body) = refusal(e);
            Err(format!("{status} {body}"))
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_chosen_by_kid_follow_a_rotation_and_survive_a_restart_while_the_provider_is_down()
{
    let rsa = Signer::rsa("rsa-1", "jwt-test-rsa.key");
    let ec = Signer::ec("ec-1");
    let provider = Provider::start(&[&rsa, &ec]).await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let node = lookout(
        &data,
        &provider,
        "org = \"org\"\nrole_map = { supervisor = \"supervisor\" }",
    );
    let claims = |sub: &str| json!({ "sub": sub, "org": "acme", "roles": ["supervisor"] });

    assert_eq!(
        admitted(&node, &rsa.mint(claims("ann"))).await,
        Ok("ann".into())
    );
    assert_eq!(
        admitted(&node, &ec.mint(claims("bob"))).await,
        Ok("bob".into())
    );

    // A token naming one key's kid but signed by the other is a bad signature.
    let mut forged = Header::new(Algorithm::ES256);
    forged.kid = Some("ec-1".into());
    let mut c = claims("eve");
    c["exp"] = json!(lookout::clock::now_secs() + 3600);
    let other_ec = Signer::ec("ec-x");
    let forged = jsonwebtoken::encode(&forged, &c, &other_ec.key).expect("sign");
    assert!(admitted(&node, &forged).await.is_err());

    // HS256 "signed" with the RSA key's public JWK as the secret: the key fixes RS256.
    let mut hs = Header::new(Algorithm::HS256);
    hs.kid = Some("rsa-1".into());
    let public = serde_json::to_vec(&rsa.jwk).expect("json");
    let hs = jsonwebtoken::encode(&hs, &c, &EncodingKey::from_secret(&public)).expect("sign");
    let refused = admitted(&node, &hs).await.expect_err("HS256 refused");
    assert!(refused.contains("algorithm"), "{refused}");

    // Rotation: rsa-1 is withdrawn, rsa-2 added; no restart.
    let rsa2 = Signer::rsa("rsa-2", "jwt-test-rsa-2.key");
    provider.serve(&[&ec, &rsa2]);
    assert_eq!(
        admitted(&node, &rsa2.mint(claims("cat"))).await,
        Ok("cat".into()),
        "a token of the new key is accepted at once"
    );
    let withdrawn = admitted(&node, &rsa.mint(claims("ann"))).await;
    assert!(
        withdrawn.as_ref().is_err_and(|e| e.contains("unknown key")),
        "the withdrawn key's tokens are refused: {withdrawn:?}"
    );
    let metrics = node.metrics().await;
    assert!(metrics.contains("lookout_jwks_keys 2"), "{metrics}");

    // The provider goes down and Lookout restarts: the cached set still verifies.
    drop(node);
    provider.stop();
    let node = lookout(
        &data,
        &provider,
        "org = \"org\"\nrole_map = { supervisor = \"supervisor\" }",
    );
    assert_eq!(
        admitted(&node, &rsa2.mint(claims("cat"))).await,
        Ok("cat".into())
    );
    assert_eq!(
        admitted(&node, &ec.mint(claims("bob"))).await,
        Ok("bob".into())
    );
    assert!(admitted(&node, &rsa.mint(claims("ann"))).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keycloak_and_clerk_style_claims_map_to_lookout_roles_as_configured() {
    let ec = Signer::ec("ec-1");
    let provider = Provider::start(&[&ec]).await;
    let tmp = tempfile::tempdir().expect("tempdir");

    // Keycloak: roles in realm_access.roles, the org in a claim of the realm's choosing.
    let keycloak = lookout(
        &tmp.path().join("keycloak"),
        &provider,
        "user = \"preferred_username\"\norg = \"tenant\"\nroles = \"realm_access.roles\"\n\
         role_map = { \"ops-lead\" = \"supervisor\", \"field-agent\" = \"guard\" }",
    );
    let lead = ec.mint(json!({
        "sub": "f3a1-uuid", "preferred_username": "lena", "tenant": "acme",
        "realm_access": { "roles": ["offline_access", "ops-lead"] },
    }));
    let agent = ec.mint(json!({
        "sub": "9c2e-uuid", "preferred_username": "gus", "tenant": "acme",
        "realm_access": { "roles": ["field-agent"] },
    }));
    assert_eq!(admitted(&keycloak, &lead).await, Ok("lena".into()));
    let mut sup = keycloak.connect(&lead).await;
    assert!(
        ok(&sup.subscribe("/topic/org/acme/locations").await),
        "ops-lead → supervisor"
    );
    assert!(
        !ok(&sup.subscribe("/topic/org/globex/locations").await),
        "another org"
    );
    let mut guard = keycloak.connect(&agent).await;
    assert!(
        !ok(&guard.subscribe("/topic/org/acme/locations").await),
        "field-agent → guard: no org-wide locations"
    );
    assert!(
        ok(&guard.subscribe("/topic/location/gus").await),
        "its own channel"
    );
    // No mapped role, and not one of Lookout's: no role at all.
    let nobody = ec.mint(json!({
        "sub": "x", "preferred_username": "nobody", "tenant": "acme",
        "realm_access": { "roles": ["offline_access"] },
    }));
    let mut nobody = keycloak.connect(&nobody).await;
    assert!(!ok(&nobody.subscribe("/topic/org/acme/locations").await));

    // Clerk: org_id and a single-valued org_role.
    let clerk = lookout(
        &tmp.path().join("clerk"),
        &provider,
        "org = \"org_id\"\nroles = \"org_role\"\nrole_map = { \"org:admin\" = \"supervisor\", \"org:member\" = \"guard\" }",
    );
    let admin =
        ec.mint(json!({ "sub": "user_2abc", "org_id": "org_acme", "org_role": "org:admin" }));
    let member =
        ec.mint(json!({ "sub": "user_2def", "org_id": "org_acme", "org_role": "org:member" }));
    let mut sup = clerk.connect(&admin).await;
    assert_eq!(sup.established["userId"], "user_2abc");
    assert!(ok(&sup.subscribe("/topic/org/org_acme/locations").await));
    let mut guard = clerk.connect(&member).await;
    assert!(!ok(&guard.subscribe("/topic/org/org_acme/locations").await));
    // A Clerk user in two organizations, switching between them: a token per org, and in each
    // the user of that org only. Its queue in one is not its queue in the other.
    let in_a = ec.mint(json!({ "sub": "user_2xyz", "org_id": "org_a", "org_role": "org:member" }));
    let in_b = ec.mint(json!({ "sub": "user_2xyz", "org_id": "org_b", "org_role": "org:member" }));
    let mut as_a = clerk.connect(&in_a).await;
    let mut as_b = clerk.connect(&in_b).await;
    assert!(ok(&as_a.subscribe("/user/queue/messages").await));
    assert!(ok(&as_b.subscribe("/user/queue/messages").await));
    let sup_a = ec.mint(json!({ "sub": "boss_a", "org_id": "org_a", "org_role": "org:admin" }));
    let mut boss = clerk.connect(&sup_a).await;
    let sent = boss
        .request(json!({"type":"publish","channel":"/user/queue/messages","to":"user_2xyz","data":{"text":"for org_a"}}))
        .await;
    assert!(ok(&sent), "{sent}");
    assert_eq!(as_a.next_message().await["data"]["text"], "for org_a");
    assert!(as_b
        .drain(std::time::Duration::from_millis(300))
        .await
        .iter()
        .all(|f| f["type"] != "message"));
    // Without the org claim a non-admin is refused.
    let orgless = ec.mint(json!({ "sub": "user_3", "org_role": "org:member" }));
    let refused = admitted(&clerk, &orgless).await.expect_err("no org");
    assert!(refused.contains("org"), "{refused}");
}

/// `jwt.jwks_file`: the set is read from a file (kept up to date by the site's tooling), read
/// again when a token names a key it lacks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_set_file_is_read_again_when_a_token_names_a_new_key() {
    let old = Signer::ec("file-1");
    let new = Signer::rsa("file-2", "jwt-test-rsa-2.key");
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join("jwks.json");
    let write = |keys: &[&Signer]| {
        let set = json!({ "keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>() });
        std::fs::write(&file, set.to_string()).expect("write");
    };
    write(&[&old]);
    let data = tmp.path().join("data");
    let node = Binary::serve(
        &data,
        &[
            ("LOOKOUT_JWT__JWKS_FILE", file.to_str().expect("path")),
            ("LOOKOUT_JWT__JWKS_MIN_INTERVAL", "0s"),
            ("LOOKOUT_JWT__AUDIENCE", AUDIENCE),
        ],
    );
    let claims = json!({ "sub": "ann", "org": "acme", "roles": ["supervisor"] });
    assert_eq!(
        admitted(&node, &old.mint(claims.clone())).await,
        Ok("ann".into())
    );
    let refused = admitted(&node, &new.mint(claims.clone())).await;
    assert!(refused.is_err_and(|e| e.contains("unknown key")));
    write(&[&new]);
    assert_eq!(
        admitted(&node, &new.mint(claims.clone())).await,
        Ok("ann".into())
    );
    assert!(
        admitted(&node, &old.mint(claims)).await.is_err(),
        "file-1 withdrawn"
    );
}

/// With a key set, a provider's role grants a Lookout role only through `jwt.claims.role_map`
/// (a realm role that happens to be called `admin` grants nothing), and a token must be for
/// Lookout's audience: one the provider issued for another application is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_providers_roles_count_only_when_mapped_and_its_tokens_only_for_lookouts_audience() {
    let ec = Signer::ec("ec-1");
    let provider = Provider::start(&[&ec]).await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let node = lookout(
        &tmp.path().join("data"),
        &provider,
        "org = \"org\"\nrole_map = { \"ops-lead\" = \"supervisor\" }",
    );
    let named_admin =
        ec.mint(json!({ "sub": "mallory", "org": "acme", "roles": ["admin", "supervisor"] }));
    let mut mallory = node.connect(&named_admin).await;
    for channel in ["/topic/org/acme/alerts", "/topic/org/globex/alerts"] {
        let reply = mallory.subscribe(channel).await;
        assert_eq!(error_code(&reply), "forbidden", "{channel}: {reply}");
    }
    let lead =
        ec.mint(json!({ "sub": "lena", "org": "acme", "roles": ["ops-lead"], "jti": "t-1" }));
    let mut lena = node.connect(&lead).await;
    assert!(ok(&lena.subscribe("/topic/org/acme/alerts").await));
    // A provider's next token (another jti, a token id, not a device) refreshes the session.
    let next =
        ec.mint(json!({ "sub": "lena", "org": "acme", "roles": ["ops-lead"], "jti": "t-2" }));
    let refreshed = lena
        .request(json!({"type": "refresh", "token": next}))
        .await;
    assert!(ok(&refreshed), "{refreshed}");
    // Tokens for another application of the same provider, or for none: refused.
    for aud in [json!("payroll-app"), json!(null)] {
        let mut claims = json!({ "sub": "lena", "org": "acme", "roles": ["ops-lead"] });
        claims["aud"] = aud.clone();
        let refused = admitted(&node, &ec.mint(claims)).await;
        assert!(
            refused.as_ref().is_err_and(|e| e.starts_with("401")),
            "{aud}: {refused:?}"
        );
    }
}

#[test]
fn a_key_set_without_an_audience_is_refused_at_start() {
    let mut config = lookout::Config::default();
    config.jwt.jwks_url = Some("https://idp.example/certs".into());
    let problems: Vec<String> = config.problems().iter().map(|p| p.to_string()).collect();
    let problems = problems.join("\n");
    assert!(problems.contains("jwt.audience"), "{problems}");
}

/// Tokens naming keys the set lacks can come from anyone, before any authentication: a burst
/// of them makes one fetch of the provider's key set, not one each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_unknown_keys_makes_one_fetch_of_the_key_set() {
    let known = Signer::ec("ec-1");
    let stranger = Signer::ec("who-knows");
    let provider = Provider::start(&[&known]).await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let config = config_file(
        &data,
        &format!(
            "[jwt]\njwks_url = \"{}\"\njwks_min_interval = \"2s\"\naudience = \"{AUDIENCE}\"\n[jwt.claims]\norg = \"org\"\n",
            provider.url()
        ),
    );
    let ca = provider.ca_file.display().to_string();
    let node = Binary::serve(
        &data,
        &[
            ("LOOKOUT_CONFIG", config.as_str()),
            ("SSL_CERT_FILE", ca.as_str()),
        ],
    );
    // Past the interval since the fetch at start, the provider slows down: a first unknown
    // key starts a fetch that takes 3 s; 2.5 s into it (past the interval again), a burst.
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    provider
        .delay
        .store(3000, std::sync::atomic::Ordering::SeqCst);
    let at_start = provider.fetches.load(std::sync::atomic::Ordering::SeqCst);
    let token = stranger.mint(json!({ "sub": "x", "org": "acme" }));
    let first = admitted(&node, &token);
    let burst = async {
        tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
        futures_util::future::join_all((0..10).map(|_| admitted(&node, &token))).await
    };
    let (first, burst) = tokio::join!(first, burst);
    for refused in burst.into_iter().chain([first]) {
        assert!(refused.is_err_and(|e| e.contains("unknown key")));
    }
    let fetched = provider.fetches.load(std::sync::atomic::Ordering::SeqCst) - at_start;
    // The burst waited for the first fetch and found it just made.
    assert_eq!(
        fetched, 1,
        "one fetch for a first request and a burst of ten"
    );
}
