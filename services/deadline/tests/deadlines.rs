//! SLA clocks end to end on PostgreSQL and Redis with an injected clock: warnings, breach,
//! an extension that moves the deadline, a redo that restarts it; timers rebuilt after Redis
//! lost them; two workers firing each effect once; escalation to arbitration and a ruling
//! that clarifies the catalog.

use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use minyi_core::auth::{Claims, Role};
use minyi_core::clock::{Clock, ManualClock};
use minyi_core::petition::{Channel, TicketStatus};
use minyi_core::pii::Keyring;
use minyi_core::store::{
    CatalogStore, DispatchState, PgCatalogStore, PostgresStore, RoutingRecord, SuggestionRecord,
    TicketRecord, TicketStore, TicketUpdate,
};
use minyi_core::timers::{RedisTimers, TimerStore};
use minyi_deadline::{DeadlineConfig, Deadlines};
use minyi_dispatch::Engine;
use minyi_dispatch::arbitration::ArbitrationApi;
use minyi_dispatch::machine::{Actor, Command, Rules};
use minyi_dispatch::state::MemoryRoutingState;
use minyi_proto::arbitration::arbitration_service_server::ArbitrationService;
use uuid::Uuid;

/// Monday 2026-11-23 09:00 in Beijing.
fn monday_9am() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 1, 0, 0).unwrap()
}

/// Beijing wall time on a November 2026 day.
fn bj(day: u32, h: u32, m: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, day, h, m, 0).unwrap() - Duration::hours(8)
}

struct World {
    store: Arc<PostgresStore>,
    timers: Arc<RedisTimers>,
    clock: ManualClock,
    engine: Engine,
    prefix: String,
    /// The catalog in the test's database, as production keeps it.
    catalog: Arc<PgCatalogStore>,
}

async fn world() -> World {
    let url = minyi_core::testing::fresh_database().await.unwrap();
    let store = Arc::new(PostgresStore::connect(&url, 8).await.unwrap());
    let prefix = minyi_core::testing::random_name();
    let timers = Arc::new(
        RedisTimers::connect(&minyi_core::testing::redis_url(), &prefix)
            .await
            .unwrap(),
    );
    let clock = ManualClock::new(monday_9am());
    let cd = Arc::new(PgCatalogStore::new(store.pool().clone()));
    cd.seed(&minyi_catalog::demo_slice(), &[]).await.unwrap();
    let engine = Engine {
        store: store.clone(),
        catalog: cd.active().await.unwrap().into(),
        deadlines: Arc::new(minyi_dispatch::deadlines::Deadlines::default()),
        rules: Rules::default(),
        clock: Arc::new(clock.clone()),
        outbox_written: Default::default(),
        inbox_written: Default::default(),
        routing_state: Arc::new(MemoryRoutingState::default()),
    };
    World {
        store,
        timers,
        clock,
        engine,
        prefix,
        catalog: cd,
    }
}

impl World {
    fn deadlines(&self, timers: Arc<dyn TimerStore>) -> Deadlines {
        Deadlines {
            store: self.store.clone(),
            timers,
            engine: self.engine.clone(),
            clock: Arc::new(self.clock.clone()),
            calendar: Arc::new(minyi_calendar::Calendar::china()),
            config: DeadlineConfig::default(),
        }
    }

    /// A routed ticket (accept within 2 working hours, complete within 3 working days),
    /// auto-dispatched to DEP-ZJ now.
    async fn dispatched(&self, n: usize) -> TicketRecord {
        self.dispatched_with(n, 0).await
    }

    /// As [`World::dispatched`], with a first-response limit of `respond_hours`.
    async fn dispatched_with(&self, n: usize, respond_hours: u32) -> TicketRecord {
        let t = self.routed(n, respond_hours).await;
        self.engine
            .apply(
                &t.id.to_string(),
                &Command::AutoDispatch,
                &Actor::system(),
                0,
                None,
            )
            .await
            .unwrap()
    }

