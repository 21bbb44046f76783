//! `minyi dev --demo`: replays realistic petitions into the running cluster through its own
//! gRPC API, as a call centre would, and works them as dispatchers, handlers and the callback
//! desk would ([`work`]), so there is something to see. Texts come from the
//! catalog's synthetic history (the project's own data, never the shared reference data).

use std::time::Duration;

use minyi_catalog::Catalog;
use minyi_core::auth::{Role, TokenAuthority};
use minyi_proto::common::{Caller, Location};
use minyi_proto::dispatch::dispatch_service_client::DispatchServiceClient;
use minyi_proto::intake::SubmitPetitionRequest;
use minyi_proto::intake::intake_service_client::IntakeServiceClient;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use tokio::sync::watch;

const PLACES: &[&str] = &[
    "光明街道东周社区",
    "光明街道碧眼社区华夏路",
    "公明街道上村社区",
    "公明街道下村社区",
    "马田街道合水口社区",
    "凤凰街道塘尾社区",
    "新湖街道楼村社区",
    "玉塘街道田寮社区",
    "光明大街",
    "",
];

/// Submits a burst of 20 petitions, then one every 1-4 seconds until `stop`.
pub async fn replay(
    endpoint: String,
    token: String,
    catalog: std::sync::Arc<Catalog>,
    mut stop: watch::Receiver<bool>,
) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(2026);
    let mut texts = minyi_catalog::demo_history(&catalog, 1, 99);
    texts.shuffle(&mut rng);
    let Ok(header) = format!("Bearer {token}").parse::<tonic::metadata::MetadataValue<_>>() else {
        return;
    };
    let Some(channel) = connect(&endpoint).await else {
        return;
    };
    let mut client =
        IntakeServiceClient::with_interceptor(channel, move |mut r: tonic::Request<()>| {
            r.metadata_mut().insert("authorization", header.clone());
            Ok(r)
        });
    tracing::info!("demo: replaying petitions");
    for (n, (text, _item)) in texts.into_iter().cycle().enumerate() {
        if *stop.borrow() {
            break;
        }
        let anonymous = rng.gen_bool(0.2);
        let req = SubmitPetitionRequest {
            channel: rng.gen_range(1..=4),
            text,
            title: String::new(),
            caller: Some(Caller {
                anonymous,
                name: if anonymous {
                    String::new()
                } else {
                    "市民".into()
                },
                phone: if anonymous {
                    String::new()
                } else {
                    format!(
                        "13{}{:08}",
                        rng.gen_range(5..=9),
                        rng.gen_range(0..100_000_000)
                    )
                },
                id_number: String::new(),
            }),
            location: Some(Location {
                address: PLACES[rng.gen_range(0..PLACES.len())].into(),
                point: None,
            }),
            event_time: None,
            attachment_urls: vec![],
            idempotency_key: format!("demo-{}-{n}", std::process::id()),
        };
        if let Err(e) = client.submit_petition(req).await {
            tracing::warn!(error = %e.message(), "demo: submit failed");
        }
        let pause = if n < 20 {
            Duration::from_millis(100)
        } else {
            Duration::from_millis(rng.gen_range(1_000..4_000))
        };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stop.changed() => {}
        }
    }
}

