//! RabbitMQ adapter (lapin).
//!
//! Topology, all under a configurable prefix (tests use a random one):
//! - `{prefix}.events`: durable topic exchange every event is published to.
//! - `{prefix}.{queue}`: one durable quorum queue per consumer group, bound by routing key, with
//!   `x-delivery-limit` so a message retried too often is dead-lettered rather than looping.
//!   Quorum queues write to disk before confirming, which classic queues may skip.
//! - `{prefix}.dead` (direct exchange) → `{prefix}.{queue}.dead`: the dead-letter queues.
//!
//! Packs: consecutive messages of one `publish` with the same routing key travel as one broker
//! message (up to [`AmqpConfig::pack_max`]; content type [`PACK_CONTENT_TYPE`]), because the
//! broker's cost is per message, not per byte. A subscription unpacks them into deliveries of
//! their own, each settled on its own: the pack is acked when all of its deliveries are
//! settled; a retried one is put back into the queue alone (its attempt counted in the
//! `x-minyi-attempt` header), a dead-lettered one goes to the dead-letter queue alone. If that
//! fails, the whole pack is requeued (consumers dedupe what they already applied).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use lapin::Confirmation;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
    BasicRejectOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::tcp::OwnedTLSConfig;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{
    BasicProperties, Channel, Connection, ConnectionProperties, DefaultConnectionBuilder,
    ExchangeKind,
};
use tokio::sync::Mutex;
use uuid::Uuid;

use super::{Acker, Bus, BusError, Delivery, Message, Settle, Subscription};

#[derive(Debug, Clone)]
pub struct AmqpConfig {
    pub url: String,
    /// Prefix of every exchange and queue name.
    pub prefix: String,
    /// Deliveries before a message is dead-lettered.
    pub max_deliveries: u32,
    pub prefetch: u16,
    /// Delete idle queues after this long (tests); `None` in production.
    pub queue_expires: Option<Duration>,
    /// Longest wait for the broker to open a connection and declare the topology. A wedged
    /// broker then surfaces as `BusError::Unavailable` instead of a hang.
    pub connect_timeout: Duration,
    /// PEM CA certificates trusted for `amqps://` besides the system store (an internal CA).
    pub ca_pem: Option<String>,
    /// The most messages one broker message carries (see "Packs" above); 1 sends each alone,
    /// which consumers of every version understand.
    pub pack_max: usize,
}

/// Content type of a broker message that carries several messages ([`Pack`]).
pub const PACK_CONTENT_TYPE: &str = "application/x-minyi-pack";
/// Header counting the attempts a message put back alone has had (see "Packs" above).
const ATTEMPT_HEADER: &str = "x-minyi-attempt";
/// Header keeping the routing key of a message put back alone (it goes through the default
/// exchange, whose routing key is the queue's name).
const ROUTING_KEY_HEADER: &str = "x-minyi-routing-key";

/// Several messages of one routing key, in order, as one broker message.
#[derive(Clone, PartialEq, prost::Message)]
struct Pack {
    #[prost(message, repeated, tag = "1")]
    items: Vec<PackItem>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct PackItem {
    /// The event id's 16 bytes.
    #[prost(bytes = "vec", tag = "1")]
    event_id: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    payload: Vec<u8>,
    #[prost(btree_map = "string, string", tag = "3")]
    headers: BTreeMap<String, String>,
}

impl AmqpConfig {
    pub fn new(url: &str, prefix: &str) -> Self {
        Self {
            url: url.to_owned(),
            prefix: prefix.to_owned(),
            max_deliveries: 5,
            prefetch: 256,
            queue_expires: None,
            connect_timeout: Duration::from_secs(20),
            ca_pem: None,
            pack_max: 32,
        }
    }

    fn exchange(&self) -> String {
        format!("{}.events", self.prefix)
    }

    fn dead_exchange(&self) -> String {
        format!("{}.dead", self.prefix)
    }

    fn queue(&self, name: &str) -> String {
        format!("{}.{name}", self.prefix)
    }
}

/// The bus on RabbitMQ. Cheap to clone; reconnects after the broker restarts.
#[derive(Clone)]
pub struct AmqpBus {
    config: Arc<AmqpConfig>,
    publisher: Arc<Mutex<Option<(Connection, Channel)>>>,
}

fn unavailable(e: impl std::fmt::Display) -> BusError {
    BusError::Unavailable(e.to_string())
}

impl AmqpBus {
    /// Connects once to check the broker and declare the exchanges.
    pub async fn connect(config: AmqpConfig) -> Result<Self, BusError> {
        let bus = Self {
            config: Arc::new(config),
            publisher: Arc::default(),
        };
        let (conn, channel) = bus.open_channel(true).await?;
        *bus.publisher.lock().await = Some((conn, channel));
        Ok(bus)
    }

