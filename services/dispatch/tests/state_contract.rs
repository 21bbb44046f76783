//! One contract, two adapters: the routing state in memory and in Redis; and its rebuild
//! from the ticket store after Redis lost it.

use chrono::{TimeZone, Utc};
use minyi_core::petition::{Channel, TicketStatus};
use minyi_core::store::{
    AuditRecord, CoHandler, DispatchRecord, DispatchState, MemoryStore, TicketRecord, TicketStore,
    Transition,
};
use minyi_dispatch::state::{
    Assignment, MemoryRoutingState, RedisRoutingState, RoutingState, rebuild_if_lost,
};
use uuid::Uuid;

fn ticket(lead: &str, co: &[&str], state: DispatchState) -> TicketRecord {
    let at = Utc.with_ymd_and_hms(2026, 11, 25, 2, 0, 0).unwrap();
    TicketRecord {
        id: Uuid::now_v7(),
        tracking_number: String::new(),
        status: state.ticket_status(),
        channel: Channel::Hotline,
        title: String::new(),
        text: "噪音".into(),
        anonymous: true,
        caller_name: None,
        caller_phone: None,
        caller_id_number: None,
        address: String::new(),
        latitude: None,
        longitude: None,
        event_time: None,
        attachment_urls: vec![],
        idempotency_key: None,
        received_at: at,
        received_by: "agent".into(),
        follow_ups: vec![],
        routing: None,
        dispatch: Some(DispatchRecord {
            state,
            lead_unit: lead.into(),
            co_handlers: co
                .iter()
                .map(|u| CoHandler {
                    unit: (*u).into(),
                    whistled: false,
                    added_at: at,
                    accepted_at: None,
                })
                .collect(),
            manual: false,
            dispatched_by: String::new(),
            dispatched_at: at,
            accept_by: None,
            complete_by: None,
            deadline_estimated: false,
            accepted_at: None,
            completed_at: None,
            reply: String::new(),
            returns: vec![],
            progress: vec![],
            extensions: vec![],
            callback: None,
            redo_count: 0,
            no_return: false,
            arbitration: None,
            alerts: vec![],
            pauses: vec![],
        }),
        version: 1,
    }
}

async fn contract(s: &dyn RoutingState) {
    assert!(!s.is_built().await.unwrap());
    let a = ticket("ST-GM", &["DEP-ZJ"], DispatchState::Dispatched);
    let b = ticket("ST-GM", &[], DispatchState::Accepted);
    s.record(&a).await.unwrap();
    s.record(&b).await.unwrap();
    s.record(&b).await.unwrap(); // idempotent
    let loads = s.loads().await.unwrap();
    assert_eq!(loads.get("ST-GM"), Some(&2));
    assert_eq!(loads.get("DEP-ZJ"), Some(&1));
    assert_eq!(
        s.assignment(a.id).await.unwrap(),
        Some(Assignment {
            lead_unit: "ST-GM".into(),
            units: vec!["ST-GM".into(), "DEP-ZJ".into()],
            state: "dispatched".into(),
            open: true,
        })
    );
    // Re-dispatched elsewhere, then completed: the loads follow.
    let mut moved = a.clone();
    moved.dispatch.as_mut().unwrap().lead_unit = "ST-FH".into();
    moved.dispatch.as_mut().unwrap().co_handlers.clear();
    s.record(&moved).await.unwrap();
    let loads = s.loads().await.unwrap();
    assert_eq!(loads.get("ST-GM"), Some(&1));
    assert_eq!(loads.get("DEP-ZJ"), None);
    assert_eq!(loads.get("ST-FH"), Some(&1));
    let mut done = b.clone();
    done.dispatch.as_mut().unwrap().state = DispatchState::Completed;
    s.record(&done).await.unwrap();
    assert_eq!(s.loads().await.unwrap().get("ST-GM"), None);
    assert!(!s.assignment(b.id).await.unwrap().unwrap().open);
    assert_eq!(s.assignment(Uuid::now_v7()).await.unwrap(), None);
    // Cursors.
    assert_eq!(s.cursor("ST-GM/h1").await.unwrap(), 0);
    s.set_cursor("ST-GM/h1", 42).await.unwrap();
    assert_eq!(s.cursor("ST-GM/h1").await.unwrap(), 42);
    s.mark_built().await.unwrap();
    assert!(s.is_built().await.unwrap());
}

#[tokio::test]
async fn memory_routing_state_keeps_the_contract() {
    contract(&MemoryRoutingState::default()).await;
}

#[tokio::test]
async fn redis_routing_state_keeps_the_contract() {
    let prefix = minyi_core::testing::random_name();
    let s = RedisRoutingState::connect(&minyi_core::testing::redis_url(), &prefix)
        .await
        .unwrap();
    contract(&s).await;
    forget(&prefix).await;
}

/// What FLUSHALL does to this test's keys (without touching other tests' keys).
async fn forget(prefix: &str) {
    let client = redis::Client::open(minyi_core::testing::redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    if !keys.is_empty() {
        redis::cmd("DEL")
            .arg(keys)
            .query_async::<()>(&mut conn)
            .await
            .unwrap();
    }
}

async fn dispatch_into(store: &MemoryStore, t: TicketRecord) {
    let d = t.dispatch.clone().unwrap();
    let t = store
        .create_ticket(
            TicketRecord {
                dispatch: None,
                version: 0,
                status: TicketStatus::Routed,
                ..t
            },
            vec![],
        )
        .await
        .unwrap()
        .0;
    store
        .transition(Transition {
            ticket_id: t.id,
            expected_version: 0,
            status: d.state.ticket_status(),
            dispatch: d,
            routing: None,
            audit: AuditRecord {
                ticket_id: t.id,
                at: t.received_at,
                actor: "test".into(),
                role: "system".into(),
                unit: String::new(),
                action: "dispatched".into(),
                from_state: "routed".into(),
                to_state: "dispatched".into(),
                reason: String::new(),
                allowed: true,
            },
            inbox: vec![],
            events: vec![],
            dedupe: None,
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn lost_redis_state_is_rebuilt_from_the_store() {
    let store = MemoryStore::ephemeral();
    for i in 0..7 {
        let state = if i < 5 {
            DispatchState::Accepted
        } else {
            DispatchState::Archived
        };
        dispatch_into(&store, ticket("ST-GM", &["DEP-CG"], state)).await;
    }
    let prefix = minyi_core::testing::random_name();
    let s = RedisRoutingState::connect(&minyi_core::testing::redis_url(), &prefix)
        .await
        .unwrap();
    assert_eq!(rebuild_if_lost(&s, &store).await.unwrap(), Some(7));
    assert_eq!(rebuild_if_lost(&s, &store).await.unwrap(), None);
    let before = s.loads().await.unwrap();
    assert_eq!(before.get("ST-GM"), Some(&5));
    forget(&prefix).await;
    assert!(s.loads().await.unwrap().is_empty());
    assert_eq!(rebuild_if_lost(&s, &store).await.unwrap(), Some(7));
    assert_eq!(s.loads().await.unwrap(), before);
    forget(&prefix).await;
}
