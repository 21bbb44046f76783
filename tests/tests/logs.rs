//! Personal data never reaches the logs: every service of a production-mode cluster logs at
//! debug level, as JSON lines (the container format), into one buffer, while petitions with
//! known names, phone numbers and ID numbers go from intake to a handler's completion.

mod support;

use std::time::{Duration, Instant};

use minyi::app::{Mode, Service};
use minyi_core::auth::Role;
use minyi_proto::common::{Caller, Location};
use minyi_proto::dispatch::{AcceptRequest, CompleteRequest, GetTicketRequest};
use minyi_proto::intake::{AddFollowUpRequest, SubmitPetitionRequest};

const PEOPLE: [(&str, &str, &str); 3] = [
    ("欧阳明辉", "13912345678", "11010519491231002X"),
    ("司马晓燕", "15887654321", "44030519900101123X"),
    ("诸葛一凡", "18600001111", "310101198512120016"),
];

#[tokio::test]
async fn no_name_phone_or_id_number_appears_in_any_log_line() {
    let buffer = support::LogBuffer::default();
    let writer = buffer.clone();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("debug"))
        .json()
        .flatten_event(true)
        .with_writer(move || writer.clone())
        .init();

    let c = support::spawn_cluster().await;
    let rest = support::spawn_with(
        c.intake.config.clone(),
        Mode::Production(vec![Service::Deadline, Service::Dashboard]),
        None,
    )
    .await;
    let mut agent = c.intake.intake(Some(Role::Agent)).await;
    let catalog = minyi_catalog::demo_slice();
    let item = catalog
        .items()
        .iter()
        .find(|i| {
            matches!(
                i.responsibility,
                minyi_catalog::model::Responsibility::Functional { .. }
            )
        })
        .unwrap();
    let text = item.phrasings.join("，");
    let mut ids = Vec::new();
    for (n, (name, phone, id_number)) in PEOPLE.iter().enumerate() {
        let t = agent
            .submit_petition(SubmitPetitionRequest {
                channel: 1,
                text: format!("{text}（第{n}件）"),
                caller: Some(Caller {
                    anonymous: false,
                    name: (*name).into(),
                    phone: (*phone).into(),
                    id_number: (*id_number).into(),
                }),
                // Three similar petitions at one place would be linked as duplicates; an
                // address that resolves to no community keeps them apart.
                location: Some(Location {
                    address: format!("{}号楼门口", n + 1),
                    point: None,
                }),
                ..SubmitPetitionRequest::default()
            })
            .await
            .unwrap()
            .into_inner()
            .ticket
            .unwrap();
        ids.push(t.id);
    }
    // A validation failure that echoes nothing of the bad phone number either.
    let e = agent
        .submit_petition(SubmitPetitionRequest {
            channel: 1,
            text: "测试".into(),
            caller: Some(Caller {
                anonymous: false,
                name: "欧阳明辉".into(),
                phone: "139123456789999".into(),
                id_number: String::new(),
            }),
            ..SubmitPetitionRequest::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);

    // Each ticket reaches its unit, which accepts and completes it; the citizen follows up.
    let mut dispatcher = c.dispatch.dispatch(Role::Dispatcher, None).await;
    for id in &ids {
        let deadline = Instant::now() + Duration::from_secs(60);
        let lead = loop {
            let t = dispatcher
                .get_ticket(GetTicketRequest { ticket: id.clone() })
                .await
                .unwrap()
                .into_inner();
            if !t.lead_unit.is_empty() {
                break t.lead_unit;
            }
            assert!(Instant::now() < deadline, "{id} never dispatched");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let mut handler = c.dispatch.dispatch(Role::Handler, Some(&lead)).await;
        handler
            .accept(AcceptRequest {
                ticket: id.clone(),
                expected_version: 0,
            })
            .await
            .unwrap();
        agent
            .add_follow_up(AddFollowUpRequest {
                id: id.clone(),
                text: "补充：可以打我电话".into(),
            })
            .await
            .unwrap();
        handler
            .complete(CompleteRequest {
                ticket: id.clone(),
                reply: "已处理".into(),
                expected_version: 0,
            })
            .await
            .unwrap();
    }
    // Let the deadline and dashboard consumers see the last events.
    tokio::time::sleep(Duration::from_secs(2)).await;
    rest.stop().await;
    c.stop().await;

    let logs = buffer.text();
    let lines = logs.lines().count();
    assert!(lines > 50, "the services logged ({lines} lines)");
    assert!(
        ids.iter().any(|id| logs.contains(id.as_str())),
        "ticket ids are logged, so the check below looks at the right lines"
    );
    for (name, phone, id_number) in PEOPLE {
        for (what, value) in [("name", name), ("phone", phone), ("ID number", id_number)] {
            let hit = logs.lines().find(|l| l.contains(value));
            assert!(
                hit.is_none(),
                "a {what} was logged: {}",
                hit.unwrap_or_default()
            );
        }
    }
    assert!(
        !logs.contains("139123456789999"),
        "a rejected phone number was logged"
    );
}