    async fn open_channel(&self, confirms: bool) -> Result<(Connection, Channel), BusError> {
        self.in_time("connecting", self.open_channel_unbounded(confirms))
            .await
    }

    /// Runs a broker operation within `connect_timeout`.
    async fn in_time<T>(
        &self,
        what: &str,
        f: impl std::future::Future<Output = Result<T, BusError>>,
    ) -> Result<T, BusError> {
        tokio::time::timeout(self.config.connect_timeout, f)
            .await
            .unwrap_or_else(|_| {
                Err(BusError::Unavailable(format!(
                    "{what}: RabbitMQ did not answer within {:?}",
                    self.config.connect_timeout
                )))
            })
    }

    async fn open_channel_unbounded(
        &self,
        confirms: bool,
    ) -> Result<(Connection, Channel), BusError> {
        // `amqps://` URLs get TLS (rustls, ring) verified against the system store plus
        // `ca_pem`; `amqp://` ignores the TLS settings.
        let tls = OwnedTLSConfig {
            identity: None,
            cert_chain: self.config.ca_pem.clone(),
        };
        let conn = DefaultConnectionBuilder::new()
            .map_err(unavailable)?
            .with_uri_str(self.config.url.clone())
            .with_properties(ConnectionProperties::default())
            .with_tls_config(tls)
            .connect()
            .await
            .map_err(unavailable)?;
        let channel = conn.create_channel().await.map_err(unavailable)?;
        if confirms {
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await
                .map_err(unavailable)?;
        }
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..ExchangeDeclareOptions::default()
        };
        channel
            .exchange_declare(
                self.config.exchange().as_str().into(),
                ExchangeKind::Topic,
                durable,
                FieldTable::default(),
            )
            .await
            .map_err(unavailable)?;
        channel
            .exchange_declare(
                self.config.dead_exchange().as_str().into(),
                ExchangeKind::Direct,
                durable,
                FieldTable::default(),
            )
            .await
            .map_err(unavailable)?;
        Ok((conn, channel))
    }

    async fn declare_queue(
        &self,
        channel: &Channel,
        name: &str,
        keys: &[String],
    ) -> Result<(), BusError> {
        self.in_time(
            "declaring a queue",
            self.declare_queue_unbounded(channel, name, keys),
        )
        .await
    }

