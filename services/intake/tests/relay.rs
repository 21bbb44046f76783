//! The outbox relay with a handoff, on PostgreSQL and the in-process bus: what the store's
//! writers hand over is published once each, and the relay's claims delete those rows.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use minyi_core::bus::{Bus, MemoryBus};
use minyi_core::event::new_event;
use minyi_core::store::{OutboxHandoff, PostgresStore, TicketStore};
use minyi_intake::relay::{Relay, RelayConfig};
use minyi_proto::events::TicketReceived;
use minyi_proto::events::event::Body;
use tokio::sync::{Notify, watch};

#[tokio::test]
async fn handed_over_events_are_published_once_and_their_rows_deleted() {
    let url = minyi_core::testing::fresh_database().await.unwrap();
    let handoff = Arc::new(OutboxHandoff::new(Duration::from_secs(30)));
    let store = Arc::new(
        PostgresStore::connect_with_handoff(&url, 4, Some(handoff.clone()))
            .await
            .unwrap(),
    );
    let bus = Arc::new(MemoryBus::default());
    let mut sub = bus.subscribe("probe", &["ticket.#"]).await.unwrap();
    let wake = Arc::new(Notify::new());
    let relay = Relay::new(
        store.clone(),
        bus.clone(),
        wake.clone(),
        RelayConfig::default(),
    )
    .with_handoff(handoff.clone());
    let (stop, stopped) = watch::channel(false);
    let running = tokio::spawn(relay.run(stopped));

    let mut sent = HashSet::new();
    for n in 0..200 {
        let t = minyi_core::testing::ticket_record(&format!("路灯不亮 {n}"), chrono::Utc::now());
        let event = new_event(
            t.id,
            t.received_at,
            Body::Received(TicketReceived::default()),
        );
        sent.insert(event.event_id);
        store.create_ticket(t, vec![event]).await.unwrap();
        wake.notify_one();
    }
    let mut got = HashSet::new();
    while got.len() < sent.len() {
        let d = tokio::time::timeout(Duration::from_secs(5), sub.next())
            .await
            .expect("every handed-over event is published")
            .unwrap();
        assert!(got.insert(d.message.event_id), "published twice");
        d.ack().await.unwrap();
    }
    assert_eq!(got, sent);
    // The relay's next claims delete the published rows.
    let mut left = store.outbox_len().await.unwrap();
    for _ in 0..50 {
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        left = store.outbox_len().await.unwrap();
    }
    assert_eq!(left, 0, "published rows are deleted");
    stop.send(true).unwrap();
    running.await.unwrap();
    // Nothing more was published (no claim picked a handed-over row).
    assert!(
        tokio::time::timeout(Duration::from_millis(300), sub.next())
            .await
            .is_err()
    );
}
