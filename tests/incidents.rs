//! Incident reports on the server: a guard files one with photos (once per phone key), a
//! supervisor comments on and closes it, the photos come back byte for byte after a restart,
//! a backup/restore and a migration to Redis, the org walls hold, each byte and count budget refuses with its key
//! named while others go on, and retention purges closed reports with their photos.

mod common;

use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use lookout::auth::Role;
use serde_json::{json, Value};

/// A stand-in JPEG of `len` bytes: the JPEG start marker, then bytes that differ by `seed`
/// (the server checks the marker and the size; the phone made the image).
fn jpeg(len: usize, seed: u8) -> Vec<u8> {
    let mut bytes = vec![0xFF, 0xD8, 0xFF, 0xE0];
    bytes.extend((0..len.saturating_sub(4)).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)));
    bytes
}

/// The REST calls of a report's life, against one server (its base URL and certificate).
struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    fn of(server: &TestServer) -> Api {
        Api {
            http: server.http(),
            base: server.https(""),
        }
    }

    fn of_binary(server: &Binary) -> Api {
        Api {
            http: http_client(&server.cert_pem()),
            base: format!("https://{}", server.addr),
        }
    }

    async fn answer(request: reqwest::RequestBuilder) -> (u16, Value) {
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        post_json(&self.http, &format!("{}{path}", self.base), token, body).await
    }

    async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        Self::answer(
            self.http
                .get(format!("{}{path}", self.base))
                .bearer_auth(token),
        )
        .await
    }

    /// Files a report as `guard`; its status and answer.
    async fn file(&self, guard: &str, key: &str, text: &str) -> (u16, Value) {
        self.post(
            "/api/v1/incidents",
            guard,
            json!({"category": "intrusion", "text": text, "key": key}),
        )
        .await
    }

    /// Files a report that must be accepted; its id.
    async fn filed(&self, guard: &str, key: &str) -> String {
        let (status, body) = self.file(guard, key, "Side door forced open").await;
        assert_eq!(status, 201, "{body}");
        body["id"].as_str().expect("id").to_string()
    }

    async fn put_photo(&self, token: &str, id: &str, n: u32, bytes: Vec<u8>) -> (u16, Value) {
        Self::answer(
            self.http
                .put(format!("{}/api/v1/incidents/{id}/photos/{n}", self.base))
                .bearer_auth(token)
                .header("content-type", "image/jpeg")
                .body(bytes),
        )
        .await
    }

    /// Photo `n` of report `id`: its status, content type (with `; nosniff` when the browser is
    /// told not to guess another) and bytes.
    async fn photo(&self, token: &str, id: &str, n: u32) -> (u16, String, Vec<u8>) {
        let response = self
            .http
            .get(format!("{}/api/v1/incidents/{id}/photos/{n}", self.base))
            .bearer_auth(token)
            .send()
            .await
            .expect("photo");
        let status = response.status().as_u16();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        let mut kind = header("content-type");
        if header("x-content-type-options") == "nosniff" {
            kind.push_str("; nosniff");
        }
        (
            status,
            kind,
            response.bytes().await.expect("bytes").to_vec(),
        )
    }
}

/// The refusal's code.
fn refusal(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}

/// Asserts `answer` is a refusal with `status` and `code` whose message names `key`.
fn refused(answer: (u16, Value), status: u16, code: &str, key: &str) {
    let (got, body) = answer;
    assert_eq!((got, refusal(&body)), (status, code), "{body}");
    let message = body["error"]["message"].as_str().unwrap_or("");
    assert!(
        message.contains(&format!("({key})")),
        "{key} not named: {body}"
    );
}