    async fn declare_queue_unbounded(
        &self,
        channel: &Channel,
        name: &str,
        keys: &[String],
    ) -> Result<(), BusError> {
        let queue = self.config.queue(name);
        let dead = format!("{queue}.dead");
        let durable = QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        };
        let mut dead_args = FieldTable::default();
        dead_args.insert(
            ShortString::from("x-queue-type"),
            AMQPValue::LongString(LongString::from("quorum")),
        );
        if let Some(ttl) = self.config.queue_expires {
            dead_args.insert(
                ShortString::from("x-expires"),
                AMQPValue::LongLongInt(ttl.as_millis() as i64),
            );
        }
        channel
            .queue_declare(dead.as_str().into(), durable, dead_args.clone())
            .await
            .map_err(unavailable)?;
        channel
            .queue_bind(
                dead.as_str().into(),
                self.config.dead_exchange().as_str().into(),
                name.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(unavailable)?;
        let mut args = dead_args;
        args.insert(
            ShortString::from("x-delivery-limit"),
            AMQPValue::LongLongInt(i64::from(self.config.max_deliveries.saturating_sub(1))),
        );
        args.insert(
            ShortString::from("x-dead-letter-exchange"),
            AMQPValue::LongString(LongString::from(self.config.dead_exchange().as_str())),
        );
        args.insert(
            ShortString::from("x-dead-letter-routing-key"),
            AMQPValue::LongString(LongString::from(name)),
        );
        channel
            .queue_declare(queue.as_str().into(), durable, args)
            .await
            .map_err(unavailable)?;
        for key in keys {
            channel
                .queue_bind(
                    queue.as_str().into(),
                    self.config.exchange().as_str().into(),
                    key.as_str().into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(unavailable)?;
        }
        Ok(())
    }

    async fn publish_on(
        channel: &Channel,
        exchange: &str,
        messages: &[Message],
        pack_max: usize,
    ) -> Result<(), BusError> {
        // Pipelined: send every message (runs of one routing key packed), then await every
        // confirm.
        let mut confirms = Vec::with_capacity(messages.len());
        for run in messages.chunk_by(|a, b| a.routing_key == b.routing_key) {
            for chunk in run.chunks(pack_max.max(1)) {
                let confirm = match chunk {
                    [one] => send(channel, exchange, &one.routing_key, one, None).await?,
                    many => send_pack(channel, exchange, many).await?,
                };
                confirms.push(confirm);
            }
        }
        confirmed(confirms).await
    }

    /// Runs `publish` on the publisher channel (opened again when it was lost), one publisher
    /// at a time; a failure drops the channel, so the next call starts afresh.
    async fn on_publisher<F, Fut>(&self, publish: F) -> Result<(), BusError>
    where
        F: FnOnce(Channel) -> Fut,
        Fut: std::future::Future<Output = Result<(), BusError>>,
    {
        let mut guard = self.publisher.lock().await;
        if guard
            .as_ref()
            .is_none_or(|(c, ch)| !c.status().connected() || !ch.status().connected())
        {
            *guard = Some(self.open_channel(true).await?);
        }
        let Some((_, channel)) = guard.as_ref() else {
            return Err(BusError::Unavailable("no channel".into()));
        };
        let result = publish(channel.clone()).await;
        if result.is_err() {
            *guard = None;
        }
        result
    }

    /// Publishes one message to `exchange` with `routing_key` on the publisher channel and
    /// waits for its confirm (a packed message retried or dead-lettered alone).
    async fn publish_one(
        &self,
        exchange: &str,
        routing_key: &str,
        m: &Message,
        attempt: Option<u32>,
    ) -> Result<(), BusError> {
        self.on_publisher(|channel| async move {
            let confirm = send(&channel, exchange, routing_key, m, attempt).await?;
            confirmed(vec![confirm]).await
        })
        .await
    }

    async fn passive_count(&self, queue: &str) -> Result<u64, BusError> {
        let (conn, channel) = self.open_channel(false).await?;
        let q = channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await;
        let _ = conn.close(200, "bye".into()).await;
        match q {
            Ok(q) => Ok(u64::from(q.message_count())),
            Err(_) => Ok(0),
        }
    }
}

#[async_trait]
impl Bus for AmqpBus {
    async fn publish(&self, messages: &[Message]) -> Result<(), BusError> {
        // On failure the caller keeps the messages (the outbox) and retries.
        let exchange = self.config.exchange();
        self.on_publisher(|channel| async move {
            Self::publish_on(&channel, &exchange, messages, self.config.pack_max).await
        })
        .await
    }

    async fn subscribe(
        &self,
        queue: &str,
        routing_keys: &[&str],
    ) -> Result<Box<dyn Subscription>, BusError> {
        let mut sub = AmqpSubscription {
            bus: self.clone(),
            queue: queue.to_owned(),
            keys: routing_keys.iter().map(|k| (*k).to_owned()).collect(),
            consumer: None,
            consuming: String::new(),
            unpacked: VecDeque::new(),
            transient: false,
            gaps: 0,
        };
        sub.connect().await?;
        Ok(Box::new(sub))
    }

    async fn subscribe_transient(
        &self,
        name: &str,
        routing_keys: &[&str],
    ) -> Result<Box<dyn Subscription>, BusError> {
        let mut sub = AmqpSubscription {
            bus: self.clone(),
            queue: name.to_owned(),
            keys: routing_keys.iter().map(|k| (*k).to_owned()).collect(),
            consumer: None,
            consuming: String::new(),
            unpacked: VecDeque::new(),
            transient: true,
            gaps: 0,
        };
        sub.connect().await?;
        Ok(Box::new(sub))
    }

    async fn declare(&self, queue: &str, routing_keys: &[&str]) -> Result<(), BusError> {
        let (conn, channel) = self.open_channel(false).await?;
        let keys: Vec<String> = routing_keys.iter().map(|k| (*k).to_owned()).collect();
        let r = self.declare_queue(&channel, queue, &keys).await;
        let _ = conn.close(200, "bye".into()).await;
        r
    }

    async fn queue_depth(&self, queue: &str) -> Result<u64, BusError> {
        self.passive_count(&self.config.queue(queue)).await
    }