    /// A ticket classification routed to DEP-ZJ, not yet dispatched.
    async fn routed(&self, n: usize, respond_hours: u32) -> TicketRecord {
        let suggestion = |unit: &str| SuggestionRecord {
            item_code: "X".into(),
            item_name: "x".into(),
            path: vec![],
            unit: unit.into(),
            confidence: 0.9,
        };
        let t = TicketRecord {
            id: Uuid::now_v7(),
            tracking_number: String::new(),
            status: TicketStatus::Routed,
            channel: Channel::Hotline,
            title: String::new(),
            text: format!("小区旁工地夜间施工噪音扰民 {n}"),
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
            received_at: self.clock.now(),
            received_by: "agent".into(),
            follow_ups: vec![],
            routing: Some(RoutingRecord {
                decision: "auto".into(),
                item_code: self.engine.catalog.current().items()[0].code.clone(),
                lead_unit: "DEP-ZJ".into(),
                accept_hours: 2,
                respond_hours,
                complete_days: 3,
                suggestions: vec![suggestion("DEP-ZJ"), suggestion("DEP-CG")],
                ..RoutingRecord::default()
            }),
            dispatch: None,
            version: 0,
        };
        let routing = t.routing.clone();
        let t = self.store.create_ticket(t, vec![]).await.unwrap().0;
        // Routing is classification's effect, as in production.
        self.store
            .apply_effect(
                "classification",
                Uuid::now_v7(),
                t.id,
                TicketUpdate {
                    status: Some(TicketStatus::Routed),
                    routing,
                },
                vec![],
            )
            .await
            .unwrap();
        self.get(&t).await
    }

    async fn act(&self, t: &TicketRecord, cmd: Command, who: Actor) -> TicketRecord {
        self.engine
            .apply(&t.id.to_string(), &cmd, &who, 0, None)
            .await
            .unwrap()
    }

    async fn get(&self, t: &TicketRecord) -> TicketRecord {
        self.store.get_ticket(&t.id.to_string()).await.unwrap()
    }

    async fn audit_count(&self, t: &TicketRecord, action: &str) -> usize {
        self.store
            .audit_trail(t.id)
            .await
            .unwrap()
            .iter()
            .filter(|a| a.action == action)
            .count()
    }