#[tokio::test]
async fn a_report_with_two_photos_is_filed_once_closed_and_kept_across_a_restart() {
    let server = TestServer::start().await;
    let guard = server.token("g1", Some("acme"), &[Role::Guard]);
    let sup = server.token("sup", Some("acme"), &[Role::Supervisor]);
    let api = Api::of(&server);

    let (status, first) = api
        .file(&guard, "phone-key-0001", "Side door forced open")
        .await;
    assert_eq!(status, 201, "{first}");
    assert_eq!(first["filed"], true);
    assert_eq!(first["state"], "open");
    assert_eq!(first["author"], "g1");
    let id = first["id"].as_str().expect("id").to_string();
    // The phone resends after a lost answer: the same report, answered 200, filed once.
    for _ in 0..2 {
        let (status, again) = api
            .file(&guard, "phone-key-0001", "Side door forced open")
            .await;
        assert_eq!(status, 200, "{again}");
        assert_eq!(again["id"], first["id"]);
        assert_eq!(again["filed"], false);
    }

    let photos = [jpeg(150_000, 1), jpeg(90_000, 2)];
    for (n, photo) in (1..).zip(&photos) {
        let (status, body) = api.put_photo(&guard, &id, n, photo.clone()).await;
        assert_eq!(status, 200, "{body}");
    }
    // Sent again (a resend): the same photo under the same number, not a third one.
    let (status, body) = api.put_photo(&guard, &id, 2, photos[1].clone()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["photos"],
        json!([{"n": 1, "bytes": 150_000}, {"n": 2, "bytes": 90_000}])
    );
    // Not a JPEG: refused.
    let (status, body) = api.put_photo(&guard, &id, 3, b"GIF89a....".to_vec()).await;
    assert_eq!((status, refusal(&body)), (400, "bad_request"), "{body}");

    // The supervisor sees it open, comments, closes it.
    let (status, open) = api.get("/api/v1/incidents?state=open", &sup).await;
    assert_eq!(status, 200, "{open}");
    assert_eq!(open.as_array().map(Vec::len), Some(1), "{open}");
    let (status, body) = api
        .post(
            &format!("/api/v1/incidents/{id}/comments"),
            &sup,
            json!({"text": "Police informed, ref 4471"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, closed) = api
        .post(
            &format!("/api/v1/incidents/{id}/close"),
            &sup,
            json!({"note": "Door repaired"}),
        )
        .await;
    assert_eq!(status, 200, "{closed}");
    assert_eq!(closed["state"], "closed");
    assert_eq!(closed["closed_by"], "sup");
    // Closed is final: no second close, no more photos.
    let (status, _) = api
        .post(&format!("/api/v1/incidents/{id}/close"), &sup, json!({}))
        .await;
    assert_eq!(status, 409);
    let (status, body) = api.put_photo(&guard, &id, 3, jpeg(1000, 3)).await;
    assert_eq!((status, refusal(&body)), (409, "conflict"), "{body}");

    let metrics = server.metrics().await;
    assert_eq!(metric(&metrics, "lookout_patrol_incidents_filed"), 1.0);
    assert_eq!(metric(&metrics, "lookout_patrol_incident_photos"), 3.0);
    assert_eq!(metric(&metrics, "lookout_patrol_incidents_closed"), 1.0);

    let server = server.restart().await;
    let api = Api::of(&server);
    let (status, kept) = api.get(&format!("/api/v1/incidents/{id}"), &sup).await;
    assert_eq!(status, 200, "{kept}");
    assert_eq!(kept["state"], "closed");
    assert_eq!(kept["comments"][0]["text"], "Police informed, ref 4471");
    assert_eq!(kept["close_note"], "Door repaired");
    for (n, photo) in (1..).zip(&photos) {
        let (status, kind, bytes) = api.photo(&sup, &id, n).await;
        assert_eq!((status, kind.as_str()), (200, "image/jpeg; nosniff"));
        assert!(
            bytes == *photo,
            "photo {n} is not byte-identical after a restart"
        );
    }
    // The guard reads its own report, photos included.
    let (status, _, bytes) = api.photo(&guard, &id, 1).await;
    assert_eq!(status, 200);
    assert!(bytes == photos[0]);
}

#[tokio::test]
async fn a_backup_restored_and_migrated_to_redis_keeps_the_reports_photos_byte_for_byte() {
    let dir = tempfile::tempdir().expect("tempdir");
    let old = dir.path().join("old");
    let mut server = Binary::serve(&old, &[]);
    let guard = server.token("g1", Some("acme"), &[Role::Guard]);
    let sup = server.token("sup", Some("acme"), &[Role::Supervisor]);
    let api = Api::of_binary(&server);
    let id = api.filed(&guard, "phone-key-0002").await;
    let photos = [jpeg(200_000, 7), jpeg(120_000, 8)];
    for (n, photo) in (1..).zip(&photos) {
        let (status, body) = api.put_photo(&guard, &id, n, photo.clone()).await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, body) = api
        .post(&format!("/api/v1/incidents/{id}/close"), &sup, json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    server.signal("TERM");
    assert!(server.child.wait().expect("wait").success());

    let file = dir.path().join("site.backup");
    // `lookout ARGS --data-dir DIR`, which must succeed (migrate's cluster has no replicas).
    let run = |args: &[&str], data_dir: &std::path::Path| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_lookout"))
            .args(args)
            .arg("--data-dir")
            .arg(data_dir)
            .env("LOOKOUT_CLUSTER__MIN_REPLICAS", "0")
            .output()
            .expect("run lookout");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&["backup", "--to", file.to_str().expect("path")], &old);
    let new = dir.path().join("new");
    run(&["restore", "--from", file.to_str().expect("path")], &new);

    let mut server = Binary::serve(&new, &[]);
    let kept_as = |when: &'static str, server: &Binary| {
        let api = Api::of_binary(server);
        let (id, sup, photos) = (&id, &sup, &photos);
        async move {
            let (status, kept) = api.get(&format!("/api/v1/incidents/{id}"), sup).await;
            assert_eq!(status, 200, "{when}: {kept}");
            assert_eq!(kept["state"], "closed", "{when}");
            for (n, photo) in (1..).zip(photos) {
                let (status, _, bytes) = api.photo(sup, id, n).await;
                assert_eq!(status, 200, "{when}");
                assert!(bytes == *photo, "photo {n} is not byte-identical {when}");
            }
        }
    };
    kept_as("after the restore", &server).await;

    // The restored appliance becomes the first node of a cluster: its records move to Redis.
    server.signal("TERM");
    assert!(server.child.wait().expect("wait").success());
    let redis = common::redis::RedisProcess::start();
    run(&["migrate", "--to-redis", &redis.url()], &new);
    let node = Binary::serve(
        &new,
        &[
            ("LOOKOUT_CLUSTER__REDIS", redis.url().as_str()),
            ("LOOKOUT_CLUSTER__MIN_REPLICAS", "0"),
        ],
    );
    kept_as("after the migration to Redis", &node).await;
    // The phone resending the report's key still finds it there: filed once, not twice.
    let guard_api = Api::of_binary(&node);
    let (status, body) = guard_api.file(&guard, "phone-key-0002", "resent").await;
    assert_eq!((status, &body["id"]), (200, &json!(id)), "{body}");
}

#[tokio::test]
async fn reports_are_seen_by_their_author_and_their_orgs_supervisors_only() {
    let server = TestServer::start().await;
    let g1 = server.token("g1", Some("acme"), &[Role::Guard]);
    let g2 = server.token("g2", Some("acme"), &[Role::Guard]);
    let sup = server.token("sup", Some("acme"), &[Role::Supervisor]);
    let other_sup = server.token("osup", Some("other"), &[Role::Supervisor]);
    let admin = server.token("root", None, &[Role::Admin]);
    let api = Api::of(&server);
    let id = api.filed(&g1, "phone-key-0003").await;
    let (status, body) = api.put_photo(&g1, &id, 1, jpeg(5000, 1)).await;
    assert_eq!(status, 200, "{body}");
    let one = format!("/api/v1/incidents/{id}");
    let photo = format!("/api/v1/incidents/{id}/photos/1");

    // Another org's supervisor: 403 naming the org, 404 in its own.
    let (status, _) = api.get("/api/v1/incidents?org=acme", &other_sup).await;
    assert_eq!(status, 403);
    assert_eq!(api.get(&format!("{one}?org=acme"), &other_sup).await.0, 403);
    assert_eq!(api.get(&one, &other_sup).await.0, 404);
    assert_eq!(api.photo(&other_sup, &id, 1).await.0, 404);
    let (status, listed) = api.get("/api/v1/incidents", &other_sup).await;
    assert_eq!((status, listed), (200, json!([])));
    let (status, _) = api
        .post(&format!("{one}/close?org=acme"), &other_sup, json!({}))
        .await;
    assert_eq!(status, 403);

    // Another guard of the org: neither sees nor adds to it.
    assert_eq!(api.get(&one, &g2).await.0, 404);
    assert_eq!(api.get(&photo, &g2).await.0, 404);
    assert_eq!(api.put_photo(&g2, &id, 2, jpeg(5000, 2)).await.0, 404);
    let (status, listed) = api.get("/api/v1/incidents", &g2).await;
    assert_eq!((status, listed), (200, json!([])));
    // The author sees it but does not close it; a supervisor files none.
    assert_eq!(api.get(&one, &g1).await.0, 200);
    let (status, _) = api.post(&format!("{one}/close"), &g1, json!({})).await;
    assert_eq!(status, 403);
    let (status, _) = api.file(&sup, "phone-key-0004", "x").await;
    assert_eq!(status, 403);
    // The author comments on its own report; an admin reads it by naming the org.
    let (status, body) = api
        .post(
            &format!("{one}/comments"),
            &g1,
            json!({"text": "Second door too"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = api.get(&format!("{one}?org=acme"), &admin).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["comments"][0]["by"], "g1");
    // A category outside the list, an unknown alert: refused.
    let (status, _) = api
        .post(
            "/api/v1/incidents",
            &g1,
            json!({"category": "aliens", "text": "x", "key": "phone-key-0005"}),
        )
        .await;
    assert_eq!(status, 400);
    let (status, _) = api
        .post(
            "/api/v1/incidents",
            &g1,
            json!({"category": "other", "text": "x", "alert": "no-such-alert", "key": "phone-key-0006"}),
        )
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn each_budget_refuses_with_its_key_named_while_others_go_on() {
    let server = TestServer::start_with(|c| {
        c.patrol.max_photo_bytes = 400_000;
        c.patrol.max_photos_per_incident = 3;
        c.patrol.max_incident_bytes = 900_000;
        c.patrol.max_incident_bytes_per_org = 1024 * 1024;
        c.patrol.max_incidents_per_guard_per_day = 3;
    })
    .await;
    let api = Api::of(&server);
    let g1 = server.token("g1", Some("acme"), &[Role::Guard]);
    let g2 = server.token("g2", Some("acme"), &[Role::Guard]);
    let g3 = server.token("g3", Some("acme"), &[Role::Guard]);
    let beta = server.token("b1", Some("beta"), &[Role::Guard]);
    let a = api.filed(&g1, "phone-key-a001").await;
    let b = api.filed(&beta, "phone-key-b001").await;

    // One photo too large: refused while it is read, the same guard's next photo goes in.
    refused(
        api.put_photo(&g1, &a, 1, jpeg(400_001, 1)).await,
        413,
        "too_large",
        "patrol.max_photo_bytes",
    );
    let (status, body) = api.put_photo(&g1, &a, 1, jpeg(400_000, 1)).await;
    assert_eq!(status, 200, "{body}");

    // A photo numbered past the count: refused naming it.
    refused(
        api.put_photo(&g1, &a, 4, jpeg(1000, 4)).await,
        413,
        "too_large",
        "patrol.max_photos_per_incident",
    );

    // The report's bytes: a third photo would take it past 900 000.
    let (status, body) = api.put_photo(&g1, &a, 2, jpeg(400_000, 2)).await;
    assert_eq!(status, 200, "{body}");
    refused(
        api.put_photo(&g1, &a, 3, jpeg(200_000, 3)).await,
        413,
        "too_large",
        "patrol.max_incident_bytes",
    );

    // The org's bytes: acme keeps ~800 000 of 1 MiB; another guard's 300 000 is refused,
    // while another org's goes in.
    let c = api.filed(&g2, "phone-key-c001").await;
    refused(
        api.put_photo(&g2, &c, 1, jpeg(300_000, 5)).await,
        429,
        "rate_limited",
        "patrol.max_incident_bytes_per_org",
    );
    let (status, body) = api.put_photo(&beta, &b, 1, jpeg(300_000, 5)).await;
    assert_eq!(status, 200, "{body}");
    // Within what is left, acme's guard still sends a small one.
    let (status, body) = api.put_photo(&g2, &c, 1, jpeg(100_000, 6)).await;
    assert_eq!(status, 200, "{body}");

    // Reports per guard per day: g3's fourth is refused, its first resent still answered,
    // another guard still files.
    for n in 1..=3 {
        api.filed(&g3, &format!("phone-key-d00{n}")).await;
    }
    refused(
        api.file(&g3, "phone-key-d004", "Again").await,
        429,
        "rate_limited",
        "patrol.max_incidents_per_guard_per_day",
    );
    let (status, _) = api
        .file(&g3, "phone-key-d001", "Side door forced open")
        .await;
    assert_eq!(status, 200);
    api.filed(&g2, "phone-key-c002").await;

    let metrics = server.metrics().await;
    assert_eq!(metric(&metrics, "lookout_patrol_refused"), 5.0, "{metrics}");
}

#[tokio::test]
async fn a_closed_report_is_purged_with_its_photos_after_retention_and_frees_its_bytes() {
    let server = TestServer::start_with(|c| {
        c.retention.interval = Duration::from_millis(100);
        c.patrol.incident_retention = Duration::from_secs(1);
        c.patrol.max_photo_bytes = 700_000;
        c.patrol.max_incident_bytes_per_org = 1024 * 1024;
    })
    .await;
    let api = Api::of(&server);
    let guard = server.token("g1", Some("acme"), &[Role::Guard]);
    let sup = server.token("sup", Some("acme"), &[Role::Supervisor]);
    let closed = api.filed(&guard, "phone-key-e001").await;
    let open = api.filed(&guard, "phone-key-e002").await;
    assert_eq!(
        api.put_photo(&guard, &closed, 1, jpeg(600_000, 1)).await.0,
        200
    );
    assert_eq!(
        api.put_photo(&guard, &open, 1, jpeg(300_000, 2)).await.0,
        200
    );
    // The org is near its budget: a second photo of the open report does not fit.
    refused(
        api.put_photo(&guard, &open, 2, jpeg(300_000, 3)).await,
        429,
        "rate_limited",
        "patrol.max_incident_bytes_per_org",
    );
    let (status, body) = api
        .post(
            &format!("/api/v1/incidents/{closed}/close"),
            &sup,
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    let deadline = tokio::time::Instant::now() + PATIENCE;
    while api
        .get(&format!("/api/v1/incidents/{closed}"), &sup)
        .await
        .0
        != 404
    {
        assert!(tokio::time::Instant::now() < deadline, "never purged");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(api.photo(&sup, &closed, 1).await.0, 404);
    // The open report stays, and the purged bytes are free again.
    assert_eq!(
        api.get(&format!("/api/v1/incidents/{open}"), &sup).await.0,
        200
    );
    let (status, body) = api.put_photo(&guard, &open, 2, jpeg(300_000, 3)).await;
    assert_eq!(status, 200, "{body}");
    // Purged once, whichever node's retention task got to it (TEST_CLUSTER runs three).
    let mut purged = 0.0;
    for node in std::iter::once(&server).chain(&server.peers) {
        purged += metric(&node.metrics().await, "lookout_patrol_incidents_purged");
    }
    assert_eq!(purged, 1.0);
}

#[tokio::test]
async fn a_photo_over_its_budget_is_refused_as_it_arrives_not_after_the_whole_upload() {
    let server = TestServer::start_with(|c| {
        c.patrol.max_photo_bytes = 100_000;
        // Far beyond the test's patience: only a refusal while reading can answer in time.
        c.limits.body_timeout = Duration::from_secs(120);
    })
    .await;
    let api = Api::of(&server);
    let guard = server.token("g1", Some("acme"), &[Role::Guard]);
    let id = api.filed(&guard, "phone-key-f001").await;
    // 150 000 bytes, then an upload that never ends.
    let sent = bytes::Bytes::from(jpeg(150_000, 1));
    let body = futures_util::stream::iter([Ok::<_, std::io::Error>(sent)])
        .chain(futures_util::stream::pending());
    let request = api
        .http
        .put(server.https(&format!("/api/v1/incidents/{id}/photos/1")))
        .bearer_auth(&guard)
        .body(reqwest::Body::wrap_stream(body))
        .send();
    let response = tokio::time::timeout(PATIENCE, request)
        .await
        .expect("refused before the upload ended")
        .expect("an answer");
    let status = response.status().as_u16();
    let answer: Value = response.json().await.unwrap_or(Value::Null);
    refused((status, answer), 413, "too_large", "patrol.max_photo_bytes");
    let (_, kept) = api.get(&format!("/api/v1/incidents/{id}"), &guard).await;
    assert_eq!(kept["photos"], json!([]));
}
