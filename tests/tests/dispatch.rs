//! The dispatch lifecycle end to end in production mode: intake, classification and dispatch
//! as separate apps on real PostgreSQL, Redis and RabbitMQ.

mod support;

use std::time::{Duration, Instant};

use minyi::app::Service;
use minyi_catalog::model::Responsibility;
use minyi_core::auth::Role;
use minyi_core::petition::TicketStatus;
use minyi_core::store::AUDIT_LINES_IN_VIEW;
use minyi_proto::common::Location;
use minyi_proto::dispatch::*;
use minyi_proto::intake::{GetTicketRequest as IntakeGet, SubmitPetitionRequest};
use support::{Dispatch, TestApp, spawn_cluster};
use tokio_stream_next::next;
use tonic::Code;

mod tokio_stream_next {
    /// Next message of a server stream within 20 s.
    pub async fn next<T>(s: &mut tonic::Streaming<T>) -> T {
        tokio::time::timeout(std::time::Duration::from_secs(20), s.message())
            .await
            .expect("no inbox entry within 20 s")
            .expect("stream error")
            .expect("stream ended")
    }
}

const DISPATCHED: i32 = 1;
const ACCEPTED: i32 = 2;
const RETURNED: i32 = 3;
const COMPLETED: i32 = 4;
const CALLED_BACK: i32 = 5;
const ARCHIVED: i32 = 6;

async fn submit(intake: &TestApp, text: &str, address: &str) -> String {
    let mut agent = intake.intake(Some(Role::Agent)).await;
    agent
        .submit_petition(SubmitPetitionRequest {
            channel: 1,
            text: text.into(),
            location: Some(Location {
                address: address.into(),
                point: None,
            }),
            caller: Some(minyi_proto::common::Caller {
                anonymous: false,
                name: "王小明".into(),
                phone: "13800138000".into(),
                id_number: String::new(),
            }),
            ..SubmitPetitionRequest::default()
        })
        .await
        .unwrap()
        .into_inner()
        .ticket
        .unwrap()
        .id
}

