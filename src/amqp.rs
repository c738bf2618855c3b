//! Task events from the site's RabbitMQ (`amqp.url`, `[[amqp.bindings]]`): a task service
//! publishes `task.event.created` / `task.event.updated` to an exchange, and every member of
//! the task's organization sees it live on the binding's channel (e.g. `/topic/org/{org}/tasks`).
//!
//! For each binding Lookout declares its own durable queue (`<prefix>.<exchange>.<key>`, shared
//! by every node of a cluster, so each event is stored once), bound with the binding's topic
//! pattern, and consumes it with manual acknowledgements, one delivery at a time so that order
//! holds. A delivery is acknowledged only once its message is durable in Lookout; one arriving
//! again under the same AMQP `message-id` is stored once. A body that is not a JSON object, or
//! names no organization, is rejected to the dead-letter queue `<prefix>.dead-letter`, counted,
//! and logged without its content. When the broker goes away Lookout keeps serving and
//! reconnects with backoff.
//!
//! This module only moves messages: rights do not apply (the broker is trusted as a service of
//! the site), the hub stores and delivers.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions, BasicRejectOptions,
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Connection, ConnectionProperties, ExchangeKind};
use tokio_util::sync::CancellationToken;

use crate::channel::Target;
use crate::config::{AmqpBinding, AmqpSettings};
use crate::hub::Hub;

/// Reconnect backoff: from the first to the longest wait.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(500), Duration::from_secs(15));
/// A body larger than this is dead-lettered (an event is a small JSON object).
const MAX_BODY: usize = 256 * 1024;

/// Why a delivery was not stored.
#[derive(Debug, thiserror::Error)]
enum Refusal {
    /// It never will be: dead-lettered.
    #[error("{0}")]
    Reject(String),
    /// Lookout could not store it now: back on the queue, tried again.
    #[error("{0}")]
    Retry(String),
}

/// The consumer and what it counted.
pub struct Bridge {
    settings: AmqpSettings,
    hub: Arc<Hub>,
    /// Events stored (redeliveries of a stored one included).
    pub consumed: AtomicU64,
    /// Deliveries dead-lettered.
    pub rejected: AtomicU64,
    /// Connections made to the broker (the first and every reconnect).
    pub connections: AtomicU64,
    /// Whether the consumer is connected now.
    pub connected: AtomicBool,
}

impl std::fmt::Debug for Bridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bridge")
            .field("bindings", &self.settings.bindings.len())
            .finish_non_exhaustive()
    }
}

impl Bridge {
    /// The consumer `settings` describe, or `None` without `amqp.url`. A binding whose channel
    /// template does not name a logged channel is refused here, before anything is consumed.
    pub fn new(settings: &AmqpSettings, hub: Arc<Hub>) -> Result<Option<Arc<Bridge>>, String> {
        if settings.url.is_none() {
            return Ok(None);
        }
        for b in &settings.bindings {
            let sample = b.channel.replace("{org}", "org");
            match Target::parse(&sample, Some("org"), None) {
                Ok(t) if t.kind().is_logged() => {}
                Ok(_) => {
                    return Err(format!(
                        "amqp.bindings: {} is live-only; task events need a logged channel",
                        b.channel
                    ))
                }
                Err(e) => return Err(format!("amqp.bindings: {}: {e}", b.channel)),
            }
        }
        Ok(Some(Arc::new(Bridge {
            settings: settings.clone(),
            hub,
            consumed: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            connected: AtomicBool::new(false),
        })))
    }

