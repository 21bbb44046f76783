//! `minyi dev --demo` works the tickets too: the demo's dispatcher, handlers and callback desk
//! move petitions through the lifecycle, so the dashboard has figures to show.

mod support;

use std::time::{Duration, Instant};

use minyi_core::auth::Role;
use minyi_core::petition::TicketStatus;
use minyi_core::store::TicketQuery;
use minyi_proto::intake::SubmitPetitionRequest;
use support::{Backend, spawn_app};

#[tokio::test]
async fn the_demo_moves_petitions_to_completion() {
    let app = spawn_app(Backend::Embedded).await;
    let catalog = minyi_catalog::demo_slice();
    let mut agent = app.intake(Some(Role::Agent)).await;
    for (n, item) in catalog.items().iter().take(6).enumerate() {
        agent
            .submit_petition(SubmitPetitionRequest {
                channel: 1,
                text: format!("{}（{n}）", item.phrasings.join("，")),
                ..SubmitPetitionRequest::default()
            })
            .await
            .unwrap();
    }
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let work = tokio::spawn(minyi::demo::work(
        format!("http://{}", app.grpc),
        app.authority.clone(),
        stopped,
    ));
    let store = support::store(&app);
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let done = store
            .list_tickets(&TicketQuery {
                limit: 100,
                ..TicketQuery::default()
            })
            .await
            .unwrap()
            .iter()
            .filter(|t| matches!(t.status, TicketStatus::Completed | TicketStatus::Archived))
            .count();
        if done > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the demo completed nothing in 90 s"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(10), work)
        .await
        .expect("the demo stops when told")
        .unwrap();
    app.stop().await;
}