    async fn dead_letter_depth(&self, queue: &str) -> Result<u64, BusError> {
        self.passive_count(&format!("{}.dead", self.config.queue(queue)))
            .await
    }
}

struct AmqpSubscription {
    bus: AmqpBus,
    queue: String,
    keys: Vec<String>,
    consumer: Option<(Connection, lapin::Consumer)>,
    /// The broker's name of the queue consumed now (transient queues get a new one on
    /// reconnect).
    consuming: String,
    /// The rest of a pack being handed out.
    unpacked: VecDeque<Delivery>,
    /// An exclusive, auto-deleted queue of this subscription's own (`subscribe_transient`).
    transient: bool,
    /// Transient queues declared after the first one.
    gaps: u64,
}

impl AmqpSubscription {
    async fn connect(&mut self) -> Result<(), BusError> {
        let (conn, channel) = self.bus.open_channel(false).await?;
        let queue = if self.transient {
            let queue = format!(
                "{}.{}",
                self.bus.config.queue(&self.queue),
                Uuid::new_v4().simple()
            );
            self.bus
                .in_time(
                    "declaring a transient queue",
                    declare_transient(&channel, &queue, &self.bus.config.exchange(), &self.keys),
                )
                .await?;
            queue
        } else {
            self.bus
                .declare_queue(&channel, &self.queue, &self.keys)
                .await?;
            self.bus.config.queue(&self.queue)
        };
        channel
            .basic_qos(self.bus.config.prefetch, BasicQosOptions::default())
            .await
            .map_err(unavailable)?;
        let tag = format!("minyi-{}", Uuid::new_v4().simple());
        let consumer = channel
            .basic_consume(
                queue.as_str().into(),
                tag.as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(unavailable)?;
        self.consuming = queue;
        if let Some((old, _)) = self.consumer.replace((conn, consumer)) {
            let _ = old.close(200, "bye".into()).await;
        }
        Ok(())
    }
}

/// A classic, non-durable queue that RabbitMQ deletes with the connection that declared it.
async fn declare_transient(
    channel: &Channel,
    queue: &str,
    exchange: &str,
    keys: &[String],
) -> Result<(), BusError> {
    let options = QueueDeclareOptions {
        durable: false,
        exclusive: true,
        auto_delete: true,
        ..QueueDeclareOptions::default()
    };
    channel
        .queue_declare(queue.into(), options, FieldTable::default())
        .await
        .map_err(unavailable)?;
    for key in keys {
        channel
            .queue_bind(
                queue.into(),
                exchange.into(),
                key.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(unavailable)?;
    }
    Ok(())
}

impl Drop for AmqpSubscription {
    fn drop(&mut self) {
        // Close the connection, so the broker drops an exclusive queue at once and requeues
        // what this consumer held.
        if let Some((conn, _)) = self.consumer.take()
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            rt.spawn(async move {
                let _ = conn.close(200, "bye".into()).await;
            });
        }
    }
}

#[async_trait]
impl Subscription for AmqpSubscription {
    fn gaps(&self) -> u64 {
        self.gaps
    }

