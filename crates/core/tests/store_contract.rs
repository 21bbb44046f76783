//! One contract, every adapter: PostgreSQL, SQLite (the embedded mode's store) and the memory
//! store (with and without its journal) must behave the same.

use std::time::Duration;

use chrono::{TimeZone, Utc};
use minyi_core::bus::Message;
use minyi_core::petition::{Channel, TicketStatus};
use minyi_core::store::{
    AUDIT_BYTES_IN_VIEW, AUDIT_LINES_IN_VIEW, AuditPage, AuditRecord, CoHandler, DispatchRecord,
    DispatchState, FollowUpRecord, MemoryStore, PostgresStore, RoutingRecord, SqliteStore,
    StoreError, SuggestionRecord, TicketQuery, TicketRecord, TicketStore, TicketUpdate, Transition,
    TransitionOutcome,
};
use minyi_core::store::{Effect, EffectOutcome, OutboxHandoff};
use uuid::Uuid;

fn ticket(key: Option<&str>, minute: u32) -> TicketRecord {
    TicketRecord {
        id: Uuid::now_v7(),
        tracking_number: String::new(),
        status: TicketStatus::Received,
        channel: Channel::Hotline,
        title: "噪音扰民".into(),
        text: "楼下商铺夜间噪音很大".into(),
        anonymous: false,
        caller_name: Some("k1:sealed-name".into()),
        caller_phone: Some("k1:sealed-phone".into()),
        caller_id_number: None,
        address: "光明街道东周社区".into(),
        latitude: Some(22.75),
        longitude: Some(113.93),
        event_time: None,
        attachment_urls: vec!["https://example.org/a.jpg".into()],
        idempotency_key: key.map(str::to_owned),
        received_at: Utc.with_ymd_and_hms(2026, 11, 25, 2, minute, 0).unwrap(),
        received_by: "agent-1".into(),
        follow_ups: vec![],
        routing: None,
        dispatch: None,
        version: 0,
    }
}

fn event(key: &str) -> Message {
    Message {
        event_id: Uuid::now_v7(),
        routing_key: key.into(),
        payload: vec![1, 2, 3],
        headers: [("traceparent".to_owned(), "00-abc-def-01".to_owned())].into(),
    }
}

