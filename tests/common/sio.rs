//! socket.io-client (npm, under Node.js: tests/node/socketio.mjs) driven line by line: named
//! sockets, and the steps they reported.

use std::collections::VecDeque;

use serde_json::{json, Value};

use super::{NodeScript, TestServer, PATIENCE};

/// A socket.io-client script holding named sockets, and the steps it reported that a test has
/// not looked at yet (the sockets' events interleave).
pub struct Sio {
    pub node: NodeScript,
    pub seen: VecDeque<Value>,
    pub tags: u64,
}

impl Sio {
    pub fn start(server: &TestServer) -> Sio {
        let env = vec![
            (
                "LOOKOUT_URL",
                format!("https://127.0.0.1:{}", server.addr.port()),
            ),
            ("LOOKOUT_CA", server.cert_path.display().to_string()),
        ];
        Sio {
            node: NodeScript::driven("socketio.mjs", &env),
            seen: VecDeque::new(),
            tags: 0,
        }
    }

    /// The first step (seen or to come) that `matches`; the others stay for later.
    pub async fn wait(&mut self, what: &str, matches: impl Fn(&Value) -> bool) -> Value {
        if let Some(at) = self.seen.iter().position(&matches) {
            return self.seen.remove(at).expect("present");
        }
        let give_up = tokio::time::Instant::now() + PATIENCE * 2;
        loop {
            let step = tokio::time::timeout_at(give_up, self.node.next_event())
                .await
                .unwrap_or_else(|_| panic!("socketio.mjs: no {what}; saw {:?}", self.seen));
            if matches(&step) {
                return step;
            }
            self.seen.push_back(step);
        }
    }

    /// Opens socket `name` with `options` (auth, query, headers, transports, …): its
    /// `connected` step, or its `connect_error`.
    pub async fn connect(&mut self, name: &str, options: Value) -> Value {
        let mut command = json!({"cmd": "connect", "name": name});
        for (k, v) in options.as_object().expect("options").clone() {
            command[k] = v;
        }
        self.node.send(command).await;
        self.wait("connect", |s| {
            s["name"] == name && (s["event"] == "connected" || s["event"] == "connect_error")
        })
        .await
    }

    /// Emits `event` with `data` and an acknowledgement callback: the acknowledgement.
    pub async fn request(&mut self, name: &str, event: &str, data: Value) -> Value {
        self.tags += 1;
        let tag = self.tags;
        self.node
            .send(json!({"cmd": "emit", "name": name, "event": event, "data": data, "ack": true, "tag": tag}))
            .await;
        let ack = self
            .wait("ack", |s| s["event"] == "ack" && s["tag"] == tag)
            .await;
        assert_ne!(
            ack["reply"]["timeout"], true,
            "{event} was not acknowledged"
        );
        ack["reply"].clone()
    }

    /// The next `message` event of socket `name`.
    pub async fn message(&mut self, name: &str) -> Value {
        self.wait("message", |s| s["event"] == "message" && s["name"] == name)
            .await["message"]
            .clone()
    }

    /// Messages socket `name` received and no test step took.
    pub fn unread_messages(&self, name: &str) -> Vec<&Value> {
        self.seen
            .iter()
            .filter(|s| s["event"] == "message" && s["name"] == name)
            .collect()
    }

    pub async fn close(&mut self, name: &str) {
        self.node.send(json!({"cmd": "close", "name": name})).await;
        self.wait("closed", |s| s["event"] == "closed" && s["name"] == name)
            .await;
    }

    pub async fn exit(mut self) {
        self.node.send(json!({"cmd": "exit"})).await;
        self.node.finish().await;
    }
}
