//! Task events from RabbitMQ: Debian's `rabbitmq-server` (every listener on 127.0.0.1, a
//! directory of its own), a task service publishing `task.event.created` / `.updated` with the
//! AMQP client (lapin), and Lookout consuming them onto `/topic/org/{org}/tasks`. WebSocket,
//! STOMP and SSE clients of each organization get exactly their own events, in order; a
//! `kill -9` of Lookout mid-stream loses and duplicates nothing; a broker restart is survived
//! without restarting Lookout; what is not JSON or names no org is dead-lettered.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::process::RabbitMq;
use common::*;
use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties, ExchangeKind};
use lookout::auth::Role;
use serde_json::{json, Value};

const EXCHANGE: &str = "tasks";

/// The task service: publishes persistent, confirmed events with a message-id.
struct TaskService {
    channel: lapin::Channel,
    connection: Connection,
}

impl TaskService {
    async fn connect(mq: &RabbitMq) -> TaskService {
        let connection = Connection::connect(&mq.url(), ConnectionProperties::default())
            .await
            .expect("connect to RabbitMQ");
        let channel = connection.create_channel().await.expect("channel");
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .expect("confirms");
        channel
            .exchange_declare(
                EXCHANGE.into(),
                ExchangeKind::Topic,
                ExchangeDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("exchange");
        TaskService {
            channel,
            connection,
        }
    }

    /// Publishes as a careful producer does: mandatory, so that a message no queue is bound
    /// for yet comes back instead of vanishing, and sent again until Lookout's binding takes
    /// it (its consumer declares the queue, then binds it: a queue that exists may not be
    /// bound yet).
    async fn send(&self, key: &str, id: &str, body: &[u8]) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let confirmation = self
                .channel
                .basic_publish(
                    EXCHANGE.into(),
                    key.into(),
                    BasicPublishOptions {
                        mandatory: true,
                        ..Default::default()
                    },
                    body,
                    BasicProperties::default()
                        .with_message_id(id.into())
                        .with_delivery_mode(2)
                        .with_content_type("application/json".into()),
                )
                .await
                .expect("publish")
                .await
                .expect("confirmed");
            assert!(confirmation.is_ack(), "the broker refused {id}");
            if confirmation.take_message().is_none() {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no queue was ever bound for {key}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Task event `n` of `org`.
    async fn event(&self, org: &str, n: u64) {
        let key = if n % 2 == 1 {
            "task.event.created"
        } else {
            "task.event.updated"
        };
        let body = json!({ "organization_id": org, "task_id": format!("t-{n}"), "n": n });
        self.send(key, &format!("{org}-{n}"), body.to_string().as_bytes())
            .await;
    }

    /// How many messages wait in `queue`; `u32::MAX` while it does not exist. On a channel of
    /// its own: a passive declare of a missing queue closes the channel it was sent on.
    async fn depth(&self, queue: &str) -> u32 {
        let Ok(channel) = self.connection.create_channel().await else {
            return u32::MAX;
        };
        let depth = channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .map(|q| q.message_count())
            .unwrap_or(u32::MAX);
        // Open when the queue exists (a missing one's channel is closed by the broker).
        let _ = channel.close(200, "done".into()).await;
        depth
    }
}

fn lookout(data: &std::path::Path, mq: &RabbitMq) -> (Binary, String) {
    let config = config_file(
        data,
        &format!(
            "[amqp]\nurl = \"{}\"\n[[amqp.bindings]]\nexchange = \"{EXCHANGE}\"\n\
             routing_key = \"task.event.*\"\nchannel = \"/topic/org/{{org}}/tasks\"\n\
             org = \"organization_id\"\n",
            mq.url()
        ),
    );
    let node = Binary::serve(data, &[("LOOKOUT_CONFIG", config.as_str())]);
    (node, config)
}

/// Every message of `org`'s task channel, through REST history: n → (seq, event_type).
async fn logged(node: &Binary, token: &str, org: &str) -> BTreeMap<u64, (u64, String)> {
    let http = http_client(&node.cert_pem());
    let mut out = BTreeMap::new();
    let mut since = 0;
    loop {
        let url = format!(
            "https://{}/api/v1/channels/history?channel=/topic/org/{org}/tasks&since={since}&limit=1000",
            node.addr
        );
        let page = get_json(&http, &url, token).await;
        let messages = page["messages"].as_array().cloned().unwrap_or_default();
        if messages.is_empty() {
            return out;
        }
        for m in messages {
            since = m["seq"].as_u64().expect("seq");
            assert_eq!(m["data"]["organization_id"], org, "{m}");
            let n = m["data"]["n"].as_u64().expect("n");
            let kind = m["data"]["event_type"]
                .as_str()
                .expect("event_type")
                .to_string();
            assert!(
                out.insert(n, (since, kind)).is_none(),
                "event {n} of {org} stored twice"
            );
        }
    }
}

async fn until_logged(
    node: &Binary,
    token: &str,
    org: &str,
    count: usize,
) -> BTreeMap<u64, (u64, String)> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let seen = logged(node, token, org).await;
        if seen.len() >= count {
            return seen;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{org}: {} of {count} events stored",
            seen.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_events_reach_each_org_in_order_across_a_kill_9_and_a_broker_restart() {
    let mut mq = RabbitMq::start();
    let tmp = tempfile::tempdir().expect("tempdir");
    let (node, config) = lookout(&tmp.path().join("data"), &mq);
    let acme = node.token("ann", Some("acme"), &[Role::Supervisor]);
    let globex = node.token("gil", Some("globex"), &[Role::Supervisor]);

    // Subscribers of each org, on three protocols, before anything is published.
    let mut ws_acme = node.connect(&acme).await;
    assert!(ok(&ws_acme.subscribe("/topic/org/acme/tasks").await));
    let mut ws_globex = node.connect(&globex).await;
    assert!(ok(&ws_globex.subscribe("/topic/org/globex/tasks").await));
    let mut stomp =
        StompClient::connect_at(&format!("wss://{}/ws", node.addr), &node.cert_pem(), &acme).await;
    stomp
        .send_frame(
            "SUBSCRIBE",
            &[("id", "0"), ("destination", "/topic/org/acme/tasks")],
            b"",
        )
        .await;
    let sse = http_client(&node.cert_pem())
        .get(format!(
            "https://{}/api/v1/events?channels=/topic/org/globex/tasks",
            node.addr
        ))
        .bearer_auth(&globex)
        .send()
        .await
        .expect("sse");
    assert_eq!(sse.status(), 200);
    let mut sse = EventReader::new(sse);

    let service = TaskService::connect(&mq).await;
    // Two orgs, interleaved (each sent again until Lookout's queue is bound: see `send`).
    for n in 1..=10u64 {
        service.event("acme", n).await;
        service.event("globex", n).await;
    }
    for n in 1..=10u64 {
        let m = ws_acme.next_message().await;
        assert_eq!(m["data"]["n"], n, "{m}");
        assert_eq!(m["data"]["organization_id"], "acme");
        let kind = if n % 2 == 1 {
            "task.event.created"
        } else {
            "task.event.updated"
        };
        assert_eq!(m["data"]["event_type"], kind);
        let g = ws_globex.next_message().await;
        assert_eq!(
            (
                g["data"]["n"].as_u64(),
                g["data"]["organization_id"].as_str()
            ),
            (Some(n), Some("globex")),
            "{g}"
        );
        let frame = stomp.next_frame().await;
        assert_eq!(frame.command, "MESSAGE");
        let body: Value = serde_json::from_slice(&frame.body).expect("json body");
        assert_eq!(
            (body["n"].as_u64(), body["organization_id"].as_str()),
            (Some(n), Some("acme")),
            "{body}"
        );
        let (_, data) = sse.next_message().await;
        assert_eq!(
            (
                data["data"]["n"].as_u64(),
                data["data"]["organization_id"].as_str()
            ),
            (Some(n), Some("globex")),
            "{data}"
        );
    }
    drop((ws_acme, ws_globex, stomp, sse));

    // Not JSON, and JSON naming no org: dead-lettered, nothing stored, consuming goes on.
    service
        .send("task.event.created", "bad-1", b"not json at all")
        .await;
    service
        .send("task.event.created", "bad-2", br#"{"task_id":"t-x"}"#)
        .await;
    service.event("acme", 11).await;
    until_logged(&node, &acme, "acme", 11).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while service.depth("lookout.dead-letter").await != 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "dead letters never arrived"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // kill -9 mid-stream: events keep coming while Lookout is down and restarts.
    let publisher = tokio::spawn(async move {
        for n in 12..=200u64 {
            service.event("acme", n).await;
            service.event("globex", n - 1).await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        service
    });
    until_logged(&node, &acme, "acme", 40).await;
    let node = node.kill_9_and_restart(&[("LOOKOUT_CONFIG", config.as_str())]);
    let service = publisher.await.expect("publisher");
    let acme_log = until_logged(&node, &acme, "acme", 200).await;
    let globex_log = until_logged(&node, &globex, "globex", 199).await;
    for (org, log, last) in [("acme", &acme_log, 200u64), ("globex", &globex_log, 199)] {
        assert_eq!(
            log.keys().copied().collect::<Vec<_>>(),
            (1..=last).collect::<Vec<_>>(),
            "{org}: every event once"
        );
        let seqs: Vec<u64> = log.values().map(|(s, _)| *s).collect();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "{org}: stored in the order published"
        );
    }

    // The broker restarts; Lookout reconnects by itself.
    drop(service);
    mq.restart();
    let service = TaskService::connect(&mq).await;
    service.event("acme", 201).await;
    let after = until_logged(&node, &acme, "acme", 201).await;
    assert!(after.contains_key(&201));
    let metrics = node.metrics().await;
    assert!(metrics.contains("lookout_amqp_connected 1"), "{metrics}");
    drop(node);
}
