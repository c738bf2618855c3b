//! An incident report end to end in real headless Chromium (tests/node/incident.mjs) against a
//! test server over TLS: the guard app at a phone's viewport files a report with two camera
//! pictures, made smaller on the phone; the supervisor's dashboard opens it with both photos,
//! comments and closes it. Then REST shows it closed with two JPEGs of at most 1600 px. A
//! second report with one photo too many shows the appliance's refusal on the phone.
//! Screenshots: target/artifacts/incident-*.png.

mod common;

use std::path::PathBuf;

use common::*;
use lookout::auth::Role;
use serde_json::{json, Value};

fn artifacts() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/artifacts")
}

/// A JPEG's width and height, from its first start-of-frame segment.
fn jpeg_size(bytes: &[u8]) -> Option<(u16, u16)> {
    let mut at = 2;
    while at + 9 < bytes.len() {
        if bytes[at] != 0xFF {
            return None;
        }
        let marker = bytes[at + 1];
        let length = usize::from(u16::from_be_bytes([bytes[at + 2], bytes[at + 3]]));
        // SOF0–SOF15 but DHT (C4), JPG (C8) and DAC (CC).
        if (0xC0..=0xCF).contains(&marker) && ![0xC4, 0xC8, 0xCC].contains(&marker) {
            let height = u16::from_be_bytes([bytes[at + 5], bytes[at + 6]]);
            let width = u16::from_be_bytes([bytes[at + 7], bytes[at + 8]]);
            return Some((width, height));
        }
        at += 2 + length;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guard_files_a_report_with_two_photos_and_a_supervisor_closes_it_on_the_dashboard() {
    let server = TestServer::start_with(|c| c.patrol.max_photos_per_incident = 2).await;
    let guard = server.token("g-report", Some("acme"), &[Role::Guard]);
    let sup = server.token("sup", Some("acme"), &[Role::Supervisor]);
    let mut node = NodeScript::run(
        "incident.mjs",
        &[
            ("ORIGIN", server.https("")),
            ("GUARD_TOKEN", guard),
            ("SUPERVISOR_TOKEN", sup.clone()),
            ("LOOKOUT_ARTIFACTS", artifacts().display().to_string()),
            ("CHROMIUM", chromium()),
        ],
    );

    let filed = node.event("filed").await;
    assert!(
        filed["offline"]
            .as_str()
            .is_some_and(|t| t.starts_with("No connection to the appliance")),
        "{filed}"
    );
    // The picker asks for the back camera's pictures.
    assert_eq!(filed["capture"], "environment", "{filed}");
    assert_eq!(filed["accept"], "image/*", "{filed}");
    assert_eq!(filed["dialogHidden"], true, "{filed}");
    let closed = node.event("closed").await;
    assert_eq!(
        closed["text"],
        "Loading bay 3: the shutter is bent.\nNobody around."
    );
    assert_eq!(closed["rowState"], "closed", "{closed}");
    assert_eq!(
        closed["photoSizes"],
        json!([[1600, 1067], [1600, 1067]]),
        "{closed}"
    );
    let refused = node.event("refused").await;
    assert_eq!(
        refused["error"],
        "Photo 3 was not accepted: too large: at most 2 photos per incident \
         (patrol.max_photos_per_incident). The report was sent with 2 photos.",
        "{refused}"
    );
    assert_eq!(
        refused["dialogShown"], true,
        "the form stays for another try"
    );
    node.finish_clean().await;
    assert_screenshots(
        &artifacts(),
        "incident",
        &[
            "phone-form",
            "phone-sent",
            "dashboard-closed",
            "phone-refused",
        ],
    );

    // As kept: closed, commented, two JPEGs resized on the phone and smaller than the camera's.
    let listed = get_json(
        &server.http(),
        &server.https("/api/v1/incidents?state=closed"),
        &sup,
    )
    .await;
    let all = listed.as_array().expect("a list");
    assert_eq!(all.len(), 1, "{listed}");
    let incident = &all[0];
    assert_eq!(incident["state"], "closed");
    assert_eq!(incident["category"], "damage");
    assert_eq!(incident["author"], "g-report");
    assert_eq!(incident["close_note"], "Shutter secured");
    assert_eq!(incident["comments"][0]["text"], "Maintenance called");
    let photos = incident["photos"].as_array().expect("photos");
    assert_eq!(photos.len(), 2, "{incident}");
    let id = incident["id"].as_str().expect("id");
    for (photo, camera) in photos
        .iter()
        .zip(filed["pictureBytes"].as_array().expect("sizes"))
    {
        let n = photo["n"].as_u64().expect("n");
        let bytes = server
            .http()
            .get(server.https(&format!("/api/v1/incidents/{id}/photos/{n}")))
            .bearer_auth(&sup)
            .send()
            .await
            .expect("photo")
            .bytes()
            .await
            .expect("bytes");
        assert_eq!(Value::from(bytes.len()), photo["bytes"]);
        assert_eq!(jpeg_size(&bytes), Some((1600, 1067)), "photo {n}");
        assert!(
            (bytes.len() as u64) < camera.as_u64().expect("size"),
            "photo {n} was not made smaller on the phone"
        );
    }
    // The second report is open with the two photos the appliance took.
    let open = get_json(
        &server.http(),
        &server.https("/api/v1/incidents?state=open"),
        &sup,
    )
    .await;
    assert_eq!(open[0]["text"], "Second shutter, same bay.", "{open}");
    assert_eq!(
        open[0]["photos"].as_array().map(Vec::len),
        Some(2),
        "{open}"
    );
}