    /// FLUSHALL, limited to this test's keys.
    async fn forget_timers(&self) {
        let client = redis::Client::open(minyi_core::testing::redis_url()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}:*", self.prefix))
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
}

fn handler(unit: &str) -> Actor {
    Actor {
        sub: format!("h-{unit}"),
        role: Role::Handler,
        unit: Some(unit.into()),
    }
}

fn dispatcher() -> Actor {
    Actor {
        sub: "dispatcher-1".into(),
        role: Role::Dispatcher,
        unit: None,
    }
}

#[tokio::test]
async fn sla_clock_warns_breaches_moves_with_an_extension_and_restarts_on_redo() {
    let w = world().await;
    let d = w.deadlines(w.timers.clone());
    let t = w.dispatched(0).await;
    let rec = t.dispatch.clone().unwrap();
    assert_eq!(rec.accept_by, Some(bj(23, 11, 0)));
    assert_eq!(rec.complete_by, Some(bj(26, 9, 0)));
    d.ensure(&t).await.unwrap();
    assert_eq!(
        w.timers.pending().await.unwrap(),
        6,
        "accept and complete × 75%, 90%, 100%"
    );

    // 75% of the 2 working hours to accept is 10:30.
    w.clock.set(bj(23, 10, 29));
    assert_eq!(d.tick().await.unwrap(), 0);
    w.clock.set(bj(23, 10, 31));
    assert_eq!(d.tick().await.unwrap(), 1);
    assert_eq!(d.tick().await.unwrap(), 0, "fired once");
    let now = w.get(&t).await;
    let alerts = &now.dispatch.as_ref().unwrap().alerts;
    assert_eq!(alerts.len(), 1);
    assert_eq!(
        (alerts[0].clock.as_str(), alerts[0].level.as_str()),
        ("accept", "warning")
    );
    let inbox = w.store.inbox("DEP-ZJ", 0, 10).await.unwrap();
    assert_eq!(inbox.last().unwrap().kind, "sla_warning");
    let outbox = w
        .store
        .claim_outbox(100, std::time::Duration::from_secs(1))
        .await
        .unwrap();
    assert!(
        outbox
            .iter()
            .any(|e| e.message.routing_key == "ticket.sla_warning")
    );

    // Accepted in time: the acceptance clock stops.
    w.clock.set(bj(23, 10, 40));
    let t = w.act(&t, Command::Accept, handler("DEP-ZJ")).await;
    d.ensure(&t).await.unwrap();
    assert_eq!(w.timers.pending().await.unwrap(), 3);
    w.clock.set(bj(23, 11, 30));
    assert_eq!(
        d.tick().await.unwrap(),
        0,
        "no acceptance breach after acceptance"
    );

    // An approved extension of 2 working days moves the deadline to Monday 09:00.
    let t = w
        .act(
            &t,
            Command::RequestExtension {
                working_days: 2,
                reason: "需要协调".into(),
            },
            handler("DEP-ZJ"),
        )
        .await;
    let t = w
        .act(
            &t,
            Command::DecideExtension {
                approve: true,
                note: String::new(),
            },
            dispatcher(),
        )
        .await;
    assert_eq!(t.dispatch.as_ref().unwrap().complete_by, Some(bj(30, 9, 0)));
    d.ensure(&t).await.unwrap();
    w.clock.set(bj(26, 9, 1));
    assert_eq!(
        d.tick().await.unwrap(),
        0,
        "the old deadline no longer fires"
    );

    // Past the moved deadline: both warnings and the breach (督办).
    w.clock.set(bj(30, 9, 1));
    assert_eq!(d.tick().await.unwrap(), 3);
    let t = w.get(&t).await;
    let levels: Vec<(String, String)> = t
        .dispatch
        .as_ref()
        .unwrap()
        .alerts
        .iter()
        .map(|a| (a.clock.clone(), a.level.clone()))
        .collect();
    assert!(
        levels.contains(&("complete".into(), "overdue".into())),
        "{levels:?}"
    );
    assert_eq!(w.audit_count(&t, "overdue").await, 1);
    assert_eq!(w.timers.pending().await.unwrap(), 0);

    // Completed, then a justified dissatisfaction: redo restarts the completion clock.
    let t = w
        .act(
            &t,
            Command::Complete {
                reply: "已处理".into(),
            },
            handler("DEP-ZJ"),
        )
        .await;
    d.ensure(&t).await.unwrap();
    assert_eq!(w.timers.pending().await.unwrap(), 0);
    let t = w
        .act(
            &t,
            Command::Callback {
                rating: "dissatisfied".into(),
                cause: "unit".into(),
                note: String::new(),
            },
            dispatcher(),
        )
        .await;
    assert_eq!(t.dispatch.as_ref().unwrap().state, DispatchState::Accepted);
    assert_eq!(
        t.dispatch.as_ref().unwrap().complete_by,
        Some(bj(30, 9, 1) + Duration::days(3))
    );
    d.ensure(&t).await.unwrap();
    assert_eq!(
        w.timers.pending().await.unwrap(),
        3,
        "a fresh completion clock"
    );
    w.forget_timers().await;
}

#[tokio::test]
async fn lost_timers_are_rebuilt_and_two_workers_fire_each_effect_once() {
    let w = world().await;
    let mut tickets = Vec::new();
    for n in 0..20 {
        tickets.push(w.dispatched(n).await);
    }
    // Two workers, each with its own connection to the same timers.
    let other = Arc::new(
        RedisTimers::connect(&minyi_core::testing::redis_url(), &w.prefix)
            .await
            .unwrap(),
    );
    let a = w.deadlines(w.timers.clone());
    let b = w.deadlines(other);
    assert_eq!(a.reconcile().await.unwrap(), Some(20));
    assert_eq!(a.reconcile().await.unwrap(), None, "nothing lost");
    assert_eq!(w.timers.pending().await.unwrap(), 120);

    // Redis loses everything: the next reconciliation rebuilds every pending timer.
    w.forget_timers().await;
    assert_eq!(w.timers.pending().await.unwrap(), 0);
    assert_eq!(b.reconcile().await.unwrap(), Some(20));
    assert_eq!(w.timers.pending().await.unwrap(), 120);

    // Both warnings of every acceptance clock are due; two workers race for them.
    w.clock.set(bj(23, 10, 50));
    let (x, y) = tokio::join!(a.tick(), b.tick());
    let (x, y) = (x.unwrap(), y.unwrap());
    let (x2, y2) = tokio::join!(a.tick(), b.tick());
    assert_eq!(x + y + x2.unwrap() + y2.unwrap(), 40);
    for t in &tickets {
        let t = w.get(t).await;
        assert_eq!(t.dispatch.as_ref().unwrap().alerts.len(), 2);
        assert_eq!(w.audit_count(&t, "sla_warning").await, 2);
    }

    // Nobody accepted within the limit: every ticket is escalated, once.
    w.clock.set(bj(23, 11, 1));
    let (x, y) = tokio::join!(a.tick(), b.tick());
    let total = x.unwrap() + y.unwrap();
    let (x, y) = tokio::join!(a.tick(), b.tick());
    assert_eq!(total + x.unwrap() + y.unwrap(), 20);
    for t in &tickets {
        let t = w.get(t).await;
        assert_eq!(t.status, TicketStatus::InArbitration);
        assert_eq!(w.audit_count(&t, "escalated").await, 1);
        let case = t.dispatch.as_ref().unwrap().arbitration.clone().unwrap();
        assert!(case.reason.contains("not accepted"), "{}", case.reason);
        // The arbitration has its own clock: 1 working day.
        assert_eq!(case.due, Some(bj(24, 11, 1)));
    }
    // Arbitration clocks are timers too: 3 per ticket.
    assert_eq!(w.timers.pending().await.unwrap(), 60);
    w.forget_timers().await;
}

fn request<T>(body: T, sub: &str, role: Role) -> tonic::Request<T> {
    let mut r = tonic::Request::new(body);
    r.extensions_mut().insert(Claims {
        sub: sub.into(),
        role,
        unit: None,
        exp: i64::MAX,
        iat: 0,
    });
    r
}

#[tokio::test]
async fn arbitration_from_escalation_to_ruling_to_new_catalog_version() {
    let w = world().await;
    let t = w.dispatched(0).await;
    let rule = w.engine.catalog.current().items()[1].code.clone();
    let ret = |why: &str| Command::Return {
        reason: why.into(),
        catalog_rule: rule.clone(),
    };
    // Returned by DEP-ZJ, re-dispatched to DEP-CG, returned again: hard.
    let t = w.act(&t, ret("不属于本单位职责"), handler("DEP-ZJ")).await;
    assert_eq!(t.status, TicketStatus::NeedsDispatcher);
    let t = w
        .act(
            &t,
            Command::Dispatch {
                lead_unit: "DEP-CG".into(),
                co_units: vec![],
                use_next_suggestion: false,
                item_code: String::new(),
                note: String::new(),
            },
            dispatcher(),
        )
        .await;
    let t = w.act(&t, ret("应由住建局处理"), handler("DEP-CG")).await;
    assert_eq!(t.status, TicketStatus::InArbitration);
    let case = t.dispatch.as_ref().unwrap().arbitration.clone().unwrap();
    assert_eq!(case.reason, "returned 2 times");
    assert!(case.candidates.contains(&"DEP-ZJ".to_owned()));
    assert!(case.candidates.contains(&"DEP-CG".to_owned()));

    let api = ArbitrationApi::new(
        w.engine.clone(),
        Keyring::new("k", [("k", Keyring::generate_key().as_str())]).unwrap(),
        Some(w.catalog.clone()),
    );
    use minyi_proto::arbitration::*;
    let pending = api
        .list_pending(request(
            ListPendingRequest::default(),
            "arb",
            Role::Arbitrator,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(pending.tickets.len(), 1);
    // Only arbitrators rule.
    let decide = DecideRequest {
        ticket: t.id.to_string(),
        owner_unit: "DEP-ZJ".into(),
        co_units: vec!["DEP-CG".into()],
        ruling: "施工噪音由住建局牵头，城管协办".into(),
        clarification: Some(Clarification {
            kind: "reassign".into(),
            item_code: rule.clone(),
            note: "夜间施工噪音由住建局负责".into(),
        }),
        expected_version: 0,
    };
    let e = api
        .decide(request(decide.clone(), "d", Role::Dispatcher))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied);
    let ruled = api
        .decide(request(decide, "arb", Role::Arbitrator))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ruled.lead_unit, "DEP-ZJ");
    assert!(ruled.no_return);
    let case = ruled.arbitration.unwrap();
    assert_eq!(case.catalog_version, "v2");
    assert_eq!(
        w.engine.catalog.current().version,
        "v2",
        "in force in this process at once"
    );
    assert_eq!(case.decided_by, "arb");

    // The clarification is a new, active catalog version, and the ticket is training data.
    let cd = &w.catalog;
    assert_eq!(cd.active_version().await.unwrap().as_deref(), Some("v2"));
    let item = cd.active().await.unwrap().get(&rule).cloned().unwrap();
    assert_eq!(
        item.responsibility,
        minyi_catalog::Responsibility::functional("DEP-ZJ")
    );
    assert!(
        item.notes
            .iter()
            .any(|n| n.contains("夜间施工噪音由住建局负责"))
    );
    let examples = cd.examples().await.unwrap();
    assert!(
        examples.iter().any(|e| e.text == t.text && e.label == rule),
        "{examples:?}"
    );

    // 先办后议: the owner cannot return it.
    let t = w.get(&t).await;
    let r = w
        .engine
        .apply(
            &t.id.to_string(),
            &ret("还是不归我们"),
            &handler("DEP-ZJ"),
            0,
            None,
        )
        .await;
    assert!(
        matches!(&r, Err(minyi_dispatch::engine::EngineError::Refused(minyi_dispatch::machine::Refusal::Illegal { message, .. })) if message.contains("先办后议")),
        "{r:?}"
    );
    w.forget_timers().await;
}

#[tokio::test]
async fn a_wait_for_the_citizen_pauses_the_sla_clock_and_resuming_moves_the_breach() {
    let w = world().await;
    let d = w.deadlines(w.timers.clone());
    let t = w.dispatched(0).await;
    let t = w.act(&t, Command::Accept, handler("DEP-ZJ")).await;
    assert_eq!(t.dispatch.as_ref().unwrap().complete_by, Some(bj(26, 9, 0)));
    d.ensure(&t).await.unwrap();
    assert_eq!(w.timers.pending().await.unwrap(), 3);

    // Monday 14:00: the unit waits for the citizen's photos. No completion timers while paused.
    w.clock.set(bj(23, 14, 0));
    let t = w
        .act(
            &t,
            Command::Pause {
                reason: "请提供现场照片".into(),
            },
            handler("DEP-ZJ"),
        )
        .await;
    d.ensure(&t).await.unwrap();
    assert_eq!(
        w.timers.pending().await.unwrap(),
        0,
        "the clock stands still"
    );
    // Past the original deadline while paused: nothing fires.
    w.clock.set(bj(26, 10, 0));
    assert_eq!(d.tick().await.unwrap(), 0);

    // Resumed Thursday 10:00: paused Mon 14-18, Tue, Wed, Thu 9-10 = 4+7+7+1 = 19 working
    // hours, so the deadline moves from Thursday 09:00 by 19 working hours (Thu 7, Fri 7, the
    // weekend off, Mon 9-12 and 14-16): Monday 11-30 16:00.
    let t = w
        .act(
            &t,
            Command::Resume {
                note: "照片已收到".into(),
            },
            handler("DEP-ZJ"),
        )
        .await;
    let rec = t.dispatch.as_ref().unwrap();
    assert_eq!(rec.pauses[0].working_secs, 19 * 3600);
    assert_eq!(rec.complete_by, Some(bj(30, 16, 0)));
    d.ensure(&t).await.unwrap();
    assert_eq!(w.timers.pending().await.unwrap(), 3);
    assert_eq!(w.audit_count(&t, "paused").await, 1);
    assert_eq!(w.audit_count(&t, "resumed").await, 1);

    // The breach comes at the moved deadline, not before.
    w.clock.set(bj(30, 15, 59));
    d.tick().await.unwrap();
    let overdue = |t: &TicketRecord| {
        t.dispatch
            .as_ref()
            .unwrap()
            .alerts
            .iter()
            .any(|a| a.level == "overdue")
    };
    assert!(!overdue(&w.get(&t).await));
    w.clock.set(bj(30, 16, 1));
    d.tick().await.unwrap();
    assert!(overdue(&w.get(&t).await));
    assert_eq!(w.audit_count(&t, "overdue").await, 1);
    w.forget_timers().await;
}

#[tokio::test]
async fn the_first_response_clock_runs_until_the_first_progress_note() {
    let w = world().await;
    let d = w.deadlines(w.timers.clone());
    // Dispatched Monday 09:00 with 4 working hours to respond: due 15:00 (9-12, then 14-15).
    let silent = w.dispatched_with(0, 4).await;
    let answered = w.dispatched_with(1, 4).await;
    for t in [&silent, &answered] {
        let t = w.act(t, Command::Accept, handler("DEP-ZJ")).await;
        d.ensure(&t).await.unwrap();
    }
    // The unit answers one of them: its response clock stops.
    w.clock.set(bj(23, 11, 0));
    let answered = w
        .act(
            &answered,
            Command::Progress {
                note: "已电话联系市民".into(),
            },
            handler("DEP-ZJ"),
        )
        .await;
    d.ensure(&answered).await.unwrap();
    w.clock.set(bj(23, 14, 59));
    d.tick().await.unwrap();
    let respond_overdue = |t: &TicketRecord| {
        t.dispatch
            .as_ref()
            .unwrap()
            .alerts
            .iter()
            .any(|a| a.clock == "respond" && a.level == "overdue")
    };
    assert!(!respond_overdue(&w.get(&silent).await));
    w.clock.set(bj(23, 15, 1));
    d.tick().await.unwrap();
    assert!(
        respond_overdue(&w.get(&silent).await),
        "no response by 15:00"
    );
    assert!(
        !respond_overdue(&w.get(&answered).await),
        "answered at 11:00"
    );
    w.forget_timers().await;
}

/// The dispatch consumer's path: routed tickets applied in one batch, each with its own
/// outcome, and each written as a single transition would write it.
#[tokio::test]
async fn a_batch_of_routed_tickets_is_dispatched_together() {
    use minyi_dispatch::engine::EngineError;
    use minyi_dispatch::machine::Refusal;
    let w = world().await;
    let (a, b, c) = (
        w.routed(1, 0).await,
        w.routed(2, 0).await,
        w.routed(3, 0).await,
    );
    let event = |e: Uuid| Some(("dispatch".to_owned(), e));
    let (ea, eb, ec) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    // c's event came before: c is dispatched already.
    w.engine
        .apply(
            &c.id.to_string(),
            &Command::AutoDispatch,
            &Actor::system(),
            0,
            event(ec),
        )
        .await
        .unwrap();
    let missing = Uuid::now_v7();
    let results = w
        .engine
        .apply_batch(
            vec![
                (a.id, Command::AutoDispatch, event(ea)),
                (missing, Command::AutoDispatch, event(Uuid::now_v7())),
                (b.id, Command::AutoDispatch, event(eb)),
                (c.id, Command::AutoDispatch, event(ec)),
            ],
            &Actor::system(),
        )
        .await;
    assert_eq!(results.len(), 4);
    for (n, t) in [(0, &a), (2, &b)] {
        let done = results[n].as_ref().unwrap();
        assert_eq!(done.id, t.id);
        assert_eq!(done.status, TicketStatus::Dispatched);
        assert_eq!(done.dispatch.as_ref().unwrap().lead_unit, "DEP-ZJ");
        let stored = w.get(t).await;
        assert_eq!(stored.version, done.version);
        assert_eq!(stored.dispatch, done.dispatch);
        assert_eq!(w.audit_count(t, "dispatched").await, 1);
        let assigned = w.engine.routing_state.assignment(t.id).await.unwrap();
        assert_eq!(assigned.unwrap().lead_unit, "DEP-ZJ");
    }
    assert!(matches!(
        results[1],
        Err(EngineError::Store(minyi_core::store::StoreError::NotFound(
            _
        )))
    ));
    assert!(matches!(
        results[3],
        Err(EngineError::Refused(Refusal::Illegal { .. }))
    ));
    let inbox: Vec<Uuid> = w
        .store
        .inbox("DEP-ZJ", 0, 10)
        .await
        .unwrap()
        .iter()
        .map(|e| e.ticket_id)
        .collect();
    assert_eq!(inbox, vec![c.id, a.id, b.id]);
}

/// The consumer re-plans a ticket's timers from its current state whenever a dispatch event
/// about it arrives; events that arrive together are re-planned together.
#[tokio::test]
async fn dispatch_events_re_plan_their_tickets_timers() {
    use minyi_core::bus::{Bus, MemoryBus};
    use minyi_proto::events::DispatchChanged;
    use minyi_proto::events::event::Body;
    let w = world().await;
    let bus = Arc::new(MemoryBus::new(5));
    bus.declare(minyi_deadline::CONSUMER, &minyi_deadline::watched_keys())
        .await
        .unwrap();
    let event = |t: &TicketRecord, action: &str| {
        minyi_core::event::new_event(
            t.id,
            w.clock.now(),
            Body::DispatchChanged(DispatchChanged {
                action: action.into(),
                ..DispatchChanged::default()
            }),
        )
    };
    let mut tickets = Vec::new();
    for n in 0..10 {
        tickets.push(w.dispatched(n).await);
    }
    assert_eq!(w.timers.pending().await.unwrap(), 0);
    // All ten events wait in the queue before the consumer starts: one batch.
    let events: Vec<_> = tickets.iter().map(|t| event(t, "dispatched")).collect();
    bus.publish(&events).await.unwrap();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let consumer = tokio::spawn(w.deadlines(w.timers.clone()).run_consumer(
        bus.clone(),
        64,
        stopped,
    ));
    let settled = |want: u64| {
        let timers = w.timers.clone();
        async move {
            for _ in 0..100 {
                if timers.pending().await.unwrap() == want {
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            panic!("never reached {want} pending timers");
        }
    };
    // Accept and complete clocks, two warnings and a deadline each.
    settled(60).await;
    // Accepted: its acceptance clock's three timers go.
    let accepted = w.act(&tickets[0], Command::Accept, handler("DEP-ZJ")).await;
    bus.publish(&[event(&accepted, "accepted")]).await.unwrap();
    settled(57).await;
    stop.send(true).unwrap();
    consumer.await.unwrap();
    w.forget_timers().await;
}
