//! `minyi dev --demo`: replays realistic petitions into the running cluster through its own
//! gRPC API, as a call centre would, so there is something to see. Texts come from the
//! catalog's synthetic history (the project's own data, never the shared reference data).

use std::time::Duration;

use minyi_catalog::Catalog;
use minyi_proto::common::{Caller, Location};
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
    let channel = loop {
        match tonic::transport::Channel::from_shared(endpoint.clone()) {
            Ok(c) => match c.connect().await {
                Ok(ch) => break ch,
                Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
            },
            Err(e) => {
                tracing::error!(error = %e, "demo: bad endpoint");
                return;
            }
        }
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
