//! One contract, two adapters: the in-process bus and RabbitMQ must behave the same.

use std::time::Duration;

use minyi_core::bus::{AmqpBus, Bus, MemoryBus, Message};
use uuid::Uuid;

fn msg(key: &str, n: u8) -> Message {
    Message {
        event_id: Uuid::now_v7(),
        routing_key: key.into(),
        payload: vec![n],
        headers: [("traceparent".to_owned(), format!("00-{n}"))].into(),
    }
}

async fn next(sub: &mut Box<dyn minyi_core::bus::Subscription>) -> minyi_core::bus::Delivery {
    tokio::time::timeout(Duration::from_secs(10), sub.next())
        .await
        .expect("a delivery within 10 s")
        .expect("a delivery")
}

async fn nothing_within(sub: &mut Box<dyn minyi_core::bus::Subscription>, ms: u64) {
    let r = tokio::time::timeout(Duration::from_millis(ms), sub.next()).await;
    assert!(
        r.is_err(),
        "expected no delivery, got {:?}",
        r.map(|d| d.map(|d| d.message.payload))
    );
}

async fn contract(bus: &dyn Bus, max_deliveries: u32) {
    // Routing by key, to every bound queue; ordering within a queue; headers travel.
    let mut a = bus.subscribe("a", &["ticket.received"]).await.unwrap();
    let mut b = bus.subscribe("b", &["ticket.*"]).await.unwrap();
    let m1 = msg("ticket.received", 1);
    let m2 = msg("ticket.routed", 2);
    bus.publish(&[m1.clone(), m2.clone()]).await.unwrap();
    let d = next(&mut a).await;
    assert_eq!(d.message, m1);
    d.ack().await.unwrap();
    nothing_within(&mut a, 300).await;
    let d1 = next(&mut b).await;
    let d2 = next(&mut b).await;
    assert_eq!((d1.message.payload[0], d2.message.payload[0]), (1, 2));
    assert_eq!(d1.message.event_id, m1.event_id);
    d1.ack().await.unwrap();
    d2.ack().await.unwrap();

    // Retry redelivers; past the delivery limit the message is dead-lettered, never dropped.
    bus.publish(&[msg("ticket.received", 3)]).await.unwrap();
    for attempt in 0..max_deliveries {
        let d = next(&mut a).await;
        assert_eq!(d.message.payload, vec![3], "attempt {attempt}");
        d.retry().await.unwrap();
    }
    nothing_within(&mut a, 500).await;
    assert_eq!(bus.dead_letter_depth("a").await.unwrap(), 1);

    // Poison goes straight to the dead-letter queue.
    bus.publish(&[msg("ticket.received", 4)]).await.unwrap();
    next(&mut a).await.dead_letter().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(bus.dead_letter_depth("a").await.unwrap(), 2);

    // A consumer that dies with unsettled deliveries: they go to the next consumer.
    bus.publish(&[msg("ticket.received", 5)]).await.unwrap();
    let d = next(&mut a).await;
    assert_eq!(d.message.payload, vec![5]);
    drop(d);
    drop(a);
    let mut a2 = bus.subscribe("a", &["ticket.received"]).await.unwrap();
    let d = next(&mut a2).await;
    assert_eq!(d.message.payload, vec![5]);
    d.ack().await.unwrap();

    // Queue depth counts ready messages (a pack counts once: published apart here).
    drop(a2);
    tokio::time::sleep(Duration::from_millis(300)).await;
    bus.publish(&[msg("ticket.received", 6)]).await.unwrap();
    bus.publish(&[msg("ticket.received", 7)]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(bus.queue_depth("a").await.unwrap(), 2);

    // Transient subscriptions: each one sees every message (one per replica), a durable
    // consumer of the same keys is unaffected, and nothing is kept once they are gone.
    let mut t1 = bus
        .subscribe_transient("view", &["ticket.*"])
        .await
        .unwrap();
    let mut t2 = bus
        .subscribe_transient("view", &["ticket.*"])
        .await
        .unwrap();
    bus.publish(&[msg("ticket.routed", 8)]).await.unwrap();
    for t in [&mut t1, &mut t2] {
        let d = next(t).await;
        assert_eq!(d.message.payload, vec![8]);
        d.ack().await.unwrap();
        assert_eq!(t.gaps(), 0);
    }
    drop(t1);
    drop(t2);
    tokio::time::sleep(Duration::from_millis(300)).await;
    bus.publish(&[msg("ticket.routed", 9)]).await.unwrap();
    let mut t3 = bus
        .subscribe_transient("view", &["ticket.*"])
        .await
        .unwrap();
    nothing_within(&mut t3, 500).await;

    several_of_one_key(bus, max_deliveries).await;
}

/// Several messages of one routing key in one publish (RabbitMQ carries them as one broker
/// message): each is a delivery of its own, in order, with its own id and headers, settled on
/// its own; unsettled ones come again after the consumer is gone.
async fn several_of_one_key(bus: &dyn Bus, max_deliveries: u32) {
    let mut p = bus.subscribe("p", &["ticket.received"]).await.unwrap();
    let sent: Vec<Message> = (10..15).map(|n| msg("ticket.received", n)).collect();
    bus.publish(&sent).await.unwrap();
    let mut got = Vec::new();
    for _ in 0..sent.len() {
        got.push(next(&mut p).await);
    }
    assert_eq!(
        got.iter().map(|d| d.message.clone()).collect::<Vec<_>>(),
        sent
    );
    let mut got = got.into_iter();
    let (d10, d11, d12, d13, d14) = (
        got.next().unwrap(),
        got.next().unwrap(),
        got.next().unwrap(),
        got.next().unwrap(),
        got.next().unwrap(),
    );
    d10.ack().await.unwrap();
    d11.retry().await.unwrap();
    d12.ack().await.unwrap();
    d13.dead_letter().await.unwrap();
    d14.ack().await.unwrap();
    // Only the retried one comes again, until the delivery limit dead-letters it.
    for attempt in 1..max_deliveries {
        let d = next(&mut p).await;
        assert_eq!(d.message, sent[1], "attempt {attempt}");
        d.retry().await.unwrap();
    }
    nothing_within(&mut p, 500).await;
    assert_eq!(bus.dead_letter_depth("p").await.unwrap(), 2);

    let sent: Vec<Message> = (20..23).map(|n| msg("ticket.received", n)).collect();
    bus.publish(&sent).await.unwrap();
    let first = next(&mut p).await;
    assert_eq!(first.message, sent[0]);
    first.ack().await.unwrap();
    let _unsettled = (next(&mut p).await, next(&mut p).await);
    drop(_unsettled);
    drop(p);
    let mut p2 = bus.subscribe("p", &["ticket.received"]).await.unwrap();
    // The two unsettled ones come again (the acked one may too: consumers dedupe).
    let mut again = std::collections::BTreeSet::new();
    while again.len() < 2 {
        let d = next(&mut p2).await;
        if d.message != sent[0] {
            again.insert(d.message.payload[0]);
        }
        d.ack().await.unwrap();
    }
    assert_eq!(again, [21, 22].into());
    nothing_within(&mut p2, 500).await;
}

#[tokio::test]
async fn memory_bus_keeps_the_contract() {
    contract(&MemoryBus::new(3), 3).await;
}

#[tokio::test]
async fn rabbitmq_bus_keeps_the_contract() {
    let mut config = minyi_core::testing::amqp_config();
    config.max_deliveries = 3;
    let bus = AmqpBus::connect(config).await.unwrap();
    contract(&bus, 3).await;
}