    /// Consumes until `stop`, reconnecting with backoff whenever the broker goes away.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        let Some(url) = self.settings.url.clone() else {
            return;
        };
        let mut backoff = BACKOFF.0;
        loop {
            let result = tokio::select! {
                _ = stop.cancelled() => return,
                result = self.session(&url, &mut backoff) => result,
            };
            self.connected.store(false, Ordering::Relaxed);
            // The URL may carry a password: never logged.
            match result {
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?backoff, "RabbitMQ connection lost; reconnecting")
                }
                Ok(()) => {
                    tracing::warn!(retry_in = ?backoff, "RabbitMQ ended the consumers; reconnecting")
                }
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(BACKOFF.1);
        }
    }

    /// One connection: declares the queues, then stores deliveries until it drops.
    async fn session(&self, url: &str, backoff: &mut Duration) -> Result<(), lapin::Error> {
        let prefix = &self.settings.queue_prefix;
        let dead = format!("{prefix}.dead-letter");
        let connection = Connection::connect(url, ConnectionProperties::default()).await?;
        let channel = connection.create_channel().await?;
        channel
            .basic_qos(self.settings.prefetch, BasicQosOptions::default())
            .await?;
        let durable_exchange = ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        };
        let durable_queue = QueueDeclareOptions {
            durable: true,
            ..Default::default()
        };
        channel
            .exchange_declare(
                dead.as_str().into(),
                ExchangeKind::Fanout,
                durable_exchange,
                FieldTable::default(),
            )
            .await?;
        channel
            .queue_declare(dead.as_str().into(), durable_queue, FieldTable::default())
            .await?;
        channel
            .queue_bind(
                dead.as_str().into(),
                dead.as_str().into(),
                "".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let mut consumers = Vec::new();
        for (i, b) in self.settings.bindings.iter().enumerate() {
            let queue = format!("{prefix}.{}.{}", b.exchange, b.routing_key);
            let mut arguments = FieldTable::default();
            arguments.insert(
                "x-dead-letter-exchange".into(),
                AMQPValue::LongString(dead.as_str().into()),
            );
            channel
                .exchange_declare(
                    b.exchange.as_str().into(),
                    ExchangeKind::Topic,
                    durable_exchange,
                    FieldTable::default(),
                )
                .await?;
            channel
                .queue_declare(queue.as_str().into(), durable_queue, arguments)
                .await?;
            channel
                .queue_bind(
                    queue.as_str().into(),
                    b.exchange.as_str().into(),
                    b.routing_key.as_str().into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
            let consumer = channel
                .basic_consume(
                    queue.as_str().into(),
                    format!("lookout-{i}").as_str().into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await?;
            consumers.push(consumer.map(move |d| (i, d)));
        }
        self.connections.fetch_add(1, Ordering::Relaxed);
        self.connected.store(true, Ordering::Relaxed);
        *backoff = BACKOFF.0;
        tracing::info!(
            bindings = self.settings.bindings.len(),
            "consuming task events from RabbitMQ"
        );
        let mut deliveries = futures_util::stream::select_all(consumers);
        while let Some((i, delivery)) = deliveries.next().await {
            let delivery = delivery?;
            let binding = &self.settings.bindings[i];
            match self.store(binding, &delivery).await {
                Ok(()) => {
                    self.consumed.fetch_add(1, Ordering::Relaxed);
                    delivery.ack(BasicAckOptions::default()).await?;
                }
                Err(Refusal::Reject(why)) => {
                    self.rejected.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        routing_key = %delivery.routing_key,
                        why,
                        "task event dead-lettered"
                    );
                    delivery
                        .reject(BasicRejectOptions { requeue: false })
                        .await?;
                }
                Err(Refusal::Retry(why)) => {
                    tracing::warn!(why, "task event not stored now; back on its queue");
                    tokio::time::sleep(BACKOFF.0).await;
                    delivery
                        .nack(BasicNackOptions {
                            requeue: true,
                            ..Default::default()
                        })
                        .await?;
                }
            }
        }
        // The broker cancelled the consumers (a queue deleted, the node stopping).
        Ok(())
    }

    /// Stores one delivery on its org's channel, durable when this returns.
    async fn store(
        &self,
        binding: &AmqpBinding,
        delivery: &lapin::message::Delivery,
    ) -> Result<(), Refusal> {
        if delivery.data.len() > MAX_BODY {
            return Err(Refusal::Reject(format!(
                "body of {} bytes, over {MAX_BODY}",
                delivery.data.len()
            )));
        }
        let mut body: serde_json::Value = serde_json::from_slice(&delivery.data)
            .map_err(|_| Refusal::Reject("the body is not JSON".into()))?;
        let org = body
            .get(&binding.org)
            .and_then(|o| o.as_str())
            .filter(|o| !o.is_empty())
            .ok_or_else(|| Refusal::Reject(format!("the body names no org in `{}`", binding.org)))?
            .to_string();
        let object = body
            .as_object_mut()
            .ok_or_else(|| Refusal::Reject("the body is not a JSON object".into()))?;
        object.insert(
            "event_type".into(),
            serde_json::Value::String(delivery.routing_key.to_string()),
        );
        let target = Target::parse(&binding.channel.replace("{org}", &org), Some(&org), None)
            .map_err(|e| Refusal::Reject(format!("org {org:?} makes no channel: {e}")))?;
        let data = rmpv::ext::to_value(&body).map_err(|e| Refusal::Reject(format!("body: {e}")))?;
        let stored = match delivery.properties.message_id() {
            Some(id) => {
                let key = format!("amqp:{}:{}", binding.exchange, id);
                self.hub.publish_as_lookout_once(&target, data, &key).await
            }
            None => self.hub.publish_as_lookout(&target, data, false).await,
        };
        stored
            .map(|_| ())
            .map_err(|e| Refusal::Retry(e.to_string()))
    }
}
