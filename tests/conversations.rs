//! `GET /api/v1/messages`: a user's private conversations on `/user/queue/messages`, both ways
//! and in order, with read state (the recipient's acknowledgement on its queue), kept across a
//! restart; bounded; and within the caller's org only: globex's `sup` reads nothing of acme's,
//! although both orgs have a `sup` and a `carol`.

mod common;

use common::*;
use lookout::auth::Role;
use serde_json::{json, Value};

async fn conversation(server: &TestServer, token: &str, query: &str) -> (u16, Value) {
    server.get(&format!("/api/v1/messages{query}"), token).await
}

fn texts(page: &Value) -> Vec<(String, String, bool)> {
    page["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| {
            (
                m["from"].as_str().unwrap_or_default().to_string(),
                m["data"]["text"].as_str().unwrap_or_default().to_string(),
                m["read"].as_bool().unwrap_or_default(),
            )
        })
        .collect()
}

async fn say(client: &mut Client, to: &str, text: &str) -> u64 {
    let reply = client
        .request(
            json!({"type":"publish","channel":"/user/queue/messages","to":to,"data":{"text":text}}),
        )
        .await;
    assert!(ok(&reply), "{reply}");
    reply["seq"].as_u64().expect("seq")
}

#[tokio::test]
async fn a_conversation_is_read_both_ways_in_order_with_read_state_and_never_across_orgs() {
    let server = TestServer::start().await;
    let sup = server.token("sup", Some("acme"), &[Role::Supervisor]);
    let carol = server.token("carol", Some("acme"), &[Role::Guard]);
    let dave = server.token("dave", Some("acme"), &[Role::Guard]);
    let mut s = server.connect(&sup).await;
    let mut c = server.connect(&carol).await;
    let mut d = server.connect(&dave).await;
    say(&mut s, "carol", "one: report in").await;
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let seq = {
        // carol reads what came and answers.
        let sub = c.subscribe("/user/queue/messages").await;
        assert!(ok(&sub), "{sub}");
        let got = c.next_message().await;
        assert_eq!(got["data"]["from"], "sup", "{got}");
        let seq = got["seq"].as_u64().expect("seq");
        assert!(ok(&c
            .request(json!({"type":"ack","channel":"/user/queue/messages","seq":seq}))
            .await));
        say(&mut c, "sup", "two: all quiet").await
    };
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    say(&mut d, "sup", "dave here").await;
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    say(&mut s, "carol", "three: thanks").await;
    // Another org with the same ids writes too.
    let g_sup = server.token("sup", Some("globex"), &[Role::Supervisor]);
    let g_carol = server.token("carol", Some("globex"), &[Role::Guard]);
    let mut gc = server.connect(&g_carol).await;
    say(&mut gc, "sup", "GLOBEX-ONLY").await;

    let (status, page) = conversation(&server, &sup, "?with=carol").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(
        texts(&page),
        vec![
            ("sup".into(), "one: report in".into(), true),
            ("carol".into(), "two: all quiet".into(), false),
            ("sup".into(), "three: thanks".into(), false),
        ],
        "{page}"
    );
    assert_eq!(page["messages"][1]["seq"], seq, "{page}");
    // Without a peer: every correspondent; with a limit: the newest.
    let (_, all) = conversation(&server, &sup, "").await;
    assert_eq!(texts(&all).len(), 4, "{all}");
    let (_, last) = conversation(&server, &sup, "?limit=1").await;
    assert_eq!(texts(&last)[0].1, "three: thanks", "{last}");
    assert_eq!(last["truncated"], true, "{last}");
    // carol sees the same conversation from her side.
    let (_, hers) = conversation(&server, &carol, "").await;
    assert_eq!(texts(&hers).len(), 3, "{hers}");
    assert!(!hers.to_string().contains("dave here"), "{hers}");

    // globex's sup: only globex's conversation, whatever it names.
    for query in ["", "?with=carol", "?with=dave"] {
        let (status, page) = conversation(&server, &g_sup, query).await;
        assert_eq!(status, 200, "{page}");
        let text = page.to_string();
        assert!(
            !text.contains("report in")
                && !text.contains("all quiet")
                && !text.contains("dave here"),
            "{query}: {text}"
        );
    }
    assert_eq!(
        texts(&conversation(&server, &g_sup, "?with=carol").await.1),
        vec![("carol".into(), "GLOBEX-ONLY".into(), false)]
    );
    // An admin of no org has no conversations to read; a bad name is a bad request; no token, 401.
    let admin = server.token("root", None, &[Role::Admin]);
    assert_eq!(conversation(&server, &admin, "").await.0, 400);
    assert_eq!(conversation(&server, &g_sup, "?org=acme").await.0, 403);
    assert_eq!(conversation(&server, &sup, "?with=a/b").await.0, 400);
    assert_eq!(conversation(&server, &sup, "?limit=x").await.0, 400);
    assert_eq!(conversation(&server, "nonsense", "").await.0, 401);

    // Kept across a restart.
    drop((s, c, d, gc));
    let server = server.restart().await;
    let sup = server.token("sup", Some("acme"), &[Role::Supervisor]);
    let (_, again) = conversation(&server, &sup, "?with=carol").await;
    assert_eq!(texts(&again), texts(&page), "{again}");
    server.stop().await;
}

#[tokio::test]
async fn a_conversation_answer_is_bounded_by_the_response_budget() {
    let server = TestServer::start_with(|c| c.limits.max_response_bytes = 1024 * 1024).await;
    let sup = server.token("sup", Some("acme"), &[Role::Supervisor]);
    let mut s = server.connect(&sup).await;
    let long = "x".repeat(60_000);
    for _ in 0..20 {
        say(&mut s, "carol", &long).await;
    }
    let (status, page) = conversation(&server, &sup, "?with=carol").await;
    assert_eq!(status, 200);
    let n = texts(&page).len();
    assert!((1..20).contains(&n), "{n} messages of 60 kB in 1 MiB");
    assert_eq!(page["truncated"], true);
    server.stop().await;
}