    async fn next(&mut self) -> Result<Delivery, BusError> {
        if let Some(d) = self.unpacked.pop_front() {
            return Ok(d);
        }
        let mut backoff = Duration::from_millis(100);
        loop {
            if let Some((_, consumer)) = self.consumer.as_mut() {
                match consumer.next().await {
                    Some(Ok(d)) => {
                        let props = d.properties.clone();
                        if props
                            .content_type()
                            .as_ref()
                            .is_some_and(|t| t.as_str() == PACK_CONTENT_TYPE)
                            && let Some(first) = self.unpack(&d)
                        {
                            return Ok(first);
                        }
                        let event_id = props
                            .message_id()
                            .as_ref()
                            .and_then(|id| Uuid::parse_str(id.as_str()).ok())
                            .unwrap_or_else(Uuid::nil);
                        let mut headers = std::collections::BTreeMap::new();
                        let (mut attempt, mut earlier) = (0u32, 0u32);
                        let mut routing_key = d.routing_key.to_string();
                        if let Some(h) = props.headers() {
                            for (k, v) in h.inner() {
                                match v {
                                    AMQPValue::LongString(s)
                                        if k.as_str() == ROUTING_KEY_HEADER =>
                                    {
                                        routing_key = s.to_string();
                                    }
                                    AMQPValue::LongString(s) => {
                                        headers.insert(k.to_string(), s.to_string());
                                    }
                                    AMQPValue::LongLongInt(n)
                                        if k.as_str() == "x-delivery-count" =>
                                    {
                                        attempt = u32::try_from(*n).unwrap_or(u32::MAX);
                                    }
                                    AMQPValue::LongInt(n) if k.as_str() == "x-delivery-count" => {
                                        attempt = u32::try_from(*n).unwrap_or(u32::MAX);
                                    }
                                    AMQPValue::LongLongInt(n) if k.as_str() == ATTEMPT_HEADER => {
                                        earlier = u32::try_from(*n).unwrap_or(u32::MAX);
                                    }
                                    _ => {}
                                }
                            }
                        }
                        let message = Message {
                            event_id,
                            routing_key,
                            payload: d.data.clone(),
                            headers,
                        };
                        let attempt = attempt.saturating_add(earlier);
                        let acker = AmqpAcker {
                            acker: d.acker,
                            // Past the limit a message put back alone is dead-lettered here:
                            // the broker counts only its own deliveries of it.
                            last_attempt: earlier > 0
                                && attempt + 1 >= self.bus.config.max_deliveries,
                        };
                        return Ok(Delivery::new(message, attempt, Box::new(acker)));
                    }
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, queue = %self.queue, "consumer failed; reconnecting");
                        self.consumer = None;
                    }
                    None => {
                        tracing::warn!(queue = %self.queue, "consumer closed; reconnecting");
                        self.consumer = None;
                    }
                }
            }
            match self.connect().await {
                Ok(()) => {
                    backoff = Duration::from_millis(100);
                    if self.transient {
                        self.gaps += 1;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, queue = %self.queue, "broker unreachable; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}

impl AmqpSubscription {
    /// Queues the messages of a pack as deliveries of their own and returns the first; `None`
    /// (the broker message is then handed out as it is, and so dead-lettered as undecodable)
    /// when it is not a pack.
    fn unpack(&mut self, d: &lapin::message::Delivery) -> Option<Delivery> {
        use prost::Message as _;
        let pack = Pack::decode(d.data.as_slice()).ok()?;
        let mut messages = Vec::with_capacity(pack.items.len());
        for item in pack.items {
            messages.push(Message {
                event_id: Uuid::from_slice(&item.event_id).ok()?,
                routing_key: d.routing_key.to_string(),
                payload: item.payload,
                headers: item.headers,
            });
        }
        if messages.is_empty() {
            return None;
        }
        // Redelivered packs count as a retry of each of their messages.
        let attempt = d
            .properties
            .headers()
            .as_ref()
            .and_then(|h| h.inner().get("x-delivery-count").cloned())
            .and_then(|v| match v {
                AMQPValue::LongLongInt(n) => u32::try_from(n).ok(),
                AMQPValue::LongInt(n) => u32::try_from(n).ok(),
                _ => None,
            })
            .unwrap_or(0);
        let pack = Arc::new(PackState {
            acker: d.acker.clone(),
            bus: self.bus.clone(),
            queue: self.consuming.clone(),
            dead_key: (!self.transient).then(|| self.queue.clone()),
            attempt,
            unsettled: AtomicUsize::new(messages.len()),
            failed: AtomicBool::new(false),
        });
        for message in messages {
            let acker = PackAcker(pack.clone());
            self.unpacked
                .push_back(Delivery::new(message, attempt, Box::new(acker)));
        }
        self.unpacked.pop_front()
    }
}

/// Waits for every confirm; a nack is an error.
async fn confirmed(confirms: Vec<lapin::PublisherConfirm>) -> Result<(), BusError> {
    for c in confirms {
        match c.await.map_err(unavailable)? {
            Confirmation::Nack(_) => return Err(BusError::Nacked("nack".into())),
            Confirmation::Ack(_) | Confirmation::NotRequested => {}
        }
    }
    Ok(())
}

/// Sends one message (not waiting for its confirm). `attempt`: it is put back after that many
/// attempts (see "Packs").
async fn send(
    channel: &Channel,
    exchange: &str,
    routing_key: &str,
    m: &Message,
    attempt: Option<u32>,
) -> Result<lapin::PublisherConfirm, BusError> {
    let mut headers = FieldTable::default();
    for (k, v) in &m.headers {
        headers.insert(
            ShortString::from(k.as_str()),
            AMQPValue::LongString(LongString::from(v.as_str())),
        );
    }
    if let Some(n) = attempt {
        headers.insert(
            ShortString::from(ATTEMPT_HEADER),
            AMQPValue::LongLongInt(i64::from(n)),
        );
        headers.insert(
            ShortString::from(ROUTING_KEY_HEADER),
            AMQPValue::LongString(LongString::from(m.routing_key.as_str())),
        );
    }
    let props = BasicProperties::default()
        .with_delivery_mode(2)
        .with_message_id(ShortString::from(m.event_id.to_string()))
        .with_content_type(ShortString::from("application/x-protobuf"))
        .with_headers(headers);
    channel
        .basic_publish(
            exchange.into(),
            routing_key.into(),
            BasicPublishOptions::default(),
            &m.payload,
            props,
        )
        .await
        .map_err(unavailable)
}

/// Sends `messages` (one routing key) as one pack (not waiting for its confirm).
async fn send_pack(
    channel: &Channel,
    exchange: &str,
    messages: &[Message],
) -> Result<lapin::PublisherConfirm, BusError> {
    use prost::Message as _;
    let pack = Pack {
        items: messages
            .iter()
            .map(|m| PackItem {
                event_id: m.event_id.as_bytes().to_vec(),
                payload: m.payload.clone(),
                headers: m.headers.clone(),
            })
            .collect(),
    };
    let props = BasicProperties::default()
        .with_delivery_mode(2)
        .with_message_id(ShortString::from(messages[0].event_id.to_string()))
        .with_content_type(ShortString::from(PACK_CONTENT_TYPE));
    channel
        .basic_publish(
            exchange.into(),
            messages[0].routing_key.as_str().into(),
            BasicPublishOptions::default(),
            &pack.encode_to_vec(),
            props,
        )
        .await
        .map_err(unavailable)
}

/// A pack's broker delivery, settled once every message in it is.
struct PackState {
    acker: lapin::Acker,
    bus: AmqpBus,
    /// The broker's name of the queue it came from (a retry goes back there).
    queue: String,
    /// Routing key of its dead-letter queue on the dead exchange; `None` for transient
    /// queues, which have none (a dead-lettered message is dropped, as the broker would).
    dead_key: Option<String>,
    /// Attempts before this delivery (the broker's count for the whole pack).
    attempt: u32,
    unsettled: AtomicUsize,
    /// A message could not be put back or dead-lettered alone: requeue the whole pack.
    failed: AtomicBool,
}

/// Settles one message of a pack.
struct PackAcker(Arc<PackState>);

#[async_trait]
impl Acker for PackAcker {
    async fn settle(&self, how: Settle, message: &Message) -> Result<(), BusError> {
        let pack = &self.0;
        let how = match how {
            Settle::Retry if pack.attempt + 1 >= pack.bus.config.max_deliveries => {
                Settle::DeadLetter
            }
            how => how,
        };
        let result = match (how, &pack.dead_key) {
            (Settle::Ack, _) | (Settle::DeadLetter, None) => Ok(()),
            // Back into its queue alone, through the default exchange.
            (Settle::Retry, _) => {
                pack.bus
                    .publish_one("", &pack.queue, message, Some(pack.attempt + 1))
                    .await
            }
            (Settle::DeadLetter, Some(key)) => {
                pack.bus
                    .publish_one(&pack.bus.config.dead_exchange(), key, message, None)
                    .await
            }
        };
        if result.is_err() {
            pack.failed.store(true, Ordering::SeqCst);
        }
        if pack.unsettled.fetch_sub(1, Ordering::SeqCst) == 1 {
            let settled = if pack.failed.load(Ordering::SeqCst) {
                pack.acker
                    .nack(BasicNackOptions {
                        requeue: true,
                        ..BasicNackOptions::default()
                    })
                    .await
            } else {
                pack.acker.ack(BasicAckOptions::default()).await
            };
            settled.map_err(unavailable)?;
        }
        result
    }
}

struct AmqpAcker {
    acker: lapin::Acker,
    /// Its retry would exceed the delivery limit: dead-letter it instead.
    last_attempt: bool,
}

#[async_trait]
impl Acker for AmqpAcker {
    async fn settle(&self, how: Settle, _: &Message) -> Result<(), BusError> {
        let how = match how {
            Settle::Retry if self.last_attempt => Settle::DeadLetter,
            how => how,
        };
        match how {
            Settle::Ack => self.acker.ack(BasicAckOptions::default()).await,
            // Requeue: the quorum queue counts deliveries and dead-letters past the limit.
            Settle::Retry => {
                self.acker
                    .nack(BasicNackOptions {
                        requeue: true,
                        ..BasicNackOptions::default()
                    })
                    .await
            }
            Settle::DeadLetter => {
                self.acker
                    .reject(BasicRejectOptions { requeue: false })
                    .await
            }
        }
        .map(|_| ())
        .map_err(unavailable)
    }
}