async fn contract(store: &dyn TicketStore) {
    // Create, with its event in the outbox.
    let (t1, created) = store
        .create_ticket(ticket(Some("call-1"), 1), vec![event("ticket.received")])
        .await
        .unwrap();
    assert!(created);
    assert!(
        t1.tracking_number.starts_with("MY-20261125-"),
        "{}",
        t1.tracking_number
    );
    // The same idempotency key returns the same ticket and writes nothing.
    let (again, created) = store
        .create_ticket(ticket(Some("call-1"), 2), vec![event("ticket.received")])
        .await
        .unwrap();
    assert!(!created);
    assert_eq!(again.id, t1.id);
    assert_eq!(again.tracking_number, t1.tracking_number);
    assert_eq!(store.outbox_len().await.unwrap(), 1);
    assert_eq!(store.count_tickets().await.unwrap(), 1);

    // Get by id and by tracking number; the record round-trips.
    let by_id = store.get_ticket(&t1.id.to_string()).await.unwrap();
    assert_eq!(by_id, t1);
    let by_tn = store.get_ticket(&t1.tracking_number).await.unwrap();
    assert_eq!(by_tn.id, t1.id);
    assert!(matches!(
        store.get_ticket("MY-00000000-000000").await,
        Err(StoreError::NotFound(_))
    ));

    // Listing: newest first, keyset pages, filters.
    let mut ids = vec![t1.id];
    for m in 3..8 {
        let mut t = ticket(None, m);
        if m == 5 {
            t.channel = Channel::App;
        }
        ids.push(store.create_ticket(t, vec![]).await.unwrap().0.id);
    }
    // Many at once: the ones that exist, unknown ids left out.
    let mut many = store
        .get_tickets(&[ids[2], Uuid::new_v4(), ids[0]])
        .await
        .unwrap();
    many.sort_by_key(|t| t.id == ids[2]);
    assert_eq!(many.len(), 2);
    assert_eq!(many[0], by_id);
    assert_eq!(many[1].id, ids[2]);
    assert!(store.get_tickets(&[]).await.unwrap().is_empty());
    let page1 = store
        .list_tickets(&TicketQuery {
            limit: 4,
            ..TicketQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(page1.len(), 4);
    let last = page1.last().unwrap();
    let page2 = store
        .list_tickets(&TicketQuery {
            limit: 4,
            after: Some((last.received_at, last.id)),
            ..TicketQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(page2.len(), 2);
    let listed: Vec<Uuid> = page1.iter().chain(&page2).map(|t| t.id).collect();
    let mut expected = ids.clone();
    expected.reverse();
    assert_eq!(listed, expected);
    // Oldest first, by pages too.
    let oldest = |after| TicketQuery {
        limit: 4,
        after,
        oldest_first: true,
        ..TicketQuery::default()
    };
    let page1 = store.list_tickets(&oldest(None)).await.unwrap();
    let last = page1.last().unwrap();
    let page2 = store
        .list_tickets(&oldest(Some((last.received_at, last.id))))
        .await
        .unwrap();
    let listed: Vec<Uuid> = page1.iter().chain(&page2).map(|t| t.id).collect();
    assert_eq!(listed, ids);
    let apps = store
        .list_tickets(&TicketQuery {
            limit: 10,
            channel: Some(Channel::App),
            ..TicketQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(apps.len(), 1);
    let window = store
        .list_tickets(&TicketQuery {
            limit: 10,
            received_after: Some(Utc.with_ymd_and_hms(2026, 11, 25, 2, 4, 0).unwrap()),
            received_before: Some(Utc.with_ymd_and_hms(2026, 11, 25, 2, 6, 0).unwrap()),
            ..TicketQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(window.len(), 2);

    // Follow-ups append, with their events.
    let f = FollowUpRecord {
        text: "补充：每晚十点后".into(),
        author: "agent-1".into(),
        at: Utc.with_ymd_and_hms(2026, 11, 25, 3, 0, 0).unwrap(),
    };
    let t = store
        .add_follow_up(t1.id, f.clone(), vec![event("ticket.follow_up_added")])
        .await
        .unwrap();
    assert_eq!(t.follow_ups, vec![f]);
    assert_eq!(store.outbox_len().await.unwrap(), 2);
    assert!(matches!(
        store
            .add_follow_up(Uuid::now_v7(), t.follow_ups[0].clone(), vec![])
            .await,
        Err(StoreError::NotFound(_))
    ));

    // Outbox: claimed in order, leased, completed.
    let claimed = store
        .claim_outbox(10, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 2);
    assert_eq!(claimed[0].message.routing_key, "ticket.received");
    assert_eq!(
        claimed[0]
            .message
            .headers
            .get("traceparent")
            .map(String::as_str),
        Some("00-abc-def-01")
    );
    assert!(claimed[0].seq < claimed[1].seq);
    // Leased entries are not handed out twice...
    assert!(
        store
            .claim_outbox(10, Duration::from_secs(60))
            .await
            .unwrap()
            .is_empty()
    );
    store.complete_outbox(&[claimed[0].seq]).await.unwrap();
    assert_eq!(store.outbox_len().await.unwrap(), 1);
    // ...until their lease runs out (a relay that died).
    let short = store.claim_outbox(10, Duration::from_millis(1)).await;
    assert!(short.unwrap().is_empty(), "still leased for 60 s");

    // Consumer dedupe.
    let e = Uuid::now_v7();
    assert!(store.mark_processed("classification", e).await.unwrap());
    assert!(!store.mark_processed("classification", e).await.unwrap());
    assert!(store.mark_processed("dispatch", e).await.unwrap());

    // Effects apply once, with their events; the routing round-trips.
    let routing = RoutingRecord {
        decision: "auto".into(),
        item_code: "CG-01-001".into(),
        lead_unit: "ST-GM".into(),
        community: "CM-GM-DONGZHOU".into(),
        confidence: 0.99,
        suggestions: vec![SuggestionRecord {
            item_code: "CG-01-001".into(),
            item_name: "噪音".into(),
            path: vec!["a".into(), "b".into(), "c".into()],
            unit: "ST-GM".into(),
            confidence: 0.99,
        }],
        ..RoutingRecord::default()
    };
    let before = store.outbox_len().await.unwrap();
    let effect = Uuid::now_v7();
    let update = || TicketUpdate {
        status: Some(TicketStatus::Dispatched),
        routing: Some(routing.clone()),
    };
    assert!(
        store
            .apply_effect(
                "classification",
                effect,
                t1.id,
                update(),
                vec![event("ticket.routed")]
            )
            .await
            .unwrap()
    );
    assert!(
        !store
            .apply_effect(
                "classification",
                effect,
                t1.id,
                update(),
                vec![event("ticket.routed")]
            )
            .await
            .unwrap()
    );
    assert_eq!(store.outbox_len().await.unwrap(), before + 1);
    let routed = store.get_ticket(&t1.id.to_string()).await.unwrap();
    assert_eq!(routed.status, TicketStatus::Dispatched);
    assert_eq!(routed.version, 1);
    assert_eq!(routed.routing.as_ref(), Some(&routing));
    let near_ids = store
        .duplicate_candidate_ids(
            "CM-GM-DONGZHOU",
            Utc.with_ymd_and_hms(2026, 11, 24, 0, 0, 0).unwrap(),
            10,
        )
        .await
        .unwrap();
    assert_eq!(near_ids, vec![(t1.id, t1.received_at)]);
    assert!(
        store
            .duplicate_candidate_ids(
                "CM-GM-DONGZHOU",
                Utc.with_ymd_and_hms(2026, 11, 26, 0, 0, 0).unwrap(),
                10,
            )
            .await
            .unwrap()
            .is_empty()
    );
    // An effect on a ticket that does not exist fails, and keeps failing when redelivered (it
    // is not marked as done).
    let (ghost_event, ghost) = (Uuid::now_v7(), Uuid::now_v7());
    for _ in 0..2 {
        assert!(matches!(
            store
                .apply_effect("x", ghost_event, ghost, TicketUpdate::default(), vec![])
                .await,
            Err(StoreError::NotFound(_))
        ));
    }
}

/// Several effects in one call: each applied once, with its events in order; a redelivered
/// one changes nothing; one on a missing ticket fails alone and is not marked done.
async fn batched_effects(store: &dyn TicketStore) {
    let mut ids = Vec::new();
    for minute in 0..3 {
        let (t, _) = store
            .create_ticket(ticket(None, minute), vec![])
            .await
            .unwrap();
        ids.push(t.id);
    }
    let routed = |n: u32| TicketUpdate {
        status: Some(TicketStatus::NeedsDispatcher),
        routing: Some(RoutingRecord {
            community: format!("CM-{n}"),
            ..RoutingRecord::default()
        }),
    };
    // The first ticket's effect was applied before (a redelivery in the batch).
    let before = Uuid::now_v7();
    assert!(
        store
            .apply_effect(
                "classification",
                before,
                ids[0],
                routed(0),
                vec![event("ticket.needs_dispatcher")]
            )
            .await
            .unwrap()
    );
    let batch = vec![
        Effect {
            event_id: before,
            ticket_id: ids[0],
            update: routed(9),
            events: vec![event("ticket.needs_dispatcher")],
        },
        Effect {
            event_id: Uuid::now_v7(),
            ticket_id: ids[1],
            update: routed(1),
            events: vec![event("ticket.routed"), event("ticket.duplicate_linked")],
        },
        Effect {
            event_id: Uuid::now_v7(),
            ticket_id: Uuid::now_v7(),
            update: routed(7),
            events: vec![event("ticket.routed")],
        },
        Effect {
            event_id: Uuid::now_v7(),
            ticket_id: ids[2],
            update: TicketUpdate::default(),
            events: vec![],
        },
    ];
    let outbox = store.outbox_len().await.unwrap();
    let outcomes = store
        .apply_effects("classification", batch.clone())
        .await
        .unwrap();
    assert_eq!(
        outcomes,
        [
            EffectOutcome::AlreadyApplied,
            EffectOutcome::Applied,
            EffectOutcome::NotFound,
            EffectOutcome::Applied
        ]
    );
    assert_eq!(store.outbox_len().await.unwrap(), outbox + 2);
    let first = store.get_ticket(&ids[0].to_string()).await.unwrap();
    assert_eq!(
        first.routing.unwrap().community,
        "CM-0",
        "applied once, not twice"
    );
    assert_eq!(first.version, 1);
    let second = store.get_ticket(&ids[1].to_string()).await.unwrap();
    assert_eq!(second.status, TicketStatus::NeedsDispatcher);
    assert_eq!(second.routing.unwrap().community, "CM-1");
    assert_eq!(second.version, 1);
    let third = store.get_ticket(&ids[2].to_string()).await.unwrap();
    assert_eq!((third.status, third.version), (TicketStatus::Received, 1));
    // The second ticket's two events, in order.
    let claimed = store
        .claim_outbox(100, Duration::from_secs(60))
        .await
        .unwrap();
    let keys: Vec<&str> = claimed
        .iter()
        .map(|e| e.message.routing_key.as_str())
        .collect();
    assert_eq!(
        keys,
        [
            "ticket.needs_dispatcher",
            "ticket.routed",
            "ticket.duplicate_linked"
        ]
    );
    // Redelivered whole: nothing changes; the missing ticket still fails.
    let again = store.apply_effects("classification", batch).await.unwrap();
    assert_eq!(
        again,
        [
            EffectOutcome::AlreadyApplied,
            EffectOutcome::AlreadyApplied,
            EffectOutcome::NotFound,
            EffectOutcome::AlreadyApplied
        ]
    );
    assert_eq!(store.outbox_len().await.unwrap(), outbox + 2);
}

/// A relay removes what it published with its next claim; a failed claim removes nothing.
async fn published_entries_go_with_the_next_claim(store: &dyn TicketStore) {
    for minute in 0..2 {
        store
            .create_ticket(ticket(None, minute), vec![event("ticket.received")])
            .await
            .unwrap();
    }
    let lease = Duration::from_secs(60);
    let first = store.claim_outbox(1, lease).await.unwrap();
    assert_eq!(first.len(), 1);
    let second = store
        .complete_and_claim_outbox(&[first[0].seq], 10, lease)
        .await
        .unwrap();
    assert_eq!(second.len(), 1);
    assert!(second[0].seq > first[0].seq);
    assert_eq!(store.outbox_len().await.unwrap(), 1);
    assert!(
        store
            .complete_and_claim_outbox(&[second[0].seq], 10, lease)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.outbox_len().await.unwrap(), 0);
}

fn dispatched(lead: &str, co: &[&str]) -> DispatchRecord {
    let at = Utc.with_ymd_and_hms(2026, 11, 25, 3, 0, 0).unwrap();
    DispatchRecord {
        state: DispatchState::Dispatched,
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
        accept_by: Some(at + chrono::Duration::hours(2)),
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
    }
}

fn audit(ticket_id: Uuid, action: &str, allowed: bool) -> AuditRecord {
    AuditRecord {
        ticket_id,
        at: Utc.with_ymd_and_hms(2026, 11, 25, 3, 0, 0).unwrap(),
        actor: "dispatch".into(),
        role: "system".into(),
        unit: String::new(),
        action: action.into(),
        from_state: "routed".into(),
        to_state: "dispatched".into(),
        reason: "auto".into(),
        allowed,
    }
}

/// Transitions: optimistic concurrency, exactly-once for consumers, audit, inbox feeds.
async fn dispatch_contract(store: &dyn TicketStore) {
    let t = store
        .create_ticket(ticket(None, 1), vec![])
        .await
        .unwrap()
        .0;
    let other = store
        .create_ticket(ticket(None, 2), vec![])
        .await
        .unwrap()
        .0;
    assert_eq!(t.version, 0);
    let effect = Uuid::now_v7();
    let transition =
        |version: i64, record: DispatchRecord, dedupe: Option<(String, Uuid)>| Transition {
            ticket_id: t.id,
            expected_version: version,
            status: record.state.ticket_status(),
            dispatch: record,
            routing: None,
            audit: audit(t.id, "dispatch", true),
            inbox: vec![
                ("ST-GM".into(), "dispatched".into()),
                ("DEP-ZJ".into(), "co_handler".into()),
            ],
            events: vec![event("ticket.dispatched")],
            dedupe,
        };
    let before = store.outbox_len().await.unwrap();
    let first = store
        .transition(transition(
            0,
            dispatched("ST-GM", &["DEP-ZJ"]),
            Some(("dispatch".into(), effect)),
        ))
        .await
        .unwrap();
    assert_eq!(first, TransitionOutcome::Applied { version: 1 });
    // The same event again: nothing happens.
    assert_eq!(
        store
            .transition(transition(
                1,
                dispatched("ST-GM", &["DEP-ZJ"]),
                Some(("dispatch".into(), effect)),
            ))
            .await
            .unwrap(),
        TransitionOutcome::AlreadyApplied
    );
    // A stale version: refused, nothing written.
    assert_eq!(
        store
            .transition(transition(0, dispatched("ST-XX", &[]), None))
            .await
            .unwrap(),
        TransitionOutcome::Conflict { current_version: 1 }
    );
    assert_eq!(store.outbox_len().await.unwrap(), before + 1);
    let stored = store.get_ticket(&t.id.to_string()).await.unwrap();
    assert_eq!(stored.version, 1);
    assert_eq!(stored.status, TicketStatus::Dispatched);
    assert_eq!(stored.dispatch, Some(dispatched("ST-GM", &["DEP-ZJ"])));

    let mut accepted = dispatched("ST-GM", &["DEP-ZJ"]);
    accepted.state = DispatchState::Accepted;
    assert_eq!(
        store
            .transition(Transition {
                inbox: vec![],
                ..transition(1, accepted, None)
            })
            .await
            .unwrap(),
        TransitionOutcome::Applied { version: 2 }
    );
    assert_eq!(
        store.get_ticket(&t.id.to_string()).await.unwrap().status,
        TicketStatus::Accepted
    );
    store
        .append_audit(audit(t.id, "complete", false))
        .await
        .unwrap();
    let trail = store.audit_trail(t.id).await.unwrap();
    assert_eq!(trail.len(), 3);
    assert_eq!(trail[2].action, "complete");
    assert!(!trail[2].allowed);
    assert!(store.audit_trail(other.id).await.unwrap().is_empty());
    for i in 0..4 {
        store
            .append_audit(audit(t.id, &format!("read-{i}"), false))
            .await
            .unwrap();
    }
    // Pages of the trail (7 lines): the last lines, a stretch from a line, past the end.
    let actions = |p: &AuditPage| {
        p.entries
            .iter()
            .map(|a| a.action.clone())
            .collect::<Vec<_>>()
    };
    let last = store.audit_page(t.id, None, 3).await.unwrap();
    assert_eq!((last.first, last.total), (4, 7));
    assert_eq!(actions(&last), ["read-1", "read-2", "read-3"]);
    let middle = store.audit_page(t.id, Some(2), 2).await.unwrap();
    assert_eq!((middle.first, middle.total), (2, 7));
    assert_eq!(actions(&middle), ["complete", "read-0"]);
    let whole = store.audit_page(t.id, None, 100).await.unwrap();
    assert_eq!(whole.first, 0);
    assert_eq!(whole.entries, store.audit_trail(t.id).await.unwrap());
    let past = store.audit_page(t.id, Some(9), 5).await.unwrap();
    assert_eq!((past.first, past.total, past.entries.len()), (7, 7, 0));
    assert_eq!(
        store.audit_page(other.id, None, 5).await.unwrap(),
        AuditPage::default()
    );

    // Inbox feeds are per unit and resume from a cursor.
    let gm = store.inbox("ST-GM", 0, 10).await.unwrap();
    assert_eq!(gm.len(), 1);
    assert_eq!(gm[0].ticket_id, t.id);
    assert_eq!(gm[0].kind, "dispatched");
    assert!(
        store
            .inbox("ST-GM", gm[0].seq, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.inbox("DEP-ZJ", 0, 10).await.unwrap().len(), 1);
    assert!(store.inbox("ST-XX", 0, 10).await.unwrap().is_empty());
    store
        .transition(Transition {
            ticket_id: other.id,
            audit: audit(other.id, "dispatch", true),
            ..transition(0, dispatched("ST-GM", &[]), None)
        })
        .await
        .unwrap();
    let next = store.inbox("ST-GM", gm[0].seq, 10).await.unwrap();
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].ticket_id, other.id);
    assert!(next[0].seq > gm[0].seq);

    // "My tickets": lead or co-handler.
    let mine = |unit: &str| TicketQuery {
        unit: Some(unit.into()),
        limit: 10,
        ..TicketQuery::default()
    };
    assert_eq!(store.list_tickets(&mine("ST-GM")).await.unwrap().len(), 2);
    let zj = store.list_tickets(&mine("DEP-ZJ")).await.unwrap();
    assert_eq!(zj.iter().map(|t| t.id).collect::<Vec<_>>(), vec![t.id]);
    assert!(store.list_tickets(&mine("ST-XX")).await.unwrap().is_empty());
    assert!(matches!(
        store
            .transition(Transition {
                ticket_id: Uuid::now_v7(),
                ..transition(0, dispatched("ST-GM", &[]), None)
            })
            .await,
        Err(StoreError::NotFound(_))
    ));
}

/// Several tickets' transitions in one call: each applies or not on its own, and the applied
/// ones write what a single transition writes.
async fn batched_transitions(store: &dyn TicketStore) {
    let mut ids = Vec::new();
    for minute in 1..=4 {
        ids.push(
            store
                .create_ticket(ticket(None, minute), vec![])
                .await
                .unwrap()
                .0
                .id,
        );
    }
    let (a, b, c, d) = (ids[0], ids[1], ids[2], ids[3]);
    let tr = |id: Uuid, version: i64, lead: &str, co: &[&str], dedupe: Option<Uuid>| {
        let record = dispatched(lead, co);
        Transition {
            ticket_id: id,
            expected_version: version,
            status: record.state.ticket_status(),
            inbox: record
                .units()
                .map(|u| (u.to_owned(), "dispatched".to_owned()))
                .collect(),
            dispatch: record,
            routing: None,
            audit: audit(id, "dispatch", true),
            events: vec![event("ticket.dispatched")],
            dedupe: dedupe.map(|e| ("dispatch".to_owned(), e)),
        }
    };
    let (ea, eb, ec, em) = (
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
    );
    // c's event was applied before: the batch brings it again.
    store
        .transition(tr(c, 0, "ST-C", &[], Some(ec)))
        .await
        .unwrap();
    let before = store.outbox_len().await.unwrap();
    let missing = Uuid::now_v7();
    let outcomes = store
        .transitions(vec![
            tr(a, 0, "ST-GM", &["DEP-ZJ"], Some(ea)),
            tr(b, 5, "ST-GM", &[], Some(eb)),
            tr(c, 1, "ST-C", &[], Some(ec)),
            tr(missing, 0, "ST-GM", &[], Some(em)),
            tr(d, 0, "ST-GM", &[], None),
        ])
        .await
        .unwrap();
    assert_eq!(
        outcomes,
        vec![
            TransitionOutcome::Applied { version: 1 },
            TransitionOutcome::Conflict { current_version: 0 },
            TransitionOutcome::AlreadyApplied,
            TransitionOutcome::NotFound,
            TransitionOutcome::Applied { version: 1 },
        ]
    );
    assert_eq!(store.outbox_len().await.unwrap(), before + 2);
    let get = |id: Uuid| async move { store.get_ticket(&id.to_string()).await.unwrap() };
    let stored = get(a).await;
    assert_eq!(
        (stored.version, stored.status),
        (1, TicketStatus::Dispatched)
    );
    assert_eq!(stored.dispatch, Some(dispatched("ST-GM", &["DEP-ZJ"])));
    assert_eq!(get(b).await.version, 0);
    assert_eq!(get(b).await.dispatch, None);
    assert_eq!(get(c).await.version, 1);
    assert_eq!(get(d).await.version, 1);
    for (id, lines) in [(a, 1), (b, 0), (c, 1), (d, 1)] {
        assert_eq!(store.audit_trail(id).await.unwrap().len(), lines);
    }
    // Inbox entries of the applied ones, in batch order.
    let gm: Vec<Uuid> = store
        .inbox("ST-GM", 0, 10)
        .await
        .unwrap()
        .iter()
        .map(|e| e.ticket_id)
        .collect();
    assert_eq!(gm, vec![a, d]);
    assert_eq!(store.inbox("DEP-ZJ", 0, 10).await.unwrap().len(), 1);
    assert_eq!(store.inbox("ST-C", 0, 10).await.unwrap().len(), 1);
    let mine = TicketQuery {
        unit: Some("DEP-ZJ".into()),
        limit: 10,
        ..TicketQuery::default()
    };
    assert_eq!(
        store
            .list_tickets(&mine)
            .await
            .unwrap()
            .iter()
            .map(|t| t.id)
            .collect::<Vec<_>>(),
        vec![a]
    );
    // What did not apply left no dedupe mark: its event applies when it comes again.
    assert!(store.mark_processed("dispatch", em).await.unwrap());
    assert!(!store.mark_processed("dispatch", ea).await.unwrap());
    assert_eq!(
        store
            .transitions(vec![tr(b, 0, "ST-GM", &[], Some(eb))])
            .await
            .unwrap(),
        vec![TransitionOutcome::Applied { version: 1 }]
    );
    // One ticket twice in a batch: in order, the second one is stale.
    assert_eq!(
        store
            .transitions(vec![
                tr(a, 1, "ST-GM", &[], None),
                tr(a, 1, "ST-GM", &[], None)
            ])
            .await
            .unwrap(),
        vec![
            TransitionOutcome::Applied { version: 2 },
            TransitionOutcome::Conflict { current_version: 2 }
        ]
    );
}

async fn expired_leases_are_reclaimed(store: &dyn TicketStore) {
    store
        .create_ticket(ticket(None, 1), vec![event("ticket.received")])
        .await
        .unwrap();
    let first = store
        .claim_outbox(10, Duration::from_millis(50))
        .await
        .unwrap();
    assert_eq!(first.len(), 1);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let second = store
        .claim_outbox(10, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].message.event_id, first[0].message.event_id);
}

/// What [`contract`] leaves behind, as a store reopened after it must show it.
async fn after_reopen(reopened: &dyn TicketStore) {
    assert_eq!(reopened.count_tickets().await.unwrap(), 6);
    // Two outbox entries were never completed: they are still there after the restart.
    assert_eq!(reopened.outbox_len().await.unwrap(), 2);
    let e = reopened
        .claim_outbox(10, Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(e[0].message.routing_key, "ticket.follow_up_added");
    assert_eq!(e[0].message.headers["traceparent"], "00-abc-def-01");
}

/// What [`dispatch_contract`] leaves behind: transitions, audit and inbox.
async fn dispatch_after_reopen(reopened: &dyn TicketStore) {
    let tickets = reopened
        .list_tickets(&TicketQuery {
            unit: Some("DEP-ZJ".into()),
            limit: 10,
            ..TicketQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(tickets.len(), 1);
    assert_eq!(tickets[0].version, 2);
    assert_eq!(reopened.audit_trail(tickets[0].id).await.unwrap().len(), 7);
    assert_eq!(reopened.inbox("ST-GM", 0, 10).await.unwrap().len(), 2);
}

/// Eight concurrent submits with one idempotency key make one ticket and one event.
async fn one_key_makes_one_ticket(store: std::sync::Arc<dyn TicketStore>) {
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            s.create_ticket(ticket(Some("same"), 1), vec![event("ticket.received")])
                .await
                .unwrap()
        }));
    }
    let mut ids = std::collections::HashSet::new();
    let mut created = 0;
    for t in tasks {
        let (t, c) = t.await.unwrap();
        ids.insert(t.id);
        created += usize::from(c);
    }
    assert_eq!(ids.len(), 1);
    assert_eq!(created, 1);
    assert_eq!(store.outbox_len().await.unwrap(), 1);
}

/// Many submits at once (a store may write them together): each gets its own answer, one
/// idempotency key still makes one ticket, tracking numbers stay unique, and every created
/// ticket's events are queued in order, none for a submit that lost its key.
async fn concurrent_submits_each_get_their_own_answer(store: std::sync::Arc<dyn TicketStore>) {
    let mut tasks = Vec::new();
    for n in 0..60u32 {
        let s = store.clone();
        let key = match n % 3 {
            0 => None,
            1 => Some(format!("own-{n}")),
            _ => Some("shared".to_owned()),
        };
        tasks.push(tokio::spawn(async move {
            let mut t = ticket(key.as_deref(), n % 60);
            t.text = format!("第{n}件");
            let events = vec![event("ticket.received"), event("ticket.noted")];
            let first = events[0].event_id;
            let answer = s.create_ticket(t.clone(), events).await.unwrap();
            (t, first, answer)
        }));
    }
    let mut created = Vec::new();
    let mut shared = std::collections::HashSet::new();
    for task in tasks {
        let (sent, first_event, (stored, was_created)) = task.await.unwrap();
        if sent.idempotency_key.as_deref() == Some("shared") {
            shared.insert(stored.id);
        } else {
            // Its own ticket, as sent, with a tracking number.
            assert!(was_created);
            assert_eq!(stored.id, sent.id);
            assert_eq!(stored.text, sent.text);
        }
        if was_created {
            assert!(!stored.tracking_number.is_empty());
            created.push((stored, first_event));
        }
    }
    assert_eq!(shared.len(), 1, "one ticket for the shared key");
    assert_eq!(created.len(), 41);
    let numbers: std::collections::HashSet<_> = created
        .iter()
        .map(|(t, _)| t.tracking_number.clone())
        .collect();
    assert_eq!(numbers.len(), created.len(), "tracking numbers are unique");
    for (t, _) in &created {
        let read = store.get_ticket(&t.tracking_number).await.unwrap();
        assert_eq!(read.id, t.id);
    }
    // Two events per created ticket, in order (seq order is the order of the claim).
    let queued = store
        .claim_outbox(1_000, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(queued.len(), 2 * created.len());
    for (_, first) in &created {
        let at = queued
            .iter()
            .position(|e| e.message.event_id == *first)
            .unwrap();
        assert_eq!(queued[at].message.routing_key, "ticket.received");
        assert_eq!(queued[at + 1].message.routing_key, "ticket.noted");
    }
}

/// What travels with a ticket: the newest lines, within the line and byte budgets.
#[tokio::test]
async fn a_view_holds_the_newest_audit_lines_that_fit() {
    let store = MemoryStore::ephemeral();
    let id = Uuid::new_v4();
    for i in 0..AUDIT_LINES_IN_VIEW + 50 {
        store
            .append_audit(audit(id, &format!("read-{i}"), false))
            .await
            .unwrap();
    }
    let view = AuditPage::newest(&store, id).await.unwrap();
    assert_eq!(view.total, AUDIT_LINES_IN_VIEW as u64 + 50);
    assert_eq!((view.first, view.entries.len()), (50, AUDIT_LINES_IN_VIEW));
    assert_eq!(view.entries[0].action, "read-50");

    // Long reasons: only as many of the newest lines as fit in the byte budget.
    let long = "长".repeat(20_000); // 60,000 bytes
    for i in 0..30 {
        let mut a = audit(id, &format!("note-{i}"), true);
        a.reason = long.clone();
        store.append_audit(a).await.unwrap();
    }
    let view = AuditPage::newest(&store, id).await.unwrap();
    let fit = AUDIT_BYTES_IN_VIEW / 60_100;
    assert_eq!(view.entries.len(), fit);
    assert_eq!(view.first + fit as u64, view.total);
    assert_eq!(view.entries.last().unwrap().action, "note-29");
    // A page from a line: its first lines that fit.
    let page = store.audit_page(id, Some(250), 100).await.unwrap().fit();
    assert_eq!(page.entries.len(), fit);
    assert_eq!(page.entries[0].action, "note-0");
    // One line always travels, however long.
    let mut huge = audit(id, "huge", true);
    huge.reason = "长".repeat(AUDIT_BYTES_IN_VIEW);
    store.append_audit(huge).await.unwrap();
    assert_eq!(
        AuditPage::newest(&store, id).await.unwrap().entries.len(),
        1
    );
}

#[tokio::test]
async fn memory_store_keeps_the_contract() {
    contract(&MemoryStore::ephemeral()).await;
    concurrent_submits_each_get_their_own_answer(std::sync::Arc::new(MemoryStore::ephemeral()))
        .await;
    batched_effects(&MemoryStore::ephemeral()).await;
    published_entries_go_with_the_next_claim(&MemoryStore::ephemeral()).await;
    dispatch_contract(&MemoryStore::ephemeral()).await;
    batched_transitions(&MemoryStore::ephemeral()).await;
    expired_leases_are_reclaimed(&MemoryStore::ephemeral()).await;
}

#[tokio::test]
async fn journaled_store_keeps_the_contract_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.jsonl");
    {
        let store = MemoryStore::open(&path).unwrap();
        contract(&store).await;
    }
    let reopened = MemoryStore::open(&path).unwrap();
    after_reopen(&reopened).await;
    // A torn last line (crash mid-write) is ignored.
    std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"{\"op\":\"crea"))
        .unwrap();
    assert_eq!(
        MemoryStore::open(&path)
            .unwrap()
            .count_tickets()
            .await
            .unwrap(),
        6
    );
    // Dispatch transitions, audit and inbox replay from the journal too.
    let path = dir.path().join("dispatch.jsonl");
    {
        dispatch_contract(&MemoryStore::open(&path).unwrap()).await;
    }
    dispatch_after_reopen(&MemoryStore::open(&path).unwrap()).await;
}

#[tokio::test]
async fn sqlite_store_keeps_the_contract_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("minyi.db");
    {
        let store = SqliteStore::open(&path).await.unwrap();
        contract(&store).await;
        store.close().await;
    }
    let reopened = SqliteStore::open(&path).await.unwrap();
    after_reopen(&reopened).await;
    // Tracking numbers continue after the restart instead of starting again.
    let (next, _) = reopened
        .create_ticket(ticket(None, 30), vec![])
        .await
        .unwrap();
    assert!(
        next.tracking_number.ends_with("-000007"),
        "{}",
        next.tracking_number
    );

    let path = dir.path().join("dispatch.db");
    {
        let store = SqliteStore::open(&path).await.unwrap();
        dispatch_contract(&store).await;
        store.close().await;
    }
    dispatch_after_reopen(&SqliteStore::open(&path).await.unwrap()).await;

    let dir = tempfile::tempdir().unwrap();
    expired_leases_are_reclaimed(&SqliteStore::open(&dir.path().join("l.db")).await.unwrap()).await;
    batched_effects(&SqliteStore::open(&dir.path().join("b.db")).await.unwrap()).await;
    batched_transitions(&SqliteStore::open(&dir.path().join("t.db")).await.unwrap()).await;
    published_entries_go_with_the_next_claim(
        &SqliteStore::open(&dir.path().join("o.db")).await.unwrap(),
    )
    .await;
}

#[tokio::test]
async fn sqlite_concurrent_submits_with_one_key_make_one_ticket() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("m.db")).await.unwrap();
    one_key_makes_one_ticket(std::sync::Arc::new(store)).await;
    let store = SqliteStore::open(&dir.path().join("n.db")).await.unwrap();
    concurrent_submits_each_get_their_own_answer(std::sync::Arc::new(store)).await;
}

