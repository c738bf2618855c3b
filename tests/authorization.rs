//! The rights table of the design, checked cell by cell over real TLS WebSockets, and the
//! refusal of every kind of bad token before the upgrade.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use lookout::auth::Role;
use serde_json::{json, Value};

/// The actors: every role, in the channels' org (acme) and in another org (globex).
/// `g1` is the guard whose own channels are tested; `g3` is another acme guard. `ad` is an
/// admin whose token names no org, `ada` one whose token names acme.
const ACTORS: &[(&str, Option<&str>, Role)] = &[
    ("g1", Some("acme"), Role::Guard),
    ("g3", Some("acme"), Role::Guard),
    ("g2", Some("globex"), Role::Guard),
    ("s1", Some("acme"), Role::Supervisor),
    ("s2", Some("globex"), Role::Supervisor),
    ("ad", None, Role::Admin),
    ("ada", Some("acme"), Role::Admin),
    ("svc1", Some("acme"), Role::Service),
    ("svc2", Some("globex"), Role::Service),
];

fn org_of(actor: &str) -> Option<&'static str> {
    ACTORS.iter().find(|a| a.0 == actor).and_then(|a| a.1)
}

/// A user's channels, queues and jobs are named without their org: each actor's name resolves
/// in its own org, so globex's `/topic/location/g1` is another channel than acme's.
fn org_scoped(channel: &str) -> bool {
    [
        "/topic/location/",
        "/topic/video/",
        "/topic/emergency/",
        "/topic/job/",
        "/user/queue/",
    ]
    .iter()
    .any(|p| channel.starts_with(p))
}

/// Where a message published by `actor` on `channel` lands: the publisher's org for a user's
/// channel or a job, the one place there is for the others.
fn scope(channel: &str, actor: &str) -> &'static str {
    if org_scoped(channel) {
        org_of(actor).unwrap_or("")
    } else {
        ""
    }
}

fn count(published: &BTreeMap<(&str, &str), usize>, org: &str, channel: &str) -> usize {
    published
        .iter()
        .filter(|((o, c), _)| *o == org && *c == channel)
        .map(|(_, n)| *n)
        .sum()
}

/// The code of a refusal: an admin of no org cannot name a user's channel (there is no org to
/// resolve it in); a job's first publish without an owner is incomplete; the rest is forbidden.
fn refusal_code(channel: &str, actor: &str, publishing: bool) -> &'static str {
    let no_org = org_scoped(channel) && org_of(actor).is_none();
    let ownerless_job = publishing && channel.starts_with("/topic/job/") && actor == "svc2";
    if no_org || ownerless_job {
        "bad_request"
    } else {
        "forbidden"
    }
}

const ACME_MEMBERS: &[&str] = &["g1", "g3", "s1", "svc1"];

/// (channel, who may subscribe, who may publish), written out from the design's table.
///
/// For a user's channel, a globex actor names globex's `g1`: its supervisor may watch it and
/// its service write it, and nothing of acme's `g1` ever reaches them.
fn table() -> Vec<(&'static str, Vec<&'static str>, Vec<&'static str>)> {
    let members_and_admins = [ACME_MEMBERS, &["ad", "ada"]].concat();
    let acme_members_and_admin = [ACME_MEMBERS, &["ada"]].concat();
    vec![
        (
            "/topic/location/g1",
            vec!["g1", "s1", "ada", "s2"],
            vec!["g1", "svc1", "svc2"],
        ),
        (
            "/topic/video/g1",
            vec!["g1", "s1", "ada", "s2"],
            vec!["g1", "svc1", "svc2"],
        ),
        (
            "/topic/emergency/g1",
            vec!["g1", "s1", "ada", "s2"],
            vec!["g1", "svc1", "svc2"],
        ),
        ("/topic/org/acme/alerts", vec!["s1", "ad", "ada"], vec![]),
        ("/topic/org/acme/locations", vec!["s1", "ad", "ada"], vec![]),
        (
            "/topic/org/acme/tasks",
            members_and_admins.clone(),
            vec!["svc1", "ad", "ada"],
        ),
        (
            "/topic/org/acme/presence",
            members_and_admins.clone(),
            vec![],
        ),
        (
            "/topic/org/acme/room/ops",
            members_and_admins.clone(),
            acme_members_and_admin,
        ),
        (
            "/topic/org/acme/role/supervisor",
            vec!["s1", "ad", "ada"],
            vec!["s1", "svc1", "ad", "ada"],
        ),
        ("/topic/job/job1", vec!["g1", "ada"], vec!["svc1"]),
        (
            "/topic/system",
            ACTORS.iter().map(|a| a.0).collect(),
            // Every org receives it: only admins speak there.
            vec!["ad", "ada"],
        ),
    ]
}