/// Connects to the cluster, retrying until it listens; `None` for a malformed endpoint.
async fn connect(endpoint: &str) -> Option<tonic::transport::Channel> {
    let target = match crate::tls::endpoint(endpoint, &crate::tls::ClientTls::default()) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "demo: bad endpoint");
            return None;
        }
    };
    loop {
        match target.connect().await {
            Ok(ch) => return Some(ch),
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

/// Bearer-token interceptor for the demo's own clients.
#[derive(Clone)]
struct Bearer(tonic::metadata::MetadataValue<tonic::metadata::Ascii>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut r: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        r.metadata_mut().insert("authorization", self.0.clone());
        Ok(r)
    }
}

type Dispatch = DispatchServiceClient<
    tonic::service::interceptor::InterceptedService<tonic::transport::Channel, Bearer>,
>;

fn dispatch_client(
    channel: &tonic::transport::Channel,
    authority: &TokenAuthority,
    sub: &str,
    role: Role,
    unit: Option<&str>,
) -> Option<Dispatch> {
    let token = authority
        .issue(sub, role, unit, chrono::Duration::days(1))
        .ok()?;
    let header = format!("Bearer {token}").parse().ok()?;
    Some(DispatchServiceClient::with_interceptor(
        channel.clone(),
        Bearer(header),
    ))
}

/// The other side of the demo: a dispatcher works the queue (the best suggestion), handlers
/// accept, note progress and complete what their unit leads, and the callback desk rates and
/// archives, every few seconds until `stop`, so the dashboard shows a district at work.
pub async fn work(endpoint: String, authority: TokenAuthority, mut stop: watch::Receiver<bool>) {
    use minyi_proto::dispatch::{
        AcceptRequest, AddProgressRequest, ArchiveRequest, CompleteRequest, DispatchRequest,
        DispatchState, ListInboxRequest, ListQueueRequest, RecordCallbackRequest,
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(2027);
    let Some(channel) = connect(&endpoint).await else {
        return;
    };
    let Some(mut desk) = dispatch_client(
        &channel,
        &authority,
        "demo-dispatcher",
        Role::Dispatcher,
        None,
    ) else {
        return;
    };
    let mut units: Vec<String> = Vec::new();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(3)) => {}
            _ = stop.changed() => {}
        }
        if *stop.borrow() {
            break;
        }
        // The dispatchers' queue: a few tickets a round go to their best suggestion.
        if let Ok(q) = desk
            .list_queue(ListQueueRequest {
                page_size: 10,
                page_token: String::new(),
            })
            .await
        {
            let q = q.into_inner();
            for t in q.tickets.iter().take(rng.gen_range(1..=4)) {
                let _ = desk
                    .dispatch(DispatchRequest {
                        ticket: t.ticket_id.clone(),
                        use_next_suggestion: true,
                        ..DispatchRequest::default()
                    })
                    .await;
            }
            for u in q.unit_load.keys() {
                if !units.contains(u) {
                    units.push(u.clone());
                }
            }
        }
        // Handlers of a few units work their inbox; the desk calls back finished tickets.
        units.shuffle(&mut rng);
        for unit in units.iter().take(6) {
            let Some(mut handler) = dispatch_client(
                &channel,
                &authority,
                &format!("demo-{unit}"),
                Role::Handler,
                Some(unit),
            ) else {
                continue;
            };
            let Ok(inbox) = handler
                .list_inbox(ListInboxRequest {
                    states: vec![],
                    page_size: 50,
                    page_token: String::new(),
                })
                .await
            else {
                continue;
            };
            for t in inbox.into_inner().tickets {
                if &t.lead_unit != unit {
                    continue;
                }
                let ticket = t.ticket_id.clone();
                match DispatchState::try_from(t.state) {
                    Ok(DispatchState::Dispatched) if rng.gen_bool(0.6) => {
                        let _ = handler
                            .accept(AcceptRequest {
                                ticket,
                                expected_version: 0,
                            })
                            .await;
                    }
                    Ok(DispatchState::Accepted) if rng.gen_bool(0.15) => {
                        let _ = handler
                            .add_progress(AddProgressRequest {
                                ticket,
                                note: "已到现场核实，正在协调处理".into(),
                                expected_version: 0,
                            })
                            .await;
                    }
                    Ok(DispatchState::Accepted) if rng.gen_bool(0.3) => {
                        let _ = handler
                            .complete(CompleteRequest {
                                ticket,
                                reply: "已处理完毕，感谢您的反映。".into(),
                                expected_version: 0,
                            })
                            .await;
                    }
                    Ok(DispatchState::Completed) if rng.gen_bool(0.5) => {
                        let rating = match rng.gen_range(0..20) {
                            0 => "dissatisfied",
                            1..=3 => "basically_satisfied",
                            _ => "satisfied",
                        };
                        let _ = desk
                            .record_callback(RecordCallbackRequest {
                                ticket,
                                rating: rating.into(),
                                cause: if rating == "dissatisfied" {
                                    "citizen".into()
                                } else {
                                    String::new()
                                },
                                note: String::new(),
                                expected_version: 0,
                            })
                            .await;
                    }
                    Ok(DispatchState::CalledBack) if rng.gen_bool(0.5) => {
                        let _ = desk
                            .archive(ArchiveRequest {
                                ticket,
                                expected_version: 0,
                            })
                            .await;
                    }
                    _ => {}
                }
            }
        }
    }
}