/// An earlier version's journal moves into SQLite whole: tickets with their numbers, unpublished
/// events, consumer dedupe, audit and inbox.
#[tokio::test]
async fn a_journal_imports_into_sqlite_whole() {
    let dir = tempfile::tempdir().unwrap();
    let journal = MemoryStore::open(&dir.path().join("journal.jsonl")).unwrap();
    contract(&journal).await;
    dispatch_contract(&journal).await;
    let before = journal
        .list_tickets(&TicketQuery {
            limit: 100,
            ..TicketQuery::default()
        })
        .await
        .unwrap();
    let store = SqliteStore::open(&dir.path().join("minyi.db"))
        .await
        .unwrap();
    assert_eq!(
        store.import(journal.snapshot()).await.unwrap(),
        before.len() as u64
    );
    let after = store
        .list_tickets(&TicketQuery {
            limit: 100,
            ..TicketQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(after, before);
    assert_eq!(
        store.outbox_len().await.unwrap(),
        journal.outbox_len().await.unwrap()
    );
    for t in &before {
        assert_eq!(
            store.audit_trail(t.id).await.unwrap(),
            journal.audit_trail(t.id).await.unwrap()
        );
    }
    assert_eq!(
        store.inbox("ST-GM", 0, 10).await.unwrap(),
        journal.inbox("ST-GM", 0, 10).await.unwrap()
    );
    let zj = |s: &'static str| TicketQuery {
        unit: Some(s.into()),
        limit: 10,
        ..TicketQuery::default()
    };
    assert_eq!(
        store.list_tickets(&zj("DEP-ZJ")).await.unwrap(),
        journal.list_tickets(&zj("DEP-ZJ")).await.unwrap()
    );
    // Consumers' dedupe came along: a redelivered event is still recognised.
    let snapshot = journal.snapshot();
    let (consumer, event_id) = &snapshot.processed[0];
    assert!(!store.mark_processed(consumer, *event_id).await.unwrap());
    // Numbering continues after the imported tickets; a second import is refused.
    let (next, _) = store.create_ticket(ticket(None, 40), vec![]).await.unwrap();
    assert!(
        !before
            .iter()
            .any(|t| t.tracking_number == next.tracking_number)
    );
    assert!(store.import(journal.snapshot()).await.is_err());
}

#[tokio::test]
async fn postgres_store_keeps_the_contract() {
    let url = minyi_core::testing::fresh_database().await.unwrap();
    let store = PostgresStore::connect(&url, 4).await.unwrap();
    contract(&store).await;
    let url = minyi_core::testing::fresh_database().await.unwrap();
    batched_effects(&PostgresStore::connect(&url, 4).await.unwrap()).await;
    let url = minyi_core::testing::fresh_database().await.unwrap();
    published_entries_go_with_the_next_claim(&PostgresStore::connect(&url, 4).await.unwrap()).await;
    let url = minyi_core::testing::fresh_database().await.unwrap();
    dispatch_contract(&PostgresStore::connect(&url, 4).await.unwrap()).await;
    let url = minyi_core::testing::fresh_database().await.unwrap();
    batched_transitions(&PostgresStore::connect(&url, 4).await.unwrap()).await;
    let url = minyi_core::testing::fresh_database().await.unwrap();
    expired_leases_are_reclaimed(&PostgresStore::connect(&url, 4).await.unwrap()).await;
}

/// Publish right after commit: the hot writers' rows are leased to this process's relay and
/// their events handed to it; no claim takes them while leased; the relay's next claim deletes
/// what it published; rows it never published (a crash) come back to any claim after the lease.
#[tokio::test]
async fn postgres_hot_writers_hand_their_events_to_the_relay() {
    let url = minyi_core::testing::fresh_database().await.unwrap();
    let h = std::sync::Arc::new(OutboxHandoff::new(Duration::from_millis(500)));
    let store = PostgresStore::connect_with_handoff(&url, 4, Some(h.clone()))
        .await
        .unwrap();
    let other = PostgresStore::connect(&url, 2).await.unwrap();
    let lease = Duration::from_secs(30);

    // Intake's group insert: the event is handed over and not claimable.
    let received = event("ticket.received");
    let (t, _) = store
        .create_ticket(ticket(None, 1), vec![received.clone()])
        .await
        .unwrap();
    let handed = h.take();
    assert_eq!(
        handed.iter().map(|m| m.event_id).collect::<Vec<_>>(),
        vec![received.event_id]
    );
    assert!(other.claim_outbox(10, lease).await.unwrap().is_empty());
    assert!(store.claim_outbox(10, lease).await.unwrap().is_empty());
    assert_eq!(store.outbox_len().await.unwrap(), 1);
    // Published by the relay: gone with its next claim.
    h.mark_published(handed.iter().map(|m| m.event_id));
    assert!(store.claim_outbox(10, lease).await.unwrap().is_empty());
    assert_eq!(store.outbox_len().await.unwrap(), 0);

    // Batched effects: only the applied effect's event is handed over.
    let routed_event = event("ticket.routed");
    let outcomes = store
        .apply_effects(
            "classification",
            vec![
                Effect {
                    event_id: Uuid::now_v7(),
                    ticket_id: t.id,
                    update: TicketUpdate {
                        status: Some(TicketStatus::Routed),
                        routing: None,
                    },
                    events: vec![routed_event.clone()],
                },
                Effect {
                    event_id: Uuid::now_v7(),
                    ticket_id: Uuid::now_v7(),
                    update: TicketUpdate::default(),
                    events: vec![event("ticket.routed")],
                },
            ],
        )
        .await
        .unwrap();
    assert_eq!(
        outcomes,
        vec![EffectOutcome::Applied, EffectOutcome::NotFound]
    );
    let t = store.get_ticket(&t.id.to_string()).await.unwrap();

    // Batched transitions: the applied one's event is handed over.
    let dispatched_event = event("ticket.dispatched");
    let record = dispatched("ST-GM", &[]);
    let outcomes = store
        .transitions(vec![
            Transition {
                ticket_id: t.id,
                expected_version: t.version,
                status: record.state.ticket_status(),
                dispatch: record.clone(),
                routing: None,
                audit: audit(t.id, "dispatch", true),
                inbox: vec![],
                events: vec![dispatched_event.clone()],
                dedupe: None,
            },
            Transition {
                ticket_id: Uuid::now_v7(),
                expected_version: 0,
                status: record.state.ticket_status(),
                dispatch: record,
                routing: None,
                audit: audit(t.id, "dispatch", true),
                inbox: vec![],
                events: vec![event("ticket.dispatched")],
                dedupe: None,
            },
        ])
        .await
        .unwrap();
    assert!(matches!(outcomes[0], TransitionOutcome::Applied { .. }));
    assert_eq!(outcomes[1], TransitionOutcome::NotFound);
    let handed: Vec<Uuid> = h.take().iter().map(|m| m.event_id).collect();
    assert_eq!(
        handed,
        vec![routed_event.event_id, dispatched_event.event_id]
    );
    assert_eq!(store.outbox_len().await.unwrap(), 2);
    assert!(other.claim_outbox(10, lease).await.unwrap().is_empty());

    // The relay died before publishing them: once the lease runs out, any relay claims them.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let reclaimed: Vec<Uuid> = other
        .claim_outbox(10, lease)
        .await
        .unwrap()
        .iter()
        .map(|e| e.message.event_id)
        .collect();
    assert_eq!(reclaimed, handed);

    // A store without a handoff leaves its rows claimable at once.
    other
        .create_ticket(ticket(None, 2), vec![event("ticket.received")])
        .await
        .unwrap();
    assert_eq!(store.claim_outbox(10, lease).await.unwrap().len(), 1);
}

#[tokio::test]
async fn postgres_concurrent_submits_with_one_key_make_one_ticket() {
    let url = minyi_core::testing::fresh_database().await.unwrap();
    let store = PostgresStore::connect(&url, 8).await.unwrap();
    one_key_makes_one_ticket(std::sync::Arc::new(store)).await;
    let url = minyi_core::testing::fresh_database().await.unwrap();
    let store = PostgresStore::connect(&url, 8).await.unwrap();
    concurrent_submits_each_get_their_own_answer(std::sync::Arc::new(store)).await;
}

/// PostgreSQL writes concurrent submits together: one it cannot store (a NUL character) fails
/// alone, the others are written.
#[tokio::test]
async fn postgres_a_refused_submit_fails_alone() {
    let url = minyi_core::testing::fresh_database().await.unwrap();
    let store = std::sync::Arc::new(PostgresStore::connect(&url, 8).await.unwrap());
    let mut tasks = Vec::new();
    for n in 0..40u32 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut t = ticket(None, n);
            if n == 17 {
                t.text = "bad\0text".into();
            }
            s.create_ticket(t, vec![event("ticket.received")]).await
        }));
    }
    for (n, task) in tasks.into_iter().enumerate() {
        let answer = task.await.unwrap();
        assert_eq!(answer.is_err(), n == 17, "submit {n}: {answer:?}");
    }
    assert_eq!(store.count_tickets().await.unwrap(), 39);
    assert_eq!(store.outbox_len().await.unwrap(), 39);
}