/// A valid payload for each channel kind, so only rights decide.
fn payload_for(channel: &str, actor: &str) -> Value {
    if channel.starts_with("/topic/location/") {
        json!({"lat": 52.5, "lon": 13.4, "accuracy": 5.0, "ts": lookout::clock::now_millis(), "from": actor})
    } else if channel.starts_with("/topic/emergency/") {
        json!({"type": "GENERAL", "message": format!("from {actor}")})
    } else {
        json!({ "from": actor })
    }
}

async fn connect_all(server: &TestServer) -> BTreeMap<&'static str, Client> {
    let mut clients = BTreeMap::new();
    for (user, org, role) in ACTORS {
        let token = server.token(user, *org, &[*role]);
        clients.insert(*user, server.connect(&token).await);
    }
    clients
}

#[tokio::test]
async fn every_channel_kind_role_and_org_follows_the_rights_table_and_nothing_crosses_orgs() {
    let server = TestServer::start_with(|c| {
        c.limits.messages_per_second = 10_000;
        c.limits.message_burst = 10_000;
    })
    .await;
    let mut clients = connect_all(&server).await;

    // The job's owner is set by a service's first publish.
    let svc1 = clients.get_mut("svc1").expect("svc1");
    let first = svc1
        .request(json!({"type":"publish","channel":"/topic/job/job1","owner":"g1","data":{"status":"queued"}}))
        .await;
    assert!(ok(&first), "{first}");

    let mut allowed_subscribers: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (channel, subscribers, _) in table() {
        for (actor, ..) in ACTORS {
            let reply = clients
                .get_mut(actor)
                .expect("client")
                .subscribe(channel)
                .await;
            let expected = subscribers.contains(actor);
            assert_eq!(
                ok(&reply),
                expected,
                "{actor} subscribing to {channel}: {reply}"
            );
            if !expected {
                assert_eq!(
                    error_code(&reply),
                    refusal_code(channel, actor, false),
                    "{actor} on {channel}: {reply}"
                );
            }
        }
        allowed_subscribers.insert(channel, subscribers.into_iter().collect());
    }

    // Accepted publishes by (where they landed, channel name).
    let mut published: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    let mut packed: BTreeMap<&str, Client> = BTreeMap::new();
    for (channel, _, publishers) in table() {
        for (actor, org, role) in ACTORS {
            let reply = if channel.starts_with("/topic/video/") {
                // Video frames are MessagePack with bytes: a second connection per actor.
                if !packed.contains_key(actor) {
                    let token = server.token(actor, *org, &[*role]);
                    let c = server
                        .connect_as(&token, Some("lookout.msgpack"))
                        .await
                        .expect("msgpack");
                    packed.insert(actor, c);
                }
                let c = packed.get_mut(actor).expect("msgpack client");
                c.publish_frame(channel, b"\xff\xd8jpeg", true).await
            } else {
                clients
                    .get_mut(actor)
                    .expect("client")
                    .publish(channel, payload_for(channel, actor))
                    .await
            };
            let expected = publishers.contains(actor);
            assert_eq!(
                ok(&reply),
                expected,
                "{actor} publishing to {channel}: {reply}"
            );
            if expected {
                *published
                    .entry((scope(channel, actor), channel))
                    .or_default() += 1;
            } else {
                assert_eq!(
                    error_code(&reply),
                    refusal_code(channel, actor, true),
                    "{actor} on {channel}: {reply}"
                );
            }
        }
    }

    // User queues: everyone of an org subscribes to their own; who may write to g1's? (A
    // globex actor writes to globex's `g1`, who is not connected.)
    for (actor, org, _) in ACTORS {
        let c = clients.get_mut(actor).expect("client");
        for queue in ["/user/queue/jobs", "/user/queue/messages"] {
            let reply = c.subscribe(queue).await;
            assert_eq!(ok(&reply), org.is_some(), "{actor} on {queue}: {reply}");
        }
    }
    for (queue, publishers) in [
        ("/user/queue/jobs", vec!["svc1", "ada", "svc2"]),
        (
            "/user/queue/messages",
            vec!["g1", "g3", "s1", "svc1", "ada", "g2", "s2", "svc2"],
        ),
    ] {
        for (actor, ..) in ACTORS {
            let reply = clients
                .get_mut(actor)
                .expect("client")
                .request(json!({"type":"publish","channel":queue,"to":"g1","data":{"from":actor}}))
                .await;
            let expected = publishers.contains(actor);
            assert_eq!(
                ok(&reply),
                expected,
                "{actor} writing to g1's {queue}: {reply}"
            );
            if expected {
                *published.entry((scope(queue, actor), queue)).or_default() += 1;
            } else {
                assert_eq!(
                    error_code(&reply),
                    refusal_code(queue, actor, true),
                    "{actor} writing to g1's {queue}: {reply}"
                );
            }
        }
    }

    // Lookout's own messages: every accepted location is fanned in to the org's locations, and
    // every accepted emergency raises an alert on the org's alerts channel.
    let fan_in = count(&published, "acme", "/topic/location/g1");
    *published
        .entry(("", "/topic/org/acme/locations"))
        .or_default() += fan_in;
    let alerts = count(&published, "acme", "/topic/emergency/g1");
    *published.entry(("", "/topic/org/acme/alerts")).or_default() += alerts;

    // Deliveries: every allowed subscriber got every accepted publish, nobody else got anything.
    for (actor, ..) in ACTORS {
        let client = clients.get_mut(actor).expect("client");
        let frames = client.drain(Duration::from_millis(500)).await;
        let mut got: BTreeMap<String, usize> = BTreeMap::new();
        for f in frames.iter().filter(|f| f["type"] == "message") {
            let channel = f["channel"].as_str().expect("channel").to_string();
            *got.entry(channel).or_default() += 1;
        }
        for (channel, subs) in &allowed_subscribers {
            // The job's owner-setting publish happened before anyone subscribed.
            let expected = if subs.contains(actor) {
                count(&published, scope(channel, actor), channel)
            } else {
                0
            };
            assert_eq!(
                got.get(*channel).copied().unwrap_or(0),
                expected,
                "{actor} deliveries on {channel}"
            );
        }
        let queue_msgs = |q: &str| got.get(q).copied().unwrap_or(0);
        let g1_expected = |q: &str| {
            if *actor == "g1" {
                count(&published, "acme", q)
            } else {
                0
            }
        };
        assert_eq!(
            queue_msgs("/user/queue/jobs"),
            g1_expected("/user/queue/jobs"),
            "{actor}"
        );
        assert_eq!(
            queue_msgs("/user/queue/messages"),
            g1_expected("/user/queue/messages"),
            "{actor}"
        );
        if actor.ends_with('2') {
            // globex actors: nothing from acme, ever.
            for f in &frames {
                let text = f.to_string();
                assert!(
                    !text.contains("acme") && !text.contains("\"g1\""),
                    "{actor} saw {text}"
                );
            }
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn the_same_user_id_in_two_orgs_is_two_principals_and_neither_locks_the_other_out() {
    let server = TestServer::start_with(|c| c.limits.max_connections_per_user = 1).await;
    let mut acme = server
        .connect(&server.token("dana", Some("acme"), &[Role::Guard]))
        .await;
    // globex's `dana` connects too (once acme's held a lock on the id), and her one place
    // under the per-user limit is her own.
    let mut globex = server
        .connect_as(&server.token("dana", Some("globex"), &[Role::Guard]), None)
        .await
        .expect("globex's dana connects beside acme's");
    assert!(ok(&acme.subscribe("/user/queue/messages").await));
    assert!(ok(&globex.subscribe("/user/queue/messages").await));
    let sup = server.token("sup", Some("acme"), &[Role::Supervisor]);
    let mut sup = server.connect(&sup).await;
    let sent = sup
        .request(json!({"type":"publish","channel":"/user/queue/messages","to":"dana","data":{"text":"for acme's dana"}}))
        .await;
    assert!(ok(&sent), "{sent}");
    let got = acme.next_message().await;
    assert_eq!(got["data"]["text"], "for acme's dana");
    assert!(
        globex.drain(Duration::from_millis(300)).await.is_empty(),
        "globex's dana hears nothing of acme's"
    );
    // And after a restart of the server, still two (nothing was registered to one org). The
    // connections are closed first: in a TEST_CLUSTER the other nodes, where they may be, go
    // on running, and their places come back as each node hears of the close.
    drop((acme, globex, sup));
    let server = server.restart().await;
    let mut both = Vec::new();
    for org in ["acme", "globex"] {
        let token = server.token("dana", Some(org), &[Role::Guard]);
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            match server.connect_as(&token, None).await {
                Ok(client) => {
                    both.push(client);
                    break;
                }
                Err(e) => {
                    let (status, body) = refusal(e);
                    assert_eq!(status, 429, "{org}'s dana: {body}");
                    assert!(
                        tokio::time::Instant::now() < deadline,
                        "{org}'s dana: {body}"
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
    assert_eq!(both.len(), 2, "acme's dana and globex's dana at once");
    server.stop().await;
}

#[tokio::test]
async fn a_job_owner_cannot_be_changed_and_a_first_publish_must_name_one() {
    let server = TestServer::start().await;
    let _owner = server
        .connect(&server.token("alice", Some("acme"), &[Role::Guard]))
        .await;
    let _other = server
        .connect(&server.token("bob", Some("acme"), &[Role::Guard]))
        .await;
    let svc = server.token("svc", Some("acme"), &[Role::Service]);
    let http = server.http();
    let post = |body: Value| {
        http.post(server.https("/api/v1/publish"))
            .bearer_auth(&svc)
            .json(&body)
            .send()
    };
    let r = post(json!({"channel":"/topic/job/j9","data":{"status":"queued"}}))
        .await
        .expect("post");
    assert_eq!(r.status(), 400);
    let r = post(json!({"channel":"/topic/job/j9","owner":"alice","data":{"status":"queued"}}))
        .await
        .expect("post");
    assert_eq!(r.status(), 200);
    let r = post(json!({"channel":"/topic/job/j9","owner":"bob","data":{"status":"running"}}))
        .await
        .expect("post");
    assert_eq!(r.status(), 409);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["error"]["code"], "conflict");
    let r = post(json!({"channel":"/topic/job/j9","data":{"status":"running"}}))
        .await
        .expect("post");
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["seq"], 2);
    server.stop().await;
}

fn sign(header: Header, claims: Value, key: &[u8]) -> String {
    // This test signs before any server has installed the process's JWT provider.
    lookout::auth::signing::install();
    jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(key)).expect("sign")
}

fn b64(v: &Value) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
}

#[tokio::test]
async fn every_kind_of_bad_token_is_refused_with_401_before_the_upgrade() {
    let server = TestServer::start().await;
    let now = lookout::clock::now_secs();
    let good = json!({"sub":"alice","org":"acme","roles":["guard"],"exp": now + 600});
    let cases: Vec<(&str, Option<String>)> = vec![
        ("missing", None),
        ("malformed", Some("not-a-jwt".into())),
        ("garbage segments", Some("aaa.bbb.ccc".into())),
        (
            "expired",
            Some(sign(
                Header::new(Algorithm::HS256),
                json!({"sub":"alice","org":"acme","roles":["guard"],"exp": now - 3600}),
                SECRET.as_bytes(),
            )),
        ),
        (
            "wrong signature",
            Some(sign(
                Header::new(Algorithm::HS256),
                good.clone(),
                b"some-other-secret-some-other-secret",
            )),
        ),
        (
            "wrong algorithm (HS384)",
            Some(sign(
                Header::new(Algorithm::HS384),
                good.clone(),
                SECRET.as_bytes(),
            )),
        ),
        (
            "alg none",
            Some(format!(
                "{}.{}.",
                b64(&json!({"alg":"none","typ":"JWT"})),
                b64(&good)
            )),
        ),
        (
            "no exp",
            Some(sign(
                Header::new(Algorithm::HS256),
                json!({"sub":"alice","org":"acme","roles":["guard"]}),
                SECRET.as_bytes(),
            )),
        ),
        (
            "no sub",
            Some(sign(
                Header::new(Algorithm::HS256),
                json!({"org":"acme","roles":["guard"],"exp": now + 600}),
                SECRET.as_bytes(),
            )),
        ),
        (
            "guard without org",
            Some(sign(
                Header::new(Algorithm::HS256),
                json!({"sub":"alice","roles":["guard"],"exp": now + 600}),
                SECRET.as_bytes(),
            )),
        ),
        (
            "not yet valid",
            Some(sign(
                Header::new(Algorithm::HS256),
                json!({"sub":"alice","org":"acme","roles":["guard"],"exp": now + 7200, "nbf": now + 3600}),
                SECRET.as_bytes(),
            )),
        ),
    ];
    for (what, token) in cases {
        // Header and query string alike.
        let mut urls = vec![(server.url(), token.clone().map(|t| format!("Bearer {t}")))];
        if let Some(t) = &token {
            urls.push((format!("{}?token={t}", server.url()), None));
        }
        for (url, auth_header) in urls {
            use tokio_tungstenite::tungstenite::client::IntoClientRequest;
            let mut req = url.into_client_request().expect("request");
            if let Some(h) = auth_header {
                req.headers_mut()
                    .insert("authorization", h.parse().expect("header"));
            }
            let err = connect_request(&server.cert_pem, req, false)
                .await
                .err()
                .unwrap_or_else(|| panic!("{what}: upgrade was accepted"));
            let (status, body) = refusal(err);
            assert_eq!(status, 401, "{what}");
            assert_eq!(body["error"]["code"], "unauthorized", "{what}: {body}");
        }
    }
    let stats = server.stats().await;
    assert!(
        stats["auth_failures"].as_u64().expect("count") >= 11,
        "{stats}"
    );
    assert_eq!(
        stats["connections_accepted"], 0,
        "no bad token reached a WebSocket"
    );
    server.stop().await;
}

#[tokio::test]
async fn issuer_and_audience_are_required_when_configured() {
    let server = TestServer::start_with(|c| {
        c.jwt.issuer = Some("lookout-test".into());
        c.jwt.audience = Some("site-7".into());
    })
    .await;
    let now = lookout::clock::now_secs();
    let claims = |iss: Option<&str>, aud: Option<&str>| {
        let mut c = json!({"sub":"alice","org":"acme","roles":["guard"],"exp": now + 600});
        if let Some(i) = iss {
            c["iss"] = json!(i);
        }
        if let Some(a) = aud {
            c["aud"] = json!(a);
        }
        sign(Header::new(Algorithm::HS256), c, SECRET.as_bytes())
    };
    for (what, token, accepted) in [
        (
            "both right",
            claims(Some("lookout-test"), Some("site-7")),
            true,
        ),
        ("no iss", claims(None, Some("site-7")), false),
        ("no aud", claims(Some("lookout-test"), None), false),
        ("wrong iss", claims(Some("evil"), Some("site-7")), false),
        (
            "wrong aud",
            claims(Some("lookout-test"), Some("site-8")),
            false,
        ),
    ] {
        let result = server.connect_as(&token, None).await;
        match (accepted, result) {
            (true, Ok(_)) => {}
            (false, Err(e)) => assert_eq!(refusal(e).0, 401, "{what}"),
            (true, Err(e)) => panic!("{what}: refused: {e}"),
            (false, Ok(_)) => panic!("{what}: accepted"),
        }
    }
    server.stop().await;
}