/// Waits until the ticket's coarse status is `status`.
async fn wait_status(
    intake: &TestApp,
    id: &str,
    status: TicketStatus,
) -> minyi_proto::intake::Ticket {
    let mut agent = intake.intake(Some(Role::Agent)).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let t = agent
            .get_ticket(IntakeGet { id: id.into() })
            .await
            .unwrap()
            .into_inner();
        if t.status == status.to_proto() {
            return t;
        }
        assert!(
            Instant::now() < deadline,
            "ticket {id} never reached {status:?} (is {})",
            t.status
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn get(d: &mut Dispatch, id: &str) -> DispatchTicket {
    d.get_ticket(GetTicketRequest { ticket: id.into() })
        .await
        .unwrap()
        .into_inner()
}

/// A functional item's phrasings: the classifier is confident, the owner is known.
fn functional_text() -> (String, String) {
    let catalog = minyi_catalog::demo_slice();
    let item = catalog
        .items()
        .iter()
        .find(|i| matches!(i.responsibility, Responsibility::Functional { .. }))
        .unwrap();
    let Responsibility::Functional { unit } = &item.responsibility else {
        unreachable!()
    };
    (item.phrasings.join("，"), unit.clone())
}

fn territorial_text() -> (String, String) {
    let catalog = minyi_catalog::demo_slice();
    let item = catalog
        .items()
        .iter()
        .find(|i| matches!(i.responsibility, Responsibility::Territorial))
        .unwrap();
    (item.phrasings.join("，"), item.code.clone())
}

#[tokio::test]
async fn dispatch_lifecycle_in_production_mode() {
    let c = spawn_cluster().await;
    let mut dispatcher = c.dispatch.dispatch(Role::Dispatcher, None).await;

    // --- submit → auto-dispatched → accepted → completed → callback → archived ---
    let (text, owner) = functional_text();
    let id = submit(&c.intake, &text, "光明街道东周社区").await;
    wait_status(&c.intake, &id, TicketStatus::Dispatched).await;
    let t = get(&mut dispatcher, &id).await;
    assert_eq!(t.state, DISPATCHED);
    assert_eq!(t.lead_unit, owner);
    assert!(!t.manual);
    assert!(t.complete_by.is_some());
    // Personal data masked for the dispatcher.
    let caller = t.caller.clone().unwrap();
    assert_eq!(caller.phone, "138****8000");
    assert!(!format!("{t:?}").contains("13800138000"));

    // The lead's inbox stream shows it.
    let mut lead = c.dispatch.dispatch(Role::Handler, Some(&owner)).await;
    let mut stream = lead
        .watch_inbox(WatchInboxRequest { after_cursor: 0 })
        .await
        .unwrap()
        .into_inner();
    let entry = next(&mut stream).await;
    assert_eq!(entry.ticket_id, id);
    assert_eq!(entry.kind, "dispatched");
    let first_cursor = entry.cursor;

    // Another unit can neither see nor act; each refusal is audited.
    let stranger_unit = if owner == "ST-XH" { "ST-FH" } else { "ST-XH" };
    let mut stranger = c
        .dispatch
        .dispatch(Role::Handler, Some(stranger_unit))
        .await;
    let e = stranger
        .get_ticket(GetTicketRequest { ticket: id.clone() })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    assert!(e.message().contains("not to you"), "{}", e.message());
    let e = stranger
        .accept(AcceptRequest {
            ticket: id.clone(),
            expected_version: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    // Handlers cannot do dispatchers' work, nor agents handlers'.
    let e = lead
        .dispatch(DispatchRequest {
            ticket: id.clone(),
            lead_unit: "ST-GM".into(),
            ..DispatchRequest::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let mut agent = c.dispatch.dispatch(Role::Agent, None).await;
    assert_eq!(
        agent
            .accept(AcceptRequest {
                ticket: id.clone(),
                expected_version: 0
            })
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );
    // Completing before accepting is an illegal transition naming the state.
    let e = lead
        .complete(CompleteRequest {
            ticket: id.clone(),
            reply: "done".into(),
            expected_version: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(e.message().contains("dispatched"), "{}", e.message());

    // Two handlers of the lead unit accept at once: exactly one succeeds.
    let mut lead2 = c.dispatch.dispatch(Role::Handler, Some(&owner)).await;
    let (a, b) = tokio::join!(
        lead.accept(AcceptRequest {
            ticket: id.clone(),
            expected_version: 0
        }),
        lead2.accept(AcceptRequest {
            ticket: id.clone(),
            expected_version: 0
        })
    );
    let ok = [a.is_ok(), b.is_ok()];
    assert_eq!(ok.iter().filter(|x| **x).count(), 1, "{a:?} {b:?}");
    let loser = if a.is_ok() { b } else { a }.unwrap_err();
    assert!(
        matches!(loser.code(), Code::FailedPrecondition | Code::Aborted),
        "{loser:?}"
    );
    let t = get(&mut lead, &id).await;
    assert_eq!(t.state, ACCEPTED);
    // A stale version is refused.
    let e = lead
        .add_progress(AddProgressRequest {
            ticket: id.clone(),
            note: "已联系市民".into(),
            expected_version: t.version - 1,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Aborted);
    lead.add_progress(AddProgressRequest {
        ticket: id.clone(),
        note: "已联系市民，约定明天上门".into(),
        expected_version: t.version,
    })
    .await
    .unwrap();
    // Missing reply: a field error.
    let e = lead
        .complete(CompleteRequest {
            ticket: id.clone(),
            reply: " ".into(),
            expected_version: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("reply"));
    let done = lead
        .complete(CompleteRequest {
            ticket: id.clone(),
            reply: "已处理完毕，感谢您的反映。".into(),
            expected_version: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(done.state, COMPLETED);
    wait_status(&c.intake, &id, TicketStatus::Completed).await;

    // Callback: a dissatisfied rating for a cause on the unit's side reopens for redo.
    let e = dispatcher
        .record_callback(RecordCallbackRequest {
            ticket: id.clone(),
            rating: "dissatisfied".into(),
            cause: String::new(),
            note: String::new(),
            expected_version: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("cause"));
    let redo = dispatcher
        .record_callback(RecordCallbackRequest {
            ticket: id.clone(),
            rating: "dissatisfied".into(),
            cause: "unit".into(),
            note: "问题没有解决".into(),
            expected_version: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(redo.state, ACCEPTED);
    assert_eq!(redo.redo_count, 1);
    let redo_entry = next(&mut stream).await;
    assert_eq!(redo_entry.kind, "redo");
    assert!(redo_entry.cursor > first_cursor);
    lead.complete(CompleteRequest {
        ticket: id.clone(),
        reply: "已再次处理并回复".into(),
        expected_version: 0,
    })
    .await
    .unwrap();
    let rated = dispatcher
        .record_callback(RecordCallbackRequest {
            ticket: id.clone(),
            rating: "satisfied".into(),
            cause: String::new(),
            note: String::new(),
            expected_version: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rated.state, CALLED_BACK);
    let archived = dispatcher
        .archive(ArchiveRequest {
            ticket: id.clone(),
            expected_version: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(archived.state, ARCHIVED);
    wait_status(&c.intake, &id, TicketStatus::Archived).await;
    let e = dispatcher
        .archive(ArchiveRequest {
            ticket: id.clone(),
            expected_version: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(e.message().contains("archived"));

    // The audit trail has every step and every refusal.
    let audit = get(&mut dispatcher, &id).await.audit;
    let actions: Vec<(&str, bool)> = audit
        .iter()
        .map(|a| (a.action.as_str(), a.allowed))
        .collect();
    for step in [
        "dispatched",
        "accepted",
        "progress",
        "completed",
        "reopened",
        "called_back",
        "archived",
    ] {
        assert!(
            actions.contains(&(step, true)),
            "{step} missing: {actions:?}"
        );
    }
    let refused: Vec<_> = audit.iter().filter(|a| !a.allowed).collect();
    for action in ["read", "accept"] {
        assert!(
            refused
                .iter()
                .any(|a| a.unit == stranger_unit && a.action == action),
            "refused {action} not audited: {refused:?}"
        );
    }
    assert!(refused.iter().any(|a| a.role == "agent"));
    assert_eq!(audit[0].role, "system");

    // --- return → re-dispatched by a dispatcher ---
    let id2 = submit(&c.intake, &format!("{text}。另外一件事"), "凤凰街道").await;
    wait_status(&c.intake, &id2, TicketStatus::Dispatched).await;
    let (_, rule) = territorial_text();
    let e = lead
        .r#return(ReturnRequest {
            ticket: id2.clone(),
            reason: String::new(),
            catalog_rule: "NOPE-1".into(),
            expected_version: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("reason") && e.message().contains("catalog_rule"));
    let returned = lead
        .r#return(ReturnRequest {
            ticket: id2.clone(),
            reason: "属地事项，应由街道办理".into(),
            catalog_rule: rule.clone(),
            expected_version: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(returned.state, RETURNED);
    wait_status(&c.intake, &id2, TicketStatus::NeedsDispatcher).await;
    let queue = dispatcher
        .list_queue(ListQueueRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(queue.tickets.iter().any(|t| t.ticket_id == id2));
    let redispatched = dispatcher
        .dispatch(DispatchRequest {
            ticket: id2.clone(),
            lead_unit: "ST-FH".into(),
            note: "属地街道".into(),
            ..DispatchRequest::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(redispatched.state, DISPATCHED);
    assert_eq!(redispatched.lead_unit, "ST-FH");
    assert_eq!(redispatched.lead_unit_name, "凤凰街道");
    assert!(redispatched.manual);
    assert_eq!(redispatched.returns.len(), 1);
    // The unit that returned it no longer acts on it.
    let e = lead
        .accept(AcceptRequest {
            ticket: id2.clone(),
            expected_version: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    assert!(e.message().contains("凤凰街道"), "{}", e.message());

    // --- co-handling and 吹哨 ---
    let mut fh = c.dispatch.dispatch(Role::Handler, Some("ST-FH")).await;
    fh.accept(AcceptRequest {
        ticket: id2.clone(),
        expected_version: 0,
    })
    .await
    .unwrap();
    let e = fh
        .whistle(WhistleRequest {
            ticket: id2.clone(),
            units: vec!["DEP-NOPE".into()],
            note: String::new(),
            expected_version: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("units[0]"));
    let whistled = fh
        .whistle(WhistleRequest {
            ticket: id2.clone(),
            units: vec!["DEP-ZJ".into(), "DEP-CG".into()],
            note: "请住建、城管到场".into(),
            expected_version: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(whistled.co_handlers.len(), 2);
    assert!(
        whistled
            .co_handlers
            .iter()
            .all(|c| c.whistled && !c.accepted)
    );
    let mut zj = c.dispatch.dispatch(Role::Handler, Some("DEP-ZJ")).await;
    let mut zj_stream = zj
        .watch_inbox(WatchInboxRequest { after_cursor: 0 })
        .await
        .unwrap()
        .into_inner();
    let e = next(&mut zj_stream).await;
    assert_eq!(
        (e.ticket_id.as_str(), e.kind.as_str()),
        (id2.as_str(), "whistled")
    );
    let reported = zj
        .accept(AcceptRequest {
            ticket: id2.clone(),
            expected_version: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        reported
            .co_handlers
            .iter()
            .any(|c| c.unit == "DEP-ZJ" && c.accepted)
    );
    assert_eq!(reported.state, ACCEPTED);
    // A co-handler may note progress, but not complete, nor whistle; a department cannot
    // whistle at all.
    zj.add_progress(AddProgressRequest {
        ticket: id2.clone(),
        note: "已到场核查".into(),
        expected_version: 0,
    })
    .await
    .unwrap();
    let e = zj
        .complete(CompleteRequest {
            ticket: id2.clone(),
            reply: "x".into(),
            expected_version: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    fh.add_co_handlers(AddCoHandlersRequest {
        ticket: id2.clone(),
        units: vec!["DEP-JT".into()],
        expected_version: 0,
    })
    .await
    .unwrap();

    // --- extensions: refused, then approved (moves the deadline) ---
    let before = get(&mut fh, &id2).await.complete_by.unwrap();
    let e = fh
        .request_extension(RequestExtensionRequest {
            ticket: id2.clone(),
            working_days: 0,
            reason: String::new(),
            expected_version: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    fh.request_extension(RequestExtensionRequest {
        ticket: id2.clone(),
        working_days: 3,
        reason: "需协调多个部门".into(),
        expected_version: 0,
    })
    .await
    .unwrap();
    let e = fh
        .request_extension(RequestExtensionRequest {
            ticket: id2.clone(),
            working_days: 3,
            reason: "again".into(),
            expected_version: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    let refused = dispatcher
        .decide_extension(DecideExtensionRequest {
            ticket: id2.clone(),
            approve: false,
            note: "理由不足".into(),
            expected_version: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(refused.complete_by.unwrap(), before);
    assert_eq!(refused.extensions[0].decision, "refused");
    fh.request_extension(RequestExtensionRequest {
        ticket: id2.clone(),
        working_days: 2,
        reason: "需协调多个部门，已取得进展".into(),
        expected_version: 0,
    })
    .await
    .unwrap();
    let approved = dispatcher
        .decide_extension(DecideExtensionRequest {
            ticket: id2.clone(),
            approve: true,
            note: String::new(),
            expected_version: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(approved.extensions[1].decision, "approved");
    let moved = approved.complete_by.unwrap();
    assert!(
        moved.seconds > before.seconds + 86_400,
        "{before:?} → {moved:?}"
    );
    let e = dispatcher
        .decide_extension(DecideExtensionRequest {
            ticket: id2.clone(),
            approve: true,
            note: String::new(),
            expected_version: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);

    // --- manual dispatch of a ticket classification was unsure about ---
    let (ttext, _) = territorial_text();
    let id3 = submit(&c.intake, &ttext, "").await;
    wait_status(&c.intake, &id3, TicketStatus::NeedsDispatcher).await;
    let queue = dispatcher
        .list_queue(ListQueueRequest::default())
        .await
        .unwrap()
        .into_inner();
    let queued = queue.tickets.iter().find(|t| t.ticket_id == id3).unwrap();
    assert!(!queued.routing.as_ref().unwrap().suggestions.is_empty());
    assert!(queue.unit_load.get("ST-FH").copied().unwrap_or(0) >= 1);
    let e = dispatcher
        .dispatch(DispatchRequest {
            ticket: id3.clone(),
            lead_unit: "ST-NOPE".into(),
            ..DispatchRequest::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("lead_unit"));
    let manual = dispatcher
        .dispatch(DispatchRequest {
            ticket: id3.clone(),
            lead_unit: "ST-GM".into(),
            co_units: vec!["DEP-CG".into()],
            ..DispatchRequest::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(manual.lead_unit, "ST-GM");
    assert!(manual.manual);
    wait_status(&c.intake, &id3, TicketStatus::Dispatched).await;
    let mut gm = c.dispatch.dispatch(Role::Handler, Some("ST-GM")).await;
    let inbox = gm
        .list_inbox(ListInboxRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        inbox
            .tickets
            .iter()
            .map(|t| t.ticket_id.as_str())
            .collect::<Vec<_>>(),
        vec![id3.as_str()]
    );
    // A supervisor reads but cannot act.
    let mut sup = c.dispatch.dispatch(Role::Supervisor, None).await;
    get(&mut sup, &id3).await;
    assert_eq!(
        sup.archive(ArchiveRequest {
            ticket: id3.clone(),
            expected_version: 0
        })
        .await
        .unwrap_err()
        .code(),
        Code::PermissionDenied
    );
    c.stop().await;
}

/// The inbox stream resumes from a cursor without missing or repeating entries.
/// 补充材料: the lead pauses the completion clock to wait for the citizen; the citizen's
/// follow-up through intake (the hotline) resumes it, and the ticket shows the pause.
#[tokio::test]
async fn a_citizens_follow_up_resumes_a_paused_clock() {
    let c = spawn_cluster().await;
    let (text, owner) = functional_text();
    let id = submit(&c.intake, &text, "光明街道东周社区").await;
    wait_status(&c.intake, &id, TicketStatus::Dispatched).await;
    let mut lead = c.dispatch.dispatch(Role::Handler, Some(&owner)).await;
    lead.accept(AcceptRequest {
        ticket: id.clone(),
        expected_version: 0,
    })
    .await
    .unwrap();
    let e = lead
        .pause_for_citizen(PauseForCitizenRequest {
            ticket: id.clone(),
            reason: " ".into(),
            expected_version: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let t = lead
        .pause_for_citizen(PauseForCitizenRequest {
            ticket: id.clone(),
            reason: "请提供漏水位置的照片".into(),
            expected_version: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(t.paused);
    assert_eq!(t.pauses.len(), 1);
    assert!(t.pauses[0].to.is_none());
    let due_when_paused = t.complete_by.unwrap();

    let mut agent = c.intake.intake(Some(Role::Agent)).await;
    agent
        .add_follow_up(minyi_proto::intake::AddFollowUpRequest {
            id: id.clone(),
            text: "照片已通过微信发送".into(),
        })
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let t = loop {
        let t = get(&mut lead, &id).await;
        if !t.paused {
            break t;
        }
        assert!(
            Instant::now() < deadline,
            "the follow-up never resumed the clock"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(t.state, ACCEPTED);
    assert!(t.pauses[0].to.is_some());
    // The deadline moved by the paused working time (zero outside working hours): at least as
    // many wall-clock seconds.
    let due = t.complete_by.unwrap();
    assert!(
        due.seconds - due_when_paused.seconds >= t.pauses[0].working_seconds,
        "deadline {due:?} not moved by {} working seconds from {due_when_paused:?}",
        t.pauses[0].working_seconds
    );
    let actions: Vec<_> = t.audit.iter().map(|a| a.action.as_str()).collect();
    assert!(
        actions.contains(&"paused") && actions.contains(&"resumed"),
        "{actions:?}"
    );
    let e = lead
        .resume(ResumeRequest {
            ticket: id.clone(),
            note: String::new(),
            expected_version: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    c.stop().await;
}

/// A dispatcher who names the catalog item corrects the classifier: the choice is recorded as
/// a training example (numbers masked) for the next retraining.
#[tokio::test]
async fn a_dispatchers_reclassification_becomes_a_training_example() {
    let c = spawn_cluster().await;
    let (text, code) = territorial_text();
    // No place: a dispatcher decides.
    let id = submit(&c.intake, &format!("{text}，电话13800138000"), "").await;
    wait_status(&c.intake, &id, TicketStatus::NeedsDispatcher).await;
    let mut dispatcher = c.dispatch.dispatch(Role::Dispatcher, None).await;
    let t = dispatcher
        .dispatch(DispatchRequest {
            ticket: id.clone(),
            lead_unit: "ST-GM".into(),
            item_code: code.clone(),
            ..DispatchRequest::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(t.state, DISPATCHED);
    // In the database, where every classification replica reads it.
    let example = support::last_training_example(&c.dispatch.config).await;
    assert_eq!(example["label"], code.as_str());
    assert_eq!(example["source"], "dispatcher");
    assert_eq!(example["ticket"], t.tracking_number.as_str());
    let recorded = example["text"].as_str().unwrap();
    assert!(
        recorded.starts_with(&text) && !recorded.contains("13800138000"),
        "numbers are masked: {recorded}"
    );
    c.stop().await;
}

/// A catalog version activated while the cluster runs (here by an arbitrator's new matter type)
/// reaches the dispatch process without a restart: a dispatcher may name an item only the new
/// version has, which the version dispatch started with refused.
#[tokio::test]
async fn a_newly_activated_catalog_reaches_dispatch_without_a_restart() {
    let c = spawn_cluster().await;
    activation_reaches_dispatch(&c.intake, &c.dispatch).await;
    c.stop().await;
}

/// The same in one process running classification and dispatch (as `minyi dev` does): there
/// the classification watch is the process's only follower of the catalog store.
#[tokio::test]
async fn a_newly_activated_catalog_reaches_dispatch_in_the_process_of_classification() {
    let (app, _) = support::spawn_on_small_catalog(
        &[Service::Intake, Service::Classification, Service::Dispatch],
        |_| {},
    )
    .await;
    activation_reaches_dispatch(&app, &app).await;
    app.stop().await;
}

/// An item added by a clarification is refused by dispatch before it is active and accepted
/// after, without a restart.
async fn activation_reaches_dispatch(intake: &TestApp, dispatch: &TestApp) {
    use minyi_core::store::CatalogStore;
    let (text, code) = territorial_text();
    let id = submit(intake, &text, "").await;
    wait_status(intake, &id, TicketStatus::NeedsDispatcher).await;
    let mut dispatcher = dispatch.dispatch(Role::Dispatcher, None).await;
    let naming = |item_code: &str| DispatchRequest {
        ticket: id.clone(),
        lead_unit: "ST-GM".into(),
        item_code: item_code.into(),
        ..DispatchRequest::default()
    };
    let refused = dispatcher
        .dispatch(naming("GM-NEW-0001"))
        .await
        .unwrap_err();
    assert!(
        refused.message().contains("not in the active catalog"),
        "{refused:?}"
    );

    let store = minyi_core::store::PgCatalogStore::connect(
        dispatch.config.database_url.as_deref().unwrap(),
    )
    .await
    .unwrap();
    let mut item = store.active().await.unwrap().get(&code).unwrap().clone();
    item.code = "GM-NEW-0001".into();
    item.name = format!("{}（新增）", item.name);
    let v = store
        .clarify(&minyi_catalog::Clarification {
            ruling: "KC-TEST".into(),
            change: minyi_catalog::ClarificationChange::NewItem {
                item: Box::new(item),
            },
        })
        .await
        .unwrap();
    assert_eq!(v, "v2");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let t = loop {
        match dispatcher.dispatch(naming("GM-NEW-0001")).await {
            Ok(t) => break t.into_inner(),
            Err(e) if e.message().contains("not in the active catalog") => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "v2 never reached dispatch"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("{e:?}"),
        }
    };
    assert_eq!(t.state, DISPATCHED);
    assert_eq!(t.routing.unwrap().item_code, "GM-NEW-0001");
}

/// A returned ticket sent on to the next suggestion is handled as that suggestion's matter,
/// and the dispatcher's choice is recorded as a training example.
#[tokio::test]
async fn a_ticket_sent_on_to_the_next_suggestion_becomes_a_training_example() {
    let c = spawn_cluster().await;
    let (text, owner) = functional_text();
    let (_, rule) = territorial_text();
    let id = submit(&c.intake, &text, "光明街道东周社区").await;
    wait_status(&c.intake, &id, TicketStatus::Dispatched).await;
    let mut lead = c.dispatch.dispatch(Role::Handler, Some(&owner)).await;
    lead.r#return(ReturnRequest {
        ticket: id.clone(),
        reason: "不属于本单位职责".into(),
        catalog_rule: rule,
        expected_version: 0,
    })
    .await
    .unwrap();
    wait_status(&c.intake, &id, TicketStatus::NeedsDispatcher).await;
    let mut dispatcher = c.dispatch.dispatch(Role::Dispatcher, None).await;
    let before = get(&mut dispatcher, &id).await.routing.unwrap();
    let next = before
        .suggestions
        .iter()
        .find(|s| !s.unit.is_empty() && s.unit != owner)
        .expect("a suggestion with another unit")
        .clone();
    let t = dispatcher
        .dispatch(DispatchRequest {
            ticket: id.clone(),
            use_next_suggestion: true,
            ..DispatchRequest::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(t.state, DISPATCHED);
    assert_eq!(t.lead_unit, next.unit);
    let routing = t.routing.clone().unwrap();
    assert_eq!(
        routing.item_code, next.item_code,
        "now handled as the suggestion's matter"
    );
    let example = support::last_training_example(&c.dispatch.config).await;
    assert_eq!(example["label"], next.item_code.as_str());
    assert_eq!(example["source"], "next_suggestion");
    assert_eq!(example["ticket"], t.tracking_number.as_str());
    c.stop().await;
}

#[tokio::test]
async fn inbox_stream_resumes_from_its_cursor() {
    let c = spawn_cluster().await;
    let mut dispatcher = c.dispatch.dispatch(Role::Dispatcher, None).await;
    let (ttext, _) = territorial_text();
    let mut ids = Vec::new();
    for i in 0..6 {
        let id = submit(&c.intake, &format!("{ttext} 第{i}次"), "").await;
        ids.push(id);
    }
    let mut gm = c.dispatch.dispatch(Role::Handler, Some("ST-GM")).await;
    let mut got = Vec::new();
    let mut cursor = 0;
    for (i, id) in ids.iter().enumerate() {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let r = dispatcher
                .dispatch(DispatchRequest {
                    ticket: id.clone(),
                    lead_unit: "ST-GM".into(),
                    ..DispatchRequest::default()
                })
                .await;
            match r {
                Ok(_) => break,
                // Still being classified, or linked as a duplicate of an earlier one.
                Err(e) if e.code() == Code::FailedPrecondition && Instant::now() < deadline => {
                    if e.message().contains("linked_duplicate") {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("{e:?}"),
            }
        }
        // Read one entry at a time, reconnecting after every second one.
        if i % 2 == 0 || got.is_empty() {
            let mut s = gm
                .watch_inbox(WatchInboxRequest {
                    after_cursor: cursor,
                })
                .await
                .unwrap()
                .into_inner();
            while let Ok(Ok(Some(e))) =
                tokio::time::timeout(Duration::from_millis(1500), s.message()).await
            {
                cursor = e.cursor;
                got.push(e.ticket_id);
            }
        }
    }
    let mut s = gm
        .watch_inbox(WatchInboxRequest {
            after_cursor: cursor,
        })
        .await
        .unwrap()
        .into_inner();
    while let Ok(Ok(Some(e))) = tokio::time::timeout(Duration::from_millis(1500), s.message()).await
    {
        got.push(e.ticket_id);
    }
    let dispatched: Vec<String> = {
        let inbox = gm
            .list_inbox(ListInboxRequest::default())
            .await
            .unwrap()
            .into_inner();
        let mut v: Vec<String> = inbox.tickets.into_iter().map(|t| t.ticket_id).collect();
        v.reverse();
        v
    };
    assert!(!dispatched.is_empty());
    assert_eq!(
        got, dispatched,
        "each dispatched ticket exactly once, in order"
    );
    // -1 resumes where this handler's last stream stopped: nothing new.
    let mut s = gm
        .watch_inbox(WatchInboxRequest { after_cursor: -1 })
        .await
        .unwrap()
        .into_inner();
    assert!(
        tokio::time::timeout(Duration::from_millis(1000), s.message())
            .await
            .is_err()
    );
    c.stop().await;
}

/// A plain HTTP/1.1 exchange, as a 311 app would do it; returns (status, body).
async fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    form: Option<&str>,
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let body = form.unwrap_or("");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text[9..12].parse().unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        // Single-chunk bodies are all this test reads.
        body.split_once("\r\n")
            .map_or("", |(_, rest)| rest)
            .trim_end_matches("\r\n0\r\n\r\n")
            .to_owned()
    } else {
        body.to_owned()
    };
    (status, body)
}

/// A request filed over Open311 is classified, dispatched and handled like any other; its
/// GeoReport view names the responsible unit and the working-day deadline.
#[tokio::test]
async fn an_open311_request_reaches_the_handler() {
    let c = spawn_cluster().await;
    let (text, owner) = functional_text();
    let key = c.intake.token_for(Role::Agent, None);
    let form = format!(
        "api_key={key}&description={}&address_string={}",
        url_encode(&format!("{text}（311）")),
        url_encode("光明区光明街道")
    );
    let (status, body) = http(
        c.intake.http,
        "POST",
        "/open311/v2/requests.json",
        Some(&form),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let reply: serde_json::Value = serde_json::from_str(&body).unwrap();
    let tracking = reply[0]["service_request_id"].as_str().unwrap().to_owned();
    let mut handler = c.dispatch.dispatch(Role::Handler, Some(&owner)).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let ticket = loop {
        let inbox = handler
            .list_inbox(ListInboxRequest::default())
            .await
            .unwrap()
            .into_inner();
        if let Some(t) = inbox
            .tickets
            .into_iter()
            .find(|t| t.tracking_number == tracking)
        {
            break t;
        }
        assert!(
            Instant::now() < deadline,
            "{tracking} never reached {owner}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    handler
        .accept(AcceptRequest {
            ticket: ticket.ticket_id.clone(),
            expected_version: 0,
        })
        .await
        .unwrap();
    let path = format!("/open311/v2/requests/{tracking}.json");
    let (status, body) = http(c.intake.http, "GET", &path, None).await;
    assert_eq!(status, 200, "{body}");
    let req: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(req[0]["status"], "open");
    assert_eq!(req[0]["agency_responsible"], ticket.lead_unit_name.as_str());
    let expected = req[0]["expected_datetime"].as_str().unwrap();
    assert!(expected.ends_with("+08:00"), "{expected}");
    // The same working-day deadline the handler sees.
    let due = ticket.complete_by.expect("dispatched with a deadline");
    let expected = chrono::DateTime::parse_from_rfc3339(expected).unwrap();
    assert_eq!(expected.timestamp(), due.seconds, "{expected}");
    // Classification filled in the service the client left out.
    let item = &ticket.routing.as_ref().expect("routed").item_code;
    assert!(!item.is_empty());
    assert_eq!(req[0]["service_code"], item.as_str());
    handler
        .complete(CompleteRequest {
            ticket: ticket.ticket_id.clone(),
            reply: "已处理，联系电话13800138000".into(),
            expected_version: 0,
        })
        .await
        .unwrap();
    let (_, body) = http(c.intake.http, "GET", &path, None).await;
    let req: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(req[0]["status"], "closed");
    let (status, body) = http(
        c.intake.http,
        "GET",
        "/open311/v2/servicerequestupdates.json",
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(&format!("{tracking}-d1")), "{body}");
    assert!(body.contains("已签收"), "{body}");
    assert!(
        body.contains("138****8000") && !body.contains("13800138000"),
        "{body}"
    );
    c.stop().await;
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn minyi_bin() -> std::path::PathBuf {
    let bin = std::env::var("MINYI_BIN")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| {
            std::env::var("CARGO_TARGET_DIR")
                .map(std::path::PathBuf::from)
                .unwrap_or_else(|_| {
                    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target")
                })
                .join("debug/minyi")
        });
    assert!(
        bin.exists(),
        "{} missing: `cargo build -p minyi --bins`",
        bin.display()
    );
    bin
}

/// Sends a ticket waiting for a dispatcher to arbitration: dispatched to two streets in turn,
/// each returns it.
async fn returned_twice(c: &support::Cluster, id: &str, rule: &str) {
    wait_status(&c.intake, id, TicketStatus::NeedsDispatcher).await;
    let mut dispatcher = c.dispatch.dispatch(Role::Dispatcher, None).await;
    for unit in ["ST-GM", "ST-FH"] {
        dispatcher
            .dispatch(DispatchRequest {
                ticket: id.into(),
                lead_unit: unit.into(),
                ..DispatchRequest::default()
            })
            .await
            .unwrap();
        c.dispatch
            .dispatch(Role::Handler, Some(unit))
            .await
            .r#return(ReturnRequest {
                ticket: id.into(),
                reason: "不在本街道辖区".into(),
                catalog_rule: rule.into(),
                expected_version: 0,
            })
            .await
            .unwrap();
    }
    wait_status(&c.intake, id, TicketStatus::InArbitration).await;
}

/// The arbitration queue shows the oldest cases first, nearest their deadline, also when it is
/// longer than one page (it showed the newest page, oldest first, hiding the oldest cases).
#[tokio::test]
async fn the_arbitration_queue_shows_its_oldest_cases_first() {
    use minyi_proto::arbitration::ListPendingRequest;
    use minyi_proto::arbitration::arbitration_service_client::ArbitrationServiceClient;
    let c = spawn_cluster().await;
    let (ttext, rule) = territorial_text();
    let mut cases = Vec::new();
    for _ in 0..3 {
        let id = submit(&c.intake, &ttext, "").await;
        returned_twice(&c, &id, &rule).await;
        cases.push(id);
    }
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", c.dispatch.grpc))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let header = format!("Bearer {}", c.dispatch.token_for(Role::Arbitrator, None))
        .parse()
        .unwrap();
    let mut arbitrator =
        ArbitrationServiceClient::with_interceptor(channel, support::Bearer(Some(header)));
    let shown: Vec<String> = arbitrator
        .list_pending(ListPendingRequest { page_size: 2 })
        .await
        .unwrap()
        .into_inner()
        .tickets
        .into_iter()
        .map(|t| t.ticket_id)
        .collect();
    assert_eq!(shown, cases[..2]);
    c.stop().await;
}

/// Returned twice → the arbitration queue → `minyi arbitrate list/show/decide` → the owner
/// handles it under 先办后议 and the catalog has a new version.
#[tokio::test]
async fn a_hard_ticket_is_ruled_on_with_minyi_arbitrate() {
    let c = spawn_cluster().await;
    let (ttext, rule) = territorial_text();
    let id = submit(&c.intake, &ttext, "").await;
    returned_twice(&c, &id, &rule).await;

    // The CLI runs as an async child process: this runtime keeps serving the cluster.
    let endpoint = format!("http://{}", c.dispatch.grpc);
    let token = c.dispatch.token_for(Role::Arbitrator, None);
    let run = |args: &[&str]| {
        let mut cmd = tokio::process::Command::new(minyi_bin());
        cmd.arg("arbitrate")
            .args(args)
            .env("MINYI_ENDPOINT", &endpoint)
            .env("MINYI_TOKEN", &token);
        async move {
            let out = tokio::time::timeout(Duration::from_secs(30), cmd.output())
                .await
                .expect("minyi arbitrate did not finish in 30 s")
                .unwrap();
            (
                out.status.success(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        }
    };
    let (ok, out, err) = run(&["--json", "list"]).await;
    assert!(ok, "{err}");
    let list: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["ticket_id"], id.as_str());
    assert_eq!(list[0]["reason"], "returned 2 times");
    let (ok, out, err) = run(&["show", &id]).await;
    assert!(ok, "{err}");
    assert!(
        out.contains("returned 2 times") && out.contains("ST-GM"),
        "{out}"
    );
    // A bad owner is a field error, not a crash; with a clarification, and with a ruling
    // too long, neither is applied (the good ruling below makes the catalog's v2, not v3).
    let (ok, _, err) = run(&["decide", &id, "--owner", "NOPE", "--ruling", "x"]).await;
    assert!(!ok);
    assert!(
        err.contains("owner_unit") && !err.contains("panicked"),
        "{err}"
    );
    let (ok, _, err) = run(&[
        "decide",
        &id,
        "--owner",
        "NOPE",
        "--ruling",
        "x",
        "--clarify-item",
        &rule,
    ])
    .await;
    assert!(!ok && err.contains("owner_unit"), "{err}");
    let long = "裁".repeat(20_001);
    let (ok, _, err) = run(&[
        "decide",
        &id,
        "--owner",
        "ST-GM",
        "--ruling",
        &long,
        "--clarify-item",
        &rule,
    ])
    .await;
    assert!(!ok, "a ruling of 20,001 characters was taken");
    assert!(
        err.contains("ruling") && err.contains("20000 characters"),
        "{err}"
    );
    let (ok, out, err) = run(&[
        "decide",
        &id,
        "--owner",
        "ST-GM",
        "--ruling",
        "该地块属光明街道管辖",
        "--clarify-item",
        &rule,
    ])
    .await;
    assert!(ok, "{err}");
    assert!(out.contains("光明街道") && out.contains("v2"), "{out}");
    wait_status(&c.intake, &id, TicketStatus::Dispatched).await;
    let e = c
        .dispatch
        .dispatch(Role::Handler, Some("ST-GM"))
        .await
        .r#return(ReturnRequest {
            ticket: id.clone(),
            reason: "again".into(),
            catalog_rule: rule.clone(),
            expected_version: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(e.message().contains("先办后议"), "{}", e.message());
    c.stop().await;
}

/// The handler's inbox and the dispatchers' queue page through every ticket, a few at a time,
/// none lost or repeated (pages are cut by count here; by size too, see
/// `a_page_of_long_petitions_stays_under_the_message_limit`).
#[tokio::test]
async fn inbox_and_queue_page_through_every_ticket() {
    let c = spawn_cluster().await;
    let (functional, owner) = functional_text();
    let (territorial, _) = territorial_text();
    // No address: nothing is linked as a duplicate, and a territorial matter waits for a
    // dispatcher.
    let mut dispatched = Vec::new();
    let mut queued = Vec::new();
    for _ in 0..5 {
        dispatched.push(submit(&c.intake, &functional, "").await);
        queued.push(submit(&c.intake, &territorial, "").await);
    }
    for id in &dispatched {
        wait_status(&c.intake, id, TicketStatus::Dispatched).await;
    }
    for id in &queued {
        wait_status(&c.intake, id, TicketStatus::NeedsDispatcher).await;
    }

    let handler = c.dispatch.dispatch(Role::Handler, Some(&owner)).await;
    let mut seen = every_page(|page_token| {
        let mut handler = handler.clone();
        async move {
            let page = handler
                .list_inbox(ListInboxRequest {
                    states: vec![],
                    page_size: 2,
                    page_token,
                })
                .await
                .unwrap()
                .into_inner();
            (page.tickets, page.next_page_token)
        }
    })
    .await;
    seen.sort();
    dispatched.sort();
    assert_eq!(seen, dispatched);

    let dispatcher = c.dispatch.dispatch(Role::Dispatcher, None).await;
    let mut seen = every_page(|page_token| {
        let mut dispatcher = dispatcher.clone();
        async move {
            let page = dispatcher
                .list_queue(ListQueueRequest {
                    page_size: 2,
                    page_token,
                })
                .await
                .unwrap()
                .into_inner();
            (page.tickets, page.next_page_token)
        }
    })
    .await;
    seen.sort();
    queued.sort();
    assert_eq!(seen, queued);
    c.stop().await;
}

/// A ticket refused hundreds of times stays readable: GetTicket carries the newest audit
/// lines and their count, ListAudit pages through all of them.
#[tokio::test]
async fn a_long_audit_trail_travels_in_pages() {
    let c = spawn_cluster().await;
    let (text, owner) = functional_text();
    let id = submit(&c.intake, &text, "").await;
    wait_status(&c.intake, &id, TicketStatus::Dispatched).await;
    let stranger_unit = if owner == "ST-XH" { "ST-FH" } else { "ST-XH" };
    let mut stranger = c
        .dispatch
        .dispatch(Role::Handler, Some(stranger_unit))
        .await;
    let refusals = AUDIT_LINES_IN_VIEW + 30;
    for _ in 0..refusals {
        let e = stranger
            .get_ticket(GetTicketRequest { ticket: id.clone() })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied);
    }
    let e = stranger
        .list_audit(ListAuditRequest {
            ticket: id.clone(),
            ..ListAuditRequest::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        e.code(),
        Code::PermissionDenied,
        "a stranger reads no trail"
    );

    let mut dispatcher = c.dispatch.dispatch(Role::Dispatcher, None).await;
    let t = get(&mut dispatcher, &id).await;
    assert_eq!(t.audit.len(), AUDIT_LINES_IN_VIEW);
    assert!(t.audit_total > refusals as u64, "{}", t.audit_total);
    assert!(t.audit.iter().all(|a| !a.allowed && a.action == "read"));

    // The lead pages through the whole trail: every line once, oldest first.
    let mut lead = c.dispatch.dispatch(Role::Handler, Some(&owner)).await;
    let mut trail = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = lead
            .list_audit(ListAuditRequest {
                ticket: t.tracking_number.clone(),
                page_size: 100,
                page_token,
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.entries.len() <= 100);
        assert!(page.total >= t.audit_total);
        trail.extend(page.entries);
        page_token = page.next_page_token;
        if page_token.is_empty() {
            break;
        }
    }
    assert_eq!(trail.len() as u64, t.audit_total);
    assert_eq!(trail[0].role, "system", "the trail starts at the routing");
    assert_eq!(trail[trail.len() - t.audit.len()..], t.audit[..]);
    let e = lead
        .list_audit(ListAuditRequest {
            ticket: id.clone(),
            page_token: "x".into(),
            ..ListAuditRequest::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("page_token"), "{}", e.message());
    c.stop().await;
}

/// The ticket ids of every page of a list call of 2-ticket pages, following its tokens.
async fn every_page<F, Fut>(mut call: F) -> Vec<String>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = (Vec<DispatchTicket>, String)>,
{
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let (tickets, next) = call(token).await;
        assert!(tickets.len() <= 2);
        seen.extend(tickets.into_iter().map(|t| t.ticket_id));
        if next.is_empty() {
            return seen;
        }
        token = next;
    }
}
